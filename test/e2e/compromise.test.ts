/**
 * Acceptance, end to end: "revoke a key as compromised at time T: the trust bundle and
 * CRL say so, signatures logged before T verify and those after do not."
 *
 * One `signet init` directory, the real service (`signet serve`) and the real CLI:
 *   1. release A is signed (`signet manifest create`, `signet sign --payload`, raw) and
 *      its log entry's integrated time noted from the receipt;
 *   2. T is a whole second strictly after A's integrated time; once the clock is past
 *      T, release B is signed by the same, still active, key (logged at or after T);
 *   3. alice opens `signet officer revoke --key-id demo-release@1 --compromised-at T`,
 *      bob and carol approve with fresh TOTP codes (oathtool, independent of the
 *      product), alice executes;
 *   4. GET /v1/trust names the version `compromised` since T and its certificate
 *      revoked for keyCompromise; the CRL at the URL the bundle names, read by
 *      `openssl crl`, lists the leaf's serial with reason Key Compromise; `signet
 *      verify` with the new bundle accepts A (exit 0) and refuses B (exit 7);
 *   5. the log holds the governance `executed` entry of the compromise.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../helpers/cli.js';
import { approve, getJson, governanceEvents, json, officer, setUpOfficers, totp, type OfficerEnvironment } from '../helpers/officers.js';

const COMMIT = '4c1e0b1d9a7f3e2b6c5d8e9f0a1b2c3d4e5f6a7b';

interface Release {
  readonly dir: string;
  readonly manifest: string;
  readonly signature: string;
  /** The integrated time (seconds) of the signature's log entry, from the receipt. */
  readonly integratedTime: number;
  readonly logIndex: number;
}

interface BundleKey {
  keyId: string;
  state: string;
  notBefore: string;
  notAfter: string | null;
  compromisedAt: string | null;
  certificates: { serialNumber: string; issuerCaId: string; certificatePem: string; revocation: { revokedAt: string; reason: string } | null }[];
}

interface TrustBundle {
  keys: BundleKey[];
  revocations: { serialNumber: string; issuerCaId: string; keyId: string | null; revokedAt: string; reason: string }[];
  intermediates: { caId: string; crlUrl: string }[];
  crls: { issuerCaId: string; url: string; crlPem: string }[];
}

/** Without CI variables, so the manifest's source comes from the options. */
function plainEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  if (process.env.SOFTHSM2_CONF !== undefined) env.SOFTHSM2_CONF = process.env.SOFTHSM2_CONF;
  return env;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sleeps until the wall clock reads at least `epochSeconds`. */
async function until(epochSeconds: number): Promise<void> {
  for (let left = epochSeconds * 1000 - Date.now(); left > 0; left = epochSeconds * 1000 - Date.now()) await sleep(left + 20);
}

/** GET over TLS verified against the service's CA, the body as bytes (a CRL is DER). */
async function getBytes(url: string, ca: Buffer): Promise<{ status: number; contentType: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type']), body: Buffer.concat(chunks) });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** A release directory as CI uploads it (dist/, release/), signed with `signet sign --payload` (raw). */
async function signRelease(env: OfficerEnvironment, version: string): Promise<Release> {
  const dir = join(env.dir, `release-${version}`);
  mkdirSync(join(dir, 'dist'), { recursive: true });
  mkdirSync(join(dir, 'release'));
  writeFileSync(join(dir, 'dist', 'app.tar.gz'), createHash('sha512').update(`app ${version}`).digest());
  const manifest = join(dir, 'release', 'manifest.intoto.json');
  const signature = `${manifest}.sig`;
  const created = await runCli(
    [
      'manifest', 'create', '--dir', join(dir, 'dist'), '--version', version, '--build-command', 'make dist',
      '--source-repository', 'https://github.com/example/demo', '--commit', COMMIT, '--ref', `refs/tags/v${version}`,
      '--builder-id', `https://github.com/example/demo/.github/workflows/release.yml@refs/tags/v${version}`, '--out', manifest,
    ],
    { env: plainEnv() },
  );
  expect(created.code, created.stderr).toBe(0);
  const token = await runCli(['dev-token', '--dir', env.dir, '--claim', `ref=refs/tags/v${version}`]);
  expect(token.code, token.stderr).toBe(0);
  const signed = await runCli(['sign', '--dir', env.dir, '--payload', manifest, '--format', 'raw', '--out', signature, '--token', token.stdout.trim()]);
  expect(signed.code, signed.stderr).toBe(0);
  const receipt = JSON.parse(readFileSync(`${signature}.receipt.json`, 'utf8')) as { keyId: string; log: { index: number; integratedTime: number } };
  expect(receipt.keyId).toBe(keyId);
  expect(Number.isInteger(receipt.log.integratedTime)).toBe(true);
  return { dir, manifest, signature, integratedTime: receipt.log.integratedTime, logIndex: receipt.log.index };
}

async function verifyRelease(release: Release, trustBundle: string): Promise<CliResult> {
  return runCli(['verify', '--manifest', release.manifest, '--signature', release.signature, '--dir', join(release.dir, 'dist'), '--trust-bundle', trustBundle, '--json'], {
    env: plainEnv(),
  });
}

let env: OfficerEnvironment;
let keyId: string;
let releaseA: Release;
let releaseB: Release;
/** The compromise time: a whole second strictly after A was logged, at or before B was. */
let compromisedAt: Date;
let proposalId: string;
let trust: TrustBundle;
let trustFile: string;

beforeAll(async () => {
  env = await setUpOfficers({ prefix: 'signet-compromise-' });
  keyId = env.init.keyId;
});

afterAll(async () => {
  expect(await env.serve.stop()).toBe(0);
});

describe('a key revoked as compromised at time T', { timeout: 120_000 }, () => {
  it('signs release A, then, once the clock is past T, release B with the same active key', async () => {
    expect(keyId).toBe('demo-release@1');
    releaseA = await signRelease(env, '1.0.0');
    // At least two whole seconds after A was logged; T strictly between A and B.
    await until(releaseA.integratedTime + 2);
    compromisedAt = new Date((releaseA.integratedTime + 1) * 1000);
    releaseB = await signRelease(env, '2.0.0');
    expect(releaseA.integratedTime).toBeLessThan(compromisedAt.getTime() / 1000);
    expect(releaseB.integratedTime).toBeGreaterThanOrEqual(compromisedAt.getTime() / 1000);

    // Before the compromise, both verify against the bundle of the moment.
    const before = join(env.dir, 'trust-before.json');
    writeFileSync(before, JSON.stringify(await getJson(env, '/v1/trust')));
    for (const release of [releaseA, releaseB]) {
      const result = await verifyRelease(release, before);
      expect(result.code, result.stderr).toBe(0);
    }
  });

  it('alice proposes the compromise, bob and carol approve with fresh codes, alice executes', async () => {
    const proposal = json(await officer(env, 'alice', 'revoke', '--key-id', keyId, '--compromised-at', compromisedAt.toISOString(), '--reason', 'release key leaked')) as {
      id: string;
      status: string;
      content: { action: Record<string, unknown> };
    };
    expect(proposal.status).toBe('open');
    expect(proposal.content.action).toEqual({ type: 'compromise-key', keyId, compromisedAt: compromisedAt.toISOString() });
    proposalId = proposal.id;

    json(await approve(env, 'bob', proposalId, totp(env.secret('bob'))));
    const approved = json(await approve(env, 'carol', proposalId, totp(env.secret('carol'))));
    expect(approved.quorum).toMatchObject({ counted: ['bob', 'carol'], met: true });
    const executed = json(await officer(env, 'alice', 'execute', proposalId)) as { proposal: { status: string }; keys: { keyId: string; state: string; compromisedAt: string | null }[] };
    expect(executed.proposal.status).toBe('executed');
    expect(executed.keys).toEqual([expect.objectContaining({ keyId, state: 'compromised', compromisedAt: compromisedAt.toISOString() })]);
  });

  it('GET /v1/trust: the version is compromised since T, its certificate revoked for keyCompromise', async () => {
    trust = (await getJson(env, '/v1/trust')) as TrustBundle;
    trustFile = join(env.dir, 'trust-after.json');
    writeFileSync(trustFile, JSON.stringify(trust));
    const key = trust.keys.find((k) => k.keyId === keyId);
    expect(key).toMatchObject({ state: 'compromised', compromisedAt: compromisedAt.toISOString() });
    expect(key?.certificates).toHaveLength(1);
    const leaf = key?.certificates[0];
    expect(leaf?.revocation).toMatchObject({ reason: 'keyCompromise' });
    expect(trust.revocations).toContainEqual(expect.objectContaining({ serialNumber: leaf?.serialNumber, keyId, reason: 'keyCompromise' }));
  });

  it('the CRL the bundle names lists the leaf with reason Key Compromise (openssl crl)', async () => {
    const leaf = trust.keys.find((k) => k.keyId === keyId)?.certificates[0];
    if (leaf === undefined) throw new Error('no certificate for the key');
    const crlUrl = trust.intermediates.find((ca) => ca.caId === leaf.issuerCaId)?.crlUrl;
    expect(crlUrl).toBeDefined();
    // The URL is the leaf's CRL distribution point, and the bundle's CRL entry's.
    const leafText = execFileSync('openssl', ['x509', '-noout', '-text'], { input: leaf.certificatePem }).toString();
    expect(leafText).toContain(`URI:${crlUrl ?? ''}`);
    expect(trust.crls.find((crl) => crl.issuerCaId === leaf.issuerCaId)?.url).toBe(crlUrl);

    const fetched = await getBytes(crlUrl ?? '', readFileSync(env.init.caCert));
    expect(fetched.status).toBe(200);
    expect(fetched.contentType).toContain('application/pkix-crl');
    const crlFile = join(env.dir, 'intermediate.crl');
    writeFileSync(crlFile, fetched.body);
    const text = execFileSync('openssl', ['crl', '-inform', 'DER', '-in', crlFile, '-text', '-noout']).toString();
    const entries = [...text.matchAll(/Serial Number: ([0-9A-Fa-f]+)\s+Revocation Date: [^\n]+\n\s+CRL entry extensions:\s+X509v3 CRL Reason Code:\s+([^\n]+)/g)].map((m) => ({
      serial: (m[1] ?? '').toLowerCase().replace(/^0+/, ''),
      reason: (m[2] ?? '').trim(),
    }));
    expect(entries, text).toContainEqual({ serial: leaf.serialNumber.toLowerCase().replace(/^0+/, ''), reason: 'Key Compromise' });
  });

  it('signet verify with the new bundle: A (logged before T) verifies, B (logged after T) exits 7', async () => {
    const a = await verifyRelease(releaseA, trustFile);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ ok: true, code: 'VERIFIED', keyId, log: { index: releaseA.logIndex, integratedTime: releaseA.integratedTime } });

    const b = await verifyRelease(releaseB, trustFile);
    expect(b.code, b.stderr).toBe(7);
    expect(JSON.parse(b.stdout)).toMatchObject({ ok: false, exitCode: 7, class: 'key-not-valid' });
    expect(b.stderr).toMatch(new RegExp(`^signet verify: KEY_COMPROMISED: key ${keyId} was compromised at ${compromisedAt.toISOString().replaceAll('.', '\\.')}`));
    expect(b.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('the log holds the governance entries of the compromise, ending with executed', async () => {
    const events = (await governanceEvents(env)).filter((e) => e.proposalId === proposalId);
    expect(events.map((e) => e.event as string)).toEqual(['proposed', 'approved', 'approved', 'executed']);
    expect(events.at(-1)).toMatchObject({
      event: 'executed',
      action: 'compromise-key',
      by: 'alice',
      approvals: ['bob', 'carol'],
      keys: [{ keyId, state: 'compromised', compromisedAt: compromisedAt.toISOString() }],
    });
  });
});
