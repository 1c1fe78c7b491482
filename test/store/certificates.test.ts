/**
 * The certificate repository (migration 4) on both backends: the invariants the CA
 * relies on are kept by storage (one active CA per role, issuers that exist, serial
 * numbers used once, one revocation per leaf, CRL numbers that only grow), also when
 * two stores (processes, replicas) write at once; caller mistakes are TypeErrors; a
 * damaged row is STORE_CORRUPT. The CA's own use of it is tested in test/ca/.
 */
import { describe, expect, it } from 'vitest';
import { isStoreError } from '../../store/errors.js';
import type { CaCertificateRecord, CrlRecord, LeafCertificateRecord } from '../../store/store.js';
import { describeStore } from './backends.js';
import { keyVersion } from './sqlite-fixtures.js';

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
  return {
    serialNumber,
    keyId,
    issuerCaId: 'intermediate-1',
    certificatePem: PEM,
    notBefore: T0,
    notAfter: '2031-01-01T00:00:00.000Z',
    createdAt: T0,
    ...overrides,
  };
}

function crl(crlNumber: number): CrlRecord {
  return { issuerCaId: 'intermediate-1', crlNumber, thisUpdate: T0, nextUpdate: '2030-01-08T00:00:00.000Z', der: Buffer.from([0x30, 0x00]) };
}

async function code(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (error === undefined) return 'ok';
  if (isStoreError(error)) return error.code;
  if (error instanceof TypeError) return 'TypeError';
  return error instanceof Error ? error.message : 'not an Error';
}

describeStore('certificates', (t) => {
  async function seed(): Promise<void> {
    await t.store.keys.insert(keyVersion('release', 1, 'active'));
    await t.store.certificates.insertCa(ca('root-1'));
    await t.store.certificates.insertCa(ca('intermediate-1'));
  }

  it('round-trips every record', async () => {
    await seed();
    await t.store.certificates.insertLeaf(leaf('0a01', 'release@1'));
    await t.store.certificates.revoke({ serialNumber: '0a01', issuerCaId: 'intermediate-1', revokedAt: '2030-02-01T00:00:00Z', reason: 'keyCompromise' });
    await t.store.certificates.addCrl(crl(1));
    expect((await t.store.certificates.listCas()).map((c) => c.caId)).toEqual(['intermediate-1', 'root-1']);
    expect(await t.store.certificates.getLeaf('0a01')).toEqual(leaf('0a01', 'release@1'));
    expect(await t.store.certificates.getLeaf('0a02')).toBeNull();
    expect(await t.store.certificates.leavesOfKey('release@1')).toEqual([leaf('0a01', 'release@1')]);
    expect(await t.store.certificates.listLeaves()).toEqual([leaf('0a01', 'release@1')]);
    expect(await t.store.certificates.listRevocations()).toEqual([
      { serialNumber: '0a01', issuerCaId: 'intermediate-1', revokedAt: '2030-02-01T00:00:00.000Z', reason: 'keyCompromise' },
    ]);
    expect(await t.store.certificates.latestCrl('intermediate-1')).toEqual(crl(1));
    expect(await t.store.certificates.latestCrl('root-1')).toBeNull();
  });

  it('lists leaves by key id in byte order, then by notBefore', async () => {
    await seed();
    for (const name of ['b', 'a_x', 'a-x', 'a.x', '0z']) await t.store.keys.insert(keyVersion(name, 1));
    await t.store.certificates.insertLeaf(leaf('0b01', 'b@1'));
    await t.store.certificates.insertLeaf(leaf('0b02', 'a_x@1'));
    await t.store.certificates.insertLeaf(leaf('0b03', 'a.x@1'));
    await t.store.certificates.insertLeaf(leaf('0b04', 'a-x@1', { notBefore: '2030-06-01T00:00:00.000Z' }));
    await t.store.certificates.insertLeaf(leaf('0b05', 'a-x@1'));
    await t.store.certificates.insertLeaf(leaf('0b06', '0z@1'));
    expect((await t.store.certificates.listLeaves()).map((l) => l.serialNumber)).toEqual(['0b06', '0b05', '0b04', '0b03', '0b02', '0b01']);
  });

  it('keeps one active CA per role, and retiring makes room', async () => {
    await seed();
    expect(await code(t.store.certificates.insertCa(ca('intermediate-2')))).toBe('STORE_CONFLICT');
    expect(
      await code(
        t.store.certificates.insertCa(ca('intermediate-2', { serialNumber: Buffer.from('intermediate-1').toString('hex'), status: 'retired' })),
      ),
    ).toBe('STORE_CONFLICT');
    expect(await code(t.store.certificates.insertCa(ca('intermediate-3', { issuerCaId: 'root-9', status: 'retired' })))).toBe('STORE_NOT_FOUND');
    await t.store.transaction(async (tx) => {
      await tx.certificates.retireCa('intermediate-1');
      await tx.certificates.insertCa(ca('intermediate-2'));
    });
    const statuses = Object.fromEntries((await t.store.certificates.listCas()).map((c) => [c.caId, c.status]));
    expect(statuses).toMatchObject({ 'intermediate-1': 'retired', 'intermediate-2': 'active' });
    expect(await code(t.store.certificates.retireCa('nothing'))).toBe('STORE_NOT_FOUND');
  });

  it('refuses reused serials, unknown keys and issuers, double revocations and CRL numbers that do not grow', async () => {
    await seed();
    await t.store.certificates.insertLeaf(leaf('0a02', 'release@1'));
    expect(await code(t.store.certificates.insertLeaf(leaf('0a02', 'release@1')))).toBe('STORE_CONFLICT');
    expect(await code(t.store.certificates.insertLeaf(leaf('0a03', 'other@1')))).toBe('STORE_NOT_FOUND');
    expect(await code(t.store.certificates.insertLeaf(leaf('0a04', 'release@1', { issuerCaId: 'root-1' })))).toBe('STORE_NOT_FOUND');
    const revocation = { serialNumber: '0a02', issuerCaId: 'intermediate-1', revokedAt: T0, reason: 'superseded' as const };
    expect(await code(t.store.certificates.revoke({ ...revocation, issuerCaId: 'root-1' }))).toBe('STORE_NOT_FOUND');
    await t.store.certificates.revoke(revocation);
    expect(await code(t.store.certificates.revoke(revocation))).toBe('STORE_CONFLICT');
    await t.store.certificates.addCrl(crl(5));
    expect(await code(t.store.certificates.addCrl(crl(5)))).toBe('STORE_CONFLICT');
    expect(await code(t.store.certificates.addCrl(crl(4)))).toBe('STORE_CONFLICT');
    expect(await code(t.store.certificates.addCrl({ ...crl(6), issuerCaId: 'nobody' }))).toBe('STORE_NOT_FOUND');
    await t.store.certificates.addCrl(crl(6));
    expect((await t.store.certificates.latestCrl('intermediate-1'))?.crlNumber).toBe(6);
  });

  it('keeps CRL numbers growing and one active CA per role with two stores writing at once', async () => {
    await seed();
    const other = await t.db.open();
    const stores = [t.store, other];
    // CRL numbers 1..30 offered in a scrambled order through both stores: whatever is
    // accepted was above everything recorded before it.
    const numbers = Array.from({ length: 30 }, (_, i) => ((i * 7) % 30) + 1);
    const outcomes = await Promise.all(numbers.map((n, i) => code(stores[i % 2]!.certificates.addCrl(crl(n)))));
    for (const outcome of outcomes) expect(['ok', 'STORE_CONFLICT']).toContain(outcome);
    const accepted = numbers.filter((_, i) => outcomes[i] === 'ok');
    expect(accepted.length).toBeGreaterThan(0);
    expect((await t.store.certificates.latestCrl('intermediate-1'))?.crlNumber).toBe(Math.max(...accepted));
    const stored = (await t.db.raw.query('SELECT crl_number FROM crls ORDER BY crl_number')).map((row) => row.crl_number);
    expect(stored).toEqual([...accepted].sort((a, b) => a - b));

    await t.store.certificates.retireCa('intermediate-1');
    const inserts = await Promise.all(
      Array.from({ length: 6 }, (_, i) => code(stores[i % 2]!.certificates.insertCa(ca(`intermediate-${i + 2}`)))),
    );
    expect(inserts.filter((outcome) => outcome === 'ok')).toHaveLength(1);
    for (const outcome of inserts) expect(['ok', 'STORE_CONFLICT']).toContain(outcome);
    expect((await t.store.certificates.listCas()).filter((c) => c.role === 'intermediate' && c.status === 'active')).toHaveLength(1);
  });

  it('refuses malformed records before writing, and reports damaged rows as STORE_CORRUPT', async () => {
    await seed();
    expect(await code(t.store.certificates.insertLeaf(leaf('00ab', 'release@1')))).toBe('TypeError');
    expect(await code(t.store.certificates.insertLeaf(leaf('0A05', 'release@1')))).toBe('TypeError');
    expect(await code(t.store.certificates.insertLeaf(leaf('0a05', 'release@1', { notAfter: T0 })))).toBe('TypeError');
    expect(await code(t.store.certificates.insertCa(ca('root-2', { issuerCaId: 'root-1', status: 'retired' })))).toBe('TypeError');
    expect(
      await code(t.store.certificates.revoke({ serialNumber: '0a05', issuerCaId: 'intermediate-1', revokedAt: T0, reason: 'because' as never })),
    ).toBe('TypeError');
    expect(await t.store.certificates.listLeaves()).toEqual([]);
    await t.store.certificates.insertLeaf(leaf('0a06', 'release@1'));
    await t.db.raw.exec("UPDATE leaf_certificates SET certificate_pem = 'tampered' WHERE serial_number = '0a06'");
    expect(await code(t.store.certificates.getLeaf('0a06'))).toBe('STORE_CORRUPT');
    // The schema itself refuses what the store would: a root with an issuer.
    await expect(t.db.raw.exec("UPDATE ca_certificates SET issuer_ca_id = 'intermediate-1' WHERE ca_id = 'root-1'")).rejects.toThrow(
      t.db.violations.check,
    );
  });

  describe('closing', () => {
    it('fails every call after close with STORE_UNAVAILABLE', async () => {
      await t.store.close();
      for (const call of [
        () => t.store.certificates.listCas(),
        () => t.store.certificates.insertCa(ca('root-1')),
        () => t.store.certificates.addCrl(crl(1)),
        () => t.store.certificates.latestCrl('intermediate-1'),
      ]) {
        expect(await code(call())).toBe('STORE_UNAVAILABLE');
      }
    });
  });
});
