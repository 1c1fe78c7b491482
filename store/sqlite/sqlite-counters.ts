/**
 * `CounterRepository` on SQLite.
 *
 * `consume` reads every count and then writes every increment under one write lock
 * (`atomically`), so no other call, connection or process can move a count between the
 * check and the write: a count never passes its limit, and a refused consume has
 * written nothing at all. A refusal names each exceeded counter once, in the order of
 * the increments. Increments are validated first (validation.ts): windows are `total`
 * or a real UTC minute, limits safe integers ≥ 1, at most MAX_INCREMENTS of them, and
 * no counter window twice.
 */
import type { CounterIncrement, CounterOutcome, CounterRepository } from '../store.js';
import {
  countFromRow,
  describeId,
  requireCounterName,
  requireIncrements,
  requireMinuteWindow,
  requireWindow,
  TOTAL_WINDOW,
} from '../validation.js';
import { atomically, type Runner, type SqliteAccess } from './sqlite-support.js';

export class SqliteCounterRepository implements CounterRepository {
  readonly #operations: SqliteCounterOperations;
  readonly #run: Runner;

  constructor(operations: SqliteCounterOperations, run: Runner) {
    this.#operations = operations;
    this.#run = run;
  }

  consume(increments: readonly CounterIncrement[]): Promise<CounterOutcome> {
    return this.#run('consuming counters', () => this.#operations.consume(increments));
  }

  current(counter: string, window: string): Promise<number> {
    return this.#run(`reading counter ${describeId(counter)}`, () => this.#operations.current(counter, window), 'read');
  }

  purgeWindowsBefore(window: string): Promise<number> {
    return this.#run('purging counter windows', () => this.#operations.purgeWindowsBefore(window));
  }
}

// `window` is quoted: it is a reserved word in PostgreSQL, and quoted in the schema too.
const SELECT_COUNT = 'SELECT count FROM counters WHERE counter = ? AND "window" = ?';
const ALLOWED: CounterOutcome = Object.freeze({ allowed: true });

/** The synchronous SQL behind `CounterRepository`; callers provide ordering and error translation. */
export class SqliteCounterOperations {
  readonly #access: SqliteAccess;

  constructor(access: SqliteAccess) {
    this.#access = access;
  }

  consume(candidate: readonly CounterIncrement[]): CounterOutcome {
    const increments = requireIncrements(candidate);
    if (increments.length === 0) return ALLOWED;
    return atomically(this.#access, () => {
      const exceeded = new Set<string>();
      for (const { counter, window, limit } of increments) {
        // `count + 1 > limit`, written so that it cannot overflow.
        if (this.#read(counter, window) >= limit) exceeded.add(counter);
      }
      if (exceeded.size > 0) return Object.freeze({ allowed: false, exceeded: Object.freeze([...exceeded]) });
      const upsert = this.#access.statement(
        `INSERT INTO counters (counter, "window", count) VALUES (?, ?, 1)
           ON CONFLICT (counter, "window") DO UPDATE SET count = counters.count + 1`,
      );
      for (const { counter, window } of increments) upsert.run(counter, window);
      return ALLOWED;
    });
  }

  current(counterArg: string, windowArg: string): number {
    const counter = requireCounterName(counterArg);
    const window = requireWindow(windowArg);
    return this.#read(counter, window);
  }

  purgeWindowsBefore(windowArg: string): number {
    const window = requireMinuteWindow(windowArg);
    // Minute windows have a fixed width, so text order is time order; `total` would sort
    // after every minute but is excluded by name all the same.
    return this.#access
      .statement('DELETE FROM counters WHERE "window" <> ? AND "window" < ?')
      .run(TOTAL_WINDOW, window).changes;
  }

  #read(counter: string, window: string): number {
    const row: unknown = this.#access.statement(SELECT_COUNT).get(counter, window);
    if (row === undefined) return 0;
    return countFromRow((row as { count?: unknown }).count);
  }
}
