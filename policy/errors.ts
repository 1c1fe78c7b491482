/** Errors of the policy area: loading a policy file, and denials. */
import { SignetError } from '../errors/signet-error.js';

export type PolicyErrorCode =
  | 'POLICY_INVALID'
  | 'POLICY_UNREADABLE'
  /**
   * The policy file is not the one a quorum of security officers approved (a
   * `set-policy` proposal): a reload of it is refused, and the signing path refuses
   * every request while the policy in force differs from the approved one.
   */
  | 'POLICY_NOT_APPROVED';

export class PolicyError extends SignetError<PolicyErrorCode> {
  readonly problems: readonly string[];

  constructor(code: PolicyErrorCode, message: string, problems: readonly string[] = [], options?: { cause?: unknown }) {
    super(code, problems.length > 0 ? `${message}\n  - ${problems.join('\n  - ')}` : message, options);
    this.problems = problems;
  }
}
