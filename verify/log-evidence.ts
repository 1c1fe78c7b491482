/**
 * The transparency log's evidence for a signature, checked offline against the trust
 * bundle's log key:
 *
 * 1. the signature entry's leaf records this signature: the leaf the receipt carries
 *    (`log.leaf`, or a Sigstore bundle's canonicalized body) hashes to the receipt's
 *    leaf hash, or, for hashedrekord and dsse entries, the leaf is recomputed from the
 *    signature, the manifest and the key; its kind must say what was signed:
 *    - `hashedrekord` 0.0.1: this signature over this digest, by this key;
 *    - `dsse` 0.0.1 (formats/rekor-dsse.ts): this envelope, its one signature, by this key;
 *    - Signet's `EnvelopeSignature` (log/entries.ts; pgp, cms: SIGSTORE-NOTES.md, they
 *      do not fit hashedrekord): this format, this whole signature, the manifest's
 *      digest, this key, and for cms the signed attributes the signature covers;
 * 2. the leaf hash is included, by its audit path, in the tree the checkpoint names
 *    (RFC 9162 §2.1.3.2), size and root taken together from the signed note;
 * 3. the checkpoint is a C2SP signed note by the trust bundle's log key for its origin;
 * 4. an inclusion promise, when there is one, is the log key's signature over
 *    {body, integratedTime, logID, logIndex} (SIGSTORE-NOTES.md "Time");
 * 5. the decision entry, when the receipt carries it, is in the same tree, before the
 *    signature, an allow for this key, digest and format, made in the second the
 *    receipt gives as the log time; its identity is returned for the constraints.
 *
 * The log time is only as good as what signs it: the decision entry (in the log) or
 * the inclusion promise; when neither is there, a warning says so.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import { canonicalJson } from '../log/canonical-json.js';
import { verifyCheckpoint } from '../log/checkpoint.js';
import { ENVELOPE_SIGNATURE_API_VERSION, ENVELOPE_SIGNATURE_BODY_KIND, hashedRekordLeaf } from '../log/entries.js';
import { leafHash as merkleLeafHash, verifyInclusion } from '../log/merkle.js';
import { dsseRekordLeaf } from '../formats/rekor-dsse.js';
import { isDigestAlgorithm } from '../signer/algorithms.js';
import { decodeBase64, type LogEvidence, type TrustBundleKey, type TrustView } from './inputs.js';
import { quoted, refuse, type LoggedIdentity, type LogTimeSource } from './result.js';
import type { LoggedSignature, VerifiedSignature } from './signed-content.js';
import { samePublicKey } from './signing-key.js';

export interface LogCheckInput {
  readonly evidence: LogEvidence;
  readonly trust: TrustView;
  readonly signed: VerifiedSignature;
  readonly manifest: Buffer;
  /** The trust bundle's entry of the signing key (its PEM is what Signet logs). */
  readonly bundleKey: TrustBundleKey;
  readonly format: string;
}

export interface LogCheck {
  readonly timeSource: LogTimeSource;
  readonly identity: LoggedIdentity | null;
  readonly warnings: readonly string[];
}

type Json = Record<string, unknown>;

const isRecord = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

function field(value: unknown, ...path: string[]): unknown {
  let current = value;
  for (const name of path) current = isRecord(current) ? current[name] : undefined;
  return current;
}

const entryMismatch = (detail: string) => refuse('inclusion-proof-mismatch', 'LOG_ENTRY_MISMATCH', `the log entry does not record this signature: ${detail}`);

function base64Field(value: unknown): Buffer | null {
  return typeof value === 'string' ? decodeBase64(value) : null;
}

/** A logged public key or certificate (base64 of its PEM) holds the signing key. */
function loggedKeyMatches(content: unknown, spki: Buffer): boolean {
  const pem = base64Field(content);
  return pem !== null && samePublicKey(pem.toString('utf8'), spki);
}

function sha256Hex(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The logged digest (`{algorithm, value}`) is the manifest's under the algorithm it names. */
function isManifestDigest(hash: unknown, manifest: Buffer): boolean {
  const algorithm = field(hash, 'algorithm');
  const value = field(hash, 'value');
  return typeof algorithm === 'string' && isDigestAlgorithm(algorithm) && value === createHash(algorithm).update(manifest).digest('hex');
}

function checkLeafRecords(leaf: Buffer, logged: LoggedSignature, spki: Buffer, manifest: Buffer, format: string): void {
  let body: unknown;
  try {
    body = JSON.parse(leaf.toString('utf8'));
  } catch {
    throw entryMismatch('its leaf is not a JSON entry body');
  }
  const kind = `${String(field(body, 'apiVersion'))}/${String(field(body, 'kind'))}`;
  const spec = field(body, 'spec');
  switch (logged.kind) {
    case 'hashedrekord': {
      if (kind !== '0.0.1/hashedrekord') throw entryMismatch(`it is a ${quoted(kind)} entry, not hashedrekord 0.0.1`);
      if (field(spec, 'data', 'hash', 'algorithm') !== logged.digest.algorithm || field(spec, 'data', 'hash', 'value') !== logged.digest.value.toString('hex')) {
        throw entryMismatch('it records another digest');
      }
      if (base64Field(field(spec, 'signature', 'content'))?.equals(logged.signature) !== true) throw entryMismatch('it records another signature');
      if (!loggedKeyMatches(field(spec, 'signature', 'publicKey', 'content'), spki)) throw entryMismatch('it records another key');
      return;
    }
    case 'dsse': {
      if (kind !== '0.0.1/dsse') throw entryMismatch(`it is a ${quoted(kind)} entry, not dsse 0.0.1`);
      const signatures = field(spec, 'signatures');
      if (!Array.isArray(signatures) || signatures.length !== 1) throw entryMismatch('a dsse entry records exactly one signature');
      if (base64Field(field(signatures[0], 'signature'))?.equals(logged.signature) !== true) throw entryMismatch('it records another signature');
      if (!loggedKeyMatches(field(signatures[0], 'verifier'), spki)) throw entryMismatch('it records another key');
      if (field(spec, 'payloadHash', 'algorithm') !== 'sha256' || field(spec, 'payloadHash', 'value') !== sha256Hex(logged.payload)) {
        throw entryMismatch('it records another payload');
      }
      const envelopeHash = sha256Hex(canonicalJson({ payload: logged.envelope.payload, payloadType: logged.envelope.payloadType, signatures: logged.envelope.signatures.map((s) => ({ keyid: s.keyid, sig: s.sig })) }));
      if (field(spec, 'envelopeHash', 'algorithm') !== 'sha256' || field(spec, 'envelopeHash', 'value') !== envelopeHash) throw entryMismatch('it records another envelope');
      return;
    }
    case 'signet-envelope': {
      if (kind !== `${ENVELOPE_SIGNATURE_API_VERSION}/${ENVELOPE_SIGNATURE_BODY_KIND}`) throw entryMismatch(`it is a ${quoted(kind)} entry, not ${ENVELOPE_SIGNATURE_BODY_KIND}`);
      if (field(spec, 'format') !== logged.format || format !== logged.format) throw entryMismatch(`it records another format than ${logged.format}`);
      if (!isManifestDigest(field(spec, 'data', 'hash'), manifest)) throw entryMismatch("it records another digest than the manifest's");
      if (base64Field(field(spec, 'signature', 'content'))?.equals(logged.signature) !== true) throw entryMismatch('it records another signature');
      if (!loggedKeyMatches(field(spec, 'signature', 'publicKey', 'content'), spki)) throw entryMismatch('it records another key');
      const signedAttributes = field(spec, 'signedAttributes');
      if (logged.signedAttributes !== undefined && signedAttributes !== undefined && base64Field(signedAttributes)?.equals(logged.signedAttributes) !== true) {
        throw entryMismatch('it records other signed attributes');
      }
      return;
    }
  }
}

/** The leaf Signet logs for a signature whose leaf can be recomputed, for each way it may have named the key. */
function recomputedLeaves(logged: LoggedSignature, keyPems: readonly string[]): Buffer[] {
  switch (logged.kind) {
    case 'hashedrekord':
      return keyPems.map((publicKeyPem) =>
        hashedRekordLeaf({
          digest: { algorithm: logged.digest.algorithm, value: logged.digest.value.toString('hex') },
          signatureBase64: logged.signature.toString('base64'),
          publicKeyPem,
        }),
      );
    case 'dsse': {
      if (logged.envelope.signatures.length !== 1) return [];
      const envelope = { ...logged.envelope, signatures: logged.envelope.signatures.map((s) => ({ keyid: s.keyid ?? '', sig: s.sig })) };
      return keyPems.map((verifierPem) => dsseRekordLeaf({ envelope, verifierPem }));
    }
    case 'signet-envelope':
      return [];
  }
}

/** The signature entry's leaf bytes, checked against the receipt's leaf hash. */
function signatureLeaf(input: LogCheckInput): Buffer {
  const { evidence, signed } = input;
  if (evidence.leaf !== null) {
    if (!merkleLeafHash(evidence.leaf).equals(evidence.leafHash)) {
      throw refuse('inclusion-proof-mismatch', 'LEAF_HASH_MISMATCH', "the log leaf does not hash to the receipt's leaf hash");
    }
    checkLeafRecords(evidence.leaf, signed.logged, signed.spki, input.manifest, input.format);
    return evidence.leaf;
  }
  if (signed.logged.kind === 'signet-envelope') {
    throw refuse('inclusion-proof-mismatch', 'LOG_LEAF_MISSING', `the receipt does not carry the log leaf (log.leaf), which a ${signed.logged.format} signature's entry cannot be recomputed without`);
  }
  const found = recomputedLeaves(signed.logged, [input.bundleKey.publicKeyPem, signed.certificatePem]).find((leaf) => merkleLeafHash(leaf).equals(evidence.leafHash));
  if (found === undefined) throw entryMismatch("the receipt's leaf hash is not the hash of this signature's entry");
  return found;
}

function checkInclusion(evidence: LogEvidence, trust: TrustView): void {
  // The proof is against the tree the signed note names; the receipt's own size and root must be those.
  const [, size, root] = evidence.checkpoint.split('\n');
  if (size !== String(evidence.treeSize) || root !== evidence.rootHash.toString('base64')) {
    throw refuse('inclusion-proof-mismatch', 'CHECKPOINT_MISMATCH', 'the inclusion proof is against another tree than the checkpoint');
  }
  if (!verifyInclusion(evidence.leafHash, evidence.index, evidence.treeSize, evidence.inclusionProof, evidence.rootHash)) {
    throw refuse('inclusion-proof-mismatch', 'INCLUSION_PROOF_INVALID', `the inclusion proof of entry ${evidence.index} does not lead to the checkpoint's root (tree size ${evidence.treeSize})`);
  }
  const checkpoint = verifyCheckpoint(evidence.checkpoint, trust.log.origin, trust.log.publicKeyPem);
  if (!checkpoint.ok) {
    const code = checkpoint.reason === 'the checkpoint is for another log origin' ? 'CHECKPOINT_ORIGIN_MISMATCH' : 'CHECKPOINT_SIGNATURE_INVALID';
    throw refuse('checkpoint-invalid', code, `${checkpoint.reason} (log ${quoted(trust.log.origin)} of the trust bundle)`);
  }
}

function checkInclusionPromise(evidence: LogEvidence, leaf: Buffer, trust: TrustView): boolean {
  if (evidence.inclusionPromise === null) return false;
  const payload = canonicalJson({ body: leaf.toString('base64'), integratedTime: evidence.integratedTime, logID: trust.log.logId.toString('hex'), logIndex: evidence.index });
  let valid = false;
  try {
    valid = verify('sha256', Buffer.from(payload, 'utf8'), { key: createPublicKey(trust.log.publicKeyPem), dsaEncoding: 'der' }, evidence.inclusionPromise);
  } catch {
    valid = false;
  }
  if (!valid) throw refuse('checkpoint-invalid', 'INCLUSION_PROMISE_INVALID', "the inclusion promise is not the trust bundle's log key's signature over this entry and time");
  return true;
}

const decisionMismatch = (detail: string) => refuse('inclusion-proof-mismatch', 'DECISION_MISMATCH', `the logged decision entry ${detail}`);

function checkDecision(input: LogCheckInput, keyId: string): LoggedIdentity | null {
  const { evidence } = input;
  const decision = evidence.decision;
  if (decision === null) return null;
  if (evidence.decisionIndex !== null && evidence.decisionIndex !== decision.index) throw decisionMismatch(`is entry ${decision.index}, the receipt names ${evidence.decisionIndex}`);
  if (decision.index >= evidence.index) throw decisionMismatch('does not come before the signature entry');
  if (!verifyInclusion(merkleLeafHash(decision.leaf), decision.index, evidence.treeSize, decision.inclusionProof, evidence.rootHash)) {
    throw refuse('inclusion-proof-mismatch', 'INCLUSION_PROOF_INVALID', `the inclusion proof of decision entry ${decision.index} does not lead to the checkpoint's root`);
  }
  let body: unknown;
  try {
    body = JSON.parse(decision.leaf.toString('utf8'));
  } catch {
    throw decisionMismatch('is not JSON');
  }
  const spec = field(body, 'spec');
  if (field(body, 'apiVersion') !== 'signet.dev/v1' || field(body, 'kind') !== 'SignDecision') throw decisionMismatch('is not a SignDecision');
  if (field(spec, 'decision') !== 'allow') throw decisionMismatch('is not an allow');
  if (field(spec, 'keyId') !== keyId) throw decisionMismatch(`is for another key than ${keyId}`);
  if (field(spec, 'format') !== input.format) throw decisionMismatch(`is for another format than ${input.format}`);
  if (!isManifestDigest(field(spec, 'digest'), input.manifest)) throw decisionMismatch("is for another digest than the manifest's");
  const time = field(spec, 'time');
  const decidedAt = typeof time === 'string' ? Date.parse(time) : Number.NaN;
  if (Number.isNaN(decidedAt) || Math.floor(decidedAt / 1000) !== evidence.integratedTime) {
    throw refuse('inclusion-proof-mismatch', 'LOG_TIME_MISMATCH', `the receipt's log time ${evidence.integratedTime} is not the logged decision's time`);
  }
  const identity = field(spec, 'identity');
  const issuer = field(identity, 'issuer');
  const subject = field(identity, 'subject');
  const claims = field(identity, 'claims');
  if (typeof issuer !== 'string' || typeof subject !== 'string' || !isRecord(claims)) throw decisionMismatch('has no identity');
  const strings = Object.fromEntries(Object.entries(claims).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  return { issuer, subject, claims: strings };
}

export function verifyLogEvidence(input: LogCheckInput, keyId: string): LogCheck {
  const leaf = signatureLeaf(input);
  checkInclusion(input.evidence, input.trust);
  const promised = checkInclusionPromise(input.evidence, leaf, input.trust);
  const identity = checkDecision(input, keyId);
  const warnings: string[] = [];
  const timeSource: LogTimeSource = identity !== null ? 'decision-entry' : promised ? 'inclusion-promise' : 'receipt';
  if (timeSource === 'receipt') {
    warnings.push('the log time comes from the receipt alone: it carries neither the decision entry (log.decision) nor an inclusion promise that would sign it');
  }
  return { timeSource, identity, warnings };
}
