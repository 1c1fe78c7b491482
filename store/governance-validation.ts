/**
 * Validation of the governance records (store.ts, `GovernanceRepository`), shared by
 * every storage backend, in both directions as in validation.ts: a bad value from a
 * caller is a TypeError before anything is written; a stored row that does not describe
 * a valid record is STORE_CORRUPT. Problems name fields, never values (a sealed secret
 * could be among them).
 *
 * A proposal is stored as the canonical document officers approve
 * (keyrotation/proposals.ts, `proposalDocument`) next to its recorded hash. Reading it
 * back parses the document but does not re-check the hash: that is the core's job
 * (`proposalIntact`), which reports a changed document as PROPOSAL_TAMPERED.
 */
import { createHash } from 'node:crypto';
import {
  PROPOSAL_ACTIONS,
  proposalActionSchema,
  proposalDocument,
  quorumPolicySchema,
  SYSTEM_PROPOSER,
  type ApprovalRecord,
  type ProposalContent,
  type ProposalRecord,
  type ProposalStatus,
  type QuorumPolicy,
} from '../keyrotation/proposals.js';
import { StoreError } from './errors.js';
import type { FreezeRecord, GovernanceSettingsRecord, RevokedCertificateRecord, StoredOfficer, TotpUse } from './store.js';
import { canonicalTimestamp } from './validation.js';

export const OFFICER_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const PROJECT_NAME = OFFICER_NAME;
export const PROPOSAL_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const CERTIFICATE_PEM = /^-----BEGIN CERTIFICATE-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n)+-----END CERTIFICATE-----\r?\n?$/;
const SEALED = /^signet-sealed:v[0-9]+:[A-Za-z0-9:_-]{1,2000}$/;
const MAX_PEM_LENGTH = 32_768;
const MAX_DOCUMENT_LENGTH = 65_536;
const MAX_REASON_LENGTH = 1000;
export const MAX_PROPOSAL_PAGE = 1000;
/** The scope column's value for "everything". */
export const GLOBAL_SCOPE = '*';

type Candidate<T> = { readonly [K in keyof T]: unknown };
type Reject = (problems: string[]) => never;

const typeError =
  (what: string): Reject =>
  (problems) => {
    throw new TypeError(`invalid ${what}: bad ${problems.join(', ')}`);
  };
const corrupt =
  (what: string): Reject =>
  (problems) => {
    throw new StoreError('STORE_CORRUPT', `a stored ${what} has invalid ${problems.join(', ')}`);
  };

function rowRecord(table: string, row: unknown): Record<string, unknown> {
  if (typeof row !== 'object' || row === null) throw new StoreError('STORE_CORRUPT', `${table} returned a row that is not a record`);
  return row as Record<string, unknown>;
}

function isStep(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isSha256(value: unknown): value is string {
  return typeof value === 'string' && SHA256_HEX.test(value);
}

/** `canonicalTimestamp`, and exactly that spelling (what Date#toISOString writes). */
function exactTimestamp(value: unknown): string | null {
  const canonical = canonicalTimestamp(value);
  return canonical !== null && canonical === value ? canonical : null;
}

export function requireOfficerName(value: unknown): string {
  if (typeof value !== 'string' || !OFFICER_NAME.test(value)) throw new TypeError('invalid officer name');
  return value;
}

export function requireProposalId(value: unknown): string {
  if (typeof value !== 'string' || !PROPOSAL_ID.test(value)) throw new TypeError('invalid proposal id');
  return value;
}

export function requireSha256(field: string, value: unknown): string {
  if (!isSha256(value)) throw new TypeError(`invalid ${field}: expected 64 lower-case hex digits`);
  return value;
}

export function requireSealedSecret(value: unknown): string {
  if (typeof value !== 'string' || !SEALED.test(value)) throw new TypeError('invalid sealed secret');
  return value;
}

export function requireStep(field: string, value: unknown): number {
  if (!isStep(value)) throw new TypeError(`invalid ${field}: expected a non-negative integer`);
  return value;
}

// ---------------------------------------------------------------------------------
// Officers

function parseOfficer(candidate: Candidate<StoredOfficer>, reject: Reject): StoredOfficer {
  const problems: string[] = [];
  const { name, certificateSha256, certificatePem, status, sealedTotpSecret, lastTotpStep, failedTotpCount } = candidate;
  if (typeof name !== 'string' || !OFFICER_NAME.test(name)) problems.push('name');
  if (!isSha256(certificateSha256)) problems.push('certificateSha256');
  if (certificatePem !== null && (typeof certificatePem !== 'string' || certificatePem.length > MAX_PEM_LENGTH || !CERTIFICATE_PEM.test(certificatePem))) {
    problems.push('certificatePem');
  }
  if (status !== 'active' && status !== 'removed') problems.push('status');
  if (sealedTotpSecret !== null && (typeof sealedTotpSecret !== 'string' || !SEALED.test(sealedTotpSecret))) problems.push('sealedTotpSecret');
  if (lastTotpStep !== null && !isStep(lastTotpStep)) problems.push('lastTotpStep');
  if (!isStep(failedTotpCount)) problems.push('failedTotpCount');
  const windowStart = candidate.failedTotpWindowStart === null ? null : canonicalTimestamp(candidate.failedTotpWindowStart);
  if (candidate.failedTotpWindowStart !== null && windowStart === null) problems.push('failedTotpWindowStart');
  const addedAt = canonicalTimestamp(candidate.addedAt);
  if (addedAt === null) problems.push('addedAt');
  const removedAt = candidate.removedAt === null ? null : canonicalTimestamp(candidate.removedAt);
  if ((status === 'removed') !== (removedAt !== null) || (candidate.removedAt !== null && removedAt === null)) problems.push('removedAt');
  if (problems.length > 0) return reject(problems);
  return Object.freeze({
    name: name as string,
    certificateSha256: certificateSha256 as string,
    certificatePem: certificatePem as string | null,
    status: status as 'active' | 'removed',
    sealedTotpSecret: sealedTotpSecret as string | null,
    lastTotpStep: lastTotpStep as number | null,
    failedTotpCount: failedTotpCount as number,
    failedTotpWindowStart: windowStart,
    addedAt: addedAt as string,
    removedAt,
  });
}

export function requireStoredOfficer(candidate: StoredOfficer): StoredOfficer {
  return parseOfficer(candidate, typeError('officer record'));
}

export function officerFromRow(row: unknown): StoredOfficer {
  const r = rowRecord('officers', row);
  return parseOfficer(
    {
      name: r.name,
      certificateSha256: r.certificate_sha256,
      certificatePem: r.certificate_pem,
      status: r.status,
      sealedTotpSecret: r.sealed_totp_secret,
      lastTotpStep: r.last_totp_step,
      failedTotpCount: r.failed_totp_count,
      failedTotpWindowStart: r.failed_totp_window_start,
      addedAt: r.added_at,
      removedAt: r.removed_at,
    },
    corrupt('officer'),
  );
}

export function requireTotpUse(candidate: TotpUse): TotpUse {
  const problems: string[] = [];
  const value: unknown = candidate;
  const c = (typeof value === 'object' && value !== null ? value : {}) as Partial<Record<keyof TotpUse, unknown>>;
  if (typeof c.officer !== 'string' || !OFFICER_NAME.test(c.officer)) problems.push('officer');
  if (!isSha256(c.certificateSha256)) problems.push('certificateSha256');
  if (c.expectedLastStep !== null && !isStep(c.expectedLastStep)) problems.push('expectedLastStep');
  if (!isStep(c.step) || (isStep(c.expectedLastStep) && c.step <= c.expectedLastStep)) problems.push('step');
  if (problems.length > 0) return typeError('TOTP use')(problems);
  return candidate;
}

// ---------------------------------------------------------------------------------
// Proposals and approvals

/** What the proposals table holds of a proposal. */
export interface ProposalRow {
  readonly id: string;
  readonly hash: string;
  readonly document: string;
  readonly action: string;
  readonly proposer: string;
  readonly createdAt: string;
  readonly expiresAt: string;
}

/** A new proposal: open, no approvals, its hash the SHA-256 of its document. TypeError otherwise. */
export function requireNewProposal(proposal: ProposalRecord): ProposalRow {
  const value: unknown = proposal;
  if (typeof value !== 'object' || value === null) throw new TypeError('invalid proposal record');
  const problems: string[] = [];
  if (proposal.status !== 'open' || proposal.closedAt !== null) problems.push('status (a new proposal is open)');
  if (!Array.isArray(proposal.approvals) || proposal.approvals.length > 0) problems.push('approvals (a new proposal has none)');
  let document: string | undefined;
  let content: ProposalContent | undefined;
  try {
    content = parseContent(proposal.content);
    document = proposalDocument(content);
  } catch {
    problems.push('content');
  }
  if (document !== undefined && (document.length > MAX_DOCUMENT_LENGTH || createHash('sha256').update(document, 'utf8').digest('hex') !== proposal.hash)) {
    problems.push('hash (not the SHA-256 of the content)');
  }
  if (problems.length > 0 || content === undefined || document === undefined) return typeError('proposal record')(problems);
  return {
    id: content.id,
    hash: proposal.hash,
    document,
    action: content.action.type,
    proposer: content.proposer,
    createdAt: content.createdAt,
    expiresAt: content.expiresAt,
  };
}

/** The content's fields, checked; throws (any error) when one is bad. */
function parseContent(value: unknown): ProposalContent {
  if (typeof value !== 'object' || value === null) throw new TypeError('content');
  const c = value as Record<string, unknown>;
  const action = proposalActionSchema.safeParse(c.action);
  const createdAt = exactTimestamp(c.createdAt);
  const expiresAt = exactTimestamp(c.expiresAt);
  const proposerOk = typeof c.proposer === 'string' && (c.proposer === SYSTEM_PROPOSER || OFFICER_NAME.test(c.proposer));
  if (
    typeof c.id !== 'string' ||
    !PROPOSAL_ID.test(c.id) ||
    !action.success ||
    !proposerOk ||
    typeof c.reason !== 'string' ||
    c.reason.length > MAX_REASON_LENGTH ||
    createdAt === null ||
    expiresAt === null
  ) {
    throw new TypeError('content');
  }
  return { id: c.id, action: action.data, proposer: c.proposer as string, reason: c.reason, createdAt, expiresAt };
}

export function proposalFromRows(row: unknown, approvalRows: readonly unknown[]): ProposalRecord {
  const r = rowRecord('proposals', row);
  const problems: string[] = [];
  let content: ProposalContent | undefined;
  try {
    if (typeof r.document !== 'string') throw new TypeError('document');
    const document = JSON.parse(r.document) as { apiVersion?: unknown; kind?: unknown; spec?: unknown };
    if (document.apiVersion !== 'signet.dev/v1' || document.kind !== 'Proposal') throw new TypeError('document');
    content = parseContent(document.spec);
  } catch {
    problems.push('document');
  }
  if (content !== undefined && content.id !== r.id) problems.push('id');
  if (!isSha256(r.hash)) problems.push('hash');
  const status = r.status;
  if (status !== 'open' && status !== 'executed' && status !== 'withdrawn') problems.push('status');
  const closedAt = r.closed_at === null ? null : canonicalTimestamp(r.closed_at);
  if ((status === 'open') !== (closedAt === null) || (r.closed_at !== null && closedAt === null)) problems.push('closedAt');
  if (problems.length > 0 || content === undefined) return corrupt('proposal')(problems);
  const approvals = approvalRows.map(approvalFromRow);
  return Object.freeze({
    content: Object.freeze(content),
    hash: r.hash as string,
    status: status as ProposalStatus,
    approvals: Object.freeze(approvals),
    closedAt,
  });
}

function parseApproval(candidate: Candidate<ApprovalRecord>, reject: Reject): ApprovalRecord {
  const problems: string[] = [];
  if (typeof candidate.officer !== 'string' || !OFFICER_NAME.test(candidate.officer)) problems.push('officer');
  if (!isSha256(candidate.certificateSha256)) problems.push('certificateSha256');
  if (!isSha256(candidate.proposalHash)) problems.push('proposalHash');
  if (!isStep(candidate.totpStep)) problems.push('totpStep');
  const approvedAt = canonicalTimestamp(candidate.approvedAt);
  if (approvedAt === null) problems.push('approvedAt');
  if (problems.length > 0) return reject(problems);
  return Object.freeze({
    officer: candidate.officer as string,
    certificateSha256: candidate.certificateSha256 as string,
    proposalHash: candidate.proposalHash as string,
    totpStep: candidate.totpStep as number,
    approvedAt: approvedAt as string,
  });
}

export function requireApproval(candidate: ApprovalRecord): ApprovalRecord {
  const value: unknown = candidate;
  if (typeof value !== 'object' || value === null) throw new TypeError('invalid approval record');
  return parseApproval(candidate, typeError('approval record'));
}

export function approvalFromRow(row: unknown): ApprovalRecord {
  const r = rowRecord('proposal_approvals', row);
  return parseApproval(
    { officer: r.officer, certificateSha256: r.certificate_sha256, proposalHash: r.proposal_hash, totpStep: r.totp_step, approvedAt: r.approved_at },
    corrupt('approval'),
  );
}

export function requireProposalFilter(filter: { readonly status?: ProposalStatus; readonly limit?: number } | undefined): {
  status: ProposalStatus | null;
  limit: number;
} {
  const status: unknown = filter?.status;
  const limit: unknown = filter?.limit ?? 100;
  if (status !== undefined && status !== 'open' && status !== 'executed' && status !== 'withdrawn') throw new TypeError('invalid proposal status');
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PROPOSAL_PAGE) {
    throw new TypeError(`invalid limit: 1 to ${MAX_PROPOSAL_PAGE}`);
  }
  return { status: status ?? null, limit };
}

export function requireCloseStatus(value: unknown): 'executed' | 'withdrawn' {
  if (value !== 'executed' && value !== 'withdrawn') throw new TypeError('invalid closing status');
  return value;
}

export function isProposalAction(value: unknown): boolean {
  return typeof value === 'string' && (PROPOSAL_ACTIONS as readonly string[]).includes(value);
}

// ---------------------------------------------------------------------------------
// Revoked certificates, freezes, settings

function parseRevoked(candidate: Candidate<RevokedCertificateRecord>, reject: Reject): RevokedCertificateRecord {
  const problems: string[] = [];
  if (!isSha256(candidate.certificateSha256)) problems.push('certificateSha256');
  if (typeof candidate.proposalId !== 'string' || !PROPOSAL_ID.test(candidate.proposalId)) problems.push('proposalId');
  const revokedAt = canonicalTimestamp(candidate.revokedAt);
  if (revokedAt === null) problems.push('revokedAt');
  if (problems.length > 0) return reject(problems);
  return Object.freeze({ certificateSha256: candidate.certificateSha256 as string, proposalId: candidate.proposalId as string, revokedAt: revokedAt as string });
}

export function requireRevokedCertificate(candidate: RevokedCertificateRecord): RevokedCertificateRecord {
  const value: unknown = candidate;
  if (typeof value !== 'object' || value === null) throw new TypeError('invalid revocation record');
  return parseRevoked(candidate, typeError('revoked certificate record'));
}

export function revokedCertificateFromRow(row: unknown): RevokedCertificateRecord {
  const r = rowRecord('revoked_client_certificates', row);
  return parseRevoked({ certificateSha256: r.certificate_sha256, proposalId: r.proposal_id, revokedAt: r.revoked_at }, corrupt('revoked certificate'));
}

function parseFreeze(candidate: Candidate<FreezeRecord>, reject: Reject): FreezeRecord {
  const problems: string[] = [];
  const { project } = candidate;
  if (project !== null && (typeof project !== 'string' || !PROJECT_NAME.test(project))) problems.push('project');
  if (typeof candidate.proposalId !== 'string' || !PROPOSAL_ID.test(candidate.proposalId)) problems.push('proposalId');
  if (typeof candidate.by !== 'string' || candidate.by === '' || candidate.by.length > 128) problems.push('by');
  const at = canonicalTimestamp(candidate.at);
  if (at === null) problems.push('at');
  if (problems.length > 0) return reject(problems);
  return Object.freeze({ project: project as string | null, proposalId: candidate.proposalId as string, by: candidate.by as string, at: at as string });
}

export function requireFreeze(candidate: FreezeRecord): FreezeRecord {
  const value: unknown = candidate;
  if (typeof value !== 'object' || value === null) throw new TypeError('invalid freeze record');
  return parseFreeze(candidate, typeError('freeze record'));
}

export function requireScope(project: unknown): string {
  if (project === null) return GLOBAL_SCOPE;
  if (typeof project !== 'string' || !PROJECT_NAME.test(project)) throw new TypeError('invalid project name');
  return project;
}

export function freezeFromRow(row: unknown): FreezeRecord {
  const r = rowRecord('signing_freezes', row);
  const scope = r.scope;
  return parseFreeze(
    { project: scope === GLOBAL_SCOPE ? null : scope, proposalId: r.proposal_id, by: r.frozen_by, at: r.frozen_at },
    corrupt('freeze'),
  );
}

export function requireQuorum(value: QuorumPolicy): string {
  const parsed = quorumPolicySchema.safeParse(value);
  if (!parsed.success) throw new TypeError('invalid quorum policy');
  return JSON.stringify(parsed.data);
}

export function settingsFromRow(row: unknown): GovernanceSettingsRecord {
  if (row === undefined || row === null) return { quorum: null, policySha256: null };
  const r = rowRecord('governance_settings', row);
  const problems: string[] = [];
  let quorum: QuorumPolicy | null = null;
  if (r.quorum !== null) {
    try {
      const parsed = quorumPolicySchema.safeParse(typeof r.quorum === 'string' ? JSON.parse(r.quorum) : undefined);
      if (parsed.success) quorum = parsed.data;
      else problems.push('quorum');
    } catch {
      problems.push('quorum');
    }
  }
  if (r.policy_sha256 !== null && !isSha256(r.policy_sha256)) problems.push('policySha256');
  if (problems.length > 0) return corrupt('governance setting')(problems);
  return Object.freeze({ quorum, policySha256: r.policy_sha256 as string | null });
}
