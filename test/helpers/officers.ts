/**
 * Officers end to end: a `signet init` directory with the real service (`signet serve`
 * in a child process) and the real CLI (`signet officer …`) over mTLS with the
 * officers' certificates from `signet init`. TOTP codes are computed independently of
 * the product, by `oathtool --totp -b SECRET` (OATH Toolkit, RFC 6238), from the base32
 * secrets `signet init --json` printed.
 *
 * A code counts once per officer and only codes of the current step ±1 are accepted, so
 * an officer can approve at most twice in quick succession (steps t and t+1): a scenario
 * that needs fresh officers needs its own `setUpOfficers`.
 */
import { execFileSync } from 'node:child_process';
import { createHash, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { DEV_AUDIENCE, mintDevToken } from '../../cli/dev-issuer.js';
import { runCli, startServe, type CliResult, type ServeProcess } from './cli.js';
import { httpsCall } from './dev-env.js';
import { freeServicePort } from '../../bench/local-service.js';

export interface InitJson {
  config: string;
  url: string;
  caCert: string;
  clientCert: string;
  clientKey: string;
  project: string;
  keyId: string;
  officers: { name: string; cert: string; key: string; totpSecret: string }[];
}

export interface OfficerEnvironment {
  readonly dir: string;
  readonly init: InitJson;
  /** The running `signet serve`; a test that restarts it replaces it. */
  serve: ServeProcess;
  secret(officer: string): string;
}

/** `signet init --json` in a fresh directory on a free loopback port, then `signet serve` with `serveEnv`. */
export async function setUpOfficers(options: { readonly prefix?: string; readonly serveEnv?: NodeJS.ProcessEnv } = {}): Promise<OfficerEnvironment> {
  const dir = mkdtempSync(join(tmpdir(), options.prefix ?? 'signet-officers-'));
  const result = await runCli(['init', '--dir', dir, '--json', '--port', String(await freeServicePort())]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const init = JSON.parse(result.stdout) as InitJson;
  const serve = await startServe(init.config, options.serveEnv);
  return {
    dir,
    init,
    serve,
    secret: (officer) => {
      const found = init.officers.find((o) => o.name === officer);
      if (found === undefined) throw new Error(`no officer ${officer}`);
      return found.totpSecret;
    },
  };
}

/** The officer's code now, or `offsetSeconds` later (the next step), by oathtool. */
export function totp(secret: string, offsetSeconds = 0): string {
  const args = ['--totp', '-b', secret, ...(offsetSeconds === 0 ? [] : ['-N', `now + ${offsetSeconds} seconds`])];
  return execFileSync('oathtool', args).toString().trim();
}

export async function officer(env: OfficerEnvironment, name: string, ...args: string[]): Promise<CliResult> {
  return runCli(['officer', ...args, '--dir', env.dir, '--officer', name, '--json']);
}

/** The JSON a CLI command printed, after checking it succeeded. */
export function json(result: CliResult): any {
  expect(result.stderr, result.stderr).not.toContain('INTERNAL');
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
}

export async function propose(env: OfficerEnvironment, name: string, ...args: string[]): Promise<{ id: string; hash: string }> {
  const proposal = json(await officer(env, name, 'propose', ...args)) as { id: string; hash: string; status: string };
  expect(proposal.status).toBe('open');
  return proposal;
}

export async function approve(env: OfficerEnvironment, name: string, id: string, code: string): Promise<CliResult> {
  return officer(env, name, 'approve', id, '--code', code);
}

/** `signet sign` of a fresh artifact with a fresh dev token. */
export async function sign(env: OfficerEnvironment, content: string): Promise<{ result: CliResult; artifact: string }> {
  const token = await runCli(['dev-token', '--dir', env.dir]);
  expect(token.code).toBe(0);
  const artifact = join(env.dir, `artifact-${createHash('sha256').update(content).digest('hex').slice(0, 8)}.txt`);
  writeFileSync(artifact, content);
  const result = await runCli(['sign', '--dir', env.dir, '--file', artifact, '--json'], { env: { ...process.env, SIGNET_ID_TOKEN: token.stdout.trim() } });
  return { result, artifact };
}

/**
 * `POST /v1/sign` of `content`'s SHA-256 with a fresh dev token, straight over mTLS (no
 * CLI process: cheaper where a test signs only to see which version signs). Checks the
 * signature against the public key the service publishes for the version, and returns
 * that version.
 */
export async function signOverHttps(env: OfficerEnvironment, content: string): Promise<string> {
  const token = await mintDevToken({ privateJwkFile: join(env.dir, 'oidc', 'dev-issuer-key.json'), audience: DEV_AUDIENCE, claims: {}, expiresInSeconds: 600 });
  const answer = await httpsCall(`${env.init.url}/v1/sign`, {
    ca: readFileSync(env.init.caCert),
    cert: readFileSync(env.init.clientCert),
    key: readFileSync(env.init.clientKey),
    headers: { authorization: `Bearer ${token}` },
    json: { project: env.init.project, digest: { algorithm: 'sha256', value: createHash('sha256').update(content).digest('hex') } },
  });
  expect(answer.status, answer.text).toBe(200);
  const { keyId, signature } = answer.json as { keyId: string; signature: string };
  const { publicKeyPem } = (await getJson(env, `/v1/keys/${encodeURIComponent(keyId)}`)) as { publicKeyPem: string };
  expect(verify('sha256', Buffer.from(content), publicKeyPem, Buffer.from(signature, 'base64'))).toBe(true);
  return keyId;
}

export async function getJson(env: OfficerEnvironment, path: string): Promise<any> {
  const answer = await httpsCall(`${env.init.url}${path}`, { ca: readFileSync(env.init.caCert) });
  expect(answer.status, answer.text).toBe(200);
  return answer.json;
}

/** Every governance entry of the log, decoded. */
export async function governanceEvents(env: OfficerEnvironment): Promise<Record<string, any>[]> {
  const { treeSize } = (await getJson(env, '/v1/log')) as { treeSize: number };
  const { entries } = (await getJson(env, `/v1/log/entries?start=0&end=${treeSize}`)) as { entries: { kind: string; leaf: string }[] };
  return entries
    .filter((e) => e.kind === 'signet.governance/v1')
    .map((e) => (JSON.parse(Buffer.from(e.leaf, 'base64').toString('utf8')) as { spec: Record<string, unknown> }).spec);
}

export async function allLeavesText(env: OfficerEnvironment): Promise<string> {
  const { treeSize } = (await getJson(env, '/v1/log')) as { treeSize: number };
  const { entries } = (await getJson(env, `/v1/log/entries?start=0&end=${treeSize}`)) as { entries: { leaf: string }[] };
  return entries.map((e) => Buffer.from(e.leaf, 'base64').toString('utf8')).join('\n');
}
