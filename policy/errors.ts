/** Errors of the policy area: loading a policy file, and denials. */
import { SignetError } from '../errors/signet-error.js';

export type PolicyErrorCode = 'POLICY_INVALID' | 'POLICY_UNREADABLE';

export class PolicyError extends SignetError<PolicyErrorCode> {
  readonly problems: readonly string[];

  constructor(code: PolicyErrorCode, message: string, problems: readonly string[] = [], options?: { cause?: unknown }) {
    super(code, problems.length > 0 ? `${message}\n  - ${problems.join('\n  - ')}` : message, options);
    this.problems = problems;
  }
}
