/**
 * The signature over the manifest, in the format the receipt names:
 *
 * - `raw`: the signature file is the HSM's signature over the manifest's digest
 *   (the receipt's digest algorithm), checked with the leaf certificate's key;
 * - `dsse`: a DSSE envelope (the signature file if it is one, else the receipt's
 *   `envelope`) whose payload is exactly the manifest bytes, signed over its PAE;
 * - `pgp`: verify/openpgp.ts; `cms`: verify/cms.ts;
 * - `sigstore-bundle`: the bundle's message signature over the manifest's SHA-256, or
 *   its DSSE envelope, with the bundle's certificate (verify/sigstore-bundle.ts).
 *
 * Raw, dsse and pgp carry no certificate: the leaf is the receipt's chain, else the
 * trust bundle's certificate of the key the receipt names. In that last case a
 * signature that does not verify over an unchanged manifest was made by another key
 * than the bundle's, which is reported as an untrusted key rather than a bad signature.
 */
import { createHash } from 'node:crypto';
import { DSSE_IN_TOTO_PAYLOAD_TYPE, parseDsseEnvelope, preAuthenticationEncoding } from '../formats/dsse.js';
import { dsseSigningHash } from '../formats/support.js';
import type { DigestAlgorithm } from '../signer/algorithms.js';
import { bundleKeyWithSpki, type Receipt, type TrustView } from './inputs.js';
import { quoted, refuse } from './result.js';
import type { LoggedDsseEnvelope, VerifiedSignature } from './signed-content.js';
import type { SigstoreBundleView } from './sigstore-bundle.js';
import {
  receiptSigningCertificate,
  signingKeyOf,
  verifyDigestSignature,
  verifyMessageSignature,
  type SigningKey,
} from './signing-key.js';

export interface SignatureInput {
  readonly manifest: Buffer;
  readonly signatureFile: Buffer;
  readonly receipt: Receipt;
  readonly trust: TrustView;
  /** The log time: picks the trust bundle's certificate valid then. */
  readonly at: Date;
  /** The verifier's clock (OpenPGP refuses signatures dated in the future). */
  readonly now: Date;
  /** The parsed bundle, for `sigstore-bundle`. */
  readonly sigstore: SigstoreBundleView | null;
}

function digestOf(algorithm: DigestAlgorithm, bytes: Buffer): Buffer {
  return createHash(algorithm).update(bytes).digest();
}

function otherKey(receipt: Receipt, what: string) {
  const key = receipt.keyId === null ? 'the key' : `key ${quoted(receipt.keyId)}`;
  return refuse('untrusted-key', 'SIGNATURE_KEY_UNTRUSTED', `${what} does not verify with ${key} of the trust bundle: it was made by another key`);
}

function verifyRaw(input: SignatureInput): VerifiedSignature {
  const { receipt, manifest } = input;
  const certificate = receiptSigningCertificate(receipt, input.trust, input.at);
  const signer = signingKeyOf(certificate.certificatePem);
  const hash = receipt.digestAlgorithm;
  const digest = digestOf(hash, manifest);
  const signature = input.signatureFile;
  if (!verifyDigestSignature(signer, hash, manifest, digest, signature)) {
    // The receipt records what was signed: if that is still this manifest, the key is what differs.
    if (certificate.source === 'trust-bundle' && receipt.digestValue === digest.toString('hex')) throw otherKey(receipt, 'the signature');
    throw refuse('signature-invalid', 'SIGNATURE_INVALID', `the signature does not verify over the manifest's ${hash} digest (the manifest was changed after signing, or the signature is not its)`);
  }
  return {
    certificatePem: certificate.certificatePem,
    intermediatesPem: certificate.intermediatesPem,
    spki: signer.spki,
    logged: { kind: 'hashedrekord', signature, digest: { algorithm: hash, value: digest } },
  };
}

function jsonObject(bytes: Buffer): unknown {
  try {
    const value = JSON.parse(bytes.toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * An envelope whose payload is the manifest, with a signature by `signer` over its PAE
 * (DSSE protocol.md). Returns the envelope's fields as given and the signature that verified.
 */
function verifyDsseEnvelope(
  document: unknown,
  input: SignatureInput,
  signer: SigningKey,
  onWrongKey: () => Error,
): { envelope: LoggedDsseEnvelope; payload: Buffer; signature: Buffer } {
  let parsed;
  try {
    parsed = parseDsseEnvelope(document);
  } catch {
    throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'the DSSE envelope is malformed');
  }
  if (parsed.payloadType !== DSSE_IN_TOTO_PAYLOAD_TYPE) {
    throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', `the DSSE envelope's payload type is ${quoted(parsed.payloadType)}, not ${DSSE_IN_TOTO_PAYLOAD_TYPE}`);
  }
  if (!parsed.payload.equals(input.manifest)) {
    throw refuse('signature-invalid', 'MANIFEST_MISMATCH', "the DSSE envelope's payload is not the manifest (the manifest was changed after signing)");
  }
  const pae = preAuthenticationEncoding(parsed.payloadType, parsed.payload);
  const hash = dsseSigningHash(signer.algorithm);
  const verified = parsed.signatures.find((s) => verifyMessageSignature(signer, hash, pae, s.sig));
  if (verified === undefined) throw onWrongKey();
  // parseDsseEnvelope accepted it, so these fields are strings.
  const fields = document as { payload: string; payloadType: string; signatures: { keyid?: string; sig: string }[] };
  return {
    envelope: { payload: fields.payload, payloadType: fields.payloadType, signatures: fields.signatures.map((s) => ({ ...(s.keyid === undefined ? {} : { keyid: s.keyid }), sig: s.sig })) },
    payload: parsed.payload,
    signature: verified.sig,
  };
}

function verifyDsse(input: SignatureInput): VerifiedSignature {
  const { receipt } = input;
  const certificate = receiptSigningCertificate(receipt, input.trust, input.at);
  const signer = signingKeyOf(certificate.certificatePem);
  const fromFile = jsonObject(input.signatureFile);
  const document = fromFile ?? receipt.envelope;
  if (document === undefined) throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'neither the signature file nor the receipt holds a DSSE envelope');
  const { envelope, payload, signature } = verifyDsseEnvelope(document, input, signer, () =>
    certificate.source === 'trust-bundle'
      ? otherKey(receipt, 'the DSSE signature')
      : refuse('signature-invalid', 'SIGNATURE_INVALID', "the DSSE signature does not verify with the signing certificate's key"),
  );
  // A signature file that is not the envelope is the bare signature `signet sign` writes: it must be the envelope's.
  if (fromFile === undefined && !input.signatureFile.equals(signature)) {
    throw refuse('signature-invalid', 'SIGNATURE_MISMATCH', "the signature file is not the DSSE envelope's signature");
  }
  return {
    certificatePem: certificate.certificatePem,
    intermediatesPem: certificate.intermediatesPem,
    spki: signer.spki,
    logged: { kind: 'dsse', envelope, payload, signature },
  };
}

// openpgp.js and the CMS schemas are loaded only for their formats: most verifications
// need neither, and a deployment gate's start-up time counts against its hashing.
async function verifyPgp(input: SignatureInput): Promise<VerifiedSignature> {
  const { verifyOpenPgpSignature } = await import('./openpgp.js');
  const certificate = receiptSigningCertificate(input.receipt, input.trust, input.at);
  const signer = signingKeyOf(certificate.certificatePem);
  const verified = await verifyOpenPgpSignature({
    manifest: input.manifest,
    signatureFile: input.signatureFile,
    signer,
    certificate,
    bundleKey: bundleKeyWithSpki(input.trust, signer.spki),
    now: input.now,
  });
  return {
    certificatePem: certificate.certificatePem,
    intermediatesPem: certificate.intermediatesPem,
    spki: signer.spki,
    logged: { kind: 'signet-envelope', format: 'pgp', signature: verified.binary },
    openPgpKeySource: verified.source,
  };
}

async function verifyCms(input: SignatureInput): Promise<VerifiedSignature> {
  const { verifyCmsSignature } = await import('./cms.js');
  const verified = verifyCmsSignature(input.manifest, input.signatureFile);
  return {
    certificatePem: verified.certificatePem,
    intermediatesPem: [...verified.intermediatesPem, ...input.receipt.chain.slice(1)],
    spki: verified.signer.spki,
    logged: { kind: 'signet-envelope', format: 'cms', signature: verified.der, signedAttributes: verified.signedAttributes },
  };
}

function verifySigstore(input: SignatureInput): VerifiedSignature {
  const view = input.sigstore;
  if (view === null) throw new TypeError('a sigstore-bundle verification needs the parsed bundle');
  const signer = signingKeyOf(view.certificatePem);
  const base = { certificatePem: view.certificatePem, intermediatesPem: input.receipt.chain.slice(1), spki: signer.spki };
  const content = view.content;
  // A signature file that is not the bundle is the bare signature: it must be the bundle's.
  const checkFile = (signature: Buffer): void => {
    if (!view.fromFile && !input.signatureFile.equals(signature)) throw refuse('signature-invalid', 'SIGNATURE_MISMATCH', "the signature file is neither the Sigstore bundle nor its signature");
  };
  if (content.kind === 'dsse') {
    const { envelope, payload, signature } = verifyDsseEnvelope(content.envelope, input, signer, () =>
      refuse('signature-invalid', 'SIGNATURE_INVALID', "the bundle's DSSE signature does not verify with its certificate's key"),
    );
    checkFile(signature);
    return { ...base, logged: { kind: 'dsse', envelope, payload, signature } };
  }
  // Sigstore verifies message signatures as ECDSA P-256 with SHA-256 over the artifact (formats/support.ts).
  if (signer.algorithm !== 'ecdsa-p256') throw refuse('signature-invalid', 'FORMAT_KEY_UNSUPPORTED', `Sigstore message signatures are made with ecdsa-p256 keys only; this certificate holds ${signer.algorithm}`);
  const digest = digestOf('sha256', input.manifest);
  if (!content.sha256.equals(digest)) throw refuse('signature-invalid', 'MANIFEST_MISMATCH', "the bundle's message digest is not the manifest's SHA-256 (the manifest was changed after signing)");
  if (!verifyMessageSignature(signer, 'sha256', input.manifest, content.signature)) {
    throw refuse('signature-invalid', 'SIGNATURE_INVALID', "the bundle's message signature does not verify over the manifest with its certificate's key");
  }
  checkFile(content.signature);
  return { ...base, logged: { kind: 'hashedrekord', signature: content.signature, digest: { algorithm: 'sha256', value: digest } } };
}

export async function verifySignature(input: SignatureInput): Promise<VerifiedSignature> {
  if (input.signatureFile.length === 0) throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'the signature file is empty');
  switch (input.receipt.format) {
    case 'raw':
      return verifyRaw(input);
    case 'dsse':
      return verifyDsse(input);
    case 'pgp':
      return verifyPgp(input);
    case 'cms':
      return verifyCms(input);
    case 'sigstore-bundle':
      return verifySigstore(input);
  }
}
