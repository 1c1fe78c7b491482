/**
 * Every consistency proof between sizes 1 ≤ m < n ≤ 100: compared with PROOF of RFC 9162
 * §2.1.4.1 (reference.ts), verified (§2.1.4.2), then corrupted; plus the m = n rule.
 * Nodes are built once, leaf after leaf; the proofs into size n run right after leaf
 * n − 1 is appended, against a lookup that holds only the nodes that exist at that size.
 *
 * As for inclusion, a neighbouring size with the SAME roots is judged by the recursive
 * oracle of reference.ts (§2.1.4.2 does not commit to the sizes on their own); with the
 * root that really belongs to the claimed size it must always fail.
 */
import { describe, expect, it } from 'vitest';
import { consistencyProof, treeRoot, verifyConsistency } from '../../log/merkle.js';
import { recursiveVerifyConsistency, ReferenceTree } from './reference.js';
import { flipBit, GrowingStore, makeLeaves, sameList, Tally, without } from './support.js';

const MAX_SIZE = 100;

const leaves = makeLeaves(MAX_SIZE + 1);
const reference = new ReferenceTree(leaves);

describe('exhaustive consistency, every 1 ≤ m ≤ n ≤ 100', () => {
  it('matches PROOF, verifies, and rejects every corruption', () => {
    const store = new GrowingStore();
    const t = new Tally();
    const rootOf = (size: number): Buffer => reference.mth(0, size);
    let elements = 0;
    for (let n = 1; n <= MAX_SIZE; n += 1) {
      store.append(leaves[n - 1]!);
      const newRoot = treeRoot(n, store.lookup);
      if (!newRoot.equals(rootOf(n))) t.fail(`root of ${n}`);

      // m = n: SUBPROOF(m, D_m, true) = {}.
      if (consistencyProof(n, n, store.lookup).length !== 0) t.fail(`${n} → ${n}: proof not empty`);
      t.mustAccept(verifyConsistency(n, n, newRoot, newRoot, []), 'equal sizes', `${n} → ${n}`);
      t.mustReject(verifyConsistency(n, n, newRoot, newRoot, [newRoot]), 'equal sizes, non-empty proof', `${n} → ${n}`);
      if (n > 1) t.mustReject(verifyConsistency(n, n, rootOf(n - 1), newRoot, []), 'equal sizes, other root', `${n} → ${n}`);

      for (let m = 1; m < n; m += 1) {
        const label = `${m} → ${n}`;
        const oldRoot = rootOf(m);
        const proof = consistencyProof(m, n, store.lookup);
        elements += proof.length;
        if (!sameList(proof, reference.proof(m, n))) t.fail(`${label}: proof differs from PROOF`);
        t.mustAccept(verifyConsistency(m, n, oldRoot, newRoot, proof), 'valid', label);

        t.mustReject(verifyConsistency(m, n, newRoot, oldRoot, proof), 'roots swapped', label);
        t.mustReject(verifyConsistency(n, m, oldRoot, newRoot, proof), 'sizes swapped', label);
        t.mustReject(verifyConsistency(n, m, newRoot, oldRoot, proof), 'sizes and roots swapped', label);
        t.mustReject(verifyConsistency(m, n, oldRoot, newRoot, [...proof, newRoot]), 'extra at end', label);
        t.mustReject(verifyConsistency(m, n, oldRoot, newRoot, [oldRoot, ...proof]), 'extra in front', label);
        for (const [kind, claimedOld, claimedNew] of [
          ['old-1', m - 1, n],
          ['old+1', m + 1, n],
          ['new-1', m, n - 1],
          ['new+1', m, n + 1],
        ] as const) {
          const accepted = verifyConsistency(claimedOld, claimedNew, oldRoot, newRoot, proof);
          t.mustMatchOracle(accepted, recursiveVerifyConsistency(claimedOld, claimedNew, proof, oldRoot, newRoot), kind, label);
          // The roots that really belong to the claimed sizes.
          const realOld = claimedOld === 0 ? oldRoot : rootOf(claimedOld);
          t.mustReject(verifyConsistency(claimedOld, claimedNew, realOld, rootOf(claimedNew), proof), `${kind}, its roots`, label);
        }
        proof.forEach((element, position) => {
          const flipped = proof.map((e, i) => (i === position ? flipBit(element, m + n + position) : e));
          t.mustReject(verifyConsistency(m, n, oldRoot, newRoot, flipped), 'bit flipped', `${label}, element ${position}`);
          t.mustReject(verifyConsistency(m, n, oldRoot, newRoot, without(proof, position)), 'element missing', `${label}, element ${position}`);
        });
      }
    }
    expect(t.failures.slice(0, 20)).toEqual([]);
    expect(elements).toBe(30_742);
    expect(Object.fromEntries(t.cases)).toEqual({
      valid: 4950,
      'equal sizes': 100,
      'equal sizes, non-empty proof': 100,
      'equal sizes, other root': 99,
      'roots swapped': 4950,
      'sizes swapped': 4950,
      'sizes and roots swapped': 4950,
      'extra at end': 4950,
      'extra in front': 4950,
      'old-1': 4950,
      'old+1': 4950,
      'new-1': 4950,
      'new+1': 4950,
      'old-1, its roots': 4950,
      'old+1, its roots': 4950,
      'new-1, its roots': 4950,
      'new+1, its roots': 4950,
      'bit flipped': 30_742,
      'element missing': 30_742,
    });
    // Same roots, neighbouring new size: the proof folds identically this often. A
    // neighbouring old size never passes, since the old root is rebuilt too.
    expect(Object.fromEntries(t.acceptedNeighbours)).toEqual({ 'new-1': 4578, 'new+1': 4674 });
  });
});
