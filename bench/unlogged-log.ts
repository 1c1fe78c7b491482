/**
 * The "without the log" baseline of the end-to-end benchmark: a transparency log that
 * records nothing, so the signing path runs exactly as with the log except for the
 * log's own work (no entries, no Merkle nodes, no checkpoints, no proofs). Appends
 * hand out made-up indexes at once; receipts and proofs are empty. The service never runs with
 * it: only bench/serve.ts passes it to `startService`, through a seam that neither the
 * config nor the CLI can reach.
 */
import { TransparencyLog, type LogReceipt } from '../log/transparency-log.js';
import type { LogEntryInput, SignetStore, StoreTransaction } from '../store/store.js';

export class UnloggedForBenchmark extends TransparencyLog {
  #next = 0;

  constructor(real: TransparencyLog, store: SignetStore) {
    super({
      store,
      origin: real.origin,
      publicKeyPem: real.publicKeyPem,
      sign: () => Promise.reject(new Error('the benchmark baseline signs no checkpoint')),
    });
  }

  override append(entries: readonly LogEntryInput[]): Promise<number[]> {
    return Promise.resolve(this.#indexes(entries.length));
  }

  override appendIn(_tx: StoreTransaction, entries: readonly LogEntryInput[]): Promise<number[]> {
    return Promise.resolve(this.#indexes(entries.length));
  }

  override receipt(index: number, options: { decisionIndex: number | null; integratedTime: number }): Promise<LogReceipt> {
    return Promise.resolve({
      index,
      leafHash: '',
      treeSize: 0,
      rootHash: '',
      inclusionProof: [],
      checkpoint: '',
      integratedTime: options.integratedTime,
      inclusionPromise: null,
      decisionIndex: options.decisionIndex,
    });
  }

  override inclusionProof(): Promise<Buffer[]> {
    return Promise.resolve([]);
  }

  override inclusionPromise(): Promise<string> {
    return Promise.resolve('');
  }

  #indexes(count: number): number[] {
    const first = this.#next;
    this.#next += count;
    return Array.from({ length: count }, (_, offset) => first + offset);
  }
}
