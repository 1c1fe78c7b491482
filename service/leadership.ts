/**
 * Once-per-cluster periodic work (DESIGN.md: "runs once per cluster, not once per
 * replica"). Every replica runs the same duty timers; before each round a duty asks
 * `mayRun`, which takes or renews the duty's lease in storage (store.ts
 * `LeaseRepository`). The replica holding it runs the round and keeps it by renewing
 * each round; the others skip their rounds until the lease expires (its holder died, or
 * lost the database) or is released at a graceful stop, and the first to ask then
 * takes over.
 *
 * The lease lasts `LEASE_ROUNDS` duty intervals, so a holder that renews every round
 * keeps it through a late timer, and a dead holder's duty resumes elsewhere within
 * about that long. A round that outlasts the lease could overlap with the next
 * holder's first round; every duty tolerates that (CRL numbers only grow, scheduled
 * proposal ids are fixed per key version and day, purges are idempotent).
 * A lease that cannot be read (the database is away) means no round: fail closed,
 * retried at the next tick.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { LeaseRepository } from '../store/store.js';

/** The lease of a duty lasts this many of its intervals. */
export const LEASE_ROUNDS = 2.5;

export interface LeadershipLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

export interface ClusterLeadership {
  /** This replica's holder name in the lease table: host, process id and a random part. */
  readonly holder: string;
  /** A `mayRun` for the duty `name` that runs every `intervalMs`. */
  duty(name: string, intervalMs: number): () => Promise<boolean>;
  /** Gives up every lease this replica holds, so another replica takes over at once (graceful stop). */
  releaseAll(): Promise<void>;
}

export function clusterLeadership(leases: LeaseRepository, logger: LeadershipLogger, holder = defaultHolder()): ClusterLeadership {
  const held = new Set<string>();
  return {
    holder,
    duty(name, intervalMs) {
      const ttlMs = Math.max(1, Math.round(intervalMs * LEASE_ROUNDS));
      return async () => {
        let leading: boolean;
        try {
          leading = await leases.tryAcquire(name, holder, ttlMs);
        } catch (error) {
          logger.warn({ err: error, duty: name }, 'cannot reach the duty lease; skipping this round');
          return false;
        }
        if (leading && !held.has(name)) logger.info({ duty: name, holder }, 'this replica now runs the duty for the cluster');
        if (!leading && held.has(name)) logger.info({ duty: name, holder }, 'another replica now runs the duty');
        if (leading) held.add(name);
        else held.delete(name);
        return leading;
      };
    },
    async releaseAll() {
      const names = [...held];
      held.clear();
      await Promise.allSettled(names.map((name) => leases.release(name, holder)));
    },
  };
}

function defaultHolder(): string {
  const host = hostname().replace(/[^\x21-\x7e]/g, '_').slice(0, 100) || 'host';
  return `${host}:${process.pid}:${randomBytes(6).toString('hex')}`;
}
