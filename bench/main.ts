/**
 * `npm run bench`: the signing figures, from one run on one fresh SoftHSM token.
 *
 *   1. raw PKCS#11 P-256 sign rate: a sync C_Sign loop on one session, in its own
 *      process (the limit the service is measured against);
 *   2. `pkcs11-tool --sign`, one process per signature (what a shell step in CI does);
 *   3. the service end to end: `signet serve` in its own process, POST /v1/sign over
 *      keep-alive mutual TLS from N concurrent clients (closed loop) → max rate,
 *      p50/p99; then an open loop at half that rate → p50/p99. Every request carries
 *      a fresh RS256 id token (what GitHub and GitLab issue), minted before the run;
 *   4. the identity + policy step alone (token verification and the policy decision,
 *      in this process, one at a time), to show its share of the end-to-end cost.
 *
 * The load generator runs on the same machine as the service and the token, so all
 * three share the machine's cores; the figures are for that set-up.
 *
 * Options: --seconds S (per phase, default 10), --connections N (default 16), --json,
 * --only signing|log, --log-entries N (default 1,000,000). The log figures are in
 * bench/log-bench.ts.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createDevTokenMinter, DEV_AUDIENCE } from '../cli/dev-issuer.js';
import { runInit } from '../cli/init.js';
import { loadConfig } from '../config/load.js';
import { decideSignRequest } from '../policy/evaluate.js';
import { loadPolicyFile } from '../policy/load.js';
import { createPipelineTokenVerifier } from '../policy/oidc/verifier.js';
import { openStore } from '../store/open-store.js';
import { closedLoop, openLoop, type LoadResult, type LoadTarget } from './load.js';
import { runLogBench } from './log-bench.js';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'cli', 'main.js');

const { values } = parseArgs({
  options: {
    seconds: { type: 'string' },
    connections: { type: 'string' },
    json: { type: 'boolean' },
    keep: { type: 'boolean' },
    only: { type: 'string' },
    'log-entries': { type: 'string' },
  },
});
const seconds = Number(values.seconds ?? '10');
const connections = Number(values.connections ?? '16');

function log(message: string): void {
  if (values.json !== true) process.stderr.write(`${message}\n`);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => { resolve(typeof address === 'object' && address !== null ? address.port : 0); });
    });
    server.on('error', reject);
  });
}

async function waitReady(url: string, ca: Buffer): Promise<void> {
  const { get } = await import('node:https');
  for (let i = 0; i < 100; i += 1) {
    const ok = await new Promise<boolean>((resolve) => {
      get(`${url}/readyz`, { ca, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      }).on('error', () => { resolve(false); });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the service did not become ready');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'signet-bench-'));
  const port = await freePort();
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
  const tokenCount = Math.ceil(3000 * (Math.min(2, seconds) + seconds * 1.5)) + 5000;
  const tokens: string[] = [];
  for (let i = 0; i < tokenCount; i += 500) {
    tokens.push(...(await Promise.all(Array.from({ length: Math.min(500, tokenCount - i) }, () => mint({}, 3600)))));
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

  log(`4/4 end to end: signet serve, ${connections} keep-alive mTLS clients…`);
  const server = spawn(process.execPath, [cli, 'serve', '--config', init.config], { stdio: ['ignore', 'ignore', 'inherit'] });
  try {
    const ca = readFileSync(init.caCert);
    await waitReady(init.url, ca);
    const target: LoadTarget = {
      url: `${init.url}/v1/sign`,
      ca,
      cert: readFileSync(init.clientCert),
      key: readFileSync(init.clientKey),
      body: () => JSON.stringify({ project: init.project, digest: { algorithm: 'sha256', value: randomBytes(32).toString('hex') } }),
      headers: () => ({ authorization: `Bearer ${tokens.pop() ?? ''}` }),
    };
    await closedLoop(target, connections, Math.min(2, seconds)); // warm-up: JIT, TLS sessions, pool
    const max = await closedLoop(target, connections, seconds);
    const half = await openLoop(target, max.perSecond / 2, seconds, connections);

    const results = {
      machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
      rawPkcs11PerSecond: raw.perSecond,
      pkcs11Tool: { msPerSignature: toolMs, perSecond: toolPerSecond },
      endToEnd: { connections, ...max },
      halfLoad: { targetPerSecond: max.perSecond / 2, ...half },
      identityAndPolicy: { perSecondOneCore: identityPerSecond, microsecondsEach: 1e6 / identityPerSecond },
      ratios: {
        endToEndOverRaw: max.perSecond / raw.perSecond,
        endToEndOverPkcs11Tool: max.perSecond / toolPerSecond,
        // CPU the identity step takes at the measured end-to-end rate, as a share of the whole machine.
        identityShareOfMachine: max.perSecond / identityPerSecond / (await import('node:os')).cpus().length,
      },
    };
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    } else {
      const row = (name: string, r: LoadResult): string =>
        `${name.padEnd(34)} ${r.perSecond.toFixed(0).padStart(7)}/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  (${r.requests} requests, ${r.failures} failed)`;
      process.stdout.write(
        [
          '',
          `raw PKCS#11 P-256 sign (sync, 1 session)  ${raw.perSecond.toFixed(0)}/s`,
          `pkcs11-tool --sign (process per sig)      ${toolMs.toFixed(1)} ms = ${toolPerSecond.toFixed(1)}/s`,
          row(`POST /v1/sign, ${connections} clients, max`, max),
          row(`POST /v1/sign at half load`, half),
          `end-to-end / raw PKCS#11                 ${(results.ratios.endToEndOverRaw * 100).toFixed(1)}%   (target ≥ 40%)`,
          `p99 at half load                         ${half.p99Ms.toFixed(2)} ms (target < 10 ms)`,
          `end-to-end / pkcs11-tool                 ${results.ratios.endToEndOverPkcs11Tool.toFixed(0)}x   (target ≥ 50x)`,
          `identity + policy (RS256), one core      ${identityPerSecond.toFixed(0)}/s = ${(1e6 / identityPerSecond).toFixed(0)} µs each`,
          `  share of the machine at the e2e rate    ${(results.ratios.identityShareOfMachine * 100).toFixed(1)}%   (target ≤ 25% of throughput)`,
          '',
        ].join('\n'),
      );
    }
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
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

async function all(): Promise<void> {
  if (values.only === 'log') {
    await logFigures();
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
