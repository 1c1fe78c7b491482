/**
 * A real development environment for end-to-end tests: `signet init` in a fresh temp
 * directory (real SoftHSM token, real SQLite file, real TLS certificates), and the
 * real service started in-process on a loopback port chosen by the OS.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { DEV_AUDIENCE, mintDevToken } from '../../cli/dev-issuer.js';
import { runInit, type InitResult } from '../../cli/init.js';
import { loadConfig } from '../../config/load.js';
import { startService, type RunningService } from '../../service/wiring.js';

export interface DevEnvironment {
  readonly dir: string;
  readonly init: InitResult;
}

export async function createDevEnvironment(): Promise<DevEnvironment> {
  const dir = mkdtempSync(join(tmpdir(), 'signet-e2e-'));
  const init = await runInit({ dir, port: 0, force: false });
  return { dir, init };
}

/** A GitHub-Actions-shaped id token from the environment's dev issuer (`signet dev-token`). */
export function devToken(env: DevEnvironment, claims: Record<string, string> = {}, expiresInSeconds = 600): Promise<string> {
  return mintDevToken({ privateJwkFile: join(env.dir, 'oidc', 'dev-issuer-key.json'), audience: DEV_AUDIENCE, claims, expiresInSeconds });
}

export interface StartedService extends RunningService {
  /** Every structured log line the service wrote, parsed. */
  readonly logs: Record<string, unknown>[];
}

export async function startDevService(env: DevEnvironment): Promise<StartedService> {
  const logs: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  const service = await startService(loadConfig(env.init.config), { logDestination: destination });
  return { ...service, logs };
}

export function signaturesIssued(service: StartedService): number {
  return service.logs.filter((l) => l.msg === 'request' && l.signature !== undefined).length;
}

export interface HttpsCall {
  readonly method?: 'GET' | 'POST' | 'PUT';
  readonly body?: string | Buffer;
  readonly json?: unknown;
  readonly headers?: Record<string, string>;
  readonly ca: Buffer | string;
  readonly cert?: Buffer | string;
  readonly key?: Buffer | string;
}

export interface HttpsAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** Parsed JSON body (test assertions read arbitrary fields). */
  readonly json: any;
}

export async function httpsCall(url: string, call: HttpsCall): Promise<HttpsAnswer> {
  const { request } = await import('node:https');
  const body = call.json === undefined ? call.body : JSON.stringify(call.json);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: call.method ?? (body === undefined ? 'GET' : 'POST'),
        ca: call.ca,
        ...(call.cert === undefined ? {} : { cert: call.cert }),
        ...(call.key === undefined ? {} : { key: call.key }),
        agent: false,
        headers: {
          ...(call.json === undefined ? {} : { 'content-type': 'application/json' }),
          ...call.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The dev client's TLS material, as `signet init` wrote it. */
export function devClientTls(env: DevEnvironment): { ca: Buffer; cert: Buffer; key: Buffer } {
  return { ca: readFileSync(env.init.caCert), cert: readFileSync(env.init.clientCert), key: readFileSync(env.init.clientKey) };
}
