/**
 * Several processes on one database file, as replicas sharing a volume would be: a
 * token is claimed by one process only, and counters never pass their limits, however
 * the processes' writes interleave. The children run the current store sources
 * (sqlite-processes.ts) and start together on a signal; each reports when it started
 * and finished, so the test also proves their work overlapped.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../store/open-store.js';
import type { SignetStore } from '../../store/store.js';
import { makeTempDir, requestHash, tokenClaim } from './sqlite-fixtures.js';
import { childScript, startChild, transpileStore } from './sqlite-processes.js';

const CHILDREN = 4;
const ISSUER = tokenClaim('x').issuer;

let codeDir: string;
let claimScript: string;
let consumeScript: string;

interface Timed<T> {
  readonly startedAt: number;
  readonly endedAt: number;
  readonly value: T;
}

beforeAll(() => {
  codeDir = mkdtempSync(join(tmpdir(), 'signet-store-code-'));
  const storeModule = transpileStore(codeDir);
  // Every other claim runs inside a transaction: in its own process, a transaction
  // waiting for another process's lock blocks only itself.
  claimScript = join(codeDir, 'claim.mjs');
  writeFileSync(
    claimScript,
    childScript(
      storeModule,
      `async (store, { tokens, hash, issuer }) => {
        const startedAt = Date.now();
        const value = [];
        for (let i = 0; i < tokens; i += 1) {
          const claim = { issuer, tokenId: 't' + i, requestHash: hash,
            createdAt: '2025-01-02T03:00:00.000Z', expiresAt: '2025-01-02T04:00:00.000Z' };
          const outcome = i % 2 === 0
            ? await store.tokenUses.claim(claim)
            : await store.transaction((tx) => tx.tokenUses.claim(claim));
          value.push(outcome.kind === 'claimed' ? 'claimed' : outcome.record.requestHash);
        }
        return { startedAt, endedAt: Date.now(), value };
      }`,
    ),
  );
  consumeScript = join(codeDir, 'consume.mjs');
  writeFileSync(
    consumeScript,
    childScript(
      storeModule,
      `async (store, { attempts, increments }) => {
        const startedAt = Date.now();
        let allowed = 0;
        for (let i = 0; i < attempts; i += 1) {
          const outcome = i % 2 === 0
            ? await store.counters.consume(increments)
            : await store.transaction((tx) => tx.counters.consume(increments));
          if (outcome.allowed) allowed += 1;
        }
        return { startedAt, endedAt: Date.now(), value: allowed };
      }`,
    ),
  );
});

afterAll(() => {
  rmSync(codeDir, { recursive: true, force: true });
});

let temp: ReturnType<typeof makeTempDir>;
let store: SignetStore;

beforeEach(async () => {
  temp = makeTempDir();
  store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
});

afterEach(async () => {
  await store.close();
  temp.cleanup();
});

/** Starts the children, waits until all are ready, then lets them go at once. */
async function runTogether<T>(script: string, inputs: readonly unknown[]): Promise<Timed<T>[]> {
  const children = inputs.map((input) => startChild<Timed<T>>(script, temp.dbPath, input));
  await Promise.all(children.map((child) => child.ready));
  for (const child of children) child.go();
  return Promise.all(children.map((child) => child.result));
}

function expectOverlap(runs: readonly Timed<unknown>[]): void {
  const lastStart = Math.max(...runs.map((r) => r.startedAt));
  const firstEnd = Math.min(...runs.map((r) => r.endedAt));
  expect(lastStart).toBeLessThan(firstEnd);
}

describe('several processes on one file', () => {
  it('claim every token exactly once between them, and all see the winner', async () => {
    const tokens = 150;
    const hashes = Array.from({ length: CHILDREN }, (_, i) => requestHash(`process ${i}`));
    const runs = await runTogether<string[]>(
      claimScript,
      hashes.map((hash) => ({ tokens, hash, issuer: ISSUER })),
    );
    expectOverlap(runs);

    for (let i = 0; i < tokens; i += 1) {
      const stored = await store.tokenUses.get(ISSUER, `t${i}`);
      const winners = runs.flatMap((run, child) => (run.value[i] === 'claimed' ? [child] : []));
      expect(winners).toHaveLength(1);
      expect(stored?.requestHash).toBe(hashes[winners[0]!]);
      // Every loser was handed the winner's record.
      for (const run of runs) if (run.value[i] !== 'claimed') expect(run.value[i]).toBe(stored?.requestHash);
    }
  });

  it('never get `claimed` for a token this process holds, even while it serves the request', async () => {
    expect((await store.tokenUses.claim(tokenClaim('t0', 'held here'))).kind).toBe('claimed');
    const runs = await runTogether<string[]>(claimScript, [{ tokens: 1, hash: requestHash('elsewhere'), issuer: ISSUER }]);
    expect(runs[0]?.value).toEqual([requestHash('held here')]);
  });

  it('never push a shared counter past its limit, and each allowed consume counts once', async () => {
    const limit = 150;
    const attempts = 60;
    const runs = await runTogether<number>(
      consumeScript,
      Array.from({ length: CHILDREN }, (_, i) => ({
        attempts,
        increments: [
          { counter: 'usage:key:demo-release@1', window: 'total', limit },
          { counter: `rate:project:p${i}`, window: '2026-11-27T10:01', limit: 1000 },
        ],
      })),
    );
    expectOverlap(runs);

    const allowed = runs.reduce((sum, run) => sum + run.value, 0);
    expect(allowed).toBe(limit);
    expect(await store.counters.current('usage:key:demo-release@1', 'total')).toBe(limit);
    // All or nothing: each process's own counter moved exactly with its allowed consumes.
    for (const [i, run] of runs.entries()) {
      expect(await store.counters.current(`rate:project:p${i}`, '2026-11-27T10:01')).toBe(run.value);
    }
  });
});
