/**
 * `npm run bench -- --only log-path`: the transparency log's own main-thread CPU per
 * signing request, measured in this process, without TLS, HTTP or token checks around
 * it.
 *
 * The end-to-end ratio (bench/main.ts) is what the figure is about, but it is
 * a ratio of two rates that move by ±5–10 points between runs on a 2-core machine
 * that the load generator shares. This isolates what the log adds to the event loop,
 * which is what that ratio answers to when the main thread is the bottleneck: N
 * concurrent callers each repeat the signing path's log calls, as
 * service/sign-request.ts makes them:
 *
 *   1. a transaction that appends the allow decision (SIGNING_TRANSACTION's options);
 *   2. an ECDSA P-256 signature in the HSM's worker pool, with the service's key;
 *   3. a transaction that appends the signature's hashedrekord entry;
 *   4. the answer's log part (service/sign-formats.ts completeAnswer): the receipt,
 *      which waits for a checkpoint signed over the entry, and the decision's proof.
 *
 * Three variants, each on a SQLite file of its own, for --rounds rounds of --seconds
 * each: with the log, as fast as it goes; then, paced to the rate it reached in that
 * round, with the log but without step 4 (appends only: no checkpoint is signed) and
 * without the log (the end-to-end baseline's UnloggedForBenchmark, whose transactions
 * then write nothing), alternating which of the two goes first. The service's token
 * and limit writes are left out of the transactions: they cost the same with or
 * without the log. Reported: main-thread CPU per request of each (from /proc), and the
 * log's own cost split into appends and the rest (checkpoint rounds and receipts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { runInit } from '../cli/init.js';
import { loadConfig } from '../config/load.js';
import { keyRef } from '../keyrotation/signing-keys.js';
import { DECISION_KIND, decisionLeaf, HASHEDREKORD_KIND, hashedRekordLeaf } from '../log/entries.js';
import { TransparencyLog } from '../log/transparency-log.js';
import { openConfiguredHsm } from '../service/open-hsm.js';
import { completeAnswer } from '../service/sign-formats.js';
import { SIGNING_TRANSACTION } from '../service/sign-request.js';
import { openStore } from '../store/open-store.js';
import type { KeyVersionRecord, SignetStore } from '../store/store.js';
import { processCpuSeconds } from './cpu.js';
import { UnloggedForBenchmark } from './unlogged-log.js';

export interface LogPathResult {
  readonly callers: number;
  readonly rounds: number;
  readonly seconds: number;
  /** Main-thread CPU µs per request, averaged over the rounds. */
  readonly withLogMicros: number;
  readonly appendsOnlyMicros: number;
  readonly withoutLogMicros: number;
  /** Log entries per signed checkpoint, with the log: how many requests one checkpoint round served (two entries each). */
  readonly entriesPerCheckpoint: number;
  /** Requests per second with the log, as fast as it went; the other two variants are paced to it. */
  readonly withLogRate: number;
  readonly withoutLogRate: number;
}

type Variant = 'with the log' | 'appends only' | 'without the log';

interface Subject {
  readonly store: SignetStore;
  readonly log: TransparencyLog;
  readonly receipts: boolean;
  /** Checkpoint notes signed so far. */
  readonly notes: () => number;
}

export async function runLogPathBench(dir: string, options: { seconds: number; rounds: number; callers: number; log: (m: string) => void }): Promise<LogPathResult> {
  const init = await runInit({ dir, port: 0, force: false });
  const config = loadConfig(init.config);
  const hsm = await openConfiguredHsm(config);
  const subjects = new Map<Variant, Subject>();
  try {
    const initStore = await openStore(config.storage);
    const [logKey, signingKey] = [await initStore.keys.getActive(config.log.keyName), await initStore.keys.get(init.keyId)];
    await initStore.close();
    if (logKey === null || signingKey === null) throw new Error('init made no log key or no signing key');
    for (const variant of ['with the log', 'appends only', 'without the log'] as const) {
      const store = await openStore({ driver: 'sqlite', sqlite: { path: join(dir, `log-path-${subjects.size}.db`) } });
      await store.keys.insert(logKey);
      let notes = 0;
      const log = new TransparencyLog({
        store,
        origin: config.log.origin,
        publicKeyPem: logKey.publicKeyPem,
        sign: (digest) => {
          notes += 1;
          return hsm.signDigest(keyRef(logKey), { algorithm: 'sha256', value: digest });
        },
      });
      if (variant === 'without the log') subjects.set(variant, { store, log: new UnloggedForBenchmark(log, store), receipts: true, notes: () => notes });
      else {
        await log.open();
        subjects.set(variant, { store, log, receipts: variant === 'with the log', notes: () => notes });
      }
    }

    const micros = new Map<Variant, number[]>();
    let withLogRequests = 0;
    let withLogNotes = 0;
    const rates = new Map<Variant, number[]>();
    // Each round runs the log first, as fast as it goes; then the other two, in turn
    // (alternating which goes first), paced to the rate the log reached in that round.
    // Compared at one rate, because this path's CPU per request depends on the rate
    // itself: with fewer requests in flight, each group commit, fsync callback and
    // event-loop wake-up serves fewer of them (without the log, 4 callers instead of 16
    // measured about twice the CPU per request). Unpaced, the comparison would charge
    // the log with that as well as with its own work.
    for (let round = 0; round < options.rounds; round += 1) {
      let pace: number | undefined;
      const others: Variant[] = round % 2 === 0 ? ['appends only', 'without the log'] : ['without the log', 'appends only'];
      for (const variant of ['with the log', ...others] as const) {
        const subject = subjects.get(variant) as Subject;
        const notesBefore = subject.notes();
        const cpuBefore = processCpuSeconds(process.pid, 'main thread');
        const started = performance.now();
        const requests = await load(subject, signingKey, hsm.signDigest.bind(hsm), { ...options, pace });
        const elapsed = (performance.now() - started) / 1000;
        const cpu = processCpuSeconds(process.pid, 'main thread') - cpuBefore;
        if (variant === 'with the log') {
          withLogRequests += requests;
          withLogNotes += subject.notes() - notesBefore;
          pace = requests / elapsed;
        }
        micros.set(variant, [...(micros.get(variant) ?? []), (cpu * 1e6) / requests]);
        rates.set(variant, [...(rates.get(variant) ?? []), requests / elapsed]);
        options.log(`  round ${round + 1}, ${variant}: ${(requests / elapsed).toFixed(0)}/s, main thread ${((cpu * 1e6) / requests).toFixed(0)} µs per request`);
      }
    }
    const mean = (values: readonly number[] | undefined): number => (values === undefined ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length);
    return {
      callers: options.callers,
      rounds: options.rounds,
      seconds: options.seconds,
      withLogMicros: mean(micros.get('with the log')),
      appendsOnlyMicros: mean(micros.get('appends only')),
      withoutLogMicros: mean(micros.get('without the log')),
      entriesPerCheckpoint: (2 * withLogRequests) / withLogNotes,
      withLogRate: mean(rates.get('with the log')),
      withoutLogRate: mean(rates.get('without the log')),
    };
  } finally {
    for (const subject of subjects.values()) await subject.store.close();
    await hsm.close();
  }
}

type SignDigest = (key: ReturnType<typeof keyRef>, digest: { algorithm: 'sha256'; value: Buffer }) => Promise<Buffer>;

/**
 * `options.callers` loops over the signing path's log calls for `options.seconds`; the
 * requests completed. Closed loops, unless `options.pace` (requests per second) is
 * given: then request k starts no earlier than k / pace seconds after the start.
 */
async function load(subject: Subject, key: KeyVersionRecord, signDigest: SignDigest, options: { seconds: number; callers: number; pace?: number | undefined }): Promise<number> {
  const { store, log } = subject;
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  let requests = 0;
  let scheduled = 0;
  const caller = async (): Promise<void> => {
    while (performance.now() < deadline) {
      if (options.pace !== undefined) {
        const due = started + (scheduled * 1000) / options.pace;
        scheduled += 1;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (performance.now() >= deadline) break;
      }
      const now = new Date();
      const integratedTime = Math.floor(now.getTime() / 1000);
      const digest = randomBytes(32);
      const allowLeaf = decisionLeaf({
        decision: 'allow',
        reasons: [],
        requestId: randomBytes(16).toString('hex'),
        project: 'bench',
        keyId: key.keyId,
        format: 'raw',
        digest: { algorithm: 'sha256', value: digest.toString('hex') },
        manifest: false,
        identity: {
          issuer: 'https://token.actions.githubusercontent.com',
          subject: 'repo:example/app:ref:refs/tags/v1.0.0',
          claims: { repository: 'example/app', ref: 'refs/tags/v1.0.0', workflow_ref: 'example/app/.github/workflows/release.yml@refs/tags/v1.0.0' },
        },
        client: { fingerprint: createHash('sha256').update(digest).digest('hex'), subject: 'CN=ci', issuer: 'CN=Signet client CA' },
        policySha256: createHash('sha256').update('policy').digest('hex'),
        time: now.toISOString(),
      });
      const [decisionIndex = -1] = await store.transaction(
        (tx) => log.appendIn(tx, [{ kind: DECISION_KIND, leaf: allowLeaf, integratedTime, linkedIndex: null }]),
        SIGNING_TRANSACTION,
      );
      const signature = await signDigest(keyRef(key), { algorithm: 'sha256', value: digest });
      const leaf = hashedRekordLeaf({ digest: { algorithm: 'sha256', value: digest.toString('hex') }, signatureBase64: signature.toString('base64'), publicKeyPem: key.publicKeyPem });
      const [index = -1] = await store.transaction(
        (tx) => log.appendIn(tx, [{ kind: HASHEDREKORD_KIND, leaf, integratedTime, linkedIndex: decisionIndex }]),
        SIGNING_TRANSACTION,
      );
      if (subject.receipts) {
        const completed = await completeAnswer({
          log,
          answer: { keyId: key.keyId, algorithm: key.algorithm, format: 'raw', signature: signature.toString('base64'), digest: { algorithm: 'sha256', value: digest.toString('hex') }, chain: [] },
          entry: { index, decisionIndex, integratedTime },
          known: { leaf, decisionLeaf: allowLeaf, publicKeyPem: key.publicKeyPem },
        });
        // The answer is serialised as the service would send it.
        JSON.stringify(completed);
      }
      requests += 1;
    }
  };
  await Promise.all(Array.from({ length: options.callers }, caller));
  return requests;
}

export function formatLogPathBench(r: LogPathResult): string {
  const micros = (value: number): string => `${value.toFixed(0)} µs`;
  return [
    '',
    `log path, in process (${r.callers} concurrent callers, ${r.rounds} rounds of ${r.seconds} s; main-thread CPU per request, all three at the log's rate)`,
    `  with the log                ${micros(r.withLogMicros)}   (${r.withLogRate.toFixed(0)}/s, ${r.entriesPerCheckpoint.toFixed(1)} entries per checkpoint)`,
    `  appends only                ${micros(r.appendsOnlyMicros)}   (paced; no receipt, no checkpoint, no answer)`,
    `  without the log             ${micros(r.withoutLogMicros)}   (paced: ${r.withoutLogRate.toFixed(0)}/s)`,
    `  the log's own cost          ${micros(r.withLogMicros - r.withoutLogMicros)}: appends ${micros(r.appendsOnlyMicros - r.withoutLogMicros)}, checkpoint rounds and receipts ${micros(r.withLogMicros - r.appendsOnlyMicros)}`,
    '',
  ].join('\n');
}
