/**
 * One storage test suite, two backends: `describeStore` runs the same tests against
 * SQLite (a fresh file per test) and PostgreSQL (a fresh schema per test, dropped
 * afterwards), and hands each test a `raw` handle for writing what the store itself
 * would refuse to write (damaged rows, a schema in the way).
 *
 * PostgreSQL tests connect to SIGNET_TEST_POSTGRES_URL. Without it they cannot run:
 * in CI (CI or SIGNET_TEST_REQUIRE_POSTGRES set, as .ci/run does) that is a failing
 * test, never a silent skip; elsewhere they are skipped with a warning on stderr.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, beforeEach, describe, it } from 'vitest';
import { openStore } from '../../store/open-store.js';
import { openPostgresStore, type PostgresStoreOptions } from '../../store/postgres/postgres-store.js';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import type { SignetStore } from '../../store/store.js';

export type BackendName = 'sqlite' | 'postgres';
export const BACKEND_NAMES: readonly BackendName[] = ['sqlite', 'postgres'];

/** Direct access to a test database, outside any store. Statements use `?` placeholders in both dialects. */
export interface RawDatabase {
  /** Rows keyed by column (none for a statement that returns none); BIGINT values as numbers when safe, BLOB/BYTEA as Buffers. */
  query(sql: string, params?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  /** The first column of the first row (undefined without rows). */
  value(sql: string, params?: readonly unknown[]): Promise<unknown>;
  /** Runs a script of statements without parameters. */
  exec(sql: string): Promise<void>;
  /**
   * Runs one statement with the tables' CHECK and foreign-key constraints not
   * enforced: what a damaged or tampered database could hold.
   */
  execUnchecked(sql: string, params?: readonly unknown[]): Promise<void>;
}

export interface TestDatabase {
  readonly backend: BackendName;
  readonly raw: RawDatabase;
  /** Opens and migrates a store on this database: another connection (pool) each time, as another process or replica would. */
  open(): Promise<SignetStore>;
  /** Opens without migrating. */
  openUnmigrated(): SignetStore;
  /** Tables, and the indexes no constraint makes (SQLite's sqlite_autoindex_*, PostgreSQL's primary and unique keys), by name. */
  schemaObjects(): Promise<{ type: 'table' | 'index'; name: string }[]>;
  /** What each dialect's own constraint errors say. */
  readonly violations: { readonly unique: RegExp; readonly check: RegExp; readonly foreignKey: RegExp };
  /**
   * Closes every store opened through it and empties every table but the migration
   * record, so the next test starts from a freshly migrated database; false when the
   * database cannot be reused that way (a test changed its schema) and must be destroyed.
   */
  reset(): Promise<boolean>;
  /** Closes every store opened through it, then removes the database. */
  destroy(): Promise<void>;
}

export interface StoreTestContext {
  readonly backend: BackendName;
  readonly db: TestDatabase;
  /** The store opened (and migrated) for this test. */
  readonly store: SignetStore;
  /** Closes the test's store and opens it again on the same database. */
  reopen(): Promise<SignetStore>;
}

// ---------------------------------------------------------------------------------
// SQLite

/** A synchronous call as a promise: what it throws becomes a rejection, as with the PostgreSQL driver. */
function settled<T>(call: () => T): Promise<T> {
  return new Promise<T>((resolve) => {
    resolve(call());
  });
}

function sqliteDatabase(): TestDatabase {
  const dir = mkdtempSync(join(tmpdir(), 'signet-store-'));
  const path = join(dir, 'signet.db');
  const opened: SignetStore[] = [];
  // Raw connections enforce foreign keys, as the store's does (and PostgreSQL always does).
  const withConnection = <T>(use: (db: Database.Database) => T): T => {
    const db = new Database(path);
    db.pragma('foreign_keys = ON');
    try {
      return use(db);
    } finally {
      db.close();
    }
  };
  const raw: RawDatabase = {
    query: (sql, params = []) =>
      settled(() =>
        withConnection((db) => {
          const statement = db.prepare(sql);
          if (statement.reader) return statement.all(...params) as Record<string, unknown>[];
          statement.run(...params);
          return [];
        }),
      ),
    value: (sql, params = []) => settled(() => withConnection((db) => db.prepare(sql).pluck().get(...params))),
    exec: (sql) =>
      settled(() => {
        withConnection((db) => db.exec(sql));
      }),
    execUnchecked: (sql, params = []) =>
      settled(() => {
        withConnection((db) => {
          db.pragma('ignore_check_constraints = ON');
          db.pragma('foreign_keys = OFF');
          db.prepare(sql).run(...params);
        });
      }),
  };
  return {
    backend: 'sqlite',
    raw,
    async open() {
      const store = await openStore({ driver: 'sqlite', sqlite: { path } });
      opened.push(store);
      return store;
    },
    openUnmigrated() {
      const store = openSqliteStore({ path });
      opened.push(store);
      return store;
    },
    async schemaObjects() {
      return (await raw.query(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name",
      )) as { type: 'table' | 'index'; name: string }[];
    },
    violations: { unique: /UNIQUE constraint failed/, check: /CHECK constraint failed/, foreignKey: /FOREIGN KEY constraint failed/ },
    // A new file costs nothing; a fresh one per test is simplest.
    reset: () => Promise.resolve(false),
    async destroy() {
      await Promise.all(opened.map((store) => store.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------
// PostgreSQL

export const POSTGRES_URL_VARIABLE = 'SIGNET_TEST_POSTGRES_URL';

/** The server the PostgreSQL tests use, or undefined when none is configured. */
export function postgresTestUrl(): string | undefined {
  const url = process.env[POSTGRES_URL_VARIABLE];
  return url === undefined || url.trim() === '' ? undefined : url.trim();
}

/** CI must test PostgreSQL: a missing URL is a failure there, not a skip. */
export function postgresRequired(): boolean {
  const ci = process.env.CI;
  return (ci !== undefined && ci !== '' && ci !== '0' && ci !== 'false') || process.env.SIGNET_TEST_REQUIRE_POSTGRES === '1';
}

/** BIGINT as a number when safe, as the store itself parses it. */
function testTypes(): pg.CustomTypesConfig {
  const types = new pg.TypeOverrides();
  types.setTypeParser(pg.types.builtins.INT8, (text: string) => {
    const value = Number(text);
    return Number.isSafeInteger(value) ? value : text;
  });
  return types;
}

let adminPool: pg.Pool | undefined;

/** One small pool per test file for creating and dropping schemas. */
export function postgresAdmin(): pg.Pool {
  const url = postgresTestUrl();
  if (url === undefined) throw new Error(`${POSTGRES_URL_VARIABLE} is not set`);
  if (adminPool === undefined) {
    adminPool = new pg.Pool({ connectionString: url, max: 2, types: testTypes() });
    adminPool.on('error', () => undefined);
  }
  return adminPool;
}

let staleSchemasDropped = false;

/**
 * Schemas are named signet_test_<seconds since the epoch>_<random>, so that a run that
 * died before dropping its own can be cleaned up by a later one (after an hour, when no
 * test can still be using it).
 */
async function dropStaleSchemas(admin: pg.Pool): Promise<void> {
  if (staleSchemasDropped) return;
  staleSchemasDropped = true;
  const cutoff = Math.floor(Date.now() / 1000) - 3600;
  const { rows } = await admin.query<{ nspname: string }>(
    "SELECT nspname FROM pg_namespace WHERE nspname ~ '^signet_test_[0-9]+_[0-9a-f]+$'",
  );
  for (const { nspname } of rows) {
    if (Number(nspname.split('_')[2]) < cutoff) await admin.query(`DROP SCHEMA IF EXISTS ${nspname} CASCADE`);
  }
}

export function newSchemaName(): string {
  return `signet_test_${Math.floor(Date.now() / 1000)}_${randomBytes(6).toString('hex')}`;
}

/** `?` placeholders → `$1`, `$2`, … (outside quoted text). */
function numberedPlaceholders(sql: string): string {
  let position = 0;
  return sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|\?/g, (match) => (match === '?' ? `$${(position += 1)}` : match));
}

/** Options of a PostgreSQL store on `schema`; small pools, since tests run files in parallel. */
export function postgresStoreOptions(schema: string, overrides: Partial<PostgresStoreOptions> = {}): PostgresStoreOptions {
  const url = postgresTestUrl();
  if (url === undefined) throw new Error(`${POSTGRES_URL_VARIABLE} is not set`);
  return { url, schema, poolSize: 4, ...overrides };
}

export async function postgresDatabase(): Promise<TestDatabase & { readonly schema: string }> {
  const admin = postgresAdmin();
  await dropStaleSchemas(admin);
  const schema = newSchemaName();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const opened: SignetStore[] = [];
  const rawPool = new pg.Pool({
    connectionString: postgresTestUrl(),
    max: 1,
    options: `-c search_path=${schema}`,
    types: testTypes(),
  });
  rawPool.on('error', () => undefined);
  let checksDropped = false;
  /** A test changed the schema itself: emptying the tables no longer gives a fresh database. */
  let schemaChanged = false;
  const closeStores = async (): Promise<void> => {
    await Promise.allSettled(opened.splice(0).map((store) => store.close()));
  };

  const raw: RawDatabase = {
    async query(sql, params = []) {
      return (await rawPool.query(numberedPlaceholders(sql), [...params])).rows as Record<string, unknown>[];
    },
    async value(sql, params = []) {
      const result = await rawPool.query({ text: numberedPlaceholders(sql), values: [...params], rowMode: 'array' });
      return (result.rows[0] as unknown[] | undefined)?.[0];
    },
    async exec(sql) {
      if (/\b(?:CREATE|ALTER|DROP)\b/i.test(sql)) schemaChanged = true;
      await rawPool.query(sql);
    },
    async execUnchecked(sql, params = []) {
      schemaChanged = true;
      const client = await rawPool.connect();
      try {
        if (!checksDropped) {
          // PostgreSQL cannot ignore CHECKs the way SQLite's pragma does: this test's
          // schema loses them for good (the store validates on its own all the same).
          const { rows } = await client.query<{ table: string; name: string }>(
            `SELECT c.conrelid::regclass::text AS table, c.conname AS name FROM pg_constraint c
               JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1 AND c.contype = 'c'`,
            [schema],
          );
          for (const row of rows) await client.query(`ALTER TABLE ${row.table} DROP CONSTRAINT "${row.name}"`);
          checksDropped = true;
        }
        await client.query('BEGIN');
        // Foreign keys are triggers, which the replica role does not fire.
        await client.query('SET LOCAL session_replication_role = replica');
        await client.query(numberedPlaceholders(sql), [...params]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
    },
  };

  return {
    backend: 'postgres',
    schema,
    raw,
    async open() {
      const store = await openStore({ driver: 'postgres', postgres: postgresStoreOptions(schema) });
      opened.push(store);
      return store;
    },
    openUnmigrated() {
      const store = openPostgresStore(postgresStoreOptions(schema));
      opened.push(store);
      return store;
    },
    async schemaObjects() {
      return (await raw.query(
        `SELECT CASE c.relkind WHEN 'r' THEN 'table' ELSE 'index' END AS type, c.relname AS name
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = ? AND c.relkind IN ('r', 'i')
            AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)
          ORDER BY c.relname COLLATE "C"`,
        [schema],
      )) as { type: 'table' | 'index'; name: string }[];
    },
    violations: {
      unique: /duplicate key value violates unique constraint/,
      check: /violates check constraint/,
      foreignKey: /violates foreign key constraint/,
    },
    async reset() {
      await closeStores();
      if (schemaChanged) return false;
      const { rows } = await admin.query<{ name: string }>(
        "SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 AND tablename <> 'schema_migrations'",
        [schema],
      );
      if (rows.length === 0) return true;
      // DELETE, not TRUNCATE: on a few rows it is much cheaper than new files for every
      // table and index. The replica role skips the foreign-key triggers, so the order
      // of the tables does not matter.
      const deletes = rows.map((row) => `DELETE FROM ${schema}.${row.name}`).join(';\n');
      await admin.query(`BEGIN; SET LOCAL session_replication_role = replica;\n${deletes};\nCOMMIT`);
      return true;
    },
    async destroy() {
      await closeStores();
      await rawPool.end();
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
}

afterAll(async () => {
  const pool = adminPool;
  adminPool = undefined;
  await pool?.end();
});

// ---------------------------------------------------------------------------------
// The suite

export function createTestDatabase(backend: BackendName): Promise<TestDatabase> {
  return backend === 'sqlite' ? Promise.resolve(sqliteDatabase()) : postgresDatabase();
}

let warnedAboutPostgres = false;

/**
 * `describe(title [backend], define)` for each backend that can run here. Without a
 * PostgreSQL server to test against, the PostgreSQL block fails in CI and is skipped,
 * with a warning, elsewhere.
 */
export function describeBackends(
  title: string,
  backends: readonly BackendName[],
  define: (backend: BackendName) => void,
): void {
  for (const backend of backends) {
    if (backend === 'postgres' && postgresTestUrl() === undefined) {
      if (postgresRequired()) {
        describe(`${title} [postgres]`, () => {
          it(`needs ${POSTGRES_URL_VARIABLE}`, () => {
            throw new Error(`${POSTGRES_URL_VARIABLE} is not set: CI must run the PostgreSQL storage tests (see .ci/run)`);
          });
        });
      } else {
        if (!warnedAboutPostgres) {
          warnedAboutPostgres = true;
          process.stderr.write(`signet tests: ${POSTGRES_URL_VARIABLE} is not set; PostgreSQL storage tests are SKIPPED\n`);
        }
        describe.skip(`${title} [postgres] (${POSTGRES_URL_VARIABLE} not set)`, () => {
          define(backend);
        });
      }
      continue;
    }
    describe(`${title} [${backend}]`, () => {
      define(backend);
    });
  }
}

/**
 * Runs `body` once per backend, as `<title> [sqlite]` and `<title> [postgres]`, each test
 * on a fresh database with a migrated store.
 */
export function describeStore(
  title: string,
  body: (t: StoreTestContext) => void,
  backends: readonly BackendName[] = BACKEND_NAMES,
): void {
  describeBackends(title, backends, (backend) => {
    let db: TestDatabase | undefined;
    let store: SignetStore | undefined;
    // A PostgreSQL schema is created and migrated once for the block and emptied
    // between tests (a few ms instead of a few hundred), unless a test changed it.
    beforeEach(async () => {
      db ??= await createTestDatabase(backend);
      store = await db.open();
    });
    afterEach(async () => {
      store = undefined;
      const current = db;
      if (current !== undefined && !(await current.reset())) {
        db = undefined;
        await current.destroy();
      }
    });
    afterAll(async () => {
      const current = db;
      db = undefined;
      await current?.destroy();
    });
    body({
      backend,
      get db() {
        if (db === undefined) throw new Error('no test database outside a test');
        return db;
      },
      get store() {
        if (store === undefined) throw new Error('no store outside a test');
        return store;
      },
      async reopen() {
        if (db === undefined || store === undefined) throw new Error('no store outside a test');
        await store.close();
        store = await db.open();
        return store;
      },
    });
  });
}

export interface DatabaseTestContext {
  readonly backend: BackendName;
  /** A fresh, empty database: no store has opened it yet. */
  readonly db: TestDatabase;
}

/** Like `describeStore`, but each test gets an empty database and opens its stores itself (migration tests). */
export function describeDatabase(
  title: string,
  body: (t: DatabaseTestContext) => void,
  backends: readonly BackendName[] = BACKEND_NAMES,
): void {
  describeBackends(title, backends, (backend) => {
    let db: TestDatabase | undefined;
    beforeEach(async () => {
      db = await createTestDatabase(backend);
    });
    afterEach(async () => {
      const current = db;
      db = undefined;
      await current?.destroy();
    });
    body({
      backend,
      get db() {
        if (db === undefined) throw new Error('no test database outside a test');
        return db;
      },
    });
  });
}

/** Lets other queued work run: `ticks` macrotask turns. */
export async function yieldTurns(ticks: number): Promise<void> {
  for (let i = 0; i < ticks; i += 1) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
