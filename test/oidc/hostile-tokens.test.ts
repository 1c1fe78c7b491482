/**
 * Hostile input: whatever arrives as a bearer token, verification ends in an
 * IdentityError with a known code and its fixed message, never another exception,
 * never an echo of the input. A static-JWKS issuer keeps this free of network.
 */
import { exportJWK, generateKeyPair } from 'jose';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { oidcSchema } from '../../policy/oidc/config.js';
import { IDENTITY_ERROR_CODES, IdentityError, type PipelineTokenVerifier } from '../../policy/oidc/types.js';
import { createPipelineTokenVerifier } from '../../policy/oidc/verifier.js';
import { b64json } from '../helpers/oidc-issuer.js';

const ISSUER = 'https://ci.example';
const KID = 'k1';
let verifier: PipelineTokenVerifier;
const messages = new Map<string, string>();

beforeAll(async () => {
  const jwk = await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey);
  const config = oidcSchema.parse({ audience: 'signet', issuers: [{ name: 'ci', issuer: ISSUER, jwks: { file: '/jwks.json' } }] });
  verifier = createPipelineTokenVerifier(config, { readFile: () => JSON.stringify({ keys: [{ ...jwk, kid: KID }] }) });
});

async function expectRefused(token: string): Promise<void> {
  const error: unknown = await verifier.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(IdentityError);
  const { code, message } = error as IdentityError;
  expect(IDENTITY_ERROR_CODES).toContain(code);
  // One message per code, whatever the input.
  const seen = messages.get(code);
  if (seen === undefined) messages.set(code, message);
  else expect(message).toBe(seen);
}

const json = fc.jsonValue({ maxDepth: 2 });
const header = fc.record(
  {
    alg: fc.oneof(fc.constantFrom('ES256', 'RS256', 'none', 'HS256', 'EdDSA', 'ES256K', ''), json),
    kid: fc.oneof(fc.constant(KID), fc.string(), json),
    typ: fc.oneof(fc.constantFrom('JWT', 'jwt', 'at+jwt'), json),
    crit: json,
    jku: fc.webUrl(),
    jwk: json,
  },
  { requiredKeys: [] },
);
const payload = fc.record(
  {
    iss: fc.oneof(fc.constant(ISSUER), fc.string(), json),
    aud: fc.oneof(fc.constant('signet'), json),
    sub: json,
    jti: json,
    exp: fc.oneof(fc.integer(), json),
    iat: fc.oneof(fc.integer(), json),
    nbf: fc.oneof(fc.integer(), json),
  },
  { requiredKeys: [] },
);
const segment = fc.oneof(fc.base64String(), fc.string(), fc.stringMatching(/^[A-Za-z0-9_-]{0,64}$/));

describe('hostile bearer tokens', () => {
  it('any string', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 300 }), expectRefused), { numRuns: 300 });
  });

  it('any three or more segments', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(segment, { minLength: 1, maxLength: 5 }), async (parts) => expectRefused(parts.join('.'))),
      { numRuns: 300 },
    );
  });

  it('well-formed JSON headers and payloads with invalid signatures', async () => {
    await fc.assert(
      fc.asyncProperty(header, payload, segment, async (h, p, s) => expectRefused(`${b64json(h)}.${b64json(p)}.${s}`)),
      { numRuns: 400 },
    );
  });

  it('a known issuer and kid with arbitrary claims and signature bytes', async () => {
    await fc.assert(
      fc.asyncProperty(payload, fc.uint8Array({ minLength: 1, maxLength: 128 }), async (p, signature) => {
        await expectRefused(`${b64json({ alg: 'ES256', kid: KID })}.${b64json({ ...p, iss: ISSUER })}.${Buffer.from(signature).toString('base64url')}`);
      }),
      { numRuns: 300 },
    );
  });
});
