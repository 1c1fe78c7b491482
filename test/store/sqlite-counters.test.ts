/**
 * The counter repository on real SQLite files: `consume` is all or nothing and never
 * lets a count pass its limit, however calls interleave (fast-check, against a
 * sequential model); `current`; `purgeWindowsBefore` never touches `total`.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../store/open-store.js';
import type { CounterIncrement, CounterOutcome, SignetStore } from '../../store/store.js';
import { MAX_ID_LENGTH, MAX_INCREMENTS } from '../../store/validation.js';
import { makeTempDir, withRawDatabase } from './sqlite-fixtures.js';

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

const MINUTE = '2026-11-27T10:01';

function rows(): unknown[] {
  return withRawDatabase(temp.dbPath, (db) =>
    db.prepare('SELECT counter, "window", count FROM counters ORDER BY counter, "window"').all(),
  );
}

describe('consume', () => {
  it('adds 1 while the count stays within the limit, then refuses naming the counter', async () => {
    const rate = { counter: 'rate:project:example', window: MINUTE, limit: 3 };
    for (let i = 1; i <= 3; i += 1) {
      expect(await store.counters.consume([rate])).toEqual({ allowed: true });
      expect(await store.counters.current(rate.counter, MINUTE)).toBe(i);
    }
    const refused = await store.counters.consume([rate]);
    expect(refused).toEqual({ allowed: false, exceeded: ['rate:project:example'] });
    expect(Object.isFrozen(refused)).toBe(true);
    expect(await store.counters.current(rate.counter, MINUTE)).toBe(3);
    // Windows are separate counts.
    expect(await store.counters.consume([{ ...rate, window: '2026-11-27T10:02' }])).toEqual({ allowed: true });
  });

  it('changes nothing at all when one counter would go over, and names every one that would', async () => {
    await store.counters.consume([{ counter: 'a', window: 'total', limit: 1 }]);
    await store.counters.consume([{ counter: 'c', window: MINUTE, limit: 1 }]);
    const before = rows();
    const outcome = await store.counters.consume([
      { counter: 'a', window: 'total', limit: 1 },
      { counter: 'b', window: MINUTE, limit: 5 },
      { counter: 'c', window: MINUTE, limit: 1 },
    ]);
    expect(outcome).toEqual({ allowed: false, exceeded: ['a', 'c'] });
    expect(rows()).toEqual(before);
    expect(await store.counters.current('b', MINUTE)).toBe(0);
  });

  it('refuses once a limit is lowered below the count', async () => {
    for (let i = 0; i < 5; i += 1) await store.counters.consume([{ counter: 'u', window: 'total', limit: 10 }]);
    expect(await store.counters.consume([{ counter: 'u', window: 'total', limit: 4 }])).toEqual({
      allowed: false,
      exceeded: ['u'],
    });
    expect(await store.counters.current('u', 'total')).toBe(5);
  });

  it('names a counter once even when it is exceeded in two windows', async () => {
    await store.counters.consume([
      { counter: 'k', window: 'total', limit: 1 },
      { counter: 'k', window: MINUTE, limit: 1 },
    ]);
    expect(
      await store.counters.consume([
        { counter: 'k', window: 'total', limit: 1 },
        { counter: 'k', window: MINUTE, limit: 1 },
      ]),
    ).toEqual({ allowed: false, exceeded: ['k'] });
  });

  it('allows an empty list, writing nothing', async () => {
    expect(await store.counters.consume([])).toEqual({ allowed: true });
    expect(rows()).toEqual([]);
  });

  it('keeps its increments only if the transaction around it commits', async () => {
    const usage = { counter: 'usage:key:demo-release@1', window: 'total', limit: 10 };
    await store.transaction(async (tx) => {
      expect(await tx.counters.consume([usage])).toEqual({ allowed: true });
      expect(await tx.counters.current(usage.counter, 'total')).toBe(1);
    });
    await expect(
      store.transaction(async (tx) => {
        await tx.counters.consume([usage]);
        await tx.counters.consume([usage]);
        throw new Error('nothing was signed');
      }),
    ).rejects.toThrow('nothing was signed');
    expect(await store.counters.current(usage.counter, 'total')).toBe(1);
  });
});

describe('consume under concurrency (property)', () => {
  type Call = { readonly counters: number[]; readonly viaTransaction: boolean; readonly rollBack: boolean };

  const scenario = fc.record({
    limits: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
    calls: fc.array(
      fc.record({
        counters: fc.uniqueArray(fc.nat({ max: 3 }), { minLength: 1, maxLength: 4 }),
        viaTransaction: fc.boolean(),
        rollBack: fc.boolean(),
      }),
      { minLength: 1, maxLength: 30 },
    ),
  });

  function incrementsFor(call: Call, limits: readonly number[], round: number): CounterIncrement[] {
    return call.counters
      .filter((index) => index < limits.length)
      .map((index) => ({ counter: `c${round}-${index}`, window: index % 2 === 0 ? 'total' : MINUTE, limit: limits[index]! }));
  }

  /** Issues every call at once: plainly, or inside a transaction that may roll back afterwards. */
  function issue(target: SignetStore, increments: CounterIncrement[], call: Call): Promise<CounterOutcome | 'rolled back'> {
    if (!call.viaTransaction) return target.counters.consume(increments);
    return target
      .transaction(async (tx) => {
        const outcome = await tx.counters.consume(increments);
        if (call.rollBack) throw new Error('roll back');
        return outcome;
      })
      .catch(() => 'rolled back' as const);
  }

  it('matches a sequential model on one store: never over a limit, a refusal changes nothing', async () => {
    let round = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async ({ limits, calls }) => {
        round += 1;
        const outcomes = await Promise.all(calls.map((call) => issue(store, incrementsFor(call, limits, round), call)));

        // The store serves calls in the order they were made (one FIFO queue).
        const model = new Map<string, number>();
        calls.forEach((call, i) => {
          const increments = incrementsFor(call, limits, round);
          const exceeded = [
            ...new Set(increments.filter((inc) => (model.get(inc.counter) ?? 0) + 1 > inc.limit).map((inc) => inc.counter)),
          ];
          const expected: CounterOutcome = exceeded.length === 0 ? { allowed: true } : { allowed: false, exceeded };
          if (call.viaTransaction && call.rollBack) {
            expect(outcomes[i]).toBe('rolled back');
            return;
          }
          expect(outcomes[i]).toEqual(expected);
          if (exceeded.length === 0) for (const inc of increments) model.set(inc.counter, (model.get(inc.counter) ?? 0) + 1);
        });
        for (const [index, limit] of limits.entries()) {
          const counter = `c${round}-${index}`;
          const count = await store.counters.current(counter, index % 2 === 0 ? 'total' : MINUTE);
          expect(count).toBe(model.get(counter) ?? 0);
          expect(count).toBeLessThanOrEqual(limit);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('never passes a limit with two stores consuming from the same file', async () => {
    const second = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    try {
      let round = 0;
      await fc.assert(
        fc.asyncProperty(scenario, async ({ limits, calls }) => {
          round += 1;
          // Plain calls only across two connections in one process (see the token-use
          // test for why); each call goes to one store or the other.
          const outcomes = await Promise.all(
            calls.map((call, i) => (i % 2 === 0 ? store : second).counters.consume(incrementsFor(call, limits, round))),
          );
          for (const [index, limit] of limits.entries()) {
            const counter = `c${round}-${index}`;
            const allowedWithIt = calls.filter(
              (call, i) => outcomes[i]?.allowed === true && incrementsFor(call, limits, round).some((inc) => inc.counter === counter),
            ).length;
            const count = await second.counters.current(counter, index % 2 === 0 ? 'total' : MINUTE);
            // Every allowed consume added exactly 1 and no refused one added anything.
            expect(count).toBe(allowedWithIt);
            expect(count).toBeLessThanOrEqual(limit);
          }
          calls.forEach((call, i) => {
            const outcome = outcomes[i]!;
            if (!outcome.allowed) {
              expect(outcome.exceeded.length).toBeGreaterThan(0);
              const names = incrementsFor(call, limits, round).map((inc) => inc.counter);
              for (const name of outcome.exceeded) expect(names).toContain(name);
            }
          });
        }),
        { numRuns: 40 },
      );
    } finally {
      await second.close();
    }
  });
});

describe('current', () => {
  it('is 0 for a counter window that was never consumed', async () => {
    expect(await store.counters.current('nothing', 'total')).toBe(0);
    expect(await store.counters.current('nothing', MINUTE)).toBe(0);
  });
});

describe('purgeWindowsBefore', () => {
  it('deletes minute windows before the given one and never `total`', async () => {
    const windows = ['2026-11-27T09:59', '2026-11-27T10:00', '2026-11-27T10:01', 'total'];
    for (const window of windows) {
      await store.counters.consume([
        { counter: 'rate:project:a', window, limit: 10 },
        { counter: 'rate:project:b', window, limit: 10 },
      ]);
    }
    expect(await store.counters.purgeWindowsBefore('2026-11-27T10:01')).toBe(4);
    expect(rows()).toEqual([
      { counter: 'rate:project:a', window: '2026-11-27T10:01', count: 1 },
      { counter: 'rate:project:a', window: 'total', count: 1 },
      { counter: 'rate:project:b', window: '2026-11-27T10:01', count: 1 },
      { counter: 'rate:project:b', window: 'total', count: 1 },
    ]);
    // Even a bound after every minute keeps the usage totals.
    expect(await store.transaction((tx) => tx.counters.purgeWindowsBefore('9999-12-31T23:59'))).toBe(2);
    expect(await store.counters.current('rate:project:a', 'total')).toBe(1);
    expect(await store.counters.current('rate:project:b', 'total')).toBe(1);
  });
});

describe('validation', () => {
  const ok: CounterIncrement = { counter: 'c', window: 'total', limit: 1 };

  it('refuses malformed increments with a TypeError, writing nothing', async () => {
    const bad: unknown[] = [
      [{ ...ok, limit: 0 }],
      [{ ...ok, limit: -1 }],
      [{ ...ok, limit: 1.5 }],
      [{ ...ok, limit: Number.NaN }],
      [{ ...ok, limit: 2 ** 53 }],
      [{ ...ok, limit: '3' }],
      [{ ...ok, counter: '' }],
      [{ ...ok, counter: 'x'.repeat(MAX_ID_LENGTH + 1) }],
      [{ ...ok, counter: 'nul\0' }],
      [{ ...ok, window: '' }],
      [{ ...ok, window: 'Total' }],
      [{ ...ok, window: '2026-11-27T10:01:00' }],
      [{ ...ok, window: '2026-13-01T00:00' }],
      [{ ...ok, window: '2026-02-30T00:00' }],
      [{ ...ok, window: '2026-11-27T24:00' }],
      [ok, { ...ok, limit: 5 }],
      Array.from({ length: MAX_INCREMENTS + 1 }, (_, i) => ({ ...ok, counter: `c${i}` })),
      [null],
      'not an array',
      null,
    ];
    for (const increments of bad) {
      await expect(store.counters.consume(increments as CounterIncrement[])).rejects.toBeInstanceOf(TypeError);
      await expect(store.transaction((tx) => tx.counters.consume(increments as CounterIncrement[]))).rejects.toBeInstanceOf(
        TypeError,
      );
    }
    expect(rows()).toEqual([]);
    // The boundaries themselves are fine.
    expect(
      await store.counters.consume([
        { counter: 'x'.repeat(MAX_ID_LENGTH), window: '2026-02-28T23:59', limit: Number.MAX_SAFE_INTEGER },
        ...Array.from({ length: MAX_INCREMENTS - 1 }, (_, i) => ({ ...ok, counter: `c${i}` })),
      ]),
    ).toEqual({ allowed: true });
  });

  it('refuses malformed arguments to current and purgeWindowsBefore with a TypeError', async () => {
    await expect(store.counters.current('', 'total')).rejects.toBeInstanceOf(TypeError);
    await expect(store.counters.current('c', 'yesterday')).rejects.toBeInstanceOf(TypeError);
    // `total` is never purged, so asking to purge before it is a mistake.
    await expect(store.counters.purgeWindowsBefore('total')).rejects.toBeInstanceOf(TypeError);
    await expect(store.counters.purgeWindowsBefore('2026-11-27')).rejects.toBeInstanceOf(TypeError);
  });

  it('reports a stored count that is not a safe non-negative integer as STORE_CORRUPT', async () => {
    await store.counters.consume([ok]);
    withRawDatabase(temp.dbPath, (db) => db.prepare('UPDATE counters SET count = ?').run(2n ** 60n));
    await expect(store.counters.current('c', 'total')).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    await expect(store.counters.consume([{ ...ok, limit: Number.MAX_SAFE_INTEGER }])).rejects.toMatchObject({
      code: 'STORE_CORRUPT',
    });
    withRawDatabase(temp.dbPath, (db) => {
      db.pragma('ignore_check_constraints = ON');
      db.prepare('UPDATE counters SET count = -1').run();
    });
    await expect(store.counters.current('c', 'total')).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
  });
});

describe('closing', () => {
  it('fails every call after close with STORE_UNAVAILABLE', async () => {
    await store.close();
    for (const call of [
      () => store.counters.consume([{ counter: 'c', window: 'total', limit: 1 }]),
      () => store.counters.current('c', 'total'),
      () => store.counters.purgeWindowsBefore(MINUTE),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    }
  });
});
