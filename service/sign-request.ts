/**
 * The signing path, top to bottom (DESIGN.md, "The signing path"):
 *
 *   client certificate (mTLS, checked by the HTTP layer)
 *   → pipeline identity (OIDC id token)
 *   → digest (or the manifest, hashed here)
 *   → policy decision                 (a deny is logged, then refused)
 *   → single use of the token (an identical retry gets the first answer back)
 *   → rate and usage limits           (past a limit: logged as a deny)
 *   → decision entry in the transparency log, durable  ← audit first, fail closed
 *   → HSM
 *   → signature entry in the log, durable, and its receipt (proof + checkpoint)
 *   → answer (stored for retries)
 *
 * Each step is behind a small interface so this file reads as the invariant it
 * enforces: nothing reaches the HSM unless the client, the pipeline identity, the key,
 * the digest algorithm and the format are allowed, the token was not used for another
 * request, the limits hold, the key version is active, and the decision is in the log;
 * no signature leaves unless its log entry is durable. A refused request consumes
 * neither the token nor a limit.
 */
import { createHash } from 'node:crypto';
import { KeyError } from '../keyrotation/errors.js';
import { parseKeyReference } from '../keyrotation/key-id.js';
import { keyRef, resolveKey } from '../keyrotation/signing-keys.js';
import { decideSignRequest, type ApplicableLimits, type DenyReason } from '../policy/evaluate.js';
import type { LoadedPolicy } from '../policy/load.js';
import { readManifestSource } from '../policy/manifest-binding.js';
import { IdentityError, type PipelineTokenVerifier, type VerifiedIdentity } from '../policy/oidc/types.js';
import { DIGEST_LENGTHS, type DigestAlgorithm, type KeyAlgorithm } from '../signer/algorithms.js';
import { IMPLEMENTED_FORMATS, type SignatureFormat } from '../signer/formats.js';
import type { HsmSigner } from '../signer/types.js';
import { DECISION_KIND, decisionLeaf, HASHEDREKORD_KIND, hashedRekordLeaf, type DecisionEntry } from '../log/entries.js';
import type { LogReceipt, TransparencyLog } from '../log/transparency-log.js';
import type { CounterIncrement, SignetStore, TokenUseRecord } from '../store/store.js';
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
  /** Decide and explain without signing or consuming the token. */
  readonly dryRun: boolean;
}

/** The answer to a signing request, JSON-safe: stored as is for identical retries. */
export interface SignAnswer {
  readonly keyId: string;
  readonly keyName: string;
  readonly algorithm: KeyAlgorithm;
  readonly format: SignatureFormat;
  /** Base64. */
  readonly signature: string;
  readonly digest: { readonly algorithm: DigestAlgorithm; readonly value: string };
  readonly policy: { readonly sha256: string };
  readonly identity: { readonly issuer: string; readonly subject: string };
  /** The signature's log entry, with its inclusion proof and the signed checkpoint. */
  readonly log: LogReceipt;
}

export interface DryRunAnswer {
  readonly dryRun: true;
  readonly allow: boolean;
  readonly reasons: readonly DenyReason[];
  /** The key version that would sign, when allowed. */
  readonly keyId: string | undefined;
  readonly policy: { readonly sha256: string };
}

export interface SignRequestDependencies {
  readonly hsm: HsmSigner;
  readonly store: SignetStore;
  /** The policy in force right now (reloadable, so read per request). */
  readonly currentPolicy: () => LoadedPolicy;
  readonly tokens: PipelineTokenVerifier;
  readonly now: () => Date;
  /** Token uses are kept until the token's `exp` plus this leeway. */
  readonly tokenLeewaySeconds: number;
  /** How long an identical retry waits for the first request with its token to finish. */
  readonly retryWaitMs?: number;
  readonly log: TransparencyLog;
  /** The claims of an identity worth keeping in the log (strings only; never the token). */
  readonly summarizeIdentity: (identity: VerifiedIdentity) => Readonly<Record<string, string>>;
}

export interface SignCaller {
  readonly requestId: string;
  readonly client: ClientCertificateIdentity;
  /** The bearer token as sent, or undefined. Never logged, never echoed. */
  readonly bearerToken: string | undefined;
}

export async function signRequest(deps: SignRequestDependencies, caller: SignCaller, request: SignRequest): Promise<SignAnswer | DryRunAnswer> {
  if (caller.bearerToken === undefined || caller.bearerToken === '') {
    throw new IdentityError('TOKEN_MISSING', 'a pipeline id token is required (Authorization: Bearer)');
  }
  const identity = await deps.tokens.verify(caller.bearerToken);
  const digest = requestDigest(request);

  // A version id names its key; the policy speaks of key names only.
  let requestedName: string | undefined;
  if (request.keyId !== undefined) {
    const reference = parseKeyReference(request.keyId);
    if (reference === null) throw new KeyError('KEY_ID_INVALID', 'keyId must be a key name or <name>@<version>');
    requestedName = reference.name;
  }

  const policy = deps.currentPolicy();
  const now = deps.now();
  const decision = decideSignRequest(policy.document, {
    project: request.project,
    keyName: requestedName,
    clientFingerprint: caller.client.fingerprint,
    clientSubject: caller.client.subject,
    clientIssuer: caller.client.issuer,
    identity: { issuerName: identity.issuerName, claims: identity.claims },
    digestAlgorithm: digest.algorithm,
    format: request.format,
    manifest: request.payload === undefined ? undefined : readManifestSource(request.payload),
    now,
  });

  if (request.dryRun) {
    const keyId = decision.allow ? (await resolveKey(deps.store, request.keyId ?? decision.keyName)).keyId : undefined;
    return { dryRun: true, allow: decision.allow, reasons: decision.reasons, keyId, policy: { sha256: policy.sha256 } };
  }
  const audit = (outcome: 'allow' | 'deny', reasons: readonly DenyReason[], keyId: string | null): DecisionEntry => ({
    decision: outcome,
    reasons,
    requestId: caller.requestId,
    project: request.project,
    keyId,
    format: request.format,
    digest: { algorithm: digest.algorithm, value: digest.value.toString('hex') },
    manifest: request.payload !== undefined,
    identity: { issuer: identity.issuer, subject: identity.subject, claims: deps.summarizeIdentity(identity) },
    client: { fingerprint: caller.client.fingerprint, subject: caller.client.subject, issuer: caller.client.issuer },
    policySha256: policy.sha256,
    time: now.toISOString(),
  });
  const integratedTime = Math.floor(now.getTime() / 1000);
  const logDecision = (entry: DecisionEntry): Promise<number[]> =>
    deps.log.append([{ kind: DECISION_KIND, leaf: decisionLeaf(entry), integratedTime, linkedIndex: null }]);

  if (!decision.allow) {
    await logDecision(audit('deny', decision.reasons, request.keyId ?? null));
    throw new SignError('POLICY_DENIED', 'the project policy does not allow this request', decision.reasons);
  }
  if (!IMPLEMENTED_FORMATS.has(request.format)) {
    throw new SignError('FORMAT_UNSUPPORTED', `format "${request.format}" is not supported by this service yet`);
  }
  const key = await resolveKey(deps.store, request.keyId ?? decision.keyName);
  if (key.state !== 'active') {
    throw new KeyError('KEY_NOT_ACTIVE', `key ${key.keyId} is ${key.state}; only active keys sign`);
  }

  const requestHash = canonicalRequestHash(caller.client, request, digest);
  const firstUse = await claimToken(deps, identity, requestHash, now);
  if (firstUse !== undefined) return firstUse;

  // From here on the token is ours: any failure releases it so the same request can
  // be retried, because nothing was signed.
  let answer: SignAnswer;
  try {
    const refusal = await consumeLimits(deps, request.project, identity, key.keyId, decision.limits, now);
    if (refusal !== undefined) {
      await logDecision(audit('deny', refusal.reasons, key.keyId));
      throw refusal;
    }
    // Audit first: the allow is durable in the log before the HSM is asked to sign.
    const [decisionIndex = -1] = await logDecision(audit('allow', [], key.keyId));
    const signature = await deps.hsm.signDigest(keyRef(key), digest);
    const signatureBase64 = signature.toString('base64');
    const hexDigest = digest.value.toString('hex');
    // And the signature is durable in the log before anyone sees it.
    const [signatureIndex = -1] = await deps.log.append([
      {
        kind: HASHEDREKORD_KIND,
        leaf: hashedRekordLeaf({ digest: { algorithm: digest.algorithm, value: hexDigest }, signatureBase64, publicKeyPem: key.publicKeyPem }),
        integratedTime,
        linkedIndex: decisionIndex,
      },
    ]);
    const receipt = await deps.log.receipt(signatureIndex, { decisionIndex, integratedTime });
    answer = {
      keyId: key.keyId,
      keyName: key.name,
      algorithm: key.algorithm,
      format: request.format,
      signature: signatureBase64,
      digest: { algorithm: digest.algorithm, value: hexDigest },
      policy: { sha256: policy.sha256 },
      identity: { issuer: identity.issuer, subject: identity.subject },
      log: receipt,
    };
  } catch (error) {
    await deps.store.tokenUses.release(identity.issuer, identity.tokenId, requestHash).catch(() => undefined);
    throw error;
  }
  // The answer is stored before it is sent, so a retry after a lost response gets the
  // same signature rather than a second one. If it cannot be stored, it is not sent.
  try {
    await deps.store.tokenUses.complete(identity.issuer, identity.tokenId, requestHash, JSON.stringify(answer));
  } catch (error) {
    await deps.store.tokenUses.release(identity.issuer, identity.tokenId, requestHash).catch(() => undefined);
    throw error;
  }
  return answer;
}

/**
 * Records the token's first use, or returns the stored answer of an identical earlier
 * request. A token already used for a different request is refused (TOKEN_REPLAYED).
 * An identical request still in progress (a CI retry racing the original) is waited for.
 */
async function claimToken(deps: SignRequestDependencies, identity: VerifiedIdentity, requestHash: string, now: Date): Promise<SignAnswer | undefined> {
  const use = {
    issuer: identity.issuer,
    tokenId: identity.tokenId,
    requestHash,
    createdAt: now.toISOString(),
    expiresAt: new Date((identity.expiresAt + deps.tokenLeewaySeconds) * 1000).toISOString(),
  };
  const deadline = Date.now() + (deps.retryWaitMs ?? 15_000);
  for (;;) {
    const outcome = await deps.store.tokenUses.claim(use);
    if (outcome.kind === 'claimed') return undefined;
    const record: TokenUseRecord = outcome.record;
    if (record.requestHash !== requestHash) {
      throw new IdentityError('TOKEN_REPLAYED', 'this id token was already used for a different request');
    }
    if (record.state === 'done' && record.response !== null) return JSON.parse(record.response) as SignAnswer;
    if (Date.now() >= deadline) {
      throw new SignError('TOKEN_IN_USE', 'an identical request with this token is still in progress; retry later');
    }
    // Pending: poll (works across replicas sharing the database). If the first request
    // fails and releases the token, the next claim succeeds and this request signs.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function consumeLimits(
  deps: SignRequestDependencies,
  project: string,
  identity: VerifiedIdentity,
  keyId: string,
  limits: ApplicableLimits,
  now: Date,
): Promise<SignError | undefined> {
  const minute = now.toISOString().slice(0, 16);
  const increments: CounterIncrement[] = [];
  if (limits.projectPerMinute !== undefined) increments.push({ counter: `rate:project:${project}`, window: minute, limit: limits.projectPerMinute });
  if (limits.identityPerMinute !== undefined) {
    const who = createHash('sha256').update(`${identity.issuer}\n${identity.subject}`).digest('hex').slice(0, 32);
    increments.push({ counter: `rate:identity:${project}:${who}`, window: minute, limit: limits.identityPerMinute });
  }
  if (limits.keyUsage !== undefined) increments.push({ counter: `usage:key:${project}:${keyId}`, window: 'total', limit: limits.keyUsage });
  if (increments.length === 0) return undefined;
  const outcome = await deps.store.counters.consume(increments);
  if (outcome.allowed) return undefined;
  const reasons: DenyReason[] = outcome.exceeded.map((counter) =>
    counter.startsWith('usage:')
      ? { code: 'USAGE_LIMIT_REACHED', message: `key ${keyId} reached its usage limit for this project` }
      : { code: 'RATE_LIMITED', message: counter.startsWith('rate:project:') ? 'the project signing rate limit is reached' : 'the signing rate limit of this pipeline identity is reached' },
  );
  if (reasons.every((r) => r.code === 'RATE_LIMITED')) return new SignError('RATE_LIMITED', 'rate limit reached; retry in the next minute', reasons);
  return new SignError('POLICY_DENIED', 'the project policy does not allow this request', reasons);
}

/**
 * What makes two requests "identical" for a token's single use: the client, the
 * project, the key asked for, the format and the exact digest (a payload is bound
 * through its digest).
 */
function canonicalRequestHash(client: ClientCertificateIdentity, request: SignRequest, digest: { algorithm: DigestAlgorithm; value: Buffer }): string {
  const canonical = JSON.stringify([client.fingerprint, request.project, request.keyId ?? null, request.format, digest.algorithm, digest.value.toString('hex'), request.payload !== undefined]);
  return createHash('sha256').update(canonical).digest('hex');
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
