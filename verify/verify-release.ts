/**
 * Offline verification of a release, the engine of `signet verify`. Pure: bytes and a
 * parsed trust bundle in, a result out; no file, no network, no clock but the one given.
 *
 * The checks, in order, each with its failure class (verify/result.ts):
 *
 *   1. every artifact is in the manifest, with its size and digests    4, 3
 *   2. the signature over the manifest, in the receipt's format         5
 *   3. the signing certificate chains to the trust bundle's roots,
 *      judged at the log's integrated time (ca/chain-verification.ts)   6 (7 if revoked or compromised)
 *   4. the key's state and validity window at the log time
 *      (keyrotation/lifecycle.ts: a verify-only key still verifies
 *      what it signed while active; nothing logged from its compromise) 7
 *   5. the log entry records this signature and is included in the
 *      checkpoint's tree; the receipt's decision entry too               8
 *   6. the checkpoint (and inclusion promise) is signed by the trust
 *      bundle's log key for its origin                                   9
 *   7. identity constraints against the logged decision                  10
 *
 * The first failure is the answer. Untrusted input never throws: it is a refusal.
 */
import { verifyCodeSigningChain, type ChainFailureCode } from '../ca/chain-verification.js';
import { signatureValidity, type SignatureValidity } from '../keyrotation/lifecycle.js';
import { ManifestError } from '../manifest/errors.js';
import { parseReleaseManifest, type ReleaseManifest } from '../manifest/schema.js';
import { checkArtifacts, type ArtifactCheckOptions, type ArtifactInput } from './artifacts.js';
import { checkIdentity, type IdentityConstraints } from './identity.js';
import { lifecycleRecord, readReceipt, readTrustBundle, type LogEvidence, type Receipt } from './inputs.js';
import { verifyLogEvidence } from './log-evidence.js';
import { failure, quoted, refuse, VerificationRefusal, type FailureClass, type VerifyResult } from './result.js';
import { verifySignature } from './signatures.js';
import { mergeEvidence, readSigstoreBundle, type SigstoreBundleView } from './sigstore-bundle.js';

export interface VerifyReleaseInput {
  /** The manifest file's exact bytes (what was signed). */
  readonly manifest: Uint8Array;
  /** The signature file's bytes, in the receipt's format. */
  readonly signature: Uint8Array;
  /** The receipt `signet sign` wrote beside the signature. */
  readonly receipt: Uint8Array;
  /** The trust bundle, parsed JSON (GET /v1/trust). */
  readonly trustBundle: unknown;
  readonly artifacts: readonly ArtifactInput[];
  readonly artifactMode: ArtifactCheckOptions['mode'];
  readonly identity?: IdentityConstraints;
  /** The verifier's clock; only OpenPGP's "not dated in the future" uses it. */
  readonly now?: Date;
}

const KEY_STATE_FAILURES: ReadonlySet<ChainFailureCode> = new Set<ChainFailureCode>(['CERT_REVOKED', 'KEY_COMPROMISED']);

function chainFailureClass(code: ChainFailureCode): FailureClass {
  if (code === 'BUNDLE_INVALID') return 'input-invalid';
  return KEY_STATE_FAILURES.has(code) ? 'key-not-valid' : 'untrusted-key';
}

const VALIDITY_CODES: Readonly<Record<Extract<SignatureValidity, { valid: false }>['reason'], string>> = {
  KEY_NEVER_ACTIVE: 'KEY_NEVER_ACTIVE',
  BEFORE_VALIDITY: 'KEY_NOT_YET_VALID',
  AFTER_VALIDITY: 'KEY_NO_LONGER_VALID',
  AFTER_COMPROMISE: 'KEY_COMPROMISED',
  INVALID_TIME: 'KEY_VALIDITY_UNKNOWN',
};

/**
 * verifyCodeSigningChain refuses malformed input with a code, but a certificate whose
 * DER parses while one of its extensions does not can still make @peculiar/x509 throw
 * when the extension is read: that is a malformed certificate too, never a crash.
 */
function verifyChain(input: Parameters<typeof verifyCodeSigningChain>[0]): ReturnType<typeof verifyCodeSigningChain> {
  try {
    return verifyCodeSigningChain(input);
  } catch {
    return { ok: false, code: 'CERT_MALFORMED', certificate: null, reason: 'a certificate of the chain has an extension that cannot be parsed' };
  }
}

function readManifest(bytes: Uint8Array): ReleaseManifest {
  try {
    return parseReleaseManifest(Buffer.from(bytes));
  } catch (error) {
    if (error instanceof ManifestError) {
      const first = error.problems[0];
      throw refuse('signature-invalid', 'MANIFEST_INVALID', `the manifest is not a valid release manifest${first === undefined ? '' : ` (${first})`}`);
    }
    throw error;
  }
}

function logEvidence(receipt: Receipt, sigstore: SigstoreBundleView | null): LogEvidence {
  if (typeof receipt.log === 'string') throw refuse('inclusion-proof-mismatch', 'RECEIPT_LOG_INVALID', receipt.log);
  if (sigstore !== null) return mergeEvidence(sigstore.evidence, receipt.log);
  if (receipt.log === null) throw refuse('inclusion-proof-mismatch', 'RECEIPT_LOG_MISSING', 'the receipt carries no log entry: nothing proves the signature was logged');
  return receipt.log;
}

async function verifyOrRefuse(input: VerifyReleaseInput): Promise<VerifyResult> {
  const trust = readTrustBundle(input.trustBundle);
  const receipt = readReceipt(input.receipt);
  const manifestBytes = Buffer.from(input.manifest);
  const manifest = readManifest(manifestBytes);

  // 1. Artifacts.
  const artifacts = checkArtifacts(manifest, input.artifacts, { mode: input.artifactMode });

  // 2. Signature (the log time is read first: it picks the certificate a receipt only names).
  const sigstore = receipt.format === 'sigstore-bundle' ? readSigstoreBundle(Buffer.from(input.signature), receipt.bundle) : null;
  const evidence = logEvidence(receipt, sigstore);
  if (sigstore !== null && !sigstore.logId.equals(trust.log.logId)) {
    throw refuse('checkpoint-invalid', 'LOG_ID_MISMATCH', "the Sigstore bundle's entry is from another log than the trust bundle's");
  }
  const at = new Date(evidence.integratedTime * 1000);
  const signed = await verifySignature({
    manifest: manifestBytes,
    signatureFile: Buffer.from(input.signature),
    receipt,
    trust,
    at,
    now: input.now ?? new Date(),
    sigstore,
  });

  // The receipt is the answer for this signature: one that names another proves nothing about it.
  if (receipt.signature !== null && !receipt.signature.equals(signed.logged.signature)) {
    throw refuse('signature-invalid', 'SIGNATURE_MISMATCH', 'the receipt is for another signature than the one given');
  }

  // 3. Chain, at the log time.
  const chain = verifyChain({ bundle: trust.document, leafPem: signed.certificatePem, intermediatesPem: signed.intermediatesPem, at });
  if (!chain.ok) throw refuse(chainFailureClass(chain.code), chain.code, chain.reason);
  const keyId = chain.keyId;
  const bundleKey = keyId === null ? undefined : trust.keys.find((k) => k.keyId === keyId);
  if (keyId === null || bundleKey === undefined) {
    throw refuse('untrusted-key', 'KEY_NOT_IN_TRUST_BUNDLE', 'the signing certificate chains to the trust bundle but its key is not one of the bundle\'s keys');
  }
  if (receipt.keyId !== null && receipt.keyId !== keyId) {
    throw refuse('untrusted-key', 'KEY_MISMATCH', `the receipt names key ${quoted(receipt.keyId)} but the signature is by ${keyId}`);
  }

  // 4. The key's state and validity window at the log time.
  const validity = signatureValidity(lifecycleRecord(bundleKey), evidence.integratedTime);
  if (!validity.valid) {
    const loggedAt = at.toISOString();
    const window = `${bundleKey.notBefore} – ${bundleKey.notAfter ?? 'open'}`;
    const reason =
      validity.reason === 'AFTER_COMPROMISE'
        ? `key ${keyId} was compromised at ${bundleKey.compromisedAt ?? '?'}, before the signature was logged at ${loggedAt}`
        : validity.reason === 'KEY_NEVER_ACTIVE'
          ? `key ${keyId} (${bundleKey.state}) was never active, so it cannot have made a valid signature`
          : `key ${keyId} (${bundleKey.state}, valid ${window}) was not valid when the signature was logged at ${loggedAt}`;
    throw refuse('key-not-valid', VALIDITY_CODES[validity.reason], reason);
  }

  // 5, 6. The log.
  const log = verifyLogEvidence({ evidence, trust, signed, manifest: manifestBytes, bundleKey, format: receipt.format }, keyId);

  // 7. Identity.
  checkIdentity(input.identity ?? {}, log.identity);

  const loggedAt = at.toISOString();
  return {
    ok: true,
    exitCode: 0,
    code: 'VERIFIED',
    reason: `${artifacts.length} artifact${artifacts.length === 1 ? '' : 's'} match the manifest, signed (${receipt.format}) by ${keyId} and logged at index ${evidence.index} on ${loggedAt}`,
    format: receipt.format,
    keyId,
    certificateSerialNumber: chain.leafSerialNumber,
    log: { index: evidence.index, treeSize: evidence.treeSize, integratedTime: evidence.integratedTime, loggedAt, timeSource: log.timeSource },
    identity: log.identity,
    artifacts,
    ...(signed.openPgpKeySource === undefined ? {} : { openPgpKeySource: signed.openPgpKeySource }),
    warnings: log.warnings,
  };
}

/**
 * Verifies a release. Never throws for untrusted input (files, receipt, trust bundle):
 * every problem is a VerificationFailure with its class, code and reason.
 */
export async function verifyRelease(input: VerifyReleaseInput): Promise<VerifyResult> {
  try {
    return await verifyOrRefuse(input);
  } catch (error) {
    if (error instanceof VerificationRefusal) return failure(error.failureClass, error.code, error.reason);
    throw error;
  }
}
