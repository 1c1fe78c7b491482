/**
 * The signing key as a verifier meets it: the leaf certificate (from the receipt's
 * chain, else the trust bundle's certificate of the key the receipt names, the one
 * valid at the log time), its key algorithm, and signature checks with node:crypto in
 * the encodings DESIGN.md fixes: DER ECDSA-Sig-Value, raw Ed25519, RSASSA-PSS with
 * MGF1 of the same hash and a salt as long as the hash (RFC 8017 §8.1).
 */
import { constants, createPublicKey, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { DIGEST_LENGTHS, type DigestAlgorithm, type KeyAlgorithm } from '../signer/algorithms.js';
import type { Receipt, TrustBundleKey, TrustView } from './inputs.js';
import { quoted, refuse } from './result.js';

export interface SigningCertificate {
  readonly certificatePem: string;
  readonly intermediatesPem: readonly string[];
  /** Where it came from: the signature's own material, or the trust bundle (the receipt only named the key). */
  readonly source: 'signature' | 'trust-bundle';
}

export interface SigningKey {
  readonly key: KeyObject;
  readonly spki: Buffer;
  readonly algorithm: KeyAlgorithm;
}

export function pemOfDer(der: Buffer, label = 'CERTIFICATE'): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm | null {
  const type = key.asymmetricKeyType;
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return curve === 'prime256v1' ? 'ecdsa-p256' : curve === 'secp384r1' ? 'ecdsa-p384' : null;
  }
  if (type === 'ed25519') return 'ed25519';
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = key.asymmetricKeyDetails?.modulusLength;
    return bits === 3072 ? 'rsa-pss-3072' : bits === 4096 ? 'rsa-pss-4096' : null;
  }
  return null;
}

/** The key of a PEM certificate, refused (signature-invalid) when unreadable or of an algorithm Signet never signs with. */
export function signingKeyOf(certificatePem: string): SigningKey {
  let key: KeyObject;
  try {
    key = new X509Certificate(certificatePem).publicKey;
  } catch {
    throw refuse('untrusted-key', 'CERTIFICATE_MALFORMED', 'the signing certificate cannot be parsed');
  }
  const algorithm = keyAlgorithmOf(key);
  if (algorithm === null) throw refuse('signature-invalid', 'KEY_ALGORITHM_UNSUPPORTED', 'the signing certificate holds a key of an algorithm Signet does not sign with');
  return { key, spki: key.export({ type: 'spki', format: 'der' }), algorithm };
}

function coversTime(notBefore: string, notAfter: string, at: number): boolean {
  return Date.parse(notBefore) <= at && at <= Date.parse(notAfter);
}

/**
 * The trust bundle's certificate of `key` for a signature logged at `at`: one valid
 * then, unrevoked if there is one, else the key's current certificate. Whether it is
 * good enough (revoked, expired) is the chain check's to say.
 */
export function bundleCertificateAt(key: TrustBundleKey, at: Date): string | null {
  const time = at.getTime();
  const valid = key.certificates.filter((c) => coversTime(c.notBefore, c.notAfter, time));
  const chosen = valid.find((c) => c.revocation === null) ?? valid[0];
  return chosen?.certificatePem ?? key.certificatePem;
}

/**
 * The leaf for formats that carry no certificate of their own (raw, dsse, pgp): the
 * receipt's chain (leaf first), else the bundle's certificate of the key the receipt names.
 */
export function receiptSigningCertificate(receipt: Receipt, trust: TrustView, at: Date): SigningCertificate {
  const [leaf, ...intermediates] = receipt.chain;
  if (leaf !== undefined) return { certificatePem: leaf, intermediatesPem: intermediates, source: 'signature' };
  if (receipt.keyId === null) throw refuse('untrusted-key', 'CERTIFICATE_UNKNOWN', 'the receipt names neither a certificate chain nor a key');
  const key = trust.keys.find((k) => k.keyId === receipt.keyId);
  if (key === undefined) throw refuse('untrusted-key', 'KEY_NOT_IN_TRUST_BUNDLE', `the trust bundle has no key ${quoted(receipt.keyId)}`);
  const certificatePem = bundleCertificateAt(key, at);
  if (certificatePem === null) throw refuse('untrusted-key', 'CERTIFICATE_UNKNOWN', `the trust bundle has no certificate for key ${quoted(receipt.keyId)}`);
  return { certificatePem, intermediatesPem: [], source: 'trust-bundle' };
}

function pssOptions(key: KeyObject, hash: DigestAlgorithm) {
  return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: DIGEST_LENGTHS[hash] };
}

/** node:crypto throws on malformed signatures or unusable key/option pairs: a signature that does not verify. */
function safely(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}

/**
 * A signature over a digest as the HSM makes it (HsmSigner.signDigest): ECDSA and
 * RSA-PSS over `digest` = H(message) are checked as signatures over the message with H;
 * Ed25519 is PureEdDSA over the digest bytes themselves (DESIGN.md).
 */
export function verifyDigestSignature(signer: SigningKey, hash: DigestAlgorithm, message: Buffer, digest: Buffer, signature: Buffer): boolean {
  return safely(() => {
    switch (signer.algorithm) {
      case 'ecdsa-p256':
      case 'ecdsa-p384':
        return verify(hash, message, { key: signer.key, dsaEncoding: 'der' }, signature);
      case 'ed25519':
        return verify(null, digest, signer.key, signature);
      case 'rsa-pss-3072':
      case 'rsa-pss-4096':
        return verify(hash, message, pssOptions(signer.key, hash), signature);
    }
  });
}

/** A signature over a whole message (HsmSigner.signMessage): hashed with `hash`, except Ed25519 (PureEdDSA over the message). */
export function verifyMessageSignature(signer: SigningKey, hash: DigestAlgorithm | undefined, message: Buffer, signature: Buffer): boolean {
  return safely(() => {
    switch (signer.algorithm) {
      case 'ecdsa-p256':
      case 'ecdsa-p384':
        return verify(hash ?? 'sha256', message, { key: signer.key, dsaEncoding: 'der' }, signature);
      case 'ed25519':
        return verify(null, message, signer.key, signature);
      case 'rsa-pss-3072':
      case 'rsa-pss-4096':
        return verify(hash ?? 'sha256', message, pssOptions(signer.key, hash ?? 'sha256'), signature);
    }
  });
}

/** Whether two PEM keys or certificates hold the same public key. */
export function samePublicKey(pem: string, spki: Buffer): boolean {
  return safely(() => createPublicKey(pem).export({ type: 'spki', format: 'der' }).equals(spki));
}
