/**
 * The transparency log's cache of Merkle node hashes (log/transparency-log.ts). Stored
 * nodes never change (RFC 9162 §2.1: a perfect subtree of an append-only log is fixed
 * once complete), so the cache needs no invalidation, only a bound.
 */

import { nodeKey, type NodeRef } from './merkle.js';

/** Below this index, `index · 64 + level` (level ≤ 53) is an exact, unique number. */
const NUMERIC_KEY_INDEX_LIMIT = 2 ** 47;

/**
 * A node's key in a NodeCache: a number where one is exact (every node of a tree below
 * 2^47 leaves), else `nodeKey`'s string. Numbers hash and compare without building a
 * string per lookup, and a proof looks up a few dozen nodes.
 */
export function nodeCacheKey(ref: NodeRef): number | string {
  return ref.index < NUMERIC_KEY_INDEX_LIMIT ? ref.index * 64 + ref.level : nodeKey(ref);
}

/**
 * A map of at most `capacity` node hashes that forgets the oldest first, in O(1): the
 * keys sit in a ring in insertion order. (Evicting through `map.keys().next()` costs
 * O(deleted entries) in V8, whose ordered hash tables keep deleted slots until the
 * next rehash; once the cache is full that scan ran on every insert.)
 */
export class NodeCache {
  readonly #hashes = new Map<number | string, Buffer>();
  readonly #order: (number | string | undefined)[];
  #oldest = 0;

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError('the node cache holds at least one node');
    this.#order = new Array<number | string | undefined>(capacity).fill(undefined);
  }

  get size(): number {
    return this.#hashes.size;
  }

  has(key: number | string): boolean {
    return this.#hashes.has(key);
  }

  get(key: number | string): Buffer | undefined {
    return this.#hashes.get(key);
  }

  set(key: number | string, hash: Buffer): void {
    if (this.#hashes.has(key)) return;
    const evicted = this.#order[this.#oldest];
    if (evicted !== undefined) this.#hashes.delete(evicted);
    this.#order[this.#oldest] = key;
    this.#oldest = (this.#oldest + 1) % this.#order.length;
    this.#hashes.set(key, hash);
  }
}
