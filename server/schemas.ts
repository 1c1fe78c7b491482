/**
 * Request and response schemas of the HTTP API. The same schemas validate requests
 * and generate /openapi.json, so the document can never drift from the code.
 */
import { z } from '@hono/zod-openapi';
import { DIGEST_ALGORITHMS, KEY_ALGORITHMS } from '../signer/algorithms.js';
import { SIGSTORE_BUNDLE_V03_MEDIA_TYPE } from '../formats/sigstore-bundle.js';
import { SIGNATURE_FORMATS } from '../signer/formats.js';
import { KEY_STATES } from '../store/store.js';

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'POLICY_DENIED' }),
      message: z.string(),
      reasons: z.array(z.object({ code: z.string(), message: z.string() })).optional(),
      requestId: z.string().optional(),
    }),
  })
  .openapi('Error');

const hex = (maxLength: number) => z.string().regex(/^(?:[0-9a-fA-F]{2})+$/, 'must be hex').max(maxLength);

/** Base64 of at most `maxBytes` decoded bytes (standard alphabet, padded). */
const base64 = (maxBytes: number) =>
  z
    .string()
    .max(Math.ceil(maxBytes / 3) * 4)
    .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, 'must be base64');

export const SignRequestSchema = z
  .object({
    project: z.string().min(1).max(64).openapi({ example: 'example' }),
    keyId: z.string().min(1).max(80).optional().openapi({ description: 'Key name (its active version) or <name>@<version>; the project default when absent', example: 'demo-release' }),
    digest: z
      .object({
        algorithm: z.enum(DIGEST_ALGORITHMS),
        value: hex(128).optional().openapi({ description: 'Hex digest; leave out when sending a payload' }),
      })
      .strict()
      .optional(),
    payload: base64(8 * 1024 * 1024)
      .optional()
      .openapi({ description: 'Base64 of the exact manifest bytes; hashed by the service (SHA-256 unless digest.algorithm says otherwise)' }),
    format: z.enum(SIGNATURE_FORMATS).default('raw'),
    dryRun: z.boolean().default(false).openapi({ description: 'Answer the decision and its reasons without signing or using up the token' }),
  })
  .strict()
  .superRefine((body, ctx) => {
    if (body.payload === undefined && body.digest?.value === undefined) {
      ctx.addIssue({ code: 'custom', path: ['digest'], message: 'give digest.value or payload' });
    }
    if (body.payload !== undefined && body.digest?.value !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['digest', 'value'], message: 'give digest.value or payload, not both' });
    }
  })
  .openapi('SignRequest');

/** DSSE envelope (https://github.com/secure-systems-lab/dsse/blob/master/envelope.md); payload and sig in base64. */
const DsseEnvelopeSchema = z
  .object({ payloadType: z.string(), payload: z.string(), signatures: z.array(z.object({ keyid: z.string(), sig: z.string() })).readonly() })
  .openapi('DsseEnvelope');

/** Sigstore bundle v0.3 in the protobuf-specs JSON mapping (formats/sigstore-bundle.ts). */
const SigstoreBundleSchema = z
  .object({
    mediaType: z.literal(SIGSTORE_BUNDLE_V03_MEDIA_TYPE),
    verificationMaterial: z.object({
      certificate: z.object({ rawBytes: z.string() }),
      tlogEntries: z
        .array(
          z.object({
            logIndex: z.string(),
            logId: z.object({ keyId: z.string() }),
            kindVersion: z.object({ kind: z.string(), version: z.string() }),
            integratedTime: z.string(),
            inclusionPromise: z.object({ signedEntryTimestamp: z.string() }),
            inclusionProof: z.object({
              logIndex: z.string(),
              rootHash: z.string(),
              treeSize: z.string(),
              hashes: z.array(z.string()).readonly(),
              checkpoint: z.object({ envelope: z.string() }),
            }),
            canonicalizedBody: z.string(),
          }),
        )
        .readonly(),
    }),
    messageSignature: z.object({ messageDigest: z.object({ algorithm: z.literal('SHA2_256'), digest: z.string() }), signature: z.string() }).optional(),
    dsseEnvelope: DsseEnvelopeSchema.optional(),
  })
  .openapi('SigstoreBundle');

export const SignResponseSchema = z
  .object({
    keyId: z.string().openapi({ example: 'demo-release@1' }),
    keyName: z.string(),
    algorithm: z.enum(KEY_ALGORITHMS),
    format: z.enum(SIGNATURE_FORMATS),
    signature: z.string().openapi({
      description:
        'Base64. raw, dsse and sigstore-bundle: the signature (DER for ECDSA, raw for Ed25519 and RSA-PSS); cms: the DER ContentInfo (SignedData); pgp: the binary OpenPGP signature packet',
    }),
    digest: z.object({ algorithm: z.enum(DIGEST_ALGORITHMS), value: z.string() }),
    policy: z.object({ sha256: z.string() }),
    identity: z.object({ issuer: z.string(), subject: z.string() }),
    chain: z.array(z.string()).readonly().openapi({ description: "The key's certificate chain, PEM, leaf first (leaf, intermediate, root); empty if the key has no certificate" }),
    envelope: DsseEnvelopeSchema.optional().openapi({ description: 'dsse (and sigstore-bundle over a payload): the DSSE envelope' }),
    armored: z.string().optional().openapi({ description: 'pgp: the ASCII-armored detached signature' }),
    bundle: SigstoreBundleSchema.optional().openapi({ description: 'sigstore-bundle: the Sigstore bundle' }),
    log: z
      .object({
        index: z.number().int(),
        leafHash: z.string().openapi({ description: 'Base64 SHA-256(0x00 ‖ leaf)' }),
        treeSize: z.number().int(),
        rootHash: z.string(),
        inclusionProof: z.array(z.string()),
        checkpoint: z.string().openapi({ description: 'C2SP signed note the proof is against' }),
        integratedTime: z.number().int(),
        inclusionPromise: z.string().nullable().openapi({ description: 'Signed entry timestamp; made for Sigstore bundles only' }),
        decisionIndex: z.number().int().nullable(),
        leaf: z.string().openapi({ description: "Base64 of the signature entry's exact leaf bytes" }),
        decision: z
          .object({ index: z.number().int(), leaf: z.string(), inclusionProof: z.array(z.string()).readonly() })
          .nullable()
          .openapi({ description: 'The decision entry (signet.decision/v1) and its audit path in the same tree: the logged identity, checkable offline' }),
      })
      .openapi('LogReceipt'),
    requestId: z.string(),
  })
  .openapi('SignResponse');

const ReasonSchema = z.object({ code: z.string(), message: z.string() });

export const DryRunResponseSchema = z
  .object({
    dryRun: z.literal(true),
    allow: z.boolean(),
    reasons: z.array(ReasonSchema),
    keyId: z.string().optional(),
    policy: z.object({ sha256: z.string() }),
    requestId: z.string(),
  })
  .openapi('DryRunResponse');

export const KeySchema = z
  .object({
    keyId: z.string().openapi({ example: 'demo-release@1' }),
    name: z.string(),
    version: z.number().int(),
    algorithm: z.enum(KEY_ALGORITHMS),
    state: z.enum(KEY_STATES),
    publicKeyPem: z.string(),
    createdAt: z.string(),
    notBefore: z.string(),
    notAfter: z.string().nullable(),
    compromisedAt: z.string().nullable(),
  })
  .openapi('Key');

export const KeyListSchema = z.object({ keys: z.array(KeySchema) }).openapi('KeyList');

export const KeyIdParamSchema = z.object({
  keyId: z
    .string()
    .min(1)
    .max(80)
    .openapi({ param: { name: 'keyId', in: 'path' }, example: 'demo-release@1' }),
});

export const HealthSchema = z.object({ status: z.literal('ok') }).openapi('Health');

export const ReadinessSchema = z
  .object({
    status: z.enum(['ready', 'not-ready']),
    checks: z.record(z.string(), z.object({ ok: z.boolean(), error: z.string().optional() })),
    /** Certificates expiring within the warning window (ca/expiry.ts); informational. */
    certificates: z
      .object({
        windowDays: z.number().int(),
        expiring: z.array(
          z.object({
            role: z.enum(['root', 'intermediate', 'leaf']),
            id: z.string(),
            serialNumber: z.string(),
            keyId: z.string().nullable(),
            notAfter: z.string(),
            daysLeft: z.number().int(),
            expired: z.boolean(),
          }),
        ),
      })
      .optional(),
    /** Active signing keys near or past their project's maxKeyAgeDays (keyrotation/key-age.ts); informational. */
    keys: z
      .object({
        warningDays: z.number().int(),
        aging: z.array(
          z.object({
            keyId: z.string(),
            name: z.string(),
            projects: z.array(z.string()),
            activeSince: z.string(),
            maxKeyAgeDays: z.number().int(),
            daysLeft: z.number().int(),
            overdue: z.boolean(),
          }),
        ),
      })
      .optional(),
    /**
     * The policy in force and the one security officers approved (null before any
     * set-policy); informational. While `approved` is false, sign requests are refused
     * with POLICY_NOT_APPROVED.
     */
    policy: z.object({ sha256: z.string(), approvedSha256: z.string().nullable(), approved: z.boolean() }).optional(),
  })
  .openapi('Readiness');
