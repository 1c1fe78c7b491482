/**
 * Sigstore bundles v0.3 and trusted root documents, so that sigstore clients
 * (@sigstore/verify with `ctlogThreshold: 0`, cosign, sigstore-go) verify Signet's
 * signatures offline against Signet's own CA and transparency log. JSON follows the
 * protobuf-specs JSON mapping: camelCase names, bytes in base64, int64 as decimal
 * strings (dev.sigstore.bundle.v1.Bundle, dev.sigstore.rekor.v1.TransparencyLogEntry,
 * dev.sigstore.trustroot.v1.TrustedRoot).
 *
 * Every constraint in SIGSTORE-NOTES.md is checked here rather than left for a verifier
 * to trip over: the entry's canonicalized body is the log leaf, its kind/version match
 * it, it records exactly this signature and digest, the receipt's leaf hash is the
 * leaf's, the checkpoint is the one the proof is against, an inclusion promise is
 * present (no TSA: the promise gives the verified time), keys are P-256.
 *
 * Pure except for certificate parsing (node:crypto).
 */
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { logIdOf } from '../log/checkpoint.js';
import type { LogReceipt } from '../log/transparency-log.js';
import type { KeyAlgorithm } from '../signer/algorithms.js';
import { assertCertificateHoldsKey, parseCertificate, type CertificateInput } from './certificates.js';
import type { DsseEnvelope } from './dsse.js';
import { FormatError } from './errors.js';
import { assertEnvelopeSupport } from './support.js';

export const SIGSTORE_BUNDLE_V03_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const SIGSTORE_TRUSTED_ROOT_MEDIA_TYPE = 'application/vnd.dev.sigstore.trustedroot+json;version=0.2';

/** dev.sigstore.rekor.v1.TransparencyLogEntry, JSON form. */
export interface SigstoreTlogEntry {
  readonly logIndex: string;
  readonly logId: { readonly keyId: string };
  readonly kindVersion: { readonly kind: string; readonly version: string };
  readonly integratedTime: string;
  readonly inclusionPromise: { readonly signedEntryTimestamp: string };
  readonly inclusionProof: {
    readonly logIndex: string;
    readonly rootHash: string;
    readonly treeSize: string;
    readonly hashes: readonly string[];
    readonly checkpoint: { readonly envelope: string };
  };
  readonly canonicalizedBody: string;
}

export interface SigstoreBundle {
  readonly mediaType: typeof SIGSTORE_BUNDLE_V03_MEDIA_TYPE;
  readonly verificationMaterial: {
    readonly certificate: { readonly rawBytes: string };
    readonly tlogEntries: readonly SigstoreTlogEntry[];
  };
  readonly messageSignature?: {
    readonly messageDigest: { readonly algorithm: 'SHA2_256'; readonly digest: string };
    readonly signature: string;
  };
  readonly dsseEnvelope?: DsseEnvelope;
}

export type SigstoreBundleContent =
  /** A signature over an artifact's SHA-256 digest (the `raw` signature, logged as hashedrekord). */
  | { readonly kind: 'message-signature'; readonly sha256: Buffer; readonly signature: Buffer }
  /** A DSSE envelope with one signature (logged as dsse). */
  | { readonly kind: 'dsse'; readonly envelope: DsseEnvelope };

export interface SigstoreBundleInput {
  readonly keyAlgorithm: KeyAlgorithm;
  /** The signing key (PEM); the certificate must hold it. */
  readonly publicKeyPem: string;
  /** The signing (leaf) certificate. The chain belongs in the trusted root, not here. */
  readonly certificate: CertificateInput;
  readonly content: SigstoreBundleContent;
  /** The signature's log entry: its receipt (with the inclusion promise), its exact leaf bytes, and the log id. */
  readonly log: { readonly receipt: LogReceipt; readonly leaf: Buffer; readonly logId: Buffer };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function field(record: unknown, ...path: string[]): unknown {
  let current: unknown = record;
  for (const name of path) current = isRecord(current) ? current[name] : undefined;
  return current;
}

function mismatch(message: string): FormatError {
  return new FormatError('FORMAT_RECEIPT_MISMATCH', message);
}

/** The leaf is Signet's own canonical bytes, but is re-read defensively: it decides what the bundle claims. */
function readBody(leaf: Buffer): { kind: string; apiVersion: string; body: Record<string, unknown> } {
  let body: unknown;
  try {
    body = JSON.parse(leaf.toString('utf8'));
  } catch {
    throw mismatch('the log leaf is not a JSON entry body');
  }
  const kind = field(body, 'kind');
  const apiVersion = field(body, 'apiVersion');
  if (!isRecord(body) || typeof kind !== 'string' || typeof apiVersion !== 'string') throw mismatch('the log leaf has no kind and apiVersion');
  return { kind, apiVersion, body };
}

function checkBodyMatchesContent(body: Record<string, unknown>, kind: string, apiVersion: string, content: SigstoreBundleContent): void {
  if (content.kind === 'message-signature') {
    if (kind !== 'hashedrekord' || apiVersion !== '0.0.1') throw mismatch('a message signature must be logged as hashedrekord 0.0.1');
    if (field(body, 'spec', 'signature', 'content') !== content.signature.toString('base64')) throw mismatch('the log entry records another signature');
    if (field(body, 'spec', 'data', 'hash', 'algorithm') !== 'sha256' || field(body, 'spec', 'data', 'hash', 'value') !== content.sha256.toString('hex')) {
      throw mismatch('the log entry records another digest');
    }
    return;
  }
  if (kind !== 'dsse' || apiVersion !== '0.0.1') throw mismatch('a DSSE envelope must be logged as dsse 0.0.1');
  const signatures = field(body, 'spec', 'signatures');
  const [only] = content.envelope.signatures;
  if (!Array.isArray(signatures) || signatures.length !== 1 || only === undefined || field(signatures[0], 'signature') !== only.sig) {
    throw mismatch('the log entry records another signature');
  }
  const payloadHash = createHash('sha256').update(Buffer.from(content.envelope.payload, 'base64')).digest('hex');
  if (field(body, 'spec', 'payloadHash', 'algorithm') !== 'sha256' || field(body, 'spec', 'payloadHash', 'value') !== payloadHash) {
    throw mismatch('the log entry records another payload');
  }
}

/** The checkpoint's first lines are origin, size, root (C2SP tlog-checkpoint): they must be the receipt's. */
function checkCheckpoint(receipt: LogReceipt): void {
  const [, size, root] = receipt.checkpoint.split('\n');
  if (size !== String(receipt.treeSize) || root !== receipt.rootHash) throw mismatch('the checkpoint is not the one the inclusion proof is against');
}

function base64Hash(value: string, what: string): void {
  if (Buffer.from(value, 'base64').length !== 32) throw mismatch(`${what} is not a base64 SHA-256 hash`);
}

export function buildSigstoreBundle(input: SigstoreBundleInput): SigstoreBundle {
  const { content, log } = input;
  const { receipt } = log;
  assertEnvelopeSupport({
    format: 'sigstore-bundle',
    keyAlgorithm: input.keyAlgorithm,
    digestAlgorithm: 'sha256',
    sigstoreContent: content.kind,
  });
  const certificate = parseCertificate(input.certificate, 'signing certificate');
  assertCertificateHoldsKey(certificate, input.publicKeyPem);

  if (content.kind === 'message-signature') {
    if (content.sha256.length !== 32) throw new FormatError('FORMAT_INPUT_INVALID', 'a message signature bundle carries a SHA-256 digest');
    if (content.signature.length === 0) throw new FormatError('FORMAT_INPUT_INVALID', 'the signature is empty');
  } else if (content.envelope.signatures.length !== 1 || content.envelope.payload === '') {
    throw new FormatError('FORMAT_INPUT_INVALID', 'a bundle holds a DSSE envelope with exactly one signature and a payload');
  }

  // The receipt must be this leaf's, with everything a v0.3 bundle entry needs.
  const leafHash = createHash('sha256').update(Buffer.from([0])).update(log.leaf).digest();
  if (receipt.leafHash !== leafHash.toString('base64')) throw mismatch('the receipt is for another log entry');
  if (receipt.inclusionPromise === null) throw mismatch('the receipt has no inclusion promise (the log makes one for Sigstore bundles)');
  if (!Number.isSafeInteger(receipt.integratedTime) || receipt.integratedTime <= 0) throw mismatch('the receipt has no integrated time');
  if (!Number.isSafeInteger(receipt.index) || receipt.index < 0 || receipt.index >= receipt.treeSize) throw mismatch('the entry index is outside the proven tree');
  if (log.logId.length !== 32) throw new FormatError('FORMAT_INPUT_INVALID', 'a log id is a SHA-256 hash');
  base64Hash(receipt.rootHash, 'the root hash');
  receipt.inclusionProof.forEach((hash, i) => { base64Hash(hash, `inclusion proof hash ${i}`); });
  checkCheckpoint(receipt);
  const { kind, apiVersion, body } = readBody(log.leaf);
  checkBodyMatchesContent(body, kind, apiVersion, content);

  const tlogEntry: SigstoreTlogEntry = {
    logIndex: String(receipt.index),
    logId: { keyId: log.logId.toString('base64') },
    kindVersion: { kind, version: apiVersion },
    integratedTime: String(receipt.integratedTime),
    inclusionPromise: { signedEntryTimestamp: receipt.inclusionPromise },
    inclusionProof: {
      logIndex: String(receipt.index),
      rootHash: receipt.rootHash,
      treeSize: String(receipt.treeSize),
      hashes: [...receipt.inclusionProof],
      checkpoint: { envelope: receipt.checkpoint },
    },
    canonicalizedBody: log.leaf.toString('base64'),
  };
  const verificationMaterial = { certificate: { rawBytes: certificate.raw.toString('base64') }, tlogEntries: [tlogEntry] };
  if (content.kind === 'message-signature') {
    return {
      mediaType: SIGSTORE_BUNDLE_V03_MEDIA_TYPE,
      verificationMaterial,
      messageSignature: { messageDigest: { algorithm: 'SHA2_256', digest: content.sha256.toString('base64') }, signature: content.signature.toString('base64') },
    };
  }
  const envelope = content.envelope;
  return {
    mediaType: SIGSTORE_BUNDLE_V03_MEDIA_TYPE,
    verificationMaterial,
    dsseEnvelope: { payload: envelope.payload, payloadType: envelope.payloadType, signatures: envelope.signatures.map((s) => ({ sig: s.sig, keyid: s.keyid })) },
  };
}

// ---------------------------------------------------------------------------------
// Trusted root

/** dev.sigstore.common.v1.TimeRange, RFC 3339 strings. */
export interface SigstoreTimeRange {
  readonly start: string;
  readonly end?: string;
}

export interface SigstoreTrustedRoot {
  readonly mediaType: typeof SIGSTORE_TRUSTED_ROOT_MEDIA_TYPE;
  readonly tlogs: readonly {
    readonly baseUrl: string;
    readonly hashAlgorithm: 'SHA2_256';
    readonly publicKey: { readonly rawBytes: string; readonly keyDetails: 'PKIX_ECDSA_P256_SHA_256'; readonly validFor: SigstoreTimeRange };
    readonly logId: { readonly keyId: string };
  }[];
  readonly certificateAuthorities: readonly {
    readonly subject: { readonly organization?: string; readonly commonName?: string };
    readonly uri: string;
    readonly certChain: { readonly certificates: readonly { readonly rawBytes: string }[] };
    readonly validFor: SigstoreTimeRange;
  }[];
  readonly ctlogs: readonly never[];
  readonly timestampAuthorities: readonly never[];
}

export interface TrustedCertificateAuthority {
  /** The issuing CA first, then each issuer up to the self-signed root (PEM or DER each). */
  readonly chain: readonly CertificateInput[];
  /** Where the CA is described (informational for verifiers). */
  readonly uri: string;
  /** When it started issuing; defaults to the latest notBefore in the chain (when all of it is valid). */
  readonly validFrom?: Date;
  /** Set once it stops issuing (a retired intermediate); verifiers refuse later signatures. */
  readonly validUntil?: Date;
}

export interface TrustedLog {
  /** The log's origin (checkpoint signer name), e.g. signet.example.com/log. */
  readonly origin: string;
  /** https URL of the log; defaults to https://<origin>. Must contain the origin (sigstore-js matches the checkpoint signer name in it). */
  readonly baseUrl?: string;
  /** The log's ECDSA P-256 public key (PEM). */
  readonly publicKeyPem: string;
  /** When the key started signing; integratedTime of every entry must fall after it. */
  readonly validFrom: Date;
  readonly validUntil?: Date;
}

export interface TrustedRootInput {
  readonly certificateAuthorities: readonly TrustedCertificateAuthority[];
  readonly logs: readonly TrustedLog[];
}

function timeRange(start: Date, end: Date | undefined, what: string): SigstoreTimeRange {
  if (Number.isNaN(start.getTime()) || (end !== undefined && (Number.isNaN(end.getTime()) || end <= start))) {
    throw new FormatError('FORMAT_INPUT_INVALID', `the validity window of ${what} is not a valid range`);
  }
  return end === undefined ? { start: start.toISOString() } : { start: start.toISOString(), end: end.toISOString() };
}

/** Reads one RDN value (O, CN) from node's multi-line subject text. */
function subjectValue(certificate: X509Certificate, name: string): string | undefined {
  const line = certificate.subject.split('\n').find((l) => l.startsWith(`${name}=`));
  return line?.slice(name.length + 1);
}

/**
 * Checks that `chain` is one CA path: each certificate is a CA, is issued and signed
 * by the next, and the last is self-signed. A trusted root with a broken chain would
 * make every bundle fail, far from the cause.
 */
function checkChain(chain: readonly X509Certificate[], index: number): void {
  chain.forEach((certificate, position) => {
    const what = `certificate ${position + 1} of CA ${index + 1}`;
    if (!certificate.ca) throw new FormatError('FORMAT_CERTIFICATE_INVALID', `${what} is not a CA certificate`);
    const issuer = chain[position + 1] ?? certificate;
    if (!certificate.checkIssued(issuer) || !certificate.verify(issuer.publicKey)) {
      throw new FormatError(
        'FORMAT_CERTIFICATE_INVALID',
        position + 1 < chain.length ? `${what} is not issued by the certificate after it` : `${what} (the last) is not a self-signed root`,
      );
    }
  });
}

export function buildSigstoreTrustedRoot(input: TrustedRootInput): SigstoreTrustedRoot {
  if (input.logs.length === 0) throw new FormatError('FORMAT_INPUT_INVALID', 'a trusted root needs the transparency log');
  if (input.certificateAuthorities.length === 0) throw new FormatError('FORMAT_INPUT_INVALID', 'a trusted root needs a certificate authority');

  const tlogs = input.logs.map((log, i) => {
    const baseUrl = log.baseUrl ?? `https://${log.origin}`;
    if (!/^https:\/\//.test(baseUrl) || !baseUrl.includes(log.origin)) {
      throw new FormatError('FORMAT_INPUT_INVALID', `log ${i + 1}: the base URL must be https and contain the origin "${log.origin}"`);
    }
    let key;
    try {
      key = createPublicKey(log.publicKeyPem);
    } catch (error) {
      throw new FormatError('FORMAT_INPUT_INVALID', `log ${i + 1}: the public key cannot be parsed`, { cause: error });
    }
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new FormatError('FORMAT_KEY_UNSUPPORTED', `log ${i + 1}: the log key must be ECDSA P-256`);
    }
    return {
      baseUrl,
      hashAlgorithm: 'SHA2_256' as const,
      publicKey: {
        rawBytes: key.export({ type: 'spki', format: 'der' }).toString('base64'),
        keyDetails: 'PKIX_ECDSA_P256_SHA_256' as const,
        validFor: timeRange(log.validFrom, log.validUntil, `log ${i + 1}`),
      },
      logId: { keyId: logIdOf(log.publicKeyPem).toString('base64') },
    };
  });

  const certificateAuthorities = input.certificateAuthorities.map((authority, i) => {
    const chain = authority.chain.map((c, position) => parseCertificate(c, `certificate ${position + 1} of CA ${i + 1}`));
    checkChain(chain, i);
    const root = chain[chain.length - 1];
    if (root === undefined) throw new FormatError('FORMAT_INPUT_INVALID', `CA ${i + 1} has no certificates`);
    const latestStart = new Date(Math.max(...chain.map((c) => new Date(c.validFrom).getTime())));
    const organization = subjectValue(root, 'O');
    const commonName = subjectValue(root, 'CN');
    return {
      subject: { ...(organization === undefined ? {} : { organization }), ...(commonName === undefined ? {} : { commonName }) },
      uri: authority.uri,
      certChain: { certificates: chain.map((c) => ({ rawBytes: c.raw.toString('base64') })) },
      validFor: timeRange(authority.validFrom ?? latestStart, authority.validUntil, `CA ${i + 1}`),
    };
  });

  return { mediaType: SIGSTORE_TRUSTED_ROOT_MEDIA_TYPE, tlogs, certificateAuthorities, ctlogs: [], timestampAuthorities: [] };
}
