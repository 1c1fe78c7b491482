/**
 * The SQLite backend of `SignetStore`: one file, one connection, one process.
 *
 * Durability: WAL with `synchronous=FULL`, so a write that returned has been fsynced
 * (the log and the replay cache depend on that). The file is created owner-only.
 *
 * Concurrency: better-sqlite3 is synchronous and the connection is shared by the whole
 * process, while `transaction(work)` runs asynchronous work between BEGIN and COMMIT.
 * Every call therefore goes through one FIFO queue: a transaction holds it from BEGIN
 * to COMMIT/ROLLBACK, and a plain repository call made meanwhile waits its turn, so it
 * can neither see nor accidentally join a half-done transaction. Inside `work`, only
 * the `tx` handle may be used; touching the store itself there would wait for the
 * transaction that is waiting for it, so that is refused with a TypeError instead.
 *
 * Everything read back is validated; a row that does not describe a valid key version
 * is reported as STORE_CORRUPT rather than handed to the signing path.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { closeSync, constants as fsConstants, fchmodSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { isKeyAlgorithm } from '../../signer/algorithms.js';
import { StoreError, translateSqliteError } from '../errors.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from '../migrations.js';
import {
  KEY_STATES,
  type KeyRepository,
  type KeyState,
  type KeyVersionRecord,
  type SignetStore,
  type StoreTransaction,
} from '../store.js';

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
}

export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;
/** better-sqlite3 rejects larger timeouts (a signed 32-bit millisecond count). */
const MAX_BUSY_TIMEOUT_MS = 0x7fff_ffff;

/** Synchronous: everything it does is local file work. Throws StoreError, or TypeError for bad options. */
export function openSqliteStore(options: SqliteStoreOptions): SignetStore {
  const { path, busyTimeoutMs, readonly } = checkOptions(options);
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
  return new SqliteStore(db);
}

function checkOptions(options: SqliteStoreOptions): { path: string; busyTimeoutMs: number; readonly: boolean } {
  const problems: string[] = [];
  const { path, busyTimeoutMs = DEFAULT_BUSY_TIMEOUT_MS, readonly = false } = options;
  // An in-memory database would silently lose the log and the key states on restart.
  if (typeof path !== 'string' || path.trim() === '' || path === ':memory:' || path.includes('\0')) {
    problems.push('path must name a database file');
  }
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > MAX_BUSY_TIMEOUT_MS) {
    problems.push(`busyTimeoutMs must be an integer from 0 to ${MAX_BUSY_TIMEOUT_MS}`);
  }
  if (typeof readonly !== 'boolean') problems.push('readonly must be a boolean');
  if (problems.length > 0) throw new TypeError(`invalid SQLite store options: ${problems.join('; ')}`);
  return { path: resolve(path), busyTimeoutMs, readonly };
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
  db.pragma('synchronous = FULL');
  requirePragma(path, 'synchronous', db.pragma('synchronous', { simple: true }), 2);
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

/** One per `transaction` call; `open` turns false the moment `work` settles. */
interface TransactionContext {
  open: boolean;
}

/** Runs one synchronous repository operation in the right context; `what` feeds error messages. */
type Runner = <T>(what: string, operation: () => T) => Promise<T>;

class SqliteStore implements SignetStore {
  readonly kind = 'sqlite' as const;
  readonly keys: KeyRepository;

  readonly #db: Database.Database;
  readonly #statements = new Map<string, Database.Statement>();
  readonly #queue = new SerialQueue();
  readonly #transactionContext = new AsyncLocalStorage<TransactionContext>();
  readonly #keyOperations: SqliteKeyOperations;
  #closed: Promise<void> | null = null;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#keyOperations = new SqliteKeyOperations(db, (sql) => this.#statement(sql));
    this.keys = new SqliteKeyRepository(this.#keyOperations, (what, operation) => this.#exclusive(what, operation));
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

  async transaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    return this.#exclusive('running a transaction', async () => {
      // IMMEDIATE takes the write lock now, so a second process fails here (after the
      // busy timeout) rather than at COMMIT with all of `work` already done.
      this.#statement('BEGIN IMMEDIATE').run();
      const context: TransactionContext = { open: true };
      const tx: StoreTransaction = {
        keys: new SqliteKeyRepository(this.#keyOperations, (what, operation) =>
          this.#inTransaction(context, what, operation),
        ),
      };
      let result: T;
      try {
        result = await this.#transactionContext.run(context, () => work(tx));
      } catch (error) {
        context.open = false;
        this.#rollbackIfOpen();
        throw error;
      }
      context.open = false;
      this.#commit();
      return result;
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
    this.#closed ??= this.#queue.run(() => {
      this.#statements.clear();
      if (this.#db.open) this.#db.close();
    });
    return this.#closed;
  }

  /** Runs `operation` alone on the connection, after every call queued before it. */
  async #exclusive<T>(what: string, operation: () => T | Promise<T>): Promise<T> {
    this.#refuseInsideTransaction(what);
    if (this.#closed !== null) throw closedError(what);
    return this.#queue.run(async () => {
      if (!this.#db.open) throw closedError(what);
      try {
        this.#discardLeftoverTransaction();
        return await operation();
      } catch (error) {
        throw translateSqliteError(error, what);
      }
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
    if (!this.#db.inTransaction) {
      throw new StoreError('STORE_UNAVAILABLE', `the storage engine aborted the transaction before ${what}`);
    }
    try {
      return operation();
    } catch (error) {
      throw translateSqliteError(error, what);
    }
  }

  #refuseInsideTransaction(what: string): void {
    if (this.#transactionContext.getStore()?.open === true) {
      throw new TypeError(`store used directly inside transaction() (${what}); use the transaction handle instead`);
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

function closedError(what: string): StoreError {
  return new StoreError('STORE_UNAVAILABLE', `the store is closed (${what})`);
}

/** The public `KeyRepository`: each call handed to a runner (queued, or inside a transaction). */
class SqliteKeyRepository implements KeyRepository {
  readonly #operations: SqliteKeyOperations;
  readonly #run: Runner;

  constructor(operations: SqliteKeyOperations, run: Runner) {
    this.#operations = operations;
    this.#run = run;
  }

  list(): Promise<KeyVersionRecord[]> {
    return this.#run('listing keys', () => this.#operations.list());
  }

  get(keyId: string): Promise<KeyVersionRecord | null> {
    return this.#run(`reading key ${describeId(keyId)}`, () => this.#operations.get(keyId));
  }

  listVersions(name: string): Promise<KeyVersionRecord[]> {
    return this.#run(`listing versions of key ${describeId(name)}`, () => this.#operations.listVersions(name));
  }

  getActive(name: string): Promise<KeyVersionRecord | null> {
    return this.#run(`reading the active version of key ${describeId(name)}`, () =>
      this.#operations.getActive(name),
    );
  }

  insert(record: KeyVersionRecord): Promise<void> {
    // Describing the call must not throw, whatever a caller passed; insert validates.
    const candidate: unknown = record;
    const keyId =
      typeof candidate === 'object' && candidate !== null && 'keyId' in candidate ? candidate.keyId : undefined;
    return this.#run(`inserting key ${describeId(keyId)}`, () => {
      this.#operations.insert(record);
    });
  }

  updateState(keyId: string, state: KeyState, at: string): Promise<void> {
    return this.#run(`updating the state of key ${describeId(keyId)}`, () => {
      this.#operations.updateState(keyId, state, at);
    });
  }
}

const KEY_COLUMNS = [
  'key_id',
  'name',
  'version',
  'algorithm',
  'state',
  'hsm_key_id',
  'public_key_pem',
  'created_at',
  'not_before',
  'not_after',
  'compromised_at',
  'state_changed_at',
].join(', ');

/** The synchronous SQL behind `KeyRepository`; callers provide ordering and error translation. */
class SqliteKeyOperations {
  readonly #db: Database.Database;
  readonly #statement: (sql: string) => Database.Statement;

  constructor(db: Database.Database, statement: (sql: string) => Database.Statement) {
    this.#db = db;
    this.#statement = statement;
  }

  list(): KeyVersionRecord[] {
    return this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions ORDER BY name, version`)
      .all()
      .map(keyVersionFromRow);
  }

  get(keyId: string): KeyVersionRecord | null {
    requireString('keyId', keyId);
    const row = this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE key_id = ?`).get(keyId);
    return row === undefined ? null : keyVersionFromRow(row);
  }

  listVersions(name: string): KeyVersionRecord[] {
    requireString('name', name);
    return this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE name = ? ORDER BY version`)
      .all(name)
      .map(keyVersionFromRow);
  }

  getActive(name: string): KeyVersionRecord | null {
    requireString('name', name);
    const row = this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE name = ? AND state = 'active'`).get(
      name,
    );
    return row === undefined ? null : keyVersionFromRow(row);
  }

  insert(candidate: KeyVersionRecord): void {
    const record = parseKeyVersion(candidate, (problems) => {
      throw new TypeError(`invalid key version record: bad ${problems.join(', ')}`);
    });
    this.#atomically(() => {
      // Checked first for a precise message; the primary key and the partial unique
      // index still refuse the write if anything slips past (another process).
      if (this.#exists(record.keyId)) {
        throw new StoreError('STORE_CONFLICT', `key version ${record.keyId} already exists`);
      }
      if (record.state === 'active') this.#requireNoOtherActive(record.name, record.keyId);
      this.#statement(
        `INSERT INTO key_versions (${KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        record.keyId,
        record.name,
        record.version,
        record.algorithm,
        record.state,
        record.hsmKeyId,
        record.publicKeyPem,
        record.createdAt,
        record.notBefore,
        record.notAfter,
        record.compromisedAt,
        record.createdAt,
      );
    });
  }

  updateState(keyId: string, state: KeyState, at: string): void {
    requireString('keyId', keyId);
    const stateValue: unknown = state;
    if (typeof stateValue !== 'string' || !isKeyState(stateValue)) throw new TypeError('invalid key state');
    const when = canonicalTimestamp(at);
    if (when === null) throw new TypeError('invalid state change time: expected ISO-8601 UTC');

    this.#atomically(() => {
      const row = this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE key_id = ?`).get(keyId);
      if (row === undefined) throw new StoreError('STORE_NOT_FOUND', `key version ${describeId(keyId)} does not exist`);
      const current = keyVersionFromRow(row);

      // Lifecycle rules belong to keyrotation/, but one is a security invariant worth a
      // second guard here: leaving `compromised` would quietly make signatures made
      // after the compromise valid again.
      if (current.state === 'compromised' && state !== 'compromised') {
        throw new StoreError('STORE_CONFLICT', `key version ${current.keyId} is compromised; that state is final`);
      }
      let compromisedAt: string | null = null;
      if (state === 'compromised') {
        // Reporting a compromise again can only move its instant earlier: the earliest
        // report invalidates the most signatures.
        compromisedAt =
          current.compromisedAt !== null && Date.parse(current.compromisedAt) <= Date.parse(when)
            ? current.compromisedAt
            : when;
      }
      if (state === current.state && compromisedAt === current.compromisedAt) return;
      if (state === 'active') this.#requireNoOtherActive(current.name, current.keyId);

      // The right-hand sides see the old row: state_changed_at moves only when the
      // state does, not when only the compromise instant is moved earlier.
      this.#statement(
        `UPDATE key_versions
            SET state_changed_at = CASE WHEN state = ? THEN state_changed_at ELSE ? END,
                state = ?,
                compromised_at = ?
          WHERE key_id = ?`,
      ).run(state, when, state, compromisedAt, current.keyId);
    });
  }

  /** Read-then-write as one unit: a savepoint inside a transaction, else its own IMMEDIATE transaction. */
  #atomically(operation: () => void): void {
    this.#db.transaction(operation).immediate();
  }

  #exists(keyId: string): boolean {
    return this.#statement('SELECT 1 FROM key_versions WHERE key_id = ?').get(keyId) !== undefined;
  }

  #requireNoOtherActive(name: string, keyId: string): void {
    const other: unknown = this.#statement(
      "SELECT key_id FROM key_versions WHERE name = ? AND state = 'active' AND key_id <> ?",
    )
      .pluck()
      .get(name, keyId);
    if (other !== undefined) {
      throw new StoreError(
        'STORE_CONFLICT',
        `key ${name} already has an active version (${typeof other === 'string' ? describeId(other) : 'unreadable'})`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------
// Validation of key versions, both on the way in (a caller's bug: TypeError) and on
// the way out (a damaged or tampered file: STORE_CORRUPT). Problems name fields, never
// values: a damaged value could be anything, including an HSM key id.

type KeyVersionCandidate = { readonly [K in keyof KeyVersionRecord]: unknown };

/** Key names appear in key ids, URLs, certificates and the log: a conservative alphabet. */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Hex CKA_ID: whole bytes, at most 128 of them. */
const HSM_KEY_ID = /^(?:[0-9A-Fa-f]{2}){1,128}$/;
const PUBLIC_KEY_PEM =
  /^-----BEGIN PUBLIC KEY-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n)+-----END PUBLIC KEY-----\r?\n?$/;
const MAX_PEM_LENGTH = 16_384;
const ISO_UTC = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$/;

function parseKeyVersion(
  candidate: KeyVersionCandidate,
  reject: (problems: string[]) => never,
): KeyVersionRecord {
  const problems: string[] = [];
  const { keyId, name, version, algorithm, state, hsmKeyId, publicKeyPem } = candidate;

  const nameOk = typeof name === 'string' && KEY_NAME.test(name);
  if (!nameOk) problems.push('name');
  const versionOk = typeof version === 'number' && Number.isSafeInteger(version) && version >= 1;
  if (!versionOk) problems.push('version');
  // keyId is `<name>@<version>` (store.ts); checking it keeps the two from disagreeing.
  if (typeof keyId !== 'string' || (nameOk && versionOk && keyId !== `${name}@${version}`)) problems.push('keyId');
  if (typeof algorithm !== 'string' || !isKeyAlgorithm(algorithm)) problems.push('algorithm');
  if (typeof state !== 'string' || !isKeyState(state)) problems.push('state');
  if (typeof hsmKeyId !== 'string' || !HSM_KEY_ID.test(hsmKeyId)) problems.push('hsmKeyId');
  if (typeof publicKeyPem !== 'string' || publicKeyPem.length > MAX_PEM_LENGTH || !PUBLIC_KEY_PEM.test(publicKeyPem)) {
    problems.push('publicKeyPem');
  }

  const createdAt = canonicalTimestamp(candidate.createdAt);
  if (createdAt === null) problems.push('createdAt');
  const notBefore = canonicalTimestamp(candidate.notBefore);
  if (notBefore === null) problems.push('notBefore');
  const notAfter = candidate.notAfter === null ? null : canonicalTimestamp(candidate.notAfter);
  if (candidate.notAfter !== null && notAfter === null) problems.push('notAfter');
  else if (notAfter !== null && notBefore !== null && Date.parse(notAfter) <= Date.parse(notBefore)) {
    problems.push('notAfter (not after notBefore)');
  }
  // compromisedAt is set exactly when the state is compromised (store.ts).
  const compromisedAt = candidate.compromisedAt === null ? null : canonicalTimestamp(candidate.compromisedAt);
  if (state === 'compromised' ? compromisedAt === null : candidate.compromisedAt !== null) {
    problems.push('compromisedAt');
  }

  if (problems.length > 0) return reject(problems);
  return Object.freeze({
    keyId: keyId as string,
    name: name as string,
    version: version as number,
    algorithm: algorithm as KeyVersionRecord['algorithm'],
    state: state as KeyState,
    hsmKeyId: hsmKeyId as string,
    publicKeyPem: publicKeyPem as string,
    createdAt: createdAt as string,
    notBefore: notBefore as string,
    notAfter,
    compromisedAt,
  });
}

function keyVersionFromRow(row: unknown): KeyVersionRecord {
  if (typeof row !== 'object' || row === null) {
    throw new StoreError('STORE_CORRUPT', 'key_versions returned a row that is not a record');
  }
  const r = row as Record<string, unknown>;
  const record = parseKeyVersion(
    {
      keyId: r.key_id,
      name: r.name,
      version: r.version,
      algorithm: r.algorithm,
      state: r.state,
      hsmKeyId: r.hsm_key_id,
      publicKeyPem: r.public_key_pem,
      createdAt: r.created_at,
      notBefore: r.not_before,
      notAfter: r.not_after,
      compromisedAt: r.compromised_at,
    },
    (problems) => {
      throw new StoreError('STORE_CORRUPT', `a stored key version has invalid ${problems.join(', ')}`);
    },
  );
  if (canonicalTimestamp(r.state_changed_at) === null) {
    throw new StoreError('STORE_CORRUPT', `stored key version ${record.keyId} has invalid state_changed_at`);
  }
  return record;
}

/**
 * ISO-8601 UTC (`Z` only, optional fraction) → the `Date.toISOString()` form, or null.
 * Every component is checked by a round trip, so 2025-02-30 or 24:00 are refused rather
 * than rolled over. Stored timestamps are always in this canonical form.
 */
function canonicalTimestamp(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  const match = ISO_UTC.exec(value);
  if (match === null) return null;
  const [year, month, day, hour, minute, second] = match.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const millisecond = Number((match[7] ?? '0').padEnd(3, '0').slice(0, 3));
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0–99 to 1900–1999.
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, millisecond);
  if (
    date.getUTCFullYear() !== year ||
    date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day ||
    date.getUTCHours() !== hour ||
    date.getUTCMinutes() !== minute ||
    date.getUTCSeconds() !== second
  ) {
    return null;
  }
  return date.toISOString();
}

function isKeyState(value: string): value is KeyState {
  return (KEY_STATES as readonly string[]).includes(value);
}

function requireString(field: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${field} must be a string`);
}

/** Key ids and names in messages: printable and short, whatever a caller passed. */
function describeId(value: unknown): string {
  if (typeof value !== 'string') return '(not a string)';
  const printable = value.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 80 ? `${printable.slice(0, 80)}…` : printable;
}
