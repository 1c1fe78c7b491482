/**
 * Proposals, approvals and quorum, pure: plain records in, plain records or typed
 * refusals out. Storage and the HTTP layer are thin adapters around these functions:
 * they load the records, resolve the officer from the client certificate and unseal
 * that officer's TOTP secret, call the reducer, and write back what it returns (in one
 * transaction, with the log entry).
 *
 * - A proposal is bound to the SHA-256 of the canonical JSON (RFC 8785) of its content:
 *   officers approve that hash, so an approval cannot be moved to other content, and a
 *   stored proposal whose content no longer hashes to its hash is refused as tampered.
 * - It expires (default 24 h) and needs M approvals from distinct officers, M per action
 *   (default 2; revocations may be configured lower; a freeze always needs exactly one,
 *   its proposer's own). Each approval needs the officer's certificate and a fresh TOTP
 *   code whose time step is after the last step that officer used.
 * - Approvals are re-counted against the current officers whenever the quorum is
 *   evaluated: a removed officer, or a revoked or replaced certificate, stops counting.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '../log/canonical-json.js';
import { KEY_ALGORITHMS, type KeyAlgorithm } from '../signer/algorithms.js';
import type { KeyVersionRecord } from '../store/store.js';
import {
  refuse,
  RotationError,
  type ApprovalRefusalCode,
  type ExecutionRefusalCode,
  type Refusal,
} from './errors.js';
import { applyFreeze, applyUnfreeze, isScopeFrozen, NOT_FROZEN, type FreezeState } from './freeze.js';
import { parseKeyReference } from './key-id.js';
import { planRotation, transition } from './lifecycle.js';
import { checkTotpCode } from './totp.js';

export const PROPOSAL_ACTIONS = [
  'rotate-key',
  'retire-key',
  /** Revocation of a key version: it is compromised from a given time on. */
  'compromise-key',
  /** Revocation of an officer's or a CI client's certificate. */
  'revoke-certificate',
  'add-officer',
  'remove-officer',
  'set-quorum',
  'set-policy',
  'freeze',
  'unfreeze',
] as const;
export type ProposalActionType = (typeof PROPOSAL_ACTIONS)[number];

/** The proposer of proposals the service opens by itself (scheduled rotation). Not a valid officer name. */
export const SYSTEM_PROPOSER = 'signet:scheduler';

export const DEFAULT_PROPOSAL_TTL_SECONDS = 24 * 60 * 60;
const MIN_PROPOSAL_TTL_SECONDS = 60;
const MAX_PROPOSAL_TTL_SECONDS = 7 * 24 * 60 * 60;
const MAX_APPROVALS = 64;
const MAX_REASON_LENGTH = 1000;

/**
 * The lowest quorum each action may be configured with. Nothing that changes keys,
 * officers or policy is ever decided by one person; revocations may be (stopping harm
 * quickly matters more than reaching a second officer), and a freeze always is.
 */
export const MIN_APPROVALS: Readonly<Record<ProposalActionType, number>> = Object.freeze({
  'rotate-key': 2,
  'retire-key': 2,
  'compromise-key': 1,
  'revoke-certificate': 1,
  'add-officer': 2,
  'remove-officer': 2,
  'set-quorum': 2,
  'set-policy': 2,
  freeze: 1,
  unfreeze: 2,
});

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const PROPOSAL_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

const officerName = z.string().regex(NAME, 'officer names are lowercase letters, digits, ".", "_" and "-"');
const projectName = z.string().regex(NAME, 'project names are lowercase letters, digits, ".", "_" and "-"');
const keyName = z.string().regex(NAME, 'key names are lowercase letters, digits, ".", "_" and "-"');
const keyVersionId = z
  .string()
  .refine((value) => parseKeyReference(value)?.version !== undefined, 'a key version id, <name>@<version>');
const sha256Hex = z.string().regex(SHA256_HEX, 'a SHA-256 as 64 lower-case hex digits');
/** Exactly the form Date#toISOString writes, so that the content (and its hash) has one spelling. */
const isoInstant = z.string().refine((value) => {
  const ms = Date.parse(value);
  return !Number.isNaN(ms) && new Date(ms).toISOString() === value;
}, 'an ISO-8601 UTC instant as YYYY-MM-DDTHH:MM:SS.sssZ');

export const quorumPolicySchema = z
  .strictObject({
    /** Approvals an action needs unless `approvals` says otherwise. */
    defaultApprovals: z.number().int().min(2).max(MAX_APPROVALS),
    /** Per-action overrides (e.g. a smaller quorum for `compromise-key`). */
    approvals: z.partialRecord(z.enum(PROPOSAL_ACTIONS), z.number().int().min(1).max(MAX_APPROVALS)),
    /** Whether the proposer's own approval counts (always true for `freeze`). */
    proposerMayApprove: z.boolean(),
    proposalTtlSeconds: z.number().int().min(MIN_PROPOSAL_TTL_SECONDS).max(MAX_PROPOSAL_TTL_SECONDS),
  })
  .superRefine((quorum, ctx) => {
    for (const action of PROPOSAL_ACTIONS) {
      const value = quorum.approvals[action];
      if (value === undefined) continue;
      if (action === 'freeze' && value !== 1) {
        ctx.addIssue({ code: 'custom', path: ['approvals', action], message: 'a freeze is always decided by one officer' });
      } else if (value < MIN_APPROVALS[action]) {
        ctx.addIssue({ code: 'custom', path: ['approvals', action], message: `at least ${MIN_APPROVALS[action]}` });
      }
    }
  });
export type QuorumPolicy = z.infer<typeof quorumPolicySchema>;

export const DEFAULT_QUORUM_POLICY: QuorumPolicy = Object.freeze({
  defaultApprovals: 2,
  approvals: Object.freeze({}),
  proposerMayApprove: false,
  proposalTtlSeconds: DEFAULT_PROPOSAL_TTL_SECONDS,
});

/** What a proposal asks for. `project: null` in freeze/unfreeze means everything. */
export const proposalActionSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('rotate-key'),
    project: projectName,
    key: keyName,
    /** The new version's algorithm; null keeps the current one. */
    algorithm: z.enum(KEY_ALGORITHMS).nullable(),
  }),
  z.strictObject({ type: z.literal('retire-key'), keyId: keyVersionId }),
  z.strictObject({ type: z.literal('compromise-key'), keyId: keyVersionId, compromisedAt: isoInstant }),
  z.strictObject({ type: z.literal('revoke-certificate'), certificateSha256: sha256Hex }),
  z.strictObject({ type: z.literal('add-officer'), officer: officerName, certificateSha256: sha256Hex }),
  z.strictObject({ type: z.literal('remove-officer'), officer: officerName }),
  z.strictObject({ type: z.literal('set-quorum'), quorum: quorumPolicySchema }),
  z.strictObject({ type: z.literal('set-policy'), policySha256: sha256Hex }),
  z.strictObject({ type: z.literal('freeze'), project: projectName.nullable() }),
  z.strictObject({ type: z.literal('unfreeze'), project: projectName.nullable() }),
]);
export type ProposalAction = z.infer<typeof proposalActionSchema>;

/** The hashed content of a proposal: exactly what officers approve. */
export interface ProposalContent {
  readonly id: string;
  readonly action: ProposalAction;
  /** An officer's name, or SYSTEM_PROPOSER. */
  readonly proposer: string;
  readonly reason: string;
  /** ISO-8601 UTC. */
  readonly createdAt: string;
  readonly expiresAt: string;
}

export interface ApprovalRecord {
  readonly officer: string;
  /** Hex SHA-256 of the DER certificate the officer presented. */
  readonly certificateSha256: string;
  /** The hash the officer approved (equal to the proposal's). */
  readonly proposalHash: string;
  /** The TOTP time step of the code used (the code itself is never stored). */
  readonly totpStep: number;
  readonly approvedAt: string;
}

export type ProposalStatus = 'open' | 'executed' | 'withdrawn';

export interface ProposalRecord {
  readonly content: ProposalContent;
  /** Hex SHA-256 of the canonical content document (`proposalHash`). */
  readonly hash: string;
  readonly status: ProposalStatus;
  readonly approvals: readonly ApprovalRecord[];
  readonly closedAt: string | null;
}

export interface OfficerRecord {
  readonly name: string;
  /** Hex SHA-256 of the officer's current DER client certificate (officer CA). */
  readonly certificateSha256: string;
  readonly status: 'active' | 'removed';
  /** The TOTP secret sealed by the HSM (signer/secret-sealing.ts); null until enrolled. Opaque here. */
  readonly sealedTotpSecret: string | null;
  /** The time step of the last code this officer used; a new code must be later. */
  readonly lastTotpStep: number | null;
  readonly addedAt: string;
  readonly removedAt: string | null;
}

/** Everything quorum decisions depend on, as storage holds it. */
export interface Governance {
  readonly officers: readonly OfficerRecord[];
  /** Hex SHA-256 of revoked certificates (officers' and CI clients'), sorted. */
  readonly revokedCertificates: readonly string[];
  readonly quorum: QuorumPolicy;
  readonly freeze: FreezeState;
  /** SHA-256 of the policy document last approved, or null. */
  readonly policySha256: string | null;
}

export function initialGovernance(officers: readonly OfficerRecord[], quorum: QuorumPolicy = DEFAULT_QUORUM_POLICY): Governance {
  return { officers, revokedCertificates: [], quorum, freeze: NOT_FROZEN, policySha256: null };
}

// ---------------------------------------------------------------------------------------
// Validation

/** Validates a quorum policy; throws QUORUM_POLICY_INVALID listing every problem. */
export function parseQuorumPolicy(value: unknown): QuorumPolicy {
  const parsed = quorumPolicySchema.safeParse(value);
  if (!parsed.success) {
    const problems = describeIssues(parsed.error);
    throw new RotationError('QUORUM_POLICY_INVALID', `invalid quorum policy: ${problems.join('; ')}`, { problems });
  }
  return parsed.data;
}

/** Validates what a proposal asks for; throws PROPOSAL_INVALID listing every problem. */
export function parseProposalAction(value: unknown): ProposalAction {
  const parsed = proposalActionSchema.safeParse(value);
  if (!parsed.success) {
    const problems = describeIssues(parsed.error);
    throw new RotationError('PROPOSAL_INVALID', `invalid proposal: ${problems.join('; ')}`, { problems });
  }
  return parsed.data;
}

function describeIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.length === 0 ? '(root)' : issue.path.map(String).join('.')}: ${issue.message}`);
}

// ---------------------------------------------------------------------------------------
// Quorum rules

export function requiredApprovals(quorum: QuorumPolicy, action: ProposalActionType): number {
  if (action === 'freeze') return 1;
  return quorum.approvals[action] ?? quorum.defaultApprovals;
}

/** Whether the proposer's own approval counts for this action. */
export function proposerMayApprove(quorum: QuorumPolicy, action: ProposalActionType): boolean {
  return action === 'freeze' || quorum.proposerMayApprove;
}

/** Active officers whose certificate is not revoked: those who can still approve. */
export function usableOfficers(governance: Governance): OfficerRecord[] {
  const revoked = new Set(governance.revokedCertificates);
  return governance.officers.filter((o) => o.status === 'active' && !revoked.has(o.certificateSha256));
}

/**
 * Whether every action can still reach its quorum with the usable officers, counting
 * one officer out as the proposer where the proposer may not approve. Changes that
 * would break this (removing officers, raising quorums) are refused, so the officers
 * can never lock themselves out.
 */
export function quorumReachable(governance: Governance): boolean {
  const usable = usableOfficers(governance).length;
  return PROPOSAL_ACTIONS.every(
    (action) =>
      requiredApprovals(governance.quorum, action) + (proposerMayApprove(governance.quorum, action) ? 0 : 1) <= usable,
  );
}

// ---------------------------------------------------------------------------------------
// Proposals

/** The document whose SHA-256 binds a proposal: canonical JSON, RFC 8785. */
export function proposalDocument(content: ProposalContent): string {
  return canonicalJson({
    apiVersion: 'signet.dev/v1',
    kind: 'Proposal',
    spec: {
      id: content.id,
      action: content.action,
      proposer: content.proposer,
      reason: content.reason,
      createdAt: content.createdAt,
      expiresAt: content.expiresAt,
    },
  });
}

/** Hex SHA-256 of `proposalDocument(content)`: what officers approve. */
export function proposalHash(content: ProposalContent): string {
  return createHash('sha256').update(proposalDocument(content), 'utf8').digest('hex');
}

/** Whether a (stored) proposal's content still hashes to its recorded hash. */
export function proposalIntact(proposal: ProposalRecord): boolean {
  try {
    return proposalHash(proposal.content) === proposal.hash;
  } catch {
    return false;
  }
}

export function isExpired(proposal: ProposalRecord, now: Date): boolean {
  return now.getTime() >= Date.parse(proposal.content.expiresAt);
}

/**
 * Opens a proposal. `id` is chosen by the caller (a random UUID, say); `proposer` is
 * the officer the caller identified from the client certificate (`identifyOfficer`), or
 * SYSTEM_PROPOSER. Throws PROPOSAL_INVALID (every problem listed), or the officer
 * refusal code when the proposer cannot act.
 */
export function createProposal(
  input: { readonly id: string; readonly action: unknown; readonly proposer: string; readonly reason?: string },
  governance: Governance,
  now: Date,
): ProposalRecord {
  const problems: string[] = [];
  if (typeof input.id !== 'string' || !PROPOSAL_ID.test(input.id)) problems.push('id: 8 to 64 letters, digits, "_" or "-"');
  const reason = input.reason ?? '';
  if (typeof reason !== 'string' || reason.length > MAX_REASON_LENGTH || /\p{Cc}/u.test(reason.replace(/\n/g, ''))) {
    problems.push(`reason: at most ${MAX_REASON_LENGTH} characters, no control characters but newlines`);
  }
  let action: ProposalAction | undefined;
  try {
    action = parseProposalAction(input.action);
  } catch (error) {
    if (!(error instanceof RotationError)) throw error;
    problems.push(...error.problems.map((p) => `action.${p}`));
  }
  const createdAt = isoOf(now);
  if (action?.type === 'compromise-key' && Date.parse(action.compromisedAt) > now.getTime()) {
    problems.push('action.compromisedAt: a compromise time cannot be in the future');
  }
  if (action === undefined || problems.length > 0) {
    throw new RotationError('PROPOSAL_INVALID', `invalid proposal: ${problems.join('; ')}`, { problems });
  }
  if (input.proposer !== SYSTEM_PROPOSER) {
    const officer = governance.officers.find((o) => o.name === input.proposer);
    if (officer === undefined) throw new RotationError('OFFICER_UNKNOWN', `"${input.proposer}" is not an officer`);
    if (officer.status !== 'active') throw new RotationError('OFFICER_REMOVED', `officer ${officer.name} was removed`);
    if (governance.revokedCertificates.includes(officer.certificateSha256)) {
      throw new RotationError('OFFICER_CERTIFICATE_REVOKED', `the certificate of officer ${officer.name} is revoked`);
    }
  }
  const content: ProposalContent = {
    id: input.id,
    action,
    proposer: input.proposer,
    reason,
    createdAt,
    expiresAt: new Date(now.getTime() + governance.quorum.proposalTtlSeconds * 1000).toISOString(),
  };
  return { content, hash: proposalHash(content), status: 'open', approvals: [], closedAt: null };
}

/** Marks a proposal executed or withdrawn (the caller has checked it may). */
export function closeProposal(proposal: ProposalRecord, status: 'executed' | 'withdrawn', now: Date): ProposalRecord {
  if (proposal.status !== 'open') throw new RotationError('PROPOSAL_CLOSED', `proposal ${proposal.content.id} is ${proposal.status}`);
  return { ...proposal, status, closedAt: isoOf(now) };
}

// ---------------------------------------------------------------------------------------
// Officers

export type OfficerIdentity =
  | { readonly kind: 'officer'; readonly officer: OfficerRecord }
  | Refusal<'OFFICER_CERTIFICATE_REVOKED' | 'OFFICER_UNKNOWN' | 'OFFICER_REMOVED'>;

/** The officer holding this certificate, if it may act. */
export function identifyOfficer(governance: Governance, certificateSha256: string): OfficerIdentity {
  if (governance.revokedCertificates.includes(certificateSha256)) {
    return refuse('OFFICER_CERTIFICATE_REVOKED', 'this certificate has been revoked');
  }
  const holders = governance.officers.filter((o) => o.certificateSha256 === certificateSha256);
  const [officer, other] = holders;
  // Two officers sharing a certificate would make approvals ambiguous: fail closed.
  if (officer === undefined || other !== undefined) return refuse('OFFICER_UNKNOWN', "this certificate is not an officer's");
  if (officer.status !== 'active') return refuse('OFFICER_REMOVED', `officer ${officer.name} was removed`);
  return { kind: 'officer', officer };
}

export function replaceOfficer(governance: Governance, officer: OfficerRecord): Governance {
  return { ...governance, officers: governance.officers.map((o) => (o.name === officer.name ? officer : o)) };
}

// ---------------------------------------------------------------------------------------
// Approvals

export interface ApprovalAttempt {
  /** The hash the officer reviewed (their CLI recomputes it from the content). */
  readonly proposalHash: string;
  /** Hex SHA-256 of the DER client certificate of the mTLS connection. */
  readonly certificateSha256: string;
  /** The officer whose secret the caller unsealed (from `identifyOfficer`). */
  readonly officer: string;
  readonly code: string;
}

export interface ApprovalContext {
  readonly governance: Governance;
  /** `attempt.officer`'s TOTP secret, unsealed by the caller for this check only. */
  readonly totpSecret: Uint8Array | null;
  readonly now: Date;
}

export type ApprovalOutcome =
  | {
      readonly kind: 'accepted';
      readonly proposal: ProposalRecord;
      /** The officer with `lastTotpStep` moved to the step used: write it with the approval, atomically. */
      readonly officer: OfficerRecord;
      readonly approval: ApprovalRecord;
      readonly quorum: QuorumStatus;
    }
  | Refusal<ApprovalRefusalCode>;

/**
 * Records one officer's approval, or says why not. Checks, in order: the stored
 * proposal is intact, open and unexpired; the officer approved this very hash; the
 * certificate is a current, unrevoked officer's; the proposer may approve; the officer
 * has not approved yet; the TOTP code is right for now ±1 step and later than the
 * officer's last. A refusal changes nothing, so it burns no code.
 */
export function approve(proposal: ProposalRecord, attempt: ApprovalAttempt, context: ApprovalContext): ApprovalOutcome {
  const { governance, now } = context;
  const id = proposal.content.id;
  if (!proposalIntact(proposal)) return refuse('PROPOSAL_TAMPERED', `proposal ${id} does not match its recorded hash`);
  if (proposal.status !== 'open') return refuse('PROPOSAL_CLOSED', `proposal ${id} is ${proposal.status}`);
  if (isExpired(proposal, now)) return refuse('PROPOSAL_EXPIRED', `proposal ${id} expired at ${proposal.content.expiresAt}`);
  if (attempt.proposalHash !== proposal.hash) {
    return refuse('PROPOSAL_HASH_MISMATCH', `the approval is for other content than proposal ${id}`);
  }
  const identity = identifyOfficer(governance, attempt.certificateSha256);
  if (identity.kind === 'refused') return identity;
  const { officer } = identity;
  // The caller unsealed the secret of `attempt.officer`: it must be the certificate's holder.
  if (officer.name !== attempt.officer) return refuse('OFFICER_UNKNOWN', "this certificate is not that officer's");
  const action = proposal.content.action.type;
  if (officer.name === proposal.content.proposer && !proposerMayApprove(governance.quorum, action)) {
    return refuse('PROPOSER_CANNOT_APPROVE', `officer ${officer.name} proposed ${id} and may not approve it`);
  }
  if (proposal.approvals.some((a) => a.officer === officer.name)) {
    return refuse('APPROVAL_DUPLICATE', `officer ${officer.name} already approved proposal ${id}`);
  }
  if (officer.sealedTotpSecret === null || context.totpSecret === null) {
    return refuse('OFFICER_NOT_ENROLLED', `officer ${officer.name} has no TOTP secret`);
  }
  const check = checkTotpCode({ secret: context.totpSecret, code: attempt.code, at: now, lastUsedStep: officer.lastTotpStep });
  if (!check.ok) {
    return check.reason === 'TOTP_REUSED'
      ? refuse('TOTP_REUSED', `officer ${officer.name} already used this code`)
      : refuse('TOTP_INVALID', `wrong code for officer ${officer.name}`);
  }
  const approval: ApprovalRecord = {
    officer: officer.name,
    certificateSha256: attempt.certificateSha256,
    proposalHash: proposal.hash,
    totpStep: check.step,
    approvedAt: isoOf(now),
  };
  const updatedProposal: ProposalRecord = { ...proposal, approvals: [...proposal.approvals, approval] };
  const updatedOfficer: OfficerRecord = { ...officer, lastTotpStep: check.step };
  return {
    kind: 'accepted',
    proposal: updatedProposal,
    officer: updatedOfficer,
    approval,
    quorum: quorumStatus(updatedProposal, replaceOfficer(governance, updatedOfficer)),
  };
}

export type DiscountReason =
  | 'PROPOSAL_HASH_MISMATCH'
  | 'AFTER_EXPIRY'
  | 'OFFICER_CERTIFICATE_REVOKED'
  | 'OFFICER_UNKNOWN'
  | 'OFFICER_REMOVED'
  /** The officer's certificate changed since: approvals are tied to the certificate that made them. */
  | 'CERTIFICATE_REPLACED'
  | 'PROPOSER_CANNOT_APPROVE'
  | 'APPROVAL_DUPLICATE';

export interface QuorumStatus {
  readonly required: number;
  /** Officers whose approvals count, in approval order. */
  readonly counted: readonly string[];
  readonly discounted: readonly { readonly officer: string; readonly reason: DiscountReason }[];
  readonly met: boolean;
}

/**
 * Counts a proposal's approvals against the current governance: each approval counts
 * if it is for this hash, was made before expiry, by an officer who is still active,
 * with the certificate that officer still holds and that is not revoked, and is the
 * first of that officer; the proposer's only where allowed. A tampered proposal meets
 * no quorum.
 */
export function quorumStatus(proposal: ProposalRecord, governance: Governance): QuorumStatus {
  const action = proposal.content.action.type;
  const required = requiredApprovals(governance.quorum, action);
  const revoked = new Set(governance.revokedCertificates);
  const officers = new Map(governance.officers.map((o) => [o.name, o]));
  const expiresAt = Date.parse(proposal.content.expiresAt);
  const counted: string[] = [];
  const discounted: { officer: string; reason: DiscountReason }[] = [];
  for (const approval of proposal.approvals) {
    const officer = officers.get(approval.officer);
    let reason: DiscountReason | null = null;
    if (approval.proposalHash !== proposal.hash) reason = 'PROPOSAL_HASH_MISMATCH';
    else if (!(Date.parse(approval.approvedAt) < expiresAt)) reason = 'AFTER_EXPIRY';
    else if (revoked.has(approval.certificateSha256)) reason = 'OFFICER_CERTIFICATE_REVOKED';
    else if (officer === undefined) reason = 'OFFICER_UNKNOWN';
    else if (officer.status !== 'active') reason = 'OFFICER_REMOVED';
    else if (officer.certificateSha256 !== approval.certificateSha256) reason = 'CERTIFICATE_REPLACED';
    else if (officer.name === proposal.content.proposer && !proposerMayApprove(governance.quorum, action)) {
      reason = 'PROPOSER_CANNOT_APPROVE';
    } else if (counted.includes(officer.name)) reason = 'APPROVAL_DUPLICATE';
    if (reason === null) counted.push(approval.officer);
    else discounted.push({ officer: approval.officer, reason });
  }
  return { required, counted, discounted, met: proposalIntact(proposal) && counted.length >= required };
}

export function quorumMet(proposal: ProposalRecord, governance: Governance): boolean {
  return quorumStatus(proposal, governance).met;
}

// ---------------------------------------------------------------------------------------
// Execution

export interface ExecutionSnapshot {
  readonly governance: Governance;
  /** Every version of the keys the proposal names (all versions of the name, for a rotation). */
  readonly keys: readonly KeyVersionRecord[];
  readonly now: Date;
}

export type ExecutionCheck = { readonly kind: 'executable'; readonly quorum: QuorumStatus } | Refusal<ExecutionRefusalCode>;

/**
 * Whether a proposal may be executed now: intact, open, unexpired, quorum met, and the
 * state it acts on as it must be. A rotation whose execution failed half-way leaves the
 * proposal open (the old version still active), so this allows a retry until expiry.
 */
export function checkExecution(proposal: ProposalRecord, snapshot: ExecutionSnapshot): ExecutionCheck {
  const { governance, keys, now } = snapshot;
  const id = proposal.content.id;
  if (!proposalIntact(proposal)) return refuse('PROPOSAL_TAMPERED', `proposal ${id} does not match its recorded hash`);
  if (proposal.status !== 'open') return refuse('PROPOSAL_CLOSED', `proposal ${id} is ${proposal.status}`);
  if (isExpired(proposal, now)) return refuse('PROPOSAL_EXPIRED', `proposal ${id} expired at ${proposal.content.expiresAt}`);
  const quorum = quorumStatus(proposal, governance);
  if (!quorum.met) {
    return refuse('QUORUM_NOT_MET', `proposal ${id} has ${quorum.counted.length} of ${quorum.required} approvals`);
  }
  const refusal = actionPrecondition(proposal.content.action, governance, keys);
  return refusal ?? { kind: 'executable', quorum };
}

function actionPrecondition(
  action: ProposalAction,
  governance: Governance,
  keys: readonly KeyVersionRecord[],
): Refusal<ExecutionRefusalCode> | null {
  switch (action.type) {
    case 'rotate-key': {
      const versions = keys.filter((k) => k.name === action.key);
      if (versions.length === 0) return refuse('KEY_NOT_FOUND', `no key ${action.key}`);
      const active = versions.filter((k) => k.state === 'active').length;
      if (active !== 1) return refuse('KEY_STATE_CONFLICT', `key ${action.key} has ${active} active versions, not 1`);
      return null;
    }
    case 'retire-key': {
      const version = keys.find((k) => k.keyId === action.keyId);
      if (version === undefined) return refuse('KEY_NOT_FOUND', `no key version ${action.keyId}`);
      if (version.state !== 'verify-only') {
        return refuse('KEY_STATE_CONFLICT', `key version ${action.keyId} is ${version.state}; only a verify-only version retires`);
      }
      return null;
    }
    case 'compromise-key': {
      const version = keys.find((k) => k.keyId === action.keyId);
      if (version === undefined) return refuse('KEY_NOT_FOUND', `no key version ${action.keyId}`);
      if (version.compromisedAt !== null && Date.parse(version.compromisedAt) <= Date.parse(action.compromisedAt)) {
        return refuse('KEY_STATE_CONFLICT', `key version ${action.keyId} is already compromised since ${version.compromisedAt}`);
      }
      return null;
    }
    case 'revoke-certificate':
      return governance.revokedCertificates.includes(action.certificateSha256)
        ? refuse('CERTIFICATE_ALREADY_REVOKED', 'this certificate is already revoked')
        : null;
    case 'add-officer':
      if (governance.officers.some((o) => o.name === action.officer)) {
        return refuse('OFFICER_EXISTS', `officer ${action.officer} exists (names are never reused)`);
      }
      if (governance.officers.some((o) => o.certificateSha256 === action.certificateSha256)) {
        return refuse('OFFICER_EXISTS', 'another officer holds this certificate');
      }
      if (governance.revokedCertificates.includes(action.certificateSha256)) {
        return refuse('OFFICER_CERTIFICATE_REVOKED', 'this certificate is revoked');
      }
      return null;
    case 'remove-officer': {
      const officer = governance.officers.find((o) => o.name === action.officer);
      if (officer?.status !== 'active') return refuse('OFFICER_NOT_FOUND', `no active officer ${action.officer}`);
      return reachableAfter(action, governance);
    }
    case 'set-quorum':
      return reachableAfter(action, governance);
    case 'set-policy':
    case 'freeze':
      return null;
    case 'unfreeze':
      return isScopeFrozen(governance.freeze, action.project)
        ? null
        : refuse('NOT_FROZEN', action.project === null ? 'signing is not frozen globally' : `project ${action.project} is not frozen`);
  }
}

/**
 * Revoking a certificate is not refused for reachability: stopping a stolen credential
 * comes first, and a certificate alone approves nothing without its officer's TOTP.
 */
function reachableAfter(
  action: Extract<ProposalAction, { type: 'remove-officer' | 'set-quorum' }>,
  governance: Governance,
): Refusal<'QUORUM_UNREACHABLE'> | null {
  const after = applyGovernanceAction(action, governance, { proposalId: '', proposer: '', now: new Date(0) });
  return quorumReachable(after)
    ? null
    : refuse('QUORUM_UNREACHABLE', 'after this change some actions could no longer reach their quorum');
}

/**
 * The governance after executing a proposal (unchanged for key actions, which go
 * through `keyVersionsAfter`). Call after `checkExecution` said executable.
 */
export function governanceAfter(proposal: ProposalRecord, governance: Governance, now: Date): Governance {
  return applyGovernanceAction(proposal.content.action, governance, {
    proposalId: proposal.content.id,
    proposer: proposal.content.proposer,
    now,
  });
}

function applyGovernanceAction(
  action: ProposalAction,
  governance: Governance,
  by: { readonly proposalId: string; readonly proposer: string; readonly now: Date },
): Governance {
  const at = isoOf(by.now);
  switch (action.type) {
    case 'rotate-key':
    case 'retire-key':
    case 'compromise-key':
      return governance;
    case 'revoke-certificate':
      return {
        ...governance,
        revokedCertificates: [...new Set([...governance.revokedCertificates, action.certificateSha256])].sort(),
      };
    case 'add-officer':
      return {
        ...governance,
        officers: [
          ...governance.officers,
          {
            name: action.officer,
            certificateSha256: action.certificateSha256,
            status: 'active',
            sealedTotpSecret: null,
            lastTotpStep: null,
            addedAt: at,
            removedAt: null,
          },
        ],
      };
    case 'remove-officer':
      return {
        ...governance,
        officers: governance.officers.map((o) =>
          o.name === action.officer && o.status === 'active' ? { ...o, status: 'removed', removedAt: at } : o,
        ),
      };
    case 'set-quorum':
      return { ...governance, quorum: action.quorum };
    case 'set-policy':
      return { ...governance, policySha256: action.policySha256 };
    case 'freeze':
      return { ...governance, freeze: applyFreeze(governance.freeze, action.project, { proposalId: by.proposalId, by: by.proposer, at }) };
    case 'unfreeze':
      return { ...governance, freeze: applyUnfreeze(governance.freeze, action.project) };
  }
}

/** The algorithm a rotation generates its new version with: the proposal's, else the active version's. */
export function rotationAlgorithm(proposal: ProposalRecord, keys: readonly KeyVersionRecord[]): KeyAlgorithm {
  const { action } = proposal.content;
  if (action.type !== 'rotate-key') throw new TypeError('not a rotation proposal');
  if (action.algorithm !== null) return action.algorithm;
  const active = keys.find((k) => k.name === action.key && k.state === 'active');
  if (active === undefined) throw new RotationError('KEY_STATE_CONFLICT', `key ${action.key} has no active version`);
  return active.algorithm;
}

/**
 * The key versions a key action changes, to be written in one transaction. For a
 * rotation, `generated` is the pending version the executor made in the HSM for it.
 * Throws KEY_STATE_CONFLICT / KEY_TRANSITION_REFUSED (KeyError) when the versions no
 * longer allow it. Empty for governance actions.
 */
export function keyVersionsAfter(
  proposal: ProposalRecord,
  keys: readonly KeyVersionRecord[],
  now: Date,
  generated?: KeyVersionRecord,
): KeyVersionRecord[] {
  const { action } = proposal.content;
  switch (action.type) {
    case 'rotate-key': {
      if (generated === undefined) throw new TypeError('a rotation needs the generated version');
      if (generated.name !== action.key) {
        throw new RotationError('KEY_STATE_CONFLICT', `version ${generated.keyId} is not a version of key ${action.key}`);
      }
      if (generated.algorithm !== rotationAlgorithm(proposal, keys)) {
        throw new RotationError('KEY_STATE_CONFLICT', `version ${generated.keyId} is not of the algorithm the proposal names`);
      }
      const versions = keys.some((k) => k.keyId === generated.keyId) ? keys : [...keys, generated];
      const { retiring, activating } = planRotation(versions, generated.keyId, now);
      return [retiring, activating];
    }
    case 'retire-key':
    case 'compromise-key': {
      const version = keys.find((k) => k.keyId === action.keyId);
      if (version === undefined) throw new RotationError('KEY_NOT_FOUND', `no key version ${action.keyId}`);
      return [
        action.type === 'retire-key'
          ? transition(version, { to: 'retired', at: now })
          : transition(version, { to: 'compromised', at: now, compromisedAt: new Date(action.compromisedAt) }),
      ];
    }
    case 'revoke-certificate':
    case 'add-officer':
    case 'remove-officer':
    case 'set-quorum':
    case 'set-policy':
    case 'freeze':
    case 'unfreeze':
      return [];
  }
}

function isoOf(value: Date): string {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new TypeError('a time must be a valid Date');
  return value.toISOString();
}
