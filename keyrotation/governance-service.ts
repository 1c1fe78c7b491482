/**
 * The officers' use cases, as the HTTP layer (server/officer-routes.ts) calls them:
 * propose, approve with a TOTP code, execute, freeze at once, enrol, list and show.
 * Each one identifies the officer by the SHA-256 of the client certificate the mTLS
 * connection presented (the route has already checked it chains to the officer CA),
 * calls the pure core (proposals.ts) and writes what it returns in one transaction
 * together with its transparency-log entry.
 *
 * Second factor (RFC 6238):
 * - an officer's TOTP secret is unsealed by the HSM for one check and wiped after;
 * - the officer's last used step moves by compare-and-set in the approval's own
 *   transaction, so one code approves once even with replicas racing;
 * - wrong codes are counted per officer; past `maxWrongCodes` within
 *   `wrongCodeWindowSeconds` approvals are refused (TOTP_LOCKED) without looking at
 *   the code, so guessing is bounded. A refusal burns no code and changes nothing else.
 *
 * The signing path asks `SigningGuard` (below) whether a project is frozen and whether a
 * CI client certificate is revoked.
 */
import { randomUUID } from 'node:crypto';
import type { HsmSecretSealer } from '../signer/types.js';
import { isStoreError } from '../store/errors.js';
import type { SignetStore, StoreTransaction, StoredOfficer } from '../store/store.js';
import { RotationError, rotationErrorFrom } from './errors.js';
import { wholeSeconds } from './lifecycle.js';
import { commitIn, executeProposal, type ExecutionContext, type ExecutionResult } from './execute.js';
import { isFrozen, type FreezeState } from './freeze.js';
import { GovernanceError } from './governance-errors.js';
import { parseKeyReference } from './key-id.js';
import { governanceEntry, proposedEvent } from './log-entries.js';
import { freezeStateOf, loadGovernance, totpSealingContext, type GovernanceSnapshot } from './officers.js';
import {
  approve,
  createProposal,
  identifyOfficer,
  proposalDocument,
  quorumStatus,
  type ApprovalOutcome,
  type ProposalRecord,
  type QuorumStatus,
} from './proposals.js';
import type { GovernanceSettings } from './settings.js';
import { newTotpSecret, otpauthUri, totpSecretToBase32 } from './totp.js';

/** Who is calling: the certificate of the officer's mTLS connection. */
export interface OfficerCaller {
  /** Lower-case hex SHA-256 of the DER client certificate. */
  readonly certificateSha256: string;
}

export interface GovernanceServiceOptions extends ExecutionContext {
  /** Unseals officers' TOTP secrets; the key is created by `signet init` or set-up, never here. */
  readonly sealer: HsmSecretSealer;
  readonly settings: GovernanceSettings;
  /** Told after every change of freezes or revocations made here, so signing sees it at once. */
  readonly onChange?: () => void;
}

export interface ProposalView {
  readonly proposal: ProposalRecord;
  readonly quorum: QuorumStatus;
}

export interface Enrollment {
  readonly officer: string;
  /** RFC 4648 base32; shown once, to the officer. */
  readonly totpSecret: string;
  readonly otpauthUri: string;
}

export interface OfficerStatus {
  readonly officer: string;
  readonly enrolled: boolean;
  /** Until when approvals are refused after too many wrong codes, or null. */
  readonly lockedUntil: string | null;
}

/** FIFO: executions of this process one at a time (storage makes them safe across processes). */
class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

export class GovernanceService {
  readonly #options: GovernanceServiceOptions;
  readonly #executions = new SerialQueue();

  constructor(options: GovernanceServiceOptions) {
    this.#options = options;
  }

  get settings(): GovernanceSettings {
    return this.#options.settings;
  }

  async status(caller: OfficerCaller): Promise<OfficerStatus> {
    const { officer } = await this.#identify(caller);
    return { officer: officer.name, enrolled: officer.sealedTotpSecret !== null, lockedUntil: this.#lockedUntil(officer, this.#now()) };
  }

  /** First enrolment of an officer added by a proposal: a fresh secret, sealed; shown once. */
  async enroll(caller: OfficerCaller): Promise<Enrollment> {
    const { officer } = await this.#identify(caller);
    if (officer.sealedTotpSecret !== null) {
      throw new GovernanceError('OFFICER_ALREADY_ENROLLED', `officer ${officer.name} is already enrolled; a new secret needs a new officer`);
    }
    const secret = newTotpSecret();
    try {
      const sealed = await this.#options.sealer.seal(secret, totpSealingContext(officer.name));
      const now = this.#now();
      await this.#options.store.transaction(async (tx) => {
        try {
          await tx.governance.setTotpSecret(officer.name, sealed);
        } catch (error) {
          if (isStoreError(error) && error.code === 'STORE_CONFLICT') {
            throw new GovernanceError('OFFICER_ALREADY_ENROLLED', `officer ${officer.name} is already enrolled`);
          }
          throw error;
        }
        await tx.log.append([governanceEntry({ event: 'officer-enrolled', officer: officer.name, time: now.toISOString() }, now)]);
      });
      return {
        officer: officer.name,
        totpSecret: totpSecretToBase32(secret),
        otpauthUri: otpauthUri({ officer: officer.name, secret, issuer: this.#options.settings.totpIssuer }),
      };
    } finally {
      secret.fill(0);
    }
  }

  async propose(caller: OfficerCaller, input: { readonly action: unknown; readonly reason?: string | undefined }): Promise<ProposalView> {
    const { officer, snapshot } = await this.#identify(caller);
    const now = this.#now();
    const action = withDefaults(input.action, now);
    await this.#checkKeyAction(action);
    const proposal = createProposal(
      { id: randomUUID(), action, proposer: officer.name, ...(input.reason === undefined ? {} : { reason: input.reason }) },
      snapshot.governance,
      now,
    );
    await this.#options.store.transaction(async (tx) => {
      await tx.governance.insertProposal(proposal);
      await tx.log.append([governanceEntry(proposedEvent(proposal, proposalDocument(proposal.content)), now)]);
    });
    this.#options.logger.info({ proposalId: proposal.content.id, action: proposal.content.action.type, proposer: officer.name }, 'proposal opened');
    return { proposal, quorum: quorumStatus(proposal, snapshot.governance) };
  }

  async approve(caller: OfficerCaller, id: string, input: { readonly proposalHash: string; readonly code: string }): Promise<ProposalView> {
    const { officer, snapshot } = await this.#identify(caller);
    const proposal = await this.#options.store.governance.getProposal(id);
    if (proposal === null) throw new GovernanceError('PROPOSAL_NOT_FOUND', `no proposal ${id}`);
    const now = this.#now();
    const outcome = await this.#checkCode(officer, now, (totpSecret) =>
      approve(
        proposal,
        { proposalHash: input.proposalHash, certificateSha256: caller.certificateSha256, officer: officer.name, code: input.code },
        { governance: snapshot.governance, totpSecret, now },
      ),
    );
    await this.#options.store.transaction(async (tx) => {
      await recordApproval(tx, officer, outcome, caller.certificateSha256);
      await tx.log.append([approvedEntry(outcome, now)]);
    });
    this.#options.logger.info(
      { proposalId: id, officer: officer.name, counted: outcome.quorum.counted.length, required: outcome.quorum.required },
      'proposal approved',
    );
    return { proposal: outcome.proposal, quorum: outcome.quorum };
  }

  async execute(caller: OfficerCaller, id: string): Promise<ExecutionResult> {
    const { officer } = await this.#identify(caller);
    const result = await this.#executions.run(() => executeProposal(this.#options, id, officer.name));
    this.#options.onChange?.();
    this.#options.logger.info(
      { proposalId: id, action: result.proposal.content.action.type, by: officer.name, keys: result.keys.map((k) => `${k.keyId}:${k.state}`) },
      'proposal executed',
    );
    return result;
  }

  /**
   * Any one officer stops signing for a project (or everything, `project` null) at once:
   * a freeze proposal, the officer's own approval with a fresh code, and its execution,
   * all in one transaction (a freeze needs exactly one approval, proposals.ts).
   */
  async freeze(caller: OfficerCaller, input: { readonly project: string | null; readonly reason?: string | undefined; readonly code: string }): Promise<ExecutionResult> {
    const { officer, snapshot } = await this.#identify(caller);
    const now = this.#now();
    const proposal = createProposal(
      { id: randomUUID(), action: { type: 'freeze', project: input.project }, proposer: officer.name, ...(input.reason === undefined ? {} : { reason: input.reason }) },
      snapshot.governance,
      now,
    );
    const outcome = await this.#checkCode(officer, now, (totpSecret) =>
      approve(
        proposal,
        { proposalHash: proposal.hash, certificateSha256: caller.certificateSha256, officer: officer.name, code: input.code },
        { governance: snapshot.governance, totpSecret, now },
      ),
    );
    const result = await this.#executions.run(() =>
      this.#options.store.transaction(async (tx) => {
        await tx.governance.insertProposal(proposal);
        await tx.log.append([governanceEntry(proposedEvent(proposal, proposalDocument(proposal.content)), now)]);
        await recordApproval(tx, officer, outcome, caller.certificateSha256);
        await tx.log.append([approvedEntry(outcome, now)]);
        return commitIn(tx, proposal.content.id, officer.name, wholeSeconds(now));
      }),
    );
    this.#options.onChange?.();
    this.#options.logger.warn({ proposalId: proposal.content.id, project: input.project, by: officer.name }, 'signing frozen');
    return result;
  }

  async list(caller: OfficerCaller, filter: { readonly status?: 'open' | 'executed' | 'withdrawn'; readonly limit?: number } = {}): Promise<ProposalView[]> {
    const { snapshot } = await this.#identify(caller);
    const proposals = await this.#options.store.governance.listProposals(filter);
    return proposals.map((proposal) => ({ proposal, quorum: quorumStatus(proposal, snapshot.governance) }));
  }

  async show(caller: OfficerCaller, id: string): Promise<ProposalView> {
    const { snapshot } = await this.#identify(caller);
    const proposal = await this.#options.store.governance.getProposal(id);
    if (proposal === null) throw new GovernanceError('PROPOSAL_NOT_FOUND', `no proposal ${id}`);
    return { proposal, quorum: quorumStatus(proposal, snapshot.governance) };
  }

  /** The calling officer, who must be active, unrevoked and current holder of the certificate. */
  async #identify(caller: OfficerCaller): Promise<{ officer: StoredOfficer; snapshot: GovernanceSnapshot }> {
    const snapshot = await loadGovernance(this.#options.store.governance);
    const identity = identifyOfficer(snapshot.governance, caller.certificateSha256);
    if (identity.kind === 'refused') throw rotationErrorFrom(identity);
    const officer = snapshot.officers.find((o) => o.name === identity.officer.name);
    if (officer === undefined) throw new RotationError('OFFICER_UNKNOWN', "this certificate is not an officer's");
    return { officer, snapshot };
  }

  #lockedUntil(officer: StoredOfficer, now: Date): string | null {
    const { maxWrongCodes, wrongCodeWindowSeconds } = this.#options.settings;
    if (officer.failedTotpCount < maxWrongCodes || officer.failedTotpWindowStart === null) return null;
    const until = Date.parse(officer.failedTotpWindowStart) + wrongCodeWindowSeconds * 1000;
    return until > now.getTime() ? new Date(until).toISOString() : null;
  }

  /**
   * Runs `check` with the officer's unsealed secret (null when not enrolled) unless the
   * officer is locked out; counts a wrong or reused code; throws the refusal.
   */
  async #checkCode(
    officer: StoredOfficer,
    now: Date,
    check: (totpSecret: Uint8Array | null) => ApprovalOutcome,
  ): Promise<Extract<ApprovalOutcome, { kind: 'accepted' }>> {
    const lockedUntil = this.#lockedUntil(officer, now);
    if (lockedUntil !== null) {
      throw new GovernanceError('TOTP_LOCKED', `too many wrong codes from officer ${officer.name}; approvals are refused until ${lockedUntil}`);
    }
    const secret = officer.sealedTotpSecret === null ? null : await this.#options.sealer.unseal(officer.sealedTotpSecret, totpSealingContext(officer.name));
    let outcome: ApprovalOutcome;
    try {
      outcome = check(secret);
    } finally {
      secret?.fill(0);
    }
    if (outcome.kind === 'accepted') return outcome;
    if (outcome.code === 'TOTP_INVALID' || outcome.code === 'TOTP_REUSED') {
      const { wrongCodeWindowSeconds, maxWrongCodes } = this.#options.settings;
      const failures = await this.#options.store.governance.recordTotpFailure(
        officer.name,
        now.toISOString(),
        new Date(now.getTime() - wrongCodeWindowSeconds * 1000).toISOString(),
      );
      const level = failures.count >= maxWrongCodes ? 'warn' : 'info';
      this.#options.logger[level]({ officer: officer.name, code: outcome.code, wrongCodes: failures.count }, 'officer code refused');
    }
    throw rotationErrorFrom(outcome);
  }

  /** Key actions name an existing key (and never the log's): caught at proposal time, not after the approvals. */
  async #checkKeyAction(action: unknown): Promise<void> {
    if (typeof action !== 'object' || action === null) return;
    const { type, key, keyId } = action as { type?: unknown; key?: unknown; keyId?: unknown };
    const name = type === 'rotate-key' && typeof key === 'string' ? key : (type === 'retire-key' || type === 'compromise-key') && typeof keyId === 'string' ? parseKeyReference(keyId)?.name : undefined;
    if (name === undefined) return;
    if (name === this.#options.logKeyName) throw new GovernanceError('LOG_KEY_RESERVED', 'the transparency log key is not changed by proposals');
    const exists = type === 'rotate-key' ? (await this.#options.store.keys.listVersions(name)).length > 0 : (await this.#options.store.keys.get(String(keyId))) !== null;
    if (!exists) throw new RotationError('KEY_NOT_FOUND', `no key ${type === 'rotate-key' ? name : String(keyId)}`);
  }

  #now(): Date {
    return this.#options.now();
  }
}

/** A compromise proposed without a time is compromised from now on (the server's clock, not the CLI's). */
function withDefaults(action: unknown, now: Date): unknown {
  if (typeof action === 'object' && action !== null && (action as { type?: unknown }).type === 'compromise-key' && !('compromisedAt' in action)) {
    return { ...action, compromisedAt: wholeSeconds(now).toISOString() };
  }
  return action;
}

/** The approval and the compare-and-set of the officer's TOTP step, in the caller's transaction. */
async function recordApproval(
  tx: StoreTransaction,
  officer: StoredOfficer,
  outcome: Extract<ApprovalOutcome, { kind: 'accepted' }>,
  certificateSha256: string,
): Promise<void> {
  const id = outcome.proposal.content.id;
  try {
    await tx.governance.recordTotpUse({ officer: officer.name, certificateSha256, expectedLastStep: officer.lastTotpStep, step: outcome.approval.totpStep });
  } catch (error) {
    if (isStoreError(error) && error.code === 'STORE_CONFLICT') {
      throw new RotationError('TOTP_REUSED', `officer ${officer.name} used a code meanwhile; use the next one`);
    }
    throw error;
  }
  try {
    await tx.governance.addApproval(id, outcome.approval);
  } catch (error) {
    if (isStoreError(error) && error.code === 'STORE_CONFLICT') {
      const stored = await tx.governance.getProposal(id);
      throw stored !== null && stored.status !== 'open'
        ? new RotationError('PROPOSAL_CLOSED', `proposal ${id} is ${stored.status}`)
        : new RotationError('APPROVAL_DUPLICATE', `officer ${officer.name} already approved proposal ${id}`);
    }
    throw error;
  }
}

function approvedEntry(outcome: Extract<ApprovalOutcome, { kind: 'accepted' }>, now: Date) {
  return governanceEntry(
    {
      event: 'approved',
      proposalId: outcome.proposal.content.id,
      proposalHash: outcome.approval.proposalHash,
      officer: outcome.approval.officer,
      certificateSha256: outcome.approval.certificateSha256,
      quorum: { required: outcome.quorum.required, counted: outcome.quorum.counted },
      time: outcome.approval.approvedAt,
    },
    now,
  );
}

// ---------------------------------------------------------------------------------------
// The signing path's view

export interface SigningGuardOptions {
  readonly store: Pick<SignetStore, 'governance'>;
  /** How long a read state may be relied on (changes made through `invalidate` apply at once). */
  readonly cacheMs: number;
  readonly now?: () => number;
}

interface GuardState {
  readonly freeze: FreezeState;
  readonly revoked: ReadonlySet<string>;
  /** The SHA-256 of the policy a quorum approved last (`set-policy`), or null if none was. */
  readonly approvedPolicySha256: string | null;
  readonly readAt: number;
}

/**
 * Freezes, revoked client certificates and the approved policy hash for the signing
 * path, read from storage and kept for `cacheMs` so that signing does not pay a storage
 * round trip per request.
 * Fails closed: if storage cannot be read, the error propagates and nothing is signed.
 */
export class SigningGuard {
  readonly #options: SigningGuardOptions;
  #state: GuardState | undefined;
  #loading: Promise<GuardState> | undefined;
  #generation = 0;

  constructor(options: SigningGuardOptions) {
    this.#options = options;
  }

  /** Forget what was read: the next question reads storage again. */
  invalidate(): void {
    this.#generation += 1;
    this.#state = undefined;
    this.#loading = undefined;
  }

  async isFrozen(project: string): Promise<boolean> {
    return isFrozen((await this.#current()).freeze, project);
  }

  async isRevoked(certificateSha256: string): Promise<boolean> {
    return (await this.#current()).revoked.has(certificateSha256);
  }

  /** The SHA-256 of the policy a quorum approved last, or null if no `set-policy` was executed. */
  async approvedPolicySha256(): Promise<string | null> {
    return (await this.#current()).approvedPolicySha256;
  }

  async #current(): Promise<GuardState> {
    const now = this.#options.now?.() ?? Date.now();
    const state = this.#state;
    if (state !== undefined && now - state.readAt < this.#options.cacheMs) return state;
    if (this.#loading === undefined) {
      const generation = this.#generation;
      const loading = this.#read(now).then((read) => {
        if (generation === this.#generation) this.#state = read;
        return read;
      });
      this.#loading = loading;
      const clear = (): void => {
        if (this.#loading === loading) this.#loading = undefined;
      };
      loading.then(clear, clear);
    }
    return this.#loading;
  }

  async #read(now: number): Promise<GuardState> {
    const { governance } = this.#options.store;
    const [freezes, revoked, settings] = await Promise.all([governance.listFreezes(), governance.listRevokedCertificates(), governance.settings()]);
    return {
      freeze: freezeStateOf(freezes),
      revoked: new Set(revoked.map((r) => r.certificateSha256)),
      approvedPolicySha256: settings.policySha256,
      readAt: now,
    };
  }
}
