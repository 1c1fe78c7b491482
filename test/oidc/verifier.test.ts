/**
 * Id-token verification against real test issuers over HTTPS: what is accepted, and
 * every refusal with its code (RFC 7519 claims, RFC 7515 headers, RFC 8725 attacks).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportSPKI } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { oidcSchema, type OidcConfig } from '../../policy/oidc/config.js';
import { IdentityError, type IdentityErrorCode, type PipelineTokenVerifier } from '../../policy/oidc/types.js';
import { createPipelineTokenVerifier } from '../../policy/oidc/verifier.js';
import { compactToken, createIssuerKey, startTestOidcIssuer, type IssuerSigningKey, type TestOidcIssuer } from '../helpers/oidc-issuer.js';

const AUDIENCE = 'https://signet.example.com';
const START = Date.UTC(2030, 0, 15, 12, 0, 0);
let clock = START;
const now = (): number => clock;

let issuerA: TestOidcIssuer;
let issuerB: TestOidcIssuer;
/** A server the attacker controls: tokens point at it, and it must never see a connection. */
let attacker: TestOidcIssuer;
let attackerKey: IssuerSigningKey;
let verifier: PipelineTokenVerifier;
let dir: string;

async function refusal(token: string): Promise<IdentityErrorCode> {
  const error: unknown = await verifier.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(IdentityError);
  const identityError = error as IdentityError;
  // Messages are fixed per code, and causes are fixed descriptions: never the token.
  const texts = [identityError.message];
  for (let cause: unknown = identityError.cause; cause instanceof Error; cause = cause.cause) texts.push(cause.message);
  const parts = typeof token === 'string' ? token.split('.').filter((part) => part.length > 8) : [];
  for (const text of texts) for (const part of parts) expect(text).not.toContain(part);
  return identityError.code;
}

function writeCa(name: string, pem: string): string {
  const path = join(dir, `${name}-ca.pem`);
  writeFileSync(path, pem);
  return path;
}

function configFor(extra: Record<string, unknown> = {}): OidcConfig {
  return oidcSchema.parse({
    audience: AUDIENCE,
    issuers: [
      { name: 'github', issuer: issuerA.issuer, preset: 'github-actions', caFile: writeCa('a', issuerA.caPem) },
      { name: 'other-ci', issuer: issuerB.issuer, caFile: writeCa('b', issuerB.caPem) },
    ],
    ...extra,
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'signet-oidc-'));
  [issuerA, issuerB, attacker] = await Promise.all([
    startTestOidcIssuer({ audience: AUDIENCE, now, es256: true }),
    startTestOidcIssuer({ audience: AUDIENCE, now }),
    startTestOidcIssuer({ audience: AUDIENCE, now }),
  ]);
  attackerKey = await createIssuerKey('RS256');
  verifier = createPipelineTokenVerifier(configFor(), { now });
});

afterAll(async () => {
  await Promise.all([issuerA.close(), issuerB.close(), attacker.close()]);
});

beforeEach(() => {
  clock = START;
});

describe('a valid token', () => {
  it('verifies and returns the identity with every claim', async () => {
    const token = await issuerA.mint({ jti: 'run-1' });
    const identity = await verifier.verify(token);
    expect(identity).toMatchObject({
      issuerName: 'github',
      issuer: issuerA.issuer,
      subject: 'repo:example/demo:ref:refs/heads/main',
      tokenId: 'run-1',
      issuedAt: START / 1000,
      expiresAt: START / 1000 + 300,
    });
    expect(identity.claims).toMatchObject({ repository: 'example/demo', repository_id: '123456789', ref: 'refs/heads/main', aud: AUDIENCE });
    expect(Object.isFrozen(identity.claims)).toBe(true);
  });

  it('verifies ES256 tokens with the ES256 key of the same issuer', async () => {
    const es = issuerA.keys.find((k) => k.alg === 'ES256')!;
    const identity = await verifier.verify(await issuerA.mint({}, { signWith: es.kid }));
    expect(identity.issuerName).toBe('github');
  });

  it('verifies tokens of the second issuer with its own keys', async () => {
    const identity = await verifier.verify(await issuerB.mint());
    expect(identity.issuerName).toBe('other-ci');
  });

  it('accepts `aud` as a one-element array', async () => {
    await expect(verifier.verify(await issuerA.mint({ aud: [AUDIENCE] }))).resolves.toMatchObject({ issuerName: 'github' });
  });
});

describe('refused before any key is looked up', () => {
  it('no token or an empty one: TOKEN_MISSING', async () => {
    expect(await refusal('')).toBe('TOKEN_MISSING');
    expect(await refusal(undefined as unknown as string)).toBe('TOKEN_MISSING');
  });

  it('alg none in any spelling: TOKEN_ALGORITHM_REFUSED', async () => {
    for (const alg of ['none', 'NONE', 'None', 'nOnE']) {
      const payload = issuerA.defaultClaims();
      expect(await refusal(compactToken({ alg, typ: 'JWT' }, payload))).toBe('TOKEN_ALGORITHM_REFUSED');
      expect(await refusal(compactToken({ alg, kid: issuerA.currentKid }, payload, 'c2lnbmF0dXJl'))).toBe('TOKEN_ALGORITHM_REFUSED');
    }
  });

  it('HS256 with the issuer public key as the HMAC secret: TOKEN_ALGORITHM_REFUSED', async () => {
    const current = issuerA.keys.find((k) => k.kid === issuerA.currentKid)!;
    const secrets = [
      new TextEncoder().encode(await exportSPKI(current.publicKey)),
      new TextEncoder().encode(JSON.stringify(current.publicJwk)),
    ];
    for (const secret of secrets) {
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        expect(await refusal(await issuerA.mint({}, { alg, key: secret }))).toBe('TOKEN_ALGORITHM_REFUSED');
      }
    }
  });

  it('an algorithm outside the allow-list (RS512, or one the issuer does not allow): TOKEN_ALGORITHM_REFUSED', async () => {
    expect(await refusal(compactToken({ alg: 'RS512', kid: issuerA.currentKid }, issuerA.defaultClaims(), 'c2ln'))).toBe('TOKEN_ALGORITHM_REFUSED');
    const onlyRs = createPipelineTokenVerifier(
      oidcSchema.parse({ audience: AUDIENCE, issuers: [{ name: 'gh', issuer: issuerA.issuer, caFile: writeCa('a', issuerA.caPem), algorithms: ['RS256'] }] }),
      { now },
    );
    const es = issuerA.keys.find((k) => k.alg === 'ES256')!;
    await expect(onlyRs.verify(await issuerA.mint({}, { signWith: es.kid }))).rejects.toMatchObject({ code: 'TOKEN_ALGORITHM_REFUSED' });
  });

  it('a crit header: TOKEN_MALFORMED (no extension is understood)', async () => {
    const token = issuerA.signRaw({ alg: 'RS256', kid: issuerA.currentKid, crit: ['exp'], exp: 1 }, issuerA.defaultClaims());
    expect(await refusal(token)).toBe('TOKEN_MALFORMED');
  });

  it('a typ other than JWT: TOKEN_MALFORMED', async () => {
    expect(await refusal(await issuerA.mint({}, { header: { typ: 'at+jwt' } }))).toBe('TOKEN_MALFORMED');
  });

  it('no kid: TOKEN_KEY_UNKNOWN', async () => {
    expect(await refusal(issuerA.signRaw({ alg: 'RS256', typ: 'JWT' }, issuerA.defaultClaims()))).toBe('TOKEN_KEY_UNKNOWN');
  });

  it('an oversized token: TOKEN_TOO_LARGE', async () => {
    expect(await refusal(await issuerA.mint({ padding: 'x'.repeat(20_000) }))).toBe('TOKEN_TOO_LARGE');
    expect(await refusal('é'.repeat(9000))).toBe('TOKEN_TOO_LARGE');
  });

  it('garbage: TOKEN_MALFORMED', async () => {
    const good = await issuerA.mint();
    const [h, p, s] = good.split('.') as [string, string, string];
    const cases = [
      'not-a-jwt',
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}`,
      `${h}.${p}.${s}.${s}.${s}`,
      `${h}.${p}.${s}=`,
      `${h}+.${p}.${s}`,
      `${h}.${p}!.${s}`,
      ` ${good}`,
      `${Buffer.from('not json').toString('base64url')}.${p}.${s}`,
      `${h}.${Buffer.from('not json').toString('base64url')}.${s}`,
      `${Buffer.from('[1,2]').toString('base64url')}.${p}.${s}`,
      `${h}.${Buffer.from('"a string"').toString('base64url')}.${s}`,
      `${Buffer.from('\xff\xfe{"alg":"RS256"}', 'latin1').toString('base64url')}.${p}.${s}`,
      `${h}.${p}.`,
      `..`,
      `${h}..${s}`,
    ];
    for (const token of cases) expect([token, await refusal(token)]).toEqual([token, 'TOKEN_MALFORMED']);
  });
});

describe('issuer and keys', () => {
  it('unknown iss, or one differing only by a trailing slash or case: TOKEN_ISSUER_UNKNOWN', async () => {
    for (const iss of ['https://evil.example', `${issuerA.issuer}/`, issuerA.issuer.toUpperCase(), undefined, 42]) {
      expect(await refusal(await issuerA.mint({ iss }))).toBe('TOKEN_ISSUER_UNKNOWN');
    }
  });

  it('unknown kid: TOKEN_KEY_UNKNOWN', async () => {
    expect(await refusal(await issuerA.mint({}, { kid: 'no-such-key' }))).toBe('TOKEN_KEY_UNKNOWN');
  });

  it("a kid known only to another configured issuer: TOKEN_KEY_UNKNOWN (keys never cross issuers)", async () => {
    // Signed by issuer B's key, with B's kid, claiming to come from issuer A.
    const token = await issuerB.mint({ iss: issuerA.issuer });
    expect(await refusal(token)).toBe('TOKEN_KEY_UNKNOWN');
    // And the converse.
    expect(await refusal(await issuerA.mint({ iss: issuerB.issuer }))).toBe('TOKEN_KEY_UNKNOWN');
  });

  it('a signature that does not verify: TOKEN_SIGNATURE_INVALID', async () => {
    const [h, , s] = (await issuerA.mint()).split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify({ ...issuerA.defaultClaims(), repository: 'attacker/repo' })).toString('base64url');
    expect(await refusal(`${h}.${forged}.${s}`)).toBe('TOKEN_SIGNATURE_INVALID');
    // The issuer's kid, signed with the attacker's key.
    expect(await refusal(await issuerA.mint({}, { key: attackerKey.privateKey }))).toBe('TOKEN_SIGNATURE_INVALID');
  });

  it('jku, x5u, jwk and x5c headers are never fetched nor used', async () => {
    const before = { ...attacker.counters };
    const header = {
      jku: attacker.jwksUri,
      x5u: `${attacker.issuer}/cert.pem`,
      jwk: attackerKey.publicJwk,
      x5c: ['MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'],
    };
    // Signed with the attacker's key and naming the attacker's kid: no such key at the issuer.
    expect(await refusal(await issuerA.mint({}, { key: attackerKey.privateKey, kid: attackerKey.kid, header }))).toBe('TOKEN_KEY_UNKNOWN');
    // Signed with the attacker's key under the issuer's kid: the issuer's key decides.
    expect(await refusal(await issuerA.mint({}, { key: attackerKey.privateKey, header }))).toBe('TOKEN_SIGNATURE_INVALID');
    // A genuine token carrying the same headers still verifies, with the issuer's key.
    await expect(verifier.verify(await issuerA.mint({}, { header }))).resolves.toMatchObject({ issuerName: 'github' });
    expect(attacker.counters).toEqual(before);
    expect(attacker.counters.connections).toBe(0);
  });
});

describe('claims', () => {
  it('wrong, missing or foreign audience: TOKEN_AUDIENCE_INVALID', async () => {
    for (const aud of ['https://signet.example.org', undefined, 'https://github.com/example', ['https://github.com/example'], [AUDIENCE, 'https://other.example'], [], 7]) {
      expect([aud, await refusal(await issuerA.mint({ aud }))]).toEqual([aud, 'TOKEN_AUDIENCE_INVALID']);
    }
  });

  it('a missing or mistyped exp, iat, nbf, jti or sub: TOKEN_CLAIM_MISSING', async () => {
    for (const claim of ['exp', 'iat', 'nbf', 'jti', 'sub']) {
      expect([claim, await refusal(await issuerA.mint({ [claim]: undefined }))]).toEqual([claim, 'TOKEN_CLAIM_MISSING']);
    }
    for (const claims of [{ exp: String(START / 1000 + 60) }, { nbf: null }, { iat: '0' }, { jti: 7 }, { jti: '' }, { sub: ['x'] }, { sub: '' }]) {
      expect([claims, await refusal(await issuerA.mint(claims))]).toEqual([claims, 'TOKEN_CLAIM_MISSING']);
    }
  });

  it('expired beyond the leeway: TOKEN_EXPIRED; within it: accepted', async () => {
    const token = await issuerA.mint({}, { expiresIn: 60 });
    clock = START + 60_000 + 29_000;
    await expect(verifier.verify(token)).resolves.toBeDefined();
    clock = START + 60_000 + 30_000;
    expect(await refusal(token)).toBe('TOKEN_EXPIRED');
  });

  it('nbf in the future beyond the leeway: TOKEN_NOT_YET_VALID; within it: accepted', async () => {
    const t = START / 1000;
    await expect(verifier.verify(await issuerA.mint({ nbf: t + 30 }))).resolves.toBeDefined();
    expect(await refusal(await issuerA.mint({ nbf: t + 31 }))).toBe('TOKEN_NOT_YET_VALID');
  });

  it('iat older than the maximum token age, or in the future beyond the leeway: TOKEN_TOO_OLD', async () => {
    const t = START / 1000;
    // maxTokenAgeSeconds 900 + leeway 30.
    await expect(verifier.verify(await issuerA.mint({ iat: t - 930, nbf: t - 930, exp: t + 60 }))).resolves.toBeDefined();
    expect(await refusal(await issuerA.mint({ iat: t - 931, nbf: t - 931, exp: t + 60 }))).toBe('TOKEN_TOO_OLD');
    expect(await refusal(await issuerA.mint({ iat: t + 31, nbf: t, exp: t + 300 }))).toBe('TOKEN_TOO_OLD');
  });
});
