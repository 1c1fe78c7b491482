/**
 * Key rotation and the JWKS cache's refresh rules, against a real test issuer over
 * HTTPS with a frozen clock: refresh on unknown kid at most once per cooldown, refresh
 * when the cache is old, keep cached keys through a failed refresh, fail closed once
 * they are too old, and never let a removed key verify after a refresh.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { oidcSchema } from '../../policy/oidc/config.js';
import { IdentityError, type PipelineTokenVerifier } from '../../policy/oidc/types.js';
import { createPipelineTokenVerifier } from '../../policy/oidc/verifier.js';
import { startTestOidcIssuer, type TestOidcIssuer } from '../helpers/oidc-issuer.js';

const AUDIENCE = 'signet-rotation-test';
const START = Date.UTC(2030, 5, 1, 8, 0, 0);
const COOLDOWN_MS = 30_000;
const CACHE_MS = 600_000;
let clock = START;
const now = (): number => clock;

let issuer: TestOidcIssuer;

function newVerifier(): PipelineTokenVerifier {
  const config = oidcSchema.parse({
    audience: AUDIENCE,
    jwksCacheSeconds: CACHE_MS / 1000,
    jwksCooldownSeconds: COOLDOWN_MS / 1000,
    issuers: [{ name: 'ci', issuer: issuer.issuer, caFile: '/virtual/ca.pem' }],
  });
  return createPipelineTokenVerifier(config, {
    now,
    readFile: (path) => {
      if (path !== '/virtual/ca.pem') throw new Error(`unexpected read of ${path}`);
      return issuer.caPem;
    },
  });
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(IdentityError);
  return (error as IdentityError).code;
}

beforeAll(async () => {
  issuer = await startTestOidcIssuer({ audience: AUDIENCE, now, es256: true });
});

afterAll(async () => {
  await issuer.close();
});

beforeEach(() => {
  clock = START;
  issuer.reset();
});

describe('rotation', () => {
  it('a token of a new key verifies after one refresh; the removed key stops verifying', async () => {
    const verifier = newVerifier();
    const oldToken = await issuer.mint({}, { expiresIn: 900 });
    await verifier.verify(oldToken);
    expect(issuer.counters).toMatchObject({ discovery: 1, jwks: 1 });

    await issuer.rotate();
    clock += 1000;
    const newToken = await issuer.mint();
    // Within the cooldown the unknown kid triggers no fetch.
    expect(await codeOf(verifier.verify(newToken))).toBe('TOKEN_KEY_UNKNOWN');
    expect(issuer.counters.jwks).toBe(1);

    clock += COOLDOWN_MS;
    await expect(verifier.verify(newToken)).resolves.toMatchObject({ issuerName: 'ci' });
    // One JWKS refresh; the discovered jwks_uri is still within its cache period.
    expect(issuer.counters).toMatchObject({ discovery: 1, jwks: 2 });

    expect(await codeOf(verifier.verify(oldToken))).toBe('TOKEN_KEY_UNKNOWN');
    expect(issuer.counters.jwks).toBe(2);
  });

  it('a removed key stops verifying when the cache period ends, with no unknown kid involved', async () => {
    const verifier = newVerifier();
    const token = await issuer.mint({}, { expiresIn: 900 });
    await verifier.verify(token);
    await issuer.rotate();

    clock += CACHE_MS - 1000;
    // Still cached: the issuer's removal is not visible yet.
    await expect(verifier.verify(token)).resolves.toBeDefined();
    expect(issuer.counters.jwks).toBe(1);

    clock += 1000;
    expect(await codeOf(verifier.verify(token))).toBe('TOKEN_KEY_UNKNOWN');
    expect(issuer.counters).toMatchObject({ discovery: 2, jwks: 2 });
  });

  it('concurrent verifications on a cold cache share one discovery and one JWKS fetch', async () => {
    const verifier = newVerifier();
    const tokens = await Promise.all(Array.from({ length: 50 }, () => issuer.mint()));
    const identities = await Promise.all(tokens.map((t) => verifier.verify(t)));
    expect(identities).toHaveLength(50);
    expect(issuer.counters).toMatchObject({ discovery: 1, jwks: 1 });
  });

  it('10,000 tokens with random unknown kids cause at most a handful of JWKS fetches', async () => {
    const verifier = newVerifier();
    const es = issuer.keys.find((k) => k.alg === 'ES256')!;
    const claims = issuer.defaultClaims();
    const codes = new Map<string, number>();
    // Ten waves of a thousand concurrent tokens, the clock moving 5 s per wave (45 s in all).
    for (let wave = 0; wave < 10; wave += 1) {
      const tokens = Array.from({ length: 1000 }, () =>
        issuer.signRaw({ alg: 'ES256', typ: 'JWT', kid: randomBytes(12).toString('base64url') }, { ...claims, jti: randomBytes(8).toString('hex') }, es.kid),
      );
      const results = await Promise.all(tokens.map((t) => codeOf(verifier.verify(t))));
      for (const code of results) codes.set(code, (codes.get(code) ?? 0) + 1);
      if (wave === 0) expect(issuer.counters.jwks).toBe(1);
      clock += 5000;
    }
    expect(codes).toEqual(new Map([['TOKEN_KEY_UNKNOWN', 10_000]]));
    expect(issuer.counters.jwks).toBeLessThanOrEqual(3);
    expect(issuer.counters.discovery).toBeLessThanOrEqual(3);
  });
});

describe('refresh failures', () => {
  it('keeps cached keys within their maximum age, then fails closed, then recovers', async () => {
    const verifier = newVerifier();
    await verifier.verify(await issuer.mint());
    issuer.rawJwks({ status: 503, headers: { 'content-type': 'text/plain' }, body: 'maintenance' });

    clock += COOLDOWN_MS;
    // The refresh for the unknown kid fails: the kid stays unknown, known keys keep working.
    expect(await codeOf(verifier.verify(await issuer.mint({}, { kid: 'brand-new-kid' })))).toBe('TOKEN_KEY_UNKNOWN');
    expect(issuer.counters.jwks).toBe(2);
    await expect(verifier.verify(await issuer.mint())).resolves.toBeDefined();

    // Past the cache period the stale keys are still used while refreshes fail...
    clock = START + CACHE_MS + 1000;
    await expect(verifier.verify(await issuer.mint())).resolves.toBeDefined();
    expect(issuer.counters.jwks).toBe(3);

    // ...but not past their maximum age (twice the cache period): fail closed.
    clock = START + 2 * CACHE_MS;
    expect(await codeOf(verifier.verify(await issuer.mint()))).toBe('JWKS_UNAVAILABLE');

    issuer.rawJwks(undefined);
    clock += COOLDOWN_MS;
    await expect(verifier.verify(await issuer.mint())).resolves.toBeDefined();
  });

  it('a failed first fetch is not retried within the cooldown', async () => {
    const verifier = newVerifier();
    issuer.rawJwks({ status: 500, headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(await codeOf(verifier.verify(await issuer.mint()))).toBe('JWKS_UNAVAILABLE');
    expect(await codeOf(verifier.verify(await issuer.mint()))).toBe('JWKS_UNAVAILABLE');
    expect(issuer.counters.jwks).toBe(1);
    issuer.rawJwks(undefined);
    clock += COOLDOWN_MS;
    await expect(verifier.verify(await issuer.mint())).resolves.toBeDefined();
    expect(issuer.counters.jwks).toBe(2);
  });
});
