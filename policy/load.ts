/**
 * Reads and validates a policy file. The policy's version is the SHA-256 of the exact
 * file bytes, so a decision can name the policy it was made under.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { formatZodIssues, parseYamlDocument } from '../config/load.js';
import { PolicyError } from './errors.js';
import { policySchema, type PolicyDocument } from './schema.js';

export interface LoadedPolicy {
  readonly document: PolicyDocument;
  /** Hex SHA-256 of the policy file's bytes. */
  readonly sha256: string;
}

/**
 * Whether a policy may be in force: before security officers approved one (`set-policy`,
 * `approvedSha256` null) the operator's file is; after, only the approved one.
 */
export function isApprovedPolicy(sha256: string, approvedSha256: string | null): boolean {
  return approvedSha256 === null || approvedSha256 === sha256;
}

export function loadPolicyFile(path: string): LoadedPolicy {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new PolicyError('POLICY_UNREADABLE', `cannot read policy file ${path}`, [], { cause: error });
  }
  return parsePolicy(bytes, path);
}

export function parsePolicy(bytes: Buffer, name: string): LoadedPolicy {
  let raw: unknown;
  try {
    raw = parseYamlDocument(bytes.toString('utf8'), `policy file ${name}`);
  } catch (error) {
    throw new PolicyError('POLICY_INVALID', `policy file ${name} is not valid YAML`, [], { cause: error });
  }
  const parsed = policySchema.safeParse(raw);
  if (!parsed.success) {
    throw new PolicyError('POLICY_INVALID', `invalid policy file ${name}`, formatZodIssues(parsed.error));
  }
  return Object.freeze({
    document: parsed.data,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  });
}
