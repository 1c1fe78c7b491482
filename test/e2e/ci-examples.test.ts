/**
 * The CI examples, run for real: the `run:` scripts of the GitHub Actions workflow
 * (examples/ci/github-actions.yml, the steps with an `id`) and the `script:` of the
 * GitLab CI `sign` job (examples/ci/gitlab-ci.yml) are read with the `yaml` package and
 * executed with bash, the way the runners do, with each platform's variables set,
 * against a development Signet (`signet init`, real SoftHSM, real TLS) and the built CLI
 * (`signet` on PATH runs dist/cli/main.js).
 *
 * GitHub's id token endpoint is stood in for by a loopback server that checks the
 * request (bearer request token, `audience=signet`) and answers with a token from the
 * dev issuer; GitLab's `id_tokens` is the SIGNET_ID_TOKEN variable. The policy requires
 * manifest binding, so a manifest from another commit than the token's is refused.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { parseReleaseManifest } from '../../manifest/schema.js';
import { IMPLEMENTED_FORMATS, type SignatureFormat } from '../../signer/formats.js';
import { CLI } from '../helpers/cli.js';
import { createDevEnvironment, devToken, httpsCall, startDevService, type DevEnvironment, type StartedService } from '../helpers/dev-env.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const COMMIT = '4c1e0b1d9a7f3e2b6c5d8e9f0a1b2c3d4e5f6a7b';
const TAG = 'v1.2.0';

let env: DevEnvironment;
let service: StartedService;
let binDir: string;
let tokenServer: Server;
let tokenUrl: string;
const tokenRequests: { audience: string | null; authorization: string | undefined }[] = [];
const REQUEST_TOKEN = randomBytes(16).toString('hex');

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (npm test does)`);
  env = await createDevEnvironment();
  // Bind every manifest to the token: source repository and commit must be the token's.
  const policyFile = join(env.dir, 'policy.yaml');
  const policy = parseYaml(readFileSync(policyFile, 'utf8')) as { projects: Record<string, Record<string, unknown>> };
  const project = policy.projects[env.init.project];
  if (project === undefined) throw new Error('the dev policy has no project');
  project.requireManifestBinding = true;
  writeFileSync(policyFile, toYaml(policy));
  service = await startDevService(env);

  // `signet` on PATH, as the examples expect after installing the CLI.
  binDir = mkdtempSync(join(tmpdir(), 'signet-bin-'));
  writeFileSync(join(binDir, 'signet'), `#!/usr/bin/env bash\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  chmodSync(join(binDir, 'signet'), 0o755);

  // Stand-in for GitHub's OIDC token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL).
  tokenServer = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    tokenRequests.push({ audience: url.searchParams.get('audience'), authorization: request.headers.authorization });
    if (request.headers.authorization !== `bearer ${REQUEST_TOKEN}` || url.searchParams.get('audience') === null) {
      response.writeHead(401).end();
      return;
    }
    devToken(env, { aud: url.searchParams.get('audience') ?? '', ref: `refs/tags/${TAG}`, sha: COMMIT }).then(
      (value) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ count: 1, value })),
      () => response.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve));
  tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token?api-version=2.0`;
});

afterAll(async () => {
  await new Promise((resolve) => tokenServer.close(resolve));
  await service.stop();
});

/** A checked-out repository after its build step: dist/ with the release files. */
function workspace(): string {
  const dir = mkdtempSync(join(tmpdir(), 'signet-ci-'));
  mkdirSync(join(dir, 'dist', 'docs'), { recursive: true });
  writeFileSync(join(dir, 'dist', 'app-linux-x64.tar.gz'), randomBytes(200_000));
  writeFileSync(join(dir, 'dist', 'app-darwin-arm64.tar.gz'), randomBytes(150_000));
  writeFileSync(join(dir, 'dist', 'docs', 'CHANGELOG.md'), '# 1.2.0\n');
  return dir;
}

/** The format the example asks for, or raw while the service does not make it yet. */
function formatFor(asked: string): SignatureFormat {
  return IMPLEMENTED_FORMATS.has(asked as SignatureFormat) ? (asked as SignatureFormat) : 'raw';
}

/** Replaces `${{ vars.X }}` and `${{ secrets.X }}`; any other expression is an error here. */
function expand(text: string, contexts: { vars: Record<string, string>; secrets: Record<string, string> }): string {
  return text.replace(/\$\{\{\s*([^}]*?)\s*\}\}/g, (_, expression: string) => {
    const match = /^(vars|secrets)\.([A-Z0-9_]+)$/.exec(expression);
    const value = match === null ? undefined : contexts[match[1] as 'vars' | 'secrets'][match[2] ?? ''];
    if (value === undefined) throw new Error(`the test cannot evaluate \${{ ${expression} }}`);
    return value;
  });
}

/**
 * Runs a script as GitHub runs `run:` (bash --noprofile --norc -eo pipefail) and GitLab
 * its script (errexit). Asynchronously: the service and the token endpoint answer from
 * this same process.
 */
function runBash(script: string, cwd: string, variables: Record<string, string>): Promise<{ status: number | null; output: string }> {
  const child = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script], {
    cwd,
    env: { PATH: `${binDir}:${process.env.PATH ?? ''}`, HOME: process.env.HOME ?? cwd, ...variables },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise((resolve) => {
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, output });
    });
  });
}

interface GithubStep {
  readonly id?: string;
  readonly name?: string;
  readonly run?: string;
  readonly env?: Record<string, string>;
}

function githubExample(): { env: Record<string, string>; steps: GithubStep[]; permissions: Record<string, string> } {
  const workflow = parseYaml(readFileSync(join(ROOT, 'examples', 'ci', 'github-actions.yml'), 'utf8')) as {
    env: Record<string, string>;
    permissions: Record<string, string>;
    jobs: { release: { steps: GithubStep[] } };
  };
  return { env: workflow.env, steps: workflow.jobs.release.steps, permissions: workflow.permissions };
}

async function keyPublicPem(keyId: string): Promise<string> {
  const answer = await httpsCall(`${service.url}/v1/keys/${encodeURIComponent(keyId)}`, { ca: readFileSync(env.init.caCert) });
  return answer.json.publicKeyPem as string;
}

/** Checks the signature the sign step wrote, with openssl, against the key the service publishes. */
async function checkSignature(dir: string, format: SignatureFormat): Promise<Record<string, any>> {
  const manifest = readFileSync(join(dir, 'release', 'manifest.intoto.json'));
  const receipt = JSON.parse(readFileSync(join(dir, 'release', 'manifest.intoto.json.sig.receipt.json'), 'utf8')) as Record<string, any>;
  expect(receipt.format).toBe(format);
  expect(receipt.log.index).toBeGreaterThanOrEqual(0);
  const publicKey = join(dir, 'key.pem');
  writeFileSync(publicKey, await keyPublicPem(receipt.keyId as string));
  let signed: Buffer;
  let signature: Buffer;
  if (format === 'dsse') {
    const envelope = receipt.envelope as { payloadType: string; payload: string; signatures: { sig: string }[] };
    const payload = Buffer.from(envelope.payload, 'base64');
    expect(payload.equals(manifest)).toBe(true);
    signed = Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(envelope.payloadType)} ${envelope.payloadType} ${payload.length} `), payload]);
    signature = Buffer.from(envelope.signatures[0]?.sig ?? '', 'base64');
  } else {
    signed = manifest;
    signature = readFileSync(join(dir, 'release', 'manifest.intoto.json.sig'));
  }
  writeFileSync(join(dir, 'signed.bin'), signed);
  writeFileSync(join(dir, 'signature.bin'), signature);
  const verified = spawnSync('openssl', ['dgst', '-sha256', '-verify', publicKey, '-signature', join(dir, 'signature.bin'), join(dir, 'signed.bin')], { encoding: 'utf8' });
  expect(verified.stdout).toContain('Verified OK');
  return receipt;
}

function checkManifest(dir: string, repository: string): void {
  const manifest = parseReleaseManifest(readFileSync(join(dir, 'release', 'manifest.intoto.json')));
  expect(manifest.subject.map((s) => s.name)).toEqual(['app-darwin-arm64.tar.gz', 'app-linux-x64.tar.gz', 'docs/CHANGELOG.md']);
  const [first] = manifest.subject;
  expect(first?.digest.sha256).toBe(createHash('sha256').update(readFileSync(join(dir, 'dist', 'app-darwin-arm64.tar.gz'))).digest('hex'));
  expect(manifest.predicate.buildDefinition.externalParameters.version).toBe('1.2.0');
  expect(manifest.predicate.buildDefinition.resolvedDependencies[0].digest.gitCommit).toBe(COMMIT);
  expect(manifest.predicate.buildDefinition.resolvedDependencies[0].uri).toContain(`/${repository}@refs/tags/${TAG}`);
  expect(manifest.predicate.buildDefinition.internalParameters.environment.toolchains.node).toBe(execFileSync('node', ['--version']).toString().trim().replace(/^v/, ''));
}

describe('GitHub Actions example (examples/ci/github-actions.yml)', () => {
  const example = githubExample();

  it('asks for an id token (permissions id-token: write) with the audience "signet"', () => {
    expect(example.permissions['id-token']).toBe('write');
    const tokenStep = example.steps.find((s) => s.id === 'token');
    expect(tokenStep?.run).toContain('audience=signet');
    expect(example.steps.filter((s) => s.id !== undefined).map((s) => s.id)).toEqual(['connect', 'manifest', 'token', 'sign']);
  });

  function githubVariables(dir: string, sha: string): Record<string, string> {
    const runnerTemp = join(dir, '_runner_temp');
    mkdirSync(runnerTemp, { recursive: true });
    return {
      ...example.env,
      SIGNET_FORMAT: formatFor(example.env.SIGNET_FORMAT ?? 'raw'),
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      GITHUB_SERVER_URL: 'https://github.com',
      GITHUB_REPOSITORY: 'example/demo',
      GITHUB_SHA: sha,
      GITHUB_REF: `refs/tags/${TAG}`,
      GITHUB_REF_NAME: TAG,
      GITHUB_REF_TYPE: 'tag',
      GITHUB_WORKFLOW_REF: `example/demo/.github/workflows/release.yml@refs/tags/${TAG}`,
      GITHUB_RUN_ID: '9001',
      GITHUB_RUN_ATTEMPT: '1',
      GITHUB_EVENT_NAME: 'push',
      GITHUB_WORKSPACE: dir,
      RUNNER_TEMP: runnerTemp,
      RUNNER_OS: 'Linux',
      RUNNER_ARCH: 'X64',
      RUNNER_ENVIRONMENT: 'github-hosted',
      ACTIONS_ID_TOKEN_REQUEST_URL: tokenUrl,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: REQUEST_TOKEN,
    };
  }

  async function runGithubSteps(dir: string, sha: string): Promise<{ id: string; status: number | null; output: string }[]> {
    const contexts = {
      vars: { SIGNET_URL: service.url, SIGNET_PROJECT: env.init.project, SIGNET_SERVER_CA: readFileSync(env.init.caCert, 'utf8') },
      secrets: { SIGNET_CLIENT_CERT: readFileSync(env.init.clientCert, 'utf8'), SIGNET_CLIENT_KEY: readFileSync(env.init.clientKey, 'utf8') },
    };
    const variables = githubVariables(dir, sha);
    const results: { id: string; status: number | null; output: string }[] = [];
    for (const step of example.steps) {
      if (step.id === undefined || step.run === undefined) continue;
      const stepEnv = Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, expand(v, contexts)]));
      const result = await runBash(expand(step.run, contexts), dir, { ...variables, ...stepEnv });
      results.push({ id: step.id, ...result });
      if (result.status !== 0) break;
    }
    return results;
  }

  it('its steps build the manifest, get the token, sign it, and leave signature and receipt to upload', async () => {
    const dir = workspace();
    const before = tokenRequests.length;
    const results = await runGithubSteps(dir, COMMIT);
    for (const result of results) expect(result.status, `${result.id}:\n${result.output}`).toBe(0);
    expect(results.map((r) => r.id)).toEqual(['connect', 'manifest', 'token', 'sign']);
    expect(tokenRequests.slice(before)).toEqual([{ audience: 'signet', authorization: `bearer ${REQUEST_TOKEN}` }]);
    // The token file is gone after signing; the key files were written owner-only.
    expect(existsSync(join(dir, '_runner_temp', 'signet-id-token'))).toBe(false);
    expect(execFileSync('stat', ['-c', '%a', join(dir, '_runner_temp', 'signet-client-key.pem')]).toString().trim()).toBe('600');

    checkManifest(dir, 'example/demo');
    const receipt = await checkSignature(dir, formatFor(example.env.SIGNET_FORMAT ?? 'raw'));
    expect(receipt.identity.subject).toBe(`repo:example/demo:ref:refs/tags/${TAG}`);
    expect(readFileSync(join(dir, 'release', 'manifest.intoto.json.sig')).length).toBeGreaterThan(0);
  });

  it('a manifest of another commit than the token vouches for is refused (manifest binding)', async () => {
    const dir = workspace();
    const results = await runGithubSteps(dir, 'f'.repeat(40));
    const sign = results.find((r) => r.id === 'sign');
    expect(sign?.status).toBe(1);
    expect(sign?.output).toContain('POLICY_DENIED');
    expect(existsSync(join(dir, 'release', 'manifest.intoto.json.sig'))).toBe(false);
  });
});

describe('GitLab CI example (examples/ci/gitlab-ci.yml)', () => {
  const pipeline = parseYaml(readFileSync(join(ROOT, 'examples', 'ci', 'gitlab-ci.yml'), 'utf8')) as {
    variables: Record<string, string>;
    sign: { id_tokens: Record<string, { aud: string }>; script: string[] };
  };

  it('asks GitLab for an id token with the audience "signet" (id_tokens)', () => {
    expect(pipeline.sign.id_tokens).toEqual({ SIGNET_ID_TOKEN: { aud: 'signet' } });
  });

  it("the sign job's script builds the manifest, signs it and leaves signature and receipt", async () => {
    const dir = workspace();
    const token = await devToken(env, { ref: `refs/tags/${TAG}`, sha: COMMIT });
    const result = await runBash(pipeline.sign.script.join('\n'), dir, {
      ...pipeline.variables,
      SIGNET_FORMAT: formatFor(pipeline.variables.SIGNET_FORMAT ?? 'raw'),
      CI: 'true',
      GITLAB_CI: 'true',
      CI_SERVER_URL: 'https://gitlab.example.com',
      CI_PROJECT_PATH: 'example/demo',
      CI_PROJECT_URL: 'https://gitlab.example.com/example/demo',
      CI_COMMIT_SHA: COMMIT,
      CI_COMMIT_TAG: TAG,
      CI_COMMIT_REF_NAME: TAG,
      CI_JOB_URL: 'https://gitlab.example.com/example/demo/-/jobs/77',
      CI_PIPELINE_SOURCE: 'push',
      CI_RUNNER_ID: '5',
      // id_tokens and File-type variables, as the runner provides them.
      SIGNET_ID_TOKEN: token,
      SIGNET_URL: service.url,
      SIGNET_PROJECT: env.init.project,
      SIGNET_SERVER_CA: env.init.caCert,
      SIGNET_CLIENT_CERT: env.init.clientCert,
      SIGNET_CLIENT_KEY: env.init.clientKey,
    });
    expect(result.status, result.output).toBe(0);
    checkManifest(dir, 'example/demo');
    await checkSignature(dir, formatFor(pipeline.variables.SIGNET_FORMAT ?? 'raw'));
  });
});

describe('deployment gate (examples/ci/deploy-gate.sh)', () => {
  // `signet verify` comes later: a stand-in with the proposed interface answers here,
  // so what is tested is the gate itself (arguments passed, stop on any failure).
  const GATE = join(ROOT, 'examples', 'ci', 'deploy-gate.sh');

  async function gate(verifyExit: number): Promise<{ status: number | null; output: string; args: string; deployed: boolean }> {
    const dir = mkdtempSync(join(tmpdir(), 'signet-gate-'));
    const stubBin = join(dir, 'bin');
    mkdirSync(stubBin);
    writeFileSync(
      join(stubBin, 'signet'),
      `#!/usr/bin/env bash\nprintf '%s\\n' "$@" > "${dir}/args"\necho '{"ok": ${verifyExit === 0}, "code": "ARTIFACT_MODIFIED", "reason": "dist/app.tar.gz differs from the manifest"}'\nexit ${verifyExit}\n`,
    );
    chmodSync(join(stubBin, 'signet'), 0o755);
    const child = spawn('bash', [GATE, join(dir, 'rel'), '--', 'touch', join(dir, 'deployed')], {
      env: { PATH: `${stubBin}:${process.env.PATH ?? ''}`, SIGNET_TRUST_BUNDLE: '/etc/signet/trust.json', SIGNET_REPOSITORY: 'example/demo', SIGNET_REF: 'refs/tags/v*' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    return { status, output, args: readFileSync(join(dir, 'args'), 'utf8'), deployed: existsSync(join(dir, 'deployed')) };
  }

  it('deploys only after signet verify succeeds, with the identity it requires', async () => {
    const passed = await gate(0);
    expect(passed.status).toBe(0);
    expect(passed.deployed).toBe(true);
    expect(passed.args.split('\n')).toEqual(expect.arrayContaining(['verify', '--manifest', '--signature', '--dir', '--trust-bundle', '/etc/signet/trust.json', '--repository', 'example/demo', '--ref', 'refs/tags/v*', '--json']));
  });

  it('stops with verify’s exit status and its reason on any failure', async () => {
    const refused = await gate(3);
    expect(refused.status).toBe(3);
    expect(refused.deployed).toBe(false);
    expect(refused.output).toContain('NOT deploying: an artifact was changed (ARTIFACT_MODIFIED: dist/app.tar.gz differs from the manifest)');
  });
});
