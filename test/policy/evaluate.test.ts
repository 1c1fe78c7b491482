/** The pure policy decision: table tests, claim matching, manifest binding and properties (fast-check). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { claimMatches, globToRegExp } from '../../policy/claims.js';
import { PolicyError } from '../../policy/errors.js';
import { decideSignRequest, type SignDecisionInput } from '../../policy/evaluate.js';
import { parsePolicy } from '../../policy/load.js';
import { readManifestSource, tokenSource } from '../../policy/manifest-binding.js';
import { policySchema, type PolicyDocument } from '../../policy/schema.js';
import { DIGEST_ALGORITHMS } from '../../signer/algorithms.js';
import { SIGNATURE_FORMATS } from '../../signer/formats.js';

const FP_A = 'a'.repeat(64);
const FP_B = 'b'.repeat(64);
const SHA = 'c0ffee'.padEnd(40, '0');

const githubClaims = {
  repository: 'example/web',
  repository_id: '42',
  ref: 'refs/heads/main',
  ref_protected: 'true',
  runner_environment: 'github-hosted',
  sha: SHA,
};

const policy: PolicyDocument = policySchema.parse({
  version: 1,
  projects: {
    web: {
      keys: ['web-release', 'web-nightly'],
      defaultKey: 'web-release',
      formats: ['raw', 'dsse'],
      digestAlgorithms: ['sha256'],
      clients: [{ fingerprint: FP_A }, { fingerprint: `SHA256:${FP_B.toUpperCase().match(/../g)?.join(':') ?? ''}`, keys: ['web-nightly'] }],
      identities: [
        { issuer: 'github', claims: { repository_id: 42, ref: { glob: ['refs/heads/main', 'refs/tags/v*'] }, runner_environment: 'github-hosted' } },
        { issuer: 'github', claims: { repository_id: '42', ref: { glob: 'refs/heads/**' } }, keys: ['web-nightly'] },
      ],
    },
  },
});

const allowed: SignDecisionInput = {
  project: 'web',
  keyName: undefined,
  clientFingerprint: FP_A,
  identity: { issuerName: 'github', claims: githubClaims },
  digestAlgorithm: 'sha256',
  format: 'raw',
  manifest: undefined,
  now: new Date('2026-11-25T12:00:00Z'), // a Wednesday
};

const codes = (input: SignDecisionInput, doc: PolicyDocument = policy): string[] => decideSignRequest(doc, input).reasons.map((r) => r.code);

describe('decideSignRequest', () => {
  it('allows a listed client and a matching pipeline identity with the default key', () => {
    expect(decideSignRequest(policy, allowed)).toMatchObject({ allow: true, keyName: 'web-release', identityRule: 0, reasons: [] });
  });

  it('normalises fingerprints written with colons, a prefix and upper case', () => {
    const nightly = { ...allowed, clientFingerprint: FP_B, keyName: 'web-nightly' };
    expect(decideSignRequest(policy, nightly).allow).toBe(true);
  });

  it.each([
    [{ project: 'other' }, ['PROJECT_UNKNOWN']],
    [{ project: '__proto__' }, ['PROJECT_UNKNOWN']],
    [{ keyName: 'api-release' }, ['KEY_NOT_ALLOWED']],
    [{ clientFingerprint: 'c'.repeat(64) }, ['CLIENT_NOT_ALLOWED']],
    [{ clientFingerprint: FP_B }, ['CLIENT_KEY_NOT_ALLOWED']],
    [{ identity: undefined }, ['IDENTITY_REQUIRED']],
    [{ identity: { issuerName: 'gitlab', claims: githubClaims } }, ['IDENTITY_NOT_ALLOWED']],
    [{ identity: { issuerName: 'github', claims: { ...githubClaims, repository_id: '43' } } }, ['IDENTITY_NOT_ALLOWED']],
    [{ identity: { issuerName: 'github', claims: { ...githubClaims, runner_environment: 'self-hosted' } } }, ['IDENTITY_KEY_NOT_ALLOWED']],
    [{ identity: { issuerName: 'github', claims: { ...githubClaims, ref: 'refs/heads/feature' } } }, ['IDENTITY_KEY_NOT_ALLOWED']],
    [{ identity: { issuerName: 'github', claims: { ...githubClaims, ref: 'refs/pull/1/merge' } } }, ['IDENTITY_NOT_ALLOWED']],
    [{ identity: { issuerName: 'github', claims: { ...githubClaims, ref: 'refs/tags/v1/evil' } } }, ['IDENTITY_NOT_ALLOWED']],
    [{ identity: { issuerName: 'github', claims: { ...githubClaims, repository_id: ['42'] } } }, ['IDENTITY_NOT_ALLOWED']],
    [{ digestAlgorithm: 'sha512' }, ['DIGEST_ALGORITHM_NOT_ALLOWED']],
    [{ format: 'pgp' }, ['FORMAT_NOT_ALLOWED']],
    [{ format: 'cms', digestAlgorithm: 'sha384', clientFingerprint: 'c'.repeat(64) }, ['CLIENT_NOT_ALLOWED', 'DIGEST_ALGORITHM_NOT_ALLOWED', 'FORMAT_NOT_ALLOWED']],
  ] as const)('denies %j with every reason', (change, expected) => {
    const decision = decideSignRequest(policy, { ...allowed, ...change });
    expect(decision.allow).toBe(false);
    expect(decision.reasons.map((r) => r.code)).toEqual(expected);
  });

  it('lets a second identity rule allow another key (tags and main only for the release key)', () => {
    const feature = { ...allowed, keyName: 'web-nightly', identity: { issuerName: 'github', claims: { ...githubClaims, ref: 'refs/heads/feature/x' } } };
    expect(decideSignRequest(policy, feature)).toMatchObject({ allow: true, identityRule: 1 });
  });

  it('never echoes claim values in reasons', () => {
    const evil = { ...allowed, identity: { issuerName: 'github', claims: { ...githubClaims, repository_id: '<script>secret-value' } } };
    expect(JSON.stringify(decideSignRequest(policy, evil).reasons)).not.toContain('secret-value');
  });

  it('names clients by subject or issuing CA too; every field given must match', () => {
    const byName = policySchema.parse({
      version: 1,
      projects: {
        p: {
          keys: ['k', 'j'],
          defaultKey: 'k',
          identities: [{ issuer: 'github' }],
          clients: [{ subject: 'CN=ci-web, O=Example' }, { issuer: 'CN=Example CI CA\nO=Example', keys: ['j'] }],
        },
      },
    });
    const base = { ...allowed, project: 'p', clientFingerprint: 'e'.repeat(64) };
    expect(decideSignRequest(byName, { ...base, clientSubject: 'CN=ci-web\nO=Example', clientIssuer: 'CN=Other' }).allow).toBe(true);
    expect(codes({ ...base, clientSubject: 'CN=ci-api\nO=Example', clientIssuer: 'CN=Example CI CA\nO=Example' }, byName)).toEqual(['CLIENT_KEY_NOT_ALLOWED']);
    expect(decideSignRequest(byName, { ...base, keyName: 'j', clientSubject: 'CN=ci-api', clientIssuer: 'CN=Example CI CA, O=Example' }).allow).toBe(true);
    expect(codes({ ...base, clientSubject: 'CN=ci-api', clientIssuer: 'CN=Other' }, byName)).toEqual(['CLIENT_NOT_ALLOWED']);
    expect(() => policySchema.parse({ version: 1, projects: { p: { keys: ['k'], clients: [{ keys: ['k'] }] } } })).toThrow();
  });

  it('denies when no key is named and the project has no default', () => {
    const noDefault = policySchema.parse({ version: 1, projects: { p: { keys: ['k'], clients: [{ fingerprint: FP_A }], identities: [{ issuer: 'github' }] } } });
    expect(codes({ ...allowed, project: 'p' }, noDefault)).toEqual(['NO_DEFAULT_KEY']);
  });

  it('applies UTC time windows', () => {
    const windowed = structuredClone(policy);
    windowed.projects.web!.timeWindows = [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], from: '08:00', to: '18:00' }];
    expect(decideSignRequest(windowed, allowed).allow).toBe(true);
    expect(codes({ ...allowed, now: new Date('2026-11-25T18:00:00Z') }, windowed)).toEqual(['OUTSIDE_TIME_WINDOW']);
    expect(codes({ ...allowed, now: new Date('2026-11-28T12:00:00Z') }, windowed)).toEqual(['OUTSIDE_TIME_WINDOW']); // Saturday
  });

  it('names the limits that apply to an allowed request', () => {
    const limited = structuredClone(policy);
    limited.projects.web!.limits = { projectPerMinute: 100, identityPerMinute: 10, keyUsage: { 'web-release': 5 } };
    expect(decideSignRequest(limited, allowed)).toMatchObject({ allow: true, limits: { projectPerMinute: 100, identityPerMinute: 10, keyUsage: 5 } });
  });
});

describe('manifest binding', () => {
  const bound = structuredClone(policy);
  bound.projects.web!.requireManifestBinding = true;
  const statement = (source: object, predicateType = 'https://signet.dev/release-manifest/v1'): Buffer =>
    Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [], predicateType, predicate: source }));

  it('allows a manifest whose source is the token repository and sha', () => {
    const manifest = readManifestSource(statement({ source: { repository: 'example/web', commit: SHA } }));
    expect(decideSignRequest(bound, { ...allowed, manifest }).allow).toBe(true);
  });

  it('reads SLSA provenance v1 resolved dependencies', () => {
    const slsa = statement(
      { buildDefinition: { resolvedDependencies: [{ uri: 'git+https://github.com/example/web@refs/heads/main', digest: { gitCommit: SHA.toUpperCase() } }] } },
      'https://slsa.dev/provenance/v1',
    );
    expect(readManifestSource(slsa)).toEqual({ ok: true, source: { repository: 'example/web', commit: SHA } });
    expect(decideSignRequest(bound, { ...allowed, manifest: readManifestSource(slsa) }).allow).toBe(true);
  });

  it.each([
    [{ source: { repository: 'example/web', commit: 'f'.repeat(40) } }, ['MANIFEST_COMMIT_MISMATCH']],
    [{ source: { repository: 'fork/web', commit: SHA } }, ['MANIFEST_REPOSITORY_MISMATCH']],
    [{ source: {} }, ['MANIFEST_REPOSITORY_MISMATCH', 'MANIFEST_COMMIT_MISMATCH']],
  ])('refuses %j', (predicate, expected) => {
    expect(codes({ ...allowed, manifest: readManifestSource(statement(predicate)) }, bound)).toEqual(expected);
  });

  it('requires the manifest itself and refuses what is not an in-toto Statement', () => {
    expect(codes(allowed, bound)).toEqual(['MANIFEST_REQUIRED']);
    for (const bad of ['not json', '[]', '{"_type":"other"}', JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', predicateType: 'x', predicate: {} })]) {
      expect(codes({ ...allowed, manifest: readManifestSource(Buffer.from(bad)) }, bound)).toEqual(['MANIFEST_INVALID']);
    }
  });

  it('takes the token source from GitHub or GitLab claims', () => {
    expect(tokenSource({ project_path: 'group/app', sha: 'ABC' })).toEqual({ repository: 'group/app', commit: 'abc' });
  });
});

describe('claim matching', () => {
  it.each([
    ['refs/tags/v*', 'refs/tags/v1.2.3', true],
    ['refs/tags/v*', 'refs/tags/v1/x', false],
    ['refs/heads/**', 'refs/heads/a/b', true],
    ['refs/heads/ma?n', 'refs/heads/main', true],
    ['a.b', 'axb', false],
    ['(x)+', '(x)+', true],
    ['main', 'main\n', false],
  ])('glob %s vs %s → %s', (glob, value, expected) => {
    expect(globToRegExp(glob).test(value)).toBe(expected);
  });

  it('compares scalars as text and never matches objects, arrays or absence', () => {
    expect(claimMatches(true, 'true')).toBe(true);
    expect(claimMatches('42', 42)).toBe(true);
    expect(claimMatches({ oneOf: ['a', 'b'] }, 'b')).toBe(true);
    for (const value of [undefined, null, ['42'], { v: '42' }, Number.NaN]) expect(claimMatches('42', value)).toBe(false);
  });
});

describe('properties', () => {
  const name = fc.constantFrom('a', 'b', 'c', 'd');
  const fingerprint = fc.constantFrom(FP_A, FP_B, 'c'.repeat(64));
  const claimKey = fc.constantFrom('repository_id', 'ref', 'environment');
  const claimVal = fc.constantFrom('1', '2', 'refs/heads/main', 'refs/tags/v1', 'prod');
  const matcher = fc.oneof(claimVal, fc.record({ oneOf: fc.uniqueArray(claimVal, { minLength: 1 }) }), fc.record({ glob: fc.constantFrom('refs/**', 'refs/tags/*', '*') }));
  const ruleArb = fc.record({
    issuer: fc.constantFrom('github', 'gitlab'),
    claims: fc.dictionary(claimKey, matcher, { maxKeys: 3 }),
    keys: fc.option(fc.uniqueArray(name, { minLength: 1 }), { nil: undefined }),
  });
  const projectArb = fc.record({
    keys: fc.uniqueArray(name, { minLength: 1 }),
    digestAlgorithms: fc.uniqueArray(fc.constantFrom(...DIGEST_ALGORITHMS), { minLength: 1 }),
    formats: fc.uniqueArray(fc.constantFrom(...SIGNATURE_FORMATS), { minLength: 1 }),
    clients: fc.uniqueArray(fc.record({ fingerprint, keys: fc.option(fc.uniqueArray(name, { minLength: 1 }), { nil: undefined }) }), { maxLength: 3, selector: (c) => c.fingerprint }),
    identities: fc.array(ruleArb, { maxLength: 3 }),
  });
  const inputArb = fc.record({
    project: fc.constantFrom('p', 'q'),
    keyName: fc.option(name, { nil: undefined }),
    clientFingerprint: fingerprint,
    identity: fc.option(fc.record({ issuerName: fc.constantFrom('github', 'gitlab'), claims: fc.dictionary(claimKey, claimVal, { maxKeys: 3 }) }), { nil: undefined }),
    digestAlgorithm: fc.constantFrom(...DIGEST_ALGORITHMS),
    format: fc.constantFrom(...SIGNATURE_FORMATS),
    manifest: fc.constant(undefined),
    now: fc.constant(new Date('2026-11-25T12:00:00Z')),
  });
  type ProjectInput = typeof projectArb extends fc.Arbitrary<infer T> ? T : never;

  /** Keeps only key subsets the project has, so the generated policy is valid. */
  const build = (project: ProjectInput): PolicyDocument => {
    const subset = (keys: string[] | undefined) => {
      const kept = keys?.filter((k) => (project.keys as string[]).includes(k));
      return kept === undefined || kept.length === 0 ? {} : { keys: kept };
    };
    return policySchema.parse({
      version: 1,
      projects: {
        p: {
          ...project,
          defaultKey: project.keys[0],
          clients: project.clients.map((c) => ({ fingerprint: c.fingerprint, ...subset(c.keys) })),
          identities: project.identities.map((r) => ({ issuer: r.issuer, claims: r.claims, ...subset(r.keys) })),
        },
      },
    });
  };

  it('allows only when project, key, client, identity, digest and format are all granted', () => {
    let allowedRuns = 0;
    fc.assert(
      fc.property(projectArb, inputArb, (project, input) => {
        const doc = build(project);
        const decision = decideSignRequest(doc, input);
        const p = doc.projects.p!;
        const keyName = input.keyName ?? p.defaultKey;
        const clientRules = p.clients.filter((c) => c.fingerprint === input.clientFingerprint);
        const identityOk =
          input.identity !== undefined &&
          p.identities.some(
            (r) =>
              r.issuer === input.identity!.issuerName &&
              Object.entries(r.claims).every(([k, m]) => claimMatches(m, input.identity!.claims[k])) &&
              (r.keys === undefined || (keyName !== undefined && r.keys.includes(keyName))),
          );
        const granted =
          input.project === 'p' &&
          keyName !== undefined &&
          p.keys.includes(keyName) &&
          clientRules.some((c) => c.keys === undefined || c.keys.includes(keyName)) &&
          identityOk &&
          p.digestAlgorithms.includes(input.digestAlgorithm) &&
          p.formats.includes(input.format);
        if (granted) allowedRuns += 1;
        expect(decision.allow).toBe(granted);
        expect(decision.allow).toBe(decision.reasons.length === 0);
      }),
      { numRuns: 3000 },
    );
    expect(allowedRuns).toBeGreaterThan(10); // the property exercised allows, not only denies
  });

  it('an empty policy, or a project without identities, denies everything', () => {
    const empty = policySchema.parse({ version: 1, projects: {} });
    const noIdentities = policySchema.parse({ version: 1, projects: { p: { keys: ['a'], defaultKey: 'a', clients: [{ fingerprint: FP_A }] } } });
    fc.assert(fc.property(inputArb, (input) => !decideSignRequest(empty, input).allow && !decideSignRequest(noIdentities, input).allow));
  });

  it('adding a claim rule to an identity never turns a deny into an allow', () => {
    fc.assert(
      fc.property(projectArb, inputArb, fc.nat(), claimKey, matcher, (project, input, pick, claim, extra) => {
        const wide = build(project);
        const rules = wide.projects.p!.identities;
        if (rules.length === 0) return;
        const narrowed = structuredClone(wide);
        const rule = narrowed.projects.p!.identities[pick % rules.length]!;
        if (Object.hasOwn(rule.claims, claim)) return; // adding, not replacing, a condition
        rule.claims = { ...rule.claims, [claim]: extra };
        if (!decideSignRequest(wide, input).allow) expect(decideSignRequest(narrowed, input).allow).toBe(false);
      }),
      { numRuns: 3000 },
    );
  });

  it('removing a client, digest algorithm or format never turns a deny into an allow', () => {
    fc.assert(
      fc.property(projectArb, inputArb, fc.constantFrom('digest', 'format', 'client'), (project, input, narrow) => {
        const wide = build(project);
        const p = wide.projects.p!;
        const narrowed = structuredClone(wide);
        const n = narrowed.projects.p!;
        if (narrow === 'digest' && p.digestAlgorithms.length > 1) n.digestAlgorithms = p.digestAlgorithms.slice(1);
        if (narrow === 'format' && p.formats.length > 1) n.formats = p.formats.slice(1);
        if (narrow === 'client') n.clients = p.clients.slice(1);
        if (!decideSignRequest(wide, input).allow) expect(decideSignRequest(narrowed, input).allow).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('policy files', () => {
  it('reports every bad field with its path', () => {
    const bad = Buffer.from(
      [
        'version: 1',
        'projects:',
        '  Bad Name:',
        '    keys: []',
        '  ok:',
        '    keys: [k]',
        '    defaultKey: other',
        '    formats: [zip]',
        '    clients:',
        '      - fingerprint: nothex',
        '    identities:',
        '      - issuer: github',
        '        claims: { ref: { regex: ".*" } }',
        '        keys: [nope]',
        '    timeWindows: [{ days: [mon], from: "18:00", to: "08:00" }]',
        '',
      ].join('\n'),
    );
    try {
      parsePolicy(bad, 'p.yaml');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(PolicyError);
      const problems = (error as PolicyError).problems.join('\n');
      expect((error as PolicyError).code).toBe('POLICY_INVALID');
      for (const path of [
        'projects.Bad Name',
        'projects.ok.defaultKey',
        'projects.ok.formats.0',
        'projects.ok.clients.0.fingerprint',
        'projects.ok.identities.0.claims.ref',
        'projects.ok.identities.0.keys',
        'projects.ok.timeWindows.0',
      ]) {
        expect(problems).toContain(path);
      }
    }
  });

  it('refuses YAML syntax errors, duplicate keys, unknown fields and a client listed twice', () => {
    for (const text of [
      'version: 1\nprojects: {a: [',
      'version: 1\nversion: 1\nprojects: {}\n',
      'version: 1\nprojects: {}\nextra: 1\n',
      `version: 1\nprojects:\n  p:\n    keys: [k]\n    clients: [{fingerprint: "${FP_A}"}, {fingerprint: "${FP_A}"}]\n`,
    ]) {
      expect(() => parsePolicy(Buffer.from(text), 'p.yaml')).toThrow(PolicyError);
    }
  });

  it('names each policy version by the SHA-256 of its bytes', () => {
    const a = parsePolicy(Buffer.from('version: 1\nprojects: {}\n'), 'a');
    const b = parsePolicy(Buffer.from('version: 1\nprojects: {}  \n'), 'b');
    expect(a.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(a.sha256).not.toBe(b.sha256);
  });
});
