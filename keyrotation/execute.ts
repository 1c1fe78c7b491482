/**
 * Carrying out a proposal whose quorum is met (keyrotation/proposals.ts decides that;
 * this module does the I/O).
 *
 * Every execution ends in ONE storage transaction that re-reads the proposal, the
 * governance and the keys, checks again that the proposal is executable, writes every
 * change (key states with their validity windows, officers, revocations, quorum,
 * freezes), closes the proposal and appends the `executed` log entry. Either all of it
 * commits or none of it does; closing is a compare-and-set, so a proposal executes once
 * even when two replicas try at the same moment.
 *
 * A rotation needs work outside storage first, each step safe to repeat, all under the
 * proposal's execution lease (execution-lease.ts: one execution at a time across
 * replicas; an earlier attempt whose process died is recorded `execution-interrupted`):
 *   1. `execution-started` is logged;
 *   2. the new version is generated in the HSM and recorded `pending` (with a
 *      `key-generated` entry), or the pending version a failed earlier attempt left is
 *      reused;
 *   3. the code-signing CA issues its leaf certificate (ca/authority.ts);
 *   4. the final transaction makes it `active` and the old version `verify-only`.
 * A failure (or a crash) anywhere before 4 commits leaves the old version active, the
 * new one at most `pending` (it never signs) and the proposal open, so executing again
 * resumes. A key pair generated in the HSM whose record could not be written stays in
 * the token unused; that is logged with its label. The failpoints after steps 1, 2 and
 * 3 (`ROTATION_FAILPOINTS`, armed only by crash tests) kill the process there.
 *
 * A compromise first revokes the version's certificates (CRL, reason keyCompromise),
 * which is idempotent, then records the compromised state. Times are whole seconds,
 * the log's resolution, so the transition time of an execution is exactly the
 * `integratedTime` of its entry.
 */
import { randomBytes } from 'node:crypto';
import type { HsmKeyStore } from '../signer/types.js';
import type { KeyVersionRecord, RevocationReason, SignetStore, StoreTransaction } from '../store/store.js';
import { isStoreError } from '../store/errors.js';
import { isSignetError } from '../errors/signet-error.js';
import { RotationError, rotationErrorFrom } from './errors.js';
import { EXECUTION_LEASE_MS, leftoverPendingVersion, takeExecution, type ExecutionLeaseContext, type HeldExecution } from './execution-lease.js';
import { GovernanceError } from './governance-errors.js';
import { formatKeyId } from './key-id.js';
import { wholeSeconds } from './lifecycle.js';
import { governanceEntry, type KeyVersionChange } from './log-entries.js';
import { loadGovernance } from './officers.js';
import { checkExecution, keyVersionsAfter, rotationAlgorithm, type ProposalRecord, type QuorumStatus } from './proposals.js';

export interface GovernanceLogger {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

/** What execution needs of the code-signing CA (ca/authority.ts, `CertificateAuthority`). */
export interface KeyCertificates {
  issueLeaf(keyId: string): Promise<unknown>;
  revokeKey(keyId: string, reason: RevocationReason): Promise<unknown>;
}

/**
 * Named points of a rotation's execution where a crash test kills the process
 * (service/failpoints.ts): after `execution-started` is durable, after the pending
 * version is recorded (its key pair in the HSM, its row in storage), and after its
 * certificate is issued, before the commit.
 */
export const ROTATION_FAILPOINTS = ['rotation.after-start', 'rotation.after-generate', 'rotation.after-certificate'] as const;
export type RotationFailpoint = (typeof ROTATION_FAILPOINTS)[number];

export interface ExecutionContext {
  readonly store: SignetStore;
  readonly hsm: Pick<HsmKeyStore, 'generateKeyPair' | 'hasKeyPair'>;
  readonly ca: KeyCertificates;
  readonly logger: GovernanceLogger;
  /** The transparency log's key: never acted on by proposals. */
  readonly logKeyName: string;
  readonly now: () => Date;
  /** This process's holder name for execution leases (default: one made for the process). */
  readonly executionHolder?: string;
  /** How long an execution lease outlives its last renewal (default `EXECUTION_LEASE_MS`; tests shorten it). */
  readonly executionLeaseMs?: number;
  /** Called at each named point of a rotation; crash tests only (service/failpoints.ts). */
  readonly failpoint?: (name: RotationFailpoint) => void;
}

/** The holder name of this process's executions when the wiring names none. */
const PROCESS_HOLDER = `signet-execution:${process.pid}:${randomBytes(6).toString('hex')}`;

export function executionLeaseContext(context: ExecutionContext): ExecutionLeaseContext {
  return {
    store: context.store,
    logger: context.logger,
    now: context.now,
    holder: context.executionHolder ?? PROCESS_HOLDER,
    leaseMs: context.executionLeaseMs ?? EXECUTION_LEASE_MS,
  };
}

export interface ExecutionResult {
  readonly proposal: ProposalRecord;
  readonly quorum: QuorumStatus;
  /** Key versions the execution changed, as stored. */
  readonly keys: readonly KeyVersionRecord[];
}

/** The key name a key action touches, or null. */
export function keyNameOf(proposal: ProposalRecord): string | null {
  const { action } = proposal.content;
  switch (action.type) {
    case 'rotate-key':
      return action.key;
    case 'retire-key':
    case 'compromise-key':
      return action.keyId.split('@')[0] ?? null;
    case 'revoke-certificate':
    case 'add-officer':
    case 'remove-officer':
    case 'set-quorum':
    case 'set-policy':
    case 'freeze':
    case 'unfreeze':
      return null;
  }
}

/**
 * Executes proposal `id` on behalf of officer `by` (whose certificate the caller has
 * checked). Throws RotationError with the core's refusal code when it is not executable,
 * PROPOSAL_NOT_FOUND, or the adapters' errors when a step fails (the proposal then
 * stays open).
 */
export async function executeProposal(context: ExecutionContext, id: string, by: string): Promise<ExecutionResult> {
  const proposal = await context.store.governance.getProposal(id);
  if (proposal === null) throw new GovernanceError('PROPOSAL_NOT_FOUND', `no proposal ${id}`);
  if (keyNameOf(proposal) === context.logKeyName) {
    throw new GovernanceError('LOG_KEY_RESERVED', 'the transparency log key is not changed by proposals');
  }
  const { governance } = await loadGovernance(context.store.governance);
  const keys = await context.store.keys.list();
  const check = checkExecution(proposal, { governance, keys, now: context.now() });
  if (check.kind === 'refused') throw rotationErrorFrom(check);

  const action = proposal.content.action;
  if (action.type === 'rotate-key') return executeRotation(context, proposal, by);
  if (action.type !== 'compromise-key') return commit(context, proposal, by);
  try {
    await revokeCertificatesOf(context, action.keyId);
    return await commit(context, proposal, by);
  } catch (error) {
    await logFailure(context, id, error);
    throw error;
  }
}

/** Steps 1 to 4 of the header, under the proposal's execution lease. */
async function executeRotation(context: ExecutionContext, checked: ProposalRecord, by: string): Promise<ExecutionResult> {
  const id = checked.content.id;
  const held: HeldExecution = await takeExecution(executionLeaseContext(context), checked);
  try {
    // Read again under the lease: another replica may have executed it, or left a pending version, meanwhile.
    const proposal = await context.store.governance.getProposal(id);
    if (proposal === null) throw new GovernanceError('PROPOSAL_NOT_FOUND', `no proposal ${id}`);
    const { governance } = await loadGovernance(context.store.governance);
    const keys = await context.store.keys.list();
    const check = checkExecution(proposal, { governance, keys, now: context.now() });
    if (check.kind === 'refused') throw rotationErrorFrom(check);
    try {
      await appendEntry(context, { event: 'execution-started', proposalId: id, action: 'rotate-key', by, time: context.now().toISOString() });
      context.failpoint?.('rotation.after-start');
      held.assertHeld();
      const generated = await pendingVersion(context, proposal, keys);
      context.failpoint?.('rotation.after-generate');
      held.assertHeld();
      await ensureCertificate(context, generated.keyId);
      context.failpoint?.('rotation.after-certificate');
      held.assertHeld();
      return await commit(context, proposal, by, generated);
    } catch (error) {
      await logFailure(context, id, error);
      throw error;
    }
  } finally {
    await held.release();
  }
}

/** `execution-failed` for an execution that stopped (best effort: the error itself is what the caller gets). */
async function logFailure(context: ExecutionContext, id: string, error: unknown): Promise<void> {
  const code = isSignetError(error) ? error.code : 'INTERNAL';
  context.logger.warn({ err: error, proposalId: id, code }, 'proposal execution failed; the proposal stays open');
  await appendEntry(context, { event: 'execution-failed', proposalId: id, code, time: context.now().toISOString() }).catch((logError: unknown) => {
    context.logger.error({ err: logError, proposalId: id }, 'could not log the failed execution');
  });
}

async function appendEntry(context: ExecutionContext, event: Parameters<typeof governanceEntry>[0]): Promise<void> {
  await context.store.transaction(async (tx) => {
    await tx.log.append([governanceEntry(event, wholeSeconds(context.now()))]);
  });
}

/** The pending version a rotation activates: one a failed attempt left, or a new one generated now. */
async function pendingVersion(context: ExecutionContext, proposal: ProposalRecord, keys: readonly KeyVersionRecord[]): Promise<KeyVersionRecord> {
  const { action } = proposal.content;
  if (action.type !== 'rotate-key') throw new TypeError('not a rotation');
  const algorithm = rotationAlgorithm(proposal, keys);
  const newest = keys.filter((k) => k.name === action.key).reduce((max, k) => Math.max(max, k.version), 0);
  const leftover = leftoverPendingVersion(proposal, keys);
  if (leftover !== undefined && (await context.hsm.hasKeyPair({ hsmKeyId: leftover.hsmKeyId, algorithm: leftover.algorithm }))) {
    context.logger.info({ proposalId: proposal.content.id, keyId: leftover.keyId }, 'resuming a rotation with the pending version of an earlier attempt');
    return leftover;
  }

  const keyId = formatKeyId(action.key, newest + 1);
  const label = `signet:${keyId}`;
  const pair = await context.hsm.generateKeyPair(algorithm, label);
  const at = wholeSeconds(context.now());
  const time = at.toISOString();
  const record: KeyVersionRecord = {
    keyId,
    name: action.key,
    version: newest + 1,
    algorithm,
    state: 'pending',
    hsmKeyId: pair.hsmKeyId,
    publicKeyPem: pair.publicKeyPem,
    createdAt: time,
    notBefore: time,
    notAfter: null,
    compromisedAt: null,
  };
  try {
    await context.store.transaction(async (tx) => {
      await tx.keys.insert(record);
      await tx.log.append([
        governanceEntry({ event: 'key-generated', proposalId: proposal.content.id, keyId, algorithm, publicKeyPem: pair.publicKeyPem, time }, at),
      ]);
    });
  } catch (error) {
    // The pair stays in the token, unused: the adapter never deletes keys.
    context.logger.error({ err: error, proposalId: proposal.content.id, label }, 'a generated key pair could not be recorded; it stays unused in the HSM');
    throw error;
  }
  return record;
}

/** Issues the version's leaf certificate unless it has an unrevoked one. */
async function ensureCertificate(context: ExecutionContext, keyId: string): Promise<void> {
  const [leaves, revocations] = await Promise.all([context.store.certificates.leavesOfKey(keyId), context.store.certificates.listRevocations()]);
  const revoked = new Set(revocations.map((r) => r.serialNumber));
  if (leaves.some((leaf) => !revoked.has(leaf.serialNumber))) return;
  await context.ca.issueLeaf(keyId);
}

/** Revokes a compromised version's certificates; a version without one has nothing to revoke. */
async function revokeCertificatesOf(context: ExecutionContext, keyId: string): Promise<void> {
  if ((await context.store.certificates.leavesOfKey(keyId)).length === 0) return;
  await context.ca.revokeKey(keyId, 'keyCompromise');
}

/** The one transaction that carries the proposal out (see the header). */
async function commit(context: ExecutionContext, stale: ProposalRecord, by: string, generated?: KeyVersionRecord): Promise<ExecutionResult> {
  const at = wholeSeconds(context.now());
  return context.store.transaction((tx) => commitIn(tx, stale.content.id, by, at, generated));
}

/**
 * The writes of an execution inside the caller's transaction `tx`, at `at` (whole
 * seconds): re-checks the proposal as stored in `tx`, writes every change, closes it
 * and appends its `executed` entry. Used alone by `executeProposal`, and after the
 * proposal and approval writes of an immediate freeze, in the same transaction.
 */
export async function commitIn(tx: StoreTransaction, id: string, by: string, at: Date, generated?: KeyVersionRecord): Promise<ExecutionResult> {
  const time = at.toISOString();
  const proposal = await tx.governance.getProposal(id);
  if (proposal === null) throw new GovernanceError('PROPOSAL_NOT_FOUND', `no proposal ${id}`);
  const { governance } = await loadGovernance(tx.governance);
  const keys = await tx.keys.list();
  const check = checkExecution(proposal, { governance, keys, now: at });
  if (check.kind === 'refused') throw rotationErrorFrom(check);

  const changed = keyVersionsAfter(proposal, keys, at, generated);
  // For a rotation the retiring version comes first: at no point are two versions active.
  for (const record of changed) {
    const stateTime = record.state === 'compromised' && record.compromisedAt !== null ? record.compromisedAt : time;
    await tx.keys.updateState(record.keyId, record.state, stateTime, { notBefore: record.notBefore, notAfter: record.notAfter });
  }
  await applyGovernanceChange(tx, proposal, time, at);
  try {
    await tx.governance.closeProposal(id, 'executed', time);
  } catch (error) {
    if (isStoreError(error) && error.code === 'STORE_CONFLICT') throw new RotationError('PROPOSAL_CLOSED', `proposal ${id} was executed meanwhile`);
    throw error;
  }
  const stored: KeyVersionRecord[] = [];
  for (const record of changed) {
    const current = await tx.keys.get(record.keyId);
    if (current !== null) stored.push(current);
  }
  const keyChanges: KeyVersionChange[] = stored.map((k) => ({
    keyId: k.keyId,
    state: k.state,
    notBefore: k.notBefore,
    notAfter: k.notAfter,
    compromisedAt: k.compromisedAt,
  }));
  await tx.log.append([
    governanceEntry(
      {
        event: 'executed',
        proposalId: id,
        proposalHash: proposal.hash,
        action: proposal.content.action.type,
        by,
        approvals: check.quorum.counted,
        keys: keyChanges,
        time,
      },
      at,
    ),
  ]);
  return { proposal: { ...proposal, status: 'executed' as const, closedAt: time }, quorum: check.quorum, keys: stored };
}

async function applyGovernanceChange(tx: StoreTransaction, proposal: ProposalRecord, time: string, at: Date): Promise<void> {
  const { action } = proposal.content;
  const proposalId = proposal.content.id;
  switch (action.type) {
    case 'rotate-key':
    case 'retire-key':
    case 'compromise-key':
      return;
    case 'revoke-certificate':
      await tx.governance.revokeCertificate({ certificateSha256: action.certificateSha256, proposalId, revokedAt: time });
      return;
    case 'add-officer':
      // Enrolled later by the officer (POST /v1/officer/enrollment): no approval counts before.
      await tx.governance.insertOfficer({
        name: action.officer,
        certificateSha256: action.certificateSha256,
        certificatePem: null,
        status: 'active',
        sealedTotpSecret: null,
        lastTotpStep: null,
        failedTotpCount: 0,
        failedTotpWindowStart: null,
        addedAt: time,
        removedAt: null,
      });
      await tx.log.append([
        governanceEntry({ event: 'officer-added', officer: action.officer, certificateSha256: action.certificateSha256, proposalId, time }, at),
      ]);
      return;
    case 'remove-officer':
      await tx.governance.removeOfficer(action.officer, time);
      return;
    case 'set-quorum':
      await tx.governance.setQuorum(action.quorum, time);
      return;
    case 'set-policy':
      await tx.governance.setPolicySha256(action.policySha256, time);
      return;
    case 'freeze':
      await tx.governance.setFreeze({ project: action.project, proposalId, by: proposal.content.proposer, at: time });
      return;
    case 'unfreeze':
      await tx.governance.clearFreeze(action.project);
      return;
  }
}
