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
import type { Deferred, Lease, PgRunner, PgSession } from './postgres-session.js';

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
 * Records a checkpoint ($1 size, $2 root, $3 note, $4 time) unless one of its size
 * exists or a larger one does (checkpoints never go back), and returns the one of its
 * size as it was (if any), the latest size, and whether it recorded it. One statement,
 * one snapshot, taken after the lock statement before it was answered.
 */
const RECORD_CHECKPOINT = `
WITH current AS (
  SELECT c.size, c.root_hash, c.note, c.created_at, (SELECT max(size) FROM log_checkpoints) AS latest
    FROM (SELECT 1) AS one LEFT JOIN log_checkpoints AS c ON c.size = $1::bigint
), recorded AS (
  INSERT INTO log_checkpoints (${CHECKPOINT_COLUMNS})
  SELECT $1::bigint, $2::bytea, $3::text, $4::text FROM current
   WHERE current.size IS NULL AND (current.latest IS NULL OR current.latest < $1::bigint)
  RETURNING 1
)
SELECT current.*, EXISTS (SELECT 1 FROM recorded) AS recorded FROM current`;

/**
 * The size and the stored nodes of rootPlan(size) (log/merkle.ts), the only left
 * siblings an append can need: bit L of size set ⇔ the right edge has a perfect
 * subtree of 2^L leaves, at index (size >> L) - 1. One row per such level (hash null
 * if the node is missing), or one row of nulls for an empty log. Each node is a
 * primary-key probe of its own (the scalar subquery): as a join, the planner reads the
 * whole of log_nodes instead, a cost that grows with the log (5 ms of server time per
 * append at 5,000 entries).
 */
export const SELECT_HEAD = `
SELECT head.size, l AS level, (head.size >> l) - 1 AS idx,
       (SELECT n.hash FROM log_nodes AS n WHERE n.level = l AND n.idx = (head.size >> l) - 1) AS hash
  FROM (SELECT coalesce(max(idx) + 1, 0) AS size FROM log_entries) AS head
  LEFT JOIN LATERAL generate_series(0, 53) AS l ON ((head.size >> l) & 1) = 1`;

/** The log's size and the hashes of its right edge (rootPlan(size)), remembered for the rest of a transaction. */
interface LogHead {
  readonly size: number;
  readonly edge: ReadonlyMap<string, unknown>;
  /** False for a head this transaction has not read itself (CommittedLog.seed): the lock is not taken yet. */
  readonly locked: boolean;
}
const LOG_HEAD_MEMO = 'log head';

const INSERT_BATCH = `
WITH entries AS (
  INSERT INTO log_entries (${ENTRY_COLUMNS})
  SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[])
)
INSERT INTO log_nodes (level, idx, hash)
SELECT * FROM unnest($7::integer[], $8::bigint[], $9::bytea[])`;

/** Most Merkle nodes `CommittedLog` keeps (32-byte hashes). */
const COMMITTED_NODES = 8192;
/** Most confirming reads `CommittedLog` asks for before trusting its head again. */
const MOST_CONFIRMATIONS = 256;

/** What a transaction's appends wrote (lease memo), for `CommittedLog` once it commits. */
const NODES_WRITTEN_MEMO = 'log nodes written';

/**
 * What this store knows of the log from its own writes that committed, shared by its
 * plain calls and its transactions.
 *
 * Merkle nodes, most recent last. A stored node is the hash of a perfect subtree of
 * committed entries and never changes (RFC 9162 §2.1; storage only appends), so a
 * node known committed is as good as a read of it: the nodes a new checkpoint or a
 * fresh receipt needs are nearly always ones this replica has just appended, and
 * `nodes()` then answers without a round trip.
 *
 * The head (size and right edge) its latest append left. While this store is the only
 * one appending (each head it read under the lock was the one it had left), a group
 * of transactions begun with `concurrent` starts from it instead of reading it under
 * the lock: one round trip less. The lock is still taken before the first insert, and
 * if another writer appended meanwhile, that insert takes an index already used and
 * the primary key refuses it: the group is rolled back and runs again one transaction
 * at a time, reading the head (postgres-store.ts), and the head is no longer trusted
 * until reads confirm again that nobody else appends: one at first, four times as many
 * after each refusal (up to 256), so that two replicas both appending soon stop trying.
 */
export class CommittedLog {
  readonly #hashes = new Map<string, Buffer>();
  #head: LogHead | undefined;
  #trusted = false;
  /** Reads in a row that found the head this store left. */
  #confirmed = 0;
  /** How many of them trust takes: multiplied after each refusal (two busy replicas soon stop trying). */
  #needed = 1;

  /** Nodes of a write that has committed. */
  addNodes(nodes: Iterable<readonly [string, Buffer]>): void {
    for (const [key, hash] of nodes) {
      this.#hashes.delete(key);
      this.#hashes.set(key, hash);
      if (this.#hashes.size > COMMITTED_NODES) {
        const oldest = this.#hashes.keys().next();
        if (oldest.done !== true) this.#hashes.delete(oldest.value);
      }
    }
  }

  node(key: string): Buffer | undefined {
    return this.#hashes.get(key);
  }

  /** The head an append of this store left, once committed (heads only grow: the largest is the latest). */
  addHead(head: LogHead): void {
    if (this.#head === undefined || head.size > this.#head.size) this.#head = { size: head.size, edge: head.edge, locked: false };
  }

  /** A head read under the lock: this store is still the only writer if it is the one it left. */
  observed(size: number): void {
    this.#confirmed = this.#head?.size === size ? this.#confirmed + 1 : 0;
    this.#trusted = this.#confirmed >= this.#needed;
  }

  /** Another writer appended (a group starting from the remembered head was refused). */
  distrust(): void {
    this.#trusted = false;
    this.#confirmed = 0;
    this.#needed = Math.min(this.#needed * 4, MOST_CONFIRMATIONS);
  }

  /**
   * What a transaction committed on this connection (the lease memo, after its
   * COMMIT): its nodes, and its head if it appended. Without a head in the memo
   * (nothing appended, or a savepoint's rollback took the memo with it, after appends
   * that did commit), the head remembered may be behind: not trusted until read again.
   */
  committed(memo: Map<string, unknown>): void {
    const written = memo.get(NODES_WRITTEN_MEMO) as (readonly [string, Buffer])[] | undefined;
    memo.delete(NODES_WRITTEN_MEMO);
    this.addNodes(written ?? []);
    const head = memo.get(LOG_HEAD_MEMO);
    if (isLogHead(head)) {
      if (head.locked) this.addHead(head);
    } else {
      // Appends undone by a savepoint's rollback take their memo with them: whether
      // others of the group appended is unknown.
      this.#trusted = false;
      this.#confirmed = 0;
    }
  }

  /**
   * Opens the log for a group of transactions begun with `concurrent`, on `lease`
   * right after its BEGIN: the log lock first, before any of their statements, so that
   * a group never waits for a row (a counter, a token use) while it holds the lock, and
   * a group waiting for the lock holds no row another one waits for (the lock and the
   * rows are always taken in that order: no deadlock between replicas). Then the head:
   * the one remembered, when trusted, else read at once under the lock, in the same
   * round trip as the group's first statements. Nothing is sent until the group's
   * first statement (or the head read) goes out.
   */
  openGroup(lease: Lease): OpenedGroup {
    const lock = lease.defer(advisoryLock('log append'));
    if (this.#trusted && this.#head !== undefined) {
      lease.memo.set(LOG_HEAD_MEMO, { ...this.#head, locked: true });
      return { seeded: true, lock, failed: () => false };
    }
    let failed = false;
    const reading = lease.query(SELECT_HEAD, [], 'reading the log head', true).then((result) => {
      const head = headFromRows(result.rows);
      this.observed(head.size);
      return head;
    });
    lease.memo.set(LOG_HEAD_MEMO, reading);
    // Appends waiting for the read (appendCalls) find the head in the memo once it is
    // answered; a failed read aborted the transaction, and the group cannot commit.
    reading.then(
      (head) => {
        if (lease.memo.get(LOG_HEAD_MEMO) === reading) lease.memo.set(LOG_HEAD_MEMO, head);
      },
      () => {
        failed = true;
        if (lease.memo.get(LOG_HEAD_MEMO) === reading) lease.memo.delete(LOG_HEAD_MEMO);
      },
    );
    return { seeded: false, lock, failed: () => failed };
  }
}

/** What `CommittedLog.openGroup` did. */
export interface OpenedGroup {
  /** The head remembered was used (a refused insert then means another writer appended). */
  readonly seeded: boolean;
  /** The lock statement, still deferred until something is sent (undo it if nothing is). */
  readonly lock: Deferred;
  /** The head read failed (the transaction is aborted). */
  readonly failed: () => boolean;
}

function isLogHead(value: unknown): value is LogHead {
  return typeof value === 'object' && value !== null && !(value instanceof Promise) && 'size' in value;
}

export class PostgresLogRepository implements LogRepository {
  readonly #run: PgRunner;
  readonly #group: CallGroup<readonly LogEntryInput[], AppendResult> | undefined;
  readonly #committed: CommittedLog;

  /**
   * With `grouping` (plain calls), appends made while a group is being written are
   * written together next (postgres-grouping.ts). `committed`: the store's, shared by
   * its plain calls and its transactions.
   */
  constructor(run: PgRunner, committed: CommittedLog, grouping?: CallGrouping) {
    this.#run = run;
    this.#committed = committed;
    const write = (db: PgSession, calls: readonly (readonly LogEntryInput[])[]): Promise<CallOutcome<AppendResult>[]> => appendCalls(db, calls, committed);
    this.#group =
      grouping === undefined
        ? undefined
        : new CallGroup({
            grouping,
            describe: (calls) => `appending ${calls.reduce((sum, entries) => sum + entries.length, 0)} log entries`,
            maxWeight: MAX_APPEND_ENTRIES,
            weigh: (entries) => entries.length,
            write,
          });
  }

  append(candidate: readonly LogEntryInput[]): Promise<AppendResult> {
    const value: unknown = candidate;
    const what = `appending ${Array.isArray(value) ? String(value.length) : 'invalid'} log entries`;
    if (this.#group !== undefined) return this.#group.submit(what, () => requireLogEntryInputs(candidate));
    return this.#run(
      what,
      (db) => writeAlone(db, requireLogEntryInputs(candidate), (session, calls) => appendCalls(session, calls, this.#committed)),
      'write-unrefused',
    );
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
        const stored = new Map<string, unknown>();
        const missing: LogNodeRef[] = [];
        for (const ref of refs) {
          const known = this.#committed.node(nodeKey(ref));
          if (known === undefined) missing.push(ref);
          else stored.set(nodeKey(ref), Buffer.from(known));
        }
        if (missing.length > 0) {
          const result = await db.query(
            `SELECT level, idx, hash FROM log_nodes
              WHERE (level, idx) IN (SELECT * FROM unnest($1::integer[], $2::bigint[]))`,
            [missing.map((ref) => ref.level), missing.map((ref) => ref.index)],
          );
          for (const row of result.rows) stored.set(`${String(row.level)}:${String(row.idx)}`, row.hash);
        }
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
      const params = [checkpoint.size, checkpoint.rootHash, checkpoint.note, checkpoint.createdAt];
      // Under the checkpoint lock: its own transaction (a plain call) goes out whole,
      // BEGIN to COMMIT, in one round trip; the statement writes only what may be written.
      const result = await db.committing(RECORD_CHECKPOINT, params, [advisoryLock('checkpoint')]);
      const row = result.rows[0];
      if (row?.recorded === true) return;
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
      const latestSize = latest === null || latest === undefined ? null : logIndexFromRow('checkpoint size', latest);
      if (latestSize !== null && latestSize > checkpoint.size) {
        throw new StoreError(
          'STORE_CONFLICT',
          `checkpoint size ${checkpoint.size} is smaller than the latest (${latestSize}); checkpoints never go back`,
        );
      }
      // Neither recorded nor refused: the statement and this reading disagree.
      throw new StoreError('STORE_CORRUPT', `the checkpoint of size ${checkpoint.size} was not recorded, for no reason found`);
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
async function appendCalls(
  db: PgSession,
  calls: readonly (readonly LogEntryInput[])[],
  committed: CommittedLog,
): Promise<CallOutcome<AppendResult>[]> {
  if (calls.every((entries) => entries.length === 0)) {
    const size = await readSize(db);
    return calls.map(() => ({ ok: true, value: Object.freeze({ firstIndex: size, size }) }));
  }
  const written: (readonly [string, Buffer])[] = [];
  const appended = await db.atomically(async () => {
    // Inside a transaction that appended before, the lock is still held and nobody else
    // can have appended since: the right edge it left is the one to extend.
    const memo = await db.transactionMemo();
    // Another call of the transaction may be reading the head right now: wait for it,
    // then take what it left (the memo is read again after every wait).
    for (let pending = memo?.get(LOG_HEAD_MEMO); pending instanceof Promise; pending = memo?.get(LOG_HEAD_MEMO)) {
      await pending.catch(() => undefined);
    }
    const remembered = memo?.get(LOG_HEAD_MEMO) as LogHead | undefined;
    let treeSize: number;
    let edge: ReadonlyMap<string, unknown>;
    // A head remembered from an earlier transaction (CommittedLog): the lock is taken
    // just before the insert, in the same round trip.
    let lockFirst = false;
    if (remembered !== undefined) {
      ({ size: treeSize, edge } = remembered);
      lockFirst = !remembered.locked;
    } else {
      const reading = readHead(db);
      memo?.set(LOG_HEAD_MEMO, reading);
      let head: LogHead;
      try {
        head = await reading;
      } finally {
        if (memo?.get(LOG_HEAD_MEMO) === reading) memo.delete(LOG_HEAD_MEMO);
      }
      // Another call may not have taken it meanwhile: they wait for `reading` above.
      ({ size: treeSize, edge } = head);
      committed.observed(treeSize);
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
          written.push([nodeKey(node.ref), node.hash]);
        }
        next += 1;
      }
      return { ok: true, value: Object.freeze({ firstIndex, size: next }) };
    });
    if (columns.idx.length > 0) {
      // Remembered before the write, which either succeeds or aborts the transaction
      // (emptying the memo with everything else).
      const head: LogHead = { size: next, edge: new Map(rootPlan(next).map((ref) => [nodeKey(ref), lookup(ref)])), locked: true };
      memo?.set(LOG_HEAD_MEMO, head);
      // Known committed once the transaction is: the store takes them after its COMMIT.
      if (memo !== undefined) memo.set(NODES_WRITTEN_MEMO, [...((memo.get(NODES_WRITTEN_MEMO) as (readonly [string, Buffer])[] | undefined) ?? []), ...written]);
      // Not waited for: under the lock, the outcome is known (the indexes above); the
      // statements after it follow it on the wire, and its unit's COMMIT (or the group
      // commit) checks that it was not refused. Nothing is awaited between reading the
      // head above and this call, so that appends made at once (a group's transactions
      // run together) go on the wire in the order of their indexes, after the lock.
      await db.send(INSERT_BATCH, lockFirst ? [advisoryLock('log append')] : [], [
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
      if (memo === undefined) return { outcomes, ownHead: head };
    }
    return { outcomes, ownHead: undefined };
  });
  // A call of its own, which appended: atomically() returned after its COMMIT.
  if (appended.ownHead !== undefined) {
    committed.addNodes(written);
    committed.addHead(appended.ownHead);
  }
  return appended.outcomes;
}

/** Takes the log lock, then reads the size and the right edge under it, in one round trip. */
async function readHead(db: PgSession): Promise<LogHead> {
  await db.defer(advisoryLock('log append'));
  return headFromRows((await db.query(SELECT_HEAD, [], true)).rows);
}

/** SELECT_HEAD's answer, read under the lock. */
function headFromRows(rows: readonly Record<string, unknown>[]): LogHead {
  const size = logIndexFromRow('size', rows[0]?.size);
  const edge = new Map<string, unknown>();
  for (const row of rows) {
    // A node missing from storage comes with a null hash (requiredNode reports it); an
    // empty log gives one row of nulls.
    const key = `${String(row.level)}:${String(row.idx)}`;
    if (row.hash !== null) edge.set(key, row.hash);
  }
  return { size, edge, locked: true };
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
