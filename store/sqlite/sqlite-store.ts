/**
 * The SQLite backend of `SignetStore`: one file, one connection, one process.
 *
 * Durability: WAL, and a write that returned has been fsynced (the log and the replay
 * cache depend on that): the connection runs `synchronous=NORMAL` and the store fsyncs
 * the WAL after each commit on libuv's thread pool (wal-sync.ts), holding every other
 * call until it returns, so the event loop serves requests during the fsync and no call
 * sees a write that is not yet durable. WAL checkpoints (copying the WAL back into the
 * database file, with its fsyncs) run on a worker thread with a connection of its own
 * (wal-checkpointer.ts), not inside a COMMIT on the event loop. The file is created
 * owner-only.
 *
 * Concurrency: better-sqlite3 is synchronous and the connection is shared by the whole
 * process, while `transaction(work)` runs asynchronous work between BEGIN and COMMIT.
 * Every call therefore goes through one FIFO queue: a group commit (see #grouped) holds
 * it from BEGIN to COMMIT/ROLLBACK, and a call made meanwhile waits its turn, so it can
 * neither see nor accidentally join a half-done transaction. Writes and transactions
 * made in one turn of the event loop, or while the group before them was still at
 * work, share one group commit (one fsync); each runs in a SAVEPOINT of its own, so
 * each is still all or nothing. A checkpoint's record waits for the next group commit
 * rather than starting one (a deferred write, sqlite-support.ts). Inside `work`, only the `tx`
 * handle may be used; touching the store itself there would wait for the transaction
 * that is waiting for it, so that is refused with a TypeError instead. `work` should
 * do storage work only: everything else in its group commit waits for it.
 *
 * Other processes on the same file (a CLI next to the service) stay correct: every
 * write that reads first takes the file's write lock before reading, so token claims
 * and counter limits hold across processes; a process waits for another's lock up to
 * the busy timeout. Two stores on one file in the *same* process must not keep
 * transactions open at the same time: one waiting for the other's lock would block the
 * event loop the other needs to finish.
 *
 * The repositories (sqlite-keys.ts, sqlite-token-uses.ts, sqlite-counters.ts,
 * sqlite-log.ts, sqlite-certificates.ts, sqlite-governance.ts) hold the SQL; everything they read back is validated (../validation.ts), and a row that does
 * not describe a valid record is reported as STORE_CORRUPT rather than handed to the
 * signing path.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { closeSync, constants as fsConstants, fchmodSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, translateSqliteError } from '../errors.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from '../migrations.js';
import { WalCheckpointer } from './wal-checkpointer.js';
import { WalSync } from './wal-sync.js';
import type {
  CertificateRepository,
  CounterRepository,
  GovernanceRepository,
  KeyRepository,
  LeaseRepository,
  LogRepository,
  SignetStore,
  StoreTransaction,
  TokenUseRepository,
} from '../store.js';
import { SqliteCertificateOperations, SqliteCertificateRepository } from './sqlite-certificates.js';
import { SqliteCounterOperations, SqliteCounterRepository } from './sqlite-counters.js';
import { SqliteGovernanceOperations, SqliteGovernanceRepository } from './sqlite-governance.js';
import { SqliteKeyOperations, SqliteKeyRepository } from './sqlite-keys.js';
import { SqliteLeaseOperations, SqliteLeaseRepository } from './sqlite-leases.js';
import { SqliteLogOperations, SqliteLogRepository } from './sqlite-log.js';
import { DEFERRED_WRITE_MAX_DELAY_MS, type Runner, type SqliteAccess } from './sqlite-support.js';
import { SqliteTokenUseOperations, SqliteTokenUseRepository } from './sqlite-token-uses.js';

export interface SqliteStoreOptions {
  /** Database file. Its directory must exist; the file is created with mode 0600 if missing. */
  readonly path: string;
  /**
   * How long a statement waits for another connection's lock before failing with
   * STORE_UNAVAILABLE. better-sqlite3 waits synchronously, blocking the event loop, so
   * keep it short. Default 5000.
   */
  readonly busyTimeoutMs?: number;
  /**
   * Open without write access: for tools that only inspect an existing database, and
   * to exercise the read-only failure path where file permissions do not apply (root).
   * The file must exist and already be in WAL mode.
   */
  readonly readonly?: boolean;
  /**
   * Checkpoint the WAL on a worker thread (wal-checkpointer.ts) instead of inside
   * COMMITs on the event loop. Default true; ignored for a read-only store, which
   * never checkpoints.
   */
  readonly backgroundCheckpoints?: boolean;
}

export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;
/** better-sqlite3 rejects larger timeouts (a signed 32-bit millisecond count). */
const MAX_BUSY_TIMEOUT_MS = 0x7fff_ffff;

/** Synchronous: everything it does is local file work. Throws StoreError, or TypeError for bad options. */
export function openSqliteStore(options: SqliteStoreOptions): SignetStore {
  const { path, busyTimeoutMs, readonly, backgroundCheckpoints } = checkOptions(options);
  requireDirectory(path);
  if (!readonly) createOwnerOnlyFile(path);

  let db: Database.Database;
  try {
    db = new Database(path, { readonly, fileMustExist: true, timeout: busyTimeoutMs });
  } catch (error) {
    throw asUnavailable(translateSqliteError(error, `opening ${path}`), `cannot open the storage file ${path}`);
  }
  try {
    configureConnection(db, path, busyTimeoutMs, readonly);
  } catch (error) {
    db.close();
    throw asUnavailable(translateSqliteError(error, `configuring ${path}`), `cannot configure the storage file ${path}`);
  }
  return new SqliteStore(db, readonly ? undefined : new WalSync(path), readonly || !backgroundCheckpoints ? undefined : path);
}

function checkOptions(options: SqliteStoreOptions): { path: string; busyTimeoutMs: number; readonly: boolean; backgroundCheckpoints: boolean } {
  const problems: string[] = [];
  const { path, busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS, readonly = false, backgroundCheckpoints = true } = options;
  // An in-memory database would silently lose the log and the key states on restart.
  if (typeof path !== 'string' || path.trim() === '' || path === ':memory:' || path.includes('\0')) {
    problems.push('path must name a database file');
  }
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > MAX_BUSY_TIMEOUT_MS) {
    problems.push(`busyTimeoutMs must be an integer from 0 to ${MAX_BUSY_TIMEOUT_MS}`);
  }
  if (typeof readonly !== 'boolean') problems.push('readonly must be a boolean');
  if (typeof backgroundCheckpoints !== 'boolean') problems.push('backgroundCheckpoints must be a boolean');
  if (problems.length > 0) throw new TypeError(`invalid SQLite store options: ${problems.join('; ')}`);
  return { path: resolve(path), busyTimeoutMs, readonly, backgroundCheckpoints };
}

function requireDirectory(path: string): void {
  const directory = dirname(path);
  let isDirectory: boolean;
  try {
    isDirectory = statSync(directory).isDirectory();
  } catch (error) {
    throw new StoreError('STORE_UNAVAILABLE', `storage directory ${directory} does not exist or cannot be read`, {
      cause: error,
    });
  }
  if (!isDirectory) throw new StoreError('STORE_UNAVAILABLE', `storage directory ${directory} is not a directory`);
}

/**
 * Creates the database file owner-only before SQLite sees it, so it never exists with
 * the process umask's wider mode; SQLite gives the -wal and -shm files the same mode.
 * O_EXCL: an existing file (or a symlink planted in its place) is left as it is.
 */
function createOwnerOnlyFile(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw new StoreError('STORE_UNAVAILABLE', `cannot create the storage file ${path}`, { cause: error });
  }
  try {
    // The umask can only narrow the mode given to open(2); set it exactly so the
    // owner can always read and write.
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
}

function configureConnection(db: Database.Database, path: string, busyTimeoutMs: number, readonly: boolean): void {
  // A read-only connection cannot change the journal mode; the file keeps the mode
  // a read-write open gave it.
  const journalMode: unknown = db.pragma(readonly ? 'journal_mode' : 'journal_mode = WAL', { simple: true });
  requirePragma(path, 'journal_mode', journalMode, 'wal');
  // NORMAL: the store fsyncs the WAL itself after each commit, off the event loop (wal-sync.ts).
  db.pragma('synchronous = NORMAL');
  requirePragma(path, 'synchronous', db.pragma('synchronous', { simple: true }), 1);
  db.pragma('foreign_keys = ON');
  requirePragma(path, 'foreign_keys', db.pragma('foreign_keys', { simple: true }), 1);
  requirePragma(path, 'busy_timeout', db.pragma('busy_timeout', { simple: true }), busyTimeoutMs);
}

function requirePragma(path: string, pragma: string, actual: unknown, expected: string | number): void {
  if (actual !== expected) {
    throw new StoreError(
      'STORE_UNAVAILABLE',
      `storage file ${path}: PRAGMA ${pragma} is ${describePragmaValue(actual)}, required ${String(expected)}`,
    );
  }
}

function describePragmaValue(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : typeof value;
}

function asUnavailable(error: unknown, message: string): StoreError {
  return error instanceof StoreError ? error : new StoreError('STORE_UNAVAILABLE', message, { cause: error });
}

/** FIFO: each task starts after the previous one settled, whatever its outcome. */
class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => T | Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

/** A plain repository call, or a whole `transaction(work)`, waiting for its group commit. */
type GroupedCall = PlainCall | TransactionCall;

interface Settle {
  readonly what: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

interface PlainCall extends Settle {
  readonly kind: 'plain';
  readonly operation: () => unknown;
}

interface TransactionCall extends Settle {
  readonly kind: 'transaction';
  readonly work: (tx: StoreTransaction) => Promise<unknown>;
}

/** A call's result; a successful one carries what its writes asked to run once durable (SqliteAccess.afterDurable). */
type Outcome =
  | { readonly ok: true; readonly value: unknown; readonly afterDurable: readonly (() => void)[] }
  | { readonly ok: false; readonly error: unknown };

/**
 * One per `transaction` call; `open` turns false the moment `work` settles.
 * `afterDurable` collects what its operations ask to run once the transaction is durable.
 */
interface TransactionContext {
  open: boolean;
  readonly afterDurable: (() => void)[];
}

/** The synchronous operations of every repository, shared by plain calls and transactions. */
interface Operations {
  readonly keys: SqliteKeyOperations;
  readonly tokenUses: SqliteTokenUseOperations;
  readonly counters: SqliteCounterOperations;
  readonly log: SqliteLogOperations;
  readonly certificates: SqliteCertificateOperations;
  readonly governance: SqliteGovernanceOperations;
}

/** Every repository over one runner: the store's own (queued) or one transaction's. */
function repositories(operations: Operations, run: Runner): StoreTransaction {
  return Object.freeze({
    keys: new SqliteKeyRepository(operations.keys, run),
    tokenUses: new SqliteTokenUseRepository(operations.tokenUses, run),
    counters: new SqliteCounterRepository(operations.counters, run),
    log: new SqliteLogRepository(operations.log, run),
    certificates: new SqliteCertificateRepository(operations.certificates, run),
    governance: new SqliteGovernanceRepository(operations.governance, run),
  });
}

class SqliteStore implements SignetStore {
  readonly kind = 'sqlite' as const;
  readonly leases: LeaseRepository;
  readonly keys: KeyRepository;
  readonly tokenUses: TokenUseRepository;
  readonly counters: CounterRepository;
  readonly log: LogRepository;
  readonly certificates: CertificateRepository;
  readonly governance: GovernanceRepository;

  readonly #db: Database.Database;
  /** Undefined for a read-only store. */
  readonly #wal: WalSync | undefined;
  /** Undefined when the connection checkpoints by itself (read-only, or background checkpoints off or failed to start). */
  readonly #checkpointer: WalCheckpointer | undefined;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #queue = new SerialQueue();
  readonly #transactionContext = new AsyncLocalStorage<TransactionContext>();
  readonly #operations: Operations;
  #closed: Promise<void> | null = null;
  /** Plain calls waiting for the next group commit (see #grouped). */
  #pending: GroupedCall[] = [];
  #flushScheduled = false;
  /** A group commit is queued and has not taken its calls yet (see #flushGroup). */
  #groupQueued = false;
  /** The timer that flushes deferred calls if no other call does first. */
  #deferredFlush: NodeJS.Timeout | undefined;
  /** Told when the group running now has settled (#commitInFlight); undefined between groups. */
  #runningGroupWaiters: (() => void)[] | undefined;
  /** Told when the next group to start has settled. */
  #nextGroupWaiters: (() => void)[] = [];
  /**
   * Where SqliteAccess.afterDurable puts callbacks: the list of the write running now
   * (set only while one of its synchronous operations runs), else undefined.
   */
  #afterDurable: (() => void)[] | undefined;
  /** SqliteAccess.writeEpoch: bumped by #newWriteEpoch. */
  #writeEpoch = 0;

  /** `checkpointPath`: the file to checkpoint on a worker thread, if the store does (SqliteStoreOptions.backgroundCheckpoints). */
  constructor(db: Database.Database, wal: WalSync | undefined, checkpointPath: string | undefined) {
    this.#db = db;
    this.#wal = wal;
    if (checkpointPath !== undefined) this.#checkpointer = this.#startCheckpointer(checkpointPath);
    const access: SqliteAccess = {
      db,
      statement: (sql) => this.#statement(sql),
      afterDurable: (callback) => this.#afterDurable?.push(callback),
      commitInFlight: () => this.#commitInFlight(),
      writeEpoch: () => this.#writeEpoch,
    };
    this.#operations = Object.freeze({
      keys: new SqliteKeyOperations(access),
      tokenUses: new SqliteTokenUseOperations(access),
      counters: new SqliteCounterOperations(access),
      log: new SqliteLogOperations(access),
      certificates: new SqliteCertificateOperations(access),
      governance: new SqliteGovernanceOperations(access),
    });
    const run: Runner = (what, operation, access) =>
      access === 'read'
        ? this.#read(what, operation)
        : access === 'settled'
          ? this.#settledRead(what, operation)
          : this.#grouped(what, operation, access === 'deferred');
    const plain = repositories(this.#operations, run);
    this.leases = new SqliteLeaseRepository(new SqliteLeaseOperations(access), run);
    this.keys = plain.keys;
    this.tokenUses = plain.tokenUses;
    this.counters = plain.counters;
    this.log = plain.log;
    this.certificates = plain.certificates;
    this.governance = plain.governance;
  }

  async migrate(): Promise<void> {
    await this.#exclusive('migrating the schema', () => {
      const applied = this.#checkedAppliedVersion();
      for (const migration of MIGRATIONS) {
        if (migration.version > applied) this.#applyMigration(migration);
      }
    });
  }

  async schemaVersion(): Promise<number> {
    return this.#exclusive('reading the schema version', () => this.#appliedVersions().at(-1)?.version ?? 0);
  }

  /**
   * Joins the next group commit like a plain write: `work` runs alone on the connection,
   * inside a SAVEPOINT of the group's transaction (BEGIN IMMEDIATE, so a second process
   * waits for the write lock before `work` reads anything), and resolves once the
   * group has committed. If `work` throws, its SAVEPOINT is rolled back and the error
   * is rethrown; the rest of the group is unaffected.
   */
  async transaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    const what = 'running a transaction';
    this.#refuseInsideTransaction(what);
    if (this.#closed !== null) throw closedError(what);
    return new Promise<T>((resolve, reject) => {
      this.#enqueue({ kind: 'transaction', what, work, resolve: resolve as (value: unknown) => void, reject });
    });
  }

  async checkWritable(): Promise<void> {
    await this.#exclusive('writing the health probe', () => {
      this.#statement(
        `INSERT INTO health_probe (id, written_at) VALUES (1, ?)
           ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at`,
      ).run(new Date().toISOString());
    });
  }

  async close(): Promise<void> {
    this.#refuseInsideTransaction('close');
    // Queued calls made before close() still run; calls made after it fail at once.
    if (this.#closed === null) this.#flushGroup();
    this.#closed ??= this.#queue.run(async () => {
      // The thread's connection first: the store's is then the last one, whose close
      // checkpoints the WAL and removes it (with the syncs its synchronous=NORMAL makes).
      await this.#checkpointer?.stop();
      this.#statements.clear();
      if (this.#db.open) this.#db.close();
      this.#wal?.close();
    });
    return this.#closed;
  }

  /**
   * Group commit for plain repository calls. With `synchronous=FULL` every commit is an
   * fsync, and a signing request makes several small writes (token use, counters);
   * one commit each would cap the whole service at a few hundred requests a second.
   * Calls made in the same turn of the event loop (and any made before that group
   * starts, see #flushGroup) are therefore run together, in order, inside one
   * transaction, each in its own SAVEPOINT so that one failing call
   * rolls back only its own writes. Every call's promise settles only after the COMMIT
   * (or its failure), so a resolved write is as durable as before, and each call is
   * still atomic and sees the calls queued before it.
   */
  #grouped<T>(what: string, operation: () => T, deferred = false): Promise<T> {
    this.#refuseInsideTransaction(what);
    if (this.#closed !== null) return Promise.reject(closedError(what));
    return new Promise<T>((resolve, reject) => {
      this.#enqueue({ kind: 'plain', what, operation, resolve: resolve as (value: unknown) => void, reject }, deferred);
    });
  }

  /**
   * A deferred call (Runner, sqlite-support.ts) waits in #pending for the next flush
   * that another call schedules, or for its own timer: under load, a checkpoint's
   * record then shares a group commit with requests' writes instead of costing a
   * COMMIT and an fsync of its own, during which every other call would wait.
   */
  #enqueue(call: GroupedCall, deferred = false): void {
    this.#pending.push(call);
    if (this.#flushScheduled) return;
    if (deferred) {
      this.#deferredFlush ??= setTimeout(() => {
        this.#deferredFlush = undefined;
        this.#flushGroup();
      }, DEFERRED_WRITE_MAX_DELAY_MS);
      return;
    }
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      this.#flushGroup();
    });
  }

  /**
   * A plain read: queued after everything already queued, but not after writes still
   * gathering for the next group commit. It sees every write whose promise has
   * resolved (those are committed), which is all a caller can have awaited.
   */
  #read<T>(what: string, operation: () => T): Promise<T> {
    this.#refuseInsideTransaction(what);
    if (this.#closed !== null) return Promise.reject(closedError(what));
    return this.#queue.run(() => {
      if (!this.#db.open) throw closedError(what);
      const failure = this.#wal?.failure();
      if (failure !== undefined) throw failure;
      try {
        this.#discardLeftoverTransaction();
        return operation();
      } catch (error) {
        throw translateSqliteError(error, what);
      }
    });
  }

  /**
   * A `settled` read (Runner, sqlite-support.ts): rows no write changes once durable,
   * which the caller knows to be durable, so it runs now rather than behind the group
   * commits queued before it and their fsyncs (a signing round would otherwise wait
   * for one to read the nodes of a tree whose size it has just read). It may run while
   * a group's transaction is open on the connection, between two of its statements:
   * that transaction only adds rows beyond the durable ones this read asks for.
   */
  #settledRead<T>(what: string, operation: () => T): Promise<T> {
    this.#refuseInsideTransaction(what);
    // The executor runs at once, and a throw in it rejects.
    return new Promise<T>((resolve) => {
      if (this.#closed !== null || !this.#db.open) throw closedError(what);
      const failure = this.#wal?.failure();
      if (failure !== undefined) throw failure;
      try {
        resolve(operation());
      } catch (error) {
        throw translateSqliteError(error, what);
      }
    });
  }

  /**
   * Queues the next group commit, unless one is queued and not yet started: a group
   * takes its calls when its turn comes, not when it is queued, so every write made
   * while the previous group waited for its fsync joins one commit (one fsync), rather
   * than one group per turn of the event loop that made a write meanwhile. Reads
   * queued before the group still run before it; a read queued behind it waits for
   * every call it took, including ones made after the read, and, as always, sees only
   * what is durable.
   */
  #flushGroup(): void {
    if (this.#pending.length === 0 || this.#groupQueued) return;
    this.#groupQueued = true;
    void this.#queue.run(() => {
      this.#groupQueued = false;
      if (this.#deferredFlush !== undefined) {
        clearTimeout(this.#deferredFlush);
        this.#deferredFlush = undefined;
      }
      const group = this.#pending;
      this.#pending = [];
      // Whoever waited for the group scheduled now waits for this one, as do those who
      // ask while it runs; all are told once its calls have settled (#settleWhenDurable),
      // or once it has ended some other way (it failed before its commit).
      this.#runningGroupWaiters = this.#nextGroupWaiters;
      this.#nextGroupWaiters = [];
      const running = group.length === 0 ? undefined : this.#runGroup(group);
      if (running === undefined) {
        this.#releaseGroupWaiters();
        return undefined;
      }
      return running.finally(() => {
        this.#releaseGroupWaiters();
      });
    });
  }

  #releaseGroupWaiters(): void {
    const waiters = this.#runningGroupWaiters;
    this.#runningGroupWaiters = undefined;
    for (const waiter of waiters ?? []) waiter();
  }

  /**
   * The group commit running now (from its first statement until its calls have
   * settled, after the fsync), or, if none is, the one already scheduled: resolves once
   * it has settled. Undefined if neither exists (deferred calls alone schedule nothing
   * until their timer fires). It never waits for more than that one group, and every
   * group settles (the queue runs each one scheduled, close() included), so a waiter is
   * always released.
   */
  #commitInFlight(): Promise<void> | undefined {
    const running = this.#runningGroupWaiters;
    if (running !== undefined) return new Promise<void>((resolve) => running.push(resolve));
    if (this.#pending.length === 0 || !(this.#flushScheduled || this.#groupQueued)) return undefined;
    return new Promise<void>((resolve) => this.#nextGroupWaiters.push(resolve));
  }

  /** Synchronous unless the group holds a transaction, whose `work` is awaited in its turn. */
  #runGroup(group: readonly GroupedCall[]): void | Promise<void> {
    // Another process may have written since the last group, and this one takes the
    // write lock afresh.
    this.#newWriteEpoch();
    const failAll = (error: unknown): void => {
      for (const call of group) call.reject(translateSqliteError(error, call.what));
    };
    if (!this.#db.open) {
      for (const call of group) call.reject(closedError(call.what));
      return;
    }
    const failure = this.#wal?.failure();
    if (failure !== undefined) {
      failAll(failure);
      return;
    }
    try {
      this.#discardLeftoverTransaction();
    } catch (error) {
      failAll(error);
      return;
    }
    if (group.length === 1 && group[0]?.kind === 'plain') {
      const [call] = group as [PlainCall];
      let outcome: Outcome;
      try {
        const afterDurable: (() => void)[] = [];
        outcome = { ok: true, value: this.#tracked(afterDurable, call.operation), afterDurable };
      } catch (error) {
        outcome = { ok: false, error: translateSqliteError(error, call.what) };
      }
      return this.#settleWhenDurable(group, [outcome]);
    }
    try {
      this.#statement('BEGIN IMMEDIATE').run();
    } catch (error) {
      failAll(error);
      return;
    }
    const outcomes: Outcome[] = [];
    const finish = (): void | Promise<void> => {
      try {
        this.#commit();
      } catch (error) {
        failAll(error);
        return;
      }
      return this.#settleWhenDurable(group, outcomes);
    };
    const firstTransaction = group.findIndex((call) => call.kind === 'transaction');
    if (firstTransaction === -1) {
      for (const call of group) outcomes.push(this.#runInSavepoint(call.what, (call as PlainCall).operation));
      return finish();
    }
    return (async () => {
      for (const call of group) {
        outcomes.push(
          call.kind === 'plain'
            ? this.#runInSavepoint(call.what, call.operation)
            : await this.#runWorkInSavepoint(call),
        );
      }
      await finish();
    })();
  }

  /**
   * Settles a committed group once the WAL is on stable storage (wal-sync.ts). The queue
   * waits for this too, so no other call reads what is not yet durable. If the fsync
   * fails, every call that would have succeeded fails with it.
   */
  async #settleWhenDurable(group: readonly GroupedCall[], outcomes: readonly Outcome[]): Promise<void> {
    let failure: unknown = null;
    try {
      await this.#wal?.sync();
    } catch (error) {
      failure = error;
    }
    if (failure === null) {
      for (const outcome of outcomes) if (outcome.ok) for (const callback of outcome.afterDurable) runQuietly(callback);
    }
    group.forEach((call, index) => {
      const outcome = outcomes[index];
      if (outcome?.ok === true && failure === null) call.resolve(outcome.value);
      else call.reject(outcome?.ok === false ? outcome.error : failure);
    });
    this.#releaseGroupWaiters();
  }

  /** Runs a write's synchronous `operation` with SqliteAccess.afterDurable collecting into `afterDurable`. */
  #tracked<T>(afterDurable: (() => void)[], operation: () => T): T {
    const outer = this.#afterDurable;
    this.#afterDurable = afterDurable;
    try {
      return operation();
    } catch (error) {
      // A failed statement may have rolled back part of the transaction, or all of it.
      this.#newWriteEpoch();
      throw error;
    } finally {
      this.#afterDurable = outer;
    }
  }

  /** One plain call of a group, in its own SAVEPOINT so that its failure undoes only its own writes. */
  #runInSavepoint(what: string, operation: () => unknown): Outcome {
    // SQLite may abort the whole transaction on its own (disk full, I/O error): a
    // SAVEPOINT then would open a new transaction and commit only the rest.
    if (!this.#db.inTransaction) return { ok: false, error: abortedBefore(what) };
    try {
      this.#statement('SAVEPOINT signet_call').run();
      const afterDurable: (() => void)[] = [];
      const value = this.#tracked(afterDurable, operation);
      this.#statement('RELEASE signet_call').run();
      return { ok: true, value, afterDurable };
    } catch (error) {
      this.#rollbackToSavepoint();
      return { ok: false, error: translateSqliteError(error, what) };
    }
  }

  /** One `transaction(work)` of a group: its writes are kept only if `work` resolves. */
  async #runWorkInSavepoint(call: TransactionCall): Promise<Outcome> {
    if (!this.#db.inTransaction) return { ok: false, error: abortedBefore(call.what) };
    try {
      this.#statement('SAVEPOINT signet_call').run();
    } catch (error) {
      return { ok: false, error: translateSqliteError(error, call.what) };
    }
    const context: TransactionContext = { open: true, afterDurable: [] };
    const tx = repositories(this.#operations, (what, operation) => this.#inTransaction(context, what, operation));
    try {
      const value = await this.#transactionContext.run(context, () => call.work(tx));
      context.open = false;
      // A failure inside `work` that `work` swallowed may have made SQLite abort the
      // whole transaction: then nothing of it can be committed.
      if (!this.#transactionStillOpen()) return { ok: false, error: abortedBefore('committing a transaction') };
      this.#statement('RELEASE signet_call').run();
      return { ok: true, value, afterDurable: context.afterDurable };
    } catch (error) {
      context.open = false;
      this.#rollbackToSavepoint();
      return { ok: false, error: translateSqliteError(error, call.what) };
    }
  }

  #rollbackToSavepoint(): void {
    this.#newWriteEpoch();
    try {
      // The failed call may have made SQLite abort the whole transaction itself.
      if (this.#transactionStillOpen()) {
        this.#statement('ROLLBACK TO signet_call').run();
        this.#statement('RELEASE signet_call').run();
      }
    } catch {
      // The commit that follows fails and reports it to every call.
    }
  }

  /** See SqliteAccess.writeEpoch. */
  #newWriteEpoch(): void {
    this.#writeEpoch += 1;
  }

  /** Read through a method so the compiler does not carry an earlier check past a call that may change it. */
  #transactionStillOpen(): boolean {
    return this.#db.inTransaction;
  }

  /** Runs `operation` alone on the connection, after every call queued before it. */
  async #exclusive<T>(what: string, operation: () => T | Promise<T>): Promise<T> {
    this.#refuseInsideTransaction(what);
    if (this.#closed !== null) throw closedError(what);
    // Plain calls made before this one go first: the queue keeps call order.
    this.#flushGroup();
    return this.#queue.run(async () => {
      if (!this.#db.open) throw closedError(what);
      const failure = this.#wal?.failure();
      if (failure !== undefined) throw failure;
      let value: T;
      try {
        this.#discardLeftoverTransaction();
        value = await operation();
      } catch (error) {
        throw translateSqliteError(error, what);
      } finally {
        // Migrations and the like write outside any group: nothing carries over them.
        this.#newWriteEpoch();
      }
      await this.#wal?.sync();
      return value;
    });
  }

  #inTransaction<T>(context: TransactionContext, what: string, operation: () => T): Promise<T> {
    // The executor runs at once, on this connection's current transaction; a throw rejects.
    return new Promise<T>((resolvePromise) => {
      resolvePromise(this.#inTransactionNow(context, what, operation));
    });
  }

  #inTransactionNow<T>(context: TransactionContext, what: string, operation: () => T): T {
    if (!context.open) throw new TypeError(`transaction handle used after its transaction ended (${what})`);
    // SQLite rolls the whole transaction back by itself on some errors (disk full,
    // I/O error). Carrying on would run the rest of `work` in autocommit mode and keep
    // half of it, so every later call in it fails instead.
    if (!this.#db.inTransaction) throw abortedBefore(what);
    try {
      return this.#tracked(context.afterDurable, operation);
    } catch (error) {
      throw translateSqliteError(error, what);
    }
  }

  #refuseInsideTransaction(what: string): void {
    if (this.#transactionContext.getStore()?.open === true) {
      throw new TypeError(`store used directly inside transaction() (${what}); use the transaction handle instead`);
    }
  }

  /**
   * Moves WAL checkpoints to a worker thread (wal-checkpointer.ts): this connection stops
   * checkpointing inside COMMITs, and starts again by itself if the thread fails.
   */
  #startCheckpointer(path: string): WalCheckpointer | undefined {
    const automatic: unknown = this.#db.pragma('wal_autocheckpoint', { simple: true });
    try {
      const checkpointer = new WalCheckpointer({
        path,
        onFailure: () => {
          if (this.#db.open) this.#db.pragma(`wal_autocheckpoint = ${String(automatic)}`);
        },
        // A turn of the queue, like a group's fsync: no write runs until it resolves.
        holdWrites: (task) => {
          if (this.#closed === null) void this.#queue.run(task);
        },
      });
      this.#db.pragma('wal_autocheckpoint = 0');
      return checkpointer;
    } catch {
      // No thread (resource limits): SQLite's own checkpoints, as before.
      return undefined;
    }
  }

  #commit(): void {
    if (!this.#db.inTransaction) {
      throw new StoreError('STORE_UNAVAILABLE', 'the storage engine aborted the transaction; nothing was committed');
    }
    try {
      this.#statement('COMMIT').run();
    } catch (error) {
      this.#rollbackIfOpen();
      throw translateSqliteError(error, 'committing a transaction');
    }
  }

  #rollbackIfOpen(): void {
    this.#newWriteEpoch();
    if (!this.#db.inTransaction) return;
    try {
      this.#statement('ROLLBACK').run();
    } catch {
      // The caller's error matters more; the next call sees the transaction still
      // open and deals with it (#discardLeftoverTransaction).
    }
  }

  /**
   * A transaction that could not be rolled back must not absorb later autocommit
   * writes, which would then never be committed while looking successful.
   */
  #discardLeftoverTransaction(): void {
    if (!this.#db.inTransaction) return;
    this.#newWriteEpoch();
    try {
      this.#statement('ROLLBACK').run();
    } catch (error) {
      throw new StoreError('STORE_UNAVAILABLE', 'an earlier transaction could not be rolled back', { cause: error });
    }
  }

  #statement(sql: string): Database.Statement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** Recorded migrations in order; [] on a database that has none yet. */
  #appliedVersions(): { version: number; name: string }[] {
    const table = this.#statement(
      "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    ).get();
    if (table === undefined) return [];
    const rows = this.#statement('SELECT version, name FROM schema_migrations ORDER BY version').all();
    return rows.map((row) => {
      const { version, name } = (row ?? {}) as Record<string, unknown>;
      if (!Number.isSafeInteger(version) || typeof name !== 'string') {
        throw new StoreError('STORE_CORRUPT', 'schema_migrations holds an invalid row');
      }
      return { version: version as number, name };
    });
  }

  /** The applied version, after checking the recorded history is exactly a prefix of MIGRATIONS. */
  #checkedAppliedVersion(): number {
    const applied = this.#appliedVersions();
    const newest = applied.at(-1)?.version ?? 0;
    if (newest > LATEST_SCHEMA_VERSION) {
      throw new StoreError(
        'STORE_CORRUPT',
        `database schema version ${newest} is newer than this Signet knows (${LATEST_SCHEMA_VERSION}); ` +
          'refusing to use it',
      );
    }
    applied.forEach((row, index) => {
      const known = MIGRATIONS[index];
      if (known?.version !== row.version || known.name !== row.name) {
        throw new StoreError(
          'STORE_CORRUPT',
          `schema_migrations does not match this Signet's migrations at version ${row.version}`,
        );
      }
    });
    return newest;
  }

  /** One transaction per migration: its SQL and its record commit together or not at all. */
  #applyMigration(migration: Migration): void {
    try {
      this.#db
        .transaction(() => {
          // Re-read under the write lock: another process may have applied it meanwhile.
          if (this.#checkedAppliedVersion() >= migration.version) return;
          this.#db.exec(migration.sqlite);
          this.#statement('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
            migration.version,
            migration.name,
            new Date().toISOString(),
          );
        })
        .immediate();
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw new StoreError(
        'STORE_MIGRATION_FAILED',
        `schema migration ${migration.version} (${migration.name}) failed and was rolled back`,
        { cause: error },
      );
    }
  }
}

/** An afterDurable callback only fills a cache: its failure must not fail the writes it follows. */
function runQuietly(callback: () => void): void {
  try {
    callback();
  } catch {
    // A cache left unfilled costs a read later, nothing else.
  }
}

function abortedBefore(what: string): StoreError {
  return new StoreError('STORE_UNAVAILABLE', `the storage engine aborted the transaction before ${what}`);
}

function closedError(what: string): StoreError {
  return new StoreError('STORE_UNAVAILABLE', `the store is closed (${what})`);
}
