/**
 * Recomputes a log from its entries and checks it against its signed checkpoints: the
 * engine of `signet log verify`. It trusts nothing it is fed: every leaf hash is
 * recomputed from the leaf bytes, the tree is rebuilt with a Merkle frontier (O(log n)
 * memory), every checkpoint's signature is verified with the log key and its root
 * compared with the recomputed root at its size. Checkpoints that are all roots of
 * prefixes of one recomputed tree are consistent with each other by construction.
 */
import { verifyCheckpoint } from './checkpoint.js';
import { leafHash, MerkleFrontier } from './merkle.js';

export interface AuditProblem {
  /** The first entry index (or checkpoint size) at which the log is wrong. */
  readonly index: number;
  readonly message: string;
}

export class LogAuditor {
  readonly #frontier = MerkleFrontier.empty();
  readonly #checkpoints: { size: number; note: string }[];
  readonly #origin: string;
  readonly #publicKeyPem: string;
  #nextCheckpoint = 0;
  #checkedCheckpoints = 0;
  readonly #rootsWanted: Set<number>;
  readonly #roots = new Map<number, Buffer>();
  problem: AuditProblem | null = null;

  /**
   * `checkpoints`: every stored checkpoint (any order). `rootsAt`: tree sizes whose
   * recomputed root the caller wants (a checkpoint saved earlier, to prove the log
   * still extends it).
   */
  constructor(origin: string, publicKeyPem: string, checkpoints: readonly { size: number; note: string }[], rootsAt: readonly number[] = []) {
    this.#origin = origin;
    this.#publicKeyPem = publicKeyPem;
    this.#checkpoints = [...checkpoints].sort((a, b) => a.size - b.size);
    this.#rootsWanted = new Set(rootsAt);
    this.#checkUpTo(0);
  }

  /** The recomputed root at a size asked for in the constructor, once the audit got there. */
  rootAt(size: number): Buffer | undefined {
    return this.#roots.get(size);
  }

  get size(): number {
    return this.#frontier.size;
  }

  get checkedCheckpoints(): number {
    return this.#checkedCheckpoints;
  }

  /**
   * Feeds entry `index` (which must be the next one). `recorded` are hashes the store
   * claims for it (its leaf-hash column, its level-0 node); they must equal the
   * recomputed one. Returns false once a problem is found.
   */
  feed(index: number, leaf: Buffer, recorded: readonly (Buffer | undefined)[] = []): boolean {
    if (this.problem !== null) return false;
    if (index !== this.#frontier.size) {
      return this.#fail(this.#frontier.size, index > this.#frontier.size ? `entry ${this.#frontier.size} is missing` : `entry ${index} appears twice`);
    }
    const hash = leafHash(leaf);
    if (recorded.some((h) => h !== undefined && !h.equals(hash))) return this.#fail(index, `entry ${index} was changed: its leaf does not hash to the recorded leaf hash`);
    this.#frontier.push(hash);
    return this.#checkUpTo(this.#frontier.size);
  }

  /** Call after the last entry: every checkpoint must be within the log. */
  finish(): AuditProblem | null {
    if (this.problem === null && this.#nextCheckpoint < this.#checkpoints.length) {
      const cp = this.#checkpoints[this.#nextCheckpoint];
      this.#fail(this.#frontier.size, `checkpoint ${cp?.size ?? '?'} is beyond the log's ${this.#frontier.size} entries (entries were deleted)`);
    }
    return this.problem;
  }

  #checkUpTo(size: number): boolean {
    if (this.#rootsWanted.has(size)) this.#roots.set(size, this.#frontier.root());
    while (this.problem === null && this.#nextCheckpoint < this.#checkpoints.length) {
      const cp = this.#checkpoints[this.#nextCheckpoint];
      if (cp === undefined || cp.size > size) break;
      this.#nextCheckpoint += 1;
      const verified = verifyCheckpoint(cp.note, this.#origin, this.#publicKeyPem);
      if (!verified.ok) return this.#fail(cp.size, `checkpoint ${cp.size}: ${verified.reason}`);
      if (verified.checkpoint.size !== cp.size) return this.#fail(cp.size, `checkpoint ${cp.size}: its note names size ${verified.checkpoint.size}`);
      if (!verified.checkpoint.rootHash.equals(this.#frontier.root())) {
        return this.#fail(Math.max(0, cp.size - 1), `checkpoint ${cp.size}: its root is not the root of the first ${cp.size} entries (an entry before it was changed or the checkpoint rewritten)`);
      }
      this.#checkedCheckpoints += 1;
    }
    return this.problem === null;
  }

  #fail(index: number, message: string): false {
    this.problem ??= { index, message };
    return false;
  }
}

