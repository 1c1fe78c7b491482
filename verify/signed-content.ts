/**
 * What a verified signature hands to the later checks: the certificate whose key made
 * it (for the chain and the key's state), and what its log entry must record (for the
 * log check). One shape for every format.
 */
import type { DigestAlgorithm } from '../signer/algorithms.js';
import type { OpenPgpKeySource } from './result.js';

/** The canonical JSON fields of a DSSE envelope as Signet logs it (formats/rekor-dsse.ts). */
export interface LoggedDsseEnvelope {
  readonly payload: string;
  readonly payloadType: string;
  readonly signatures: readonly { readonly keyid?: string; readonly sig: string }[];
}

export type LoggedSignature =
  /** Rekor hashedrekord 0.0.1: this signature over this digest (raw, Sigstore message signatures). */
  | { readonly kind: 'hashedrekord'; readonly signature: Buffer; readonly digest: { readonly algorithm: DigestAlgorithm; readonly value: Buffer } }
  /** Rekor dsse 0.0.1: this envelope with this one signature. */
  | { readonly kind: 'dsse'; readonly envelope: LoggedDsseEnvelope; readonly payload: Buffer; readonly signature: Buffer }
  /** Signet's entry for envelopes that do not fit hashedrekord (SIGSTORE-NOTES.md): the whole signature as delivered. */
  | {
      readonly kind: 'signet-envelope';
      readonly format: 'pgp' | 'cms';
      readonly signature: Buffer;
      /** cms: the DER SET OF signed attributes the signature covers. */
      readonly signedAttributes?: Buffer;
    };

export interface VerifiedSignature {
  /** The leaf certificate holding the key that verified the signature. */
  readonly certificatePem: string;
  /** Intermediates that came with the signature (receipt chain, CMS certificate set). */
  readonly intermediatesPem: readonly string[];
  /** DER SubjectPublicKeyInfo of the signing key. */
  readonly spki: Buffer;
  readonly logged: LoggedSignature;
  readonly openPgpKeySource?: OpenPgpKeySource;
}
