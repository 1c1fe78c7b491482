/**
 * Model-based test of proposals and quorum (fast-check commands): random sequences of
 * approvals — good and bad — clock moves, officer removals, certificate revocations,
 * new proposals and execution attempts run against the real reducer and against a
 * small model, and must agree at every step.
 *
 * The model says: a proposal executes only while open and unexpired, once M distinct
 * officers, still active and with unrevoked certificates, approved it each with a fresh
 * code of their own secret (matching a step within ±1 of now that is after the last
 * step that officer used). Never counted: the same officer twice, a reused code, a code
 * from the wrong secret, an expired proposal, an approval for a different proposal
 * hash, a non-officer certificate, a removed officer, the proposer (unless allowed).
 *
 * TOTP codes are computed by reference-totp.ts (from the RFCs, over node:crypto), not
 * by the library the product uses.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ApprovalRefusalCode } from '../../keyrotation/errors.js';
import {
  approve,
  checkExecution,
  closeProposal,
  createProposal,
  DEFAULT_QUORUM_POLICY,
  initialGovernance,
  quorumStatus,
  replaceOfficer,
  type Governance,
  type OfficerRecord,
  type ProposalRecord,
} from '../../keyrotation/proposals.js';
import { activeKey, fingerprint, stepOf, T0 } from './fixtures.js';
import { referenceHotp } from './reference-totp.js';

const NAMES = ['alice', 'bob', 'carol', 'dave'] as const;
type Name = (typeof NAMES)[number];
const TTL_SECONDS = 1800;

interface ModelOfficer {
  active: boolean;
  revoked: boolean;
  lastStep: number | null;
  lastCode: string | null;
}

interface ModelProposal {
  readonly proposer: Name;
  readonly key: string;
  readonly expiresMs: number;
  readonly approvers: Name[];
  executed: boolean;
}

interface Model {
  nowMs: number;
  readonly required: number;
  readonly proposerMayApprove: boolean;
  readonly officers: Record<Name, ModelOfficer>;
  readonly proposals: ModelProposal[];
}

interface Real {
  now: Date;
  governance: Governance;
  readonly proposals: ProposalRecord[];
  readonly secrets: Record<Name, Uint8Array>;
  readonly certificates: Record<Name, string>;
  /** Every approval ever accepted, in order: single use of codes is checked over all of them. */
  readonly accepted: { readonly officer: string; readonly step: number; readonly approvalStep: number }[];
  /** What the run exercised, for the coverage check. */
  readonly stats: { executions: number; readonly outcomes: Map<string, number> };
}

type Expected = { kind: 'accepted'; step: number } | { kind: 'refused'; code: ApprovalRefusalCode };

/** The model's TOTP rule: the earliest step within ±1 of now whose code matches and is after the last used. */
function modelTotp(secret: Uint8Array, code: string, nowMs: number, lastStep: number | null): Expected {
  const now = stepOf(new Date(nowMs));
  let matched = false;
  for (let step = now - 1; step <= now + 1; step++) {
    if (referenceHotp(secret, step) !== code) continue;
    if (lastStep === null || step > lastStep) return { kind: 'accepted', step };
    matched = true;
  }
  return { kind: 'refused', code: matched ? 'TOTP_REUSED' : 'TOTP_INVALID' };
}

/** The model of one approval attempt, its checks in the documented order. */
function expectedApproval(
  m: Model,
  r: Real,
  index: number,
  attempt: { officer: Name; certificateOf: Name | null; hashMatches: boolean; code: string },
): Expected {
  const proposal = m.proposals[index]!;
  if (proposal.executed) return { kind: 'refused', code: 'PROPOSAL_CLOSED' };
  if (m.nowMs >= proposal.expiresMs) return { kind: 'refused', code: 'PROPOSAL_EXPIRED' };
  if (!attempt.hashMatches) return { kind: 'refused', code: 'PROPOSAL_HASH_MISMATCH' };
  if (attempt.certificateOf === null) return { kind: 'refused', code: 'OFFICER_UNKNOWN' };
  const holder = m.officers[attempt.certificateOf];
  if (holder.revoked) return { kind: 'refused', code: 'OFFICER_CERTIFICATE_REVOKED' };
  if (!holder.active) return { kind: 'refused', code: 'OFFICER_REMOVED' };
  if (attempt.certificateOf !== attempt.officer) return { kind: 'refused', code: 'OFFICER_UNKNOWN' };
  if (attempt.officer === proposal.proposer && !m.proposerMayApprove) return { kind: 'refused', code: 'PROPOSER_CANNOT_APPROVE' };
  if (proposal.approvers.includes(attempt.officer)) return { kind: 'refused', code: 'APPROVAL_DUPLICATE' };
  return modelTotp(r.secrets[attempt.officer], attempt.code, m.nowMs, m.officers[attempt.officer].lastStep);
}

function countedInModel(m: Model, proposal: ModelProposal): Name[] {
  return proposal.approvers.filter(
    (name) => m.officers[name].active && !m.officers[name].revoked && (name !== proposal.proposer || m.proposerMayApprove),
  );
}

/** Runs an attempt on the real reducer, compares with the model, applies an acceptance to both. */
function runApproval(
  m: Model,
  r: Real,
  index: number,
  attempt: { officer: Name; certificateOf: Name | null; foreignCertificate?: string; proposalHash: string; code: string },
): void {
  const proposal = r.proposals[index]!;
  const expected = expectedApproval(m, r, index, { ...attempt, hashMatches: attempt.proposalHash === proposal.hash });
  const certificateSha256 = attempt.certificateOf === null ? attempt.foreignCertificate! : r.certificates[attempt.certificateOf];
  const outcome = approve(
    proposal,
    { proposalHash: attempt.proposalHash, certificateSha256, officer: attempt.officer, code: attempt.code },
    { governance: r.governance, totpSecret: r.secrets[attempt.officer], now: r.now },
  );
  r.stats.outcomes.set(expected.kind === 'refused' ? expected.code : 'accepted', (r.stats.outcomes.get(expected.kind === 'refused' ? expected.code : 'accepted') ?? 0) + 1);
  if (expected.kind === 'refused') {
    expect(outcome).toMatchObject({ kind: 'refused', code: expected.code });
    return;
  }
  expect(outcome.kind).toBe('accepted');
  if (outcome.kind !== 'accepted') return;
  expect(outcome.approval.totpStep).toBe(expected.step);
  r.proposals[index] = outcome.proposal;
  r.governance = replaceOfficer(r.governance, outcome.officer);
  r.accepted.push({ officer: attempt.officer, step: expected.step, approvalStep: stepOf(r.now) });
  m.proposals[index]!.approvers.push(attempt.officer);
  m.officers[attempt.officer].lastStep = expected.step;
  m.officers[attempt.officer].lastCode = attempt.code;
}

/** After every command: the real count equals the model's, and codes were used once and fresh. */
function checkInvariants(m: Model, r: Real): void {
  m.proposals.forEach((proposal, index) => {
    const status = quorumStatus(r.proposals[index]!, r.governance);
    const counted = countedInModel(m, proposal);
    expect([...status.counted].sort()).toEqual([...counted].sort());
    expect(status.met).toBe(counted.length >= m.required);
    expect(new Set(status.counted).size).toBe(status.counted.length);
  });
  const lastStep = new Map<string, number>();
  for (const { officer, step, approvalStep } of r.accepted) {
    expect(Math.abs(step - approvalStep)).toBeLessThanOrEqual(1);
    const previous = lastStep.get(officer);
    if (previous !== undefined) expect(step).toBeGreaterThan(previous);
    lastStep.set(officer, step);
  }
}

type Cmd = fc.Command<Model, Real>;

/** Removals and revocations stop at two officers, so that runs still reach quorums. */
function disabledOfficers(m: Readonly<Model>): number {
  return NAMES.filter((n) => !m.officers[n].active || m.officers[n].revoked).length;
}
const name = fc.constantFrom(...NAMES);
const proposalIndex = fc.nat({ max: 20 });
const pick = (m: Readonly<Model>, i: number): number => i % m.proposals.length;

class ApproveFresh implements Cmd {
  constructor(readonly officer: Name, readonly index: number, readonly delta: number) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const index = pick(m, this.index);
    const code = referenceHotp(r.secrets[this.officer], stepOf(r.now) + this.delta);
    runApproval(m, r, index, { officer: this.officer, certificateOf: this.officer, proposalHash: r.proposals[index]!.hash, code });
    checkInvariants(m, r);
  }
  toString = (): string => `approveFresh(${this.officer}, #${this.index}, step${this.delta >= 0 ? '+' : ''}${this.delta})`;
}

class ApproveReusedCode implements Cmd {
  constructor(readonly officer: Name, readonly index: number) {}
  check = (m: Readonly<Model>): boolean => m.officers[this.officer].lastCode !== null;
  run(m: Model, r: Real): void {
    const index = pick(m, this.index);
    const code = m.officers[this.officer].lastCode!;
    runApproval(m, r, index, { officer: this.officer, certificateOf: this.officer, proposalHash: r.proposals[index]!.hash, code });
    checkInvariants(m, r);
  }
  toString = (): string => `approveReused(${this.officer}, #${this.index})`;
}

class ApproveWrongSecret implements Cmd {
  constructor(readonly officer: Name, readonly index: number, readonly source: Name | Uint8Array) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const index = pick(m, this.index);
    const secret = typeof this.source === 'string' ? r.secrets[this.source] : this.source;
    if (secret === r.secrets[this.officer]) return;
    const code = referenceHotp(secret, stepOf(r.now));
    runApproval(m, r, index, { officer: this.officer, certificateOf: this.officer, proposalHash: r.proposals[index]!.hash, code });
    checkInvariants(m, r);
  }
  toString = (): string => `approveWrongSecret(${this.officer}, #${this.index}, ${typeof this.source === 'string' ? this.source : 'random'})`;
}

class ApproveWrongHash implements Cmd {
  constructor(readonly officer: Name, readonly index: number, readonly other: number | string) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const index = pick(m, this.index);
    const proposalHash = typeof this.other === 'string' ? fingerprint(this.other) : r.proposals[this.other % r.proposals.length]!.hash;
    const code = referenceHotp(r.secrets[this.officer], stepOf(r.now));
    runApproval(m, r, index, { officer: this.officer, certificateOf: this.officer, proposalHash, code });
    checkInvariants(m, r);
  }
  toString = (): string => `approveWrongHash(${this.officer}, #${this.index}, ${String(this.other)})`;
}

class ApproveNonOfficerCertificate implements Cmd {
  constructor(readonly officer: Name, readonly index: number, readonly seed: string) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const index = pick(m, this.index);
    const code = referenceHotp(r.secrets[this.officer], stepOf(r.now));
    runApproval(m, r, index, {
      officer: this.officer,
      certificateOf: null,
      foreignCertificate: fingerprint(`ci-client:${this.seed}`),
      proposalHash: r.proposals[index]!.hash,
      code,
    });
    checkInvariants(m, r);
  }
  toString = (): string => `approveNonOfficer(${this.officer}, #${this.index})`;
}

class ApproveWithAnotherOfficersCertificate implements Cmd {
  constructor(readonly officer: Name, readonly holder: Name, readonly index: number) {}
  check = (): boolean => this.officer !== this.holder;
  run(m: Model, r: Real): void {
    const index = pick(m, this.index);
    const code = referenceHotp(r.secrets[this.officer], stepOf(r.now));
    runApproval(m, r, index, { officer: this.officer, certificateOf: this.holder, proposalHash: r.proposals[index]!.hash, code });
    checkInvariants(m, r);
  }
  toString = (): string => `approveWithCertOf(${this.officer} as ${this.holder}, #${this.index})`;
}

class RemoveOfficer implements Cmd {
  constructor(readonly officer: Name) {}
  check = (m: Readonly<Model>): boolean => m.officers[this.officer].active && disabledOfficers(m) < 2;
  run(m: Model, r: Real): void {
    m.officers[this.officer].active = false;
    const record = r.governance.officers.find((o) => o.name === this.officer)!;
    r.governance = replaceOfficer(r.governance, { ...record, status: 'removed', removedAt: r.now.toISOString() });
    checkInvariants(m, r);
  }
  toString = (): string => `remove(${this.officer})`;
}

class RevokeCertificate implements Cmd {
  constructor(readonly officer: Name) {}
  check = (m: Readonly<Model>): boolean => !m.officers[this.officer].revoked && disabledOfficers(m) < 2;
  run(m: Model, r: Real): void {
    m.officers[this.officer].revoked = true;
    r.governance = { ...r.governance, revokedCertificates: [...r.governance.revokedCertificates, r.certificates[this.officer]].sort() };
    checkInvariants(m, r);
  }
  toString = (): string => `revokeCertificate(${this.officer})`;
}

class AdvanceClock implements Cmd {
  constructor(readonly seconds: number) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    m.nowMs += this.seconds * 1000;
    r.now = new Date(m.nowMs);
    checkInvariants(m, r);
  }
  toString = (): string => `advance(${this.seconds}s)`;
}

class Propose implements Cmd {
  constructor(readonly proposer: Name) {}
  check = (m: Readonly<Model>): boolean => m.proposals.length < 8;
  run(m: Model, r: Real): void {
    if (!m.officers[this.proposer].active || m.officers[this.proposer].revoked) return;
    const key = `key-${m.proposals.length}`;
    const proposal = createProposal(
      { id: `proposal-${String(m.proposals.length).padStart(4, '0')}`, action: { type: 'rotate-key', project: 'example', key, algorithm: null }, proposer: this.proposer },
      r.governance,
      r.now,
    );
    r.proposals.push(proposal);
    m.proposals.push({ proposer: this.proposer, key, expiresMs: m.nowMs + TTL_SECONDS * 1000, approvers: [], executed: false });
    checkInvariants(m, r);
  }
  toString = (): string => `propose(${this.proposer})`;
}

class Execute implements Cmd {
  constructor(readonly index: number) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const index = pick(m, this.index);
    const proposal = m.proposals[index]!;
    const check = checkExecution(r.proposals[index]!, { governance: r.governance, keys: [activeKey(proposal.key)], now: r.now });
    const counted = countedInModel(m, proposal);
    if (proposal.executed) expect(check).toMatchObject({ code: 'PROPOSAL_CLOSED' });
    else if (m.nowMs >= proposal.expiresMs) expect(check).toMatchObject({ code: 'PROPOSAL_EXPIRED' });
    else if (counted.length < m.required) expect(check).toMatchObject({ code: 'QUORUM_NOT_MET' });
    else {
      expect(check.kind).toBe('executable');
      if (check.kind !== 'executable') return;
      // The rotation happens: with exactly the model's distinct, current officers behind it.
      expect([...check.quorum.counted].sort()).toEqual([...counted].sort());
      expect(new Set(check.quorum.counted).size).toBeGreaterThanOrEqual(m.required);
      r.proposals[index] = closeProposal(r.proposals[index]!, 'executed', r.now);
      proposal.executed = true;
      r.stats.executions++;
    }
    checkInvariants(m, r);
  }
  toString = (): string => `execute(#${this.index})`;
}

const secretArb = fc.uint8Array({ minLength: 20, maxLength: 20 });
const weighted = (weight: number, arbitrary: fc.Arbitrary<Cmd>): fc.WeightedArbitrary<Cmd> => ({ weight, arbitrary });
/** Weighted so that runs reach quorums and executions, not only refusals and removals. */
const command = fc.oneof(
  weighted(8, fc.tuple(name, proposalIndex, fc.integer({ min: -1, max: 1 })).map(([o, i, d]) => new ApproveFresh(o, i, d))),
  weighted(1, fc.tuple(name, proposalIndex, fc.constantFrom(-2, 2)).map(([o, i, d]) => new ApproveFresh(o, i, d))),
  weighted(2, fc.tuple(name, proposalIndex).map(([o, i]) => new ApproveReusedCode(o, i))),
  weighted(2, fc.tuple(name, proposalIndex, fc.oneof(name, secretArb)).map(([o, i, s]) => new ApproveWrongSecret(o, i, s))),
  weighted(2, fc.tuple(name, proposalIndex, fc.oneof(fc.nat({ max: 20 }), fc.string())).map(([o, i, h]) => new ApproveWrongHash(o, i, h))),
  weighted(2, fc.tuple(name, proposalIndex, fc.string()).map(([o, i, s]) => new ApproveNonOfficerCertificate(o, i, s))),
  weighted(1, fc.tuple(name, name, proposalIndex).map(([o, h, i]) => new ApproveWithAnotherOfficersCertificate(o, h, i))),
  weighted(1, name.map((o) => new RemoveOfficer(o))),
  weighted(1, name.map((o) => new RevokeCertificate(o))),
  weighted(6, fc.integer({ min: 1, max: 60 }).map((s) => new AdvanceClock(s))),
  weighted(1, fc.integer({ min: 300, max: 900 }).map((s) => new AdvanceClock(s))),
  weighted(1, name.map((o) => new Propose(o))),
  weighted(4, proposalIndex.map((i) => new Execute(i))),
);
const commands = fc.commands([command], { maxCommands: 60, size: 'max' });

const setupArb = fc.record({
  // Distinct secrets, so that "a code of another officer's secret" is a wrong code (the model would cope either way).
  secrets: fc.uniqueArray(secretArb, { minLength: 4, maxLength: 4, selector: (secret) => Buffer.from(secret).toString('hex') }),
  required: fc.constantFrom(2, 3),
  proposerMayApprove: fc.boolean(),
  proposers: fc.array(name, { minLength: 1, maxLength: 3 }),
  startOffsetSeconds: fc.integer({ min: 0, max: 29 }),
});

type SetupParams = typeof setupArb extends fc.Arbitrary<infer T> ? T : never;

function setup(params: SetupParams): { model: Model; real: Real } {
  const now = new Date(T0.getTime() + params.startOffsetSeconds * 1000);
  const secrets = Object.fromEntries(NAMES.map((n, i) => [n, params.secrets[i]!])) as Record<Name, Uint8Array>;
  const certificates = Object.fromEntries(NAMES.map((n) => [n, fingerprint(`officer-cert:${n}`)])) as Record<Name, string>;
  const officers: OfficerRecord[] = NAMES.map((n) => ({
    name: n,
    certificateSha256: certificates[n],
    status: 'active',
    sealedTotpSecret: `sealed:${n}`,
    lastTotpStep: null,
    addedAt: T0.toISOString(),
    removedAt: null,
  }));
  const governance = initialGovernance(officers, {
    ...DEFAULT_QUORUM_POLICY,
    defaultApprovals: params.required,
    proposerMayApprove: params.proposerMayApprove,
    proposalTtlSeconds: TTL_SECONDS,
  });
  const proposals = params.proposers.map((proposer, i) =>
    createProposal({ id: `proposal-${String(i).padStart(4, '0')}`, action: { type: 'rotate-key', project: 'example', key: `key-${i}`, algorithm: null }, proposer }, governance, now),
  );
  const model: Model = {
    nowMs: now.getTime(),
    required: params.required,
    proposerMayApprove: params.proposerMayApprove,
    officers: Object.fromEntries(NAMES.map((n) => [n, { active: true, revoked: false, lastStep: null, lastCode: null }])) as Record<Name, ModelOfficer>,
    proposals: params.proposers.map((proposer, i) => ({ proposer, key: `key-${i}`, expiresMs: now.getTime() + TTL_SECONDS * 1000, approvers: [], executed: false })),
  };
  return { model, real: { now, governance, proposals, secrets, certificates, accepted: [], stats: { executions: 0, outcomes: new Map() } } };
}

describe('quorum model', () => {
  it('the reducer agrees with the model on every random sequence of commands', () => {
    fc.assert(
      fc.property(setupArb, commands, (params, cmds) => {
        fc.modelRun(() => setup(params), cmds);
      }),
      { numRuns: 300 },
    );
  });

  it('random sequences reach executions and every kind of refusal (the property is not vacuous)', () => {
    let executions = 0;
    const outcomes = new Map<string, number>();
    fc.assert(
      fc.property(setupArb, commands, (params, cmds) => {
        const state = setup(params);
        fc.modelRun(() => state, cmds);
        executions += state.real.stats.executions;
        for (const [code, n] of state.real.stats.outcomes) outcomes.set(code, (outcomes.get(code) ?? 0) + n);
      }),
      // A fixed seed: this checks that the generators reach every outcome, not the
      // property (the test above stays random). With a random seed the rarest outcome
      // came in at 11–40 per 100 runs, and once at 5, failing a CI run; this seed
      // reaches each at least 40 times, the same on every run.
      { numRuns: 100, seed: 4 },
    );
    // About 25 executions and hundreds of approvals per 100 runs.
    expect(executions).toBeGreaterThan(8);
    for (const code of [
      'accepted',
      'PROPOSAL_CLOSED',
      'PROPOSAL_EXPIRED',
      'PROPOSAL_HASH_MISMATCH',
      'OFFICER_UNKNOWN',
      'OFFICER_CERTIFICATE_REVOKED',
      'OFFICER_REMOVED',
      'PROPOSER_CANNOT_APPROVE',
      'APPROVAL_DUPLICATE',
      'TOTP_INVALID',
      'TOTP_REUSED',
    ]) {
      expect(outcomes.get(code) ?? 0, code).toBeGreaterThan(5);
    }
  });
});
