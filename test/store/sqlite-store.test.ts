/**
 * What only the SQLite store has: a database file, its mode, its connection settings.
 * The repository contracts, transactions, persistence and closing are tested on both
 * backends (store.test.ts and the other backend-neutral suites, via backends.ts).
 */
import { renameSync, statSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../store/open-store.js';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import type { SignetStore } from '../../store/store.js';
import { makeTempDir, openSqliteStoreWithConnection, thrownBy, tokenClaim, withRawDatabase } from './sqlite-fixtures.js';

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

describe('durability', () => {
  it('fails closed for good once the write-ahead log cannot be synced: nothing after it reads or writes', async () => {
    await store.tokenUses.claim(tokenClaim('before'));
    // The WAL file is gone from under the connection: its fsync cannot make anything durable.
    renameSync(`${temp.dbPath}-wal`, `${temp.dbPath}-wal.moved`);
    await expect(store.tokenUses.claim(tokenClaim('during'))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    renameSync(`${temp.dbPath}-wal.moved`, `${temp.dbPath}-wal`);
    await expect(store.tokenUses.claim(tokenClaim('after'))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE', message: expect.stringContaining('fsync') });
    await expect(store.tokenUses.get(tokenClaim('before').issuer, 'before')).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(store.transaction(async (tx) => tx.keys.list())).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(store.checkWritable()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });
});

describe('opening', () => {
  it('puts the file in WAL mode, persistently', () => {
    const mode = withRawDatabase(temp.dbPath, (db) => db.pragma('journal_mode', { simple: true }));
    expect(mode).toBe('wal');
  });

  it('runs its own connection with synchronous=NORMAL (the store fsyncs the WAL itself), foreign keys and the busy timeout', async () => {
    await store.close();
    const opened = openSqliteStoreWithConnection({ path: temp.dbPath, busyTimeoutMs: 1234 });
    store = opened.store;
    const { connection } = opened;
    expect(connection.open).toBe(true);
    expect(connection.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(connection.pragma('synchronous', { simple: true })).toBe(1);
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
