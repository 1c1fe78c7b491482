/**
 * Which key algorithms each envelope format can carry, and which hash the HSM uses to
 * sign for it. One table, so the service refuses an impossible combination with
 * FORMAT_KEY_UNSUPPORTED before it asks the HSM for anything.
 *
 * | format                          | ecdsa-p256 | ecdsa-p384 | ed25519            | rsa-pss-3072/4096 |
 * |---------------------------------|------------|------------|--------------------|-------------------|
 * | dsse (PAE signed by the HSM)    | SHA-256    | SHA-384    | PureEdDSA over PAE | SHA-256, PSS      |
 * | cms (signed attributes)         | content digest SHA-256/384/512 | same    | no (see below)     | same, RFC 4056 PSS parameters |
 * | sigstore-bundle, message sig.   | SHA-256 digest only | no | no           | no                |
 * | sigstore-bundle, DSSE           | SHA-256    | no         | no                 | no                |
 *
 * The Sigstore rows are what @sigstore/verify 3.x accepts with a certificate
 * (SIGSTORE-NOTES.md: message signatures are verified as ECDSA with SHA-256 over the
 * artifact; DSSE is verified with SHA-256). The CMS row is what `openssl cms -verify`
 * (OpenSSL 3.0) accepts, as test/formats/cms.test.ts shows for each key algorithm.
 * Ed25519 SignedData (RFC 8419) is refused: OpenSSL 3.0 can neither make nor verify it
 * (its CMS code hands a digest to EdDSA: "eddsa_digest_signverify_init: invalid
 * digest"), so the most common external verifier would reject every such signature.
 */
import type { DigestAlgorithm, KeyAlgorithm } from '../signer/algorithms.js';
import { FormatError } from './errors.js';

export type EnvelopeFormat = 'dsse' | 'cms' | 'sigstore-bundle';
export type SigstoreContentKind = 'message-signature' | 'dsse';

export interface EnvelopeRequest {
  readonly format: EnvelopeFormat;
  readonly keyAlgorithm: KeyAlgorithm;
  /** The digest algorithm of the request (content digest for CMS and message signatures). */
  readonly digestAlgorithm: DigestAlgorithm;
  /** For sigstore-bundle: what the bundle holds. */
  readonly sigstoreContent?: SigstoreContentKind;
}

export type EnvelopeSupport =
  | {
      readonly ok: true;
      /**
       * The `hash` to pass to hsm.signMessage for the bytes to be signed (PAE or CMS
       * signed attributes); undefined for Ed25519, which signs the message itself.
       */
      readonly signingHash: DigestAlgorithm | undefined;
    }
  | { readonly ok: false; readonly reason: string };

/** Hash used with each key for DSSE's PAE (the DSSE spec leaves it to the key type). */
export function dsseSigningHash(algorithm: KeyAlgorithm): DigestAlgorithm | undefined {
  switch (algorithm) {
    case 'ecdsa-p256':
      return 'sha256';
    case 'ecdsa-p384':
      return 'sha384';
    case 'ed25519':
      return undefined;
    case 'rsa-pss-3072':
    case 'rsa-pss-4096':
      return 'sha256';
  }
}

export function envelopeSupport(request: EnvelopeRequest): EnvelopeSupport {
  const { keyAlgorithm, digestAlgorithm } = request;
  switch (request.format) {
    case 'dsse':
      return { ok: true, signingHash: dsseSigningHash(keyAlgorithm) };
    case 'cms':
      if (keyAlgorithm === 'ed25519') {
        return { ok: false, reason: 'CMS signatures are not made with Ed25519 keys: OpenSSL 3.0 cannot verify Ed25519 SignedData' };
      }
      return { ok: true, signingHash: digestAlgorithm };
    case 'sigstore-bundle': {
      if (keyAlgorithm !== 'ecdsa-p256') {
        return { ok: false, reason: `Sigstore bundles are made with ecdsa-p256 keys only; this key is ${keyAlgorithm}` };
      }
      const content = request.sigstoreContent ?? 'message-signature';
      if (content === 'message-signature' && digestAlgorithm !== 'sha256') {
        return { ok: false, reason: 'a Sigstore message signature is verified over a SHA-256 digest; ask for sha256' };
      }
      return { ok: true, signingHash: 'sha256' };
    }
  }
}

/** envelopeSupport, throwing FORMAT_KEY_UNSUPPORTED with the reason. */
export function assertEnvelopeSupport(request: EnvelopeRequest): DigestAlgorithm | undefined {
  const support = envelopeSupport(request);
  if (!support.ok) throw new FormatError('FORMAT_KEY_UNSUPPORTED', support.reason);
  return support.signingHash;
}
