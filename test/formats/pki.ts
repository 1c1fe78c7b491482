/**
 * A self-made code-signing hierarchy for envelope tests: a P-384 root and intermediate
 * (made with @peculiar/x509) and a codeSigning leaf for a node:crypto key of any Signet
 * algorithm. The leaf key signs outside any HSM here: these tests are about envelope
 * assembly, and external verifiers check the result. `signMessage` mirrors the HSM's
 * HsmSigner.signMessage output encodings (DER ECDSA, raw RSA-PSS with salt = hash
 * length, PureEdDSA).
 */
import 'reflect-metadata';
import { constants, generateKeyPairSync, randomBytes, sign, webcrypto, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { DIGEST_LENGTHS, type DigestAlgorithm, type KeyAlgorithm } from '../../signer/algorithms.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC_P384 = { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' } as const;
const DAY = 86_400_000;

export interface TestHierarchy {
  readonly dir: string;
  readonly rootPem: string;
  readonly intermediatePem: string;
  readonly leafPem: string;
  /** Files in `dir`: root.pem, intermediate.pem, leaf.pem, pub.pem. */
  readonly files: { readonly root: string; readonly intermediate: string; readonly leaf: string; readonly publicKey: string };
  readonly algorithm: KeyAlgorithm;
  readonly privateKey: KeyObject;
  readonly publicKeyPem: string;
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

export function generateSigningKey(algorithm: KeyAlgorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (algorithm) {
    case 'ecdsa-p256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'ecdsa-p384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' });
    case 'ed25519':
      return generateKeyPairSync('ed25519');
    case 'rsa-pss-3072':
      return generateKeyPairSync('rsa', { modulusLength: 3072 });
    case 'rsa-pss-4096':
      return generateKeyPairSync('rsa', { modulusLength: 4096 });
  }
}

/** As HsmSigner.signMessage: hash with `hash` then sign (ECDSA, RSA-PSS), or PureEdDSA over the message. */
export function signMessage(algorithm: KeyAlgorithm, key: KeyObject, message: Buffer, hash: DigestAlgorithm = 'sha256'): Buffer {
  switch (algorithm) {
    case 'ecdsa-p256':
    case 'ecdsa-p384':
      return sign(hash, message, key);
    case 'ed25519':
      return sign(null, message, key);
    case 'rsa-pss-3072':
    case 'rsa-pss-4096':
      return sign(hash, message, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: DIGEST_LENGTHS[hash] });
  }
}

export interface HierarchyOptions {
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly commonName?: string;
}

export async function createTestHierarchy(algorithm: KeyAlgorithm, options: HierarchyOptions = {}): Promise<TestHierarchy> {
  const subtle = webcrypto.subtle;
  const notBefore = options.notBefore ?? new Date(Date.now() - DAY);
  const notAfter = options.notAfter ?? new Date(Date.now() + 365 * DAY);
  const rootKeys = await subtle.generateKey(EC_P384, true, ['sign', 'verify']);
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=Signet Test Code Signing Root, O=Signet Test',
    notBefore,
    notAfter,
    keys: rootKeys,
    signingAlgorithm: EC_P384,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey),
    ],
  });
  const intermediateKeys = await subtle.generateKey(EC_P384, true, ['sign', 'verify']);
  const intermediate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=Signet Test Code Signing Intermediate, O=Signet Test',
    issuer: root.subject,
    notBefore,
    notAfter,
    publicKey: intermediateKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: EC_P384,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(intermediateKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root),
    ],
  });
  const { privateKey, publicKey } = generateSigningKey(algorithm);
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${options.commonName ?? 'demo-release@1'}, O=Signet Test`,
    issuer: intermediate.subject,
    notBefore,
    notAfter,
    publicKey: new Uint8Array(spki),
    signingKey: intermediateKeys.privateKey,
    signingAlgorithm: EC_P384,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning], false),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'https://signet.test/keys/demo-release@1' }], false),
      await x509.AuthorityKeyIdentifierExtension.create(intermediate),
    ],
  });
  const dir = mkdtempSync(join(tmpdir(), 'signet-formats-'));
  const pem = (c: x509.X509Certificate): string => `${c.toString('pem')}\n`;
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const files = { root: join(dir, 'root.pem'), intermediate: join(dir, 'intermediate.pem'), leaf: join(dir, 'leaf.pem'), publicKey: join(dir, 'pub.pem') };
  writeFileSync(files.root, pem(root));
  writeFileSync(files.intermediate, pem(intermediate));
  writeFileSync(files.leaf, pem(leaf));
  writeFileSync(files.publicKey, publicKeyPem);
  return { dir, rootPem: pem(root), intermediatePem: pem(intermediate), leafPem: pem(leaf), files, algorithm, privateKey, publicKeyPem };
}
