/** Errors of the command-line interface: usage mistakes and refused operations. */
import { SignetError } from '../errors/signet-error.js';

export type CliErrorCode =
  | 'USAGE'
  | 'INIT_EXISTS'
  | 'REQUEST_FAILED'
  | 'FILE_UNREADABLE'
  /** The proposal's content does not hash to what the service records: nothing was approved. */
  | 'PROPOSAL_MISMATCH';

export class CliError extends SignetError<CliErrorCode> {}
