/**
 * Building manifests: what each CI platform's variables become, the release directory
 * walk (safe names, no links), digests checked against sha256sum/sha512sum, and
 * `signet manifest` run in-process with a GitHub Actions environment.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runManifestCommand } from '../../cli/manifest.js';
import { readBuildContext } from '../../manifest/ci-environment.js';
import { hashArtifact, listArtifactFiles, listReleaseDirectory } from '../../manifest/create.js';
import { releaseManifestJsonSchemaText } from '../../manifest/json-schema.js';
import { parseReleaseManifest } from '../../manifest/schema.js';

const COMMIT = 'c0ffee0123456789abcdef0123456789abcdef01';

const GITHUB = {
  GITHUB_ACTIONS: 'true',
  GITHUB_SERVER_URL: 'https://github.com',
  GITHUB_REPOSITORY: 'example/demo',
  GITHUB_SHA: COMMIT,
  GITHUB_REF: 'refs/heads/main',
  GITHUB_WORKFLOW_REF: 'example/demo/.github/workflows/release.yml@refs/heads/main',
  GITHUB_RUN_ID: '7001',
  GITHUB_RUN_ATTEMPT: '2',
  GITHUB_EVENT_NAME: 'push',
  RUNNER_OS: 'Linux',
  RUNNER_ARCH: 'X64',
  RUNNER_NAME: 'GitHub Actions 12',
  RUNNER_ENVIRONMENT: 'github-hosted',
  ImageOS: 'ubuntu24',
  ImageVersion: '20250105.1',
};

const GITLAB = {
  GITLAB_CI: 'true',
  CI_SERVER_URL: 'https://gitlab.example.com',
  CI_PROJECT_PATH: 'group/sub/project',
  CI_PROJECT_URL: 'https://gitlab.example.com/group/sub/project',
  CI_COMMIT_SHA: COMMIT.toUpperCase(),
  CI_COMMIT_TAG: 'v2.0.0',
  CI_COMMIT_REF_NAME: 'v2.0.0',
  CI_CONFIG_PATH: '.gitlab-ci.yml',
  CI_JOB_URL: 'https://gitlab.example.com/group/sub/project/-/jobs/99',
  CI_PIPELINE_SOURCE: 'push',
  CI_RUNNER_ID: '12',
  CI_RUNNER_DESCRIPTION: 'shared-runner',
  CI_RUNNER_VERSION: '17.5.0',
  CI_RUNNER_EXECUTABLE_ARCH: 'linux/amd64',
  CI_JOB_IMAGE: `registry.example.com/build/node:20@sha256:${'f'.repeat(64)}`,
};

describe('readBuildContext', () => {
  it('reads GitHub Actions variables', () => {
    expect(readBuildContext(GITHUB)).toEqual({
      platform: 'github-actions',
      source: { repositoryUrl: 'https://github.com/example/demo', repository: 'example/demo', ref: 'refs/heads/main', commit: COMMIT },
      builderId: 'https://github.com/example/demo/.github/workflows/release.yml@refs/heads/main',
      invocationId: 'https://github.com/example/demo/actions/runs/7001/attempts/2',
      event: 'push',
      workflow: { repository: 'example/demo', path: '.github/workflows/release.yml', ref: 'refs/heads/main' },
      runner: { os: 'Linux', arch: 'X64', name: 'GitHub Actions 12', environment: 'github-hosted', image: 'ubuntu24/20250105.1' },
      containerImages: [],
    });
  });

  it('reads GitLab CI variables (a tag pipeline, nested groups, the job image pinned by digest)', () => {
    expect(readBuildContext(GITLAB)).toEqual({
      platform: 'gitlab-ci',
      source: { repositoryUrl: 'https://gitlab.example.com/group/sub/project', repository: 'group/sub/project', ref: 'refs/tags/v2.0.0', commit: COMMIT },
      builderId: 'https://gitlab.example.com/group/sub/project/-/runners/12',
      invocationId: 'https://gitlab.example.com/group/sub/project/-/jobs/99',
      event: 'push',
      workflow: { repository: 'group/sub/project', path: '.gitlab-ci.yml', ref: 'refs/tags/v2.0.0' },
      runner: { arch: 'linux/amd64', name: 'shared-runner', version: '17.5.0' },
      containerImages: [{ uri: 'registry.example.com/build/node:20', sha256: 'f'.repeat(64) }],
    });
    // An image named only by tag is not evidence of what ran: not recorded.
    expect(readBuildContext({ ...GITLAB, CI_JOB_IMAGE: 'node:20' }).containerImages).toEqual([]);
  });

  it('lets options override the platform, and needs them elsewhere', () => {
    expect(() => readBuildContext({})).toThrow(expect.objectContaining({ code: 'MANIFEST_SOURCE_MISSING' }));
    const local = readBuildContext({}, { sourceRepository: 'https://git.example.org/team/app.git', commit: COMMIT, ref: 'refs/heads/dev' });
    expect(local).toMatchObject({ platform: 'other', source: { repository: 'team/app', repositoryUrl: 'https://git.example.org/team/app', ref: 'refs/heads/dev' } });
    expect(local.builderId).toBe('https://git.example.org/team/app/local-build');
    expect(readBuildContext(GITHUB, { commit: 'a'.repeat(40) }).source.commit).toBe('a'.repeat(40));
  });

  it('refuses malformed values, listing each', () => {
    const refuse = (env: Record<string, string>, overrides = {}) => () => readBuildContext(env, overrides);
    expect(refuse({ ...GITHUB, GITHUB_SHA: 'main' })).toThrow(expect.objectContaining({ code: 'MANIFEST_INPUT_INVALID' }));
    expect(refuse({}, { sourceRepository: 'http://insecure.example/a/b', commit: COMMIT })).toThrow(expect.objectContaining({ code: 'MANIFEST_INPUT_INVALID' }));
    expect(refuse({}, { sourceRepository: 'https://user:pw@host.example/a/b', commit: COMMIT })).toThrow(expect.objectContaining({ code: 'MANIFEST_INPUT_INVALID' }));
    expect(refuse(GITHUB, { ref: 'refs/heads/a@b' })).toThrow(expect.objectContaining({ code: 'MANIFEST_INPUT_INVALID' }));
    expect(refuse(GITHUB, { builderId: 'ftp://ci' })).toThrow(expect.objectContaining({ code: 'MANIFEST_INPUT_INVALID' }));
  });
});

describe('artifacts', () => {
  it('hashes like sha256sum and sha512sum, across read chunks and for an empty file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-manifest-'));
    for (const [name, bytes] of [
      ['big.bin', randomBytes(3 * 1024 * 1024 + 17)],
      ['empty', Buffer.alloc(0)],
    ] as const) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const hashed = await hashArtifact(path, name);
      expect(hashed.size).toBe(bytes.length);
      expect(hashed.sha256).toBe(execFileSync('sha256sum', [path]).toString().split(' ')[0]);
      expect(hashed.sha512).toBe(execFileSync('sha512sum', [path]).toString().split(' ')[0]);
    }
  });

  it('walks a release directory: relative "/" names in code-point order, the manifest itself excluded', () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-manifest-'));
    mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
    for (const name of ['b.txt', 'A.txt', 'sub/x', 'sub/deeper/y', 'manifest.json']) writeFileSync(join(dir, name), name);
    expect(listReleaseDirectory(dir, [join(dir, 'manifest.json')]).map((f) => f.name)).toEqual(['A.txt', 'b.txt', 'sub/deeper/y', 'sub/x']);
  });

  it('refuses links, empty directories, unreadable paths and duplicate names', () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-manifest-'));
    expect(() => listReleaseDirectory(dir)).toThrow(expect.objectContaining({ code: 'ARTIFACTS_MISSING' }));
    writeFileSync(join(dir, 'real'), 'x');
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    expect(() => listReleaseDirectory(dir)).toThrow(expect.objectContaining({ code: 'ARTIFACT_UNREADABLE' }));
    expect(() => listReleaseDirectory(join(dir, 'missing'))).toThrow(expect.objectContaining({ code: 'ARTIFACT_UNREADABLE' }));
    mkdirSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a', 'real'), 'y');
    expect(() => listArtifactFiles([join(dir, 'real'), join(dir, 'a', 'real')])).toThrow(expect.objectContaining({ code: 'ARTIFACT_DUPLICATE' }));
    expect(() => listArtifactFiles([join(dir, 'a')])).toThrow(expect.objectContaining({ code: 'ARTIFACT_UNREADABLE' }));
    expect(() => listArtifactFiles([])).toThrow(expect.objectContaining({ code: 'ARTIFACTS_MISSING' }));
  });
});

describe('signet manifest (in-process)', () => {
  it('create --dir --out: writes a valid manifest of the directory, without itself', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-manifest-'));
    writeFileSync(join(dir, 'app.tar.gz'), randomBytes(1000));
    const out = join(dir, 'release.intoto.json');
    const text = await runManifestCommand(
      ['create', '--dir', dir, '--version', '3.1.4', '--build-command', 'make release', '--toolchain', 'node=20.19.0', '--toolchain', 'go=1.23.2', '--image', `docker.io/library/golang:1.23@sha256:${'1'.repeat(64)}`, '--out', out, '--json'],
      GITHUB,
    );
    expect(JSON.parse(text)).toEqual({ file: out, artifacts: 1, version: '3.1.4', repository: 'example/demo', commit: COMMIT });
    const manifest = parseReleaseManifest(readFileSync(out));
    expect(manifest.subject.map((s) => s.name)).toEqual(['app.tar.gz']);
    expect(manifest.predicate.buildDefinition.internalParameters.environment.toolchains).toEqual({ node: '20.19.0', go: '1.23.2' });
    expect(manifest.predicate.buildDefinition.internalParameters.environment.containerImages).toEqual([{ uri: 'docker.io/library/golang:1.23', digest: { sha256: '1'.repeat(64) } }]);

    // Run again: the manifest now in the directory is still not an artifact of itself.
    await runManifestCommand(['create', '--dir', dir, '--version', '3.1.4', '--build-command', 'make', '--out', out], GITHUB);
    expect(parseReleaseManifest(readFileSync(out)).subject).toHaveLength(1);
  });

  it('create --artifact …: prints the manifest; the build command may come from $SIGNET_BUILD_COMMAND', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-manifest-'));
    writeFileSync(join(dir, 'a.bin'), 'a');
    writeFileSync(join(dir, 'b.bin'), 'b');
    const text = await runManifestCommand(['create', '--artifact', join(dir, 'a.bin'), '--artifact', join(dir, 'b.bin'), '--version', '1.0.0'], { ...GITLAB, SIGNET_BUILD_COMMAND: 'make' });
    const manifest = parseReleaseManifest(text);
    expect(manifest.subject.map((s) => s.name)).toEqual(['a.bin', 'b.bin']);
    expect(manifest.predicate.buildDefinition.externalParameters.buildCommand).toBe('make');
  });

  it('refuses bad usage with stable codes, before hashing anything', async () => {
    const code = (args: string[], env: Record<string, string> = GITHUB) =>
      runManifestCommand(args, env).then(
        () => 'OK',
        (error: unknown) => (error as { code: string }).code,
      );
    expect(await code(['create', '--dir', '/nonexistent', '--version', '1.0.0'])).toBe('USAGE');
    expect(await code(['create', '--version', '1.0.0', '--build-command', 'x'])).toBe('USAGE');
    expect(await code(['create', '--dir', '/tmp', '--artifact', '/etc/hostname', '--version', '1.0.0', '--build-command', 'x'])).toBe('USAGE');
    expect(await code(['create', '--dir', '/tmp', '--build-command', 'x'])).toBe('USAGE');
    expect(await code(['create', '--dir', '/nonexistent', '--version', '1.0.0', '--build-command', 'x', '--image', 'node:20'])).toBe('MANIFEST_INPUT_INVALID');
    expect(await code(['create', '--dir', '/nonexistent', '--version', '1.0.0', '--build-command', 'x', '--toolchain', 'node'])).toBe('MANIFEST_INPUT_INVALID');
    expect(await code(['create', '--dir', '/nonexistent', '--version', '1.0.0', '--build-command', 'x'], {})).toBe('MANIFEST_SOURCE_MISSING');
    expect(await code(['create', '--artifact', '/etc/hostname', '--version', 'v1', '--build-command', 'x'])).toBe('MANIFEST_INPUT_INVALID');
    expect(await code(['verify'])).toBe('USAGE');
    expect(await code(['create', '--bogus'])).toBe('USAGE');
  });

  it('schema prints the JSON Schema', async () => {
    expect(await runManifestCommand(['schema'], {})).toBe(releaseManifestJsonSchemaText());
  });
});
