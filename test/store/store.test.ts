/**
 * The store on both backends (backends.ts): the key repository contract (store.ts),
 * transactions, persistence, closing and the health probe. SQLite-only matters (file
 * mode, WAL, pragmas) are in sqlite-store.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { SignetStore } from '../../store/store.js';
import { describeStore } from './backends.js';
import { keyVersion, requestHash, tokenClaim } from './sqlite-fixtures.js';

const ISSUER = tokenClaim('x').issuer;

describeStore('store', (t) => {
  describe('keys', () => {
    it('inserts and reads back versions', async () => {
      const one = keyVersion('demo-release', 1, 'active');
      const two = keyVersion('demo-release', 2, 'pending', { algorithm: 'ed25519', notAfter: '2026-01-01T00:00:00.000Z' });
      const other = keyVersion('another', 1, 'active', { algorithm: 'rsa-pss-4096' });
      await t.store.keys.insert(two);
      await t.store.keys.insert(one);
      await t.store.keys.insert(other);

      expect(await t.store.keys.get('demo-release@1')).toEqual(one);
      expect(await t.store.keys.get('demo-release@9')).toBeNull();
      expect(await t.store.keys.list()).toEqual([other, one, two]);
      expect(await t.store.keys.listVersions('demo-release')).toEqual([one, two]);
      expect(await t.store.keys.listVersions('nothing')).toEqual([]);
      expect(await t.store.keys.getActive('demo-release')).toEqual(one);
      expect(await t.store.keys.getActive('nothing')).toBeNull();
    });

    it('lists names in byte order, as SQLite compares text, whatever the collation', async () => {
      for (const name of ['b', 'B', 'a.x', 'a-x', 'a_x', 'A']) await t.store.keys.insert(keyVersion(name, 1));
      expect((await t.store.keys.list()).map((k) => k.name)).toEqual(['A', 'B', 'a-x', 'a.x', 'a_x', 'b']);
    });

    it('stores versions beyond 32 bits', async () => {
      const big = keyVersion('k', 2 ** 40, 'pending', { hsmKeyId: '0a1b' });
      await t.store.keys.insert(big);
      expect(await t.store.keys.get(`k@${2 ** 40}`)).toEqual(big);
    });

    it('returns frozen records', async () => {
      await t.store.keys.insert(keyVersion('k', 1));
      const record = await t.store.keys.get('k@1');
      expect(Object.isFrozen(record)).toBe(true);
    });

    it('stores timestamps in the canonical toISOString form', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'pending', { createdAt: '2025-03-04T05:06:07Z' }));
      expect((await t.store.keys.get('k@1'))?.createdAt).toBe('2025-03-04T05:06:07.000Z');
    });

    it('refuses a duplicate keyId (STORE_CONFLICT)', async () => {
      await t.store.keys.insert(keyVersion('k', 1));
      await expect(t.store.keys.insert(keyVersion('k', 1, 'retired'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    });

    it('refuses a second active version of a name (STORE_CONFLICT), on insert and on update', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await expect(t.store.keys.insert(keyVersion('k', 2, 'active'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect(await t.store.keys.get('k@2')).toBeNull();

      await t.store.keys.insert(keyVersion('k', 2, 'pending'));
      await expect(t.store.keys.updateState('k@2', 'active', '2025-02-01T00:00:00.000Z')).rejects.toMatchObject({
        code: 'STORE_CONFLICT',
      });
      expect((await t.store.keys.get('k@2'))?.state).toBe('pending');
      expect((await t.store.keys.getActive('k'))?.keyId).toBe('k@1');
    });

    it('enforces one active version in the database itself', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await t.store.keys.insert(keyVersion('k', 2, 'pending'));
      await expect(t.db.raw.exec("UPDATE key_versions SET state = 'active' WHERE key_id = 'k@2'")).rejects.toThrow(
        t.db.violations.unique,
      );
    });

    it('keeps one active version when two connections activate versions of a name at once', async () => {
      const other = await t.db.open();
      for (let round = 0; round < 10; round += 1) {
        const name = `race${round}`;
        for (let version = 1; version <= 4; version += 1) await t.store.keys.insert(keyVersion(name, version));
        const outcomes = await Promise.allSettled(
          [1, 2, 3, 4].map((version) =>
            (version % 2 === 0 ? t.store : other).keys.updateState(`${name}@${version}`, 'active', '2025-02-01T00:00:00.000Z'),
          ),
        );
        expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
        for (const outcome of outcomes) {
          if (outcome.status === 'rejected') expect(outcome.reason).toMatchObject({ code: 'STORE_CONFLICT' });
        }
        expect((await t.store.keys.listVersions(name)).filter((k) => k.state === 'active')).toHaveLength(1);
      }
    });

    it('rotates: the old version leaves active, then the new one becomes active', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await t.store.keys.insert(keyVersion('k', 2, 'pending'));
      await t.store.transaction(async (tx) => {
        await tx.keys.updateState('k@1', 'verify-only', '2025-02-01T00:00:00.000Z');
        await tx.keys.updateState('k@2', 'active', '2025-02-01T00:00:00.000Z');
      });
      expect((await t.store.keys.getActive('k'))?.keyId).toBe('k@2');
      expect((await t.store.keys.get('k@1'))?.state).toBe('verify-only');
    });

    it('reports an unknown keyId on update (STORE_NOT_FOUND)', async () => {
      await expect(t.store.keys.updateState('ghost@1', 'retired', '2025-02-01T00:00:00.000Z')).rejects.toMatchObject({
        code: 'STORE_NOT_FOUND',
      });
    });

    it('records the compromise instant, keeps the earliest, and never leaves compromised', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await t.store.keys.updateState('k@1', 'compromised', '2025-05-01T00:00:00.000Z');
      let record = await t.store.keys.get('k@1');
      expect(record).toMatchObject({ state: 'compromised', compromisedAt: '2025-05-01T00:00:00.000Z' });
      expect(await t.store.keys.getActive('k')).toBeNull();

      await t.store.keys.updateState('k@1', 'compromised', '2025-06-01T00:00:00.000Z');
      record = await t.store.keys.get('k@1');
      expect(record?.compromisedAt).toBe('2025-05-01T00:00:00.000Z');
      await t.store.keys.updateState('k@1', 'compromised', '2025-04-01T00:00:00.000Z');
      record = await t.store.keys.get('k@1');
      expect(record?.compromisedAt).toBe('2025-04-01T00:00:00.000Z');

      for (const state of ['active', 'retired', 'verify-only', 'pending'] as const) {
        await expect(t.store.keys.updateState('k@1', state, '2025-07-01T00:00:00.000Z')).rejects.toMatchObject({
          code: 'STORE_CONFLICT',
        });
      }
    });

    it('moves state_changed_at only when the state changes', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await t.store.keys.updateState('k@1', 'compromised', '2025-05-01T00:00:00.000Z');
      await t.store.keys.updateState('k@1', 'compromised', '2025-04-01T00:00:00.000Z');
      expect(await t.db.raw.value("SELECT state_changed_at FROM key_versions WHERE key_id = 'k@1'")).toBe(
        '2025-05-01T00:00:00.000Z',
      );
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
      for (const record of bad) await expect(t.store.keys.insert(record)).rejects.toBeInstanceOf(TypeError);
      expect(await t.store.keys.list()).toEqual([]);

      await t.store.keys.insert(keyVersion('k', 1));
      await expect(
        t.store.keys.updateState('k@1', 'revoked' as never, '2025-02-01T00:00:00.000Z'),
      ).rejects.toBeInstanceOf(TypeError);
      await expect(t.store.keys.updateState('k@1', 'retired', 'yesterday')).rejects.toBeInstanceOf(TypeError);
    });

    it('never puts a stored value into an error message', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'pending', { hsmKeyId: 'deadbeefcafe' }));
      await t.db.raw.exec("UPDATE key_versions SET created_at = 'junk' WHERE key_id = 'k@1'");
      const error: unknown = await t.store.keys.get('k@1').catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'STORE_CORRUPT' });
      expect((error as Error).message).not.toMatch(/deadbeefcafe|junk/);
    });
  });

  describe('transactions', () => {
    it('commits every write of a successful transaction', async () => {
      const result = await t.store.transaction(async (tx) => {
        await tx.keys.insert(keyVersion('k', 1, 'active'));
        await tx.keys.insert(keyVersion('k', 2));
        return (await tx.keys.listVersions('k')).length;
      });
      expect(result).toBe(2);
      expect(await t.store.keys.listVersions('k')).toHaveLength(2);
    });

    it('rolls back every write of a transaction that throws, and rethrows its error', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      const failure = new Error('work failed');
      await expect(
        t.store.transaction(async (tx) => {
          await tx.keys.insert(keyVersion('k', 2));
          await tx.keys.updateState('k@1', 'retired', '2025-02-01T00:00:00.000Z');
          await tx.keys.insert(keyVersion('other', 1, 'active'));
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect(await t.store.keys.list()).toEqual([keyVersion('k', 1, 'active')]);
    });

    it('rolls back when a store error inside it is not handled', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await expect(
        t.store.transaction(async (tx) => {
          await tx.keys.insert(keyVersion('k', 2));
          await tx.keys.insert(keyVersion('k', 1));
        }),
      ).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect(await t.store.keys.get('k@2')).toBeNull();
    });

    it('keeps earlier writes when the work handles a conflict and carries on', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await t.store.transaction(async (tx) => {
        await tx.keys.insert(keyVersion('k', 2));
        await expect(tx.keys.insert(keyVersion('k', 3, 'active'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
        await tx.keys.insert(keyVersion('k', 4));
      });
      expect((await t.store.keys.listVersions('k')).map((k) => k.version)).toEqual([1, 2, 4]);
    });

    it('runs calls made at once on one handle one after the other', async () => {
      await t.store.transaction(async (tx) => {
        await Promise.all([1, 2, 3, 4, 5].map((version) => tx.keys.insert(keyVersion('k', version))));
        await Promise.all([
          expect(tx.keys.insert(keyVersion('k', 1))).rejects.toMatchObject({ code: 'STORE_CONFLICT' }),
          tx.keys.insert(keyVersion('k', 6)),
        ]);
      });
      expect((await t.store.keys.listVersions('k')).map((k) => k.version)).toEqual([1, 2, 3, 4, 5, 6]);
    });

    it('refuses the store itself inside its work instead of deadlocking', async () => {
      await expect(
        t.store.transaction(async () => {
          await t.store.keys.list();
        }),
      ).rejects.toBeInstanceOf(TypeError);
      await expect(t.store.transaction(() => t.store.transaction(() => Promise.resolve(1)))).rejects.toBeInstanceOf(TypeError);
      // The store still works afterwards.
      expect(await t.store.keys.list()).toEqual([]);
    });

    it('refuses a transaction handle used after its transaction ended', async () => {
      let leaked: Parameters<Parameters<SignetStore['transaction']>[0]>[0] | undefined;
      await t.store.transaction((tx) => {
        leaked = tx;
        return Promise.resolve();
      });
      await expect(leaked!.keys.insert(keyVersion('k', 1))).rejects.toBeInstanceOf(TypeError);
      expect(await t.store.keys.list()).toEqual([]);
    });

    it('rolls back only the transaction that threw; the others made at once commit', async () => {
      const entry = { kind: 'signet.decision/v1', leaf: Buffer.from('{"t":1}'), integratedTime: 1, linkedIndex: null };
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) =>
          t.store.transaction(async (tx) => {
            await tx.keys.insert(keyVersion(`t${i}`, 1));
            const appended = await tx.log.append([entry, entry]);
            await tx.counters.consume([{ counter: 'usage:k', window: 'total', limit: 100 }]);
            if (i % 4 === 1) throw new Error(`transaction ${i} changed its mind`);
            return appended.firstIndex;
          }),
        ),
      );
      const committed = outcomes.flatMap((outcome, i) => (outcome.status === 'fulfilled' ? [i] : []));
      expect(committed).toEqual([0, 2, 3, 4, 6, 7, 8, 10, 11]);
      for (const [i, outcome] of outcomes.entries()) {
        if (outcome.status === 'rejected') expect((outcome.reason as Error).message).toBe(`transaction ${i} changed its mind`);
      }
      expect((await t.store.keys.list()).map((k) => k.name).sort()).toEqual(committed.map((i) => `t${i}`).sort());
      expect(await t.store.log.size()).toBe(2 * committed.length);
      expect(await t.store.counters.current('usage:k', 'total')).toBe(committed.length);
      // The committed transactions' entries are where they were told, with no gap.
      const firstIndexes = outcomes.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
      expect([...firstIndexes].sort((a, b) => a - b)).toEqual(committed.map((_, k) => 2 * k));
    });

    it('treats transactions begun with `concurrent` as the others: each commits, or rolls back alone', async () => {
      const entry = { kind: 'signet.decision/v1', leaf: Buffer.from('{"t":1}'), integratedTime: 1, linkedIndex: null };
      const outcomes = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) =>
          t.store.transaction(
            async (tx) => {
              const claim = await tx.tokenUses.claim(tokenClaim(`jti-${i % 10}`, `request-${i}`));
              if (claim.kind === 'used') return 'used';
              await tx.counters.consume([{ counter: 'usage:k', window: 'total', limit: 100 }]);
              const appended = await tx.log.append([entry, entry]);
              if (i % 4 === 1) throw new Error(`transaction ${i} changed its mind`);
              return appended.firstIndex;
            },
            { concurrent: true },
          ),
        ),
      );
      // 1, 5 and 9 throw; 10 reuses the token 0 used; 11 the token of 1, which threw.
      for (const i of [1, 5, 9]) expect(outcomes[i]).toMatchObject({ status: 'rejected', reason: { message: `transaction ${i} changed its mind` } });
      expect(outcomes[10]).toEqual({ status: 'fulfilled', value: 'used' });
      const committed = [0, 2, 3, 4, 6, 7, 8, 11];
      const firstIndexes = committed.map((i) => (outcomes[i]?.status === 'fulfilled' ? outcomes[i].value : undefined));
      expect([...firstIndexes].sort((a, b) => Number(a) - Number(b))).toEqual(committed.map((_, k) => 2 * k));
      expect(await t.store.log.size()).toBe(2 * committed.length);
      expect(await t.store.counters.current('usage:k', 'total')).toBe(committed.length);
      for (const i of [5, 9]) expect(await t.store.tokenUses.get(ISSUER, `jti-${i}`)).toBeNull();
      expect(await t.store.tokenUses.get(ISSUER, 'jti-1')).toMatchObject({ requestHash: requestHash('request-11') });
    });

    it('answers a transaction that writes nothing', async () => {
      expect(await t.store.transaction(() => Promise.resolve('nothing'))).toBe('nothing');
      expect(await t.store.transaction(async (tx) => (await tx.keys.list()).length)).toBe(0);
    });
  });

  describe('persistence and closing', () => {
    it('keeps data across close and reopen', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await t.store.keys.updateState('k@1', 'compromised', '2025-05-01T00:00:00.000Z');
      const reopened = await t.reopen();
      expect(await reopened.keys.get('k@1')).toMatchObject({ state: 'compromised', compromisedAt: '2025-05-01T00:00:00.000Z' });
    });

    it('names its backend', () => {
      expect(t.store.kind).toBe(t.backend);
    });

    it('is closed idempotently, and every call after close fails with STORE_UNAVAILABLE', async () => {
      const store = t.store;
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

    it('lets calls made before close finish, then closes', async () => {
      const entry = { kind: 'signet.decision/v1', leaf: Buffer.from('{}'), integratedTime: 1, linkedIndex: null };
      const usage = { counter: 'usage:key:k@1', window: 'total', limit: 10 };
      const pending = [
        t.store.keys.insert(keyVersion('k', 1)),
        // Appends and consumes made at once are written together (group commit).
        ...Array.from({ length: 5 }, () => t.store.log.append([entry])),
        ...Array.from({ length: 5 }, () => t.store.counters.consume([usage])),
      ];
      const closing = t.store.close();
      await expect(t.store.log.append([entry])).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(t.store.counters.consume([usage])).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await Promise.all(pending);
      await closing;
      const reopened = await t.db.open();
      expect(await reopened.keys.get('k@1')).not.toBeNull();
      expect(await reopened.log.size()).toBe(5);
      expect(await reopened.counters.current(usage.counter, 'total')).toBe(5);
    });

    it('writes the health probe', async () => {
      await t.store.checkWritable();
      await t.store.checkWritable();
      const rows = await t.db.raw.query('SELECT id, written_at FROM health_probe');
      expect(rows).toHaveLength(1);
    });
  });
});
