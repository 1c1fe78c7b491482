/**
 * The Rekor `dsse` v0.0.1 entry body for a DSSE signature
 * (rekor pkg/types/dsse/v0.0.1: `envelopeHash`, `payloadHash`, `signatures[{signature,
 * verifier}]`), canonicalised like every log leaf (RFC 8785). It is the log leaf of a
 * DSSE signature, so Sigstore verifiers can match the bundle's envelope to the entry:
 * exactly one signature equal to the envelope's, and `payloadHash` = SHA-256 of the
 * payload (SIGSTORE-NOTES.md, "The log entry for a signature").
 *
 * `envelopeHash` is SHA-256 of the envelope's canonical JSON: Rekor hashes the envelope
 * as submitted, and Signet's submission is that canonical form. `verifier` is the base64
 * of the signing certificate (or public key) in PEM, as Rekor stores it.
 */
import { createHash } from 'node:crypto';
import { canonicalBytes } from '../log/canonical-json.js';
import type { DsseEnvelope } from './dsse.js';
import { FormatError } from './errors.js';

export const DSSE_REKOR_KIND = 'dsse/0.0.1';

export function dsseRekordLeaf(input: { readonly envelope: DsseEnvelope; readonly verifierPem: string }): Buffer {
  const { envelope } = input;
  const [signature, ...others] = envelope.signatures;
  if (signature === undefined || others.length > 0) throw new FormatError('FORMAT_INPUT_INVALID', 'a dsse log entry records exactly one signature');
  const envelopeBytes = canonicalBytes({
    payload: envelope.payload,
    payloadType: envelope.payloadType,
    signatures: envelope.signatures.map((s) => ({ keyid: s.keyid, sig: s.sig })),
  });
  const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
  return canonicalBytes({
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256(envelopeBytes) },
      payloadHash: { algorithm: 'sha256', value: sha256(Buffer.from(envelope.payload, 'base64')) },
      signatures: [{ signature: signature.sig, verifier: Buffer.from(input.verifierPem, 'utf8').toString('base64') }],
    },
  });
}
