/**
 * The counter repository on both backends: `consume` is all or nothing and never lets a
 * count pass its limit, whichever of two stores on one database it goes through
 * (fast-check); `current`; `purgeWindowsBefore` never touches `total`. The sequential
 * model of one SQLite store (calls served in the order they were made) is in
 * sqlite-counters.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { CounterIncrement } from '../../store/store.js';
import { MAX_ID_LENGTH, MAX_INCREMENTS } from '../../store/validation.js';
import { describeStore } from './backends.js';

const MINUTE = '2026-11-27T10:01';

describeStore('counters', (t) => {
  function rows(): Promise<unknown[]> {
    return t.db.raw.query('SELECT counter, "window", count FROM counters ORDER BY counter, "window"');
  }

  describe('consume', () => {
    it('adds 1 while the count stays within the limit, then refuses naming the counter', async () => {
      const rate = { counter: 'rate:project:example', window: MINUTE, limit: 3 };
      for (let i = 1; i <= 3; i += 1) {
        expect(await t.store.counters.consume([rate])).toEqual({ allowed: true });
        expect(await t.store.counters.current(rate.counter, MINUTE)).toBe(i);
      }
      const refused = await t.store.counters.consume([rate]);
      expect(refused).toEqual({ allowed: false, exceeded: ['rate:project:example'] });
      expect(Object.isFrozen(refused)).toBe(true);
      expect(await t.store.counters.current(rate.counter, MINUTE)).toBe(3);
      // Windows are separate counts.
      expect(await t.store.counters.consume([{ ...rate, window: '2026-11-27T10:02' }])).toEqual({ allowed: true });
    });

    it('changes nothing at all when one counter would go over, and names every one that would', async () => {
      await t.store.counters.consume([{ counter: 'a', window: 'total', limit: 1 }]);
      await t.store.counters.consume([{ counter: 'c', window: MINUTE, limit: 1 }]);
      const before = await rows();
      const outcome = await t.store.counters.consume([
        { counter: 'a', window: 'total', limit: 1 },
        { counter: 'b', window: MINUTE, limit: 5 },
        { counter: 'c', window: MINUTE, limit: 1 },
      ]);
      expect(outcome).toEqual({ allowed: false, exceeded: ['a', 'c'] });
      expect(await rows()).toEqual(before);
      expect(await t.store.counters.current('b', MINUTE)).toBe(0);
    });

    it('refuses once a limit is lowered below the count', async () => {
      for (let i = 0; i < 5; i += 1) await t.store.counters.consume([{ counter: 'u', window: 'total', limit: 10 }]);
      expect(await t.store.counters.consume([{ counter: 'u', window: 'total', limit: 4 }])).toEqual({
        allowed: false,
        exceeded: ['u'],
      });
      expect(await t.store.counters.current('u', 'total')).toBe(5);
    });

    it('names a counter once even when it is exceeded in two windows', async () => {
      await t.store.counters.consume([
        { counter: 'k', window: 'total', limit: 1 },
        { counter: 'k', window: MINUTE, limit: 1 },
      ]);
      expect(
        await t.store.counters.consume([
          { counter: 'k', window: 'total', limit: 1 },
          { counter: 'k', window: MINUTE, limit: 1 },
        ]),
      ).toEqual({ allowed: false, exceeded: ['k'] });
    });

    it('allows an empty list, writing nothing', async () => {
      expect(await t.store.counters.consume([])).toEqual({ allowed: true });
      expect(await rows()).toEqual([]);
    });

    it('keeps its increments only if the transaction around it commits', async () => {
      const usage = { counter: 'usage:key:demo-release@1', window: 'total', limit: 10 };
      await t.store.transaction(async (tx) => {
        expect(await tx.counters.consume([usage])).toEqual({ allowed: true });
        expect(await tx.counters.current(usage.counter, 'total')).toBe(1);
      });
      await expect(
        t.store.transaction(async (tx) => {
          await tx.counters.consume([usage]);
          await tx.counters.consume([usage]);
          throw new Error('nothing was signed');
        }),
      ).rejects.toThrow('nothing was signed');
      expect(await t.store.counters.current(usage.counter, 'total')).toBe(1);
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

    it('never passes a limit with two stores consuming from the same database', async () => {
      const second = await t.db.open();
      try {
        let round = 0;
        await fc.assert(
          fc.asyncProperty(scenario, async ({ limits, calls }) => {
            round += 1;
            // Plain calls only across two connections in one process (see the token-use
            // test for why); each call goes to one store or the other.
            const outcomes = await Promise.all(
              calls.map((call, i) => (i % 2 === 0 ? t.store : second).counters.consume(incrementsFor(call, limits, round))),
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
      expect(await t.store.counters.current('nothing', 'total')).toBe(0);
      expect(await t.store.counters.current('nothing', MINUTE)).toBe(0);
    });
  });

  describe('purgeWindowsBefore', () => {
    it('deletes minute windows before the given one and never `total`', async () => {
      const windows = ['2026-11-27T09:59', '2026-11-27T10:00', '2026-11-27T10:01', 'total'];
      for (const window of windows) {
        await t.store.counters.consume([
          { counter: 'rate:project:a', window, limit: 10 },
          { counter: 'rate:project:b', window, limit: 10 },
        ]);
      }
      expect(await t.store.counters.purgeWindowsBefore('2026-11-27T10:01')).toBe(4);
      expect(await rows()).toEqual([
        { counter: 'rate:project:a', window: '2026-11-27T10:01', count: 1 },
        { counter: 'rate:project:a', window: 'total', count: 1 },
        { counter: 'rate:project:b', window: '2026-11-27T10:01', count: 1 },
        { counter: 'rate:project:b', window: 'total', count: 1 },
      ]);
      // Even a bound after every minute keeps the usage totals.
      expect(await t.store.transaction((tx) => tx.counters.purgeWindowsBefore('9999-12-31T23:59'))).toBe(2);
      expect(await t.store.counters.current('rate:project:a', 'total')).toBe(1);
      expect(await t.store.counters.current('rate:project:b', 'total')).toBe(1);
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
        await expect(t.store.counters.consume(increments as CounterIncrement[])).rejects.toBeInstanceOf(TypeError);
        await expect(t.store.transaction((tx) => tx.counters.consume(increments as CounterIncrement[]))).rejects.toBeInstanceOf(
          TypeError,
        );
      }
      expect(await rows()).toEqual([]);
      // The boundaries themselves are fine.
      expect(
        await t.store.counters.consume([
          { counter: 'x'.repeat(MAX_ID_LENGTH), window: '2026-02-28T23:59', limit: Number.MAX_SAFE_INTEGER },
          ...Array.from({ length: MAX_INCREMENTS - 1 }, (_, i) => ({ ...ok, counter: `c${i}` })),
        ]),
      ).toEqual({ allowed: true });
    });

    it('refuses malformed arguments to current and purgeWindowsBefore with a TypeError', async () => {
      await expect(t.store.counters.current('', 'total')).rejects.toBeInstanceOf(TypeError);
      await expect(t.store.counters.current('c', 'yesterday')).rejects.toBeInstanceOf(TypeError);
      // `total` is never purged, so asking to purge before it is a mistake.
      await expect(t.store.counters.purgeWindowsBefore('total')).rejects.toBeInstanceOf(TypeError);
      await expect(t.store.counters.purgeWindowsBefore('2026-11-27')).rejects.toBeInstanceOf(TypeError);
    });

    it('reports a stored count that is not a safe non-negative integer as STORE_CORRUPT', async () => {
      await t.store.counters.consume([ok]);
      await t.db.raw.exec('UPDATE counters SET count = 1152921504606846976'); // 2^60
      await expect(t.store.counters.current('c', 'total')).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      await expect(t.store.counters.consume([{ ...ok, limit: Number.MAX_SAFE_INTEGER }])).rejects.toMatchObject({
        code: 'STORE_CORRUPT',
      });
      await t.db.raw.execUnchecked('UPDATE counters SET count = -1');
      await expect(t.store.counters.current('c', 'total')).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    });
  });

  describe('closing', () => {
    it('fails every call after close with STORE_UNAVAILABLE', async () => {
      await t.store.close();
      for (const call of [
        () => t.store.counters.consume([{ counter: 'c', window: 'total', limit: 1 }]),
        () => t.store.counters.current('c', 'total'),
        () => t.store.counters.purgeWindowsBefore(MINUTE),
      ]) {
        await expect(call()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      }
    });
  });
});
