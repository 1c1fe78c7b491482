/**
 * Replicas for end-to-end tests: a development set-up recorded in a fresh PostgreSQL
 * schema (`signet init --postgres-url … --postgres-schema …`: one SoftHSM token, one
 * set of TLS files, keys, CA and officers in PostgreSQL), and `signet serve` processes
 * on it, each on a port of its own, exactly as several replicas share one database and
 * one HSM. A keep-alive mutual-TLS client (undici) signs through any of them.
 *
 * Needs SIGNET_TEST_POSTGRES_URL (test/store/backends.ts says how it is used) and the
 * built CLI (dist/cli/main.js).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Agent, request } from 'undici';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { createDevTokenMinter, DEV_AUDIENCE, type DevTokenMinter } from '../../cli/dev-issuer.js';
import { runInit, type InitResult } from '../../cli/init.js';
import { newSchemaName, postgresTestUrl } from '../store/backends.js';
import { startServe, type ServeProcess } from './cli.js';

export interface PostgresDevEnvironment {
  readonly dir: string;
  readonly init: InitResult;
  /** The server's URL (no proxy) and the fresh schema the set-up lives in. */
  readonly postgresUrl: string;
  readonly schema: string;
  /** Drops the schema and removes the directory. */
  destroy(): Promise<void>;
}

async function withAdmin<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** `signet init` into a fresh directory and a fresh schema of the test server. */
export async function createPostgresDevEnvironment(): Promise<PostgresDevEnvironment> {
  const postgresUrl = postgresTestUrl();
  if (postgresUrl === undefined) throw new Error('SIGNET_TEST_POSTGRES_URL is not set');
  const schema = newSchemaName();
  await withAdmin(postgresUrl, (client) => client.query(`CREATE SCHEMA ${schema}`));
  const dir = mkdtempSync(join(tmpdir(), 'signet-replicas-'));
  const init = await runInit({ dir, port: 0, force: false, postgres: { url: postgresUrl, schema } });
  return {
    dir,
    init,
    postgresUrl,
    schema,
    async destroy() {
      await withAdmin(postgresUrl, (client) => client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ReplicaConfigOptions {
  /** Another database URL (a proxy in front of the server), written to a secret file of its own. */
  readonly postgresUrl?: string;
  /** Merged into `storage.postgres` (timeouts, pool size). */
  readonly postgres?: Record<string, unknown>;
  /** Replaces the policy file. */
  readonly policyFile?: string;
}

/** A copy of init's config under another name, with these changes; returns its path. */
export function writeReplicaConfig(env: PostgresDevEnvironment, name: string, options: ReplicaConfigOptions = {}): string {
  const config = parseYaml(readFileSync(env.init.config, 'utf8')) as Record<string, any>;
  if (options.postgresUrl !== undefined) {
    const file = `secrets/postgres-url-${name}`;
    writeFileSync(join(env.dir, file), `${options.postgresUrl}\n`, { mode: 0o600 });
    config.storage.postgres.url = { file };
  }
  config.storage.postgres = { ...config.storage.postgres, ...options.postgres };
  if (options.policyFile !== undefined) config.policy.file = options.policyFile;
  const path = join(env.dir, `${name}.yaml`);
  writeFileSync(path, toYaml(config));
  return path;
}

export interface Replica {
  readonly name: string;
  /** https://127.0.0.1:<port> */
  readonly url: string;
  readonly process: ServeProcess;
  stop(): Promise<number | null>;
}

/** `signet serve --config <config>` in a process of its own; resolves once it listens. */
export async function startReplica(name: string, config: string): Promise<Replica> {
  const serve = await startServe(config);
  const line = serve
    .output()
    .split('\n')
    .find((l) => l.includes('signet listening'));
  const url = (JSON.parse(line ?? '{}') as { url?: string }).url;
  if (url === undefined) {
    await serve.stop();
    throw new Error(`replica ${name} did not say where it listens:\n${serve.output()}`);
  }
  return { name, url, process: serve, stop: () => serve.stop() };
}

export interface SignClient {
  /** POST /v1/sign through `replica`; status and parsed body (never throws for an HTTP status). */
  sign(replica: Replica, token: string, body: unknown): Promise<{ status: number; json: any }>;
  get(replica: Replica, path: string): Promise<{ status: number; text: string }>;
  close(): Promise<void>;
}

/** Keep-alive mutual TLS to every replica (one connection pool per origin), as a CI fleet would. */
export function signClient(env: PostgresDevEnvironment, connectionsPerReplica: number): SignClient {
  const agent = new Agent({
    connections: connectionsPerReplica,
    pipelining: 1,
    connect: { ca: readFileSync(env.init.caCert), cert: readFileSync(env.init.clientCert), key: readFileSync(env.init.clientKey) },
  });
  return {
    async sign(replica, token, body) {
      try {
        const response = await request(`${replica.url}/v1/sign`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify(body),
        });
        const text = await response.body.text();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        return { status: response.statusCode, json };
      } catch (error) {
        // The connection itself failed (status 0): reported, not thrown, so a load loop goes on.
        return { status: 0, json: { error: { code: 'CONNECTION', message: (error as Error).message } } };
      }
    },
    async get(replica, path) {
      const response = await request(`${replica.url}${path}`, { dispatcher: agent });
      return { status: response.statusCode, text: await response.body.text() };
    },
    close: () => agent.close(),
  };
}

/** `count` fresh id tokens from the environment's dev issuer, minted ahead of a load run. */
export async function mintTokens(env: PostgresDevEnvironment, count: number, claims: Record<string, string> = {}): Promise<string[]> {
  const mint: DevTokenMinter = await createDevTokenMinter(join(env.dir, 'oidc', 'dev-issuer-key.json'), DEV_AUDIENCE);
  const tokens: string[] = [];
  while (tokens.length < count) {
    const batch = Math.min(500, count - tokens.length);
    tokens.push(...(await Promise.all(Array.from({ length: batch }, () => mint(claims, 3600)))));
  }
  return tokens;
}

/** Runs `task(i)` for i in [0, count) with at most `concurrency` at once, in order of i. */
export async function runConcurrently(count: number, concurrency: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next;
      next += 1;
      await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, () => worker()));
}
