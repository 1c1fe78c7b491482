/**
 * What the log records, one canonical, versioned JSON schema per kind. Leaves are the
 * canonical JSON bytes (log/canonical-json.ts). No secrets and no tokens: identities
 * are summarised by the claims that matter (policy/oidc/presets.ts).
 *
 * - `signet.decision/v1`: every authenticated signing decision, allow or deny, made
 *   BEFORE the HSM is asked to sign.
 * - `signet.policy/v1`: every policy version the service loads (at start and on
 *   reload), with its SHA-256 and the rules themselves, so every decision's
 *   `policy.sha256` points at a rule set anyone can read in the log.
 * - `hashedrekord/0.0.1`: a signature over a digest, as a Rekor-style canonicalised
 *   body (SIGSTORE-NOTES.md), so Sigstore verifiers accept Signet's receipts. Its
 *   decision is linked through the entry's `linkedIndex`.
 * - `dsse/0.0.1` (formats/rekor-dsse.ts): a DSSE envelope's signature, as Rekor's body.
 * - `signet.envelope-signature/v1`: a `pgp` or `cms` signature. Neither fits
 *   hashedrekord (SIGSTORE-NOTES.md): OpenPGP signs the document followed by the
 *   signature packet's hashed part and trailer (RFC 4880 §5.2.4), CMS signs its signed
 *   attributes (RFC 5652 §5.4), not the digest itself. So the entry records the whole
 *   signature as made (which holds those signed parts), the manifest's digest, the key,
 *   and for CMS the exact signed-attribute bytes the HSM signed.
 */
import type { DenyReason } from '../policy/evaluate.js';
import type { DigestAlgorithm } from '../signer/algorithms.js';
import { canonicalBytes, type CanonicalValue } from './canonical-json.js';

export const DECISION_KIND = 'signet.decision/v1';
export const POLICY_KIND = 'signet.policy/v1';
export const HASHEDREKORD_KIND = 'hashedrekord/0.0.1';
export const ENVELOPE_SIGNATURE_KIND = 'signet.envelope-signature/v1';
/** `apiVersion` and `kind` of the envelope-signature leaf body (what a verifier matches). */
export const ENVELOPE_SIGNATURE_API_VERSION = 'signet.dev/v1';
export const ENVELOPE_SIGNATURE_BODY_KIND = 'EnvelopeSignature';

export interface DecisionEntry {
  readonly decision: 'allow' | 'deny';
  readonly reasons: readonly DenyReason[];
  readonly requestId: string;
  readonly project: string;
  /** The key asked for (name or version), or the key version resolved for an allow. */
  readonly keyId: string | null;
  readonly format: string;
  readonly digest: { readonly algorithm: DigestAlgorithm; readonly value: string };
  /** Whether the manifest itself was sent (and so bound by the policy, when it asks). */
  readonly manifest: boolean;
  readonly identity: { readonly issuer: string; readonly subject: string; readonly claims: Readonly<Record<string, string>> };
  readonly client: { readonly fingerprint: string; readonly subject: string; readonly issuer: string };
  readonly policySha256: string;
  /** ISO-8601 time of the decision. */
  readonly time: string;
}

export function decisionLeaf(entry: DecisionEntry): Buffer {
  return canonicalBytes({
    apiVersion: 'signet.dev/v1',
    kind: 'SignDecision',
    spec: {
      decision: entry.decision,
      reasons: entry.reasons.map((r) => ({ code: r.code, message: r.message })),
      requestId: entry.requestId,
      project: entry.project,
      keyId: entry.keyId,
      format: entry.format,
      digest: { algorithm: entry.digest.algorithm, value: entry.digest.value },
      manifest: entry.manifest,
      identity: { issuer: entry.identity.issuer, subject: entry.identity.subject, claims: { ...entry.identity.claims } },
      client: { ...entry.client },
      policy: { sha256: entry.policySha256 },
      time: entry.time,
    },
  });
}

/**
 * Rekor `hashedrekord` v0.0.1 body: `spec.data.hash` is the signed digest (hex),
 * `spec.signature.content` the signature (base64, as the bundle carries it) and
 * `spec.signature.publicKey.content` the base64 of the PEM public key (or certificate).
 */
export function hashedRekordLeaf(input: { digest: { algorithm: DigestAlgorithm; value: string }; signatureBase64: string; publicKeyPem: string }): Buffer {
  return canonicalBytes({
    apiVersion: '0.0.1',
    kind: 'hashedrekord',
    spec: {
      data: { hash: { algorithm: input.digest.algorithm, value: input.digest.value } },
      signature: { content: input.signatureBase64, publicKey: { content: Buffer.from(input.publicKeyPem, 'utf8').toString('base64') } },
    },
  });
}

export function policyLeaf(input: { sha256: string; document: unknown; reason: 'start' | 'reload'; time: string }): Buffer {
  return canonicalBytes({
    apiVersion: 'signet.dev/v1',
    kind: 'PolicyLoaded',
    // The validated document, as JSON: it holds fingerprints and claim rules, no secret.
    spec: { sha256: input.sha256, reason: input.reason, time: input.time, document: JSON.parse(JSON.stringify(input.document)) as CanonicalValue },
  });
}

export interface EnvelopeSignatureEntry {
  readonly format: 'pgp' | 'cms';
  /** The manifest's digest (hex), as the request and its decision name it. */
  readonly digest: { readonly algorithm: DigestAlgorithm; readonly value: string };
  /** The whole signature as answered: the OpenPGP signature packet, or the DER ContentInfo. */
  readonly signatureBase64: string;
  /** The signing key (PEM public key or certificate). */
  readonly publicKeyPem: string;
  /** CMS only: the DER SET OF signed attributes, the exact bytes the HSM signed. */
  readonly signedAttributesBase64?: string;
}

/**
 * The log leaf of a `pgp` or `cms` signature. Field names follow hashedrekord where
 * they mean the same (`data.hash`, `signature.content`, `signature.publicKey.content`),
 * so one reader serves both.
 */
export function envelopeSignatureLeaf(entry: EnvelopeSignatureEntry): Buffer {
  return canonicalBytes({
    apiVersion: ENVELOPE_SIGNATURE_API_VERSION,
    kind: ENVELOPE_SIGNATURE_BODY_KIND,
    spec: {
      format: entry.format,
      data: { hash: { algorithm: entry.digest.algorithm, value: entry.digest.value } },
      signature: { content: entry.signatureBase64, publicKey: { content: Buffer.from(entry.publicKeyPem, 'utf8').toString('base64') } },
      signedAttributes: entry.signedAttributesBase64,
    },
  });
}
