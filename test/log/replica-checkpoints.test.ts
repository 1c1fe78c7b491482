/**
 * Two transparency logs on one database, as two replicas run them: their checkpoints
 * of one tree head differ (ECDSA is randomised) and may be signed in any order, yet
 * storage keeps one note per size and neither replica fails. A stored checkpoint that
 * is not a valid note of the log is never adopted.
 *
 * The log key here is a P-256 key file signed with by `openssl pkeyutl` (which signs a
 * digest as given, as the HSM does): what is tested is the log's handling of stored
 * checkpoints, not the HSM (which the service tests exercise).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signCheckpoint, logIdOf, verifyCheckpoint } from '../../log/checkpoint.js';
import { TransparencyLog } from '../../log/transparency-log.js';
import { StoreError } from '../../store/errors.js';
import type { LogEntryInput, SignetStore } from '../../store/store.js';
import { describeStore } from '../store/backends.js';
import { digestSigner, keyPair } from './log-key.js';

const ORIGIN = 'signet.test/replicas';

function entries(count: number, from: number): LogEntryInput[] {
  return Array.from({ length: count }, (_, i) => ({
    kind: 'test/v1',
    leaf: Buffer.from(`entry ${from + i}`),
    integratedTime: 1_700_000_000,
    linkedIndex: null,
  }));
}

/** A signer that waits for `release()` before signing: a replica slow to reach its HSM. */
function gatedSigner(privateKey: string): { sign: (digest: Buffer) => Promise<Buffer>; started: Promise<void>; release: () => void } {
  let release!: () => void;
  let markStarted!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const sign = digestSigner(privateKey);
  return {
    started,
    release,
    sign: async (digest) => {
      markStarted();
      await gate;
      return sign(digest);
    },
  };
}

describe('replica checkpoints', () => {
  describeStore('two logs on one database', (t) => {
    const open = (store: SignetStore, key: ReturnType<typeof keyPair>, sign = digestSigner(key.privateKey)): TransparencyLog =>
      new TransparencyLog({ store, origin: ORIGIN, publicKeyPem: key.publicKeyPem, sign });

    it('agree on one note per size when both sign the same tree head', async () => {
      const key = keyPair();
      const other = await t.db.open();
      await t.store.log.append(entries(5, 0));
      for (let round = 0; round < 5; round += 1) {
        if (round > 0) await t.store.log.append(entries(3, 5 + 3 * (round - 1)));
        const size = await t.store.log.size();
        // Fresh logs each round: both read the same stored state, both sign `size`.
        const [a, b] = [open(t.store, key), open(other, key)];
        const [fromA, fromB] = await Promise.all([a.checkpointCovering(size), b.checkpointCovering(size)]);
        const stored = await t.store.log.checkpoint(size);
        expect(stored).not.toBeNull();
        expect(fromA.note).toBe(stored?.note);
        expect(fromB.note).toBe(stored?.note);
      }
    });

    it('adopts a larger stored checkpoint instead of failing (checkpoints never go back)', async () => {
      const key = keyPair();
      const other = await t.db.open();
      await t.store.log.append(entries(8, 0));
      const gated = gatedSigner(key.privateKey);
      const slow = open(other, key, gated.sign);
      // The slow replica plans its checkpoint over 8 entries, then waits for its HSM…
      const receipt = slow.receipt(7, { decisionIndex: null, integratedTime: 1_700_000_000 });
      const covering = slow.checkpointCovering(8);
      await gated.started;
      // …while the other appends two more and records a checkpoint of 10.
      const fast = open(t.store, key);
      await fast.append(entries(2, 8));
      const ten = await fast.checkpointCovering(10);
      expect(ten.size).toBe(10);
      gated.release();
      // The slow replica's own note of 8 cannot be stored; it adopts the stored 10.
      expect((await covering).note).toBe(ten.note);
      const answered = await receipt;
      expect(verifyCheckpoint(answered.checkpoint, ORIGIN, key.publicKeyPem).ok).toBe(true);
      if (t.backend === 'postgres') {
        // Replicas share the stored note: the receipt proves against it.
        expect(answered.checkpoint).toBe(ten.note);
        expect(answered.treeSize).toBe(10);
      }
      expect((await t.store.log.latestCheckpoint())?.size).toBe(10);
      expect(await t.store.log.checkpoint(8)).toBeNull();
      // It goes on signing from there.
      await slow.append(entries(1, 10));
      expect((await slow.checkpointCovering(11)).size).toBe(11);
    });

    it('proves an entry another replica appended: its own durable size falls short, so the round reads the size', async () => {
      const key = keyPair();
      const other = await t.db.open();
      const mine = open(t.store, key);
      await mine.append(entries(3, 0));
      await open(other, key).append(entries(4, 3));
      const receipt = await mine.receipt(6, { decisionIndex: null, integratedTime: 1_700_000_000 });
      expect(receipt.treeSize).toBe(7);
      expect(verifyCheckpoint(receipt.checkpoint, ORIGIN, key.publicKeyPem).ok).toBe(true);
    });

    it('signs its rounds over the size the store knows durable, without reading it (SQLite)', async () => {
      if (t.backend !== 'sqlite') return;
      const key = keyPair();
      let sizeReads = 0;
      const log = new Proxy(t.store.log, {
        get(target, property) {
          if (property === 'size') sizeReads += 1;
          const value: unknown = Reflect.get(target, property);
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
      const counted = Object.create(t.store, { log: { value: log } }) as SignetStore;
      const transparency = open(counted, key);
      for (let round = 0; round < 5; round += 1) {
        const [first] = await transparency.append(entries(3, 3 * round));
        const receipt = await transparency.receipt((first ?? 0) + 2, { decisionIndex: null, integratedTime: 1_700_000_000 });
        expect(receipt.treeSize).toBe(3 * (round + 1));
        expect(verifyCheckpoint(receipt.checkpoint, ORIGIN, key.publicKeyPem).ok).toBe(true);
      }
      expect(sizeReads).toBe(0);
    });

    it('signs afresh after a checkpoint could not be recorded (the database was away)', async () => {
      const key = keyPair();
      await t.store.log.append(entries(5, 0));
      // The real store, whose next checkpoint write fails as if the database were away.
      let away = true;
      const log = new Proxy(t.store.log, {
        get(target, property) {
          if (property === 'addCheckpoint' && away) {
            return () => {
              away = false;
              return Promise.reject(new StoreError('STORE_UNAVAILABLE', 'the database is away'));
            };
          }
          const value: unknown = Reflect.get(target, property);
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
      const flaky = Object.create(t.store, { log: { value: log } }) as SignetStore;
      const transparency = open(flaky, key);
      await expect(transparency.checkpointCovering(5)).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
      // The database is back: the next caller gets a recorded checkpoint, and receipts work.
      const recovered = await transparency.checkpointCovering(5);
      expect((await t.store.log.checkpoint(5))?.note).toBe(recovered.note);
      const receipt = await transparency.receipt(4, { decisionIndex: null, integratedTime: 1_700_000_000 });
      expect(receipt.treeSize).toBe(5);
      expect(verifyCheckpoint(receipt.checkpoint, ORIGIN, key.publicKeyPem).ok).toBe(true);
    });

    it('refuses a stored checkpoint that is not a valid note of the log', async () => {
      const key = keyPair();
      const stranger = keyPair();
      await t.store.log.append(entries(8, 0));
      const gated = gatedSigner(key.privateKey);
      const slow = open(t.store, key, gated.sign);
      const covering = slow.checkpointCovering(8);
      await gated.started;
      // A checkpoint of 10 with the right root, signed by another key, lands in storage.
      await t.store.log.append(entries(2, 8));
      const honest = open(t.store, key);
      const root = await honest.root(10);
      const note = await signCheckpoint({ origin: ORIGIN, size: 10, rootHash: root }, logIdOf(stranger.publicKeyPem), digestSigner(stranger.privateKey));
      await t.store.log.addCheckpoint({ size: 10, rootHash: root, note, createdAt: new Date().toISOString() });
      gated.release();
      await expect(covering).rejects.toMatchObject({ code: 'LOG_INCONSISTENT' });
    });

    it('refuses a stored checkpoint whose root is not the stored tree', async () => {
      const key = keyPair();
      await t.store.log.append(entries(8, 0));
      const gated = gatedSigner(key.privateKey);
      const slow = open(t.store, key, gated.sign);
      const covering = slow.checkpointCovering(8);
      await gated.started;
      await t.store.log.append(entries(2, 8));
      // Signed by the log key, but over a root that is not the stored tree's.
      const forged = createHash('sha256').update('another tree').digest();
      const note = await signCheckpoint({ origin: ORIGIN, size: 10, rootHash: forged }, logIdOf(key.publicKeyPem), digestSigner(key.privateKey));
      await t.store.log.addCheckpoint({ size: 10, rootHash: forged, note, createdAt: new Date().toISOString() });
      gated.release();
      await expect(covering).rejects.toMatchObject({ code: 'LOG_INCONSISTENT' });
    });
  });
});
