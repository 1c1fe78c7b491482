/**
 * What only the SQLite counters guarantee beyond the shared contract (counters.test.ts):
 * one store serves calls in the order they were made (one FIFO queue), so concurrent
 * consumes, plain or in transactions that may roll back, give exactly the outcomes of a
 * sequential model.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../store/open-store.js';
import type { CounterIncrement, CounterOutcome, SignetStore } from '../../store/store.js';
import { makeTempDir } from './sqlite-fixtures.js';

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

describe('consume on one SQLite store (property)', () => {
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
});
