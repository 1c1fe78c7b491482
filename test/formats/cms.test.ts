/**
 * Detached CMS SignedData (formats/cms.ts) checked by the real `openssl cms -verify`
 * (OpenSSL 3.0) against a root given only as -CAfile: the intermediate must come from
 * the SignedData itself. For every Signet key algorithm: accepted untouched, refused
 * with one changed content byte, refused with a signature over other attributes.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDetachedCms, prepareDetachedCms } from '../../formats/cms.js';
import type { FormatError } from '../../formats/errors.js';
import type { DigestAlgorithm, KeyAlgorithm } from '../../signer/algorithms.js';
import { createTestHierarchy, signMessage, type TestHierarchy } from './pki.js';

function opensslVerify(h: TestHierarchy, cms: Buffer, content: Buffer): { ok: boolean; stderr: string } {
  const cmsFile = join(h.dir, `sig-${randomBytes(4).toString('hex')}.p7s`);
  const contentFile = `${cmsFile}.data`;
  writeFileSync(cmsFile, cms);
  writeFileSync(contentFile, content);
  const result = spawnSync('openssl', ['cms', '-verify', '-binary', '-content', contentFile, '-inform', 'DER', '-in', cmsFile, '-CAfile', h.files.root, '-purpose', 'any', '-out', '/dev/null'], {
    encoding: 'utf8',
  });
  return { ok: result.status === 0, stderr: result.stderr };
}

function opensslPrint(cms: Buffer): string {
  return spawnSync('openssl', ['cms', '-cmsout', '-print', '-inform', 'DER'], { input: cms, encoding: 'utf8' }).stdout;
}

async function makeCms(h: TestHierarchy, content: Buffer, hash: DigestAlgorithm): Promise<Buffer> {
  return buildDetachedCms(
    {
      keyAlgorithm: h.algorithm,
      publicKeyPem: h.publicKeyPem,
      certificates: [h.leafPem, h.intermediatePem],
      contentDigest: { algorithm: hash, value: createHash(hash).update(content).digest() },
      signingTime: new Date(),
    },
    (toBeSigned, signingHash) => Promise.resolve(signMessage(h.algorithm, h.privateKey, toBeSigned, signingHash)),
  );
}

const CASES: readonly [KeyAlgorithm, DigestAlgorithm][] = [
  ['ecdsa-p256', 'sha256'],
  ['ecdsa-p256', 'sha512'],
  ['ecdsa-p384', 'sha384'],
  ['rsa-pss-3072', 'sha256'],
  ['rsa-pss-4096', 'sha512'],
];

describe('detached CMS, verified by openssl cms -verify', () => {
  for (const [algorithm, hash] of CASES) {
    it(`${algorithm} with ${hash}: accepted untouched, refused with a changed byte`, async () => {
      const h = await createTestHierarchy(algorithm);
      const content = randomBytes(4096);
      const cms = await makeCms(h, content, hash);
      const accepted = opensslVerify(h, cms, content);
      expect(accepted.stderr).toContain('Verification successful');
      expect(accepted.ok).toBe(true);

      const changed = Buffer.from(content);
      changed[100] = (changed[100] ?? 0) ^ 0x01;
      const refused = opensslVerify(h, cms, changed);
      expect(refused.ok).toBe(false);
      expect(refused.stderr).toMatch(/digest failure|content verify error/i);
    });
  }

  it('carries contentType, messageDigest and signingTime, the leaf and the intermediate, and no content', async () => {
    const h = await createTestHierarchy('ecdsa-p256');
    const content = Buffer.from('release manifest bytes\n');
    const printed = opensslPrint(await makeCms(h, content, 'sha256'));
    expect(printed).toContain('contentType: pkcs7-signedData');
    expect(printed).toMatch(/eContent: <ABSENT>/);
    for (const attribute of ['contentType', 'messageDigest', 'signingTime']) expect(printed).toContain(`object: ${attribute}`);
    expect(printed).toContain('Signet Test Code Signing Intermediate');
    expect(printed).toContain('CN=demo-release@1');
    expect(printed.match(/cert_info:/g)).toHaveLength(2);
  });

  it('RSA-PSS carries explicit RSASSA-PSS parameters: the hash, MGF1 with the hash, salt = hash length', async () => {
    const h = await createTestHierarchy('rsa-pss-3072');
    const printed = opensslPrint(await makeCms(h, Buffer.from('x'), 'sha256'));
    expect(printed).toContain('algorithm: rsassaPss');
    // openssl prints the parameters as an ASN.1 dump: [0] sha256, [1] mgf1(sha256), [2] INTEGER 32.
    const parameters = printed.slice(printed.indexOf('algorithm: rsassaPss'));
    expect(parameters).toMatch(/cont \[ 0 \][\s\S]*OBJECT\s+:sha256[\s\S]*cont \[ 1 \][\s\S]*OBJECT\s+:mgf1[\s\S]*OBJECT\s+:sha256[\s\S]*cont \[ 2 \][\s\S]*INTEGER\s+:20/);
  });

  it('is refused when the signature is not over these signed attributes', async () => {
    const h = await createTestHierarchy('ecdsa-p256');
    const content = Buffer.from('artifact');
    const prepared = prepareDetachedCms({
      keyAlgorithm: 'ecdsa-p256',
      publicKeyPem: h.publicKeyPem,
      certificates: [h.leafPem, h.intermediatePem],
      contentDigest: { algorithm: 'sha256', value: createHash('sha256').update(content).digest() },
      signingTime: new Date(),
    });
    const other = Buffer.from(prepared.toBeSigned);
    other[other.length - 1] = (other[other.length - 1] ?? 0) ^ 0x01;
    const cms = prepared.assemble(signMessage('ecdsa-p256', h.privateKey, other, 'sha256'));
    const refused = opensslVerify(h, cms, content);
    expect(refused.ok).toBe(false);
    expect(refused.stderr).toMatch(/CMS_SignerInfo_verify:verification failure/);
  });

  it('is refused by openssl against another root', async () => {
    const h = await createTestHierarchy('ecdsa-p256');
    const other = await createTestHierarchy('ecdsa-p256');
    const content = Buffer.from('artifact');
    const cms = await makeCms(h, content, 'sha256');
    expect(opensslVerify({ ...h, files: { ...h.files, root: other.files.root } }, cms, content).ok).toBe(false);
  });

  it('refuses Ed25519 keys, which OpenSSL 3.0 cannot verify in CMS', async () => {
    const h = await createTestHierarchy('ed25519');
    await expect(makeCms(h, Buffer.from('x'), 'sha512')).rejects.toMatchObject({ code: 'FORMAT_KEY_UNSUPPORTED' } satisfies Partial<FormatError>);
  });

  it('refuses a certificate that does not hold the signing key, and a digest of the wrong length', async () => {
    const h = await createTestHierarchy('ecdsa-p256');
    const other = await createTestHierarchy('ecdsa-p256');
    expect(() =>
      prepareDetachedCms({
        keyAlgorithm: 'ecdsa-p256',
        publicKeyPem: other.publicKeyPem,
        certificates: [h.leafPem],
        contentDigest: { algorithm: 'sha256', value: Buffer.alloc(32) },
        signingTime: new Date(),
      }),
    ).toThrow(expect.objectContaining({ code: 'FORMAT_CERTIFICATE_INVALID' }));
    expect(() =>
      prepareDetachedCms({
        keyAlgorithm: 'ecdsa-p256',
        publicKeyPem: h.publicKeyPem,
        certificates: [h.leafPem],
        contentDigest: { algorithm: 'sha384', value: Buffer.alloc(32) },
        signingTime: new Date(),
      }),
    ).toThrow(expect.objectContaining({ code: 'FORMAT_INPUT_INVALID' }));
    expect(() =>
      prepareDetachedCms({
        keyAlgorithm: 'ecdsa-p256',
        publicKeyPem: h.publicKeyPem,
        certificates: [],
        contentDigest: { algorithm: 'sha256', value: Buffer.alloc(32) },
        signingTime: new Date(),
      }),
    ).toThrow(expect.objectContaining({ code: 'FORMAT_INPUT_INVALID' }));
  });
});
