/**
 * The governance repository (store.ts, `GovernanceRepository`) on both backends:
 * officers, the compare-and-set of TOTP steps, the wrong-code window, proposals and
 * approvals, closing once, freezes, revoked client certificates, quorum settings; and
 * the validity windows a key state change now stores with it.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createProposal, DEFAULT_QUORUM_POLICY, initialGovernance, proposalHash, SYSTEM_PROPOSER, type ApprovalRecord, type ProposalRecord } from '../../keyrotation/proposals.js';
import type { StoredOfficer } from '../../store/store.js';
import { describeStore } from './backends.js';
import { keyVersion } from './sqlite-fixtures.js';

const T = new Date('2026-03-01T12:00:00.000Z');
const sha = (seed: string): string => createHash('sha256').update(seed).digest('hex');

function officer(name: string, overrides: Partial<StoredOfficer> = {}): StoredOfficer {
  return {
    name,
    certificateSha256: sha(`cert:${name}`),
    certificatePem: null,
    status: 'active',
    sealedTotpSecret: `signet-sealed:v1:00:${name}`,
    lastTotpStep: null,
    failedTotpCount: 0,
    failedTotpWindowStart: null,
    addedAt: T.toISOString(),
    removedAt: null,
    ...overrides,
  };
}

function proposal(id: string, action: unknown = { type: 'freeze', project: 'example' }, now = T): ProposalRecord {
  return createProposal({ id, action, proposer: SYSTEM_PROPOSER, reason: 'test' }, initialGovernance([]), now);
}

function approval(of: ProposalRecord, name: string, step = 100): ApprovalRecord {
  return { officer: name, certificateSha256: sha(`cert:${name}`), proposalHash: of.hash, totpStep: step, approvedAt: T.toISOString() };
}

describeStore('governance storage', (t) => {
  describe('officers', () => {
    it('inserts, lists by name and refuses a reused name or certificate', async () => {
      await t.store.governance.insertOfficer(officer('bob'));
      await t.store.governance.insertOfficer(officer('alice'));
      expect((await t.store.governance.listOfficers()).map((o) => o.name)).toEqual(['alice', 'bob']);
      expect(await t.store.governance.getOfficer('bob')).toEqual(officer('bob'));
      expect(await t.store.governance.getOfficer('nobody')).toBeNull();
      await expect(t.store.governance.insertOfficer(officer('bob', { certificateSha256: sha('other') }))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await expect(t.store.governance.insertOfficer(officer('carol', { certificateSha256: sha('cert:bob') }))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await expect(t.store.governance.insertOfficer(officer('Bad Name'))).rejects.toBeInstanceOf(TypeError);
    });

    it('removes an active officer once', async () => {
      await t.store.governance.insertOfficer(officer('bob'));
      await t.store.governance.removeOfficer('bob', '2026-03-02T00:00:00.000Z');
      expect(await t.store.governance.getOfficer('bob')).toMatchObject({ status: 'removed', removedAt: '2026-03-02T00:00:00.000Z' });
      await expect(t.store.governance.removeOfficer('bob', '2026-03-03T00:00:00.000Z')).rejects.toMatchObject({ code: 'STORE_NOT_FOUND' });
    });

    it('enrols once', async () => {
      await t.store.governance.insertOfficer(officer('dave', { sealedTotpSecret: null }));
      await t.store.governance.setTotpSecret('dave', 'signet-sealed:v1:00:AAAA');
      await expect(t.store.governance.setTotpSecret('dave', 'signet-sealed:v1:00:BBBB')).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect((await t.store.governance.getOfficer('dave'))?.sealedTotpSecret).toBe('signet-sealed:v1:00:AAAA');
    });

    it('moves the TOTP step only by compare-and-set, and clears the wrong-code count', async () => {
      await t.store.governance.insertOfficer(officer('bob', { failedTotpCount: 3, failedTotpWindowStart: T.toISOString() }));
      const cert = sha('cert:bob');
      await t.store.governance.recordTotpUse({ officer: 'bob', certificateSha256: cert, expectedLastStep: null, step: 10 });
      expect(await t.store.governance.getOfficer('bob')).toMatchObject({ lastTotpStep: 10, failedTotpCount: 0, failedTotpWindowStart: null });
      // A second use read before the first committed: the compare fails.
      await expect(t.store.governance.recordTotpUse({ officer: 'bob', certificateSha256: cert, expectedLastStep: null, step: 11 })).rejects.toMatchObject({
        code: 'STORE_CONFLICT',
      });
      // Another certificate (replaced or not the officer's) does not match either.
      await expect(t.store.governance.recordTotpUse({ officer: 'bob', certificateSha256: sha('x'), expectedLastStep: 10, step: 11 })).rejects.toMatchObject({
        code: 'STORE_CONFLICT',
      });
      await expect(t.store.governance.recordTotpUse({ officer: 'bob', certificateSha256: cert, expectedLastStep: 10, step: 10 })).rejects.toBeInstanceOf(TypeError);
      await t.store.governance.recordTotpUse({ officer: 'bob', certificateSha256: cert, expectedLastStep: 10, step: 12 });
      expect((await t.store.governance.getOfficer('bob'))?.lastTotpStep).toBe(12);
    });

    it('lets only one of two concurrent uses of the same read step win', async () => {
      await t.store.governance.insertOfficer(officer('bob'));
      const other = await t.db.open();
      const use = { officer: 'bob', certificateSha256: sha('cert:bob'), expectedLastStep: null, step: 20 };
      const outcomes = await Promise.allSettled([t.store.governance.recordTotpUse(use), other.governance.recordTotpUse({ ...use, step: 21 })]);
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    });

    it('counts wrong codes within a window and starts a new window after it', async () => {
      await t.store.governance.insertOfficer(officer('bob'));
      const at = (minutes: number): string => new Date(T.getTime() + minutes * 60_000).toISOString();
      expect(await t.store.governance.recordTotpFailure('bob', at(0), at(-15))).toEqual({ count: 1, windowStart: at(0) });
      expect(await t.store.governance.recordTotpFailure('bob', at(5), at(-10))).toEqual({ count: 2, windowStart: at(0) });
      expect(await t.store.governance.recordTotpFailure('bob', at(20), at(5))).toEqual({ count: 1, windowStart: at(20) });
      await expect(t.store.governance.recordTotpFailure('nobody', at(0), at(-1))).rejects.toMatchObject({ code: 'STORE_NOT_FOUND' });
    });
  });

  describe('proposals', () => {
    it('stores the canonical document and reads back the same record, approvals in order', async () => {
      await t.store.governance.insertOfficer(officer('alice'));
      await t.store.governance.insertOfficer(officer('bob'));
      const p = proposal('proposal-0001', { type: 'rotate-key', project: 'example', key: 'demo-release', algorithm: null });
      await t.store.governance.insertProposal(p);
      expect(await t.store.governance.getProposal('proposal-0001')).toEqual(p);
      await t.store.governance.addApproval('proposal-0001', approval(p, 'bob'));
      await t.store.governance.addApproval('proposal-0001', { ...approval(p, 'alice'), approvedAt: '2026-03-01T12:00:01.000Z' });
      const stored = await t.store.governance.getProposal('proposal-0001');
      expect(stored?.approvals.map((a) => a.officer)).toEqual(['bob', 'alice']);
      expect(stored !== null && proposalHash(stored.content) === stored.hash).toBe(true);
    });

    it('refuses a proposal whose hash is not its content’s, a second with the same id, one with approvals', async () => {
      const p = proposal('proposal-0002');
      await expect(t.store.governance.insertProposal({ ...p, hash: sha('x') })).rejects.toBeInstanceOf(TypeError);
      await t.store.governance.insertProposal(p);
      await expect(t.store.governance.insertProposal(p)).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await expect(t.store.governance.insertProposal({ ...proposal('proposal-0003'), approvals: [approval(p, 'bob')] })).rejects.toBeInstanceOf(TypeError);
    });

    it('takes one approval per officer, none on a closed proposal, and closes once', async () => {
      await t.store.governance.insertOfficer(officer('bob'));
      const p = proposal('proposal-0004');
      await t.store.governance.insertProposal(p);
      await t.store.governance.addApproval(p.content.id, approval(p, 'bob'));
      await expect(t.store.governance.addApproval(p.content.id, approval(p, 'bob', 101))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await expect(t.store.governance.addApproval(p.content.id, approval(p, 'nobody'))).rejects.toMatchObject({ code: 'STORE_NOT_FOUND' });
      await expect(t.store.governance.addApproval('proposal-none', approval(p, 'bob'))).rejects.toMatchObject({ code: 'STORE_NOT_FOUND' });
      await t.store.governance.closeProposal(p.content.id, 'executed', '2026-03-01T13:00:00.000Z');
      await expect(t.store.governance.closeProposal(p.content.id, 'executed', '2026-03-01T13:00:01.000Z')).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await t.store.governance.insertOfficer(officer('carol'));
      await expect(t.store.governance.addApproval(p.content.id, approval(p, 'carol'))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect(await t.store.governance.getProposal(p.content.id)).toMatchObject({ status: 'executed', closedAt: '2026-03-01T13:00:00.000Z' });
    });

    it('closes a proposal once when two stores race', async () => {
      const p = proposal('proposal-0005');
      await t.store.governance.insertProposal(p);
      const other = await t.db.open();
      const outcomes = await Promise.allSettled([
        t.store.governance.closeProposal(p.content.id, 'executed', '2026-03-01T13:00:00.000Z'),
        other.governance.closeProposal(p.content.id, 'withdrawn', '2026-03-01T13:00:00.000Z'),
      ]);
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    });

    it('lists newest first, by status, within the limit', async () => {
      for (let i = 0; i < 3; i++) await t.store.governance.insertProposal(proposal(`proposal-100${i}`, undefined, new Date(T.getTime() + i * 1000)));
      await t.store.governance.closeProposal('proposal-1001', 'withdrawn', T.toISOString());
      expect((await t.store.governance.listProposals()).map((p) => p.content.id)).toEqual(['proposal-1002', 'proposal-1001', 'proposal-1000']);
      expect((await t.store.governance.listProposals({ status: 'open' })).map((p) => p.content.id)).toEqual(['proposal-1002', 'proposal-1000']);
      expect(await t.store.governance.listProposals({ limit: 1 })).toHaveLength(1);
      await expect(t.store.governance.listProposals({ limit: 0 })).rejects.toBeInstanceOf(TypeError);
    });

    it('reports a damaged stored document as STORE_CORRUPT', async () => {
      await t.store.governance.insertProposal(proposal('proposal-0006'));
      await t.db.raw.execUnchecked("UPDATE proposals SET document = '{\"apiVersion\":1}' WHERE id = 'proposal-0006'");
      await expect(t.store.governance.getProposal('proposal-0006')).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    });
  });

  describe('freezes, revocations, settings', () => {
    it('freezes a scope once, lists global first, unfreezes exactly that scope', async () => {
      await t.store.governance.insertProposal(proposal('proposal-0007'));
      const mark = { proposalId: 'proposal-0007', by: 'alice', at: T.toISOString() };
      await t.store.governance.setFreeze({ ...mark, project: 'example' });
      await t.store.governance.setFreeze({ ...mark, project: null });
      await t.store.governance.setFreeze({ ...mark, project: 'example', by: 'bob' });
      expect(await t.store.governance.listFreezes()).toEqual([
        { ...mark, project: null },
        { ...mark, project: 'example' },
      ]);
      await t.store.governance.clearFreeze(null);
      await expect(t.store.governance.clearFreeze(null)).rejects.toMatchObject({ code: 'STORE_NOT_FOUND' });
      expect(await t.store.governance.listFreezes()).toEqual([{ ...mark, project: 'example' }]);
    });

    it('revokes a certificate once', async () => {
      await t.store.governance.insertProposal(proposal('proposal-0008'));
      const record = { certificateSha256: sha('ci'), proposalId: 'proposal-0008', revokedAt: T.toISOString() };
      await t.store.governance.revokeCertificate(record);
      await expect(t.store.governance.revokeCertificate(record)).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      expect(await t.store.governance.listRevokedCertificates()).toEqual([record]);
    });

    it('keeps the quorum and the approved policy hash', async () => {
      expect(await t.store.governance.settings()).toEqual({ quorum: null, policySha256: null });
      const quorum = { ...DEFAULT_QUORUM_POLICY, defaultApprovals: 3, approvals: { 'compromise-key': 1 } };
      await t.store.governance.setQuorum(quorum, T.toISOString());
      await t.store.governance.setPolicySha256(sha('policy'), T.toISOString());
      expect(await t.store.governance.settings()).toEqual({ quorum, policySha256: sha('policy') });
      await expect(t.store.governance.setQuorum({ ...quorum, defaultApprovals: 1 }, T.toISOString())).rejects.toBeInstanceOf(TypeError);
    });
  });

  describe('key validity windows', () => {
    it('stores the window with the state change, an empty one included', async () => {
      await t.store.keys.insert(keyVersion('k', 1, 'active'));
      await t.store.keys.insert(keyVersion('k', 2, 'pending'));
      await t.store.transaction(async (tx) => {
        await tx.keys.updateState('k@1', 'verify-only', '2026-03-01T12:00:00.000Z', { notBefore: '2025-01-02T03:04:05.000Z', notAfter: '2026-03-01T12:00:00.000Z' });
        await tx.keys.updateState('k@2', 'active', '2026-03-01T12:00:00.000Z', { notBefore: '2026-03-01T12:00:00.000Z', notAfter: null });
      });
      expect(await t.store.keys.get('k@1')).toMatchObject({ state: 'verify-only', notAfter: '2026-03-01T12:00:00.000Z' });
      expect(await t.store.keys.get('k@2')).toMatchObject({ state: 'active', notBefore: '2026-03-01T12:00:00.000Z', notAfter: null });
      await t.store.keys.insert(keyVersion('k', 3, 'pending'));
      await t.store.keys.updateState('k@3', 'retired', '2026-03-02T00:00:00.000Z', { notBefore: '2026-03-02T00:00:00.000Z', notAfter: '2026-03-02T00:00:00.000Z' });
      expect(await t.store.keys.get('k@3')).toMatchObject({ state: 'retired', notBefore: '2026-03-02T00:00:00.000Z', notAfter: '2026-03-02T00:00:00.000Z' });
      await expect(
        t.store.keys.updateState('k@3', 'retired', '2026-03-02T00:00:00.000Z', { notBefore: '2026-03-02T00:00:00.000Z', notAfter: '2026-03-01T00:00:00.000Z' }),
      ).rejects.toBeInstanceOf(TypeError);
    });
  });
});
