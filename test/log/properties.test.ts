/**
 * Properties (fast-check) of the plans, the append bookkeeping and the verifiers, over
 * sizes up to 2^53: plans name only perfect subtrees that exist at that size and cover
 * the tree exactly as RFC 9162's recursion does; proofs stay within the RFC's bounds;
 * appends build exactly the reference's nodes; and huge trees prove and verify.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  consistencyPlan,
  consistencyProof,
  inclusionPlan,
  inclusionProof,
  leafHash,
  MAX_TREE_SIZE,
  MerkleFrontier,
  nodeHash,
  nodeKey,
  nodeRange,
  nodesCompletedByAppend,
  nodesNeeded,
  perfectSubtrees,
  proofFromPlan,
  rightEdge,
  rootFromInclusionProof,
  rootPlan,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
  type NodeLookup,
  type NodeRef,
} from '../../log/merkle.js';
import { pathLength, recursiveVerifyConsistency, recursiveVerifyInclusion, ReferenceTree } from './reference.js';
import { flipBit, GrowingStore, makeLeaves, without } from './support.js';

/** ⌈log2 n⌉, exactly, for 1 ≤ n ≤ 2^53. */
function ceilLog2(n: number): number {
  let bits = 0;
  for (let width = 1; width < n; width *= 2) bits += 1;
  return bits;
}

function popcount(n: number): number {
  let count = 0;
  for (let rest = n; rest > 0; rest = Math.floor(rest / 2)) count += rest % 2;
  return count;
}

/** Sizes spread over the whole range: small ones, powers of two and their neighbours, and anything up to 2^53. */
const treeSize = fc.oneof(
  fc.integer({ min: 1, max: 2000 }),
  fc.integer({ min: 0, max: 53 }).chain((bits) => fc.constantFrom(2 ** bits - 1, 2 ** bits, 2 ** bits + 1)),
  fc.bigInt({ min: 1n, max: 2n ** 53n }).map(Number),
).filter((n) => n >= 1 && n <= MAX_TREE_SIZE);

/** A position in [0, size). */
const below = (size: number): fc.Arbitrary<number> => fc.bigInt({ min: 0n, max: BigInt(size) - 1n }).map(Number);

/** A stored node of a tree of `size` leaves: a valid ref whose range is complete. */
function existsAt(ref: NodeRef, size: number): boolean {
  const { start, end } = nodeRange(ref);
  return Number.isInteger(ref.level) && ref.level >= 0 && ref.level <= 53 && Number.isInteger(ref.index) && ref.index >= 0 && start < end && end <= size;
}

/** The range refs cover if they are a perfect-subtree split: contiguous, levels falling; else null. */
function coveredRange(refs: readonly NodeRef[]): { start: number; end: number } | null {
  const first = refs[0];
  if (first === undefined) return null;
  let { start, end } = nodeRange(first);
  let level = first.level;
  for (const ref of refs.slice(1)) {
    const range = nodeRange(ref);
    if (range.start !== end || ref.level >= level) return null;
    end = range.end;
    level = ref.level;
  }
  start = nodeRange(first).start;
  return { start, end };
}

/** Ranges tile [0, size) exactly, in any order. */
function tiles(ranges: { start: number; end: number }[], size: number): boolean {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  let position = 0;
  for (const { start, end } of sorted) {
    if (start !== position) return false;
    position = end;
  }
  return position === size;
}

describe('plans', () => {
  it('a root plan is the binary split of the size into stored subtrees', () => {
    fc.assert(
      fc.property(treeSize, (size) => {
        const plan = rootPlan(size);
        expect(plan.every((ref) => existsAt(ref, size))).toBe(true);
        expect(coveredRange(plan)).toEqual({ start: 0, end: size });
        expect(plan).toHaveLength(popcount(size));
      }),
    );
  });

  it('an inclusion plan names existing subtrees whose ranges and the leaf tile the tree', () => {
    fc.assert(
      fc.property(treeSize.chain((size) => fc.tuple(fc.constant(size), below(size))), ([size, index]) => {
        const plan = inclusionPlan(index, size);
        expect(plan.length).toBeLessThanOrEqual(ceilLog2(size));
        const ranges = plan.map(coveredRange);
        expect(ranges.every((range) => range !== null)).toBe(true);
        expect(plan.flat().every((ref) => existsAt(ref, size))).toBe(true);
        // RFC 9162 §2.1.3.1: each element is the sibling at one split on the way down, so
        // the elements and the leaf itself partition D[0:size]; bottom-up, sizes never shrink.
        const all = [{ start: index, end: index + 1 }, ...ranges.filter((range) => range !== null)];
        expect(tiles(all, size)).toBe(true);
        const needed = nodesNeeded([plan]);
        expect(needed.length).toBeLessThanOrEqual(2 * ceilLog2(size));
        expect(new Set(needed.map(nodeKey)).size).toBe(needed.length);
      }),
    );
  });

  it('a consistency plan names existing subtrees that, with a known old root, tile the new tree', () => {
    const sizes = treeSize.filter((n) => n >= 2).chain((n) => fc.tuple(below(n - 1).map((m) => m + 1), fc.constant(n)));
    fc.assert(
      fc.property(sizes, ([oldSize, newSize]) => {
        const plan = consistencyPlan(oldSize, newSize);
        expect(plan.length).toBeGreaterThanOrEqual(1);
        expect(plan.length).toBeLessThanOrEqual(ceilLog2(newSize) + 1);
        expect(plan.flat().every((ref) => existsAt(ref, newSize))).toBe(true);
        const ranges = plan.map(coveredRange);
        expect(ranges.every((range) => range !== null)).toBe(true);
        const covered = ranges.filter((range) => range !== null);
        // §2.1.4.1: SUBPROOF leaves out MTH(D[0:m]) only when the old tree is a perfect
        // subtree (m a power of two), whose hash the verifier already holds.
        const oldIsPerfect = 2 ** ceilLog2(oldSize) === oldSize;
        const all = oldIsPerfect ? [{ start: 0, end: oldSize }, ...covered] : covered;
        expect(tiles(all, newSize)).toBe(true);
        // The old tree is exactly the union of the ranges inside it: the proof commits to it.
        expect(tiles(all.filter((range) => range.end <= oldSize), oldSize)).toBe(true);
      }),
    );
  });

  it('nodesNeeded merges plans into one batch without duplicates', () => {
    fc.assert(
      fc.property(treeSize.chain((size) => fc.tuple(fc.constant(size), below(size), below(size))), ([size, a, b]) => {
        const [root, first, second] = [rootPlan(size), inclusionPlan(a, size), inclusionPlan(b, size)];
        const needed = nodesNeeded([root, first, second]);
        const keys = needed.map(nodeKey);
        expect(new Set(keys).size).toBe(keys.length);
        const expected = new Set([...root, ...first.flat(), ...second.flat()].map(nodeKey));
        expect(new Set(keys)).toEqual(expected);
      }),
    );
  });

  it('perfectSubtrees covers the top and bottom of the number range exactly', () => {
    expect(perfectSubtrees(0, MAX_TREE_SIZE)).toEqual([{ level: 53, index: 0 }]);
    expect(perfectSubtrees(MAX_TREE_SIZE - 1, MAX_TREE_SIZE)).toEqual([{ level: 0, index: MAX_TREE_SIZE - 1 }]);
    expect(perfectSubtrees(2 ** 52, MAX_TREE_SIZE - 1)).toHaveLength(52);
    expect(perfectSubtrees(5, 5)).toEqual([]);
    expect(rootPlan(0)).toEqual([]);
  });
});

describe('append', () => {
  const leafLists = fc.array(fc.uint8Array({ maxLength: 24 }), { maxLength: 140 });

  it('nodesCompletedByAppend, leaf by leaf, stores exactly the complete perfect subtrees', () => {
    fc.assert(
      fc.property(leafLists, (raw) => {
        const leaves = raw.map((bytes) => Buffer.from(bytes));
        const reference = new ReferenceTree(leaves);
        const store = new Map<string, Buffer>();
        const lookup: NodeLookup = (ref) => {
          const hash = store.get(nodeKey(ref));
          if (hash === undefined) throw new Error(`missing ${nodeKey(ref)}`);
          return hash;
        };
        const frontier = MerkleFrontier.empty();
        const pushed = MerkleFrontier.empty();
        leaves.forEach((leaf, index) => {
          pushed.push(leafHash(leaf));
          expect(pushed.root()).toEqual(reference.mth(0, index + 1));
          expect(pushed.nodes().map(({ ref }) => ref)).toEqual(rootPlan(index + 1));
          const completed = nodesCompletedByAppend(index, leafHash(leaf), lookup);
          for (const node of completed) {
            expect(store.has(nodeKey(node.ref))).toBe(false);
            store.set(nodeKey(node.ref), node.hash);
          }
          expect(frontier.append(leafHash(leaf))).toEqual(completed);
          expect(frontier.root()).toEqual(reference.mth(0, index + 1));
          expect(frontier.nodes().map(({ ref }) => ref)).toEqual(rootPlan(index + 1));
        });
        // Exactly the nodes (L, i) with (i + 1)·2^L ≤ N, each MTH of its range.
        const expected = reference.perfectSubtrees();
        expect(new Map([...store].sort())).toEqual(new Map([...expected].sort()));
        expect(store.size).toBe(Math.max(0, 2 * leaves.length - popcount(leaves.length)));
        expect(MerkleFrontier.fromLookup(leaves.length, lookup).root()).toEqual(reference.mth(0, leaves.length));
      }),
      { numRuns: 60 },
    );
  });
});

describe('proofs and verification agree with the recursive reference', () => {
  const leaves = makeLeaves(200);
  const reference = new ReferenceTree(leaves);
  const store = new GrowingStore();
  for (const leaf of leaves) store.append(leaf);
  /** Hashes as the proofs see them: any node of the 200-leaf tree. */
  const lookup = store.lookup;

  const mutation = fc.oneof(
    fc.constant({ kind: 'none' as const }),
    fc.record({ kind: fc.constant('flip' as const), position: fc.nat(), bit: fc.nat({ max: 255 }) }),
    fc.record({ kind: fc.constant('drop' as const), position: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), position: fc.nat() }),
    fc.record({ kind: fc.constant('swap' as const), position: fc.nat() }),
  );
  type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

  function mutate(proof: Buffer[], change: Mutation, extra: Buffer): Buffer[] {
    if (change.kind === 'none') return proof;
    const at = proof.length === 0 ? 0 : change.position % proof.length;
    switch (change.kind) {
      case 'flip':
        return proof.length === 0 ? proof : proof.map((e, i) => (i === at ? flipBit(e, change.bit) : e));
      case 'drop':
        return proof.length === 0 ? proof : without(proof, at);
      case 'insert':
        return [...proof.slice(0, at), extra, ...proof.slice(at)];
      case 'swap':
        return proof.length < 2 ? proof : proof.map((_, i) => proof[i === at ? (at + 1) % proof.length : i === (at + 1) % proof.length ? at : i]!);
    }
  }

  const claim = fc.record({
    size: fc.integer({ min: 1, max: 200 }),
    index: fc.nat({ max: 199 }),
    claimedIndexDelta: fc.integer({ min: -2, max: 2 }),
    claimedSizeDelta: fc.integer({ min: -2, max: 2 }),
    change: mutation,
  });

  it('inclusion: the module accepts exactly what the recursive verifier accepts', () => {
    fc.assert(
      fc.property(claim, ({ size, index: raw, claimedIndexDelta, claimedSizeDelta, change }) => {
        const index = raw % size;
        const root = treeRoot(size, lookup);
        const hash = leafHash(leaves[index]!);
        const proof = mutate(inclusionProof(index, size, lookup), change, root);
        const [claimedIndex, claimedSize] = [index + claimedIndexDelta, size + claimedSizeDelta];
        const accepted = verifyInclusion(hash, claimedIndex, claimedSize, proof, root);
        expect(accepted).toBe(recursiveVerifyInclusion(hash, claimedIndex, claimedSize, proof, root));
        const computed = rootFromInclusionProof(hash, claimedIndex, claimedSize, proof);
        expect(computed !== null && computed.equals(root)).toBe(accepted);
        // §2.1.3.2 steps 4a and 5: a path of the wrong length leads to no root at all.
        const claimValid = claimedIndex >= 0 && claimedIndex < claimedSize;
        expect(computed === null).toBe(!claimValid || proof.length !== pathLength(claimedIndex, claimedSize));
        if (change.kind === 'none' && claimedIndexDelta === 0 && claimedSizeDelta === 0) expect(accepted).toBe(true);
      }),
      { numRuns: 400 },
    );
  });

  it('consistency: the module accepts exactly what the recursive verifier accepts', () => {
    fc.assert(
      fc.property(
        claim,
        fc.integer({ min: 1, max: 200 }),
        ({ size, claimedIndexDelta, claimedSizeDelta, change }, rawOld) => {
          const oldSize = ((rawOld - 1) % size) + 1;
          const oldRoot = reference.mth(0, oldSize);
          const newRoot = reference.mth(0, size);
          const proof = mutate(consistencyProof(oldSize, size, lookup), change, newRoot);
          const [claimedOld, claimedNew] = [oldSize + claimedIndexDelta, size + claimedSizeDelta];
          const accepted = verifyConsistency(claimedOld, claimedNew, oldRoot, newRoot, proof);
          expect(accepted).toBe(recursiveVerifyConsistency(claimedOld, claimedNew, proof, oldRoot, newRoot));
          if (change.kind === 'none' && claimedIndexDelta === 0 && claimedSizeDelta === 0) expect(accepted).toBe(true);
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('right edge', () => {
  const store = new GrowingStore();
  for (const leaf of makeLeaves(200)) store.append(leaf);
  const lookup = store.lookup;

  it('gives the root and, taken for the imperfect elements, the same proofs as folding them, for every tree up to 200 leaves', () => {
    // 40,200 cases: proofs are compared as hex text and the mismatches collected, since
    // a deep equality per case (arrays of Buffers) took most of a minute on its own.
    const hex = (proof: readonly Buffer[]): string => proof.map((element) => element.toString('hex')).join(',');
    const mismatches: string[] = [];
    let cases = 0;
    for (let size = 1; size <= 200; size += 1) {
      const edge = rightEdge(size, lookup);
      if (!edge.root.equals(treeRoot(size, lookup))) mismatches.push(`root of ${size}`);
      // An edge of another size is never taken: a multi-node element ends at its own tree's size.
      const other = rightEdge(size === 1 ? 2 : size - 1, lookup);
      for (let index = 0; index < size; index += 1) {
        const expected = hex(inclusionProof(index, size, lookup));
        if (hex(proofFromPlan(inclusionPlan(index, size), lookup, edge)) !== expected) mismatches.push(`inclusion ${index} in ${size}`);
        if (hex(proofFromPlan(inclusionPlan(index, size), lookup, other)) !== expected) mismatches.push(`inclusion ${index} in ${size}, other edge`);
        cases += 1;
      }
      for (let oldSize = 1; oldSize <= size; oldSize += 1) {
        if (hex(proofFromPlan(consistencyPlan(oldSize, size), lookup, edge)) !== hex(consistencyProof(oldSize, size, lookup))) {
          mismatches.push(`consistency ${oldSize} → ${size}`);
        }
        cases += 1;
      }
    }
    expect(mismatches).toEqual([]);
    expect(cases).toBe(2 * (200 * 201) / 2);
  });

  it('hands out copies: changing a proof element leaves the edge as it was', () => {
    const edge = rightEdge(7, lookup);
    const [element] = proofFromPlan(inclusionPlan(0, 7), lookup, edge).slice(-1);
    element!.fill(0);
    expect(proofFromPlan(inclusionPlan(0, 7), lookup, edge)).toEqual(inclusionProof(0, 7, lookup));
  });
});

describe('trees of up to 2^53 leaves', () => {
  // A real Merkle tree of any size with O(53) distinct nodes: every leaf is `common`
  // except leaf `special`. A node is the special chain's hash if its range holds the
  // special leaf, the all-common hash of its level otherwise.
  function sparseTree(special: number): NodeLookup {
    const common: Buffer[] = [leafHash(Buffer.from('common'))];
    const chain: Buffer[] = [leafHash(Buffer.from('special'))];
    for (let level = 0; level < 53; level += 1) {
      const c = common[level]!;
      const s = chain[level]!;
      common.push(nodeHash(c, c));
      chain.push(Math.floor(special / 2 ** level) % 2 === 1 ? nodeHash(c, s) : nodeHash(s, c));
    }
    return (ref) => {
      const onChain = Math.floor(special / 2 ** ref.level) === ref.index;
      return (onChain ? chain : common)[ref.level]!;
    };
  }

  const hugeCase = treeSize
    .filter((n) => n >= 2)
    .chain((size) => fc.tuple(fc.constant(size), below(size), below(size - 1).map((m) => m + 1)));

  it('prove and verify inclusion and consistency at any size', () => {
    const specialLeaf = leafHash(Buffer.from('special'));
    const commonLeaf = leafHash(Buffer.from('common'));
    fc.assert(
      fc.property(hugeCase, ([size, special, oldSize]) => {
        const lookup = sparseTree(special);
        const root = treeRoot(size, lookup);
        const proof = inclusionProof(special, size, lookup);
        expect(proof.length).toBeLessThanOrEqual(ceilLog2(size));
        expect(verifyInclusion(specialLeaf, special, size, proof, root)).toBe(true);
        expect(verifyInclusion(commonLeaf, special, size, proof, root)).toBe(false);
        expect(verifyInclusion(specialLeaf, special, size, proof.map((e, i) => (i === 0 ? flipBit(e, 3) : e)), root)).toBe(proof.length === 0);

        const oldRoot = treeRoot(oldSize, lookup);
        const consistency = consistencyProof(oldSize, size, lookup);
        expect(consistency.length).toBeLessThanOrEqual(ceilLog2(size) + 1);
        expect(verifyConsistency(oldSize, size, oldRoot, root, consistency)).toBe(true);
        expect(verifyConsistency(oldSize, size, root, oldRoot, consistency)).toBe(oldRoot.equals(root));
        expect(verifyConsistency(oldSize, size, oldRoot, root, consistency.slice(1))).toBe(false);
      }),
      { numRuns: 150 },
    );
  });

  it('the last leaf of a tree of exactly 2^53 leaves', () => {
    const last = MAX_TREE_SIZE - 1;
    const lookup = sparseTree(last);
    const root = treeRoot(MAX_TREE_SIZE, lookup);
    const proof = inclusionProof(last, MAX_TREE_SIZE, lookup);
    expect(proof).toHaveLength(53);
    expect(verifyInclusion(leafHash(Buffer.from('special')), last, MAX_TREE_SIZE, proof, root)).toBe(true);
    expect(verifyInclusion(leafHash(Buffer.from('special')), last - 1, MAX_TREE_SIZE, proof, root)).toBe(false);
    const consistency = consistencyProof(MAX_TREE_SIZE - 1, MAX_TREE_SIZE, lookup);
    expect(consistency).toHaveLength(54);
    expect(verifyConsistency(MAX_TREE_SIZE - 1, MAX_TREE_SIZE, treeRoot(last, lookup), root, consistency)).toBe(true);
  });
});
