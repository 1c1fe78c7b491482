/** Errors about signing keys and their lifecycle. */
import { SignetError } from '../errors/signet-error.js';

export type KeyErrorCode = 'KEY_NOT_FOUND' | 'KEY_NOT_ACTIVE' | 'KEY_EXISTS' | 'KEY_ID_INVALID' | 'KEY_MISSING_IN_HSM';

export class KeyError extends SignetError<KeyErrorCode> {}
