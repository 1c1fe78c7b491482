/**
 * Who is executing a rotation right now, and what is recorded when the process that
 * was executing it died between its steps (execute.ts: `execution-started`, the pending
 * version, its certificate, the commit; each durable on its own).
 *
 * The execution lease. Before it logs `execution-started`, the executing replica takes
 * the lease `execution:<SHA-256 of the proposal id, 40 hex digits>` in storage (store.ts
 * `LeaseRepository`, the table of the periodic duties, service/leadership.ts), renews it
 * every fifth of `EXECUTION_LEASE_MS` while it works, and releases it when the execution
 * ends, executed or failed (`execution-failed` logged). While the lease is held nobody
 * else executes the proposal (EXECUTION_IN_PROGRESS). So a lease that was neither
 * released nor renewed for `EXECUTION_LEASE_MS` belongs to an execution that neither
 * committed nor recorded a failure: its process died (a crash, a kill, a power cut) or
 * lost storage for that long.
 *
 * Recording the interruption. Whoever takes such a lease over appends
 * `execution-interrupted`, with what storage holds at that moment: the version still
 * active, the pending version the attempt left (or none) and whether it has a
 * certificate. That is the interruption watch below (every replica at start, again
 * when the dead holder's lease has expired, then every minute on the replica holding
 * the `execution-recovery` duty), or the next execution of the proposal, which records
 * it before its own `execution-started`. Taking a lease over is one atomic upsert in
 * storage, so of several replicas finding the same dead lease one records it; the
 * watch and the executions of one process use different holder names, so they exclude
 * each other in the same way. The record is made at least once: a replica dying
 * between recording and releasing leaves its own lease to be taken over and recorded
 * again.
 *
 * Nothing else is changed: the old version stays the active one, the pending version
 * stays pending (it never signs) and the proposal stays open; executing it again
 * resumes with that pending version (execute.ts).
 */
import { createHash } from 'node:crypto';
import type { KeyVersionRecord, LeaseRecord, SignetStore } from '../store/store.js';
import { RotationError } from './errors.js';
import type { GovernanceLogger } from './execute.js';
import { governanceEntry } from './log-entries.js';
import type { ProposalRecord } from './proposals.js';

/** How long an execution's lease outlives its last renewal. */
export const EXECUTION_LEASE_MS = 10_000;

/** The lease of a proposal's execution (lease names are lower-case; proposal ids need not be). */
export function executionLeaseName(proposalId: string): string {
  return `execution:${createHash('sha256').update(proposalId).digest('hex').slice(0, 40)}`;
}

export interface ExecutionLeaseContext {
  readonly store: SignetStore;
  readonly logger: GovernanceLogger;
  readonly now: () => Date;
  /** This process's holder name for the lease (unique per process). */
  readonly holder: string;
  /** `EXECUTION_LEASE_MS` unless a test shortens it. */
  readonly leaseMs: number;
}

/**
 * The pending version a rotation left behind, which executing it again reuses: the
 * newest `pending` version of the key, of the rotation's algorithm, newer than the
 * active one. Undefined when there is none (or no active version).
 */
export function leftoverPendingVersion(proposal: ProposalRecord, keys: readonly KeyVersionRecord[]): KeyVersionRecord | undefined {
  const { action } = proposal.content;
  if (action.type !== 'rotate-key') return undefined;
  const versions = keys.filter((k) => k.name === action.key);
  const active = versions.find((k) => k.state === 'active');
  if (active === undefined) return undefined;
  const algorithm = action.algorithm ?? active.algorithm;
  return versions
    .filter((k) => k.state === 'pending' && k.algorithm === algorithm && k.version > active.version)
    .sort((a, b) => b.version - a.version)[0];
}

/** An execution lease this process holds, renewed until `release`. */
export class HeldExecution {
  readonly #context: ExecutionLeaseContext;
  readonly #name: string;
  readonly #proposalId: string;
  #timer: NodeJS.Timeout | undefined;
  #renewing: Promise<void> = Promise.resolve();
  #lost = false;
  #released = false;

  constructor(context: ExecutionLeaseContext, proposalId: string) {
    this.#context = context;
    this.#proposalId = proposalId;
    this.#name = executionLeaseName(proposalId);
    this.#schedule();
  }

  /** Throws EXECUTION_IN_PROGRESS once another holder has taken the lease over (this execution was taken for dead). */
  assertHeld(): void {
    if (this.#lost) {
      throw new RotationError('EXECUTION_IN_PROGRESS', `another replica took the execution of proposal ${this.#proposalId} over; this one stops`);
    }
  }

  /** Stops renewing and gives the lease up; never throws (an unreleased lease just expires). */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    // A renewal still in flight would write the lease back after the release.
    await this.#renewing;
    try {
      await this.#context.store.leases.release(this.#name, this.#context.holder);
    } catch (error) {
      this.#context.logger.warn({ err: error, proposalId: this.#proposalId }, 'could not release the execution lease; it expires by itself');
    }
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#renewing = this.#renew().finally(() => {
        if (!this.#released) this.#schedule();
      });
    }, Math.max(1, Math.floor(this.#context.leaseMs / 5)));
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    try {
      if (!(await this.#context.store.leases.tryAcquire(this.#name, this.#context.holder, this.#context.leaseMs)) && !this.#lost) {
        this.#lost = true;
        this.#context.logger.error({ proposalId: this.#proposalId }, 'the execution lease was taken over by another replica; this execution stops at its next step');
      }
    } catch (error) {
      // Storage away: keep trying. If it stays away past the lease, another replica may take over.
      this.#context.logger.warn({ err: error, proposalId: this.#proposalId }, 'could not renew the execution lease');
    }
  }
}

/**
 * Takes the lease of `proposal`'s execution for this process, or throws
 * EXECUTION_IN_PROGRESS while another holder's lease is live. When it takes over the
 * expired lease of an earlier attempt, records that attempt's interruption first.
 */
export async function takeExecution(context: ExecutionLeaseContext, proposal: ProposalRecord): Promise<HeldExecution> {
  const id = proposal.content.id;
  const name = executionLeaseName(id);
  const previous = await context.store.leases.get(name);
  const interrupted = previous !== null && previous.holder !== context.holder && expired(previous) ? previous : null;
  if (!(await context.store.leases.tryAcquire(name, context.holder, context.leaseMs))) {
    throw new RotationError(
      'EXECUTION_IN_PROGRESS',
      `proposal ${id} is being executed by another replica, or by one that stopped less than ${Math.ceil(context.leaseMs / 1000)} s ago; try again then`,
    );
  }
  const held = new HeldExecution(context, id);
  // A lease that was still live when read and could be taken all the same was released
  // meanwhile: that execution ended (executed or failed), it was not interrupted.
  if (interrupted !== null) {
    try {
      await recordInterruption(context, proposal, interrupted);
    } catch (error) {
      await held.release();
      throw error;
    }
  }
  return held;
}

/** What `recordInterrupted` did with one proposal. */
export type InterruptionCheck =
  | { readonly kind: 'none' }
  | { readonly kind: 'recorded' }
  /** Held by a live execution (or one that died less than a lease ago): look again after `until`. */
  | { readonly kind: 'held'; readonly until: string };

/**
 * Checks one open proposal: if an execution of it left its lease behind and the lease
 * has expired, takes it over, records the interruption and releases it.
 */
export async function recordInterrupted(context: ExecutionLeaseContext, proposal: ProposalRecord): Promise<InterruptionCheck> {
  const name = executionLeaseName(proposal.content.id);
  const previous = await context.store.leases.get(name);
  if (previous === null) return { kind: 'none' };
  // Only a lease that has expired is taken over: a live one may be released any moment
  // by an execution that ends normally, and taking the free lease then would record an
  // interruption that never happened.
  if (previous.holder === context.holder || !expired(previous) || !(await context.store.leases.tryAcquire(name, context.holder, context.leaseMs))) {
    return { kind: 'held', until: previous.expiresAt };
  }
  try {
    // Executed meanwhile (its process died after the commit, before releasing): nothing was interrupted.
    const current = await context.store.governance.getProposal(proposal.content.id);
    if (current?.status !== 'open') return { kind: 'none' };
    await recordInterruption(context, current, previous);
  } finally {
    await context.store.leases.release(name, context.holder).catch((error: unknown) => {
      context.logger.warn({ err: error, proposalId: proposal.content.id }, 'could not release the execution lease; it expires by itself');
    });
  }
  return { kind: 'recorded' };
}

/**
 * Whether a lease read from storage had expired, by this machine's clock. Storage judges
 * expiry by its own clock (PostgreSQL's, for replicas), so this is only a first filter:
 * taking the lease over (`tryAcquire`) decides.
 */
function expired(lease: LeaseRecord): boolean {
  return Date.parse(lease.expiresAt) <= Date.now();
}

/** Appends `execution-interrupted` for the attempt that held `lease`, with what storage holds now. */
async function recordInterruption(context: ExecutionLeaseContext, proposal: ProposalRecord, lease: LeaseRecord): Promise<void> {
  const keys = await context.store.keys.list();
  const { action } = proposal.content;
  const active = action.type === 'rotate-key' ? keys.find((k) => k.name === action.key && k.state === 'active') : undefined;
  const pending = leftoverPendingVersion(proposal, keys);
  let pendingCertificate = false;
  if (pending !== undefined) {
    const [leaves, revocations] = await Promise.all([context.store.certificates.leavesOfKey(pending.keyId), context.store.certificates.listRevocations()]);
    const revoked = new Set(revocations.map((r) => r.serialNumber));
    pendingCertificate = leaves.some((leaf) => !revoked.has(leaf.serialNumber));
  }
  const now = context.now();
  const found = { activeKeyId: active?.keyId ?? null, pendingKeyId: pending?.keyId ?? null, pendingCertificate };
  await context.store.transaction(async (tx) => {
    await tx.log.append([
      governanceEntry(
        { event: 'execution-interrupted', proposalId: proposal.content.id, action: action.type, startedAt: lease.acquiredAt, found, time: now.toISOString() },
        now,
      ),
    ]);
  });
  context.logger.warn(
    { proposalId: proposal.content.id, startedAt: lease.acquiredAt, ...found },
    'an execution of the proposal was interrupted (its process stopped between steps); recorded in the log. Executing it again resumes',
  );
}

export interface InterruptionWatchOptions extends ExecutionLeaseContext {
  /** Between the regular rounds (default: a minute). */
  readonly intervalMs?: number;
  /** Asked before each regular round (once-per-cluster leadership); the rounds at start and after a dead lease expires run regardless. */
  readonly mayRun?: () => Promise<boolean>;
}

export interface InterruptionWatch {
  /** One round now; resolves when done, never rejects. */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Records interrupted executions of open rotation proposals: a round at start, another
 * soon after a lease it found held expires (a restart right after a crash finds the
 * dead process's lease still live), and one every `intervalMs` on the replica `mayRun`
 * lets (another replica's crash).
 */
export function startInterruptionWatch(options: InterruptionWatchOptions): InterruptionWatch {
  const intervalMs = options.intervalMs ?? 60_000;
  let stopped = false;
  let running: Promise<void> | undefined;
  let followUp: NodeJS.Timeout | undefined;

  const round = async (): Promise<void> => {
    let earliest: number | undefined;
    try {
      const open = await options.store.governance.listProposals({ status: 'open', limit: 1000 });
      for (const proposal of open) {
        if (stopped) return;
        if (proposal.content.action.type !== 'rotate-key') continue;
        const check = await recordInterrupted(options, proposal);
        if (check.kind === 'held') {
          const until = Date.parse(check.until);
          earliest = earliest === undefined ? until : Math.min(earliest, until);
        }
      }
    } catch (error) {
      options.logger.warn({ err: error }, 'checking for interrupted executions failed; will retry');
      earliest = Date.now() + options.leaseMs;
    }
    if (earliest !== undefined && !stopped && followUp === undefined) {
      // Storage's clock may differ from ours: never sooner than half a second, never later than one lease and a second.
      const delay = Math.min(Math.max(earliest - Date.now() + 500, 500), options.leaseMs + 1_000);
      followUp = setTimeout(() => {
        followUp = undefined;
        void runOnce();
      }, delay);
      followUp.unref();
    }
  };

  const runOnce = (): Promise<void> => {
    running ??= round().finally(() => {
      running = undefined;
    });
    return running;
  };

  void runOnce();
  const timer = setInterval(() => {
    void (async () => {
      const leading = options.mayRun === undefined || (await options.mayRun().catch(() => false));
      if (leading && !stopped) await runOnce();
    })();
  }, intervalMs);
  timer.unref();

  return {
    runOnce,
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      clearTimeout(followUp);
      await running;
    },
  };
}
