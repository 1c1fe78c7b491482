/**
 * The signature formats of POST /v1/sign, one dispatch per format: what the HSM signs
 * and with which hash, which log entry records the signature, and which answer fields
 * carry it. The signing path (service/sign-request.ts) calls this module at three
 * points:
 *
 *   checkFormatRequest   before anything is consumed or logged: a request the format
 *                        cannot serve (no payload, a key it cannot express, no usable
 *                        certificate) is refused with a code and signs nothing
 *   signInFormat         after the decision is durable: the one HSM call, the envelope
 *                        assembled around its signature, and the signature's log leaf
 *   completeAnswer       once the signature entry is durable: the receipt, with the
 *                        leaves a verifier needs offline, and for Sigstore bundles the
 *                        inclusion promise and the bundle itself
 *
 * | format          | needs            | the HSM signs                                   | log entry                    |
 * |-----------------|------------------|-------------------------------------------------|------------------------------|
 * | raw             | digest or payload| the digest                                      | hashedrekord 0.0.1           |
 * | dsse            | payload          | PAE(application/vnd.in-toto+json, payload)      | dsse 0.0.1                   |
 * | pgp             | payload          | payload ‖ hashed part ‖ trailer (RFC 4880 §5.2.4)| signet.envelope-signature/v1 |
 * | cms             | digest or payload| the DER signed attributes (RFC 5652 §5.4)       | signet.envelope-signature/v1 |
 * | sigstore-bundle | digest           | the SHA-256 digest (message signature)          | hashedrekord 0.0.1           |
 * | sigstore-bundle | payload          | PAE, with SHA-256 (DSSE envelope)               | dsse 0.0.1                   |
 *
 * Which key algorithms each format accepts is formats/support.ts's table (and
 * supportsOpenPgp for pgp); every refusal there is FORMAT_KEY_UNSUPPORTED. The
 * signature is always made by the HSM; only the envelope is assembled here.
 */
import { X509Certificate } from 'node:crypto';
import { chainOf, currentLeaf } from '../ca/trust-bundle.js';
import { prepareDetachedCms } from '../formats/cms.js';
import { buildDsseEnvelope, DSSE_IN_TOTO_PAYLOAD_TYPE, preAuthenticationEncoding, type DsseEnvelope } from '../formats/dsse.js';
import { FormatError } from '../formats/errors.js';
import { dsseRekordLeaf, DSSE_REKOR_KIND } from '../formats/rekor-dsse.js';
import { buildSigstoreBundle, type SigstoreBundle, type SigstoreBundleContent } from '../formats/sigstore-bundle.js';
import { assertEnvelopeSupport, dsseSigningHash, type SigstoreContentKind } from '../formats/support.js';
import { keyRef } from '../keyrotation/signing-keys.js';
import { ENVELOPE_SIGNATURE_KIND, envelopeSignatureLeaf, HASHEDREKORD_KIND, hashedRekordLeaf } from '../log/entries.js';
import { leafHash } from '../log/merkle.js';
import type { LogReceipt, TransparencyLog } from '../log/transparency-log.js';
import type { DigestAlgorithm, KeyAlgorithm } from '../signer/algorithms.js';
import { PAYLOAD_FORMATS, type SignatureFormat } from '../signer/formats.js';
import { detachedSignature, supportsOpenPgp } from '../signer/openpgp/openpgp-key.js';
import type { HsmSigner } from '../signer/types.js';
import type { KeyVersionRecord, SignetStore } from '../store/store.js';
import { SignError } from './errors.js';

export interface FormatRequest {
  readonly format: SignatureFormat;
  readonly key: KeyVersionRecord;
  /** The manifest's digest: the client's, or the service's hash of the payload. */
  readonly digest: { readonly algorithm: DigestAlgorithm; readonly value: Buffer };
  /** The manifest bytes, when the request carried them. */
  readonly payload: Buffer | undefined;
  /** The key's certificate chain (PEM, leaf first), or empty when it has none (signingChain). */
  readonly chain: readonly string[];
  /** The decision's time: the CMS signing time, and when the certificate must be valid. */
  readonly signingTime: Date;
}

/** What a format adds to the answer, stored with it for identical retries (JSON-safe). */
export interface FormatFields {
  /** dsse, and sigstore-bundle over a payload: the DSSE envelope. */
  readonly envelope?: DsseEnvelope;
  /** pgp: the ASCII-armored detached signature (RFC 4880 §6.2). */
  readonly armored?: string;
}

export interface FormatSignature {
  /** The answer's `signature`: the HSM's signature, or the whole SignedData (cms) or signature packet (pgp). */
  readonly signature: Buffer;
  /** The signature's log entry. */
  readonly entry: { readonly kind: string; readonly leaf: Buffer };
  readonly fields: FormatFields;
}

/** The log part of a sign answer: the receipt and what a verifier needs to check it offline. */
export interface SignReceipt extends LogReceipt {
  /** Base64 of the signature entry's exact leaf bytes (pgp and cms entries cannot be recomputed without it). */
  readonly leaf: string;
  /**
   * The decision entry (`signet.decision/v1`) with its audit path in the same tree as the
   * signature entry: `signet verify` checks identity constraints against the logged
   * identity, offline. Null only for an answer without a decision index.
   */
  readonly decision: { readonly index: number; readonly leaf: string; readonly inclusionProof: readonly string[] } | null;
}

/** A Sigstore bundle holds a DSSE envelope when the manifest was sent, else a message signature over its SHA-256. */
function sigstoreContentOf(payload: Buffer | undefined): SigstoreContentKind {
  return payload === undefined ? 'message-signature' : 'dsse';
}

function keyUnsupported(format: SignatureFormat, algorithm: KeyAlgorithm, why: string): FormatError {
  return new FormatError('FORMAT_KEY_UNSUPPORTED', `format ${format} cannot be made with ${algorithm} keys: ${why}`);
}

/**
 * The key's certificate chain as a sign answer carries it: leaf, intermediate, root
 * (PEM), the leaf being the one the key presents now (ca/trust-bundle.ts
 * `currentLeaf`: unrevoked, valid now if one is). Empty when the key has no unrevoked
 * certificate; formats that embed the certificate refuse that (checkFormatRequest).
 */
export async function signingChain(store: SignetStore, keyId: string, now: Date): Promise<string[]> {
  const [leaves, revocations, cas] = await Promise.all([
    store.certificates.leavesOfKey(keyId),
    store.certificates.listRevocations(),
    store.certificates.listCas(),
  ]);
  const leaf = currentLeaf(leaves, new Set(revocations.map((r) => r.serialNumber)), now);
  return (leaf === null ? null : chainOf(leaf, cas)) ?? [];
}

/**
 * The leaf certificate a format embeds (cms, sigstore-bundle): it must exist and be
 * valid at the signing time, or the envelope would verify nowhere. A server-side fault
 * (the CA must issue one), refused before the HSM signs.
 */
function embeddedCertificate(request: FormatRequest): string {
  const [leaf] = request.chain;
  if (leaf === undefined) {
    throw new FormatError('FORMAT_CERTIFICATE_INVALID', `key ${request.key.keyId} has no unrevoked certificate; format ${request.format} embeds it`);
  }
  const certificate = new X509Certificate(leaf);
  const at = request.signingTime.getTime();
  if (at < Date.parse(certificate.validFrom) || at > Date.parse(certificate.validTo)) {
    throw new FormatError('FORMAT_CERTIFICATE_INVALID', `the certificate of key ${request.key.keyId} is not valid now; format ${request.format} embeds it`);
  }
  return leaf;
}

/**
 * Refuses, before the token, the limits or the log are touched, a request its format
 * cannot serve: PAYLOAD_REQUIRED, FORMAT_KEY_UNSUPPORTED, FORMAT_CERTIFICATE_INVALID.
 */
export function checkFormatRequest(request: FormatRequest): void {
  const { format, key, digest, payload } = request;
  if (PAYLOAD_FORMATS.has(format) && payload === undefined) {
    throw new SignError('PAYLOAD_REQUIRED', `format ${format} signs the manifest itself: send it as payload (base64), not as a digest`);
  }
  // An envelope around nothing (DSSE, OpenPGP, a bundle's DSSE) is refused by verifiers.
  if (payload?.length === 0 && format !== 'raw' && format !== 'cms') {
    throw new FormatError('FORMAT_INPUT_INVALID', `format ${format} does not sign an empty payload`);
  }
  switch (format) {
    case 'raw':
      return;
    case 'dsse':
      assertEnvelopeSupport({ format, keyAlgorithm: key.algorithm, digestAlgorithm: digest.algorithm });
      return;
    case 'pgp':
      if (!supportsOpenPgp(key.algorithm)) throw keyUnsupported(format, key.algorithm, 'OpenPGP RSA signatures are PKCS#1 v1.5 and these keys sign with PSS only');
      return;
    case 'cms':
      assertEnvelopeSupport({ format, keyAlgorithm: key.algorithm, digestAlgorithm: digest.algorithm });
      embeddedCertificate(request);
      return;
    case 'sigstore-bundle':
      assertEnvelopeSupport({ format, keyAlgorithm: key.algorithm, digestAlgorithm: digest.algorithm, sigstoreContent: sigstoreContentOf(payload) });
      embeddedCertificate(request);
      return;
  }
}

function requirePayload(request: FormatRequest): Buffer {
  if (request.payload === undefined) throw new SignError('PAYLOAD_REQUIRED', `format ${request.format} signs the manifest itself: send it as payload`);
  return request.payload;
}

/** The HSM's signature over the DSSE PAE of the payload, in its envelope (keyid: the key version, a hint). */
async function signDsse(hsm: HsmSigner, request: FormatRequest, hash: DigestAlgorithm | undefined): Promise<{ sig: Buffer; envelope: DsseEnvelope }> {
  const payload = requirePayload(request);
  const pae = preAuthenticationEncoding(DSSE_IN_TOTO_PAYLOAD_TYPE, payload);
  const sig = await hsm.signMessage(keyRef(request.key), pae, hash);
  return { sig, envelope: buildDsseEnvelope(DSSE_IN_TOTO_PAYLOAD_TYPE, payload, [{ keyid: request.key.keyId, sig }]) };
}

/**
 * Makes the signature in the request's format: one HSM operation, then the envelope
 * around it and the leaf that records it. Call only once the decision is durable
 * (audit first) and checkFormatRequest has passed.
 */
export async function signInFormat(hsm: HsmSigner, request: FormatRequest): Promise<FormatSignature> {
  const { key, digest } = request;
  const hexDigest = digest.value.toString('hex');
  switch (request.format) {
    case 'raw': {
      const signature = await hsm.signDigest(keyRef(key), digest);
      const leaf = hashedRekordLeaf({ digest: { algorithm: digest.algorithm, value: hexDigest }, signatureBase64: signature.toString('base64'), publicKeyPem: key.publicKeyPem });
      return { signature, entry: { kind: HASHEDREKORD_KIND, leaf }, fields: {} };
    }
    case 'dsse': {
      const { sig, envelope } = await signDsse(hsm, request, dsseSigningHash(key.algorithm));
      // Rekor's dsse body names the verifier: the certificate when the key has one.
      const leaf = dsseRekordLeaf({ envelope, verifierPem: request.chain[0] ?? key.publicKeyPem });
      return { signature: sig, entry: { kind: DSSE_REKOR_KIND, leaf }, fields: { envelope } };
    }
    case 'pgp': {
      const { binary, armored } = await detachedSignature(
        {
          algorithm: key.algorithm,
          publicKeyPem: key.publicKeyPem,
          createdAt: new Date(key.createdAt),
          signMessage: (message, hash) => hsm.signMessage(keyRef(key), message, hash),
        },
        requirePayload(request),
      );
      const leaf = envelopeSignatureLeaf({ format: 'pgp', digest: { algorithm: digest.algorithm, value: hexDigest }, signatureBase64: binary.toString('base64'), publicKeyPem: key.publicKeyPem });
      return { signature: binary, entry: { kind: ENVELOPE_SIGNATURE_KIND, leaf }, fields: { armored } };
    }
    case 'cms': {
      // The leaf and the intermediates, not the root: a verifier brings its own trust anchor.
      const certificates = [embeddedCertificate(request), ...request.chain.slice(1, -1)];
      const prepared = prepareDetachedCms({
        keyAlgorithm: key.algorithm,
        publicKeyPem: key.publicKeyPem,
        certificates,
        contentDigest: digest,
        signingTime: request.signingTime,
      });
      const signedData = prepared.assemble(await hsm.signMessage(keyRef(key), prepared.toBeSigned, prepared.signingHash));
      const leaf = envelopeSignatureLeaf({
        format: 'cms',
        digest: { algorithm: digest.algorithm, value: hexDigest },
        signatureBase64: signedData.toString('base64'),
        publicKeyPem: key.publicKeyPem,
        signedAttributesBase64: prepared.toBeSigned.toString('base64'),
      });
      return { signature: signedData, entry: { kind: ENVELOPE_SIGNATURE_KIND, leaf }, fields: {} };
    }
    case 'sigstore-bundle': {
      const certificate = embeddedCertificate(request);
      const hash = assertEnvelopeSupport({ format: 'sigstore-bundle', keyAlgorithm: key.algorithm, digestAlgorithm: digest.algorithm, sigstoreContent: sigstoreContentOf(request.payload) });
      if (request.payload !== undefined) {
        const { sig, envelope } = await signDsse(hsm, request, hash);
        return { signature: sig, entry: { kind: DSSE_REKOR_KIND, leaf: dsseRekordLeaf({ envelope, verifierPem: certificate }) }, fields: { envelope } };
      }
      // A message signature is the raw signature over the SHA-256 digest; Sigstore
      // verifiers match the entry's key to the bundle's certificate, so it names that.
      const signature = await hsm.signDigest(keyRef(key), digest);
      const leaf = hashedRekordLeaf({ digest: { algorithm: digest.algorithm, value: hexDigest }, signatureBase64: signature.toString('base64'), publicKeyPem: certificate });
      return { signature, entry: { kind: HASHEDREKORD_KIND, leaf }, fields: {} };
    }
  }
}

/** The answer fields that depend on the receipt, and the receipt as answered. */
export interface CompletedAnswer {
  readonly log: SignReceipt;
  readonly bundle?: SigstoreBundle;
}

export interface CompletionInput {
  readonly log: TransparencyLog;
  /** The stored answer's format fields. */
  readonly answer: {
    readonly keyId: string;
    readonly algorithm: KeyAlgorithm;
    readonly format: SignatureFormat;
    readonly signature: string;
    readonly digest: { readonly algorithm: DigestAlgorithm; readonly value: string };
    readonly chain: readonly string[];
    readonly envelope?: DsseEnvelope;
  };
  /** The signature entry, as the stored answer names it. */
  readonly entry: { readonly index: number; readonly decisionIndex: number | null; readonly integratedTime: number };
  /**
   * Leaves and key at hand on the first answer; for a retry the leaves are read back
   * from the log and the key is the certificate's (checked to hold the key's when the
   * first answer was made).
   */
  readonly known?: { readonly leaf: Buffer; readonly decisionLeaf: Buffer; readonly publicKeyPem: string };
}

async function leafAt(log: TransparencyLog, index: number): Promise<Buffer> {
  return (await log.entry(index)).leaf;
}

/**
 * The receipt of a durable signature entry (proof against a checkpoint signed after
 * it), with the signature's leaf and the decision entry proven in the same tree; and
 * for Sigstore bundles the inclusion promise (one log-key signature, made only for
 * them: SIGSTORE-NOTES.md "Time") and the bundle.
 */
export async function completeAnswer(input: CompletionInput): Promise<CompletedAnswer> {
  const { log, answer, entry, known } = input;
  const leaf = known?.leaf ?? (await leafAt(log, entry.index));
  const receipt = await log.receipt(entry.index, { decisionIndex: entry.decisionIndex, integratedTime: entry.integratedTime });
  let decision: SignReceipt['decision'] = null;
  if (entry.decisionIndex !== null) {
    const [decisionLeaf, proof] = await Promise.all([
      known?.decisionLeaf ?? leafAt(log, entry.decisionIndex),
      log.inclusionProof(entry.decisionIndex, receipt.treeSize),
    ]);
    decision = { index: entry.decisionIndex, leaf: decisionLeaf.toString('base64'), inclusionProof: proof.map((h) => h.toString('base64')) };
  }
  const signReceipt = (inclusionPromise: string | null): SignReceipt => ({ ...receipt, inclusionPromise, leaf: leaf.toString('base64'), decision });
  if (answer.format !== 'sigstore-bundle') return { log: signReceipt(receipt.inclusionPromise) };

  const content: SigstoreBundleContent =
    answer.envelope === undefined
      ? { kind: 'message-signature', sha256: Buffer.from(answer.digest.value, 'hex'), signature: Buffer.from(answer.signature, 'base64') }
      : { kind: 'dsse', envelope: answer.envelope };
  const inclusionPromise = await log.inclusionPromise({
    index: entry.index,
    kind: content.kind === 'dsse' ? DSSE_REKOR_KIND : HASHEDREKORD_KIND,
    leaf,
    leafHash: leafHash(leaf),
    integratedTime: entry.integratedTime,
    linkedIndex: entry.decisionIndex,
  });
  const completed = signReceipt(inclusionPromise);
  const [certificate] = answer.chain;
  if (certificate === undefined) throw new FormatError('FORMAT_CERTIFICATE_INVALID', 'a Sigstore bundle needs the signing certificate');
  const publicKeyPem = known?.publicKeyPem ?? new X509Certificate(certificate).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const bundle = buildSigstoreBundle({
    keyAlgorithm: answer.algorithm,
    publicKeyPem,
    certificate,
    content,
    log: { receipt: completed, leaf, logId: log.logId },
  });
  return { log: completed, bundle };
}
