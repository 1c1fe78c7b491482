/**
 * Revocation and CRLs against a real SoftHSM token and the real openssl CLI: the CRL is
 * signed by the intermediate in the HSM, verifies with `openssl crl -verify`, lists a
 * revoked leaf with its reason, is signed again on every revocation (CRL numbers
 * grow) and before it expires, and makes `openssl verify -crl_check` refuse the leaf.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crlNeedsRefresh } from '../../ca/authority.js';
import { isCaError } from '../../ca/errors.js';
import { CERTIFICATE_EVENT_KIND } from '../../ca/log-entries.js';
import { crlPem } from '../../ca/trust-bundle.js';
import type { CaCertificateRecord } from '../../store/store.js';
import { createCaFixture, openssl, signingKey, type CaFixture } from './support.js';

let clock = Date.now();
let fixture: CaFixture;
let root: CaCertificateRecord;
let intermediate: CaCertificateRecord;

beforeAll(async () => {
  fixture = await createCaFixture({ now: () => new Date(clock), ca: { crlValidityHours: 24 } });
  ({ root, intermediate } = await fixture.ca.initHierarchy());
});

afterAll(async () => {
  await fixture.close();
});

function opensslCrl(der: Buffer, name: string) {
  const crlFile = fixture.file(`${name}.crl`, der);
  const caFile = fixture.file(`${name}-cas.pem`, intermediate.certificatePem + root.certificatePem);
  return {
    verify: openssl(['crl', '-inform', 'DER', '-in', crlFile, '-CAfile', caFile, '-verify', '-noout']),
    text: openssl(['crl', '-inform', 'DER', '-in', crlFile, '-noout', '-text']).stdout,
  };
}

describe('CRLs', () => {
  it('a first, empty CRL is signed for each new CA', async () => {
    for (const ca of [root, intermediate]) {
      const crl = (await fixture.store.certificates.latestCrl(ca.caId))!;
      expect(crl.crlNumber).toBe(1);
      expect(Date.parse(crl.nextUpdate) - Date.parse(crl.thisUpdate)).toBe(24 * 3_600_000);
      const parsed = new x509.X509Crl(crl.der);
      expect(parsed.issuer).toBe(ca.subject);
      expect(parsed.entries).toHaveLength(0);
    }
    const { verify, text } = opensslCrl((await fixture.store.certificates.latestCrl(intermediate.caId))!.der, 'first');
    expect(verify.stderr.trim()).toBe('verify OK');
    expect(verify.status).toBe(0);
    expect(text).toMatch(/X509v3 CRL Number:\s*\n\s*1\s*\n/);
    expect(text).toMatch(/X509v3 Authority Key Identifier:/);
    expect(text).toContain('No Revoked Certificates.');
  });

  it('revoking a leaf signs a new CRL that lists it, which openssl verifies and enforces', async () => {
    const key = await signingKey(fixture, 'release');
    const leaf = await fixture.ca.issueLeaf(key.keyId);
    const other = await fixture.ca.issueLeaf(key.keyId);
    const { revocation, crl } = await fixture.ca.revoke(leaf.serialNumber, 'keyCompromise');
    expect(revocation).toMatchObject({ serialNumber: leaf.serialNumber, issuerCaId: intermediate.caId, reason: 'keyCompromise' });
    expect(crl.crlNumber).toBe(2);
    expect(await fixture.store.certificates.latestCrl(intermediate.caId)).toEqual(crl);

    const { verify, text } = opensslCrl(crl.der, 'revoked');
    expect(verify.stderr.trim()).toBe('verify OK');
    expect(verify.status).toBe(0);
    expect(text).toContain(`Serial Number: ${leaf.serialNumber.toUpperCase()}`);
    expect(text).toMatch(/CRL Reason Code:\s*\n\s*Key Compromise/);
    expect(text).not.toContain(other.serialNumber.toUpperCase());

    // With the CRL, openssl refuses the revoked leaf and still accepts the other one.
    const check = (pem: string, name: string) =>
      openssl([
        'verify', '-x509_strict', '-crl_check',
        '-CRLfile', fixture.file(`${name}.crl.pem`, crlPem(crl.der)),
        '-CAfile', fixture.file(`${name}-root.pem`, root.certificatePem),
        '-untrusted', fixture.file(`${name}-int.pem`, intermediate.certificatePem),
        fixture.file(`${name}-leaf.pem`, pem),
      ]);
    const refused = check(leaf.certificatePem, 'crl-revoked');
    expect(refused.status).not.toBe(0);
    expect(refused.stderr + refused.stdout).toContain('certificate revoked');
    expect(check(other.certificatePem, 'crl-valid').status).toBe(0);

    // Recorded in the log, and revoking twice is refused.
    const entries = await fixture.store.log.entries(0, await fixture.store.log.size());
    const revoked = entries.filter((e) => e.kind === CERTIFICATE_EVENT_KIND).map((e) => JSON.parse(e.leaf.toString()) as { spec: Record<string, unknown> }).filter((e) => e.spec.event === 'revoked');
    expect(revoked).toEqual([expect.objectContaining({ spec: expect.objectContaining({ serialNumber: leaf.serialNumber, reason: 'keyCompromise', keyId: key.keyId }) })]);
    const again = await fixture.ca.revoke(leaf.serialNumber, 'superseded').catch((e: unknown) => e);
    expect(isCaError(again, 'CA_ALREADY_REVOKED')).toBe(true);
    expect(isCaError(await fixture.ca.revoke('0badc0de', 'superseded').catch((e: unknown) => e), 'CA_CERTIFICATE_NOT_FOUND')).toBe(true);
  });

  it('revoking a key revokes every certificate it has, in one new CRL', async () => {
    const key = await signingKey(fixture, 'retiring');
    const first = await fixture.ca.issueLeaf(key.keyId);
    const second = await fixture.ca.issueLeaf(key.keyId);
    const before = (await fixture.store.certificates.latestCrl(intermediate.caId))!.crlNumber;
    const { revocations, crls } = await fixture.ca.revokeKey(key.keyId, 'cessationOfOperation');
    expect(revocations.map((r) => r.serialNumber).sort()).toEqual([first.serialNumber, second.serialNumber].sort());
    expect(crls).toHaveLength(1);
    expect(crls[0]!.crlNumber).toBe(before + 1);
    const listed = new x509.X509Crl(crls[0]!.der).entries.map((e) => e.serialNumber.toLowerCase());
    expect(listed).toEqual(expect.arrayContaining([first.serialNumber, second.serialNumber]));
    expect(opensslCrl(crls[0]!.der, 'key').verify.status).toBe(0);
  });

  it('is signed again before it expires, and not while it is fresh and complete', async () => {
    expect(await fixture.ca.refreshCrls()).toEqual([]);
    const latest = (await fixture.store.certificates.latestCrl(intermediate.caId))!;
    expect(crlNeedsRefresh(latest, new x509.X509Crl(latest.der).entries.length, new Date(clock))).toBe(false);
    clock += 13 * 3_600_000; // past half of the 24 hours
    const signed = await fixture.ca.refreshCrls();
    expect(signed.map((c) => c.issuerCaId).sort()).toEqual([intermediate.caId, root.caId].sort());
    const renewed = (await fixture.store.certificates.latestCrl(intermediate.caId))!;
    expect(renewed.crlNumber).toBe(latest.crlNumber + 1);
    expect(Date.parse(renewed.thisUpdate)).toBeGreaterThan(Date.parse(latest.thisUpdate));
    // The same revocations, still listed.
    expect(new x509.X509Crl(renewed.der).entries.length).toBe(new x509.X509Crl(latest.der).entries.length);
  });

  it('a revocation whose CRL was not signed is picked up by the refresh', async () => {
    const key = await signingKey(fixture, 'late');
    const leaf = await fixture.ca.issueLeaf(key.keyId);
    // As another process (or a crash between the two steps) would leave it: recorded, no new CRL.
    await fixture.store.certificates.revoke({ serialNumber: leaf.serialNumber, issuerCaId: leaf.issuerCaId, revokedAt: new Date(clock).toISOString(), reason: 'superseded' });
    const signed = await fixture.ca.refreshCrls();
    expect(signed.map((c) => c.issuerCaId)).toEqual([intermediate.caId]);
    expect(new x509.X509Crl(signed[0]!.der).findRevoked(leaf.serialNumber)).not.toBeNull();
  });
});
