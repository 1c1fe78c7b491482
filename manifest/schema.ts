/**
 * The Signet release manifest: what one release is, bound in one signed document.
 *
 * It is an in-toto Statement v1 (https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md)
 * whose subjects are the release artifacts and whose predicate is SLSA provenance v1
 * (https://slsa.dev/spec/v1.0/provenance) with Signet's build type:
 *
 *   subject[]                      name (safe relative path), digest {sha256, sha512}, annotations {size}
 *   predicate.buildDefinition
 *     buildType                    https://signet.dev/release-build/v1
 *     externalParameters           version (SemVer 2.0.0), buildCommand, workflow {repository, path, ref}
 *     internalParameters           environment {toolchains, containerImages, runner}, ci {platform, event}
 *     resolvedDependencies[0]      the source: uri git+https://host/owner/repo@ref, digest.gitCommit
 *   predicate.runDetails
 *     builder.id                   who built it (the CI workflow or runner, as a URI)
 *     metadata.invocationId        the CI run or job URL
 *
 * The source is the first resolved dependency because that is where SLSA provenance
 * generators put it and where the policy's manifest binding reads it
 * (policy/manifest-binding.ts); the schema enforces that shape so every valid manifest
 * is one the policy can bind to a CI token. Unknown fields are allowed, as in-toto
 * requires consumers to ignore them; everything Signet reads is checked here.
 *
 * The zod schema is the source of truth; schemas/release-manifest.schema.json is
 * generated from it (`signet manifest schema`) and a test keeps the two equal.
 */
import { z } from 'zod';
import { IN_TOTO_STATEMENT_V1, SLSA_PROVENANCE_V1 } from '../policy/manifest-binding.js';
import { ManifestError } from './errors.js';

export { IN_TOTO_STATEMENT_V1, SLSA_PROVENANCE_V1 };

/** DSSE payload type of an in-toto Statement (and the media type of the manifest file). */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
/** SLSA build type naming the shape of Signet's external and internal parameters. */
export const SIGNET_RELEASE_BUILD_TYPE = 'https://signet.dev/release-build/v1';
export const RELEASE_MANIFEST_SCHEMA_ID = 'https://signet.dev/schemas/release-manifest.schema.json';
/** The service refuses larger payloads (policy/manifest-binding.ts reads at most this much). */
export const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;

/** SemVer 2.0.0, the regular expression published at https://semver.org/#is-there-a-suggested-regular-expression-regex-to-check-a-semver-string */
export const SEMVER_PATTERN =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/**
 * A relative path with `/` separators: no empty, `.` or `..` segment, no leading `/`, no
 * backslash and no control character. A verifier joins it to a release directory, so
 * anything that could climb out of that directory is refused here.
 */
// eslint-disable-next-line no-control-regex -- control characters are exactly what it refuses
export const ARTIFACT_NAME_PATTERN = /^(?!\.\.?(?:\/|$))[^/\\\u0000-\u001f\u007f]+(?:\/(?!\.\.?(?:\/|$))[^/\\\u0000-\u001f\u007f]+)*$/;

/** `git+https://host/path@ref`, as SLSA provenance names a git source (and as the policy parses it). */
export const GIT_SOURCE_URI_PATTERN = /^git\+https:\/\/[^/\s@]+\/[^@\s]+?(?:\.git)?(?:@\S+)?$/;

const hex = (bytes: number, what: string) =>
  z
    .string()
    .regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), `${what}: ${bytes * 2} lowercase hex digits`)
    .meta({ description: `${what}, ${bytes * 2} lowercase hex digits` });

const shortText = (max: number) => z.string().min(1).max(max);

const gitCommit = z
  .string()
  .regex(/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/, 'a git commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits')
  .meta({ description: 'Git commit id: 40 (SHA-1 object format) or 64 (SHA-256 object format) lowercase hex digits.' });

export const artifactSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .max(1024)
      .regex(ARTIFACT_NAME_PATTERN, 'a relative path with "/" separators, without ".", ".." or empty segments')
      .meta({ description: 'Path of the artifact relative to the release directory, "/" separated; never absolute, never with "." or ".." segments. Unique within the manifest.' }),
    digest: z
      .object({ sha256: hex(32, 'SHA-256 of the artifact'), sha512: hex(64, 'SHA-512 of the artifact') })
      .meta({ description: 'Digests of the artifact bytes (in-toto DigestSet). Both are required; a verifier checks at least one.' }),
    annotations: z
      .object({ size: z.int().min(0).max(Number.MAX_SAFE_INTEGER).meta({ description: 'Size of the artifact in bytes.' }) })
      .meta({ description: 'in-toto ResourceDescriptor annotations; Signet records the size.' }),
  })
  .meta({ description: 'One release artifact (an in-toto ResourceDescriptor).' });

const sourceDependency = z
  .object({
    uri: z
      .string()
      .max(2048)
      .regex(GIT_SOURCE_URI_PATTERN, 'the source is git+https://host/owner/repo@ref')
      .meta({ description: 'The source repository and the ref that was built: git+https://<host>/<owner>/<repo>@<ref> (SLSA convention). The policy binds <owner>/<repo> to the CI token repository.' }),
    digest: z
      .object({ gitCommit })
      .meta({ description: 'The commit that was built. The policy binds it to the CI token `sha`.' }),
    name: z.string().max(256).optional(),
  })
  .meta({ description: 'The source that was built. Always the first resolved dependency.' });

const resourceDescriptor = z
  .object({
    uri: z.string().min(1).max(2048).optional(),
    digest: z.record(z.string().regex(/^[a-zA-Z0-9_-]{1,32}$/), z.string().regex(/^[0-9a-f]{1,512}$/)).optional(),
    name: z.string().max(1024).optional(),
  })
  .meta({ description: 'Another input of the build (in-toto ResourceDescriptor).' });

const containerImage = z
  .object({
    uri: shortText(1024).meta({ description: 'Image reference as pulled, e.g. docker.io/library/node:20 (without the digest).' }),
    digest: z.object({ sha256: hex(32, 'Image manifest digest') }).meta({ description: 'The image manifest digest that ran.' }),
  })
  .meta({ description: 'A container image the build ran in or with, pinned by digest.' });

const builderIdentifier = z
  .string()
  .max(2048)
  .regex(/^https:\/\/\S+$/, 'an https URI')
  .meta({ description: 'URI of the builder: the CI workflow file at its ref (GitHub Actions) or the runner (GitLab CI).' });

export const releasePredicateSchema = z
  .object({
    buildDefinition: z.object({
      buildType: z.literal(SIGNET_RELEASE_BUILD_TYPE).meta({ description: 'Names the shape of externalParameters and internalParameters below.' }),
      externalParameters: z
        .object({
          version: z
            .string()
            .max(256)
            .regex(SEMVER_PATTERN, 'a SemVer 2.0.0 version such as 1.4.0 or 2.0.0-rc.1 (no leading "v")')
            .meta({ description: 'The release version, SemVer 2.0.0 (no leading "v").' }),
          buildCommand: shortText(4096).meta({ description: 'The command that built the artifacts.' }),
          workflow: z
            .object({
              repository: shortText(512).meta({ description: 'Repository holding the CI definition (owner/repo or group/project).' }),
              path: shortText(1024).meta({ description: 'Path of the CI definition in that repository.' }),
              ref: shortText(1024).optional().meta({ description: 'Git ref of the CI definition.' }),
            })
            .optional()
            .meta({ description: 'The CI definition that ran the build, when known.' }),
        })
        .meta({ description: 'Parameters chosen by whoever started the build.' }),
      internalParameters: z
        .object({
          environment: z
            .object({
              toolchains: z
                .record(z.string().regex(/^[A-Za-z0-9._+-]{1,64}$/), shortText(256))
                .meta({ description: 'Toolchain name → version, e.g. {"node": "20.19.0", "go": "1.23.2"}.' }),
              containerImages: z.array(containerImage).max(256).meta({ description: 'Container images the build used, by digest.' }),
              runner: z
                .object({
                  os: shortText(64).optional(),
                  arch: shortText(64).optional(),
                  name: shortText(256).optional(),
                  environment: shortText(64).optional().meta({ description: 'github-hosted or self-hosted (GitHub), as the CI reports it.' }),
                  image: shortText(256).optional().meta({ description: 'Runner image and version, e.g. ubuntu24/20250105.1.' }),
                  version: shortText(64).optional().meta({ description: 'Runner software version.' }),
                })
                .optional(),
            })
            .meta({ description: 'Where the build ran.' }),
          ci: z
            .object({
              platform: z.enum(['github-actions', 'gitlab-ci', 'other']),
              event: shortText(64).optional().meta({ description: 'What started the run (push, tag, workflow_dispatch, …).' }),
            })
            .meta({ description: 'The CI platform the manifest was created on.' }),
        })
        .meta({ description: 'Parameters set by the build platform.' }),
      resolvedDependencies: z
        .tuple([sourceDependency], resourceDescriptor)
        .meta({ description: 'Inputs of the build; the first is always the source repository and commit.' }),
    }),
    runDetails: z.object({
      builder: z.object({
        id: builderIdentifier,
        version: z.record(z.string().max(64), z.string().max(256)).optional(),
      }),
      metadata: z
        .object({
          invocationId: z.string().max(2048).optional().meta({ description: 'The CI run or job, as a URL.' }),
          startedOn: z.iso.datetime().optional(),
          finishedOn: z.iso.datetime().optional(),
        })
        .optional(),
    }),
  })
  .meta({ description: 'SLSA provenance v1 predicate with the Signet release build type.' });

export const releaseManifestSchema = z
  .object({
    _type: z.literal(IN_TOTO_STATEMENT_V1),
    subject: z.array(artifactSchema).min(1).max(100_000).meta({ description: 'The release artifacts.' }),
    predicateType: z.literal(SLSA_PROVENANCE_V1),
    predicate: releasePredicateSchema,
  })
  .superRefine((statement, context) => {
    // Names are how a verifier finds each artifact: two entries for one name would let
    // a manifest vouch for two different contents.
    const seen = new Set<string>();
    statement.subject.forEach((artifact, index) => {
      if (seen.has(artifact.name)) context.addIssue({ code: 'custom', path: ['subject', index, 'name'], message: `duplicate artifact name "${artifact.name}"` });
      seen.add(artifact.name);
    });
  })
  .meta({
    $id: RELEASE_MANIFEST_SCHEMA_ID,
    title: 'Signet release manifest',
    description:
      'An in-toto Statement v1 binding one release: its artifacts (subjects: name, SHA-256 and SHA-512, size), and SLSA provenance v1 naming the source repository and commit (resolvedDependencies[0]), the build command, the builder, the build environment (toolchains, container images by digest, runner) and the release version (SemVer). Artifact names must also be unique.',
  });

export type ReleaseManifest = z.infer<typeof releaseManifestSchema>;
export type ReleaseArtifact = z.infer<typeof artifactSchema>;

/**
 * Parses and validates a release manifest. Hostile input yields MANIFEST_INVALID with
 * every problem listed (never a crash); the bytes are never echoed.
 */
export function parseReleaseManifest(input: Buffer | string): ReleaseManifest {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  if (bytes.length > MAX_MANIFEST_BYTES) throw new ManifestError('MANIFEST_TOO_LARGE', `the manifest is larger than ${MAX_MANIFEST_BYTES} bytes`);
  let document: unknown;
  try {
    document = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new ManifestError('MANIFEST_INVALID', 'the manifest is not JSON', [], { cause: error });
  }
  return validateReleaseManifest(document);
}

export function validateReleaseManifest(document: unknown): ReleaseManifest {
  const result = releaseManifestSchema.safeParse(document);
  if (!result.success) {
    const problems = result.error.issues.slice(0, 50).map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(document)'}: ${issue.message}`);
    throw new ManifestError('MANIFEST_INVALID', 'the document is not a Signet release manifest', problems);
  }
  return result.data;
}
