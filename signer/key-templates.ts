/**
 * The one place that says what a Signet key looks like inside the token: key types,
 * curves, key-generation mechanisms and the attribute templates of both halves of a
 * key pair. Everything that creates a key goes through `buildKeyPairTemplate`.
 *
 * Security assumption: the private key must never leave the token and must be usable
 * for signing only. PKCS#11 defaults are not safe for that (v2.40 §4.9, private key
 * objects: CKA_SENSITIVE/CKA_EXTRACTABLE defaults are token-specific, and SoftHSM 2.6.1
 * sets CKA_DECRYPT/CKA_UNWRAP on private keys unless told otherwise), so every
 * security-relevant attribute is stated explicitly.
 */
import { randomBytes } from 'node:crypto';
import { ECParameters, id_secp256r1, id_secp384r1 } from '@peculiar/asn1-ecc';
import { AsnConvert } from '@peculiar/asn1-schema';
import type { KeyAlgorithm } from './algorithms.js';
import { HsmError } from './errors.js';
import { pkcs11js } from './pkcs11-module.js';
import type * as Pkcs11Js from 'pkcs11js';

/**
 * PKCS#11 3.0 Current Mechanisms values for Edwards curves and EdDSA that pkcs11js 2.1 (a v2.40
 * binding) does not define.
 */
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;

/** id-Ed25519, RFC 8410 §3. */
const ID_ED25519 = '1.3.101.112';

/** DER of an ECParameters CHOICE holding a namedCurve OID (RFC 5480 §2.1.1). */
function namedCurveParams(oid: string): Buffer {
  return Buffer.from(AsnConvert.serialize(new ECParameters({ namedCurve: oid })));
}

/**
 * PKCS#11 3.0 also allows CKA_EC_PARAMS of an Edwards key to be the PrintableString
 * "edwards25519" (curveName form). We generate with the RFC 8410 OID, which SoftHSM
 * 2.6.1 accepts as well, but SoftHSM stores and reports the curveName form on the
 * private key (measured), as do keys made by other tools: accept both when reading.
 */
const EDWARDS25519_CURVE_NAME_PARAMS = Buffer.concat([
  Buffer.from([0x13, 0x0c]), // PrintableString, 12 bytes
  Buffer.from('edwards25519', 'ascii'),
]);

interface EcKeySpec {
  readonly kind: 'ecdsa';
  readonly algorithm: KeyAlgorithm;
  readonly keyType: number;
  readonly keyGenMechanism: number;
  /** CKA_EC_PARAMS we generate with. */
  readonly ecParams: Buffer;
  /** CKA_EC_PARAMS encodings we accept on an existing key. */
  readonly acceptedEcParams: readonly Buffer[];
  /** JWK `crv`. */
  readonly curve: 'P-256' | 'P-384';
  /** Bytes of one coordinate, and of r and s in the raw CKM_ECDSA output. */
  readonly fieldBytes: number;
}

interface EdKeySpec {
  readonly kind: 'eddsa';
  readonly algorithm: KeyAlgorithm;
  readonly keyType: number;
  readonly keyGenMechanism: number;
  readonly ecParams: Buffer;
  readonly acceptedEcParams: readonly Buffer[];
  readonly curve: 'Ed25519';
  /** Length of the encoded public point and of each signature half (RFC 8032 §5.1). */
  readonly fieldBytes: 32;
}

interface RsaKeySpec {
  readonly kind: 'rsa-pss';
  readonly algorithm: KeyAlgorithm;
  readonly keyType: number;
  readonly keyGenMechanism: number;
  readonly modulusBits: number;
}

export type KeySpec = EcKeySpec | EdKeySpec | RsaKeySpec;

/** 65537, big-endian, as CKA_PUBLIC_EXPONENT wants it (v2.40 Current Mechanisms §2.1.2). */
export const RSA_PUBLIC_EXPONENT = Buffer.from([0x01, 0x00, 0x01]);

const P256_PARAMS = namedCurveParams(id_secp256r1);
const P384_PARAMS = namedCurveParams(id_secp384r1);
const ED25519_PARAMS = namedCurveParams(ID_ED25519);

const KEY_SPECS: Readonly<Record<KeyAlgorithm, KeySpec>> = Object.freeze({
  'ecdsa-p256': {
    kind: 'ecdsa',
    algorithm: 'ecdsa-p256',
    keyType: pkcs11js.CKK_EC,
    keyGenMechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN,
    ecParams: P256_PARAMS,
    acceptedEcParams: [P256_PARAMS],
    curve: 'P-256',
    fieldBytes: 32,
  },
  'ecdsa-p384': {
    kind: 'ecdsa',
    algorithm: 'ecdsa-p384',
    keyType: pkcs11js.CKK_EC,
    keyGenMechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN,
    ecParams: P384_PARAMS,
    acceptedEcParams: [P384_PARAMS],
    curve: 'P-384',
    fieldBytes: 48,
  },
  ed25519: {
    kind: 'eddsa',
    algorithm: 'ed25519',
    keyType: CKK_EC_EDWARDS,
    keyGenMechanism: CKM_EC_EDWARDS_KEY_PAIR_GEN,
    ecParams: ED25519_PARAMS,
    acceptedEcParams: [ED25519_PARAMS, EDWARDS25519_CURVE_NAME_PARAMS],
    curve: 'Ed25519',
    fieldBytes: 32,
  },
  'rsa-pss-3072': {
    kind: 'rsa-pss',
    algorithm: 'rsa-pss-3072',
    keyType: pkcs11js.CKK_RSA,
    keyGenMechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN,
    modulusBits: 3072,
  },
  'rsa-pss-4096': {
    kind: 'rsa-pss',
    algorithm: 'rsa-pss-4096',
    keyType: pkcs11js.CKK_RSA,
    keyGenMechanism: pkcs11js.CKM_RSA_PKCS_KEY_PAIR_GEN,
    modulusBits: 4096,
  },
});

export function keySpec(algorithm: KeyAlgorithm): KeySpec {
  return KEY_SPECS[algorithm];
}

/** CKA_ID length of the keys we create: 128 random bits never collide in practice. */
export const KEY_ID_BYTES = 16;

export function newKeyId(): Buffer {
  return randomBytes(KEY_ID_BYTES);
}

/** CKA_LABEL limit we impose (PKCS#11 sets none); keeps labels loggable. */
export const MAX_KEY_LABEL_BYTES = 128;

/** CKA_LABEL is shown to operators and written to logs: keep it short and printable. */
export function assertValidKeyLabel(label: string): void {
  if (
    typeof label !== 'string' ||
    label === '' ||
    Buffer.byteLength(label, 'utf8') > MAX_KEY_LABEL_BYTES ||
    /\p{Cc}/u.test(label)
  ) {
    throw new HsmError(
      'HSM_INVALID_INPUT',
      `a key label must be 1 to ${MAX_KEY_LABEL_BYTES} bytes of UTF-8 without control characters`,
    );
  }
}

export interface KeyPairTemplate {
  readonly mechanism: Pkcs11Js.Mechanism;
  readonly publicKey: Pkcs11Js.Template;
  readonly privateKey: Pkcs11Js.Template;
}

/**
 * Templates for C_GenerateKeyPair (v2.40 §5.14.2).
 *
 * Private key: a token object (CKA_TOKEN) visible only after login (CKA_PRIVATE),
 * whose value can never be read (CKA_SENSITIVE) nor wrapped out (CKA_EXTRACTABLE=false;
 * the token then also reports CKA_NEVER_EXTRACTABLE / CKA_ALWAYS_SENSITIVE), and which
 * can sign and nothing else. Public key: verify only.
 */
export function buildKeyPairTemplate(algorithm: KeyAlgorithm, id: Buffer, label: string): KeyPairTemplate {
  const spec = keySpec(algorithm);
  assertValidKeyLabel(label);
  const labelBytes = Buffer.from(label, 'utf8');
  if (id.length === 0) throw new HsmError('HSM_INVALID_INPUT', 'a key id must not be empty');

  const shared = (objectClass: number): Pkcs11Js.Template => [
    { type: pkcs11js.CKA_CLASS, value: objectClass },
    { type: pkcs11js.CKA_KEY_TYPE, value: spec.keyType },
    { type: pkcs11js.CKA_TOKEN, value: true },
    { type: pkcs11js.CKA_ID, value: Buffer.from(id) },
    { type: pkcs11js.CKA_LABEL, value: Buffer.from(labelBytes) },
    { type: pkcs11js.CKA_DERIVE, value: false },
  ];

  const publicKey: Pkcs11Js.Template = [
    ...shared(pkcs11js.CKO_PUBLIC_KEY),
    { type: pkcs11js.CKA_PRIVATE, value: false },
    { type: pkcs11js.CKA_VERIFY, value: true },
    { type: pkcs11js.CKA_VERIFY_RECOVER, value: false },
    { type: pkcs11js.CKA_ENCRYPT, value: false },
    { type: pkcs11js.CKA_WRAP, value: false },
  ];
  const privateKey: Pkcs11Js.Template = [
    ...shared(pkcs11js.CKO_PRIVATE_KEY),
    { type: pkcs11js.CKA_PRIVATE, value: true },
    { type: pkcs11js.CKA_SENSITIVE, value: true },
    { type: pkcs11js.CKA_EXTRACTABLE, value: false },
    { type: pkcs11js.CKA_SIGN, value: true },
    { type: pkcs11js.CKA_SIGN_RECOVER, value: false },
    { type: pkcs11js.CKA_DECRYPT, value: false },
    { type: pkcs11js.CKA_UNWRAP, value: false },
  ];

  switch (spec.kind) {
    case 'ecdsa':
    case 'eddsa':
      // The domain parameters go on the public template only (Current Mechanisms
      // Current Mechanisms §2.3: CKA_EC_PARAMS is supplied in the public key template; the private key
      // inherits them).
      publicKey.push({ type: pkcs11js.CKA_EC_PARAMS, value: Buffer.from(spec.ecParams) });
      break;
    case 'rsa-pss':
      publicKey.push(
        { type: pkcs11js.CKA_MODULUS_BITS, value: spec.modulusBits },
        { type: pkcs11js.CKA_PUBLIC_EXPONENT, value: Buffer.from(RSA_PUBLIC_EXPONENT) },
      );
      break;
  }
  return { mechanism: { mechanism: spec.keyGenMechanism }, publicKey, privateKey };
}

/** Search template for one half of a key pair by CKA_ID (v2.40 §5.7.7, C_FindObjectsInit). */
export function keyObjectSearchTemplate(id: Buffer, objectClass: 'private' | 'public'): Pkcs11Js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: objectClass === 'private' ? pkcs11js.CKO_PRIVATE_KEY : pkcs11js.CKO_PUBLIC_KEY },
    { type: pkcs11js.CKA_ID, value: Buffer.from(id) },
  ];
}

/** AES-256: CKA_VALUE_LEN of the secret-sealing key, in bytes (Current Mechanisms v2.40 §2.8, CKM_AES_KEY_GEN). */
export const SEALING_KEY_BYTES = 32;

/**
 * Template for C_GenerateKey (v2.40 §5.14.1) of the key that seals small secrets such
 * as officers' TOTP seeds (signer/secret-sealing.ts): an AES-256 token object, private,
 * that can encrypt and decrypt and nothing else (no sign/verify, no wrap/unwrap, no
 * derive), whose value can never be read (CKA_SENSITIVE) nor wrapped out
 * (CKA_EXTRACTABLE=false).
 */
export function buildSealingKeyTemplate(id: Buffer, label: string): { readonly mechanism: Pkcs11Js.Mechanism; readonly template: Pkcs11Js.Template } {
  assertValidKeyLabel(label);
  if (id.length === 0) throw new HsmError('HSM_INVALID_INPUT', 'a key id must not be empty');
  return {
    mechanism: { mechanism: pkcs11js.CKM_AES_KEY_GEN },
    template: [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: SEALING_KEY_BYTES },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_ID, value: Buffer.from(id) },
      { type: pkcs11js.CKA_LABEL, value: Buffer.from(label, 'utf8') },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_SIGN, value: false },
      { type: pkcs11js.CKA_VERIFY, value: false },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_DERIVE, value: false },
    ],
  };
}

/** Search template for AES secret keys by CKA_LABEL or by CKA_ID (v2.40 §5.7.7). */
export function sealingKeySearchTemplate(by: { readonly label: string } | { readonly id: Buffer }): Pkcs11Js.Template {
  return [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    'label' in by ? { type: pkcs11js.CKA_LABEL, value: Buffer.from(by.label, 'utf8') } : { type: pkcs11js.CKA_ID, value: Buffer.from(by.id) },
  ];
}
