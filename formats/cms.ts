/**
 * Detached CMS SignedData (RFC 5652) around a signature made in the HSM, for
 * `openssl cms -verify`, `openssl smime` and other PKCS#7 verifiers.
 *
 *   ContentInfo { id-signedData, SignedData {
 *     version 1, digestAlgorithms { H },
 *     encapContentInfo { id-data }                    ← no eContent: detached (§5.2)
 *     certificates { leaf, chain… }                   ← DER SET OF, sorted
 *     signerInfos { SignerInfo {
 *       version 1, sid issuerAndSerialNumber(leaf), digestAlgorithm H,
 *       signedAttrs { contentType id-data, messageDigest H(content), signingTime }
 *       signatureAlgorithm, signature } } } }
 *
 * The signature covers the DER of the signed attributes encoded as a SET OF (tag 0x31,
 * not the [0] IMPLICIT tag they carry inside SignerInfo; RFC 5652 §5.4), hashed with H.
 * Attributes are sorted by their encodings, as DER requires of a SET OF (X.690 §11.6);
 * verifiers that re-encode them before checking would otherwise see other bytes.
 *
 * Signature algorithms: ECDSA with SHA-256/384/512 (RFC 5753/5758, DER signature value);
 * RSASSA-PSS with explicit parameters: hash H, MGF1 with H, salt = |H|, trailer 1
 * (RFC 4056, RFC 4055 §3.1). Ed25519 (RFC 8419) is refused: OpenSSL 3.0 cannot verify
 * it (formats/support.ts).
 *
 * Two steps so the HSM call stays outside: prepareDetachedCms returns the bytes to sign
 * and the hash to sign them with; its `assemble` wraps the HSM's signature.
 */
import {
  Attribute,
  CertificateChoices,
  CertificateSet,
  CMSVersion,
  ContentInfo,
  DigestAlgorithmIdentifier,
  EncapsulatedContentInfo,
  id_contentType,
  id_data,
  id_messageDigest,
  id_signedData,
  id_signingTime,
  IssuerAndSerialNumber,
  SignedData,
  SignerIdentifier,
  SignatureAlgorithmIdentifier,
  SignerInfo,
  SigningTime,
} from '@peculiar/asn1-cms';
import { id_mgf1, id_RSASSA_PSS, RsaSaPssParams, sha256 as sha256Parameters, sha384 as sha384Parameters, sha512 as sha512Parameters } from '@peculiar/asn1-rsa';
import { AsnArray, AsnConvert, AsnObjectIdentifierConverter, AsnType, AsnTypeTypes, OctetString } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate } from '@peculiar/asn1-x509';
import { DIGEST_LENGTHS, type DigestAlgorithm, type KeyAlgorithm } from '../signer/algorithms.js';
import { assertCertificateHoldsKey, parseCertificate, type CertificateInput } from './certificates.js';
import { FormatError } from './errors.js';
import { assertEnvelopeSupport } from './support.js';

/** NIST hash OIDs (RFC 5754 §2: parameters absent in digestAlgorithm). */
const DIGEST_OIDS: Readonly<Record<DigestAlgorithm, string>> = {
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
};
/** ecdsa-with-SHA256/384/512 (RFC 5758 §3.2), no parameters. */
const ECDSA_OIDS: Readonly<Record<DigestAlgorithm, string>> = {
  sha256: '1.2.840.10045.4.3.2',
  sha384: '1.2.840.10045.4.3.3',
  sha512: '1.2.840.10045.4.3.4',
};
/** RFC 4055 hash identifiers as used inside RSASSA-PSS-params (with NULL parameters, as RFC 4055 §2.1 lists them). */
const PSS_HASHES = { sha256: sha256Parameters, sha384: sha384Parameters, sha512: sha512Parameters } as const;

/** The signed attributes as a DER SET OF Attribute: what the signature covers. */
class SignedAttributesSet extends AsnArray<Attribute> {}
AsnType({ type: AsnTypeTypes.Set, itemType: Attribute })(SignedAttributesSet);

export interface DetachedCmsInput {
  readonly keyAlgorithm: KeyAlgorithm;
  /** The signing key (PEM SPKI); the leaf certificate must hold it. */
  readonly publicKeyPem: string;
  /** Leaf first, then the chain (intermediates, and the root if wanted); PEM or DER each. */
  readonly certificates: readonly CertificateInput[];
  /** The digest of the detached content; its algorithm is the CMS digest algorithm. */
  readonly contentDigest: { readonly algorithm: DigestAlgorithm; readonly value: Buffer };
  readonly signingTime: Date;
}

export interface PreparedCms {
  /** DER of the signed attributes (SET OF): the bytes the HSM signs. */
  readonly toBeSigned: Buffer;
  /** The `hash` for hsm.signMessage (the CMS digest algorithm). */
  readonly signingHash: DigestAlgorithm;
  /** Wraps the HSM's signature (DER for ECDSA, raw for RSA-PSS) into the DER ContentInfo. */
  assemble(signature: Buffer): Buffer;
}

function digestAlgorithmIdentifier(algorithm: DigestAlgorithm): DigestAlgorithmIdentifier {
  return new DigestAlgorithmIdentifier({ algorithm: DIGEST_OIDS[algorithm] });
}

function signatureAlgorithmIdentifier(keyAlgorithm: KeyAlgorithm, hash: DigestAlgorithm): SignatureAlgorithmIdentifier {
  switch (keyAlgorithm) {
    case 'ecdsa-p256':
    case 'ecdsa-p384':
      return new SignatureAlgorithmIdentifier({ algorithm: ECDSA_OIDS[hash] });
    case 'rsa-pss-3072':
    case 'rsa-pss-4096': {
      const hashAlgorithm = PSS_HASHES[hash];
      const params = new RsaSaPssParams({
        hashAlgorithm,
        maskGenAlgorithm: new AlgorithmIdentifier({ algorithm: id_mgf1, parameters: AsnConvert.serialize(hashAlgorithm) }),
        saltLength: DIGEST_LENGTHS[hash],
      });
      return new SignatureAlgorithmIdentifier({ algorithm: id_RSASSA_PSS, parameters: AsnConvert.serialize(params) });
    }
    case 'ed25519':
      throw new FormatError('FORMAT_KEY_UNSUPPORTED', 'CMS signatures are not made with Ed25519 keys');
  }
}

/** DER of one certificate, checked to survive a parse/serialize round trip unchanged. */
function certificateChoice(der: Buffer, what: string): { choice: CertificateChoices; parsed: Certificate } {
  let parsed: Certificate;
  try {
    parsed = AsnConvert.parse(der, Certificate);
  } catch (error) {
    throw new FormatError('FORMAT_CERTIFICATE_INVALID', `the ${what} is not a DER X.509 certificate`, { cause: error });
  }
  // The certificate is re-encoded inside the SignedData: refuse one whose encoding would
  // change (non-DER input), since its signature would no longer verify.
  if (!Buffer.from(AsnConvert.serialize(parsed)).equals(der)) {
    throw new FormatError('FORMAT_CERTIFICATE_INVALID', `the ${what} is not DER-encoded`);
  }
  return { choice: new CertificateChoices({ certificate: parsed }), parsed };
}

function sortedByEncoding<T>(items: readonly T[]): T[] {
  return items
    .map((item) => ({ item, der: Buffer.from(AsnConvert.serialize(item)) }))
    .sort((a, b) => Buffer.compare(a.der, b.der))
    .map((entry) => entry.item);
}

export function prepareDetachedCms(input: DetachedCmsInput): PreparedCms {
  const hash = input.contentDigest.algorithm;
  assertEnvelopeSupport({ format: 'cms', keyAlgorithm: input.keyAlgorithm, digestAlgorithm: hash });
  if (input.contentDigest.value.length !== DIGEST_LENGTHS[hash]) {
    throw new FormatError('FORMAT_INPUT_INVALID', `a ${hash} digest is ${DIGEST_LENGTHS[hash]} bytes`);
  }
  if (Number.isNaN(input.signingTime.getTime())) throw new FormatError('FORMAT_INPUT_INVALID', 'the signing time is not a date');
  const [leafInput, ...chainInput] = input.certificates;
  if (leafInput === undefined) throw new FormatError('FORMAT_INPUT_INVALID', 'a CMS signature needs the signing certificate');
  const leafX509 = parseCertificate(leafInput, 'signing certificate');
  assertCertificateHoldsKey(leafX509, input.publicKeyPem);
  const leaf = certificateChoice(leafX509.raw, 'signing certificate');
  const chain = chainInput.map((c, i) => certificateChoice(parseCertificate(c, `chain certificate ${i + 1}`).raw, `chain certificate ${i + 1}`).choice);

  const attributes = sortedByEncoding([
    new Attribute({ attrType: id_contentType, attrValues: [AsnConvert.serialize(AsnObjectIdentifierConverter.toASN(id_data))] }),
    new Attribute({ attrType: id_messageDigest, attrValues: [AsnConvert.serialize(new OctetString(input.contentDigest.value))] }),
    new Attribute({ attrType: id_signingTime, attrValues: [AsnConvert.serialize(new SigningTime(input.signingTime))] }),
  ]);
  const toBeSigned = Buffer.from(AsnConvert.serialize(new SignedAttributesSet(attributes)));
  const digestAlgorithm = digestAlgorithmIdentifier(hash);
  const signatureAlgorithm = signatureAlgorithmIdentifier(input.keyAlgorithm, hash);
  const sid = new SignerIdentifier({
    issuerAndSerialNumber: new IssuerAndSerialNumber({ issuer: leaf.parsed.tbsCertificate.issuer, serialNumber: leaf.parsed.tbsCertificate.serialNumber }),
  });
  const certificates = new CertificateSet(sortedByEncoding([leaf.choice, ...chain]));

  return {
    toBeSigned,
    signingHash: hash,
    assemble(signature: Buffer): Buffer {
      if (signature.length === 0) throw new FormatError('FORMAT_INPUT_INVALID', 'the signature is empty');
      const signerInfo = new SignerInfo({
        version: CMSVersion.v1,
        sid,
        digestAlgorithm,
        signedAttrs: attributes,
        signatureAlgorithm,
        signature: new OctetString(signature),
      });
      // Version 1: issuerAndSerialNumber signer, id-data content, X.509 certificates only (§5.1).
      const signedData = new SignedData({
        version: CMSVersion.v1,
        encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_data }),
        certificates,
      });
      signedData.digestAlgorithms.push(digestAlgorithm);
      signedData.signerInfos.push(signerInfo);
      return Buffer.from(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signedData) })));
    },
  };
}

/** prepareDetachedCms + one signing call (the HSM, in the service). */
export async function buildDetachedCms(input: DetachedCmsInput, sign: (toBeSigned: Buffer, hash: DigestAlgorithm) => Promise<Buffer>): Promise<Buffer> {
  const prepared = prepareDetachedCms(input);
  return prepared.assemble(await sign(prepared.toBeSigned, prepared.signingHash));
}
