/**
 * What key rotation and the officers record in the transparency log, canonical JSON
 * like log/entries.ts, kind `signet.governance/v1`. Each entry is written in the same
 * storage transaction as the change it describes, so neither exists without the other:
 *
 * - `officer-added`: an officer and the SHA-256 of their client certificate (by
 *   `signet init`, or an executed add-officer proposal);
 * - `officer-enrolled`: an officer's TOTP secret was set (the secret is never logged);
 * - `proposed`: the whole proposal document, whose SHA-256 officers approve;
 * - `approved`: one officer's approval of that hash, and the quorum count after it;
 * - `execution-started`, `key-generated`: the steps of a rotation before its commit,
 *   so that after a crash the log tells how far it went;
 * - `executed`: the proposal carried out, with the key versions it changed;
 * - `execution-failed`: why an execution stopped (the proposal stays open);
 * - `execution-interrupted`: an execution whose process died between its steps (it
 *   neither committed nor recorded a failure), found by whoever took its lease over
 *   (execution-lease.ts), with what storage held then: the version still active, the
 *   pending version left and whether it has a certificate (the proposal stays open);
 * - `key-age`: a signing key near or past its project's maximum age.
 *
 * Never in an entry: TOTP codes or secrets, sealed secrets, HSM object ids.
 */
import { canonicalBytes, type CanonicalValue } from '../log/canonical-json.js';
import type { LogEntryInput } from '../store/store.js';
import type { ProposalRecord } from './proposals.js';

export const GOVERNANCE_KIND = 'signet.governance/v1';

export interface KeyVersionChange {
  readonly keyId: string;
  readonly state: string;
  readonly notBefore: string;
  readonly notAfter: string | null;
  readonly compromisedAt: string | null;
}

export type GovernanceEvent =
  | { readonly event: 'officer-added'; readonly officer: string; readonly certificateSha256: string; readonly proposalId: string | null; readonly time: string }
  | { readonly event: 'officer-enrolled'; readonly officer: string; readonly time: string }
  | { readonly event: 'proposed'; readonly proposalId: string; readonly proposalHash: string; readonly document: CanonicalValue; readonly time: string }
  | {
      readonly event: 'approved';
      readonly proposalId: string;
      readonly proposalHash: string;
      readonly officer: string;
      readonly certificateSha256: string;
      readonly quorum: { readonly required: number; readonly counted: readonly string[] };
      readonly time: string;
    }
  | { readonly event: 'execution-started'; readonly proposalId: string; readonly action: string; readonly by: string; readonly time: string }
  | {
      readonly event: 'key-generated';
      readonly proposalId: string;
      readonly keyId: string;
      readonly algorithm: string;
      readonly publicKeyPem: string;
      readonly time: string;
    }
  | {
      readonly event: 'executed';
      readonly proposalId: string;
      readonly proposalHash: string;
      readonly action: string;
      readonly by: string;
      readonly approvals: readonly string[];
      readonly keys: readonly KeyVersionChange[];
      readonly time: string;
    }
  | { readonly event: 'execution-failed'; readonly proposalId: string; readonly code: string; readonly time: string }
  | {
      readonly event: 'execution-interrupted';
      readonly proposalId: string;
      readonly action: string;
      /** When the interrupted execution took the proposal's execution lease (storage's clock). */
      readonly startedAt: string;
      readonly found: { readonly activeKeyId: string | null; readonly pendingKeyId: string | null; readonly pendingCertificate: boolean };
      readonly time: string;
    }
  | {
      readonly event: 'key-age';
      readonly keyId: string;
      readonly projects: readonly string[];
      readonly activeSince: string;
      readonly maxKeyAgeDays: number;
      readonly daysLeft: number;
      readonly time: string;
    };

export function governanceLeaf(event: GovernanceEvent): Buffer {
  return canonicalBytes({ apiVersion: 'signet.dev/v1', kind: 'GovernanceEvent', spec: JSON.parse(JSON.stringify(event)) as CanonicalValue });
}

/** The entry for one event, integrated at `now` (whole seconds, the log's resolution). */
export function governanceEntry(event: GovernanceEvent, now: Date): LogEntryInput {
  return { kind: GOVERNANCE_KIND, leaf: governanceLeaf(event), integratedTime: Math.floor(now.getTime() / 1000), linkedIndex: null };
}

/** The proposal document as a JSON value for the `proposed` entry (the same bytes officers hash). */
export function proposalDocumentValue(document: string): CanonicalValue {
  return JSON.parse(document) as CanonicalValue;
}

export function proposedEvent(proposal: ProposalRecord, document: string): GovernanceEvent {
  return { event: 'proposed', proposalId: proposal.content.id, proposalHash: proposal.hash, document: proposalDocumentValue(document), time: proposal.content.createdAt };
}
