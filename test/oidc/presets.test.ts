/** Preset claim names, issuer URLs and the audit-log summary of a verified identity. */
import { describe, expect, it } from 'vitest';
import {
  defaultIssuerUrl,
  GITHUB_ACTIONS_CLAIMS,
  GITLAB_CI_CLAIMS,
  githubEnterpriseIssuerUrl,
  gitlabIssuerUrl,
  identitySummary,
  PRESET_CLAIMS,
  SUMMARY_VALUE_MAX_LENGTH,
} from '../../policy/oidc/presets.js';

describe('issuer URLs', () => {
  it('names the hosted issuers', () => {
    expect(defaultIssuerUrl('github-actions')).toBe('https://token.actions.githubusercontent.com');
    expect(defaultIssuerUrl('gitlab-ci')).toBe('https://gitlab.com');
  });

  it('builds the GitHub Enterprise Server issuer from a host', () => {
    expect(githubEnterpriseIssuerUrl('GHE.example.com')).toBe('https://ghe.example.com/_services/token');
    expect(githubEnterpriseIssuerUrl('ghe.example.com:8443')).toBe('https://ghe.example.com:8443/_services/token');
    for (const host of ['', 'https://ghe.example.com', 'ghe.example.com/path', 'user@ghe.example.com', 'ghe.example.com?x', '-ghe.example.com']) {
      expect(() => githubEnterpriseIssuerUrl(host)).toThrow(TypeError);
    }
  });

  it('uses the GitLab instance URL without a trailing slash', () => {
    expect(gitlabIssuerUrl('https://gitlab.example.com/')).toBe('https://gitlab.example.com');
    expect(gitlabIssuerUrl('https://example.com/gitlab/')).toBe('https://example.com/gitlab');
    for (const url of ['http://gitlab.example.com', 'gitlab.example.com', 'https://gitlab.example.com/?a=1', 'https://u:p@gitlab.example.com']) {
      expect(() => gitlabIssuerUrl(url)).toThrow(TypeError);
    }
  });
});

describe('claim names', () => {
  it('lists the pipeline claims of each preset', () => {
    expect(GITHUB_ACTIONS_CLAIMS).toContain('job_workflow_ref');
    expect(GITHUB_ACTIONS_CLAIMS).toContain('repository_id');
    expect(GITLAB_CI_CLAIMS).toContain('ci_config_ref_uri');
    expect(GITLAB_CI_CLAIMS).toContain('project_id');
    expect(PRESET_CLAIMS.generic).toEqual([]);
  });
});

describe('identitySummary', () => {
  const github = {
    iss: 'https://token.actions.githubusercontent.com',
    sub: 'repo:example/demo:ref:refs/heads/main',
    aud: 'signet',
    repository: 'example/demo',
    repository_id: '123',
    ref: 'refs/heads/main',
    sha: 'abc',
    job_workflow_ref: 'example/demo/.github/workflows/release.yml@refs/heads/main',
    environment: 'production',
    runner_environment: 'github-hosted',
    event_name: 'push',
    actor: 'octocat',
    jti: 'j',
  };

  it('keeps the audit claims of GitHub Actions tokens', () => {
    expect(identitySummary('github-actions', github)).toEqual({
      iss: github.iss,
      sub: github.sub,
      repository: 'example/demo',
      repository_id: '123',
      ref: 'refs/heads/main',
      sha: 'abc',
      job_workflow_ref: github.job_workflow_ref,
      environment: 'production',
      runner_environment: 'github-hosted',
      event_name: 'push',
    });
  });

  it('keeps only iss and sub for generic issuers', () => {
    expect(identitySummary('generic', github)).toEqual({ iss: github.iss, sub: github.sub });
  });

  it('keeps GitLab pipeline claims', () => {
    const summary = identitySummary('gitlab-ci', { iss: 'https://gitlab.com', sub: 'project_path:g/p:ref_type:branch:ref:main', project_path: 'g/p', project_id: '42', ref_protected: 'true', user_email: 'a@b' });
    expect(summary).toEqual({ iss: 'https://gitlab.com', sub: 'project_path:g/p:ref_type:branch:ref:main', project_path: 'g/p', project_id: '42', ref_protected: 'true' });
  });

  it('drops non-strings, inherited members, and bounds lengths without splitting surrogate pairs', () => {
    const claims = Object.create({ repository: 'inherited' }) as Record<string, unknown>;
    Object.assign(claims, { sub: 'x'.repeat(10_000), repository_id: 123, ref: { nested: true }, sha: '😀'.repeat(200) });
    const summary = identitySummary('github-actions', claims);
    expect(Object.keys(summary).sort()).toEqual(['sha', 'sub']);
    expect(summary.sub).toHaveLength(SUMMARY_VALUE_MAX_LENGTH);
    expect(summary.sub!.endsWith('…')).toBe(true);
    expect(summary.sha!.length).toBeLessThanOrEqual(SUMMARY_VALUE_MAX_LENGTH);
    expect(summary.sha).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/);
  });
});
