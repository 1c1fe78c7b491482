/**
 * Errors of the PKCS#11 adapter.
 *
 * pkcs11js reports a failed Cryptoki call as an Error whose message is the CK_RV name
 * (`CKR_PIN_INCORRECT`) and whose `code` is its numeric value. Those errors never leave
 * `signer/`: every public entry point translates them here into an `HsmError` with a
 * stable `code` that callers (and the HTTP layer's one status table) can rely on.
 *
 * Messages are composed here from fixed text, the CK_RV name and non-secret context
 * (token label, key id). They never carry the PIN or an object/session handle: handles
 * are process-local numbers that mean nothing to an operator and help an attacker
 * probing the module. The foreign error is kept as `cause` for the service log.
 */
import { SignetError } from '../errors/signet-error.js';

export const HSM_ERROR_CODES = [
  /** The PKCS#11 module file does not exist (or the path is not absolute). */
  'HSM_MODULE_NOT_FOUND',
  /** No present token carries the configured label (and serial). */
  'HSM_TOKEN_NOT_FOUND',
  /** Several present tokens carry the configured label: set the serial too. */
  'HSM_TOKEN_AMBIGUOUS',
  'HSM_PIN_MISSING',
  'HSM_PIN_INCORRECT',
  'HSM_PIN_LOCKED',
  /** No key pair with this CKA_ID, or it is not of the algorithm the caller named. */
  'HSM_KEY_NOT_FOUND',
  /** The token lacks a mechanism / key type / curve we need, or returned a form we refuse. */
  'HSM_UNSUPPORTED',
  /** Sessions died and recovering them (re-open, log in, retry once) did not help. */
  'HSM_SESSION_LOST',
  'HSM_SIGN_FAILED',
  'HSM_KEYGEN_FAILED',
  /** The adapter was closed; no new operation is accepted. */
  'HSM_POOL_CLOSED',
  /** The module could not be loaded/initialised, or no session became free in time. */
  'HSM_UNAVAILABLE',
  /** The caller passed a malformed key reference, digest, label or message. */
  'HSM_INVALID_INPUT',
] as const;
export type HsmErrorCode = (typeof HSM_ERROR_CODES)[number];

export class HsmError extends SignetError<HsmErrorCode> {
  /** The CK_RV name behind this error, when it came from the module (for logs and retry decisions). */
  readonly ckr: string | undefined;

  constructor(code: HsmErrorCode, message: string, options?: { cause?: unknown; ckr?: string | undefined }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.ckr = options?.ckr;
  }
}

export function isHsmError(value: unknown, code?: HsmErrorCode): value is HsmError {
  return value instanceof HsmError && (code === undefined || value.code === code);
}

const CKR_NAME = /\b(CKR_[A-Z0-9_]+)\b/;

/**
 * The CK_RV name carried by an error raised by pkcs11js (or by an `HsmError` that kept
 * it), or undefined when the error did not come from a Cryptoki return value.
 */
export function ckrNameOf(error: unknown): string | undefined {
  if (error instanceof HsmError) return error.ckr;
  if (!(error instanceof Error)) return undefined;
  const match = CKR_NAME.exec(error.message);
  if (match?.[1] !== undefined) return match[1];
  const code = (error as { code?: unknown }).code;
  // pkcs11js names every standard CK_RV; a bare number means a vendor-defined value.
  return error.name === 'Pkcs11Error' && typeof code === 'number' && code !== 0
    ? `CKR_0x${code.toString(16).padStart(8, '0')}`
    : undefined;
}

/**
 * CK_RV values whose meaning does not depend on the operation (PKCS#11 v2.40 §5.1
 * lists the universal and session-related return values). Anything not listed maps
 * to the operation's own failure code.
 */
const CKR_TO_CODE: Readonly<Record<string, HsmErrorCode>> = Object.freeze({
  CKR_PIN_INCORRECT: 'HSM_PIN_INCORRECT',
  CKR_PIN_INVALID: 'HSM_PIN_INCORRECT',
  CKR_PIN_LEN_RANGE: 'HSM_PIN_INCORRECT',
  CKR_PIN_LOCKED: 'HSM_PIN_LOCKED',
  CKR_PIN_EXPIRED: 'HSM_PIN_LOCKED',

  CKR_SESSION_HANDLE_INVALID: 'HSM_SESSION_LOST',
  CKR_SESSION_CLOSED: 'HSM_SESSION_LOST',
  CKR_USER_NOT_LOGGED_IN: 'HSM_SESSION_LOST',
  CKR_DEVICE_REMOVED: 'HSM_SESSION_LOST',
  CKR_TOKEN_NOT_PRESENT: 'HSM_SESSION_LOST',
  CKR_DEVICE_ERROR: 'HSM_SESSION_LOST',

  CKR_CRYPTOKI_NOT_INITIALIZED: 'HSM_UNAVAILABLE',
  CKR_TOKEN_NOT_RECOGNIZED: 'HSM_UNAVAILABLE',
  CKR_SLOT_ID_INVALID: 'HSM_UNAVAILABLE',
  CKR_SESSION_COUNT: 'HSM_UNAVAILABLE',
  CKR_DEVICE_MEMORY: 'HSM_UNAVAILABLE',
  CKR_HOST_MEMORY: 'HSM_UNAVAILABLE',

  CKR_KEY_HANDLE_INVALID: 'HSM_KEY_NOT_FOUND',
  CKR_OBJECT_HANDLE_INVALID: 'HSM_KEY_NOT_FOUND',

  CKR_MECHANISM_INVALID: 'HSM_UNSUPPORTED',
  CKR_MECHANISM_PARAM_INVALID: 'HSM_UNSUPPORTED',
  CKR_FUNCTION_NOT_SUPPORTED: 'HSM_UNSUPPORTED',
  CKR_KEY_TYPE_INCONSISTENT: 'HSM_UNSUPPORTED',
  CKR_KEY_SIZE_RANGE: 'HSM_UNSUPPORTED',
  CKR_KEY_FUNCTION_NOT_PERMITTED: 'HSM_UNSUPPORTED',
  CKR_DOMAIN_PARAMS_INVALID: 'HSM_UNSUPPORTED',
  CKR_CURVE_NOT_SUPPORTED: 'HSM_UNSUPPORTED',

  CKR_DATA_LEN_RANGE: 'HSM_INVALID_INPUT',
  CKR_DATA_INVALID: 'HSM_INVALID_INPUT',
});

/**
 * Translates whatever a PKCS#11 call threw into an `HsmError`. An `HsmError` passes
 * through unchanged; a Cryptoki error is mapped by its CK_RV; anything else (a
 * TypeError from the binding, a bug) becomes `fallback`.
 *
 * @param operation fixed, non-secret words for the message, e.g. "signing with key 0a1b…".
 */
export function hsmErrorFrom(error: unknown, fallback: HsmErrorCode, operation: string): HsmError {
  if (error instanceof HsmError) return error;
  const ckr = ckrNameOf(error);
  const code = ckr === undefined ? fallback : (CKR_TO_CODE[ckr] ?? fallback);
  const message = ckr === undefined ? `${operation} failed` : `${operation} failed: ${ckr}`;
  return new HsmError(code, message, { cause: error, ckr });
}
