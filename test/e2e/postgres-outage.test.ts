/**
 * PostgreSQL stopped mid-load (issue 8, acceptance). Two `signet serve` replicas reach
 * the shared test server through a TCP proxy (test/helpers/tcp-proxy.ts), the only
 * way to "stop" PostgreSQL for them while other test files keep using the server. The
 * proxy refuses and cuts every connection for a few seconds while signing requests keep
 * coming, then listens again.
 *
 * - no 2xx without its log entries: every signature answered, before, during or after,
 *   is in the log (read from the server directly), with its decision;
 * - while PostgreSQL is away, requests fail closed with 503;
 * - signing resumes by itself within 5 s of its return (a bounded wait);
 * - afterwards `signet log verify` passes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DECISION_KIND } from '../../log/entries.js';
import { openStore } from '../../store/open-store.js';
import type { SignetStore } from '../../store/store.js';
import { runCli } from '../helpers/cli.js';
import {
  createPostgresDevEnvironment,
  mintTokens,
  signClient,
  startReplica,
  writeReplicaConfig,
  type PostgresDevEnvironment,
  type Replica,
  type SignClient,
} from '../helpers/replicas.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { describeBackends } from '../store/backends.js';

const WORKERS = 8;
const DOWN_MS = 3_000;
const RESUME_WITHIN_MS = 5_000;
const TOKENS = 2_500;

interface Outcome {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly status: number;
  readonly answer: any;
  readonly digest: string;
}

describeBackends('PostgreSQL stopped mid-load', ['postgres'], () => {
  let env: PostgresDevEnvironment | undefined;
  let proxy: TcpProxy | undefined;
  let replicas: Replica[] = [];
  let client: SignClient | undefined;
  let store: SignetStore | undefined;

  beforeAll(async () => {
    const made = await createPostgresDevEnvironment();
    env = made;
    const front = await TcpProxy.start(made.postgresUrl);
    proxy = front;
    // Short timeouts: a request fails closed quickly while the database is away.
    const config = writeReplicaConfig(made, 'outage', {
      postgresUrl: front.urlFor(made.postgresUrl),
      postgres: { statementTimeoutMs: 1_000, connectTimeoutMs: 1_000 },
    });
    replicas = [await startReplica('a', config), await startReplica('b', config)];
    client = signClient(made, WORKERS);
    // The test reads the log around the proxy.
    store = await openStore({ driver: 'postgres', postgres: { url: made.postgresUrl, schema: made.schema, poolSize: 2 } });
  }, 300_000);

  afterAll(async () => {
    await Promise.allSettled(replicas.map((replica) => replica.stop()));
    await client?.close();
    await store?.close();
    await proxy?.down();
    await env?.destroy();
  });

  it('fails closed with 503 while it is away, answers no 2xx without log entries, and resumes by itself within 5 s', async () => {
    const made = env!;
    const front = proxy!;
    const sign = client!;
    const tokens = await mintTokens(made, TOKENS);
    const outcomes: Outcome[] = [];
    const phase = { running: true };
    let nextToken = 0;
    const worker = async (w: number): Promise<void> => {
      while (phase.running) {
        const token = tokens[nextToken];
        nextToken += 1;
        if (token === undefined) throw new Error('the test ran out of tokens');
        const digest = createHash('sha256').update(randomBytes(24)).digest('hex');
        const startedAt = performance.now();
        const { status, json } = await sign.sign(replicas[w % 2]!, token, { project: made.init.project, digest: { algorithm: 'sha256', value: digest } });
        outcomes.push({ startedAt, endedAt: performance.now(), status, answer: json, digest });
        // Failures come back at once: pace them, so the run stays within its tokens.
        if (status !== 200) await sleep(100);
      }
    };
    const load = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));

    const waitFor = async (what: string, done: () => boolean, withinMs: number): Promise<void> => {
      const until = performance.now() + withinMs;
      while (!done()) {
        if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
        await sleep(20);
      }
    };
    try {
      await waitFor('signatures before the outage', () => outcomes.filter((o) => o.status === 200).length >= 40, 60_000);
      await front.down();
      const downAt = performance.now();
      await sleep(DOWN_MS);
      // /readyz says so too.
      expect((await sign.get(replicas[0]!, '/readyz')).status).toBe(503);
      await front.up();
      const upAt = performance.now();
      await waitFor('the first signature after the return', () => outcomes.some((o) => o.startedAt >= upAt && o.status === 200), 30_000);
      await sleep(1_000);
      phase.running = false;
      await load;

      // While it was away: every request that started after the cut and ended before the
      // return failed closed, 503.
      const whileDown = outcomes.filter((o) => o.startedAt >= downAt && o.endedAt <= upAt);
      expect(whileDown.length).toBeGreaterThan(0);
      expect(whileDown.filter((o) => o.status !== 503).map((o) => ({ status: o.status, error: o.answer?.error as unknown }))).toEqual([]);
      expect(whileDown.every((o) => ['STORAGE_UNAVAILABLE', 'LOG_UNAVAILABLE'].includes(o.answer?.error?.code as string))).toBe(true);

      // Signing resumed by itself within 5 s of the return (a bounded wait).
      const firstAfter = Math.min(...outcomes.filter((o) => o.startedAt >= upAt && o.status === 200).map((o) => o.endedAt));
      process.stderr.write(`postgres-outage: first signature ${(firstAfter - upAt).toFixed(0)} ms after PostgreSQL returned\n`);
      expect(firstAfter - upAt).toBeLessThanOrEqual(RESUME_WITHIN_MS);
    } finally {
      phase.running = false;
      await load.catch(() => undefined);
      await front.up();
    }

    // No 2xx without its log entries: the signature entry at the receipt's index (the
    // same leaf), and its decision.
    const signed = outcomes.filter((o) => o.status >= 200 && o.status < 300);
    expect(signed.length).toBeGreaterThan(40);
    const missing: unknown[] = [];
    for (const outcome of signed) {
      const entry = await store!.log.entry(outcome.answer.log.index as number);
      const decision = await store!.log.entry(outcome.answer.log.decisionIndex as number);
      const ok =
        entry !== null &&
        decision !== null &&
        entry.leaf.toString('base64') === outcome.answer.log.leaf &&
        entry.linkedIndex === decision.index &&
        decision.kind === DECISION_KIND &&
        (JSON.parse(decision.leaf.toString('utf8')) as { spec: { digest: { value: string } } }).spec.digest.value === outcome.digest;
      if (!ok) missing.push(outcome.answer.log);
    }
    expect(missing).toEqual([]);

    const verified = await runCli(['log', 'verify', '--url', replicas[1]!.url, '--ca', made.init.caCert], { timeoutMs: 120_000 });
    expect(verified.code, verified.stderr).toBe(0);
  }, 300_000);
});
