/**
 * `signet manifest`: builds the release manifest a pipeline signs (manifest/), and
 * prints its JSON Schema.
 *
 *   signet manifest create (--artifact F … | --dir D) --version V [--build-command C]
 *                          [--toolchain NAME=VERSION …] [--image REF@sha256:HEX …]
 *                          [--source-repository URL] [--commit SHA] [--ref REF]
 *                          [--builder-id URI] [--out F] [--json]
 *   signet manifest schema
 *
 * The source, builder and run come from the CI environment (GitHub Actions, GitLab CI;
 * manifest/ci-environment.ts); options override them, and are required elsewhere.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseContainerImage, readBuildContext, type ContainerImageRef, type Environment } from '../manifest/ci-environment.js';
import { buildReleaseManifest, hashArtifacts, listArtifactFiles, listReleaseDirectory, serializeReleaseManifest } from '../manifest/create.js';
import { ManifestError } from '../manifest/errors.js';
import { releaseManifestJsonSchemaText } from '../manifest/json-schema.js';
import { CliError } from './errors.js';

export interface ManifestCreateOptions {
  readonly artifacts: readonly string[];
  readonly dir: string | undefined;
  readonly version: string;
  /** Else $SIGNET_BUILD_COMMAND. */
  readonly buildCommand: string | undefined;
  readonly toolchains: readonly string[];
  readonly images: readonly string[];
  readonly sourceRepository: string | undefined;
  readonly commit: string | undefined;
  readonly ref: string | undefined;
  readonly builderId: string | undefined;
  readonly out: string | undefined;
}

export interface ManifestCreateOutcome {
  /** The manifest file written, or undefined when printed. */
  readonly file: string | undefined;
  readonly bytes: Buffer;
  readonly artifacts: number;
  readonly version: string;
  readonly repository: string;
  readonly commit: string;
}

function parseToolchains(pairs: readonly string[]): Record<string, string> {
  const toolchains: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    const name = pair.slice(0, at);
    const version = pair.slice(at + 1);
    if (at <= 0 || version === '' || !/^[A-Za-z0-9._+-]{1,64}$/.test(name)) {
      throw new ManifestError('MANIFEST_INPUT_INVALID', `--toolchain takes NAME=VERSION (got "${pair}")`);
    }
    toolchains[name] = version;
  }
  return toolchains;
}

function parseImages(references: readonly string[]): ContainerImageRef[] {
  return references.map((reference) => {
    const image = parseContainerImage(reference);
    if (image === undefined) throw new ManifestError('MANIFEST_INPUT_INVALID', `--image takes a reference pinned by digest, REF@sha256:<64 hex> (got "${reference}")`);
    return image;
  });
}

export async function runManifestCreate(options: ManifestCreateOptions, env: Environment): Promise<ManifestCreateOutcome> {
  if ((options.artifacts.length > 0) === (options.dir !== undefined)) throw new CliError('USAGE', 'give --artifact (one or more) or --dir, not both');
  const buildCommand = options.buildCommand ?? env.SIGNET_BUILD_COMMAND;
  if (buildCommand === undefined || buildCommand.trim() === '') {
    throw new CliError('USAGE', 'the build command is required: --build-command "…" or $SIGNET_BUILD_COMMAND');
  }
  // Validate everything cheap before hashing what may be gigabytes.
  const toolchains = parseToolchains(options.toolchains);
  const containerImages = parseImages(options.images);
  const context = readBuildContext(env, {
    sourceRepository: options.sourceRepository,
    commit: options.commit,
    ref: options.ref,
    builderId: options.builderId,
  });
  const out = options.out === undefined ? undefined : resolve(options.out);
  const files = options.dir !== undefined ? listReleaseDirectory(options.dir, out === undefined ? [] : [out]) : listArtifactFiles(options.artifacts);
  const artifacts = await hashArtifacts(files);
  const manifest = buildReleaseManifest({ artifacts, version: options.version, buildCommand, context, toolchains, containerImages });
  const bytes = serializeReleaseManifest(manifest);
  if (out !== undefined) {
    try {
      writeFileSync(out, bytes);
    } catch (error) {
      throw new CliError('FILE_UNREADABLE', `cannot write ${out}`, { cause: error });
    }
  }
  return { file: out, bytes, artifacts: artifacts.length, version: options.version, repository: context.source.repository, commit: context.source.commit };
}

/** Parses `manifest …` arguments and runs the subcommand; returns what to print. */
export async function runManifestCommand(args: readonly string[], env: Environment): Promise<string> {
  const [sub, ...rest] = args;
  if (sub === 'schema') {
    if (rest.length > 0) throw new CliError('USAGE', 'manifest schema takes no options');
    return releaseManifestJsonSchemaText();
  }
  if (sub !== 'create') throw new CliError('USAGE', 'manifest takes create or schema');
  let values;
  try {
    values = parseArgs({
      args: [...rest],
      options: {
        artifact: { type: 'string', multiple: true },
        dir: { type: 'string' },
        version: { type: 'string' },
        'build-command': { type: 'string' },
        toolchain: { type: 'string', multiple: true },
        image: { type: 'string', multiple: true },
        'source-repository': { type: 'string' },
        commit: { type: 'string' },
        ref: { type: 'string' },
        'builder-id': { type: 'string' },
        out: { type: 'string' },
        json: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new CliError('USAGE', (error as Error).message);
  }
  if (values.version === undefined) throw new CliError('USAGE', '--version is required');
  const outcome = await runManifestCreate(
    {
      artifacts: values.artifact ?? [],
      dir: values.dir,
      version: values.version,
      buildCommand: values['build-command'],
      toolchains: values.toolchain ?? [],
      images: values.image ?? [],
      sourceRepository: values['source-repository'],
      commit: values.commit,
      ref: values.ref,
      builderId: values['builder-id'],
      out: values.out,
    },
    env,
  );
  if (outcome.file === undefined) return outcome.bytes.toString('utf8');
  const summary = { file: outcome.file, artifacts: outcome.artifacts, version: outcome.version, repository: outcome.repository, commit: outcome.commit };
  return values.json === true
    ? `${JSON.stringify(summary, null, 2)}\n`
    : `manifest written: ${outcome.file}\n  ${outcome.artifacts} artifact(s), version ${outcome.version}, source ${outcome.repository}@${outcome.commit}\n`;
}
