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
 * Round trips. Connections are pipelined (node-postgres `pipeline: true`): every
 * statement goes on the wire at once, each with its own Sync, and the answers come back
 * in order, so statements issued back to back share one round trip. BEGIN, SAVEPOINT,
 * RELEASE SAVEPOINT (and a lock a unit takes first) are deferred until the next
 * statement and sent just before it; a unit that issues no statement sends nothing at
 * all. Statements with parameters are prepared once per connection (named), so they
 * are parsed and planned once, not on every call.
 *
 * Unconfirmed writes. A write whose outcome the caller can compute for itself (a log
 * append under the log lock: its indexes are known from the head read under that lock)
 * may be sent without waiting for its answer (`PgSession.send`): the statements after
 * it follow it on the wire. If it fails, the server aborts the transaction, so nothing
 * after it can be committed; the lease records the failure with the unit that sent it
 * (its owner), and whoever ends that unit, or the group commit around it, checks for
 * one before committing (see `Lease.failedWrite`). Only the owner's own rollback (to a
 * savepoint taken before the write) may clear it.
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
export interface Deferred {
  readonly sql: string;
}

/** A write sent without waiting (`Lease.send`) that the server refused. */
export interface FailedWrite {
  /** The unit that sent it: a plain call's session, or a transaction of a group. */
  readonly owner: object;
  readonly error: unknown;
}

/**
 * A connection checked out of the pool. While it is out, the pool no longer listens
 * for its errors, so the lease listens and remembers that the connection is unusable
 * (every connection also keeps a listener of its own, postgres-store.ts, so that no
 * error event can crash the process). A broken connection is
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
  #failedWrite: FailedWrite | undefined;
  #corked = false;
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
   * connection is lost, closed or unusable) becomes STORE_UNAVAILABLE here. `prepare`:
   * prepare it even without parameters (a hot statement with none).
   */
  async query(sql: string, params: readonly unknown[] = [], what: string = this.#what, prepare = false): Promise<PgResult> {
    const lead = this.#takeLead();
    this.#cork();
    try {
      if (params.length === 0 && !prepare) {
        // One simple-protocol message, the deferred statements first.
        return lastResult(await this.#client.query(lead === undefined ? sql : `${lead};\n${sql}`));
      }
      // Pipelined: the deferred statements and this one go out together.
      const leading = lead === undefined ? undefined : this.#client.query(lead);
      const statement = this.#client.query(named(sql, params));
      if (leading === undefined) return lastResult(await statement);
      const [first, second] = await Promise.allSettled([leading, statement]);
      // A deferred statement that failed is the cause; the statement after it only
      // found the transaction aborted.
      if (first.status === 'rejected') throw first.reason;
      if (second.status === 'rejected') throw second.reason;
      return lastResult(second.value);
    } catch (error) {
      if (breaksConnection(error)) this.#broken = true;
      throw sqlState(error) === null ? translatePostgresError(error, what) : error;
    }
  }

  /**
   * Sends one write, after any deferred ones, without waiting for its answer; the
   * statements sent after it follow it on the wire. A failure is recorded (the first
   * one, with `owner`, the unit that sent it) and reported through `onFailure`; inside a
   * transaction it has aborted the transaction, so nothing after it commits.
   */
  send(sql: string, params: readonly unknown[], owner: object, onFailure: () => void): void {
    const lead = this.#takeLead();
    this.#cork();
    const leading = lead === undefined ? undefined : this.#client.query(lead);
    const statement = this.#client.query(params.length > 0 ? named(sql, params) : sql);
    const fail = (error: unknown): void => {
      if (breaksConnection(error)) this.#broken = true;
      this.#failedWrite ??= { owner, error };
      onFailure();
    };
    // Handled as each answer arrives, so that the failure is recorded before anyone
    // awaiting a statement sent later hears of that one.
    leading?.catch(fail);
    statement.catch(fail);
  }

  /**
   * The first write sent with `send` that failed, and the unit that sent it, until
   * that unit's rollback clears it. Known once any statement sent after it has been
   * answered.
   */
  failedWrite(): FailedWrite | undefined {
    return this.#failedWrite;
  }

  /** The owner's unit was rolled back to before its writes: its failed write is undone with it. */
  clearFailedWrite(owner: object): void {
    if (this.#failedWrite?.owner === owner) this.#failedWrite = undefined;
  }

  /**
   * Holds what is written to the connection until the end of this turn of the event
   * loop (once the promise jobs queued now have run), so that the statements issued in
   * it leave in one write: one system call instead of one per statement (each statement
   * is several protocol messages, which node-postgres itself writes together).
   */
  #cork(): void {
    if (this.#corked) return;
    const { stream } = (this.#client as unknown as pg.Client).connection;
    this.#corked = true;
    stream.cork();
    process.nextTick(() => {
      this.#corked = false;
      stream.uncork();
    });
  }

  /** The deferred statements as one simple-protocol text, or undefined; they count as sent. */
  #takeLead(): string | undefined {
    const lead = this.#pending.splice(0).map((deferred) => deferred.sql);
    return lead.length === 0 ? undefined : lead.join(';\n');
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

  /** The connection failed: it is destroyed when released. */
  isBroken(): boolean {
    return this.#broken;
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#pending = [];
    this.#failedWrite = undefined;
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
   * Also told when a write sent with `send` fails.
   */
  readonly onAbort: () => void;
  /**
   * The unit the writes sent with `send` belong to, for `Lease.failedWrite`: inside
   * `transaction()`, the transaction; for a plain call (the default), this session.
   */
  readonly owner?: object;
  /** Inside `transaction()`, run at once with others on one connection, without savepoints. */
  readonly concurrent?: boolean;
  /**
   * For a plain read: a connection shared with other plain reads, for the statements it
   * runs outside `atomically` (each alone, autocommit). `atomically` takes one of its own.
   */
  readonly shared?: () => Promise<SharedUse>;
}

/** A use of a shared connection: `done` when the statement is answered. */
export interface SharedUse {
  readonly lease: Lease;
  readonly done: () => void;
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

  /** Runs one statement (see `Lease.query`); `prepare` a hot one without parameters too. */
  async query(sql: string, params: readonly unknown[] = [], prepare = false): Promise<PgResult> {
    const { shared } = this.#options;
    if (shared !== undefined && this.#lease === undefined && this.#depth === 0) {
      const use = await shared();
      try {
        return await use.lease.query(sql, params, this.#options.what, prepare);
      } finally {
        use.done();
      }
    }
    const lease = await this.#connection();
    try {
      return await lease.query(sql, params, this.#options.what, prepare);
    } catch (error) {
      if (this.#depth === 0 || this.#options.unit === 'none') this.#options.onAbort();
      throw error;
    }
  }

  /**
   * Sends a write without waiting for its answer (see `Lease.send`): for a write the
   * database does not refuse in normal operation, whose outcome the caller knows
   * already. Only where a failure cannot go unnoticed: inside this call's own
   * transaction (its COMMIT checks), or inside `transaction()` without a savepoint (the
   * group commit checks); anywhere else it is simply run. `leading`: statements
   * without parameters (a lock) sent just before it.
   */
  async send(sql: string, leading: readonly string[], params: readonly unknown[]): Promise<void> {
    const { unit, onAbort } = this.#options;
    const lease = await this.#connection();
    for (const statement of leading) lease.defer(statement);
    if (unit === 'savepoint' || (unit === 'transaction' && this.#depth === 0)) {
      await this.query(sql, params);
      return;
    }
    lease.send(sql, params, this.#owner, onAbort);
  }

  /**
   * Runs one statement as a transaction of its own, after `leading` (locks: no
   * parameters), and commits it, all in one round trip; for a statement whose outcome
   * may be committed whatever it is (it writes only what it decided to write). Inside
   * `transaction()` the statement joins it instead (after `leading`, in a savepoint for
   * a call the database may refuse).
   */
  async committing(sql: string, params: readonly unknown[], leading: readonly string[]): Promise<PgResult> {
    const lease = await this.#connection();
    if (this.#options.unit !== 'transaction' || this.#depth > 0) {
      return this.atomically(async () => {
        for (const statement of leading) lease.defer(statement);
        return this.query(sql, params);
      });
    }
    const what = this.#options.what;
    lease.defer(BEGIN);
    for (const statement of leading) lease.defer(statement);
    // Both on the wire at once (nothing is awaited between them).
    const statement = lease.query(sql, params, what);
    const commit = lease.query('COMMIT', [], what);
    const [ran, committed] = await Promise.allSettled([statement, commit]);
    // A refused statement aborted the transaction, which the COMMIT then ended.
    if (ran.status === 'rejected') throw ran.reason;
    if (committed.status === 'rejected') throw translatePostgresError(committed.reason, `committing (${what})`);
    if (committed.value.command === 'ROLLBACK') {
      throw new StoreError('STORE_UNAVAILABLE', `the database rolled the transaction back (${what})`);
    }
    return ran.value;
  }

  /** Sends `sql` (no parameters: a lock) just before the next statement, in the same round trip. */
  async defer(sql: string): Promise<void> {
    (await this.#connection()).defer(sql);
  }

  get #owner(): object {
    return this.#options.owner ?? this;
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

  /**
   * This call's outcome depends on running alone (it would undo what it wrote, which
   * others running at once may have built on): a transaction run at once with others
   * must run again alone.
   */
  requireAlone(): void {
    if (this.#options.concurrent === true) this.#options.onAbort();
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
      // A write sent without waiting was refused (the COMMIT, after it, answered
      // ROLLBACK): its own error says why (a conflict, say), as if it had been awaited.
      const failed = lease.failedWrite();
      if (failed !== undefined) throw translatePostgresError(failed.error, this.#options.what);
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
