/**
 * The "every answer with an inclusion promise" variant of the end-to-end benchmark:
 * the service's own transparency log, with a signed entry timestamp (Rekor SET,
 * SIGSTORE-NOTES.md) added to every receipt. The service makes promises only for the
 * entries that need one (Sigstore bundles); this variant shows what one on every
 * `raw` answer would cost: an entry read and one more HSM signature per request.
 * Reached only from bench/serve.ts, through a seam the config and the CLI cannot reach.
 */
import { TransparencyLog, type LogReceipt } from '../log/transparency-log.js';
import type { CheckpointRecord, LogEntryInput, LogEntryRecord, SignetStore, StoreTransaction } from '../store/store.js';

export class PromisingForBenchmark extends TransparencyLog {
  readonly #log: TransparencyLog;

  constructor(log: TransparencyLog, store: SignetStore) {
    super({ store, origin: log.origin, publicKeyPem: log.publicKeyPem, sign: () => Promise.reject(new Error('signs through the wrapped log')) });
    this.#log = log;
  }

  override async receipt(index: number, options: { decisionIndex: number | null; integratedTime: number }): Promise<LogReceipt> {
    const receipt = await this.#log.receipt(index, options);
    return { ...receipt, inclusionPromise: await this.#log.inclusionPromise(await this.#log.entry(index)) };
  }

  // Everything else is the wrapped log's.
  override open(): Promise<CheckpointRecord> {
    return this.#log.open();
  }

  override append(entries: readonly LogEntryInput[]): Promise<number[]> {
    return this.#log.append(entries);
  }

  override appendIn(tx: StoreTransaction, entries: readonly LogEntryInput[]): Promise<number[]> {
    return this.#log.appendIn(tx, entries);
  }

  override checkpointCovering(size: number): Promise<CheckpointRecord> {
    return this.#log.checkpointCovering(size);
  }

  override entry(index: number): Promise<LogEntryRecord> {
    return this.#log.entry(index);
  }

  override inclusionProof(index: number, size: number): Promise<Buffer[]> {
    return this.#log.inclusionProof(index, size);
  }

  override consistencyProof(first: number, second: number): Promise<Buffer[]> {
    return this.#log.consistencyProof(first, second);
  }

  override root(size: number): Promise<Buffer> {
    return this.#log.root(size);
  }

  override inclusionPromise(entry: LogEntryRecord): Promise<string> {
    return this.#log.inclusionPromise(entry);
  }
}
