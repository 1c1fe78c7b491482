/**
 * What only the SQLite store has: a database file, its mode, its connection settings.
 * The repository contracts, transactions, persistence and closing are tested on both
 * backends (store.test.ts and the other backend-neutral suites, via backends.ts).
 */
import { statSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../store/open-store.js';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import type { SignetStore } from '../../store/store.js';
import { makeTempDir, openSqliteStoreWithConnection, thrownBy, withRawDatabase } from './sqlite-fixtures.js';

let temp: ReturnType<typeof makeTempDir>;
let store: SignetStore;

beforeEach(async () => {
  temp = makeTempDir();
  store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
});

afterEach(async () => {
  await store.close();
  temp.cleanup();
});

describe('opening', () => {
  it('puts the file in WAL mode, persistently', () => {
    const mode = withRawDatabase(temp.dbPath, (db) => db.pragma('journal_mode', { simple: true }));
    expect(mode).toBe('wal');
  });

  it('runs its own connection with synchronous=FULL, foreign keys and the busy timeout', async () => {
    await store.close();
    const opened = openSqliteStoreWithConnection({ path: temp.dbPath, busyTimeoutMs: 1234 });
    store = opened.store;
    const { connection } = opened;
    expect(connection.open).toBe(true);
    expect(connection.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(connection.pragma('synchronous', { simple: true })).toBe(2);
    expect(connection.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(connection.pragma('busy_timeout', { simple: true })).toBe(1234);
    await store.close();
    expect(connection.open).toBe(false);
  });

  it('creates the database owner-only (0600), and its WAL file too', async () => {
    await store.checkWritable();
    expect(statSync(temp.dbPath).mode & 0o777).toBe(0o600);
    expect(statSync(`${temp.dbPath}-wal`).mode & 0o777).toBe(0o600);
  });

  it('leaves an existing file as it is', async () => {
    await store.close();
    store = openSqliteStore({ path: temp.dbPath });
    expect(await store.schemaVersion()).toBeGreaterThan(0);
  });

  it('needs the parent directory to exist (STORE_UNAVAILABLE)', () => {
    const error = thrownBy(() => openSqliteStore({ path: `${temp.dir}/missing/signet.db` }));
    expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect((error as Error).message).toContain('missing');
  });

  it('refuses in-memory databases and bad options with a TypeError', () => {
    expect(() => openSqliteStore({ path: ':memory:' })).toThrow(TypeError);
    expect(() => openSqliteStore({ path: '' })).toThrow(TypeError);
    expect(() => openSqliteStore({ path: temp.dbPath, busyTimeoutMs: -1 })).toThrow(TypeError);
    expect(() => openSqliteStore({ path: temp.dbPath, busyTimeoutMs: 1.5 })).toThrow(TypeError);
  });

  it('reports a file that is not a database as STORE_CORRUPT', () => {
    const path = `${temp.dir}/garbage.db`;
    writeFileSync(path, 'this is not a SQLite database, just some bytes on disk. '.repeat(10));
    expect(thrownBy(() => openSqliteStore({ path }))).toMatchObject({ code: 'STORE_CORRUPT' });
  });
});
