/**
 * Errors of the OpenPGP format (signer/openpgp/).
 *
 * A signature the HSM returns in a form we cannot use, or that does not verify, is an
 * `HsmError` `HSM_SIGN_FAILED` (signer/errors.ts), as for every other format: the HSM
 * misbehaved and nothing is handed out. Errors raised by the HSM itself pass through
 * unchanged. Messages name the key algorithm at most, never a handle or a PIN.
 */
import { SignetError } from '../../errors/signet-error.js';

export const OPENPGP_ERROR_CODES = [
  /**
   * The key's algorithm has no OpenPGP form this service can make: RSA-PSS keys (OpenPGP
   * RSA signatures are PKCS#1 v1.5, RFC 4880 §5.2.2, and these keys are PSS-only in the
   * HSM). A client asking for `pgp` with such a key gets this code.
   */
  'FORMAT_UNSUPPORTED_FOR_KEY',
  /** The key source is inconsistent: its public key is not of its algorithm, or its creation time is unusable. */
  'OPENPGP_KEY_INVALID',
  /** The user ID is empty, too long, not well-formed UTF-8 or holds control characters. */
  'OPENPGP_USER_ID_INVALID',
] as const;
export type OpenPgpErrorCode = (typeof OPENPGP_ERROR_CODES)[number];

export class OpenPgpError extends SignetError<OpenPgpErrorCode> {}

export function isOpenPgpError(value: unknown, code?: OpenPgpErrorCode): value is OpenPgpError {
  return value instanceof OpenPgpError && (code === undefined || value.code === code);
}
