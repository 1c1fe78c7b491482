/**
 * The signing path, top to bottom (DESIGN.md, "The signing path"):
 *
 *   client certificate (mTLS, checked by the HTTP layer)
 *   → pipeline identity (OIDC id token)
 *   → digest (or the manifest, hashed here)
 *   → policy decision                 (a deny is logged, then refused)
 *   → the format possible with this key, payload and certificate (else refused, unlogged)
 *   ┌ single use of the token (an identical retry gets the first answer back)
 *   │ rate and usage limits           (past a limit: logged as a deny)
 *   └ decision entry in the transparency log, durable  ← audit first, fail closed
 *   → HSM, in the format asked        (service/sign-formats.ts: what is signed, which leaf)
 *   ┌ signature entry in the log, durable
 *   └ answer stored for retries
 *   → its receipt: inclusion proof and a checkpoint signed over durable entries, the
 *     decision entry proven in the same tree (and for Sigstore bundles the bundle)
 *
 * Each bracket is one atomic write: the durable writes of a request come in two
 * commit rounds, shared with concurrent requests by the store's group commit (a
 * checkpoint's own record joins a later one; the receipt does not wait for it). The
 * order is what makes it safe: the decision is durable before the HSM signs, the
 * signature entry before a checkpoint can cover it and before the answer is sent.
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
import { resolveKey } from '../keyrotation/signing-keys.js';
import { decideSignRequest, type ApplicableLimits, type DenyReason } from '../policy/evaluate.js';
import { PolicyError } from '../policy/errors.js';
import { isApprovedPolicy, type LoadedPolicy } from '../policy/load.js';
import { readManifestSource } from '../policy/manifest-binding.js';
import { IdentityError, type PipelineTokenVerifier, type VerifiedIdentity } from '../policy/oidc/types.js';
import { DIGEST_LENGTHS, type DigestAlgorithm, type KeyAlgorithm } from '../signer/algorithms.js';
import { IMPLEMENTED_FORMATS, type SignatureFormat } from '../signer/formats.js';
import type { HsmSigner } from '../signer/types.js';
import type { DsseEnvelope } from '../formats/dsse.js';
import type { SigstoreBundle } from '../formats/sigstore-bundle.js';
import { DECISION_KIND, decisionLeaf, type DecisionEntry } from '../log/entries.js';
import type { TransparencyLog } from '../log/transparency-log.js';
import type { CounterIncrement, CounterRepository, KeyVersionRecord, LogEntryInput, SignetStore, TokenUseRecord, TransactionOptions } from '../store/store.js';
import { SignError } from './errors.js';
import { checkFormatRequest, completeAnswer, signInFormat, signingChain, type FormatRequest, type SignReceipt } from './sign-formats.js';

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
  /** The key's certificate chain, PEM, leaf first (empty if the key has no certificate). */
  readonly chain: readonly string[];
  /** dsse (and sigstore-bundle over a payload): the DSSE envelope. */
  readonly envelope?: DsseEnvelope;
  /** pgp: the ASCII-armored signature. */
  readonly armored?: string;
  /** sigstore-bundle: the Sigstore bundle v0.3. */
  readonly bundle?: SigstoreBundle;
  /** The signature's log entry, with its inclusion proof, the signed checkpoint and the decision entry. */
  readonly log: SignReceipt;
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
  /** Whether an officer froze signing for this project or everything (keyrotation/freeze.ts). */
  readonly signingFrozen?: (project: string) => Promise<boolean>;
  /** The SHA-256 of the policy a quorum of officers approved (`set-policy`), or null if none was. */
  readonly approvedPolicySha256?: () => Promise<string | null>;
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
  // Once officers approved a policy, decisions are made under that policy only: if the
  // one in force is another (approved while it was loaded, or loaded before the
  // approval), nothing is decided or signed until the approved file is loaded.
  if (!isApprovedPolicy(policy.sha256, (await deps.approvedPolicySha256?.()) ?? null)) {
    throw new PolicyError('POLICY_NOT_APPROVED', 'the policy in force is not the one the security officers approved');
  }
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
    // The same checks as below, in the same order, minus what a dry run leaves alone
    // (the log, the token's single use, the limits): an allow means the request would
    // reach the HSM, and a request it could not sign is refused with the same error.
    const refused = (reasons: readonly DenyReason[]): DryRunAnswer => ({ dryRun: true, allow: false, reasons, keyId: undefined, policy: { sha256: policy.sha256 } });
    if (!decision.allow) return refused(decision.reasons);
    if ((await deps.signingFrozen?.(request.project)) === true) return refused([FROZEN]);
    const { key } = await signableRequest(deps.store, request, decision.keyName, digest, now);
    return { dryRun: true, allow: true, reasons: [], keyId: key.keyId, policy: { sha256: policy.sha256 } };
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
  // An officer's freeze stops signing before the HSM, whatever the policy says; logged as a deny.
  if ((await deps.signingFrozen?.(request.project)) === true) {
    await logDecision(audit('deny', [FROZEN], request.keyId ?? null));
    throw new SignError('SIGNING_FROZEN', 'signing is frozen for this project; officers must unfreeze it', [FROZEN]);
  }
  const { key, chain, formatRequest } = await signableRequest(deps.store, request, decision.keyName, digest, now);

  const requestHash = canonicalRequestHash(caller.client, request, digest);
  // The allow's leaf, made once: logged before the HSM signs, and carried in the answer.
  const allowLeaf = decisionLeaf(audit('allow', [], key.keyId));
  const start = await startSigning(deps, identity, requestHash, now, {
    limits: (counters) => consumeLimits(counters, request.project, identity, key.keyId, decision.limits, now),
    allowLeaf,
    deny: (reasons) => audit('deny', reasons, key.keyId),
  });
  if (start.kind === 'answered') return answerWithReceipt(deps, start.answer);
  if (start.kind === 'refused') throw start.refusal;
  const { decisionIndex } = start;

  // From here on the token is ours: any failure before the answer is stored releases
  // it so the same request can be retried, because nothing left the service.
  let stored: StoredAnswer;
  let leaf: Buffer;
  try {
    // Audit first: the allow is durable in the log before the HSM is asked to sign.
    const signed = await signInFormat(deps.hsm, formatRequest);
    leaf = signed.entry.leaf;
    // The signature entry and the answer (for retries) in one write: the answer is
    // stored exactly when its signature is durable in the log, and before anyone sees it.
    stored = await deps.store.transaction(async (tx) => {
      const [signatureIndex = -1] = await deps.log.appendIn(tx, [{ kind: signed.entry.kind, leaf: signed.entry.leaf, integratedTime, linkedIndex: decisionIndex }]);
      const answer: StoredAnswer = {
        keyId: key.keyId,
        keyName: key.name,
        algorithm: key.algorithm,
        format: request.format,
        signature: signed.signature.toString('base64'),
        digest: { algorithm: digest.algorithm, value: digest.value.toString('hex') },
        policy: { sha256: policy.sha256 },
        identity: { issuer: identity.issuer, subject: identity.subject },
        chain,
        ...signed.fields,
        log: { index: signatureIndex, decisionIndex, integratedTime },
      };
      await tx.tokenUses.complete(identity.issuer, identity.tokenId, requestHash, JSON.stringify(answer));
      return answer;
    }, SIGNING_TRANSACTION);
  } catch (error) {
    await deps.store.tokenUses.release(identity.issuer, identity.tokenId, requestHash).catch(() => undefined);
    throw error;
  }
  // The receipt proves the (durable) signature entry against a checkpoint signed after
  // it was committed. Should this fail, the token stays used: a retry gets the stored
  // signature and a new receipt, never a second signature.
  return answerWithReceipt(deps, stored, { leaf, decisionLeaf: allowLeaf, publicKeyPem: key.publicKeyPem });
}

const FROZEN: DenyReason = Object.freeze({ code: 'SIGNING_FROZEN', message: 'signing is frozen for this project by a security officer' });

/**
 * What must hold before anything is written for an allowed request: the format is
 * implemented, the key version exists and is active, and the format is possible with
 * this key, payload and certificate (service/sign-formats.ts). Shared by dry runs.
 */
async function signableRequest(
  store: SignetStore,
  request: SignRequest,
  keyName: string,
  digest: { readonly algorithm: DigestAlgorithm; readonly value: Buffer },
  now: Date,
): Promise<{ key: KeyVersionRecord; chain: string[]; formatRequest: FormatRequest }> {
  if (!IMPLEMENTED_FORMATS.has(request.format)) {
    throw new SignError('FORMAT_UNSUPPORTED', `format "${request.format}" is not supported by this service yet`);
  }
  const key = await resolveKey(store, request.keyId ?? keyName);
  if (key.state !== 'active') {
    throw new KeyError('KEY_NOT_ACTIVE', `key ${key.keyId} is ${key.state}; only active keys sign`);
  }
  const chain = await signingChain(store, key.keyId, now);
  const formatRequest: FormatRequest = { format: request.format, key, digest, payload: request.payload, chain, signingTime: now };
  checkFormatRequest(formatRequest);
  return { key, chain, formatRequest };
}

/**
 * The answer as stored for retries: everything but the receipt, which names the
 * signature's log entry instead. A receipt is a proof against some checkpoint that
 * covers the entry; a retry gets the same signature and entry with a proof against
 * the newest checkpoint.
 */
type StoredAnswer = Omit<SignAnswer, 'log' | 'bundle'> & {
  readonly log: { readonly index: number; readonly decisionIndex: number | null; readonly integratedTime: number };
};

/**
 * The stored answer with its receipt (and, for a Sigstore bundle, the bundle around
 * it). `known`: the leaves and key when at hand (else read back from the log).
 */
async function answerWithReceipt(
  deps: SignRequestDependencies,
  stored: StoredAnswer,
  known?: { readonly leaf: Buffer; readonly decisionLeaf: Buffer; readonly publicKeyPem: string },
): Promise<SignAnswer> {
  const completed = await completeAnswer({ log: deps.log, answer: stored, entry: stored.log, ...(known === undefined ? {} : { known }) });
  return { ...stored, ...completed };
}

/**
 * The two transactions of the signing path act only through their handle (a claim,
 * consumes, appends, a completion: nothing else, no state of their own), so storage
 * may run those begun at once together and run one again if it must (store.ts).
 */
export const SIGNING_TRANSACTION: TransactionOptions = { concurrent: true };

type SigningStart =
  /** The token was claimed, the limits consumed and the allow logged, in one commit. */
  | { readonly kind: 'started'; readonly decisionIndex: number }
  /** An identical earlier request with this token was answered: its answer. */
  | { readonly kind: 'answered'; readonly answer: StoredAnswer }
  /** A limit refused the request: the deny is logged, the token and the limits untouched. */
  | { readonly kind: 'refused'; readonly refusal: SignError };

/**
 * One atomic write before the HSM: claims the token's single use, consumes the rate
 * and usage limits, and appends the decision entry. All of it commits together or
 * none of it does, so a logged allow always owns its token and its limits, and a
 * request that fails here has consumed nothing. A token already used returns the
 * stored answer of an identical earlier request, or TOKEN_REPLAYED; an identical
 * request still in progress (a CI retry racing the original) is waited for.
 */
async function startSigning(
  deps: SignRequestDependencies,
  identity: VerifiedIdentity,
  requestHash: string,
  now: Date,
  decision: {
    readonly limits: (counters: CounterRepository) => Promise<SignError | undefined>;
    /** The allow decision's leaf (log/entries.ts decisionLeaf). */
    readonly allowLeaf: Buffer;
    readonly deny: (reasons: readonly DenyReason[]) => DecisionEntry;
  },
): Promise<SigningStart> {
  const use = {
    issuer: identity.issuer,
    tokenId: identity.tokenId,
    requestHash,
    createdAt: now.toISOString(),
    expiresAt: new Date((identity.expiresAt + deps.tokenLeewaySeconds) * 1000).toISOString(),
  };
  const integratedTime = Math.floor(now.getTime() / 1000);
  const entry = (leaf: Buffer): LogEntryInput => ({ kind: DECISION_KIND, leaf, integratedTime, linkedIndex: null });
  const deadline = Date.now() + (deps.retryWaitMs ?? 15_000);
  for (;;) {
    const outcome = await deps.store.transaction(async (tx): Promise<SigningStart | { readonly kind: 'used'; readonly record: TokenUseRecord }> => {
      const claim = await tx.tokenUses.claim(use);
      if (claim.kind === 'used') return claim;
      const refusal = await decision.limits(tx.counters);
      if (refusal !== undefined) {
        // A refused request keeps neither the token nor a limit; its refusal is logged.
        await tx.tokenUses.release(use.issuer, use.tokenId, use.requestHash);
        await deps.log.appendIn(tx, [entry(decisionLeaf(decision.deny(refusal.reasons)))]);
        return { kind: 'refused', refusal };
      }
      const [decisionIndex = -1] = await deps.log.appendIn(tx, [entry(decision.allowLeaf)]);
      return { kind: 'started', decisionIndex };
    }, SIGNING_TRANSACTION);
    if (outcome.kind !== 'used') return outcome;
    const record = outcome.record;
    if (record.requestHash !== requestHash) {
      throw new IdentityError('TOKEN_REPLAYED', 'this id token was already used for a different request');
    }
    if (record.state === 'done' && record.response !== null) return { kind: 'answered', answer: JSON.parse(record.response) as StoredAnswer };
    if (Date.now() >= deadline) {
      throw new SignError('TOKEN_IN_USE', 'an identical request with this token is still in progress; retry later');
    }
    // Pending: poll (works across replicas sharing the database). If the first request
    // fails and releases the token, the next claim succeeds and this request signs.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function consumeLimits(
  counters: CounterRepository,
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
  const outcome = await counters.consume(increments);
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
