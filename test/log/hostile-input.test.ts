/**
 * Hostile input to the verifiers (proofs, sizes and roots arrive from bundles and
 * requests): anything malformed is a plain `false` / `null`, never an exception. And
 * caller mistakes in the planning API (sizes the service chose itself) throw at once.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  consistencyPlan,
  consistencyProof,
  foldSubtrees,
  inclusionPlan,
  inclusionProof,
  leafHash,
  MAX_TREE_SIZE,
  MerkleFrontier,
  nodesCompletedByAppend,
  perfectSubtrees,
  rootFromInclusionProof,
  rootPlan,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
  type NodeLookup,
} from '../../log/merkle.js';
import { GrowingStore, makeLeaves } from './support.js';

const leaves = makeLeaves(16);
const store = new GrowingStore();
for (const leaf of leaves) store.append(leaf);
const lookup = store.lookup;

// A valid claim to start from: leaf 5 of 11, and the consistency 6 → 11.
const hash = leafHash(leaves[5]!);
const root = treeRoot(11, lookup);
const proof = inclusionProof(5, 11, lookup);
const oldRoot = treeRoot(6, lookup);
const consistency = consistencyProof(6, 11, lookup);

// The verifiers are typed for well-formed callers; these tests hand them what a parser
// might let through, so their signatures are loosened here.
const inclusion = verifyInclusion as (...args: unknown[]) => boolean;
const rootFrom = rootFromInclusionProof as (...args: unknown[]) => Buffer | null;
const consistent = verifyConsistency as (...args: unknown[]) => boolean;

const BAD_NUMBERS: readonly unknown[] = [
  -1,
  -0.5,
  1.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  MAX_TREE_SIZE + 2,
  2 ** 64,
  '5',
  5n,
  null,
  undefined,
  {},
  [5],
];

const BAD_HASHES: readonly unknown[] = [
  Buffer.alloc(0),
  Buffer.alloc(31),
  Buffer.alloc(33),
  'a'.repeat(32),
  Array.from({ length: 32 }, () => 0),
  new ArrayBuffer(32),
  new DataView(new ArrayBuffer(32)),
  null,
  undefined,
  42,
];

describe('verifiers on hostile input', () => {
  it('the valid claims verify, so each rejection below is about the one bad field', () => {
    expect(verifyInclusion(hash, 5, 11, proof, root)).toBe(true);
    expect(rootFromInclusionProof(hash, 5, 11, proof)).toEqual(root);
    expect(verifyConsistency(6, 11, oldRoot, root, consistency)).toBe(true);
  });

  it.each(BAD_NUMBERS.map((value) => [String(value), value]))('index or size %s', (_, value) => {
    expect(inclusion(hash, value, 11, proof, root)).toBe(false);
    expect(inclusion(hash, 5, value, proof, root)).toBe(false);
    expect(rootFrom(hash, value, 11, proof)).toBeNull();
    expect(consistent(value, 11, oldRoot, root, consistency)).toBe(false);
    expect(consistent(6, value, oldRoot, root, consistency)).toBe(false);
  });

  it.each(BAD_HASHES.map((value, i) => [i, value]))('hash, root or proof element #%i', (_, value) => {
    expect(inclusion(value, 5, 11, proof, root)).toBe(false);
    expect(inclusion(hash, 5, 11, proof, value)).toBe(false);
    expect(inclusion(hash, 5, 11, [value, ...proof.slice(1)], root)).toBe(false);
    expect(consistent(6, 11, value, root, consistency)).toBe(false);
    expect(consistent(6, 11, oldRoot, value, consistency)).toBe(false);
    expect(consistent(6, 11, oldRoot, root, [...consistency.slice(0, -1), value])).toBe(false);
  });

  it('proofs that are not arrays of hashes', () => {
    const sparse: Buffer[] = [];
    sparse[proof.length - 1] = proof[proof.length - 1]!;
    for (const bad of [null, undefined, 'proof', proof[0], { length: 4 }, sparse, new Set(proof)]) {
      expect(inclusion(hash, 5, 11, bad, root)).toBe(false);
      expect(consistent(6, 11, oldRoot, root, bad)).toBe(false);
    }
  });

  it('an absurdly long proof is refused before its elements are read', () => {
    const long = new Array<Buffer>(1_000_000).fill(root);
    expect(verifyInclusion(hash, 5, 11, long, root)).toBe(false);
    expect(verifyConsistency(6, 11, oldRoot, root, long)).toBe(false);
  });

  it('RFC 9162 §2.1.3.2 step 1: an index at or beyond the size, including any index of the empty tree', () => {
    expect(verifyInclusion(hash, 11, 11, proof, root)).toBe(false);
    expect(verifyInclusion(hash, 0, 0, [], root)).toBe(false);
    expect(verifyInclusion(hash, MAX_TREE_SIZE, MAX_TREE_SIZE, proof, root)).toBe(false);
  });

  it('consistency outside 0 < first < second: empty tree, shrinking, equal sizes', () => {
    const empty = treeRoot(0, lookup);
    expect(verifyConsistency(0, 11, empty, root, [])).toBe(false);
    expect(verifyConsistency(0, 11, empty, root, consistency)).toBe(false);
    expect(verifyConsistency(0, 0, empty, empty, [])).toBe(false);
    expect(verifyConsistency(11, 6, root, oldRoot, consistency)).toBe(false);
    expect(verifyConsistency(11, 11, root, Buffer.from(root), [])).toBe(true);
    expect(verifyConsistency(11, 11, root, oldRoot, [])).toBe(false);
    expect(verifyConsistency(11, 11, root, root, [root])).toBe(false);
    expect(verifyConsistency(6, 11, oldRoot, root, [])).toBe(false);
  });

  it('inputs are not modified', () => {
    const before = proof.map((element) => Buffer.from(element));
    verifyInclusion(hash, 5, 11, proof, root);
    verifyConsistency(6, 11, oldRoot, root, consistency);
    expect(proof).toEqual(before);
  });

  it('never throws, whatever it is given (fast-check)', () => {
    const anyValue = fc.oneof(
      fc.anything(),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.array(fc.uint8Array({ minLength: 31, maxLength: 33 }), { maxLength: 70 }),
      fc.integer(),
      fc.double(),
    );
    fc.assert(
      fc.property(anyValue, anyValue, anyValue, anyValue, anyValue, (a, b, c, d, e) => {
        expect(typeof inclusion(a, b, c, d, e)).toBe('boolean');
        expect(typeof consistent(a, b, c, d, e)).toBe('boolean');
        const computed = rootFrom(a, b, c, d);
        expect(computed === null || computed.length === 32).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('random well-typed garbage is refused (fast-check)', () => {
    const hash32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
    const size = fc.integer({ min: 0, max: 1000 });
    fc.assert(
      fc.property(hash32, size, size, fc.array(hash32, { maxLength: 12 }), hash32, (h, a, b, p, r) => {
        expect(verifyInclusion(h, a, b, p, r)).toBe(false);
        expect(verifyConsistency(a, b, h, r, p)).toBe(a === b && a > 0 && p.length === 0 && Buffer.from(h).equals(r));
      }),
      { numRuns: 300 },
    );
  });
});

describe('caller mistakes in the planning API throw at once', () => {
  it.each([
    ['rootPlan(-1)', () => rootPlan(-1)],
    ['rootPlan(1.5)', () => rootPlan(1.5)],
    ['rootPlan(2^53 + 2)', () => rootPlan(MAX_TREE_SIZE + 2)],
    ['inclusionPlan(5, 5)', () => inclusionPlan(5, 5)],
    ['inclusionPlan(0, 0)', () => inclusionPlan(0, 0)],
    ['inclusionPlan(-1, 5)', () => inclusionPlan(-1, 5)],
    ['consistencyPlan(0, 5)', () => consistencyPlan(0, 5)],
    ['consistencyPlan(6, 5)', () => consistencyPlan(6, 5)],
    ['perfectSubtrees(2, 6): not a split of the tree', () => perfectSubtrees(2, 6)],
    ['perfectSubtrees(1, 4)', () => perfectSubtrees(1, 4)],
    ['perfectSubtrees(5, 4)', () => perfectSubtrees(5, 4)],
    ['nodesCompletedByAppend(-1, …)', () => nodesCompletedByAppend(-1, hash, lookup)],
    ['nodesCompletedByAppend(2^53, …)', () => nodesCompletedByAppend(MAX_TREE_SIZE, hash, lookup)],
    ['foldSubtrees: refs not contiguous', () => foldSubtrees([{ level: 1, index: 0 }, { level: 0, index: 3 }], lookup)],
    ['foldSubtrees: levels not falling', () => foldSubtrees([{ level: 0, index: 0 }, { level: 1, index: 1 }], lookup)],
    ['foldSubtrees: not a node', () => foldSubtrees([{ level: 54, index: 0 }], lookup)],
  ])('%s → RangeError', (_, call) => {
    expect(call).toThrow(RangeError);
  });

  it('a leaf hash that is not 32 bytes, and a lookup that returns one, are TypeErrors', () => {
    expect(() => nodesCompletedByAppend(0, Buffer.alloc(31), lookup)).toThrow(TypeError);
    expect(() => MerkleFrontier.empty().append(Buffer.alloc(33))).toThrow(TypeError);
    const short: NodeLookup = () => Buffer.alloc(20);
    expect(() => treeRoot(3, short)).toThrow(TypeError);
  });

  it('a node the lookup lacks surfaces as the lookup’s own error', () => {
    const missing: NodeLookup = (ref) => {
      throw new Error(`no node ${ref.level}:${ref.index}`);
    };
    expect(() => inclusionProof(0, 4, missing)).toThrow('no node 0:1');
    expect(() => nodesCompletedByAppend(1, hash, missing)).toThrow('no node 0:0');
  });

  it('values handed out are copies: changing one changes nothing stored', () => {
    const frontier = MerkleFrontier.fromLookup(11, lookup);
    const first = frontier.root();
    first.fill(0);
    frontier.nodes()[0]!.hash.fill(0);
    expect(frontier.root()).toEqual(root);
    const fromStore = treeRoot(8, lookup);
    fromStore.fill(0);
    expect(treeRoot(8, lookup)).not.toEqual(fromStore);
  });
});
