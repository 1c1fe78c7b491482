/**
 * Published trust end to end: `signet init` (real SoftHSM token, real SQLite), the real
 * service over real TLS without any client certificate, the real CLI for `signet ca`
 * ceremonies while the service runs, and the real openssl and gpg to judge what is
 * served: chains that `openssl verify -x509_strict` accepts, a trust bundle valid
 * against the shipped JSON Schema, a JWKS, an OpenPGP key gpg imports with a valid
 * self-signature, the CRL at the URL the leaves name, regenerated on revocation, cache
 * headers with ETags and 304s, and expiring certificates in /readyz and the log.
 */
import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCodeSigningChain } from '../../ca/chain-verification.js';
import type { ExpiringCertificate } from '../../ca/expiry.js';
import { CERTIFICATE_EXPIRY_KIND } from '../../ca/log-entries.js';
import type { TrustBundle } from '../../ca/trust-bundle.js';
import { runCli } from '../helpers/cli.js';
import { createDevEnvironment, httpsCall, startDevService, type DevEnvironment, type StartedService } from '../helpers/dev-env.js';

let env: DevEnvironment;
let service: StartedService;
let ca: Buffer;
let work: string;

beforeAll(async () => {
  env = await createDevEnvironment();
  // Warn about anything expiring within 400 days: the 365-day leaf is then "expiring".
  const config = parseYaml(readFileSync(env.init.config, 'utf8')) as Record<string, unknown>;
  writeFileSync(env.init.config, toYaml({ ...config, ca: { expiryWarningDays: 400 } }));
  service = await startDevService(env);
  ca = readFileSync(env.init.caCert);
  work = mkdtempSync(join(tmpdir(), 'signet-trust-'));
});

afterAll(async () => {
  await service.stop();
});

/** Public GETs: server CA only, never a client certificate. */
const get = (path: string, headers: Record<string, string> = {}) => httpsCall(`${service.url}${path}`, { ca, headers });
const file = (name: string, content: string | Buffer): string => {
  const path = join(work, name);
  writeFileSync(path, content);
  return path;
};
const splitPem = (text: string): string[] => text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];

function opensslVerify(chain: readonly string[], prefix: string) {
  const [leaf, intermediate, root] = chain;
  try {
    return {
      ok: true,
      out: execFileSync('openssl', ['verify', '-x509_strict', '-CAfile', file(`${prefix}-root.pem`, root!), '-untrusted', file(`${prefix}-int.pem`, intermediate!), file(`${prefix}-leaf.pem`, leaf!)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    };
  } catch (error) {
    return { ok: false, out: String((error as { stderr?: unknown }).stderr) };
  }
}

async function getCrlDer(path: string): Promise<Buffer> {
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    request(`${service.url}${path}`, { ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`GET ${path}: ${res.statusCode}`));
        else resolve(Buffer.concat(chunks));
      });
    })
      .on('error', reject)
      .end();
  });
}

describe('certificate chains', () => {
  it('GET /v1/keys/{keyId}/chain serves leaf, intermediate and root that openssl accepts, with the codeSigning EKU', async () => {
    for (const reference of [env.init.keyId, env.init.keyName]) {
      const answer = await get(`/v1/keys/${reference}/chain`);
      expect(answer.status).toBe(200);
      expect(answer.headers['content-type']).toBe('application/pem-certificate-chain');
      const chain = splitPem(answer.text);
      expect(chain).toHaveLength(3);
      const verified = opensslVerify(chain, 'served');
      expect(verified.out.trim()).toMatch(/: OK$/);
      expect(verified.ok).toBe(true);
      const eku = execFileSync('openssl', ['x509', '-noout', '-ext', 'extendedKeyUsage', '-in', file('served-eku.pem', chain[0]!)], { encoding: 'utf8' });
      expect(eku).toMatch(/Code Signing/);
      // The root is the one `signet init` wrote for verifiers.
      expect(chain[2]).toBe(readFileSync(env.init.codeSigningRoot, 'utf8'));
    }
  });

  it('the log key is not published as a signing key; unknown keys are 404', async () => {
    expect((await get('/v1/keys/signet-log/chain')).status).toBe(404);
    const unknown = await get('/v1/keys/nothing@9/chain');
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe('KEY_NOT_FOUND');
    expect((await get('/v1/keys/Bad%20Key/chain')).status).toBe(400);
  });
});

describe('trust bundle', () => {
  it('GET /v1/trust validates against schemas/trust-bundle.schema.json and holds what offline verification needs', async () => {
    const answer = await get('/v1/trust');
    expect(answer.status).toBe(200);
    const schema = JSON.parse(readFileSync(new URL('../../schemas/trust-bundle.schema.json', import.meta.url), 'utf8')) as object;
    // Formats are annotations in draft 2020-12; the schema's patterns carry the checks.
    const validate = new Ajv2020({ strict: true, allErrors: true, formats: { 'date-time': true, uri: true } }).compile(schema);
    expect(validate(answer.json), JSON.stringify(validate.errors)).toBe(true);

    const bundle = answer.json as TrustBundle;
    const log = (await get('/v1/log')).json;
    expect(bundle.log).toEqual({ origin: log.origin, logId: log.logId, publicKeyPem: log.publicKeyPem, signatureAlgorithm: 'ecdsa-p256-sha256' });
    expect(bundle.roots.map((r) => r.caId)).toEqual(['root-1']);
    expect(bundle.intermediates.map((r) => r.caId)).toEqual(['intermediate-1']);
    expect(bundle.keys.map((k) => k.keyId)).toEqual([env.init.keyId]);
    const key = bundle.keys[0]!;
    expect(key).toMatchObject({ state: 'active', identity: `https://127.0.0.1/log/keys/${env.init.keyId}`, compromisedAt: null });
    expect(key.certificatePem).toBe(splitPem((await get(`/v1/keys/${env.init.keyId}/chain`)).text)[0]);
    expect(bundle.crls.map((c) => c.issuerCaId).sort()).toEqual(['intermediate-1', 'root-1']);

    // Enough to verify offline: the chain check needs nothing but the bundle.
    const verdict = verifyCodeSigningChain({ bundle, leafPem: key.certificatePem!, at: new Date() });
    expect(verdict).toMatchObject({ ok: true, keyId: env.init.keyId });
  });

  it('is cacheable: Cache-Control, a strong ETag, and 304 for If-None-Match', async () => {
    for (const path of ['/v1/trust', '/v1/trust/jwks', `/v1/keys/${env.init.keyId}/chain`, `/v1/keys/${env.init.keyId}/pgp`, '/v1/ca/intermediate.crl']) {
      const first = await get(path);
      expect(first.status, path).toBe(200);
      expect(first.headers['cache-control'], path).toMatch(/^public, max-age=\d+$/);
      const tag = first.headers.etag as string;
      expect(tag, path).toMatch(/^"[0-9a-f]{64}"$/);
      expect((await get(path)).headers.etag, path).toBe(tag);
      const revalidated = await get(path, { 'if-none-match': tag });
      expect(revalidated.status, path).toBe(304);
      expect(revalidated.text).toBe('');
      expect(revalidated.headers.etag).toBe(tag);
      expect(revalidated.headers['cache-control']).toBe(first.headers['cache-control']);
      expect((await get(path, { 'if-none-match': '"other"' })).status, path).toBe(200);
    }
  });

  it('GET /v1/trust/jwks lists the signing keys with their chains', async () => {
    const answer = await get('/v1/trust/jwks');
    expect(answer.headers['content-type']).toBe('application/jwk-set+json');
    const jwks = JSON.parse(answer.text) as { keys: Record<string, any>[] };
    expect(jwks.keys.map((k) => k.kid as string)).toEqual([env.init.keyId]);
    const jwk = jwks.keys[0]!;
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', use: 'sig' });
    expect(jwk.d).toBeUndefined();
    const key = (await get(`/v1/keys/${env.init.keyId}`)).json;
    const fromJwk = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    expect(fromJwk).toBe(key.publicKeyPem);
    expect(jwk.x5c).toHaveLength(3);
  });

  it('GET /v1/keys/{keyId}/pgp serves a key gpg imports with a valid self-signature', async () => {
    const answer = await get(`/v1/keys/${env.init.keyId}/pgp`);
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/pgp-keys');
    expect(answer.text).toMatch(/^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
    // Made once and cached: the same bytes again.
    expect((await get(`/v1/keys/${env.init.keyId}/pgp`)).text).toBe(answer.text);
    const home = mkdtempSync(join(tmpdir(), 'signet-gpg-'));
    const gpg = (args: string[]) => execFileSync('gpg', ['--homedir', home, '--batch', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    gpg(['--import', file('key.asc', answer.text)]);
    const checked = gpg(['--with-colons', '--check-signatures']);
    // "sig:!:" is a signature gpg checked and found good (doc/DETAILS, field 2).
    expect(checked).toMatch(/^sig:!:/m);
    expect(checked).toContain(`Signet release key ${env.init.keyId}`);
  });
});

describe('revocation data', () => {
  it('serves the CRL at the URL the leaves name; signet ca revoke makes the next one list the leaf', async () => {
    const chain = splitPem((await get(`/v1/keys/${env.init.keyId}/chain`)).text);
    const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', file('leaf.pem', chain[0]!)], { encoding: 'utf8' });
    const url = /URI:(https:\/\/\S+\/v1\/ca\/intermediate-1\/crl)/.exec(text)?.[1];
    expect(url).toBeDefined();
    const path = new URL(url!).pathname;
    const before = await getCrlDer(path);
    expect(before.equals(await getCrlDer('/v1/ca/intermediate.crl'))).toBe(true);
    const cas = file('cas.pem', chain[1]! + chain[2]!);
    const verifyCrl = (der: Buffer, name: string) =>
      execFileSync('openssl', ['crl', '-inform', 'DER', '-in', file(name, der), '-CAfile', cas, '-verify', '-noout', '-text'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(verifyCrl(before, 'before.crl')).toContain('No Revoked Certificates');

    const serial = execFileSync('openssl', ['x509', '-noout', '-serial', '-in', file('serial.pem', chain[0]!)], { encoding: 'utf8' }).trim().split('=')[1]!.toLowerCase();
    const revoked = await runCli(['ca', 'revoke', '--config', env.init.config, '--serial', serial, '--reason', 'superseded', '--json']);
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ revocations: [{ serialNumber: serial, reason: 'superseded' }], crls: [{ issuerCaId: 'intermediate-1', crlNumber: 2 }] });

    const after = await getCrlDer(path);
    const listed = verifyCrl(after, 'after.crl');
    expect(listed).toContain(`Serial Number: ${serial.toUpperCase()}`);
    expect(listed).toMatch(/Superseded/);
    // No usable certificate now; the bundle tells verifiers why.
    expect((await get(`/v1/keys/${env.init.keyId}/chain`)).status).toBe(404);
    const bundle = (await get('/v1/trust')).json;
    expect(bundle.revocations).toEqual([expect.objectContaining({ serialNumber: serial, keyId: env.init.keyId, reason: 'superseded' })]);
    expect(bundle.keys[0].certificatePem).toBeNull();

    // A new certificate, issued during the service's life, is served at once.
    const issued = await runCli(['ca', 'issue', '--config', env.init.config, '--key-id', env.init.keyId, '--json']);
    expect(issued.code).toBe(0);
    const renewed = splitPem((await get(`/v1/keys/${env.init.keyId}/chain`)).text);
    expect(renewed[0]).toBe(JSON.parse(issued.stdout).certificatePem);
    expect(opensslVerify(renewed, 'renewed').ok).toBe(true);
  });
});

describe('expiry watch', () => {
  it('certificates within the warning window appear in /readyz and in the log as warnings', async () => {
    const ready = await get('/readyz');
    expect(ready.status).toBe(200);
    const certificates = ready.json.certificates as { windowDays: number; expiring: ExpiringCertificate[] };
    expect(certificates.windowDays).toBe(400);
    const leaves = certificates.expiring.filter((c) => c.role === 'leaf');
    expect(leaves.length).toBeGreaterThan(0);
    expect(leaves[0]).toMatchObject({ id: env.init.keyId, keyId: env.init.keyId, expired: false });
    expect(leaves[0]!.daysLeft).toBeGreaterThanOrEqual(363);
    // The 1825-day intermediate and 3650-day root are outside the window.
    expect(certificates.expiring.some((c) => c.role !== 'leaf')).toBe(false);

    let warnings: any[] = [];
    for (let attempt = 0; attempt < 100 && warnings.length === 0; attempt++) {
      const size = (await get('/v1/log')).json.treeSize as number;
      const entries = (await get(`/v1/log/entries?start=0&end=${size}`)).json.entries as any[];
      warnings = entries.filter((e) => e.kind === CERTIFICATE_EXPIRY_KIND).map((e) => JSON.parse(Buffer.from(e.leaf, 'base64').toString()) as unknown);
      if (warnings.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(warnings[0]).toMatchObject({ kind: 'CertificateExpiryWarning', spec: { certificate: { role: 'leaf', keyId: env.init.keyId }, windowDays: 400, expired: false } });
    expect(service.logs.some((l) => l.msg === 'certificate expires soon')).toBe(true);
  });

  it('the OpenAPI document lists the trust routes', async () => {
    const paths = Object.keys((await get('/openapi.json')).json.paths as object);
    expect(paths).toEqual(expect.arrayContaining(['/v1/trust', '/v1/trust/jwks', '/v1/keys/{keyId}/chain', '/v1/keys/{keyId}/pgp', '/v1/ca/{caId}/crl', '/v1/ca/intermediate.crl']));
  });
});
