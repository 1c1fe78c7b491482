/**
 * Reference Merkle tree for tests: RFC 9162 §2.1.1–§2.1.4 written out as the recursive
 * definitions over a leaf list, sharing no code with log/merkle.ts (its own SHA-256 calls,
 * no stored nodes, no bit arithmetic).
 *
 * `mth`, `path` and `proof` are the definitions over arrays. `ReferenceTree` is the same
 * recursion over index ranges of one leaf list, with MTH memoised per range so that the
 * exhaustive suites can ask for tens of thousands of proofs; memoising changes no result.
 */
import { createHash } from 'node:crypto';

function sha256(...parts: Uint8Array[]): Buffer {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
}

const LEAF = Uint8Array.of(0x00);
const NODE = Uint8Array.of(0x01);

/** k: the largest power of two smaller than n (n ≥ 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

export function referenceLeafHash(leaf: Uint8Array): Buffer {
  return sha256(LEAF, leaf);
}

export function referenceNodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return sha256(NODE, left, right);
}

/** MTH(D_n), RFC 9162 §2.1.1. */
export function mth(leaves: readonly Uint8Array[]): Buffer {
  const n = leaves.length;
  if (n === 0) return sha256();
  if (n === 1) return referenceLeafHash(leaves[0]!);
  const k = splitPoint(n);
  return referenceNodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** PATH(m, D_n), RFC 9162 §2.1.3.1. */
export function path(m: number, leaves: readonly Uint8Array[]): Buffer[] {
  const n = leaves.length;
  if (n === 1) return [];
  const k = splitPoint(n);
  if (m < k) return [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))];
  return [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}

/** PROOF(m, D_n) = SUBPROOF(m, D_n, true), RFC 9162 §2.1.4.1. */
export function proof(m: number, leaves: readonly Uint8Array[]): Buffer[] {
  return subproof(m, leaves, true);
}

function subproof(m: number, leaves: readonly Uint8Array[], known: boolean): Buffer[] {
  const n = leaves.length;
  if (m === n) return known ? [] : [mth(leaves)];
  const k = splitPoint(n);
  if (m <= k) return [...subproof(m, leaves.slice(0, k), known), mth(leaves.slice(k))];
  return [...subproof(m - k, leaves.slice(k), false), mth(leaves.slice(0, k))];
}

/** The same definitions over ranges [low, high) of one leaf list, MTH memoised. */
export class ReferenceTree {
  readonly leaves: readonly Uint8Array[];
  readonly #memo = new Map<string, Buffer>();

  constructor(leaves: readonly Uint8Array[]) {
    this.leaves = leaves;
  }

  /** MTH(D[low:high]). */
  mth(low: number, high: number): Buffer {
    const key = `${low}-${high}`;
    const cached = this.#memo.get(key);
    if (cached !== undefined) return cached;
    let value: Buffer;
    if (high === low) value = sha256();
    else if (high - low === 1) value = referenceLeafHash(this.leaves[low]!);
    else {
      const k = splitPoint(high - low);
      value = referenceNodeHash(this.mth(low, low + k), this.mth(low + k, high));
    }
    this.#memo.set(key, value);
    return value;
  }

  /**
   * Every perfect subtree of the whole tree: node (level L, index i) for each
   * (i + 1)·2^L ≤ n, with the MTH of leaves [i·2^L, (i + 1)·2^L), keyed `L:i` (what a
   * log stores, log/merkle.ts). Written over ranges here, not with merkle.ts's code.
   */
  perfectSubtrees(): Map<string, Buffer> {
    const nodes = new Map<string, Buffer>();
    for (let width = 1, level = 0; width <= this.leaves.length; width *= 2, level += 1) {
      for (let index = 0; (index + 1) * width <= this.leaves.length; index += 1) {
        nodes.set(`${level}:${index}`, this.mth(index * width, (index + 1) * width));
      }
    }
    return nodes;
  }

  /** PATH(m, D[0:n]). */
  path(m: number, n: number): Buffer[] {
    return this.#path(m, 0, n);
  }

  #path(m: number, low: number, high: number): Buffer[] {
    if (high - low === 1) return [];
    const k = splitPoint(high - low);
    if (m < k) return [...this.#path(m, low, low + k), this.mth(low + k, high)];
    return [...this.#path(m - k, low + k, high), this.mth(low, low + k)];
  }

  /** PROOF(m, D[0:n]). */
  proof(m: number, n: number): Buffer[] {
    return this.#subproof(m, 0, n, true);
  }

  #subproof(m: number, low: number, high: number, known: boolean): Buffer[] {
    if (m === high - low) return known ? [] : [this.mth(low, high)];
    const k = splitPoint(high - low);
    if (m <= k) return [...this.#subproof(m, low, low + k, known), this.mth(low + k, high)];
    return [...this.#subproof(m - k, low + k, high, false), this.mth(low, low + k)];
  }
}

/** |PATH(m, D_n)|: one element per split on the way down to leaf m. */
export function pathLength(m: number, n: number): number {
  if (n === 1) return 0;
  const k = splitPoint(n);
  return 1 + (m < k ? pathLength(m, k) : pathLength(m - k, n - k));
}

/**
 * How PATH(m, D_n) folds, from the leaf up: 'R' where the element is a right sibling
 * (m < k), 'L' where it is a left one. An audit path proves nothing about (m, n) beyond
 * this shape: any claim with the same shape, leaf and root folds to the same value.
 */
export function pathShape(m: number, n: number): string {
  if (n === 1) return '';
  const k = splitPoint(n);
  return m < k ? `${pathShape(m, k)}R` : `${pathShape(m - k, n - k)}L`;
}

/** |PROOF(m, D_n)|. */
export function proofLength(m: number, n: number): number {
  const sub = (first: number, size: number, known: boolean): number => {
    if (first === size) return known ? 0 : 1;
    const k = splitPoint(size);
    return 1 + (first <= k ? sub(first, k, known) : sub(first - k, size - k, false));
  };
  return sub(m, n, true);
}

/**
 * Verification read off the recursive definition of PATH rather than the iterative
 * algorithm of §2.1.3.2: the last element is the sibling at the top split, so rebuild
 * bottom-up by recursing first and consuming elements from the end. The answer is "does
 * this path fold to `root` under the (m, n) shape", the same question §2.1.3.2 answers.
 */
export function recursiveVerifyInclusion(
  hash: Uint8Array,
  m: number,
  n: number,
  elements: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 0 || m >= n) return false;
  // The recursion fixes the length; checking it first only saves hashing.
  if (elements.length !== pathLength(m, n)) return false;
  const stack = [...elements];
  const fold = (index: number, size: number): Buffer | null => {
    if (size === 1) return Buffer.from(hash);
    const k = splitPoint(size);
    const sibling = stack.pop();
    if (sibling === undefined) return null;
    if (index < k) {
      const left = fold(index, k);
      return left === null ? null : referenceNodeHash(left, sibling);
    }
    const right = fold(index - k, size - k);
    return right === null ? null : referenceNodeHash(sibling, right);
  };
  const computed = fold(m, n);
  return computed !== null && stack.length === 0 && computed.equals(root);
}

/**
 * Consistency verification read off SUBPROOF: rebuild both the old root (over D[0:m])
 * and the new root, consuming elements from the end as the recursion unwinds.
 */
export function recursiveVerifyConsistency(
  m: number,
  n: number,
  elements: readonly Uint8Array[],
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
): boolean {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 1 || m > n) return false;
  if (elements.length !== proofLength(m, n)) return false;
  const stack = [...elements];
  // Returns [hash of D[0:m] within this range, hash of the whole range].
  const rebuild = (first: number, size: number, known: boolean): [Buffer, Buffer] | null => {
    if (first === size) {
      if (known) return [Buffer.from(oldRoot), Buffer.from(oldRoot)];
      const whole = stack.shift();
      return whole === undefined ? null : [Buffer.from(whole), Buffer.from(whole)];
    }
    const k = splitPoint(size);
    const sibling = stack.pop();
    if (sibling === undefined) return null;
    if (first <= k) {
      const inner = rebuild(first, k, known);
      return inner === null ? null : [inner[0], referenceNodeHash(inner[1], sibling)];
    }
    const inner = rebuild(first - k, size - k, false);
    return inner === null
      ? null
      : [referenceNodeHash(sibling, inner[0]), referenceNodeHash(sibling, inner[1])];
  };
  const roots = rebuild(m, n, true);
  return roots !== null && stack.length === 0 && roots[0].equals(oldRoot) && roots[1].equals(newRoot);
}
