/**
 * Building a release manifest: hash the artifacts (SHA-256 and SHA-512 in one read),
 * then assemble the in-toto Statement from them and the build context. The assembly is
 * pure (`buildReleaseManifest`); the file walking and hashing are the only I/O.
 *
 * The result is validated against the schema before it is returned, so `signet
 * manifest create` can never write a manifest that `signet verify` or the policy's
 * manifest binding would reject.
 */
import { createHash } from 'node:crypto';
import { createReadStream, lstatSync, readdirSync, type Stats } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import type { BuildContext, ContainerImageRef } from './ci-environment.js';
import { ManifestError } from './errors.js';
import {
  ARTIFACT_NAME_PATTERN,
  IN_TOTO_STATEMENT_V1,
  MAX_MANIFEST_BYTES,
  SEMVER_PATTERN,
  SIGNET_RELEASE_BUILD_TYPE,
  SLSA_PROVENANCE_V1,
  validateReleaseManifest,
  type ReleaseArtifact,
  type ReleaseManifest,
} from './schema.js';

export interface HashedArtifact {
  readonly name: string;
  readonly size: number;
  /** Lowercase hex. */
  readonly sha256: string;
  readonly sha512: string;
}

export interface ReleaseManifestInput {
  readonly artifacts: readonly HashedArtifact[];
  readonly version: string;
  readonly buildCommand: string;
  readonly context: BuildContext;
  /** Toolchain name → version. */
  readonly toolchains: Readonly<Record<string, string>>;
  /** Images given on the command line (the context may add the platform's own). */
  readonly containerImages: readonly ContainerImageRef[];
}

/** Hashes one file with SHA-256 and SHA-512 in a single pass. */
export async function hashArtifact(path: string, name: string): Promise<HashedArtifact> {
  const sha256 = createHash('sha256');
  const sha512 = createHash('sha512');
  let size = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) {
      const bytes = chunk as Buffer;
      sha256.update(bytes);
      sha512.update(bytes);
      size += bytes.length;
    }
  } catch (error) {
    throw new ManifestError('ARTIFACT_UNREADABLE', `cannot read artifact ${name}`, [], { cause: error });
  }
  return { name, size, sha256: sha256.digest('hex'), sha512: sha512.digest('hex') };
}

function statOf(path: string, name: string): Stats {
  try {
    return lstatSync(path);
  } catch (error) {
    throw new ManifestError('ARTIFACT_UNREADABLE', `cannot read artifact ${name}`, [], { cause: error });
  }
}

function assertArtifactName(name: string): void {
  if (name.length > 1024 || !ARTIFACT_NAME_PATTERN.test(name)) {
    // Control characters are shown as "?" so the message stays one printable line.
    const shown = Array.from(name, (c) => (c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f ? '?' : c)).join('');
    throw new ManifestError('ARTIFACT_NAME_INVALID', `artifact name "${shown}" is not a safe relative path`);
  }
}

/**
 * The artifacts of a release directory: every regular file under it, named by its path
 * relative to the directory with `/` separators, in code-point order. Symbolic links and
 * other special files are refused rather than followed: what a link points to can change
 * between signing and verifying. `exclude` (absolute paths) are skipped, e.g. the
 * manifest being written into the same directory.
 */
export function listReleaseDirectory(dir: string, exclude: readonly string[] = []): { path: string; name: string }[] {
  const root = resolve(dir);
  const rootStat = statOf(root, dir);
  if (!rootStat.isDirectory()) throw new ManifestError('ARTIFACT_UNREADABLE', `${dir} is not a directory`);
  const skipped = new Set(exclude.map((p) => resolve(p)));
  const found: { path: string; name: string }[] = [];
  const walk = (current: string): void => {
    let names: string[];
    try {
      names = readdirSync(current);
    } catch (error) {
      throw new ManifestError('ARTIFACT_UNREADABLE', `cannot list ${relative(root, current) || '.'}`, [], { cause: error });
    }
    for (const entry of names) {
      const path = join(current, entry);
      if (skipped.has(path)) continue;
      const name = relative(root, path).split(sep).join('/');
      const stat = statOf(path, name);
      if (stat.isDirectory()) walk(path);
      else if (stat.isFile()) {
        assertArtifactName(name);
        found.push({ path, name });
      } else throw new ManifestError('ARTIFACT_UNREADABLE', `artifact ${name} is not a regular file (links and special files are refused)`);
    }
  };
  walk(root);
  if (found.length === 0) throw new ManifestError('ARTIFACTS_MISSING', `${dir} holds no files`);
  return found.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Files named one by one: each is named by its base name, which must be unique. */
export function listArtifactFiles(files: readonly string[]): { path: string; name: string }[] {
  if (files.length === 0) throw new ManifestError('ARTIFACTS_MISSING', 'no artifact given');
  const seen = new Set<string>();
  return files.map((file) => {
    const path = resolve(file);
    const name = basename(path);
    assertArtifactName(name);
    if (seen.has(name)) throw new ManifestError('ARTIFACT_DUPLICATE', `two artifacts are named ${name}; use --dir to keep their paths`);
    seen.add(name);
    if (!statOf(path, name).isFile()) throw new ManifestError('ARTIFACT_UNREADABLE', `artifact ${name} is not a regular file`);
    return { path, name };
  });
}

/** Hashes the listed files one after the other (reading in parallel gains nothing on one disk). */
export async function hashArtifacts(files: readonly { path: string; name: string }[]): Promise<HashedArtifact[]> {
  const hashed: HashedArtifact[] = [];
  for (const file of files) hashed.push(await hashArtifact(file.path, file.name));
  return hashed;
}

/** Assembles and validates the Statement. Pure. */
export function buildReleaseManifest(input: ReleaseManifestInput): ReleaseManifest {
  if (!SEMVER_PATTERN.test(input.version)) {
    throw new ManifestError('MANIFEST_INPUT_INVALID', `version "${input.version}" is not SemVer 2.0.0 (for example 1.4.0 or 2.0.0-rc.1, without a leading "v")`);
  }
  const { context } = input;
  const subject: ReleaseArtifact[] = input.artifacts.map((a) => ({
    name: a.name,
    digest: { sha256: a.sha256, sha512: a.sha512 },
    annotations: { size: a.size },
  }));
  const images = new Map<string, ContainerImageRef>();
  for (const image of [...context.containerImages, ...input.containerImages]) images.set(`${image.uri}@${image.sha256}`, image);
  const source = context.source;
  const statement = {
    _type: IN_TOTO_STATEMENT_V1,
    subject,
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: SIGNET_RELEASE_BUILD_TYPE,
        externalParameters: {
          version: input.version,
          buildCommand: input.buildCommand,
          ...(context.workflow === undefined ? {} : { workflow: withoutUndefined(context.workflow) }),
        },
        internalParameters: {
          environment: {
            toolchains: { ...input.toolchains },
            containerImages: [...images.values()].map((image) => ({ uri: image.uri, digest: { sha256: image.sha256 } })),
            ...(context.runner === undefined ? {} : { runner: withoutUndefined(context.runner) }),
          },
          ci: { platform: context.platform, ...(context.event === undefined ? {} : { event: context.event }) },
        },
        resolvedDependencies: [
          {
            // SLSA's git source convention, and what policy/manifest-binding.ts parses.
            uri: `git+${source.repositoryUrl}${source.ref === undefined ? '' : `@${source.ref}`}`,
            digest: { gitCommit: source.commit },
            name: source.repository,
          },
        ],
      },
      runDetails: {
        builder: { id: context.builderId },
        ...(context.invocationId === undefined ? {} : { metadata: { invocationId: context.invocationId } }),
      },
    },
  };
  return validateReleaseManifest(statement);
}

/** The bytes that get signed: indented JSON with a final newline (readable in a release page). */
export function serializeReleaseManifest(manifest: ReleaseManifest): Buffer {
  const bytes = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8');
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new ManifestError('MANIFEST_TOO_LARGE', `the manifest is ${bytes.length} bytes; the service accepts at most ${MAX_MANIFEST_BYTES}`);
  }
  return bytes;
}

function withoutUndefined<T extends object>(record: T): T {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as T;
}
