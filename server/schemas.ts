/**
 * Request and response schemas of the HTTP API. The same schemas validate requests
 * and generate /openapi.json, so the document can never drift from the code.
 */
import { z } from '@hono/zod-openapi';
import { DIGEST_ALGORITHMS, KEY_ALGORITHMS } from '../signer/algorithms.js';
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

export const SignResponseSchema = z
  .object({
    keyId: z.string().openapi({ example: 'demo-release@1' }),
    keyName: z.string(),
    algorithm: z.enum(KEY_ALGORITHMS),
    format: z.enum(SIGNATURE_FORMATS),
    signature: z.string().openapi({ description: 'Base64: DER for ECDSA, raw for Ed25519 and RSA-PSS' }),
    digest: z.object({ algorithm: z.enum(DIGEST_ALGORITHMS), value: z.string() }),
    policy: z.object({ sha256: z.string() }),
    identity: z.object({ issuer: z.string(), subject: z.string() }),
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
  })
  .openapi('Readiness');
