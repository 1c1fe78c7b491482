/** Errors of envelope assembly (DSSE, CMS, Sigstore bundles and trusted roots). */
import { SignetError } from '../errors/signet-error.js';

export type FormatErrorCode =
  /** This key algorithm (or this key + digest combination) cannot be expressed in the format. */
  | 'FORMAT_KEY_UNSUPPORTED'
  /** An input to a builder is malformed (empty payload, bad digest length, unknown entry kind, …). */
  | 'FORMAT_INPUT_INVALID'
  /** A certificate cannot be parsed, does not hold the signing key, or does not chain as given. */
  | 'FORMAT_CERTIFICATE_INVALID'
  /** The log receipt does not match what is being wrapped (other signature, digest, leaf or no promise). */
  | 'FORMAT_RECEIPT_MISMATCH';

export class FormatError extends SignetError<FormatErrorCode> {}
