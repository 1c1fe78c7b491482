/**
 * Transactions on the single SQLite connection are serialised: however their async
 * steps interleave in time, each one runs alone (in its own SAVEPOINT of a group
 * commit), and plain repository calls made meanwhile wait for it rather than seeing
 * or joining it. Writes and transactions made in one turn share one commit.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { leafHash } from '../../log/merkle.js';
import { openStore } from '../../store/open-store.js';
import { DEFERRED_WRITE_MAX_DELAY_MS } from '../../store/sqlite/sqlite-support.js';
import type { CheckpointRecord, SignetStore } from '../../store/store.js';
import { keyVersion, makeTempDir, tokenClaim, walCommits } from './sqlite-fixtures.js';

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

/** Lets other queued work run: `ticks` macrotask turns. */
async function yieldTurns(ticks: number): Promise<void> {
  for (let i = 0; i < ticks; i += 1) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('transaction serialisation', () => {
  it('never interleaves transactions, and each read-modify-write sees the one before', async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            steps: fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 4 }),
            fails: fc.boolean(),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        async (plans) => {
          round += 1;
          const name = `prop${round}`;
          const trace: string[] = [];
          const runs = plans.map((plan, index) =>
            store
              .transaction(async (tx) => {
                trace.push(`begin ${index}`);
                // Read-modify-write across awaits: lost updates would show as duplicate
                // or missing version numbers.
                for (const ticks of plan.steps) {
                  const next = (await tx.keys.listVersions(name)).length + 1;
                  await yieldTurns(ticks);
                  await tx.keys.insert(keyVersion(name, next));
                }
                trace.push(`end ${index}`);
                if (plan.fails) throw new Error('planned failure');
              })
              .then(
                () => 'committed' as const,
                () => 'rolled back' as const,
              ),
          );
          // Plain calls racing with the transactions must only ever see committed states.
          const observed: number[] = [];
          const observer = (async () => {
            for (let i = 0; i < 5; i += 1) {
              observed.push((await store.keys.listVersions(name)).length);
              await yieldTurns(1);
            }
          })();
          const outcomes = await Promise.all(runs);
          await observer;

          for (let i = 0; i < trace.length; i += 2) {
            const begin = /^begin (\d+)$/.exec(trace[i] ?? '');
            expect(begin).not.toBeNull();
            expect(trace[i + 1]).toBe(`end ${begin?.[1] ?? ''}`);
          }
          const committedInserts = plans.reduce(
            (sum, plan, index) => sum + (outcomes[index] === 'committed' ? plan.steps.length : 0),
            0,
          );
          const versions = (await store.keys.listVersions(name)).map((k) => k.version);
          expect(versions).toEqual(Array.from({ length: committedInserts }, (_, i) => i + 1));
          const committedCounts = new Set([0]);
          let running = 0;
          plans.forEach((plan, index) => {
            if (outcomes[index] === 'committed') {
              running += plan.steps.length;
              committedCounts.add(running);
            }
          });
          for (const count of observed) expect(committedCounts.has(count)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('makes a plain call wait for an open transaction and then see its result', async () => {
    const release = deferred();
    const inside = deferred();
    const tx = store.transaction(async (handle) => {
      await handle.keys.insert(keyVersion('k', 1, 'active'));
      inside.resolve();
      await release.promise;
    });
    await inside.promise;

    let settled = false;
    const plain = store.keys.get('k@1').then((record) => {
      settled = true;
      return record;
    });
    await yieldTurns(5);
    expect(settled).toBe(false);

    release.resolve();
    await tx;
    expect((await plain)?.keyId).toBe('k@1');
  });

  it('makes a plain write wait, so it is not swept into a transaction that rolls back', async () => {
    const release = deferred();
    const inside = deferred();
    const tx = store.transaction(async (handle) => {
      await handle.keys.insert(keyVersion('a', 1));
      inside.resolve();
      await release.promise;
      throw new Error('roll back');
    });
    await inside.promise;
    const plainWrite = store.keys.insert(keyVersion('b', 1));
    await yieldTurns(3);
    release.resolve();
    await expect(tx).rejects.toThrow('roll back');
    await plainWrite;
    expect((await store.keys.list()).map((k) => k.keyId)).toEqual(['b@1']);
  });
});

describe('group commit', () => {
  it('commits writes and transactions made in one turn together, with one commit (one fsync)', async () => {
    await store.keys.insert(keyVersion('warm', 1));
    const before = walCommits(temp.dbPath);
    const results = await Promise.all([
      ...Array.from({ length: 10 }, (_, i) =>
        store.transaction(async (tx) => {
          const claim = await tx.tokenUses.claim(tokenClaim(`jti-${i}`));
          await tx.keys.insert(keyVersion(`t${i}`, 1));
          return claim.kind;
        }),
      ),
      ...Array.from({ length: 10 }, (_, i) => store.keys.insert(keyVersion(`p${i}`, 1)).then(() => 'inserted')),
    ]);
    expect(results).toEqual([...Array<string>(10).fill('claimed'), ...Array<string>(10).fill('inserted')]);
    expect(walCommits(temp.dbPath) - before).toBe(1);
    expect(await store.keys.list()).toHaveLength(21);
  });

  it('rolls back only the transaction that threw; the rest of its group commits', async () => {
    const [kept, failed, plain] = await Promise.allSettled([
      store.transaction(async (tx) => {
        await tx.keys.insert(keyVersion('kept', 1));
        return 'kept';
      }),
      store.transaction(async (tx) => {
        await tx.keys.insert(keyVersion('undone', 1));
        await tx.tokenUses.claim(tokenClaim('undone'));
        throw new Error('changed its mind');
      }),
      store.keys.insert(keyVersion('plain', 1)),
    ]);
    expect(kept).toEqual({ status: 'fulfilled', value: 'kept' });
    expect(failed).toMatchObject({ status: 'rejected', reason: { message: 'changed its mind' } });
    expect(plain.status).toBe('fulfilled');
    expect((await store.keys.list()).map((k) => k.keyId).sort()).toEqual(['kept@1', 'plain@1']);
    expect(await store.tokenUses.get(tokenClaim('undone').issuer, 'undone')).toBeNull();
  });

  it('commits every write made while the previous group was busy in one group, whatever turns made them', async () => {
    await store.keys.insert(keyVersion('warm', 1));
    const before = walCommits(temp.dbPath);
    const release = deferred();
    const holding = store.transaction(async (tx) => {
      await tx.keys.insert(keyVersion('held', 1));
      await release.promise;
    });
    await yieldTurns(2);
    // Three writes in three turns, all while the transaction holds the connection.
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 3; i += 1) {
      writes.push(store.keys.insert(keyVersion(`w${i}`, 1)));
      await yieldTurns(1);
    }
    release.resolve();
    await Promise.all([holding, ...writes]);
    expect(walCommits(temp.dbPath) - before).toBe(2);
    expect(await store.keys.list()).toHaveLength(5);
  });

  it('runs the calls of a group in the order they were made, each seeing the ones before', async () => {
    const first = store.transaction((tx) => tx.keys.insert(keyVersion('k', 1, 'active')));
    const second = store.keys.insert(keyVersion('k', 2, 'active'));
    const third = store.transaction((tx) => tx.tokenUses.claim(tokenClaim('jti')));
    const fourth = store.tokenUses.claim(tokenClaim('jti', 'another request'));
    await first;
    await expect(second).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    expect(await third).toEqual({ kind: 'claimed' });
    expect(await fourth).toMatchObject({ kind: 'used' });
  });
});

describe('deferred writes (a checkpoint record)', () => {
  const record = (size: number): CheckpointRecord => ({
    size,
    rootHash: leafHash(Buffer.from(`root:${size}`)),
    note: `signet.example/log\n${size}\nroot\n\n— signet sig\n`,
    createdAt: '2025-01-01T00:00:00Z',
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('join the next group commit another write starts, instead of committing on their own', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    await store.keys.insert(keyVersion('warm', 1));
    const before = walCommits(temp.dbPath);
    let recorded = false;
    const checkpoint = store.log.addCheckpoint(record(0)).then(() => {
      recorded = true;
    });
    await yieldTurns(3);
    expect(recorded).toBe(false);
    expect(walCommits(temp.dbPath)).toBe(before);
    await store.keys.insert(keyVersion('request', 1));
    await checkpoint;
    expect(walCommits(temp.dbPath) - before).toBe(1);
    expect((await store.log.latestCheckpoint())?.size).toBe(0);
  });

  it(`commit on their own after ${DEFERRED_WRITE_MAX_DELAY_MS} ms without another write`, async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const before = walCommits(temp.dbPath);
    const checkpoint = store.log.addCheckpoint(record(0));
    await yieldTurns(3);
    expect(walCommits(temp.dbPath)).toBe(before);
    vi.advanceTimersByTime(DEFERRED_WRITE_MAX_DELAY_MS);
    await checkpoint;
    expect(walCommits(temp.dbPath) - before).toBe(1);
  });

  it('are committed by close()', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const checkpoint = store.log.addCheckpoint(record(0));
    await store.close();
    await checkpoint;
    store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    expect((await store.log.latestCheckpoint())?.size).toBe(0);
  });

  it('run at once inside a transaction, like any call there', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    await store.transaction((tx) => tx.log.addCheckpoint(record(0)));
    expect((await store.log.latestCheckpoint())?.size).toBe(0);
  });
});

describe('settled reads (Merkle nodes of a durable tree)', () => {
  const entry = (n: number) => ({ kind: 'test.entry/v1', leaf: Buffer.from(`leaf ${n}`), integratedTime: 1, linkedIndex: null });

  it('do not wait behind an open transaction, and read what was durable before it', async () => {
    await store.log.append([entry(0), entry(1)]);
    const release = deferred();
    const inside = deferred();
    const tx = store.transaction(async (handle) => {
      await handle.log.append([entry(2), entry(3)]);
      inside.resolve();
      await release.promise;
    });
    await inside.promise;

    let sizeRead = false;
    const size = store.log.size().then((value) => {
      sizeRead = true;
      return value;
    });
    // The node of the durable tree [0, 2) is read while the transaction holds the connection.
    const nodes = await store.log.nodes([{ level: 1, index: 0 }]);
    expect(nodes.get('1:0')).toHaveLength(32);
    expect(sizeRead).toBe(false);

    release.resolve();
    await tx;
    expect(await size).toBe(4);
  });

  it('fail at once after the store is closed', async () => {
    await store.log.append([entry(0), entry(1)]);
    await store.close();
    await expect(store.log.nodes([{ level: 1, index: 0 }])).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
  });
});
