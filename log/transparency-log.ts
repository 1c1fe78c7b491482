/**
 * The transparency log as the signing path uses it: durable appends (the storage
 * layer group-commits concurrent appends into one fsync), signed checkpoints made in
 * the HSM and coalesced (one signature covers every entry appended meanwhile), and
 * receipts — entry, inclusion proof, the checkpoint it proves against.
 *
 * Invariants:
 * - a checkpoint is signed only over entries that are durable (its size is the one the
 *   store knows durable, or read from storage, which shows committed writes only, once
 *   those queued before the read are durable), and only after checking, with a
 *   consistency proof computed from the stored nodes, that the new tree extends the previous
 *   signed checkpoint (RFC 9162 §2.1.4). If it does not, nothing is signed and the log
 *   refuses to go on;
 * - every signed checkpoint is recorded, in signing order (or yields to a stored one,
 *   below); the published one (`checkpointCovering`) only once its record is durable.
 *   On SQLite a receipt does not wait for its checkpoint's record: the entries it
 *   covers are durable already, so even a
 *   record lost in a crash leaves the note consistent with every later checkpoint
 *   (the same durable tree is re-signed at start), and provable by consistency proofs;
 * - replicas sharing one database agree on one note per size: a checkpoint another
 *   replica recorded first (same size, or larger) is adopted once verified, never
 *   overwritten, and on PostgreSQL receipts carry the note storage holds.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';
import { signCheckpoint, logIdOf, verifyCheckpoint, type LogDigestSigner } from './checkpoint.js';
import { LogError } from './errors.js';
import { NodeCache, nodeCacheKey } from './node-cache.js';
import {
  consistencyPlan,
  consistencyProof,
  emptyRoot,
  foldSubtrees,
  inclusionPlan,
  nodeKey,
  planRefs,
  proofFromPlan,
  rightEdge,
  rootPlan,
  treeRoot,
  verifyConsistency,
  type NodeLookup,
  type NodePlan,
  type NodeRef,
  type RightEdge,
} from './merkle.js';
import { isStoreError, type StoreError } from '../store/errors.js';
import type { CheckpointRecord, LogEntryInput, LogEntryRecord, SignetStore, StoreTransaction } from '../store/store.js';

/**
 * Node hashes kept. The hot set is small: what a signing round reads ahead for the
 * receipts that wait for it, a few dozen nodes at the rates measured (a round that
 * covers hundreds of new entries reads more, and its receipts may then read a node
 * again, which costs a read, not a wrong answer). Each smaller size measured faster in
 * same-run A/Bs (BENCHMARKS.md): 65,536 → 8,192 about 50 µs of event loop less per
 * signature, → 1,024 about 35 µs, → 256 about 15–100 µs. Every cached hash is a Buffer
 * with an ArrayBuffer of its own, tracked by the garbage collector one by one (8,192
 * hashes copied into one slab measured like 1,024 Buffers); that alone does not explain
 * the last step.
 */
const NODE_CACHE_ENTRIES = 256;
/**
 * Newly covered entries whose leaf hashes and proof nodes a signing round reads ahead for
 * their receipts: about 2 new nodes each (a leaf's hash is its neighbour's proof
 * element), plus the path they share to the root, so what one
 * round reads fits in the cache with room to spare. Read ahead for more, the first
 * ones would be evicted by the last before any receipt used them.
 */
const PREFETCHED_PROOFS = NODE_CACHE_ENTRIES / 4;

export interface LogReceipt {
  readonly index: number;
  /** Base64, as C2SP and Sigstore bundles carry hashes. */
  readonly leafHash: string;
  readonly treeSize: number;
  readonly rootHash: string;
  readonly inclusionProof: readonly string[];
  /** The signed note the proof is against. */
  readonly checkpoint: string;
  readonly integratedTime: number;
  /** Signed entry timestamp (Rekor SET), made only for entries that need it (Sigstore bundles); null otherwise. */
  readonly inclusionPromise: string | null;
  /** The decision entry this signature entry belongs to. */
  readonly decisionIndex: number | null;
}

/**
 * A signed checkpoint, and the write that records it (started when it was signed).
 * `recorded` resolves with the checkpoint storage holds for this tree head: `record`
 * itself, or, when another replica recorded one first, that one (checked, see
 * `#adoptStored`), which covers at least as many entries.
 */
interface SignedCheckpoint {
  readonly record: CheckpointRecord;
  readonly recorded: Promise<CheckpointRecord>;
}

interface TreeHead {
  readonly size: number;
  readonly rootHash: Buffer;
}

/**
 * One checkpoint signing round. `head` is the tree it signs, computed and checked
 * against the previous round's head; `signed` resolves once the HSM signed it.
 * Rounds compute their heads one after the other, but a new round may start while an
 * earlier one waits for the HSM, so an entry waits for one signature, not for the end
 * of a round that began before it was committed and then a whole new one.
 */
interface CheckpointRound {
  readonly head: Promise<TreeHead>;
  readonly signed: Promise<SignedCheckpoint>;
}

export interface TransparencyLogOptions {
  readonly store: SignetStore;
  readonly origin: string;
  readonly publicKeyPem: string;
  /** ECDSA P-256 over a SHA-256 digest, in the HSM; DER output. */
  readonly sign: LogDigestSigner;
}

export class TransparencyLog {
  readonly origin: string;
  readonly logId: Buffer;
  readonly publicKeyPem: string;
  readonly #store: SignetStore;
  readonly #sign: LogDigestSigner;
  readonly #publicKey: KeyObject;
  /** The newest checkpoint known to be recorded: the one published. */
  #recorded: CheckpointRecord | null = null;
  /** The newest signed checkpoint (recorded or on its way). */
  #signed: SignedCheckpoint | null = null;
  /** The newest signing round; every later round's head must extend its head. */
  #round: CheckpointRound | undefined;
  /** Hashes of perfect subtrees read before (immutable once stored). */
  readonly #nodeCache = new NodeCache(NODE_CACHE_ENTRIES);
  /**
   * The right edge of the newest tree a round computed the root of: the imperfect
   * elements of every proof against it (receipts, decision proofs), folded once per
   * round rather than once per proof.
   */
  #edge: RightEdge | undefined;

  constructor(options: TransparencyLogOptions) {
    this.origin = options.origin;
    this.publicKeyPem = options.publicKeyPem;
    this.logId = logIdOf(options.publicKeyPem);
    this.#store = options.store;
    this.#sign = options.sign;
    this.#publicKey = createPublicKey(options.publicKeyPem);
  }

  /** Loads the latest checkpoint and signs one for the current tree if it is newer (start-up). */
  async open(): Promise<CheckpointRecord> {
    this.#recorded = await this.#store.log.latestCheckpoint();
    const size = await this.#store.log.size();
    return this.checkpointCovering(size);
  }

  /** Appends entries; resolves once they are durable, with their indexes. */
  async append(entries: readonly LogEntryInput[]): Promise<number[]> {
    return this.#appendTo(this.#store, entries);
  }

  /**
   * Appends entries as part of `tx`: durable once it commits, gone if it rolls back
   * (so they can be atomic with the writes they record, such as a token's use).
   */
  async appendIn(tx: StoreTransaction, entries: readonly LogEntryInput[]): Promise<number[]> {
    return this.#appendTo(tx, entries);
  }

  async #appendTo(target: StoreTransaction, entries: readonly LogEntryInput[]): Promise<number[]> {
    try {
      const { firstIndex } = await target.log.append(entries);
      return entries.map((_, offset) => firstIndex + offset);
    } catch (error) {
      throw new LogError('LOG_UNAVAILABLE', 'the transparency log could not record the entry', { cause: error });
    }
  }

  /**
   * A recorded checkpoint covering at least `size` entries: the newest recorded one if
   * it does, else one signed for the current tree. Concurrent callers share one
   * signing round.
   */
  async checkpointCovering(size: number): Promise<CheckpointRecord> {
    const recorded = this.#recorded;
    if (recorded !== null && recorded.size >= size) return recorded;
    return (await this.#signedCovering(size)).recorded;
  }

  /**
   * Resolves once every checkpoint signed so far is recorded (or failed to be: that
   * failure reaches `checkpointCovering`, not this). Records are written in signing
   * order and may wait for the next group commit, so a reader of the history awaits
   * this first, and then finds every note a receipt has carried before its call.
   */
  async recordedSoFar(): Promise<void> {
    await this.#signed?.recorded.catch(() => undefined);
  }

  /**
   * The receipt of durable entry `index`, against the newest signed checkpoint that
   * covers it (signed after the entry was committed).
   */
  async receipt(index: number, options: { decisionIndex: number | null; integratedTime: number }): Promise<LogReceipt> {
    const signed = await this.#signedCovering(index + 1);
    // Replicas sharing one database each sign checkpoints; ECDSA notes of one tree
    // head differ, and storage keeps one per size. So there a receipt carries the note
    // storage holds (one note per size, whichever replica answers); a single process
    // is the only writer of its checkpoints, and its receipts need not wait.
    const checkpoint = this.#store.kind === 'postgres' ? await signed.recorded : signed.record;
    // The checkpoint was signed over stored entries, so its size exists. The leaf hash
    // is the tree's own level-0 node, read with the proof (and usually read ahead by the
    // round that signed the checkpoint): the hash the proof and the root were built on,
    // without hashing the leaf again. A verifier recomputes it from the leaf anyway.
    const plan = inclusionPlan(index, checkpoint.size);
    const leafRef: NodeRef = { level: 0, index };
    const { hash, proof } = await this.#withNodes([[leafRef], plan], (lookup) => ({
      hash: lookup(leafRef),
      proof: proofFromPlan(plan, lookup, this.#edgeOf(checkpoint.size)),
    }));
    return {
      index,
      leafHash: hash.toString('base64'),
      treeSize: checkpoint.size,
      rootHash: checkpoint.rootHash.toString('base64'),
      inclusionProof: proof.map((h) => h.toString('base64')),
      checkpoint: checkpoint.note,
      integratedTime: options.integratedTime,
      inclusionPromise: null,
      decisionIndex: options.decisionIndex,
    };
  }

  async entry(index: number): Promise<LogEntryRecord> {
    const entry = await this.#store.log.entry(index);
    if (entry === null) throw new LogError('LOG_ENTRY_NOT_FOUND', 'no log entry at that index');
    return entry;
  }

  async inclusionProof(index: number, size: number): Promise<Buffer[]> {
    if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
      throw new LogError('LOG_PROOF_INVALID_REQUEST', 'the index must be below the tree size');
    }
    await this.#assertSizeExists(size);
    const plan = inclusionPlan(index, size);
    return this.#withNodes([plan], (lookup) => proofFromPlan(plan, lookup, this.#edgeOf(size)));
  }

  async consistencyProof(first: number, second: number): Promise<Buffer[]> {
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 1 || first > second) {
      throw new LogError('LOG_PROOF_INVALID_REQUEST', 'sizes must satisfy 1 ≤ first ≤ second');
    }
    await this.#assertSizeExists(second);
    const plan = consistencyPlan(first, second);
    return this.#withNodes([plan], (lookup) => proofFromPlan(plan, lookup, this.#edgeOf(second)));
  }

  async root(size: number): Promise<Buffer> {
    if (!Number.isSafeInteger(size) || size < 0) throw new LogError('LOG_PROOF_INVALID_REQUEST', 'the size must be a non-negative integer');
    if (size === 0) return emptyRoot();
    // Nodes are read only for a tree known to be durable (store.ts, LogRepository.nodes).
    await this.#assertSizeExists(size);
    const edge = this.#edgeOf(size);
    if (edge !== undefined) return Buffer.from(edge.root);
    const plan = rootPlan(size);
    return this.#withNodes([plan], (lookup) => foldSubtrees(plan, lookup));
  }

  /** The right edge of the tree of `size` leaves, if a round computed it. */
  #edgeOf(size: number): RightEdge | undefined {
    return this.#edge?.size === size ? this.#edge : undefined;
  }

  /**
   * Rekor's signed entry timestamp over the canonical JSON of
   * {body, integratedTime, logID, logIndex} (SIGSTORE-NOTES.md, "Time"). One HSM
   * signature per call: made only for entries that need it.
   */
  async inclusionPromise(entry: LogEntryRecord): Promise<string> {
    const payload = canonicalJson({
      body: entry.leaf.toString('base64'),
      integratedTime: entry.integratedTime,
      logID: this.logId.toString('hex'),
      logIndex: entry.index,
    });
    return (await this.#sign(createHash('sha256').update(payload).digest())).toString('base64');
  }

  async #assertSizeExists(size: number): Promise<void> {
    // A signed checkpoint's size exists (it was read from storage): no read needed.
    if (size <= (this.#signed?.record.size ?? this.#recorded?.size ?? 0)) return;
    if (size > (await this.#store.log.size())) throw new LogError('LOG_PROOF_INVALID_REQUEST', 'the log is not that large');
  }

  /** The newest signed checkpoint if it covers `size` entries, else the first round that does. */
  async #signedCovering(size: number): Promise<SignedCheckpoint> {
    for (;;) {
      const newest = this.#signed;
      if (newest !== null && newest.record.size >= size) return newest;
      const round = this.#round;
      if (round === undefined) {
        this.#round = this.#startRound(undefined, size);
        continue;
      }
      try {
        // A round whose head was taken before this caller's entry was durable may not
        // cover it: then a new round, started now, takes a size that does.
        if ((await round.head).size < size) {
          if (this.#round === round) this.#round = this.#startRound(round, size);
          continue;
        }
        const signed = await round.signed;
        if (signed.record.size >= size) return signed;
      } catch (error) {
        // The next caller starts again from what storage holds.
        if (this.#round === round) this.#round = undefined;
        throw error;
      }
    }
  }

  /** `needed`: the size the caller starting it waits for. */
  #startRound(previous: CheckpointRound | undefined, needed: number): CheckpointRound {
    const planned = this.#planRound(previous, needed);
    const head = planned.then((plan) => plan.head);
    const signed = planned.then(async (plan): Promise<SignedCheckpoint> => {
      const done = plan.reuse ?? (await this.#signHead(plan.head, previous));
      if (this.#signed === null || this.#signed.record.size < done.record.size) this.#signed = done;
      // A checkpoint that could not be recorded (the database went away) is not handed
      // out again: the next caller starts a round afresh from what storage holds, so
      // the log recovers by itself once the database is back.
      done.recorded.catch(() => {
        if (this.#signed === done) this.#signed = null;
        if (this.#round === round) this.#round = undefined;
      });
      return done;
    });
    // Callers await what they need; a failure reaches them, not the process.
    head.catch(() => undefined);
    signed.catch(() => undefined);
    const round: CheckpointRound = { head, signed };
    return round;
  }

  /**
   * The head a round signs: the durable tree, checked to extend the previous round's
   * head (or the newest stored checkpoint), covering at least `needed` entries if
   * storage holds them.
   */
  async #planRound(previous: CheckpointRound | undefined, needed: number): Promise<{ head: TreeHead; reuse: SignedCheckpoint | undefined }> {
    const previousHead = previous === undefined ? undefined : await previous.head.catch(() => undefined);
    const stored = previousHead === undefined ? await this.#store.log.latestCheckpoint() : null;
    const prior: TreeHead | null = previousHead ?? stored;
    // A checkpoint never covers an entry that could still be lost. The size the store
    // knows durable needs no read: a read would wait behind the group commits queued
    // meanwhile and their fsyncs, and every receipt waits for its round. It is a lower
    // bound (another process's appends are not in it), so when it is short of what the
    // caller needs or of the previous head, the size is read: a read sees committed
    // entries only, once the writes queued before it are durable.
    // Under load another group commit is nearly always on its way to the disk when a
    // round starts, with the entries of requests that will ask for a receipt a moment
    // later. Waiting for that one group (one fsync, never a later one) lets one
    // signature cover them too: about 10 entries per checkpoint instead of 7, and a
    // checkpoint signature costs the process several times a request's share of the
    // other log work (BENCHMARKS.md, "One checkpoint for the group commit in flight").
    // On an idle store nothing is in flight, and the round starts at once.
    const inFlight = this.#store.log.commitInFlight?.();
    if (inFlight !== undefined) await inFlight;
    const known = this.#store.log.durableSize?.() ?? 0;
    const size = known >= needed && known >= (prior?.size ?? 0) ? known : await this.#store.log.size();
    if (prior !== null && prior.size === size) {
      // Nothing new since: the checkpoint of that head serves.
      if (stored !== null) return { head: stored, reuse: { record: stored, recorded: Promise.resolve(stored) } };
      if (previous !== undefined) return { head: prior, reuse: await previous.signed };
    }
    // Each plan is made once: for the batch read, then to compute from what it read.
    const newRootPlan = rootPlan(size);
    const extension = prior !== null && prior.size > 0 ? { from: prior, plan: consistencyPlan(prior.size, size) } : undefined;
    const plans: NodePlan[] = [newRootPlan];
    if (extension !== undefined) plans.push(extension.plan);
    // The entries this checkpoint is the first to cover are those whose receipts wait
    // for it: their proofs' nodes come in the same read, so receipts find them cached.
    for (let index = Math.max(prior?.size ?? 0, size - PREFETCHED_PROOFS); index < size; index += 1) {
      plans.push([{ level: 0, index }], inclusionPlan(index, size));
    }
    const rootHash = size === 0 ? emptyRoot() : await this.#withNodes(plans, (lookup) => {
      const edge = rightEdge(size, lookup);
      if (extension !== undefined) {
        const { from, plan } = extension;
        if (!verifyConsistency(from.size, size, from.rootHash, edge.root, proofFromPlan(plan, lookup, edge))) {
          throw new LogError('LOG_INCONSISTENT', `the stored log does not extend checkpoint ${from.size}; refusing to sign`);
        }
      }
      // Computed from durable nodes, so true of this size whatever becomes of the round.
      if (this.#edge === undefined || this.#edge.size < size) this.#edge = edge;
      return edge.root;
    });
    return { head: { size, rootHash }, reuse: undefined };
  }

  async #signHead(head: TreeHead, previous: CheckpointRound | undefined): Promise<SignedCheckpoint> {
    const note = await signCheckpoint({ origin: this.origin, size: head.size, rootHash: head.rootHash }, this.logId, this.#sign);
    const record: CheckpointRecord = { size: head.size, rootHash: head.rootHash, note, createdAt: new Date().toISOString() };
    // Records are queued in signing order (checkpoints never go back), each joining the
    // next group commit; receipts do not wait for them.
    await previous?.signed.catch(() => undefined);
    const recorded = this.#store.log.addCheckpoint(record).then(
      () => record,
      (error: unknown) => {
        if (isStoreError(error) && error.code === 'STORE_CONFLICT') return this.#adoptStored(record, error);
        throw new LogError('LOG_UNAVAILABLE', 'the checkpoint could not be recorded', { cause: error });
      },
    ).then((held) => {
      if (this.#recorded === null || this.#recorded.size < held.size) this.#recorded = held;
      return held;
    });
    // checkpointCovering reports a failure to record; receipts do not wait for it.
    recorded.catch(() => undefined);
    return { record, recorded };
  }

  /**
   * Another replica on the same database recorded a checkpoint of this size first (its
   * note differs: ECDSA signatures are randomised) or a larger one already (checkpoints
   * never go back). Storage keeps one note per size, so this log adopts the stored one
   * rather than failing: only after checking that it is signed by the log key for this
   * origin, that its root is the root of the stored tree of its size, and that it
   * extends `ours` (RFC 9162 §2.1.4). Nothing is signed here; a stored checkpoint that
   * fails a check stops the log (LOG_INCONSISTENT), as an inconsistent tree would.
   */
  async #adoptStored(ours: CheckpointRecord, conflict: StoreError): Promise<CheckpointRecord> {
    let stored: CheckpointRecord | null;
    try {
      stored = (await this.#store.log.checkpoint(ours.size)) ?? (await this.#store.log.latestCheckpoint());
    } catch (error) {
      throw new LogError('LOG_UNAVAILABLE', 'the checkpoint could not be recorded', { cause: error });
    }
    if (stored === null || stored.size < ours.size) {
      throw new LogError('LOG_UNAVAILABLE', 'the checkpoint could not be recorded', { cause: conflict });
    }
    const verified = verifyCheckpoint(stored.note, this.origin, this.#publicKey);
    if (!verified.ok || verified.checkpoint.size !== stored.size || !verified.checkpoint.rootHash.equals(stored.rootHash)) {
      throw new LogError('LOG_INCONSISTENT', `the stored checkpoint of size ${stored.size} is not a valid note of this log; refusing to use it`);
    }
    const later = stored;
    const plans: NodePlan[] = later.size === 0 ? [] : [rootPlan(later.size)];
    if (ours.size > 0 && later.size > ours.size) plans.push(consistencyPlan(ours.size, later.size));
    const consistent = later.size === 0 ? later.rootHash.equals(emptyRoot()) : await this.#withNodes(plans, (lookup) => {
      if (!treeRoot(later.size, lookup).equals(later.rootHash)) return false;
      if (later.size === ours.size) return later.rootHash.equals(ours.rootHash);
      if (ours.size === 0) return true;
      return verifyConsistency(ours.size, later.size, ours.rootHash, later.rootHash, consistencyProof(ours.size, later.size, lookup));
    });
    if (!consistent) {
      throw new LogError('LOG_INCONSISTENT', `the stored checkpoint of size ${later.size} does not extend checkpoint ${ours.size}; refusing to go on`);
    }
    // Later receipts use the stored note too, unless a newer own checkpoint is on its way.
    if (this.#signed === null || this.#signed.record.size <= later.size) this.#signed = { record: later, recorded: Promise.resolve(later) };
    return later;
  }

  async #withNodes<T>(plans: readonly NodePlan[], compute: (lookup: NodeLookup) => T): Promise<T> {
    const refs = planRefs(plans);
    const missing = new Map<string, NodeRef>();
    for (const ref of refs) if (!this.#nodeCache.has(nodeCacheKey(ref))) missing.set(nodeKey(ref), ref);
    const lookupIn = (nodes: { get(key: number | string): Buffer | undefined }): NodeLookup => (ref) => {
      const hash = nodes.get(nodeCacheKey(ref));
      if (hash === undefined) throw new LogError('LOG_INCONSISTENT', 'a Merkle node is missing from storage');
      return hash;
    };
    // Everything cached (proofs against recent checkpoints share their nodes): computed
    // at once, before anything else can change the cache.
    if (missing.size === 0) return compute(lookupIn(this.#nodeCache));
    // Otherwise the cached nodes are held here across the read, during which other
    // calls may evict them, and the missing ones are read, each once, in one batch.
    const nodes = new Map<number | string, Buffer>();
    for (const ref of refs) {
      const cached = this.#nodeCache.get(nodeCacheKey(ref));
      if (cached !== undefined) nodes.set(nodeCacheKey(ref), cached);
    }
    const fetched = await this.#store.log.nodes([...missing.values()]);
    for (const [key, ref] of missing) {
      const hash = fetched.get(key);
      if (hash === undefined) continue;
      nodes.set(nodeCacheKey(ref), hash);
      this.#remember(ref, hash);
    }
    return compute(lookupIn(nodes));
  }

  /**
   * Caches a node read from storage. A stored node is the hash of a perfect subtree of
   * committed entries, which never changes in an append-only log (RFC 9162 §2.1), and
   * reads see committed data only; so a cached hash is as good as a read. Proofs
   * against the newest checkpoints share most of their nodes.
   */
  #remember(ref: NodeRef, hash: Buffer): void {
    this.#nodeCache.set(nodeCacheKey(ref), hash);
  }
}
