/**
 * Officers as the service handles them: the governance snapshot storage holds (for the
 * pure core, proposals.ts), the sealing of their TOTP secrets by the HSM, and adding an
 * enrolled officer (what `signet init` does for its development officers).
 *
 * A TOTP secret is sealed with the officer's name as the additional authenticated data
 * (signer/secret-sealing.ts), so a sealed value copied to another officer's row does
 * not unseal. Plain secrets live only in memory for the length of one check.
 */
import type { FreezeRecord, GovernanceRepository, StoredOfficer, StoreTransaction } from '../store/store.js';
import type { HsmSecretSealer } from '../signer/types.js';
import type { FreezeState, ProjectFreeze } from './freeze.js';
import { governanceEntry } from './log-entries.js';
import { DEFAULT_QUORUM_POLICY, type Governance } from './proposals.js';

/** The sealing context (AAD) of an officer's TOTP secret. */
export function totpSealingContext(officer: string): string {
  return `signet:officer-totp:${officer}`;
}

export interface GovernanceSnapshot {
  readonly governance: Governance;
  /** The same officers, with what only storage and the service need. */
  readonly officers: readonly StoredOfficer[];
}

export function freezeStateOf(freezes: readonly FreezeRecord[]): FreezeState {
  const global = freezes.find((f) => f.project === null);
  const projects: ProjectFreeze[] = freezes
    .filter((f): f is FreezeRecord & { project: string } => f.project !== null)
    .map((f) => ({ project: f.project, proposalId: f.proposalId, by: f.by, at: f.at }))
    .sort((a, b) => (a.project < b.project ? -1 : a.project > b.project ? 1 : 0));
  return { global: global === undefined ? null : { proposalId: global.proposalId, by: global.by, at: global.at }, projects };
}

/** Everything quorum decisions depend on, read from storage (inside a transaction: as of it). */
export async function loadGovernance(repository: GovernanceRepository): Promise<GovernanceSnapshot> {
  const [officers, revoked, settings, freezes] = await Promise.all([
    repository.listOfficers(),
    repository.listRevokedCertificates(),
    repository.settings(),
    repository.listFreezes(),
  ]);
  return {
    officers,
    governance: {
      officers,
      revokedCertificates: revoked.map((r) => r.certificateSha256).sort(),
      quorum: settings.quorum ?? DEFAULT_QUORUM_POLICY,
      freeze: freezeStateOf(freezes),
      policySha256: settings.policySha256,
    },
  };
}

/**
 * Records a new officer whose TOTP secret is already known (development set-up): the
 * secret is sealed by the HSM first, then the officer and its log entry are written in
 * one transaction.
 */
export async function addEnrolledOfficer(
  store: { transaction<T>(work: (tx: StoreTransaction) => Promise<T>): Promise<T> },
  sealer: HsmSecretSealer,
  input: {
    readonly name: string;
    readonly certificatePem: string;
    readonly certificateSha256: string;
    readonly totpSecret: Uint8Array;
    readonly now: Date;
  },
): Promise<StoredOfficer> {
  const sealed = await sealer.seal(input.totpSecret, totpSealingContext(input.name));
  const time = input.now.toISOString();
  const officer: StoredOfficer = {
    name: input.name,
    certificateSha256: input.certificateSha256,
    certificatePem: input.certificatePem,
    status: 'active',
    sealedTotpSecret: sealed,
    lastTotpStep: null,
    failedTotpCount: 0,
    failedTotpWindowStart: null,
    addedAt: time,
    removedAt: null,
  };
  await store.transaction(async (tx) => {
    await tx.governance.insertOfficer(officer);
    await tx.log.append([
      governanceEntry({ event: 'officer-added', officer: input.name, certificateSha256: input.certificateSha256, proposalId: null, time }, input.now),
      governanceEntry({ event: 'officer-enrolled', officer: input.name, time }, input.now),
    ]);
  });
  return officer;
}
