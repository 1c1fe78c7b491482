/**
 * Loopback ports for the `signet serve` processes tests start through `signet init
 * --port` (which writes the port into the config, so it must be known beforehand).
 *
 * A random port in the kernel's ephemeral range (Linux: 32768–60999) can be taken
 * between `init` and `serve`, or while a killed service restarts, by any outgoing
 * connection of the test run (HTTPS clients, PostgreSQL): that was seen as
 * EADDRINUSE. So the port is chosen below that range, and checked free when chosen.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

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

/** A free loopback port outside the ephemeral range. */
export async function freeServicePort(): Promise<number> {
  const { start, end } = ephemeralRange();
  const [low, high] = start - LOWEST >= 5_000 ? [LOWEST, start] : [end + 1, 65_536];
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (await isFree(port)) return port;
  }
  throw new Error(`no free loopback port in [${low}, ${high})`);
}
