/**
 * Checkpoints: the log's signed tree heads, in the C2SP `tlog-checkpoint` format inside
 * a C2SP `signed-note` (https://github.com/C2SP/C2SP, tlog-checkpoint.md and
 * signed-note.md), signed with an ECDSA P-256 key held in the HSM.
 *
 *   <origin>\n<tree size>\n<base64 root hash>\n      ← the note body (signed, final newline included)
 *   \n
 *   — <origin> <base64(key hint ‖ DER ECDSA signature)>\n
 *
 * The log id is SHA-256 of the log key's DER SubjectPublicKeyInfo; the 4-byte key hint
 * is its first 4 bytes (SIGSTORE-NOTES.md: Sigstore clients match it against the
 * trusted root's logId). The signature is ECDSA over SHA-256 of the body.
 */
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';

export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Buffer;
}

/** Signs a SHA-256 digest with the log key (in the HSM), returning a DER ECDSA signature. */
export type LogDigestSigner = (sha256Digest: Buffer) => Promise<Buffer>;

const ORIGIN = /^[A-Za-z0-9.\-/]{1,255}$/;
const SIGNATURE_LINE = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/;

export function assertValidOrigin(origin: string): void {
  if (!ORIGIN.test(origin)) throw new TypeError('log origin: letters, digits, ".", "/" and "-" only');
}

export function logIdOf(publicKeyPem: string): Buffer {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest();
}

export function checkpointBody(checkpoint: Checkpoint): string {
  assertValidOrigin(checkpoint.origin);
  if (!Number.isSafeInteger(checkpoint.size) || checkpoint.size < 0) throw new TypeError('checkpoint size must be a non-negative integer');
  if (checkpoint.rootHash.length !== 32) throw new TypeError('checkpoint root hash must be 32 bytes');
  return `${checkpoint.origin}\n${checkpoint.size}\n${checkpoint.rootHash.toString('base64')}\n`;
}

export async function signCheckpoint(checkpoint: Checkpoint, logId: Buffer, sign: LogDigestSigner): Promise<string> {
  const body = checkpointBody(checkpoint);
  const signature = await sign(createHash('sha256').update(body, 'utf8').digest());
  const blob = Buffer.concat([logId.subarray(0, 4), signature]).toString('base64');
  return `${body}\n\u2014 ${checkpoint.origin} ${blob}\n`;
}

export type CheckpointVerification =
  | { readonly ok: true; readonly checkpoint: Checkpoint }
  | { readonly ok: false; readonly reason: string };

/**
 * Parses and verifies a signed checkpoint note against the log's public key and origin.
 * Hostile input never throws: it yields a reason.
 */
export function verifyCheckpoint(note: string, origin: string, publicKey: KeyObject | string): CheckpointVerification {
  if (note.length > 65_536) return { ok: false, reason: 'the note is too large' };
  const split = note.indexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) return { ok: false, reason: 'the note is not a signed note' };
  const body = note.slice(0, split + 1);
  const lines = body.slice(0, -1).split('\n');
  if (lines.length < 3) return { ok: false, reason: 'the checkpoint has fewer than three lines' };
  const [noteOrigin, sizeText, rootText] = lines as [string, string, string];
  if (noteOrigin !== origin) return { ok: false, reason: 'the checkpoint is for another log origin' };
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText)) return { ok: false, reason: 'the checkpoint size is not a number' };
  const rootHash = Buffer.from(rootText, 'base64');
  if (rootHash.length !== 32 || rootHash.toString('base64') !== rootText) return { ok: false, reason: 'the checkpoint root is not a base64 SHA-256 hash' };
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
  const hint = createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest().subarray(0, 4);
  const signatureLines = note.slice(split + 2, -1).split('\n');
  for (const line of signatureLines) {
    const match = SIGNATURE_LINE.exec(line);
    if (match?.[1] !== origin) continue;
    const blob = Buffer.from(match[2] ?? '', 'base64');
    if (blob.length < 5 || !blob.subarray(0, 4).equals(hint)) continue;
    if (verify('sha256', Buffer.from(body, 'utf8'), key, blob.subarray(4))) {
      return { ok: true, checkpoint: { origin, size: Number(sizeText), rootHash } };
    }
    return { ok: false, reason: 'the checkpoint signature does not verify' };
  }
  return { ok: false, reason: 'the checkpoint carries no signature by the log key' };
}
