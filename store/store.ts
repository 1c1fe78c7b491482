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

export interface StoreTransaction {
  readonly keys: KeyRepository;
  readonly tokenUses: TokenUseRepository;
  readonly counters: CounterRepository;
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
