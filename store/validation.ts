/**
 * Validation shared by every storage backend, in both directions:
 *
 * - on the way in, a value that breaks the contract in store.ts is a caller's bug and
 *   fails with a TypeError before anything is written;
 * - on the way out, a row that does not describe a valid record (a damaged or tampered
 *   database) fails with STORE_CORRUPT rather than reaching the signing path.
 *
 * Row parsers take the row as the driver returns it, keyed by column name; both
 * dialects use the same column names and store timestamps as text, so one parser
 * serves both. Problems name fields, never values: a damaged value could be anything,
 * including an HSM key id.
 */
import { Buffer } from 'node:buffer';
import { isKeyAlgorithm } from '../signer/algorithms.js';
import { StoreError } from './errors.js';
import {
  KEY_STATES,
  type CounterIncrement,
  type KeyState,
  type KeyVersionRecord,
  type TokenUseRecord,
} from './store.js';

// ---------------------------------------------------------------------------------
// Shared helpers

/** Longest issuer, token id (`jti`) or counter name accepted; the issuer config allows 512 too. */
export const MAX_ID_LENGTH = 512;
/** Largest stored answer of a token use, in UTF-8 bytes. */
export const MAX_RESPONSE_BYTES = 1_048_576;
/** Most counters one `consume` may touch: each is a read and a write inside one write lock. */
export const MAX_INCREMENTS = 64;

const ISO_UTC = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$/;

/**
 * ISO-8601 UTC (`Z` only, optional fraction) → the `Date.toISOString()` form, or null.
 * Every component is checked by a round trip, so 2025-02-30 or 24:00 are refused rather
 * than rolled over. Stored timestamps are always in this canonical form, which has a
 * fixed width for years 0000–9999: text order is time order, and queries rely on it.
 */
export function canonicalTimestamp(value: unknown): string | null {
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

/** A timestamp argument in canonical form; TypeError if it is not ISO-8601 UTC. */
export function requireTimestamp(field: string, value: unknown): string {
  const canonical = canonicalTimestamp(value);
  if (canonical === null) throw new TypeError(`invalid ${field}: expected an ISO-8601 UTC timestamp`);
  return canonical;
}

export function isKeyState(value: string): value is KeyState {
  return (KEY_STATES as readonly string[]).includes(value);
}

export function requireString(field: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${field} must be a string`);
}

/** Ids and names in messages: printable and short, whatever a caller passed. */
export function describeId(value: unknown): string {
  if (typeof value !== 'string') return '(not a string)';
  const printable = value.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > 80 ? `${printable.slice(0, 80)}…` : printable;
}

/** With the `u` flag, a surrogate half matches only when it is not part of a pair. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Text that survives a round trip through both databases unchanged: PostgreSQL refuses
 * NUL in text, and a lone surrogate half becomes U+FFFD once encoded as UTF-8, so two
 * different ids would be stored as one and neither read back as written.
 */
function isStorableText(value: string): boolean {
  return !value.includes('\0') && !LONE_SURROGATE.test(value);
}

/** Issuers, token ids, counter names: non-empty, bounded, storable. */
function isValidId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_ID_LENGTH && isStorableText(value);
}

function requireId(field: string, value: unknown): string {
  if (!isValidId(value)) {
    throw new TypeError(
      `invalid ${field}: expected a non-empty string of at most ${MAX_ID_LENGTH} characters, without NUL or lone surrogates`,
    );
  }
  return value;
}

function rowRecord(table: string, row: unknown): Record<string, unknown> {
  if (typeof row !== 'object' || row === null) {
    throw new StoreError('STORE_CORRUPT', `${table} returned a row that is not a record`);
  }
  return row as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------
// Key versions

type KeyVersionCandidate = { readonly [K in keyof KeyVersionRecord]: unknown };

/** Key names appear in key ids, URLs, certificates and the log: a conservative alphabet. */
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Hex CKA_ID: whole bytes, at most 128 of them. */
const HSM_KEY_ID = /^(?:[0-9A-Fa-f]{2}){1,128}$/;
const PUBLIC_KEY_PEM =
  /^-----BEGIN PUBLIC KEY-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n)+-----END PUBLIC KEY-----\r?\n?$/;
const MAX_PEM_LENGTH = 16_384;

/** A key version a caller wants to insert, in canonical form; TypeError naming the bad fields. */
export function requireKeyVersion(candidate: KeyVersionRecord): KeyVersionRecord {
  return parseKeyVersion(candidate, (problems) => {
    throw new TypeError(`invalid key version record: bad ${problems.join(', ')}`);
  });
}

function parseKeyVersion(candidate: KeyVersionCandidate, reject: (problems: string[]) => never): KeyVersionRecord {
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

/** A `key_versions` row → its record; STORE_CORRUPT if it does not describe a valid key version. */
export function keyVersionFromRow(row: unknown): KeyVersionRecord {
  const r = rowRecord('key_versions', row);
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

// ---------------------------------------------------------------------------------
// Token uses

/**
 * Hex SHA-256, lower case only (what `digest('hex')` produces). The hash is compared as
 * text to recognise an identical retry, so one spelling per hash keeps a retry from
 * being mistaken for a different request.
 */
const REQUEST_HASH = /^[0-9a-f]{64}$/;

export interface TokenUseClaim {
  readonly issuer: string;
  readonly tokenId: string;
  readonly requestHash: string;
  readonly createdAt: string;
  readonly expiresAt: string;
}

/** The (issuer, tokenId) pair every token-use call names. */
export function requireTokenKey(issuer: unknown, tokenId: unknown): { issuer: string; tokenId: string } {
  return { issuer: requireId('issuer', issuer), tokenId: requireId('tokenId', tokenId) };
}

export function requireRequestHash(value: unknown): string {
  if (typeof value !== 'string' || !REQUEST_HASH.test(value)) {
    throw new TypeError('invalid requestHash: expected 64 lower-case hex digits (SHA-256)');
  }
  return value;
}

/** The answer to store: JSON text of at most MAX_RESPONSE_BYTES, read back exactly as written. */
export function requireResponse(value: unknown): string {
  if (!isValidResponse(value)) {
    throw new TypeError(`invalid response: expected JSON text of at most ${MAX_RESPONSE_BYTES} bytes`);
  }
  return value;
}

function isValidResponse(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0) return false;
  // A UTF-16 unit is at most 3 UTF-8 bytes: the cheap bound settles most answers before
  // the exact count, and the length check stops an enormous string before any scan.
  if (value.length > MAX_RESPONSE_BYTES) return false;
  if (value.length * 3 > MAX_RESPONSE_BYTES && Buffer.byteLength(value, 'utf8') > MAX_RESPONSE_BYTES) return false;
  if (LONE_SURROGATE.test(value)) return false;
  try {
    JSON.parse(value);
  } catch {
    return false;
  }
  return true;
}

/** A claim as a caller passed it, in canonical form; TypeError naming the bad fields. */
export function requireTokenUseClaim(candidate: unknown): TokenUseClaim {
  if (typeof candidate !== 'object' || candidate === null) throw new TypeError('invalid token use: not an object');
  const c = candidate as Record<string, unknown>;
  const problems: string[] = [];
  if (!isValidId(c.issuer)) problems.push('issuer');
  if (!isValidId(c.tokenId)) problems.push('tokenId');
  if (typeof c.requestHash !== 'string' || !REQUEST_HASH.test(c.requestHash)) problems.push('requestHash');
  const createdAt = canonicalTimestamp(c.createdAt);
  if (createdAt === null) problems.push('createdAt');
  const expiresAt = canonicalTimestamp(c.expiresAt);
  if (expiresAt === null) problems.push('expiresAt');
  else if (createdAt !== null && expiresAt < createdAt) problems.push('expiresAt (before createdAt)');
  if (problems.length > 0) throw new TypeError(`invalid token use: bad ${problems.join(', ')}`);
  return Object.freeze({
    issuer: c.issuer as string,
    tokenId: c.tokenId as string,
    requestHash: c.requestHash as string,
    createdAt: createdAt as string,
    expiresAt: expiresAt as string,
  });
}

/**
 * A `token_uses` row → its record; STORE_CORRUPT if it does not describe a valid use.
 * Stored timestamps must already be canonical: the purge compares them as text.
 */
export function tokenUseFromRow(row: unknown): TokenUseRecord {
  const r = rowRecord('token_uses', row);
  const problems: string[] = [];
  const { issuer, token_id: tokenId, request_hash: requestHash, state, response } = r;
  if (!isValidId(issuer)) problems.push('issuer');
  if (!isValidId(tokenId)) problems.push('token_id');
  if (typeof requestHash !== 'string' || !REQUEST_HASH.test(requestHash)) problems.push('request_hash');
  if (state !== 'pending' && state !== 'done') problems.push('state');
  // The answer is stored exactly when the use is done (store.ts, and the table's CHECK).
  if (state === 'done' ? !isValidResponse(response) : response !== null) problems.push('response');
  const createdAt = r.created_at;
  const expiresAt = r.expires_at;
  const createdOk = typeof createdAt === 'string' && canonicalTimestamp(createdAt) === createdAt;
  if (!createdOk) problems.push('created_at');
  if (typeof expiresAt !== 'string' || canonicalTimestamp(expiresAt) !== expiresAt) problems.push('expires_at');
  else if (createdOk && expiresAt < createdAt) problems.push('expires_at (before created_at)');
  if (problems.length > 0) {
    throw new StoreError('STORE_CORRUPT', `a stored token use has invalid ${problems.join(', ')}`);
  }
  return Object.freeze({
    issuer: issuer as string,
    tokenId: tokenId as string,
    requestHash: requestHash as string,
    state: state as TokenUseRecord['state'],
    response: response as string | null,
    createdAt: createdAt as string,
    expiresAt: expiresAt as string,
  });
}

// ---------------------------------------------------------------------------------
// Counters

/** The window of usage limits, never purged. */
export const TOTAL_WINDOW = 'total';
const MINUTE_WINDOW = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})$/;

/**
 * A rate window: one UTC minute, `YYYY-MM-DDTHH:MM`, a real one. The fixed width is what
 * makes text order time order for `purgeWindowsBefore`.
 */
function isMinuteWindow(value: unknown): value is string {
  return typeof value === 'string' && MINUTE_WINDOW.test(value) && canonicalTimestamp(`${value}:00Z`) !== null;
}

export function requireCounterName(value: unknown): string {
  return requireId('counter', value);
}

/** A counter window: a minute window or `total`. */
export function requireWindow(value: unknown): string {
  if (value !== TOTAL_WINDOW && !isMinuteWindow(value)) {
    throw new TypeError(`invalid window: expected a UTC minute (YYYY-MM-DDTHH:MM) or '${TOTAL_WINDOW}'`);
  }
  return value;
}

/** The bound of `purgeWindowsBefore`: a minute window only, as `total` is never purged. */
export function requireMinuteWindow(value: unknown): string {
  if (!isMinuteWindow(value)) throw new TypeError('invalid window: expected a UTC minute (YYYY-MM-DDTHH:MM)');
  return value;
}

/**
 * The increments of one `consume`, checked and copied (a caller mutating its array
 * afterwards changes nothing). Naming one counter window twice is refused: whether
 * that should count once or twice is not something to guess.
 */
export function requireIncrements(value: unknown): readonly CounterIncrement[] {
  if (!Array.isArray(value)) throw new TypeError('increments must be an array');
  const items = value as readonly unknown[];
  if (items.length > MAX_INCREMENTS) throw new TypeError(`at most ${MAX_INCREMENTS} increments per consume`);
  const seen = new Set<string>();
  return Object.freeze(
    items.map((item, index) => {
      if (typeof item !== 'object' || item === null) throw new TypeError(`increment ${index} is not an object`);
      const { counter, window, limit } = item as Record<string, unknown>;
      const problems: string[] = [];
      if (!isValidId(counter)) problems.push('counter');
      if (window !== TOTAL_WINDOW && !isMinuteWindow(window)) problems.push('window');
      if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) problems.push('limit');
      if (problems.length > 0) throw new TypeError(`invalid increment ${index}: bad ${problems.join(', ')}`);
      // JSON of the pair: unambiguous whatever characters the names contain.
      const key = JSON.stringify([counter, window]);
      if (seen.has(key)) throw new TypeError(`increment ${index} repeats counter ${describeId(counter)} in its window`);
      seen.add(key);
      return Object.freeze({ counter: counter as string, window: window as string, limit: limit as number });
    }),
  );
}

const DECIMAL_COUNT = /^(?:0|[1-9][0-9]{0,15})$/;

/** A stored count → a number; STORE_CORRUPT unless it is a safe non-negative integer. */
export function countFromRow(value: unknown): number {
  // 64-bit integers arrive as numbers, as bigints when a driver is asked for them, or
  // as decimal text (node-postgres returns BIGINT that way).
  const count =
    typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : typeof value === 'string' && DECIMAL_COUNT.test(value)
        ? Number(value)
        : value;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
    throw new StoreError('STORE_CORRUPT', 'a stored counter has an invalid count');
  }
  return count;
}
