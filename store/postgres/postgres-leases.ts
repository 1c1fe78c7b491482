/**
 * `LeaseRepository` on PostgreSQL. One statement does the whole take-or-renew: an
 * upsert whose update applies only when the row is this holder's or has expired. Two
 * replicas racing for a free lease are serialised by the primary key (the second
 * insert waits for the first, then re-checks the condition against the row the first
 * wrote), so at most one gets it. Time is the server's `clock_timestamp()`: replicas
 * never compare their own clocks, which may drift apart.
 */
import type { LeaseRecord, LeaseRepository } from '../store.js';
import { leaseFromRow, requireLeaseHolder, requireLeaseName, requireLeaseTtl } from '../lease-validation.js';
import type { PgRunner } from './postgres-session.js';

/** The server's clock as the canonical ISO-8601 UTC text every stored timestamp uses. */
const ISO = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`;
const TAKE = `
WITH now AS (SELECT clock_timestamp() AT TIME ZONE 'UTC' AS at)
INSERT INTO leases (name, holder, acquired_at, expires_at)
SELECT $1, $2, to_char(at, ${ISO}), to_char(at + $3::integer * interval '1 millisecond', ${ISO}) FROM now
ON CONFLICT (name) DO UPDATE SET
  holder = excluded.holder,
  expires_at = excluded.expires_at,
  acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END
WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at
RETURNING holder`;

export class PostgresLeaseRepository implements LeaseRepository {
  readonly #run: PgRunner;

  constructor(run: PgRunner) {
    this.#run = run;
  }

  tryAcquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.#run('taking a lease', async (db) => {
      const args = [requireLeaseName(name), requireLeaseHolder(holder), requireLeaseTtl(ttlMs)];
      return (await db.query(TAKE, args)).rowCount > 0;
    });
  }

  release(name: string, holder: string): Promise<boolean> {
    return this.#run('releasing a lease', async (db) => {
      const args = [requireLeaseName(name), requireLeaseHolder(holder)];
      return (await db.query('DELETE FROM leases WHERE name = $1 AND holder = $2', args)).rowCount > 0;
    });
  }

  get(name: string): Promise<LeaseRecord | null> {
    return this.#run(
      'reading a lease',
      async (db) => {
        const row = (await db.query('SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = $1', [requireLeaseName(name)])).rows[0];
        return row === undefined ? null : leaseFromRow(row);
      },
      'read',
    );
  }
}
