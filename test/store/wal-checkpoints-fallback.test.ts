/**
 * If the checkpoint thread fails, the store's connection checkpoints by itself again
 * (store/sqlite/wal-checkpointer.ts, "Fail safe"): the thread here is the real one,
 * pointed at a file it cannot open, so its failure is a real one.
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import type { SignetStore } from '../../store/store.js';
import { makeTempDir, openSqliteStoreWithConnection, tokenClaim } from './sqlite-fixtures.js';

vi.mock('../../store/sqlite/wal-checkpointer.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../store/sqlite/wal-checkpointer.js')>();
  class FailingCheckpointer extends original.WalCheckpointer {
    constructor(options: ConstructorParameters<typeof original.WalCheckpointer>[0]) {
      super({ ...options, path: `${options.path}.not-there` });
    }
  }
  return { ...original, WalCheckpointer: FailingCheckpointer };
});

let temp: ReturnType<typeof makeTempDir>;
let store: SignetStore | undefined;

beforeEach(() => {
  temp = makeTempDir();
});

afterEach(async () => {
  await store?.close();
  temp.cleanup();
});

it("turns SQLite's own checkpoints back on when the checkpoint thread fails, and goes on storing", async () => {
  const opened = openSqliteStoreWithConnection({ path: temp.dbPath });
  store = opened.store;
  await store.migrate();
  await expect.poll(() => opened.connection.pragma('wal_autocheckpoint', { simple: true }), { timeout: 5_000 }).toBe(1000);
  await store.tokenUses.claim(tokenClaim('after-failure'));
  expect(await store.tokenUses.get(tokenClaim('after-failure').issuer, 'after-failure')).not.toBeNull();
});
