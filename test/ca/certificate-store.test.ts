/**
 * The certificate repository on a real SQLite file (migration 4): the invariants the
 * CA relies on are enforced by storage itself (one active CA per role, issuers that
 * exist, serial numbers used once, one revocation per leaf, CRL numbers that only
 * grow), caller mistakes are TypeErrors, a damaged row is STORE_CORRUPT; and the pure
 * expiry watch picks the certificates in use.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findExpiringCertificates } from '../../ca/expiry.js';
import { isStoreError } from '../../store/errors.js';
import { openSqliteStore } from '../../store/sqlite/sqlite-store.js';
import type { CaCertificateRecord, LeafCertificateRecord, SignetStore } from '../../store/store.js';
import { keyVersion, makeTempDir, withRawDatabase } from '../store/sqlite-fixtures.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const T0 = '2030-01-01T00:00:00.000Z';

function ca(caId: string, overrides: Partial<CaCertificateRecord> = {}): CaCertificateRecord {
  const root = caId.startsWith('root');
  return {
    caId,
    role: root ? 'root' : 'intermediate',
    status: 'active',
    algorithm: 'ecdsa-p384',
    hsmKeyId: 'ab'.repeat(16),
    serialNumber: Buffer.from(caId).toString('hex'),
    subject: `CN=${caId}`,
    issuerCaId: root ? null : 'root-1',
    certificatePem: PEM,
    notBefore: T0,
    notAfter: '2040-01-01T00:00:00.000Z',
    createdAt: T0,
    ...overrides,
  };
}

function leaf(serialNumber: string, keyId: string, overrides: Partial<LeafCertificateRecord> = {}): LeafCertificateRecord {
  return { serialNumber, keyId, issuerCaId: 'intermediate-1', certificatePem: PEM, notBefore: T0, notAfter: '2031-01-01T00:00:00.000Z', createdAt: T0, ...overrides };
}

async function code(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (isStoreError(error)) return error.code;
  return error instanceof TypeError ? 'TypeError' : String(error);
}

let temp: ReturnType<typeof makeTempDir>;
let store: SignetStore;

beforeEach(async () => {
  temp = makeTempDir();
  store = openSqliteStore({ path: temp.dbPath });
  await store.migrate();
  await store.keys.insert(keyVersion('release', 1, 'active'));
  await store.certificates.insertCa(ca('root-1'));
  await store.certificates.insertCa(ca('intermediate-1'));
});

afterEach(async () => {
  await store.close();
  temp.cleanup();
});

describe('certificate repository (SQLite)', () => {
  it('round-trips every record', async () => {
    await store.certificates.insertLeaf(leaf('0a01', 'release@1'));
    await store.certificates.revoke({ serialNumber: '0a01', issuerCaId: 'intermediate-1', revokedAt: '2030-02-01T00:00:00Z', reason: 'keyCompromise' });
    await store.certificates.addCrl({ issuerCaId: 'intermediate-1', crlNumber: 1, thisUpdate: T0, nextUpdate: '2030-01-08T00:00:00Z', der: Buffer.from([0x30, 0x00]) });
    expect((await store.certificates.listCas()).map((c) => c.caId)).toEqual(['intermediate-1', 'root-1']);
    expect(await store.certificates.getLeaf('0a01')).toEqual(leaf('0a01', 'release@1'));
    expect(await store.certificates.leavesOfKey('release@1')).toHaveLength(1);
    expect(await store.certificates.listRevocations()).toEqual([{ serialNumber: '0a01', issuerCaId: 'intermediate-1', revokedAt: '2030-02-01T00:00:00.000Z', reason: 'keyCompromise' }]);
    expect(await store.certificates.latestCrl('intermediate-1')).toMatchObject({ crlNumber: 1, der: Buffer.from([0x30, 0x00]) });
    expect(await store.certificates.latestCrl('root-1')).toBeNull();
  });

  it('keeps one active CA per role, and retiring makes room', async () => {
    expect(await code(store.certificates.insertCa(ca('intermediate-2')))).toBe('STORE_CONFLICT');
    expect(await code(store.certificates.insertCa(ca('intermediate-2', { serialNumber: Buffer.from('intermediate-1').toString('hex'), status: 'retired' })))).toBe('STORE_CONFLICT');
    expect(await code(store.certificates.insertCa(ca('intermediate-3', { issuerCaId: 'root-9', status: 'retired' })))).toBe('STORE_NOT_FOUND');
    await store.transaction(async (tx) => {
      await tx.certificates.retireCa('intermediate-1');
      await tx.certificates.insertCa(ca('intermediate-2'));
    });
    const statuses = Object.fromEntries((await store.certificates.listCas()).map((c) => [c.caId, c.status]));
    expect(statuses).toMatchObject({ 'intermediate-1': 'retired', 'intermediate-2': 'active' });
    expect(await code(store.certificates.retireCa('nothing'))).toBe('STORE_NOT_FOUND');
  });

  it('refuses reused serials, unknown keys and issuers, double revocations and CRL numbers that do not grow', async () => {
    await store.certificates.insertLeaf(leaf('0a02', 'release@1'));
    expect(await code(store.certificates.insertLeaf(leaf('0a02', 'release@1')))).toBe('STORE_CONFLICT');
    expect(await code(store.certificates.insertLeaf(leaf('0a03', 'other@1')))).toBe('STORE_NOT_FOUND');
    expect(await code(store.certificates.insertLeaf(leaf('0a04', 'release@1', { issuerCaId: 'root-1' })))).toBe('STORE_NOT_FOUND');
    const revocation = { serialNumber: '0a02', issuerCaId: 'intermediate-1', revokedAt: T0, reason: 'superseded' as const };
    expect(await code(store.certificates.revoke({ ...revocation, issuerCaId: 'root-1' }))).toBe('STORE_NOT_FOUND');
    await store.certificates.revoke(revocation);
    expect(await code(store.certificates.revoke(revocation))).toBe('STORE_CONFLICT');
    const crl = { issuerCaId: 'intermediate-1', crlNumber: 5, thisUpdate: T0, nextUpdate: '2030-01-02T00:00:00Z', der: Buffer.from([0x30, 0x00]) };
    await store.certificates.addCrl(crl);
    expect(await code(store.certificates.addCrl(crl))).toBe('STORE_CONFLICT');
    expect(await code(store.certificates.addCrl({ ...crl, crlNumber: 4 }))).toBe('STORE_CONFLICT');
    await store.certificates.addCrl({ ...crl, crlNumber: 6 });
    expect((await store.certificates.latestCrl('intermediate-1'))?.crlNumber).toBe(6);
  });

  it('refuses malformed records before writing, and reports damaged rows as STORE_CORRUPT', async () => {
    expect(await code(store.certificates.insertLeaf(leaf('00ab', 'release@1')))).toBe('TypeError');
    expect(await code(store.certificates.insertLeaf(leaf('0A05', 'release@1')))).toBe('TypeError');
    expect(await code(store.certificates.insertLeaf(leaf('0a05', 'release@1', { notAfter: T0 })))).toBe('TypeError');
    expect(await code(store.certificates.insertCa(ca('root-2', { issuerCaId: 'root-1', status: 'retired' })))).toBe('TypeError');
    expect(await code(store.certificates.revoke({ serialNumber: '0a05', issuerCaId: 'intermediate-1', revokedAt: T0, reason: 'because' as never }))).toBe('TypeError');
    await store.certificates.insertLeaf(leaf('0a06', 'release@1'));
    withRawDatabase(temp.dbPath, (db) => db.prepare("UPDATE leaf_certificates SET certificate_pem = 'tampered' WHERE serial_number = '0a06'").run());
    expect(await code(store.certificates.getLeaf('0a06'))).toBe('STORE_CORRUPT');
    // The schema itself refuses what the store would: a root with an issuer.
    expect(() =>
      withRawDatabase(temp.dbPath, (db) => db.prepare("UPDATE ca_certificates SET issuer_ca_id = 'intermediate-1' WHERE ca_id = 'root-1'").run()),
    ).toThrow(/CHECK constraint/);
  });
});

describe('findExpiringCertificates', () => {
  const now = new Date('2030-12-01T00:00:00Z');
  const key = (name: string, state: 'active' | 'retired' | 'pending' = 'active') => keyVersion(name, 1, state);

  it('lists the active CAs and the current leaf of each live key inside the window, soonest first', () => {
    const found = findExpiringCertificates(
      {
        cas: [ca('root-1', { notAfter: '2031-06-01T00:00:00.000Z' }), ca('intermediate-1', { notAfter: '2030-12-20T00:00:00.000Z' }), ca('intermediate-0', { status: 'retired', notAfter: '2030-12-02T00:00:00.000Z' })],
        leaves: [
          // a: renewed, so only the new leaf counts (outside the window).
          leaf('01', 'a@1', { notAfter: '2030-12-05T00:00:00.000Z' }),
          leaf('02', 'a@1', { notBefore: '2030-11-30T00:00:00.000Z', notAfter: '2031-11-30T00:00:00.000Z' }),
          // b: expires in 10 days.
          leaf('03', 'b@1', { notAfter: '2030-12-11T00:00:00.000Z' }),
          // c: retired key, no warning; d: its only leaf revoked.
          leaf('04', 'c@1', { notAfter: '2030-12-03T00:00:00.000Z' }),
          leaf('05', 'd@1', { notAfter: '2030-12-03T00:00:00.000Z' }),
          // e: already expired.
          leaf('06', 'e@1', { notAfter: '2030-11-29T00:00:00.000Z' }),
        ],
        revocations: [{ serialNumber: '05', issuerCaId: 'intermediate-1', revokedAt: T0, reason: 'superseded' }],
        keys: [key('a'), key('b', 'pending'), key('c', 'retired'), key('d'), key('e')],
      },
      now,
      30,
    );
    expect(found.map((c) => [c.role, c.id, c.daysLeft, c.expired])).toEqual([
      ['leaf', 'e@1', -2, true],
      ['leaf', 'b@1', 10, false],
      ['intermediate', 'intermediate-1', 19, false],
    ]);
  });
});
