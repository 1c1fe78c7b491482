/**
 * Errors of the code-signing CA (ca/). Messages name CA ids, key ids and serial
 * numbers, never HSM key ids or handles; a foreign error stays in `cause`.
 */
import { SignetError } from '../errors/signet-error.js';

export const CA_ERROR_CODES = [
  /** No active root or intermediate: run `signet ca init` (or `signet init` in development). */
  'CA_NOT_INITIALISED',
  /** `ca init` found a hierarchy already there. */
  'CA_EXISTS',
  /** A CA key pair recorded in storage is not in the token. */
  'CA_KEY_MISSING',
  /** The key version cannot get a code-signing certificate (unknown, compromised, retired, or the log key). */
  'CA_KEY_NOT_ELIGIBLE',
  /** No certificate with that serial number (or none for that key). */
  'CA_CERTIFICATE_NOT_FOUND',
  'CA_ALREADY_REVOKED',
  /** What the HSM signed does not verify with the CA's public key: nothing was stored. */
  'CA_SIGNATURE_INVALID',
  /** A caller passed something malformed (a reason name, a validity, a serial number). */
  'CA_INVALID_INPUT',
] as const;
export type CaErrorCode = (typeof CA_ERROR_CODES)[number];

export class CaError extends SignetError<CaErrorCode> {}

export function isCaError(value: unknown, code?: CaErrorCode): value is CaError {
  return value instanceof CaError && (code === undefined || value.code === code);
}
