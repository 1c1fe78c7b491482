/**
 * `sigstore-bundle` signatures: a Sigstore bundle v0.3 (protobuf-specs JSON mapping,
 * dev.sigstore.bundle.v1.Bundle) as formats/sigstore-bundle.ts builds it, read without
 * any network: its content (a message signature over the manifest's SHA-256, or a DSSE
 * envelope of the manifest), its signing certificate and its one transparency log
 * entry. The entry becomes the log evidence that the common log check verifies; when
 * the receipt states the entry too, both must say the same.
 */
import { z } from 'zod';
import { SIGSTORE_BUNDLE_V03_MEDIA_TYPE } from '../formats/sigstore-bundle.js';
import { leafHash } from '../log/merkle.js';
import { base64Bytes, type LogEvidence } from './inputs.js';
import { refuse } from './result.js';
import { pemOfDer } from './signing-key.js';

/** Canonical base64 only: the bundle's fields bind the release bit for bit. */
const base64 = base64Bytes();
const int64 = z.string().regex(/^(0|[1-9][0-9]{0,15})$/).transform(Number).pipe(z.number().int().max(Number.MAX_SAFE_INTEGER));

const tlogEntrySchema = z.object({
  logIndex: int64,
  logId: z.object({ keyId: base64 }),
  kindVersion: z.object({ kind: z.string(), version: z.string() }),
  integratedTime: int64,
  inclusionPromise: z.object({ signedEntryTimestamp: base64 }).optional(),
  inclusionProof: z.object({
    logIndex: int64,
    rootHash: base64,
    treeSize: int64,
    hashes: z.array(base64).max(64),
    checkpoint: z.object({ envelope: z.string().max(65_536) }),
  }),
  canonicalizedBody: base64,
});

const bundleSchema = z.object({
  mediaType: z.literal(SIGSTORE_BUNDLE_V03_MEDIA_TYPE),
  verificationMaterial: z.object({
    certificate: z.object({ rawBytes: base64 }),
    tlogEntries: z.array(tlogEntrySchema).min(1).max(16),
  }),
  messageSignature: z
    .object({ messageDigest: z.object({ algorithm: z.string(), digest: base64 }), signature: base64 })
    .optional(),
  dsseEnvelope: z.unknown().optional(),
});

export type SigstoreContent =
  | { readonly kind: 'message-signature'; readonly sha256: Buffer; readonly signature: Buffer }
  | { readonly kind: 'dsse'; readonly envelope: unknown };

export interface SigstoreBundleView {
  readonly certificatePem: string;
  readonly content: SigstoreContent;
  readonly evidence: LogEvidence;
  /** The log the entry names (SHA-256 of its key's SPKI). */
  readonly logId: Buffer;
  /** Whether the bundle came from the signature file (else from the receipt). */
  readonly fromFile: boolean;
}

function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The bundle from the signature file, else from the receipt's `bundle` (then the
 * signature file must be the bundle's bare signature: see verify/signatures.ts).
 */
export function readSigstoreBundle(signatureFile: Buffer, fromReceipt: unknown): SigstoreBundleView {
  const fromFile = parseJson(signatureFile);
  const parsed = bundleSchema.safeParse(fromFile ?? fromReceipt);
  if (!parsed.success) {
    throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', `the signature is not a Sigstore bundle v0.3 (${parsed.error.issues[0]?.path.join('.') ?? 'document'})`);
  }
  const bundle = parsed.data;
  const [entry, ...others] = bundle.verificationMaterial.tlogEntries;
  if (entry === undefined || others.length > 0) throw refuse('inclusion-proof-mismatch', 'RECEIPT_LOG_INVALID', 'the Sigstore bundle must hold exactly one log entry');
  const hasMessage = bundle.messageSignature !== undefined;
  const hasEnvelope = bundle.dsseEnvelope !== undefined;
  if (hasMessage === hasEnvelope) throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'the Sigstore bundle must hold either a message signature or a DSSE envelope');

  let content: SigstoreContent;
  if (bundle.messageSignature !== undefined) {
    if (bundle.messageSignature.messageDigest.algorithm !== 'SHA2_256') {
      throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'the Sigstore message signature is not over a SHA-256 digest');
    }
    content = { kind: 'message-signature', sha256: bundle.messageSignature.messageDigest.digest, signature: bundle.messageSignature.signature };
  } else {
    content = { kind: 'dsse', envelope: bundle.dsseEnvelope };
  }

  const proof = entry.inclusionProof;
  if (proof.logIndex !== entry.logIndex) throw refuse('inclusion-proof-mismatch', 'RECEIPT_LOG_INVALID', 'the Sigstore bundle proves another index than its entry');
  const leaf = entry.canonicalizedBody;
  let body: unknown;
  try {
    body = JSON.parse(leaf.toString('utf8'));
  } catch {
    throw refuse('inclusion-proof-mismatch', 'LOG_ENTRY_MISMATCH', "the Sigstore bundle's entry body is not JSON");
  }
  const kind = (body as { kind?: unknown } | null)?.kind;
  const apiVersion = (body as { apiVersion?: unknown } | null)?.apiVersion;
  if (kind !== entry.kindVersion.kind || apiVersion !== entry.kindVersion.version) {
    throw refuse('inclusion-proof-mismatch', 'LOG_ENTRY_MISMATCH', "the Sigstore bundle's kindVersion is not its entry body's kind and version");
  }
  const rootHash = proof.rootHash;
  const hashes = proof.hashes;
  if (rootHash.length !== 32 || hashes.some((h) => h.length !== 32)) throw refuse('inclusion-proof-mismatch', 'RECEIPT_LOG_INVALID', "the Sigstore bundle's proof hashes are not SHA-256 hashes");
  return {
    certificatePem: pemOfDer(bundle.verificationMaterial.certificate.rawBytes),
    content,
    logId: entry.logId.keyId,
    fromFile: fromFile !== undefined,
    evidence: {
      index: entry.logIndex,
      leafHash: leafHash(leaf),
      treeSize: proof.treeSize,
      rootHash,
      inclusionProof: hashes,
      checkpoint: proof.checkpoint.envelope,
      integratedTime: entry.integratedTime,
      inclusionPromise: entry.inclusionPromise === undefined ? null : entry.inclusionPromise.signedEntryTimestamp,
      decisionIndex: null,
      leaf,
      decision: null,
    },
  };
}

/**
 * The bundle's entry with what only the receipt has (the decision entry). When the
 * receipt states the entry too, every field both carry must agree: a receipt and a
 * bundle that tell two stories prove neither.
 */
export function mergeEvidence(fromBundle: LogEvidence, fromReceipt: LogEvidence | null): LogEvidence {
  if (fromReceipt === null) return fromBundle;
  const same =
    fromReceipt.index === fromBundle.index &&
    fromReceipt.treeSize === fromBundle.treeSize &&
    fromReceipt.integratedTime === fromBundle.integratedTime &&
    fromReceipt.rootHash.equals(fromBundle.rootHash) &&
    fromReceipt.leafHash.equals(fromBundle.leafHash) &&
    fromReceipt.checkpoint === fromBundle.checkpoint &&
    fromReceipt.inclusionProof.length === fromBundle.inclusionProof.length &&
    fromReceipt.inclusionProof.every((h, i) => fromBundle.inclusionProof[i]?.equals(h) === true) &&
    (fromReceipt.leaf === null || fromReceipt.leaf.equals(fromBundle.leaf ?? Buffer.alloc(0))) &&
    // A promise in one and not the other is two stories too (a bundle stripped of it, say).
    (fromReceipt.inclusionPromise === null
      ? fromBundle.inclusionPromise === null
      : fromBundle.inclusionPromise !== null && fromReceipt.inclusionPromise.equals(fromBundle.inclusionPromise));
  if (!same) throw refuse('inclusion-proof-mismatch', 'RECEIPT_BUNDLE_MISMATCH', "the receipt's log entry is not the Sigstore bundle's");
  return { ...fromBundle, decisionIndex: fromReceipt.decisionIndex, decision: fromReceipt.decision };
}
