/**
 * Validation of the certificate records (store.ts, `CertificateRepository`), shared by
 * every storage backend, in both directions as in validation.ts: a bad value from a
 * caller is a TypeError before anything is written; a stored row that does not
 * describe a valid record is STORE_CORRUPT. Rows are keyed by column name, identical
 * in both dialects. Problems name fields, never values.
 */
import { Buffer } from 'node:buffer';
import { isKeyAlgorithm } from '../signer/algorithms.js';
import { StoreError } from './errors.js';
import {
  CA_ROLES,
  CA_STATUSES,
  REVOCATION_REASONS,
  type CaCertificateRecord,
  type CaRole,
  type CaStatus,
  type CrlRecord,
  type LeafCertificateRecord,
  type RevocationReason,
  type RevocationRecord,
} from './store.js';
import { canonicalTimestamp } from './validation.js';

/** `root-1`, `intermediate-2`: what CRL URLs and the trust bundle name a CA by. */
export const CA_ID = /^[a-z0-9-]{1,64}$/;
/** Lower-case hex without a leading zero byte, at most 20 octets (RFC 5280 §4.1.2.2). */
export const SERIAL_NUMBER = /^(?!00)(?:[0-9a-f]{2}){1,20}$/;
const KEY_ID = /^[a-z0-9][a-z0-9._-]{0,62}@[1-9][0-9]{0,8}$/;
const HSM_KEY_ID = /^(?:[0-9a-f]{2}){1,128}$/;
const CERTIFICATE_PEM = /^-----BEGIN CERTIFICATE-----\r?\n(?:[A-Za-z0-9+/=]{1,76}\r?\n)+-----END CERTIFICATE-----\r?\n?$/;
const MAX_PEM_LENGTH = 32_768;
const MAX_SUBJECT_LENGTH = 1024;
/** Largest CRL stored (the migration's CHECK says the same). */
export const MAX_CRL_BYTES = 16_777_216;

type Candidate<T> = { readonly [K in keyof T]: unknown };
type Reject = (problems: string[]) => never;

function isCaRole(value: unknown): value is CaRole {
  return typeof value === 'string' && (CA_ROLES as readonly string[]).includes(value);
}

function isCaStatus(value: unknown): value is CaStatus {
  return typeof value === 'string' && (CA_STATUSES as readonly string[]).includes(value);
}

export function isRevocationReason(value: unknown): value is RevocationReason {
  return typeof value === 'string' && (REVOCATION_REASONS as readonly string[]).includes(value);
}

function isPem(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_PEM_LENGTH && CERTIFICATE_PEM.test(value);
}

function rowRecord(table: string, row: unknown): Record<string, unknown> {
  if (typeof row !== 'object' || row === null) throw new StoreError('STORE_CORRUPT', `${table} returned a row that is not a record`);
  return row as Record<string, unknown>;
}

/** Checks notBefore < notAfter and both timestamps; pushes problems. */
function validityWindow(candidate: { notBefore: unknown; notAfter: unknown }, problems: string[]): { notBefore: string; notAfter: string } {
  const notBefore = canonicalTimestamp(candidate.notBefore);
  const notAfter = canonicalTimestamp(candidate.notAfter);
  if (notBefore === null) problems.push('notBefore');
  if (notAfter === null) problems.push('notAfter');
  else if (notBefore !== null && Date.parse(notAfter) <= Date.parse(notBefore)) problems.push('notAfter (not after notBefore)');
  return { notBefore: notBefore ?? '', notAfter: notAfter ?? '' };
}

// ---------------------------------------------------------------------------------
// CA certificates

function parseCa(candidate: Candidate<CaCertificateRecord>, reject: Reject): CaCertificateRecord {
  const problems: string[] = [];
  const { caId, role, status, algorithm, hsmKeyId, serialNumber, subject, issuerCaId, certificatePem } = candidate;
  if (typeof caId !== 'string' || !CA_ID.test(caId)) problems.push('caId');
  if (!isCaRole(role)) problems.push('role');
  if (!isCaStatus(status)) problems.push('status');
  if (typeof algorithm !== 'string' || !isKeyAlgorithm(algorithm) || !algorithm.startsWith('ecdsa-')) problems.push('algorithm');
  if (typeof hsmKeyId !== 'string' || !HSM_KEY_ID.test(hsmKeyId)) problems.push('hsmKeyId');
  if (typeof serialNumber !== 'string' || !SERIAL_NUMBER.test(serialNumber)) problems.push('serialNumber');
  if (typeof subject !== 'string' || subject === '' || subject.length > MAX_SUBJECT_LENGTH || subject.includes('\0')) problems.push('subject');
  // A root is self-signed; an intermediate names its issuer (the migration's CHECK too).
  const issuerOk = role === 'root' ? issuerCaId === null : typeof issuerCaId === 'string' && CA_ID.test(issuerCaId) && issuerCaId !== caId;
  if (!issuerOk) problems.push('issuerCaId');
  if (!isPem(certificatePem)) problems.push('certificatePem');
  const window = validityWindow(candidate, problems);
  const createdAt = canonicalTimestamp(candidate.createdAt);
  if (createdAt === null) problems.push('createdAt');
  if (problems.length > 0) return reject(problems);
  return Object.freeze({
    caId: caId as string,
    role: role as CaRole,
    status: status as CaStatus,
    algorithm: algorithm as CaCertificateRecord['algorithm'],
    hsmKeyId: hsmKeyId as string,
    serialNumber: serialNumber as string,
    subject: subject as string,
    issuerCaId: issuerCaId as string | null,
    certificatePem: certificatePem as string,
    notBefore: window.notBefore,
    notAfter: window.notAfter,
    createdAt: createdAt as string,
  });
}

export function requireCaCertificate(candidate: CaCertificateRecord): CaCertificateRecord {
  return parseCa(candidate, (problems) => {
    throw new TypeError(`invalid CA certificate record: bad ${problems.join(', ')}`);
  });
}

export function caCertificateFromRow(row: unknown): CaCertificateRecord {
  const r = rowRecord('ca_certificates', row);
  return parseCa(
    {
      caId: r.ca_id,
      role: r.role,
      status: r.status,
      algorithm: r.algorithm,
      hsmKeyId: r.hsm_key_id,
      serialNumber: r.serial_number,
      subject: r.subject,
      issuerCaId: r.issuer_ca_id,
      certificatePem: r.certificate_pem,
      notBefore: r.not_before,
      notAfter: r.not_after,
      createdAt: r.created_at,
    },
    (problems) => {
      throw new StoreError('STORE_CORRUPT', `a stored CA certificate has invalid ${problems.join(', ')}`);
    },
  );
}

export function requireCaId(value: unknown): string {
  if (typeof value !== 'string' || !CA_ID.test(value)) throw new TypeError('invalid caId');
  return value;
}

export function requireSerialNumber(value: unknown): string {
  if (typeof value !== 'string' || !SERIAL_NUMBER.test(value)) {
    throw new TypeError('invalid serial number: lower-case hex, whole bytes, no leading zero byte, at most 20 bytes');
  }
  return value;
}

// ---------------------------------------------------------------------------------
// Leaf certificates

function parseLeaf(candidate: Candidate<LeafCertificateRecord>, reject: Reject): LeafCertificateRecord {
  const problems: string[] = [];
  const { serialNumber, keyId, issuerCaId, certificatePem } = candidate;
  if (typeof serialNumber !== 'string' || !SERIAL_NUMBER.test(serialNumber)) problems.push('serialNumber');
  if (typeof keyId !== 'string' || !KEY_ID.test(keyId)) problems.push('keyId');
  if (typeof issuerCaId !== 'string' || !CA_ID.test(issuerCaId)) problems.push('issuerCaId');
  if (!isPem(certificatePem)) problems.push('certificatePem');
  const window = validityWindow(candidate, problems);
  const createdAt = canonicalTimestamp(candidate.createdAt);
  if (createdAt === null) problems.push('createdAt');
  if (problems.length > 0) return reject(problems);
  return Object.freeze({
    serialNumber: serialNumber as string,
    keyId: keyId as string,
    issuerCaId: issuerCaId as string,
    certificatePem: certificatePem as string,
    notBefore: window.notBefore,
    notAfter: window.notAfter,
    createdAt: createdAt as string,
  });
}

export function requireLeafCertificate(candidate: LeafCertificateRecord): LeafCertificateRecord {
  return parseLeaf(candidate, (problems) => {
    throw new TypeError(`invalid leaf certificate record: bad ${problems.join(', ')}`);
  });
}

export function leafCertificateFromRow(row: unknown): LeafCertificateRecord {
  const r = rowRecord('leaf_certificates', row);
  return parseLeaf(
    {
      serialNumber: r.serial_number,
      keyId: r.key_id,
      issuerCaId: r.issuer_ca_id,
      certificatePem: r.certificate_pem,
      notBefore: r.not_before,
      notAfter: r.not_after,
      createdAt: r.created_at,
    },
    (problems) => {
      throw new StoreError('STORE_CORRUPT', `a stored leaf certificate has invalid ${problems.join(', ')}`);
    },
  );
}

// ---------------------------------------------------------------------------------
// Revocations

function parseRevocation(candidate: Candidate<RevocationRecord>, reject: Reject): RevocationRecord {
  const problems: string[] = [];
  const { serialNumber, issuerCaId, reason } = candidate;
  if (typeof serialNumber !== 'string' || !SERIAL_NUMBER.test(serialNumber)) problems.push('serialNumber');
  if (typeof issuerCaId !== 'string' || !CA_ID.test(issuerCaId)) problems.push('issuerCaId');
  const revokedAt = canonicalTimestamp(candidate.revokedAt);
  if (revokedAt === null) problems.push('revokedAt');
  if (!isRevocationReason(reason)) problems.push('reason');
  if (problems.length > 0) return reject(problems);
  return Object.freeze({
    serialNumber: serialNumber as string,
    issuerCaId: issuerCaId as string,
    revokedAt: revokedAt as string,
    reason: reason as RevocationReason,
  });
}

export function requireRevocation(candidate: RevocationRecord): RevocationRecord {
  return parseRevocation(candidate, (problems) => {
    throw new TypeError(`invalid revocation record: bad ${problems.join(', ')}`);
  });
}

export function revocationFromRow(row: unknown): RevocationRecord {
  const r = rowRecord('certificate_revocations', row);
  return parseRevocation(
    { serialNumber: r.serial_number, issuerCaId: r.issuer_ca_id, revokedAt: r.revoked_at, reason: r.reason },
    (problems) => {
      throw new StoreError('STORE_CORRUPT', `a stored revocation has invalid ${problems.join(', ')}`);
    },
  );
}

// ---------------------------------------------------------------------------------
// CRLs

/** A CRL number as a driver may return it: a number, or (PostgreSQL BIGINT) a decimal string or bigint. */
function crlNumberOf(value: unknown): number | null {
  const number = typeof value === 'bigint' ? Number(value) : typeof value === 'string' && /^[1-9][0-9]{0,15}$/.test(value) ? Number(value) : value;
  return typeof number === 'number' && Number.isSafeInteger(number) && number >= 1 ? number : null;
}

function parseCrl(candidate: Candidate<CrlRecord>, reject: Reject): CrlRecord {
  const problems: string[] = [];
  const { issuerCaId, der } = candidate;
  if (typeof issuerCaId !== 'string' || !CA_ID.test(issuerCaId)) problems.push('issuerCaId');
  const crlNumber = crlNumberOf(candidate.crlNumber);
  if (crlNumber === null) problems.push('crlNumber');
  const thisUpdate = canonicalTimestamp(candidate.thisUpdate);
  const nextUpdate = canonicalTimestamp(candidate.nextUpdate);
  if (thisUpdate === null) problems.push('thisUpdate');
  if (nextUpdate === null) problems.push('nextUpdate');
  else if (thisUpdate !== null && Date.parse(nextUpdate) <= Date.parse(thisUpdate)) problems.push('nextUpdate (not after thisUpdate)');
  if (!Buffer.isBuffer(der) || der.byteLength < 1 || der.byteLength > MAX_CRL_BYTES) problems.push('der');
  if (problems.length > 0) return reject(problems);
  return Object.freeze({
    issuerCaId: issuerCaId as string,
    crlNumber: crlNumber as number,
    thisUpdate: thisUpdate as string,
    nextUpdate: nextUpdate as string,
    der: der as Buffer,
  });
}

export function requireCrl(candidate: CrlRecord): CrlRecord {
  return parseCrl(candidate, (problems) => {
    throw new TypeError(`invalid CRL record: bad ${problems.join(', ')}`);
  });
}

export function crlFromRow(row: unknown): CrlRecord {
  const r = rowRecord('crls', row);
  return parseCrl(
    { issuerCaId: r.issuer_ca_id, crlNumber: r.crl_number, thisUpdate: r.this_update, nextUpdate: r.next_update, der: r.der },
    (problems) => {
      throw new StoreError('STORE_CORRUPT', `a stored CRL has invalid ${problems.join(', ')}`);
    },
  );
}
