/**
 * A small HTTPS JSON client for the CLI: trusts only the given CA for the server,
 * presents the given client certificate, and turns Signet's JSON errors into
 * CliErrors that carry the server's code.
 */
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { CliError } from './errors.js';

export interface ClientTls {
  /** CA that issued the server's TLS certificate. */
  readonly caFile: string;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
}

export interface JsonResponse {
  readonly status: number;
  readonly body: unknown;
}

export function createAgent(tls: ClientTls, keepAlive = false): Agent {
  return new Agent({
    ca: readFile(tls.caFile),
    ...(tls.certFile === undefined ? {} : { cert: readFile(tls.certFile) }),
    ...(tls.keyFile === undefined ? {} : { key: readFile(tls.keyFile) }),
    keepAlive,
    minVersion: 'TLSv1.2',
  });
}

export async function requestJson(
  agent: Agent,
  url: string,
  options: { method?: 'GET' | 'POST'; body?: unknown; headers?: Record<string, string> } = {},
): Promise<JsonResponse> {
  const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        agent,
        method: options.method ?? 'GET',
        headers: {
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(payload.length) }),
          ...options.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = JSON.parse(text) as unknown;
          } catch {
            // Not JSON (a proxy's error page): keep the text.
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
        res.on('error', reject);
      },
    );
    req.on('error', (error) => {
      reject(new CliError('REQUEST_FAILED', `cannot reach ${new URL(url).origin}: ${error.message}`, { cause: error }));
    });
    req.end(payload);
  });
}

/** Throws a CliError with the server's error code unless the status is 2xx. */
export function expectOk(response: JsonResponse, what: string): unknown {
  if (response.status >= 200 && response.status < 300) return response.body;
  const error = (response.body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof error?.code === 'string' ? error.code : `HTTP_${response.status}`;
  const message = typeof error?.message === 'string' ? error.message : 'no error details';
  throw new CliError('REQUEST_FAILED', `${what} failed: ${code}: ${message}`);
}

function readFile(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new CliError('FILE_UNREADABLE', `cannot read ${path}`, { cause: error });
  }
}
