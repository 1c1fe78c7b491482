/**
 * WAL checkpoints on a worker thread (store/sqlite/wal-checkpointer.ts): the store's
 * connection never checkpoints inside a COMMIT, the thread copies the WAL back and lets
 * the writer start it again under steady writes, and closing leaves the files as SQLite
 * leaves them. The fallback to SQLite's own checkpoints is in
 * wal-checkpoints-fallback.test.ts (it replaces a module).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import { WalCheckpointer } from '../../store/sqlite/wal-checkpointer.js';
import type { SignetStore } from '../../store/store.js';
import { makeTempDir, openSqliteStoreWithConnection } from './sqlite-fixtures.js';

let temp: ReturnType<typeof makeTempDir>;
let store: SignetStore | undefined;

beforeEach(() => {
  temp = makeTempDir();
});

afterEach(async () => {
  await store?.close();
  store = undefined;
  temp.cleanup();
});

const LEAF_BYTES = 900;

/** Single-entry appends from `writers` concurrent callers for `ms`; resolves with how many were made. */
async function appendFor(target: SignetStore, ms: number, writers = 16): Promise<number> {
  const end = Date.now() + ms;
  let appended = 0;
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (Date.now() < end) {
        await target.log.append([{ kind: 'test', leaf: randomBytes(LEAF_BYTES), integratedTime: 1, linkedIndex: null }]);
        appended += 1;
      }
    }),
  );
  return appended;
}

describe('background WAL checkpoints', () => {
  it("turn off the store's own checkpoints, and keep the WAL bounded under steady writes by copying it back while the store is open", async () => {
    const opened = openSqliteStoreWithConnection({ path: temp.dbPath });
    store = opened.store;
    await store.migrate();
    expect(opened.connection.pragma('wal_autocheckpoint', { simple: true })).toBe(0);

    let largestWal = 0;
    const sampler = setInterval(() => {
      largestWal = Math.max(largestWal, statSync(`${temp.dbPath}-wal`).size);
    }, 20);
    let appended: number;
    try {
      appended = await appendFor(store, 3_000);
    } finally {
      clearInterval(sampler);
    }
    const leafBytes = appended * LEAF_BYTES;
    // The leaves reached the database file while the store was open. And the WAL was
    // started again from its beginning: a WAL that is never started again holds every
    // frame written since it was, so it would be larger than all the leaves (each leaf is
    // in at least one frame), where one reused from the start is as large as its
    // longest cycle (about 250 ms of writes here).
    expect(leafBytes).toBeGreaterThan(4_000_000);
    expect(statSync(temp.dbPath).size).toBeGreaterThan(leafBytes * 0.8);
    expect(largestWal).toBeLessThan(leafBytes);
    expect(await store.log.size()).toBe(appended);

    await store.close();
    store = undefined;
    // The store's connection closes last: SQLite checkpoints and removes the WAL, as always.
    expect(existsSync(`${temp.dbPath}-wal`)).toBe(false);
    store = openSqliteStore({ path: temp.dbPath });
    expect(await store.log.size()).toBe(appended);
  });

  it('are off when asked, and for a read-only store', async () => {
    const opened = openSqliteStoreWithConnection({ path: temp.dbPath, backgroundCheckpoints: false });
    await opened.store.migrate();
    expect(opened.connection.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    await opened.store.close();
    const readonly = openSqliteStoreWithConnection({ path: temp.dbPath, readonly: true });
    store = readonly.store;
    expect(readonly.connection.pragma('wal_autocheckpoint', { simple: true })).toBe(1000);
    expect(() => openSqliteStore({ path: temp.dbPath, backgroundCheckpoints: 'yes' as unknown as boolean })).toThrow(TypeError);
  });
});

describe('WalCheckpointer', () => {
  it('reports a thread that cannot open the database once, with the SQLite error code and nothing else', async () => {
    const failures: string[] = [];
    const checkpointer = new WalCheckpointer({
      path: `${temp.dir}/missing.db`,
      onFailure: (code) => failures.push(code),
      holdWrites: () => undefined,
    });
    await expect.poll(() => failures, { timeout: 5_000 }).toEqual(['SQLITE_CANTOPEN']);
    expect(checkpointer.running).toBe(false);
    await checkpointer.stop();
    expect(failures).toEqual(['SQLITE_CANTOPEN']);
  });

  it('gives the checkpoints back (CATCH_UP_TIMEOUT) once catch-ups time out three times in a row, and ends its thread', async () => {
    const opened = openSqliteStore({ path: temp.dbPath, backgroundCheckpoints: false });
    store = opened;
    await opened.migrate();
    const failures: string[] = [];
    let holds = 0;
    // A catch-up timeout of 0 ms stands for a disk whose fsyncs outlast every hold.
    const checkpointer = new WalCheckpointer({
      path: temp.dbPath,
      onFailure: (code) => failures.push(code),
      holdWrites: (task) => {
        holds += 1;
        void task();
      },
      intervalMs: 10,
      catchUpTimeoutMs: 0,
    });
    // Writes until the checkpointer gives up (each run that finds new frames asks for a hold).
    const deadline = Date.now() + 10_000;
    while (failures.length === 0 && Date.now() < deadline) await appendFor(opened, 50, 2);
    expect(failures).toEqual(['CATCH_UP_TIMEOUT']);
    // At least three holds; more if the thread answered one before its timeout.
    expect(holds).toBeGreaterThanOrEqual(3);
    expect(checkpointer.running).toBe(false);
    const holdsAtFailure = holds;
    await appendFor(opened, 100, 2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(holds).toBe(holdsAtFailure);
    await checkpointer.stop();
    expect(failures).toEqual(['CATCH_UP_TIMEOUT']);
  });

  it('does not report a failure when stopped', async () => {
    const opened = openSqliteStore({ path: temp.dbPath, backgroundCheckpoints: false });
    store = opened;
    await opened.migrate();
    const failures: string[] = [];
    const checkpointer = new WalCheckpointer({ path: temp.dbPath, onFailure: (code) => failures.push(code), holdWrites: () => undefined });
    expect(checkpointer.running).toBe(true);
    await checkpointer.stop();
    expect(checkpointer.running).toBe(false);
    expect(failures).toEqual([]);
  });
});
