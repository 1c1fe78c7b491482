/**
 * Fetching issuer keys when the issuer (or whoever answers for it) misbehaves: slow,
 * redirecting, oversized or malformed answers, discovery pointing elsewhere, an
 * untrusted certificate. All of them are JWKS_UNAVAILABLE and none reaches another
 * host. Also: static JWKS files (no network at all) and start-up validation.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/errors.js';
import { oidcSchema, type OidcConfig } from '../../policy/oidc/config.js';
import { fetchJson } from '../../policy/oidc/fetch-json.js';
import { IdentityError } from '../../policy/oidc/types.js';
import { createPipelineTokenVerifier } from '../../policy/oidc/verifier.js';
import { startTestOidcIssuer, type TestOidcIssuer } from '../helpers/oidc-issuer.js';

const AUDIENCE = 'signet-fault-test';
const START = Date.UTC(2031, 2, 3, 4, 5, 6);
const now = (): number => START;

let issuer: TestOidcIssuer;
/** Where a redirect or a rewritten discovery document tries to send us. */
let elsewhere: TestOidcIssuer;
let dir: string;
let caFile: string;

function config(overrides: Record<string, unknown> = {}, issuerOverrides: Record<string, unknown> = {}): OidcConfig {
  return oidcSchema.parse({
    audience: AUDIENCE,
    fetchTimeoutMs: 400,
    maxJwksBytes: 16_384,
    issuers: [{ name: 'ci', issuer: issuer.issuer, caFile, ...issuerOverrides }],
    ...overrides,
  });
}

/** The IdentityError of a refused verification, with its cause chain as one string. */
async function failure(overrides: Record<string, unknown> = {}, issuerOverrides: Record<string, unknown> = {}): Promise<{ code: string; detail: string }> {
  const verifier = createPipelineTokenVerifier(config(overrides, issuerOverrides), { now });
  const error: unknown = await verifier.verify(await issuer.mint()).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(IdentityError);
  const texts: string[] = [];
  for (let cause: unknown = error; cause instanceof Error; cause = cause.cause) texts.push(cause.message);
  return { code: (error as IdentityError).code, detail: texts.join(' <- ') };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'signet-oidc-faults-'));
  [issuer, elsewhere] = await Promise.all([startTestOidcIssuer({ audience: AUDIENCE, now }), startTestOidcIssuer({ audience: AUDIENCE, now })]);
  caFile = join(dir, 'issuer-ca.pem');
  writeFileSync(caFile, issuer.caPem);
});

afterAll(async () => {
  await Promise.all([issuer.close(), elsewhere.close()]);
});

beforeEach(() => {
  issuer.reset();
  elsewhere.reset();
});

describe('remote keys that cannot be trusted or fetched: JWKS_UNAVAILABLE', () => {
  it('a JWKS slower than fetchTimeoutMs', async () => {
    issuer.slowJwks(5000);
    const started = Date.now();
    const { code, detail } = await failure();
    expect(code).toBe('JWKS_UNAVAILABLE');
    expect(detail).toContain('within 400 ms');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('a JWKS that redirects, without the redirect target ever being contacted', async () => {
    issuer.redirectJwksTo(elsewhere.jwksUri);
    const { code, detail } = await failure();
    expect(code).toBe('JWKS_UNAVAILABLE');
    expect(detail).toContain('redirect (302) refused');
    expect(elsewhere.counters.connections).toBe(0);
  });

  it('a huge JWKS, streamed or declared', async () => {
    issuer.hugeJwks();
    expect(await failure()).toMatchObject({ code: 'JWKS_UNAVAILABLE', detail: expect.stringContaining('larger than 16384 bytes') });
    issuer.hugeJwks({ declared: true });
    expect(await failure()).toMatchObject({ code: 'JWKS_UNAVAILABLE', detail: expect.stringContaining('larger than 16384 bytes') });
  });

  it('discovery whose jwks_uri is on another host, not https, or whose issuer differs', async () => {
    const port = new URL(issuer.issuer).port;
    for (const patch of [
      { jwks_uri: elsewhere.jwksUri },
      { jwks_uri: `https://localhost:${port}/jwks` },
      { jwks_uri: `http://127.0.0.1:${port}/jwks` },
      { jwks_uri: 42 },
      { issuer: `${issuer.issuer}/` },
      { issuer: elsewhere.issuer },
    ]) {
      issuer.patchDiscovery(patch);
      expect([patch, (await failure()).code]).toEqual([patch, 'JWKS_UNAVAILABLE']);
    }
    expect(issuer.counters.jwks).toBe(0);
    expect(elsewhere.counters.connections).toBe(0);
  });

  it('answers that are not a JSON object over plain identity encoding', async () => {
    const answers = [
      { status: 500, headers: { 'content-type': 'application/json' }, body: '{}' },
      { status: 200, headers: { 'content-type': 'text/html' }, body: '<html></html>' },
      { status: 200, headers: { 'content-type': 'application/json' }, body: '{"keys": [' },
      { status: 200, headers: { 'content-type': 'application/json' }, body: '[]' },
      { status: 200, headers: { 'content-type': 'application/json' }, body: '{"keys": {}}' },
      { status: 200, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: '{"keys": []}' },
      { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1') },
    ];
    for (const answer of answers) {
      issuer.rawJwks(answer);
      expect([answer, (await failure()).code]).toEqual([answer, 'JWKS_UNAVAILABLE']);
    }
  });

  it('a server certificate outside the configured CA (system store when no caFile)', async () => {
    const { code, detail } = await failure({}, { caFile: undefined });
    expect(code).toBe('JWKS_UNAVAILABLE');
    expect(detail).toMatch(/certificate/i);
    expect(issuer.counters.discovery).toBe(0);
  });

  it('unusable keys are never used: symmetric, encryption, private, weak RSA', async () => {
    const rsa = issuer.keys[0]!.publicJwk;
    const keys = [
      { kty: 'oct', kid: issuer.currentKid, k: 'c2VjcmV0' },
      { ...rsa, use: 'enc' },
      { ...rsa, key_ops: ['encrypt'] },
      { ...rsa, d: 'AQAB' },
      { ...rsa, alg: 'RS512' },
    ];
    for (const key of keys) {
      issuer.rawJwks({ status: 200, headers: { 'content-type': 'application/jwk-set+json' }, body: JSON.stringify({ keys: [key] }) });
      expect([key.kty, (await failure()).code]).toEqual([key.kty, 'TOKEN_KEY_UNKNOWN']);
    }
  });
});

describe('explicit and static key sources', () => {
  it('an explicit jwks.uri on the issuer host skips discovery', async () => {
    const verifier = createPipelineTokenVerifier(config({}, { jwks: { uri: issuer.jwksUri } }), { now });
    await expect(verifier.verify(await issuer.mint())).resolves.toMatchObject({ issuerName: 'ci' });
    expect(issuer.counters).toMatchObject({ discovery: 0, jwks: 1 });
  });

  it('a static JWKS file verifies with no network at all', async () => {
    const file = join(dir, 'static-jwks.json');
    writeFileSync(file, JSON.stringify(issuer.jwks()));
    const airGapped = 'https://ci.airgap.invalid';
    const verifier = createPipelineTokenVerifier(
      oidcSchema.parse({ audience: AUDIENCE, issuers: [{ name: 'airgap', issuer: airGapped, jwks: { file } }] }),
      { now },
    );
    await expect(verifier.verify(await issuer.mint({ iss: airGapped }))).resolves.toMatchObject({ issuerName: 'airgap', issuer: airGapped });
    await expect(verifier.verify(await issuer.mint({ iss: airGapped }, { kid: 'other' }))).rejects.toMatchObject({ code: 'TOKEN_KEY_UNKNOWN' });
    expect(issuer.counters.connections).toBe(0);
  });

  it('unreadable or unusable files and bad issuer settings fail at creation, all reported at once', () => {
    const notJson = join(dir, 'not-json.json');
    writeFileSync(notJson, 'keys: []');
    const noKeys = join(dir, 'no-keys.json');
    writeFileSync(noKeys, JSON.stringify({ keys: [{ kty: 'oct', kid: 'x', k: 'AA' }] }));
    const badCa = join(dir, 'bad-ca.pem');
    writeFileSync(badCa, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const bad = oidcSchema.parse({
      audience: AUDIENCE,
      issuers: [
        { name: 'missing', issuer: 'https://a.invalid', jwks: { file: join(dir, 'absent.json') } },
        { name: 'not-json', issuer: 'https://b.invalid', jwks: { file: notJson } },
        { name: 'no-keys', issuer: 'https://c.invalid', jwks: { file: noKeys } },
        { name: 'no-ca', issuer: 'https://d.invalid', caFile: join(dir, 'absent-ca.pem') },
        { name: 'bad-ca', issuer: 'https://e.invalid', caFile: badCa },
        { name: 'not-url', issuer: 'ci-runner', jwks: { discovery: true } },
        { name: 'plain', issuer: 'http://f.invalid' },
        { name: 'elsewhere', issuer: 'https://g.invalid', jwks: { uri: 'https://keys.example/jwks' } },
        { name: 'fine', issuer: 'https://h.invalid' },
      ],
    });
    let error: unknown;
    try {
      createPipelineTokenVerifier(bad, { now });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(8);
    for (const name of ['missing', 'not-json', 'no-keys', 'no-ca', 'bad-ca', 'not-url', 'plain', 'elsewhere']) {
      expect(problems.some((p) => p.includes(`(${name})`))).toBe(true);
    }
  });
});

describe('fetchJson', () => {
  it('refuses anything but https, and URLs with credentials', async () => {
    for (const url of ['http://127.0.0.1:1/jwks', 'file:///etc/passwd', 'https://user:pw@127.0.0.1/jwks', 'not a url']) {
      await expect(fetchJson(url, { timeoutMs: 200, maxBytes: 1024 })).rejects.toMatchObject({ code: 'JWKS_UNAVAILABLE' });
    }
  });

  it('reads a JSON object with the given CA', async () => {
    await expect(fetchJson(issuer.jwksUri, { timeoutMs: 2000, maxBytes: 16_384, ca: issuer.caPem })).resolves.toEqual(issuer.jwks());
  });
});
