/** Errors of the transparency log. */
import { SignetError } from '../errors/signet-error.js';

export type LogErrorCode =
  /** The stored tree would make a checkpoint inconsistent with an earlier one: nothing is signed. */
  | 'LOG_INCONSISTENT'
  /** The log could not record an entry or a checkpoint: the request fails closed. */
  | 'LOG_UNAVAILABLE'
  | 'LOG_ENTRY_NOT_FOUND'
  | 'LOG_PROOF_INVALID_REQUEST';

export class LogError extends SignetError<LogErrorCode> {}
