/**
 * Certificate and CRL profiles of the code-signing hierarchy: pure functions from
 * names, keys and times to what @peculiar/x509 signs. No I/O and no randomness (the
 * caller passes serial numbers in), so every profile is testable as data.
 *
 *   root          CA:TRUE (critical), keyCertSign | cRLSign (critical), SKI
 *   intermediate  CA:TRUE pathlen 0 (critical), keyCertSign | cRLSign (critical),
 *                 EKU codeSigning, SKI, AKI = root's SKI
 *   leaf          CA:FALSE (critical), digitalSignature (critical), EKU codeSigning,
 *                 SKI, AKI = intermediate's SKI, URI SAN https://<log origin>/keys/<keyId>
 *                 (what Sigstore identity policies match), CRL distribution point
 *   CRL           v2, AKI, CRL number, one entry per revoked leaf with its reason
 *
 * References: RFC 5280 §4.2.1.1 (AKI), §4.2.1.2 (SKI, method 1), §4.2.1.3 (key usage),
 * §4.2.1.6 (SAN), §4.2.1.9 (basic constraints), §4.2.1.12 (EKU), §4.2.1.13 (CRL
 * distribution points), §5 (CRL profile).
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata';
import { createHash, type webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber, SubjectPublicKeyInfo } from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import type { KeyAlgorithm } from '../signer/algorithms.js';
import type { CaRole, RevocationReason } from '../store/store.js';
import { CaError } from './errors.js';

/** Clients with slightly slow clocks accept a new certificate at once. */
export const BACKDATE_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

/** What a generator needs besides the issuer's key: the unsigned content of a certificate. */
export interface CertificateTemplate {
  readonly serialNumber: string;
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** DER SubjectPublicKeyInfo of the certified key. */
  readonly publicKey: ArrayBuffer;
  readonly extensions: readonly x509.Extension[];
}

/** The issuing CA as a profile needs it. */
export interface IssuerInfo {
  readonly subject: string;
  /** Hex SubjectKeyIdentifier of the issuer's certificate. */
  readonly keyIdentifier: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface RevokedEntry {
  readonly serialNumber: string;
  readonly revokedAt: Date;
  readonly reason: RevocationReason;
}

export interface CrlTemplate {
  readonly issuer: string;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly entries: readonly x509.X509CrlEntryParams[];
  readonly extensions: readonly x509.Extension[];
}

/** The CA key algorithm: ECDSA P-384 for both levels (rare operations; strength over speed). */
export const CA_KEY_ALGORITHM: KeyAlgorithm = 'ecdsa-p384';

/** WebCrypto parameters @peculiar/x509 signs with, for an ECDSA CA key. */
export function ecdsaSigningParameters(algorithm: KeyAlgorithm): { readonly key: webcrypto.EcKeyAlgorithm; readonly signing: webcrypto.EcdsaParams } {
  switch (algorithm) {
    case 'ecdsa-p256':
      return { key: { name: 'ECDSA', namedCurve: 'P-256' }, signing: { name: 'ECDSA', hash: 'SHA-256' } };
    case 'ecdsa-p384':
      return { key: { name: 'ECDSA', namedCurve: 'P-384' }, signing: { name: 'ECDSA', hash: 'SHA-384' } };
    case 'ed25519':
    case 'rsa-pss-3072':
    case 'rsa-pss-4096':
      throw new CaError('CA_INVALID_INPUT', `CA keys are ECDSA P-256 or P-384, not ${algorithm}`);
  }
}

/** Whole seconds: X.509 times have no fraction, and the stored window must equal the certificate's. */
export function wholeSeconds(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

/**
 * Key identifier, method 1 of RFC 5280 §4.2.1.2: SHA-1 of the subjectPublicKey BIT
 * STRING's value. Lower-case hex.
 */
export function keyIdentifier(spkiDer: ArrayBuffer | Uint8Array): string {
  const spki = AsnConvert.parse(spkiDer, SubjectPublicKeyInfo);
  return createHash('sha1').update(Buffer.from(spki.subjectPublicKey)).digest('hex');
}

/** Subject of a CA: the generation keeps rotated CAs apart by name, not only by key identifier. */
export function caSubject(role: CaRole, generation: number, organization: string): string {
  const what = role === 'root' ? 'Root' : 'Intermediate';
  return `CN=${organization} Code Signing ${what} ${generation}, O=${organization}`;
}

export function leafSubject(keyId: string, organization: string): string {
  return `CN=${keyId}, OU=Release Signing, O=${organization}`;
}

/** The identity a leaf certifies (DESIGN.md: Sigstore identity policies match the SAN). */
export function leafUri(logOrigin: string, keyId: string): string {
  return `https://${logOrigin}/keys/${keyId}`;
}

/** Where the CRL of a CA is published (server/trust-routes.ts). */
export function crlUrl(publicUrl: string, caId: string): string {
  return `${publicUrl}/v1/ca/${caId}/crl`;
}

/** A CA's validity: from a little before now, `days` long, never past its issuer's end. */
export function caValidity(now: Date, days: number, issuer?: IssuerInfo): { notBefore: Date; notAfter: Date } {
  const notBefore = wholeSeconds(new Date(now.getTime() - BACKDATE_MS));
  let notAfter = wholeSeconds(new Date(now.getTime() + days * DAY_MS));
  if (issuer !== undefined && notAfter > issuer.notAfter) notAfter = issuer.notAfter;
  if (notAfter.getTime() - notBefore.getTime() < DAY_MS) {
    throw new CaError('CA_INVALID_INPUT', 'the issuing CA expires within a day: renew it first');
  }
  return { notBefore, notAfter };
}

/**
 * A leaf's validity: `days` from a little before now, inside its issuer's window (a
 * certificate outliving its issuer would fail every path validation after that).
 */
export function leafValidity(now: Date, days: number, issuer: IssuerInfo): { notBefore: Date; notAfter: Date } {
  let notBefore = wholeSeconds(new Date(now.getTime() - BACKDATE_MS));
  if (notBefore < issuer.notBefore) notBefore = issuer.notBefore;
  let notAfter = wholeSeconds(new Date(now.getTime() + days * DAY_MS));
  if (notAfter > issuer.notAfter) notAfter = issuer.notAfter;
  if (notAfter.getTime() <= now.getTime() + 60_000) {
    throw new CaError('CA_INVALID_INPUT', 'the intermediate CA expires too soon to issue a certificate: rotate it (signet ca init --new-intermediate)');
  }
  return { notBefore, notAfter };
}

export function rootProfile(input: { serialNumber: string; subject: string; publicKey: ArrayBuffer; notBefore: Date; notAfter: Date }): CertificateTemplate {
  return {
    serialNumber: input.serialNumber,
    subject: input.subject,
    issuer: input.subject,
    notBefore: input.notBefore,
    notAfter: input.notAfter,
    publicKey: input.publicKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      new x509.SubjectKeyIdentifierExtension(keyIdentifier(input.publicKey)),
    ],
  };
}

export function intermediateProfile(input: {
  serialNumber: string;
  subject: string;
  publicKey: ArrayBuffer;
  issuer: IssuerInfo;
  notBefore: Date;
  notAfter: Date;
}): CertificateTemplate {
  return {
    serialNumber: input.serialNumber,
    subject: input.subject,
    issuer: input.issuer.subject,
    notBefore: input.notBefore,
    notAfter: input.notAfter,
    publicKey: input.publicKey,
    extensions: [
      // pathlen 0: the intermediate certifies leaves only.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      // Constrains what this CA's leaves are for (as Fulcio's intermediate does).
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning], false),
      new x509.SubjectKeyIdentifierExtension(keyIdentifier(input.publicKey)),
      new x509.AuthorityKeyIdentifierExtension(input.issuer.keyIdentifier, false),
    ],
  };
}

export function leafProfile(input: {
  serialNumber: string;
  keyId: string;
  organization: string;
  logOrigin: string;
  crlUrl: string;
  publicKey: ArrayBuffer;
  issuer: IssuerInfo;
  notBefore: Date;
  notAfter: Date;
}): CertificateTemplate {
  return {
    serialNumber: input.serialNumber,
    subject: leafSubject(input.keyId, input.organization),
    issuer: input.issuer.subject,
    notBefore: input.notBefore,
    notAfter: input.notAfter,
    publicKey: input.publicKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.codeSigning], false),
      new x509.SubjectKeyIdentifierExtension(keyIdentifier(input.publicKey)),
      new x509.AuthorityKeyIdentifierExtension(input.issuer.keyIdentifier, false),
      // The subject is not empty, so the SAN is not critical (RFC 5280 §4.2.1.6).
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: leafUri(input.logOrigin, input.keyId) }], false),
      new x509.CRLDistributionPointsExtension([input.crlUrl], false),
    ],
  };
}

/** RFC 5280 §5.3.1 reason codes; `unspecified` is left out of the entry, as §5.3.1 recommends. */
const REASON_CODES: Readonly<Record<RevocationReason, x509.X509CrlReason | undefined>> = {
  unspecified: undefined,
  keyCompromise: x509.X509CrlReason.keyCompromise,
  affiliationChanged: x509.X509CrlReason.affiliationChanged,
  superseded: x509.X509CrlReason.superseded,
  cessationOfOperation: x509.X509CrlReason.cessationOfOperation,
  privilegeWithdrawn: x509.X509CrlReason.privilegeWithdrawn,
};

export function crlProfile(input: {
  issuer: IssuerInfo;
  crlNumber: number;
  thisUpdate: Date;
  nextUpdate: Date;
  revoked: readonly RevokedEntry[];
}): CrlTemplate {
  if (!Number.isSafeInteger(input.crlNumber) || input.crlNumber < 1) throw new CaError('CA_INVALID_INPUT', 'a CRL number is a positive integer');
  // Extension wraps the value in the extnValue OCTET STRING itself.
  const crlNumber = new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(input.crlNumber)));
  return {
    issuer: input.issuer.subject,
    thisUpdate: wholeSeconds(input.thisUpdate),
    nextUpdate: wholeSeconds(input.nextUpdate),
    entries: input.revoked.map((entry) => {
      const reason = REASON_CODES[entry.reason];
      return { serialNumber: entry.serialNumber, revocationDate: wholeSeconds(entry.revokedAt), ...(reason === undefined ? {} : { reason }) };
    }),
    // §5.2.1: the AKI is required in a CRL; §5.2.3: so is the CRL number.
    extensions: [new x509.AuthorityKeyIdentifierExtension(input.issuer.keyIdentifier, false), crlNumber],
  };
}
