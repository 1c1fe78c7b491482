/**
 * The code-signing hierarchy against a real SoftHSM token and the real openssl CLI:
 * root and intermediate keys generated in the token (sign-only, non-extractable),
 * leaves for every key algorithm that `openssl verify -x509_strict` accepts, with the
 * codeSigning EKU, the URI SAN naming the key, AKI/SKI and the CRL distribution point;
 * a leaf of another hierarchy rejected; every CA change in the transparency log.
 */
import 'reflect-metadata';
import { createPublicKey } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../ca/authority.js';
import { isCaError } from '../../ca/errors.js';
import { CERTIFICATE_EVENT_KIND } from '../../ca/log-entries.js';
import { caSettingsFrom, CA_DEFAULTS } from '../../ca/settings.js';
import { KEY_ALGORITHMS } from '../../signer/algorithms.js';
import { openStore } from '../../store/open-store.js';
import type { CaCertificateRecord, LeafCertificateRecord } from '../../store/store.js';
import { createCaFixture, LOG_KEY_NAME, LOG_ORIGIN, openssl, opensslExtendedKeyUsage, opensslVerifyChain, signingKey, type CaFixture } from './support.js';

let fixture: CaFixture;
let root: CaCertificateRecord;
let intermediate: CaCertificateRecord;

beforeAll(async () => {
  fixture = await createCaFixture();
  const hierarchy = await fixture.ca.initHierarchy();
  root = hierarchy.root;
  intermediate = hierarchy.intermediate;
});

afterAll(async () => {
  await fixture.close();
});

async function expectCaError(promise: Promise<unknown>, code: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isCaError(error), `expected CaError ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: string }).code).toBe(code);
}

describe('CA hierarchy', () => {
  it('creates an ECDSA P-384 root and intermediate whose keys stay in the HSM', async () => {
    expect(root).toMatchObject({ caId: 'root-1', role: 'root', status: 'active', algorithm: 'ecdsa-p384', issuerCaId: null });
    expect(intermediate).toMatchObject({ caId: 'intermediate-1', role: 'intermediate', status: 'active', algorithm: 'ecdsa-p384', issuerCaId: 'root-1' });
    for (const ca of [root, intermediate]) {
      const attributes = await fixture.hsm.privateKeyAttributes({ hsmKeyId: ca.hsmKeyId, algorithm: ca.algorithm });
      expect(attributes).toMatchObject({ sensitive: true, extractable: false, neverExtractable: true, sign: true, decrypt: false, unwrap: false, token: true });
      const certificate = new x509.X509Certificate(ca.certificatePem);
      expect((certificate.publicKey.algorithm as { namedCurve?: string }).namedCurve).toBe('P-384');
      expect(certificate.signatureAlgorithm).toMatchObject({ name: 'ECDSA', hash: { name: 'SHA-384' } });
    }
    // The intermediate verifies under the root, with x509_strict (CA profile checks).
    const check = openssl(['verify', '-x509_strict', '-CAfile', fixture.file('root.pem', root.certificatePem), fixture.file('intermediate.pem', intermediate.certificatePem)]);
    expect(check.stderr).toBe('');
    expect(check.status).toBe(0);
    const text = openssl(['x509', '-noout', '-text', '-in', fixture.file('intermediate.pem', intermediate.certificatePem)]).stdout;
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Certificate Sign, CRL Sign/);
  });

  it('refuses to create a second hierarchy; a new intermediate retires the old one', async () => {
    await expectCaError(fixture.ca.initHierarchy(), 'CA_EXISTS');
    // Exercised on a copy of the state in a second store, so the other tests keep intermediate-1.
    const other = await openStore({ driver: 'sqlite', sqlite: { path: `${fixture.dir}/rotation.db` } });
    try {
      const settings = caSettingsFrom({ ca: { ...CA_DEFAULTS, publicUrl: 'https://signet.test' }, log: { origin: LOG_ORIGIN } });
      const ca = new CertificateAuthority({ hsm: fixture.hsm, store: other, settings, logKeyName: LOG_KEY_NAME });
      const first = await ca.initHierarchy();
      const second = await ca.initHierarchy({ newIntermediate: true });
      expect(second.created).toEqual(['intermediate-2']);
      expect(second.root.caId).toBe(first.root.caId);
      const statuses = Object.fromEntries((await other.certificates.listCas()).map((c) => [c.caId, c.status]));
      expect(statuses).toEqual({ 'root-1': 'active', 'intermediate-1': 'retired', 'intermediate-2': 'active' });
      expect(second.intermediate.subject).toContain('Intermediate 2');
    } finally {
      await other.close();
    }
  });
});

describe('leaf certificates', () => {
  const leaves = new Map<string, LeafCertificateRecord>();

  beforeAll(async () => {
    for (const algorithm of KEY_ALGORITHMS) {
      const key = await signingKey(fixture, `release-${algorithm}`, algorithm);
      leaves.set(algorithm, await fixture.ca.issueLeaf(key.keyId));
    }
  });

  it.each(KEY_ALGORITHMS)('a %s key gets a leaf that openssl verify -x509_strict accepts, with the codeSigning EKU', (algorithm) => {
    const leaf = leaves.get(algorithm)!;
    const result = opensslVerifyChain(fixture, root.certificatePem, intermediate.certificatePem, leaf.certificatePem, algorithm);
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toMatch(/: OK$/);
    expect(result.status).toBe(0);
    // OpenSSL 3.0 has no code-signing purpose for verify: the EKU is checked on its own.
    expect(opensslExtendedKeyUsage(fixture, leaf.certificatePem)).toMatch(/X509v3 Extended Key Usage:\s*\n\s*Code Signing\s*$/);
  });

  it('certifies the HSM key itself, names it, and carries SAN, AKI/SKI, key usage and the CRL URL', async () => {
    const leaf = leaves.get('ecdsa-p256')!;
    const key = (await fixture.store.keys.get(leaf.keyId))!;
    const certificate = new x509.X509Certificate(leaf.certificatePem);
    const spki = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'der' });
    expect(Buffer.from(certificate.publicKey.rawData).equals(spki(key.publicKeyPem))).toBe(true);
    expect(certificate.subject).toBe(`CN=${leaf.keyId}, OU=Release Signing, O=Signet`);
    expect(certificate.issuer).toBe(intermediate.subject);
    const san = certificate.getExtension(x509.SubjectAlternativeNameExtension)!;
    expect(san.names.toJSON()).toEqual([{ type: 'url', value: `https://${LOG_ORIGIN}/keys/${leaf.keyId}` }]);
    const aki = certificate.getExtension(x509.AuthorityKeyIdentifierExtension)!;
    const intermediateSki = new x509.X509Certificate(intermediate.certificatePem).getExtension(x509.SubjectKeyIdentifierExtension)!;
    expect(aki.keyId).toBe(intermediateSki.keyId);
    expect(certificate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/);
    const usage = certificate.getExtension(x509.KeyUsagesExtension)!;
    expect(usage.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(usage.critical).toBe(true);
    expect(certificate.getExtension(x509.BasicConstraintsExtension)).toMatchObject({ ca: false, critical: true });
    const text = openssl(['x509', '-noout', '-text', '-in', fixture.file('leaf-text.pem', leaf.certificatePem)]).stdout;
    expect(text).toContain(`URI:https://signet.test/v1/ca/${intermediate.caId}/crl`);
    // Validity: the configured days, inside the intermediate's window.
    const days = (Date.parse(leaf.notAfter) - Date.parse(leaf.notBefore)) / 86_400_000;
    expect(Math.round(days)).toBe(CA_DEFAULTS.leafValidityDays);
    expect(leaf.notAfter <= intermediate.notAfter).toBe(true);
  });

  it('a leaf of another hierarchy is rejected, even with the same names', async () => {
    const other = await openStore({ driver: 'sqlite', sqlite: { path: `${fixture.dir}/other.db` } });
    try {
      const settings = caSettingsFrom({ ca: { ...CA_DEFAULTS, publicUrl: 'https://signet.test' }, log: { origin: LOG_ORIGIN } });
      const foreign = new CertificateAuthority({ hsm: fixture.hsm, store: other, settings, logKeyName: LOG_KEY_NAME });
      const hierarchy = await foreign.initHierarchy();
      expect(hierarchy.intermediate.subject).toBe(intermediate.subject);
      const { createSigningKey } = await import('../../keyrotation/signing-keys.js');
      const key = await createSigningKey(fixture.hsm, other, 'foreign', 'ecdsa-p256');
      const leaf = await foreign.issueLeaf(key.keyId);
      // Its own chain verifies; ours does not accept it, with or without its intermediate.
      expect(opensslVerifyChain(fixture, hierarchy.root.certificatePem, hierarchy.intermediate.certificatePem, leaf.certificatePem, 'own').status).toBe(0);
      const mixed = opensslVerifyChain(fixture, root.certificatePem, hierarchy.intermediate.certificatePem, leaf.certificatePem, 'mixed');
      expect(mixed.status).not.toBe(0);
      const ours = opensslVerifyChain(fixture, root.certificatePem, intermediate.certificatePem, leaf.certificatePem, 'ours');
      expect(ours.status).not.toBe(0);
      expect(ours.stderr + ours.stdout).toMatch(/error \d+ at \d+ depth lookup/);
    } finally {
      await other.close();
    }
  });

  it('the log key, compromised keys and unknown keys get no certificate', async () => {
    const logKey = await signingKey(fixture, LOG_KEY_NAME);
    await expectCaError(fixture.ca.issueLeaf(logKey.keyId), 'CA_KEY_NOT_ELIGIBLE');
    const burnt = await signingKey(fixture, 'burnt');
    await fixture.store.keys.updateState(burnt.keyId, 'compromised', new Date().toISOString());
    await expectCaError(fixture.ca.issueLeaf(burnt.keyId), 'CA_KEY_NOT_ELIGIBLE');
    await expectCaError(fixture.ca.issueLeaf('nothing@1'), 'CA_KEY_NOT_ELIGIBLE');
  });

  it('records every CA and certificate in the transparency log', async () => {
    const size = await fixture.store.log.size();
    const entries = await fixture.store.log.entries(0, size);
    const events = entries.filter((e) => e.kind === CERTIFICATE_EVENT_KIND).map((e) => JSON.parse(e.leaf.toString('utf8')) as { spec: Record<string, unknown> });
    expect(events.filter((e) => e.spec.event === 'ca-created').map((e) => e.spec.caId)).toEqual(expect.arrayContaining(['root-1', 'intermediate-1']));
    const issued = events.filter((e) => e.spec.event === 'issued');
    const leaf = leaves.get('ed25519')!;
    expect(issued.find((e) => e.spec.serialNumber === leaf.serialNumber)?.spec).toMatchObject({ keyId: leaf.keyId, certificatePem: leaf.certificatePem, issuerCaId: 'intermediate-1' });
  });
});
