/**
 * The transparency-log figures (`npm run bench -- --only log`, and part of `npm run bench`):
 *
 *   1. durable appends per second: many concurrent single-entry appends, as concurrent
 *      signing requests make them, group-committed by the store (SQLite, WAL, each
 *      commit fsynced before its callers hear of it);
 *   2. inclusion proofs in a 1,000,000-entry log: median and p99 per proof, read from
 *      storage (O(log n) node reads);
 *   3. `signet log verify` of that log from the database file: wall time;
 *   4. the cost of an inclusion promise (one HSM signature per entry).
 *
 * The checkpoints are signed by the real log key in a SoftHSM token made for the run.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { runInit } from '../cli/init.js';
import { runLogVerify } from '../cli/log-verify.js';
import { loadConfig } from '../config/load.js';
import { keyRef } from '../keyrotation/signing-keys.js';
import { canonicalBytes } from '../log/canonical-json.js';
import { TransparencyLog } from '../log/transparency-log.js';
import { openConfiguredHsm } from '../service/open-hsm.js';
import { openStore } from '../store/open-store.js';
import type { LogEntryInput } from '../store/store.js';

export interface LogBenchResult {
  readonly durableAppendsPerSecond: number;
  readonly appendConcurrency: number;
  readonly entries: number;
  readonly buildSeconds: number;
  readonly inclusionProofMedianMs: number;
  readonly inclusionProofP99Ms: number;
  /** Finding an entry by its leaf hash (GET /v1/log/proof?leafHash=…): one index seek per bucket of 256 entries on SQLite. */
  readonly leafHashLookupMedianMs: number;
  readonly verifySeconds: number;
  readonly inclusionPromisesPerSecond: number;
}

function leaf(i: number): Buffer {
  // About the size of a real decision entry's leaf.
  return canonicalBytes({ apiVersion: 'signet.dev/v1', kind: 'Bench', spec: { i, digest: randomBytes(32).toString('hex'), note: 'x'.repeat(200) } });
}

export async function runLogBench(dir: string, options: { entries: number; seconds: number; log: (m: string) => void }): Promise<LogBenchResult> {
  const init = await runInit({ dir, port: 0, force: false });
  const config = loadConfig(init.config);
  const hsm = await openConfiguredHsm(config, { poolSize: 1 });
  const store = await openStore({ driver: 'sqlite', sqlite: { path: join(dir, 'bench-log.db') } });
  try {
    // The log key lives in init's database; copy its record so this log uses it.
    const initStore = await openStore(config.storage);
    const logKey = await initStore.keys.getActive(config.log.keyName);
    await initStore.close();
    if (logKey === null) throw new Error('no log key');
    await store.keys.insert(logKey);
    const log = new TransparencyLog({
      store,
      origin: config.log.origin,
      publicKeyPem: logKey.publicKeyPem,
      sign: (digest) => hsm.signDigest(keyRef(logKey), { algorithm: 'sha256', value: digest }),
    });
    await log.open();

    options.log(`log 1/4 durable appends, ${options.seconds} s…`);
    const concurrency = 256;
    let appended = 0;
    const deadline = performance.now() + options.seconds * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < deadline) {
          await log.append([{ kind: 'bench/v1', leaf: leaf(appended), integratedTime: Math.floor(Date.now() / 1000), linkedIndex: null }]);
          appended += 1;
        }
      }),
    );
    const durableAppendsPerSecond = appended / ((performance.now() - started) / 1000);

    options.log(`log 2/4 building a ${options.entries}-entry log…`);
    const buildStarted = performance.now();
    let size = await store.log.size();
    while (size < options.entries) {
      const batch: LogEntryInput[] = [];
      for (let i = 0; i < Math.min(10_000, options.entries - size); i += 1) {
        batch.push({ kind: 'bench/v1', leaf: leaf(size + i), integratedTime: 1_800_000_000, linkedIndex: null });
      }
      size = (await store.log.append(batch)).size;
      if (size % 200_000 < 10_000) await log.checkpointCovering(size); // a few checkpoints along the way
    }
    await log.checkpointCovering(size);
    const buildSeconds = (performance.now() - buildStarted) / 1000;

    const timings: number[] = [];
    for (let i = 0; i < 2000; i += 1) {
      const index = Math.floor(Math.random() * size);
      const t0 = performance.now();
      await log.inclusionProof(index, size);
      timings.push(performance.now() - t0);
    }
    timings.sort((a, b) => a - b);

    const lookups: number[] = [];
    for (let i = 0; i < 200; i += 1) {
      const index = Math.floor(Math.random() * size);
      const hash = (await log.entry(index)).leafHash;
      const t0 = performance.now();
      const found = await store.log.indexOfLeafHash(hash);
      lookups.push(performance.now() - t0);
      if (found !== index) throw new Error(`leaf ${index} was found at ${String(found)}`);
    }
    lookups.sort((a, b) => a - b);

    options.log('log 3/4 signet log verify of the whole database…');
    const publicKey = join(dir, 'log-key.pem');
    (await import('node:fs')).writeFileSync(publicKey, logKey.publicKeyPem);
    const verifyStarted = performance.now();
    const verified = await runLogVerify({ url: undefined, ca: undefined, db: join(dir, 'bench-log.db'), origin: config.log.origin, publicKey, checkpoint: undefined });
    const verifySeconds = (performance.now() - verifyStarted) / 1000;
    if (!verified.ok) throw new Error(`log verify failed: ${JSON.stringify(verified.problem)}`);

    options.log('log 4/4 inclusion promises…');
    const entry = await log.entry(0);
    const promiseStarted = performance.now();
    let promises = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (performance.now() - promiseStarted < 2000) {
          await log.inclusionPromise(entry);
          promises += 1;
        }
      }),
    );
    const inclusionPromisesPerSecond = promises / ((performance.now() - promiseStarted) / 1000);

    return {
      durableAppendsPerSecond,
      appendConcurrency: concurrency,
      entries: size,
      buildSeconds,
      inclusionProofMedianMs: timings[Math.floor(timings.length / 2)] ?? Number.NaN,
      inclusionProofP99Ms: timings[Math.floor(timings.length * 0.99)] ?? Number.NaN,
      leafHashLookupMedianMs: lookups[Math.floor(lookups.length / 2)] ?? Number.NaN,
      verifySeconds,
      inclusionPromisesPerSecond,
    };
  } finally {
    await store.close();
    await hsm.close();
  }
}
