/**
 * Errors of key lifecycle, officers, proposals and quorum.
 *
 * The pure core (lifecycle.ts, proposals.ts, totp.ts) *returns* refusals for what an
 * officer may legitimately get wrong (a stale code, an expired proposal), each with a
 * stable code from the lists below, so the HTTP layer, the CLI and the log can rely on
 * them; `RotationError` carries the same codes when an adapter throws one. Messages
 * name officers, proposals and key ids, never TOTP codes or secrets.
 */
import { SignetError } from '../errors/signet-error.js';

export type KeyErrorCode =
  | 'KEY_NOT_FOUND'
  | 'KEY_NOT_ACTIVE'
  | 'KEY_EXISTS'
  | 'KEY_ID_INVALID'
  | 'KEY_MISSING_IN_HSM'
  /** The lifecycle does not allow this state change (lifecycle.ts, `KEY_TRANSITIONS`). */
  | 'KEY_TRANSITION_REFUSED'
  /** The versions of one key name break "exactly one active version" or a rotation's preconditions. */
  | 'KEY_STATE_CONFLICT';

export class KeyError extends SignetError<KeyErrorCode> {}

/** Why an approval was not recorded. Checked in this order (proposals.ts, `approve`). */
export const APPROVAL_REFUSAL_CODES = [
  /** The stored proposal no longer hashes to its recorded hash (checked first: nothing else in it can be trusted). */
  'PROPOSAL_TAMPERED',
  /** The proposal was executed or withdrawn. */
  'PROPOSAL_CLOSED',
  'PROPOSAL_EXPIRED',
  /** The officer approved another content than the proposal's (its hash differs). */
  'PROPOSAL_HASH_MISMATCH',
  /** The certificate has been revoked. */
  'OFFICER_CERTIFICATE_REVOKED',
  /** The certificate is no officer's current certificate. */
  'OFFICER_UNKNOWN',
  /** The officer was removed. */
  'OFFICER_REMOVED',
  /** Policy says the proposer of a proposal may not approve it. */
  'PROPOSER_CANNOT_APPROVE',
  /** The officer already approved this proposal: one officer counts once. */
  'APPROVAL_DUPLICATE',
  /** The officer has no TOTP secret yet. */
  'OFFICER_NOT_ENROLLED',
  /** The code is not the officer's code for the current time step ±1. */
  'TOTP_INVALID',
  /** The code's time step is not after the last one this officer used: a code counts once. */
  'TOTP_REUSED',
] as const;
export type ApprovalRefusalCode = (typeof APPROVAL_REFUSAL_CODES)[number];

/** Why a proposal may not be executed (now). */
export const EXECUTION_REFUSAL_CODES = [
  'PROPOSAL_TAMPERED',
  'PROPOSAL_CLOSED',
  'PROPOSAL_EXPIRED',
  'QUORUM_NOT_MET',
  /** After this change no proposal could reach its quorum with the officers left. */
  'QUORUM_UNREACHABLE',
  'KEY_NOT_FOUND',
  /** The key's versions are not in the state the action needs. */
  'KEY_STATE_CONFLICT',
  'OFFICER_EXISTS',
  'OFFICER_NOT_FOUND',
  'OFFICER_CERTIFICATE_REVOKED',
  'CERTIFICATE_ALREADY_REVOKED',
  'NOT_FROZEN',
] as const;
export type ExecutionRefusalCode = (typeof EXECUTION_REFUSAL_CODES)[number];

export type RotationErrorCode =
  | ApprovalRefusalCode
  | ExecutionRefusalCode
  /** A proposal's content failed validation (every problem is listed). */
  | 'PROPOSAL_INVALID'
  /** A quorum policy failed validation (every problem is listed). */
  | 'QUORUM_POLICY_INVALID'
  /** A TOTP secret is malformed or too short (the secret itself is never shown). */
  | 'TOTP_SECRET_INVALID'
  /**
   * Another replica holds the proposal's execution lease (execution-lease.ts): it is
   * executing it, or stopped less than a lease ago; or it took this execution over.
   */
  | 'EXECUTION_IN_PROGRESS';

/** A refusal as the pure core returns it: a stable code and an operator-facing message. */
export interface Refusal<Code extends string> {
  readonly kind: 'refused';
  readonly code: Code;
  readonly message: string;
}

export function refuse<Code extends string>(code: Code, message: string): Refusal<Code> {
  return { kind: 'refused', code, message };
}

export class RotationError extends SignetError<RotationErrorCode> {
  /** For *_INVALID codes: every problem found, as `path: message`. */
  readonly problems: readonly string[];

  constructor(code: RotationErrorCode, message: string, options?: { cause?: unknown; problems?: readonly string[] }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.problems = Object.freeze([...(options?.problems ?? [])]);
  }
}

/** The error an adapter throws for a refusal it got from the core. */
export function rotationErrorFrom(refusal: Refusal<ApprovalRefusalCode | ExecutionRefusalCode>): RotationError {
  return new RotationError(refusal.code, refusal.message);
}

export function isRotationError(value: unknown, code?: RotationErrorCode): value is RotationError {
  return value instanceof RotationError && (code === undefined || value.code === code);
}
