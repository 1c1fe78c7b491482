/**
 * Certificate handling shared by the envelope builders: accept PEM or DER, parse with
 * node:crypto, and check that a certificate holds the signing key. An envelope that
 * names the wrong certificate would verify nowhere, so the builders refuse it.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { FormatError } from './errors.js';

export type CertificateInput = Buffer | Uint8Array | string;

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Parses one certificate given as DER bytes or a PEM string. */
export function parseCertificate(input: CertificateInput, what = 'certificate'): X509Certificate {
  try {
    return new X509Certificate(typeof input === 'string' ? input : Buffer.from(input));
  } catch (error) {
    throw new FormatError('FORMAT_CERTIFICATE_INVALID', `the ${what} cannot be parsed`, { cause: error });
  }
}

/** Splits a PEM bundle into its certificates, in order. */
export function splitPemCertificates(pem: string): string[] {
  return pem.match(PEM_BLOCK) ?? [];
}

/** DER SubjectPublicKeyInfo of a PEM public key (or certificate's key). */
export function spkiDer(publicKey: string | X509Certificate): Buffer {
  try {
    const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey.publicKey;
    return key.export({ type: 'spki', format: 'der' });
  } catch (error) {
    throw new FormatError('FORMAT_INPUT_INVALID', 'the public key cannot be parsed', { cause: error });
  }
}

export function assertCertificateHoldsKey(certificate: X509Certificate, publicKeyPem: string): void {
  if (!spkiDer(certificate).equals(spkiDer(publicKeyPem))) {
    throw new FormatError('FORMAT_CERTIFICATE_INVALID', 'the signing certificate does not hold the signing key');
  }
}
