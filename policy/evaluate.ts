/**
 * The policy decision: a pure function of (policy, client certificate, pipeline
 * identity, request, time). No I/O, no clock of its own, no randomness, so it can be
 * tested exhaustively. It collects every reason for a denial, not just the first, so
 * the caller (and the audit log) can say exactly why a request was refused.
 *
 * Rate and usage limits need shared counters; the decision names the limits that
 * apply (`limits`) and the caller consumes them atomically after an allow.
 */
import type { DigestAlgorithm } from '../signer/algorithms.js';
import type { SignatureFormat } from '../signer/formats.js';
import { claimMatches } from './claims.js';
import { tokenSource, type ManifestReading } from './manifest-binding.js';
import { normalizeDistinguishedName, type IdentityRule, type PolicyDocument, type ProjectPolicy, type TimeWindow, type Weekday } from './schema.js';

export type DenyReasonCode =
  | 'PROJECT_UNKNOWN'
  | 'KEY_NOT_ALLOWED'
  | 'NO_DEFAULT_KEY'
  | 'CLIENT_NOT_ALLOWED'
  | 'CLIENT_KEY_NOT_ALLOWED'
  | 'IDENTITY_REQUIRED'
  | 'IDENTITY_NOT_ALLOWED'
  | 'IDENTITY_KEY_NOT_ALLOWED'
  | 'DIGEST_ALGORITHM_NOT_ALLOWED'
  | 'FORMAT_NOT_ALLOWED'
  | 'OUTSIDE_TIME_WINDOW'
  | 'MANIFEST_REQUIRED'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_REPOSITORY_MISMATCH'
  | 'MANIFEST_COMMIT_MISMATCH'
  | 'RATE_LIMITED'
  | 'USAGE_LIMIT_REACHED'
  /** Not the policy's: an officer froze signing (keyrotation/freeze.ts); logged as a deny like the others. */
  | 'SIGNING_FROZEN';

export interface DenyReason {
  readonly code: DenyReasonCode;
  /** Names claims, keys and limits; never echoes claim values (they are CI users' data). */
  readonly message: string;
}

export interface PipelineIdentity {
  /** The configured issuer name that verified the token. */
  readonly issuerName: string;
  readonly claims: Readonly<Record<string, unknown>>;
}

export interface SignDecisionInput {
  readonly project: string;
  /** Key name asked for (a version id is reduced to its name by the caller), or undefined for the default key. */
  readonly keyName: string | undefined;
  /** Lowercase hex SHA-256 fingerprint of the verified client certificate. */
  readonly clientFingerprint: string;
  /** Its subject and issuer DNs as Node prints them; absent when unknown. */
  readonly clientSubject?: string;
  readonly clientIssuer?: string;
  /** The verified pipeline identity; undefined when the request carried no token. */
  readonly identity: PipelineIdentity | undefined;
  readonly digestAlgorithm: DigestAlgorithm;
  readonly format: SignatureFormat;
  /** The manifest's source, read from the payload; undefined when the request sent only a digest. */
  readonly manifest: ManifestReading | undefined;
  readonly now: Date;
}

export interface ApplicableLimits {
  readonly projectPerMinute: number | undefined;
  readonly identityPerMinute: number | undefined;
  /** For the key being used, when the project limits its usage. */
  readonly keyUsage: number | undefined;
}

export type SignDecision =
  | { readonly allow: true; readonly keyName: string; readonly identityRule: number; readonly limits: ApplicableLimits; readonly reasons: readonly [] }
  | { readonly allow: false; readonly keyName: string | undefined; readonly reasons: readonly DenyReason[] };

export function decideSignRequest(policy: PolicyDocument, input: SignDecisionInput): SignDecision {
  const project = Object.hasOwn(policy.projects, input.project) ? policy.projects[input.project] : undefined;
  if (project === undefined) {
    return deny(input.keyName, [{ code: 'PROJECT_UNKNOWN', message: 'the project is not in the policy' }]);
  }
  const reasons: DenyReason[] = [];
  const keyName = input.keyName ?? project.defaultKey;
  if (keyName === undefined) {
    reasons.push({ code: 'NO_DEFAULT_KEY', message: 'no key named and the project has no default key' });
  } else if (!project.keys.includes(keyName)) {
    reasons.push({ code: 'KEY_NOT_ALLOWED', message: `key "${keyName}" is not allowed for this project` });
  }

  // Every rule naming this certificate counts, whatever their order: the client may use
  // a key if any of them allows it.
  const subject = input.clientSubject === undefined ? undefined : normalizeDistinguishedName(input.clientSubject);
  const issuer = input.clientIssuer === undefined ? undefined : normalizeDistinguishedName(input.clientIssuer);
  const clientRules = project.clients.filter(
    (c) =>
      (c.fingerprint === undefined || c.fingerprint === input.clientFingerprint) &&
      (c.subject === undefined || c.subject === subject) &&
      (c.issuer === undefined || c.issuer === issuer),
  );
  if (clientRules.length === 0) {
    reasons.push({ code: 'CLIENT_NOT_ALLOWED', message: 'client certificate is not allowed for this project' });
  } else if (keyName !== undefined && !clientRules.some((c) => c.keys === undefined || c.keys.includes(keyName))) {
    reasons.push({ code: 'CLIENT_KEY_NOT_ALLOWED', message: `client certificate may not use key "${keyName}"` });
  }

  const identity = matchIdentity(project.identities, input.identity, keyName);
  reasons.push(...identity.reasons);

  if (!project.digestAlgorithms.includes(input.digestAlgorithm)) {
    reasons.push({ code: 'DIGEST_ALGORITHM_NOT_ALLOWED', message: `digest algorithm ${input.digestAlgorithm} is not allowed` });
  }
  if (!project.formats.includes(input.format)) {
    reasons.push({ code: 'FORMAT_NOT_ALLOWED', message: `format ${input.format} is not allowed` });
  }
  if (project.timeWindows !== undefined && !project.timeWindows.some((w) => insideWindow(w, input.now))) {
    reasons.push({ code: 'OUTSIDE_TIME_WINDOW', message: 'signing is not allowed at this time for this project' });
  }
  if (project.requireManifestBinding) reasons.push(...manifestBindingReasons(input));

  if (reasons.length > 0 || keyName === undefined || identity.rule === undefined) return deny(keyName, reasons);
  return { allow: true, keyName, identityRule: identity.rule, limits: applicableLimits(project, keyName), reasons: [] };
}

function deny(keyName: string | undefined, reasons: DenyReason[]): SignDecision {
  return { allow: false, keyName, reasons };
}

/** The first identity rule that allows this identity (and key), or why none does. */
function matchIdentity(
  rules: readonly IdentityRule[],
  identity: PipelineIdentity | undefined,
  keyName: string | undefined,
): { rule: number | undefined; reasons: DenyReason[] } {
  if (identity === undefined) {
    return { rule: undefined, reasons: [{ code: 'IDENTITY_REQUIRED', message: 'a pipeline id token is required' }] };
  }
  const mismatches: string[] = [];
  let keyRefused = false;
  for (const [index, rule] of rules.entries()) {
    if (rule.issuer !== identity.issuerName) {
      mismatches.push(`rule ${index}: issuer`);
      continue;
    }
    const failed = Object.entries(rule.claims)
      .filter(([claim, matcher]) => !claimMatches(matcher, Object.hasOwn(identity.claims, claim) ? identity.claims[claim] : undefined))
      .map(([claim]) => claim);
    if (failed.length > 0) {
      mismatches.push(`rule ${index}: ${failed.join(', ')}`);
      continue;
    }
    if (keyName !== undefined && rule.keys !== undefined && !rule.keys.includes(keyName)) {
      keyRefused = true;
      continue;
    }
    return { rule: index, reasons: [] };
  }
  if (keyRefused) {
    return { rule: undefined, reasons: [{ code: 'IDENTITY_KEY_NOT_ALLOWED', message: `this pipeline identity may not use key "${keyName ?? ''}"` }] };
  }
  const detail = mismatches.length === 0 ? 'the project allows no pipeline identity' : `no identity rule matches (${mismatches.join('; ')})`;
  return { rule: undefined, reasons: [{ code: 'IDENTITY_NOT_ALLOWED', message: detail }] };
}

function manifestBindingReasons(input: SignDecisionInput): DenyReason[] {
  if (input.manifest === undefined) {
    return [{ code: 'MANIFEST_REQUIRED', message: 'this project requires the manifest itself (payload), not only its digest' }];
  }
  if (!input.manifest.ok) return [{ code: 'MANIFEST_INVALID', message: input.manifest.problem }];
  if (input.identity === undefined) return [];
  const manifest = input.manifest.source;
  const token = tokenSource(input.identity.claims);
  const reasons: DenyReason[] = [];
  if (manifest.repository === undefined || token.repository === undefined || manifest.repository !== token.repository) {
    reasons.push({ code: 'MANIFEST_REPOSITORY_MISMATCH', message: "the manifest's source repository is not the token's repository" });
  }
  if (manifest.commit === undefined || token.commit === undefined || manifest.commit !== token.commit) {
    reasons.push({ code: 'MANIFEST_COMMIT_MISMATCH', message: "the manifest's source commit is not the token's sha" });
  }
  return reasons;
}

const WEEKDAYS: readonly Weekday[] = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function insideWindow(window: TimeWindow, now: Date): boolean {
  const day = WEEKDAYS[now.getUTCDay()];
  if (day === undefined || !window.days.includes(day)) return false;
  const minute = `${String(now.getUTCHours()).padStart(2, '0')}:${String(now.getUTCMinutes()).padStart(2, '0')}`;
  return minute >= window.from && minute < window.to;
}

function applicableLimits(project: ProjectPolicy, keyName: string): ApplicableLimits {
  const usage = project.limits.keyUsage;
  return {
    projectPerMinute: project.limits.projectPerMinute,
    identityPerMinute: project.limits.identityPerMinute,
    keyUsage: usage !== undefined && Object.hasOwn(usage, keyName) ? usage[keyName] : undefined,
  };
}
