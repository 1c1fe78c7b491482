import { describe, expect, it } from 'vitest';
import { NodeCache } from '../../log/node-cache.js';

const hash = (n: number): Buffer => Buffer.alloc(32, n);

describe('NodeCache', () => {
  it('keeps at most its capacity, forgetting the oldest first', () => {
    const cache = new NodeCache(3);
    for (let key = 0; key < 5; key += 1) cache.set(key, hash(key));
    expect(cache.size).toBe(3);
    expect([0, 1, 2, 3, 4].map((key) => cache.has(key))).toEqual([false, false, true, true, true]);
    expect(cache.get(4)).toEqual(hash(4));
    expect(cache.get(0)).toBeUndefined();
  });

  it('does not move or replace a node it holds already (stored nodes never change)', () => {
    const cache = new NodeCache(2);
    cache.set('a', hash(1));
    cache.set('b', hash(2));
    cache.set('a', hash(9));
    expect(cache.get('a')).toEqual(hash(1));
    cache.set('c', hash(3));
    // 'a' was inserted first and is still the oldest.
    expect(cache.has('a')).toBe(false);
    expect(cache.has('b')).toBe(true);
    expect(cache.has('c')).toBe(true);
  });

  it('holds exactly the newest distinct keys after many times its capacity', () => {
    const capacity = 1000;
    const cache = new NodeCache(capacity);
    const inserted: number[] = [];
    for (let step = 0; step < 50_000; step += 1) {
      // Repeats of recent keys mixed in, as proofs re-read shared nodes.
      const key = step % 7 === 0 && inserted.length > 10 ? (inserted[inserted.length - 5] as number) : step;
      if (!cache.has(key)) inserted.push(key);
      cache.set(key, hash(key % 256));
    }
    expect(cache.size).toBe(capacity);
    for (const key of inserted.slice(-capacity)) expect(cache.has(key)).toBe(true);
    expect(cache.has(inserted[inserted.length - capacity - 1] as number)).toBe(false);
  });

  it('refuses a capacity below one', () => {
    expect(() => new NodeCache(0)).toThrow(RangeError);
  });
});
