/**
 * The storage interface. Two real implementations sit behind it: SQLite
 * (store/sqlite/, the embedded default) and, later, PostgreSQL for several replicas.
 * Every method is async so both fit; anything that must change several rows
 * atomically goes through `transaction`.
 */
import type { FreezeMark } from '../keyrotation/freeze.js';
import type { ApprovalRecord, OfficerRecord, ProposalRecord, ProposalStatus, QuorumPolicy } from '../keyrotation/proposals.js';
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
  /**
   * Fails with STORE_NOT_FOUND for an unknown keyId. `window`, when given, is stored as
   * the version's validity window with the state (keyrotation/lifecycle.ts `transition`
   * computes both); without it the window is left as it is.
   */
  updateState(keyId: string, state: KeyState, at: string, window?: KeyValidityWindow): Promise<void>;
}

/** The period a key version was active (notAfter null while it still is); notAfter = notBefore: never active. */
export interface KeyValidityWindow {
  readonly notBefore: string;
  readonly notAfter: string | null;
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
  /**
   * A size known durable without reading: every entry below it is on stable storage.
   * A lower bound (entries appended by another process are not counted), 0 before this
   * process knows of any; optional, for stores that track it.
   */
  durableSize?(): number;
  /**
   * For stores that group-commit writes: resolves once the group commit in progress
   * (or, if none is, the one already scheduled) has settled, durable or failed;
   * undefined when there is none. It waits for that one group only, and never for a
   * call made later. A checkpoint round waits for it before it takes its size, so that
   * one signature covers those entries too. Optional.
   */
  commitInFlight?(): Promise<void> | undefined;
  entry(index: number): Promise<LogEntryRecord | null>;
  /** Entries [start, end), at most 1000. */
  entries(start: number, end: number): Promise<LogEntryRecord[]>;
  indexOfLeafHash(leafHash: Buffer): Promise<number | null>;
  /**
   * The stored hashes of these nodes, keyed by `${level}:${index}`; STORE_NOT_FOUND if one
   * is missing. Callers ask only for nodes of a tree whose size they know to be durable
   * (read from storage, or a signed checkpoint's): those never change, so a store may
   * read them without waiting for the writes in progress (SQLite does).
   */
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

/** The two levels of the code-signing CA hierarchy (ca/). */
export const CA_ROLES = ['root', 'intermediate'] as const;
export type CaRole = (typeof CA_ROLES)[number];

/** `active`: issues certificates (one per role). `retired`: still published, issues nothing. */
export const CA_STATUSES = ['active', 'retired'] as const;
export type CaStatus = (typeof CA_STATUSES)[number];

/** CRLReason names (RFC 5280 §5.3.1) a leaf may be revoked with. */
export const REVOCATION_REASONS = ['unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn'] as const;
export type RevocationReason = (typeof REVOCATION_REASONS)[number];

/** A CA certificate whose key pair is in the HSM. */
export interface CaCertificateRecord {
  /** `root-1`, `intermediate-2`, …: stable, appears in CRL URLs. */
  readonly caId: string;
  readonly role: CaRole;
  readonly status: CaStatus;
  readonly algorithm: KeyAlgorithm;
  /** Hex CKA_ID of the CA key pair. Never sent to clients. */
  readonly hsmKeyId: string;
  /** Lower-case hex, as in the certificate (no leading 00). */
  readonly serialNumber: string;
  readonly subject: string;
  /** The issuing CA; null for a root (self-signed). */
  readonly issuerCaId: string | null;
  readonly certificatePem: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly createdAt: string;
}

/** A code-signing certificate of one signing key version, issued by an intermediate. */
export interface LeafCertificateRecord {
  readonly serialNumber: string;
  readonly keyId: string;
  readonly issuerCaId: string;
  readonly certificatePem: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly createdAt: string;
}

export interface RevocationRecord {
  /** A leaf certificate's serial number. */
  readonly serialNumber: string;
  readonly issuerCaId: string;
  readonly revokedAt: string;
  readonly reason: RevocationReason;
}

/** A signed CRL (DER), numbered per issuer (RFC 5280 §5.2.3). */
export interface CrlRecord {
  readonly issuerCaId: string;
  readonly crlNumber: number;
  readonly thisUpdate: string;
  readonly nextUpdate: string;
  readonly der: Buffer;
}

/** The code-signing CA's certificates, revocations and CRLs. */
export interface CertificateRepository {
  /** Every CA certificate, oldest first. */
  listCas(): Promise<CaCertificateRecord[]>;
  /**
   * STORE_CONFLICT if the caId or serial exists, or if it is `active` and an active CA
   * of the same role exists; STORE_NOT_FOUND if `issuerCaId` names no CA.
   */
  insertCa(record: CaCertificateRecord): Promise<void>;
  /** active → retired (a retired CA stays published). STORE_NOT_FOUND for an unknown caId. */
  retireCa(caId: string): Promise<void>;
  /** Every leaf, by key id then notBefore. */
  listLeaves(): Promise<LeafCertificateRecord[]>;
  /** The leaves of one key version, oldest first. */
  leavesOfKey(keyId: string): Promise<LeafCertificateRecord[]>;
  getLeaf(serialNumber: string): Promise<LeafCertificateRecord | null>;
  /** STORE_CONFLICT for a serial in use; STORE_NOT_FOUND for an unknown key version or issuer. */
  insertLeaf(record: LeafCertificateRecord): Promise<void>;
  /** STORE_NOT_FOUND unless that issuer issued a leaf with that serial; STORE_CONFLICT if it is already revoked. */
  revoke(record: RevocationRecord): Promise<void>;
  /** Every revocation, oldest first. */
  listRevocations(): Promise<RevocationRecord[]>;
  /** STORE_CONFLICT unless `crlNumber` is greater than every earlier one of the issuer. */
  addCrl(record: CrlRecord): Promise<void>;
  latestCrl(issuerCaId: string): Promise<CrlRecord | null>;
}

/** An officer as storage holds it: the core record and what only the service needs. */
export interface StoredOfficer extends OfficerRecord {
  /** The officer's client certificate (officer CA), when known; the fingerprint is what identifies. */
  readonly certificatePem: string | null;
  /** Wrong TOTP codes counted in the current failure window (a bound on guessing). */
  readonly failedTotpCount: number;
  readonly failedTotpWindowStart: string | null;
}

/** An officer's or CI client's mTLS certificate revoked by an executed proposal. */
export interface RevokedCertificateRecord {
  /** Hex SHA-256 of the DER certificate. */
  readonly certificateSha256: string;
  readonly proposalId: string;
  readonly revokedAt: string;
}

/** A freeze of signing: `project` null freezes everything. */
export interface FreezeRecord extends FreezeMark {
  readonly project: string | null;
}

export interface GovernanceSettingsRecord {
  /** Null until a quorum change was executed: the defaults apply. */
  readonly quorum: QuorumPolicy | null;
  readonly policySha256: string | null;
}

/** A use of an officer's TOTP code, written with the approval it made. */
export interface TotpUse {
  readonly officer: string;
  readonly certificateSha256: string;
  /** The last step as read before checking the code: the compare of compare-and-set. */
  readonly expectedLastStep: number | null;
  readonly step: number;
}

/**
 * Officers, proposals, approvals, freezes, revoked client certificates and quorum
 * settings (keyrotation/). The rules live in the pure core (keyrotation/proposals.ts);
 * storage keeps what is needed across replicas: one approval per officer and proposal,
 * a TOTP step that only moves forward (compare-and-set), a proposal closed once.
 */
export interface GovernanceRepository {
  /** Every officer, by name. */
  listOfficers(): Promise<StoredOfficer[]>;
  getOfficer(name: string): Promise<StoredOfficer | null>;
  /** STORE_CONFLICT if the name or the certificate belongs to an officer already (names are never reused). */
  insertOfficer(officer: StoredOfficer): Promise<void>;
  /** active → removed. STORE_NOT_FOUND unless an active officer has that name. */
  removeOfficer(name: string, at: string): Promise<void>;
  /** First enrolment only: STORE_NOT_FOUND for no active officer, STORE_CONFLICT if one is set. */
  setTotpSecret(name: string, sealed: string): Promise<void>;
  /**
   * Moves the officer's last TOTP step from `expectedLastStep` to `step` (later) and
   * clears the failure count, only if the officer is still active with that certificate
   * and nobody moved the step meanwhile; STORE_CONFLICT otherwise.
   */
  recordTotpUse(use: TotpUse): Promise<void>;
  /**
   * Counts one wrong code: a new window starting at `at` when the current one started
   * before `windowStartsAfter` (or there is none), else one more in it. Returns the
   * count and start of the window. STORE_NOT_FOUND for an unknown officer.
   */
  recordTotpFailure(officer: string, at: string, windowStartsAfter: string): Promise<{ count: number; windowStart: string }>;
  /** Oldest first. */
  listRevokedCertificates(): Promise<RevokedCertificateRecord[]>;
  /** STORE_CONFLICT if already revoked. */
  revokeCertificate(record: RevokedCertificateRecord): Promise<void>;
  settings(): Promise<GovernanceSettingsRecord>;
  setQuorum(quorum: QuorumPolicy, at: string): Promise<void>;
  setPolicySha256(sha256: string, at: string): Promise<void>;
  /** Global first, then projects by name. */
  listFreezes(): Promise<FreezeRecord[]>;
  /** A scope already frozen keeps its first mark (no-op). */
  setFreeze(freeze: FreezeRecord): Promise<void>;
  /** STORE_NOT_FOUND if that exact scope is not frozen. */
  clearFreeze(project: string | null): Promise<void>;
  /** An open proposal without approvals. STORE_CONFLICT if the id exists. */
  insertProposal(proposal: ProposalRecord): Promise<void>;
  /** With its approvals, in approval order. */
  getProposal(id: string): Promise<ProposalRecord | null>;
  /** Newest first, at most `limit` (≤ 1000, default 100). */
  listProposals(filter?: { readonly status?: ProposalStatus; readonly limit?: number }): Promise<ProposalRecord[]>;
  /** STORE_NOT_FOUND for an unknown proposal or officer; STORE_CONFLICT if the proposal is closed or this officer approved it. */
  addApproval(proposalId: string, approval: ApprovalRecord): Promise<void>;
  /** open → executed or withdrawn, once: STORE_CONFLICT unless open, STORE_NOT_FOUND if unknown. */
  closeProposal(id: string, status: 'executed' | 'withdrawn', at: string): Promise<void>;
}

/** A lease as storage holds it (timestamps ISO-8601 UTC, from the database's clock). */
export interface LeaseRecord {
  readonly name: string;
  readonly holder: string;
  /** When this holder took it (renewals keep it). */
  readonly acquiredAt: string;
  readonly expiresAt: string;
}

/**
 * Named leases: periodic work runs once per cluster, not once per replica (DESIGN.md).
 * A replica that holds a duty's lease runs it and renews the lease each round; the
 * others skip the duty until the lease expires (its holder died or stopped renewing) or
 * is released. Expiry is judged by one clock: PostgreSQL's (shared by every replica),
 * or, for SQLite, the one machine's.
 */
export interface LeaseRepository {
  /**
   * Takes `name` for `holder` until `ttlMs` from now if it is free, expired or held by
   * `holder` already (a renewal), atomically across processes and replicas; true if
   * `holder` holds it afterwards. Never waits for another holder.
   */
  tryAcquire(name: string, holder: string, ttlMs: number): Promise<boolean>;
  /** Gives `name` up if `holder` holds it (another may take it at once); true if it did. */
  release(name: string, holder: string): Promise<boolean>;
  /** The lease's last holder, even if expired; null if nobody took it or it was released. */
  get(name: string): Promise<LeaseRecord | null>;
}

export interface StoreTransaction {
  readonly keys: KeyRepository;
  readonly tokenUses: TokenUseRepository;
  readonly counters: CounterRepository;
  readonly log: LogRepository;
  readonly certificates: CertificateRepository;
  readonly governance: GovernanceRepository;
}

export interface TransactionOptions {
  /**
   * A promise by the caller that `work` may share its database transaction: it acts
   * only through its handle (nothing outside storage, no reads of state it keeps
   * elsewhere), and it is correct whatever other such transactions begun at the same
   * time do alongside it, in any interleaving of their calls (the signing path's:
   * single-use claims, consumes and appends, which commute or are decided by the
   * database). A backend may then run such transactions at the same time in one
   * database transaction, and, if any of them fails, roll them all back and run each
   * again from the start, alone: `work` may run more than once; only its last run's
   * result counts and only its writes commit. Default false. PostgreSQL uses it (one
   * round trip for the whole group's calls instead of one per transaction); SQLite,
   * whose transactions never wait for the network, ignores it.
   */
  readonly concurrent?: boolean;
}

export interface SignetStore extends StoreTransaction {
  /** Which backend this is, for logs and metrics. */
  readonly kind: 'sqlite' | 'postgres';
  /** Leases for once-per-cluster work; used outside transactions only. */
  readonly leases: LeaseRepository;
  /** Applies pending migrations in order; idempotent. */
  migrate(): Promise<void>;
  /** Schema version after migration (the highest applied migration). */
  schemaVersion(): Promise<number>;
  /** Runs `work` atomically: all of its writes commit together or none do. */
  transaction<T>(work: (tx: StoreTransaction) => Promise<T>, options?: TransactionOptions): Promise<T>;
  /** Proves the store can durably write right now (used by /readyz). Throws StoreError. */
  checkWritable(): Promise<void>;
  close(): Promise<void>;
}
