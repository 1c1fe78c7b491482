/** Errors of the command-line interface: usage mistakes and refused operations. */
import { SignetError } from '../errors/signet-error.js';

export type CliErrorCode = 'USAGE' | 'INIT_EXISTS' | 'REQUEST_FAILED' | 'FILE_UNREADABLE';

export class CliError extends SignetError<CliErrorCode> {}
