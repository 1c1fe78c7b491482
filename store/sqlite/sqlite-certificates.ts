/** `CertificateRepository` on SQLite: CA certificates, leaf certificates, revocations and CRLs. */
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
import { atomically, type Runner, type SqliteAccess } from './sqlite-support.js';

/** The public repository: each call handed to a runner (queued, or inside a transaction). */
export class SqliteCertificateRepository implements CertificateRepository {
  readonly #operations: SqliteCertificateOperations;
  readonly #run: Runner;

  constructor(operations: SqliteCertificateOperations, run: Runner) {
    this.#operations = operations;
    this.#run = run;
  }

  listCas(): Promise<CaCertificateRecord[]> {
    return this.#run('listing CA certificates', () => this.#operations.listCas(), 'read');
  }

  insertCa(record: CaCertificateRecord): Promise<void> {
    return this.#run(`inserting CA certificate ${describeId(fieldOf(record, 'caId'))}`, () => {
      this.#operations.insertCa(record);
    });
  }

  retireCa(caId: string): Promise<void> {
    return this.#run(`retiring CA ${describeId(caId)}`, () => {
      this.#operations.retireCa(caId);
    });
  }

  listLeaves(): Promise<LeafCertificateRecord[]> {
    return this.#run('listing leaf certificates', () => this.#operations.listLeaves(), 'read');
  }

  leavesOfKey(keyId: string): Promise<LeafCertificateRecord[]> {
    return this.#run(`listing the certificates of key ${describeId(keyId)}`, () => this.#operations.leavesOfKey(keyId), 'read');
  }

  getLeaf(serialNumber: string): Promise<LeafCertificateRecord | null> {
    return this.#run(`reading certificate ${describeId(serialNumber)}`, () => this.#operations.getLeaf(serialNumber), 'read');
  }

  insertLeaf(record: LeafCertificateRecord): Promise<void> {
    return this.#run(`inserting certificate ${describeId(fieldOf(record, 'serialNumber'))}`, () => {
      this.#operations.insertLeaf(record);
    });
  }

  revoke(record: RevocationRecord): Promise<void> {
    return this.#run(`revoking certificate ${describeId(fieldOf(record, 'serialNumber'))}`, () => {
      this.#operations.revoke(record);
    });
  }

  listRevocations(): Promise<RevocationRecord[]> {
    return this.#run('listing revocations', () => this.#operations.listRevocations(), 'read');
  }

  addCrl(record: CrlRecord): Promise<void> {
    return this.#run(`recording a CRL of ${describeId(fieldOf(record, 'issuerCaId'))}`, () => {
      this.#operations.addCrl(record);
    });
  }

  latestCrl(issuerCaId: string): Promise<CrlRecord | null> {
    return this.#run(`reading the CRL of ${describeId(issuerCaId)}`, () => this.#operations.latestCrl(issuerCaId), 'read');
  }
}

/** Describing a call must not throw, whatever a caller passed; the operation validates. */
function fieldOf(record: unknown, field: string): unknown {
  return typeof record === 'object' && record !== null && field in record ? (record as Record<string, unknown>)[field] : undefined;
}

const CA_COLUMNS =
  'ca_id, role, status, algorithm, hsm_key_id, serial_number, subject, issuer_ca_id, certificate_pem, not_before, not_after, created_at';
const LEAF_COLUMNS = 'serial_number, key_id, issuer_ca_id, certificate_pem, not_before, not_after, created_at';
const REVOCATION_COLUMNS = 'serial_number, issuer_ca_id, revoked_at, reason';
const CRL_COLUMNS = 'issuer_ca_id, crl_number, this_update, next_update, der';

/** The synchronous SQL; callers provide ordering and error translation. */
export class SqliteCertificateOperations {
  readonly #access: SqliteAccess;

  constructor(access: SqliteAccess) {
    this.#access = access;
  }

  listCas(): CaCertificateRecord[] {
    return this.#statement(`SELECT ${CA_COLUMNS} FROM ca_certificates ORDER BY created_at, ca_id`).all().map(caCertificateFromRow);
  }

  insertCa(candidate: CaCertificateRecord): void {
    const record = requireCaCertificate(candidate);
    atomically(this.#access, () => {
      // Checked first for precise messages; the keys and the partial unique index still
      // refuse the write if anything slips past (another process).
      if (this.#statement('SELECT 1 FROM ca_certificates WHERE ca_id = ? OR serial_number = ?').get(record.caId, record.serialNumber) !== undefined) {
        throw new StoreError('STORE_CONFLICT', `CA ${record.caId} (or its serial number) already exists`);
      }
      if (record.issuerCaId !== null && this.#statement('SELECT 1 FROM ca_certificates WHERE ca_id = ?').get(record.issuerCaId) === undefined) {
        throw new StoreError('STORE_NOT_FOUND', `issuing CA ${record.issuerCaId} does not exist`);
      }
      if (record.status === 'active') {
        const other: unknown = this.#statement("SELECT ca_id FROM ca_certificates WHERE role = ? AND status = 'active'").pluck().get(record.role);
        if (other !== undefined) throw new StoreError('STORE_CONFLICT', `an active ${record.role} CA already exists (${describeId(other)})`);
      }
      this.#statement(`INSERT INTO ca_certificates (${CA_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
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
      );
    });
  }

  retireCa(caId: string): void {
    requireCaId(caId);
    atomically(this.#access, () => {
      if (this.#statement('SELECT 1 FROM ca_certificates WHERE ca_id = ?').get(caId) === undefined) {
        throw new StoreError('STORE_NOT_FOUND', `CA ${caId} does not exist`);
      }
      this.#statement("UPDATE ca_certificates SET status = 'retired' WHERE ca_id = ?").run(caId);
    });
  }

  listLeaves(): LeafCertificateRecord[] {
    return this.#statement(`SELECT ${LEAF_COLUMNS} FROM leaf_certificates ORDER BY key_id, not_before, serial_number`).all().map(leafCertificateFromRow);
  }

  leavesOfKey(keyId: string): LeafCertificateRecord[] {
    requireString('keyId', keyId);
    return this.#statement(`SELECT ${LEAF_COLUMNS} FROM leaf_certificates WHERE key_id = ? ORDER BY not_before, serial_number`)
      .all(keyId)
      .map(leafCertificateFromRow);
  }

  getLeaf(serialNumber: string): LeafCertificateRecord | null {
    requireString('serialNumber', serialNumber);
    const row = this.#statement(`SELECT ${LEAF_COLUMNS} FROM leaf_certificates WHERE serial_number = ?`).get(serialNumber);
    return row === undefined ? null : leafCertificateFromRow(row);
  }

  insertLeaf(candidate: LeafCertificateRecord): void {
    const record = requireLeafCertificate(candidate);
    atomically(this.#access, () => {
      if (this.#statement('SELECT 1 FROM leaf_certificates WHERE serial_number = ?').get(record.serialNumber) !== undefined) {
        throw new StoreError('STORE_CONFLICT', `a certificate with serial number ${record.serialNumber} already exists`);
      }
      if (this.#statement('SELECT 1 FROM key_versions WHERE key_id = ?').get(record.keyId) === undefined) {
        throw new StoreError('STORE_NOT_FOUND', `key version ${record.keyId} does not exist`);
      }
      if (this.#statement("SELECT 1 FROM ca_certificates WHERE ca_id = ? AND role = 'intermediate'").get(record.issuerCaId) === undefined) {
        throw new StoreError('STORE_NOT_FOUND', `intermediate CA ${record.issuerCaId} does not exist`);
      }
      this.#statement(`INSERT INTO leaf_certificates (${LEAF_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`).run(
        record.serialNumber,
        record.keyId,
        record.issuerCaId,
        record.certificatePem,
        record.notBefore,
        record.notAfter,
        record.createdAt,
      );
    });
  }

  revoke(candidate: RevocationRecord): void {
    const record = requireRevocation(candidate);
    atomically(this.#access, () => {
      const issuer: unknown = this.#statement('SELECT issuer_ca_id FROM leaf_certificates WHERE serial_number = ?').pluck().get(record.serialNumber);
      if (issuer !== record.issuerCaId) {
        throw new StoreError('STORE_NOT_FOUND', `CA ${record.issuerCaId} issued no certificate with serial number ${record.serialNumber}`);
      }
      if (this.#statement('SELECT 1 FROM certificate_revocations WHERE serial_number = ?').get(record.serialNumber) !== undefined) {
        throw new StoreError('STORE_CONFLICT', `certificate ${record.serialNumber} is already revoked`);
      }
      this.#statement(`INSERT INTO certificate_revocations (${REVOCATION_COLUMNS}) VALUES (?, ?, ?, ?)`).run(
        record.serialNumber,
        record.issuerCaId,
        record.revokedAt,
        record.reason,
      );
    });
  }

  listRevocations(): RevocationRecord[] {
    return this.#statement(`SELECT ${REVOCATION_COLUMNS} FROM certificate_revocations ORDER BY revoked_at, serial_number`)
      .all()
      .map(revocationFromRow);
  }

  addCrl(candidate: CrlRecord): void {
    const record = requireCrl(candidate);
    atomically(this.#access, () => {
      if (this.#statement('SELECT 1 FROM ca_certificates WHERE ca_id = ?').get(record.issuerCaId) === undefined) {
        throw new StoreError('STORE_NOT_FOUND', `CA ${record.issuerCaId} does not exist`);
      }
      const latest: unknown = this.#statement('SELECT MAX(crl_number) FROM crls WHERE issuer_ca_id = ?').pluck().get(record.issuerCaId);
      // CRL numbers only increase (RFC 5280 §5.2.3): a relying party keeps the highest.
      if (typeof latest === 'number' && latest >= record.crlNumber) {
        throw new StoreError('STORE_CONFLICT', `CRL number ${record.crlNumber} of ${record.issuerCaId} is not above the latest (${latest})`);
      }
      this.#statement(`INSERT INTO crls (${CRL_COLUMNS}) VALUES (?, ?, ?, ?, ?)`).run(
        record.issuerCaId,
        record.crlNumber,
        record.thisUpdate,
        record.nextUpdate,
        record.der,
      );
    });
  }

  latestCrl(issuerCaId: string): CrlRecord | null {
    requireString('issuerCaId', issuerCaId);
    const row = this.#statement(`SELECT ${CRL_COLUMNS} FROM crls WHERE issuer_ca_id = ? ORDER BY crl_number DESC LIMIT 1`).get(issuerCaId);
    return row === undefined ? null : crlFromRow(row);
  }

  #statement(sql: string): ReturnType<SqliteAccess['statement']> {
    return this.#access.statement(sql);
  }
}
