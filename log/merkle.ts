/**
 * Merkle tree maths of the transparency log: the RFC 9162 §2.1 tree (RFC 6962 hashing,
 * SHA-256), the arithmetic that says which stored nodes a root or a proof needs, the
 * evaluation of those plans, append bookkeeping, and the proof verifiers.
 *
 * Pure: no I/O, node:crypto only for SHA-256.
 *
 * Storage model: only perfect subtrees are stored. Node (level L, index i) is the hash of
 * leaves [i·2^L, (i+1)·2^L); it is written once that range is complete and never changes.
 * Every hash the RFC asks for (a root, an audit-path element, a consistency-proof element)
 * is the MTH of a range whose recursive split ends in such nodes, so a caller plans first,
 * fetches every node of the plans in one batch, then evaluates: O(log n) reads per proof.
 *
 * Numbers: sizes are integers in [0, 2^53], indices in [0, 2^53). JavaScript's bitwise
 * operators truncate to 32 bits, so bit arithmetic here uses division and remainder, which
 * are exact on every integer in that range.
 */
import { hash } from 'node:crypto';

/** Bytes of every hash in the tree (SHA-256). */
export const HASH_SIZE = 32;

/** Largest tree size the arithmetic accepts: indices stay exact doubles below it. */
export const MAX_TREE_SIZE = 2 ** 53;

/** Highest node level: the single perfect subtree of a tree of MAX_TREE_SIZE leaves. */
const MAX_LEVEL = 53;

/**
 * No valid proof is longer: inclusion ≤ ⌈log2 n⌉ = 53, consistency ≤ ⌈log2 n⌉ + 1 = 54
 * (RFC 9162 §2.1.3.1, §2.1.4.1). Longer inputs are refused before any element is read.
 */
const MAX_PROOF_LENGTH = 64;

// RFC 9162 §2.1.1: the 0x00 / 0x01 prefixes separate leaf hashes from node hashes, which
// is what gives second-preimage resistance (a node can't be passed off as a leaf).
const LEAF_PREFIX_BYTE = 0x00;
const NODE_PREFIX_BYTE = 0x01;
const EMPTY_INPUT = new Uint8Array(0);
const EMPTY_ROOT = hash('sha256', EMPTY_INPUT, 'buffer');

/** A stored perfect subtree: the hash of leaves [index·2^level, (index+1)·2^level). */
export interface NodeRef {
  readonly level: number;
  readonly index: number;
}

/** A node and its hash, as produced by an append. */
export interface NodeHash {
  readonly ref: NodeRef;
  readonly hash: Buffer;
}

/**
 * Reads one stored node. Throws when the node is missing: a plan only names nodes that
 * exist in a tree of the planned size, so a missing node is a storage fault.
 */
export type NodeLookup = (ref: NodeRef) => Buffer;

/** A root plan (one range) or a proof plan (one range per proof element). */
export type NodePlan = readonly NodeRef[] | readonly (readonly NodeRef[])[];

// ---------------------------------------------------------------------------------------
// Hashing (RFC 9162 §2.1.1)

// One-shot `hash` over the concatenated input rather than a Hash object per call: the
// object's set-up cost more than hashing 65 bytes (about 0.5–0.9 µs of 1.6–2.6 µs per
// node hash measured here), and the signing path hashes a few dozen nodes per request.

/** MTH({d}) = HASH(0x00 ‖ d). */
export function leafHash(leaf: Uint8Array): Buffer {
  return prefixedHash(LEAF_PREFIX_BYTE, leaf, EMPTY_INPUT);
}

/** HASH(0x01 ‖ left ‖ right): the parent of two subtree hashes. */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return prefixedHash(NODE_PREFIX_BYTE, left, right);
}

/** SHA-256 of prefix ‖ first ‖ second, a Buffer of its own. */
function prefixedHash(prefix: number, first: Uint8Array, second: Uint8Array): Buffer {
  // allocUnsafe: every byte is written below; the input lives only for this call.
  const input = Buffer.allocUnsafe(1 + first.length + second.length);
  input[0] = prefix;
  input.set(first, 1);
  input.set(second, 1 + first.length);
  return hash('sha256', input, 'buffer');
}

/** MTH({}) = HASH(), the root of the empty tree. A fresh copy: Buffers are mutable. */
export function emptyRoot(): Buffer {
  return Buffer.from(EMPTY_ROOT);
}

/** A stable string key for maps and SQL batches: `level:index`. */
export function nodeKey(ref: NodeRef): string {
  return `${ref.level}:${ref.index}`;
}

/**
 * 2^0 … 2^MAX_LEVEL, exact. Looked up rather than computed: `2 ** level` with a variable
 * exponent is a call to the C library's pow(), and proofs and appends evaluate it for
 * every node they touch.
 */
const POWERS_OF_TWO: readonly number[] = Array.from({ length: MAX_LEVEL + 1 }, (_, level) => 2 ** level);

/** 2^level for an integer level in [0, MAX_LEVEL]; NaN otherwise. */
function powerOfTwo(level: number): number {
  return POWERS_OF_TWO[level] ?? Number.NaN;
}

/** The leaf range [start, end) a node covers. */
export function nodeRange(ref: NodeRef): { start: number; end: number } {
  const width = powerOfTwo(ref.level);
  return { start: ref.index * width, end: (ref.index + 1) * width };
}

// ---------------------------------------------------------------------------------------
// Integer helpers (exact up to 2^53)

function isTreeSize(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 0 && (value as number) <= MAX_TREE_SIZE;
}

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.length === HASH_SIZE;
}

function isNodeRef(value: NodeRef): boolean {
  const { level, index } = value;
  return (
    Number.isInteger(level) &&
    level >= 0 &&
    level <= MAX_LEVEL &&
    Number.isInteger(index) &&
    index >= 0 &&
    (index + 1) * powerOfTwo(level) <= MAX_TREE_SIZE
  );
}

function isOdd(value: number): boolean {
  return value % 2 === 1;
}

function half(value: number): number {
  return Math.floor(value / 2);
}

/** 2^⌊log2 x⌋ for 1 ≤ x ≤ 2^53. */
function highestPowerOfTwoAtMost(x: number): number {
  if (x < 2 ** 32) return powerOfTwo(31 - Math.clz32(x));
  let power = 2 ** 32;
  while (power * 2 <= x) power *= 2;
  return power;
}

/** RFC 9162 §2.1.1's k: the largest power of two smaller than n, for n ≥ 2. */
function largestPowerOfTwoBelow(n: number): number {
  return highestPowerOfTwoAtMost(n - 1);
}

/** log2 of a power of two. */
function levelOf(power: number): number {
  if (power < 2 ** 32) return 31 - Math.clz32(power);
  let level = 0;
  for (let width = 1; width < power; width *= 2) level += 1;
  return level;
}

function isPowerOfTwo(n: number): boolean {
  return n >= 1 && highestPowerOfTwoAtMost(n) === n;
}

// Plans are built from sizes the service itself chose; a bad one is a caller bug, so it
// throws at once rather than producing a plan that reads the wrong nodes.
function requireSize(name: string, value: number, min: number): void {
  if (!isTreeSize(value) || value < min) {
    throw new RangeError(`${name} must be an integer in [${min}, 2^53], got ${String(value)}`);
  }
}

// ---------------------------------------------------------------------------------------
// Plans: which perfect subtrees each hash is folded from

/**
 * The perfect subtrees that RFC 9162 §2.1.1's recursive split of D[start:end] ends in,
 * left to right: the binary digits of end − start, largest first. Folding their hashes
 * right to left gives MTH(D[start:end]).
 *
 * Only ranges whose split lands on stored nodes are accepted: start must be a multiple of
 * 2^⌊log2(end − start)⌋. Every range that a root or proof of the tree needs is one.
 */
export function perfectSubtrees(start: number, end: number): NodeRef[] {
  requireSize('start', start, 0);
  requireSize('end', end, start);
  const refs: NodeRef[] = [];
  if (start === end) return refs;
  let width = highestPowerOfTwoAtMost(end - start);
  if (start % width !== 0) {
    throw new RangeError(
      `[${start}, ${end}) does not split into stored subtrees: start must be a multiple of ${width}`,
    );
  }
  let level = levelOf(width);
  let position = start;
  while (position < end) {
    if (end - position >= width) {
      refs.push({ level, index: position / width });
      position += width;
    }
    width /= 2;
    level -= 1;
  }
  return refs;
}

/** The nodes whose fold is MTH(D[0:size]); empty for size 0 (the root is emptyRoot()). */
export function rootPlan(size: number): NodeRef[] {
  requireSize('size', size, 0);
  return perfectSubtrees(0, size);
}

/**
 * PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, as ranges: one entry per audit-path
 * element, from the leaf upwards, each the perfect subtrees whose fold is that element.
 * At most ⌈log2 size⌉ elements; only the first right sibling met on the way down can be
 * an imperfect range, so the plan names O(log size) nodes.
 */
export function inclusionPlan(index: number, size: number): NodeRef[][] {
  requireSize('size', size, 1);
  if (!Number.isInteger(index) || index < 0 || index >= size) {
    throw new RangeError(`index must be an integer in [0, ${size}), got ${String(index)}`);
  }
  const topDown: NodeRef[][] = [];
  let low = 0;
  let high = size;
  while (high - low > 1) {
    const middle = low + largestPowerOfTwoBelow(high - low);
    if (index < middle) {
      // PATH(m, D_n) = PATH(m, D[0:k]) : MTH(D[k:n]) for m < k
      topDown.push(perfectSubtrees(middle, high));
      high = middle;
    } else {
      // PATH(m, D_n) = PATH(m − k, D[k:n]) : MTH(D[0:k]) for m ≥ k
      topDown.push(perfectSubtrees(low, middle));
      low = middle;
    }
  }
  return topDown.reverse();
}

/**
 * PROOF(oldSize, D[0:newSize]) = SUBPROOF(oldSize, D[0:newSize], true) of RFC 9162
 * §2.1.4.1, as ranges, elements in proof order. At most ⌈log2 newSize⌉ + 1 elements.
 *
 * The RFC defines the proof for 0 < m < n; m = n gives SUBPROOF(m, D_m, true) = {}, the
 * empty proof. There is no proof from the empty tree (oldSize 0): that throws.
 */
export function consistencyPlan(oldSize: number, newSize: number): NodeRef[][] {
  requireSize('oldSize', oldSize, 1);
  requireSize('newSize', newSize, oldSize);
  const topDown: NodeRef[][] = [];
  let low = 0;
  let high = newSize;
  // Whether D[low:oldSize] is the old tree itself, whose hash the verifier already has.
  let known = true;
  // Invariant: low < oldSize ≤ high; the recursion ends when the old tree fills the range.
  while (oldSize !== high) {
    const middle = low + largestPowerOfTwoBelow(high - low);
    if (oldSize <= middle) {
      // SUBPROOF(m, D_n, b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n]) for m ≤ k
      topDown.push(perfectSubtrees(middle, high));
      high = middle;
    } else {
      // SUBPROOF(m, D_n, b) = SUBPROOF(m − k, D[k:n], false) : MTH(D[0:k]) for m > k
      topDown.push(perfectSubtrees(low, middle));
      low = middle;
      known = false;
    }
  }
  // SUBPROOF(m, D_m, true) = {}; SUBPROOF(m, D_m, false) = {MTH(D_m)}
  const first = known ? [] : [perfectSubtrees(low, high)];
  return first.concat(topDown.reverse());
}

/** Every node the plans read, each once, in first-use order: one storage batch. */
export function nodesNeeded(plans: readonly NodePlan[]): NodeRef[] {
  const seen = new Map<string, NodeRef>();
  for (const ref of planRefs(plans)) {
    const key = nodeKey(ref);
    if (!seen.has(key)) seen.set(key, { level: ref.level, index: ref.index });
  }
  return [...seen.values()];
}

/**
 * Every node the plans name, in order, repeats included: for callers that look each one
 * up in a cache first and key only the missing ones (nodesNeeded keys them all).
 */
export function planRefs(plans: readonly NodePlan[]): NodeRef[] {
  const refs: NodeRef[] = [];
  for (const plan of plans) {
    for (const item of plan) {
      if (isRefList(item)) refs.push(...item);
      else refs.push(item);
    }
  }
  return refs;
}

function isRefList(item: NodeRef | readonly NodeRef[]): item is readonly NodeRef[] {
  return Array.isArray(item);
}

// ---------------------------------------------------------------------------------------
// Evaluation against a lookup

function fetchNode(lookup: NodeLookup, ref: NodeRef): Buffer {
  const hash: unknown = lookup(ref);
  // Stored bytes are not trusted to be hashes: a short or long value would silently
  // produce a root nobody can reproduce.
  if (!isHash(hash)) {
    throw new TypeError(`lookup returned no ${HASH_SIZE}-byte hash for node ${nodeKey(ref)}`);
  }
  return Buffer.from(hash.buffer, hash.byteOffset, hash.byteLength);
}

/**
 * MTH of the range that `refs` covers, folding right to left:
 * HASH(0x01 ‖ h0 ‖ HASH(0x01 ‖ h1 ‖ … hk)). `refs` must be the output of
 * perfectSubtrees (contiguous, strictly decreasing levels); no refs is the empty tree.
 */
export function foldSubtrees(refs: readonly NodeRef[], lookup: NodeLookup): Buffer {
  let previous: NodeRef | undefined;
  for (const ref of refs) {
    if (!isNodeRef(ref)) throw new RangeError(`not a node of a tree of at most 2^53 leaves: ${nodeKey(ref)}`);
    if (previous !== undefined) {
      const adjacent = nodeRange(previous).end === nodeRange(ref).start;
      if (!adjacent || ref.level >= previous.level) {
        throw new RangeError(`refs are not a perfect-subtree split: ${nodeKey(previous)} then ${nodeKey(ref)}`);
      }
    }
    previous = ref;
  }
  let accumulator: Buffer | undefined;
  for (let i = refs.length - 1; i >= 0; i -= 1) {
    const ref = refs[i];
    if (ref === undefined) continue;
    const hash = fetchNode(lookup, ref);
    accumulator = accumulator === undefined ? hash : nodeHash(hash, accumulator);
  }
  return accumulator === undefined ? emptyRoot() : Buffer.from(accumulator);
}

/** MTH(D[0:size]). */
export function treeRoot(size: number, lookup: NodeLookup): Buffer {
  return foldSubtrees(rootPlan(size), lookup);
}

/** The audit path of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1). */
export function inclusionProof(index: number, size: number, lookup: NodeLookup): Buffer[] {
  return proofFromPlan(inclusionPlan(index, size), lookup);
}

/**
 * MTH(D[start:size]) for every suffix of rootPlan(size), keyed by `start`, and the root
 * (start 0). Folding the root right to left computes each of them on the way, so they
 * cost nothing more than the root. They are every imperfect element a proof against
 * this tree can have: an element's range is imperfect only if it ends at `size`
 * (RFC 9162 §2.1.3.1: MTH(D[k:n]) at each split whose right part reaches the end), and
 * its split is then a suffix of the root's.
 */
export interface RightEdge {
  readonly size: number;
  readonly root: Buffer;
  readonly folds: ReadonlyMap<number, Buffer>;
}

export function rightEdge(size: number, lookup: NodeLookup): RightEdge {
  const plan = rootPlan(size);
  const folds = new Map<number, Buffer>();
  let accumulator: Buffer | undefined;
  for (let i = plan.length - 1; i >= 0; i -= 1) {
    const ref = plan[i] as NodeRef;
    const hash = fetchNode(lookup, ref);
    accumulator = accumulator === undefined ? Buffer.from(hash) : nodeHash(hash, accumulator);
    folds.set(nodeRange(ref).start, accumulator);
  }
  return { size, root: accumulator ?? emptyRoot(), folds };
}

/**
 * The proof a plan (inclusionPlan, consistencyPlan) describes: each element folded from
 * its subtrees. With `edge`, the right edge of the plan's tree (rightEdge, same size),
 * imperfect elements are taken from it rather than folded again.
 */
export function proofFromPlan(plan: readonly (readonly NodeRef[])[], lookup: NodeLookup, edge?: RightEdge): Buffer[] {
  return plan.map((refs) => {
    const first = refs[0];
    const last = refs[refs.length - 1];
    if (edge !== undefined && refs.length > 1 && first !== undefined && last !== undefined && nodeRange(last).end === edge.size) {
      const folded = edge.folds.get(nodeRange(first).start);
      if (folded !== undefined) return Buffer.from(folded);
    }
    return foldSubtrees(refs, lookup);
  });
}

/** The consistency proof from `oldSize` to `newSize` (RFC 9162 §2.1.4.1). */
export function consistencyProof(oldSize: number, newSize: number, lookup: NodeLookup): Buffer[] {
  return consistencyPlan(oldSize, newSize).map((refs) => foldSubtrees(refs, lookup));
}

// ---------------------------------------------------------------------------------------
// Append

function requireLeafHash(hash: Uint8Array): void {
  if (!isHash(hash)) throw new TypeError(`a leaf hash is ${HASH_SIZE} bytes`);
}

/**
 * The nodes that appending leaf `index` completes: the leaf node (0, index), then each
 * parent for as long as the new node is a right child (bit L of index set). The left
 * siblings come from `lookup`; when a batch is appended, that lookup must also see the
 * nodes returned for the earlier leaves of the batch.
 */
export function nodesCompletedByAppend(index: number, hash: Buffer, lookup: NodeLookup): NodeHash[] {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_TREE_SIZE) {
    throw new RangeError(`index must be an integer in [0, 2^53), got ${String(index)}`);
  }
  requireLeafHash(hash);
  let current: Buffer = Buffer.from(hash);
  let level = 0;
  let position = index;
  const completed: NodeHash[] = [{ ref: { level, index: position }, hash: current }];
  while (isOdd(position)) {
    current = nodeHash(fetchNode(lookup, { level, index: position - 1 }), current);
    level += 1;
    position = (position - 1) / 2;
    completed.push({ ref: { level, index: position }, hash: current });
  }
  return completed;
}

/**
 * The right edge of the tree kept in memory: the perfect subtrees of rootPlan(size), at
 * most one per level (bit L of size set ⇔ a subtree of 2^L leaves). An appender holds
 * one, stores what append() returns, and computes roots without reading storage.
 */
export class MerkleFrontier {
  #size: number;
  /** levels[L]: hash of the 2^L-leaf subtree of the right edge, if bit L of size is set. */
  readonly #levels: (Buffer | undefined)[];

  private constructor(size: number, levels: (Buffer | undefined)[]) {
    this.#size = size;
    this.#levels = levels;
  }

  static empty(): MerkleFrontier {
    return new MerkleFrontier(0, []);
  }

  /** Loads the frontier of a stored tree: reads the nodes of rootPlan(size). */
  static fromLookup(size: number, lookup: NodeLookup): MerkleFrontier {
    const levels: (Buffer | undefined)[] = [];
    for (const ref of rootPlan(size)) levels[ref.level] = Buffer.from(fetchNode(lookup, ref));
    return new MerkleFrontier(size, levels);
  }

  get size(): number {
    return this.#size;
  }

  /** Appends one leaf hash; returns the nodes it completes, to be stored. */
  append(hash: Buffer): NodeHash[] {
    if (this.#size >= MAX_TREE_SIZE) throw new RangeError('the tree is full (2^53 leaves)');
    const completed = nodesCompletedByAppend(this.#size, hash, (ref) => {
      // Every left sibling an append needs is a right-edge subtree of the current tree.
      const sibling = this.#levels[ref.level];
      if (sibling === undefined) throw new RangeError(`frontier has no node at level ${ref.level}`);
      return sibling;
    });
    const top = completed[completed.length - 1];
    if (top !== undefined) {
      for (let level = 0; level < top.ref.level; level += 1) this.#levels[level] = undefined;
      this.#levels[top.ref.level] = top.hash;
    }
    this.#size += 1;
    return completed.map(({ ref, hash: nodeValue }) => ({ ref, hash: Buffer.from(nodeValue) }));
  }

  /**
   * Appends one leaf hash like append(), without reporting the nodes it completes: for
   * an audit, which needs only roots (a million-entry `signet log verify` spent seconds
   * building and copying what append() reports). As in binary addition, the new leaf
   * merges with the right-edge subtree of each level whose bit of size is set, lowest
   * first, and the result takes the first free level.
   */
  push(hash: Buffer): void {
    if (this.#size >= MAX_TREE_SIZE) throw new RangeError('the tree is full (2^53 leaves)');
    requireLeafHash(hash);
    let carry: Buffer = Buffer.from(hash);
    let level = 0;
    for (let remaining = this.#size; isOdd(remaining); remaining = (remaining - 1) / 2) {
      const sibling = this.#levels[level];
      // Unreachable while bit L of size ⇔ levels[L] present.
      if (sibling === undefined) throw new RangeError(`frontier has no node at level ${level}`);
      carry = nodeHash(sibling, carry);
      this.#levels[level] = undefined;
      level += 1;
    }
    this.#levels[level] = carry;
    this.#size += 1;
  }

  /** MTH(D[0:size]): the right-edge subtrees folded right to left, i.e. lowest level first. */
  root(): Buffer {
    let accumulator: Buffer | undefined;
    for (const hash of this.#levels) {
      if (hash === undefined) continue;
      accumulator = accumulator === undefined ? hash : nodeHash(hash, accumulator);
    }
    return accumulator === undefined ? emptyRoot() : Buffer.from(accumulator);
  }

  /** The right-edge nodes, left to right: exactly rootPlan(size) with their hashes. */
  nodes(): NodeHash[] {
    return rootPlan(this.#size).map((ref) => {
      const hash = this.#levels[ref.level];
      // Unreachable while append() keeps bit L of size ⇔ levels[L] present.
      if (hash === undefined) throw new Error(`frontier has no node at level ${ref.level}`);
      return { ref, hash: Buffer.from(hash) };
    });
  }
}

// ---------------------------------------------------------------------------------------
// Verification. Every input may come from an attacker (a proof in a bundle, a size from a
// request): anything malformed yields null / false, never an exception.

function isProof(value: unknown): value is readonly Uint8Array[] {
  if (!Array.isArray(value) || value.length > MAX_PROOF_LENGTH) return false;
  // An indexed loop, not every(): every() skips the holes of a sparse array, and a hole
  // would reach the hash function as undefined.
  for (let i = 0; i < value.length; i += 1) {
    if (!isHash(value[i])) return false;
  }
  return true;
}

function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/**
 * The root that an audit path leads to (RFC 9162 §2.1.3.2 steps 1–4 and the sn check of
 * step 5), or null when the inputs are malformed or the path has the wrong length for
 * (index, size).
 */
export function rootFromInclusionProof(
  hash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
): Buffer | null {
  if (!isHash(hash) || !isTreeSize(index) || !isTreeSize(size) || !isProof(proof)) return null;
  // 1. leaf_index ≥ tree_size fails (this also refuses every index of the empty tree).
  if (index >= size) return null;
  // 2–3.
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(hash);
  // 4.
  for (const p of proof) {
    // a. A path longer than the tree is high.
    if (sn === 0) return null;
    if (isOdd(fn) || fn === sn) {
      // b. The sibling is on the left; on the right edge fn = sn, levels without a
      // sibling are skipped by shifting until fn is a right child or 0.
      r = nodeHash(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    // c.
    fn = half(fn);
    sn = half(sn);
  }
  // 5. A path shorter than the tree is high.
  return sn === 0 ? r : null;
}

/**
 * RFC 9162 §2.1.3.2: whether `proof` shows leaf hash `hash` at `index` in the tree of
 * `size` leaves whose root is `root`.
 *
 * The hash chain does not commit to `size` on its own: the fold depends only on the
 * path's left/right shape, which most (index, size) share with size ± 1, so the same
 * proof and root also verify under a neighbouring size. Take size and root together
 * from one verified checkpoint (whose signature binds them), never from separate sources.
 */
export function verifyInclusion(
  hash: Uint8Array,
  index: number,
  size: number,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isHash(root)) return false;
  const computed = rootFromInclusionProof(hash, index, size, proof);
  return computed !== null && sameHash(computed, root);
}

/**
 * RFC 9162 §2.1.4.2: whether `proof` shows that the tree of `newSize` leaves with root
 * `newRoot` extends the tree of `oldSize` leaves with root `oldRoot`.
 *
 * Outside the RFC's 0 < first < second: equal sizes are consistent only with an empty
 * proof and equal roots (SUBPROOF(m, D_m, true) = {}, §2.1.4.1); oldSize 0 has no proof
 * (§2.1.4.1 defines PROOF(m, D_n) for 0 < m) and is refused, as is oldSize > newSize.
 *
 * As for inclusion, the chain does not bind newSize on its own (the same proof and
 * roots often verify under newSize ± 1): each size must come with its root from one
 * verified checkpoint.
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isTreeSize(oldSize) || !isTreeSize(newSize)) return false;
  if (!isHash(oldRoot) || !isHash(newRoot) || !isProof(proof)) return false;
  if (oldSize === 0 || oldSize > newSize) return false;
  if (oldSize === newSize) return proof.length === 0 && sameHash(oldRoot, newRoot);
  // 1.
  if (proof.length === 0) return false;
  // 2. When first is a power of two the old tree is a perfect subtree: its hash is known
  // to the verifier, so the proof leaves it out.
  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : [...proof];
  // 3.
  let fn = oldSize - 1;
  let sn = newSize - 1;
  // 4.
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  // 5.
  const [seed, ...rest] = path;
  if (seed === undefined) return false;
  let fr: Buffer = Buffer.from(seed);
  let sr: Buffer = fr;
  // 6.
  for (const c of rest) {
    // a.
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      // b. i–iii.
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      // b. otherwise: only the new tree grows to the right.
      sr = nodeHash(sr, c);
    }
    // c.
    fn = half(fn);
    sn = half(sn);
  }
  // 7.
  return sn === 0 && sameHash(fr, oldRoot) && sameHash(sr, newRoot);
}
