/**
 * WAL checkpoints off the event loop: a worker thread with a connection of its own
 * (wal-checkpoint-worker.mjs) copies the write-ahead log back into the database file
 * every CHECKPOINT_INTERVAL_MS, while the store's connection runs with
 * `wal_autocheckpoint=0` and so never checkpoints inside a COMMIT.
 *
 * The writer starts the WAL again from its beginning only when everything in it has
 * been copied as its write transaction begins; under steady load that rarely happens by
 * chance, and the WAL would grow (and reads slow down with it). So after a run that
 * found new frames, the checkpointer asks the store to hold its writes (`holdWrites`,
 * one turn of the store's queue: the event loop runs on) while the thread copies what
 * is left, at most CATCH_UP_TIMEOUT_MS.
 *
 * Fail safe: if the thread cannot start, reports a failed checkpoint, stops for any
 * other reason, or misses CATCH_UP_TIMEOUTS_IN_A_ROW catch-ups in a row (a disk whose
 * fsyncs take longer than a hold may last: the WAL would then never start again),
 * `onFailure` runs once, the thread is stopped, and the store turns SQLite's own
 * checkpoints back on, so the WAL never grows without bound; only the stalls come back.
 */
import { Worker } from 'node:worker_threads';
import type { CheckpointWorkerData, CheckpointWorkerMessage, CheckpointWorkerRequest } from './wal-checkpoint-worker.mjs';

const WORKER_URL = new URL('./wal-checkpoint-worker.mjs', import.meta.url);

/**
 * Time between checkpoint runs. At the end-to-end benchmark's rate, SQLite's own
 * threshold (1,000 WAL pages) fills in about this time. Each run that empties the WAL
 * lets the writer start it again, which costs the writer one fsync of the new WAL
 * header: a shorter interval would mean more of those on the event loop.
 */
export const CHECKPOINT_INTERVAL_MS = 250;
/** The longest the store's writes are held for a catch-up; past it they go on (the WAL just is not started again this time). */
const CATCH_UP_TIMEOUT_MS = 1_000;
/** Catch-ups that time out one after the other before the store is handed back its own checkpoints. */
const CATCH_UP_TIMEOUTS_IN_A_ROW = 3;
/** A thread that does not end within this time after being asked to is terminated. */
const STOP_TIMEOUT_MS = 5_000;

export interface WalCheckpointerOptions {
  /** The database file; the store's connection has it open in WAL mode. */
  readonly path: string;
  /** Runs at most once, when background checkpoints end other than by `stop`; gets the SQLite error code if there was one. */
  readonly onFailure: (code: string) => void;
  /** Runs `task` when no write of the store is in progress, and none starts before it resolves. */
  readonly holdWrites: (task: () => Promise<void>) => void;
  readonly intervalMs?: number;
  /** For tests; default CATCH_UP_TIMEOUT_MS. */
  readonly catchUpTimeoutMs?: number;
}

export class WalCheckpointer {
  readonly #thread: Worker;
  readonly #exited: Promise<void>;
  readonly #onFailure: (code: string) => void;
  readonly #catchUpTimeoutMs: number;
  #stopping = false;
  #failed = false;
  /** A catch-up is waiting for its turn in the store's queue, or in progress. */
  #holding = false;
  /** Resolves the catch-up in progress, if one is. */
  #caughtUp: (() => void) | undefined;
  /** Catch-ups that timed out since the last one that did not. */
  #catchUpTimeouts = 0;

  constructor(options: WalCheckpointerOptions) {
    this.#onFailure = options.onFailure;
    this.#catchUpTimeoutMs = options.catchUpTimeoutMs ?? CATCH_UP_TIMEOUT_MS;
    const workerData: CheckpointWorkerData = { path: options.path, intervalMs: options.intervalMs ?? CHECKPOINT_INTERVAL_MS };
    this.#thread = new Worker(WORKER_URL, { workerData });
    // A store left open must not keep the process alive; a checkpoint cut short by the
    // process ending is one SQLite recovers from like any crash.
    this.#thread.unref();
    this.#thread.on('message', (message: CheckpointWorkerMessage) => {
      switch (message.type) {
        case 'behind':
          if (this.#holding || !this.running) return;
          this.#holding = true;
          options.holdWrites(() =>
            this.#catchUp().finally(() => {
              this.#holding = false;
            }),
          );
          return;
        case 'caught-up':
          this.#caughtUp?.();
          return;
        case 'failed':
          this.#fail(message.code);
          return;
      }
    });
    // Followed by 'exit', which reports it.
    this.#thread.on('error', () => undefined);
    this.#exited = new Promise((resolve) => {
      this.#thread.once('exit', () => {
        this.#fail('WORKER_EXITED');
        resolve();
      });
    });
  }

  /** Whether checkpoints still run on the thread (false once it failed or stopped). */
  get running(): boolean {
    return !this.#failed && !this.#stopping;
  }

  /** Ends the thread (closing its connection) and resolves once it has ended. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#caughtUp?.();
    this.#post('stop');
    const timeout = setTimeout(() => void this.#thread.terminate(), STOP_TIMEOUT_MS);
    try {
      await this.#exited;
    } finally {
      clearTimeout(timeout);
    }
  }

  /** Background checkpoints end for good: the store checkpoints by itself again. */
  #fail(code: string): void {
    this.#caughtUp?.();
    if (this.#failed || this.#stopping) return;
    this.#failed = true;
    // A thread still running (catch-ups too slow) ends; one that failed is ending already.
    this.#post('stop');
    this.#onFailure(code);
  }

  /** Asks the thread to copy what is left; resolves when it has, or failed, or after the catch-up timeout. */
  #catchUp(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (timedOut: boolean): void => {
        clearTimeout(timeout);
        this.#caughtUp = undefined;
        resolve();
        this.#catchUpTimeouts = timedOut ? this.#catchUpTimeouts + 1 : 0;
        if (this.#catchUpTimeouts >= CATCH_UP_TIMEOUTS_IN_A_ROW) this.#fail('CATCH_UP_TIMEOUT');
      };
      const timeout = setTimeout(() => {
        finish(true);
      }, this.#catchUpTimeoutMs);
      this.#caughtUp = () => {
        finish(false);
      };
      this.#post('catch-up');
    });
  }

  #post(request: CheckpointWorkerRequest): void {
    this.#thread.postMessage(request);
  }
}
