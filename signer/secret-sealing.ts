/**
 * Sealing of small secrets (officers' TOTP seeds) by an AES-256 key that lives in the
 * HSM: generated there, sensitive and non-extractable, usable to encrypt and decrypt
 * only. Storage holds the sealed envelope, never the secret; unsealing needs the token.
 *
 * Cipher: AES-GCM (NIST SP 800-38D) computed by the token, CKM_AES_GCM with
 * CK_GCM_PARAMS (PKCS#11 v3.0 Current Mechanisms: pIv, ulIvLen, ulIvBits, pAAD,
 * ulAADLen, ulTagBits). A fresh random 96-bit IV per seal (SP 800-38D §8.2.2; with at
 * most a few thousand seals per key the 2^32 limit of §8.3 is far off) and a 128-bit
 * tag. The additional authenticated data binds the envelope's format version, the
 * sealing key's id and the caller's context (the officer's name), so a sealed value
 * copied to another officer's record, or relabelled to another key, fails to unseal.
 *
 * Measured on SoftHSM 2.6.1: CKM_AES_GCM works for single-part C_Encrypt/C_Decrypt and
 * agrees with node:crypto's aes-256-gcm; a wrong tag, IV or AAD fails with
 * CKR_GENERAL_ERROR (other tokens answer CKR_ENCRYPTED_DATA_INVALID).
 *
 * Envelope: `signet-sealed:v1:<key id hex>:<IV base64url>:<ciphertext‖tag base64url>`.
 * Errors never carry the plaintext, the envelope's bytes or object handles.
 */
import { randomBytes } from 'node:crypto';
import type * as Pkcs11Js from 'pkcs11js';
import { SignetError } from '../errors/signet-error.js';
import { ckrNameOf, HsmError, hsmErrorFrom, type HsmErrorCode } from './errors.js';
import { assertValidKeyLabel, buildSealingKeyTemplate, newKeyId, sealingKeySearchTemplate } from './key-templates.js';
import { pkcs11SessionAccess, readBooleans, type Pkcs11SessionAccess } from './pkcs11-hsm.js';
import { pkcs11js, type Pkcs11Handle } from './pkcs11-module.js';
import type { PoolSession } from './session-pool.js';
import type { Hsm, HsmSecretSealer, SecretKeyAttributes } from './types.js';

export const SECRET_SEALING_ERROR_CODES = [
  /** The envelope is not one this code writes (truncated, wrong version, bad encoding). */
  'SEALED_SECRET_MALFORMED',
  /** Authentication failed: the envelope was altered, belongs to another context (officer) or key. */
  'SEALED_SECRET_REJECTED',
  /** A key with the sealing label exists but could leak or be misused (not sensitive, extractable, other usages). */
  'SEALING_KEY_UNSAFE',
] as const;
export type SecretSealingErrorCode = (typeof SECRET_SEALING_ERROR_CODES)[number];

export class SecretSealingError extends SignetError<SecretSealingErrorCode> {}

export function isSecretSealingError(value: unknown, code?: SecretSealingErrorCode): value is SecretSealingError {
  return value instanceof SecretSealingError && (code === undefined || value.code === code);
}

export interface OpenSecretSealerOptions {
  /** CKA_LABEL of the sealing key, e.g. `signet:totp-sealing`. */
  readonly label: string;
  /**
   * Generate the key when no key carries the label (for `signet init` and first set-up).
   * Otherwise a missing key is HSM_KEY_NOT_FOUND, so a service that could not unseal
   * fails at start.
   */
  readonly createIfMissing?: boolean;
}

const FORMAT = 'signet-sealed:v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const MAX_PLAINTEXT_BYTES = 1024;
const MAX_AAD_BYTES = 1024;
const ENVELOPE = /^signet-sealed:v1:((?:[0-9a-f]{2}){1,64}):([A-Za-z0-9_-]{16}):([A-Za-z0-9_-]{23,1387})$/;

/**
 * CKM_AES_GCM parameters (CK_GCM_PARAMS of PKCS#11 v3.0, which carries ulIvBits; the
 * v2.40 header had a form without it, and pkcs11js can build both).
 */
export function sealingMechanism(iv: Buffer, aad: Buffer): Pkcs11Js.Mechanism {
  const parameter: Pkcs11Js.AesGCM = { type: pkcs11js.CK_PARAMS_GCM, iv, ivBits: IV_BYTES * 8, aad, tagBits: TAG_BYTES * 8 };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

/** The AAD given to the token: format, key id and the caller's context, unambiguously framed. */
export function sealingAad(keyIdHex: string, context: string): Buffer {
  return Buffer.from(JSON.stringify([FORMAT, keyIdHex, context]), 'utf8');
}

/**
 * Finds the sealing key by label (and checks its attributes), or generates it when
 * allowed. Fails with HSM_KEY_NOT_FOUND (missing, or several keys carry the label),
 * SEALING_KEY_UNSAFE, or the adapter's HsmError codes.
 */
export async function openSecretSealer(hsm: Hsm, options: OpenSecretSealerOptions): Promise<HsmSecretSealer> {
  const { label } = options;
  assertValidKeyLabel(label);
  const access = pkcs11SessionAccess(hsm);
  const what = `opening sealing key "${label}"`;
  const keyIdHex = await runTranslated(access, what, 'HSM_KEYGEN_FAILED', async (session) => {
    const existing = findObjects(access, session, sealingKeySearchTemplate({ label }));
    const [found, other] = existing;
    if (other !== undefined) {
      throw new HsmError('HSM_KEY_NOT_FOUND', `several secret keys carry label "${label}"; refusing to choose one`);
    }
    if (found !== undefined) {
      assertSealingCustody(readSecretKeyAttributes(access, session, found), label);
      return readKeyId(access, session, found, label);
    }
    if (options.createIfMissing !== true) {
      access.assertLoggedIn(session);
      throw new HsmError('HSM_KEY_NOT_FOUND', `no sealing key "${label}" in the token`);
    }
    const id = newKeyId();
    const { mechanism, template } = buildSealingKeyTemplate(id, label);
    const handle = await access.module.C_GenerateKeyAsync(session.handle, mechanism, template);
    try {
      assertSealingCustody(readSecretKeyAttributes(access, session, handle), label);
    } catch (error) {
      // Leave no key behind that a later open would find by its label.
      try {
        access.module.C_DestroyObject(session.handle, handle);
      } catch {
        // Best effort; the custody error is what matters.
      }
      throw error;
    }
    return id.toString('hex');
  });
  return new Pkcs11SecretSealer(access, label, keyIdHex);
}

class Pkcs11SecretSealer implements HsmSecretSealer {
  readonly keyLabel: string;
  readonly #access: Pkcs11SessionAccess;
  readonly #keyIdHex: string;
  readonly #keyId: Buffer;
  /** The key's handle, valid only with sessions of the pool generation it was found in. */
  #cached: { readonly generation: number; readonly handle: Pkcs11Handle } | undefined;

  constructor(access: Pkcs11SessionAccess, label: string, keyIdHex: string) {
    this.keyLabel = label;
    this.#access = access;
    this.#keyIdHex = keyIdHex;
    this.#keyId = Buffer.from(keyIdHex, 'hex');
  }

  async seal(plaintext: Uint8Array, aad: string): Promise<string> {
    if (!(plaintext instanceof Uint8Array) || plaintext.length === 0 || plaintext.length > MAX_PLAINTEXT_BYTES) {
      throw new HsmError('HSM_INVALID_INPUT', `a secret to seal is 1 to ${MAX_PLAINTEXT_BYTES} bytes`);
    }
    checkAad(aad);
    const iv = randomBytes(IV_BYTES);
    const mechanism = sealingMechanism(iv, sealingAad(this.#keyIdHex, aad));
    const data = Buffer.from(plaintext);
    const out = Buffer.alloc(data.length + TAG_BYTES);
    try {
      const sealed = await runTranslated(this.#access, 'sealing a secret', 'HSM_UNAVAILABLE', (session) => {
        const handle = this.#handle(session);
        this.#access.module.C_EncryptInit(session.handle, mechanism, handle);
        return Promise.resolve(Buffer.from(this.#access.module.C_Encrypt(session.handle, data, out)));
      });
      if (sealed.length !== data.length + TAG_BYTES) {
        throw new HsmError('HSM_UNSUPPORTED', 'the token returned AES-GCM output of unexpected length');
      }
      return `${FORMAT}:${this.#keyIdHex}:${iv.toString('base64url')}:${sealed.toString('base64url')}`;
    } finally {
      data.fill(0);
    }
  }

  async unseal(sealed: string, aad: string): Promise<Buffer> {
    checkAad(aad);
    const match = typeof sealed === 'string' ? ENVELOPE.exec(sealed) : null;
    const [, keyIdHex, ivText, cipherText] = match ?? [];
    if (keyIdHex === undefined || ivText === undefined || cipherText === undefined) {
      throw new SecretSealingError('SEALED_SECRET_MALFORMED', 'the sealed secret is not a signet-sealed:v1 envelope');
    }
    const iv = Buffer.from(ivText, 'base64url');
    const data = Buffer.from(cipherText, 'base64url');
    // Base64url round trip rejects non-canonical text (stray bits in the last character).
    if (iv.length !== IV_BYTES || iv.toString('base64url') !== ivText || data.toString('base64url') !== cipherText || data.length <= TAG_BYTES) {
      throw new SecretSealingError('SEALED_SECRET_MALFORMED', 'the sealed secret is not a signet-sealed:v1 envelope');
    }
    if (keyIdHex !== this.#keyIdHex) {
      throw new SecretSealingError('SEALED_SECRET_REJECTED', `the secret was sealed by another key than "${this.keyLabel}"`);
    }
    const mechanism = sealingMechanism(iv, sealingAad(keyIdHex, aad));
    const out = Buffer.alloc(data.length);
    try {
      return await runTranslated(this.#access, 'unsealing a secret', 'HSM_UNAVAILABLE', (session) => {
        const handle = this.#handle(session);
        const module = this.#access.module;
        module.C_DecryptInit(session.handle, mechanism, handle);
        let plaintext: Buffer;
        try {
          plaintext = module.C_Decrypt(session.handle, data, out);
        } catch (error) {
          if (AUTHENTICATION_FAILURES.has(ckrNameOf(error) ?? '')) {
            // No cause: the module's error says nothing more, and nothing of the data may travel.
            throw new SecretSealingError('SEALED_SECRET_REJECTED', 'the sealed secret does not authenticate (altered, or sealed for another owner)');
          }
          throw error;
        }
        return Promise.resolve(Buffer.from(plaintext));
      });
    } finally {
      out.fill(0);
    }
  }

  async keyAttributes(): Promise<SecretKeyAttributes> {
    return runTranslated(this.#access, `reading attributes of sealing key "${this.keyLabel}"`, 'HSM_UNAVAILABLE', (session) =>
      Promise.resolve(readSecretKeyAttributes(this.#access, session, this.#handle(session))),
    );
  }

  /** The key's handle for this session's generation, found by CKA_ID and checked once per generation. */
  #handle(session: PoolSession): Pkcs11Handle {
    if (this.#cached?.generation === session.generation) return this.#cached.handle;
    const [handle, other] = findObjects(this.#access, session, sealingKeySearchTemplate({ id: this.#keyId }));
    if (handle === undefined || other !== undefined) {
      if (handle === undefined) this.#access.assertLoggedIn(session);
      throw new HsmError('HSM_KEY_NOT_FOUND', `the sealing key "${this.keyLabel}" is missing from the token, or not unique`);
    }
    assertSealingCustody(readSecretKeyAttributes(this.#access, session, handle), this.keyLabel);
    this.#cached = { generation: session.generation, handle };
    return handle;
  }
}

/**
 * CK_RVs with which a token reports that AES-GCM decryption did not authenticate
 * (PKCS#11 v2.40 §5.2: CKR_ENCRYPTED_DATA_INVALID / _LEN_RANGE; SoftHSM 2.6.1 answers
 * CKR_GENERAL_ERROR). Mapped to one code: fail closed.
 */
const AUTHENTICATION_FAILURES: ReadonlySet<string> = new Set([
  'CKR_ENCRYPTED_DATA_INVALID',
  'CKR_ENCRYPTED_DATA_LEN_RANGE',
  'CKR_GENERAL_ERROR',
]);

function checkAad(aad: string): void {
  if (typeof aad !== 'string' || aad === '' || Buffer.byteLength(aad, 'utf8') > MAX_AAD_BYTES) {
    throw new HsmError('HSM_INVALID_INPUT', `the sealing context is 1 to ${MAX_AAD_BYTES} bytes of text`);
  }
}

/** Runs on the pool and turns foreign errors into HsmError; our own typed errors pass through. */
async function runTranslated<T>(
  access: Pkcs11SessionAccess,
  what: string,
  fallback: HsmErrorCode,
  body: (session: PoolSession) => Promise<T>,
): Promise<T> {
  try {
    return await access.run(what, body);
  } catch (error) {
    if (error instanceof SecretSealingError) throw error;
    throw hsmErrorFrom(error, fallback, what);
  }
}

/** C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal (v2.40 §5.7.7–5.7.9), at most two hits. */
function findObjects(access: Pkcs11SessionAccess, session: PoolSession, template: Pkcs11Js.Template): Pkcs11Handle[] {
  const { module } = access;
  module.C_FindObjectsInit(session.handle, template);
  try {
    return module.C_FindObjects(session.handle, 2);
  } finally {
    // Always end the search: an active find operation blocks the next one.
    module.C_FindObjectsFinal(session.handle);
  }
}

function readKeyId(access: Pkcs11SessionAccess, session: PoolSession, handle: Pkcs11Handle, label: string): string {
  const [id] = access.module.C_GetAttributeValue(session.handle, handle, [{ type: pkcs11js.CKA_ID }]);
  if (id === undefined || id.value.length === 0 || id.value.length > 64) {
    throw new SecretSealingError('SEALING_KEY_UNSAFE', `the sealing key "${label}" has no usable CKA_ID`);
  }
  return id.value.toString('hex');
}

function readSecretKeyAttributes(access: Pkcs11SessionAccess, session: PoolSession, handle: Pkcs11Handle): SecretKeyAttributes {
  const read = readBooleans(access.module, session, handle, [
    pkcs11js.CKA_SENSITIVE,
    pkcs11js.CKA_EXTRACTABLE,
    pkcs11js.CKA_ALWAYS_SENSITIVE,
    pkcs11js.CKA_NEVER_EXTRACTABLE,
    pkcs11js.CKA_ENCRYPT,
    pkcs11js.CKA_DECRYPT,
    pkcs11js.CKA_SIGN,
    pkcs11js.CKA_VERIFY,
    pkcs11js.CKA_WRAP,
    pkcs11js.CKA_UNWRAP,
    pkcs11js.CKA_DERIVE,
    pkcs11js.CKA_TOKEN,
    pkcs11js.CKA_PRIVATE,
  ]);
  return {
    sensitive: read(pkcs11js.CKA_SENSITIVE),
    extractable: read(pkcs11js.CKA_EXTRACTABLE),
    alwaysSensitive: read(pkcs11js.CKA_ALWAYS_SENSITIVE),
    neverExtractable: read(pkcs11js.CKA_NEVER_EXTRACTABLE),
    encrypt: read(pkcs11js.CKA_ENCRYPT),
    decrypt: read(pkcs11js.CKA_DECRYPT),
    sign: read(pkcs11js.CKA_SIGN),
    verify: read(pkcs11js.CKA_VERIFY),
    wrap: read(pkcs11js.CKA_WRAP),
    unwrap: read(pkcs11js.CKA_UNWRAP),
    derive: read(pkcs11js.CKA_DERIVE),
    token: read(pkcs11js.CKA_TOKEN),
    private: read(pkcs11js.CKA_PRIVATE),
  };
}

/**
 * The key must never have been readable (ALWAYS_SENSITIVE, NEVER_EXTRACTABLE), must
 * persist on the token, be private, and be usable for encryption and decryption only:
 * a key that can wrap could export other keys, one that can sign could forge MACs.
 */
function assertSealingCustody(attributes: SecretKeyAttributes, label: string): void {
  const safe =
    attributes.sensitive &&
    !attributes.extractable &&
    attributes.alwaysSensitive &&
    attributes.neverExtractable &&
    attributes.encrypt &&
    attributes.decrypt &&
    !attributes.sign &&
    !attributes.verify &&
    !attributes.wrap &&
    !attributes.unwrap &&
    !attributes.derive &&
    attributes.token &&
    attributes.private;
  if (!safe) {
    throw new SecretSealingError(
      'SEALING_KEY_UNSAFE',
      `the key "${label}" is not a sensitive, non-extractable, encrypt/decrypt-only token key`,
    );
  }
}
