/**
 * Storage that cannot serve: read-only, locked by another connection, full, damaged.
 * Every such condition reaches callers as a StoreError with a stable code.
 *
 * The suite runs as root in CI, where file permissions do not stop writes, so the
 * read-only case opens the database through SQLite's own read-only mode; the
 * permission-based variant runs only when the tests are not root. A full disk is
 * produced by capping the database's page count, which makes SQLite report
 * SQLITE_FULL exactly as for a full file system.
 */
import { chmodSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError, translateSqliteError } from '../../store/errors.js';
import { openStore } from '../../store/open-store.js';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import { keyVersion, makeTempDir, openSqliteStoreWithConnection, thrownBy, withRawDatabase } from './sqlite-fixtures.js';

let temp: ReturnType<typeof makeTempDir>;

beforeEach(async () => {
  temp = makeTempDir();
  const store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
  await store.keys.insert(keyVersion('k', 1, 'active'));
  await store.close();
});

afterEach(() => {
  chmodSync(temp.dir, 0o700);
  temp.cleanup();
});

describe('read-only storage', () => {
  it('fails checkWritable and writes with STORE_UNAVAILABLE, and still reads', async () => {
    const store = openSqliteStore({ path: temp.dbPath, readonly: true });
    try {
      await expect(store.checkWritable()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(store.keys.insert(keyVersion('k', 2))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(store.transaction((tx) => tx.keys.insert(keyVersion('k', 2)))).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
      await store.migrate(); // nothing pending: allowed
      expect((await store.keys.get('k@1'))?.state).toBe('active');
    } finally {
      await store.close();
    }
  });

  it('does not create a missing file in read-only mode', () => {
    expect(thrownBy(() => openSqliteStore({ path: `${temp.dir}/absent.db`, readonly: true }))).toMatchObject({
      code: 'STORE_UNAVAILABLE',
    });
  });

  // Permissions are checked when a file is opened: a store that already holds the file
  // open keeps its write access, as any Unix process would. The case that matters is a
  // service (re)started on a file it may not write.
  it.skipIf(process.getuid?.() === 0)('fails with STORE_UNAVAILABLE on a file it may not write', async () => {
    chmodSync(temp.dbPath, 0o400);
    const store = openSqliteStore({ path: temp.dbPath });
    try {
      await expect(store.checkWritable()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect((await store.keys.get('k@1'))?.state).toBe('active');
    } finally {
      await store.close();
    }
  });

  it.skipIf(process.getuid?.() === 0)('fails with STORE_UNAVAILABLE in a directory it may not write', async () => {
    chmodSync(temp.dbPath, 0o400);
    chmodSync(temp.dir, 0o500);
    // Without write access to the directory SQLite cannot create the WAL index, so the
    // failure may come at open or at the first write; either way it is STORE_UNAVAILABLE.
    const opened = (() => {
      try {
        return openSqliteStore({ path: temp.dbPath });
      } catch (error) {
        return error;
      }
    })();
    if (opened instanceof StoreError) {
      expect(opened.code).toBe('STORE_UNAVAILABLE');
      return;
    }
    const store = opened as ReturnType<typeof openSqliteStore>;
    try {
      await expect(store.checkWritable()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      await store.close();
    }
  });
});

describe('locked storage', () => {
  it('fails with STORE_UNAVAILABLE once the busy timeout passes, and recovers after', async () => {
    const store = openSqliteStore({ path: temp.dbPath, busyTimeoutMs: 50 });
    const other = new Database(temp.dbPath);
    try {
      other.exec('BEGIN IMMEDIATE');
      const busy: unknown = await store.checkWritable().catch((e: unknown) => e);
      expect(busy).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect((busy as Error).message).toContain('SQLITE_BUSY');
      await expect(store.transaction(() => Promise.resolve())).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(store.keys.updateState('k@1', 'retired', '2025-02-01T00:00:00.000Z')).rejects.toMatchObject({
        code: 'STORE_UNAVAILABLE',
      });
      // WAL readers are not blocked by a writer.
      expect((await store.keys.get('k@1'))?.state).toBe('active');
      other.exec('ROLLBACK');
      await store.checkWritable();
      await store.keys.updateState('k@1', 'retired', '2025-02-01T00:00:00.000Z');
    } finally {
      other.close();
      await store.close();
    }
  });
});

describe('full storage', () => {
  // Capping the page count at what the file has makes SQLite answer SQLITE_FULL as soon
  // as a write needs one more page, exactly as for a full file system.
  function fillUp(connection: Database.Database): void {
    connection.pragma(`max_page_count = ${String(connection.pragma('page_count', { simple: true }))}`);
  }

  it('fails writes with STORE_UNAVAILABLE and keeps serving reads', async () => {
    const { store, connection } = openSqliteStoreWithConnection({ path: temp.dbPath });
    try {
      fillUp(connection);
      let failure: unknown = null;
      for (let version = 2; version < 200 && failure === null; version += 1) {
        failure = await store.keys.insert(keyVersion('k', version)).then(
          () => null,
          (error: unknown) => error,
        );
      }
      expect(failure).toBeInstanceOf(StoreError);
      expect(failure).toMatchObject({ code: 'STORE_UNAVAILABLE', cause: { code: 'SQLITE_FULL' } });
      expect((await store.keys.get('k@1'))?.state).toBe('active');
    } finally {
      await store.close();
    }
  });

  it('never commits part of a transaction that hit a full disk, even if the work carries on', async () => {
    const { store, connection } = openSqliteStoreWithConnection({ path: temp.dbPath });
    try {
      const before = (await store.keys.list()).length;
      fillUp(connection);
      const outcome = await store
        .transaction(async (tx) => {
          let full = false;
          for (let version = 2; version < 200 && !full; version += 1) {
            full = await tx.keys.insert(keyVersion('k', version)).then(
              () => false,
              (error: unknown) => (error as StoreError).code === 'STORE_UNAVAILABLE',
            );
          }
          expect(full).toBe(true);
          // Space comes back, and work that swallowed the failure writes again: that
          // write must not land in autocommit mode outside the transaction.
          connection.pragma('max_page_count = 1073741823');
          await tx.keys.insert(keyVersion('late', 1)).catch(() => undefined);
        })
        .then(
          () => 'committed',
          (error: unknown) => (error as StoreError).code,
        );
      expect(await store.keys.get('late@1')).toBeNull();
      const after = (await store.keys.list()).length;
      // SQLite keeps the transaction after SQLITE_FULL (only the statement is undone) or
      // rolls it back; the store either commits what succeeded or reports the loss.
      if (outcome === 'committed') expect(after).toBeGreaterThan(before);
      else {
        expect(outcome).toBe('STORE_UNAVAILABLE');
        expect(after).toBe(before);
      }
    } finally {
      await store.close();
    }
  });

  it('maps a real SQLITE_FULL to STORE_UNAVAILABLE', () => {
    const error = withRawDatabase(temp.dbPath, (db) => {
      fillUp(db);
      try {
        db.prepare('INSERT INTO health_probe (id, written_at) VALUES (1, ?)').run('x'.repeat(100_000));
        return null;
      } catch (caught) {
        return caught;
      }
    });
    expect(error).toMatchObject({ name: 'SqliteError', code: 'SQLITE_FULL' });
    const translated = translateSqliteError(error, 'writing the health probe');
    expect(translated).toBeInstanceOf(StoreError);
    expect(translated).toMatchObject({ code: 'STORE_UNAVAILABLE', cause: error });
  });
});

describe('damaged rows', () => {
  const damages: [string, string][] = [
    ['a timestamp that is not one', "UPDATE key_versions SET created_at = 'last tuesday'"],
    ['an impossible date', "UPDATE key_versions SET not_before = '2025-02-30T00:00:00.000Z'"],
    ['a key id that disagrees with name and version', "UPDATE key_versions SET key_id = 'k@7'"],
    ['an HSM key id that is not hex', "UPDATE key_versions SET hsm_key_id = 'zz'"],
    ['a public key that is not PEM', "UPDATE key_versions SET public_key_pem = 'hello'"],
    ['a compromise instant on a key that is not compromised', "UPDATE key_versions SET compromised_at = '2025-01-01T00:00:00.000Z'"],
    ['a compromised key without its instant', "UPDATE key_versions SET state = 'compromised'"],
    ['a validity window that ends before it starts', "UPDATE key_versions SET not_after = '2000-01-01T00:00:00.000Z'"],
    ['a bad state-change time', "UPDATE key_versions SET state_changed_at = ''"],
  ];

  it.each(damages)('reports %s as STORE_CORRUPT on every read path', async (_label, sql) => {
    withRawDatabase(temp.dbPath, (db) => db.exec(sql));
    const store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    try {
      const keyId = (withRawDatabase(temp.dbPath, (db) => db.prepare('SELECT key_id FROM key_versions').pluck().get()) as string);
      for (const read of [
        () => store.keys.list(),
        () => store.keys.get(keyId),
        () => store.keys.listVersions('k'),
        () => store.keys.updateState(keyId, 'retired', '2025-02-01T00:00:00.000Z'),
      ]) {
        await expect(read()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      }
    } finally {
      await store.close();
    }
  });
});

describe('translateSqliteError', () => {
  const cases: [string, string][] = [
    ['SQLITE_CONSTRAINT_UNIQUE', 'STORE_CONFLICT'],
    ['SQLITE_CONSTRAINT_PRIMARYKEY', 'STORE_CONFLICT'],
    ['SQLITE_CONSTRAINT_CHECK', 'STORE_CONFLICT'],
    ['SQLITE_FULL', 'STORE_UNAVAILABLE'],
    ['SQLITE_READONLY', 'STORE_UNAVAILABLE'],
    ['SQLITE_READONLY_DBMOVED', 'STORE_UNAVAILABLE'],
    ['SQLITE_BUSY', 'STORE_UNAVAILABLE'],
    ['SQLITE_BUSY_SNAPSHOT', 'STORE_UNAVAILABLE'],
    ['SQLITE_IOERR_FSYNC', 'STORE_UNAVAILABLE'],
    ['SQLITE_CANTOPEN', 'STORE_UNAVAILABLE'],
    ['SQLITE_CORRUPT', 'STORE_CORRUPT'],
    ['SQLITE_NOTADB', 'STORE_CORRUPT'],
    ['SQLITE_ERROR', 'STORE_UNAVAILABLE'],
  ];

  it.each(cases)('%s → %s, keeping the driver error as cause only', (sqliteCode, storeCode) => {
    const original = new Database.SqliteError('driver detail with a secret-ish value 0xDEADBEEF', sqliteCode);
    const translated = translateSqliteError(original, 'doing something');
    expect(translated).toMatchObject({ code: storeCode, cause: original });
    expect((translated as Error).message).toContain(sqliteCode);
    expect((translated as Error).message).not.toContain('DEADBEEF');
  });

  it('passes StoreErrors and foreign errors through unchanged', () => {
    const storeError = new StoreError('STORE_NOT_FOUND', 'gone');
    const bug = new RangeError('a bug');
    expect(translateSqliteError(storeError, 'x')).toBe(storeError);
    expect(translateSqliteError(bug, 'x')).toBe(bug);
    expect(translateSqliteError('a string', 'x')).toBe('a string');
  });
});
