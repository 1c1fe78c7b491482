/**
 * Errors of the storage layer.
 *
 * Every backend reports failures as a `StoreError` with one of a few stable codes, so
 * callers (the signing path, /readyz, the HTTP error table) never see driver errors.
 * Each backend translates its driver's errors at its own boundary; the SQLite table is
 * here because it needs nothing from the driver but the result-code string.
 *
 * Messages name tables, key ids and SQLite result codes, never stored values such as
 * HSM key ids: the driver's own error stays in `cause`, for the service log only.
 */
import { SignetError } from '../errors/signet-error.js';

export const STORE_ERROR_CODES = [
  /** Storage cannot be read or written right now: disk full, read-only, locked beyond the busy timeout, I/O error, closed. */
  'STORE_UNAVAILABLE',
  /** A uniqueness or other constraint refused the write (duplicate key id, second active version). */
  'STORE_CONFLICT',
  /** The row the operation needs does not exist. */
  'STORE_NOT_FOUND',
  /** Stored data fails validation, the file is not a database, or its schema is newer than this code. */
  'STORE_CORRUPT',
  /** A schema migration could not be applied; nothing of it was kept. */
  'STORE_MIGRATION_FAILED',
] as const;
export type StoreErrorCode = (typeof STORE_ERROR_CODES)[number];

export class StoreError extends SignetError<StoreErrorCode> {}

export function isStoreError(value: unknown): value is StoreError {
  return value instanceof StoreError;
}

/**
 * better-sqlite3's `SqliteError`, recognised by shape so that this module does not load
 * the native driver (a PostgreSQL-only deployment never needs it). `code` is SQLite's
 * extended result code name, e.g. `SQLITE_CONSTRAINT_UNIQUE`, `SQLITE_IOERR_FSYNC`.
 */
function sqliteResultCode(error: unknown): string | null {
  if (!(error instanceof Error) || error.name !== 'SqliteError') return null;
  const code: unknown = (error as Error & { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : null;
}

/**
 * Primary result code → store code and an operator-facing message. Extended codes
 * (`SQLITE_READONLY_DBMOVED`, `SQLITE_IOERR_WRITE`, …) share their primary's meaning.
 * See https://www.sqlite.org/rescode.html.
 */
const PRIMARY_CODES: Readonly<Record<string, readonly [StoreErrorCode, string]>> = Object.freeze({
  SQLITE_CONSTRAINT: ['STORE_CONFLICT', 'a storage constraint refused the write'],
  SQLITE_FULL: ['STORE_UNAVAILABLE', 'storage is full'],
  SQLITE_READONLY: ['STORE_UNAVAILABLE', 'storage is read-only'],
  SQLITE_BUSY: ['STORE_UNAVAILABLE', 'storage stayed locked by another connection beyond the busy timeout'],
  SQLITE_LOCKED: ['STORE_UNAVAILABLE', 'storage table is locked'],
  SQLITE_IOERR: ['STORE_UNAVAILABLE', 'storage I/O error'],
  SQLITE_CANTOPEN: ['STORE_UNAVAILABLE', 'cannot open the storage file'],
  SQLITE_PERM: ['STORE_UNAVAILABLE', 'storage access denied'],
  SQLITE_AUTH: ['STORE_UNAVAILABLE', 'storage access denied'],
  SQLITE_NOMEM: ['STORE_UNAVAILABLE', 'storage ran out of memory'],
  SQLITE_NOLFS: ['STORE_UNAVAILABLE', 'storage file too large for this system'],
  SQLITE_PROTOCOL: ['STORE_UNAVAILABLE', 'storage locking protocol error'],
  SQLITE_CORRUPT: ['STORE_CORRUPT', 'storage file is corrupt'],
  SQLITE_NOTADB: ['STORE_CORRUPT', 'storage file is not a SQLite database'],
});

/**
 * Turns a better-sqlite3 error into a `StoreError`; a `StoreError` passes through and
 * any other error (a bug, not a storage condition) is returned unchanged so that it is
 * not disguised as one. `context` says what was being done, e.g. "inserting key x@1".
 */
export function translateSqliteError(error: unknown, context: string): unknown {
  if (error instanceof StoreError) return error;
  const code = sqliteResultCode(error);
  if (code === null) return error;
  const primary = /^SQLITE_[A-Z]+/.exec(code)?.[0] ?? code;
  // Anything unlisted (SQLITE_ERROR, SQLITE_MISMATCH, …) means the statement could not
  // run; the store cannot serve the call, and the result code in the message and the
  // cause in the log tell the operator why.
  const [storeCode, what] = PRIMARY_CODES[primary] ?? ['STORE_UNAVAILABLE', 'storage operation failed'];
  return new StoreError(storeCode, `${what} while ${context} (${code})`, { cause: error });
}
