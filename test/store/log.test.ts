/**
 * The transparency log's storage on both backends: entries with contiguous indexes
 * however appends interleave (on one store, and on two sharing the database), the stored
 * Merkle nodes exactly those of the RFC 9162 tree (checked against the reference in
 * test/log/reference.ts, which shares no code with log/merkle.ts), damaged rows reported
 * rather than served, and the checkpoint rules. Appends from two PostgreSQL replicas
 * under real parallelism are in postgres.test.ts.
 */
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  consistencyProof,
  emptyRoot,
  inclusionPlan,
  inclusionProof,
  leafHash,
  nodeKey,
  nodesNeeded,
  consistencyPlan,
  rootPlan,
  treeRoot,
  type NodeLookup,
  type NodeRef,
} from '../../log/merkle.js';
import type { CheckpointRecord, LogEntryInput, LogEntryRecord } from '../../store/store.js';
import { LEAF_HASH_BUCKET_ENTRIES, LEAF_HASH_LOOKUP_SQL } from '../../store/sqlite/sqlite-log.js';
import { MAX_APPEND_ENTRIES, MAX_LEAF_BYTES } from '../../store/validation.js';
import { ReferenceTree, mth, path, proof } from '../log/reference.js';
import { describeStore, yieldTurns } from './backends.js';

/** A leaf that names its writer, so a read-back can be matched to whoever appended it. */
function leafOf(tag: string): Buffer {
  return Buffer.from(JSON.stringify({ kind: 'test', tag }));
}

function input(tag: string, overrides: Partial<LogEntryInput> = {}): LogEntryInput {
  return { kind: 'signet.decision/v1', leaf: leafOf(tag), integratedTime: 1_700_000_000, linkedIndex: null, ...overrides };
}

function inputs(prefix: string, count: number): LogEntryInput[] {
  return Array.from({ length: count }, (_, i) => input(`${prefix}-${i}`));
}

/** The perfect subtrees of a tree of `size` leaves, with their hashes computed by the reference. */
function referenceNodes(leaves: readonly Buffer[]): Map<string, Buffer> {
  return new ReferenceTree(leaves).perfectSubtrees();
}

function expectSameNodes(actual: Map<string, Buffer>, expected: Map<string, Buffer>): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [key, hash] of expected) expect(actual.get(key)?.toString('hex'), key).toBe(hash.toString('hex'));
}

describeStore('log', (t) => {
  /** A lookup over the nodes that `t.store.log.nodes` returns for `refs`. */
  async function lookupFor(refs: readonly NodeRef[]): Promise<NodeLookup> {
    const hashes = await t.store.log.nodes(refs);
    return (ref) => {
      const hash = hashes.get(nodeKey(ref));
      if (hash === undefined) throw new Error(`node ${nodeKey(ref)} was not fetched`);
      return hash;
    };
  }

  /**
   * Every stored node, keyed `level:index`, read outside the store: PostgreSQL's
   * log_nodes rows; on SQLite each entry's leaf hash (level 0) and the subtree hashes its
   * row holds, level 1 first (migration 8).
   */
  async function storedNodes(): Promise<Map<string, Buffer>> {
    if (t.backend === 'postgres') {
      const rows = (await t.db.raw.query('SELECT level, idx, hash FROM log_nodes')) as { level: number; idx: number; hash: Buffer }[];
      return new Map(rows.map((row) => [`${row.level}:${row.idx}`, row.hash]));
    }
    const rows = (await t.db.raw.query('SELECT idx, leaf_hash, subtree_hashes FROM log_entries')) as { idx: number; leaf_hash: Buffer; subtree_hashes: Buffer | null }[];
    const nodes = new Map<string, Buffer>();
    for (const row of rows) {
      nodes.set(`0:${row.idx}`, row.leaf_hash);
      const subtrees = row.subtree_hashes ?? Buffer.alloc(0);
      for (let level = 1; level * 32 <= subtrees.length; level += 1) {
        nodes.set(`${level}:${(row.idx + 1) / 2 ** level - 1}`, subtrees.subarray((level - 1) * 32, level * 32));
      }
    }
    return nodes;
  }

  /**
   * The outcome of many appends: their ranges must tile [0, size) exactly, and every entry
   * must hold the leaf its appender wrote there.
   */
  async function expectContiguous(
    appended: readonly { firstIndex: number; size: number; leaves: readonly Buffer[] }[],
  ): Promise<void> {
    const size = await t.store.log.size();
    const owner: (Buffer | undefined)[] = new Array<Buffer | undefined>(size);
    for (const { firstIndex, size: after, leaves } of appended) {
      expect(after - firstIndex).toBe(leaves.length);
      leaves.forEach((leaf, position) => {
        const index = firstIndex + position;
        expect(index).toBeLessThan(size);
        expect(owner[index], `index ${index} given twice`).toBeUndefined();
        owner[index] = leaf;
      });
    }
    for (let index = 0; index < size; index += 1) expect(owner[index], `index ${index} given to nobody`).toBeDefined();
    for (let start = 0; start < size; start += 1000) {
      const records = await t.store.log.entries(start, Math.min(size, start + 1000));
      for (const record of records) expect(record.leaf.equals(owner[record.index]!)).toBe(true);
    }
    // The tree over those leaves is the one the reference builds.
    const leaves = owner as Buffer[];
    expectSameNodes(await storedNodes(), referenceNodes(leaves));
  }

  describe('append, size, entry, entries', () => {
    it('starts empty', async () => {
      expect(await t.store.log.size()).toBe(0);
      expect(await t.store.log.entry(0)).toBeNull();
      expect(await t.store.log.entries(0, 0)).toEqual([]);
      expect(await t.store.log.entries(0, 10)).toEqual([]);
      expect(await t.store.log.append([])).toEqual({ firstIndex: 0, size: 0 });
    });

    it('appends in order from index 0 and reads back exactly what was written', async () => {
      const first = [input('a'), input('b', { kind: 'hashedrekord/0.0.1', integratedTime: 0 }), input('c')];
      expect(await t.store.log.append(first)).toEqual({ firstIndex: 0, size: 3 });
      const second = [input('d', { linkedIndex: 1 }), input('e', { linkedIndex: 3, integratedTime: Number.MAX_SAFE_INTEGER })];
      expect(await t.store.log.append(second)).toEqual({ firstIndex: 3, size: 5 });
      expect(await t.store.log.append([])).toEqual({ firstIndex: 5, size: 5 });
      expect(await t.store.log.size()).toBe(5);

      const all = [...first, ...second];
      const expected: LogEntryRecord[] = all.map((entry, index) => ({ ...entry, index, leafHash: leafHash(entry.leaf) }));
      for (let index = 0; index < 5; index += 1) expect(await t.store.log.entry(index)).toEqual(expected[index]);
      expect(await t.store.log.entry(5)).toBeNull();
      expect(await t.store.log.entries(1, 4)).toEqual(expected.slice(1, 4));
      expect(await t.store.log.entries(3, 1000)).toEqual(expected.slice(3));
      expect(await t.store.log.entries(5, 5)).toEqual([]);
      expect(await t.store.log.entries(7, 9)).toEqual([]);
    });

    it('accepts a leaf given as a plain Uint8Array, and leaves of the size limit', async () => {
      const leaf = new Uint8Array([1, 2, 3]);
      await t.store.log.append([{ ...input('x'), leaf: leaf as Buffer }]);
      await t.store.log.append([{ ...input('y'), leaf: Buffer.alloc(MAX_LEAF_BYTES, 7) }]);
      expect((await t.store.log.entry(0))?.leaf).toEqual(Buffer.from([1, 2, 3]));
      expect((await t.store.log.entry(1))?.leaf.length).toBe(MAX_LEAF_BYTES);
    });

    it('refuses invalid entries with a TypeError and writes nothing of the batch', async () => {
      await t.store.log.append([input('existing')]);
      const bad: Partial<Record<keyof LogEntryInput, unknown>>[] = [
        { kind: '' },
        { kind: 'Upper' },
        { kind: 'with space' },
        { kind: 'x'.repeat(65) },
        { kind: 'é' },
        { kind: 7 },
        { leaf: Buffer.alloc(0) },
        { leaf: Buffer.alloc(MAX_LEAF_BYTES + 1) },
        { leaf: 'text' },
        { integratedTime: -1 },
        { integratedTime: 1.5 },
        { integratedTime: Number.NaN },
        { integratedTime: 2 ** 53 },
        { linkedIndex: -1 },
        { linkedIndex: 0.5 },
        { linkedIndex: undefined },
        // Not earlier than the entry itself, which would be at index 2.
        { linkedIndex: 2 },
        { linkedIndex: 3 },
        { linkedIndex: 99 },
      ];
      for (const overrides of bad) {
        const batch = [input('ok'), { ...input('bad'), ...overrides } as LogEntryInput];
        await expect(t.store.log.append(batch), JSON.stringify(overrides)).rejects.toThrow(TypeError);
      }
      await expect(t.store.log.append(null as unknown as LogEntryInput[])).rejects.toThrow(TypeError);
      await expect(t.store.log.append([null] as unknown as LogEntryInput[])).rejects.toThrow(TypeError);
      await expect(t.store.log.append(inputs('many', MAX_APPEND_ENTRIES + 1))).rejects.toThrow(TypeError);
      expect(await t.store.log.size()).toBe(1);
      expect((await storedNodes()).size).toBe(1);
      // A link to an earlier entry of the same batch is fine.
      await t.store.log.append([input('p'), input('q', { linkedIndex: 1 }), input('r', { linkedIndex: 2 })]);
      expect((await t.store.log.entry(3))?.linkedIndex).toBe(2);
    });

    it('refuses invalid reads with a TypeError', async () => {
      await expect(t.store.log.entry(-1)).rejects.toThrow(TypeError);
      await expect(t.store.log.entry(1.5)).rejects.toThrow(TypeError);
      await expect(t.store.log.entry('0' as unknown as number)).rejects.toThrow(TypeError);
      await expect(t.store.log.entries(2, 1)).rejects.toThrow(TypeError);
      await expect(t.store.log.entries(-1, 1)).rejects.toThrow(TypeError);
      await expect(t.store.log.entries(0, 1001)).rejects.toThrow(TypeError);
      await expect(t.store.log.entries(5, 1005)).resolves.toEqual([]);
      await expect(t.store.log.indexOfLeafHash(Buffer.alloc(31))).rejects.toThrow(TypeError);
      await expect(t.store.log.indexOfLeafHash('00' as unknown as Buffer)).rejects.toThrow(TypeError);
    });

    it('reads and appends inside transactions, and a failed transaction leaves nothing behind', async () => {
      await t.store.log.append(inputs('base', 3));
      await expect(
        t.store.transaction(async (tx) => {
          expect(await tx.log.append(inputs('rolled-back', 4))).toEqual({ firstIndex: 3, size: 7 });
          expect(await tx.log.size()).toBe(7);
          expect((await tx.log.nodes([{ level: 1, index: 2 }])).size).toBe(1);
          throw new Error('abandon');
        }),
      ).rejects.toThrow('abandon');
      expect(await t.store.log.size()).toBe(3);
      expect((await storedNodes()).size).toBe(4);
      const result = await t.store.transaction(async (tx) => {
        const appended = await tx.log.append(inputs('kept', 2));
        const hashes = await tx.log.nodes(rootPlan(appended.size));
        const root = treeRoot(appended.size, (ref) => hashes.get(nodeKey(ref))!);
        await tx.log.addCheckpoint({ size: appended.size, rootHash: root, note: 'note\n', createdAt: '2025-01-01T00:00:00Z' });
        return appended;
      });
      expect(result).toEqual({ firstIndex: 3, size: 5 });
      expect((await t.store.log.latestCheckpoint())?.size).toBe(5);
    });

    it('knows the size its own durable appends reached, never one rolled back or another connection’s (SQLite)', async () => {
      if (t.backend !== 'sqlite') return;
      const durableSize = (): number | undefined => t.store.log.durableSize?.();
      expect(durableSize()).toBe(0);
      const appending = t.store.log.append(inputs('first', 3));
      // Committed or not, it is not durable before the append resolves.
      expect(durableSize()).toBe(0);
      await appending;
      expect(durableSize()).toBe(3);
      await expect(
        t.store.transaction(async (tx) => {
          await tx.log.append(inputs('rolled-back', 4));
          throw new Error('abandon');
        }),
      ).rejects.toThrow('abandon');
      expect(durableSize()).toBe(3);
      await t.store.transaction(async (tx) => tx.log.append(inputs('kept', 1)));
      expect(durableSize()).toBe(4);
      // Entries another connection appended are in the size read, not in the lower bound.
      const other = await t.db.open();
      await other.log.append(inputs('other', 2));
      expect(other.log.durableSize?.()).toBe(6);
      expect(durableSize()).toBe(4);
      expect(await t.store.log.size()).toBe(6);
    });
  });

  describe('commitInFlight (SQLite)', () => {
    it('is undefined on an idle store and with only a deferred write waiting', async () => {
      if (t.backend !== 'sqlite') return;
      expect(t.store.log.commitInFlight?.()).toBeUndefined();
      await t.store.log.append(inputs('first', 1));
      expect(t.store.log.commitInFlight?.()).toBeUndefined();
      // A checkpoint record is deferred: it schedules no group commit of its own.
      const recording = t.store.log.addCheckpoint({ size: 1, rootHash: leafHash(leafOf('first0')), note: 'note\n', createdAt: '2025-01-01T00:00:00Z' });
      expect(t.store.log.commitInFlight?.()).toBeUndefined();
      await recording;
    });

    it('resolves once the group scheduled or running has settled, not after the next one', async () => {
      if (t.backend !== 'sqlite') return;
      const durableSize = (): number | undefined => t.store.log.durableSize?.();
      // Scheduled, not started: the wait ends once that group is durable.
      const scheduled = t.store.log.append(inputs('scheduled', 2));
      const waited = t.store.log.commitInFlight?.();
      expect(waited).toBeDefined();
      await waited;
      expect(durableSize()).toBe(2);
      await scheduled;
      // Running (a transaction held open): the wait covers it, not a write queued after.
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let running!: () => void;
      const started = new Promise<void>((resolve) => (running = resolve));
      const transaction = t.store.transaction(async (tx) => {
        await tx.log.append(inputs('held', 3));
        running();
        await held;
      });
      await started;
      const whileRunning = t.store.log.commitInFlight?.();
      expect(whileRunning).toBeDefined();
      const queuedAfter = t.store.log.append(inputs('after', 4));
      release();
      await whileRunning;
      expect(durableSize()).toBe(5);
      await transaction;
      await queuedAfter;
      expect(durableSize()).toBe(9);
    });
  });

  describe('indexOfLeafHash', () => {
    it('returns the lowest index holding a leaf, or null', async () => {
      await t.store.log.append([input('a'), input('b'), input('a'), input('b')]);
      expect(await t.store.log.indexOfLeafHash(leafHash(leafOf('a')))).toBe(0);
      expect(await t.store.log.indexOfLeafHash(leafHash(leafOf('b')))).toBe(1);
      expect(await t.store.log.indexOfLeafHash(leafHash(leafOf('c')))).toBeNull();
    });

    it('finds leaves in every bucket of the SQLite index, the lowest index of a repeated leaf first', async () => {
      // Three full buckets and a partial one; 'twin' sits in the second and the fourth.
      const entries = inputs('bucket', 3 * LEAF_HASH_BUCKET_ENTRIES + 10);
      entries[LEAF_HASH_BUCKET_ENTRIES + 7] = input('twin');
      entries[3 * LEAF_HASH_BUCKET_ENTRIES + 3] = input('twin');
      await t.store.log.append(entries);
      expect(await t.store.log.indexOfLeafHash(leafHash(leafOf('twin')))).toBe(LEAF_HASH_BUCKET_ENTRIES + 7);
      for (const index of [0, LEAF_HASH_BUCKET_ENTRIES - 1, LEAF_HASH_BUCKET_ENTRIES, 2 * LEAF_HASH_BUCKET_ENTRIES + 100, entries.length - 1]) {
        expect(await t.store.log.indexOfLeafHash(leafHash(entries[index]!.leaf))).toBe(index);
      }
      expect(await t.store.log.indexOfLeafHash(leafHash(leafOf('absent')))).toBeNull();
    });

    it('answers null on an empty log', async () => {
      expect(await t.store.log.indexOfLeafHash(leafHash(leafOf('a')))).toBeNull();
    });

    // The statements are the stores' own (sqlite-log.ts, postgres-log.ts).
    it('finds the row through the leaf-hash index', async () => {
      if (t.backend === 'sqlite') {
        const plan = (await t.db.raw.query(`EXPLAIN QUERY PLAN ${LEAF_HASH_LOOKUP_SQL}`, [3, Buffer.alloc(8), Buffer.alloc(32)])) as { detail: string }[];
        // One seek per bucket on both columns of the index, never a scan of the entries.
        const steps = plan.map((step) => step.detail).join('\n');
        expect(steps).toMatch(/SEARCH log_entries USING INDEX log_entries_leaf_hash_bucket \(<expr>=\? AND <expr>=\?\)/);
        expect(steps).not.toMatch(/SCAN log_entries/);
        return;
      }
      // A few thousand rows, so that the planner weighs the index against the primary
      // key walked in order on a realistic table, and fresh statistics.
      for (let batch = 0; batch < 4; batch += 1) await t.store.log.append(inputs(`plan${batch}`, 1000));
      await t.db.raw.exec('ANALYZE log_entries');
      const plan = (await t.db.raw.query(
        `EXPLAIN WITH matches AS MATERIALIZED (
           SELECT idx, kind, leaf, leaf_hash, integrated_time, linked_idx FROM log_entries
            WHERE substring(leaf_hash FROM 1 FOR 8) = ? AND leaf_hash = ?
         )
         SELECT idx, kind, leaf, leaf_hash, integrated_time, linked_idx FROM matches ORDER BY idx LIMIT 1`,
        [Buffer.alloc(8), Buffer.alloc(32)],
      )) as { 'QUERY PLAN': string }[];
      expect(plan.map((step) => step['QUERY PLAN']).join('\n')).toMatch(/Index Scan using log_entries_leaf_hash_prefix/);
    });
  });

  describe('contiguous indexes under concurrent appenders', () => {
    it('50 plain appenders in one turn and across turns: no gap, no index twice', async () => {
      const calls = Array.from({ length: 50 }, async (_, writer) => {
        await yieldTurns(writer % 4);
        const leaves = inputs(`w${writer}`, 1 + (writer % 7));
        const result = await t.store.log.append(leaves);
        return { ...result, leaves: leaves.map((entry) => entry.leaf) };
      });
      await expectContiguous(await Promise.all(calls));
    });

    it('50 appenders in transactions, some of them rolled back: no gap, no index twice', async () => {
      const calls = Array.from({ length: 50 }, async (_, writer) => {
        const leaves = inputs(`t${writer}`, 1 + (writer % 5));
        try {
          const result = await t.store.transaction(async (tx) => {
            await yieldTurns(writer % 3);
            const appended = await tx.log.append(leaves);
            await yieldTurns(1);
            // Every fifth transaction fails after appending: its indexes go to later writers.
            if (writer % 5 === 4) throw new Error('rolled back');
            return appended;
          });
          return [{ ...result, leaves: leaves.map((entry) => entry.leaf) }];
        } catch {
          return [];
        }
      });
      const appended = (await Promise.all(calls)).flat();
      expect(appended).toHaveLength(40);
      await expectContiguous(appended);
    });

    it('plain appenders, transactions and refused calls mixed in one turn', async () => {
      const calls = Array.from({ length: 50 }, async (_, writer) => {
        const leaves = inputs(`m${writer}`, 1 + (writer % 3));
        if (writer % 10 === 3) {
          // A refused call inside the group commit rolls back only its own savepoint.
          await expect(t.store.log.append([input('bad', { linkedIndex: 1_000_000 })])).rejects.toThrow(TypeError);
          return [];
        }
        const result =
          writer % 2 === 0 ? await t.store.log.append(leaves) : await t.store.transaction((tx) => tx.log.append(leaves));
        return [{ ...result, leaves: leaves.map((entry) => entry.leaf) }];
      });
      await expectContiguous((await Promise.all(calls)).flat());
    });

    it('transactions that survive a failed call of their own and append again, in one group', async () => {
      const calls = Array.from({ length: 20 }, async (_, writer) => {
        const [first, second] = [input(`s${writer}-a`), input(`s${writer}-b`)];
        const appended = await t.store.transaction(async (tx) => {
          const before = await tx.log.append([first]);
          // A refused append (its link points past the end), caught by the transaction.
          await expect(tx.log.append([input('bad', { linkedIndex: 1_000_000 })])).rejects.toThrow(TypeError);
          const after = await tx.log.append([second]);
          return [before, after];
        });
        return [
          { ...appended[0]!, leaves: [first.leaf] },
          { ...appended[1]!, leaves: [second.leaf] },
        ];
      });
      await expectContiguous((await Promise.all(calls)).flat());
    });

    it('two connections on one file append without a gap', async () => {
      const other = await t.db.open();
      try {
        const calls = Array.from({ length: 50 }, async (_, writer) => {
          await yieldTurns(writer % 3);
          const leaves = inputs(`c${writer}`, 1 + (writer % 4));
          const result = await (writer % 2 === 0 ? t.store : other).log.append(leaves);
          return { ...result, leaves: leaves.map((entry) => entry.leaf) };
        });
        await expectContiguous(await Promise.all(calls));
      } finally {
        await other.close();
      }
    });
  });

  describe('stored Merkle nodes', () => {
    it('are exactly the perfect subtrees of the reference tree, for every size 1..70', async () => {
      const leaves: Buffer[] = [];
      for (let size = 1; size <= 70; size += 1) {
        const entry = input(`leaf-${size}`);
        leaves.push(entry.leaf);
        await t.store.log.append([entry]);
        expectSameNodes(await storedNodes(), referenceNodes(leaves));
        expect(treeRoot(size, await lookupFor(rootPlan(size))).equals(mth(leaves))).toBe(true);
      }
    });

    it('do not depend on how the leaves were batched', async () => {
      let round = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 12 }), async (batches) => {
          round += 1;
          const before = await t.store.log.size();
          for (const [position, count] of batches.entries()) {
            await t.store.log.append(inputs(`r${round}-${position}`, count));
          }
          const records: LogEntryRecord[] = [];
          const size = await t.store.log.size();
          expect(size).toBe(before + batches.reduce((sum, count) => sum + count, 0));
          for (let start = 0; start < size; start += 1000) {
            records.push(...(await t.store.log.entries(start, Math.min(size, start + 1000))));
          }
          expectSameNodes(await storedNodes(), referenceNodes(records.map((record) => record.leaf)));
        }),
        { numRuns: 25 },
      );
    });

    it('serve every inclusion and consistency proof of sizes 1..40 as the reference computes them', async () => {
      const leaves = inputs('proof', 40);
      await t.store.log.append(leaves.slice(0, 17));
      await t.store.log.append(leaves.slice(17));
      const data = leaves.map((entry) => entry.leaf);
      let checked = 0;
      for (let size = 1; size <= 40; size += 1) {
        for (let m = 0; m < size; m += 1) {
          const lookup = await lookupFor(nodesNeeded([inclusionPlan(m, size)]));
          expect(inclusionProof(m, size, lookup)).toEqual(path(m, data.slice(0, size)));
          const old = m + 1;
          const consistency = await lookupFor(nodesNeeded([consistencyPlan(old, size)]));
          expect(consistencyProof(old, size, consistency)).toEqual(proof(old, data.slice(0, size)));
          checked += 2;
        }
      }
      expect(checked).toBe(40 * 41);
    });

    it('reads each node once, keyed level:index, and reports the first missing one', async () => {
      await t.store.log.append(inputs('n', 6));
      const refs = [
        { level: 1, index: 2 },
        { level: 0, index: 5 },
        { level: 1, index: 2 },
        { level: 2, index: 0 },
      ];
      const hashes = await t.store.log.nodes(refs);
      expect([...hashes.keys()]).toEqual(['1:2', '0:5', '2:0']);
      for (const hash of hashes.values()) expect(hash).toHaveLength(32);
      expect(await t.store.log.nodes([])).toEqual(new Map());
      await expect(t.store.log.nodes([{ level: 0, index: 6 }])).rejects.toMatchObject({
        code: 'STORE_NOT_FOUND',
        message: expect.stringContaining('0:6'),
      });
      await expect(t.store.log.nodes([{ level: 0, index: 0 }, { level: 2, index: 1 }])).rejects.toMatchObject({
        code: 'STORE_NOT_FOUND',
        message: expect.stringContaining('2:1'),
      });
    });

    it('refuses refs that name no node of a tree of at most 2^53 leaves', async () => {
      const bad: unknown[] = [
        { level: -1, index: 0 },
        { level: 54, index: 0 },
        { level: 0.5, index: 0 },
        { level: 0, index: -1 },
        { level: 0, index: 2 ** 53 },
        { level: 10, index: 2 ** 43 },
        { level: 0 },
        null,
      ];
      for (const ref of bad) await expect(t.store.log.nodes([ref as NodeRef]), JSON.stringify(ref)).rejects.toThrow(TypeError);
      await expect(t.store.log.nodes(Array.from({ length: 4097 }, (_, index) => ({ level: 0, index })))).rejects.toThrow(
        TypeError,
      );
    });
  });

  describe('damaged storage', () => {
    beforeEach(async () => {
      await t.store.log.append(inputs('d', 5));
    });

    it('reports a leaf changed in place as STORE_CORRUPT on every read of it', async () => {
      const original = leafHash(leafOf('d-1'));
      await t.db.raw.query('UPDATE log_entries SET leaf = ? WHERE idx = 1', [leafOf('forged')]);
      await expect(t.store.log.entry(1)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      await expect(t.store.log.entries(0, 3)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      await expect(t.store.log.indexOfLeafHash(original)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      // The other entries are still served.
      expect((await t.store.log.entry(0))?.index).toBe(0);
      expect(await t.store.log.entries(2, 5)).toHaveLength(3);
    });

    it('reports rows that break the schema checks as STORE_CORRUPT', async () => {
      await t.db.raw.execUnchecked("UPDATE log_entries SET kind = 'Bad Kind' WHERE idx = 0");
      await t.db.raw.execUnchecked('UPDATE log_entries SET leaf_hash = ? WHERE idx = 2', [Buffer.alloc(31)]);
      await t.db.raw.execUnchecked('UPDATE log_entries SET linked_idx = 3 WHERE idx = 3');
      // A level-0 node is the entry's leaf hash on SQLite (migration 8); PostgreSQL stores it apart.
      if (t.backend === 'sqlite') await t.db.raw.execUnchecked('UPDATE log_entries SET leaf_hash = ? WHERE idx = 4', [Buffer.alloc(33)]);
      else await t.db.raw.execUnchecked('UPDATE log_nodes SET hash = ? WHERE level = 0 AND idx = 4', [Buffer.alloc(33)]);
      for (const index of [0, 2, 3]) await expect(t.store.log.entry(index)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      // Read by a store that did not write it (another process or replica): the one that
      // wrote a node may answer with what it committed (postgres-log.ts CommittedLog,
      // sqlite-log.ts's durable nodes).
      const reader = await t.db.open();
      await expect(reader.log.nodes([{ level: 0, index: 4 }])).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      // The damaged node is the left sibling the next append needs.
      await expect(reader.log.append([input('next')])).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      expect(await t.store.log.size()).toBe(5);
    });

    it('reports a missing node an append needs, and a hole in a range, as STORE_CORRUPT', async () => {
      // On SQLite node 2:0 is the second subtree hash of entry 3, which completed it.
      if (t.backend === 'sqlite') await t.db.raw.query('UPDATE log_entries SET subtree_hashes = substr(subtree_hashes, 1, 32) WHERE idx = 3');
      else await t.db.raw.query('DELETE FROM log_nodes WHERE level = 2 AND idx = 0');
      // Leaves 5 and 6 need nothing missing; leaf 7 completes 1:3, whose parent needs 2:0.
      // Appended by a store that did not write 2:0 (the one that did may know it still).
      const appender = await t.db.open();
      await expect(appender.log.append(inputs('more', 3))).rejects.toMatchObject({
        code: 'STORE_CORRUPT',
        message: expect.stringContaining('2:0'),
      });
      expect(await t.store.log.size()).toBe(5);
      expect((await storedNodes()).has('0:5')).toBe(false);

      await t.db.raw.query('DELETE FROM log_entries WHERE idx = 2');
      await expect(t.store.log.entries(0, 5)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      await expect(t.store.log.entries(1, 3)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      expect(await t.store.log.entries(0, 2)).toHaveLength(2);
      expect(await t.store.log.entries(3, 10)).toHaveLength(2);
    });

    // SQLite keeps nodes in the row of the entry that completes them (migration 8): no
    // node can be stored before its entry, and an index two writers both took is
    // refused by the entries' own primary key.
    it.runIf(t.backend === 'postgres')('refuses an append that would overwrite a stray node (STORE_CONFLICT), without leaving a gap', async () => {
      await t.db.raw.query('INSERT INTO log_nodes (level, idx, hash) VALUES (0, 5, ?)', [Buffer.alloc(32)]);
      await expect(t.store.log.append([input('blocked')])).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect(await t.store.log.size()).toBe(5);
      await t.db.raw.query('DELETE FROM log_nodes WHERE level = 0 AND idx = 5');
      expect(await t.store.log.append([input('unblocked')])).toEqual({ firstIndex: 5, size: 6 });
    });
  });

  describe('checkpoints', () => {
    const at = '2025-06-01T12:00:00.000Z';
    function checkpoint(size: number, seed = 'root', overrides: Partial<CheckpointRecord> = {}): CheckpointRecord {
      return {
        size,
        rootHash: leafHash(Buffer.from(`${seed}:${size}`)),
        note: `signet.example/log\n${size}\n${seed}\n\n— signet sig\n`,
        createdAt: at,
        ...overrides,
      };
    }

    it('start empty', async () => {
      expect(await t.store.log.latestCheckpoint()).toBeNull();
      expect(await t.store.log.checkpoint(0)).toBeNull();
      expect(await t.store.log.checkpoints(-1, 10)).toEqual([]);
    });

    it('are recorded, read back, and listed oldest first in pages', async () => {
      const empty = checkpoint(0, 'x', { rootHash: emptyRoot() });
      await t.store.log.addCheckpoint(empty);
      for (const size of [1, 2, 5, 9]) await t.store.log.addCheckpoint(checkpoint(size));
      expect(await t.store.log.latestCheckpoint()).toEqual(checkpoint(9));
      expect(await t.store.log.checkpoint(0)).toEqual(empty);
      expect(await t.store.log.checkpoint(5)).toEqual(checkpoint(5));
      expect(await t.store.log.checkpoint(3)).toBeNull();
      expect((await t.store.log.checkpoints(-1, 1000)).map((c) => c.size)).toEqual([0, 1, 2, 5, 9]);
      expect((await t.store.log.checkpoints(0, 2)).map((c) => c.size)).toEqual([1, 2]);
      expect((await t.store.log.checkpoints(2, 2)).map((c) => c.size)).toEqual([5, 9]);
      expect(await t.store.log.checkpoints(9, 2)).toEqual([]);
      expect(await t.store.log.checkpoints(0, 0)).toEqual([]);
    });

    it('stores the canonical form of createdAt and a copy of the root', async () => {
      const root = Buffer.alloc(32, 1);
      await t.store.log.addCheckpoint(checkpoint(3, 'r', { rootHash: root, createdAt: '2025-06-01T12:00:00Z' }));
      root.fill(2);
      const stored = await t.store.log.checkpoint(3);
      expect(stored?.createdAt).toBe('2025-06-01T12:00:00.000Z');
      expect(stored?.rootHash).toEqual(Buffer.alloc(32, 1));
    });

    it('ignore the same checkpoint recorded again, whenever', async () => {
      await t.store.log.addCheckpoint(checkpoint(4));
      await t.store.log.addCheckpoint(checkpoint(7));
      await t.store.log.addCheckpoint(checkpoint(4, 'root', { createdAt: '2026-01-01T00:00:00.000Z' }));
      await t.store.log.addCheckpoint(checkpoint(7));
      expect(await t.store.log.checkpoint(4)).toEqual(checkpoint(4));
      expect((await t.store.log.checkpoints(-1, 10)).map((c) => c.size)).toEqual([4, 7]);
    });

    it('refuse another root or note for a recorded size, and going back (STORE_CONFLICT)', async () => {
      await t.store.log.addCheckpoint(checkpoint(4));
      await t.store.log.addCheckpoint(checkpoint(7));
      await expect(t.store.log.addCheckpoint(checkpoint(7, 'other'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await expect(t.store.log.addCheckpoint(checkpoint(4, 'other'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await expect(t.store.log.addCheckpoint(checkpoint(7, 'root', { note: 're-signed\n' }))).rejects.toMatchObject({
        code: 'STORE_CONFLICT',
      });
      await expect(t.store.log.addCheckpoint(checkpoint(5))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await expect(t.store.log.addCheckpoint(checkpoint(0))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect(await t.store.log.latestCheckpoint()).toEqual(checkpoint(7));
      expect((await t.store.log.checkpoints(-1, 10)).map((c) => c.size)).toEqual([4, 7]);
    });

    it('refuse malformed checkpoints and queries with a TypeError', async () => {
      const bad: Partial<Record<keyof CheckpointRecord, unknown>>[] = [
        { size: -1 },
        { size: 1.5 },
        { rootHash: Buffer.alloc(31) },
        { rootHash: 'ab'.repeat(32) },
        { note: '' },
        { note: 'a\0b' },
        { note: 'x'.repeat(65_537) },
        { createdAt: '2025-06-01 12:00' },
      ];
      for (const overrides of bad) {
        await expect(t.store.log.addCheckpoint({ ...checkpoint(1), ...overrides } as CheckpointRecord)).rejects.toThrow(
          TypeError,
        );
      }
      await expect(t.store.log.checkpoint(-1)).rejects.toThrow(TypeError);
      await expect(t.store.log.checkpoints(-2, 10)).rejects.toThrow(TypeError);
      await expect(t.store.log.checkpoints(0, 1001)).rejects.toThrow(TypeError);
      await expect(t.store.log.checkpoints(0, -1)).rejects.toThrow(TypeError);
      expect(await t.store.log.latestCheckpoint()).toBeNull();
    });

    it('report a damaged checkpoint row as STORE_CORRUPT', async () => {
      await t.store.log.addCheckpoint(checkpoint(2));
      await t.db.raw.execUnchecked('UPDATE log_checkpoints SET root_hash = ? WHERE size = 2', [Buffer.alloc(16)]);
      await expect(t.store.log.latestCheckpoint()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      await expect(t.store.log.checkpoint(2)).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
      await expect(t.store.log.addCheckpoint(checkpoint(2))).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    });
  });
});
