/**
 * The PostgreSQL backend of `SignetStore`, for several replicas sharing one database.
 *
 * Connections come from one pool per store, pipelined (postgres-session.ts). A plain
 * repository call takes a connection for its own duration and runs autocommit, or in a
 * transaction of its own when it must read and write atomically; plain reads made at
 * the same time share one connection instead (each statement alone), and plain log
 * appends and consumes made at once share one transaction (postgres-grouping.ts).
 * `transaction(work)` calls made at once share one PostgreSQL transaction too, each in
 * a savepoint of its own, run one after another on one connection, or all at once
 * when begun with `concurrent` (see `transaction`); the calls made on a handle run one
 * at a time, each write the database may refuse in a savepoint of its own.
 * As in the SQLite backend, using the store itself inside `work` is refused with a
 * TypeError: the transaction may hold the very lock such a call would wait for.
 *
 * Differences from SQLite a caller can see: inside `transaction`, a token claim, a
 * consume, a log append or a completion that the database itself fails (a timeout, a
 * lost connection, a damaged row) fails the whole transaction with STORE_UNAVAILABLE,
 * even if `work` catches the error and carries on, where SQLite would undo that one
 * call; a log append there answers before the database has confirmed it (its indexes
 * are known under the lock), so its refusal shows at the transaction's next statement
 * or at the commit, and if that transaction had ended by then, its whole group fails;
 * and concurrent plain calls are not served in the order they were made.
 *
 * What must hold across replicas is enforced by the database: primary keys and the
 * one-active-version index, row locks taken by upserts and SELECT … FOR UPDATE, and
 * advisory locks for the log and the migrations (see each repository's header). A
 * statement that fails with a serialization failure or a deadlock was rolled back by
 * the server; a plain call then runs again, a few times at most.
 *
 * Connection loss. While the database is away every call fails with STORE_UNAVAILABLE
 * (the HTTP layer answers 503: fail closed); a connection that saw an error is destroyed
 * rather than returned to the pool, idle connections the server closes are dropped by
 * the pool, and the next call opens a fresh one, so service resumes by itself when the
 * database is back. `statement_timeout` bounds every statement, lock waits included;
 * `idle_in_transaction_session_timeout` ends a transaction whose client went silent,
 * releasing its locks; TCP keepalive notices a peer that vanished.
 *
 * Rows are validated on the way out exactly as for SQLite (../validation.ts). BIGINT
 * columns are parsed to numbers when they are safe integers and left as text otherwise,
 * which the validators report as STORE_CORRUPT.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { StoreError } from '../errors.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from '../migrations.js';
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
  TransactionOptions,
} from '../store.js';
import { PostgresCertificateRepository } from './postgres-certificates.js';
import { isRetryable, sqlState, translatePostgresError } from './postgres-errors.js';
import { PostgresCounterRepository } from './postgres-counters.js';
import { PostgresGovernanceRepository } from './postgres-governance.js';
import { PostgresKeyRepository } from './postgres-keys.js';
import { PostgresLeaseRepository } from './postgres-leases.js';
import type { CallGrouping } from './postgres-grouping.js';
import { advisoryLock, CommittedLog, PostgresLogRepository } from './postgres-log.js';
import { BEGIN, Lease, PgSession, rollbackQuietly, type PgRunner, type SharedUse } from './postgres-session.js';
import { PostgresTokenUseRepository } from './postgres-token-uses.js';

export interface PostgresStoreOptions {
  /**
   * libpq-style connection URL, `postgres://user:password@host:port/database?sslmode=…`.
   * It may hold a password: it is never put into an error message.
   */
  readonly url: string;
  /** Schema the tables live in (the connection's search_path). Default: the server's search_path. */
  readonly schema?: string | undefined;
  /** Most connections open at once. Default 10. */
  readonly poolSize?: number | undefined;
  /** Longest a statement may run, waiting for locks included, before STORE_UNAVAILABLE. Default 5000. */
  readonly statementTimeoutMs?: number | undefined;
  /** Longest to wait for a connection (opening one, or a free one from a busy pool). Default 5000. */
  readonly connectTimeoutMs?: number | undefined;
  /** How the connections name themselves in pg_stat_activity (a replica's name, say). Default `signet`. */
  readonly applicationName?: string | undefined;
}

export const DEFAULT_POOL_SIZE = 10;
export const DEFAULT_STATEMENT_TIMEOUT_MS = 5_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const MAX_POOL_SIZE = 1_000;
const MAX_TIMEOUT_MS = 600_000;
/** An unquoted PostgreSQL identifier: it needs no escaping in the startup options. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** Plain calls that hit a serialization failure or a deadlock run this many times in all. */
const ATTEMPTS = 3;

/** Synchronous: nothing connects until the first call. Throws TypeError for bad options. */
export function openPostgresStore(options: PostgresStoreOptions): SignetStore {
  return new PostgresStore(createPool(checkOptions(options)));
}

interface CheckedOptions {
  readonly url: string;
  readonly schema: string | undefined;
  readonly poolSize: number;
  readonly statementTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly applicationName: string;
}

function checkOptions(options: PostgresStoreOptions): CheckedOptions {
  const problems: string[] = [];
  const {
    url,
    schema,
    poolSize = DEFAULT_POOL_SIZE,
    statementTimeoutMs = DEFAULT_STATEMENT_TIMEOUT_MS,
    connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS,
    applicationName = 'signet',
  } = options;
  // Named, never quoted: the URL may carry a password.
  if (typeof url !== 'string' || !/^postgres(?:ql)?:\/\/[^\s]+$/.test(url)) {
    problems.push('url must be a postgres:// or postgresql:// URL');
  }
  if (schema !== undefined && (typeof schema !== 'string' || !SCHEMA_NAME.test(schema))) {
    problems.push('schema must be a lower-case identifier (letters, digits, "_")');
  }
  if (!Number.isSafeInteger(poolSize) || poolSize < 1 || poolSize > MAX_POOL_SIZE) {
    problems.push(`poolSize must be an integer from 1 to ${MAX_POOL_SIZE}`);
  }
  for (const [field, value] of [
    ['statementTimeoutMs', statementTimeoutMs],
    ['connectTimeoutMs', connectTimeoutMs],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1 || value > MAX_TIMEOUT_MS) {
      problems.push(`${field} must be an integer from 1 to ${MAX_TIMEOUT_MS}`);
    }
  }
  if (typeof applicationName !== 'string' || !/^[\x21-\x7e]{1,63}$/.test(applicationName)) {
    problems.push('applicationName must be 1 to 63 printable ASCII characters without spaces');
  }
  if (problems.length > 0) throw new TypeError(`invalid PostgreSQL store options: ${problems.join('; ')}`);
  return { url, schema, poolSize, statementTimeoutMs, connectTimeoutMs, applicationName };
}

/** BIGINT (OID 20) as a number when it is a safe integer; as text otherwise, which row validation refuses. */
function parseBigint(text: string): number | string {
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : text;
}

function createPool(options: CheckedOptions): pg.Pool {
  const types = new pg.TypeOverrides();
  types.setTypeParser(pg.types.builtins.INT8, parseBigint);
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // Statements issued back to back share one round trip (postgres-session.ts).
    pipeline: true,
    application_name: options.applicationName,
    statement_timeout: options.statementTimeoutMs,
    // A client-side bound too, for a server that stops answering altogether (a network
    // partition): the statement timeout alone would never fire.
    query_timeout: options.statementTimeoutMs + 2_000,
    // Locks held by a transaction whose client went silent are released after this.
    idle_in_transaction_session_timeout: Math.max(options.statementTimeoutMs * 2, 10_000),
    types,
    ...(options.schema === undefined ? {} : { options: `-c search_path=${options.schema}` }),
  });
  // Idle connections the server closes (a restart, pg_terminate_backend) report here;
  // the pool has already dropped them, and the next call opens a fresh one. Without a
  // listener the event would crash the process.
  pool.on('error', () => undefined);
  // And each connection keeps one listener of its own for its whole life. The pool
  // listens while a connection is idle and a Lease while it is checked out
  // (postgres-session.ts), and they do the bookkeeping; this one only makes sure that an
  // error arriving in any moment between the two (seen once, under full-suite load,
  // with sessions terminated mid-load) cannot crash the process. pg marks such a
  // connection unqueryable, so its next statement fails (STORE_UNAVAILABLE) and the
  // pool drops it on release: the call fails closed, as with any lost connection.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  return pool;
}

/** FIFO: each task starts after the previous one settled, whatever its outcome. */
class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  /** Settles once everything queued so far has. */
  async idle(): Promise<void> {
    await this.#tail;
  }
}

/** The connection plain reads share, while `users` of them are in flight. */
interface SharedReader {
  readonly lease: Promise<Lease>;
  users: number;
}

/** A `transaction(work)` waiting for its group. */
interface QueuedTransaction {
  readonly work: (tx: StoreTransaction) => Promise<unknown>;
  /** TransactionOptions.concurrent. */
  readonly concurrent: boolean;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** Most transactions committed together. */
const MAX_TRANSACTIONS_PER_GROUP = 64;
const TRANSACTION_SAVEPOINT_NAME = 'signet_transaction';
const TRANSACTION_SAVEPOINT = `SAVEPOINT ${TRANSACTION_SAVEPOINT_NAME}`;

/** One per `transaction` call. */
interface TransactionContext {
  /** False from the moment `work` settles. */
  open: boolean;
  /** PostgreSQL aborted the transaction: a statement failed outside a savepoint. */
  aborted: boolean;
  readonly lease: Lease;
  readonly queue: SerialQueue;
  /** Run at once with the rest of its group, without savepoints: any failure sends the group back to run one at a time. */
  readonly concurrent: boolean;
}

/** The COMMIT of a group's transaction: its answer, or the error to settle the group with (committed or not is then unknown). */
async function commitGroup(lease: Lease): Promise<{ readonly command: string } | { readonly error: unknown }> {
  try {
    return { command: (await lease.query('COMMIT', [], 'committing transactions')).command };
  } catch (error) {
    await rollbackQuietly(lease);
    return { error: translatePostgresError(error, 'committing transactions') };
  }
}

/** Every repository over one runner: the store's own (plain calls, with group commit for appends and consumes) or one transaction's. */
function repositories(run: PgRunner, committed: CommittedLog, grouping?: CallGrouping): StoreTransaction {
  return Object.freeze({
    keys: new PostgresKeyRepository(run),
    tokenUses: new PostgresTokenUseRepository(run),
    counters: new PostgresCounterRepository(run, grouping),
    log: new PostgresLogRepository(run, committed, grouping),
    certificates: new PostgresCertificateRepository(run),
    governance: new PostgresGovernanceRepository(run),
  });
}

/** Server errors become StoreErrors; StoreErrors and the caller's own errors (TypeError) pass through. */
function asStoreError(error: unknown, what: string): unknown {
  return sqlState(error) === null ? error : translatePostgresError(error, what);
}

class PostgresStore implements SignetStore {
  readonly kind = 'postgres' as const;
  readonly leases: LeaseRepository;
  readonly keys: KeyRepository;
  readonly tokenUses: TokenUseRepository;
  readonly counters: CounterRepository;
  readonly log: LogRepository;
  readonly certificates: CertificateRepository;
  readonly governance: GovernanceRepository;

  readonly #pool: pg.Pool;
  readonly #transactionContext = new AsyncLocalStorage<TransactionContext>();
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed: Promise<void> | null = null;
  /** See #sharedRead. */
  #reader: SharedReader | undefined;
  /** Merkle nodes this store saw committed (postgres-log.ts). */
  readonly #committedLog = new CommittedLog();
  /** Transactions waiting for the next group commit. */
  #transactions: QueuedTransaction[] = [];
  #runningTransactions = false;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
    const grouping: CallGrouping = {
      admit: (what) => {
        this.#admit(what);
      },
      run: (what, operation) => this.#execute(what, operation),
      hold: (promise) => this.#track(() => promise),
    };
    const plain = repositories((what, operation, access) => this.#plain(what, operation, access), this.#committedLog, grouping);
    this.keys = plain.keys;
    this.tokenUses = plain.tokenUses;
    this.counters = plain.counters;
    this.log = plain.log;
    this.certificates = plain.certificates;
    this.governance = plain.governance;
    this.leases = new PostgresLeaseRepository((what, operation) => this.#plain(what, operation));
  }

  async migrate(): Promise<void> {
    await this.#withLease('migrating the schema', async (lease) => {
      // One transaction per migration, under a lock so that replicas starting together
      // apply each migration once; DDL is transactional in PostgreSQL, so a migration
      // and its record commit together or not at all.
      for (;;) {
        lease.defer(BEGIN);
        let applied: number;
        try {
          await lease.query(advisoryLock('migration'));
          // Re-read under the lock: another replica may have migrated meanwhile.
          applied = await checkedAppliedVersion(lease);
        } catch (error) {
          await rollbackQuietly(lease);
          throw error;
        }
        const next = MIGRATIONS.find((migration) => migration.version > applied);
        if (next === undefined) {
          await lease.query('COMMIT');
          return;
        }
        await applyMigration(lease, next);
      }
    });
  }

  async schemaVersion(): Promise<number> {
    return this.#withLease('reading the schema version', async (lease) => (await appliedVersions(lease)).at(-1)?.version ?? 0);
  }

  /**
   * Group commit, as in the SQLite backend: transactions begun while a group is being
   * written run next, one after another on one connection, inside one PostgreSQL
   * transaction, each in a SAVEPOINT of its own, and commit together. A transaction
   * whose `work` throws (or whose statement the server refused outside a savepoint) is
   * rolled back to its savepoint alone; the others are unaffected. Every promise
   * settles after the group's COMMIT, so a resolved transaction is durable.
   *
   * One commit per transaction would be worse than slow: the signing path's
   * transactions append to the log, and an append holds the log lock until its COMMIT
   * is flushed, so rows a transaction locked before its append (counters) stay locked
   * while it waits for the log: every transaction of every replica would queue behind
   * one WAL flush at a time. `work` should therefore do storage work only: the rest of
   * its group waits for it.
   *
   * Transactions begun with `concurrent` (TransactionOptions: the signing path's) are
   * run differently: all those of a group at once, on the group's connection, without
   * savepoints, so that the calls they make at the same time (a claim each, an append
   * each) go out together, one round trip for the group instead of one per transaction
   * (postgres-session.ts), starting from the log head this store left when it is the
   * only writer (CommittedLog, postgres-log.ts). Anything that fails among them (a
   * `work` throws, a statement is refused, a consume is refused: its undo must not meet
   * the others' increments) rolls the whole database transaction back, and the group
   * runs again as above, one transaction at a time, each `work` from the start; unless
   * the connection itself failed, which fails them all (STORE_UNAVAILABLE). The others
   * of the group run after them, in a transaction of their own.
   */
  async transaction<T>(work: (tx: StoreTransaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
    this.#admit('running a transaction');
    const concurrent = options?.concurrent === true;
    return this.#track(
      () =>
        new Promise<T>((resolve, reject) => {
          this.#transactions.push({ work, concurrent, resolve: resolve as (value: unknown) => void, reject });
          if (!this.#runningTransactions) {
            this.#runningTransactions = true;
            void this.#runTransactions();
          }
        }),
    );
  }

  /** Runs the queued transactions, a group at a time, until none is left. */
  async #runTransactions(): Promise<void> {
    // Transactions begun in this same turn join the first group.
    await Promise.resolve();
    while (this.#transactions.length > 0) {
      await this.#runTransactionGroup(this.#transactions.splice(0, MAX_TRANSACTIONS_PER_GROUP));
    }
    this.#runningTransactions = false;
  }

  async #runTransactionGroup(group: readonly QueuedTransaction[]): Promise<void> {
    const concurrent = group.filter((call) => call.concurrent);
    if (concurrent.length === 0) {
      await this.#runOneAtATime(group);
      return;
    }
    if (!(await this.#runConcurrently(concurrent))) {
      // In the same order of locks as the group: the log's first (CommittedLog.openGroup).
      await this.#runOneAtATime(concurrent, true);
    }
    const others = group.filter((call) => !call.concurrent);
    if (others.length > 0) await this.#runOneAtATime(others);
  }

  /**
   * Runs the transactions one after another, each in a savepoint, and commits them
   * together; `logFirst`: taking the log lock first, as transactions begun with
   * `concurrent` do.
   */
  async #runOneAtATime(group: readonly QueuedTransaction[], logFirst = false): Promise<void> {
    let lease: Lease;
    try {
      lease = await this.#acquire('beginning a transaction');
    } catch (error) {
      for (const call of group) call.reject(error);
      return;
    }
    try {
      const begin = lease.defer(BEGIN);
      const lock = logFirst ? lease.defer(advisoryLock('log append')) : undefined;
      const outcomes: Outcome[] = [];
      let broken: StoreError | null = null;
      for (const call of group) {
        if (broken !== null) {
          outcomes.push({ ok: false, error: broken });
          continue;
        }
        const outcome = await this.#runInGroup(lease, call.work);
        if ('broken' in outcome) {
          broken = outcome.broken;
          outcomes.push({ ok: false, error: outcome.error });
        } else {
          outcomes.push(outcome);
        }
      }
      const settle = (failure: unknown): void => {
        group.forEach((call, index) => {
          const outcome = outcomes[index];
          if (outcome?.ok === true && failure === null) call.resolve(outcome.value);
          else call.reject(outcome?.ok === false ? outcome.error : failure);
        });
      };
      // Nothing reached the server: nothing to commit.
      if (lease.undo(begin)) {
        if (lock !== undefined) lease.undo(lock);
        settle(null);
        return;
      }
      broken ??= failedEarlier(lease, undefined);
      if (broken !== null) {
        await rollbackQuietly(lease);
        settle(broken);
        return;
      }
      const commit = await commitGroup(lease);
      if ('error' in commit) {
        settle(commit.error);
        return;
      }
      const committed = commit.command;
      // A write sent without waiting, answered just before the COMMIT, was refused: the
      // server aborted the transaction, and the COMMIT answered ROLLBACK.
      const failed = failedEarlier(lease, undefined);
      if (failed === null && committed === 'COMMIT') this.#committedLog.committed(lease.memo);
      settle(
        failed ??
          (committed === 'ROLLBACK'
            ? new StoreError('STORE_UNAVAILABLE', 'the database rolled the transactions back; nothing was committed')
            : null),
      );
    } finally {
      lease.release();
    }
  }

  /**
   * Runs `concurrent` transactions all at once on one connection, in one database
   * transaction without savepoints, and commits them. False if anything failed before
   * the COMMIT was answered: then nothing of theirs was committed (the connection was
   * rolled back) and nobody was told anything, for the caller to run them again one at
   * a time.
   */
  async #runConcurrently(group: readonly QueuedTransaction[]): Promise<boolean> {
    let lease: Lease;
    try {
      lease = await this.#acquire('beginning a transaction');
    } catch (error) {
      for (const call of group) call.reject(error);
      return true;
    }
    try {
      const begin = lease.defer(BEGIN);
      const opened = this.#committedLog.openGroup(lease);
      const contexts = group.map((): TransactionContext => ({ open: true, aborted: false, lease, queue: new SerialQueue(), concurrent: true }));
      const settled = await Promise.allSettled(
        group.map((call, index) => {
          const context = contexts[index] as TransactionContext;
          const tx = repositories((what, operation, access) => this.#inTransaction(context, what, operation, access), this.#committedLog);
          return this.#transactionContext.run(context, () => call.work(tx));
        }),
      );
      for (const context of contexts) context.open = false;
      // Calls a `work` started but did not wait for finish before it ended.
      await Promise.all(contexts.map((context) => context.queue.idle()));
      const settle = (failure: unknown): void => {
        group.forEach((call, index) => {
          const outcome = settled[index];
          if (outcome?.status === 'fulfilled' && failure === null) call.resolve(outcome.value);
          else call.reject(outcome?.status === 'rejected' ? outcome.reason : failure);
        });
      };
      // Nothing reached the server (every `work` refused before storage): nothing to commit.
      if (lease.undo(begin)) {
        lease.undo(opened.lock);
        settle(null);
        return true;
      }
      const failed =
        settled.some((outcome) => outcome.status === 'rejected') ||
        contexts.some((context) => context.aborted) ||
        lease.failedWrite() !== undefined ||
        opened.failed();
      if (failed) {
        // A write refused in a group started from the remembered log head: most likely
        // another writer appended meanwhile (CommittedLog).
        if (opened.seeded && lease.failedWrite() !== undefined) this.#committedLog.distrust();
        await rollbackQuietly(lease);
        // The connection itself failed (the database is away or hung): running them
        // again would only make each wait as long once more before failing.
        if (lease.isBroken()) {
          settle(new StoreError('STORE_UNAVAILABLE', 'the connection to the database failed; nothing of the transactions was committed'));
          return true;
        }
        return false;
      }
      const commit = await commitGroup(lease);
      if ('error' in commit) {
        // Committed or not is unknown: running them again could write twice.
        settle(commit.error);
        return true;
      }
      const committed = commit.command;
      // A write sent without waiting, answered just before the COMMIT, was refused: the
      // COMMIT answered ROLLBACK, nothing was committed.
      if (lease.failedWrite() !== undefined) {
        if (opened.seeded) this.#committedLog.distrust();
        return false;
      }
      if (committed === 'COMMIT') this.#committedLog.committed(lease.memo);
      settle(committed === 'ROLLBACK' ? new StoreError('STORE_UNAVAILABLE', 'the database rolled the transactions back; nothing was committed') : null);
      return true;
    } finally {
      lease.release();
    }
  }

  /**
   * One `transaction(work)` of a group, in its own SAVEPOINT. `broken` is set when the
   * group's transaction cannot go on (its connection is lost, a savepoint could not be
   * rolled back): then nothing of the group can be committed.
   */
  async #runInGroup(lease: Lease, work: (tx: StoreTransaction) => Promise<unknown>): Promise<Outcome | { ok: false; error: unknown; broken: StoreError }> {
    const context: TransactionContext = { open: true, aborted: false, lease, queue: new SerialQueue(), concurrent: false };
    const savepoint = lease.defer(TRANSACTION_SAVEPOINT);
    const tx = repositories((what, operation, access) => this.#inTransaction(context, what, operation, access), this.#committedLog);
    let outcome: Outcome;
    try {
      outcome = { ok: true, value: await this.#transactionContext.run(context, () => work(tx)) };
    } catch (error) {
      outcome = { ok: false, error };
    }
    context.open = false;
    // Calls `work` started but did not wait for finish before it ended.
    await context.queue.idle();
    if (lease.undo(savepoint)) return outcome;
    // A write an earlier transaction of the group sent without waiting was refused after
    // that transaction ended: its savepoint is gone, so the group cannot be committed.
    const earlier = failedEarlier(lease, context);
    if (earlier !== null) return { ok: false, error: outcome.ok ? earlier : outcome.error, broken: earlier };
    if (outcome.ok && context.aborted) {
      outcome = { ok: false, error: new StoreError('STORE_UNAVAILABLE', 'the database aborted the transaction; nothing of it was committed') };
    }
    try {
      if (outcome.ok) {
        lease.defer(`RELEASE SAVEPOINT ${TRANSACTION_SAVEPOINT_NAME}`);
      } else {
        lease.discardReleases();
        await lease.query(`ROLLBACK TO SAVEPOINT ${TRANSACTION_SAVEPOINT_NAME}; RELEASE SAVEPOINT ${TRANSACTION_SAVEPOINT_NAME}`);
        // Its own writes are undone with it, refused or not (its savepoint was taken
        // before any of them). A refusal of an earlier transaction's write, answered
        // only now, would have been undone too: the group cannot be committed.
        lease.clearFailedWrite(context);
        const late = failedEarlier(lease, context);
        if (late !== null) return { ok: false, error: outcome.error, broken: late };
      }
    } catch (error) {
      const broken = new StoreError('STORE_UNAVAILABLE', 'a transaction could not be rolled back; nothing of its group was committed', {
        cause: error,
      });
      return { ok: false, error: outcome.ok ? broken : outcome.error, broken };
    }
    return outcome;
  }

  async checkWritable(): Promise<void> {
    await this.#plain('writing the health probe', async (db) => {
      await db.query(
        `INSERT INTO health_probe (id, written_at) VALUES (1, $1)
           ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at`,
        [new Date().toISOString()],
      );
    });
  }

  async close(): Promise<void> {
    this.#refuseInsideTransaction('close');
    // Calls made before close() still finish; calls made after it fail at once.
    this.#closed ??= (async () => {
      await Promise.allSettled([...this.#inFlight]);
      await this.#pool.end().catch(() => undefined);
    })();
    return this.#closed;
  }

  /** A plain call: a connection of its own, autocommit or its own transaction. */
  async #plain<T>(what: string, operation: (session: PgSession) => Promise<T>, access?: 'read' | 'write' | 'write-unrefused'): Promise<T> {
    this.#admit(what);
    return this.#execute(what, operation, access === 'read');
  }

  /** Refuses a call made inside a transaction (TypeError) or after close (STORE_UNAVAILABLE). */
  #admit(what: string): void {
    this.#refuseInsideTransaction(what);
    if (this.#closed !== null) throw closedError(what);
  }

  /** Runs an admitted plain call; again after a serialization failure or deadlock, which the server rolled back. */
  #execute<T>(what: string, operation: (session: PgSession) => Promise<T>, read = false): Promise<T> {
    return this.#track(async () => {
      for (let attempt = 1; ; attempt += 1) {
        let lease: Lease | undefined;
        const session = new PgSession({
          connection: async () => (lease = await this.#acquire(what)),
          what,
          unit: 'transaction',
          onAbort: () => undefined,
          ...(read ? { shared: () => this.#sharedRead(what) } : {}),
        });
        try {
          return await operation(session);
        } catch (error) {
          if (attempt < ATTEMPTS && isRetryable(error)) continue;
          throw asStoreError(error, what);
        } finally {
          lease?.release();
        }
      }
    });
  }

  /** A call on a transaction's handle: queued behind the transaction's other calls, on its connection. */
  #inTransaction<T>(
    context: TransactionContext,
    what: string,
    operation: (session: PgSession) => Promise<T>,
    access: 'read' | 'write' | 'write-unrefused' = 'write',
  ): Promise<T> {
    return context.queue.run(async () => {
      if (!context.open) throw new TypeError(`transaction handle used after its transaction ended (${what})`);
      // Carrying on would make the rest of `work` look successful while nothing of it
      // can be committed.
      if (context.aborted) throw new StoreError('STORE_UNAVAILABLE', `the database aborted the transaction before ${what}`);
      const session = new PgSession({
        connection: () => Promise.resolve(context.lease),
        what,
        unit: access === 'write-unrefused' || context.concurrent ? 'none' : 'savepoint',
        onAbort: () => {
          context.aborted = true;
        },
        owner: context,
        concurrent: context.concurrent,
      });
      try {
        return access === 'write' ? await session.atomically(() => operation(session)) : await operation(session);
      } catch (error) {
        throw asStoreError(error, what);
      }
    });
  }

  /** Runs `use` on a connection of its own, outside any transaction context. */
  async #withLease<T>(what: string, use: (lease: Lease) => Promise<T>): Promise<T> {
    this.#refuseInsideTransaction(what);
    if (this.#closed !== null) throw closedError(what);
    return this.#track(async () => {
      const lease = await this.#acquire(what);
      try {
        return await use(lease);
      } catch (error) {
        throw asStoreError(error, what);
      } finally {
        lease.release();
      }
    });
  }

  /**
   * The connection that plain reads share while any of them is in flight: each of their
   * statements runs alone (autocommit), so they need no connection of their own, and
   * on one pipelined connection the reads made at once (a key and its certificate
   * chain, say) go out in one write and come back in one round trip. It goes back to
   * the pool as soon as no read uses it; a broken one is left to its last users and
   * the next read takes a fresh one.
   */
  async #sharedRead(what: string): Promise<SharedUse> {
    let reader = this.#reader;
    if (reader === undefined) {
      reader = { lease: this.#acquire(what), users: 0 };
      this.#reader = reader;
      // A failure reaches the users that await it.
      reader.lease.catch(() => undefined);
    }
    reader.users += 1;
    const joined = reader;
    const done = (): void => {
      joined.users -= 1;
      if (joined.users > 0) return;
      if (this.#reader === joined) this.#reader = undefined;
      void joined.lease.then(
        (lease) => {
          lease.release();
        },
        () => undefined,
      );
    };
    let lease: Lease;
    try {
      lease = await joined.lease;
    } catch (error) {
      if (this.#reader === joined) this.#reader = undefined;
      done();
      throw error;
    }
    if (lease.isBroken()) {
      if (this.#reader === joined) this.#reader = undefined;
      done();
      return this.#sharedRead(what);
    }
    return { lease, done };
  }

  async #acquire(what: string): Promise<Lease> {
    try {
      return new Lease(await this.#pool.connect(), what);
    } catch (error) {
      throw translatePostgresError(error, what);
    }
  }

  /** Remembers a call until it settles, so that close() can let it finish. */
  #track<T>(task: () => Promise<T>): Promise<T> {
    const promise = task();
    this.#inFlight.add(promise);
    const forget = (): void => {
      this.#inFlight.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  #refuseInsideTransaction(what: string): void {
    if (this.#transactionContext.getStore()?.open === true) {
      throw new TypeError(`store used directly inside transaction() (${what}); use the transaction handle instead`);
    }
  }
}

/**
 * A write sent without waiting (postgres-session.ts) that the server refused, by
 * another unit than `current` (undefined: any), as the error that fails the group.
 */
function failedEarlier(lease: Lease, current: TransactionContext | undefined): StoreError | null {
  const failed = lease.failedWrite();
  if (failed === undefined || failed.owner === current) return null;
  return new StoreError('STORE_UNAVAILABLE', 'a write of this group of transactions was refused; nothing of the group was committed', {
    cause: translatePostgresError(failed.error, 'writing a group of transactions'),
  });
}

function closedError(what: string): StoreError {
  return new StoreError('STORE_UNAVAILABLE', `the store is closed (${what})`);
}

/** Recorded migrations in order; [] in a schema that has none yet. */
async function appliedVersions(lease: Lease): Promise<{ version: number; name: string }[]> {
  // to_regclass resolves the name through the search_path, as every statement does.
  const present = await lease.query("SELECT to_regclass('schema_migrations') IS NOT NULL AS present");
  if (present.rows[0]?.present !== true) return [];
  const rows = (await lease.query('SELECT version, name FROM schema_migrations ORDER BY version')).rows;
  return rows.map((row) => {
    const { version, name } = row;
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || typeof name !== 'string') {
      throw new StoreError('STORE_CORRUPT', 'schema_migrations holds an invalid row');
    }
    return { version, name };
  });
}

/** The applied version, after checking the recorded history is exactly a prefix of MIGRATIONS. */
async function checkedAppliedVersion(lease: Lease): Promise<number> {
  const applied = await appliedVersions(lease);
  const newest = applied.at(-1)?.version ?? 0;
  if (newest > LATEST_SCHEMA_VERSION) {
    throw new StoreError(
      'STORE_CORRUPT',
      `database schema version ${newest} is newer than this Signet knows (${LATEST_SCHEMA_VERSION}); refusing to use it`,
    );
  }
  applied.forEach((row, index) => {
    const known = MIGRATIONS[index];
    if (known?.version !== row.version || known.name !== row.name) {
      throw new StoreError('STORE_CORRUPT', `schema_migrations does not match this Signet's migrations at version ${row.version}`);
    }
  });
  return newest;
}

/** Inside the transaction migrate() opened: the migration's SQL and its record, then COMMIT. */
async function applyMigration(lease: Lease, migration: Migration): Promise<void> {
  try {
    await lease.query(migration.postgres);
    await lease.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
      migration.version,
      migration.name,
      new Date().toISOString(),
    ]);
    await lease.query('COMMIT');
  } catch (error) {
    await rollbackQuietly(lease);
    const failure = translatePostgresError(error, `applying schema migration ${migration.version}`);
    // A lost connection is the database being away, not a broken migration.
    if (failure.code === 'STORE_UNAVAILABLE' && sqlState(error) === null) throw failure;
    throw new StoreError(
      'STORE_MIGRATION_FAILED',
      `schema migration ${migration.version} (${migration.name}) failed and was rolled back`,
      { cause: error },
    );
  }
}
