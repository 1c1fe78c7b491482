/**
 * The HTTPS listener: TLS 1.2+ with the server certificate, asking every client for a
 * certificate chained to the CI client CA (verified per route, see
 * client-certificate.ts), request bodies read and bounded before the app sees them,
 * and a graceful stop: refuse new work, let in-flight requests finish (bounded by a
 * grace period), then close connections.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';

export interface HttpsListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly clientCa: Buffer;
  readonly requestTimeoutMs: number;
  readonly maxBodyBytes: number;
  readonly fetch: Parameters<typeof getRequestListener>[0];
}

export interface HttpsListener {
  readonly server: Server;
  readonly port: number;
  /** Stops accepting connections, waits for open ones up to `graceMs`, then destroys the rest. */
  close(graceMs: number): Promise<void>;
}

/**
 * Marks a request whose body went over the limit; the app answers 413 BODY_TOO_LARGE
 * through its one error path (server/app.ts) instead of this layer writing its own.
 */
export const BODY_TOO_LARGE = Symbol('signet.bodyTooLarge');

type BufferedRequest = IncomingMessage & { rawBody?: Buffer; [BODY_TOO_LARGE]?: true };

/**
 * Reads the whole body into one Buffer, stopping at `limit` bytes. @hono/node-server
 * then serves `rawBody` as a one-chunk stream, which is much cheaper per request than
 * adapting the Node stream to a web stream, and an oversized body is refused before
 * it is buffered (Content-Length) or as soon as it passes the limit (chunked).
 */
function bufferBody(request: BufferedRequest, limit: number, done: () => void): void {
  const declared = Number(request.headers['content-length'] ?? Number.NaN);
  if (declared > limit) {
    request[BODY_TOO_LARGE] = true;
    request.rawBody = Buffer.alloc(0);
    request.resume();
    done();
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    request.rawBody = request[BODY_TOO_LARGE] === true ? Buffer.alloc(0) : Buffer.concat(chunks, size);
    done();
  };
  request.on('data', (chunk: Buffer) => {
    if (request[BODY_TOO_LARGE] === true) return;
    size += chunk.length;
    if (size > limit) {
      request[BODY_TOO_LARGE] = true;
      chunks.length = 0;
      finish();
    } else {
      chunks.push(chunk);
    }
  });
  request.on('end', finish);
  request.on('error', finish);
}

export async function listenHttps(options: HttpsListenerOptions): Promise<HttpsListener> {
  const appListener = getRequestListener(options.fetch);
  const onRequest = (request: IncomingMessage, response: ServerResponse): void => {
    if (request.method === 'GET' || request.method === 'HEAD') {
      void appListener(request, response);
      return;
    }
    bufferBody(request, options.maxBodyBytes, () => void appListener(request, response));
  };
  const server = createServer(
    {
      cert: options.cert,
      key: options.key,
      ca: options.clientCa,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      requestTimeout: options.requestTimeoutMs,
      headersTimeout: Math.min(options.requestTimeoutMs, 20_000),
      keepAliveTimeout: 30_000,
    },
    onRequest,
  );

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  return {
    server,
    port,
    close: async (graceMs) => {
      const closed = new Promise<void>((resolve) => server.close(() => { resolve(); }));
      server.closeIdleConnections();
      const timer = setTimeout(() => {
        server.closeAllConnections();
      }, graceMs);
      timer.unref();
      await closed;
      clearTimeout(timer);
    },
  };
}
