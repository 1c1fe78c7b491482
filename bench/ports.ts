/**
 * A loopback port for a service the benchmark starts: one the kernel hands out for an
 * ephemeral listener, closed again at once. The service binds it a moment later.
 */
import { createServer } from 'node:net';

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
