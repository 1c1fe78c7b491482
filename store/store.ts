/**
 * The storage interface. Two real implementations sit behind it: SQLite
 * (store/sqlite/, the embedded default) and, later, PostgreSQL for several replicas.
 * Every method is async so both fit; anything that must change several rows
 * atomically goes through `transaction`.
 */
import type { KeyAlgorithm } from '../signer/algorithms.js';

export const KEY_STATES = ['pending', 'active', 'verify-only', 'retired', 'compromised'] as const;
export type KeyState = (typeof KEY_STATES)[number];

/** One version of a named signing key. `keyId` is `<name>@<version>`. */
export interface KeyVersionRecord {
  readonly keyId: string;
  readonly name: string;
  readonly version: number;
  readonly algorithm: KeyAlgorithm;
  readonly state: KeyState;
  /** Hex CKA_ID of the key pair in the HSM. Not secret, but never sent to clients. */
  readonly hsmKeyId: string;
  readonly publicKeyPem: string;
  /** ISO-8601 UTC timestamps. */
  readonly createdAt: string;
  readonly notBefore: string;
  readonly notAfter: string | null;
  /** Set only for `compromised`: signatures logged after this instant are invalid. */
  readonly compromisedAt: string | null;
}

export interface KeyRepository {
  list(): Promise<KeyVersionRecord[]>;
  get(keyId: string): Promise<KeyVersionRecord | null>;
  listVersions(name: string): Promise<KeyVersionRecord[]>;
  /** The single `active` version of a key name, or null. */
  getActive(name: string): Promise<KeyVersionRecord | null>;
  /** Fails with STORE_CONFLICT if the keyId exists, or if it is `active` and another active version of the name exists. */
  insert(record: KeyVersionRecord): Promise<void>;
  /** Fails with STORE_NOT_FOUND for an unknown keyId. */
  updateState(keyId: string, state: KeyState, at: string): Promise<void>;
}

/**
 * Single use of OIDC tokens (DESIGN.md, signing path step 2): a token's `jti` serves one
 * request, and an identical retry of that request gets the original answer back. The
 * row lives until the token has expired (plus leeway), then may be purged.
 */
export interface TokenUseRecord {
  readonly issuer: string;
  readonly tokenId: string;
  /** Hex SHA-256 of the canonical request the token was first used for. */
  readonly requestHash: string;
  /** `pending` while the first request is being served; `done` once its answer is stored. */
  readonly state: 'pending' | 'done';
  /** The answer (JSON text) once `done`. */
  readonly response: string | null;
  readonly createdAt: string;
  readonly expiresAt: string;
}

export type TokenClaimOutcome =
  /** This call recorded the first use: the caller serves the request. */
  | { readonly kind: 'claimed' }
  /** The token was used before (or is being used now); `record` says for what. */
  | { readonly kind: 'used'; readonly record: TokenUseRecord };

export interface TokenUseRepository {
  /**
   * Atomically records the first use of (issuer, tokenId) for `requestHash`, or returns
   * the existing record without changing it. Two concurrent claims of one token, in this
   * process or another sharing the database, never both get `claimed`.
   */
  claim(use: { issuer: string; tokenId: string; requestHash: string; createdAt: string; expiresAt: string }): Promise<TokenClaimOutcome>;
  /** Stores the answer of a pending use (state → done). STORE_NOT_FOUND if there is no such pending use. */
  complete(issuer: string, tokenId: string, requestHash: string, response: string): Promise<void>;
  /**
   * Deletes a pending use whose request failed before anything was signed, so that
   * the same request may be retried with the same token. Never deletes a `done` use.
   */
  release(issuer: string, tokenId: string, requestHash: string): Promise<void>;
  get(issuer: string, tokenId: string): Promise<TokenUseRecord | null>;
  /** Deletes uses whose token expired before `now`; returns how many. */
  purgeExpired(now: string): Promise<number>;
  /**
   * Deletes `pending` uses created before `createdBefore`: their request died with its
   * process (a crash), so nothing of theirs left the service, and an identical retry
   * may now be served instead of waiting for an answer that will never come.
   */
  releaseAbandoned(createdBefore: string): Promise<number>;
}

/** One counter to add 1 to, if it stays within its limit. */
export interface CounterIncrement {
  /** e.g. `rate:project:example`, `usage:key:demo-release@1`. */
  readonly counter: string;
  /** The window the count belongs to: a minute (`2026-11-27T10:01`) for rates, `total` for usage limits. */
  readonly window: string;
  readonly limit: number;
}

export type CounterOutcome =
  | { readonly allowed: true }
  /** Nothing was added: these counters would have gone over their limits. */
  | { readonly allowed: false; readonly exceeded: readonly string[] };

/** Rate and usage counters, shared by every replica on one database. */
export interface CounterRepository {
  /** All or nothing: adds 1 to every counter only if none would exceed its limit. */
  consume(increments: readonly CounterIncrement[]): Promise<CounterOutcome>;
  /** Current count of one counter window (0 when absent). */
  current(counter: string, window: string): Promise<number>;
  /** Deletes rate windows (not `total`) older than `window` (lexical order of minute windows); returns how many. */
  purgeWindowsBefore(window: string): Promise<number>;
}

/** A perfect Merkle subtree: leaves [index·2^level, (index+1)·2^level) (log/merkle.ts). */
export interface LogNodeRef {
  readonly level: number;
  readonly index: number;
}

export interface LogEntryInput {
  /** Entry kind, e.g. `signet.decision/v1` or `hashedrekord/0.0.1`. */
  readonly kind: string;
  /** The exact leaf bytes (canonical JSON). */
  readonly leaf: Buffer;
  /** Seconds since the epoch at which the log integrated the entry. */
  readonly integratedTime: number;
  /** Index of a related earlier entry (a signature's decision), or null. */
  readonly linkedIndex: number | null;
}

export interface LogEntryRecord extends LogEntryInput {
  readonly index: number;
  /** SHA-256(0x00 ‖ leaf) (RFC 9162 §2.1.1). */
  readonly leafHash: Buffer;
}

export interface CheckpointRecord {
  readonly size: number;
  readonly rootHash: Buffer;
  /** The whole signed note (C2SP signed-note text). */
  readonly note: string;
  readonly createdAt: string;
}

/**
 * The transparency log's storage: entries with contiguous indexes from 0, the hashes of
 * every perfect Merkle subtree (so roots and proofs need O(log n) node reads, never a
 * pass over all leaves), and the signed checkpoints.
 */
export interface LogRepository {
  /**
   * Appends `entries` at the end of the log, in order, with every Merkle node they
   * complete, atomically (all or none). Returns the index of the first and the new size.
   */
  append(entries: readonly LogEntryInput[]): Promise<{ readonly firstIndex: number; readonly size: number }>;
  size(): Promise<number>;
  entry(index: number): Promise<LogEntryRecord | null>;
  /** Entries [start, end), at most 1000. */
  entries(start: number, end: number): Promise<LogEntryRecord[]>;
  indexOfLeafHash(leafHash: Buffer): Promise<number | null>;
  /** The stored hashes of these nodes, keyed by `${level}:${index}`; STORE_NOT_FOUND if one is missing. */
  nodes(refs: readonly LogNodeRef[]): Promise<Map<string, Buffer>>;
  /**
   * Records a signed checkpoint. STORE_CONFLICT if one of the same size has another
   * root, or if its size is smaller than the latest (checkpoints never go back).
   * Recording the same checkpoint again is a no-op.
   */
  addCheckpoint(checkpoint: CheckpointRecord): Promise<void>;
  latestCheckpoint(): Promise<CheckpointRecord | null>;
  checkpoint(size: number): Promise<CheckpointRecord | null>;
  /** Checkpoints with size > afterSize, oldest first, at most `limit` (≤ 1000). */
  checkpoints(afterSize: number, limit: number): Promise<CheckpointRecord[]>;
}

export interface StoreTransaction {
  readonly keys: KeyRepository;
  readonly tokenUses: TokenUseRepository;
  readonly counters: CounterRepository;
  readonly log: LogRepository;
}

export interface SignetStore extends StoreTransaction {
  /** Which backend this is, for logs and metrics. */
  readonly kind: 'sqlite' | 'postgres';
  /** Applies pending migrations in order; idempotent. */
  migrate(): Promise<void>;
  /** Schema version after migration (the highest applied migration). */
  schemaVersion(): Promise<number>;
  /** Runs `work` atomically: all of its writes commit together or none do. */
  transaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T>;
  /** Proves the store can durably write right now (used by /readyz). Throws StoreError. */
  checkWritable(): Promise<void>;
  close(): Promise<void>;
}
