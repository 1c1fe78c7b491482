/**
 * PostgreSQL failures → `StoreError`, at the backend's boundary (store/errors.ts has the
 * codes and the SQLite table).
 *
 * Two kinds of failure come out of node-postgres:
 *
 * - `DatabaseError`: the server answered with an error. Its SQLSTATE (PostgreSQL
 *   manual, Appendix A, "PostgreSQL Error Codes") decides the store code; the class
 *   (first two characters) is enough for most of them.
 * - anything else the driver raises: the connection could not be opened, was lost,
 *   timed out or is no longer usable. The database is out of reach: STORE_UNAVAILABLE,
 *   which the HTTP layer answers with 503 (fail closed), and the pool replaces the
 *   connection, so service resumes on its own once the database is back.
 *
 * Messages are this module's own: a server message can quote stored values (a unique
 * violation's DETAIL names the key), and a connection error can name the host. The
 * driver's error stays in `cause`, for the service log only.
 */
import pg from 'pg';
import { StoreError, type StoreErrorCode } from '../errors.js';

/** The SQLSTATE of a server-reported error, or null for anything else. */
export function sqlState(error: unknown): string | null {
  if (!(error instanceof pg.DatabaseError)) return null;
  const code: unknown = error.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : null;
}

/** The constraint a server-reported integrity violation names, or null. */
export function violatedConstraint(error: unknown): string | null {
  return error instanceof pg.DatabaseError && typeof error.constraint === 'string' ? error.constraint : null;
}

/** 23505: a unique index refused the write. */
export function isUniqueViolation(error: unknown): boolean {
  return sqlState(error) === '23505';
}

/** 40001 (serialization failure) and 40P01 (deadlock): the statement was rolled back and may simply be retried. */
export function isRetryable(error: unknown): boolean {
  const state = sqlState(error);
  return state === '40001' || state === '40P01';
}

/**
 * True when the connection that raised `error` must not go back to the pool: the
 * driver failed (socket closed, timeout, protocol error), or the server ended the
 * session (class 08, 57P01–57P03) or reported internal damage (class XX).
 */
export function breaksConnection(error: unknown): boolean {
  if (error instanceof StoreError) return false;
  const state = sqlState(error);
  if (state === null) return true;
  return state.startsWith('08') || state.startsWith('57P') || state.startsWith('XX');
}

/** SQLSTATE → store code and an operator-facing description. Exact codes first, then classes. */
const EXACT_STATES: Readonly<Record<string, readonly [StoreErrorCode, string]>> = Object.freeze({
  '40001': ['STORE_UNAVAILABLE', 'storage was too busy (serialization failure)'],
  '40P01': ['STORE_UNAVAILABLE', 'storage was too busy (deadlock)'],
  '57014': ['STORE_UNAVAILABLE', 'a storage statement timed out or was cancelled'],
  '25006': ['STORE_UNAVAILABLE', 'storage is read-only'],
  '25P02': ['STORE_UNAVAILABLE', 'the database had already aborted the transaction'],
  '25P03': ['STORE_UNAVAILABLE', 'the database ended an idle transaction'],
  '3D000': ['STORE_UNAVAILABLE', 'the database does not exist'],
  '3F000': ['STORE_UNAVAILABLE', 'the storage schema does not exist'],
  '42501': ['STORE_UNAVAILABLE', 'storage access denied'],
  XX001: ['STORE_CORRUPT', 'the database reports corrupt data'],
  XX002: ['STORE_CORRUPT', 'the database reports a corrupt index'],
});

const STATE_CLASSES: Readonly<Record<string, readonly [StoreErrorCode, string]>> = Object.freeze({
  '08': ['STORE_UNAVAILABLE', 'lost the connection to the database'],
  '23': ['STORE_CONFLICT', 'a storage constraint refused the write'],
  '28': ['STORE_UNAVAILABLE', 'storage access denied'],
  '53': ['STORE_UNAVAILABLE', 'the database ran out of resources'],
  '54': ['STORE_UNAVAILABLE', 'the database refused a statement over its limits'],
  '57': ['STORE_UNAVAILABLE', 'the database is shutting down, restarting or refusing connections'],
  '58': ['STORE_UNAVAILABLE', 'the database had a system error'],
});

/**
 * Turns what node-postgres threw into a `StoreError`; a `StoreError` passes through.
 * Only errors that came from the driver may be given here (the store wraps every
 * driver call): anything that is not a server error is a lost or unusable connection.
 * `context` says what was being done, e.g. "claiming the use of token x".
 */
export function translatePostgresError(error: unknown, context: string): StoreError {
  if (error instanceof StoreError) return error;
  const state = sqlState(error);
  if (state === null) {
    return new StoreError('STORE_UNAVAILABLE', `cannot reach the database while ${context}`, { cause: error });
  }
  // Anything unlisted (syntax errors, a missing table, data exceptions) means the
  // statement could not run; the SQLSTATE in the message and the cause in the log tell
  // the operator why.
  const [code, what] =
    EXACT_STATES[state] ?? STATE_CLASSES[state.slice(0, 2)] ?? (['STORE_UNAVAILABLE', 'storage operation failed'] as const);
  return new StoreError(code, `${what} while ${context} (SQLSTATE ${state})`, { cause: error });
}
