/**
 * Every inclusion proof of every tree up to 300 leaves: compared with PATH of RFC 9162
 * §2.1.3.1 (reference.ts), verified (§2.1.3.2), then corrupted. Nodes are built once,
 * leaf after leaf; the proofs of size n run right after leaf n − 1 is appended, against
 * a lookup that holds only the nodes that exist at that size.
 *
 * Claims under a neighbouring size or index with the SAME root are judged by an oracle,
 * not expected to fail: the §2.1.3.2 chain does not commit to the tree size, and a path
 * for (i, n) usually folds the same way under n ± 1 (leaf 0 of 3 and of 4, for one). The
 * oracle is the fold shape read off PATH's recursion (reference.ts pathShape): accepted
 * exactly when the claimed (index, size) folds the path the same way. The module must
 * agree every time, and the counts of such acceptances are pinned below. The same claims
 * with the root that really belongs to the claimed size must always fail.
 */
import { describe, expect, it } from 'vitest';
import { emptyRoot, inclusionProof, leafHash, treeRoot, verifyInclusion } from '../../log/merkle.js';
import { pathShape, ReferenceTree } from './reference.js';
import { flipBit, GrowingStore, makeLeaves, sameList, STRANGER, Tally, without } from './support.js';

const MAX_SIZE = 300;
/** Up to this size every corruption is applied at every element of every proof. */
const FULL_MATRIX_MAX = 100;

// One leaf more than the largest tree, for the root of size MAX_SIZE + 1.
const leaves = makeLeaves(MAX_SIZE + 1);
const reference = new ReferenceTree(leaves);

type Corruption = 'wrong leaf' | 'extra at end' | 'extra in front' | 'bit flipped' | 'element missing';
const CORRUPTIONS: readonly Corruption[] = ['wrong leaf', 'extra at end', 'extra in front', 'bit flipped', 'element missing'];

function corrupt(kind: Corruption, proof: readonly Buffer[], position: number, extra: Buffer, bit: number): Buffer[] {
  switch (kind) {
    case 'wrong leaf':
      return [...proof];
    case 'extra at end':
      return [...proof, extra];
    case 'extra in front':
      return [extra, ...proof];
    case 'bit flipped':
      return proof.map((element, i) => (i === position ? flipBit(element, bit) : element));
    case 'element missing':
      return without(proof, position);
  }
}

describe('exhaustive inclusion, every leaf of every tree up to 300 leaves', () => {
  it('matches PATH, verifies, and rejects every corruption', () => {
    const store = new GrowingStore();
    const t = new Tally();
    const rootOf = (size: number): Buffer => (size === 0 ? emptyRoot() : reference.mth(0, size));
    let elements = 0;
    for (let size = 1; size <= MAX_SIZE; size += 1) {
      store.append(leaves[size - 1]!);
      const root = treeRoot(size, store.lookup);
      if (!root.equals(rootOf(size))) t.fail(`root of ${size}`);
      for (let index = 0; index < size; index += 1) {
        const label = `leaf ${index} of ${size}`;
        const hash = leafHash(leaves[index]!);
        const proof = inclusionProof(index, size, store.lookup);
        elements += proof.length;
        if (!sameList(proof, reference.path(index, size))) t.fail(`${label}: proof differs from PATH`);
        const shape = pathShape(index, size);
        t.mustAccept(verifyInclusion(hash, index, size, proof, root), 'valid', label);

        for (const [kind, claimedIndex, claimedSize] of [
          ['index-1', index - 1, size],
          ['index+1', index + 1, size],
          ['size-1', index, size - 1],
          ['size+1', index, size + 1],
        ] as const) {
          const sameShape = claimedIndex >= 0 && claimedIndex < claimedSize && pathShape(claimedIndex, claimedSize) === shape;
          t.mustMatchOracle(verifyInclusion(hash, claimedIndex, claimedSize, proof, root), sameShape, kind, label);
        }

        // Up to FULL_MATRIX_MAX leaves: every corruption at every element. Above: one
        // corruption per proof (and one of the two real-root size claims), kind and
        // element rotating with the index, so that every kind still meets every tree size
        // while the suite stays within seconds.
        const full = size <= FULL_MATRIX_MAX;
        const realRootClaims = full ? [size - 1, size + 1] : [index % 2 === 0 ? size - 1 : size + 1];
        for (const claimedSize of realRootClaims) {
          const kind = claimedSize < size ? 'size-1, its root' : 'size+1, its root';
          t.mustReject(verifyInclusion(hash, index, claimedSize, proof, rootOf(claimedSize)), kind, label);
        }
        const kinds = full ? CORRUPTIONS : [CORRUPTIONS[index % CORRUPTIONS.length]!];
        for (const kind of kinds) {
          const perElement = kind === 'bit flipped' || kind === 'element missing';
          if (perElement && proof.length === 0) continue;
          const positions = perElement && full ? proof.map((_, i) => i) : [index % Math.max(1, proof.length)];
          for (const position of positions) {
            const corrupted = corrupt(kind, proof, position, index % 2 === 0 ? root : hash, index + size + position);
            const claimed = kind === 'wrong leaf' ? STRANGER : hash;
            t.mustReject(verifyInclusion(claimed, index, size, corrupted, root), kind, `${label}, element ${position}`);
          }
        }
      }
    }
    expect(t.failures.slice(0, 20)).toEqual([]);
    expect(elements).toBe(353_677);
    expect(Object.fromEntries(t.cases)).toEqual({
      valid: 45_150,
      'index-1': 45_150,
      'index+1': 45_150,
      'size-1': 45_150,
      'size+1': 45_150,
      'size-1, its root': 25_150,
      'size+1, its root': 25_050,
      'wrong leaf': 13_150,
      'extra at end': 13_110,
      'extra in front': 13_070,
      'bit flipped': 39_295,
      'element missing': 39_255,
    });
    // Same root, neighbouring size: the path folds identically this often. A wrong
    // index is never accepted.
    expect(Object.fromEntries(t.acceptedNeighbours)).toEqual({ 'size-1': 43_434, 'size+1': 43_730 });
  });
});
