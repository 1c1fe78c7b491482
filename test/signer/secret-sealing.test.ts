/**
 * Sealing of TOTP secrets by an AES key in a real SoftHSM token: the key's attributes
 * (sensitive, non-extractable, encrypt/decrypt only), round trips, ciphertext that
 * shows nothing of the plaintext, tampering and misuse rejected with typed errors that
 * carry no secret, and AES-GCM parameters the token interprets exactly as node:crypto.
 */
import { createDecipheriv, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTotpSecret, totpSecretToBase32 } from '../../keyrotation/totp.js';
import { isHsmError } from '../../signer/errors.js';
import { hsmInternalsForTesting, openPkcs11Hsm } from '../../signer/pkcs11-hsm.js';
import { pkcs11js } from '../../signer/pkcs11-module.js';
import { isSecretSealingError, openSecretSealer, sealingAad, sealingMechanism, type SecretSealingErrorCode } from '../../signer/secret-sealing.js';
import type { Hsm, HsmSecretSealer } from '../../signer/types.js';
import { createTestToken, removeTestToken, type TestToken } from '../helpers/softhsm.js';

const LABEL = 'signet:totp-sealing';
let token: TestToken;
let hsm: Hsm;
let sealer: HsmSecretSealer;

beforeAll(async () => {
  token = await createTestToken();
  hsm = await openPkcs11Hsm({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, poolSize: 2, signWorkers: 1 });
  sealer = await openSecretSealer(hsm, { label: LABEL, createIfMissing: true });
});

afterAll(async () => {
  await hsm.close();
  await removeTestToken(token);
});

async function failure(promise: Promise<unknown>): Promise<Error> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  return error as Error;
}

async function expectSealingError(promise: Promise<unknown>, code: SecretSealingErrorCode, secret?: Buffer): Promise<void> {
  const error = await failure(promise);
  expect(isSecretSealingError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  if (secret !== undefined) expectNoSecret(error, secret);
}

/** Neither the message, the stack nor the cause chain may show the secret in any usual encoding. */
function expectNoSecret(error: Error, secret: Buffer): void {
  const text = [error.message, error.stack ?? '', String(error.cause), JSON.stringify(error)].join('\n');
  for (const form of [secret.toString('hex'), secret.toString('base64'), secret.toString('base64url'), totpSecretToBase32(secret)]) {
    expect(text).not.toContain(form);
  }
}

/** Runs `body` on one of the adapter's sessions (test-only access to the module). */
function withSession<T>(body: (pkcs11: ReturnType<typeof hsmInternalsForTesting>['pkcs11'], session: Buffer) => T): T {
  const internals = hsmInternalsForTesting(hsm);
  const [session] = internals.sessionHandles();
  if (session === undefined) throw new Error('no session');
  return body(internals.pkcs11, session);
}

describe('the sealing key', () => {
  it('is an AES token key that is sensitive, non-extractable and can only encrypt and decrypt', async () => {
    expect(sealer.keyLabel).toBe(LABEL);
    expect(await sealer.keyAttributes()).toEqual({
      sensitive: true,
      extractable: false,
      alwaysSensitive: true,
      neverExtractable: true,
      encrypt: true,
      decrypt: true,
      sign: false,
      verify: false,
      wrap: false,
      unwrap: false,
      derive: false,
      token: true,
      private: true,
    });
  });

  it('refuses to reveal its value (CKR_ATTRIBUTE_SENSITIVE)', () => {
    withSession((pkcs11, session) => {
      pkcs11.C_FindObjectsInit(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_LABEL, value: Buffer.from(LABEL) },
      ]);
      const [handle] = pkcs11.C_FindObjects(session, 2);
      pkcs11.C_FindObjectsFinal(session);
      expect(handle).toBeDefined();
      expect(() => pkcs11.C_GetAttributeValue(session, handle!, [{ type: pkcs11js.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      const [length] = pkcs11.C_GetAttributeValue(session, handle!, [{ type: pkcs11js.CKA_VALUE_LEN }]);
      expect(length!.value.readUInt32LE(0)).toBe(32); // AES-256
    });
  });

  it('is found again by label, not generated twice', async () => {
    const again = await openSecretSealer(hsm, { label: LABEL });
    const sealed = await sealer.seal(Buffer.from('shared across opens'), 'alice');
    expect((await again.unseal(sealed, 'alice')).toString()).toBe('shared across opens');
    const count = withSession((pkcs11, session) => {
      pkcs11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: Buffer.from(LABEL) }]);
      const found = pkcs11.C_FindObjects(session, 10);
      pkcs11.C_FindObjectsFinal(session);
      return found.length;
    });
    expect(count).toBe(1);
  });

  it('is not created unless asked: a missing key fails at open', async () => {
    const error = await failure(openSecretSealer(hsm, { label: 'signet:no-such-key' }));
    expect(isHsmError(error, 'HSM_KEY_NOT_FOUND')).toBe(true);
  });

  it('refuses a key under the label that could leak', async () => {
    const label = 'signet:unsafe-sealing';
    withSession((pkcs11, session) =>
      pkcs11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_LABEL, value: Buffer.from(label) },
        { type: pkcs11js.CKA_ID, value: randomBytes(16) },
        { type: pkcs11js.CKA_SENSITIVE, value: false },
        { type: pkcs11js.CKA_EXTRACTABLE, value: true },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: true },
      ]),
    );
    await expectSealingError(openSecretSealer(hsm, { label }), 'SEALING_KEY_UNSAFE');
    await expectSealingError(openSecretSealer(hsm, { label, createIfMissing: true }), 'SEALING_KEY_UNSAFE');
  });
});

describe('sealing and unsealing', () => {
  it('round-trips a TOTP secret; the envelope shows nothing of it and differs each time', async () => {
    const secret = newTotpSecret();
    const sealed = await sealer.seal(secret, 'alice');
    const again = await sealer.seal(secret, 'alice');
    expect(sealed).toMatch(/^signet-sealed:v1:[0-9a-f]{32}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+$/);
    expect(again).not.toBe(sealed); // a fresh IV per seal
    for (const form of [secret.toString('hex'), secret.toString('base64url'), totpSecretToBase32(secret)]) {
      expect(sealed).not.toContain(form);
      expect(sealed.toUpperCase()).not.toContain(form.toUpperCase());
    }
    const ciphertext = Buffer.from(sealed.split(':').at(-1)!, 'base64url');
    expect(ciphertext).toHaveLength(secret.length + 16);
    expect(ciphertext.subarray(0, secret.length).equals(secret)).toBe(false);
    expect((await sealer.unseal(sealed, 'alice')).equals(secret)).toBe(true);
    expect((await sealer.unseal(again, 'alice')).equals(secret)).toBe(true);
  });

  it('rejects an envelope presented for another officer (AAD)', async () => {
    const secret = newTotpSecret();
    const sealed = await sealer.seal(secret, 'alice');
    await expectSealingError(sealer.unseal(sealed, 'bob'), 'SEALED_SECRET_REJECTED', secret);
  });

  it('rejects every single-bit change of the ciphertext, tag and IV', async () => {
    const secret = newTotpSecret();
    const sealed = await sealer.seal(secret, 'alice');
    const parts = sealed.split(':');
    const iv = Buffer.from(parts[3]!, 'base64url');
    const data = Buffer.from(parts[4]!, 'base64url');
    const rebuild = (newIv: Buffer, newData: Buffer): string =>
      [...parts.slice(0, 3), newIv.toString('base64url'), newData.toString('base64url')].join(':');
    // A sample of positions through ciphertext and tag, and every byte of the IV.
    for (const index of [0, 7, secret.length - 1, secret.length, secret.length + 15]) {
      const flipped = Buffer.from(data);
      flipped[index]! ^= 0x01;
      await expectSealingError(sealer.unseal(rebuild(iv, flipped), 'alice'), 'SEALED_SECRET_REJECTED', secret);
    }
    for (let index = 0; index < iv.length; index += 3) {
      const flipped = Buffer.from(iv);
      flipped[index]! ^= 0x80;
      await expectSealingError(sealer.unseal(rebuild(flipped, data), 'alice'), 'SEALED_SECRET_REJECTED', secret);
    }
    // A truncated tag: still a well-formed envelope, but it does not authenticate.
    await expectSealingError(sealer.unseal(rebuild(iv, data.subarray(0, data.length - 1)), 'alice'), 'SEALED_SECRET_REJECTED', secret);
    // The original still unseals: failures left the pool healthy.
    expect((await sealer.unseal(sealed, 'alice')).equals(secret)).toBe(true);
  });

  it('rejects an envelope naming another key, and malformed envelopes', async () => {
    const secret = newTotpSecret();
    const sealed = await sealer.seal(secret, 'alice');
    const parts = sealed.split(':');
    const otherKey = [...parts.slice(0, 2), 'ab'.repeat(16), ...parts.slice(3)].join(':');
    await expectSealingError(sealer.unseal(otherKey, 'alice'), 'SEALED_SECRET_REJECTED', secret);
    for (const bad of [
      '',
      secret.toString('hex'),
      sealed.replace('signet-sealed:v1', 'signet-sealed:v2'),
      parts.slice(0, 4).join(':'),
      `${sealed}:extra`,
      [...parts.slice(0, 3), parts[3]!.slice(1), parts[4]].join(':'), // IV of 11 bytes
      [...parts.slice(0, 4), 'AAAA'].join(':'), // shorter than a tag
      [...parts.slice(0, 4), `${parts[4]!}=`].join(':'),
    ]) {
      await expectSealingError(sealer.unseal(bad, 'alice'), 'SEALED_SECRET_MALFORMED', secret);
    }
  });

  it('refuses empty or oversized input as caller errors', async () => {
    for (const promise of [sealer.seal(new Uint8Array(0), 'alice'), sealer.seal(new Uint8Array(2048), 'alice'), sealer.seal(newTotpSecret(), '')]) {
      const error = await failure(promise);
      expect(isHsmError(error, 'HSM_INVALID_INPUT')).toBe(true);
    }
  });

  it('works concurrently on the pool', async () => {
    const secrets = Array.from({ length: 20 }, () => newTotpSecret());
    const sealed = await Promise.all(secrets.map((s, i) => sealer.seal(s, `officer-${i}`)));
    const opened = await Promise.all(sealed.map((s, i) => sealer.unseal(s, `officer-${i}`)));
    opened.forEach((plain, i) => {
      expect(plain.equals(secrets[i]!)).toBe(true);
    });
  });
});

describe('AES-GCM parameters', () => {
  it('the token reads them as NIST SP 800-38D says: node:crypto opens what it seals', () => {
    // A throwaway session key that may be read, sealed with exactly the mechanism the sealer uses.
    withSession((pkcs11, session) => {
      const key = pkcs11.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_TOKEN, value: false },
        { type: pkcs11js.CKA_SENSITIVE, value: false },
        { type: pkcs11js.CKA_EXTRACTABLE, value: true },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: true },
      ]);
      try {
        const [value] = pkcs11.C_GetAttributeValue(session, key, [{ type: pkcs11js.CKA_VALUE }]);
        const iv = randomBytes(12);
        const aad = sealingAad('00'.repeat(16), 'alice');
        const plaintext = newTotpSecret();
        pkcs11.C_EncryptInit(session, sealingMechanism(iv, aad), key);
        const out = pkcs11.C_Encrypt(session, plaintext, Buffer.alloc(plaintext.length + 16));
        const decipher = createDecipheriv('aes-256-gcm', value!.value, iv);
        decipher.setAAD(aad);
        decipher.setAuthTag(out.subarray(out.length - 16));
        expect(Buffer.concat([decipher.update(out.subarray(0, out.length - 16)), decipher.final()]).equals(plaintext)).toBe(true);
      } finally {
        pkcs11.C_DestroyObject(session, key);
      }
    });
  });
});

describe('after close', () => {
  it('fails with HSM_POOL_CLOSED', async () => {
    const token2 = token;
    const other = await openPkcs11Hsm({ modulePath: token2.modulePath, tokenLabel: token2.label, pin: token2.pin, poolSize: 1, signWorkers: 1 });
    const late = await openSecretSealer(other, { label: LABEL });
    await other.close();
    const error = await failure(late.seal(newTotpSecret(), 'alice'));
    expect(isHsmError(error, 'HSM_POOL_CLOSED')).toBe(true);
  });
});
