/**
 * `CertificateRepository` on PostgreSQL: the same checks, messages and codes as the
 * SQLite backend (sqlite-certificates.ts).
 *
 * Each write checks first, for a precise message, and the database refuses whatever
 * slips past when replicas race: primary keys, the unique serial number and the
 * one-active-CA-per-role index (a unique violation is STORE_CONFLICT). `addCrl` must
 * also keep CRL numbers increasing per issuer, which no constraint expresses: it locks
 * the issuer's row (FOR NO KEY UPDATE, which leaves inserts referencing the CA free)
 * before reading the latest number, so two replicas recording CRLs of one CA take turns.
 * Text is ordered with COLLATE "C", as SQLite orders it, whatever the columns' collation.
 */
import { StoreError } from '../errors.js';
import {
  caCertificateFromRow,
  crlFromRow,
  leafCertificateFromRow,
  requireCaCertificate,
  requireCaId,
  requireCrl,
  requireLeafCertificate,
  requireRevocation,
  revocationFromRow,
} from '../certificate-validation.js';
import type {
  CaCertificateRecord,
  CertificateRepository,
  CrlRecord,
  LeafCertificateRecord,
  RevocationRecord,
} from '../store.js';
import { describeId, requireString } from '../validation.js';
import { isUniqueViolation } from './postgres-errors.js';
import type { PgRunner, PgSession } from './postgres-session.js';

const CA_COLUMNS =
  'ca_id, role, status, algorithm, hsm_key_id, serial_number, subject, issuer_ca_id, certificate_pem, not_before, not_after, created_at';
const LEAF_COLUMNS = 'serial_number, key_id, issuer_ca_id, certificate_pem, not_before, not_after, created_at';
const REVOCATION_COLUMNS = 'serial_number, issuer_ca_id, revoked_at, reason';
const CRL_COLUMNS = 'issuer_ca_id, crl_number, this_update, next_update, der';

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

export class PostgresCertificateRepository implements CertificateRepository {
  readonly #run: PgRunner;

  constructor(run: PgRunner) {
    this.#run = run;
  }

  listCas(): Promise<CaCertificateRecord[]> {
    return this.#run(
      'listing CA certificates',
      async (db) =>
        (await db.query(`SELECT ${CA_COLUMNS} FROM ca_certificates ORDER BY created_at COLLATE "C", ca_id COLLATE "C"`)).rows.map(
          caCertificateFromRow,
        ),
      'read',
    );
  }

  insertCa(candidate: CaCertificateRecord): Promise<void> {
    return this.#run(`inserting CA certificate ${describeId(fieldOf(candidate, 'caId'))}`, async (db) => {
      const record = requireCaCertificate(candidate);
      await db.atomically(async () => {
        if (await exists(db, 'SELECT 1 FROM ca_certificates WHERE ca_id = $1 OR serial_number = $2', [record.caId, record.serialNumber])) {
          throw new StoreError('STORE_CONFLICT', `CA ${record.caId} (or its serial number) already exists`);
        }
        if (record.issuerCaId !== null && !(await exists(db, 'SELECT 1 FROM ca_certificates WHERE ca_id = $1', [record.issuerCaId]))) {
          throw new StoreError('STORE_NOT_FOUND', `issuing CA ${record.issuerCaId} does not exist`);
        }
        if (record.status === 'active') {
          const other: unknown = (await db.query("SELECT ca_id FROM ca_certificates WHERE role = $1 AND status = 'active'", [record.role]))
            .rows[0]?.ca_id;
          if (other !== undefined) throw new StoreError('STORE_CONFLICT', `an active ${record.role} CA already exists (${describeId(other)})`);
        }
        await refusingDuplicates(
          db.query(`INSERT INTO ca_certificates (${CA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`, [
            record.caId,
            record.role,
            record.status,
            record.algorithm,
            record.hsmKeyId,
            record.serialNumber,
            record.subject,
            record.issuerCaId,
            record.certificatePem,
            record.notBefore,
            record.notAfter,
            record.createdAt,
          ]),
          `CA ${record.caId} conflicts with one recorded meanwhile (same id, serial number, or an active ${record.role} CA)`,
        );
      });
    });
  }

  retireCa(caIdArg: string): Promise<void> {
    return this.#run(`retiring CA ${describeId(caIdArg)}`, async (db) => {
      const caId = requireCaId(caIdArg);
      const updated = await db.query("UPDATE ca_certificates SET status = 'retired' WHERE ca_id = $1", [caId]);
      if (updated.rowCount === 0) throw new StoreError('STORE_NOT_FOUND', `CA ${caId} does not exist`);
    });
  }

  listLeaves(): Promise<LeafCertificateRecord[]> {
    return this.#run(
      'listing leaf certificates',
      async (db) =>
        (
          await db.query(
            `SELECT ${LEAF_COLUMNS} FROM leaf_certificates
              ORDER BY key_id COLLATE "C", not_before COLLATE "C", serial_number COLLATE "C"`,
          )
        ).rows.map(leafCertificateFromRow),
      'read',
    );
  }

  leavesOfKey(keyId: string): Promise<LeafCertificateRecord[]> {
    return this.#run(
      `listing the certificates of key ${describeId(keyId)}`,
      async (db) => {
        requireString('keyId', keyId);
        const result = await db.query(
          `SELECT ${LEAF_COLUMNS} FROM leaf_certificates WHERE key_id = $1
            ORDER BY not_before COLLATE "C", serial_number COLLATE "C"`,
          [keyId],
        );
        return result.rows.map(leafCertificateFromRow);
      },
      'read',
    );
  }

  getLeaf(serialNumber: string): Promise<LeafCertificateRecord | null> {
    return this.#run(
      `reading certificate ${describeId(serialNumber)}`,
      async (db) => {
        requireString('serialNumber', serialNumber);
        const row = (await db.query(`SELECT ${LEAF_COLUMNS} FROM leaf_certificates WHERE serial_number = $1`, [serialNumber])).rows[0];
        return row === undefined ? null : leafCertificateFromRow(row);
      },
      'read',
    );
  }

  insertLeaf(candidate: LeafCertificateRecord): Promise<void> {
    return this.#run(`inserting certificate ${describeId(fieldOf(candidate, 'serialNumber'))}`, async (db) => {
      const record = requireLeafCertificate(candidate);
      await db.atomically(async () => {
        if (await exists(db, 'SELECT 1 FROM leaf_certificates WHERE serial_number = $1', [record.serialNumber])) {
          throw new StoreError('STORE_CONFLICT', `a certificate with serial number ${record.serialNumber} already exists`);
        }
        if (!(await exists(db, 'SELECT 1 FROM key_versions WHERE key_id = $1', [record.keyId]))) {
          throw new StoreError('STORE_NOT_FOUND', `key version ${record.keyId} does not exist`);
        }
        if (!(await exists(db, "SELECT 1 FROM ca_certificates WHERE ca_id = $1 AND role = 'intermediate'", [record.issuerCaId]))) {
          throw new StoreError('STORE_NOT_FOUND', `intermediate CA ${record.issuerCaId} does not exist`);
        }
        await refusingDuplicates(
          db.query(`INSERT INTO leaf_certificates (${LEAF_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
            record.serialNumber,
            record.keyId,
            record.issuerCaId,
            record.certificatePem,
            record.notBefore,
            record.notAfter,
            record.createdAt,
          ]),
          `a certificate with serial number ${record.serialNumber} already exists`,
        );
      });
    });
  }

  revoke(candidate: RevocationRecord): Promise<void> {
    return this.#run(`revoking certificate ${describeId(fieldOf(candidate, 'serialNumber'))}`, async (db) => {
      const record = requireRevocation(candidate);
      await db.atomically(async () => {
        const issuer: unknown = (await db.query('SELECT issuer_ca_id FROM leaf_certificates WHERE serial_number = $1', [record.serialNumber]))
          .rows[0]?.issuer_ca_id;
        if (issuer !== record.issuerCaId) {
          throw new StoreError('STORE_NOT_FOUND', `CA ${record.issuerCaId} issued no certificate with serial number ${record.serialNumber}`);
        }
        if (await exists(db, 'SELECT 1 FROM certificate_revocations WHERE serial_number = $1', [record.serialNumber])) {
          throw new StoreError('STORE_CONFLICT', `certificate ${record.serialNumber} is already revoked`);
        }
        await refusingDuplicates(
          db.query(`INSERT INTO certificate_revocations (${REVOCATION_COLUMNS}) VALUES ($1, $2, $3, $4)`, [
            record.serialNumber,
            record.issuerCaId,
            record.revokedAt,
            record.reason,
          ]),
          `certificate ${record.serialNumber} is already revoked`,
        );
      });
    });
  }

  listRevocations(): Promise<RevocationRecord[]> {
    return this.#run(
      'listing revocations',
      async (db) =>
        (
          await db.query(
            `SELECT ${REVOCATION_COLUMNS} FROM certificate_revocations ORDER BY revoked_at COLLATE "C", serial_number COLLATE "C"`,
          )
        ).rows.map(revocationFromRow),
      'read',
    );
  }

  addCrl(candidate: CrlRecord): Promise<void> {
    return this.#run(`recording a CRL of ${describeId(fieldOf(candidate, 'issuerCaId'))}`, async (db) => {
      const record = requireCrl(candidate);
      await db.atomically(async () => {
        if (!(await exists(db, 'SELECT 1 FROM ca_certificates WHERE ca_id = $1 FOR NO KEY UPDATE', [record.issuerCaId]))) {
          throw new StoreError('STORE_NOT_FOUND', `CA ${record.issuerCaId} does not exist`);
        }
        const latest: unknown = (await db.query('SELECT max(crl_number) AS latest FROM crls WHERE issuer_ca_id = $1', [record.issuerCaId]))
          .rows[0]?.latest;
        // CRL numbers only increase (RFC 5280 §5.2.3): a relying party keeps the highest.
        if (typeof latest === 'number' && latest >= record.crlNumber) {
          throw new StoreError('STORE_CONFLICT', `CRL number ${record.crlNumber} of ${record.issuerCaId} is not above the latest (${latest})`);
        }
        await refusingDuplicates(
          db.query(`INSERT INTO crls (${CRL_COLUMNS}) VALUES ($1, $2, $3, $4, $5)`, [
            record.issuerCaId,
            record.crlNumber,
            record.thisUpdate,
            record.nextUpdate,
            record.der,
          ]),
          `CRL number ${record.crlNumber} of ${record.issuerCaId} is already recorded`,
        );
      });
    });
  }

  latestCrl(issuerCaId: string): Promise<CrlRecord | null> {
    return this.#run(
      `reading the CRL of ${describeId(issuerCaId)}`,
      async (db) => {
        requireString('issuerCaId', issuerCaId);
        const row = (
          await db.query(`SELECT ${CRL_COLUMNS} FROM crls WHERE issuer_ca_id = $1 ORDER BY crl_number DESC LIMIT 1`, [issuerCaId])
        ).rows[0];
        return row === undefined ? null : crlFromRow(row);
      },
      'read',
    );
  }
}
