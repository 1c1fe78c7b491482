/** Errors raised while reading and validating `signet.yaml` and the files it names. */
import { SignetError } from '../errors/signet-error.js';

export type ConfigErrorCode = 'CONFIG_INVALID' | 'CONFIG_UNREADABLE' | 'CONFIG_SECRET_MISSING';

export class ConfigError extends SignetError<ConfigErrorCode> {
  /** Every problem found, one line each (`path: message`), so an operator fixes them in one go. */
  readonly problems: readonly string[];

  constructor(code: ConfigErrorCode, message: string, problems: readonly string[] = [], options?: { cause?: unknown }) {
    super(code, problems.length > 0 ? `${message}\n  - ${problems.join('\n  - ')}` : message, options);
    this.problems = problems;
  }
}
