/**
 * `CounterRepository` on PostgreSQL.
 *
 * A consume is one conditional upsert (INSERT … ON CONFLICT DO UPDATE … WHERE count <
 * limit): the server locks every row it touches and decides on the row's latest
 * committed version, so, across every replica, no count ever passes its limit. Rows
 * are touched in one fixed order (counter, window), so two consumes wait for each other
 * instead of deadlocking. If a window was full, the increments of the others are undone
 * (they are still locked, and never visible to anyone), so a refused consume writes
 * nothing at all; the refused counts are read back and validated, so a damaged count is
 * reported as STORE_CORRUPT rather than taken for a limit reached.
 *
 * Plain consumes made while one is being written are written together next
 * (postgres-grouping.ts): a busy project's consumes all update the same rows, and one
 * commit per consume would cap it at the rate of WAL flushes. A group locks every
 * window its calls touch (created at 0 first if missing; rows still at 0 afterwards
 * are deleted again), decides each call in call order on the counts the calls before
 * it left, exactly as if they had run one after another, and writes the final counts.
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
import { CallGroup, type CallGrouping, type CallOutcome } from './postgres-grouping.js';
import type { PgRunner, PgSession } from './postgres-session.js';

const ALLOWED: CounterOutcome = Object.freeze({ allowed: true });
/** Most consumes written together; each touches at most MAX_INCREMENTS windows. */
const MAX_GROUP = 256;

// `window` is quoted: it is a reserved word in PostgreSQL, and quoted in the schema too.
const LOCK_COUNTS = `
SELECT counter, "window", count FROM counters
 WHERE (counter, "window") IN (SELECT * FROM unnest($1::text[], $2::text[]))
 ORDER BY counter, "window"
   FOR UPDATE`;

const CREATE_MISSING = `
INSERT INTO counters (counter, "window", count)
SELECT counter, win, 0 FROM unnest($1::text[], $2::text[]) AS i (counter, win) ORDER BY counter, win
    ON CONFLICT (counter, "window") DO NOTHING`;

/**
 * One consume as one statement: 1 added to every window still below its limit. The
 * server locks each row it updates (or inserts), and evaluates the condition on the
 * row's latest committed version; ON CONFLICT DO UPDATE locks a conflicting row even
 * when the condition refuses it. `c.count >= 0` keeps a damaged negative count from
 * being incremented: it is refused, read back and reported instead.
 */
const CONSUME_ONE = `
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS i (counter, win, lim)
)
INSERT INTO counters AS c (counter, "window", count)
SELECT counter, win, 1 FROM input ORDER BY counter, win
    ON CONFLICT (counter, "window") DO UPDATE SET count = c.count + 1
 WHERE c.count >= 0
   AND c.count < (SELECT lim FROM input WHERE input.counter = excluded.counter AND input.win = excluded."window")
RETURNING counter, "window", (xmax = 0) AS inserted`;

/**
 * Undoes a refused consume's increments (rows it inserted deleted, rows it updated
 * decremented: disjoint sets of rows, all still locked by it) and reads back the
 * refused windows' counts.
 */
const UNDO_AND_READ = `
WITH removed AS (
  DELETE FROM counters WHERE (counter, "window") IN (SELECT * FROM unnest($1::text[], $2::text[]))
), restored AS (
  UPDATE counters SET count = count - 1 WHERE (counter, "window") IN (SELECT * FROM unnest($3::text[], $4::text[]))
)
SELECT count FROM counters WHERE (counter, "window") IN (SELECT * FROM unnest($5::text[], $6::text[]))`;

/** New counts for the windows that changed; the rows still at 0 removed (disjoint sets of rows). */
const WRITE_COUNTS = `
WITH changed AS (
  UPDATE counters SET count = v.count
    FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v (counter, win, count)
   WHERE counters.counter = v.counter AND counters."window" = v.win
)
DELETE FROM counters
 WHERE count = 0 AND (counter, "window") IN (SELECT * FROM unnest($4::text[], $5::text[]))`;

export class PostgresCounterRepository implements CounterRepository {
  readonly #run: PgRunner;
  readonly #group: CallGroup<readonly CounterIncrement[], CounterOutcome> | undefined;

  /** With `grouping` (plain calls), consumes made while a group is being written are written together next. */
  constructor(run: PgRunner, grouping?: CallGrouping) {
    this.#run = run;
    this.#group =
      grouping === undefined
        ? undefined
        : new CallGroup({
            grouping,
            describe: (calls) => (calls.length === 1 ? 'consuming counters' : `consuming counters (${calls.length} calls)`),
            maxWeight: MAX_GROUP,
            weigh: () => 1,
            write: (db, calls) => (calls.length === 1 ? consumeOne(db, calls[0] ?? []).then((value) => [{ ok: true, value }]) : consumeCalls(db, calls)),
          });
  }

  consume(candidate: readonly CounterIncrement[]): Promise<CounterOutcome> {
    if (this.#group !== undefined) return this.#group.submit('consuming counters', () => requireIncrements(candidate));
    return this.#run('consuming counters', (db) => consumeOne(db, requireIncrements(candidate)), 'write-unrefused');
  }

  current(counterArg: string, windowArg: string): Promise<number> {
    return this.#run(
      `reading counter ${describeId(counterArg)}`,
      async (db) => {
        const counter = requireCounterName(counterArg);
        const window = requireWindow(windowArg);
        const row = (await db.query('SELECT count FROM counters WHERE counter = $1 AND "window" = $2', [counter, window])).rows[0];
        return row === undefined ? 0 : countFromRow(row.count);
      },
      'read',
    );
  }

  purgeWindowsBefore(windowArg: string): Promise<number> {
    return this.#run('purging counter windows', async (db) => {
      const window = requireMinuteWindow(windowArg);
      // Minute windows have a fixed width and the column is COLLATE "C", so text order is
      // time order; `total` would sort after every minute but is excluded by name all the same.
      return (await db.query('DELETE FROM counters WHERE "window" <> $1 AND "window" < $2', [TOTAL_WINDOW, window])).rowCount;
    });
  }
}

/**
 * One consume: one statement when it is allowed (the common case), a second to undo it
 * when one of its windows is full. Several windows are one atomic unit (nothing of a
 * refused consume is ever visible to anyone); one window needs none.
 */
async function consumeOne(db: PgSession, increments: readonly CounterIncrement[]): Promise<CounterOutcome> {
  if (increments.length === 0) return ALLOWED;
  const attempt = async (): Promise<CounterOutcome> => {
    const { rows } = await db.query(CONSUME_ONE, [
      increments.map((i) => i.counter),
      increments.map((i) => i.window),
      increments.map((i) => i.limit),
    ]);
    if (rows.length === increments.length) return ALLOWED;
    db.requireAlone();
    const done = new Map(rows.map((row) => [windowKey(String(row.counter), String(row.window)), row.inserted === true]));
    const inserted = increments.filter((i) => done.get(windowKey(i.counter, i.window)) === true);
    const updated = increments.filter((i) => done.get(windowKey(i.counter, i.window)) === false);
    const refused = increments.filter((i) => !done.has(windowKey(i.counter, i.window)));
    const counts = await db.query(UNDO_AND_READ, [
      inserted.map((i) => i.counter),
      inserted.map((i) => i.window),
      updated.map((i) => i.counter),
      updated.map((i) => i.window),
      refused.map((i) => i.counter),
      refused.map((i) => i.window),
    ]);
    // A damaged count is reported, not taken for a limit reached.
    for (const row of counts.rows) countFromRow(row.count);
    // Each exceeded counter once, in the order of the increments.
    return Object.freeze({ allowed: false, exceeded: Object.freeze([...new Set(refused.map((i) => i.counter))]) });
  };
  return increments.length === 1 ? attempt() : db.atomically(attempt);
}

/** The key of one counter window; JSON, so unambiguous whatever the names contain. */
function windowKey(counter: string, window: string): string {
  return JSON.stringify([counter, window]);
}

/**
 * Decides and writes a group of consumes in one atomic unit: every window they touch
 * locked (created at 0 first if missing), each call decided in order on the counts the
 * calls before it left, then the final counts written once.
 */
async function consumeCalls(db: PgSession, calls: readonly (readonly CounterIncrement[])[]): Promise<CallOutcome<CounterOutcome>[]> {
  const windows = new Map<string, { counter: string; window: string }>();
  for (const increments of calls) {
    for (const { counter, window } of increments) windows.set(windowKey(counter, window), { counter, window });
  }
  if (windows.size === 0) return calls.map(() => ({ ok: true, value: ALLOWED }));
  const all = [...windows.values()];
  return db.atomically(async () => {
    const counts = new Map<string, number>();
    const lock = async (pairs: readonly { counter: string; window: string }[]): Promise<void> => {
      const { rows } = await db.query(LOCK_COUNTS, [pairs.map((p) => p.counter), pairs.map((p) => p.window)]);
      for (const row of rows) counts.set(windowKey(String(row.counter), String(row.window)), countFromRow(row.count));
    };
    await lock(all);
    const missing = all.filter((pair) => !counts.has(windowKey(pair.counter, pair.window)));
    if (missing.length > 0) {
      await db.query(CREATE_MISSING, [missing.map((p) => p.counter), missing.map((p) => p.window)]);
      await lock(missing);
    }
    const before = new Map(counts);
    const outcomes = calls.map((increments): CallOutcome<CounterOutcome> => {
      // `count + 1 > limit`, written so that it cannot overflow.
      const exceeded = increments.filter((i) => (counts.get(windowKey(i.counter, i.window)) ?? 0) >= i.limit).map((i) => i.counter);
      if (exceeded.length > 0) {
        // Each exceeded counter once, in the order of the increments.
        return { ok: true, value: Object.freeze({ allowed: false, exceeded: Object.freeze([...new Set(exceeded)]) }) };
      }
      for (const { counter, window } of increments) {
        const key = windowKey(counter, window);
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return { ok: true, value: ALLOWED };
    });
    const changed = all.filter((pair) => counts.get(windowKey(pair.counter, pair.window)) !== before.get(windowKey(pair.counter, pair.window)));
    const unused = all.filter((pair) => counts.get(windowKey(pair.counter, pair.window)) === 0);
    if (changed.length > 0 || unused.length > 0) {
      await db.query(WRITE_COUNTS, [
        changed.map((p) => p.counter),
        changed.map((p) => p.window),
        changed.map((p) => counts.get(windowKey(p.counter, p.window)) ?? 0),
        unused.map((p) => p.counter),
        unused.map((p) => p.window),
      ]);
    }
    return outcomes;
  });
}
