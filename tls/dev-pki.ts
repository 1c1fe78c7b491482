/**
 * File-based TLS certificates for development and tests: the TLS server CA and the CI
 * client CA (DESIGN.md: the TLS server CA, CI client CA, officer CA and code-signing
 * root are separate hierarchies). In production these come from the operator's own
 * PKI; the code-signing hierarchy lives in the HSM and is not made here.
 *
 * TLS keys are files, as in any TLS deployment; callers write them with mode 0600.
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

const crypto = webcrypto;
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface CertifiedKeyPair {
  readonly certificate: x509.X509Certificate;
  readonly keys: webcrypto.CryptoKeyPair;
}

export interface PemPair {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

const DAY_MS = 86_400_000;

function serialNumber(): string {
  // RFC 5280 §4.1.2.2: positive, at most 20 octets; 16 random bytes with the top bit clear.
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

function validity(days: number, now: Date): { notBefore: Date; notAfter: Date } {
  // Back-date by five minutes so clients with slightly slow clocks accept it at once.
  return { notBefore: new Date(now.getTime() - 5 * 60_000), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

export async function createCertificateAuthority(commonName: string, options: { days?: number; now?: Date } = {}): Promise<CertifiedKeyPair> {
  const keys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${commonName}, O=Signet`,
    ...validity(options.days ?? 3650, options.now ?? new Date()),
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certificate, keys };
}

export type LeafUsage = 'server' | 'client' | 'code-signing';

const EKU: Record<LeafUsage, string> = {
  server: x509.ExtendedKeyUsage.serverAuth,
  client: x509.ExtendedKeyUsage.clientAuth,
  'code-signing': x509.ExtendedKeyUsage.codeSigning,
};

export interface LeafOptions {
  readonly commonName: string;
  /** Extended key usages; none at all when empty. */
  readonly usages: readonly LeafUsage[];
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly days?: number;
  readonly now?: Date;
  /** Explicit window, for tests of expired and not-yet-valid certificates. */
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

export async function issueLeafCertificate(issuer: CertifiedKeyPair, options: LeafOptions): Promise<CertifiedKeyPair> {
  const keys = await crypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
  const window = validity(options.days ?? 825, options.now ?? new Date());
  const sans: x509.JsonGeneralName[] = [
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(issuer.certificate),
  ];
  if (options.usages.length > 0) extensions.push(new x509.ExtendedKeyUsageExtension(options.usages.map((u) => EKU[u]), false));
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans, false));
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${options.commonName}, O=Signet`,
    issuer: issuer.certificate.subject,
    notBefore: options.notBefore ?? window.notBefore,
    notAfter: options.notAfter ?? window.notAfter,
    signingKey: issuer.keys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: EC_P256,
    extensions,
  });
  return { certificate, keys };
}

export async function toPem(pair: CertifiedKeyPair): Promise<PemPair> {
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', pair.keys.privateKey);
  return {
    certificatePem: pair.certificate.toString('pem') + '\n',
    privateKeyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n',
  };
}

/** Loads a CA written by `toPem` (e.g. `tls/ci-client-ca.pem` of `signet init`) to issue more certificates. */
export async function loadCertificateAuthority(certificatePem: string, privateKeyPem: string): Promise<CertifiedKeyPair> {
  const certificate = new x509.X509Certificate(certificatePem);
  const privateKey = await crypto.subtle.importKey('pkcs8', new Uint8Array(x509.PemConverter.decodeFirst(privateKeyPem)), EC_P256, true, ['sign']);
  const publicKey = await crypto.subtle.importKey('spki', new Uint8Array(certificate.publicKey.rawData), EC_P256, true, ['verify']);
  return { certificate, keys: { privateKey, publicKey } };
}
