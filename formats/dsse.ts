/**
 * DSSE, the Dead Simple Signing Envelope v1
 * (https://github.com/secure-systems-lab/dsse/blob/master/protocol.md and envelope.md).
 *
 *   SIGNATURE = Sign(PAE(UTF8(PAYLOAD_TYPE), SERIALIZED_BODY))
 *   PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
 *   LEN(s) = ASCII decimal byte length of s, no leading zeros
 *
 * Only the framing is here. The HSM signs the PAE bytes (hsm.signMessage(key, pae,
 * dsseSigningHash(algorithm))), and the envelope is then assembled around the signature
 * it returned. Pure: no I/O, no keys.
 */
import { z } from 'zod';
import { FormatError } from './errors.js';

/** The payload type of an in-toto Statement (https://github.com/in-toto/attestation/blob/main/spec/v1/envelope.md). */
export const DSSE_IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

/** The JSON envelope (envelope.md): payload and sig are base64 (standard alphabet, padded). */
export interface DsseEnvelope {
  readonly payloadType: string;
  readonly payload: string;
  readonly signatures: readonly { readonly keyid: string; readonly sig: string }[];
}

export interface DsseSignature {
  /** An unauthenticated hint naming the key (Signet puts its keyId here). */
  readonly keyid: string;
  /** The signature bytes as the HSM made them: DER for ECDSA, raw for Ed25519 and RSA-PSS. */
  readonly sig: Buffer;
}

/** The exact bytes a DSSE signature covers. */
export function preAuthenticationEncoding(payloadType: string, payload: Buffer): Buffer {
  if (payloadType === '') throw new FormatError('FORMAT_INPUT_INVALID', 'a DSSE payload type must not be empty');
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `, 'ascii'), type, Buffer.from(` ${payload.length} `, 'ascii'), payload]);
}

/** Assembles the JSON envelope around the signatures made over preAuthenticationEncoding(payloadType, payload). */
export function buildDsseEnvelope(payloadType: string, payload: Buffer, signatures: readonly DsseSignature[]): DsseEnvelope {
  if (payloadType === '') throw new FormatError('FORMAT_INPUT_INVALID', 'a DSSE payload type must not be empty');
  if (signatures.length === 0) throw new FormatError('FORMAT_INPUT_INVALID', 'a DSSE envelope needs at least one signature');
  for (const signature of signatures) {
    if (signature.sig.length === 0) throw new FormatError('FORMAT_INPUT_INVALID', 'a DSSE signature must not be empty');
  }
  return {
    payloadType,
    payload: payload.toString('base64'),
    signatures: signatures.map((s) => ({ keyid: s.keyid, sig: s.sig.toString('base64') })),
  };
}

/**
 * Standard or URL-safe base64 (envelope.md allows either), padding optional. One
 * character class, no alternation: `(?:[A-Za-z0-9+/]|[A-Za-z0-9_-])*` backtracks
 * exponentially on a long payload with one bad character (a verifier hang).
 */
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/**
 * The bytes of canonical base64, or null: the text must be what encoding its bytes
 * gives (in its alphabet, padded or not). Unused bits set in the last character
 * (RFC 4648, section 3.5), or padding of the wrong length, would let two texts stand
 * for one envelope.
 */
function decodeCanonicalBase64(text: string): Buffer | null {
  const standard = text.replace(/-/g, '+').replace(/_/g, '/');
  if (standard.includes('=') && standard.length % 4 !== 0) return null;
  const bytes = Buffer.from(standard, 'base64');
  return bytes.toString('base64').replace(/=+$/, '') === standard.replace(/=+$/, '') ? bytes : null;
}

/** A base64 field of at most `max` characters, decoded once, here. */
function base64Bytes(min: number, max: number): z.ZodType<Buffer, string> {
  return z
    .string()
    .min(min)
    .max(max)
    .regex(BASE64, 'base64')
    .transform((text, context) => {
      const bytes = decodeCanonicalBase64(text);
      if (bytes !== null) return bytes;
      context.addIssue({ code: 'custom', message: 'canonical base64' });
      return z.NEVER;
    });
}

const envelopeSchema = z.object({
  payloadType: z.string().min(1).max(1024),
  payload: base64Bytes(0, 64 * 1024 * 1024),
  signatures: z
    .array(z.object({ keyid: z.string().max(1024).optional(), sig: base64Bytes(1, 65_536) }))
    .min(1)
    .max(64),
});

export interface ParsedDsseEnvelope {
  readonly payloadType: string;
  readonly payload: Buffer;
  readonly signatures: readonly DsseSignature[];
}

/**
 * Reads an envelope (untrusted input: a verifier's entry point). Unknown fields are
 * ignored as envelope.md requires; an unset keyid reads as "".
 */
export function parseDsseEnvelope(document: unknown): ParsedDsseEnvelope {
  const result = envelopeSchema.safeParse(document);
  if (!result.success) {
    const where = result.error.issues.map((i) => i.path.join('.') || '(envelope)').join(', ');
    throw new FormatError('FORMAT_INPUT_INVALID', `not a DSSE envelope (${where})`);
  }
  const envelope = result.data;
  return {
    payloadType: envelope.payloadType,
    payload: envelope.payload,
    signatures: envelope.signatures.map((s) => ({ keyid: s.keyid ?? '', sig: s.sig })),
  };
}
