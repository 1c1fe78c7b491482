/**
 * The migration list as data: ordered, complete, and in step with the fixed algorithm
 * and state names; and the runner: idempotent, recorded, atomic per migration, and
 * refusing schema histories it does not recognise.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KEY_ALGORITHMS } from '../../signer/algorithms.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../store/migrations.js';
import { openStore } from '../../store/open-store.js';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import { KEY_STATES } from '../../store/store.js';
import { makeTempDir, withRawDatabase } from './sqlite-fixtures.js';

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

  it('creates the tables, the CHECKs and the one-active-version index', async () => {
    const store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    await store.close();
    const objects = withRawDatabase(temp.dbPath, (db) =>
      db.prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name").all(),
    );
    expect(objects).toEqual([
      { type: 'table', name: 'health_probe' },
      { type: 'table', name: 'key_versions' },
      { type: 'index', name: 'key_versions_one_active_per_name' },
      { type: 'table', name: 'schema_migrations' },
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
