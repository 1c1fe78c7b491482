/**
 * Checkpoint rounds and the store's group commits (SQLite): a round that starts while a
 * group commit is on its way to the disk waits for that one group and covers its
 * entries too, so that one signature serves the receipts of both; on an idle store it
 * starts at once. Receipts stay correct either way: each proves its entry against a
 * note signed over durable entries.
 */
import { describe, expect, it } from 'vitest';
import { verifyCheckpoint } from '../../log/checkpoint.js';
import { leafHash, verifyInclusion } from '../../log/merkle.js';
import { TransparencyLog, type LogReceipt } from '../../log/transparency-log.js';
import type { LogEntryInput, SignetStore } from '../../store/store.js';
import { describeStore, yieldTurns } from '../store/backends.js';
import { digestSigner, keyPair } from './log-key.js';

const ORIGIN = 'signet.test/rounds';
const INTEGRATED_TIME = 1_700_000_000;

function entries(count: number, from: number): LogEntryInput[] {
  return Array.from({ length: count }, (_, i) => ({
    kind: 'test/v1',
    leaf: Buffer.from(`entry ${from + i}`),
    integratedTime: INTEGRATED_TIME,
    linkedIndex: null,
  }));
}

/** A promise and the function that resolves it. */
function gate(): { readonly opened: Promise<void>; readonly open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** The receipt's proof and note check out for the entry `entry ${index}`. */
function expectValidReceipt(receipt: LogReceipt, index: number, publicKeyPem: string): void {
  const verified = verifyCheckpoint(receipt.checkpoint, ORIGIN, publicKeyPem);
  expect(verified.ok).toBe(true);
  if (!verified.ok) return;
  expect(verified.checkpoint.size).toBe(receipt.treeSize);
  const leaf = leafHash(Buffer.from(`entry ${index}`));
  expect(receipt.leafHash).toBe(leaf.toString('base64'));
  const proof = receipt.inclusionProof.map((hash) => Buffer.from(hash, 'base64'));
  expect(verifyInclusion(leaf, index, receipt.treeSize, proof, verified.checkpoint.rootHash)).toBe(true);
}

describe('checkpoint rounds', () => {
  describeStore('and group commits', (t) => {
    const open = (store: SignetStore): { log: TransparencyLog; publicKeyPem: string } => {
      const key = keyPair();
      const log = new TransparencyLog({ store, origin: ORIGIN, publicKeyPem: key.publicKeyPem, sign: digestSigner(key.privateKey) });
      return { log, publicKeyPem: key.publicKeyPem };
    };
    const receiptOf = (log: TransparencyLog, index: number): Promise<LogReceipt> =>
      log.receipt(index, { decisionIndex: null, integratedTime: INTEGRATED_TIME });
    /**
     * A log past its first round (which reads the stored checkpoint, a read queued
     * behind any group commit): 3 entries under a checkpoint, and a 4th, durable, not.
     */
    const started = async (): Promise<{ log: TransparencyLog; publicKeyPem: string }> => {
      const opened = open(t.store);
      await opened.log.append(entries(3, 0));
      expect((await receiptOf(opened.log, 2)).treeSize).toBe(3);
      await opened.log.append(entries(1, 3));
      return opened;
    };
    /**
     * A group commit at work: a transaction that has appended entries 4 and 5 and is
     * held open (as one whose other writes are still running would be) until
     * `release()`; it then commits, or rolls back if `fail`.
     */
    const heldGroup = async (log: TransparencyLog, fail = false): Promise<{ release: () => void; settled: Promise<void> }> => {
      const hold = gate();
      const inside = gate();
      const settled = t.store.transaction(async (tx) => {
        await log.appendIn(tx, entries(2, 4));
        inside.open();
        await hold.opened;
        if (fail) throw new Error('abandoned');
      });
      // The test awaits the outcome; until then a rejection is not unhandled.
      settled.catch(() => undefined);
      await inside.opened;
      return { release: hold.open, settled };
    };

    it('start at once on an idle store, over what is durable', async () => {
      const { log, publicKeyPem } = open(t.store);
      await log.append(entries(3, 0));
      expect(t.store.log.commitInFlight?.()).toBeUndefined();
      const receipt = await receiptOf(log, 2);
      expect(receipt.treeSize).toBe(3);
      expectValidReceipt(receipt, 2, publicKeyPem);
    });

    it('wait for the group commit in flight and cover its entries with the same signature (SQLite)', async () => {
      if (t.backend !== 'sqlite') return;
      const { log, publicKeyPem } = await started();
      const group = await heldGroup(log);
      // The receipt of an entry durable before it waits for that group…
      const early = receiptOf(log, 3);
      group.release();
      await group.settled;
      // …and its checkpoint covers the group's entries, whose receipts then need no
      // signature of their own.
      const receipt = await early;
      expect(receipt.treeSize).toBe(6);
      expectValidReceipt(receipt, 3, publicKeyPem);
      const later = await receiptOf(log, 5);
      expect(later.checkpoint).toBe(receipt.checkpoint);
      expectValidReceipt(later, 5, publicKeyPem);
    });

    it('wait for that one group only, not for the writes queued behind it (SQLite)', async () => {
      if (t.backend !== 'sqlite') return;
      const { log, publicKeyPem } = await started();
      const group = await heldGroup(log);
      const early = receiptOf(log, 3);
      // Queued while the round waits: the next group commit's, not the one it waits for.
      const after = log.append(entries(4, 6));
      await yieldTurns(2);
      group.release();
      const receipt = await early;
      expect(receipt.treeSize).toBe(6);
      expectValidReceipt(receipt, 3, publicKeyPem);
      await group.settled;
      await after;
      const last = await receiptOf(log, 9);
      expect(last.treeSize).toBe(10);
      expectValidReceipt(last, 9, publicKeyPem);
    });

    it('go on over what is durable when the group they waited for fails (SQLite)', async () => {
      if (t.backend !== 'sqlite') return;
      const { log, publicKeyPem } = await started();
      const group = await heldGroup(log, true);
      const early = receiptOf(log, 3);
      group.release();
      await expect(group.settled).rejects.toThrow('abandoned');
      // The rolled-back entries are in no checkpoint.
      const receipt = await early;
      expect(receipt.treeSize).toBe(4);
      expectValidReceipt(receipt, 3, publicKeyPem);
      expect(await t.store.log.size()).toBe(4);
    });
  });
});
