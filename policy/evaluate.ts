/**
 * The policy decision: a pure function of (policy, client identity, request). No I/O,
 * no clock, no randomness, so it can be tested exhaustively. It collects every reason
 * for a denial, not just the first, so the caller (and the audit log) can say exactly
 * why a request was refused.
 */
import type { DigestAlgorithm } from '../signer/algorithms.js';
import type { SignatureFormat } from '../signer/formats.js';
import type { PolicyDocument } from './schema.js';

export type DenyReasonCode =
  | 'PROJECT_UNKNOWN'
  | 'KEY_NOT_ALLOWED'
  | 'NO_DEFAULT_KEY'
  | 'CLIENT_NOT_ALLOWED'
  | 'CLIENT_KEY_NOT_ALLOWED'
  | 'DIGEST_ALGORITHM_NOT_ALLOWED'
  | 'FORMAT_NOT_ALLOWED';

export interface DenyReason {
  readonly code: DenyReasonCode;
  readonly message: string;
}

export interface SignDecisionInput {
  readonly project: string;
  /** Key name asked for (a version id is reduced to its name by the caller), or undefined for the default key. */
  readonly keyName: string | undefined;
  /** Lowercase hex SHA-256 fingerprint of the verified client certificate. */
  readonly clientFingerprint: string;
  readonly digestAlgorithm: DigestAlgorithm;
  readonly format: SignatureFormat;
}

export type SignDecision =
  | { readonly allow: true; readonly keyName: string; readonly reasons: readonly [] }
  | { readonly allow: false; readonly keyName: string | undefined; readonly reasons: readonly DenyReason[] };

export function decideSignRequest(policy: PolicyDocument, input: SignDecisionInput): SignDecision {
  const project = Object.hasOwn(policy.projects, input.project) ? policy.projects[input.project] : undefined;
  if (project === undefined) {
    return deny(input.keyName, [{ code: 'PROJECT_UNKNOWN', message: `project "${input.project}" is not in the policy` }]);
  }
  const reasons: DenyReason[] = [];
  const keyName = input.keyName ?? project.defaultKey;
  if (keyName === undefined) {
    reasons.push({ code: 'NO_DEFAULT_KEY', message: 'no key named and the project has no default key' });
  } else if (!project.keys.includes(keyName)) {
    reasons.push({ code: 'KEY_NOT_ALLOWED', message: `key "${keyName}" is not allowed for this project` });
  }
  const client = project.clients.find((c) => c.fingerprint === input.clientFingerprint);
  if (client === undefined) {
    reasons.push({ code: 'CLIENT_NOT_ALLOWED', message: 'client certificate is not allowed for this project' });
  } else if (keyName !== undefined && client.keys !== undefined && !client.keys.includes(keyName)) {
    reasons.push({ code: 'CLIENT_KEY_NOT_ALLOWED', message: `client certificate may not use key "${keyName}"` });
  }
  if (!project.digestAlgorithms.includes(input.digestAlgorithm)) {
    reasons.push({ code: 'DIGEST_ALGORITHM_NOT_ALLOWED', message: `digest algorithm ${input.digestAlgorithm} is not allowed` });
  }
  if (!project.formats.includes(input.format)) {
    reasons.push({ code: 'FORMAT_NOT_ALLOWED', message: `format ${input.format} is not allowed` });
  }
  if (reasons.length > 0 || keyName === undefined) return deny(keyName, reasons);
  return { allow: true, keyName, reasons: [] };
}

function deny(keyName: string | undefined, reasons: DenyReason[]): SignDecision {
  return { allow: false, keyName, reasons };
}
