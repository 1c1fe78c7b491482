/**
 * `LeaseRepository` on SQLite. One statement does the whole take-or-renew: an upsert
 * whose update applies only when the row is this holder's or has expired, so two
 * processes on one file never both get a lease (SQLite runs one writer at a time).
 * Time is this machine's clock: every process on one SQLite file shares it.
 */
import type { LeaseRecord, LeaseRepository } from '../store.js';
import { leaseFromRow, requireLeaseHolder, requireLeaseName, requireLeaseTtl } from '../lease-validation.js';
import type { Runner, SqliteAccess } from './sqlite-support.js';

const TAKE = `
INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
  holder = excluded.holder,
  expires_at = excluded.expires_at,
  acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END
WHERE leases.holder = excluded.holder OR leases.expires_at <= excluded.acquired_at
RETURNING holder`;

export class SqliteLeaseRepository implements LeaseRepository {
  readonly #operations: SqliteLeaseOperations;
  readonly #run: Runner;

  constructor(operations: SqliteLeaseOperations, run: Runner) {
    this.#operations = operations;
    this.#run = run;
  }

  tryAcquire(name: string, holder: string, ttlMs: number): Promise<boolean> {
    return this.#run('taking a lease', () => this.#operations.tryAcquire(name, holder, ttlMs));
  }

  release(name: string, holder: string): Promise<boolean> {
    return this.#run('releasing a lease', () => this.#operations.release(name, holder));
  }

  get(name: string): Promise<LeaseRecord | null> {
    return this.#run('reading a lease', () => this.#operations.get(name), 'read');
  }
}

/** The synchronous SQL behind `LeaseRepository`. */
export class SqliteLeaseOperations {
  readonly #access: SqliteAccess;

  constructor(access: SqliteAccess) {
    this.#access = access;
  }

  tryAcquire(nameArg: string, holderArg: string, ttlArg: number): boolean {
    const name = requireLeaseName(nameArg);
    const holder = requireLeaseHolder(holderArg);
    const ttlMs = requireLeaseTtl(ttlArg);
    const now = Date.now();
    const row: unknown = this.#access
      .statement(TAKE)
      .get(name, holder, new Date(now).toISOString(), new Date(now + ttlMs).toISOString());
    return row !== undefined;
  }

  release(nameArg: string, holderArg: string): boolean {
    const name = requireLeaseName(nameArg);
    const holder = requireLeaseHolder(holderArg);
    return this.#access.statement('DELETE FROM leases WHERE name = ? AND holder = ?').run(name, holder).changes > 0;
  }

  get(nameArg: string): LeaseRecord | null {
    const name = requireLeaseName(nameArg);
    const row: unknown = this.#access.statement('SELECT name, holder, acquired_at, expires_at FROM leases WHERE name = ?').get(name);
    return row === undefined ? null : leaseFromRow(row);
  }
}
