/**
 * Shared fixtures of the log tests: a leaf list, a growing in-memory node store fed by
 * nodesCompletedByAppend, corruption helpers, and a tally that counts every case by kind
 * so that a loop that silently ran fewer cases fails its count assertion.
 */
import { leafHash, nodeKey, nodesCompletedByAppend, type NodeLookup } from '../../log/merkle.js';

/** Leaves of varied lengths, the first one empty. */
export function makeLeaves(count: number): Buffer[] {
  return Array.from({ length: count }, (_, i) => Buffer.from(i === 0 ? '' : `signet entry ${i} `.repeat(1 + (i % 3))));
}

/** A leaf hash that is in no test tree. */
export const STRANGER = leafHash(Buffer.from('not in the tree'));

export function flipBit(hash: Buffer, bit: number): Buffer {
  const copy = Buffer.from(hash);
  copy[(bit >> 3) % copy.length]! ^= 1 << (bit & 7);
  return copy;
}

export function without<T>(items: readonly T[], position: number): T[] {
  return items.filter((_, i) => i !== position);
}

export function sameList(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  return a.length === b.length && a.every((hash, i) => hash.equals(b[i]!));
}

/**
 * Appends leaves to a map one at a time, as a storage adapter would; `lookup` sees
 * exactly the nodes stored so far and throws for any other, so a plan that reads a node
 * that does not exist yet at the current size fails loudly.
 */
export class GrowingStore {
  readonly #nodes = new Map<string, Buffer>();
  size = 0;

  readonly lookup: NodeLookup = (ref) => {
    const hash = this.#nodes.get(nodeKey(ref));
    if (hash === undefined) throw new Error(`node ${nodeKey(ref)} does not exist at size ${this.size}`);
    return hash;
  };

  append(leaf: Buffer): void {
    for (const node of nodesCompletedByAppend(this.size, leafHash(leaf), this.lookup)) {
      this.#nodes.set(nodeKey(node.ref), node.hash);
    }
    this.size += 1;
  }

  get nodeCount(): number {
    return this.#nodes.size;
  }
}

export class Tally {
  /** Cases run, by kind. */
  readonly cases = new Map<string, number>();
  /** Neighbouring-size / neighbouring-index claims that verified, the oracle agreeing. */
  readonly acceptedNeighbours = new Map<string, number>();
  readonly failures: string[] = [];

  count(kind: string): void {
    this.cases.set(kind, (this.cases.get(kind) ?? 0) + 1);
  }

  fail(message: string): void {
    this.failures.push(message);
  }

  mustAccept(accepted: boolean, kind: string, label: string): void {
    this.count(kind);
    if (!accepted) this.failures.push(`${label}: ${kind} refused`);
  }

  mustReject(accepted: boolean, kind: string, label: string): void {
    this.count(kind);
    if (accepted) this.failures.push(`${label}: ${kind} accepted`);
  }

  mustMatchOracle(accepted: boolean, oracle: boolean, kind: string, label: string): void {
    this.count(kind);
    if (accepted !== oracle) this.failures.push(`${label}: ${kind}: module ${accepted}, reference ${oracle}`);
    if (accepted) this.acceptedNeighbours.set(kind, (this.acceptedNeighbours.get(kind) ?? 0) + 1);
  }
}
