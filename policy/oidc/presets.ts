/**
 * What Signet knows about the id tokens of the CI platforms it has presets for: their
 * issuer URLs, the claims that describe a pipeline, and which of those go into the
 * audit log. Pure: no I/O.
 *
 * Sources: GitHub, "About security hardening with OpenID Connect" (token claims, and
 * `https://HOST/_services/token` as the GitHub Enterprise Server issuer); GitLab,
 * "OpenID Connect (OIDC) Authentication Using ID Tokens" (`id_tokens` claims; the
 * issuer is the instance URL).
 */
import type { IssuerPreset } from './config.js';

/** Claims of a GitHub Actions id token that describe the workflow run (beyond iss/sub/aud/jti/iat/nbf/exp). */
export const GITHUB_ACTIONS_CLAIMS = [
  'repository',
  'repository_id',
  'repository_owner',
  'repository_owner_id',
  'job_workflow_ref',
  'job_workflow_sha',
  'workflow_ref',
  'ref',
  'ref_type',
  'ref_protected',
  'sha',
  'environment',
  'runner_environment',
  'event_name',
  'actor',
  'actor_id',
  'run_id',
] as const;

/** Claims of a GitLab CI id token that describe the pipeline job. */
export const GITLAB_CI_CLAIMS = [
  'project_id',
  'project_path',
  'namespace_id',
  'namespace_path',
  'ref',
  'ref_type',
  'ref_protected',
  'pipeline_source',
  'ci_config_ref_uri',
  'ci_config_sha',
  'sha',
  'environment',
  'runner_environment',
  'user_id',
] as const;

/** Pipeline claims per preset; a generic issuer promises none beyond the registered ones. */
export const PRESET_CLAIMS: Readonly<Record<IssuerPreset, readonly string[]>> = {
  'github-actions': GITHUB_ACTIONS_CLAIMS,
  'gitlab-ci': GITLAB_CI_CLAIMS,
  generic: [],
};

/**
 * Claims recorded in the audit log per preset: enough to tell which repository,
 * revision and workflow asked, not the whole token. Identifiers (`repository_id`,
 * `project_id`) are listed because names can be reused after a rename or deletion.
 */
const SUMMARY_CLAIMS: Readonly<Record<IssuerPreset, readonly string[]>> = {
  'github-actions': ['repository', 'repository_id', 'ref', 'sha', 'job_workflow_ref', 'environment', 'runner_environment', 'event_name'],
  'gitlab-ci': ['project_path', 'project_id', 'ref', 'ref_type', 'ref_protected', 'sha', 'ci_config_ref_uri', 'environment', 'runner_environment', 'pipeline_source'],
  generic: [],
};

/** Longest claim value copied into a summary, in UTF-16 code units. */
export const SUMMARY_VALUE_MAX_LENGTH = 256;

export const GITHUB_ACTIONS_ISSUER = 'https://token.actions.githubusercontent.com';
export const GITLAB_COM_ISSUER = 'https://gitlab.com';

/** The issuer of the platform's hosted service (github.com, gitlab.com). */
export function defaultIssuerUrl(preset: Exclude<IssuerPreset, 'generic'>): string {
  switch (preset) {
    case 'github-actions':
      return GITHUB_ACTIONS_ISSUER;
    case 'gitlab-ci':
      return GITLAB_COM_ISSUER;
  }
}

/** `host[:port]`: a DNS name or IPv4 address, nothing that could add a path or credentials. */
const HOST = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::\d{1,5})?$/;

/** The issuer of GitHub Enterprise Server at `host` (`github.example.com`): `https://HOST/_services/token`. */
export function githubEnterpriseIssuerUrl(host: string): string {
  if (!HOST.test(host)) throw new TypeError('GitHub Enterprise Server host must be a host name, optionally with a port');
  return `https://${host.toLowerCase()}/_services/token`;
}

/**
 * The issuer of a GitLab instance: its external URL (`https://gitlab.example.com`, or
 * with a relative URL root), without a trailing slash, as GitLab puts it in `iss`.
 */
export function gitlabIssuerUrl(instanceUrl: string): string {
  let url: URL;
  try {
    url = new URL(instanceUrl);
  } catch {
    throw new TypeError('GitLab instance URL is not a URL');
  }
  if (url.protocol !== 'https:') throw new TypeError('GitLab instance URL must be https');
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new TypeError('GitLab instance URL must not have a query, fragment or credentials');
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function bounded(value: string): string {
  if (value.length <= SUMMARY_VALUE_MAX_LENGTH) return value;
  // Do not split a surrogate pair at the cut.
  const cut = /[\uD800-\uDBFF]/.test(value.charAt(SUMMARY_VALUE_MAX_LENGTH - 2)) ? SUMMARY_VALUE_MAX_LENGTH - 2 : SUMMARY_VALUE_MAX_LENGTH - 1;
  return `${value.slice(0, cut)}…`;
}

/**
 * The claims of a verified token worth an audit-log line: `iss` and `sub` always, plus
 * the preset's pipeline claims. Only string values are kept (every summary claim is a
 * string on both platforms), each cut to a bounded length, so a token cannot blow up
 * or reshape the log.
 */
export function identitySummary(preset: IssuerPreset, claims: Readonly<Record<string, unknown>>): Record<string, string> {
  const summary: Record<string, string> = {};
  for (const name of ['iss', 'sub', ...SUMMARY_CLAIMS[preset]]) {
    const value = Object.hasOwn(claims, name) ? claims[name] : undefined;
    if (typeof value === 'string') summary[name] = bounded(value);
  }
  return summary;
}
