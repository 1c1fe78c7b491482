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
import { HASH_SIZE, leafHash, nodeKey, type NodeRef } from '../log/merkle.js';
import {
  KEY_STATES,
  type CheckpointRecord,
  type CounterIncrement,
  type KeyState,
  type KeyValidityWindow,
  type KeyVersionRecord,
  type LogEntryInput,
  type LogEntryRecord,
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

/** A validity window to store with a state change (store.ts, `KeyValidityWindow`); TypeError if malformed. */
export function requireValidityWindow(window: KeyValidityWindow): KeyValidityWindow {
  const value: unknown = window;
  if (typeof value !== 'object' || value === null) throw new TypeError('invalid validity window');
  const notBefore = canonicalTimestamp(window.notBefore);
  const notAfter = window.notAfter === null ? null : canonicalTimestamp(window.notAfter);
  if (notBefore === null || (window.notAfter !== null && notAfter === null) || (notAfter !== null && Date.parse(notAfter) < Date.parse(notBefore))) {
    throw new TypeError('invalid validity window: ISO-8601 UTC times, notAfter null or not before notBefore');
  }
  return { notBefore, notAfter };
}

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
  // An empty window (notAfter = notBefore) is a version that was never active
  // (keyrotation/lifecycle.ts); only a window that ends before it starts is invalid.
  else if (notAfter !== null && notBefore !== null && Date.parse(notAfter) < Date.parse(notBefore)) {
    problems.push('notAfter (before notBefore)');
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

// ---------------------------------------------------------------------------------
// Transparency log

/** Entry kinds: short, lower-case, and safe in URLs and log lines (`signet.decision/v1`). */
const LOG_KIND = /^[a-z0-9./_-]{1,64}$/;
/** Largest leaf, in bytes. Leaves are canonical JSON of one decision or signature. */
export const MAX_LEAF_BYTES = 1_048_576;
/**
 * Most entries one `append` takes. An append runs as one synchronous step on the
 * connection, so this bounds how long it holds the event loop and the write lock.
 */
export const MAX_APPEND_ENTRIES = 10_000;
/** Widest range `entries` serves (store.ts). */
export const MAX_ENTRY_RANGE = 1_000;
/** Largest `limit` of `checkpoints` (store.ts). */
export const MAX_CHECKPOINT_LIMIT = 1_000;
/** Most nodes one `nodes` call reads: a few proofs' worth is ~200; tiles need 256 each. */
export const MAX_NODE_REFS = 4_096;
/** Longest signed note, in UTF-16 units: a note with a handful of cosignatures is < 2 KiB. */
export const MAX_NOTE_LENGTH = 65_536;
/** Deepest node of a tree of at most 2^53 leaves (log/merkle.ts). */
const MAX_NODE_LEVEL = 53;

function isLogIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Numbers in messages, whatever a caller passed. */
export function describeNumber(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : `(${typeof value})`;
}

/** A log index, size or bound argument: a safe integer ≥ 0; TypeError otherwise. */
export function requireLogIndex(field: string, value: unknown): number {
  if (!isLogIndex(value)) throw new TypeError(`${field} must be a safe integer >= 0, got ${describeNumber(value)}`);
  return value;
}

function asBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/**
 * The entries of one append, checked and copied into frozen records (a caller changing
 * its objects later changes nothing; the leaf bytes are used as given, within the same
 * synchronous step that hashes and writes them). Whether each linkedIndex names an
 * earlier entry depends on where the batch lands: see `requireLinksBefore`.
 */
export function requireLogEntryInputs(value: unknown): readonly LogEntryInput[] {
  if (!Array.isArray(value)) throw new TypeError('log entries must be an array');
  const items = value as readonly unknown[];
  if (items.length > MAX_APPEND_ENTRIES) {
    throw new TypeError(`at most ${MAX_APPEND_ENTRIES} log entries per append, got ${items.length}`);
  }
  const entries: LogEntryInput[] = [];
  for (let position = 0; position < items.length; position += 1) {
    const item = items[position];
    if (typeof item !== 'object' || item === null) throw new TypeError(`log entry ${position} is not an object`);
    const { kind, leaf, integratedTime, linkedIndex } = item as Record<string, unknown>;
    const problems: string[] = [];
    if (typeof kind !== 'string' || !LOG_KIND.test(kind)) problems.push('kind');
    const leafOk = leaf instanceof Uint8Array && leaf.byteLength >= 1 && leaf.byteLength <= MAX_LEAF_BYTES;
    if (!leafOk) problems.push('leaf');
    if (!isLogIndex(integratedTime)) problems.push('integratedTime');
    if (linkedIndex !== null && !isLogIndex(linkedIndex)) problems.push('linkedIndex');
    if (problems.length > 0) throw new TypeError(`invalid log entry ${position}: bad ${problems.join(', ')}`);
    entries.push(
      Object.freeze({
        kind: kind as string,
        leaf: asBuffer(leaf as Uint8Array),
        integratedTime: integratedTime as number,
        linkedIndex: linkedIndex as number | null,
      }),
    );
  }
  return Object.freeze(entries);
}

/** TypeError unless every linkedIndex names an entry before its own, once the batch starts at `firstIndex`. */
export function requireLinksBefore(entries: readonly LogEntryInput[], firstIndex: number): void {
  entries.forEach((entry, position) => {
    const index = firstIndex + position;
    if (entry.linkedIndex !== null && entry.linkedIndex >= index) {
      throw new TypeError(
        `invalid log entry ${position}: linkedIndex ${entry.linkedIndex} is not an earlier entry (it would be ${index})`,
      );
    }
  });
}

/** [start, end) of `entries`: 0 ≤ start ≤ end, at most MAX_ENTRY_RANGE wide. */
export function requireEntryRange(start: unknown, end: unknown): { start: number; end: number } {
  const from = requireLogIndex('start', start);
  const to = requireLogIndex('end', end);
  if (to < from) throw new TypeError(`end (${to}) must not be before start (${from})`);
  if (to - from > MAX_ENTRY_RANGE) throw new TypeError(`at most ${MAX_ENTRY_RANGE} entries per read, asked for ${to - from}`);
  return { start: from, end: to };
}

/** A leaf hash argument: exactly HASH_SIZE bytes. */
export function requireLeafHashArgument(value: unknown): Buffer {
  if (!(value instanceof Uint8Array) || value.byteLength !== HASH_SIZE) {
    throw new TypeError(`leafHash must be ${HASH_SIZE} bytes`);
  }
  return asBuffer(value);
}

/** The node refs of one `nodes` call: valid nodes of a tree of at most 2^53 leaves, each once, in first-use order. */
export function requireNodeRefs(value: unknown): readonly NodeRef[] {
  if (!Array.isArray(value)) throw new TypeError('node refs must be an array');
  const items = value as readonly unknown[];
  if (items.length > MAX_NODE_REFS) throw new TypeError(`at most ${MAX_NODE_REFS} nodes per read, got ${items.length}`);
  const unique = new Map<string, NodeRef>();
  for (let position = 0; position < items.length; position += 1) {
    const item = items[position];
    const { level, index } = (typeof item === 'object' && item !== null ? item : {}) as Record<string, unknown>;
    const valid =
      typeof level === 'number' &&
      Number.isInteger(level) &&
      level >= 0 &&
      level <= MAX_NODE_LEVEL &&
      isLogIndex(index) &&
      (index + 1) * 2 ** level <= 2 ** MAX_NODE_LEVEL;
    if (!valid) throw new TypeError(`node ref ${position} is not a node of a tree of at most 2^53 leaves`);
    const ref = Object.freeze({ level, index });
    unique.set(nodeKey(ref), ref);
  }
  return Object.freeze([...unique.values()]);
}

function isNote(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_NOTE_LENGTH && isStorableText(value);
}

/** A checkpoint a caller wants to record, in canonical form; TypeError naming the bad fields. */
export function requireCheckpoint(candidate: unknown): CheckpointRecord {
  if (typeof candidate !== 'object' || candidate === null) throw new TypeError('invalid checkpoint: not an object');
  const { size, rootHash, note, createdAt } = candidate as Record<string, unknown>;
  const problems: string[] = [];
  if (!isLogIndex(size)) problems.push('size');
  const rootOk = rootHash instanceof Uint8Array && rootHash.byteLength === HASH_SIZE;
  if (!rootOk) problems.push('rootHash');
  if (!isNote(note)) problems.push('note');
  const created = canonicalTimestamp(createdAt);
  if (created === null) problems.push('createdAt');
  if (problems.length > 0) throw new TypeError(`invalid checkpoint: bad ${problems.join(', ')}`);
  return Object.freeze({
    size: size as number,
    // A copy: the record outlives the call, and the caller's bytes may change.
    rootHash: Buffer.from(rootHash as Uint8Array),
    note: note as string,
    createdAt: created as string,
  });
}

/** The arguments of `checkpoints`: afterSize ≥ -1 (so that size 0 can be included), 0 ≤ limit ≤ MAX_CHECKPOINT_LIMIT. */
export function requireCheckpointPage(afterSize: unknown, limit: unknown): { afterSize: number; limit: number } {
  if (typeof afterSize !== 'number' || !Number.isSafeInteger(afterSize) || afterSize < -1) {
    throw new TypeError(`afterSize must be a safe integer >= -1, got ${describeNumber(afterSize)}`);
  }
  if (!isLogIndex(limit) || limit > MAX_CHECKPOINT_LIMIT) {
    throw new TypeError(`limit must be an integer from 0 to ${MAX_CHECKPOINT_LIMIT}, got ${describeNumber(limit)}`);
  }
  return { afterSize, limit };
}

const DECIMAL_INTEGER = /^(?:0|[1-9][0-9]{0,15})$/;

/**
 * A stored non-negative integer → a number, or null when it is not one. 64-bit integers
 * arrive as numbers, as bigints when a driver is asked for them, or as decimal text
 * (node-postgres returns BIGINT that way).
 */
function storedIndex(value: unknown): number | null {
  const number =
    typeof value === 'bigint' && value <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(value)
      : typeof value === 'string' && DECIMAL_INTEGER.test(value)
        ? Number(value)
        : value;
  return isLogIndex(number) ? number : null;
}

/** A stored log size or index (e.g. max(idx)); STORE_CORRUPT unless it is a safe integer ≥ 0. */
export function logIndexFromRow(what: string, value: unknown): number {
  const index = storedIndex(value);
  if (index === null) throw new StoreError('STORE_CORRUPT', `the log has an invalid ${what}`);
  return index;
}

function isStoredHash(value: unknown): value is Buffer {
  return Buffer.isBuffer(value) && value.byteLength === HASH_SIZE;
}

/**
 * A `log_entries` row → its record; STORE_CORRUPT if it does not describe a valid entry.
 * The leaf hash is recomputed from the leaf and must match the stored one: a leaf
 * changed in place would otherwise be served under a proof for the original.
 */
export function logEntryFromRow(row: unknown): LogEntryRecord {
  const r = rowRecord('log_entries', row);
  const problems: string[] = [];
  const index = storedIndex(r.idx);
  if (index === null) problems.push('idx');
  const { kind, leaf, leaf_hash: storedLeafHash } = r;
  if (typeof kind !== 'string' || !LOG_KIND.test(kind)) problems.push('kind');
  const leafOk = Buffer.isBuffer(leaf) && leaf.byteLength >= 1 && leaf.byteLength <= MAX_LEAF_BYTES;
  if (!leafOk) problems.push('leaf');
  if (!isStoredHash(storedLeafHash)) problems.push('leaf_hash');
  else if (leafOk && !leafHash(leaf).equals(storedLeafHash)) problems.push('leaf_hash (not the hash of leaf)');
  const integratedTime = storedIndex(r.integrated_time);
  if (integratedTime === null) problems.push('integrated_time');
  const linkedIndex = r.linked_idx === null ? null : storedIndex(r.linked_idx);
  if (r.linked_idx !== null && (linkedIndex === null || (index !== null && linkedIndex >= index))) {
    problems.push('linked_idx');
  }
  if (problems.length > 0) {
    const which = index === null ? 'a stored log entry' : `stored log entry ${index}`;
    throw new StoreError('STORE_CORRUPT', `${which} has invalid ${problems.join(', ')}`);
  }
  return Object.freeze({
    index: index as number,
    kind: kind as string,
    leaf: leaf as Buffer,
    leafHash: storedLeafHash as Buffer,
    integratedTime: integratedTime as number,
    linkedIndex,
  });
}

/** A stored node hash; STORE_CORRUPT unless it is HASH_SIZE bytes. */
export function logNodeHashFromRow(ref: NodeRef, value: unknown): Buffer {
  if (!isStoredHash(value)) throw new StoreError('STORE_CORRUPT', `stored log node ${nodeKey(ref)} is not a ${HASH_SIZE}-byte hash`);
  return value;
}

/** A `log_checkpoints` row → its record; STORE_CORRUPT if it does not describe a valid checkpoint. */
export function checkpointFromRow(row: unknown): CheckpointRecord {
  const r = rowRecord('log_checkpoints', row);
  const problems: string[] = [];
  const size = storedIndex(r.size);
  if (size === null) problems.push('size');
  const { root_hash: rootHash, note, created_at: createdAt } = r;
  if (!isStoredHash(rootHash)) problems.push('root_hash');
  if (!isNote(note)) problems.push('note');
  if (typeof createdAt !== 'string' || canonicalTimestamp(createdAt) !== createdAt) problems.push('created_at');
  if (problems.length > 0) {
    const which = size === null ? 'a stored checkpoint' : `stored checkpoint ${size}`;
    throw new StoreError('STORE_CORRUPT', `${which} has invalid ${problems.join(', ')}`);
  }
  return Object.freeze({
    size: size as number,
    rootHash: rootHash as Buffer,
    note: note as string,
    createdAt: createdAt as string,
  });
}
