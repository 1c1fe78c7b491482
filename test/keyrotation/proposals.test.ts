/**
 * Proposals one case at a time: the hash binding, validation, each approval refusal
 * code, re-counting against the current officers, freeze/unfreeze, execution
 * preconditions and the records execution produces. The model-based test
 * (quorum.model.test.ts) then mixes all of these at random.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { APPROVAL_REFUSAL_CODES, isRotationError, type RotationErrorCode } from '../../keyrotation/errors.js';
import { isFrozen } from '../../keyrotation/freeze.js';
import {
  approve,
  checkExecution,
  closeProposal,
  createProposal,
  DEFAULT_QUORUM_POLICY,
  governanceAfter,
  identifyOfficer,
  keyVersionsAfter,
  parseQuorumPolicy,
  proposalDocument,
  proposalHash,
  quorumMet,
  quorumReachable,
  quorumStatus,
  replaceOfficer,
  rotationAlgorithm,
  SYSTEM_PROPOSER,
  type ApprovalOutcome,
  type Governance,
  type ProposalAction,
  type ProposalRecord,
} from '../../keyrotation/proposals.js';
import type { KeyVersionRecord } from '../../store/store.js';
import { activeKey, codeFor, fingerprint, governanceOf, makeOfficers, stepOf, T0, type TestOfficer } from './fixtures.js';

const [alice, bob, carol, dave] = makeOfficers(['alice', 'bob', 'carol', 'dave']) as [TestOfficer, TestOfficer, TestOfficer, TestOfficer];
const ROTATE: ProposalAction = { type: 'rotate-key', project: 'example', key: 'demo-release', algorithm: null };
const plus = (date: Date, s: number): Date => new Date(date.getTime() + s * 1000);

function expectThrows(run: () => unknown, code: RotationErrorCode): Error {
  let error: unknown;
  try {
    run();
  } catch (e) {
    error = e;
  }
  expect(isRotationError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as Error;
}

function propose(governance: Governance, action: ProposalAction = ROTATE, proposer = alice.name, at = T0): ProposalRecord {
  return createProposal({ id: 'proposal-0001', action, proposer, reason: 'scheduled' }, governance, at);
}

function attempt(
  proposal: ProposalRecord,
  governance: Governance,
  officer: TestOfficer,
  at: Date,
  overrides: { code?: string; certificateSha256?: string; proposalHash?: string; secret?: Uint8Array | null } = {},
): ApprovalOutcome {
  return approve(
    proposal,
    {
      proposalHash: overrides.proposalHash ?? proposal.hash,
      certificateSha256: overrides.certificateSha256 ?? officer.certificateSha256,
      officer: officer.name,
      code: overrides.code ?? codeFor(officer, at),
    },
    { governance, totpSecret: overrides.secret === undefined ? officer.secret : overrides.secret, now: at },
  );
}

/** Applies an accepted approval to proposal and governance, as the storage adapter would. */
function accept(outcome: ApprovalOutcome, governance: Governance): { proposal: ProposalRecord; governance: Governance } {
  if (outcome.kind !== 'accepted') throw new Error(`expected acceptance, got ${outcome.code}`);
  return { proposal: outcome.proposal, governance: replaceOfficer(governance, outcome.officer) };
}

describe('the proposal hash', () => {
  const governance = governanceOf([alice, bob, carol]);
  const proposal = propose(governance);

  it('is the SHA-256 of the canonical (RFC 8785) content document', () => {
    const document = proposalDocument(proposal.content);
    expect(proposal.hash).toBe(createHash('sha256').update(document).digest('hex'));
    // Keys sorted, no whitespace: the bytes an officer's CLI recomputes.
    expect(document).toBe(
      '{"apiVersion":"signet.dev/v1","kind":"Proposal","spec":{"action":{"algorithm":null,"key":"demo-release","project":"example","type":"rotate-key"},' +
        `"createdAt":"${T0.toISOString()}","expiresAt":"${plus(T0, 86_400).toISOString()}","id":"proposal-0001","proposer":"alice","reason":"scheduled"}}`,
    );
  });

  it('changes with every field', () => {
    const variants = [
      { ...proposal.content, id: 'proposal-0002' },
      { ...proposal.content, proposer: 'bob' },
      { ...proposal.content, reason: 'other' },
      { ...proposal.content, createdAt: plus(T0, 1).toISOString() },
      { ...proposal.content, expiresAt: plus(T0, 1).toISOString() },
      { ...proposal.content, action: { ...ROTATE, algorithm: 'ed25519' as const } },
      { ...proposal.content, action: { ...ROTATE, project: 'other' } },
    ];
    const hashes = new Set(variants.map(proposalHash));
    expect(hashes.size).toBe(variants.length);
    expect(hashes.has(proposal.hash)).toBe(false);
  });

  it('expires after 24 hours by default, or the configured time', () => {
    expect(proposal.content.expiresAt).toBe(plus(T0, 24 * 3600).toISOString());
    const short = governanceOf([alice, bob, carol], { ...DEFAULT_QUORUM_POLICY, proposalTtlSeconds: 600 });
    expect(propose(short).content.expiresAt).toBe(plus(T0, 600).toISOString());
  });
});

describe('creating proposals', () => {
  const governance = governanceOf([alice, bob, carol]);

  it('lists every problem at once', () => {
    const error = expectThrows(
      () =>
        createProposal(
          { id: 'x', action: { type: 'rotate-key', project: 'Bad Project', key: '', algorithm: 'rsa-1024', extra: 1 }, proposer: 'alice', reason: 'a\u0000b' },
          governance,
          T0,
        ),
      'PROPOSAL_INVALID',
    ) as Error & { problems: string[] };
    expect(error.problems.length).toBeGreaterThanOrEqual(5);
    expect(error.problems.join('\n')).toMatch(/^id:/m);
    expect(error.problems.join('\n')).toMatch(/^reason:/m);
    expect(error.problems.join('\n')).toMatch(/action\.project/);
    expect(error.problems.join('\n')).toMatch(/action\.algorithm/);
  });

  it('refuses unknown actions, a compromise time in the future and non-canonical times', () => {
    expectThrows(() => propose(governance, { type: 'delete-everything' } as unknown as ProposalAction), 'PROPOSAL_INVALID');
    expectThrows(() => propose(governance, { type: 'compromise-key', keyId: 'demo-release@1', compromisedAt: plus(T0, 60).toISOString() }), 'PROPOSAL_INVALID');
    expectThrows(() => propose(governance, { type: 'compromise-key', keyId: 'demo-release@1', compromisedAt: '2026-03-01T12:00:00Z' }), 'PROPOSAL_INVALID');
    expectThrows(() => propose(governance, { type: 'retire-key', keyId: 'demo-release' }), 'PROPOSAL_INVALID');
  });

  it('needs an active officer or the scheduler as proposer', () => {
    expectThrows(() => propose(governance, ROTATE, 'mallory'), 'OFFICER_UNKNOWN');
    const removed = governanceAfter(propose(governance, { type: 'remove-officer', officer: 'carol' }), governance, T0);
    expectThrows(() => propose(removed, ROTATE, 'carol'), 'OFFICER_REMOVED');
    const revoked = { ...governance, revokedCertificates: [bob.certificateSha256] };
    expectThrows(() => propose(revoked, ROTATE, 'bob'), 'OFFICER_CERTIFICATE_REVOKED');
    expect(propose(governance, ROTATE, SYSTEM_PROPOSER).content.proposer).toBe(SYSTEM_PROPOSER);
  });
});

describe('approving: each refusal code', () => {
  const governance = governanceOf([alice, bob, carol, dave]);
  const proposal = propose(governance);
  const now = plus(T0, 60);
  const refusedWith = (outcome: ApprovalOutcome): string => (outcome.kind === 'refused' ? outcome.code : 'accepted');

  it('accepts a fresh code from an officer other than the proposer, and stores the step, not the code', () => {
    const outcome = attempt(proposal, governance, bob, now);
    expect(outcome.kind).toBe('accepted');
    if (outcome.kind !== 'accepted') return;
    expect(outcome.approval).toEqual({
      officer: 'bob',
      certificateSha256: bob.certificateSha256,
      proposalHash: proposal.hash,
      totpStep: stepOf(now),
      approvedAt: now.toISOString(),
    });
    expect(outcome.officer.lastTotpStep).toBe(stepOf(now));
    expect(outcome.quorum).toMatchObject({ required: 2, counted: ['bob'], met: false });
    expect(JSON.stringify(outcome)).not.toContain(codeFor(bob, now));
  });

  it('PROPOSAL_TAMPERED: stored content that no longer matches its hash', () => {
    const tampered = { ...proposal, content: { ...proposal.content, expiresAt: plus(T0, 999_999).toISOString() } };
    expect(refusedWith(attempt(tampered, governance, bob, now, { proposalHash: tampered.hash }))).toBe('PROPOSAL_TAMPERED');
  });

  it('PROPOSAL_CLOSED', () => {
    expect(refusedWith(attempt(closeProposal(proposal, 'withdrawn', now), governance, bob, now))).toBe('PROPOSAL_CLOSED');
  });

  it('PROPOSAL_EXPIRED, from the expiry instant on', () => {
    const expiry = new Date(proposal.content.expiresAt);
    expect(refusedWith(attempt(proposal, governance, bob, plus(expiry, -1)))).toBe('accepted');
    expect(refusedWith(attempt(proposal, governance, bob, expiry))).toBe('PROPOSAL_EXPIRED');
  });

  it('PROPOSAL_HASH_MISMATCH: an approval for other content', () => {
    const other = propose(governance, { ...ROTATE, algorithm: 'ed25519' });
    expect(refusedWith(attempt(proposal, governance, bob, now, { proposalHash: other.hash }))).toBe('PROPOSAL_HASH_MISMATCH');
  });

  it('OFFICER_UNKNOWN: a certificate that is not an officer’s, or not the named officer’s', () => {
    expect(refusedWith(attempt(proposal, governance, bob, now, { certificateSha256: fingerprint('ci-client') }))).toBe('OFFICER_UNKNOWN');
    expect(refusedWith(attempt(proposal, governance, bob, now, { certificateSha256: carol.certificateSha256 }))).toBe('OFFICER_UNKNOWN');
  });

  it('OFFICER_CERTIFICATE_REVOKED', () => {
    const revoked = { ...governance, revokedCertificates: [bob.certificateSha256] };
    expect(refusedWith(attempt(proposal, revoked, bob, now))).toBe('OFFICER_CERTIFICATE_REVOKED');
  });

  it('OFFICER_REMOVED', () => {
    const removed = governanceAfter(propose(governance, { type: 'remove-officer', officer: 'bob' }), governance, T0);
    expect(refusedWith(attempt(proposal, removed, bob, now))).toBe('OFFICER_REMOVED');
  });

  it('PROPOSER_CANNOT_APPROVE unless policy allows it', () => {
    expect(refusedWith(attempt(proposal, governance, alice, now))).toBe('PROPOSER_CANNOT_APPROVE');
    const lenient = { ...governance, quorum: { ...governance.quorum, proposerMayApprove: true } };
    expect(refusedWith(attempt(proposal, lenient, alice, now))).toBe('accepted');
  });

  it('APPROVAL_DUPLICATE: the same officer twice, even with a new code', () => {
    const first = accept(attempt(proposal, governance, bob, now), governance);
    const later = plus(now, 60);
    expect(refusedWith(attempt(first.proposal, first.governance, bob, later))).toBe('APPROVAL_DUPLICATE');
  });

  it('OFFICER_NOT_ENROLLED', () => {
    const unenrolled = replaceOfficer(governance, { ...governance.officers[1]!, sealedTotpSecret: null });
    expect(refusedWith(attempt(proposal, unenrolled, bob, now))).toBe('OFFICER_NOT_ENROLLED');
    expect(refusedWith(attempt(proposal, governance, bob, now, { secret: null }))).toBe('OFFICER_NOT_ENROLLED');
  });

  it('TOTP_INVALID: a wrong code, a code of another secret, a stale code', () => {
    expect(refusedWith(attempt(proposal, governance, bob, now, { code: 'abcdef' }))).toBe('TOTP_INVALID');
    const window = [-1, 0, 1].map((d) => codeFor(bob, now, d));
    const foreign = codeFor(carol, now);
    if (!window.includes(foreign)) expect(refusedWith(attempt(proposal, governance, bob, now, { code: foreign }))).toBe('TOTP_INVALID');
    const stale = codeFor(bob, now, -2);
    if (!window.includes(stale)) expect(refusedWith(attempt(proposal, governance, bob, now, { code: stale }))).toBe('TOTP_INVALID');
  });

  it('TOTP_REUSED: a code counts once per officer, across proposals', () => {
    const code = codeFor(bob, now);
    const first = accept(attempt(proposal, governance, bob, now, { code }), governance);
    const second = createProposal({ id: 'proposal-0002', action: { type: 'set-policy', policySha256: fingerprint('p') }, proposer: 'alice' }, first.governance, now);
    expect(refusedWith(attempt(second, first.governance, bob, plus(now, 5), { code }))).toBe('TOTP_REUSED');
    // The next step's code is fresh.
    expect(refusedWith(attempt(second, first.governance, bob, plus(now, 30)))).toBe('accepted');
  });

  it('a refusal burns nothing: the same code then works where it is allowed', () => {
    const code = codeFor(bob, now);
    const other = propose(governance, { ...ROTATE, algorithm: 'ed25519' });
    expect(refusedWith(attempt(proposal, governance, bob, now, { code, proposalHash: other.hash }))).toBe('PROPOSAL_HASH_MISMATCH');
    expect(refusedWith(attempt(proposal, governance, bob, now, { code }))).toBe('accepted');
  });

  it('every refusal code is exercised above', () => {
    // Keeps this suite in step with errors.ts: a new code needs a case here.
    expect([...APPROVAL_REFUSAL_CODES].sort()).toEqual(
      [
        'APPROVAL_DUPLICATE',
        'OFFICER_CERTIFICATE_REVOKED',
        'OFFICER_NOT_ENROLLED',
        'OFFICER_REMOVED',
        'OFFICER_UNKNOWN',
        'PROPOSAL_CLOSED',
        'PROPOSAL_EXPIRED',
        'PROPOSAL_HASH_MISMATCH',
        'PROPOSAL_TAMPERED',
        'PROPOSER_CANNOT_APPROVE',
        'TOTP_INVALID',
        'TOTP_REUSED',
      ].sort(),
    );
  });
});

describe('counting approvals against the current officers', () => {
  const start = governanceOf([alice, bob, carol, dave]);
  const now = plus(T0, 60);
  const approved = ((): { proposal: ProposalRecord; governance: Governance } => {
    let state = { proposal: propose(start), governance: start };
    state = accept(attempt(state.proposal, state.governance, bob, now), state.governance);
    state = accept(attempt(state.proposal, state.governance, carol, now), state.governance);
    return state;
  })();

  it('two distinct officers meet the default quorum', () => {
    expect(quorumStatus(approved.proposal, approved.governance)).toMatchObject({ required: 2, counted: ['bob', 'carol'], met: true });
  });

  it('a removed officer stops counting', () => {
    const removal = createProposal({ id: 'proposal-0009', action: { type: 'remove-officer', officer: 'carol' }, proposer: 'alice' }, approved.governance, now);
    const after = governanceAfter(removal, approved.governance, now);
    const status = quorumStatus(approved.proposal, after);
    expect(status).toMatchObject({ counted: ['bob'], met: false });
    expect(status.discounted).toEqual([{ officer: 'carol', reason: 'OFFICER_REMOVED' }]);
  });

  it('a revoked or replaced certificate stops counting', () => {
    const revoked = { ...approved.governance, revokedCertificates: [carol.certificateSha256] };
    expect(quorumStatus(approved.proposal, revoked).discounted).toEqual([{ officer: 'carol', reason: 'OFFICER_CERTIFICATE_REVOKED' }]);
    const carolNow = approved.governance.officers.find((o) => o.name === 'carol')!;
    const replaced = replaceOfficer(approved.governance, { ...carolNow, certificateSha256: fingerprint('carol-renewed') });
    expect(quorumStatus(approved.proposal, replaced).discounted).toEqual([{ officer: 'carol', reason: 'CERTIFICATE_REPLACED' }]);
  });

  it('a raised quorum applies to open proposals', () => {
    const raised = { ...approved.governance, quorum: { ...approved.governance.quorum, approvals: { 'rotate-key': 3 } } };
    expect(quorumMet(approved.proposal, raised)).toBe(false);
  });

  it('stored approvals that do not belong are not counted (defence against a bad store)', () => {
    const forged = {
      ...approved.proposal,
      approvals: [
        ...approved.proposal.approvals,
        { ...approved.proposal.approvals[0]!, officer: 'dave', certificateSha256: dave.certificateSha256, proposalHash: fingerprint('x') },
        { ...approved.proposal.approvals[0]! },
        { ...approved.proposal.approvals[0]!, officer: 'alice', certificateSha256: alice.certificateSha256 },
        { ...approved.proposal.approvals[0]!, officer: 'dave', certificateSha256: dave.certificateSha256, approvedAt: approved.proposal.content.expiresAt },
      ],
    };
    const status = quorumStatus(forged, approved.governance);
    expect(status.counted).toEqual(['bob', 'carol']);
    expect(status.discounted.map((d) => d.reason)).toEqual(['PROPOSAL_HASH_MISMATCH', 'APPROVAL_DUPLICATE', 'PROPOSER_CANNOT_APPROVE', 'AFTER_EXPIRY']);
    const tampered = { ...approved.proposal, content: { ...approved.proposal.content, reason: 'changed' } };
    expect(quorumMet(tampered, approved.governance)).toBe(false);
  });
});

describe('freeze and unfreeze', () => {
  const governance = governanceOf([alice, bob, carol]);
  const now = plus(T0, 60);

  it('one officer freezes a project alone, with their own code', () => {
    const freeze = propose(governance, { type: 'freeze', project: 'example' });
    const { proposal, governance: g } = accept(attempt(freeze, governance, alice, now), governance);
    const check = checkExecution(proposal, { governance: g, keys: [], now });
    expect(check.kind).toBe('executable');
    const frozen = governanceAfter(proposal, g, now);
    expect(isFrozen(frozen.freeze, 'example')).toBe(true);
    expect(isFrozen(frozen.freeze, 'other')).toBe(false);
    expect(frozen.freeze.projects).toEqual([{ project: 'example', proposalId: freeze.content.id, by: 'alice', at: now.toISOString() }]);
  });

  it('a global freeze stops every project', () => {
    const freeze = propose(governance, { type: 'freeze', project: null });
    const { proposal, governance: g } = accept(attempt(freeze, governance, alice, now), governance);
    expect(isFrozen(governanceAfter(proposal, g, now).freeze, 'anything')).toBe(true);
  });

  it('unfreezing needs the quorum, the proposer not counting', () => {
    const frozenState = governanceAfter(
      accept(attempt(propose(governance, { type: 'freeze', project: 'example' }), governance, alice, now), governance).proposal,
      governance,
      now,
    );
    let state = { proposal: propose(frozenState, { type: 'unfreeze', project: 'example' }), governance: frozenState };
    expect(attempt(state.proposal, state.governance, alice, plus(now, 30)).kind).toBe('refused');
    state = accept(attempt(state.proposal, state.governance, bob, plus(now, 30)), state.governance);
    expect(checkExecution(state.proposal, { governance: state.governance, keys: [], now: plus(now, 30) })).toMatchObject({ code: 'QUORUM_NOT_MET' });
    state = accept(attempt(state.proposal, state.governance, carol, plus(now, 30)), state.governance);
    expect(checkExecution(state.proposal, { governance: state.governance, keys: [], now: plus(now, 30) }).kind).toBe('executable');
    expect(isFrozen(governanceAfter(state.proposal, state.governance, now).freeze, 'example')).toBe(false);
  });

  it('an unfreeze of a scope that is not frozen is refused', () => {
    let state = { proposal: propose(governance, { type: 'unfreeze', project: 'example' }), governance };
    state = accept(attempt(state.proposal, state.governance, bob, now), state.governance);
    state = accept(attempt(state.proposal, state.governance, carol, now), state.governance);
    expect(checkExecution(state.proposal, { governance: state.governance, keys: [], now })).toMatchObject({ code: 'NOT_FROZEN' });
  });

  it('the freeze quorum cannot be configured above one', () => {
    expectThrows(() => parseQuorumPolicy({ ...DEFAULT_QUORUM_POLICY, approvals: { freeze: 2 } }), 'QUORUM_POLICY_INVALID');
  });
});

describe('execution', () => {
  const governance = governanceOf([alice, bob, carol, dave]);
  const now = plus(T0, 60);
  const v1 = activeKey('demo-release', 1);

  function approvedBy(action: ProposalAction, officers: readonly TestOfficer[], g: Governance = governance): { proposal: ProposalRecord; governance: Governance } {
    let state = { proposal: propose(g, action), governance: g };
    for (const officer of officers) state = accept(attempt(state.proposal, state.governance, officer, now), state.governance);
    return state;
  }

  it('refuses before the quorum, after expiry, when closed or tampered', () => {
    const one = approvedBy(ROTATE, [bob]);
    expect(checkExecution(one.proposal, { governance: one.governance, keys: [v1], now })).toMatchObject({ code: 'QUORUM_NOT_MET' });
    const two = approvedBy(ROTATE, [bob, carol]);
    expect(checkExecution(two.proposal, { governance: two.governance, keys: [v1], now }).kind).toBe('executable');
    const expiry = new Date(two.proposal.content.expiresAt);
    expect(checkExecution(two.proposal, { governance: two.governance, keys: [v1], now: expiry })).toMatchObject({ code: 'PROPOSAL_EXPIRED' });
    const executed = closeProposal(two.proposal, 'executed', now);
    expect(checkExecution(executed, { governance: two.governance, keys: [v1], now })).toMatchObject({ code: 'PROPOSAL_CLOSED' });
    expectThrows(() => closeProposal(executed, 'executed', now), 'PROPOSAL_CLOSED');
    const tampered = { ...two.proposal, content: { ...two.proposal.content, action: { ...ROTATE, key: 'other' } } };
    expect(checkExecution(tampered, { governance: two.governance, keys: [v1], now })).toMatchObject({ code: 'PROPOSAL_TAMPERED' });
  });

  it('rotation: the generated version becomes active and the old one verify-only', () => {
    const { proposal, governance: g } = approvedBy(ROTATE, [bob, carol]);
    expect(checkExecution(proposal, { governance: g, keys: [], now })).toMatchObject({ code: 'KEY_NOT_FOUND' });
    expect(checkExecution(proposal, { governance: g, keys: [{ ...v1, state: 'verify-only' }], now })).toMatchObject({ code: 'KEY_STATE_CONFLICT' });
    expect(rotationAlgorithm(proposal, [v1])).toBe('ecdsa-p256');
    const v2: KeyVersionRecord = { ...activeKey('demo-release', 2), state: 'pending' };
    const changed = keyVersionsAfter(proposal, [v1], now, v2);
    expect(changed.map((k) => [k.keyId, k.state])).toEqual([
      ['demo-release@1', 'verify-only'],
      ['demo-release@2', 'active'],
    ]);
    expectThrows(() => keyVersionsAfter(proposal, [v1], now, { ...v2, algorithm: 'ed25519' }), 'KEY_STATE_CONFLICT');
    expect(governanceAfter(proposal, g, now)).toBe(g);
  });

  it('rotation to a new algorithm', () => {
    const { proposal } = approvedBy({ ...ROTATE, algorithm: 'ed25519' }, [bob, carol]);
    expect(rotationAlgorithm(proposal, [v1])).toBe('ed25519');
  });

  it('retire needs a verify-only version; compromise needs an earlier time than any recorded', () => {
    const retire = approvedBy({ type: 'retire-key', keyId: 'demo-release@1' }, [bob, carol]);
    expect(checkExecution(retire.proposal, { governance: retire.governance, keys: [v1], now })).toMatchObject({ code: 'KEY_STATE_CONFLICT' });
    const verifyOnly = { ...v1, state: 'verify-only' as const, notAfter: T0.toISOString() };
    expect(checkExecution(retire.proposal, { governance: retire.governance, keys: [verifyOnly], now }).kind).toBe('executable');
    expect(keyVersionsAfter(retire.proposal, [verifyOnly], now)[0]!.state).toBe('retired');

    const compromisedAt = plus(T0, -3600).toISOString();
    const compromise = approvedBy({ type: 'compromise-key', keyId: 'demo-release@1', compromisedAt }, [bob, carol]);
    expect(checkExecution(compromise.proposal, { governance: compromise.governance, keys: [v1], now }).kind).toBe('executable');
    const [compromised] = keyVersionsAfter(compromise.proposal, [v1], now);
    expect(compromised).toMatchObject({ state: 'compromised', compromisedAt });
    expect(checkExecution(compromise.proposal, { governance: compromise.governance, keys: [compromised!], now })).toMatchObject({ code: 'KEY_STATE_CONFLICT' });
  });

  it('revocation may have its own smaller quorum', () => {
    const lenient = { ...governance, quorum: parseQuorumPolicy({ ...DEFAULT_QUORUM_POLICY, approvals: { 'compromise-key': 1, 'revoke-certificate': 1 } }) };
    const { proposal, governance: g } = approvedBy({ type: 'revoke-certificate', certificateSha256: fingerprint('ci') }, [bob], lenient);
    expect(checkExecution(proposal, { governance: g, keys: [], now }).kind).toBe('executable');
    expect(governanceAfter(proposal, g, now).revokedCertificates).toEqual([fingerprint('ci')]);
    const again = governanceAfter(proposal, g, now);
    expect(checkExecution(proposal, { governance: again, keys: [], now })).toMatchObject({ code: 'CERTIFICATE_ALREADY_REVOKED' });
    // Nothing else may drop below two.
    expectThrows(() => parseQuorumPolicy({ ...DEFAULT_QUORUM_POLICY, approvals: { 'rotate-key': 1 } }), 'QUORUM_POLICY_INVALID');
    expectThrows(() => parseQuorumPolicy({ ...DEFAULT_QUORUM_POLICY, defaultApprovals: 1 }), 'QUORUM_POLICY_INVALID');
  });

  it('officers: add, and refuse removals or quorums that would lock everyone out', () => {
    const add = approvedBy({ type: 'add-officer', officer: 'erin', certificateSha256: fingerprint('erin') }, [bob, carol]);
    const withErin = governanceAfter(add.proposal, add.governance, now);
    expect(withErin.officers.find((o) => o.name === 'erin')).toMatchObject({ status: 'active', sealedTotpSecret: null, lastTotpStep: null });
    expect(checkExecution(add.proposal, { governance: withErin, keys: [], now })).toMatchObject({ code: 'OFFICER_EXISTS' });
    expect(identifyOfficer(withErin, fingerprint('erin'))).toMatchObject({ kind: 'officer' });

    // Four officers, quorum 2 with the proposer excluded: one may go, a second may not.
    const small = governanceOf([alice, bob, carol]);
    const remove = approvedBy({ type: 'remove-officer', officer: 'dave' }, [bob, carol], governance);
    expect(checkExecution(remove.proposal, { governance: remove.governance, keys: [], now }).kind).toBe('executable');
    const removeFromThree = approvedBy({ type: 'remove-officer', officer: 'carol' }, [bob, carol], small);
    expect(checkExecution(removeFromThree.proposal, { governance: removeFromThree.governance, keys: [], now })).toMatchObject({ code: 'QUORUM_UNREACHABLE' });
    const unknown = approvedBy({ type: 'remove-officer', officer: 'zed' }, [bob, carol]);
    expect(checkExecution(unknown.proposal, { governance: unknown.governance, keys: [], now })).toMatchObject({ code: 'OFFICER_NOT_FOUND' });

    const tooHigh = approvedBy({ type: 'set-quorum', quorum: { ...DEFAULT_QUORUM_POLICY, defaultApprovals: 4 } }, [bob, carol]);
    expect(checkExecution(tooHigh.proposal, { governance: tooHigh.governance, keys: [], now })).toMatchObject({ code: 'QUORUM_UNREACHABLE' });
    const ok = approvedBy({ type: 'set-quorum', quorum: { ...DEFAULT_QUORUM_POLICY, defaultApprovals: 3 } }, [bob, carol]);
    expect(checkExecution(ok.proposal, { governance: ok.governance, keys: [], now }).kind).toBe('executable');
    expect(governanceAfter(ok.proposal, ok.governance, now).quorum.defaultApprovals).toBe(3);
    expect(quorumReachable(governanceAfter(ok.proposal, ok.governance, now))).toBe(true);
  });

  it('policy changes record the approved policy hash', () => {
    const { proposal, governance: g } = approvedBy({ type: 'set-policy', policySha256: fingerprint('policy v2') }, [bob, carol]);
    expect(governanceAfter(proposal, g, now).policySha256).toBe(fingerprint('policy v2'));
  });
});
