/**
 * The one table that maps error codes to HTTP statuses, and the one function that
 * turns any thrown value into the JSON error shape of DESIGN.md:
 * `{"error": {"code", "message"}}`.
 *
 * Client faults (4xx) carry the error's own message, which by construction names no
 * secret. Server faults (5xx) get a fixed message per code; the detail goes to the
 * service log only (the approach of sigstore/fulcio's pkg/server/error.go).
 */
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { isSignetError, SignetError } from '../errors/signet-error.js';
import { IDENTITY_ERROR_CODES } from '../policy/oidc/types.js';
import { SignError } from '../service/errors.js';

export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly reasons?: readonly { readonly code: string; readonly message: string }[];
    readonly requestId?: string;
  };
}

/**
 * Officers' requests (keyrotation/): refusals of the quorum rules and the second factor.
 * An unknown, removed or revoked officer, or a wrong code, is 403; a proposal or key in
 * the wrong state for the request is 409; too many wrong codes is 429.
 */
const GOVERNANCE_STATUSES: Readonly<Record<string, ContentfulStatusCode>> = {
  PROPOSAL_INVALID: 400,
  QUORUM_POLICY_INVALID: 400,
  TOTP_SECRET_INVALID: 400,
  OFFICER_UNKNOWN: 403,
  OFFICER_REMOVED: 403,
  OFFICER_CERTIFICATE_REVOKED: 403,
  OFFICER_NOT_ENROLLED: 403,
  PROPOSER_CANNOT_APPROVE: 403,
  TOTP_INVALID: 403,
  TOTP_REUSED: 403,
  LOG_KEY_RESERVED: 403,
  PROPOSAL_NOT_FOUND: 404,
  OFFICER_NOT_FOUND: 404,
  OFFICER_ROUTES_DISABLED: 404,
  PROPOSAL_CLOSED: 409,
  PROPOSAL_EXPIRED: 409,
  PROPOSAL_HASH_MISMATCH: 409,
  PROPOSAL_TAMPERED: 409,
  APPROVAL_DUPLICATE: 409,
  QUORUM_NOT_MET: 409,
  QUORUM_UNREACHABLE: 409,
  KEY_STATE_CONFLICT: 409,
  KEY_TRANSITION_REFUSED: 409,
  OFFICER_EXISTS: 409,
  OFFICER_ALREADY_ENROLLED: 409,
  CERTIFICATE_ALREADY_REVOKED: 409,
  NOT_FROZEN: 409,
  EXECUTION_IN_PROGRESS: 409,
  TOTP_LOCKED: 429,
};

const CLIENT_ERRORS: Readonly<Record<string, ContentfulStatusCode>> = {
  INVALID_JSON: 400,
  INVALID_REQUEST: 400,
  DIGEST_INVALID: 400,
  KEY_ID_INVALID: 400,
  FORMAT_UNSUPPORTED: 400,
  // Signature formats (service/sign-formats.ts): the request cannot be served in the format asked.
  PAYLOAD_REQUIRED: 400,
  FORMAT_KEY_UNSUPPORTED: 400,
  FORMAT_INPUT_INVALID: 400,
  FORMAT_UNSUPPORTED_FOR_KEY: 400,
  HSM_INVALID_INPUT: 400,
  CLIENT_CERT_REQUIRED: 401,
  CLIENT_CERT_UNTRUSTED: 401,
  CLIENT_CERT_WRONG_USAGE: 403,
  CLIENT_CERT_REVOKED: 403,
  // Signing frozen by a security officer (keyrotation/freeze.ts): refused until the quorum unfreezes.
  SIGNING_FROZEN: 403,
  ...GOVERNANCE_STATUSES,
  // Every pipeline-identity failure is a 401 with its own code (policy/oidc/types.ts).
  ...Object.fromEntries(IDENTITY_ERROR_CODES.filter((code) => code !== 'JWKS_UNAVAILABLE').map((code) => [code, 401 as const])),
  POLICY_DENIED: 403,
  NOT_FOUND: 404,
  KEY_NOT_FOUND: 404,
  LOG_ENTRY_NOT_FOUND: 404,
  LOG_PROOF_INVALID_REQUEST: 400,
  METHOD_NOT_ALLOWED: 405,
  KEY_NOT_ACTIVE: 409,
  TOKEN_IN_USE: 409,
  RATE_LIMITED: 429,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
};

/** Server faults: fixed messages, never the underlying detail. */
const STOPPING = { status: 503, code: 'SERVICE_STOPPING', message: 'the service is shutting down; retry on another replica' } as const;
const HSM_DOWN = { status: 503, code: 'HSM_UNAVAILABLE', message: 'the HSM is unavailable; nothing was signed' } as const;
const STORE_DOWN = { status: 503, code: 'STORAGE_UNAVAILABLE', message: 'storage is unavailable; nothing was signed' } as const;
const SIGN_FAILED = { status: 500, code: 'SIGNING_FAILED', message: 'the HSM could not sign; nothing was signed' } as const;
const formatFailed = (code: string, what: string) => ({ status: 500 as const, code, message: `${what}; no signature was sent` });

const SERVER_ERRORS: Readonly<Record<string, { status: ContentfulStatusCode; code: string; message: string }>> = {
  SERVICE_STOPPING: STOPPING,
  HSM_POOL_CLOSED: STOPPING,
  STORE_UNAVAILABLE: STORE_DOWN,
  STORE_CORRUPT: STORE_DOWN,
  HSM_UNAVAILABLE: HSM_DOWN,
  LOG_UNAVAILABLE: { status: 503, code: 'LOG_UNAVAILABLE', message: 'the transparency log cannot record; nothing was signed' },
  LOG_INCONSISTENT: { status: 503, code: 'LOG_UNAVAILABLE', message: 'the transparency log cannot record; nothing was signed' },
  JWKS_UNAVAILABLE: { status: 503, code: 'JWKS_UNAVAILABLE', message: "the token issuer's keys could not be fetched; nothing was signed" },
  // The operator must load the policy file the officers approved (keyrotation, set-policy).
  POLICY_NOT_APPROVED: {
    status: 503,
    code: 'POLICY_NOT_APPROVED',
    message: 'the policy in force is not the one the security officers approved; nothing was signed',
  },
  HSM_SESSION_LOST: HSM_DOWN,
  HSM_TOKEN_NOT_FOUND: HSM_DOWN,
  HSM_TOKEN_AMBIGUOUS: HSM_DOWN,
  HSM_PIN_INCORRECT: HSM_DOWN,
  HSM_PIN_LOCKED: HSM_DOWN,
  HSM_PIN_MISSING: HSM_DOWN,
  // A key version in storage whose pair is not in the token: checked at start, so this
  // means the token changed underneath the service.
  HSM_KEY_NOT_FOUND: SIGN_FAILED,
  HSM_SIGN_FAILED: SIGN_FAILED,
  HSM_UNSUPPORTED: SIGN_FAILED,
  // The envelope could not be made around the signature (a key without a usable
  // certificate, a receipt that does not match, a key OpenPGP cannot read): the
  // service's fault, and no signature was sent.
  FORMAT_CERTIFICATE_INVALID: formatFailed('FORMAT_CERTIFICATE_INVALID', "the signing key's certificate cannot be used in this format"),
  FORMAT_RECEIPT_MISMATCH: formatFailed('FORMAT_RECEIPT_MISMATCH', 'the log receipt does not match the signature'),
  OPENPGP_KEY_INVALID: formatFailed('OPENPGP_KEY_INVALID', 'the signing key cannot be expressed in OpenPGP'),
  OPENPGP_USER_ID_INVALID: formatFailed('OPENPGP_USER_ID_INVALID', 'the OpenPGP user ID is invalid'),
};

const INTERNAL = { status: 500 as ContentfulStatusCode, code: 'INTERNAL', message: 'internal error; nothing was signed' };

export interface MappedError {
  readonly status: ContentfulStatusCode;
  readonly body: ErrorBody;
  /** True for faults of the service (log at error level with the cause). */
  readonly serverFault: boolean;
}

export function mapError(error: unknown, requestId: string | undefined): MappedError {
  const withId = requestId === undefined ? {} : { requestId };
  if (error instanceof HTTPException) {
    const code = httpExceptionCode(error.status);
    const status = error.status;
    // Hono's own messages (e.g. "Malformed JSON in request body") hold no request data.
    return { status, body: { error: { code, message: error.message || code, ...withId } }, serverFault: status >= 500 };
  }
  if (isSignetError(error)) {
    const clientStatus = CLIENT_ERRORS[error.code];
    if (clientStatus !== undefined) {
      const reasons = error instanceof SignError && error.reasons.length > 0 ? { reasons: error.reasons } : {};
      return { status: clientStatus, body: { error: { code: error.code, message: error.message, ...reasons, ...withId } }, serverFault: false };
    }
    const server = SERVER_ERRORS[error.code] ?? INTERNAL;
    return { status: server.status, body: { error: { code: server.code, message: server.message, ...withId } }, serverFault: true };
  }
  return { status: INTERNAL.status, body: { error: { code: INTERNAL.code, message: INTERNAL.message, ...withId } }, serverFault: true };
}

function httpExceptionCode(status: number): string {
  switch (status) {
    case 400:
      return 'INVALID_JSON';
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'METHOD_NOT_ALLOWED';
    case 413:
      return 'BODY_TOO_LARGE';
    case 415:
      return 'UNSUPPORTED_MEDIA_TYPE';
    default:
      return status >= 500 ? 'INTERNAL' : 'INVALID_REQUEST';
  }
}

export type HttpErrorCode =
  | 'INVALID_REQUEST'
  | 'CLIENT_CERT_REQUIRED'
  | 'CLIENT_CERT_UNTRUSTED'
  | 'CLIENT_CERT_WRONG_USAGE'
  | 'CLIENT_CERT_REVOKED'
  | 'BODY_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'NOT_FOUND'
  | 'RATE_LIMITED';

/** A client fault raised by the HTTP layer itself (validation, TLS identity, limits). */
export class HttpError extends SignetError<HttpErrorCode> {}
