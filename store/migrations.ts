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
    postgres: `
CREATE TABLE schema_migrations (
  version    INTEGER NOT NULL PRIMARY KEY,
  name       TEXT    NOT NULL,
  applied_at TEXT    NOT NULL
);

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
]);

/** The schema version this code produces: the last migration's. */
export const LATEST_SCHEMA_VERSION: number = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);
