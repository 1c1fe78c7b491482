/**
 * Identity constraints (`--repository`, `--workflow`, `--ref`) against the pipeline
 * identity in the logged decision entry (log/entries.ts `signet.decision/v1`, the
 * claims policy/oidc/presets.ts keeps). The same names work for both CI presets:
 *
 * | constraint | GitHub Actions claim | GitLab CI claim     | match                                  |
 * |------------|----------------------|---------------------|----------------------------------------|
 * | repository | repository           | project_path        | exact                                  |
 * | workflow   | job_workflow_ref     | ci_config_ref_uri   | exact, or the part before its last "@" |
 * | ref        | ref                  | ref                 | glob (policy/claims.ts: `*` within one path segment, `**` across) |
 *
 * Fail closed: a constraint asked for with no logged identity to check it against is
 * a refusal, never a pass.
 */
import { globToRegExp } from '../policy/claims.js';
import { quoted, refuse, type LoggedIdentity } from './result.js';

export interface IdentityConstraints {
  readonly repository?: string;
  readonly workflow?: string;
  /** A glob, e.g. `refs/tags/v*`. */
  readonly ref?: string;
}

function claimOf(identity: LoggedIdentity, names: readonly string[]): string | undefined {
  for (const name of names) {
    const value = identity.claims[name];
    if (value !== undefined) return value;
  }
  return undefined;
}

function workflowMatches(logged: string, required: string): boolean {
  if (logged === required) return true;
  const at = logged.lastIndexOf('@');
  return at > 0 && logged.slice(0, at) === required;
}

export function hasConstraints(constraints: IdentityConstraints): boolean {
  return constraints.repository !== undefined || constraints.workflow !== undefined || constraints.ref !== undefined;
}

export function checkIdentity(constraints: IdentityConstraints, identity: LoggedIdentity | null): void {
  if (!hasConstraints(constraints)) return;
  if (identity === null) {
    throw refuse(
      'identity-mismatch',
      'IDENTITY_UNVERIFIABLE',
      'identity constraints were given but the receipt does not carry the logged decision entry (log.decision), so the signing identity cannot be checked',
    );
  }
  const checks: { name: string; claims: readonly string[]; required: string | undefined; matches: (logged: string, required: string) => boolean; code: string }[] = [
    { name: 'repository', claims: ['repository', 'project_path'], required: constraints.repository, matches: (a, b) => a === b, code: 'REPOSITORY_MISMATCH' },
    { name: 'workflow', claims: ['job_workflow_ref', 'ci_config_ref_uri'], required: constraints.workflow, matches: workflowMatches, code: 'WORKFLOW_MISMATCH' },
    { name: 'ref', claims: ['ref'], required: constraints.ref, matches: (a, b) => globToRegExp(b).test(a), code: 'REF_MISMATCH' },
  ];
  for (const check of checks) {
    if (check.required === undefined) continue;
    const logged = claimOf(identity, check.claims);
    if (logged === undefined) {
      throw refuse('identity-mismatch', check.code, `the logged identity has no ${check.name} (${check.claims.join(' or ')}) to match ${quoted(check.required)}`);
    }
    if (!check.matches(logged, check.required)) {
      throw refuse('identity-mismatch', check.code, `the release was signed for ${check.name} ${quoted(logged)}, not ${quoted(check.required)}`);
    }
  }
}
