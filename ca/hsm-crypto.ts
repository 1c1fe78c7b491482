/**
 * A WebCrypto-shaped object whose `subtle.sign` signs in the HSM, for @peculiar/x509's
 * certificate and CRL generators (they take a `Crypto` and a `CryptoKey`).
 *
 * Why a bridge and not node-webcrypto-p11: that library would be a second PKCS#11
 * stack on the same token. Login is per application, not per session, so its login,
 * logout or session closing would act on the signing pool's sessions too, and it
 * initialises the module without CKF_OS_LOCKING_OK (PKCS11-NOTES.md). The bridge
 * signs through the one adapter (signer/pkcs11-hsm.ts: session pool, worker threads,
 * recovery), so CA operations are just rare signatures of the same layer.
 *
 * Only `sign` reaches the HSM. Everything else @peculiar/x509 may call (digest,
 * exportKey, importKey, verify, getRandomValues) is node's WebCrypto, which never sees
 * a private key: the "private keys" handed out here are opaque handles that name an
 * HSM key pair and carry no key material.
 */
import { webcrypto } from 'node:crypto';
import { ECDSASigValue } from '@peculiar/asn1-ecc';
import { AsnConvert } from '@peculiar/asn1-schema';
import type { DigestAlgorithm } from '../signer/algorithms.js';
import type { HsmKeyRef, HsmSigner } from '../signer/types.js';
import { CaError } from './errors.js';
import { ecdsaSigningParameters } from './profiles.js';

type AlgorithmIdentifier = webcrypto.AlgorithmIdentifier;
type EcdsaParams = webcrypto.EcdsaParams;
type EcKeyAlgorithm = webcrypto.EcKeyAlgorithm;
type BufferSource = webcrypto.BufferSource;
/**
 * What @peculiar/x509's generators take as `crypto` and `signingKey`: its declarations
 * name the DOM's `Crypto` and `CryptoKey`, which node:crypto's webcrypto types match.
 */
export type X509Crypto = webcrypto.Crypto;
export type X509SigningKey = webcrypto.CryptoKey;

export interface HsmCryptoBridge {
  /** Pass as the `crypto` argument of X509CertificateGenerator / X509CrlGenerator. */
  readonly crypto: X509Crypto;
  /** An opaque `CryptoKey` standing for the private key of `ref`, for `signingKey`. */
  signingKey(ref: HsmKeyRef): X509SigningKey;
}

const HASHES: Readonly<Record<string, DigestAlgorithm>> = { 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' };
const FIELD_BYTES: Readonly<Record<string, number>> = { 'P-256': 32, 'P-384': 48 };

function hashName(algorithm: AlgorithmIdentifier | EcdsaParams): string | undefined {
  if (typeof algorithm !== 'object' || !('hash' in algorithm)) return undefined;
  const { hash } = algorithm;
  return typeof hash === 'string' ? hash : hash.name;
}

/** Big-endian integer bytes left-padded to `size` (IEEE P1363 halves). */
function fixedWidth(value: ArrayBuffer, size: number): Buffer {
  let bytes = Buffer.from(value);
  while (bytes.length > size && bytes[0] === 0) bytes = bytes.subarray(1);
  if (bytes.length > size) throw new CaError('CA_SIGNATURE_INVALID', 'the HSM returned an ECDSA signature too long for its curve');
  return Buffer.concat([Buffer.alloc(size - bytes.length), bytes]);
}

/**
 * The HSM answers DER ECDSA-Sig-Value (signer/types.ts); WebCrypto's `sign` answers
 * r || s of fixed width (W3C WebCrypto §23.4), which @peculiar/x509 turns back into DER.
 */
function derToP1363(der: Buffer, fieldBytes: number): ArrayBuffer {
  let value: ECDSASigValue;
  try {
    value = AsnConvert.parse(der, ECDSASigValue);
  } catch (error) {
    throw new CaError('CA_SIGNATURE_INVALID', 'the HSM returned a malformed ECDSA signature', { cause: error });
  }
  const raw = Buffer.concat([fixedWidth(value.r, fieldBytes), fixedWidth(value.s, fieldBytes)]);
  return raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
}

export function createHsmCryptoBridge(signer: HsmSigner): HsmCryptoBridge {
  const keys = new WeakMap<object, HsmKeyRef>();
  const subtle = webcrypto.subtle;

  const bridgeSubtle = {
    async sign(algorithm: AlgorithmIdentifier | EcdsaParams, key: webcrypto.CryptoKey, data: BufferSource): Promise<ArrayBuffer> {
      const ref = keys.get(key);
      if (ref === undefined) throw new TypeError('the HSM crypto bridge signs only with keys it handed out');
      const name = typeof algorithm === 'string' ? algorithm : algorithm.name;
      const hash = HASHES[hashName(algorithm) ?? ''];
      const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
      const fieldBytes = FIELD_BYTES[curve];
      if (name.toUpperCase() !== 'ECDSA' || hash === undefined || fieldBytes === undefined) {
        throw new CaError('CA_INVALID_INPUT', 'the CA signs with ECDSA P-256/P-384 and SHA-2 only');
      }
      const bytes = ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data);
      // signMessage hashes with `hash` and signs the digest with CKM_ECDSA in the token.
      const der = await signer.signMessage(ref, Buffer.from(bytes), hash);
      return derToP1363(der, fieldBytes);
    },
    digest: subtle.digest.bind(subtle),
    exportKey: subtle.exportKey.bind(subtle),
    importKey: subtle.importKey.bind(subtle),
    verify: subtle.verify.bind(subtle),
  };

  const crypto = {
    subtle: bridgeSubtle,
    getRandomValues: webcrypto.getRandomValues.bind(webcrypto),
    randomUUID: webcrypto.randomUUID.bind(webcrypto),
  } as unknown as X509Crypto;

  return {
    crypto,
    signingKey(ref: HsmKeyRef): X509SigningKey {
      const handle = Object.freeze({
        type: 'private',
        extractable: false,
        // Only name and curve: @peculiar/x509 spreads this over the signing algorithm,
        // so a `hash` here would override the one the profile chose.
        algorithm: Object.freeze({ ...ecdsaSigningParameters(ref.algorithm).key }),
        usages: Object.freeze(['sign']),
      }) as unknown as X509SigningKey;
      keys.set(handle, ref);
      return handle;
    },
  };
}
