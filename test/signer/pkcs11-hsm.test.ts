/**
 * The PKCS#11 adapter against a real SoftHSM token: every algorithm signs digests and
 * messages that node:crypto and the openssl CLI accept, keys cannot leave the token,
 * concurrency is safe, and bad references or inputs fail with the right codes.
 */
import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DIGEST_ALGORITHMS,
  DIGEST_LENGTHS,
  KEY_ALGORITHMS,
  type DigestAlgorithm,
  type KeyAlgorithm,
} from '../../signer/algorithms.js';
import { isHsmError, type HsmErrorCode } from '../../signer/errors.js';
import { hsmInternalsForTesting, openPkcs11Hsm } from '../../signer/pkcs11-hsm.js';
import { pkcs11js } from '../../signer/pkcs11-module.js';
import type { GeneratedKeyPair, Hsm, HsmKeyRef } from '../../signer/types.js';
import { createTestToken, removeTestToken, type TestToken } from '../helpers/softhsm.js';
import { verifyDigestWithOpenssl, verifyWithNode, verifyWithOpenssl } from './signature-checks.js';

let token: TestToken;
let hsm: Hsm;
const keys = new Map<KeyAlgorithm, GeneratedKeyPair>();

function keyOf(algorithm: KeyAlgorithm): GeneratedKeyPair {
  const key = keys.get(algorithm);
  if (key === undefined) throw new Error(`no ${algorithm} key`);
  return key;
}

async function expectHsmError(promise: Promise<unknown>, code: HsmErrorCode): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isHsmError(error), `expected an HsmError ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: string }).code).toBe(code);
}

beforeAll(async () => {
  token = await createTestToken();
  hsm = await openPkcs11Hsm({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, poolSize: 4 });
  // All key pairs at once: generation runs off the event loop, so the slow RSA-4096
  // pair overlaps with the others.
  const generated = await Promise.all(KEY_ALGORITHMS.map((algorithm) => hsm.generateKeyPair(algorithm, `signet:test-${algorithm}@1`)));
  for (const key of generated) keys.set(key.algorithm, key);
});

afterAll(async () => {
  await hsm.close();
  await removeTestToken(token);
});

const isEd25519 = (algorithm: KeyAlgorithm): boolean => algorithm === 'ed25519';

describe.each(KEY_ALGORITHMS)('%s', (algorithm) => {
  it('generates a key pair whose public key matches the algorithm', async () => {
    const key = keyOf(algorithm);
    expect(key.hsmKeyId).toMatch(/^[0-9a-f]{32}$/);
    expect(key.label).toBe(`signet:test-${algorithm}@1`);
    expect(await hsm.hasKeyPair(key)).toBe(true);
    expect(await hsm.publicKeyPem(key)).toBe(key.publicKeyPem);

    const publicKey = createPublicKey(key.publicKeyPem);
    const details = publicKey.asymmetricKeyDetails;
    switch (algorithm) {
      case 'ecdsa-p256':
        expect(publicKey.asymmetricKeyType).toBe('ec');
        expect(details?.namedCurve).toBe('prime256v1');
        break;
      case 'ecdsa-p384':
        expect(publicKey.asymmetricKeyType).toBe('ec');
        expect(details?.namedCurve).toBe('secp384r1');
        break;
      case 'ed25519':
        expect(publicKey.asymmetricKeyType).toBe('ed25519');
        break;
      case 'rsa-pss-3072':
      case 'rsa-pss-4096':
        expect(publicKey.asymmetricKeyType).toBe('rsa');
        expect(details?.modulusLength).toBe(algorithm === 'rsa-pss-3072' ? 3072 : 4096);
        expect(details?.publicExponent).toBe(65537n);
        break;
    }
  });

  it('signDigest output verifies with node:crypto and openssl', async () => {
    const key = keyOf(algorithm);
    const message = Buffer.from(`release artifact for ${algorithm}\n`);
    const digest = createHash('sha256').update(message).digest();
    const signature = await hsm.signDigest(key, { algorithm: 'sha256', value: digest });

    if (isEd25519(algorithm)) {
      // PureEdDSA over the digest bytes themselves.
      expect(signature).toHaveLength(64);
      expect(verifyWithNode(algorithm, key.publicKeyPem, { kind: 'raw', data: digest }, signature)).toBe(true);
      expect(await verifyWithOpenssl(algorithm, key.publicKeyPem, { kind: 'raw', data: digest }, signature)).toBe(true);
    } else {
      const over = { kind: 'message', data: message, hash: 'sha256' } as const;
      expect(verifyWithNode(algorithm, key.publicKeyPem, over, signature)).toBe(true);
      expect(await verifyWithOpenssl(algorithm, key.publicKeyPem, over, signature)).toBe(true);
      expect(await verifyDigestWithOpenssl(algorithm, key.publicKeyPem, 'sha256', digest, signature)).toBe(true);
    }
  });

  it.each(DIGEST_ALGORITHMS)('signDigest with a %s digest verifies with node:crypto', async (hash: DigestAlgorithm) => {
    const key = keyOf(algorithm);
    const message = randomBytes(100);
    const digest = createHash(hash).update(message).digest();
    const signature = await hsm.signDigest(key, { algorithm: hash, value: digest });
    const over = isEd25519(algorithm) ? ({ kind: 'raw', data: digest } as const) : ({ kind: 'message', data: message, hash } as const);
    expect(verifyWithNode(algorithm, key.publicKeyPem, over, signature)).toBe(true);
    // The same signature must not verify for another message.
    const other = isEd25519(algorithm) ? ({ kind: 'raw', data: randomBytes(digest.length) } as const) : ({ kind: 'message', data: randomBytes(100), hash } as const);
    expect(verifyWithNode(algorithm, key.publicKeyPem, other, signature)).toBe(false);
  });

  it('signMessage output verifies with node:crypto and openssl', async () => {
    const key = keyOf(algorithm);
    const message = Buffer.concat([Buffer.from('DSSEv1 28 application/vnd.in-toto+json '), randomBytes(3000)]);
    const defaultHash = await hsm.signMessage(key, message);
    const sha512 = await hsm.signMessage(key, message, 'sha512');
    if (isEd25519(algorithm)) {
      for (const signature of [defaultHash, sha512]) {
        expect(verifyWithNode(algorithm, key.publicKeyPem, { kind: 'raw', data: message }, signature)).toBe(true);
        expect(await verifyWithOpenssl(algorithm, key.publicKeyPem, { kind: 'raw', data: message }, signature)).toBe(true);
      }
    } else {
      for (const [hash, signature] of [
        ['sha256', defaultHash],
        ['sha512', sha512],
      ] as const) {
        const over = { kind: 'message', data: message, hash } as const;
        expect(verifyWithNode(algorithm, key.publicKeyPem, over, signature)).toBe(true);
        expect(await verifyWithOpenssl(algorithm, key.publicKeyPem, over, signature)).toBe(true);
      }
    }
  });

  it('keeps the private key in the token: sensitive, never extractable, sign-only', async () => {
    const key = keyOf(algorithm);
    expect(await hsm.privateKeyAttributes(key)).toEqual({
      sensitive: true,
      extractable: false,
      alwaysSensitive: true,
      neverExtractable: true,
      sign: true,
      decrypt: false,
      unwrap: false,
      derive: false,
      token: true,
      private: true,
    });

    // Ask the token for the secret directly, in a session of our own: it must refuse.
    const { pkcs11, slot } = hsmInternalsForTesting(hsm);
    const session = pkcs11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    try {
      pkcs11.C_FindObjectsInit(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_ID, value: Buffer.from(key.hsmKeyId, 'hex') },
      ]);
      const [handle] = pkcs11.C_FindObjects(session, 2);
      pkcs11.C_FindObjectsFinal(session);
      expect(handle).toBeDefined();
      const secret = algorithm.startsWith('rsa-') ? pkcs11js.CKA_PRIVATE_EXPONENT : pkcs11js.CKA_VALUE;
      expect(() => pkcs11.C_GetAttributeValue(session, handle!, [{ type: secret }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
    } finally {
      pkcs11.C_CloseSession(session);
    }
  });
});

describe('openssl check is not vacuous', () => {
  it('rejects a tampered signature', async () => {
    const key = keyOf('ecdsa-p256');
    const message = Buffer.from('tamper test');
    const signature = Buffer.from(await hsm.signMessage(key, message));
    const last = signature.length - 1;
    signature[last] = (signature[last] ?? 0) ^ 0x01;
    const over = { kind: 'message', data: message, hash: 'sha256' } as const;
    expect(await verifyWithOpenssl('ecdsa-p256', key.publicKeyPem, over, signature)).toBe(false);
  });
});

describe('concurrency', () => {
  it('500 concurrent signatures on the default two signing workers all verify', async () => {
    const key = keyOf('ecdsa-p256');
    const edKey = keyOf('ed25519');
    const internals = hsmInternalsForTesting(hsm);
    const before = { pool: internals.recoveries(), signers: internals.signerRecoveries(), started: internals.signerWorkersStarted() };
    const jobs = Array.from({ length: 500 }, (_, i) => {
      const message = randomBytes(64);
      if (i % 5 === 0) {
        return hsm.signMessage(edKey, message).then((signature) => ({ key: edKey, message, signature }));
      }
      const digest = createHash('sha256').update(message).digest();
      return hsm.signDigest(key, { algorithm: 'sha256', value: digest }).then((signature) => ({ key, message, signature }));
    });
    const results = await Promise.all(jobs);
    for (const { key: used, message, signature } of results) {
      const over = used.algorithm === 'ed25519' ? ({ kind: 'raw', data: message } as const) : ({ kind: 'message', data: message, hash: 'sha256' } as const);
      expect(verifyWithNode(used.algorithm, used.publicKeyPem, over, signature)).toBe(true);
    }
    expect(internals.recoveries()).toBe(before.pool);
    expect(internals.signerRecoveries()).toBe(before.signers);
    expect(internals.signerWorkersStarted()).toBe(before.started);
    expect(internals.signerSessionHandles()).toHaveLength(2);
    expect(internals.sessionHandles().length).toBeLessThanOrEqual(4);
  });
});

describe('missing or mismatched keys', () => {
  const missing: HsmKeyRef = { hsmKeyId: randomBytes(16).toString('hex'), algorithm: 'ecdsa-p256' };
  const digest = { algorithm: 'sha256', value: Buffer.alloc(32, 7) } as const;

  it('reports a key that does not exist', async () => {
    expect(await hsm.hasKeyPair(missing)).toBe(false);
    await expectHsmError(hsm.signDigest(missing, digest), 'HSM_KEY_NOT_FOUND');
    await expectHsmError(hsm.signMessage(missing, Buffer.from('x')), 'HSM_KEY_NOT_FOUND');
    await expectHsmError(hsm.publicKeyPem(missing), 'HSM_KEY_NOT_FOUND');
    await expectHsmError(hsm.privateKeyAttributes(missing), 'HSM_KEY_NOT_FOUND');
  });

  it('refuses a reference naming the wrong algorithm', async () => {
    const p256 = keyOf('ecdsa-p256');
    for (const algorithm of ['ecdsa-p384', 'ed25519', 'rsa-pss-3072'] as const) {
      const wrong: HsmKeyRef = { hsmKeyId: p256.hsmKeyId, algorithm };
      expect(await hsm.hasKeyPair(wrong)).toBe(false);
      await expectHsmError(hsm.signDigest(wrong, digest), 'HSM_KEY_NOT_FOUND');
    }
    // And the right reference still works afterwards.
    expect(await hsm.hasKeyPair(p256)).toBe(true);
  });

  it('never puts a handle or PIN into the message', async () => {
    const error = await hsm.signDigest(missing, digest).catch((e: unknown) => e);
    expect((error as Error).message).not.toContain(token.pin);
    expect((error as Error).message).toContain(missing.hsmKeyId);
  });
});

describe('input validation', () => {
  const key = (): GeneratedKeyPair => keyOf('ecdsa-p256');

  it.each([
    ['sha256', 31],
    ['sha256', 33],
    ['sha384', 32],
    ['sha512', 0],
  ] as const)('rejects a %s digest of %i bytes', async (algorithm, length) => {
    await expectHsmError(hsm.signDigest(key(), { algorithm, value: Buffer.alloc(length, 1) }), 'HSM_INVALID_INPUT');
  });

  it('rejects digests and messages of the wrong type or algorithm', async () => {
    await expectHsmError(
      hsm.signDigest(key(), { algorithm: 'md5' as DigestAlgorithm, value: Buffer.alloc(16) }),
      'HSM_INVALID_INPUT',
    );
    await expectHsmError(
      hsm.signDigest(key(), { algorithm: 'sha256', value: 'a'.repeat(32) as unknown as Buffer }),
      'HSM_INVALID_INPUT',
    );
    await expectHsmError(hsm.signMessage(key(), Buffer.from('m'), 'sha1' as DigestAlgorithm), 'HSM_INVALID_INPUT');
    await expectHsmError(hsm.signMessage(key(), 'message' as unknown as Buffer), 'HSM_INVALID_INPUT');
  });

  it.each(['', 'abc', 'ABCDEF0123', 'zz'.repeat(16), '00'.repeat(65)])('rejects key id %j', async (hsmKeyId) => {
    const digest = { algorithm: 'sha256', value: Buffer.alloc(DIGEST_LENGTHS.sha256) } as const;
    await expectHsmError(hsm.signDigest({ hsmKeyId, algorithm: 'ecdsa-p256' }, digest), 'HSM_INVALID_INPUT');
  });

  it('rejects unknown algorithms and bad labels at key generation', async () => {
    await expectHsmError(hsm.generateKeyPair('dsa-1024' as KeyAlgorithm, 'x'), 'HSM_INVALID_INPUT');
    await expectHsmError(hsm.generateKeyPair('ecdsa-p256', ''), 'HSM_INVALID_INPUT');
    await expectHsmError(hsm.generateKeyPair('ecdsa-p256', 'line\nbreak'), 'HSM_INVALID_INPUT');
    await expectHsmError(hsm.generateKeyPair('ecdsa-p256', 'x'.repeat(129)), 'HSM_INVALID_INPUT');
  });

  it('answers ping', async () => {
    await expect(hsm.ping()).resolves.toBeUndefined();
  });
});
