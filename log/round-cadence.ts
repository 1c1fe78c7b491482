/**
 * When the next checkpoint signing round may start.
 *
 * Each round costs an HSM signature, and through the signing workers a signature costs
 * far more than `C_Sign` itself: a worker woken for the job, the message and the reply,
 * and on a busy machine the woken worker taking the core from the event loop that
 * posted it (BENCHMARKS.md, "Where the log's cost goes, thread by thread"). A round that
 * starts as soon as a receipt needs it signs about one checkpoint per group commit.
 * Waiting lets one signature cover more entries, but a receipt that waits while the
 * event loop has nothing else to do only adds latency, and with few requests in flight
 * that latency is the rate. So a round waits only while the event loop is busy: it
 * starts at once if the loop was not saturated since the previous round began, and
 * otherwise as soon as the loop has had to wait for I/O (it has run out of other work),
 * or after a ceiling, whichever comes first.
 *
 * The wait never changes what a round signs (the durable tree when it reads the size,
 * checked against the previous checkpoint): only how many entries that tree has grown by.
 */
import { performance, type EventLoopUtilization } from 'node:perf_hooks';

/** Resolves when the next round may start; called once per round. */
export type RoundCadence = () => Promise<void>;

export interface BusyLoopCadenceOptions {
  /** The longest a round waits for a busy event loop (default 10 ms: a saturated loop signs about a hundred checkpoints a second at most). */
  readonly maxWaitMs?: number;
  /** The event loop's utilisation (share of time not waiting for I/O) from which it counts as busy (default 0.9). */
  readonly busyUtilization?: number;
}

const DEFAULT_ROUND_MAX_WAIT_MS = 10;
const DEFAULT_BUSY_UTILIZATION = 0.9;
/** How often a waiting round looks at the event loop again. */
const POLL_MS = 1;

/**
 * The service's cadence, from this thread's event-loop utilisation
 * (`performance.eventLoopUtilization`, measured by libuv around its wait for I/O).
 */
export function busyLoopCadence(options: BusyLoopCadenceOptions = {}): RoundCadence {
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_ROUND_MAX_WAIT_MS;
  const busyUtilization = options.busyUtilization ?? DEFAULT_BUSY_UTILIZATION;
  if (!(maxWaitMs >= 0) || !(busyUtilization > 0 && busyUtilization <= 1)) {
    throw new TypeError('maxWaitMs must be ≥ 0 and busyUtilization in (0, 1]');
  }
  /** The loop's counters when the previous round started. */
  let previousStart: EventLoopUtilization | undefined;
  return async () => {
    const waitStarted = performance.now();
    let since = previousStart;
    for (;;) {
      const now = performance.eventLoopUtilization();
      const busy = since !== undefined && performance.eventLoopUtilization(now, since).utilization >= busyUtilization;
      if (!busy || performance.now() - waitStarted >= maxWaitMs) break;
      since = now;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    previousStart = performance.eventLoopUtilization();
  };
}
