/**
 * `npm run bench -- --only storage-compare`: the end-to-end sign rate with PostgreSQL
 * against SQLite, on the same machine, in one run.
 *
 * Two development set-ups made by `signet init` (each in a child process: SoftHSM
 * reads its configuration once per process), one recording into a SQLite file, one
 * into a fresh schema of the PostgreSQL server at --postgres-url (default
 * $SIGNET_BENCH_POSTGRES_URL, else $SIGNET_TEST_POSTGRES_URL). Three services, each in
 * a process of its own (bench/serve.ts, which starts it exactly as `signet serve`
 * does): SQLite; PostgreSQL; and PostgreSQL with two replicas (two processes on the
 * same schema and token, the load split between them). Each is loaded in turn, closed
 * loop, N keep-alive mTLS connections in all, every request with a fresh RS256 id token
 * minted beforehand and a random digest: the full signing path. Rounds alternate the
 * order (A B C, C B A, …) so other work on the machine weighs on every variant alike.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createDevTokenMinter, DEV_AUDIENCE } from '../cli/dev-issuer.js';
import type { InitResult } from '../cli/init.js';
import { closedLoop, summarise, type LoadResult, type LoadRun, type LoadTarget } from './load.js';
import { freeServicePort, waitReady } from './local-service.js';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'cli', 'main.js');

export interface StorageCompareOptions {
  readonly postgresUrl: string;
  readonly seconds: number;
  readonly connections: number;
  readonly rounds: number;
  /** PostgreSQL connections per service (storage.postgres.poolSize); default the config's. */
  readonly poolSize: number | undefined;
  readonly keep: boolean;
  readonly log: (message: string) => void;
}

type Variant = 'sqlite' | 'postgres' | 'postgres-2-replicas';
const VARIANTS: readonly Variant[] = ['sqlite', 'postgres', 'postgres-2-replicas'];

export interface StorageCompareResult {
  readonly connections: number;
  readonly rounds: number;
  readonly seconds: number;
  readonly rates: Readonly<Record<Variant, LoadResult>>;
  /** PostgreSQL's rate over SQLite's, over all rounds and round by round. */
  readonly postgresOverSqlite: number;
  readonly postgresOverSqliteByRound: readonly number[];
  readonly twoReplicasOverSqlite: number;
  /** The machine's load averages (1, 5, 15 min) as the measured rounds began and ended: the rates depend on what else ran. */
  readonly loadAverage: { readonly before: readonly number[]; readonly after: readonly number[] };
}

function init(dir: string, port: number, postgres?: { url: string; schema: string }): InitResult {
  const args = [cli, 'init', '--dir', dir, '--port', String(port), '--json'];
  if (postgres !== undefined) args.push('--postgres-url', postgres.url, '--postgres-schema', postgres.schema);
  return JSON.parse(execFileSync(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] }).toString()) as InitResult;
}

/** bench/serve.ts on `port`, on the storage the config names (or this SQLite file). */
function serve(config: string, port: number, options: { database?: string; poolSize?: number | undefined }): ChildProcess {
  const args = [join(here, 'serve.js'), '--config', config, '--port', String(port)];
  if (options.database !== undefined) args.push('--database', options.database);
  if (options.poolSize !== undefined) args.push('--pool-size', String(options.poolSize));
  return spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Loads that ran side by side over the same seconds, as one run. */
function together(runs: readonly LoadRun[]): LoadRun {
  const statuses = new Map<number, number>();
  for (const run of runs) for (const [status, count] of run.statuses) statuses.set(status, (statuses.get(status) ?? 0) + count);
  return { latencies: runs.flatMap((run) => run.latencies), statuses, seconds: Math.max(...runs.map((run) => run.seconds)) };
}

export async function runStorageCompare(options: StorageCompareOptions): Promise<StorageCompareResult> {
  const { log } = options;
  const dir = mkdtempSync(join(tmpdir(), 'signet-bench-storage-'));
  const schema = `signet_bench_${Math.floor(Date.now() / 1000)}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: options.postgresUrl });
  admin.on('error', () => undefined);
  await admin.connect();
  const children: ChildProcess[] = [];
  try {
    await admin.query(`CREATE SCHEMA ${schema}`);
    log(`set-ups in ${dir} (SQLite) and PostgreSQL schema ${schema}`);
    const ports = { sqlite: await freeServicePort(), postgres: await freeServicePort(), second: await freeServicePort() };
    const sqliteInit = init(join(dir, 'sqlite'), ports.sqlite);
    const postgresInit = init(join(dir, 'postgres'), ports.postgres, { url: options.postgresUrl, schema });

    const services: Record<Variant, { init: InitResult; urls: string[] }> = {
      sqlite: { init: sqliteInit, urls: [`https://127.0.0.1:${ports.sqlite}`] },
      postgres: { init: postgresInit, urls: [`https://127.0.0.1:${ports.postgres}`] },
      'postgres-2-replicas': { init: postgresInit, urls: [`https://127.0.0.1:${ports.postgres}`, `https://127.0.0.1:${ports.second}`] },
    };
    children.push(serve(sqliteInit.config, ports.sqlite, { database: sqliteInit.database }));
    children.push(serve(postgresInit.config, ports.postgres, { poolSize: options.poolSize }));
    children.push(serve(postgresInit.config, ports.second, { poolSize: options.poolSize }));
    for (const { init: made, urls } of Object.values(services)) for (const url of urls) await waitReady(url, readFileSync(made.caCert), 300);

    // Tokens for the whole run, per set-up (each has its own dev issuer), sized for
    // 800/s (above any rate measured here); a variant that ran out would show failures.
    log('minting RS256 id tokens for the run…');
    const perVariant = Math.ceil(800 * (options.seconds * options.rounds + Math.min(2, options.seconds)));
    const tokens = new Map<InitResult, string[]>();
    for (const made of [sqliteInit, postgresInit]) {
      const mint = await createDevTokenMinter(join(dirname(made.config), 'oidc', 'dev-issuer-key.json'), DEV_AUDIENCE);
      const count = made === postgresInit ? perVariant * 2 : perVariant;
      const minted: string[] = [];
      while (minted.length < count) minted.push(...(await Promise.all(Array.from({ length: Math.min(500, count - minted.length) }, () => mint({}, 7200)))));
      tokens.set(made, minted);
    }
    const targetFor = (made: InitResult, url: string): LoadTarget => {
      const pool = tokens.get(made) ?? [];
      return {
        url: `${url}/v1/sign`,
        ca: readFileSync(made.caCert),
        cert: readFileSync(made.clientCert),
        key: readFileSync(made.clientKey),
        body: () => JSON.stringify({ project: made.project, digest: { algorithm: 'sha256', value: randomBytes(32).toString('hex') } }),
        headers: () => ({ authorization: `Bearer ${pool.pop() ?? ''}` }),
      };
    };
    const load = async (variant: Variant, seconds: number): Promise<LoadRun> => {
      const { init: made, urls } = services[variant];
      const share = Math.max(1, Math.floor(options.connections / urls.length));
      return together(await Promise.all(urls.map((url) => closedLoop(targetFor(made, url), share, seconds))));
    };

    log(`end to end, ${options.connections} keep-alive mTLS connections: SQLite, PostgreSQL, PostgreSQL ×2, ${options.rounds} alternating rounds of ${options.seconds} s…`);
    // Warm-up: JIT, TLS sessions, HSM session pools, connection pools.
    for (const variant of VARIANTS) await load(variant, Math.min(2, options.seconds));
    const runs: Record<Variant, LoadRun[]> = { sqlite: [], postgres: [], 'postgres-2-replicas': [] };
    const loadBefore = loadavg();
    for (let round = 0; round < options.rounds; round += 1) {
      const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
      for (const variant of order) runs[variant].push(await load(variant, options.seconds));
      const last = (variant: Variant): string => summarise(runs[variant].slice(-1)).perSecond.toFixed(0);
      log(`  round ${round + 1}: SQLite ${last('sqlite')}/s, PostgreSQL ${last('postgres')}/s, PostgreSQL ×2 ${last('postgres-2-replicas')}/s`);
    }
    const rates = { sqlite: summarise(runs.sqlite), postgres: summarise(runs.postgres), 'postgres-2-replicas': summarise(runs['postgres-2-replicas']) };
    return {
      connections: options.connections,
      rounds: options.rounds,
      seconds: options.seconds,
      rates,
      postgresOverSqlite: rates.postgres.perSecond / rates.sqlite.perSecond,
      postgresOverSqliteByRound: runs.postgres.map((run, i) => summarise([run]).perSecond / summarise([runs.sqlite[i] as LoadRun]).perSecond),
      twoReplicasOverSqlite: rates['postgres-2-replicas'].perSecond / rates.sqlite.perSecond,
      loadAverage: { before: loadBefore, after: loadavg() },
    };
  } finally {
    for (const child of children) await stop(child);
    if (!options.keep) {
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
    await admin.end();
  }
}

export function formatStorageCompare(result: StorageCompareResult): string {
  const row = (name: string, r: LoadResult): string =>
    `${name.padEnd(40)} ${r.perSecond.toFixed(0).padStart(7)}/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  (${r.requests} requests, ${r.failures} failed)`;
  const percent = (ratio: number): string => `${(ratio * 100).toFixed(1)}%`;
  return [
    '',
    row(`POST /v1/sign, SQLite, ${result.connections} clients`, result.rates.sqlite),
    row(`POST /v1/sign, PostgreSQL`, result.rates.postgres),
    row(`POST /v1/sign, PostgreSQL, 2 replicas`, result.rates['postgres-2-replicas']),
    `PostgreSQL / SQLite                      ${percent(result.postgresOverSqlite)}   (rounds: ${result.postgresOverSqliteByRound.map(percent).join(', ')}; target ≥ 50%)`,
    `PostgreSQL, 2 replicas / SQLite          ${percent(result.twoReplicasOverSqlite)}`,
    `load average (1, 5, 15 min)             ${result.loadAverage.before.map((v) => v.toFixed(2)).join(', ')} before, ${result.loadAverage.after.map((v) => v.toFixed(2)).join(', ')} after`,
    '',
  ].join('\n');
}
