/**
 * A bounded pool of logged-in PKCS#11 sessions on one token, with recovery.
 *
 * One operation per session: PKCS#11 allows at most one active operation of a kind per
 * session, and a session must not be used by two threads at once (PKCS#11 Usage Guide,
 * "Operations, sessions and threads"; SoftHSM answers CKR_OPERATION_ACTIVE). The pool hands a session to one
 * operation at a time; callers beyond `size` wait in a FIFO queue, with a timeout.
 *
 * Recovery: sessions die (token removed, module restarted, idle timeouts, someone
 * logging the application out). When an operation fails with a CK_RV that says so,
 * the pool starts a new *generation*: every session of the old generation is closed as
 * soon as nobody uses it and is never handed out again, object handles cached by the
 * caller for the old generation become invalid, a fresh session is opened and logged in,
 * and the failed operation is retried once. A second failure is reported.
 *
 * Every PKCS#11 call made by the pool itself is synchronous, so the JavaScript thread
 * runs a recovery from start to end without interleaving; comparing the failed
 * session's generation with the current one is therefore enough to make concurrent
 * failures of one incident coalesce into a single recovery.
 */
import { ckrNameOf, HsmError, hsmErrorFrom } from './errors.js';
import { pkcs11js, type LoginLease, type Pkcs11, type Pkcs11Handle } from './pkcs11-module.js';
import { SESSION_LOSS_CKRS } from './session-loss.mjs';

/** Structural logger, satisfied by pino. */
export interface HsmLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface PoolSession {
  readonly handle: Pkcs11Handle;
  /** The pool generation the session was opened in; see `SessionPool.generation`. */
  readonly generation: number;
}

export interface SessionPoolOptions {
  readonly module: Pkcs11;
  readonly slot: Pkcs11Handle;
  /** Used for the first login and for logging in again after a session loss. */
  readonly pin: string;
  readonly tokenLabel: string;
  readonly loginLease: LoginLease;
  /** Sessions kept open, each running at most one operation at a time. */
  readonly size: number;
  /** R/W sessions are needed to create token objects (key generation). */
  readonly readWrite: boolean;
  /** How long an operation may wait for a free session. */
  readonly acquireTimeoutMs: number;
  /** How many operations may wait; beyond that, new ones fail at once. */
  readonly maxWaiting: number;
  readonly logger?: HsmLogger | undefined;
}


/**
 * The session itself is fine but an operation was left active on it (by a module that
 * does not terminate an operation on every error path, or by another user of the
 * handle): replace that one session and retry.
 */
const DIRTY_SESSION_CKRS: ReadonlySet<string> = new Set(['CKR_OPERATION_ACTIVE']);

/** CK_STATE values (v2.40 §3.3, CK_STATE) in which the user is logged in. */
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

type ReleaseOutcome =
  /** Operation succeeded, or failed without leaving state on the session. */
  | 'reuse'
  /** Operation failed after touching the session: close it, keep a fresh one instead. */
  | 'replace'
  /** The session belongs to a dead generation. */
  | 'discard';

interface Waiter {
  readonly resolve: (session: PoolSession) => void;
  readonly reject: (error: unknown) => void;
  timer: NodeJS.Timeout | undefined;
}

export class SessionPool {
  readonly #module: Pkcs11;
  readonly #options: SessionPoolOptions;
  readonly #sessionFlags: number;

  #generation = 0;
  /** The generation whose sessions are logged in; behind `#generation` until re-login. */
  #loggedInGeneration = -1;
  #recoveries = 0;
  readonly #idle: PoolSession[] = [];
  readonly #busy = new Set<PoolSession>();
  /** Operations holding a slot in the pool (a session, or about to get one). */
  #active = 0;
  readonly #waiters: Waiter[] = [];
  #closing: Promise<void> | undefined;
  #drained: (() => void) | undefined;
  /** Set when logging in again failed on the PIN: never retry (it would burn PIN attempts). */
  #fatal: HsmError | undefined;

  private constructor(options: SessionPoolOptions) {
    this.#module = options.module;
    this.#options = options;
    this.#sessionFlags = pkcs11js.CKF_SERIAL_SESSION | (options.readWrite ? pkcs11js.CKF_RW_SESSION : 0);
  }

  /**
   * Opens `size` sessions and logs in. Throws HSM_PIN_INCORRECT / HSM_PIN_LOCKED when
   * the token refuses the PIN, so a misconfigured service fails at start.
   */
  static open(options: SessionPoolOptions): SessionPool {
    const pool = new SessionPool(options);
    try {
      for (let i = 0; i < options.size; i++) {
        const session = pool.#openSession();
        pool.#idle.push(session);
        pool.#ensureLoggedIn(session);
      }
    } catch (error) {
      pool.#closeAllIdle();
      throw error;
    }
    return pool;
  }

  /**
   * Current generation. Object handles looked up in a session of generation N must
   * only be used with sessions of generation N: a recovery may have logged in again,
   * which invalidates handles of private objects.
   */
  get generation(): number {
    return this.#generation;
  }

  /** Completed recoveries since the pool was opened (for health reporting and tests). */
  get recoveries(): number {
    return this.#recoveries;
  }

  /**
   * Runs `operation` with a session to itself. The callback must not keep the session
   * after its promise settles.
   *
   * Failure handling, by what the callback threw:
   * - a session-loss CK_RV: recover (or join the recovery already made for this
   *   generation) and retry once with a fresh session; a second loss is HSM_SESSION_LOST.
   * - CKR_OPERATION_ACTIVE: replace that session and retry once.
   * - an `HsmError` without such a CK_RV: raised by our own checks after every PKCS#11
   *   call completed, so the session is clean and goes back to the pool.
   * - anything else: the session may hold an active operation (a failed C_Sign is not
   *   guaranteed to terminate it: CKR_BUFFER_TOO_SMALL never does, and SoftHSM leaves it
   *   active after CKR_ARGUMENTS_BAD), so it is closed and replaced.
   */
  async run<T>(what: string, operation: (session: PoolSession) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const session = await this.#acquire();
      let outcome: ReleaseOutcome = 'reuse';
      try {
        return await operation(session);
      } catch (error) {
        const ckr = ckrNameOf(error);
        if (ckr !== undefined && SESSION_LOSS_CKRS.has(ckr)) {
          outcome = 'discard';
          this.#recover(session.generation, ckr);
          if (attempt === 1) continue;
          throw new HsmError('HSM_SESSION_LOST', `${what} failed: the HSM session was lost twice (${ckr})`, {
            cause: error,
            ckr,
          });
        }
        if (ckr !== undefined && DIRTY_SESSION_CKRS.has(ckr)) {
          outcome = 'replace';
          if (attempt === 1) continue;
        } else if (!(error instanceof HsmError)) {
          outcome = 'replace';
        }
        throw error;
      } finally {
        this.#release(session, outcome);
      }
    }
  }

  /**
   * Throws a session-loss error unless `session` is in a logged-in state. For callers
   * that just got "no such object": after a logout, private objects are invisible
   * rather than an error (v2.40 §4.4, CKA_PRIVATE), so "not found" must be double-checked.
   */
  assertLoggedIn(session: PoolSession): void {
    const { state } = this.#module.C_GetSessionInfo(session.handle);
    if (state !== CKS_RO_USER_FUNCTIONS && state !== CKS_RW_USER_FUNCTIONS) {
      throw new HsmError('HSM_SESSION_LOST', 'the HSM session is no longer logged in', {
        ckr: 'CKR_USER_NOT_LOGGED_IN',
      });
    }
  }

  /**
   * Waits for every operation in flight or queued, then logs out (if no other pool of
   * this process uses the token) and closes the sessions. New operations fail with
   * HSM_POOL_CLOSED from the moment this is called.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#active > 0 || this.#waiters.length > 0) {
        await new Promise<void>((resolve) => {
          this.#drained = resolve;
        });
      }
      if (this.#options.loginLease.release()) {
        const session = this.#idle[0];
        if (session !== undefined) {
          try {
            this.#module.C_Logout(session.handle);
          } catch {
            // Already logged out (or the session is gone): closing the last session
            // below returns the token to the public state anyway (§5.6.2).
          }
        }
      }
      this.#closeAllIdle();
    })();
    return this.#closing;
  }

  /** Handles of the sessions of the current generation, idle or busy. For tests only. */
  sessionHandlesForTesting(): Pkcs11Handle[] {
    return [...this.#idle, ...this.#busy]
      .filter((session) => session.generation === this.#generation)
      .map((session) => session.handle);
  }

  async #acquire(): Promise<PoolSession> {
    if (this.#closing !== undefined) throw new HsmError('HSM_POOL_CLOSED', 'the HSM adapter is closed');
    if (this.#fatal !== undefined) throw this.#fatal;
    if (this.#active < this.#options.size) {
      this.#active += 1;
      try {
        return this.#takeSession();
      } catch (error) {
        this.#releaseSlot();
        throw error;
      }
    }
    if (this.#waiters.length >= this.#options.maxWaiting) {
      throw new HsmError('HSM_UNAVAILABLE', `all ${this.#options.size} HSM sessions are busy and the wait queue is full`);
    }
    return new Promise<PoolSession>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined };
      waiter.timer = setTimeout(() => {
        const index = this.#waiters.indexOf(waiter);
        if (index >= 0) this.#waiters.splice(index, 1);
        reject(
          new HsmError(
            'HSM_UNAVAILABLE',
            `no HSM session became free within ${this.#options.acquireTimeoutMs} ms`,
          ),
        );
        this.#checkDrained();
      }, this.#options.acquireTimeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /** Gives a session to the holder of a pool slot: an idle one, else a new one. */
  #takeSession(): PoolSession {
    if (this.#fatal !== undefined) throw this.#fatal;
    let session = this.#idle.pop();
    while (session !== undefined && session.generation !== this.#generation) {
      this.#closeQuietly(session); // Defensive: recovery already closed stale idle sessions.
      session = this.#idle.pop();
    }
    session ??= this.#openSession();
    try {
      this.#ensureLoggedIn(session);
    } catch (error) {
      this.#closeQuietly(session);
      throw error;
    }
    this.#busy.add(session);
    return session;
  }

  #release(session: PoolSession, outcome: ReleaseOutcome): void {
    this.#busy.delete(session);
    const current = session.generation === this.#generation;
    if (outcome === 'reuse' && current) {
      this.#idle.push(session);
    } else if (outcome === 'replace' && current) {
      // Open the replacement first: closing the application's last session would log
      // it out (§5.6.2) and invalidate every cached handle of private objects.
      try {
        this.#idle.push(this.#openSession());
      } catch {
        // The next acquire opens one (and recovers if the token is really gone).
      }
      this.#closeQuietly(session);
    } else {
      this.#closeQuietly(session);
    }
    this.#releaseSlot();
  }

  /** Passes a released pool slot to the first waiter, or frees it. */
  #releaseSlot(): void {
    for (;;) {
      const waiter = this.#waiters.shift();
      if (waiter === undefined) {
        this.#active -= 1;
        this.#checkDrained();
        return;
      }
      clearTimeout(waiter.timer);
      try {
        waiter.resolve(this.#takeSession());
        return;
      } catch (error) {
        waiter.reject(error); // And offer the slot to the next waiter.
      }
    }
  }

  #checkDrained(): void {
    if (this.#drained !== undefined && this.#active === 0 && this.#waiters.length === 0) {
      const drained = this.#drained;
      this.#drained = undefined;
      drained();
    }
  }

  /**
   * Starts a new generation after a session loss seen on a session of `failedGeneration`.
   * A failure from an older generation means this incident was already handled: the
   * caller just retries with a session of the new generation.
   */
  #recover(failedGeneration: number, ckr: string): void {
    if (failedGeneration !== this.#generation || this.#closing !== undefined) return;
    this.#generation += 1;
    this.#recoveries += 1;
    this.#options.logger?.warn(
      { token: this.#options.tokenLabel, reason: ckr, generation: this.#generation },
      'HSM session lost; reopening sessions and logging in again',
    );
    // Drain: idle sessions of the old generation close now; busy ones close when their
    // operation ends (#release compares generations), so none is reused.
    this.#closeAllIdle();
    try {
      const session = this.#openSession();
      this.#idle.push(session);
      this.#ensureLoggedIn(session);
    } catch (error) {
      // The retry's acquire will try again and report what is wrong (token absent...),
      // unless the PIN was refused, which #ensureLoggedIn made fatal.
      this.#options.logger?.warn(
        { token: this.#options.tokenLabel, reason: ckrNameOf(error), generation: this.#generation },
        'HSM session recovery failed',
      );
    }
  }

  #openSession(): PoolSession {
    try {
      return { handle: this.#module.C_OpenSession(this.#options.slot, this.#sessionFlags), generation: this.#generation };
    } catch (error) {
      throw hsmErrorFrom(error, 'HSM_UNAVAILABLE', `opening a session on token "${this.#options.tokenLabel}"`);
    }
  }

  /**
   * Logs the application in once per generation. Login state is per application, not
   * per session (§5.6.7), so CKR_USER_ALREADY_LOGGED_IN is success.
   */
  #ensureLoggedIn(session: PoolSession): void {
    if (this.#loggedInGeneration === this.#generation) return;
    try {
      this.#module.C_Login(session.handle, pkcs11js.CKU_USER, this.#options.pin);
    } catch (error) {
      const ckr = ckrNameOf(error);
      if (ckr === 'CKR_USER_ALREADY_LOGGED_IN' && this.#loggedInGeneration === -1 && !this.#options.loginLease.shared) {
        // Someone else in this process (another PKCS#11 wrapper) logged in first; the
        // token did not check our PIN. Signing works, but say so.
        this.#options.logger?.warn(
          { token: this.#options.tokenLabel },
          'token was already logged in by another component of this process; the configured PIN was not verified',
        );
      } else if (ckr !== 'CKR_USER_ALREADY_LOGGED_IN') {
        const translated = hsmErrorFrom(error, 'HSM_UNAVAILABLE', `logging in to token "${this.#options.tokenLabel}"`);
        if (translated.code === 'HSM_PIN_INCORRECT' || translated.code === 'HSM_PIN_LOCKED') {
          const message =
            translated.code === 'HSM_PIN_LOCKED'
              ? `the user PIN of token "${this.#options.tokenLabel}" is locked`
              : `the PIN for token "${this.#options.tokenLabel}" is incorrect`;
          this.#fatal = new HsmError(translated.code, message, { cause: error, ckr });
          throw this.#fatal;
        }
        throw translated;
      }
    }
    this.#loggedInGeneration = this.#generation;
  }

  #closeAllIdle(): void {
    for (const session of this.#idle.splice(0)) this.#closeQuietly(session);
  }

  #closeQuietly(session: PoolSession): void {
    try {
      this.#module.C_CloseSession(session.handle);
    } catch {
      // Typically CKR_SESSION_HANDLE_INVALID: the session is already gone.
    }
  }
}
