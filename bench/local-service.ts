/**
 * Starting a service on loopback: a port to give it (the benchmark and the end-to-end
 * tests), and a wait until it answers (the benchmark).
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The lowest port chosen (below it: well-known and registered services). */
const LOWEST = 10_000;

/** The kernel's ephemeral port range, or Linux's default where it cannot be read. */
function ephemeralRange(): { start: number; end: number } {
  try {
    const [start, end] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(start) && Number.isInteger(end)) return { start: start as number, end: end as number };
  } catch {
    // Not Linux, or no procfs: use the default.
  }
  return { start: 32_768, end: 60_999 };
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => {
      resolve(false);
    });
    server.listen(port, '127.0.0.1', () => {
      server.close(() => {
        resolve(true);
      });
    });
  });
}

/**
 * A free loopback port outside the kernel's ephemeral range, for a service started a
 * moment later (or written into its config by `signet init --port` first).
 *
 * Not one the kernel hands out for `listen(0)`: that port is in the ephemeral range
 * (Linux: 32768–60999), where any outgoing connection made meanwhile (HTTPS clients,
 * PostgreSQL, another service's start-up) can take it before the service binds it, or
 * while a killed service restarts: that was seen as EADDRINUSE. So the port is chosen
 * below that range, at random, and checked free when chosen.
 */
export async function freeServicePort(): Promise<number> {
  const { start, end } = ephemeralRange();
  const [low, high] = start - LOWEST >= 5_000 ? [LOWEST, start] : [end + 1, 65_536];
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await isFree(port)) return port;
  }
  throw new Error(`no free loopback port in [${low}, ${high})`);
}

/** Polls `GET url/readyz` every 100 ms until it answers 200, at most `attempts` times. */
export async function waitReady(url: string, ca: Buffer, attempts: number): Promise<void> {
  const { get } = await import('node:https');
  for (let i = 0; i < attempts; i += 1) {
    const ok = await new Promise<boolean>((resolve) => {
      get(`${url}/readyz`, { ca, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      }).on('error', () => {
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the service at ${url} did not become ready`);
}
