/**
 * The real CLI end to end: `signet init --json`, `signet serve`, `signet sign`, and
 * `openssl` verifying the signature against the key the service publishes. Also the
 * start-up refusals: each stops `signet serve` with one clear message.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startServe, type ServeProcess } from '../helpers/cli.js';
import { httpsCall } from '../helpers/dev-env.js';
import { freeServicePort } from '../../bench/local-service.js';

interface InitJson {
  config: string;
  url: string;
  caCert: string;
  clientCert: string;
  clientKey: string;
  project: string;
  keyId: string;
  officers: unknown[];
}

let dir: string;
let init: InitJson;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'signet-cli-'));
  const result = await runCli(['init', '--dir', dir, '--json', '--port', String(await freeServicePort())]);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  init = JSON.parse(result.stdout) as InitJson;
});

describe('signet init', () => {
  it('prints the fixed fields with absolute paths', () => {
    for (const field of ['config', 'caCert', 'clientCert', 'clientKey'] as const) {
      expect(init[field].startsWith('/')).toBe(true);
    }
    expect(init.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(init).toMatchObject({ project: 'example', keyId: 'demo-release@1' });
    expect(init.officers.map((o) => (o as { name: string }).name)).toEqual(['alice', 'bob', 'carol']);
  });

  it('keeps secrets out of the config and writes key and PIN files owner-only', () => {
    const config = readFileSync(init.config, 'utf8');
    const pin = readFileSync(join(dir, 'secrets', 'hsm-pin'), 'utf8').trim();
    expect(config).not.toContain(pin);
    for (const file of ['secrets/hsm-pin', 'secrets/hsm-so-pin', 'tls/server-key.pem', 'tls/client-key.pem', 'signet.db']) {
      expect(execFileSync('stat', ['-c', '%a', join(dir, file)]).toString().trim(), file).toBe('600');
    }
  });

  it('refuses to overwrite without --force', async () => {
    const again = await runCli(['init', '--dir', dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('INIT_EXISTS');
  });
});

describe('signet serve + signet sign', () => {
  let serve: ServeProcess;

  beforeAll(async () => {
    serve = await startServe(init.config);
  });

  afterAll(async () => {
    const code = await serve.stop();
    expect(code).toBe(0); // graceful stop on SIGTERM
  });

  async function tokenEnv(...claims: string[]): Promise<NodeJS.ProcessEnv> {
    const minted = await runCli(['dev-token', '--dir', dir, ...claims.flatMap((c) => ['--claim', c])]);
    expect(minted.code).toBe(0);
    return { ...process.env, SIGNET_ID_TOKEN: minted.stdout.trim() };
  }

  it('signet dev-token mints a GitHub-Actions-shaped token with a fresh jti, and --claim overrides', async () => {
    const first = await runCli(['dev-token', '--dir', dir]);
    const second = await runCli(['dev-token', '--dir', dir, '--claim', 'ref=refs/tags/v1.0.0', '--expires-in', '60']);
    const payload = (jwt: string) => JSON.parse(Buffer.from(jwt.trim().split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const a = payload(first.stdout);
    const b = payload(second.stdout);
    expect(a).toMatchObject({ repository: 'example/demo', ref: 'refs/heads/main', aud: 'signet', runner_environment: 'github-hosted' });
    expect(b).toMatchObject({ ref: 'refs/tags/v1.0.0', ref_type: 'tag' });
    expect(a.jti).not.toBe(b.jti);
    expect(Number(b.exp) - Number(b.iat)).toBe(60);
  });

  it('signs a file; openssl verifies it with the published public key', async () => {
    const artifact = join(dir, 'release.tar.gz');
    writeFileSync(artifact, Buffer.alloc(256 * 1024, 7));
    const signed = await runCli(['sign', '--dir', dir, '--file', artifact, '--json'], { env: await tokenEnv() });
    expect(signed.stderr).toBe('');
    expect(signed.code).toBe(0);
    const outcome = JSON.parse(signed.stdout) as { signatureFile: string; receiptFile: string; keyId: string };
    expect(outcome.keyId).toBe(init.keyId);
    const receipt = JSON.parse(readFileSync(outcome.receiptFile, 'utf8')) as Record<string, unknown>;
    expect(receipt).toMatchObject({ keyId: init.keyId, format: 'raw', artifact: { name: 'release.tar.gz' } });

    const key = await httpsCall(`${init.url}/v1/keys/${init.keyId}`, { ca: readFileSync(init.caCert) });
    const pub = join(dir, 'published.pem');
    writeFileSync(pub, key.json.publicKeyPem as string);
    const verified = execFileSync('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', outcome.signatureFile, artifact]).toString();
    expect(verified).toContain('Verified OK');

    // One changed byte and openssl refuses.
    writeFileSync(artifact, Buffer.alloc(256 * 1024, 8));
    expect(() => execFileSync('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', outcome.signatureFile, artifact], { stdio: 'pipe' })).toThrow();
  });

  it('signet keys list shows the key', async () => {
    const listed = await runCli(['keys', 'list', '--dir', dir]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('demo-release@1\tecdsa-p256\tactive');
  });

  it('a refused request exits non-zero with the server code', async () => {
    const artifact = join(dir, 'x.bin');
    writeFileSync(artifact, 'x');
    const refused = await runCli(['sign', '--dir', dir, '--file', artifact, '--project', 'nope'], { env: await tokenEnv() });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('POLICY_DENIED');
    const noToken = await runCli(['sign', '--dir', dir, '--file', artifact], { env: { ...process.env, SIGNET_ID_TOKEN: '' } });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('id token is required');
  });

  it('--dry-run explains the decision without signing', async () => {
    const artifact = join(dir, 'x.bin');
    writeFileSync(artifact, 'x');
    const allowed = await runCli(['sign', '--dir', dir, '--file', artifact, '--dry-run'], { env: await tokenEnv() });
    expect(allowed.code).toBe(0);
    expect(allowed.stdout).toContain('allowed (would sign with demo-release@1)');
    const denied = await runCli(['sign', '--dir', dir, '--file', artifact, '--dry-run'], { env: await tokenEnv('ref=refs/heads/feature') });
    expect(denied.code).toBe(1);
    expect(denied.stdout).toContain('IDENTITY_NOT_ALLOWED');
  });
});

describe('start-up refuses a broken set-up with one clear message', () => {
  function variant(edit: (config: string) => string): string {
    const path = join(dir, `variant-${Math.random().toString(16).slice(2)}.yaml`);
    writeFileSync(path, edit(readFileSync(init.config, 'utf8')));
    return path;
  }

  async function expectRefusal(config: string, code: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
    const result = await runCli(['serve', '--config', config], { env, timeoutMs: 30_000 });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(code);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    return result.stderr;
  }

  it('wrong PIN → HSM_PIN_INCORRECT, without echoing the PIN', async () => {
    writeFileSync(join(dir, 'secrets', 'wrong-pin'), 'wrong-pin-value\n', { mode: 0o600 });
    const stderr = await expectRefusal(variant((c) => c.replace('file: secrets/hsm-pin', 'file: secrets/wrong-pin')), 'HSM_PIN_INCORRECT');
    expect(stderr).not.toContain('wrong-pin-value');
  });

  it('PIN variable not set → CONFIG_SECRET_MISSING', async () => {
    const env = { ...process.env };
    delete env.SIGNET_HSM_PIN_UNSET;
    await expectRefusal(variant((c) => c.replace(/pin:\n\s+file: secrets\/hsm-pin/, 'pin:\n    env: SIGNET_HSM_PIN_UNSET')), 'CONFIG_SECRET_MISSING', env);
  });

  it('missing token → HSM_TOKEN_NOT_FOUND', async () => {
    await expectRefusal(variant((c) => c.replace('tokenLabel: signet-dev', 'tokenLabel: no-such-token')), 'HSM_TOKEN_NOT_FOUND');
  });

  it('missing module → HSM_MODULE_NOT_FOUND', async () => {
    await expectRefusal(variant((c) => c.replace(/module: .*/, 'module: /usr/lib/nothing/libnothing.so')), 'HSM_MODULE_NOT_FOUND');
  });

  it('a key recorded in storage but missing from the token → KEY_MISSING_IN_HSM', async () => {
    // A fresh token with the same label: storage still names demo-release@1.
    const other = mkdtempSync(join(tmpdir(), 'signet-cli-other-'));
    const otherInit = await runCli(['init', '--dir', other, '--json']);
    expect(otherInit.code).toBe(0);
    const otherConfig = JSON.parse(otherInit.stdout) as InitJson;
    const config = variant(() =>
      readFileSync(otherConfig.config, 'utf8').replace('path: signet.db', `path: ${join(dir, 'signet.db')}`).replace(/(certFile|keyFile|clientCaFile|file): (tls|secrets|policy)/g, `$1: ${other}/$2`).replace('softhsm2Conf: hsm', `softhsm2Conf: ${other}/hsm`),
    );
    const stderr = await expectRefusal(config, 'KEY_MISSING_IN_HSM');
    expect(stderr).toContain('demo-release@1');
  });

  it('an invalid config → CONFIG_INVALID listing every bad field', async () => {
    const result = await runCli(['serve', '--config', variant((c) => c.replace('port:', 'port: -1\n  oops:').replace('sessions: 2', 'sessions: 0'))]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('CONFIG_INVALID');
    expect(result.stderr).toContain('server.port');
    expect(result.stderr).toContain('hsm.sessions');
  });
});
