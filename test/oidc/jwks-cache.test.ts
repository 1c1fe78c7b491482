/**
 * The JWK Set parser (hostile input: what an issuer, or whoever answers for it, may
 * publish) and the per-issuer cache's refresh rules with a scripted fetch and a frozen
 * clock: coalescing, cooldown, isolation between issuers.
 */
import { generateKeyPairSync } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { oidcSchema, TOKEN_ALGORITHMS } from '../../policy/oidc/config.js';
import type { FetchJson } from '../../policy/oidc/fetch-json.js';
import { createJwksCaches, discoveryUrl, jwksUriFromDiscovery, MAX_JWKS_KEYS, parseJwks } from '../../policy/oidc/jwks-cache.js';
import { IdentityError } from '../../policy/oidc/types.js';

let rsa: JWK;
let p256: JWK;
let p384: JWK;
let ed25519: JWK;

beforeAll(async () => {
  const exportPublic = async (alg: string, options: { crv?: string } = {}): Promise<JWK> =>
    exportJWK((await generateKeyPair(alg, { extractable: true, ...options })).publicKey);
  [rsa, p256, p384, ed25519] = await Promise.all([exportPublic('RS256'), exportPublic('ES256'), exportPublic('ES384'), exportPublic('EdDSA')]);
});

describe('parseJwks', () => {
  it('keeps asymmetric signing keys with the algorithms each may verify, public members only', () => {
    const parsed = parseJwks(
      {
        keys: [
          { ...rsa, kid: 'rsa', use: 'sig', x5c: ['ignored'], extra: true },
          { ...rsa, kid: 'rsa-pss', alg: 'PS256' },
          { ...p256, kid: 'p256', key_ops: ['verify'] },
          { ...p384, kid: 'p384' },
          { ...ed25519, kid: 'ed' },
        ],
      },
      TOKEN_ALGORITHMS,
    );
    expect(parsed.skipped).toEqual([]);
    expect(parsed.keys.map((k) => [k.kid, k.algorithms])).toEqual([
      ['rsa', ['RS256', 'PS256']],
      ['rsa-pss', ['PS256']],
      ['p256', ['ES256']],
      ['p384', ['ES384']],
      ['ed', ['EdDSA']],
    ]);
    expect(parsed.keys[0]!.jwk).toEqual({ kty: 'RSA', n: rsa.n, e: rsa.e });
  });

  it('honours the issuer allow-list', () => {
    const parsed = parseJwks({ keys: [{ ...rsa, kid: 'rsa' }, { ...p256, kid: 'p256' }] }, ['PS256']);
    expect(parsed.keys.map((k) => [k.kid, k.algorithms])).toEqual([['rsa', ['PS256']]]);
    expect(parsed.skipped).toEqual(['keys[1]: no accepted algorithm for this key']);
  });

  it('skips every key that must not verify tokens, with a reason', () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).publicKey.export({ format: 'jwk' });
    const cases: [unknown, string][] = [
      ['a string', 'not an object'],
      [{ ...rsa }, 'no usable kid'],
      [{ ...rsa, kid: '' }, 'no usable kid'],
      [{ ...rsa, kid: 'k'.repeat(300) }, 'no usable kid'],
      [{ ...rsa, kid: 'a', use: 'enc' }, 'use is not "sig"'],
      [{ ...rsa, kid: 'a', key_ops: ['encrypt'] }, 'key_ops does not allow verify'],
      [{ ...rsa, kid: 'a', key_ops: 'verify' }, 'key_ops does not allow verify'],
      [{ ...rsa, kid: 'a', d: 'AQAB' }, 'carries private key material'],
      [{ kty: 'oct', kid: 'a', k: 'c2VjcmV0' }, 'carries private key material'],
      [{ kty: 'oct', kid: 'a' }, 'not an asymmetric key type (RSA, EC, OKP)'],
      [{ ...rsa, kid: 'a', alg: 'HS256' }, 'alg is not an accepted signature algorithm'],
      [{ ...rsa, kid: 'a', alg: 'none' }, 'alg is not an accepted signature algorithm'],
      [{ ...rsa, kid: 'a', alg: 'ES256' }, 'no accepted algorithm for this key'],
      [{ ...weak, kid: 'a' }, 'RSA modulus must be 2048 to 8192 bits'],
      [{ ...p521, kid: 'a' }, 'unsupported EC curve'],
      [{ kty: 'RSA', kid: 'a', n: 5, e: 'AQAB' }, 'RSA key without n/e'],
      [{ ...p256, kid: 'a', y: p256.x }, 'invalid key material'],
      [{ ...ed25519, kid: 'a', crv: 'X25519' }, 'unsupported OKP curve'],
    ];
    for (const [key, reason] of cases) {
      const parsed = parseJwks({ keys: [key] }, TOKEN_ALGORITHMS);
      expect([key, parsed.keys.length, parsed.skipped]).toEqual([key, 0, [`keys[0]: ${reason}`]]);
    }
  });

  it('throws on documents that are not a JWK Set, or too large a one', () => {
    for (const document of [null, [], 'keys', {}, { keys: {} }, { keys: Array.from({ length: MAX_JWKS_KEYS + 1 }, () => ({})) }]) {
      expect(() => parseJwks(document, TOKEN_ALGORITHMS)).toThrow();
    }
  });
});

describe('discovery', () => {
  it('builds the well-known URL (OpenID Connect Discovery 1.0 §4)', () => {
    expect(discoveryUrl('https://token.actions.githubusercontent.com')).toBe('https://token.actions.githubusercontent.com/.well-known/openid-configuration');
    expect(discoveryUrl('https://ghe.example/_services/token/')).toBe('https://ghe.example/_services/token/.well-known/openid-configuration');
  });

  it('accepts only the exact issuer and an https jwks_uri on its host', () => {
    const issuer = 'https://gitlab.example.com';
    expect(jwksUriFromDiscovery({ issuer, jwks_uri: 'https://gitlab.example.com/oauth/discovery/keys' }, issuer)).toBe('https://gitlab.example.com/oauth/discovery/keys');
    for (const document of [
      { issuer: `${issuer}/`, jwks_uri: `${issuer}/keys` },
      { issuer, jwks_uri: 'https://gitlab.example.com.evil.example/keys' },
      { issuer, jwks_uri: 'https://gitlab.example.com:8443/keys' },
      { issuer, jwks_uri: 'http://gitlab.example.com/keys' },
      { issuer, jwks_uri: '/keys' },
      { issuer },
    ]) {
      expect(() => jwksUriFromDiscovery(document, issuer)).toThrow();
    }
  });
});

describe('per-issuer cache', () => {
  const A = 'https://a.example';
  const B = 'https://b.example';

  function setup(documents: Record<string, unknown>) {
    let clock = 1_000_000;
    const fetched: string[] = [];
    let gate: Promise<void> = Promise.resolve();
    const fetchJson: FetchJson = async (url) => {
      fetched.push(url);
      await gate;
      const document = documents[url];
      if (document === undefined) throw new IdentityError('JWKS_UNAVAILABLE', 'unavailable');
      return document as Record<string, unknown>;
    };
    const caches = createJwksCaches(
      oidcSchema.parse({
        audience: 'x',
        jwksCacheSeconds: 600,
        jwksCooldownSeconds: 30,
        issuers: [
          { name: 'a', issuer: A, jwks: { uri: `${A}/jwks` } },
          { name: 'b', issuer: B, jwks: { uri: `${B}/jwks` } },
        ],
      }),
      { now: () => clock, fetchJson },
    );
    return {
      a: caches.get(A)!,
      b: caches.get(B)!,
      fetched,
      advance: (ms: number) => {
        clock += ms;
      },
      hold: () => {
        let release!: () => void;
        gate = new Promise((resolve) => {
          release = resolve;
        });
        return release;
      },
    };
  }

  it('coalesces concurrent refreshes into one fetch and honours the cooldown', async () => {
    const s = setup({ [`${A}/jwks`]: { keys: [{ ...rsa, kid: 'a1' }] } });
    const release = s.hold();
    const pending = Array.from({ length: 25 }, (_, i) => s.a.keysFor(i === 0 ? 'a1' : `unknown-${i}`, 'RS256').then(
      () => 'ok',
      (e: unknown) => (e as IdentityError).code,
    ));
    release();
    const results = await Promise.all(pending);
    expect(results[0]).toBe('ok');
    expect(new Set(results.slice(1))).toEqual(new Set(['TOKEN_KEY_UNKNOWN']));
    expect(s.fetched).toEqual([`${A}/jwks`]);

    await expect(s.a.keysFor('still-unknown', 'RS256')).rejects.toMatchObject({ code: 'TOKEN_KEY_UNKNOWN' });
    expect(s.fetched).toHaveLength(1);
    s.advance(30_000);
    await expect(s.a.keysFor('still-unknown', 'RS256')).rejects.toMatchObject({ code: 'TOKEN_KEY_UNKNOWN' });
    expect(s.fetched).toHaveLength(2);
  });

  it("never finds one issuer's key in another's cache", async () => {
    const s = setup({ [`${A}/jwks`]: { keys: [{ ...rsa, kid: 'shared-kid' }] }, [`${B}/jwks`]: { keys: [{ ...p256, kid: 'b1' }] } });
    await expect(s.a.keysFor('shared-kid', 'RS256')).resolves.toHaveLength(1);
    await expect(s.b.keysFor('shared-kid', 'RS256')).rejects.toMatchObject({ code: 'TOKEN_KEY_UNKNOWN' });
    await expect(s.a.keysFor('shared-kid', 'ES256')).rejects.toMatchObject({ code: 'TOKEN_KEY_UNKNOWN' });
    expect(s.a.issuerName).toBe('a');
    expect(s.b.issuerName).toBe('b');
  });

  it('returns every key published under one kid for the algorithm', async () => {
    const other = await exportJWK((await generateKeyPair('RS256', { extractable: true })).publicKey);
    const s = setup({ [`${A}/jwks`]: { keys: [{ ...rsa, kid: 'dup' }, { ...other, kid: 'dup' }] } });
    await expect(s.a.keysFor('dup', 'RS256')).resolves.toHaveLength(2);
  });
});
