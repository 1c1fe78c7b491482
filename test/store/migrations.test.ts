/**
 * The migration list as data: ordered, complete, and in step with the fixed algorithm
 * and state names; and the runner: idempotent, recorded, atomic per migration, and
 * refusing schema histories it does not recognise.
 */
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KEY_ALGORITHMS } from '../../signer/algorithms.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../store/migrations.js';
import { openStore } from '../../store/open-store.js';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import { KEY_STATES, type KeyVersionRecord } from '../../store/store.js';
import { keyVersion, makeTempDir, withRawDatabase } from './sqlite-fixtures.js';

const HASH = 'ab'.repeat(32);

/**
 * A database as a release with only migration 1 left it: that migration's own SQL, its
 * record, and key rows written the way that release wrote them.
 */
function createVersion1Database(path: string, keys: readonly KeyVersionRecord[]): void {
  const first = MIGRATIONS[0]!;
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.exec(first.sqlite);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
      first.version,
      first.name,
      '2025-01-01T00:00:00.000Z',
    );
    const insert = db.prepare(
      `INSERT INTO key_versions (key_id, name, version, algorithm, state, hsm_key_id, public_key_pem, created_at,
         not_before, not_after, compromised_at, state_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    for (const k of keys) {
      insert.run(
        k.keyId,
        k.name,
        k.version,
        k.algorithm,
        k.state,
        k.hsmKeyId,
        k.publicKeyPem,
        k.createdAt,
        k.notBefore,
        k.notAfter,
        k.compromisedAt,
        k.createdAt,
      );
    }
  } finally {
    db.close();
  }
}

describe('MIGRATIONS', () => {
  it('are numbered 1, 2, 3, … without gaps, with distinct names', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, index) => index + 1));
    expect(new Set(MIGRATIONS.map((m) => m.name)).size).toBe(MIGRATIONS.length);
    expect(LATEST_SCHEMA_VERSION).toBe(MIGRATIONS.length);
  });

  it('carry SQL for both dialects', () => {
    for (const migration of MIGRATIONS) {
      expect(migration.sqlite.trim()).not.toBe('');
      expect(migration.postgres.trim()).not.toBe('');
    }
  });

  // A new algorithm or state name needs a migration that widens the CHECK; this fails
  // until one exists.
  it('allow exactly the fixed algorithm and state names', () => {
    for (const dialect of ['sqlite', 'postgres'] as const) {
      const sql = MIGRATIONS.map((m) => m[dialect]).join('\n');
      const algorithms = /algorithm\s+TEXT\s+NOT NULL\s+CHECK \(algorithm IN \(([^)]*)\)\)/.exec(sql)?.[1];
      const states = /state\s+TEXT\s+NOT NULL\s+CHECK \(state IN \(([^)]*)\)\)/.exec(sql)?.[1];
      expect(algorithms?.split(',').map((s) => s.trim().replace(/'/g, ''))).toEqual([...KEY_ALGORITHMS]);
      expect(states?.split(',').map((s) => s.trim().replace(/'/g, ''))).toEqual([...KEY_STATES]);
    }
  });

  it('are frozen', () => {
    expect(Object.isFrozen(MIGRATIONS)).toBe(true);
    for (const migration of MIGRATIONS) expect(Object.isFrozen(migration)).toBe(true);
  });
});

describe('migrate (SQLite)', () => {
  let temp: ReturnType<typeof makeTempDir>;
  beforeEach(() => {
    temp = makeTempDir();
  });
  afterEach(() => {
    temp.cleanup();
  });

  it('starts at version 0 and records every migration once, however often it runs', async () => {
    const store = openSqliteStore({ path: temp.dbPath });
    try {
      expect(await store.schemaVersion()).toBe(0);
      await store.migrate();
      await store.migrate();
      await Promise.all([store.migrate(), store.migrate()]);
      expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    } finally {
      await store.close();
    }
    const recorded = withRawDatabase(temp.dbPath, (db) =>
      db.prepare('SELECT version, name, applied_at FROM schema_migrations ORDER BY version').all(),
    ) as { version: number; name: string; applied_at: string }[];
    expect(recorded.map(({ version, name }) => ({ version, name }))).toEqual(
      MIGRATIONS.map(({ version, name }) => ({ version, name })),
    );
    for (const row of recorded) expect(Number.isNaN(Date.parse(row.applied_at))).toBe(false);
  });

  it('is idempotent across reopenings', async () => {
    const first = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    await first.close();
    const second = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    try {
      expect(await second.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    } finally {
      await second.close();
    }
    const count = withRawDatabase(temp.dbPath, (db) =>
      db.prepare('SELECT COUNT(*) FROM schema_migrations').pluck().get(),
    );
    expect(count).toBe(MIGRATIONS.length);
  });

  it('creates the tables, the CHECKs and the indexes', async () => {
    const store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    await store.close();
    const objects = withRawDatabase(temp.dbPath, (db) =>
      db.prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name").all(),
    );
    expect(objects).toEqual([
      { type: 'table', name: 'counters' },
      { type: 'table', name: 'health_probe' },
      { type: 'table', name: 'key_versions' },
      { type: 'index', name: 'key_versions_one_active_per_name' },
      { type: 'table', name: 'log_checkpoints' },
      { type: 'table', name: 'log_entries' },
      { type: 'index', name: 'log_entries_leaf_hash_prefix' },
      { type: 'table', name: 'log_nodes' },
      { type: 'table', name: 'schema_migrations' },
      { type: 'table', name: 'token_uses' },
      { type: 'index', name: 'token_uses_expires_at' },
    ]);
    // The database refuses an unknown algorithm even when the store's checks are bypassed.
    expect(() => {
      withRawDatabase(temp.dbPath, (db) =>
        db
          .prepare(
            `INSERT INTO key_versions (key_id, name, version, algorithm, state, hsm_key_id, public_key_pem,
               created_at, not_before, state_changed_at) VALUES ('k@1', 'k', 1, 'rsa-1024', 'pending', '00', 'x', 't', 't', 't')`,
          )
          .run(),
      );
    }).toThrow(/CHECK constraint failed/);
  });

  it('makes the database itself refuse invalid token uses and counts', async () => {
    const store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    await store.close();
    const insertUse = (state: string, response: string | null, tokenId = 't'): void => {
      withRawDatabase(temp.dbPath, (db) =>
        db
          .prepare(
            `INSERT INTO token_uses (issuer, token_id, request_hash, state, response, created_at, expires_at)
               VALUES ('i', ?, ?, ?, ?, '2025-01-01T00:00:00.000Z', '2025-01-01T01:00:00.000Z')`,
          )
          .run(tokenId, HASH, state, response),
      );
    };
    expect(() => {
      insertUse('used', null);
    }).toThrow(/CHECK constraint failed/);
    expect(() => {
      insertUse('done', null);
    }).toThrow(/CHECK constraint failed/);
    expect(() => {
      insertUse('pending', '{}');
    }).toThrow(/CHECK constraint failed/);
    insertUse('pending', null);
    insertUse('done', '{}', 'other');
    expect(() => {
      insertUse('pending', null);
    }).toThrow(/UNIQUE constraint failed/);
    expect(() =>
      withRawDatabase(temp.dbPath, (db) =>
        db.prepare(`INSERT INTO counters (counter, "window", count) VALUES ('c', 'total', -1)`).run(),
      ),
    ).toThrow(/CHECK constraint failed/);
  });

  it('makes the database itself refuse malformed log rows', async () => {
    const store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    await store.close();
    const hash = Buffer.alloc(32, 1);
    const insertEntry = (idx: number, kind: string, leaf: Buffer, leafHash: Buffer, linked: number | null): void => {
      withRawDatabase(temp.dbPath, (db) => {
        db.pragma('foreign_keys = ON');
        db.prepare(
          'INSERT INTO log_entries (idx, kind, leaf, leaf_hash, integrated_time, linked_idx) VALUES (?, ?, ?, ?, 0, ?)',
        ).run(idx, kind, leaf, leafHash, linked);
      });
    };
    const insertNode = (level: number, idx: number, nodeHash: Buffer): void => {
      withRawDatabase(temp.dbPath, (db) =>
        db.prepare('INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)').run(level, idx, nodeHash),
      );
    };
    const leaf = Buffer.from('leaf');
    for (const kind of ['', 'Upper', 'a b', 'x'.repeat(65)]) {
      expect(() => {
        insertEntry(0, kind, leaf, hash, null);
      }, kind).toThrow(/CHECK constraint failed/);
    }
    expect(() => {
      insertEntry(0, 'k', Buffer.alloc(0), hash, null);
    }).toThrow(/CHECK constraint failed/);
    expect(() => {
      insertEntry(0, 'k', leaf, Buffer.alloc(31), null);
    }).toThrow(/CHECK constraint failed/);
    expect(() => {
      insertEntry(-1, 'k', leaf, hash, null);
    }).toThrow(/CHECK constraint failed/);
    insertEntry(0, 'signet.decision/v1', leaf, hash, null);
    expect(() => {
      insertEntry(1, 'k', leaf, hash, 1);
    }).toThrow(/CHECK constraint failed/);
    expect(() => {
      insertEntry(5, 'k', leaf, hash, 3);
    }).toThrow(/FOREIGN KEY constraint failed/);
    insertEntry(1, 'k', leaf, hash, 0);
    expect(() => {
      insertEntry(1, 'k', leaf, hash, null);
    }).toThrow(/UNIQUE constraint failed/);
    expect(() => {
      insertNode(0, 0, Buffer.alloc(33));
    }).toThrow(/CHECK constraint failed/);
    expect(() => {
      insertNode(54, 0, hash);
    }).toThrow(/CHECK constraint failed/);
    insertNode(0, 0, hash);
    expect(() => {
      insertNode(0, 0, hash);
    }).toThrow(/UNIQUE constraint failed/);
    expect(() =>
      withRawDatabase(temp.dbPath, (db) =>
        db
          .prepare("INSERT INTO log_checkpoints (size, root_hash, note, created_at) VALUES (1, ?, 'n', 't')")
          .run(Buffer.alloc(31)),
      ),
    ).toThrow(/CHECK constraint failed/);
  });

  it('upgrades a version-2 database to the latest version, keeping its rows', async () => {
    const keys = [keyVersion('demo-release', 1, 'active')];
    createVersion1Database(temp.dbPath, keys);
    const second = MIGRATIONS[1]!;
    withRawDatabase(temp.dbPath, (db) => {
      db.exec(second.sqlite);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        second.version,
        second.name,
        '2025-01-01T00:00:00.000Z',
      );
      db.prepare(
        `INSERT INTO token_uses (issuer, token_id, request_hash, state, response, created_at, expires_at)
           VALUES ('https://issuer.example', 'jti-1', ?, 'done', '{"ok":true}', '2025-01-01T00:00:00.000Z',
                   '2025-01-01T01:00:00.000Z')`,
      ).run(HASH);
      db.prepare(`INSERT INTO counters (counter, "window", count) VALUES ('usage:key:demo-release@1', 'total', 7)`).run();
    });

    const store = openSqliteStore({ path: temp.dbPath });
    try {
      expect(await store.schemaVersion()).toBe(2);
      await store.migrate();
      expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
      expect(await store.keys.list()).toEqual(keys);
      expect(await store.tokenUses.get('https://issuer.example', 'jti-1')).toMatchObject({
        state: 'done',
        response: '{"ok":true}',
      });
      expect(await store.counters.current('usage:key:demo-release@1', 'total')).toBe(7);
      // The log tables are there, empty, and work.
      expect(await store.log.size()).toBe(0);
      await expect(
        store.log.append([{ kind: 'signet.decision/v1', leaf: Buffer.from('{}'), integratedTime: 1, linkedIndex: null }]),
      ).resolves.toEqual({ firstIndex: 0, size: 1 });
      expect(await store.log.latestCheckpoint()).toBeNull();
    } finally {
      await store.close();
    }
  });

  it('upgrades a version-1 database to the latest version, keeping its key rows', async () => {
    const keys = [
      keyVersion('demo-release', 1, 'verify-only'),
      keyVersion('demo-release', 2, 'active', { notAfter: '2030-01-01T00:00:00.000Z' }),
      keyVersion('old', 1, 'compromised'),
    ];
    createVersion1Database(temp.dbPath, keys);

    const store = openSqliteStore({ path: temp.dbPath });
    try {
      expect(await store.schemaVersion()).toBe(1);
      await store.migrate();
      expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
      expect(await store.keys.list()).toEqual(
        [...keys].sort((a, b) => a.name.localeCompare(b.name) || a.version - b.version),
      );
      expect((await store.keys.getActive('demo-release'))?.keyId).toBe('demo-release@2');
      // The new tables are there and work.
      await expect(
        store.tokenUses.claim({
          issuer: 'https://issuer.example',
          tokenId: 'jti-1',
          requestHash: HASH,
          createdAt: '2025-01-01T00:00:00.000Z',
          expiresAt: '2025-01-01T01:00:00.000Z',
        }),
      ).resolves.toEqual({ kind: 'claimed' });
      await expect(store.counters.consume([{ counter: 'usage:key:demo-release@2', window: 'total', limit: 1 }])).resolves.toEqual({
        allowed: true,
      });
    } finally {
      await store.close();
    }
    const recorded = withRawDatabase(temp.dbPath, (db) =>
      db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all(),
    );
    expect(recorded).toEqual(MIGRATIONS.map(({ version, name }) => ({ version, name })));
  });

  it('rolls a failing migration 2 back whole, leaving version 1 and its rows in place', async () => {
    const keys = [keyVersion('k', 1, 'active')];
    createVersion1Database(temp.dbPath, keys);
    // A table in the way of the second CREATE TABLE of migration 2, after the first succeeded.
    withRawDatabase(temp.dbPath, (db) => db.exec('CREATE TABLE counters (anything TEXT)'));

    const store = openSqliteStore({ path: temp.dbPath });
    try {
      await expect(store.migrate()).rejects.toMatchObject({ code: 'STORE_MIGRATION_FAILED' });
      expect(await store.schemaVersion()).toBe(1);
      expect(await store.keys.list()).toEqual(keys);
    } finally {
      await store.close();
    }
    const tables = withRawDatabase(temp.dbPath, (db) =>
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all(),
    );
    expect(tables).toEqual(['counters', 'health_probe', 'key_versions', 'schema_migrations']);
  });

  it('refuses a database whose schema is newer than the code (STORE_CORRUPT)', async () => {
    const store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    await store.close();
    withRawDatabase(temp.dbPath, (db) =>
      db
        .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
        .run(LATEST_SCHEMA_VERSION + 1, 'from the future', new Date().toISOString()),
    );
    await expect(openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } })).rejects.toMatchObject({
      code: 'STORE_CORRUPT',
    });
    const reopened = openSqliteStore({ path: temp.dbPath });
    try {
      await expect(reopened.migrate()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      expect(await reopened.schemaVersion()).toBe(LATEST_SCHEMA_VERSION + 1);
    } finally {
      await reopened.close();
    }
  });

  it('refuses a history that differs from the code (STORE_CORRUPT)', async () => {
    const store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    await store.close();
    withRawDatabase(temp.dbPath, (db) =>
      db.prepare("UPDATE schema_migrations SET name = 'something else' WHERE version = 1").run(),
    );
    await expect(openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } })).rejects.toMatchObject({
      code: 'STORE_CORRUPT',
    });
  });

  it('rolls a failing migration back whole and reports STORE_MIGRATION_FAILED', async () => {
    // A table in the way makes migration 1 fail half-way, after schema_migrations exists.
    const store = openSqliteStore({ path: temp.dbPath });
    await store.close();
    withRawDatabase(temp.dbPath, (db) => db.exec('CREATE TABLE health_probe (anything TEXT)'));

    const failing = openSqliteStore({ path: temp.dbPath });
    try {
      await expect(failing.migrate()).rejects.toMatchObject({ code: 'STORE_MIGRATION_FAILED' });
      expect(await failing.schemaVersion()).toBe(0);
    } finally {
      await failing.close();
    }
    const tables = withRawDatabase(temp.dbPath, (db) =>
      db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all(),
    );
    expect(tables).toEqual(['health_probe']);
  });
});
