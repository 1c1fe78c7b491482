/**
 * The signing path, top to bottom (DESIGN.md, "The signing path"):
 *
 *   client identity (mTLS, checked by the HTTP layer) → digest → policy → key → HSM → answer
 *
 * Each step is behind a small interface so this file reads as the invariant it
 * enforces: nothing reaches the HSM unless the policy allowed this client, this key,
 * this digest algorithm and this format, and the key version is active.
 */
import { createHash } from 'node:crypto';
import { resolveKey, keyRef } from '../keyrotation/signing-keys.js';
import { KeyError } from '../keyrotation/errors.js';
import { parseKeyReference } from '../keyrotation/key-id.js';
import { decideSignRequest } from '../policy/evaluate.js';
import type { LoadedPolicy } from '../policy/load.js';
import { DIGEST_LENGTHS, type DigestAlgorithm, type KeyAlgorithm } from '../signer/algorithms.js';
import { IMPLEMENTED_FORMATS, type SignatureFormat } from '../signer/formats.js';
import type { HsmSigner } from '../signer/types.js';
import type { SignetStore } from '../store/store.js';
import { SignError } from './errors.js';

export interface ClientCertificateIdentity {
  /** Lowercase hex SHA-256 of the DER certificate. */
  readonly fingerprint: string;
  readonly subject: string;
  readonly issuer: string;
  readonly serialNumber: string;
}

export interface SignRequest {
  readonly project: string;
  readonly keyId: string | undefined;
  readonly format: SignatureFormat;
  /** Either a digest computed by the client … */
  readonly digest: { readonly algorithm: DigestAlgorithm; readonly value: Buffer } | undefined;
  /** … or the exact manifest bytes, hashed here (SHA-256 unless digestAlgorithm says otherwise). */
  readonly payload: Buffer | undefined;
  readonly payloadDigestAlgorithm: DigestAlgorithm | undefined;
}

export interface SignResult {
  readonly keyId: string;
  readonly keyName: string;
  readonly algorithm: KeyAlgorithm;
  readonly format: SignatureFormat;
  readonly digest: { readonly algorithm: DigestAlgorithm; readonly value: Buffer };
  readonly signature: Buffer;
  readonly policySha256: string;
}

export interface SignRequestDependencies {
  readonly hsm: HsmSigner;
  readonly store: SignetStore;
  /** The policy in force right now (reloadable, so read per request). */
  readonly currentPolicy: () => LoadedPolicy;
}

export async function signRequest(
  deps: SignRequestDependencies,
  client: ClientCertificateIdentity,
  request: SignRequest,
): Promise<SignResult> {
  const digest = requestDigest(request);

  // A version id names its key; the policy speaks of key names only.
  let requestedName: string | undefined;
  if (request.keyId !== undefined) {
    const reference = parseKeyReference(request.keyId);
    if (reference === null) throw new KeyError('KEY_ID_INVALID', 'keyId must be a key name or <name>@<version>');
    requestedName = reference.name;
  }

  const policy = deps.currentPolicy();
  const decision = decideSignRequest(policy.document, {
    project: request.project,
    keyName: requestedName,
    clientFingerprint: client.fingerprint,
    digestAlgorithm: digest.algorithm,
    format: request.format,
  });
  if (!decision.allow) {
    throw new SignError('POLICY_DENIED', 'the project policy does not allow this request', decision.reasons);
  }
  if (!IMPLEMENTED_FORMATS.has(request.format)) {
    throw new SignError('FORMAT_UNSUPPORTED', `format "${request.format}" is not supported by this service yet`);
  }

  const key = await resolveKey(deps.store, request.keyId ?? decision.keyName);
  if (key.state !== 'active') {
    throw new KeyError('KEY_NOT_ACTIVE', `key ${key.keyId} is ${key.state}; only active keys sign`);
  }

  const signature = await deps.hsm.signDigest(keyRef(key), digest);
  return {
    keyId: key.keyId,
    keyName: key.name,
    algorithm: key.algorithm,
    format: request.format,
    digest,
    signature,
    policySha256: policy.sha256,
  };
}

function requestDigest(request: SignRequest): { algorithm: DigestAlgorithm; value: Buffer } {
  if (request.digest !== undefined) {
    if (request.digest.value.length !== DIGEST_LENGTHS[request.digest.algorithm]) {
      throw new SignError('DIGEST_INVALID', `a ${request.digest.algorithm} digest is ${DIGEST_LENGTHS[request.digest.algorithm]} bytes`);
    }
    return request.digest;
  }
  if (request.payload !== undefined) {
    const algorithm = request.payloadDigestAlgorithm ?? 'sha256';
    return { algorithm, value: createHash(algorithm).update(request.payload).digest() };
  }
  throw new SignError('DIGEST_INVALID', 'a request carries a digest or a payload');
}
