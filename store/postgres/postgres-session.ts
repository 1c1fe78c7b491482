/**
 * How the PostgreSQL repositories reach the database: a `PgSession` per repository
 * call, over one pooled connection (a `Lease`), and a `PgRunner` that decides where a
 * call runs: on a connection of its own (a plain call) or inside a `transaction`.
 *
 * Atomic units. A call that reads and then writes, or writes several statements, wraps
 * them in `session.atomically(...)`: its own transaction for a plain call; inside
 * `transaction()`, a savepoint for a call the database may refuse (so a refused call
 * never leaves half its writes behind nor aborts the caller's transaction), nothing
 * for the hot calls it never refuses in normal operation (see `PgRunner`).
 *
 * Transactions run at READ COMMITTED, stated explicitly rather than taken from the
 * server's default: every statement then reads a fresh snapshot, so a statement that
 * runs after taking a lock sees everything committed by the lock's previous holder.
 * The operations that need serialising take the lock they need (advisory locks for the
 * log, row locks for token uses, counters and key states) rather than relying on
 * SERIALIZABLE, whose failures would have to be retried by callers whose work (an HSM
 * signature) should not run twice.
 *
 * Round trips. BEGIN, SAVEPOINT and RELEASE SAVEPOINT are deferred until the next
 * statement and sent with it in one simple-protocol message (its values then written
 * into it as literals). A unit that issues no statement sends nothing at all.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { StoreError } from '../errors.js';
import { breaksConnection, sqlState, translatePostgresError } from './postgres-errors.js';

export interface PgResult {
  readonly rows: readonly Record<string, unknown>[];
  readonly rowCount: number;
  /** The command tag's verb: `INSERT`, `COMMIT`, `ROLLBACK`, … */
  readonly command: string;
}

/** The isolation level is spelled out: the server's default may be another one. */
export const BEGIN = 'BEGIN ISOLATION LEVEL READ COMMITTED';
const SAVEPOINT = 'SAVEPOINT signet_call';
const RELEASE = 'RELEASE SAVEPOINT signet_call';
const ROLLBACK_TO = 'ROLLBACK TO SAVEPOINT signet_call; RELEASE SAVEPOINT signet_call';

/** One deferred statement; an object so that two equal texts stay distinct. */
interface Deferred {
  readonly sql: string;
}

/**
 * A connection checked out of the pool. While it is out, the pool no longer listens
 * for its errors; an error event without a listener would crash the process, so the
 * lease listens and remembers that the connection is unusable. A broken connection is
 * destroyed on release instead of going back to the pool, which then opens a fresh
 * one: that is how the store recovers once the database is back.
 */
export class Lease {
  readonly #client: pg.PoolClient;
  /** What the connection was taken for, for messages about failures of the connection itself. */
  readonly #what: string;
  #broken = false;
  #released = false;
  #pending: Deferred[] = [];
  /** See `PgSession.transactionMemo`. */
  readonly memo = new Map<string, unknown>();
  readonly #onError = (): void => {
    this.#broken = true;
  };

  constructor(client: pg.PoolClient, what: string) {
    this.#client = client;
    this.#what = what;
    client.on('error', this.#onError);
  }

  /** Queues `sql` (no parameters) to be sent before the next statement. */
  defer(sql: string): Deferred {
    const deferred = { sql };
    this.#pending.push(deferred);
    return deferred;
  }

  /** Drops a deferred statement that was never sent; false if it has been sent. */
  undo(deferred: Deferred): boolean {
    const position = this.#pending.indexOf(deferred);
    if (position < 0) return false;
    this.#pending.splice(position, 1);
    return true;
  }

  /**
   * Runs one statement, after any deferred ones. Server errors propagate as thrown, so
   * that callers can tell a unique violation from a timeout; any other failure (the
   * connection is lost, closed or unusable) becomes STORE_UNAVAILABLE here.
   */
  async query(sql: string, params: readonly unknown[] = [], what: string = this.#what): Promise<PgResult> {
    const lead = this.#pending.splice(0).map((deferred) => deferred.sql);
    try {
      if (lead.length > 0 && params.length > 0) {
        // One message instead of two: the statement goes with the deferred ones, its
        // values written into it as literals (the simple protocol takes no parameters).
        return lastResult(await this.#client.query([...lead, withLiterals(sql, params)].join(';\n')));
      }
      const text = lead.length > 0 ? [...lead, sql].join(';\n') : sql;
      return lastResult(await this.#client.query(params.length > 0 ? named(text, params) : text));
    } catch (error) {
      if (breaksConnection(error)) this.#broken = true;
      throw sqlState(error) === null ? translatePostgresError(error, what) : error;
    }
  }

  /**
   * Drops savepoint releases still waiting to be sent, before a rollback: in a
   * transaction the server has aborted they would fail and take the rollback with them,
   * and rolling back makes them moot (releasing an outer savepoint, or ending the
   * transaction, disposes of the inner ones).
   */
  discardReleases(): void {
    this.#pending = this.#pending.filter((deferred) => !deferred.sql.startsWith('RELEASE SAVEPOINT'));
    // Whatever is remembered may be about writes about to be undone.
    this.memo.clear();
  }

  markBroken(): void {
    this.#broken = true;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#pending = [];
    this.memo.clear();
    if (this.#broken) {
      // The listener stays: the closing socket may still report an error.
      this.#client.release(true);
      return;
    }
    this.#client.removeListener('error', this.#onError);
    this.#client.release();
  }
}

/**
 * Parameterised statements are prepared once per connection under a name derived from
 * their text, so repeated calls skip parsing and planning. Every statement text is a
 * constant of this code, so the names are few.
 */
function named(text: string, params: readonly unknown[]): pg.QueryConfig {
  let name = STATEMENT_NAMES.get(text);
  if (name === undefined) {
    name = `signet_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
    STATEMENT_NAMES.set(text, name);
  }
  return { name, text, values: [...params] };
}

const STATEMENT_NAMES = new Map<string, string>();

/**
 * `sql` with each `$n` replaced by its value as an SQL literal, quoted by the driver's
 * own escapeLiteral (text), as a hex decode (bytes), or as a decimal (numbers). Only
 * for this module's constant statements, whose parameters are validated values; a
 * value of another type is a bug, refused with a TypeError.
 */
function withLiterals(sql: string, params: readonly unknown[]): string {
  return sql.replace(/\$([1-9][0-9]*)/g, (placeholder, position: string) => {
    const index = Number(position) - 1;
    if (index >= params.length) throw new TypeError(`statement placeholder ${placeholder} has no value`);
    return literal(params[index]);
  });
}

function literal(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return pg.escapeLiteral(value);
  if (typeof value === 'number' && Number.isFinite(value)) return `(${String(value)})`;
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (value instanceof Uint8Array) return `decode('${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}', 'hex')`;
  if (Array.isArray(value)) return `ARRAY[${value.map((element) => literal(element)).join(', ')}]`;
  throw new TypeError(`cannot write a ${typeof value} as an SQL literal`);
}

/** A multi-statement simple query answers with one result per statement; the last is the one asked for. */
function lastResult(result: pg.QueryResult | pg.QueryResult[]): PgResult {
  const last = Array.isArray(result) ? result.at(-1) : result;
  if (last === undefined) return { rows: [], rowCount: 0, command: '' };
  return { rows: last.rows as Record<string, unknown>[], rowCount: last.rowCount ?? 0, command: last.command };
}

export interface PgSessionOptions {
  /** The connection, acquired on the first statement (a call refused by validation never takes one). */
  readonly connection: () => Promise<Lease>;
  /** What the call is doing, for error messages. */
  readonly what: string;
  /**
   * What `atomically` opens: a transaction of its own (plain calls), a savepoint (a
   * call inside `transaction` that the database may refuse, such as a duplicate key),
   * or nothing (a call inside `transaction` that the database never refuses in normal
   * operation: any failure of it aborts the enclosing transaction instead).
   */
  readonly unit: 'transaction' | 'savepoint' | 'none';
  /**
   * Told when a statement outside any atomic unit fails (any statement, for unit
   * `none`), or a savepoint cannot be rolled back: inside `transaction()`, PostgreSQL
   * has then aborted the whole transaction, and nothing after it may look successful.
   */
  readonly onAbort: () => void;
}

/** One repository call's access to the database. */
export class PgSession {
  readonly #options: PgSessionOptions;
  #lease: Lease | undefined;
  #depth = 0;
  #opening: Deferred | undefined;

  constructor(options: PgSessionOptions) {
    this.#options = options;
  }

  get what(): string {
    return this.#options.what;
  }

  /** Runs one statement (see `Lease.query`). */
  async query(sql: string, params: readonly unknown[] = []): Promise<PgResult> {
    const lease = await this.#connection();
    try {
      return await lease.query(sql, params, this.#options.what);
    } catch (error) {
      if (this.#depth === 0 || this.#options.unit === 'none') this.#options.onAbort();
      throw error;
    }
  }

  /**
   * What this call may remember about the database for the rest of the enclosing
   * `transaction()` (the log's right edge, while the transaction holds the log lock);
   * undefined for a plain call. Emptied whenever anything is rolled back.
   */
  async transactionMemo(): Promise<Map<string, unknown> | undefined> {
    if (this.#options.unit === 'transaction') return undefined;
    return (await this.#connection()).memo;
  }

  /**
   * This call wrote something and then found it must not stand (a row it completed
   * turned out damaged). Its own unit rolls back when the call throws; without one
   * (unit `none`), the enclosing transaction is marked aborted, so nothing of it commits.
   */
  discardOnFailure(): void {
    if (this.#options.unit === 'none') this.#options.onAbort();
  }

  /** Runs `work` as one atomic unit. Nested calls join the enclosing unit. */
  async atomically<T>(work: () => Promise<T>): Promise<T> {
    if (this.#depth > 0 || this.#options.unit === 'none') {
      this.#depth += 1;
      try {
        return await work();
      } finally {
        this.#depth -= 1;
      }
    }
    const lease = await this.#connection();
    this.#opening = lease.defer(this.#options.unit === 'transaction' ? BEGIN : SAVEPOINT);
    this.#depth = 1;
    let value: T;
    try {
      value = await work();
    } catch (error) {
      this.#depth = 0;
      await this.#end(lease, false);
      throw error;
    }
    this.#depth = 0;
    await this.#end(lease, true);
    return value;
  }

  async #connection(): Promise<Lease> {
    this.#lease ??= await this.#options.connection();
    return this.#lease;
  }

  /** Commits or rolls back the unit, unless none of it reached the server. */
  async #end(lease: Lease, commit: boolean): Promise<void> {
    const opening = this.#opening;
    this.#opening = undefined;
    if (opening === undefined || lease.undo(opening)) return;
    const transaction = this.#options.unit === 'transaction';
    if (commit && !transaction) {
      // Releasing a savepoint cannot be refused; it travels with the next statement.
      lease.defer(RELEASE);
      return;
    }
    if (commit) {
      let result: PgResult;
      try {
        result = await lease.query('COMMIT');
      } catch (error) {
        await rollbackQuietly(lease);
        throw translatePostgresError(error, `committing (${this.#options.what})`);
      }
      // COMMIT of a transaction the server had already aborted answers ROLLBACK, not an error.
      if (result.command === 'ROLLBACK') {
        throw new StoreError('STORE_UNAVAILABLE', `the database rolled the transaction back (${this.#options.what})`);
      }
      return;
    }
    if (transaction) {
      await rollbackQuietly(lease);
      return;
    }
    try {
      lease.discardReleases();
      await lease.query(ROLLBACK_TO);
    } catch {
      // The enclosing transaction is now aborted; its COMMIT will refuse.
      this.#options.onAbort();
    }
  }
}

/**
 * ROLLBACK on a failure path, where the first error is the one to report. If even the
 * rollback fails, the connection's state is unknown, so it is not reused.
 */
export async function rollbackQuietly(lease: Lease): Promise<void> {
  try {
    lease.discardReleases();
    await lease.query('ROLLBACK');
  } catch {
    lease.markBroken();
  }
}

/**
 * Runs one repository call. Inside a transaction: `read` calls change nothing; `write`
 * calls run in a savepoint of their own, so that a write the database refuses (a
 * duplicate key the caller handles) does not abort the whole transaction;
 * `write-unrefused` calls (a token claim, a consume, a log append: nothing the
 * database refuses in normal operation) run without one, to save round trips, and any
 * failure of theirs aborts the enclosing transaction. Outside a transaction all three
 * run alone, atomically.
 */
export type PgRunner = <T>(
  what: string,
  operation: (session: PgSession) => Promise<T>,
  access?: 'read' | 'write' | 'write-unrefused',
) => Promise<T>;
