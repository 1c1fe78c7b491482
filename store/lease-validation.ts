/**
 * Validation of leases (store.ts, `LeaseRepository`), shared by both backends as in
 * validation.ts: a bad argument is a caller's bug (TypeError, nothing written); a
 * stored row that does not describe a lease is STORE_CORRUPT. Problems name fields,
 * never values.
 */
import { StoreError } from './errors.js';
import type { LeaseRecord } from './store.js';
import { canonicalTimestamp } from './validation.js';

/** Lease names: what the migration's CHECK allows. */
const LEASE_NAME = /^[a-z0-9._:-]{1,64}$/;
/** A holder names a replica (host, process, a random part): printable ASCII. */
const HOLDER = /^[\x21-\x7e]{1,200}$/;
/** Longest lease: a week. A duty renews its lease every round, well within it. */
export const MAX_LEASE_MS = 7 * 86_400_000;

export function requireLeaseName(name: unknown): string {
  if (typeof name !== 'string' || !LEASE_NAME.test(name)) throw new TypeError('lease name must be 1 to 64 of a-z, 0-9, ".", "_", ":", "-"');
  return name;
}

export function requireLeaseHolder(holder: unknown): string {
  if (typeof holder !== 'string' || !HOLDER.test(holder)) throw new TypeError('lease holder must be 1 to 200 printable ASCII characters');
  return holder;
}

export function requireLeaseTtl(ttlMs: unknown): number {
  if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_LEASE_MS) {
    throw new TypeError(`lease ttlMs must be an integer from 1 to ${MAX_LEASE_MS}`);
  }
  return ttlMs;
}

/** A `leases` row → its record; STORE_CORRUPT unless every field is valid. */
export function leaseFromRow(row: unknown): LeaseRecord {
  if (typeof row !== 'object' || row === null) throw new StoreError('STORE_CORRUPT', 'leases returned a row that is not a record');
  const { name, holder, acquired_at: acquiredAt, expires_at: expiresAt } = row as Record<string, unknown>;
  const problems: string[] = [];
  if (typeof name !== 'string' || !LEASE_NAME.test(name)) problems.push('name');
  if (typeof holder !== 'string' || !HOLDER.test(holder)) problems.push('holder');
  const acquired = canonicalTimestamp(acquiredAt);
  const expires = canonicalTimestamp(expiresAt);
  if (acquired === null || acquired !== acquiredAt) problems.push('acquired_at');
  if (expires === null || expires !== expiresAt) problems.push('expires_at');
  if (problems.length > 0 || acquired === null || expires === null) {
    throw new StoreError('STORE_CORRUPT', `a stored lease has invalid ${problems.join(', ')}`);
  }
  return Object.freeze({ name: name as string, holder: holder as string, acquiredAt: acquired, expiresAt: expires });
}
