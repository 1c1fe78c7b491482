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

export interface StoreTransaction {
  readonly keys: KeyRepository;
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
