/**
 * The release manifest schema: the checked-in JSON Schema is the one generated from
 * the zod schema; an independent JSON Schema validator (ajv, draft 2020-12) and zod
 * agree on valid and hostile documents; and every valid manifest is one the policy's
 * manifest binding reads the same repository and commit from (policy/manifest-binding.ts).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readBuildContext } from '../../manifest/ci-environment.js';
import { buildReleaseManifest, serializeReleaseManifest } from '../../manifest/create.js';
import { releaseManifestJsonSchemaText } from '../../manifest/json-schema.js';
import { parseReleaseManifest, validateReleaseManifest, type ReleaseManifest } from '../../manifest/schema.js';
import { readManifestSource } from '../../policy/manifest-binding.js';

const SCHEMA_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'schemas', 'release-manifest.schema.json');
const COMMIT = '0123456789abcdef0123456789abcdef01234567';

const GITHUB_ENV = {
  GITHUB_ACTIONS: 'true',
  GITHUB_SERVER_URL: 'https://github.com',
  GITHUB_REPOSITORY: 'example/demo',
  GITHUB_SHA: COMMIT,
  GITHUB_REF: 'refs/tags/v1.2.0',
  GITHUB_WORKFLOW_REF: 'example/demo/.github/workflows/release.yml@refs/tags/v1.2.0',
  GITHUB_RUN_ID: '42',
};

function sampleManifest(): ReleaseManifest {
  return buildReleaseManifest({
    artifacts: [
      { name: 'app.tar.gz', size: 10, sha256: 'a'.repeat(64), sha512: 'b'.repeat(128) },
      { name: 'docs/README.md', size: 0, sha256: 'c'.repeat(64), sha512: 'd'.repeat(128) },
    ],
    version: '1.2.0-rc.1+build.5',
    buildCommand: 'npm ci && npm run build',
    context: readBuildContext(GITHUB_ENV),
    toolchains: { node: '20.19.0' },
    containerImages: [{ uri: 'ghcr.io/example/builder:1', sha256: 'e'.repeat(64) }],
  });
}

const ajv = new Ajv2020({ strict: false, allErrors: true });
const validateWithJsonSchema = ajv.compile(JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as object);

function zodAccepts(document: unknown): boolean {
  try {
    validateReleaseManifest(document);
    return true;
  } catch {
    return false;
  }
}

/** A deep copy with one change applied. */
function mutated(change: (m: any) => void): unknown {
  const copy = JSON.parse(JSON.stringify(sampleManifest()));
  change(copy);
  return copy;
}

describe('the JSON Schema', () => {
  it('is the one generated from the zod schema (regenerate: signet manifest schema > schemas/release-manifest.schema.json)', () => {
    expect(readFileSync(SCHEMA_FILE, 'utf8')).toBe(releaseManifestJsonSchemaText());
  });

  it('describes its fields', () => {
    const schema = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8'));
    expect(schema.title).toBe('Signet release manifest');
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.properties.subject.items.properties.name.description).toMatch(/relative/);
    expect(schema.properties.predicate.properties.buildDefinition.properties.resolvedDependencies.prefixItems[0].properties.uri.description).toMatch(/git\+https/);
  });
});

describe('valid and hostile manifests: ajv (JSON Schema) and zod agree', () => {
  it('accepts a manifest built by signet manifest create', () => {
    const manifest = sampleManifest();
    expect(validateWithJsonSchema(manifest)).toBe(true);
    expect(zodAccepts(manifest)).toBe(true);
    // Unknown fields are ignored, as in-toto asks of consumers.
    const extended = mutated((m) => {
      m.extra = 1;
      m.predicate.runDetails.byproducts = [];
    });
    expect(validateWithJsonSchema(extended)).toBe(true);
    expect(zodAccepts(extended)).toBe(true);
  });

  const hostile: [string, (m: any) => void][] = [
    ['another statement type', (m) => (m._type = 'https://in-toto.io/Statement/v0.1')],
    ['another predicate type', (m) => (m.predicateType = 'https://signet.dev/release-manifest/v1')],
    ['no subject', (m) => (m.subject = [])],
    ['an absolute artifact name', (m) => (m.subject[0].name = '/etc/passwd')],
    ['a ".." segment', (m) => (m.subject[0].name = 'dist/../../etc/passwd')],
    ['a "." segment', (m) => (m.subject[0].name = './app.tar.gz')],
    ['an empty segment', (m) => (m.subject[0].name = 'dist//app')],
    ['a backslash', (m) => (m.subject[0].name = 'dist\\app')],
    ['a control character', (m) => (m.subject[0].name = 'app\n.tar.gz')],
    ['an uppercase digest', (m) => (m.subject[0].digest.sha256 = 'A'.repeat(64))],
    ['a short SHA-512', (m) => (m.subject[0].digest.sha512 = 'b'.repeat(64))],
    ['no SHA-512', (m) => delete m.subject[0].digest.sha512],
    ['a negative size', (m) => (m.subject[0].annotations.size = -1)],
    ['a fractional size', (m) => (m.subject[0].annotations.size = 1.5)],
    ['a version with a "v"', (m) => (m.predicate.buildDefinition.externalParameters.version = 'v1.2.0')],
    ['a version with leading zeros', (m) => (m.predicate.buildDefinition.externalParameters.version = '01.2.0')],
    ['no build command', (m) => delete m.predicate.buildDefinition.externalParameters.buildCommand],
    ['another build type', (m) => (m.predicate.buildDefinition.buildType = 'https://example.com/other')],
    ['no source', (m) => (m.predicate.buildDefinition.resolvedDependencies = [])],
    ['a source that is not git+https', (m) => (m.predicate.buildDefinition.resolvedDependencies[0].uri = 'https://github.com/example/demo')],
    ['a short commit', (m) => (m.predicate.buildDefinition.resolvedDependencies[0].digest.gitCommit = '0123456')],
    ['a source without its commit', (m) => (m.predicate.buildDefinition.resolvedDependencies[0].digest = { sha1: COMMIT })],
    ['an image without digest', (m) => (m.predicate.buildDefinition.internalParameters.environment.containerImages[0].digest = {})],
    ['a builder id that is not https', (m) => (m.predicate.runDetails.builder.id = 'http://ci.example')],
    ['an unknown CI platform', (m) => (m.predicate.buildDefinition.internalParameters.ci.platform = 'jenkins')],
  ];
  for (const [what, change] of hostile) {
    it(`refuses ${what}`, () => {
      const document = mutated(change);
      expect(validateWithJsonSchema(document)).toBe(false);
      expect(() => validateReleaseManifest(document)).toThrow(expect.objectContaining({ code: 'MANIFEST_INVALID' }));
    });
  }

  it('refuses two artifacts with one name (zod; JSON Schema cannot say it, the schema documents it)', () => {
    const document = mutated((m) => {
      m.subject[1].name = m.subject[0].name;
    });
    expect(() => validateReleaseManifest(document)).toThrow(expect.objectContaining({ code: 'MANIFEST_INVALID' }));
  });

  it('reports every bad field at once, and never echoes the document', () => {
    const document = mutated((m) => {
      m.subject[0].name = '../x';
      m.predicate.buildDefinition.externalParameters.version = 'one';
    });
    try {
      validateReleaseManifest(document);
      expect.unreachable();
    } catch (error) {
      const problems = (error as { problems: string[] }).problems;
      expect(problems.some((p) => p.startsWith('subject.0.name'))).toBe(true);
      expect(problems.some((p) => p.startsWith('predicate.buildDefinition.externalParameters.version'))).toBe(true);
    }
  });

  it('refuses what is not JSON, and what is too large, with stable codes', () => {
    expect(() => parseReleaseManifest('{not json')).toThrow(expect.objectContaining({ code: 'MANIFEST_INVALID' }));
    expect(() => parseReleaseManifest(Buffer.alloc(8 * 1024 * 1024 + 1, 0x20))).toThrow(expect.objectContaining({ code: 'MANIFEST_TOO_LARGE' }));
    expect(parseReleaseManifest(serializeReleaseManifest(sampleManifest()))).toEqual(sampleManifest());
  });
});

describe('agreement with the policy manifest binding', () => {
  it('the policy reads the repository and commit the manifest was built from', () => {
    const reading = readManifestSource(serializeReleaseManifest(sampleManifest()));
    expect(reading).toEqual({ ok: true, source: { repository: 'example/demo', commit: COMMIT } });
  });

  it('for any GitHub or GitLab repository path, ref and commit (property)', () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/).filter((s) => !s.endsWith('.git') && s !== '.' && s !== '..');
    fc.assert(
      fc.property(
        fc.array(segment, { minLength: 2, maxLength: 4 }),
        fc.stringMatching(/^refs\/(heads|tags)\/[A-Za-z0-9._/-]{1,30}$/),
        fc.stringMatching(/^[0-9a-f]{40}$/),
        fc.boolean(),
        (segments, ref, commit, gitlab) => {
          const repository = segments.join('/');
          const env = gitlab
            ? { GITLAB_CI: 'true', CI_SERVER_URL: 'https://gitlab.example.com', CI_PROJECT_PATH: repository, CI_COMMIT_SHA: commit, CI_COMMIT_BRANCH: ref.replace(/^refs\/\w+\//, '') }
            : { GITHUB_ACTIONS: 'true', GITHUB_REPOSITORY: repository, GITHUB_SHA: commit, GITHUB_REF: ref };
          const manifest = buildReleaseManifest({
            artifacts: [{ name: 'a', size: 1, sha256: '0'.repeat(64), sha512: '0'.repeat(128) }],
            version: '1.0.0',
            buildCommand: 'make',
            context: readBuildContext(env),
            toolchains: {},
            containerImages: [],
          });
          expect(readManifestSource(serializeReleaseManifest(manifest))).toEqual({ ok: true, source: { repository, commit } });
        },
      ),
      { numRuns: 200 },
    );
  });
});
