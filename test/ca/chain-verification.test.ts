/**
 * The offline chain check (`verifyCodeSigningChain`) against certificates made by the
 * real hierarchy in a real SoftHSM token: a good leaf passes; expired, not-yet-valid and
 * wrong-EKU leaves (signed by the real intermediate in the HSM), a chain whose
 * intermediate is missing, a leaf of another hierarchy, a revoked leaf, a compromised
 * key, a forged signature and malformed input are each refused with their own code and
 * a reason naming what is wrong. openssl agrees on the time and EKU cases.
 */
import 'reflect-metadata';
import { createPublicKey } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, randomSerialNumber } from '../../ca/authority.js';
import { verifyCodeSigningChain, type ChainVerification } from '../../ca/chain-verification.js';
import { createHsmCryptoBridge } from '../../ca/hsm-crypto.js';
import { crlUrl, ecdsaSigningParameters, leafProfile, type IssuerInfo } from '../../ca/profiles.js';
import { caSettingsFrom, CA_DEFAULTS } from '../../ca/settings.js';
import { buildTrustBundle, type TrustBundle } from '../../ca/trust-bundle.js';
import { createSigningKey } from '../../keyrotation/signing-keys.js';
import { openStore } from '../../store/open-store.js';
import type { CaCertificateRecord, KeyVersionRecord, SignetStore } from '../../store/store.js';
import { createCaFixture, LOG_KEY_NAME, LOG_ORIGIN, openssl, signingKey, type CaFixture } from './support.js';

const DAY = 86_400_000;
let fixture: CaFixture;
let root: CaCertificateRecord;
let intermediate: CaCertificateRecord;
let key: KeyVersionRecord;
let goodLeaf: string;

async function bundleOf(store: SignetStore): Promise<TrustBundle> {
  const cas = await store.certificates.listCas();
  const crls = (await Promise.all(cas.map((ca) => store.certificates.latestCrl(ca.caId)))).filter((c) => c !== null);
  return buildTrustBundle(
    { cas, crls, leaves: await store.certificates.listLeaves(), revocations: await store.certificates.listRevocations(), keys: await store.keys.list() },
    { origin: LOG_ORIGIN, logId: 'ab'.repeat(32), publicKeyPem: key.publicKeyPem },
    { publicUrl: 'https://signet.test', logOrigin: LOG_ORIGIN, logKeyName: LOG_KEY_NAME },
    new Date(),
  );
}

/** A leaf signed by the real intermediate in the HSM, with the profile bent as a test needs. */
async function customLeaf(options: { notBefore: Date; notAfter: Date; eku?: string[] | null }): Promise<string> {
  const parsed = new x509.X509Certificate(intermediate.certificatePem);
  const issuer: IssuerInfo = {
    subject: parsed.subject,
    keyIdentifier: parsed.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId,
    notBefore: parsed.notBefore,
    notAfter: parsed.notAfter,
  };
  const spki = createPublicKey(key.publicKeyPem).export({ type: 'spki', format: 'der' });
  const template = leafProfile({
    serialNumber: randomSerialNumber(),
    keyId: key.keyId,
    organization: 'Signet',
    logOrigin: LOG_ORIGIN,
    crlUrl: crlUrl('https://signet.test', intermediate.caId),
    publicKey: spki.buffer.slice(spki.byteOffset, spki.byteOffset + spki.byteLength),
    issuer,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
  });
  let extensions = template.extensions.filter((e) => !(e instanceof x509.ExtendedKeyUsageExtension));
  if (options.eku !== null) extensions = [...extensions, new x509.ExtendedKeyUsageExtension(options.eku ?? [x509.ExtendedKeyUsage.codeSigning])];
  const bridge = createHsmCryptoBridge(fixture.hsm);
  const certificate = await x509.X509CertificateGenerator.create(
    {
      ...template,
      extensions,
      signingAlgorithm: ecdsaSigningParameters(intermediate.algorithm).signing,
      signingKey: bridge.signingKey({ hsmKeyId: intermediate.hsmKeyId, algorithm: intermediate.algorithm }),
    },
    bridge.crypto,
  );
  return `${certificate.toString('pem')}\n`;
}

function expectRefused(result: ChainVerification, code: string, reason: RegExp): void {
  expect(result.ok, JSON.stringify(result)).toBe(false);
  if (result.ok) return;
  expect(result.code).toBe(code);
  expect(result.reason).toMatch(reason);
}

function opensslVerify(leaf: string, name: string) {
  return openssl([
    'verify', '-x509_strict',
    '-CAfile', fixture.file(`${name}-root.pem`, root.certificatePem),
    '-untrusted', fixture.file(`${name}-int.pem`, intermediate.certificatePem),
    fixture.file(`${name}-leaf.pem`, leaf),
  ]);
}

beforeAll(async () => {
  fixture = await createCaFixture();
  ({ root, intermediate } = await fixture.ca.initHierarchy());
  key = await signingKey(fixture, 'release');
  goodLeaf = (await fixture.ca.issueLeaf(key.keyId)).certificatePem;
});

afterAll(async () => {
  await fixture.close();
});

describe('verifyCodeSigningChain', () => {
  it('accepts a leaf of the hierarchy and names its key and identity', async () => {
    const result = verifyCodeSigningChain({ bundle: await bundleOf(fixture.store), leafPem: goodLeaf, at: new Date() });
    expect(result).toMatchObject({ ok: true, keyId: key.keyId, identity: `https://${LOG_ORIGIN}/keys/${key.keyId}`, intermediateSubject: intermediate.subject, rootSubject: root.subject });
  });

  it('refuses an expired leaf, judged at the signing time', async () => {
    const now = Date.now();
    const expired = await customLeaf({ notBefore: new Date(now - 10 * DAY), notAfter: new Date(now - DAY) });
    const bundle = await bundleOf(fixture.store);
    expectRefused(verifyCodeSigningChain({ bundle, leafPem: expired, at: new Date() }), 'CERT_EXPIRED', /leaf certificate expired at/);
    // While the leaf was valid, the intermediate (made minutes ago) was not yet: the
    // whole path is judged at the signing time.
    const early = verifyCodeSigningChain({ bundle, leafPem: expired, at: new Date(now - 5 * DAY) });
    expect(early).toMatchObject({ ok: false, code: 'CERT_NOT_YET_VALID', certificate: 'intermediate' });
    // The good leaf, checked a year and more from now, is expired too.
    expectRefused(verifyCodeSigningChain({ bundle, leafPem: goodLeaf, at: new Date(now + 400 * DAY) }), 'CERT_EXPIRED', /leaf/);
    expect(opensslVerify(expired, 'expired').stderr + opensslVerify(expired, 'expired').stdout).toMatch(/certificate has expired/);
  });

  it('refuses a not-yet-valid leaf', async () => {
    const now = Date.now();
    const future = await customLeaf({ notBefore: new Date(now + DAY), notAfter: new Date(now + 30 * DAY) });
    expectRefused(verifyCodeSigningChain({ bundle: await bundleOf(fixture.store), leafPem: future, at: new Date() }), 'CERT_NOT_YET_VALID', /not valid before/);
    const check = opensslVerify(future, 'future');
    expect(check.status).not.toBe(0);
    expect(check.stderr + check.stdout).toMatch(/certificate is not yet valid/);
  });

  it('refuses a leaf without the codeSigning EKU, or with none at all', async () => {
    const now = Date.now();
    const window = { notBefore: new Date(now - 60_000), notAfter: new Date(now + 30 * DAY) };
    const bundle = await bundleOf(fixture.store);
    const serverAuth = await customLeaf({ ...window, eku: [x509.ExtendedKeyUsage.serverAuth] });
    expectRefused(verifyCodeSigningChain({ bundle, leafPem: serverAuth, at: new Date() }), 'CERT_WRONG_EKU', /codeSigning/);
    const none = await customLeaf({ ...window, eku: null });
    expectRefused(verifyCodeSigningChain({ bundle, leafPem: none, at: new Date() }), 'CERT_WRONG_EKU', /codeSigning/);
    // openssl verify has no code-signing purpose in 3.0: the EKU shows it.
    const eku = openssl(['x509', '-noout', '-ext', 'extendedKeyUsage', '-in', fixture.file('server-auth.pem', serverAuth)]).stdout;
    expect(eku).toMatch(/TLS Web Server Authentication/);
    expect(eku).not.toMatch(/Code Signing/);
  });

  it('refuses a chain with a missing intermediate, and accepts it once the intermediate comes with the leaf', async () => {
    const bundle = await bundleOf(fixture.store);
    const withoutIntermediate = { ...bundle, intermediates: [] };
    expectRefused(verifyCodeSigningChain({ bundle: withoutIntermediate, leafPem: goodLeaf, at: new Date() }), 'CHAIN_INTERMEDIATE_MISSING', /no intermediate CA .* issued the leaf/);
    expect(verifyCodeSigningChain({ bundle: withoutIntermediate, leafPem: goodLeaf, intermediatesPem: [intermediate.certificatePem], at: new Date() }).ok).toBe(true);
    // The intermediate alone is no anchor: without the root, nothing verifies.
    expectRefused(
      verifyCodeSigningChain({ bundle: { ...bundle, roots: [] }, leafPem: goodLeaf, at: new Date() }),
      'CHAIN_ROOT_UNTRUSTED',
      /does not chain to a root of the trust bundle/,
    );
  });

  it('refuses a leaf of another hierarchy, even one with the same names', async () => {
    const other = await openStore({ driver: 'sqlite', sqlite: { path: `${fixture.dir}/other.db` } });
    try {
      const settings = caSettingsFrom({ ca: { ...CA_DEFAULTS, publicUrl: 'https://signet.test' }, log: { origin: LOG_ORIGIN } });
      const foreign = new CertificateAuthority({ hsm: fixture.hsm, store: other, settings, logKeyName: LOG_KEY_NAME });
      const hierarchy = await foreign.initHierarchy();
      const foreignKey = await createSigningKey(fixture.hsm, other, 'release', 'ecdsa-p256');
      const leaf = (await foreign.issueLeaf(foreignKey.keyId)).certificatePem;
      const bundle = await bundleOf(fixture.store);
      expectRefused(verifyCodeSigningChain({ bundle, leafPem: leaf, at: new Date() }), 'CHAIN_INTERMEDIATE_MISSING', /issued the leaf/);
      expectRefused(
        verifyCodeSigningChain({ bundle, leafPem: leaf, intermediatesPem: [hierarchy.intermediate.certificatePem], at: new Date() }),
        'CHAIN_ROOT_UNTRUSTED',
        /does not chain/,
      );
      // And its own bundle accepts it: the check is about trust, not form.
      expect(verifyCodeSigningChain({ bundle: await bundleOf(other), leafPem: leaf, at: new Date() }).ok).toBe(true);
    } finally {
      await other.close();
    }
  });

  it('refuses a leaf whose signature was tampered with', async () => {
    const der = Buffer.from(new x509.X509Certificate(goodLeaf).rawData);
    der[der.length - 5] = (der[der.length - 5] ?? 0) ^ 0x01; // inside the signature value
    const forged = new x509.X509Certificate(der).toString('pem');
    const result = verifyCodeSigningChain({ bundle: await bundleOf(fixture.store), leafPem: forged, at: new Date() });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(['CHAIN_SIGNATURE_INVALID', 'CERT_MALFORMED']).toContain(result.code);
  });

  it('refuses a revoked leaf and a compromised key', async () => {
    const revokedKey = await signingKey(fixture, 'revoked');
    const leaf = await fixture.ca.issueLeaf(revokedKey.keyId);
    const beforeRevocation = new Date();
    await fixture.ca.revoke(leaf.serialNumber, 'superseded');
    const bundle = await bundleOf(fixture.store);
    expectRefused(verifyCodeSigningChain({ bundle, leafPem: leaf.certificatePem, at: new Date() }), 'CERT_REVOKED', /revoked at .* \(superseded\)/);
    // Superseded: signatures made before the revocation stay valid. Key compromise voids them all.
    expect(verifyCodeSigningChain({ bundle, leafPem: leaf.certificatePem, at: new Date(beforeRevocation.getTime() - 1000) }).ok).toBe(true);

    const burnt = await signingKey(fixture, 'burnt');
    const burntLeaf = await fixture.ca.issueLeaf(burnt.keyId);
    const compromisedAt = new Date();
    await fixture.store.keys.updateState(burnt.keyId, 'compromised', compromisedAt.toISOString());
    const after = await bundleOf(fixture.store);
    expectRefused(verifyCodeSigningChain({ bundle: after, leafPem: burntLeaf.certificatePem, at: new Date(compromisedAt.getTime() + 1000) }), 'KEY_COMPROMISED', /compromised at/);
    expect(verifyCodeSigningChain({ bundle: after, leafPem: burntLeaf.certificatePem, at: new Date(compromisedAt.getTime() - 1000) }).ok).toBe(true);
  });

  it('a key-compromise revocation: void from the dated compromise when the bundle gives one, else whenever it signed', async () => {
    // As officers execute a compromise: the version `compromised` since T, its leaf revoked (keyCompromise) afterwards.
    const dated = await signingKey(fixture, 'dated');
    const datedLeaf = await fixture.ca.issueLeaf(dated.keyId);
    const compromisedAt = new Date(Date.now() - 60_000);
    await fixture.store.keys.updateState(dated.keyId, 'compromised', compromisedAt.toISOString());
    await fixture.ca.revoke(datedLeaf.serialNumber, 'keyCompromise');
    const bundle = await bundleOf(fixture.store);
    expect(verifyCodeSigningChain({ bundle, leafPem: datedLeaf.certificatePem, at: new Date(compromisedAt.getTime() - 1000) }).ok).toBe(true);
    expectRefused(verifyCodeSigningChain({ bundle, leafPem: datedLeaf.certificatePem, at: compromisedAt }), 'KEY_COMPROMISED', /compromised at/);
    expectRefused(verifyCodeSigningChain({ bundle, leafPem: datedLeaf.certificatePem, at: new Date() }), 'KEY_COMPROMISED', /compromised at/);

    // Revoked for key compromise with no dated compromise (`signet ca revoke`): nothing it signed holds.
    const undated = await signingKey(fixture, 'undated');
    const undatedLeaf = await fixture.ca.issueLeaf(undated.keyId);
    await fixture.ca.revoke(undatedLeaf.serialNumber, 'keyCompromise');
    const after = await bundleOf(fixture.store);
    expectRefused(verifyCodeSigningChain({ bundle: after, leafPem: undatedLeaf.certificatePem, at: new Date(Date.now() - 30_000) }), 'CERT_REVOKED', /keyCompromise/);
  });

  it('refuses malformed input with a code instead of throwing', async () => {
    const bundle = await bundleOf(fixture.store);
    for (const bad of [null, 'text', [], {}, { ...bundle, roots: 'x' }, { ...bundle, keys: [{ keyId: 1 }] }, { ...bundle, revocations: [null] }]) {
      const result = verifyCodeSigningChain({ bundle: bad, leafPem: goodLeaf, at: new Date() });
      expect(result).toMatchObject({ ok: false, code: 'BUNDLE_INVALID' });
    }
    for (const leafPem of ['', 'not a certificate', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', root.certificatePem.replace(/[A-Z]{8}/, 'AAAAAAAA')]) {
      const result = verifyCodeSigningChain({ bundle, leafPem, at: new Date() });
      expect(result.ok).toBe(false);
    }
    // A CA certificate is not a code-signing leaf.
    expectRefused(verifyCodeSigningChain({ bundle, leafPem: intermediate.certificatePem, at: new Date() }), 'CERT_WRONG_BASIC_CONSTRAINTS', /is a CA certificate/);
  });
});
