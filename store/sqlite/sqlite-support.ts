/**
 * What the SQLite repositories share. Each repository is split in two: synchronous
 * operations that hold the SQL (and know nothing of queues or transactions), and a
 * thin public class that hands every call to a `Runner`. The store gives plain
 * repositories a runner that queues the call, and the repositories of one
 * `transaction` a runner that executes inside it, so both run the same SQL.
 */
import type Database from 'better-sqlite3';

/**
 * Runs one repository call; `what` feeds error messages. `read` calls change nothing:
 * outside a transaction they run at their turn in the queue instead of waiting for the
 * next group commit. `settled` reads read only rows that no write changes once they are
 * durable, and only rows the caller knows to be durable (the log's Merkle nodes below a
 * tree size read from storage or signed): they run at once, without waiting behind the
 * group commits and fsyncs in the queue, since no write can change what they return.
 * `deferred` writes are writes that nobody is waiting on to answer a
 * request: outside a transaction they join the next group commit that other writes
 * start, rather than starting one of their own (and its fsync), and start one
 * themselves only after DEFERRED_WRITE_MAX_DELAY_MS without one.
 */
export type Runner = <T>(what: string, operation: () => T, access?: 'read' | 'settled' | 'write' | 'deferred') => Promise<T>;

/**
 * How long a deferred write waits for another write's group commit. Under load one
 * comes within a millisecond or two; on an idle service this is the extra delay.
 */
export const DEFERRED_WRITE_MAX_DELAY_MS = 10;

/** The connection and its statement cache, as the operations need them. */
export interface SqliteAccess {
  readonly db: Database.Database;
  /** A prepared statement for `sql`, prepared once per connection. */
  statement(sql: string): Database.Statement;
  /**
   * Runs `callback` once the write running now is durable (its group committed and the
   * WAL fsynced), and never if that write is rolled back or its commit or fsync fails.
   * Outside a write the store tracks (reads, migrations, exclusive calls) the callback
   * is dropped. For caches of rows that never change once durable: a row seen only by
   * an uncommitted write may yet be rolled back and its key reused.
   */
  afterDurable(callback: () => void): void;
  /** See LogRepository.commitInFlight (store.ts). */
  commitInFlight(): Promise<void> | undefined;
  /**
   * A number that changes whenever rows a write on this connection returned from may
   * be gone, or another writer may have written: at the start of every group commit
   * and of every exclusive call, and on every failed operation, rollback or failed
   * commit. While it stays the same, every row written by an operation that returned
   * since it last changed is still there, and no other connection has written. For
   * state carried from one write to the next within one group commit (the log's size
   * and newest nodes), which would otherwise be read back from the table.
   */
  writeEpoch(): number;
}

/**
 * Read-then-write as one unit: a savepoint inside a transaction, else its own IMMEDIATE
 * transaction. IMMEDIATE takes the write lock before the read, so no other connection
 * (or process) can write between what the operation reads and what it writes.
 */
export function atomically<T>(access: SqliteAccess, operation: () => T): T {
  return transactionRunner(access.db).immediate(operation) as T;
}

/**
 * Several reads as one snapshot, in a deferred (read) transaction unless one is already
 * open. Also cheaper than autocommit: each autocommit statement opens and closes a read
 * transaction of its own, which costs more than a primary-key lookup.
 */
export function consistently<T>(access: SqliteAccess, operation: () => T): T {
  return access.db.inTransaction ? operation() : (transactionRunner(access.db).deferred(operation) as T);
}

/**
 * One transaction function per connection, taking the operation as its argument:
 * `db.transaction(fn)` builds four wrappers each time it is called, which cost more
 * than the statements of a small operation.
 */
const runners = new WeakMap<Database.Database, Database.Transaction<(operation: () => unknown) => unknown>>();

function transactionRunner(db: Database.Database): Database.Transaction<(operation: () => unknown) => unknown> {
  let runner = runners.get(db);
  if (runner === undefined) {
    runner = db.transaction((operation: () => unknown) => operation());
    runners.set(db, runner);
  }
  return runner;
}
