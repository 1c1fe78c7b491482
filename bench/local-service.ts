/**
 * Starting a service the benchmark runs on loopback: a port to give it, and a wait
 * until it answers.
 */
import { createServer } from 'node:net';

/**
 * A loopback port for a service: one the kernel hands out for an ephemeral listener,
 * closed again at once. The service binds it a moment later.
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        resolve(typeof address === 'object' && address !== null ? address.port : 0);
      });
    });
    server.on('error', reject);
  });
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
