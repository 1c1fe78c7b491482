/**
 * The main-thread side of signing on worker threads (sign-worker.mjs): a FIFO of jobs
 * handed to the workers, bounded like the session pool (maxWaiting, acquireTimeoutMs).
 *
 * Why: C_SignInit is synchronous in pkcs11js, and SoftHSM loads and decrypts the private
 * key there; with the asynchronous C_Sign's dispatch it was about a quarter of the
 * service's main-thread CPU. With workers, the main thread posts a message and receives
 * the raw signature.
 *
 * Dispatch: a job goes to the worker with the fewest jobs, idle ones first. Each worker
 * signs one job at a time on its own session, but may hold up to JOBS_PER_WORKER: the
 * next jobs already wait in its port when it answers the current one. With strictly one
 * job per worker, every job cost both threads a sleep and a wake-up, and the worker sat
 * idle while the main thread got round to sending the next job (measured on 2 cores, 64
 * requests in flight, P-256, 2 workers: about 7,100 signatures/s with one job per worker,
 * 9,100/s with four, 8,400/s for the former single-threaded path). The price: a job may
 * wait behind up to three others on a busy worker (milliseconds behind RSA-4096) while
 * another worker frees up. Jobs beyond that wait here, in order.
 *
 * Each worker owns one session, recovers it by itself (new session, log in again if
 * needed, look the key up again, retry once) and reports failures as a kind plus a CK_RV
 * name; the caller turns them into `HsmError`s worded with its own context.
 *
 * A worker that stops (crash, `terminate`) is replaced. Its jobs are retried once, ahead
 * of the queue: signing has no side effect on the token, so at worst a signature is
 * computed twice; a job whose worker dies twice fails with HSM_UNAVAILABLE. For the
 * retry each job keeps its own copy of the input, so inputs are copied to the worker,
 * while signatures (the worker's own fresh buffers) are transferred back.
 */
import { Worker } from 'node:worker_threads';
import type * as Pkcs11Js from 'pkcs11js';
import type { DigestAlgorithm } from './algorithms.js';
import { HsmError, hsmErrorFrom } from './errors.js';
import type { Pkcs11, Pkcs11Handle } from './pkcs11-module.js';
import type { HsmLogger } from './session-pool.js';
import type { FailureKind, KeyDescriptor, SignWorkerData, WorkerRequest, WorkerResponse } from './sign-worker.mjs';

export type { FailureKind, KeyDescriptor } from './sign-worker.mjs';

const WORKER_URL = new URL('./sign-worker.mjs', import.meta.url);

/** Jobs a worker may hold: the one it signs and the next ones, already posted. */
export const JOBS_PER_WORKER = 4;
/** Keys described to one worker before both sides forget them all (ids are caller input). */
const MAX_KEYS_PER_WORKER = 256;
/** A worker that does not end within this time after being asked to is terminated. */
const STOP_TIMEOUT_MS = 5_000;
/** Restart delays for workers that die before they are ready (bad module, token gone). */
const RESTART_DELAY_MIN_MS = 100;
const RESTART_DELAY_MAX_MS = 5_000;

export interface SignWorkersOptions {
  /** The main thread's module: used to close the session of a worker that died. */
  readonly module: Pkcs11;
  /** Real path of the loaded module library (`module.libPath`). */
  readonly modulePath: string;
  readonly tokenLabel: string;
  readonly tokenSerial: string;
  /** Passed to the workers to log in again after the application was logged out. */
  readonly pin: string;
  readonly count: number;
  readonly acquireTimeoutMs: number;
  readonly maxWaiting: number;
  readonly logger?: HsmLogger | undefined;
}

export interface SignJob {
  readonly key: KeyDescriptor;
  readonly mechanism: Pkcs11Js.Mechanism;
  /** Hash `data` in the worker and sign the digest. */
  readonly prehash: DigestAlgorithm | null;
  /** The job's own copy: it is posted (copied) again if a worker dies with the job. */
  readonly data: Uint8Array;
}

/** A worker's answer other than a signature. */
export interface SignFailure {
  readonly failure: FailureKind;
  readonly ckr: string | null;
}

export type SignOutcome = { readonly ok: true; readonly signature: Buffer } | ({ readonly ok: false } & SignFailure);

interface PendingJob {
  readonly id: number;
  readonly job: SignJob;
  readonly resolve: (outcome: SignOutcome) => void;
  readonly reject: (error: HsmError) => void;
  timer: NodeJS.Timeout | undefined;
  /** Times a worker died while holding this job. */
  deaths: number;
  /** Gave up waiting (timeout): skipped when its turn comes. */
  cancelled: boolean;
}

interface WorkerSlot {
  readonly index: number;
  readonly thread: Worker;
  state: 'starting' | 'ready' | 'exited';
  /** Jobs posted to the worker and not answered, in the order it runs them. */
  readonly jobs: Map<number, PendingJob>;
  /** `cacheKey`s described to this worker. */
  readonly knownKeys: Set<string>;
  /**
   * The sessions the worker says it holds (two for a moment while it replaces one),
   * by hex handle; closed from here if the worker dies.
   */
  readonly sessions: Map<string, Buffer>;
  /** Why the worker could not start, when it said so. */
  initError: HsmError | undefined;
  completed: number;
  /** Settles when the worker is ready for jobs; rejects if it stops before that. */
  readonly ready: Promise<void>;
  /** Settles when the thread has exited. */
  readonly exited: Promise<void>;
}

/** Error of the startup check: the first worker to fail decides it. */
function initError(message: Extract<WorkerResponse, { type: 'init-failed' }>, tokenLabel: string): HsmError {
  switch (message.reason) {
    case 'module':
      return new HsmError('HSM_UNAVAILABLE', 'a signing worker could not load the PKCS#11 module');
    case 'token-not-found':
      return new HsmError('HSM_TOKEN_NOT_FOUND', `a signing worker found no token "${tokenLabel}"`);
    case 'ckr':
    case 'internal':
      return hsmErrorFrom(
        message.ckr === null ? new Error('signing worker failed') : new Error(message.ckr),
        'HSM_UNAVAILABLE',
        'starting a signing worker',
      );
  }
}

export class SignWorkers {
  readonly #options: SignWorkersOptions;
  readonly #workers: (WorkerSlot | undefined)[];
  readonly #queue: (PendingJob | undefined)[] = [];
  #queueHead = 0;
  /** Jobs in the queue that still wait (cancelled ones excluded). */
  #waiting = 0;
  /** Jobs posted to a worker and not settled. */
  #running = 0;
  #nextJobId = 1;

  #started = 0;
  #recoveries = 0;
  /** Consecutive workers that died before being ready; drives the restart delay. */
  #failedStarts = 0;
  readonly #restartTimers = new Set<NodeJS.Timeout>();

  #closing: Promise<void> | undefined;
  #stopping = false;
  #drained: (() => void) | undefined;
  /** Set when a worker's login was refused on the PIN: retrying would burn attempts. */
  #fatal: HsmError | undefined;

  /** Resolves once every first worker is ready; rejects with the first start failure. */
  readonly ready: Promise<void>;

  constructor(options: SignWorkersOptions) {
    this.#options = options;
    this.#workers = Array.from({ length: options.count }, () => undefined);
    const starting: Promise<void>[] = [];
    for (let index = 0; index < options.count; index++) starting.push(this.#spawn(index).ready);
    this.ready = Promise.all(starting).then(() => undefined);
  }

  /**
   * Runs `job` on a worker. Rejects with HSM_POOL_CLOSED after `close()`, HSM_UNAVAILABLE
   * when the queue is full or no worker took the job in time, or the PIN error that made
   * logging in again impossible; resolves with the worker's outcome otherwise.
   */
  run(job: SignJob): Promise<SignOutcome> {
    if (this.#closing !== undefined) return Promise.reject(new HsmError('HSM_POOL_CLOSED', 'the HSM adapter is closed'));
    if (this.#fatal !== undefined) return Promise.reject(this.#fatal);
    return new Promise<SignOutcome>((resolve, reject) => {
      const pending: PendingJob = {
        id: this.#nextJobId++,
        job,
        resolve,
        reject,
        timer: undefined,
        deaths: 0,
        cancelled: false,
      };
      const worker = this.#leastBusy();
      if (worker !== undefined) {
        this.#dispatch(worker, pending);
      } else if (this.#waiting >= this.#options.maxWaiting) {
        reject(
          new HsmError(
            'HSM_UNAVAILABLE',
            `all ${this.#options.count} HSM signing workers are busy and the wait queue is full`,
          ),
        );
      } else {
        this.#enqueue(pending, false);
      }
    });
  }

  /**
   * Waits for every job running or queued, then stops the workers (each closes its
   * session). New jobs fail with HSM_POOL_CLOSED from the moment this is called.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#running > 0 || this.#waiting > 0) {
        await new Promise<void>((resolve) => {
          this.#drained = resolve;
        });
      }
      this.#stopping = true;
      for (const timer of this.#restartTimers) clearTimeout(timer);
      this.#restartTimers.clear();
      await Promise.all(this.#workers.flatMap((slot) => (slot === undefined ? [] : [this.#stop(slot)])));
    })();
    return this.#closing;
  }

  /** Session losses the workers recovered from (each worker counts its own). */
  get recoveries(): number {
    return this.#recoveries;
  }

  /** Workers started since construction, replacements included. */
  get started(): number {
    return this.#started;
  }

  /** Workers ready for jobs, as opposed to starting or being replaced. */
  get readyCount(): number {
    return this.#workers.filter((slot) => slot?.state === 'ready').length;
  }

  /** For tests: the sessions the live workers hold. */
  sessionHandlesForTesting(): Pkcs11Handle[] {
    return this.#workers.flatMap((slot) =>
      slot === undefined || slot.state === 'exited' ? [] : [...slot.sessions.values()],
    );
  }

  /** For tests: jobs completed by the worker currently in each slot. */
  completedForTesting(): number[] {
    return this.#workers.map((slot) => slot?.completed ?? 0);
  }

  /** For tests: stops the worker in slot `index` as a crash would. */
  async killForTesting(index: number): Promise<void> {
    const slot = this.#workers[index];
    if (slot === undefined) throw new RangeError(`no signing worker ${index}`);
    await slot.thread.terminate();
    await slot.exited;
  }

  /** For tests: the next `count` C_SignInit calls of every worker get a dead session handle. */
  injectFaultForTesting(count: number): void {
    for (const slot of this.#workers) {
      if (slot !== undefined && slot.state !== 'exited') this.#post(slot, { type: 'fault', failSignInits: count });
    }
  }

  #spawn(index: number): WorkerSlot {
    const { modulePath, tokenLabel, tokenSerial, pin } = this.#options;
    const workerData: SignWorkerData = { modulePath, tokenLabel, tokenSerial, pin };
    const thread = new Worker(WORKER_URL, { workerData });
    let markReady!: () => void;
    let markFailed!: (error: HsmError) => void;
    let markExited!: () => void;
    const slot: WorkerSlot = {
      index,
      thread,
      state: 'starting',
      jobs: new Map(),
      knownKeys: new Set(),
      sessions: new Map(),
      initError: undefined,
      completed: 0,
      ready: new Promise<void>((resolve, reject) => {
        markReady = resolve;
        markFailed = reject;
      }),
      exited: new Promise<void>((resolve) => {
        markExited = resolve;
      }),
    };
    // Only the first workers' start is awaited (by `ready`); a replacement that fails to
    // start is retried with a delay, and its jobs wait or time out meanwhile.
    slot.ready.catch(() => undefined);
    this.#workers[index] = slot;
    this.#started += 1;
    thread.on('message', (message: WorkerResponse) => {
      if (message.type === 'ready') markReady();
      this.#onMessage(slot, message);
    });
    thread.on('error', (error: unknown) => {
      // Followed by 'exit'; the jobs are retried or failed there. Only the error's class
      // is logged: a message could quote anything the worker was handling.
      this.#options.logger?.warn(
        { token: tokenLabel, worker: index, error: error instanceof Error ? error.name : typeof error },
        'HSM signing worker failed',
      );
    });
    thread.on('exit', () => {
      markFailed(slot.initError ?? new HsmError('HSM_UNAVAILABLE', 'a signing worker stopped while starting'));
      this.#onExit(slot);
      markExited();
    });
    return slot;
  }

  #onMessage(slot: WorkerSlot, message: WorkerResponse): void {
    switch (message.type) {
      case 'ready':
        this.#failedStarts = 0;
        slot.state = 'ready';
        this.#refill(slot);
        return;
      case 'init-failed':
        slot.initError = initError(message, this.#options.tokenLabel);
        return;
      case 'session-opened': {
        const handle = Buffer.from(message.handle);
        slot.sessions.set(handle.toString('hex'), handle);
        return;
      }
      case 'session-closing':
        slot.sessions.delete(Buffer.from(message.handle).toString('hex'));
        if (message.lost) this.#recoveries += 1;
        return;
      case 'signed':
      case 'failed': {
        const pending = slot.jobs.get(message.id);
        if (pending === undefined) return; // Not ours: never hand a caller someone else's answer.
        slot.jobs.delete(message.id);
        slot.completed += 1;
        this.#running -= 1;
        if (message.type === 'signed') {
          const { signature } = message;
          pending.resolve({ ok: true, signature: Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength) });
        } else {
          this.#noteFatal(message.ckr);
          pending.resolve({ ok: false, failure: message.failure, ckr: message.ckr });
        }
        this.#refill(slot);
        this.#checkDrained();
        return;
      }
    }
  }

  #onExit(slot: WorkerSlot): void {
    const wasReady = slot.state !== 'starting';
    slot.state = 'exited';
    // The worker announces a session before closing it, so these are still its own.
    for (const session of slot.sessions.values()) {
      try {
        this.#options.module.C_CloseSession(session);
      } catch {
        // Already gone.
      }
    }
    slot.sessions.clear();
    const orphans = [...slot.jobs.values()];
    slot.jobs.clear();
    this.#running -= orphans.length;
    // Back to the front of the queue in their order, or given up after a second death.
    for (const pending of orphans.reverse()) {
      pending.deaths += 1;
      if (pending.deaths < 2) {
        this.#enqueue(pending, true);
      } else {
        pending.reject(new HsmError('HSM_UNAVAILABLE', 'the HSM signing worker stopped twice while signing'));
      }
    }
    if (this.#stopping) return;
    this.#options.logger?.warn(
      { token: this.#options.tokenLabel, worker: slot.index, jobsRetried: orphans.length },
      'HSM signing worker stopped; starting a new one',
    );
    if (!wasReady) this.#failedStarts += 1;
    const delay =
      this.#failedStarts === 0 ? 0 : Math.min(RESTART_DELAY_MIN_MS * 2 ** (this.#failedStarts - 1), RESTART_DELAY_MAX_MS);
    if (delay === 0) {
      this.#spawn(slot.index);
    } else {
      const timer = setTimeout(() => {
        this.#restartTimers.delete(timer);
        if (!this.#stopping) this.#spawn(slot.index);
      }, delay);
      timer.unref();
      this.#restartTimers.add(timer);
    }
    // Orphans may be waiting for another worker that has room now.
    for (const other of this.#workers) if (other !== undefined && other.state === 'ready') this.#refill(other);
    this.#checkDrained();
  }

  /** The ready worker with the fewest jobs, if one has room. */
  #leastBusy(): WorkerSlot | undefined {
    let best: WorkerSlot | undefined;
    for (const slot of this.#workers) {
      if (slot?.state !== 'ready' || slot.jobs.size >= JOBS_PER_WORKER) continue;
      if (best === undefined || slot.jobs.size < best.jobs.size) best = slot;
      if (best.jobs.size === 0) break;
    }
    return best;
  }

  #dispatch(slot: WorkerSlot, pending: PendingJob): void {
    // Keep the process alive while a worker holds jobs; idle workers are unref'd.
    if (slot.jobs.size === 0) slot.thread.ref();
    slot.jobs.set(pending.id, pending);
    this.#running += 1;
    const { key, mechanism, prehash, data } = pending.job;
    let describe: KeyDescriptor | null = null;
    let forgetKeys = false;
    if (!slot.knownKeys.has(key.cacheKey)) {
      if (slot.knownKeys.size >= MAX_KEYS_PER_WORKER) {
        slot.knownKeys.clear();
        forgetKeys = true;
      }
      slot.knownKeys.add(key.cacheKey);
      describe = key;
    }
    this.#post(slot, { type: 'sign', id: pending.id, key: key.cacheKey, describe, forgetKeys, mechanism, prehash, data });
  }

  /** Tops up a worker with waiting jobs; an idle worker is unref'd. */
  #refill(slot: WorkerSlot): void {
    while (slot.jobs.size < JOBS_PER_WORKER) {
      const pending = this.#dequeue();
      if (pending === undefined) break;
      clearTimeout(pending.timer);
      if (this.#fatal !== undefined) {
        pending.reject(this.#fatal);
        continue;
      }
      this.#dispatch(slot, pending);
    }
    // An idle worker must not keep an otherwise finished process alive.
    if (slot.jobs.size === 0) slot.thread.unref();
  }

  #enqueue(pending: PendingJob, front: boolean): void {
    if (front) {
      if (this.#queueHead > 0) this.#queue[--this.#queueHead] = pending;
      else this.#queue.unshift(pending);
    } else {
      this.#queue.push(pending);
    }
    this.#waiting += 1;
    pending.timer = setTimeout(() => {
      pending.cancelled = true;
      this.#waiting -= 1;
      pending.reject(
        new HsmError('HSM_UNAVAILABLE', `no HSM signing worker became free within ${this.#options.acquireTimeoutMs} ms`),
      );
      this.#checkDrained();
    }, this.#options.acquireTimeoutMs);
  }

  #dequeue(): PendingJob | undefined {
    while (this.#queueHead < this.#queue.length) {
      const pending = this.#queue[this.#queueHead];
      this.#queue[this.#queueHead] = undefined;
      this.#queueHead += 1;
      if (pending === undefined || pending.cancelled) continue;
      this.#waiting -= 1;
      this.#compactQueue();
      return pending;
    }
    this.#compactQueue();
    return undefined;
  }

  /** Drops consumed entries from the front, in bulk, so dequeuing stays O(1) on average. */
  #compactQueue(): void {
    if (this.#queueHead === this.#queue.length) {
      this.#queue.length = 0;
      this.#queueHead = 0;
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#queueHead);
      this.#queueHead = 0;
    }
  }

  #post(slot: WorkerSlot, message: WorkerRequest): void {
    slot.thread.postMessage(message);
  }

  #noteFatal(ckr: string | null): void {
    if (ckr === null || this.#fatal !== undefined) return;
    const { tokenLabel } = this.#options;
    let fatal: HsmError | undefined;
    if (ckr === 'CKR_PIN_INCORRECT' || ckr === 'CKR_PIN_INVALID' || ckr === 'CKR_PIN_LEN_RANGE') {
      fatal = new HsmError('HSM_PIN_INCORRECT', `the PIN for token "${tokenLabel}" is incorrect`, { ckr });
    } else if (ckr === 'CKR_PIN_LOCKED' || ckr === 'CKR_PIN_EXPIRED') {
      fatal = new HsmError('HSM_PIN_LOCKED', `the user PIN of token "${tokenLabel}" is locked`, { ckr });
    }
    if (fatal === undefined) return;
    this.#fatal = fatal;
    for (let pending = this.#dequeue(); pending !== undefined; pending = this.#dequeue()) {
      clearTimeout(pending.timer);
      pending.reject(fatal);
    }
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (this.#drained !== undefined && this.#running === 0 && this.#waiting === 0) {
      const drained = this.#drained;
      this.#drained = undefined;
      drained();
    }
  }

  async #stop(slot: WorkerSlot): Promise<void> {
    if (slot.state === 'exited') return;
    // An idle worker is unref'd; the caller of close() must still see it end.
    slot.thread.ref();
    this.#post(slot, { type: 'close' });
    const timer = setTimeout(() => {
      void slot.thread.terminate();
    }, STOP_TIMEOUT_MS);
    timer.unref();
    try {
      await slot.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
