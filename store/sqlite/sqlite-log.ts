/**
 * `LogRepository` on SQLite: the transparency log's entries, the hashes of its perfect
 * Merkle subtrees, and its signed checkpoints (log/merkle.ts has the tree maths).
 *
 * An append is one synchronous step under the write lock (`atomically`): it reads the
 * size, then writes every entry, each row with the hashes of the perfect subtrees its
 * leaf completes (`subtree_hashes`, migration 8: node (L, i) is in the row of entry
 * (i + 1) · 2^L − 1; level 0 is the leaf hash). Nothing can run in between on this
 * connection, and another connection or process waits for the lock, so indexes stay
 * contiguous from 0. Should two writers ever compute the same index all the same, the
 * primary key refuses the second one (STORE_CONFLICT) rather than let the log fork or
 * skip an index.
 *
 * Reads re-validate what they return (../validation.ts); an entry's leaf hash is
 * recomputed from its leaf, so a leaf changed in place is reported as STORE_CORRUPT
 * rather than served, by `indexOfLeafHash` too. Beyond the interface:
 *
 * - `append` takes at most MAX_APPEND_ENTRIES entries; an empty list appends nothing
 *   and returns the current size as both numbers.
 * - `entries(start, end)` refuses ranges wider than MAX_ENTRY_RANGE with a TypeError;
 *   a range reaching past the end of the log returns the entries that exist.
 * - `nodes` takes at most MAX_NODE_REFS refs per call; a ref named twice is read once.
 * - `addCheckpoint` with the size and root of a stored checkpoint but another note fails
 *   with STORE_CONFLICT: one signed note per size, never replaced. A caller that
 *   re-signed after losing track of its first attempt reads the stored one back.
 * - `checkpoints(afterSize, limit)` accepts afterSize -1, to include size 0.
 *
 * Nodes this connection wrote are kept in a small cache once durable, and served from
 * it: a signing round asks for the nodes the entries appended since the last round
 * completed, and an append for the left siblings of the nodes it completes, which are
 * nearly always among the newest. A node enters the cache only after its write
 * committed and was fsynced (SqliteAccess.afterDurable): a rolled-back append's nodes
 * never do, though its indexes are reused by the next append. Within one group commit
 * an append also starts from where the previous one on this connection left the log
 * (its size and newest nodes, `#tail`), unless anything failed or rolled back since
 * (SqliteAccess.writeEpoch): the group holds the write lock, so nothing else can have
 * appended, and the rows that previous append wrote are still there.
 */
import { StoreError } from '../errors.js';
import { HASH_SIZE, leafHash, nodeKey, nodesCompletedByAppend, type NodeHash, type NodeLookup, type NodeRef } from '../../log/merkle.js';
import { NodeCache, nodeCacheKey } from '../../log/node-cache.js';
import type { CheckpointRecord, LogEntryInput, LogEntryRecord, LogNodeRef, LogRepository } from '../store.js';
import {
  checkpointFromRow,
  describeNumber,
  logEntryFromRow,
  logIndexFromRow,
  logNodeHashFromRow,
  requireCheckpoint,
  requireCheckpointPage,
  requireEntryRange,
  requireLeafHashArgument,
  requireLinksBefore,
  requireLogEntryInputs,
  requireLogIndex,
  requireNodeRefs,
} from '../validation.js';
import { atomically, consistently, type Runner, type SqliteAccess } from './sqlite-support.js';

type AppendResult = Awaited<ReturnType<LogRepository['append']>>;

export class SqliteLogRepository implements LogRepository {
  readonly #operations: SqliteLogOperations;
  readonly #run: Runner;

  constructor(operations: SqliteLogOperations, run: Runner) {
    this.#operations = operations;
    this.#run = run;
  }

  append(entries: readonly LogEntryInput[]): Promise<AppendResult> {
    const candidate: unknown = entries;
    const count = Array.isArray(candidate) ? String(candidate.length) : 'invalid';
    return this.#run(`appending ${count} log entries`, () => this.#operations.append(entries));
  }

  size(): Promise<number> {
    return this.#run('reading the log size', () => this.#operations.size(), 'read');
  }

  durableSize(): number {
    return this.#operations.durableSize();
  }

  commitInFlight(): Promise<void> | undefined {
    return this.#operations.commitInFlight();
  }

  entry(index: number): Promise<LogEntryRecord | null> {
    return this.#run(`reading log entry ${describeNumber(index)}`, () => this.#operations.entry(index), 'read');
  }

  entries(start: number, end: number): Promise<LogEntryRecord[]> {
    return this.#run(`reading log entries [${describeNumber(start)}, ${describeNumber(end)})`, () =>
      this.#operations.entries(start, end),
    'read');
  }

  indexOfLeafHash(hash: Buffer): Promise<number | null> {
    return this.#run('looking up a log leaf hash', () => this.#operations.indexOfLeafHash(hash), 'read');
  }

  nodes(refs: readonly LogNodeRef[]): Promise<Map<string, Buffer>> {
    // Settled: a stored node never changes, and callers ask for nodes of durable trees only (store.ts).
    return this.#run('reading log nodes', () => this.#operations.nodes(refs), 'settled');
  }

  addCheckpoint(checkpoint: CheckpointRecord): Promise<void> {
    const candidate: unknown = checkpoint;
    const size =
      typeof candidate === 'object' && candidate !== null && 'size' in candidate ? candidate.size : undefined;
    // Deferred: nothing answers a request only once its checkpoint is recorded (receipts
    // prove against notes signed over durable entries), so the record rides along with
    // the next group commit rather than starting one.
    return this.#run(`recording the checkpoint of size ${describeNumber(size)}`, () => {
      this.#operations.addCheckpoint(checkpoint);
    }, 'deferred');
  }

  latestCheckpoint(): Promise<CheckpointRecord | null> {
    return this.#run('reading the latest checkpoint', () => this.#operations.latestCheckpoint(), 'read');
  }

  checkpoint(size: number): Promise<CheckpointRecord | null> {
    return this.#run(`reading the checkpoint of size ${describeNumber(size)}`, () => this.#operations.checkpoint(size), 'read');
  }

  checkpoints(afterSize: number, limit: number): Promise<CheckpointRecord[]> {
    return this.#run('listing checkpoints', () => this.#operations.checkpoints(afterSize, limit), 'read');
  }
}

const ENTRY_COLUMNS = 'idx, kind, leaf, leaf_hash, integrated_time, linked_idx';
const CHECKPOINT_COLUMNS = 'size, root_hash, note, created_at';

/** The newest node written at each level (index = level), as SqliteLogOperations#tail keeps them. */
type NewestNodes = ({ readonly index: number; readonly hash: Buffer } | undefined)[];
/**
 * The hashes a node can be in: the leaf hash (level 0) and the subtree hashes (levels
 * ≥ 1) of the entry that completed it (migration 8). Parameter: completedBy(ref).
 */
const SELECT_NODE_HASHES = 'SELECT leaf_hash, subtree_hashes FROM log_entries WHERE idx = ?';
/** Bytes of the leaf hash that log_entries_leaf_hash_bucket indexes. */
const LEAF_HASH_PREFIX_BYTES = 8;
/** Entries per bucket of log_entries_leaf_hash_bucket (its first column is idx >> 8). */
export const LEAF_HASH_BUCKET_ENTRIES = 256;
/**
 * The lowest entry whose leaf hashes to the third parameter, in buckets 0 to the first,
 * one index seek per bucket: the buckets drive the join (CROSS JOIN keeps them the
 * outer loop) and each seek matches both columns of log_entries_leaf_hash_bucket,
 * spelled exactly as the index expressions (migration 7), which is what lets SQLite use
 * it; the second parameter is the prefix. The whole row is read, not just idx: the
 * stored leaf must really hash to what was matched.
 */
export const LEAF_HASH_LOOKUP_SQL = `
  WITH RECURSIVE bucket (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM bucket WHERE n < ?)
  SELECT ${ENTRY_COLUMNS} FROM bucket CROSS JOIN log_entries
   WHERE idx >> 8 = bucket.n AND substr(leaf_hash, 1, 8) = ? AND leaf_hash = ?
   ORDER BY idx LIMIT 1`;

/**
 * The entry whose append completed the node: its last leaf, (index + 1) · 2^level − 1.
 * Exact: a node of a tree of at most 2^53 leaves ends at or below 2^53.
 */
function completedBy(ref: NodeRef): number {
  return (ref.index + 1) * 2 ** ref.level - 1;
}

/**
 * The stored hash of `ref` in the row of the entry that completed it (raw: leaf_hash,
 * subtree_hashes); undefined if there is no such row, STORE_CORRUPT if the row lacks it
 * (an entry completes every level up to its trailing one bits, so it must hold it).
 */
function nodeHashInRow(ref: NodeRef, row: unknown): Buffer | undefined {
  if (row === undefined) return undefined;
  const [leafHashValue, subtreeHashes] = Array.isArray(row) ? (row as unknown[]) : [];
  if (ref.level === 0) return logNodeHashFromRow(ref, leafHashValue);
  const end = ref.level * HASH_SIZE;
  if (!(subtreeHashes instanceof Uint8Array) || subtreeHashes.length < end) {
    throw new StoreError('STORE_CORRUPT', `log node ${nodeKey(ref)} is missing from the row of entry ${completedBy(ref)}`);
  }
  // A copy: a view would keep the whole row's bytes alive in the caches.
  return Buffer.from(subtreeHashes.subarray(end - HASH_SIZE, end));
}

/**
 * Durable nodes kept by a connection: a signing round reads about two per entry
 * appended since the one before it (a few dozen), plus the path they share to the root;
 * appends read one left sibling per entry on average, among the newest nodes or on
 * that path. Once evicted, a node is read from the table again.
 */
const DURABLE_NODE_CACHE_ENTRIES = 512;

/** The synchronous SQL behind `LogRepository`; callers provide ordering and error translation. */
export class SqliteLogOperations {
  readonly #access: SqliteAccess;
  /** Nodes known durable (see the header): a stored node never changes. */
  readonly #durableNodes = new NodeCache(DURABLE_NODE_CACHE_ENTRIES);
  /**
   * The size after this connection's newest durable append. An fsync of the WAL makes
   * every frame committed before it durable, whichever connection or process wrote it,
   * so every entry below this index is durable too.
   */
  #durableSize = 0;
  /**
   * Where this connection's newest append left the log, while nothing can have changed
   * it since (SqliteAccess.writeEpoch: within one group commit, with no failure): the
   * size, and the newest node written at each level. The next append in the same group
   * starts from it instead of reading max(idx) and the left siblings it needs back from
   * the table (the previous entry is nearly always in the same group, not yet durable,
   * so not in #durableNodes).
   */
  #tail: { readonly epoch: number; readonly size: number; readonly newest: NewestNodes } | undefined;

  constructor(access: SqliteAccess) {
    this.#access = access;
  }

  append(candidate: readonly LogEntryInput[]): AppendResult {
    const entries = requireLogEntryInputs(candidate);
    // Every node written or read by this append, cached once the append is durable.
    const touched: NodeHash[] = [];
    const epoch = this.#access.writeEpoch();
    const tail = this.#tail?.epoch === epoch ? this.#tail : undefined;
    // Cleared now, set again only if this append returns: a failed one may leave
    // `newest` half updated, and the epoch changes with it anyway.
    this.#tail = undefined;
    // Left siblings completed earlier in this batch, or by an earlier append of this
    // group, are not read back from the table. The left sibling of a node being
    // completed is always the latest node completed at its level, so one slot per level
    // holds every one this batch can need; older ones (the right edge of the tree before
    // the group) come from storage.
    const newest: NewestNodes = tail?.newest ?? [];
    const write = (): AppendResult => {
      const firstIndex = tail?.size ?? this.#size();
      requireLinksBefore(entries, firstIndex);
      const insertEntry = this.#access.statement(
        `INSERT INTO log_entries (${ENTRY_COLUMNS}, subtree_hashes) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      );
      const lookup: NodeLookup = (ref) => {
        const slot = newest[ref.level];
        if (slot?.index === ref.index) return slot.hash;
        const hash = this.#requiredNode(ref, firstIndex);
        touched.push({ ref, hash });
        return hash;
      };
      for (let position = 0; position < entries.length; position += 1) {
        const entry = entries[position] as LogEntryInput;
        const index = firstIndex + position;
        const hash = leafHash(entry.leaf);
        const completed = nodesCompletedByAppend(index, hash, lookup);
        // Levels 1 and up, in order (level 0 is the leaf hash): migration 8.
        const subtreeHashes = completed.length > 1 ? Buffer.concat(completed.slice(1).map((node) => node.hash)) : null;
        insertEntry.run(index, entry.kind, entry.leaf, hash, entry.integratedTime, entry.linkedIndex, subtreeHashes);
        for (const node of completed) {
          newest[node.ref.level] = { index: node.ref.index, hash: node.hash };
          touched.push(node);
        }
      }
      return Object.freeze({ firstIndex, size: firstIndex + entries.length });
    };
    // One entry inside a transaction (the signing path's appends): the transaction holds
    // the write lock already (the store begins IMMEDIATE), and the append's only write
    // is its last statement, atomic by itself, so a savepoint would add two statements
    // and protect nothing.
    const result = entries.length === 1 && this.#access.db.inTransaction ? write() : atomically(this.#access, write);
    this.#tail = { epoch, size: result.size, newest };
    this.#access.afterDurable(() => {
      for (const node of touched) this.#durableNodes.set(nodeCacheKey(node.ref), node.hash);
      if (result.size > this.#durableSize) this.#durableSize = result.size;
    });
    return result;
  }

  size(): number {
    return this.#size();
  }

  /** See LogRepository.commitInFlight. */
  commitInFlight(): Promise<void> | undefined {
    return this.#access.commitInFlight();
  }

  /** See #durableSize: known without a read, and without waiting for the writes queued. */
  durableSize(): number {
    return this.#durableSize;
  }

  entry(indexArg: number): LogEntryRecord | null {
    const index = requireLogIndex('index', indexArg);
    const row = this.#access.statement(`SELECT ${ENTRY_COLUMNS} FROM log_entries WHERE idx = ?`).get(index);
    return row === undefined ? null : this.#entryAt(index, row);
  }

  entries(startArg: number, endArg: number): LogEntryRecord[] {
    const { start, end } = requireEntryRange(startArg, endArg);
    if (start === end) return [];
    return consistently(this.#access, () => {
      const rows = this.#access
        .statement(`SELECT ${ENTRY_COLUMNS} FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx`)
        .all(start, end);
      const records = rows.map((row, position) => this.#entryAt(start + position, row));
      // Fewer rows than asked is the end of the log, or a hole in it; only the size tells.
      if (records.length < end - start) {
        const size = this.#size();
        if (start + records.length < Math.min(end, size)) {
          throw new StoreError('STORE_CORRUPT', `log entry ${start + records.length} is missing below size ${size}`);
        }
      }
      return records;
    });
  }

  indexOfLeafHash(hashArg: Buffer): number | null {
    const hash = requireLeafHashArgument(hashArg);
    return consistently(this.#access, () => {
      const size = this.#size();
      if (size === 0) return null;
      const lastBucket = Math.floor((size - 1) / LEAF_HASH_BUCKET_ENTRIES);
      const row = this.#access.statement(LEAF_HASH_LOOKUP_SQL).get(lastBucket, hash.subarray(0, LEAF_HASH_PREFIX_BYTES), hash);
      return row === undefined ? null : logEntryFromRow(row).index;
    });
  }

  nodes(refsArg: readonly LogNodeRef[]): Map<string, Buffer> {
    const refs = requireNodeRefs(refsArg);
    // One prepared primary-key lookup (of the completing entry's row) per node not
    // cached, all in one read transaction (outside
    // one, each statement would open and close a read transaction of its own, which
    // costs more than the lookup). The connection is in process, so one statement per
    // batch saves no round trip: on a 1,000,000-leaf log this is as fast as a single
    // `(level, idx) IN (VALUES …)` query, which would need a statement per batch size,
    // and faster than json_each; a proof's ~25–45 nodes take about 0.1 ms.
    const hashes = new Map<string, Buffer>();
    const unread: LogNodeRef[] = [];
    for (const ref of refs) {
      const cached = this.#durableNodes.get(nodeCacheKey(ref));
      if (cached === undefined) unread.push(ref);
      else hashes.set(nodeKey(ref), cached);
    }
    if (unread.length === 0) return hashes;
    return consistently(this.#access, () => {
      const select = this.#access.statement(SELECT_NODE_HASHES).raw();
      for (const ref of unread) {
        const hash = nodeHashInRow(ref, select.get(completedBy(ref)));
        if (hash === undefined) throw new StoreError('STORE_NOT_FOUND', `log node ${nodeKey(ref)} does not exist`);
        hashes.set(nodeKey(ref), hash);
        // Callers ask only for nodes of durable trees (store.ts): this one is durable.
        this.#durableNodes.set(nodeCacheKey(ref), hash);
      }
      return hashes;
    });
  }

  addCheckpoint(candidate: CheckpointRecord): void {
    const checkpoint = requireCheckpoint(candidate);
    atomically(this.#access, () => {
      const existing = this.#checkpoint(checkpoint.size);
      if (existing !== null) {
        if (!existing.rootHash.equals(checkpoint.rootHash)) {
          throw new StoreError('STORE_CONFLICT', `a checkpoint of size ${checkpoint.size} with another root exists`);
        }
        if (existing.note !== checkpoint.note) {
          throw new StoreError('STORE_CONFLICT', `a checkpoint of size ${checkpoint.size} with another note exists`);
        }
        return;
      }
      const latest: unknown = this.#access.statement('SELECT max(size) FROM log_checkpoints').pluck().get();
      if (latest !== null && latest !== undefined) {
        const latestSize = logIndexFromRow('checkpoint size', latest);
        if (latestSize > checkpoint.size) {
          throw new StoreError(
            'STORE_CONFLICT',
            `checkpoint size ${checkpoint.size} is smaller than the latest (${latestSize}); checkpoints never go back`,
          );
        }
      }
      this.#access
        .statement(`INSERT INTO log_checkpoints (${CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?)`)
        .run(checkpoint.size, checkpoint.rootHash, checkpoint.note, checkpoint.createdAt);
    });
  }

  latestCheckpoint(): CheckpointRecord | null {
    const row = this.#access
      .statement(`SELECT ${CHECKPOINT_COLUMNS} FROM log_checkpoints ORDER BY size DESC LIMIT 1`)
      .get();
    return row === undefined ? null : checkpointFromRow(row);
  }

  checkpoint(sizeArg: number): CheckpointRecord | null {
    return this.#checkpoint(requireLogIndex('size', sizeArg));
  }

  checkpoints(afterSizeArg: number, limitArg: number): CheckpointRecord[] {
    const { afterSize, limit } = requireCheckpointPage(afterSizeArg, limitArg);
    if (limit === 0) return [];
    return this.#access
      .statement(`SELECT ${CHECKPOINT_COLUMNS} FROM log_checkpoints WHERE size > ? ORDER BY size LIMIT ?`)
      .all(afterSize, limit)
      .map(checkpointFromRow);
  }

  /** max(idx) + 1; the primary key makes it one index probe. */
  #size(): number {
    const max: unknown = this.#access.statement('SELECT max(idx) FROM log_entries').pluck().get();
    return max === null || max === undefined ? 0 : logIndexFromRow('entry index', max) + 1;
  }

  /** A row read for `index` must carry that index: anything else is not the entry asked for. */
  #entryAt(index: number, row: unknown): LogEntryRecord {
    const record = logEntryFromRow(row);
    if (record.index !== index) {
      throw new StoreError('STORE_CORRUPT', `log entry ${index} is missing (found ${record.index} in its place)`);
    }
    return record;
  }

  #checkpoint(size: number): CheckpointRecord | null {
    const row = this.#access.statement(`SELECT ${CHECKPOINT_COLUMNS} FROM log_checkpoints WHERE size = ?`).get(size);
    return row === undefined ? null : checkpointFromRow(row);
  }

  /** A left sibling an append needs; the tree of `size` leaves must have it. */
  #requiredNode(ref: NodeRef, size: number): Buffer {
    const cached = this.#durableNodes.get(nodeCacheKey(ref));
    if (cached !== undefined) return cached;
    const hash = nodeHashInRow(ref, this.#access.statement(SELECT_NODE_HASHES).raw().get(completedBy(ref)));
    if (hash === undefined) {
      throw new StoreError('STORE_CORRUPT', `log node ${nodeKey(ref)} is missing from the tree of size ${size}`);
    }
    return hash;
  }
}
