/**
 * Container health check (Dockerfile HEALTHCHECK, docker/compose.yaml): GET /healthz
 * on the service's own HTTPS listener, with the server certificate verified as any
 * client verifies it, never with verification turned off. Built to
 * dist/docker/healthcheck.js; node runs it, as the image has no curl.
 *
 * - Port and bind address come from the config the service runs with ($SIGNET_CONFIG);
 *   a wildcard bind (0.0.0.0, ::) is checked on loopback.
 * - Trust anchors: $SIGNET_HEALTHCHECK_CA (a PEM bundle) when set, else the server's own
 *   certificate file (`server.tls.certFile`), which must then hold the chain up to its
 *   root (`signet init` writes it so).
 * - Name checked in the certificate: $SIGNET_HEALTHCHECK_SERVERNAME when set (production
 *   certificates name the public host), else the address connected to.
 *
 * Exit 0 when the service answers 200 {"status":"ok"}; 1 otherwise, with the reason on
 * stderr (Docker keeps it in `docker inspect`).
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { dirname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';

const TIMEOUT_MS = 4000;

export interface HealthOutcome {
  readonly healthy: boolean;
  readonly reason: string;
}

interface ServerSettings {
  readonly host?: string;
  readonly port?: number;
  readonly tls?: { readonly certFile?: string };
}

export async function checkHealth(env: NodeJS.ProcessEnv = process.env): Promise<HealthOutcome> {
  let server: ServerSettings;
  const configPath = resolve(env.SIGNET_CONFIG ?? '/etc/signet/signet.yaml');
  try {
    server = (parse(readFileSync(configPath, 'utf8')) as { server?: ServerSettings } | null)?.server ?? {};
  } catch (error) {
    return { healthy: false, reason: `cannot read the config: ${(error as Error).message}` };
  }
  const bind = server.host ?? '127.0.0.1';
  const host = bind === '0.0.0.0' ? '127.0.0.1' : bind === '::' ? '::1' : bind;
  const certFile = server.tls?.certFile ?? '';
  let ca: Buffer;
  try {
    ca = readFileSync(env.SIGNET_HEALTHCHECK_CA ?? (isAbsolute(certFile) ? certFile : resolve(dirname(configPath), certFile)));
  } catch (error) {
    return { healthy: false, reason: `cannot read the trust anchors: ${(error as Error).message}` };
  }
  const servername = env.SIGNET_HEALTHCHECK_SERVERNAME;

  return new Promise((done) => {
    const req = request(
      {
        host,
        port: server.port ?? 8443,
        path: '/healthz',
        method: 'GET',
        ca,
        ...(servername === undefined || servername === '' ? {} : { servername }),
        agent: false,
        timeout: TIMEOUT_MS,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < 4096) body += chunk;
        });
        res.on('end', () => {
          let status: unknown;
          try {
            status = (JSON.parse(body) as { status?: unknown }).status;
          } catch {
            status = undefined;
          }
          done(res.statusCode === 200 && status === 'ok' ? { healthy: true, reason: 'ok' } : { healthy: false, reason: `GET /healthz answered ${res.statusCode ?? 0}` });
        });
      },
    );
    req.on('timeout', () => {
      req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`));
    });
    req.on('error', (error) => {
      done({ healthy: false, reason: error.message });
    });
    req.end();
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const outcome = await checkHealth();
  if (!outcome.healthy) process.stderr.write(`healthcheck: ${outcome.reason}\n`);
  process.exit(outcome.healthy ? 0 : 1);
}
