/**
 * The SQLite store against real database files: connection settings, file mode, the
 * key repository contract (store.ts), persistence, closing.
 */
import { statSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../store/open-store.js';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import type { SignetStore } from '../../store/store.js';
import { keyVersion, makeTempDir, openSqliteStoreWithConnection, thrownBy, withRawDatabase } from './sqlite-fixtures.js';

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

describe('keys', () => {
  it('inserts and reads back versions', async () => {
    const one = keyVersion('demo-release', 1, 'active');
    const two = keyVersion('demo-release', 2, 'pending', { algorithm: 'ed25519', notAfter: '2026-01-01T00:00:00.000Z' });
    const other = keyVersion('another', 1, 'active', { algorithm: 'rsa-pss-4096' });
    await store.keys.insert(two);
    await store.keys.insert(one);
    await store.keys.insert(other);

    expect(await store.keys.get('demo-release@1')).toEqual(one);
    expect(await store.keys.get('demo-release@9')).toBeNull();
    expect(await store.keys.list()).toEqual([other, one, two]);
    expect(await store.keys.listVersions('demo-release')).toEqual([one, two]);
    expect(await store.keys.listVersions('nothing')).toEqual([]);
    expect(await store.keys.getActive('demo-release')).toEqual(one);
    expect(await store.keys.getActive('nothing')).toBeNull();
  });

  it('returns frozen records', async () => {
    await store.keys.insert(keyVersion('k', 1));
    const record = await store.keys.get('k@1');
    expect(Object.isFrozen(record)).toBe(true);
  });

  it('stores timestamps in the canonical toISOString form', async () => {
    await store.keys.insert(keyVersion('k', 1, 'pending', { createdAt: '2025-03-04T05:06:07Z' }));
    expect((await store.keys.get('k@1'))?.createdAt).toBe('2025-03-04T05:06:07.000Z');
  });

  it('refuses a duplicate keyId (STORE_CONFLICT)', async () => {
    await store.keys.insert(keyVersion('k', 1));
    await expect(store.keys.insert(keyVersion('k', 1, 'retired'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
  });

  it('refuses a second active version of a name (STORE_CONFLICT), on insert and on update', async () => {
    await store.keys.insert(keyVersion('k', 1, 'active'));
    await expect(store.keys.insert(keyVersion('k', 2, 'active'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    expect(await store.keys.get('k@2')).toBeNull();

    await store.keys.insert(keyVersion('k', 2, 'pending'));
    await expect(store.keys.updateState('k@2', 'active', '2025-02-01T00:00:00.000Z')).rejects.toMatchObject({
      code: 'STORE_CONFLICT',
    });
    expect((await store.keys.get('k@2'))?.state).toBe('pending');
    expect((await store.keys.getActive('k'))?.keyId).toBe('k@1');
  });

  it('enforces one active version in the database itself', async () => {
    await store.keys.insert(keyVersion('k', 1, 'active'));
    await store.keys.insert(keyVersion('k', 2, 'pending'));
    expect(() => {
      withRawDatabase(temp.dbPath, (db) => db.prepare("UPDATE key_versions SET state = 'active' WHERE key_id = 'k@2'").run());
    }).toThrow(/UNIQUE constraint failed/);
  });

  it('rotates: the old version leaves active, then the new one becomes active', async () => {
    await store.keys.insert(keyVersion('k', 1, 'active'));
    await store.keys.insert(keyVersion('k', 2, 'pending'));
    await store.transaction(async (tx) => {
      await tx.keys.updateState('k@1', 'verify-only', '2025-02-01T00:00:00.000Z');
      await tx.keys.updateState('k@2', 'active', '2025-02-01T00:00:00.000Z');
    });
    expect((await store.keys.getActive('k'))?.keyId).toBe('k@2');
    expect((await store.keys.get('k@1'))?.state).toBe('verify-only');
  });

  it('reports an unknown keyId on update (STORE_NOT_FOUND)', async () => {
    await expect(store.keys.updateState('ghost@1', 'retired', '2025-02-01T00:00:00.000Z')).rejects.toMatchObject({
      code: 'STORE_NOT_FOUND',
    });
  });

  it('records the compromise instant, keeps the earliest, and never leaves compromised', async () => {
    await store.keys.insert(keyVersion('k', 1, 'active'));
    await store.keys.updateState('k@1', 'compromised', '2025-05-01T00:00:00.000Z');
    let record = await store.keys.get('k@1');
    expect(record).toMatchObject({ state: 'compromised', compromisedAt: '2025-05-01T00:00:00.000Z' });
    expect(await store.keys.getActive('k')).toBeNull();

    await store.keys.updateState('k@1', 'compromised', '2025-06-01T00:00:00.000Z');
    record = await store.keys.get('k@1');
    expect(record?.compromisedAt).toBe('2025-05-01T00:00:00.000Z');
    await store.keys.updateState('k@1', 'compromised', '2025-04-01T00:00:00.000Z');
    record = await store.keys.get('k@1');
    expect(record?.compromisedAt).toBe('2025-04-01T00:00:00.000Z');

    for (const state of ['active', 'retired', 'verify-only', 'pending'] as const) {
      await expect(store.keys.updateState('k@1', state, '2025-07-01T00:00:00.000Z')).rejects.toMatchObject({
        code: 'STORE_CONFLICT',
      });
    }
  });

  it('refuses malformed records and arguments with a TypeError, writing nothing', async () => {
    const bad = [
      keyVersion('k', 1, 'pending', { keyId: 'k@2' }),
      keyVersion('k', 1, 'pending', { name: 'bad name' }),
      keyVersion('k', 1, 'pending', { version: 0, keyId: 'k@0' }),
      keyVersion('k', 1, 'pending', { hsmKeyId: 'not hex' }),
      keyVersion('k', 1, 'pending', { publicKeyPem: 'garbage' }),
      keyVersion('k', 1, 'pending', { createdAt: '2025-02-30T00:00:00.000Z' }),
      keyVersion('k', 1, 'pending', { notBefore: '2025-01-01 00:00:00' }),
      keyVersion('k', 1, 'pending', { notAfter: '2024-01-01T00:00:00.000Z' }),
      keyVersion('k', 1, 'pending', { compromisedAt: '2025-01-01T00:00:00.000Z' }),
      keyVersion('k', 1, 'compromised', { compromisedAt: null }),
      { ...keyVersion('k', 1), algorithm: 'rsa-1024' } as unknown as ReturnType<typeof keyVersion>,
    ];
    for (const record of bad) await expect(store.keys.insert(record)).rejects.toBeInstanceOf(TypeError);
    expect(await store.keys.list()).toEqual([]);

    await store.keys.insert(keyVersion('k', 1));
    await expect(store.keys.updateState('k@1', 'revoked' as never, '2025-02-01T00:00:00.000Z')).rejects.toBeInstanceOf(
      TypeError,
    );
    await expect(store.keys.updateState('k@1', 'retired', 'yesterday')).rejects.toBeInstanceOf(TypeError);
  });

  it('never puts a stored value into an error message', async () => {
    await store.keys.insert(keyVersion('k', 1, 'pending', { hsmKeyId: 'deadbeefcafe' }));
    withRawDatabase(temp.dbPath, (db) => db.prepare("UPDATE key_versions SET created_at = 'junk' WHERE key_id = 'k@1'").run());
    const error: unknown = await store.keys.get('k@1').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'STORE_CORRUPT' });
    expect((error as Error).message).not.toMatch(/deadbeefcafe|junk/);
  });
});

describe('transactions', () => {
  it('commits every write of a successful transaction', async () => {
    const result = await store.transaction(async (tx) => {
      await tx.keys.insert(keyVersion('k', 1, 'active'));
      await tx.keys.insert(keyVersion('k', 2));
      return (await tx.keys.listVersions('k')).length;
    });
    expect(result).toBe(2);
    expect(await store.keys.listVersions('k')).toHaveLength(2);
  });

  it('rolls back every write of a transaction that throws, and rethrows its error', async () => {
    await store.keys.insert(keyVersion('k', 1, 'active'));
    const failure = new Error('work failed');
    await expect(
      store.transaction(async (tx) => {
        await tx.keys.insert(keyVersion('k', 2));
        await tx.keys.updateState('k@1', 'retired', '2025-02-01T00:00:00.000Z');
        await tx.keys.insert(keyVersion('other', 1, 'active'));
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await store.keys.list()).toEqual([keyVersion('k', 1, 'active')]);
  });

  it('rolls back when a store error inside it is not handled', async () => {
    await store.keys.insert(keyVersion('k', 1, 'active'));
    await expect(
      store.transaction(async (tx) => {
        await tx.keys.insert(keyVersion('k', 2));
        await tx.keys.insert(keyVersion('k', 1));
      }),
    ).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    expect(await store.keys.get('k@2')).toBeNull();
  });

  it('keeps earlier writes when the work handles a conflict and carries on', async () => {
    await store.keys.insert(keyVersion('k', 1, 'active'));
    await store.transaction(async (tx) => {
      await tx.keys.insert(keyVersion('k', 2));
      await expect(tx.keys.insert(keyVersion('k', 3, 'active'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await tx.keys.insert(keyVersion('k', 4));
    });
    expect((await store.keys.listVersions('k')).map((k) => k.version)).toEqual([1, 2, 4]);
  });

  it('refuses the store itself inside its work instead of deadlocking', async () => {
    await expect(
      store.transaction(async () => {
        await store.keys.list();
      }),
    ).rejects.toBeInstanceOf(TypeError);
    await expect(store.transaction(() => store.transaction(() => Promise.resolve(1)))).rejects.toBeInstanceOf(TypeError);
    // The store still works afterwards.
    expect(await store.keys.list()).toEqual([]);
  });

  it('refuses a transaction handle used after its transaction ended', async () => {
    let leaked: Parameters<Parameters<SignetStore['transaction']>[0]>[0] | undefined;
    await store.transaction((tx) => {
      leaked = tx;
      return Promise.resolve();
    });
    await expect(leaked!.keys.insert(keyVersion('k', 1))).rejects.toBeInstanceOf(TypeError);
    expect(await store.keys.list()).toEqual([]);
  });
});

describe('persistence and closing', () => {
  it('keeps data across close and reopen', async () => {
    await store.keys.insert(keyVersion('k', 1, 'active'));
    await store.keys.updateState('k@1', 'compromised', '2025-05-01T00:00:00.000Z');
    await store.close();
    store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    expect(await store.keys.get('k@1')).toMatchObject({ state: 'compromised', compromisedAt: '2025-05-01T00:00:00.000Z' });
  });

  it('is closed idempotently, and every call after close fails with STORE_UNAVAILABLE', async () => {
    await Promise.all([store.close(), store.close()]);
    await store.close();
    const calls: (() => Promise<unknown>)[] = [
      () => store.keys.list(),
      () => store.keys.get('k@1'),
      () => store.keys.listVersions('k'),
      () => store.keys.getActive('k'),
      () => store.keys.insert(keyVersion('k', 1)),
      () => store.keys.updateState('k@1', 'retired', '2025-02-01T00:00:00.000Z'),
      () => store.migrate(),
      () => store.schemaVersion(),
      () => store.transaction(() => Promise.resolve()),
      () => store.checkWritable(),
    ];
    for (const call of calls) await expect(call()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });

  it('lets calls queued before close finish, then closes', async () => {
    const pending = store.keys.insert(keyVersion('k', 1));
    const closing = store.close();
    await expect(pending).resolves.toBeUndefined();
    await closing;
    store = await openStore({ driver: 'sqlite', sqlite: { path: temp.dbPath } });
    expect(await store.keys.get('k@1')).not.toBeNull();
  });

  it('writes the health probe', async () => {
    await store.checkWritable();
    await store.checkWritable();
    const rows = withRawDatabase(temp.dbPath, (db) => db.prepare('SELECT id, written_at FROM health_probe').all());
    expect(rows).toHaveLength(1);
  });
});
