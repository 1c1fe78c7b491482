/**
 * `npm run bench`: the signing figures, from one run on one fresh SoftHSM token.
 *
 *   1. raw PKCS#11 P-256 sign rate: a sync C_Sign loop on one session, in its own
 *      process (the limit the service is measured against);
 *   2. `pkcs11-tool --sign`, one process per signature (what a shell step in CI does);
 *   3. the service end to end: the service in its own process (bench/serve.ts, which
 *      starts it exactly as `signet serve` does), POST /v1/sign over keep-alive mutual
 *      TLS from N concurrent clients (closed loop) → max rate, p50/p99; then an open
 *      loop at half that rate → p50/p99. Every request carries a fresh RS256 id token
 *      (what GitHub and GitLab issue), minted before the run. The cost of the
 *      transparency log is measured in the same run: a second service, on a copy of
 *      the database, runs with the log swapped for one that records nothing
 *      (bench/unlogged-log.ts), and the two are loaded in turn, alternating, for
 *      --rounds rounds each, so that other work on the machine weighs on both alike.
 *      Beside the rates it reports the CPU each variant spent per answered request
 *      (the service's threads, its main thread alone, and the load generator), read
 *      from /proc: the share of the log's cost that the rates alone hide when the
 *      machine, not the service, is what limits them; the same CPU with the two loaded
 *      at one rate (open loops at three quarters of the rate with the log, alternating,
 *      --rounds rounds), since CPU per request also depends on the rate; and how many
 *      log entries each checkpoint covered (counted in the service's database before
 *      and after each round), which says how many signing rounds a request paid for.
 *      Then the two sign rates at saturation: the services with and without the log
 *      in alternating closed-loop rounds of --saturation-connections clients, each
 *      answering all it can. That is the figure the log's target (with the log ≥ 80%
 *      of without) is about: at --connections clients the service without the log is
 *      already saturated and the one with the log is not, since each of its requests
 *      also waits for a checkpoint round (BENCHMARKS.md, "The log's share of the rate,
 *      machine by machine");
 *   4. the identity + policy step alone (token verification and the policy decision,
 *      in this process, one at a time), to show its share of the end-to-end cost.
 *
 * The load generator runs on the same machine as the service and the token, so all
 * three share the machine's cores; the figures are for that set-up.
 *
 * Options: --seconds S (per phase, default 10), --connections N (default 16),
 * --saturation-connections N (default 64; 0 leaves the rates at saturation out),
 * --rounds R (with/without-log rounds, default 3), --json, --only signing|log|log-path|storage-compare|verify,
 * --log-entries N (default 1,000,000), --profile DIR (V8 CPU profiles of the services, and
 * DIR/phases.json: when each measured phase ran, for bench/profile-phases.ts to read a
 * profile over one kind of phase). The log figures are in bench/log-bench.ts.
 *
 * --against DIR [--against-log on|off]: a same-run A/B of two builds. The third service
 * is then another checkout's (DIR/dist/bench/serve.js, built with `npm run build`),
 * with its log on (default) or off, in place of the one with promises; it runs on its
 * own copy of the same database, in the same alternating rounds, so the comparison is
 * free of the drift between separate runs (±5 points on the with/without ratio on the
 * development machine).
 *
 * `--only verify` (bench/verify-bench.ts) times `signet verify` of a release of
 * --artifacts N files (default 1,000) totalling --release-mib M (default 1,024) against
 * `sha256sum` over the same files, in one run; not part of the default run either (it
 * writes a gigabyte).
 *
 * `--only log-path` (bench/log-path.ts) measures the log's own main-thread CPU per
 * signing request in this process (--connections callers, --rounds rounds of --seconds):
 * with the log, and, paced to its rate, with appends only and without it; the quick,
 * low-noise way to compare changes to the log, beside the end-to-end ratio that the
 * issue's figure is about. Not part of the default run.
 *
 * `--only storage-compare` (bench/storage-compare.ts) measures the end-to-end sign rate
 * on PostgreSQL against SQLite in one run, with --postgres-url U (default
 * $SIGNET_BENCH_POSTGRES_URL or $SIGNET_TEST_POSTGRES_URL) and --pool-size N; it is not
 * part of the default run, which needs no database server.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { createDevTokenMinter, DEV_AUDIENCE } from '../cli/dev-issuer.js';
import { runInit } from '../cli/init.js';
import { loadConfig } from '../config/load.js';
import { decideSignRequest } from '../policy/evaluate.js';
import { loadPolicyFile } from '../policy/load.js';
import { createPipelineTokenVerifier } from '../policy/oidc/verifier.js';
import { openStore } from '../store/open-store.js';
import { processCpuSeconds, threadCpuSeconds } from './cpu.js';
import { closedLoop, openLoop, summarise, type LoadResult, type LoadRun, type LoadTarget } from './load.js';
import { runLogBench } from './log-bench.js';
import { formatLogPathBench, runLogPathBench } from './log-path.js';
import { freeServicePort, waitReady } from './local-service.js';
import { PHASES_FILE, type ProfiledPhase } from './phases.js';
import { meanInterval95 } from './stats.js';
import { formatStorageCompare, runStorageCompare } from './storage-compare.js';
import { formatVerifyBench, runVerifyBench } from './verify-bench.js';

const here = dirname(fileURLToPath(import.meta.url));

const { values } = parseArgs({
  options: {
    seconds: { type: 'string' },
    connections: { type: 'string' },
    'saturation-connections': { type: 'string' },
    rounds: { type: 'string' },
    json: { type: 'boolean' },
    keep: { type: 'boolean' },
    only: { type: 'string' },
    'log-entries': { type: 'string' },
    'postgres-url': { type: 'string' },
    'pool-size': { type: 'string' },
    artifacts: { type: 'string' },
    profile: { type: 'string' },
    'release-mib': { type: 'string' },
    against: { type: 'string' },
    'against-log': { type: 'string' },
  },
});
const seconds = Number(values.seconds ?? '10');
const connections = Number(values.connections ?? '16');
/** Clients for the rates at saturation (0: not measured); see the header, step 3. */
const saturationConnections = Number(values['saturation-connections'] ?? '64');
const rounds = Number(values.rounds ?? '3');

/** --against: another build's service in the third slot (see the header). */
const against = ((): { readonly dir: string; readonly serve: string; readonly log: 'on' | 'off' } | undefined => {
  if (values.against === undefined) return undefined;
  const dir = resolve(values.against);
  const serve = join(dir, 'dist', 'bench', 'serve.js');
  if (!existsSync(serve)) throw new Error(`--against: ${serve} does not exist (run npm run build in ${dir})`);
  const againstLog = values['against-log'] ?? 'on';
  if (againstLog !== 'on' && againstLog !== 'off') throw new Error('--against-log must be on or off');
  return { dir, serve, log: againstLog };
})();

function log(message: string): void {
  if (values.json !== true) process.stderr.write(`${message}\n`);
}

type LogVariant = 'on' | 'off' | 'promises';

/** Average CPU per answered request, in microseconds. */
interface CpuPerRequest {
  readonly serviceMicroseconds: number;
  readonly mainThreadMicroseconds: number;
  readonly loadGeneratorMicroseconds: number;
  /** The service's CPU per request by thread (bench/cpu.ts threadCpuSeconds). */
  readonly threadMicroseconds: Readonly<Record<string, number>>;
}

/**
 * CPU seconds over some measured runs: the service process (all its threads, SoftHSM
 * included), its main thread alone (the event loop: HTTP, TLS, SQLite, the log's Merkle
 * work), and this load generator; and the requests answered meanwhile.
 */
interface CpuAccount {
  service: number;
  /** The service's CPU seconds by thread (bench/cpu.ts threadCpuSeconds). */
  readonly threads: Map<string, number>;
  mainThread: number;
  client: number;
  requests: number;
}

function emptyCpu(): CpuAccount {
  return { service: 0, threads: new Map(), mainThread: 0, client: 0, requests: 0 };
}

function perRequest(cpu: CpuAccount): CpuPerRequest {
  const micros = (seconds: number): number => (seconds / cpu.requests) * 1e6;
  return {
    serviceMicroseconds: micros(cpu.service),
    mainThreadMicroseconds: micros(cpu.mainThread),
    loadGeneratorMicroseconds: micros(cpu.client),
    threadMicroseconds: Object.fromEntries([...cpu.threads].map(([name, seconds]) => [name, micros(seconds)])),
  };
}

/**
 * With --profile: when each measured phase ran, on the monotonic clock V8's CPU
 * profiles use, and how many requests it answered, so a profile can be read over one
 * kind of phase alone (bench/profile-phases.ts).
 */
interface MeasuredPhase {
  readonly service: LogVariant;
  readonly phase: ProfiledPhase['phase'];
}
const profiledPhases: ProfiledPhase[] = [];
const monotonicMicroseconds = (): number => Number(process.hrtime.bigint() / 1000n);

/** Runs `load` and adds to `account` the CPU the service and this process spent meanwhile, and the requests answered. */
async function withCpu(child: ChildProcess, account: CpuAccount, load: () => Promise<LoadRun>, phase?: MeasuredPhase): Promise<LoadRun> {
  const serviceBefore = processCpuSeconds(child.pid);
  const threadsBefore = threadCpuSeconds(child.pid);
  const mainBefore = processCpuSeconds(child.pid, 'main thread');
  const clientBefore = process.cpuUsage();
  const startMicroseconds = monotonicMicroseconds();
  const run = await load();
  if (phase !== undefined) profiledPhases.push({ ...phase, startMicroseconds, endMicroseconds: monotonicMicroseconds(), requests: run.latencies.length });
  const client = process.cpuUsage(clientBefore);
  account.service += processCpuSeconds(child.pid) - serviceBefore;
  for (const [name, seconds] of threadCpuSeconds(child.pid)) account.threads.set(name, (account.threads.get(name) ?? 0) + seconds - (threadsBefore.get(name) ?? 0));
  account.mainThread += processCpuSeconds(child.pid, 'main thread') - mainBefore;
  account.client += (client.user + client.system) / 1e6;
  account.requests += run.latencies.length;
  return run;
}

/** What alternating closed-loop rounds gather for one service. */
interface RoundTally {
  readonly runs: LoadRun[];
  /** CPU over the rounds. */
  readonly cpu: CpuAccount;
  /** Log entries and checkpoints the service added in the rounds. */
  readonly log: { entries: number; checkpoints: number };
}

/** A service of the run, with the tally of its rounds at --connections clients. */
interface BenchService extends RoundTally {
  readonly port: number;
  readonly child: ChildProcess;
  nextToken: number;
  readonly database: string;
}

/** How many entries a checkpoint covered under full load: what signing rounds cost per request. */
function entriesPerCheckpoint(growth: { entries: number; checkpoints: number }): string {
  return growth.checkpoints === 0 ? `— (${growth.entries} entries)` : `${(growth.entries / growth.checkpoints).toFixed(1)} (${growth.checkpoints} checkpoints)`;
}

/**
 * Rows of the log's tables in a service's database, read through a read-only
 * connection of our own (WAL: the service goes on writing meanwhile).
 */
function logRowCounts(database: string): { entries: number; checkpoints: number } {
  const db = new Database(database, { readonly: true, fileMustExist: true });
  try {
    const count = (table: string): number => Number(db.prepare(`SELECT count(*) FROM ${table}`).pluck().get());
    return { entries: count('log_entries'), checkpoints: count('log_checkpoints') };
  } finally {
    db.close();
  }
}

/** `variants` in the order of round `round`: A B C, then C B A, …, so none always goes first or last. */
function alternate<T>(variants: readonly T[], round: number): readonly T[] {
  return round % 2 === 0 ? variants : [...variants].reverse();
}

/** One closed-loop round of --seconds for each service of `order`, in turn, added to its tally. */
async function closedRound(
  order: readonly LogVariant[],
  options: {
    readonly clients: number;
    readonly targetOf: (variant: LogVariant) => LoadTarget;
    readonly service: (variant: LogVariant) => BenchService;
    readonly tallyOf: (variant: LogVariant) => RoundTally;
    readonly phase?: ProfiledPhase['phase'];
  },
): Promise<void> {
  for (const variant of order) {
    const measured = options.service(variant);
    const tally = options.tallyOf(variant);
    const logBefore = logRowCounts(measured.database);
    const phase = options.phase === undefined ? undefined : { service: variant, phase: options.phase };
    tally.runs.push(await withCpu(measured.child, tally.cpu, () => closedLoop(options.targetOf(variant), options.clients, seconds), phase));
    const logAfter = logRowCounts(measured.database);
    tally.log.entries += logAfter.entries - logBefore.entries;
    tally.log.checkpoints += logAfter.checkpoints - logBefore.checkpoints;
  }
}

/** The rate of a tally's latest round. */
function lastRate(tally: RoundTally): string {
  return summarise(tally.runs.slice(-1)).perSecond.toFixed(0);
}

/** Round by round, the rate of `runs` over the rate of `baseline` in the same round. */
function ratiosOfRounds(runs: readonly LoadRun[], baseline: readonly LoadRun[]): number[] {
  return runs.map((run, index) => summarise([run]).perSecond / summarise([baseline[index] as LoadRun]).perSecond);
}

/** The two services' sign rates at saturation (the header, step 3). */
interface SaturationResult {
  readonly connections: number;
  readonly withLog: LoadResult;
  readonly withoutLog: LoadResult;
  /** The rate with the log over the rate without it, over all the rounds. */
  readonly withLogOverWithout: number;
  readonly byRound: readonly number[];
  readonly interval: ReturnType<typeof meanInterval95>;
  readonly cpuPerRequest: { readonly withLog: CpuPerRequest; readonly withoutLog: CpuPerRequest };
  /** Log entries and checkpoints the service with the log added in these rounds. */
  readonly logGrowth: { readonly entries: number; readonly checkpoints: number };
}

/**
 * The service with the log and the one without, in alternating closed-loop rounds of
 * --saturation-connections clients, after a warm-up at that many. A service's sign
 * rate is what it answers with all the work it can take; with --connections clients
 * the service with the log is not there yet (BENCHMARKS.md, "The log's share of the
 * rate, machine by machine").
 */
async function saturationRounds(
  targetOf: (variant: LogVariant) => LoadTarget,
  service: (variant: LogVariant) => BenchService,
  warmUpSeconds: number,
): Promise<SaturationResult> {
  log(`  at saturation, ${saturationConnections} clients: with the log and without it, ${rounds} alternating rounds of ${seconds} s…`);
  const pair = ['on', 'off'] as const;
  const emptyTally = (): RoundTally => ({ runs: [], cpu: emptyCpu(), log: { entries: 0, checkpoints: 0 } });
  const tallies = { on: emptyTally(), off: emptyTally() };
  const tallyOf = (variant: LogVariant): RoundTally => (variant === 'off' ? tallies.off : tallies.on);
  for (const variant of pair) await closedLoop(targetOf(variant), saturationConnections, warmUpSeconds);
  for (let round = 0; round < rounds; round += 1) {
    await closedRound(alternate(pair, round), { clients: saturationConnections, targetOf, service, tallyOf });
    log(`  saturation round ${round + 1}: with the log ${lastRate(tallies.on)}/s, without ${lastRate(tallies.off)}/s`);
  }
  const { on, off } = tallies;
  const byRound = ratiosOfRounds(on.runs, off.runs);
  const [withLog, withoutLog] = [summarise(on.runs), summarise(off.runs)];
  return {
    connections: saturationConnections,
    withLog,
    withoutLog,
    withLogOverWithout: withLog.perSecond / withoutLog.perSecond,
    byRound,
    interval: meanInterval95(byRound),
    cpuPerRequest: { withLog: perRequest(on.cpu), withoutLog: perRequest(off.cpu) },
    logGrowth: on.log,
  };
}

/** The service in its own process (bench/serve.ts), on `port` and `database`, with its log, without, or with promises. */
function startBenchService(configPath: string, port: number, database: string, variant: LogVariant): ChildProcess {
  // --profile DIR: each service writes a V8 CPU profile there when it stops (open it in Chrome's DevTools).
  const profile = values.profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', values.profile, '--cpu-prof-name', `service-log-${variant}.cpuprofile`];
  const [serve, logOption] = variant === 'promises' && against !== undefined ? [against.serve, against.log] : [join(here, 'serve.js'), variant];
  const args = [...profile, serve, '--config', configPath, '--port', String(port), '--database', database, '--log', logOption];
  return spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function stopBenchService(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'signet-bench-'));
  const port = await freeServicePort();
  log(`set-up in ${dir}`);
  const init = await runInit({ dir, port, force: false });
  const store = await openStore({ driver: 'sqlite', sqlite: { path: init.database } });
  const key = await store.keys.get(init.keyId);
  await store.close();
  if (key === null) throw new Error('init made no key');
  const config = loadConfig(init.config);
  const modulePath = config.hsm.module;
  const pinFile = join(dir, 'secrets', 'hsm-pin');
  const childEnv = { ...process.env, SOFTHSM2_CONF: init.softhsm2Conf };

  log('1/4 raw PKCS#11 sign rate (sync loop, one session)…');
  const raw = JSON.parse(
    execFileSync(process.execPath, [join(here, 'raw-pkcs11.js'), modulePath, 'signet-dev', pinFile, key.hsmKeyId, String(Math.min(seconds, 5))], {
      env: childEnv,
    }).toString(),
  ) as { perSecond: number };

  log('2/4 pkcs11-tool --sign, one process per signature…');
  const digestFile = join(dir, 'digest.bin');
  writeFileSync(digestFile, createHash('sha256').update('bench').digest());
  const pin = readFileSync(pinFile, 'utf8').trim();
  const toolRuns = 20;
  const t0 = performance.now();
  for (let i = 0; i < toolRuns; i += 1) {
    execFileSync(
      'pkcs11-tool',
      ['--module', modulePath, '--token-label', 'signet-dev', '--login', '--pin', pin, '--sign', '--id', key.hsmKeyId, '-m', 'ECDSA', '--input-file', digestFile, '--output-file', join(dir, 'sig.bin')],
      { env: childEnv, stdio: 'ignore' },
    );
  }
  const toolMs = (performance.now() - t0) / toolRuns;
  const toolPerSecond = 1000 / toolMs;

  log('minting RS256 id tokens for the run…');
  const mint = await createDevTokenMinter(join(dir, 'oidc', 'dev-issuer-key.json'), DEV_AUDIENCE);
  // The two services keep their token uses in separate databases, so each may use
  // every token once: one pool, one cursor per service. Sized for 2,000/s: warm-up,
  // the closed-loop rounds, the rounds at three quarters of the rate, half load, and
  // the warm-up and rounds at saturation.
  const warmUpSeconds = Math.min(2, seconds);
  const saturationSeconds = saturationConnections > 0 ? warmUpSeconds + seconds * rounds : 0;
  const tokenCount = Math.ceil(2000 * (warmUpSeconds + 1.75 * seconds * rounds + seconds + saturationSeconds));
  const tokens: string[] = [];
  for (let i = 0; i < tokenCount + 5000; i += 500) {
    tokens.push(...(await Promise.all(Array.from({ length: Math.min(500, tokenCount + 5000 - i) }, () => mint({}, 3600)))));
  }

  log('3/4 identity + policy step alone…');
  const verifier = createPipelineTokenVerifier(config.oidc);
  const policy = loadPolicyFile(config.policy.file);
  const sample = tokens.splice(0, 5000);
  const t1 = performance.now();
  for (const token of sample) {
    const identity = await verifier.verify(token);
    decideSignRequest(policy.document, {
      project: init.project,
      keyName: undefined,
      clientFingerprint: 'x',
      identity: { issuerName: identity.issuerName, claims: identity.claims },
      digestAlgorithm: 'sha256',
      format: 'raw',
      manifest: undefined,
      now: new Date(),
    });
  }
  const identityPerSecond = sample.length / ((performance.now() - t1) / 1000);

  log(`4/4 end to end, ${connections} keep-alive mTLS clients: with the log, without it, and ${against === undefined ? 'with promises' : `the build in ${against.dir} (log ${against.log})`}, ${rounds} alternating rounds of ${seconds} s…`);
  // Every service starts from init's database, each on a file of its own.
  const variants: readonly LogVariant[] = ['on', 'off', 'promises'];
  const services = new Map<LogVariant, BenchService>();
  const ca = readFileSync(init.caCert);
  const urlOf = (servicePort: number): string => {
    const url = new URL(init.url);
    url.port = String(servicePort);
    return url.origin;
  };
  for (const variant of variants) {
    const database = variant === 'on' ? init.database : join(dir, `log-${variant}.db`);
    if (variant !== 'on') copyFileSync(init.database, database);
    const servicePort = variant === 'on' ? port : await freeServicePort();
    services.set(variant, { port: servicePort, child: startBenchService(init.config, servicePort, database, variant), nextToken: 0, runs: [], cpu: emptyCpu(), database, log: { entries: 0, checkpoints: 0 } });
    // One at a time: SoftHSM processes starting together on one token directory
    // sometimes miss the token while another rewrites its files.
    await waitReady(urlOf(servicePort), ca, 100);
  }
  const service = (variant: LogVariant): BenchService => {
    const found = services.get(variant);
    if (found === undefined) throw new Error(`no ${variant} service`);
    return found;
  };
  try {
    const targetOf = (variant: LogVariant): LoadTarget => ({
      url: `${urlOf(service(variant).port)}/v1/sign`,
      ca,
      cert: readFileSync(init.clientCert),
      key: readFileSync(init.clientKey),
      body: () => JSON.stringify({ project: init.project, digest: { algorithm: 'sha256', value: randomBytes(32).toString('hex') } }),
      headers: () => {
        const token = tokens[service(variant).nextToken] ?? '';
        service(variant).nextToken += 1;
        return { authorization: `Bearer ${token}` };
      },
    });
    // Warm-up: JIT, TLS sessions, HSM session pools.
    for (const variant of variants) await closedLoop(targetOf(variant), connections, warmUpSeconds);
    for (let round = 0; round < rounds; round += 1) {
      // A B C, C B A, …: none always goes first or last.
      await closedRound(alternate(variants, round), { clients: connections, targetOf, service, tallyOf: service, phase: 'closed loop' });
      const last = (variant: LogVariant): string => lastRate(service(variant));
      log(`  round ${round + 1}: with the log ${last('on')}/s, without ${last('off')}/s, ${against === undefined ? 'with promises' : 'that build'} ${last('promises')}/s`);
    }
    const max = summarise(service('on').runs);
    const baseline = summarise(service('off').runs);
    const promising = summarise(service('promises').runs);
    const ratiosByRound = (variant: LogVariant): number[] => ratiosOfRounds(service(variant).runs, service('off').runs);
    const roundRatios = ratiosByRound('on');
    const roundRatioInterval = meanInterval95(roundRatios);
    // CPU per answered request: where the log's cost goes when the machine is the limit.
    const cpuPerRequest = (variant: LogVariant): CpuPerRequest => perRequest(service(variant).cpu);
    const cpuByVariant = { on: cpuPerRequest('on'), off: cpuPerRequest('off'), promises: cpuPerRequest('promises') };
    // The same CPU with both services loaded at one rate: an open loop at three quarters
    // of the rate with the log, in alternating rounds as above. A service's CPU per
    // request depends on its rate (fewer requests in flight share each group commit,
    // fsync callback and event-loop wake-up), so the closed-loop figures charge the log
    // with its lower rate as well as with its own work; these do not.
    const commonRate = (max.perSecond * 3) / 4;
    const atCommonRate = { on: emptyCpu(), off: emptyCpu() };
    for (let round = 0; round < rounds; round += 1) {
      for (const variant of alternate(['on', 'off'] as const, round)) {
        await withCpu(service(variant).child, atCommonRate[variant], () => openLoop(targetOf(variant), commonRate, seconds, connections), { service: variant, phase: 'common rate' });
      }
    }
    const cpuAtCommonRate = { on: perRequest(atCommonRate.on), off: perRequest(atCommonRate.off) };
    const saturation = saturationConnections > 0 ? await saturationRounds(targetOf, service, warmUpSeconds) : undefined;
    await stopBenchService(service('off').child);
    await stopBenchService(service('promises').child);
    const half = summarise([await openLoop(targetOf('on'), max.perSecond / 2, seconds, connections)]);

    const cpus = (await import('node:os')).cpus().length;
    const results = {
      machine: { cpus, node: process.version },
      rawPkcs11PerSecond: raw.perSecond,
      pkcs11Tool: { msPerSignature: toolMs, perSecond: toolPerSecond },
      endToEnd: { connections, rounds, ...max },
      endToEndWithoutLog: { connections, rounds, ...baseline },
      // With --against, the "with promises" figures are that build's (see the header).
      thirdService: against === undefined ? 'with promises' : { build: against.dir, log: against.log },
      endToEndWithPromises: { connections, rounds, ...promising },
      halfLoad: { targetPerSecond: max.perSecond / 2, ...half },
      // The sign rates at saturation, with the log and without it (null with --saturation-connections 0).
      saturation:
        saturation === undefined
          ? null
          : {
              ...saturation,
              entriesPerCheckpoint: saturation.logGrowth.checkpoints === 0 ? null : saturation.logGrowth.entries / saturation.logGrowth.checkpoints,
            },
      cpuPerRequest: { withLog: cpuByVariant.on, withoutLog: cpuByVariant.off, withPromises: cpuByVariant.promises },
      cpuPerRequestAtCommonRate: { perSecond: commonRate, withLog: cpuAtCommonRate.on, withoutLog: cpuAtCommonRate.off },
      // Entries and checkpoints the services with a log added in the measured rounds.
      logGrowth: { withLog: service('on').log, third: service('promises').log },
      identityAndPolicy: { perSecondOneCore: identityPerSecond, microsecondsEach: 1e6 / identityPerSecond },
      ratios: {
        endToEndOverRaw: max.perSecond / raw.perSecond,
        endToEndOverPkcs11Tool: max.perSecond / toolPerSecond,
        // The rate with the log over the rate without it, over all rounds and round by round.
        withLogOverWithout: max.perSecond / baseline.perSecond,
        withLogOverWithoutByRound: roundRatios,
        // The rounds' mean and its 95% interval (bench/stats.ts): how far the figure can be trusted.
        withLogOverWithoutRoundInterval: roundRatioInterval,
        withPromisesOverWithout: promising.perSecond / baseline.perSecond,
        withPromisesOverWithoutByRound: ratiosByRound('promises'),
        // CPU the identity step takes at the measured end-to-end rate, as a share of the whole machine.
        identityShareOfMachine: max.perSecond / identityPerSecond / cpus,
      },
    };
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    } else {
      const row = (name: string, r: LoadResult): string =>
        `${name.padEnd(40)} ${r.perSecond.toFixed(0).padStart(7)}/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  (${r.requests} requests, ${r.failures} failed)`;
      const percent = (ratio: number): string => `${(ratio * 100).toFixed(1)}%`;
      const meanOfRounds = (interval: ReturnType<typeof meanInterval95>): string =>
        `    mean of the rounds ${percent(interval.mean)}, ${Number.isNaN(interval.halfWidth) ? 'no interval from one round' : `95% interval ${percent(interval.low)} to ${percent(interval.high)}`}`;
      const third = against === undefined ? { row: 'with a promise in every answer', ratio: 'with promises / without', cpu: 'with promises' } : { row: `the build in ${against.dir}, log ${against.log}`, ratio: 'that build / without', cpu: 'that build' };
      const threadRows = (on: CpuPerRequest, off: CpuPerRequest): string =>
        [...new Set([...Object.keys(on.threadMicroseconds), ...Object.keys(off.threadMicroseconds)])]
          .map((name) => `${name} ${(on.threadMicroseconds[name] ?? 0).toFixed(0)} / ${(off.threadMicroseconds[name] ?? 0).toFixed(0)}`)
          .join(', ');
      const cpuRow = (cpu: CpuPerRequest): string =>
        `${cpu.serviceMicroseconds.toFixed(0)} (main thread ${cpu.mainThreadMicroseconds.toFixed(0)}) + ${cpu.loadGeneratorMicroseconds.toFixed(0)} µs`;
      process.stdout.write(
        [
          '',
          `raw PKCS#11 P-256 sign (sync, 1 session)  ${raw.perSecond.toFixed(0)}/s`,
          `pkcs11-tool --sign (process per sig)      ${toolMs.toFixed(1)} ms = ${toolPerSecond.toFixed(1)}/s`,
          row(`POST /v1/sign, ${connections} clients, max`, max),
          row(`  same, without the log (baseline)`, baseline),
          `  with the log / without                 ${percent(results.ratios.withLogOverWithout)}   (rounds: ${roundRatios.map(percent).join(', ')}${saturation === undefined ? '; target ≥ 80%' : '; the target is judged at saturation, below'})`,
          meanOfRounds(roundRatioInterval),
          row(`  same, ${third.row}`, promising),
          `  ${third.ratio.padEnd(39)}${percent(results.ratios.withPromisesOverWithout)}   (rounds: ${results.ratios.withPromisesOverWithoutByRound.map(percent).join(', ')})`,
          `CPU per request, service + load generator: with the log ${cpuRow(cpuByVariant.on)}, without ${cpuRow(cpuByVariant.off)}, ${third.cpu} ${cpuRow(cpuByVariant.promises)}`,
          `CPU per request, both at ${commonRate.toFixed(0)}/s (open loop, ${rounds} alternating rounds): with the log ${cpuRow(cpuAtCommonRate.on)}, without ${cpuRow(cpuAtCommonRate.off)}`,
          `  by thread (µs), with / without the log: ${threadRows(cpuAtCommonRate.on, cpuAtCommonRate.off)}`,
          `entries per checkpoint under full load: with the log ${entriesPerCheckpoint(service('on').log)}, ${third.cpu} ${entriesPerCheckpoint(service('promises').log)}`,
          ...(saturation === undefined
            ? []
            : [
                row(`at saturation, ${saturation.connections} clients, with the log`, saturation.withLog),
                row(`  same, without the log`, saturation.withoutLog),
                `  with the log / without                 ${percent(saturation.withLogOverWithout)}   (rounds: ${saturation.byRound.map(percent).join(', ')}; target ≥ 80%)`,
                meanOfRounds(saturation.interval),
                `  CPU per request, service + load generator: with the log ${cpuRow(saturation.cpuPerRequest.withLog)}, without ${cpuRow(saturation.cpuPerRequest.withoutLog)}`,
                `  entries per checkpoint: ${entriesPerCheckpoint(saturation.logGrowth)}`,
              ]),
          row(`POST /v1/sign at half load`, half),
          `end-to-end / raw PKCS#11                 ${percent(results.ratios.endToEndOverRaw)}   (target ≥ 40%)`,
          `p99 at half load                         ${half.p99Ms.toFixed(2)} ms (target < 10 ms)`,
          `end-to-end / pkcs11-tool                 ${results.ratios.endToEndOverPkcs11Tool.toFixed(0)}x   (target ≥ 50x)`,
          `identity + policy (RS256), one core      ${identityPerSecond.toFixed(0)}/s = ${(1e6 / identityPerSecond).toFixed(0)} µs each`,
          `  share of the machine at the e2e rate    ${percent(results.ratios.identityShareOfMachine)}   (target ≤ 25% of throughput)`,
          '',
        ].join('\n'),
      );
    }
  } finally {
    for (const { child } of services.values()) await stopBenchService(child);
    if (values.profile !== undefined) writeFileSync(join(values.profile, PHASES_FILE), JSON.stringify(profiledPhases, null, 2));
    if (values.keep !== true) rmSync(dir, { recursive: true, force: true });
  }
}

async function logFigures(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'signet-bench-log-'));
  try {
    const r = await runLogBench(dir, { entries: Number(values['log-entries'] ?? '1000000'), seconds: Math.min(seconds, 5), log });
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ log: r }, null, 2)}\n`);
      return;
    }
    process.stdout.write(
      [
        '',
        `durable log appends (${r.appendConcurrency} concurrent)  ${r.durableAppendsPerSecond.toFixed(0)}/s   (target ≥ 5,000/s)`,
        `inclusion proof, ${r.entries}-entry log     median ${r.inclusionProofMedianMs.toFixed(3)} ms, p99 ${r.inclusionProofP99Ms.toFixed(3)} ms   (target < 1 ms median)`,
        `lookup by leaf hash, ${r.entries}-entry log median ${r.leafHashLookupMedianMs.toFixed(2)} ms`,
        `signet log verify, ${r.entries} entries    ${r.verifySeconds.toFixed(1)} s   (target < 20 s)`,
        `building that log (10k-entry batches)     ${r.buildSeconds.toFixed(1)} s`,
        `inclusion promises (HSM, 16 concurrent)   ${r.inclusionPromisesPerSecond.toFixed(0)}/s`,
        '',
      ].join('\n'),
    );
  } finally {
    if (values.keep !== true) rmSync(dir, { recursive: true, force: true });
  }
}

async function logPathFigures(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'signet-bench-log-path-'));
  try {
    log(`log path: ${rounds} rounds of ${seconds} s per variant…`);
    const result = await runLogPathBench(dir, { seconds, rounds, callers: connections, log });
    process.stdout.write(values.json === true ? `${JSON.stringify({ logPath: result }, null, 2)}\n` : formatLogPathBench(result));
  } finally {
    if (values.keep !== true) rmSync(dir, { recursive: true, force: true });
  }
}

async function storageFigures(): Promise<void> {
  const postgresUrl = values['postgres-url'] ?? process.env.SIGNET_BENCH_POSTGRES_URL ?? process.env.SIGNET_TEST_POSTGRES_URL;
  if (postgresUrl === undefined || postgresUrl === '') throw new Error('storage-compare needs --postgres-url (or SIGNET_BENCH_POSTGRES_URL)');
  const result = await runStorageCompare({
    postgresUrl,
    seconds,
    connections,
    rounds,
    poolSize: values['pool-size'] === undefined ? undefined : Number(values['pool-size']),
    keep: values.keep === true,
    log,
  });
  process.stdout.write(values.json === true ? `${JSON.stringify({ storage: result }, null, 2)}\n` : formatStorageCompare(result));
}

async function verifyFigures(): Promise<void> {
  const result = await runVerifyBench({
    artifacts: Number(values.artifacts ?? '1000'),
    releaseMiB: Number(values['release-mib'] ?? '1024'),
    rounds,
    keep: values.keep === true,
    port: await freeServicePort(),
    log,
  });
  process.stdout.write(values.json === true ? `${JSON.stringify({ verify: result }, null, 2)}\n` : formatVerifyBench(result));
}

async function all(): Promise<void> {
  if (values.only === 'log') {
    await logFigures();
    return;
  }
  if (values.only === 'log-path') {
    await logPathFigures();
    return;
  }
  if (values.only === 'storage-compare') {
    await storageFigures();
    return;
  }
  if (values.only === 'verify') {
    await verifyFigures();
    return;
  }
  await main();
  if (values.only === 'signing') return;
  // SoftHSM reads SOFTHSM2_CONF once per process: the log figures use a token of their
  // own, so they run in a fresh process.
  const { spawnSync } = await import('node:child_process');
  const passthrough = process.argv.slice(2).filter((arg) => arg !== '--only');
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), ...passthrough, '--only', 'log'], { stdio: 'inherit' });
  if (child.status !== 0) process.exitCode = child.status ?? 1;
}

all().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 1;
});
