/**
 * Reading the verifier's untrusted inputs: the receipt `signet sign` writes beside a
 * signature (the sign answer: format, signature, chain, log entry with its inclusion
 * proof and checkpoint) and the trust bundle (GET /v1/trust,
 * schemas/trust-bundle.schema.json). Only what verification uses is read, strictly;
 * unknown fields are ignored so newer services stay readable. Malformed input is a
 * refusal with a code, never a crash.
 *
 * Receipt fields the verifier reads besides the sign answer's (DESIGN.md "Fixed
 * fields"), when the service provides them:
 * - `log.leaf`: base64 of the signature entry's exact leaf bytes (needed for formats
 *   whose leaf cannot be recomputed from the signature, pgp and cms);
 * - `log.decision`: `{index, leaf, inclusionProof}`, the decision entry's leaf and its
 *   audit path in the same tree as the signature entry, for identity constraints and
 *   to authenticate the log time.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { z } from 'zod';
import { isDigestAlgorithm, type DigestAlgorithm } from '../signer/algorithms.js';
import { SIGNATURE_FORMATS, type SignatureFormat } from '../signer/formats.js';
import { KEY_STATES, type KeyState, type KeyVersionRecord } from '../store/store.js';
import { quoted, refuse } from './result.js';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const HEX = /^[0-9a-f]*$/;

/**
 * Canonical padded base64 (RFC 4648, section 4), or null. The unused low bits of the
 * last character must be zero (section 3.5): otherwise two texts decode to the same
 * bytes, and a changed release file would still verify.
 */
export function decodeBase64(text: string): Buffer | null {
  if (!BASE64.test(text) || text.length % 4 !== 0) return null;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : null;
}

/**
 * A canonical base64 field (decodeBase64), decoded once, here, to its bytes; `bytes`:
 * the exact decoded length required.
 */
export function base64Bytes(options: { readonly bytes?: number } = {}): z.ZodType<Buffer, string> {
  const expected = options.bytes;
  return z
    .string()
    .max(16 * 1024 * 1024)
    .transform((text, context) => {
      const bytes = decodeBase64(text);
      if (bytes !== null && (expected === undefined || bytes.length === expected)) return bytes;
      context.addIssue({ code: 'custom', message: expected === 32 ? 'a base64 SHA-256 hash' : 'canonical base64' });
      return z.NEVER;
    });
}

const base64 = base64Bytes();
const base64Hash = base64Bytes({ bytes: 32 });
const logIndex = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

const decisionSchema = z.object({
  index: logIndex,
  leaf: base64,
  inclusionProof: z.array(base64Hash).max(64),
});

const receiptLogSchema = z.object({
  index: logIndex,
  leafHash: base64Hash,
  treeSize: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  rootHash: base64Hash,
  inclusionProof: z.array(base64Hash).max(64),
  checkpoint: z.string().max(65_536),
  integratedTime: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  inclusionPromise: base64.nullable().optional(),
  decisionIndex: logIndex.nullable().optional(),
  leaf: base64.optional(),
  decision: decisionSchema.optional(),
});

const receiptSchema = z.object({
  format: z.enum(SIGNATURE_FORMATS),
  keyId: z.string().max(256).optional(),
  signature: base64.optional(),
  digest: z.object({ algorithm: z.string(), value: z.string().max(128).regex(HEX).optional() }).optional(),
  chain: z.array(z.string().max(65_536)).max(8).optional(),
  envelope: z.unknown().optional(),
  bundle: z.unknown().optional(),
  log: z.unknown().optional(),
});

export interface ReceiptDecision {
  readonly index: number;
  readonly leaf: Buffer;
  readonly inclusionProof: readonly Buffer[];
}

/** A signature's log entry and the proof of it, as the receipt (or a Sigstore bundle) states them. */
export interface LogEvidence {
  readonly index: number;
  readonly leafHash: Buffer;
  readonly treeSize: number;
  readonly rootHash: Buffer;
  readonly inclusionProof: readonly Buffer[];
  readonly checkpoint: string;
  readonly integratedTime: number;
  readonly inclusionPromise: Buffer | null;
  readonly decisionIndex: number | null;
  /** The exact leaf bytes, when known. */
  readonly leaf: Buffer | null;
  readonly decision: ReceiptDecision | null;
}

export interface Receipt {
  readonly format: SignatureFormat;
  readonly keyId: string | null;
  /** The answer's `signature` (base64 decoded): the signature the log entry records. */
  readonly signature: Buffer | null;
  readonly digestAlgorithm: DigestAlgorithm;
  /** The digest the receipt says was signed (hex), if it says. */
  readonly digestValue: string | null;
  readonly chain: readonly string[];
  readonly envelope: unknown;
  readonly bundle: unknown;
  /** The log entry; null when the receipt has none; a string when it has a malformed one. */
  readonly log: LogEvidence | null | string;
}

function problems(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => (issue.path.length > 0 ? issue.path.join('.') : '(top level)'))
    .join(', ');
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown;
  } catch {
    throw refuse('input-invalid', `${what.toUpperCase()}_INVALID`, `the ${what} is not JSON`);
  }
}

export function readLogEvidence(value: unknown): LogEvidence | string {
  const parsed = receiptLogSchema.safeParse(value);
  if (!parsed.success) return `the receipt's log entry is malformed (${problems(parsed.error)})`;
  const log = parsed.data;
  return {
    index: log.index,
    leafHash: log.leafHash,
    treeSize: log.treeSize,
    rootHash: log.rootHash,
    inclusionProof: log.inclusionProof,
    checkpoint: log.checkpoint,
    integratedTime: log.integratedTime,
    inclusionPromise: log.inclusionPromise ?? null,
    decisionIndex: log.decisionIndex ?? null,
    leaf: log.leaf ?? null,
    decision: log.decision === undefined ? null : { index: log.decision.index, leaf: log.decision.leaf, inclusionProof: log.decision.inclusionProof },
  };
}

export function readReceipt(bytes: Uint8Array): Receipt {
  const parsed = receiptSchema.safeParse(parseJson(bytes, 'receipt'));
  if (!parsed.success) throw refuse('input-invalid', 'RECEIPT_INVALID', `the receipt is not a Signet sign receipt (${problems(parsed.error)})`);
  const receipt = parsed.data;
  const algorithm = receipt.digest?.algorithm ?? 'sha256';
  if (!isDigestAlgorithm(algorithm)) throw refuse('input-invalid', 'RECEIPT_INVALID', `the receipt names an unknown digest algorithm ${quoted(algorithm)}`);
  return {
    format: receipt.format,
    keyId: receipt.keyId ?? null,
    signature: receipt.signature ?? null,
    digestAlgorithm: algorithm,
    digestValue: receipt.digest?.value ?? null,
    chain: receipt.chain ?? [],
    envelope: receipt.envelope,
    bundle: receipt.bundle,
    log: receipt.log === undefined ? null : readLogEvidence(receipt.log),
  };
}

// ---------------------------------------------------------------------------------
// Trust bundle

const time = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'an RFC 3339 time');

const bundleCertificateSchema = z.object({
  serialNumber: z.string(),
  certificatePem: z.string(),
  notBefore: time,
  notAfter: time,
  revocation: z.object({ revokedAt: time, reason: z.string() }).nullable(),
});

const bundleKeySchema = z.object({
  keyId: z.string(),
  name: z.string(),
  version: z.number().int(),
  algorithm: z.string(),
  state: z.enum(KEY_STATES),
  publicKeyPem: z.string(),
  createdAt: time,
  notBefore: time,
  notAfter: time.nullable(),
  compromisedAt: time.nullable(),
  certificatePem: z.string().nullable(),
  certificates: z.array(bundleCertificateSchema),
  /** Not in trust bundle v1: an armored OpenPGP key, read when a bundle carries it. */
  pgpPublicKey: z.string().optional(),
});

const trustBundleSchema = z.object({
  log: z.object({
    origin: z.string().regex(/^[A-Za-z0-9./-]{1,255}$/),
    logId: z.string().regex(/^[0-9a-f]{64}$/),
    publicKeyPem: z.string(),
  }),
  roots: z.array(z.unknown()),
  intermediates: z.array(z.unknown()),
  keys: z.array(bundleKeySchema),
  revocations: z.array(z.unknown()),
});

export type TrustBundleKey = z.infer<typeof bundleKeySchema>;

export interface TrustView {
  /** The parsed bundle as given, for verifyCodeSigningChain (which reads it itself). */
  readonly document: unknown;
  readonly log: { readonly origin: string; readonly logId: Buffer; readonly publicKeyPem: string };
  readonly keys: readonly TrustBundleKey[];
}

export function readTrustBundle(document: unknown): TrustView {
  const parsed = trustBundleSchema.safeParse(document);
  if (!parsed.success) throw refuse('input-invalid', 'TRUST_BUNDLE_INVALID', `the trust bundle is not a Signet trust bundle (${problems(parsed.error)})`);
  const bundle = parsed.data;
  let logId: Buffer;
  try {
    logId = createHash('sha256').update(createPublicKey(bundle.log.publicKeyPem).export({ type: 'spki', format: 'der' })).digest();
  } catch {
    throw refuse('input-invalid', 'TRUST_BUNDLE_INVALID', "the trust bundle's log public key cannot be read");
  }
  if (logId.toString('hex') !== bundle.log.logId) {
    throw refuse('input-invalid', 'TRUST_BUNDLE_INVALID', "the trust bundle's log id is not the SHA-256 of its log public key");
  }
  return { document, log: { origin: bundle.log.origin, logId, publicKeyPem: bundle.log.publicKeyPem }, keys: bundle.keys };
}

/**
 * The lifecycle record of a bundle key, for keyrotation/lifecycle.ts. `hsmKeyId` is not
 * published and not needed to judge a signature's time.
 */
export function lifecycleRecord(key: TrustBundleKey): KeyVersionRecord {
  return {
    keyId: key.keyId,
    name: key.name,
    version: key.version,
    algorithm: key.algorithm as KeyVersionRecord['algorithm'],
    state: key.state satisfies KeyState,
    hsmKeyId: '',
    publicKeyPem: key.publicKeyPem,
    createdAt: key.createdAt,
    notBefore: key.notBefore,
    notAfter: key.notAfter,
    compromisedAt: key.compromisedAt,
  };
}

/** DER SubjectPublicKeyInfo of a PEM key or certificate; null when unreadable. */
export function spkiOf(pem: string): Buffer | null {
  try {
    return createPublicKey(pem).export({ type: 'spki', format: 'der' });
  } catch {
    return null;
  }
}

/** The bundle key whose public key is this SPKI. */
export function bundleKeyWithSpki(trust: TrustView, spki: Buffer): TrustBundleKey | undefined {
  return trust.keys.find((key) => spkiOf(key.publicKeyPem)?.equals(spki) === true);
}
