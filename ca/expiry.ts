/**
 * Expiry watch: which certificates in use expire within a window. `findExpiringCertificates`
 * is pure; `listExpiringCertificates` reads storage and is what /readyz, the metrics and
 * the periodic warnings (ca/duties.ts) call.
 *
 * "In use" means: the active root and intermediate, and the current certificate
 * (`currentLeaf`) of every key version that may still sign or is about to
 * (`pending`, `active`, `verify-only`). A renewed leaf replaces the old one, so an old
 * leaf running out is no longer a warning; retired and compromised keys need none.
 */
import type { CaCertificateRecord, KeyState, KeyVersionRecord, LeafCertificateRecord, RevocationRecord, SignetStore } from '../store/store.js';
import { currentLeaf } from './trust-bundle.js';

export interface ExpiringCertificate {
  readonly role: 'root' | 'intermediate' | 'leaf';
  /** The CA id, or the key version id for a leaf. */
  readonly id: string;
  readonly serialNumber: string;
  readonly keyId: string | null;
  readonly notAfter: string;
  /** Whole days left, rounded down; negative once expired. */
  readonly daysLeft: number;
  readonly expired: boolean;
}

const DAY_MS = 86_400_000;
const WATCHED_KEY_STATES: ReadonlySet<KeyState> = new Set<KeyState>(['pending', 'active', 'verify-only']);

export interface ExpiryInput {
  readonly cas: readonly CaCertificateRecord[];
  readonly leaves: readonly LeafCertificateRecord[];
  readonly revocations: readonly RevocationRecord[];
  readonly keys: readonly KeyVersionRecord[];
}

/** Certificates in use whose notAfter is within `windowDays` of `now` (or past), soonest first. */
export function findExpiringCertificates(input: ExpiryInput, now: Date, windowDays: number): ExpiringCertificate[] {
  const limit = now.getTime() + windowDays * DAY_MS;
  const describe = (role: ExpiringCertificate['role'], id: string, serialNumber: string, keyId: string | null, notAfter: string): ExpiringCertificate => {
    const left = Date.parse(notAfter) - now.getTime();
    return { role, id, serialNumber, keyId, notAfter, daysLeft: Math.floor(left / DAY_MS), expired: left < 0 };
  };
  const found: ExpiringCertificate[] = [];
  for (const ca of input.cas) {
    if (ca.status === 'active' && Date.parse(ca.notAfter) <= limit) found.push(describe(ca.role, ca.caId, ca.serialNumber, null, ca.notAfter));
  }
  const revoked = new Set(input.revocations.map((r) => r.serialNumber));
  for (const key of input.keys) {
    if (!WATCHED_KEY_STATES.has(key.state)) continue;
    const leaf = currentLeaf(
      input.leaves.filter((l) => l.keyId === key.keyId),
      revoked,
      now,
    );
    if (leaf !== null && Date.parse(leaf.notAfter) <= limit) found.push(describe('leaf', key.keyId, leaf.serialNumber, key.keyId, leaf.notAfter));
  }
  return found.sort((a, b) => Date.parse(a.notAfter) - Date.parse(b.notAfter) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** `findExpiringCertificates` over what storage holds now. For /readyz, metrics and warnings. */
export async function listExpiringCertificates(
  store: Pick<SignetStore, 'certificates' | 'keys'>,
  options: { readonly now: Date; readonly windowDays: number },
): Promise<ExpiringCertificate[]> {
  const [cas, leaves, revocations, keys] = await Promise.all([
    store.certificates.listCas(),
    store.certificates.listLeaves(),
    store.certificates.listRevocations(),
    store.keys.list(),
  ]);
  return findExpiringCertificates({ cas, leaves, revocations, keys }, options.now, options.windowDays);
}
