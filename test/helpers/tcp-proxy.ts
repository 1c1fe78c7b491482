/**
 * A TCP proxy on loopback in front of a server (PostgreSQL, in these tests), to make
 * it "stop" for a client without stopping it for anyone else: `down` refuses new
 * connections and cuts open ones, `up` listens again on the same port (so a client
 * configured with `urlFor` reconnects by itself), `pause` lets connections stay open
 * while nothing gets through (a network partition).
 */
import { createServer, Socket, type Server } from 'node:net';

export class TcpProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #port = 0;
  #paused = false;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  /** A proxy to the host and port of `url` (a postgres:// URL, say), listening. */
  static async start(url: string): Promise<TcpProxy> {
    const parsed = new URL(url);
    const proxy = new TcpProxy({ host: parsed.hostname || '127.0.0.1', port: Number(parsed.port || 5432) });
    await proxy.up();
    return proxy;
  }

  get port(): number {
    return this.#port;
  }

  get isUp(): boolean {
    return this.#server !== undefined;
  }

  /** `url` with the proxy in place of the server. */
  urlFor(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = '127.0.0.1';
    parsed.port = String(this.#port);
    return parsed.toString();
  }

  /** Listens (again, on the same port once it has one). */
  async up(): Promise<void> {
    if (this.#server !== undefined) return;
    const server = createServer((client) => {
      const upstream = new Socket();
      this.#sockets.add(client);
      this.#sockets.add(upstream);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      upstream.connect(this.#target.port, this.#target.host);
      client.on('data', (data: Buffer) => {
        if (!this.#paused) upstream.write(data);
      });
      upstream.on('data', (data: Buffer) => {
        if (!this.#paused) client.write(data);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#port, '127.0.0.1', () => {
        resolve();
      });
    });
    this.#port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /** The server is away: new connections are refused, open ones are cut. */
  async down(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    if (server !== undefined) {
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    }
  }

  /** The server hangs: connections stay open but nothing gets through. */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
  }
}
