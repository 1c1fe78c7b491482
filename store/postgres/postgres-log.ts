/**
 * `LogRepository` on PostgreSQL: the same tables, rules and extensions of the interface
 * as the SQLite backend (sqlite-log.ts), shared by every replica.
 *
 * Appends from several replicas form one tree with contiguous indexes. Each append
 * takes a transaction-scoped advisory lock (pg_advisory_xact_lock) before it reads the
 * size, then writes its entries at max(idx) + 1 … and every Merkle node they complete,
 * and commits, which releases the lock. The lock is chosen over a row lock on a
 * "log head" row because:
 *
 * - nothing has to be updated per append: a head row rewritten by every append leaves
 *   a dead row version each time, on the hottest row of the database, for vacuum to
 *   clean up; the lock lives in shared memory only;
 * - it needs no table of its own, and is released by COMMIT, ROLLBACK or the end of the
 *   session, so a replica that dies mid-append never leaves the log locked;
 * - it is taken by a statement of its own, before the statement that reads the size:
 *   at READ COMMITTED that read has a fresh snapshot, which holds every append
 *   committed by the lock's previous holder.
 *
 * The key is (purpose, hash of the schema name): Signet instances in two schemas of
 * one database do not wait for each other. Should two writers ever compute the same
 * index all the same, the primary keys refuse the second (STORE_CONFLICT) rather than
 * let the log fork or skip an index. Checkpoints are recorded under a lock of their
 * own, so "never smaller than the latest" holds when replicas record them at once.
 *
 * The leaf-hash lookup uses the same 8-byte prefix index as SQLite (migration 3): the
 * WHERE clause spells the index expression exactly, and the match is materialised
 * before ordering so the planner cannot trade the index for a walk of the whole
 * primary key in index order.
 *
 * Reads that must agree with each other (a range and the size that tells an end from a
 * hole; a batch of nodes) are single statements: one snapshot each.
 */
import { StoreError } from '../errors.js';
import { leafHash, nodeKey, nodesCompletedByAppend, rootPlan, type NodeLookup, type NodeRef } from '../../log/merkle.js';
import type { CheckpointRecord, LogEntryInput, LogEntryRecord, LogNodeRef, LogRepository } from '../store.js';
import {
  checkpointFromRow,
  describeNumber,
  logEntryFromRow,
  logIndexFromRow,
  logNodeHashFromRow,
  MAX_APPEND_ENTRIES,
  requireCheckpoint,
  requireCheckpointPage,
  requireEntryRange,
  requireLeafHashArgument,
  requireLinksBefore,
  requireLogEntryInputs,
  requireLogIndex,
  requireNodeRefs,
} from '../validation.js';
import { CallGroup, writeAlone, type CallGrouping, type CallOutcome } from './postgres-grouping.js';
import type { PgRunner, PgSession } from './postgres-session.js';

type AppendResult = Awaited<ReturnType<LogRepository['append']>>;

/** First key of the advisory locks: ASCII "SGNT"; the second part says which lock. */
const LOCK_NAMESPACE = 0x53474e54;
/** Advisory lock statements (no parameters, so they travel with the BEGIN or SAVEPOINT before them). */
export function advisoryLock(purpose: 'log append' | 'checkpoint' | 'migration'): string {
  return `SELECT pg_advisory_xact_lock(${LOCK_NAMESPACE}, hashtext('${purpose}:' || coalesce(current_schema(), '')))`;
}

const ENTRY_COLUMNS = 'idx, kind, leaf, leaf_hash, integrated_time, linked_idx';
const CHECKPOINT_COLUMNS = 'size, root_hash, note, created_at';

/**
 * The size and the stored nodes of rootPlan(size) (log/merkle.ts), the only left
 * siblings an append can need: bit L of size set ⇔ the right edge has a perfect
 * subtree of 2^L leaves, at index (size >> L) - 1.
 */
const SELECT_HEAD = `
SELECT head.size, edge.level, edge.idx, edge.hash
  FROM (SELECT coalesce(max(idx) + 1, 0) AS size FROM log_entries) AS head
  LEFT JOIN LATERAL (
    SELECT n.level, n.idx, n.hash
      FROM generate_series(0, 53) AS l
      JOIN log_nodes AS n ON n.level = l AND n.idx = (head.size >> l) - 1
     WHERE ((head.size >> l) & 1) = 1
  ) AS edge ON true`;

/** The log's size and the hashes of its right edge (rootPlan(size)), remembered for the rest of a transaction. */
interface LogHead {
  readonly size: number;
  readonly edge: ReadonlyMap<string, unknown>;
}
const LOG_HEAD_MEMO = 'log head';

const INSERT_BATCH = `
WITH entries AS (
  INSERT INTO log_entries (${ENTRY_COLUMNS})
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[])
)
INSERT INTO log_nodes (level, idx, hash)
SELECT * FROM unnest($7::integer[], $8::bigint[], $9::bytea[])`;

export class PostgresLogRepository implements LogRepository {
  readonly #run: PgRunner;
  readonly #group: CallGroup<readonly LogEntryInput[], AppendResult> | undefined;

  /** With `grouping` (plain calls), appends made while a group is being written are written together next (postgres-grouping.ts). */
  constructor(run: PgRunner, grouping?: CallGrouping) {
    this.#run = run;
    this.#group =
      grouping === undefined
        ? undefined
        : new CallGroup({
            grouping,
            describe: (calls) => `appending ${calls.reduce((sum, entries) => sum + entries.length, 0)} log entries`,
            maxWeight: MAX_APPEND_ENTRIES,
            weigh: (entries) => entries.length,
            write: appendCalls,
          });
  }

  append(candidate: readonly LogEntryInput[]): Promise<AppendResult> {
    const value: unknown = candidate;
    const what = `appending ${Array.isArray(value) ? String(value.length) : 'invalid'} log entries`;
    if (this.#group !== undefined) return this.#group.submit(what, () => requireLogEntryInputs(candidate));
    return this.#run(what, (db) => writeAlone(db, requireLogEntryInputs(candidate), appendCalls), 'write-unrefused');
  }

  size(): Promise<number> {
    return this.#run('reading the log size', readSize, 'read');
  }

  entry(indexArg: number): Promise<LogEntryRecord | null> {
    return this.#run(
      `reading log entry ${describeNumber(indexArg)}`,
      async (db) => {
        const index = requireLogIndex('index', indexArg);
        const row = (await db.query(`SELECT ${ENTRY_COLUMNS} FROM log_entries WHERE idx = $1`, [index])).rows[0];
        return row === undefined ? null : entryAt(index, row);
      },
      'read',
    );
  }

  entries(startArg: number, endArg: number): Promise<LogEntryRecord[]> {
    return this.#run(
      `reading log entries [${describeNumber(startArg)}, ${describeNumber(endArg)})`,
      async (db) => {
        const { start, end } = requireEntryRange(startArg, endArg);
        if (start === end) return [];
        const result = await db.query(
          `SELECT head.size, e.idx, e.kind, e.leaf, e.leaf_hash, e.integrated_time, e.linked_idx
             FROM (SELECT coalesce(max(idx) + 1, 0) AS size FROM log_entries) AS head
             LEFT JOIN log_entries AS e ON e.idx >= $1 AND e.idx < $2
            ORDER BY e.idx`,
          [start, end],
        );
        const size = logIndexFromRow('size', result.rows[0]?.size);
        const rows = result.rows.filter((row) => row.idx !== null);
        const records = rows.map((row, position) => entryAt(start + position, row));
        // Fewer rows than asked is the end of the log, or a hole in it; only the size tells.
        if (records.length < end - start && start + records.length < Math.min(end, size)) {
          throw new StoreError('STORE_CORRUPT', `log entry ${start + records.length} is missing below size ${size}`);
        }
        return records;
      },
      'read',
    );
  }

  indexOfLeafHash(hashArg: Buffer): Promise<number | null> {
    return this.#run(
      'looking up a log leaf hash',
      async (db) => {
        const hash = requireLeafHashArgument(hashArg);
        // The whole row is read, not just idx: the stored leaf must really hash to what
        // was matched.
        const row = (
          await db.query(
            `WITH matches AS MATERIALIZED (
               SELECT ${ENTRY_COLUMNS} FROM log_entries
                WHERE substring(leaf_hash FROM 1 FOR 8) = $1 AND leaf_hash = $2
             )
             SELECT ${ENTRY_COLUMNS} FROM matches ORDER BY idx LIMIT 1`,
            [hash.subarray(0, LEAF_HASH_PREFIX_BYTES), hash],
          )
        ).rows[0];
        return row === undefined ? null : logEntryFromRow(row).index;
      },
      'read',
    );
  }

  nodes(refsArg: readonly LogNodeRef[]): Promise<Map<string, Buffer>> {
    return this.#run(
      'reading log nodes',
      async (db) => {
        const refs = requireNodeRefs(refsArg);
        if (refs.length === 0) return new Map<string, Buffer>();
        const result = await db.query(
          `SELECT level, idx, hash FROM log_nodes
            WHERE (level, idx) IN (SELECT * FROM unnest($1::integer[], $2::bigint[]))`,
          [refs.map((ref) => ref.level), refs.map((ref) => ref.index)],
        );
        const stored = new Map(result.rows.map((row) => [`${String(row.level)}:${String(row.idx)}`, row.hash]));
        const hashes = new Map<string, Buffer>();
        for (const ref of refs) {
          const key = nodeKey(ref);
          if (!stored.has(key)) throw new StoreError('STORE_NOT_FOUND', `log node ${key} does not exist`);
          hashes.set(key, logNodeHashFromRow(ref, stored.get(key)));
        }
        return hashes;
      },
      'read',
    );
  }

  addCheckpoint(candidate: CheckpointRecord): Promise<void> {
    const value: unknown = candidate;
    const size = typeof value === 'object' && value !== null && 'size' in value ? value.size : undefined;
    return this.#run(`recording the checkpoint of size ${describeNumber(size)}`, async (db) => {
      const checkpoint = requireCheckpoint(candidate);
      await db.atomically(async () => {
        await db.query(advisoryLock('checkpoint'));
        const result = await db.query(
          `SELECT c.size, c.root_hash, c.note, c.created_at, (SELECT max(size) FROM log_checkpoints) AS latest
             FROM (SELECT 1) AS one LEFT JOIN log_checkpoints AS c ON c.size = $1`,
          [checkpoint.size],
        );
        const row = result.rows[0];
        if (row !== undefined && row.size !== null) {
          const existing = checkpointFromRow(row);
          if (!existing.rootHash.equals(checkpoint.rootHash)) {
            throw new StoreError('STORE_CONFLICT', `a checkpoint of size ${checkpoint.size} with another root exists`);
          }
          if (existing.note !== checkpoint.note) {
            throw new StoreError('STORE_CONFLICT', `a checkpoint of size ${checkpoint.size} with another note exists`);
          }
          return;
        }
        const latest: unknown = row?.latest;
        if (latest !== null && latest !== undefined) {
          const latestSize = logIndexFromRow('checkpoint size', latest);
          if (latestSize > checkpoint.size) {
            throw new StoreError(
              'STORE_CONFLICT',
              `checkpoint size ${checkpoint.size} is smaller than the latest (${latestSize}); checkpoints never go back`,
            );
          }
        }
        await db.query(`INSERT INTO log_checkpoints (${CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4)`, [
          checkpoint.size,
          checkpoint.rootHash,
          checkpoint.note,
          checkpoint.createdAt,
        ]);
      });
    });
  }

  latestCheckpoint(): Promise<CheckpointRecord | null> {
    return this.#run(
      'reading the latest checkpoint',
      async (db) => {
        const row = (await db.query(`SELECT ${CHECKPOINT_COLUMNS} FROM log_checkpoints ORDER BY size DESC LIMIT 1`)).rows[0];
        return row === undefined ? null : checkpointFromRow(row);
      },
      'read',
    );
  }

  checkpoint(sizeArg: number): Promise<CheckpointRecord | null> {
    return this.#run(
      `reading the checkpoint of size ${describeNumber(sizeArg)}`,
      async (db) => {
        const size = requireLogIndex('size', sizeArg);
        const row = (await db.query(`SELECT ${CHECKPOINT_COLUMNS} FROM log_checkpoints WHERE size = $1`, [size])).rows[0];
        return row === undefined ? null : checkpointFromRow(row);
      },
      'read',
    );
  }

  checkpoints(afterSizeArg: number, limitArg: number): Promise<CheckpointRecord[]> {
    return this.#run(
      'listing checkpoints',
      async (db) => {
        const { afterSize, limit } = requireCheckpointPage(afterSizeArg, limitArg);
        if (limit === 0) return [];
        const result = await db.query(
          `SELECT ${CHECKPOINT_COLUMNS} FROM log_checkpoints WHERE size > $1 ORDER BY size LIMIT $2`,
          [afterSize, limit],
        );
        return result.rows.map(checkpointFromRow);
      },
      'read',
    );
  }
}

/** Bytes of the leaf hash that log_entries_leaf_hash_prefix indexes. */
const LEAF_HASH_PREFIX_BYTES = 8;

/** max(idx) + 1; the primary key makes it one index probe. */
async function readSize(db: PgSession): Promise<number> {
  const max: unknown = (await db.query('SELECT max(idx) AS max FROM log_entries')).rows[0]?.max;
  return max === null || max === undefined ? 0 : logIndexFromRow('entry index', max) + 1;
}

/**
 * Appends each call's entries after the previous call's, in one atomic unit under the
 * log lock: entries, then every Merkle node they complete, in one statement. A call
 * whose links name no earlier entry (where it lands) is refused with a TypeError and
 * takes no index; the others are written.
 */
async function appendCalls(db: PgSession, calls: readonly (readonly LogEntryInput[])[]): Promise<CallOutcome<AppendResult>[]> {
  if (calls.every((entries) => entries.length === 0)) {
    const size = await readSize(db);
    return calls.map(() => ({ ok: true, value: Object.freeze({ firstIndex: size, size }) }));
  }
  return db.atomically(async () => {
    // Inside a transaction that appended before, the lock is still held and nobody else
    // can have appended since: the right edge it left is the one to extend.
    const memo = await db.transactionMemo();
    const remembered = memo?.get(LOG_HEAD_MEMO) as LogHead | undefined;
    let treeSize: number;
    let edge: ReadonlyMap<string, unknown>;
    if (remembered !== undefined) {
      ({ size: treeSize, edge } = remembered);
    } else {
      await db.query(advisoryLock('log append'));
      const head = await db.query(SELECT_HEAD);
      treeSize = logIndexFromRow('size', head.rows[0]?.size);
      const read = new Map<string, unknown>();
      for (const row of head.rows) {
        // One row with no node when the right edge has none stored (LEFT JOIN).
        const key = `${String(row.level)}:${String(row.idx)}`;
        if (row.hash !== null) read.set(key, row.hash);
      }
      edge = read;
    }
    // Left siblings completed earlier in this unit are kept as they are made: the left
    // sibling of a node being completed is always the latest node completed at its
    // level, so one slot per level holds every one this unit can need; older ones (the
    // right edge before it) come from what was read above.
    const latest: ({ readonly index: number; readonly hash: Buffer } | undefined)[] = [];
    const lookup: NodeLookup = (ref) => {
      const slot = latest[ref.level];
      return slot?.index === ref.index ? slot.hash : requiredNode(edge, ref, treeSize);
    };
    const columns = {
      idx: [] as number[],
      kind: [] as string[],
      leaf: [] as Buffer[],
      leafHash: [] as Buffer[],
      integratedTime: [] as number[],
      linkedIdx: [] as (number | null)[],
      nodeLevel: [] as number[],
      nodeIdx: [] as number[],
      nodeHash: [] as Buffer[],
    };
    let next = treeSize;
    const outcomes = calls.map((entries): CallOutcome<AppendResult> => {
      try {
        requireLinksBefore(entries, next);
      } catch (error) {
        return { ok: false, error };
      }
      const firstIndex = next;
      for (const entry of entries) {
        const hash = leafHash(entry.leaf);
        columns.idx.push(next);
        columns.kind.push(entry.kind);
        columns.leaf.push(entry.leaf);
        columns.leafHash.push(hash);
        columns.integratedTime.push(entry.integratedTime);
        columns.linkedIdx.push(entry.linkedIndex);
        for (const node of nodesCompletedByAppend(next, hash, lookup)) {
          columns.nodeLevel.push(node.ref.level);
          columns.nodeIdx.push(node.ref.index);
          columns.nodeHash.push(node.hash);
          latest[node.ref.level] = { index: node.ref.index, hash: node.hash };
        }
        next += 1;
      }
      return { ok: true, value: Object.freeze({ firstIndex, size: next }) };
    });
    if (columns.idx.length > 0) {
      // Remembered before the write, which either succeeds or aborts the transaction
      // (emptying the memo with everything else).
      memo?.set(LOG_HEAD_MEMO, { size: next, edge: new Map(rootPlan(next).map((ref) => [nodeKey(ref), lookup(ref)])) } satisfies LogHead);
      await db.query(INSERT_BATCH, [
        columns.idx,
        columns.kind,
        columns.leaf,
        columns.leafHash,
        columns.integratedTime,
        columns.linkedIdx,
        columns.nodeLevel,
        columns.nodeIdx,
        columns.nodeHash,
      ]);
    }
    return outcomes;
  });
}

/** A row read for `index` must carry that index: anything else is not the entry asked for. */
function entryAt(index: number, row: unknown): LogEntryRecord {
  const record = logEntryFromRow(row);
  if (record.index !== index) {
    throw new StoreError('STORE_CORRUPT', `log entry ${index} is missing (found ${record.index} in its place)`);
  }
  return record;
}

/** A left sibling an append needs; the tree of `size` leaves must have it. */
function requiredNode(edge: ReadonlyMap<string, unknown>, ref: NodeRef, size: number): Buffer {
  const key = nodeKey(ref);
  if (!edge.has(key)) throw new StoreError('STORE_CORRUPT', `log node ${key} is missing from the tree of size ${size}`);
  return logNodeHashFromRow(ref, edge.get(key));
}
