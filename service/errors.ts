/** Errors of the signing use case that are not owned by one adapter. */
import { SignetError } from '../errors/signet-error.js';
import type { DenyReason } from '../policy/evaluate.js';

export type SignErrorCode =
  | 'POLICY_DENIED'
  | 'RATE_LIMITED'
  | 'FORMAT_UNSUPPORTED'
  /** The format signs the manifest itself (dsse, pgp): the request must carry it as `payload`. */
  | 'PAYLOAD_REQUIRED'
  | 'DIGEST_INVALID'
  | 'SERVICE_STOPPING'
  /** A security officer froze signing for the project (or everything). */
  | 'SIGNING_FROZEN'
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
