/** The pure policy decision: table tests and properties (fast-check). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decideSignRequest, type SignDecisionInput } from '../../policy/evaluate.js';
import { parsePolicy } from '../../policy/load.js';
import { policySchema, type PolicyDocument } from '../../policy/schema.js';
import { DIGEST_ALGORITHMS } from '../../signer/algorithms.js';
import { SIGNATURE_FORMATS } from '../../signer/formats.js';
import { PolicyError } from '../../policy/errors.js';

const FP_A = 'a'.repeat(64);
const FP_B = 'b'.repeat(64);

const policy: PolicyDocument = policySchema.parse({
  version: 1,
  projects: {
    web: {
      keys: ['web-release', 'web-nightly'],
      defaultKey: 'web-release',
      formats: ['raw', 'dsse'],
      digestAlgorithms: ['sha256'],
      clients: [{ fingerprint: FP_A }, { fingerprint: `SHA256:${FP_B.toUpperCase().match(/../g)?.join(':') ?? ''}`, keys: ['web-nightly'] }],
    },
  },
});

const allowed: SignDecisionInput = { project: 'web', keyName: undefined, clientFingerprint: FP_A, digestAlgorithm: 'sha256', format: 'raw' };

describe('decideSignRequest', () => {
  it('allows a listed client with the default key', () => {
    expect(decideSignRequest(policy, allowed)).toEqual({ allow: true, keyName: 'web-release', reasons: [] });
  });

  it('normalises fingerprints written with colons, a prefix and upper case', () => {
    expect(decideSignRequest(policy, { ...allowed, clientFingerprint: FP_B, keyName: 'web-nightly' }).allow).toBe(true);
  });

  it.each([
    [{ project: 'other' }, ['PROJECT_UNKNOWN']],
    [{ project: '__proto__' }, ['PROJECT_UNKNOWN']],
    [{ keyName: 'api-release' }, ['KEY_NOT_ALLOWED']],
    [{ clientFingerprint: 'c'.repeat(64) }, ['CLIENT_NOT_ALLOWED']],
    [{ clientFingerprint: FP_B }, ['CLIENT_KEY_NOT_ALLOWED']],
    [{ digestAlgorithm: 'sha512' }, ['DIGEST_ALGORITHM_NOT_ALLOWED']],
    [{ format: 'pgp' }, ['FORMAT_NOT_ALLOWED']],
    [{ format: 'cms', digestAlgorithm: 'sha384', clientFingerprint: 'c'.repeat(64) }, ['CLIENT_NOT_ALLOWED', 'DIGEST_ALGORITHM_NOT_ALLOWED', 'FORMAT_NOT_ALLOWED']],
  ] as const)('denies %j with every reason', (change, codes) => {
    const decision = decideSignRequest(policy, { ...allowed, ...change });
    expect(decision.allow).toBe(false);
    expect(decision.reasons.map((r) => r.code)).toEqual(codes);
  });

  it('denies when no key is named and the project has no default', () => {
    const noDefault = policySchema.parse({ version: 1, projects: { p: { keys: ['k'], clients: [{ fingerprint: FP_A }] } } });
    const decision = decideSignRequest(noDefault, { ...allowed, project: 'p' });
    expect(decision.reasons.map((r) => r.code)).toEqual(['NO_DEFAULT_KEY']);
  });
});

describe('properties', () => {
  const name = fc.constantFrom('a', 'b', 'c', 'd');
  const fingerprint = fc.constantFrom(FP_A, FP_B, 'c'.repeat(64));
  const projectArb = fc.record({
    keys: fc.uniqueArray(name, { minLength: 1 }),
    digestAlgorithms: fc.uniqueArray(fc.constantFrom(...DIGEST_ALGORITHMS), { minLength: 1 }),
    formats: fc.uniqueArray(fc.constantFrom(...SIGNATURE_FORMATS), { minLength: 1 }),
    clients: fc.array(fc.record({ fingerprint, keys: fc.option(fc.uniqueArray(name, { minLength: 1 }), { nil: undefined }) }), { maxLength: 3 }),
  });
  const inputArb = fc.record({
    project: fc.constantFrom('p', 'q'),
    keyName: fc.option(name, { nil: undefined }),
    clientFingerprint: fingerprint,
    digestAlgorithm: fc.constantFrom(...DIGEST_ALGORITHMS),
    format: fc.constantFrom(...SIGNATURE_FORMATS),
  });

  type ProjectInput = typeof projectArb extends fc.Arbitrary<infer T> ? T : never;
  const build = (project: ProjectInput): PolicyDocument | undefined => {
    const clients = project.clients.map((c) => ({ fingerprint: c.fingerprint, ...(c.keys === undefined ? {} : { keys: c.keys.filter((k) => project.keys.includes(k)) }) }))
      .map((c) => ('keys' in c && c.keys.length === 0 ? { fingerprint: c.fingerprint } : c));
    const parsed = policySchema.safeParse({ version: 1, projects: { p: { ...project, defaultKey: project.keys[0], clients } } });
    return parsed.success ? parsed.data : undefined;
  };

  it('allows only when project, key, client, digest and format are all granted', () => {
    fc.assert(
      fc.property(projectArb, inputArb, (project, input) => {
        const doc = build(project);
        if (doc === undefined) return;
        const decision = decideSignRequest(doc, input);
        const p = doc.projects.p!;
        const keyName = input.keyName ?? p.defaultKey;
        const client = p.clients.find((c) => c.fingerprint === input.clientFingerprint);
        const granted =
          input.project === 'p' &&
          keyName !== undefined &&
          p.keys.includes(keyName) &&
          client !== undefined &&
          (client.keys === undefined || client.keys.includes(keyName)) &&
          p.digestAlgorithms.includes(input.digestAlgorithm) &&
          p.formats.includes(input.format);
        expect(decision.allow).toBe(granted);
        expect(decision.allow).toBe(decision.reasons.length === 0);
      }),
      { numRuns: 2000 },
    );
  });

  it('an empty policy denies everything', () => {
    const empty = policySchema.parse({ version: 1, projects: {} });
    fc.assert(fc.property(inputArb, (input) => !decideSignRequest(empty, input).allow));
  });

  it('narrowing a grant (removing a client key, digest or format) never turns a deny into an allow', () => {
    fc.assert(
      fc.property(projectArb, inputArb, fc.constantFrom('digest', 'format', 'client'), (project, input, narrow) => {
        const wide = build(project);
        if (wide === undefined) return;
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
      'version: 1\nprojects:\n  Bad Name:\n    keys: []\n  ok:\n    keys: [k]\n    defaultKey: other\n    formats: [zip]\n    clients:\n      - fingerprint: nothex\n',
    );
    try {
      parsePolicy(bad, 'p.yaml');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(PolicyError);
      const problems = (error as PolicyError).problems.join('\n');
      expect((error as PolicyError).code).toBe('POLICY_INVALID');
      for (const path of ['projects.Bad Name', 'projects.ok.defaultKey', 'projects.ok.formats.0', 'projects.ok.clients.0.fingerprint']) {
        expect(problems).toContain(path);
      }
    }
  });

  it('refuses YAML syntax errors, duplicate keys and unknown fields', () => {
    for (const text of ['version: 1\nprojects: {a: [', 'version: 1\nversion: 1\nprojects: {}\n', 'version: 1\nprojects: {}\nextra: 1\n']) {
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
