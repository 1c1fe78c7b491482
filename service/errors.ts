/** Errors of the signing use case that are not owned by one adapter. */
import { SignetError } from '../errors/signet-error.js';
import type { DenyReason } from '../policy/evaluate.js';

export type SignErrorCode =
  | 'POLICY_DENIED'
  | 'RATE_LIMITED'
  | 'FORMAT_UNSUPPORTED'
  | 'DIGEST_INVALID'
  | 'SERVICE_STOPPING'
  /** An identical request with the same token is still being served, and did not finish in time. */
  | 'TOKEN_IN_USE';

export class SignError extends SignetError<SignErrorCode> {
  /** For POLICY_DENIED and RATE_LIMITED: every reason, safe to show the caller (they name no secret). */
  readonly reasons: readonly DenyReason[];

  constructor(code: SignErrorCode, message: string, reasons: readonly DenyReason[] = [], options?: { cause?: unknown }) {
    super(code, message, options);
    this.reasons = reasons;
  }
}
