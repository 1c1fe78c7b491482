/**
 * The schema, as an ordered list of migrations shared by every backend.
 *
 * Each migration carries the SQL for SQLite and for PostgreSQL side by side so the two
 * schemas cannot drift. A migration that has been released is never edited: a change is
 * a new entry with the next version. The runner records each applied migration in
 * `schema_migrations` (created by migration 1) inside the same transaction as its SQL.
 *
 * Timestamps are ISO-8601 UTC text in both dialects, so one row validator serves both
 * backends. The CHECK lists spell out the fixed algorithm and state names
 * (DESIGN.md, "Fixed values"); adding a name takes a new migration.
 */

export interface Migration {
  /** 1, 2, 3, … without gaps. */
  readonly version: number;
  /** Short, stable description; recorded with the version and compared on every start. */
  readonly name: string;
  readonly sqlite: string;
  readonly postgres: string;
}

export const MIGRATIONS: readonly Migration[] = Object.freeze([
  Object.freeze({
    version: 1,
    name: 'key versions and health probe',
    // STRICT tables make SQLite enforce the declared column types instead of storing
    // whatever it is given. TEXT primary keys are NOT NULL explicitly: SQLite
    // otherwise allows NULL in them.
    sqlite: `
CREATE TABLE schema_migrations (
  version    INTEGER NOT NULL PRIMARY KEY,
  name       TEXT    NOT NULL,
  applied_at TEXT    NOT NULL
) STRICT;

CREATE TABLE key_versions (
  key_id           TEXT    NOT NULL PRIMARY KEY,
  name             TEXT    NOT NULL,
  version          INTEGER NOT NULL CHECK (version >= 1),
  algorithm        TEXT    NOT NULL
    CHECK (algorithm IN ('ecdsa-p256', 'ecdsa-p384', 'ed25519', 'rsa-pss-3072', 'rsa-pss-4096')),
  state            TEXT    NOT NULL
    CHECK (state IN ('pending', 'active', 'verify-only', 'retired', 'compromised')),
  hsm_key_id       TEXT    NOT NULL,
  public_key_pem   TEXT    NOT NULL,
  created_at       TEXT    NOT NULL,
  not_before       TEXT    NOT NULL,
  not_after        TEXT,
  compromised_at   TEXT,
  state_changed_at TEXT    NOT NULL,
  UNIQUE (name, version)
) STRICT;

-- Exactly one active version per key name, enforced by the database itself so that
-- no code path (or second process) can leave two versions signing at once.
CREATE UNIQUE INDEX key_versions_one_active_per_name ON key_versions (name) WHERE state = 'active';

CREATE TABLE health_probe (
  id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
  written_at TEXT    NOT NULL
) STRICT;
`,
    // PostgreSQL: no migration had been released on PostgreSQL when its backend was
    // first shipped, so the PostgreSQL text of migrations 1–3 was corrected in place
    // then: here, `name` is COLLATE "C" so that listing keys by name gives SQLite's byte
    // order whatever collation the database was created with, and `version` is BIGINT
    // because SQLite's INTEGER is 64-bit. From now on they are released: never edit.
    postgres: `
CREATE TABLE schema_migrations (
  version    INTEGER NOT NULL PRIMARY KEY,
  name       TEXT    NOT NULL,
  applied_at TEXT    NOT NULL
);

CREATE TABLE key_versions (
  key_id           TEXT    NOT NULL PRIMARY KEY,
  name             TEXT COLLATE "C" NOT NULL,
  version          BIGINT  NOT NULL CHECK (version >= 1),
  algorithm        TEXT    NOT NULL
    CHECK (algorithm IN ('ecdsa-p256', 'ecdsa-p384', 'ed25519', 'rsa-pss-3072', 'rsa-pss-4096')),
  state            TEXT    NOT NULL
    CHECK (state IN ('pending', 'active', 'verify-only', 'retired', 'compromised')),
  hsm_key_id       TEXT    NOT NULL,
  public_key_pem   TEXT    NOT NULL,
  created_at       TEXT    NOT NULL,
  not_before       TEXT    NOT NULL,
  not_after        TEXT,
  compromised_at   TEXT,
  state_changed_at TEXT    NOT NULL,
  UNIQUE (name, version)
);

CREATE UNIQUE INDEX key_versions_one_active_per_name ON key_versions (name) WHERE state = 'active';

CREATE TABLE health_probe (
  id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
  written_at TEXT    NOT NULL
);
`,
  }),
  Object.freeze({
    version: 2,
    name: 'token uses and counters',
    // token_uses: one row per OIDC token (issuer, jti); the primary key is what makes a
    // second claim of a token fail, in every process sharing the database. The answer
    // is stored exactly when the use is done, so a retry can never be handed an empty
    // answer for a finished request. expires_at is indexed for the periodic purge.
    //
    // counters: one row per counter and window; the CHECK keeps a count from going
    // negative whatever writes it. `window` is a reserved word in PostgreSQL, so it is
    // quoted in both dialects (and in every statement that names it).
    sqlite: `
CREATE TABLE token_uses (
  issuer       TEXT NOT NULL,
  token_id     TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  state        TEXT NOT NULL,
  response     TEXT,
  created_at   TEXT NOT NULL,
  expires_at   TEXT NOT NULL,
  PRIMARY KEY (issuer, token_id),
  CONSTRAINT token_uses_state CHECK (state IN ('pending', 'done')),
  CONSTRAINT token_uses_response_when_done
    CHECK ((state = 'pending' AND response IS NULL) OR (state = 'done' AND response IS NOT NULL))
) STRICT;

CREATE INDEX token_uses_expires_at ON token_uses (expires_at);

CREATE TABLE counters (
  counter  TEXT    NOT NULL,
  "window" TEXT    NOT NULL,
  count    INTEGER NOT NULL CHECK (count >= 0),
  PRIMARY KEY (counter, "window")
) STRICT;
`,
    // BIGINT: SQLite's INTEGER is 64-bit, PostgreSQL's only 32-bit. COLLATE "C" on the
    // columns compared with < (purges): text order must be byte order, as in SQLite,
    // whatever collation the database was created with.
    postgres: `
CREATE TABLE token_uses (
  issuer       TEXT NOT NULL,
  token_id     TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  state        TEXT NOT NULL,
  response     TEXT,
  created_at   TEXT COLLATE "C" NOT NULL,
  expires_at   TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (issuer, token_id),
  CONSTRAINT token_uses_state CHECK (state IN ('pending', 'done')),
  CONSTRAINT token_uses_response_when_done
    CHECK ((state = 'pending' AND response IS NULL) OR (state = 'done' AND response IS NOT NULL))
);

CREATE INDEX token_uses_expires_at ON token_uses (expires_at);

CREATE TABLE counters (
  counter  TEXT             NOT NULL,
  "window" TEXT COLLATE "C" NOT NULL,
  count    BIGINT           NOT NULL CHECK (count >= 0),
  PRIMARY KEY (counter, "window")
);
`,
  }),
  Object.freeze({
    version: 3,
    name: 'transparency log',
    // log_entries: one row per leaf, idx contiguous from 0 (the store appends at
    // max(idx) + 1 under the write lock). leaf_hash is derived from leaf and kept so a
    // leaf can be found by its hash. It is not unique, since nothing forbids two
    // identical leaves, and only its first 8 bytes are indexed: SHA-256 output is
    // uniformly spread, so 8 bytes select one row in practice, and an index less than
    // half the size keeps more of it cached; its random inserts are what bulk appends
    // spend most of their time on. Lookups compare the prefix through the index, then
    // the whole hash. A linked entry is always an earlier one.
    //
    // log_nodes: the hash of every perfect subtree (log/merkle.ts), written once its
    // leaves are all present and never changed. The primary key is the only access path,
    // so SQLite keeps the rows in it directly (WITHOUT ROWID).
    //
    // log_checkpoints: the signed notes, one per tree size.
    //
    // The CHECKs repeat the store's own validation (hash lengths, the kind alphabet), so
    // a write that bypasses the store still cannot plant a malformed row.
    sqlite: `
CREATE TABLE log_entries (
  idx             INTEGER NOT NULL PRIMARY KEY CHECK (idx >= 0),
  kind            TEXT    NOT NULL
    CHECK (length(kind) BETWEEN 1 AND 64 AND kind NOT GLOB '*[^a-z0-9./_-]*'),
  leaf            BLOB    NOT NULL CHECK (length(leaf) BETWEEN 1 AND 1048576),
  leaf_hash       BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
  integrated_time INTEGER NOT NULL CHECK (integrated_time >= 0),
  linked_idx      INTEGER REFERENCES log_entries (idx) CHECK (linked_idx >= 0 AND linked_idx < idx)
) STRICT;

CREATE INDEX log_entries_leaf_hash_prefix ON log_entries (substr(leaf_hash, 1, 8));

CREATE TABLE log_nodes (
  level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 53),
  idx   INTEGER NOT NULL CHECK (idx >= 0),
  hash  BLOB    NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

CREATE TABLE log_checkpoints (
  size       INTEGER NOT NULL PRIMARY KEY CHECK (size >= 0),
  root_hash  BLOB    NOT NULL CHECK (length(root_hash) = 32),
  note       TEXT    NOT NULL CHECK (length(note) > 0),
  created_at TEXT    NOT NULL
) STRICT;
`,
    // BYTEA for the blobs, BIGINT for indexes and sizes (SQLite's INTEGER is 64-bit).
    // kind is COLLATE "C" so that the regular expression's ranges mean ASCII letters and
    // digits whatever collation the database was created with.
    postgres: `
CREATE TABLE log_entries (
  idx             BIGINT NOT NULL PRIMARY KEY CHECK (idx >= 0),
  kind            TEXT COLLATE "C" NOT NULL CHECK (kind ~ '^[a-z0-9./_-]{1,64}$'),
  leaf            BYTEA  NOT NULL CHECK (octet_length(leaf) BETWEEN 1 AND 1048576),
  leaf_hash       BYTEA  NOT NULL CHECK (octet_length(leaf_hash) = 32),
  integrated_time BIGINT NOT NULL CHECK (integrated_time >= 0),
  linked_idx      BIGINT REFERENCES log_entries (idx) CHECK (linked_idx >= 0 AND linked_idx < idx)
);

CREATE INDEX log_entries_leaf_hash_prefix ON log_entries (substring(leaf_hash FROM 1 FOR 8));

CREATE TABLE log_nodes (
  level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 53),
  idx   BIGINT  NOT NULL CHECK (idx >= 0),
  hash  BYTEA   NOT NULL CHECK (octet_length(hash) = 32),
  PRIMARY KEY (level, idx)
);

CREATE TABLE log_checkpoints (
  size       BIGINT NOT NULL PRIMARY KEY CHECK (size >= 0),
  root_hash  BYTEA  NOT NULL CHECK (octet_length(root_hash) = 32),
  note       TEXT   NOT NULL CHECK (length(note) > 0),
  created_at TEXT   NOT NULL
);
`,
  }),
  Object.freeze({
    version: 4,
    name: 'code-signing certificates',
    // ca_certificates: the root and intermediate CAs whose keys are in the HSM. One
    // active CA per role, enforced by a partial unique index as for key versions; a root
    // has no issuer and an intermediate has one (a root is self-signed).
    //
    // leaf_certificates: one row per code-signing certificate of a key version (a key
    // gets a new one on renewal or after an intermediate rotation). Serial numbers are
    // 128 random bits, unique across every leaf.
    //
    // certificate_revocations: append-only; one row per revoked leaf, from which every
    // CRL is built. crls: every CRL signed, numbered per issuer (RFC 5280 §5.2.3); the
    // highest number is the one served.
    sqlite: `
CREATE TABLE ca_certificates (
  ca_id           TEXT NOT NULL PRIMARY KEY
    CHECK (length(ca_id) BETWEEN 1 AND 64 AND ca_id NOT GLOB '*[^a-z0-9-]*'),
  role            TEXT NOT NULL CHECK (role IN ('root', 'intermediate')),
  status          TEXT NOT NULL CHECK (status IN ('active', 'retired')),
  algorithm       TEXT NOT NULL CHECK (algorithm IN ('ecdsa-p256', 'ecdsa-p384')),
  hsm_key_id      TEXT NOT NULL,
  serial_number   TEXT NOT NULL UNIQUE,
  subject         TEXT NOT NULL,
  issuer_ca_id    TEXT REFERENCES ca_certificates (ca_id),
  certificate_pem TEXT NOT NULL,
  not_before      TEXT NOT NULL,
  not_after       TEXT NOT NULL,
  created_at      TEXT NOT NULL,
  CONSTRAINT ca_certificates_issuer CHECK ((role = 'root') = (issuer_ca_id IS NULL))
) STRICT;

CREATE UNIQUE INDEX ca_certificates_one_active_per_role ON ca_certificates (role) WHERE status = 'active';

CREATE TABLE leaf_certificates (
  serial_number   TEXT NOT NULL PRIMARY KEY,
  key_id          TEXT NOT NULL REFERENCES key_versions (key_id),
  issuer_ca_id    TEXT NOT NULL REFERENCES ca_certificates (ca_id),
  certificate_pem TEXT NOT NULL,
  not_before      TEXT NOT NULL,
  not_after       TEXT NOT NULL,
  created_at      TEXT NOT NULL
) STRICT;

CREATE INDEX leaf_certificates_key ON leaf_certificates (key_id, not_before);

CREATE TABLE certificate_revocations (
  serial_number TEXT NOT NULL PRIMARY KEY REFERENCES leaf_certificates (serial_number),
  issuer_ca_id  TEXT NOT NULL REFERENCES ca_certificates (ca_id),
  revoked_at    TEXT NOT NULL,
  reason        TEXT NOT NULL CHECK (reason IN
    ('unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn'))
) STRICT;

CREATE TABLE crls (
  issuer_ca_id TEXT    NOT NULL REFERENCES ca_certificates (ca_id),
  crl_number   INTEGER NOT NULL CHECK (crl_number >= 1),
  this_update  TEXT    NOT NULL,
  next_update  TEXT    NOT NULL,
  der          BLOB    NOT NULL CHECK (length(der) BETWEEN 1 AND 16777216),
  PRIMARY KEY (issuer_ca_id, crl_number)
) STRICT;
`,
    // COLLATE "C" on the text that is ordered or compared (ids, timestamps), as in
    // migration 2; BIGINT CRL numbers and BYTEA CRLs.
    postgres: `
CREATE TABLE ca_certificates (
  ca_id           TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (ca_id ~ '^[a-z0-9-]{1,64}$'),
  role            TEXT NOT NULL CHECK (role IN ('root', 'intermediate')),
  status          TEXT NOT NULL CHECK (status IN ('active', 'retired')),
  algorithm       TEXT NOT NULL CHECK (algorithm IN ('ecdsa-p256', 'ecdsa-p384')),
  hsm_key_id      TEXT NOT NULL,
  serial_number   TEXT NOT NULL UNIQUE,
  subject         TEXT NOT NULL,
  issuer_ca_id    TEXT COLLATE "C" REFERENCES ca_certificates (ca_id),
  certificate_pem TEXT NOT NULL,
  not_before      TEXT COLLATE "C" NOT NULL,
  not_after       TEXT COLLATE "C" NOT NULL,
  created_at      TEXT COLLATE "C" NOT NULL,
  CONSTRAINT ca_certificates_issuer CHECK ((role = 'root') = (issuer_ca_id IS NULL))
);

CREATE UNIQUE INDEX ca_certificates_one_active_per_role ON ca_certificates (role) WHERE status = 'active';

CREATE TABLE leaf_certificates (
  serial_number   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
  key_id          TEXT NOT NULL REFERENCES key_versions (key_id),
  issuer_ca_id    TEXT COLLATE "C" NOT NULL REFERENCES ca_certificates (ca_id),
  certificate_pem TEXT NOT NULL,
  not_before      TEXT COLLATE "C" NOT NULL,
  not_after       TEXT COLLATE "C" NOT NULL,
  created_at      TEXT COLLATE "C" NOT NULL
);

CREATE INDEX leaf_certificates_key ON leaf_certificates (key_id, not_before);

CREATE TABLE certificate_revocations (
  serial_number TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES leaf_certificates (serial_number),
  issuer_ca_id  TEXT COLLATE "C" NOT NULL REFERENCES ca_certificates (ca_id),
  revoked_at    TEXT COLLATE "C" NOT NULL,
  reason        TEXT NOT NULL CHECK (reason IN
    ('unspecified', 'keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn'))
);

CREATE TABLE crls (
  issuer_ca_id TEXT COLLATE "C" NOT NULL REFERENCES ca_certificates (ca_id),
  crl_number   BIGINT NOT NULL CHECK (crl_number >= 1),
  this_update  TEXT COLLATE "C" NOT NULL,
  next_update  TEXT COLLATE "C" NOT NULL,
  der          BYTEA  NOT NULL CHECK (octet_length(der) BETWEEN 1 AND 16777216),
  PRIMARY KEY (issuer_ca_id, crl_number)
);
`,
  }),  Object.freeze({
    version: 5,
    name: 'officers, proposals and freezes',
    // officers: the security officers (keyrotation/). The certificate fingerprint is what
    // identifies an officer on an mTLS connection, so it is unique; the TOTP secret is
    // stored only sealed by the HSM (signer/secret-sealing.ts). last_totp_step is moved
    // by compare-and-set with each approval (a code counts once, RFC 6238 §5.2); the
    // failure count and its window bound guessing of codes.
    //
    // proposals: `document` is the canonical JSON whose SHA-256 is `hash` (the content
    // officers approve); action, proposer and times are copies for listing only, the
    // document is what is read back. proposal_approvals: one per officer and proposal.
    //
    // signing_freezes: one row per frozen scope, '*' for everything (project names
    // cannot be '*'). revoked_client_certificates: officers' and CI clients' mTLS
    // certificates revoked by quorum, by SHA-256 of the DER. governance_settings: the
    // quorum policy (JSON, NULL for the defaults) and the last approved policy hash.
    sqlite: `
CREATE TABLE officers (
  name                     TEXT    NOT NULL PRIMARY KEY
    CHECK (length(name) BETWEEN 1 AND 63 AND name NOT GLOB '*[^a-z0-9._-]*'),
  certificate_sha256       TEXT    NOT NULL UNIQUE
    CHECK (length(certificate_sha256) = 64 AND certificate_sha256 NOT GLOB '*[^0-9a-f]*'),
  certificate_pem          TEXT,
  status                   TEXT    NOT NULL CHECK (status IN ('active', 'removed')),
  sealed_totp_secret       TEXT,
  last_totp_step           INTEGER CHECK (last_totp_step >= 0),
  failed_totp_count        INTEGER NOT NULL CHECK (failed_totp_count >= 0),
  failed_totp_window_start TEXT,
  added_at                 TEXT    NOT NULL,
  removed_at               TEXT,
  CONSTRAINT officers_removed_at CHECK ((status = 'removed') = (removed_at IS NOT NULL))
) STRICT;

CREATE TABLE proposals (
  id         TEXT NOT NULL PRIMARY KEY
    CHECK (length(id) BETWEEN 8 AND 64 AND id NOT GLOB '*[^A-Za-z0-9_-]*'),
  hash       TEXT NOT NULL CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
  document   TEXT NOT NULL CHECK (length(document) BETWEEN 1 AND 65536),
  action     TEXT NOT NULL CHECK (action IN ('rotate-key', 'retire-key', 'compromise-key', 'revoke-certificate',
    'add-officer', 'remove-officer', 'set-quorum', 'set-policy', 'freeze', 'unfreeze')),
  proposer   TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('open', 'executed', 'withdrawn')),
  closed_at  TEXT,
  CONSTRAINT proposals_closed_at CHECK ((status = 'open') = (closed_at IS NULL))
) STRICT;

CREATE INDEX proposals_by_status ON proposals (status, created_at);

CREATE TABLE proposal_approvals (
  proposal_id        TEXT    NOT NULL REFERENCES proposals (id),
  officer            TEXT    NOT NULL REFERENCES officers (name),
  certificate_sha256 TEXT    NOT NULL
    CHECK (length(certificate_sha256) = 64 AND certificate_sha256 NOT GLOB '*[^0-9a-f]*'),
  proposal_hash      TEXT    NOT NULL CHECK (length(proposal_hash) = 64 AND proposal_hash NOT GLOB '*[^0-9a-f]*'),
  totp_step          INTEGER NOT NULL CHECK (totp_step >= 0),
  approved_at        TEXT    NOT NULL,
  PRIMARY KEY (proposal_id, officer)
) STRICT;

CREATE TABLE signing_freezes (
  scope       TEXT NOT NULL PRIMARY KEY
    CHECK (scope = '*' OR (length(scope) BETWEEN 1 AND 63 AND scope NOT GLOB '*[^a-z0-9._-]*')),
  proposal_id TEXT NOT NULL REFERENCES proposals (id),
  frozen_by   TEXT NOT NULL,
  frozen_at   TEXT NOT NULL
) STRICT;

CREATE TABLE revoked_client_certificates (
  certificate_sha256 TEXT NOT NULL PRIMARY KEY
    CHECK (length(certificate_sha256) = 64 AND certificate_sha256 NOT GLOB '*[^0-9a-f]*'),
  proposal_id        TEXT NOT NULL REFERENCES proposals (id),
  revoked_at         TEXT NOT NULL
) STRICT;

CREATE TABLE governance_settings (
  id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
  quorum        TEXT CHECK (length(quorum) BETWEEN 2 AND 65536),
  policy_sha256 TEXT CHECK (length(policy_sha256) = 64 AND policy_sha256 NOT GLOB '*[^0-9a-f]*'),
  updated_at    TEXT NOT NULL
) STRICT;
`,
    // COLLATE "C" on what is ordered or matched by a regular expression, BIGINT for TOTP
    // steps and counts (SQLite's INTEGER is 64-bit), as in the earlier migrations.
    postgres: `
CREATE TABLE officers (
  name                     TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (name ~ '^[a-z0-9._-]{1,63}$'),
  certificate_sha256       TEXT COLLATE "C" NOT NULL UNIQUE CHECK (certificate_sha256 ~ '^[0-9a-f]{64}$'),
  certificate_pem          TEXT,
  status                   TEXT   NOT NULL CHECK (status IN ('active', 'removed')),
  sealed_totp_secret       TEXT,
  last_totp_step           BIGINT CHECK (last_totp_step >= 0),
  failed_totp_count        BIGINT NOT NULL CHECK (failed_totp_count >= 0),
  failed_totp_window_start TEXT COLLATE "C",
  added_at                 TEXT COLLATE "C" NOT NULL,
  removed_at               TEXT COLLATE "C",
  CONSTRAINT officers_removed_at CHECK ((status = 'removed') = (removed_at IS NOT NULL))
);

CREATE TABLE proposals (
  id         TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{8,64}$'),
  hash       TEXT COLLATE "C" NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
  document   TEXT NOT NULL CHECK (length(document) BETWEEN 1 AND 65536),
  action     TEXT NOT NULL CHECK (action IN ('rotate-key', 'retire-key', 'compromise-key', 'revoke-certificate',
    'add-officer', 'remove-officer', 'set-quorum', 'set-policy', 'freeze', 'unfreeze')),
  proposer   TEXT NOT NULL,
  created_at TEXT COLLATE "C" NOT NULL,
  expires_at TEXT COLLATE "C" NOT NULL,
  status     TEXT NOT NULL CHECK (status IN ('open', 'executed', 'withdrawn')),
  closed_at  TEXT COLLATE "C",
  CONSTRAINT proposals_closed_at CHECK ((status = 'open') = (closed_at IS NULL))
);

CREATE INDEX proposals_by_status ON proposals (status, created_at);

CREATE TABLE proposal_approvals (
  proposal_id        TEXT COLLATE "C" NOT NULL REFERENCES proposals (id),
  officer            TEXT COLLATE "C" NOT NULL REFERENCES officers (name),
  certificate_sha256 TEXT COLLATE "C" NOT NULL CHECK (certificate_sha256 ~ '^[0-9a-f]{64}$'),
  proposal_hash      TEXT COLLATE "C" NOT NULL CHECK (proposal_hash ~ '^[0-9a-f]{64}$'),
  totp_step          BIGINT NOT NULL CHECK (totp_step >= 0),
  approved_at        TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (proposal_id, officer)
);

CREATE TABLE signing_freezes (
  scope       TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (scope = '*' OR scope ~ '^[a-z0-9._-]{1,63}$'),
  proposal_id TEXT COLLATE "C" NOT NULL REFERENCES proposals (id),
  frozen_by   TEXT NOT NULL,
  frozen_at   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE revoked_client_certificates (
  certificate_sha256 TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (certificate_sha256 ~ '^[0-9a-f]{64}$'),
  proposal_id        TEXT COLLATE "C" NOT NULL REFERENCES proposals (id),
  revoked_at         TEXT COLLATE "C" NOT NULL
);

CREATE TABLE governance_settings (
  id            INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
  quorum        TEXT CHECK (length(quorum) BETWEEN 2 AND 65536),
  policy_sha256 TEXT CHECK (policy_sha256 ~ '^[0-9a-f]{64}$'),
  updated_at    TEXT NOT NULL
);
`,
  }),
  Object.freeze({
    version: 6,
    name: 'leases',
    // leases: one row per lease of once-per-cluster work (store.ts LeaseRepository).
    // Times are ISO-8601 UTC text like every other timestamp, written by the backend
    // from one clock (PostgreSQL's own, so replicas never compare their clocks);
    // fixed-width text, so text order is time order.
    sqlite: `
CREATE TABLE leases (
  name        TEXT NOT NULL PRIMARY KEY
    CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^a-z0-9._:-]*'),
  holder      TEXT NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
  acquired_at TEXT NOT NULL,
  expires_at  TEXT NOT NULL
) STRICT;
`,
    postgres: `
CREATE TABLE leases (
  name        TEXT COLLATE "C" NOT NULL PRIMARY KEY CHECK (name ~ '^[a-z0-9._:-]{1,64}$'),
  holder      TEXT NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
  acquired_at TEXT COLLATE "C" NOT NULL,
  expires_at  TEXT COLLATE "C" NOT NULL
);
`,
  }),
  Object.freeze({
    version: 7,
    name: 'log tables laid out for appends',
    // SQLite writes every page a commit changes to the WAL whole, and the signing path
    // commits a few entries at a time: what an append costs is mostly how many pages it
    // touches. Two layouts of migration 3 touched pages all over their B-trees; both now
    // grow at one end, so the entries of a commit share a page or two.
    //
    // - The leaf-hash prefix index is keyed by the entry's bucket of 256 first
    //   (idx >> 8), then by the prefix. Keyed by the prefix alone, each entry landed on
    //   a random page, a 4 KiB WAL frame per entry. A lookup by leaf hash now seeks once
    //   per bucket (sqlite-log.ts): O(n / 256) seeks, about 12 ms on a 1,000,000-entry
    //   log (BENCHMARKS.md), for what verifiers without an index ask now and then.
    // - log_nodes is keyed in the order nodes are completed: by leaf_end, the number of
    //   leaves at which the node's range is complete ((idx + 1) · 2^level), then level.
    //   Keyed (level, idx), an append wrote one page per level, at each level's end.
    //   (level, idx) stay, and the CHECK ties leaf_end to them.
    //
    // PostgreSQL keeps its layout: its WAL records a B-tree insert as a small record,
    // not the page, after the first change of a page since a checkpoint.
    sqlite: `
DROP INDEX log_entries_leaf_hash_prefix;
CREATE INDEX log_entries_leaf_hash_bucket ON log_entries (idx >> 8, substr(leaf_hash, 1, 8));

CREATE TABLE log_nodes_by_completion (
  leaf_end INTEGER NOT NULL CHECK (leaf_end = (idx + 1) << level),
  level    INTEGER NOT NULL CHECK (level BETWEEN 0 AND 53),
  idx      INTEGER NOT NULL CHECK (idx >= 0),
  hash     BLOB    NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (leaf_end, level)
) STRICT, WITHOUT ROWID;
INSERT INTO log_nodes_by_completion (leaf_end, level, idx, hash)
  SELECT (idx + 1) << level, level, idx, hash FROM log_nodes ORDER BY (idx + 1) << level, level;
DROP TABLE log_nodes;
ALTER TABLE log_nodes_by_completion RENAME TO log_nodes;
`,
    postgres: `
COMMENT ON TABLE log_nodes IS 'perfect Merkle subtrees (log/merkle.ts), keyed (level, idx)';
`,
  }),
  Object.freeze({
    version: 8,
    name: 'log nodes kept with the entry that completes them',
    // Every perfect subtree is complete exactly when its last leaf is appended: node
    // (level L, index i) by entry (i + 1) · 2^L − 1, and entry e completes the nodes of
    // levels 1 … (the trailing one bits of e), one each (level 0 is e's leaf hash). So
    // an entry's row can hold them, as `subtree_hashes`: their hashes, level 1 first,
    // 32 bytes each (NULL for an even e, which completes none). An append then writes
    // one row in one B-tree instead of also one log_nodes row per node in another:
    // about 10 µs less per entry, in statements and in WAL pages (BENCHMARKS.md).
    //
    // The hashes come from log_nodes (keyed by leaf_end = e + 1 since migration 7), in
    // level order. Levels must run from 1 without a gap, else the row gets one byte,
    // which its CHECK refuses: the migration fails and is rolled back rather than
    // shifting a hash to the wrong level. Level-0 rows duplicated leaf_hash and go.
    //
    // PostgreSQL keeps log_nodes: its WAL records a B-tree insert as a small record.
    sqlite: `
ALTER TABLE log_entries ADD COLUMN subtree_hashes BLOB
  CHECK (subtree_hashes IS NULL OR (length(subtree_hashes) % 32 = 0 AND length(subtree_hashes) BETWEEN 32 AND 1696));
UPDATE log_entries SET subtree_hashes = (
  SELECT CASE
           WHEN count(*) = 0 THEN NULL
           WHEN count(*) = max(level) THEN unhex(group_concat(hex(hash), '' ORDER BY level))
           ELSE X'00'
         END
    FROM log_nodes WHERE leaf_end = log_entries.idx + 1 AND level >= 1);
DROP TABLE log_nodes;
`,
    postgres: `
COMMENT ON TABLE log_entries IS 'transparency log entries (log/entries.ts); Merkle nodes are in log_nodes';
`,
  }),
]);

/** The schema version this code produces: the last migration's. */
export const LATEST_SCHEMA_VERSION: number = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);
