/**
 * `GovernanceRepository` on SQLite: officers, proposals and approvals, freezes, revoked
 * client certificates and quorum settings.
 *
 * Every read-then-write runs under the file's write lock (`atomically`: a savepoint
 * inside a transaction, else BEGIN IMMEDIATE), so the compare-and-set of an officer's
 * TOTP step, the single approval per officer and the single closing of a proposal hold
 * across processes sharing the file; the primary keys refuse whatever slips past.
 */
import type { ApprovalRecord, ProposalRecord, ProposalStatus, QuorumPolicy } from '../../keyrotation/proposals.js';
import { StoreError } from '../errors.js';
import {
  freezeFromRow,
  officerFromRow,
  proposalFromRows,
  requireApproval,
  requireCloseStatus,
  requireFreeze,
  requireNewProposal,
  requireOfficerName,
  requireProposalFilter,
  requireProposalId,
  requireQuorum,
  requireRevokedCertificate,
  requireScope,
  requireSealedSecret,
  requireSha256,
  requireStoredOfficer,
  requireTotpUse,
  revokedCertificateFromRow,
  settingsFromRow,
} from '../governance-validation.js';
import type {
  FreezeRecord,
  GovernanceRepository,
  GovernanceSettingsRecord,
  RevokedCertificateRecord,
  StoredOfficer,
  TotpUse,
} from '../store.js';
import { describeId, requireTimestamp } from '../validation.js';
import { atomically, consistently, type Runner, type SqliteAccess } from './sqlite-support.js';

const OFFICER_COLUMNS =
  'name, certificate_sha256, certificate_pem, status, sealed_totp_secret, last_totp_step, failed_totp_count, failed_totp_window_start, added_at, removed_at';
const PROPOSAL_COLUMNS = 'id, hash, document, action, proposer, created_at, expires_at, status, closed_at';
const APPROVAL_COLUMNS = 'officer, certificate_sha256, proposal_hash, totp_step, approved_at';

/** The public repository: each call handed to a runner (queued, or inside a transaction). */
export class SqliteGovernanceRepository implements GovernanceRepository {
  readonly #operations: SqliteGovernanceOperations;
  readonly #run: Runner;

  constructor(operations: SqliteGovernanceOperations, run: Runner) {
    this.#operations = operations;
    this.#run = run;
  }

  listOfficers(): Promise<StoredOfficer[]> {
    return this.#run('listing officers', () => this.#operations.listOfficers(), 'read');
  }

  getOfficer(name: string): Promise<StoredOfficer | null> {
    return this.#run(`reading officer ${describeId(name)}`, () => this.#operations.getOfficer(name), 'read');
  }

  insertOfficer(officer: StoredOfficer): Promise<void> {
    return this.#run(`inserting officer ${describeId(fieldOf(officer, 'name'))}`, () => {
      this.#operations.insertOfficer(officer);
    });
  }

  removeOfficer(name: string, at: string): Promise<void> {
    return this.#run(`removing officer ${describeId(name)}`, () => {
      this.#operations.removeOfficer(name, at);
    });
  }

  setTotpSecret(name: string, sealed: string): Promise<void> {
    return this.#run(`enrolling officer ${describeId(name)}`, () => {
      this.#operations.setTotpSecret(name, sealed);
    });
  }

  recordTotpUse(use: TotpUse): Promise<void> {
    return this.#run(`recording a code of officer ${describeId(fieldOf(use, 'officer'))}`, () => {
      this.#operations.recordTotpUse(use);
    });
  }

  recordTotpFailure(officer: string, at: string, windowStartsAfter: string): Promise<{ count: number; windowStart: string }> {
    return this.#run(`counting a wrong code of officer ${describeId(officer)}`, () =>
      this.#operations.recordTotpFailure(officer, at, windowStartsAfter),
    );
  }

  listRevokedCertificates(): Promise<RevokedCertificateRecord[]> {
    return this.#run('listing revoked client certificates', () => this.#operations.listRevokedCertificates(), 'read');
  }

  revokeCertificate(record: RevokedCertificateRecord): Promise<void> {
    return this.#run('revoking a client certificate', () => {
      this.#operations.revokeCertificate(record);
    });
  }

  settings(): Promise<GovernanceSettingsRecord> {
    return this.#run('reading the governance settings', () => this.#operations.settings(), 'read');
  }

  setQuorum(quorum: QuorumPolicy, at: string): Promise<void> {
    return this.#run('changing the quorum', () => {
      this.#operations.setQuorum(quorum, at);
    });
  }

  setPolicySha256(sha256: string, at: string): Promise<void> {
    return this.#run('recording the approved policy', () => {
      this.#operations.setPolicySha256(sha256, at);
    });
  }

  listFreezes(): Promise<FreezeRecord[]> {
    return this.#run('listing freezes', () => this.#operations.listFreezes(), 'read');
  }

  setFreeze(freeze: FreezeRecord): Promise<void> {
    return this.#run('freezing signing', () => {
      this.#operations.setFreeze(freeze);
    });
  }

  clearFreeze(project: string | null): Promise<void> {
    return this.#run('unfreezing signing', () => {
      this.#operations.clearFreeze(project);
    });
  }

  insertProposal(proposal: ProposalRecord): Promise<void> {
    return this.#run('inserting a proposal', () => {
      this.#operations.insertProposal(proposal);
    });
  }

  getProposal(id: string): Promise<ProposalRecord | null> {
    return this.#run(`reading proposal ${describeId(id)}`, () => this.#operations.getProposal(id), 'read');
  }

  listProposals(filter?: { readonly status?: ProposalStatus; readonly limit?: number }): Promise<ProposalRecord[]> {
    return this.#run('listing proposals', () => this.#operations.listProposals(filter), 'read');
  }

  addApproval(proposalId: string, approval: ApprovalRecord): Promise<void> {
    return this.#run(`approving proposal ${describeId(proposalId)}`, () => {
      this.#operations.addApproval(proposalId, approval);
    });
  }

  closeProposal(id: string, status: 'executed' | 'withdrawn', at: string): Promise<void> {
    return this.#run(`closing proposal ${describeId(id)}`, () => {
      this.#operations.closeProposal(id, status, at);
    });
  }
}

/** Describing a call must not throw, whatever a caller passed; the operation validates. */
function fieldOf(record: unknown, field: string): unknown {
  return typeof record === 'object' && record !== null && field in record ? (record as Record<string, unknown>)[field] : undefined;
}

/** The synchronous SQL; callers provide ordering and error translation. */
export class SqliteGovernanceOperations {
  readonly #access: SqliteAccess;

  constructor(access: SqliteAccess) {
    this.#access = access;
  }

  listOfficers(): StoredOfficer[] {
    return this.#statement(`SELECT ${OFFICER_COLUMNS} FROM officers ORDER BY name`).all().map(officerFromRow);
  }

  getOfficer(name: string): StoredOfficer | null {
    requireOfficerName(name);
    const row = this.#statement(`SELECT ${OFFICER_COLUMNS} FROM officers WHERE name = ?`).get(name);
    return row === undefined ? null : officerFromRow(row);
  }

  insertOfficer(candidate: StoredOfficer): void {
    const officer = requireStoredOfficer(candidate);
    atomically(this.#access, () => {
      if (this.#statement('SELECT 1 FROM officers WHERE name = ?').get(officer.name) !== undefined) {
        throw new StoreError('STORE_CONFLICT', `officer ${officer.name} exists (names are never reused)`);
      }
      if (this.#statement('SELECT 1 FROM officers WHERE certificate_sha256 = ?').get(officer.certificateSha256) !== undefined) {
        throw new StoreError('STORE_CONFLICT', 'another officer holds this certificate');
      }
      this.#statement(`INSERT INTO officers (${OFFICER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
        officer.name,
        officer.certificateSha256,
        officer.certificatePem,
        officer.status,
        officer.sealedTotpSecret,
        officer.lastTotpStep,
        officer.failedTotpCount,
        officer.failedTotpWindowStart,
        officer.addedAt,
        officer.removedAt,
      );
    });
  }

  removeOfficer(name: string, at: string): void {
    requireOfficerName(name);
    const when = requireTimestamp('removal time', at);
    const changed = this.#statement("UPDATE officers SET status = 'removed', removed_at = ? WHERE name = ? AND status = 'active'").run(when, name).changes;
    if (changed === 0) throw new StoreError('STORE_NOT_FOUND', `no active officer ${name}`);
  }

  setTotpSecret(name: string, sealed: string): void {
    requireOfficerName(name);
    requireSealedSecret(sealed);
    atomically(this.#access, () => {
      const current = this.#statement("SELECT sealed_totp_secret FROM officers WHERE name = ? AND status = 'active'").get(name) as
        | { sealed_totp_secret: unknown }
        | undefined;
      if (current === undefined) throw new StoreError('STORE_NOT_FOUND', `no active officer ${name}`);
      if (current.sealed_totp_secret !== null) throw new StoreError('STORE_CONFLICT', `officer ${name} is already enrolled`);
      this.#statement('UPDATE officers SET sealed_totp_secret = ? WHERE name = ?').run(sealed, name);
    });
  }

  recordTotpUse(candidate: TotpUse): void {
    const use = requireTotpUse(candidate);
    // One statement: the compare (officer active, same certificate, step unchanged) and
    // the set happen under SQLite's write lock together.
    const changed = this.#statement(
      `UPDATE officers SET last_totp_step = ?, failed_totp_count = 0, failed_totp_window_start = NULL
        WHERE name = ? AND status = 'active' AND certificate_sha256 = ? AND last_totp_step IS ?`,
    ).run(use.step, use.officer, use.certificateSha256, use.expectedLastStep).changes;
    if (changed === 0) {
      throw new StoreError('STORE_CONFLICT', `officer ${use.officer} changed meanwhile (another code was used, or the officer was removed)`);
    }
  }

  recordTotpFailure(officer: string, at: string, windowStartsAfter: string): { count: number; windowStart: string } {
    requireOfficerName(officer);
    const when = requireTimestamp('failure time', at);
    const cutoff = requireTimestamp('window start', windowStartsAfter);
    const row = this.#statement(
      `UPDATE officers
          SET failed_totp_count = CASE WHEN failed_totp_window_start IS NULL OR failed_totp_window_start < ? THEN 1 ELSE failed_totp_count + 1 END,
              failed_totp_window_start = CASE WHEN failed_totp_window_start IS NULL OR failed_totp_window_start < ? THEN ? ELSE failed_totp_window_start END
        WHERE name = ?
        RETURNING failed_totp_count, failed_totp_window_start`,
    ).get(cutoff, cutoff, when, officer) as { failed_totp_count: unknown; failed_totp_window_start: unknown } | undefined;
    if (row === undefined) throw new StoreError('STORE_NOT_FOUND', `no officer ${officer}`);
    if (typeof row.failed_totp_count !== 'number' || typeof row.failed_totp_window_start !== 'string') {
      throw new StoreError('STORE_CORRUPT', `officer ${officer} has an invalid failure count`);
    }
    return { count: row.failed_totp_count, windowStart: row.failed_totp_window_start };
  }

  listRevokedCertificates(): RevokedCertificateRecord[] {
    return this.#statement('SELECT certificate_sha256, proposal_id, revoked_at FROM revoked_client_certificates ORDER BY revoked_at, certificate_sha256')
      .all()
      .map(revokedCertificateFromRow);
  }

  revokeCertificate(candidate: RevokedCertificateRecord): void {
    const record = requireRevokedCertificate(candidate);
    atomically(this.#access, () => {
      if (this.#statement('SELECT 1 FROM revoked_client_certificates WHERE certificate_sha256 = ?').get(record.certificateSha256) !== undefined) {
        throw new StoreError('STORE_CONFLICT', 'this certificate is already revoked');
      }
      this.#statement('INSERT INTO revoked_client_certificates (certificate_sha256, proposal_id, revoked_at) VALUES (?, ?, ?)').run(
        record.certificateSha256,
        record.proposalId,
        record.revokedAt,
      );
    });
  }

  settings(): GovernanceSettingsRecord {
    return settingsFromRow(this.#statement('SELECT quorum, policy_sha256 FROM governance_settings WHERE id = 1').get());
  }

  setQuorum(quorum: QuorumPolicy, at: string): void {
    const text = requireQuorum(quorum);
    const when = requireTimestamp('change time', at);
    this.#statement(
      `INSERT INTO governance_settings (id, quorum, policy_sha256, updated_at) VALUES (1, ?, NULL, ?)
         ON CONFLICT (id) DO UPDATE SET quorum = excluded.quorum, updated_at = excluded.updated_at`,
    ).run(text, when);
  }

  setPolicySha256(sha256: string, at: string): void {
    requireSha256('policy hash', sha256);
    const when = requireTimestamp('change time', at);
    this.#statement(
      `INSERT INTO governance_settings (id, quorum, policy_sha256, updated_at) VALUES (1, NULL, ?, ?)
         ON CONFLICT (id) DO UPDATE SET policy_sha256 = excluded.policy_sha256, updated_at = excluded.updated_at`,
    ).run(sha256, when);
  }

  listFreezes(): FreezeRecord[] {
    // '*' sorts before every project name (ASCII 0x2a is below digits and letters).
    return this.#statement('SELECT scope, proposal_id, frozen_by, frozen_at FROM signing_freezes ORDER BY scope').all().map(freezeFromRow);
  }

  setFreeze(candidate: FreezeRecord): void {
    const freeze = requireFreeze(candidate);
    this.#statement(
      'INSERT INTO signing_freezes (scope, proposal_id, frozen_by, frozen_at) VALUES (?, ?, ?, ?) ON CONFLICT (scope) DO NOTHING',
    ).run(requireScope(freeze.project), freeze.proposalId, freeze.by, freeze.at);
  }

  clearFreeze(project: string | null): void {
    const scope = requireScope(project);
    const changed = this.#statement('DELETE FROM signing_freezes WHERE scope = ?').run(scope).changes;
    if (changed === 0) throw new StoreError('STORE_NOT_FOUND', project === null ? 'signing is not frozen globally' : `project ${project} is not frozen`);
  }

  insertProposal(candidate: ProposalRecord): void {
    const row = requireNewProposal(candidate);
    atomically(this.#access, () => {
      if (this.#statement('SELECT 1 FROM proposals WHERE id = ?').get(row.id) !== undefined) {
        throw new StoreError('STORE_CONFLICT', `proposal ${row.id} exists`);
      }
      this.#statement(`INSERT INTO proposals (${PROPOSAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', NULL)`).run(
        row.id,
        row.hash,
        row.document,
        row.action,
        row.proposer,
        row.createdAt,
        row.expiresAt,
      );
    });
  }

  getProposal(id: string): ProposalRecord | null {
    requireProposalId(id);
    return consistently(this.#access, () => {
      const row = this.#statement(`SELECT ${PROPOSAL_COLUMNS} FROM proposals WHERE id = ?`).get(id);
      return row === undefined ? null : proposalFromRows(row, this.#approvals(id));
    });
  }

  listProposals(filter?: { readonly status?: ProposalStatus; readonly limit?: number }): ProposalRecord[] {
    const { status, limit } = requireProposalFilter(filter);
    return consistently(this.#access, () => {
      const rows =
        status === null
          ? this.#statement(`SELECT ${PROPOSAL_COLUMNS} FROM proposals ORDER BY created_at DESC, id LIMIT ?`).all(limit)
          : this.#statement(`SELECT ${PROPOSAL_COLUMNS} FROM proposals WHERE status = ? ORDER BY created_at DESC, id LIMIT ?`).all(status, limit);
      return rows.map((row) => proposalFromRows(row, this.#approvals(String((row as { id: unknown }).id))));
    });
  }

  addApproval(proposalId: string, candidate: ApprovalRecord): void {
    requireProposalId(proposalId);
    const approval = requireApproval(candidate);
    atomically(this.#access, () => {
      const status: unknown = this.#statement('SELECT status FROM proposals WHERE id = ?').pluck().get(proposalId);
      if (status === undefined) throw new StoreError('STORE_NOT_FOUND', `no proposal ${proposalId}`);
      if (status !== 'open') throw new StoreError('STORE_CONFLICT', `proposal ${proposalId} is closed`);
      if (this.#statement('SELECT 1 FROM officers WHERE name = ?').get(approval.officer) === undefined) {
        throw new StoreError('STORE_NOT_FOUND', `no officer ${approval.officer}`);
      }
      if (this.#statement('SELECT 1 FROM proposal_approvals WHERE proposal_id = ? AND officer = ?').get(proposalId, approval.officer) !== undefined) {
        throw new StoreError('STORE_CONFLICT', `officer ${approval.officer} already approved proposal ${proposalId}`);
      }
      this.#statement(`INSERT INTO proposal_approvals (proposal_id, ${APPROVAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)`).run(
        proposalId,
        approval.officer,
        approval.certificateSha256,
        approval.proposalHash,
        approval.totpStep,
        approval.approvedAt,
      );
    });
  }

  closeProposal(id: string, status: 'executed' | 'withdrawn', at: string): void {
    requireProposalId(id);
    const closing = requireCloseStatus(status);
    const when = requireTimestamp('closing time', at);
    atomically(this.#access, () => {
      const current: unknown = this.#statement('SELECT status FROM proposals WHERE id = ?').pluck().get(id);
      if (current === undefined) throw new StoreError('STORE_NOT_FOUND', `no proposal ${id}`);
      if (current !== 'open') throw new StoreError('STORE_CONFLICT', `proposal ${id} is already ${describeId(current)}`);
      this.#statement("UPDATE proposals SET status = ?, closed_at = ? WHERE id = ? AND status = 'open'").run(closing, when, id);
    });
  }

  #approvals(proposalId: string): unknown[] {
    return this.#statement(`SELECT ${APPROVAL_COLUMNS} FROM proposal_approvals WHERE proposal_id = ? ORDER BY approved_at, officer`).all(proposalId);
  }

  #statement(sql: string): ReturnType<SqliteAccess['statement']> {
    return this.#access.statement(sql);
  }
}
