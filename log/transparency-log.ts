/**
 * The transparency log as the signing path uses it: durable appends (the storage
 * layer group-commits concurrent appends into one fsync), signed checkpoints made in
 * the HSM and coalesced (one signature covers every entry appended meanwhile), and
 * receipts — entry, inclusion proof, the checkpoint it proves against.
 *
 * Invariant: a checkpoint is signed only after checking, with a consistency proof
 * computed from storage, that the new tree extends the last checkpoint (RFC 9162
 * §2.1.4). If it does not, nothing is signed and the log refuses to go on.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';
import { signCheckpoint, logIdOf, type LogDigestSigner } from './checkpoint.js';
import { LogError } from './errors.js';
import {
  consistencyPlan,
  consistencyProof,
  emptyRoot,
  inclusionPlan,
  inclusionProof,
  nodeKey,
  nodesNeeded,
  rootPlan,
  treeRoot,
  verifyConsistency,
  type NodeLookup,
  type NodePlan,
} from './merkle.js';
import type { CheckpointRecord, LogEntryInput, LogEntryRecord, SignetStore } from '../store/store.js';

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
  #latest: CheckpointRecord | null = null;
  #signing: Promise<CheckpointRecord> | undefined;

  constructor(options: TransparencyLogOptions) {
    this.origin = options.origin;
    this.publicKeyPem = options.publicKeyPem;
    this.logId = logIdOf(options.publicKeyPem);
    this.#store = options.store;
    this.#sign = options.sign;
  }

  /** Loads the latest checkpoint and signs one for the current tree if it is newer (start-up). */
  async open(): Promise<CheckpointRecord> {
    this.#latest = await this.#store.log.latestCheckpoint();
    const size = await this.#store.log.size();
    return this.checkpointCovering(size);
  }

  /** Appends entries; resolves once they are durable, with their indexes. */
  async append(entries: readonly LogEntryInput[]): Promise<number[]> {
    try {
      const { firstIndex } = await this.#store.log.append(entries);
      return entries.map((_, offset) => firstIndex + offset);
    } catch (error) {
      throw new LogError('LOG_UNAVAILABLE', 'the transparency log could not record the entry', { cause: error });
    }
  }

  /**
   * The newest checkpoint if it covers `size` entries, else a new one signed for the
   * current tree. Concurrent callers share one signing round.
   */
  async checkpointCovering(size: number): Promise<CheckpointRecord> {
    for (;;) {
      const latest = this.#latest;
      if (latest !== null && latest.size >= size) return latest;
      if (this.#signing === undefined) {
        this.#signing = this.#signNewCheckpoint().finally(() => {
          this.#signing = undefined;
        });
      }
      const signed = await this.#signing;
      if (signed.size >= size) return signed;
    }
  }

  async receipt(index: number, options: { decisionIndex: number | null; integratedTime: number }): Promise<LogReceipt> {
    const checkpoint = await this.checkpointCovering(index + 1);
    const entry = await this.entry(index);
    const proof = await this.inclusionProof(index, checkpoint.size);
    return {
      index,
      leafHash: entry.leafHash.toString('base64'),
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
    return this.#withNodes([inclusionPlan(index, size)], (lookup) => inclusionProof(index, size, lookup));
  }

  async consistencyProof(first: number, second: number): Promise<Buffer[]> {
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(second) || first < 1 || first > second) {
      throw new LogError('LOG_PROOF_INVALID_REQUEST', 'sizes must satisfy 1 ≤ first ≤ second');
    }
    await this.#assertSizeExists(second);
    return this.#withNodes([consistencyPlan(first, second)], (lookup) => consistencyProof(first, second, lookup));
  }

  async root(size: number): Promise<Buffer> {
    if (size === 0) return emptyRoot();
    return this.#withNodes([rootPlan(size)], (lookup) => treeRoot(size, lookup));
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
    if (size > (await this.#store.log.size())) throw new LogError('LOG_PROOF_INVALID_REQUEST', 'the log is not that large');
  }

  async #signNewCheckpoint(): Promise<CheckpointRecord> {
    const size = await this.#store.log.size();
    const previous = this.#latest ?? (await this.#store.log.latestCheckpoint());
    if (previous !== null && previous.size === size) {
      this.#latest = previous;
      return previous;
    }
    const plans: NodePlan[] = size === 0 ? [] : [rootPlan(size)];
    if (previous !== null && previous.size > 0) plans.push(consistencyPlan(previous.size, size));
    const rootHash = size === 0 ? emptyRoot() : await this.#withNodes(plans, (lookup) => {
      const root = treeRoot(size, lookup);
      if (previous !== null && previous.size > 0) {
        const proof = consistencyProof(previous.size, size, lookup);
        if (!verifyConsistency(previous.size, size, previous.rootHash, root, proof)) {
          throw new LogError('LOG_INCONSISTENT', `the stored log does not extend checkpoint ${previous.size}; refusing to sign`);
        }
      }
      return root;
    });
    const note = await signCheckpoint({ origin: this.origin, size, rootHash }, this.logId, this.#sign);
    const record: CheckpointRecord = { size, rootHash, note, createdAt: new Date().toISOString() };
    try {
      await this.#store.log.addCheckpoint(record);
    } catch (error) {
      throw new LogError('LOG_UNAVAILABLE', 'the checkpoint could not be recorded', { cause: error });
    }
    this.#latest = record;
    return record;
  }

  async #withNodes<T>(plans: readonly NodePlan[], compute: (lookup: NodeLookup) => T): Promise<T> {
    const refs = nodesNeeded(plans);
    const nodes = refs.length === 0 ? new Map<string, Buffer>() : await this.#store.log.nodes(refs);
    return compute((ref) => {
      const hash = nodes.get(nodeKey(ref));
      if (hash === undefined) throw new LogError('LOG_INCONSISTENT', 'a Merkle node is missing from storage');
      return hash;
    });
  }
}
