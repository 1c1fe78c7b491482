/**
 * `GovernanceRepository` on PostgreSQL: the same checks, messages and codes as the
 * SQLite backend (sqlite-governance.ts), for replicas sharing one rotation state.
 *
 * What must hold across replicas is decided by the database: the compare-and-set of an
 * officer's TOTP step is one UPDATE whose WHERE clause is the compare (a second
 * replica's UPDATE waits for the first's row lock, then re-evaluates the clause on the
 * new row and changes nothing); an approval locks its proposal's row (FOR UPDATE)
 * before checking it is open, and closing a proposal is an UPDATE … WHERE status =
 * 'open', so a proposal is closed once and never approved after it closed; primary keys
 * refuse a second approval by one officer, a second revocation, a reused officer name.
 * Text is ordered with COLLATE "C", as SQLite orders it.
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
import { isUniqueViolation } from './postgres-errors.js';
import type { PgRunner, PgSession } from './postgres-session.js';

const OFFICER_COLUMNS =
  'name, certificate_sha256, certificate_pem, status, sealed_totp_secret, last_totp_step, failed_totp_count, failed_totp_window_start, added_at, removed_at';
const PROPOSAL_COLUMNS = 'id, hash, document, action, proposer, created_at, expires_at, status, closed_at';
const APPROVAL_COLUMNS = 'officer, certificate_sha256, proposal_hash, totp_step, approved_at';

/** Describing a call must not throw, whatever a caller passed; the operation validates. */
function fieldOf(record: unknown, field: string): unknown {
  return typeof record === 'object' && record !== null && field in record ? (record as Record<string, unknown>)[field] : undefined;
}

async function exists(db: PgSession, sql: string, params: readonly unknown[]): Promise<boolean> {
  return (await db.query(sql, params)).rows.length > 0;
}

/** A unique violation raised by a racing replica after the checks passed. */
async function refusingDuplicates(write: Promise<unknown>, message: string): Promise<void> {
  try {
    await write;
  } catch (error) {
    if (isUniqueViolation(error)) throw new StoreError('STORE_CONFLICT', message, { cause: error });
    throw error;
  }
}

async function approvalsOf(db: PgSession, proposalId: string): Promise<readonly unknown[]> {
  return (
    await db.query(
      `SELECT ${APPROVAL_COLUMNS} FROM proposal_approvals WHERE proposal_id = $1 ORDER BY approved_at COLLATE "C", officer COLLATE "C"`,
      [proposalId],
    )
  ).rows;
}

export class PostgresGovernanceRepository implements GovernanceRepository {
  readonly #run: PgRunner;

  constructor(run: PgRunner) {
    this.#run = run;
  }

  listOfficers(): Promise<StoredOfficer[]> {
    return this.#run(
      'listing officers',
      async (db) => (await db.query(`SELECT ${OFFICER_COLUMNS} FROM officers ORDER BY name COLLATE "C"`)).rows.map(officerFromRow),
      'read',
    );
  }

  getOfficer(name: string): Promise<StoredOfficer | null> {
    return this.#run(
      `reading officer ${describeId(name)}`,
      async (db) => {
        requireOfficerName(name);
        const row = (await db.query(`SELECT ${OFFICER_COLUMNS} FROM officers WHERE name = $1`, [name])).rows[0];
        return row === undefined ? null : officerFromRow(row);
      },
      'read',
    );
  }

  insertOfficer(candidate: StoredOfficer): Promise<void> {
    return this.#run(`inserting officer ${describeId(fieldOf(candidate, 'name'))}`, async (db) => {
      const officer = requireStoredOfficer(candidate);
      await db.atomically(async () => {
        if (await exists(db, 'SELECT 1 FROM officers WHERE name = $1', [officer.name])) {
          throw new StoreError('STORE_CONFLICT', `officer ${officer.name} exists (names are never reused)`);
        }
        if (await exists(db, 'SELECT 1 FROM officers WHERE certificate_sha256 = $1', [officer.certificateSha256])) {
          throw new StoreError('STORE_CONFLICT', 'another officer holds this certificate');
        }
        await refusingDuplicates(
          db.query(`INSERT INTO officers (${OFFICER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, [
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
          ]),
          `officer ${officer.name} (or its certificate) was recorded meanwhile`,
        );
      });
    });
  }

  removeOfficer(name: string, at: string): Promise<void> {
    return this.#run(`removing officer ${describeId(name)}`, async (db) => {
      requireOfficerName(name);
      const when = requireTimestamp('removal time', at);
      const updated = await db.query("UPDATE officers SET status = 'removed', removed_at = $1 WHERE name = $2 AND status = 'active'", [when, name]);
      if (updated.rowCount === 0) throw new StoreError('STORE_NOT_FOUND', `no active officer ${name}`);
    });
  }

  setTotpSecret(name: string, sealed: string): Promise<void> {
    return this.#run(`enrolling officer ${describeId(name)}`, async (db) => {
      requireOfficerName(name);
      requireSealedSecret(sealed);
      await db.atomically(async () => {
        const row = (await db.query("SELECT sealed_totp_secret FROM officers WHERE name = $1 AND status = 'active' FOR UPDATE", [name])).rows[0];
        if (row === undefined) throw new StoreError('STORE_NOT_FOUND', `no active officer ${name}`);
        if (row.sealed_totp_secret !== null) throw new StoreError('STORE_CONFLICT', `officer ${name} is already enrolled`);
        await db.query('UPDATE officers SET sealed_totp_secret = $1 WHERE name = $2', [sealed, name]);
      });
    });
  }

  recordTotpUse(candidate: TotpUse): Promise<void> {
    return this.#run(`recording a code of officer ${describeId(fieldOf(candidate, 'officer'))}`, async (db) => {
      const use = requireTotpUse(candidate);
      const updated = await db.query(
        `UPDATE officers SET last_totp_step = $1, failed_totp_count = 0, failed_totp_window_start = NULL
          WHERE name = $2 AND status = 'active' AND certificate_sha256 = $3 AND last_totp_step IS NOT DISTINCT FROM $4::BIGINT`,
        [use.step, use.officer, use.certificateSha256, use.expectedLastStep],
      );
      if (updated.rowCount === 0) {
        throw new StoreError('STORE_CONFLICT', `officer ${use.officer} changed meanwhile (another code was used, or the officer was removed)`);
      }
    });
  }

  recordTotpFailure(officer: string, at: string, windowStartsAfter: string): Promise<{ count: number; windowStart: string }> {
    return this.#run(`counting a wrong code of officer ${describeId(officer)}`, async (db) => {
      requireOfficerName(officer);
      const when = requireTimestamp('failure time', at);
      const cutoff = requireTimestamp('window start', windowStartsAfter);
      const row = (
        await db.query(
          `UPDATE officers
              SET failed_totp_count = CASE WHEN failed_totp_window_start IS NULL OR failed_totp_window_start < $1 THEN 1 ELSE failed_totp_count + 1 END,
                  failed_totp_window_start = CASE WHEN failed_totp_window_start IS NULL OR failed_totp_window_start < $1 THEN $2 ELSE failed_totp_window_start END
            WHERE name = $3
            RETURNING failed_totp_count, failed_totp_window_start`,
          [cutoff, when, officer],
        )
      ).rows[0];
      if (row === undefined) throw new StoreError('STORE_NOT_FOUND', `no officer ${officer}`);
      if (typeof row.failed_totp_count !== 'number' || typeof row.failed_totp_window_start !== 'string') {
        throw new StoreError('STORE_CORRUPT', `officer ${officer} has an invalid failure count`);
      }
      return { count: row.failed_totp_count, windowStart: row.failed_totp_window_start };
    });
  }

  listRevokedCertificates(): Promise<RevokedCertificateRecord[]> {
    return this.#run(
      'listing revoked client certificates',
      async (db) =>
        (
          await db.query(
            'SELECT certificate_sha256, proposal_id, revoked_at FROM revoked_client_certificates ORDER BY revoked_at COLLATE "C", certificate_sha256 COLLATE "C"',
          )
        ).rows.map(revokedCertificateFromRow),
      'read',
    );
  }

  revokeCertificate(candidate: RevokedCertificateRecord): Promise<void> {
    return this.#run('revoking a client certificate', async (db) => {
      const record = requireRevokedCertificate(candidate);
      await refusingDuplicates(
        db.query('INSERT INTO revoked_client_certificates (certificate_sha256, proposal_id, revoked_at) VALUES ($1, $2, $3)', [
          record.certificateSha256,
          record.proposalId,
          record.revokedAt,
        ]),
        'this certificate is already revoked',
      );
    });
  }

  settings(): Promise<GovernanceSettingsRecord> {
    return this.#run(
      'reading the governance settings',
      async (db) => settingsFromRow((await db.query('SELECT quorum, policy_sha256 FROM governance_settings WHERE id = 1')).rows[0]),
      'read',
    );
  }

  setQuorum(quorum: QuorumPolicy, at: string): Promise<void> {
    return this.#run('changing the quorum', async (db) => {
      const text = requireQuorum(quorum);
      const when = requireTimestamp('change time', at);
      await db.query(
        `INSERT INTO governance_settings (id, quorum, policy_sha256, updated_at) VALUES (1, $1, NULL, $2)
           ON CONFLICT (id) DO UPDATE SET quorum = excluded.quorum, updated_at = excluded.updated_at`,
        [text, when],
      );
    });
  }

  setPolicySha256(sha256: string, at: string): Promise<void> {
    return this.#run('recording the approved policy', async (db) => {
      requireSha256('policy hash', sha256);
      const when = requireTimestamp('change time', at);
      await db.query(
        `INSERT INTO governance_settings (id, quorum, policy_sha256, updated_at) VALUES (1, NULL, $1, $2)
           ON CONFLICT (id) DO UPDATE SET policy_sha256 = excluded.policy_sha256, updated_at = excluded.updated_at`,
        [sha256, when],
      );
    });
  }

  listFreezes(): Promise<FreezeRecord[]> {
    return this.#run(
      'listing freezes',
      async (db) =>
        (await db.query('SELECT scope, proposal_id, frozen_by, frozen_at FROM signing_freezes ORDER BY scope COLLATE "C"')).rows.map(freezeFromRow),
      'read',
    );
  }

  setFreeze(candidate: FreezeRecord): Promise<void> {
    return this.#run('freezing signing', async (db) => {
      const freeze = requireFreeze(candidate);
      await db.query(
        'INSERT INTO signing_freezes (scope, proposal_id, frozen_by, frozen_at) VALUES ($1, $2, $3, $4) ON CONFLICT (scope) DO NOTHING',
        [requireScope(freeze.project), freeze.proposalId, freeze.by, freeze.at],
      );
    });
  }

  clearFreeze(project: string | null): Promise<void> {
    return this.#run('unfreezing signing', async (db) => {
      const scope = requireScope(project);
      const deleted = await db.query('DELETE FROM signing_freezes WHERE scope = $1', [scope]);
      if (deleted.rowCount === 0) {
        throw new StoreError('STORE_NOT_FOUND', project === null ? 'signing is not frozen globally' : `project ${project} is not frozen`);
      }
    });
  }

  insertProposal(candidate: ProposalRecord): Promise<void> {
    return this.#run('inserting a proposal', async (db) => {
      const row = requireNewProposal(candidate);
      await refusingDuplicates(
        db.query(`INSERT INTO proposals (${PROPOSAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', NULL)`, [
          row.id,
          row.hash,
          row.document,
          row.action,
          row.proposer,
          row.createdAt,
          row.expiresAt,
        ]),
        `proposal ${row.id} exists`,
      );
    });
  }

  getProposal(id: string): Promise<ProposalRecord | null> {
    return this.#run(
      `reading proposal ${describeId(id)}`,
      async (db) => {
        requireProposalId(id);
        // One snapshot for the proposal and its approvals.
        return db.atomically(async () => {
          const row = (await db.query(`SELECT ${PROPOSAL_COLUMNS} FROM proposals WHERE id = $1`, [id])).rows[0];
          return row === undefined ? null : proposalFromRows(row, await approvalsOf(db, id));
        });
      },
      'read',
    );
  }

  listProposals(filter?: { readonly status?: ProposalStatus; readonly limit?: number }): Promise<ProposalRecord[]> {
    return this.#run(
      'listing proposals',
      async (db) => {
        const { status, limit } = requireProposalFilter(filter);
        return db.atomically(async () => {
          const rows =
            status === null
              ? (await db.query(`SELECT ${PROPOSAL_COLUMNS} FROM proposals ORDER BY created_at COLLATE "C" DESC, id COLLATE "C" LIMIT $1`, [limit])).rows
              : (
                  await db.query(
                    `SELECT ${PROPOSAL_COLUMNS} FROM proposals WHERE status = $1 ORDER BY created_at COLLATE "C" DESC, id COLLATE "C" LIMIT $2`,
                    [status, limit],
                  )
                ).rows;
          const proposals: ProposalRecord[] = [];
          for (const row of rows) proposals.push(proposalFromRows(row, await approvalsOf(db, String(row.id))));
          return proposals;
        });
      },
      'read',
    );
  }

  addApproval(proposalId: string, candidate: ApprovalRecord): Promise<void> {
    return this.#run(`approving proposal ${describeId(proposalId)}`, async (db) => {
      requireProposalId(proposalId);
      const approval = requireApproval(candidate);
      await db.atomically(async () => {
        const status: unknown = (await db.query('SELECT status FROM proposals WHERE id = $1 FOR UPDATE', [proposalId])).rows[0]?.status;
        if (status === undefined) throw new StoreError('STORE_NOT_FOUND', `no proposal ${proposalId}`);
        if (status !== 'open') throw new StoreError('STORE_CONFLICT', `proposal ${proposalId} is closed`);
        if (!(await exists(db, 'SELECT 1 FROM officers WHERE name = $1', [approval.officer]))) {
          throw new StoreError('STORE_NOT_FOUND', `no officer ${approval.officer}`);
        }
        await refusingDuplicates(
          db.query(`INSERT INTO proposal_approvals (proposal_id, ${APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)`, [
            proposalId,
            approval.officer,
            approval.certificateSha256,
            approval.proposalHash,
            approval.totpStep,
            approval.approvedAt,
          ]),
          `officer ${approval.officer} already approved proposal ${proposalId}`,
        );
      });
    });
  }

  closeProposal(id: string, status: 'executed' | 'withdrawn', at: string): Promise<void> {
    return this.#run(`closing proposal ${describeId(id)}`, async (db) => {
      requireProposalId(id);
      const closing = requireCloseStatus(status);
      const when = requireTimestamp('closing time', at);
      const updated = await db.query("UPDATE proposals SET status = $1, closed_at = $2 WHERE id = $3 AND status = 'open'", [closing, when, id]);
      if (updated.rowCount > 0) return;
      const current: unknown = (await db.query('SELECT status FROM proposals WHERE id = $1', [id])).rows[0]?.status;
      if (current === undefined) throw new StoreError('STORE_NOT_FOUND', `no proposal ${id}`);
      throw new StoreError('STORE_CONFLICT', `proposal ${id} is already ${describeId(current)}`);
    });
  }
}
