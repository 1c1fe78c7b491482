/**
 * `cms` signatures: a detached CMS SignedData (RFC 5652) over the manifest, as
 * formats/cms.ts assembles it. Checked here, with @peculiar/asn1-cms for the structure
 * and node:crypto for the signature:
 *
 * - ContentInfo is id-signedData; the content is detached (id-data, no eContent, §5.2);
 * - exactly one SignerInfo, with signed attributes holding exactly one contentType
 *   (id-data) and one messageDigest (§11.1, §11.2), the latter equal to the manifest's
 *   digest under the SignerInfo's digest algorithm (SHA-256/384/512);
 * - the signer's certificate is found in the certificate set by its sid
 *   (issuerAndSerialNumber, or subjectKeyIdentifier);
 * - the signature covers the DER of the signed attributes as a SET OF (§5.4). They are
 *   re-encoded with @peculiar/asn1-schema (which keeps their order and their values'
 *   bytes) and the result, under the [0] IMPLICIT tag, must be found in the received
 *   SignedData: a signer that did not encode them in DER is refused rather than
 *   judged on bytes it did not send; ECDSA with SHA-256/384/512 (RFC 5753/5758) or RSASSA-PSS whose
 *   parameters are hash H, MGF1 with H and a salt as long as H (RFC 4055 §3.1,
 *   RFC 4056), as DESIGN.md fixes them.
 */
import {
  Attribute,
  ContentInfo,
  id_contentType,
  id_data,
  id_messageDigest,
  id_signedData,
  MessageDigest,
  SignedData,
  type SignerInfo,
} from '@peculiar/asn1-cms';
import { id_mgf1, id_RSASSA_PSS, RsaSaPssParams } from '@peculiar/asn1-rsa';
import { AsnArray, AsnConvert, AsnObjectIdentifierConverter, AsnType, AsnTypeTypes } from '@peculiar/asn1-schema';
import { AlgorithmIdentifier, Certificate, id_ce_subjectKeyIdentifier, SubjectKeyIdentifier } from '@peculiar/asn1-x509';
import { createHash } from 'node:crypto';
import { DIGEST_LENGTHS, type DigestAlgorithm } from '../signer/algorithms.js';
import { refuse, VerificationRefusal } from './result.js';
import { pemOfDer, signingKeyOf, verifyMessageSignature, type SigningKey } from './signing-key.js';

const DIGEST_OIDS: Readonly<Record<string, DigestAlgorithm>> = {
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};
const ECDSA_OIDS: Readonly<Record<string, DigestAlgorithm>> = {
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};
const ID_DATA_DER = Buffer.from(AsnConvert.serialize(AsnObjectIdentifierConverter.toASN(id_data)));
/** SignedAttributes as the SET OF Attribute the signature covers. */
class SignedAttributesSet extends AsnArray<Attribute> {}
AsnType({ type: AsnTypeTypes.Set, itemType: Attribute })(SignedAttributesSet);

const PEM = /^-----BEGIN (?:CMS|PKCS7)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (?:CMS|PKCS7)-----\s*$/;

export interface CmsVerification {
  readonly certificatePem: string;
  /** The other certificates of the set (the chain the signer sent). */
  readonly intermediatesPem: readonly string[];
  readonly signer: SigningKey;
  /** The DER ContentInfo: what the log records. */
  readonly der: Buffer;
  /** The DER SET OF signed attributes: what the signature covers. */
  readonly signedAttributes: Buffer;
  readonly digestAlgorithm: DigestAlgorithm;
}

const malformed = (detail: string) => refuse('signature-invalid', 'SIGNATURE_MALFORMED', `the CMS signature ${detail}`);

function parseSignedData(der: Buffer): SignedData {
  try {
    const info = AsnConvert.parse(der, ContentInfo);
    if (info.contentType !== id_signedData) throw malformed('is not a SignedData');
    return AsnConvert.parse(info.content, SignedData);
  } catch (error) {
    if (error instanceof VerificationRefusal) throw error;
    throw malformed('is not DER CMS SignedData');
  }
}

/** The single value of the one attribute of this type; refused if absent or repeated. */
function singleAttributeValue(signerInfo: SignerInfo, type: string, name: string): Buffer {
  const attributes = (signerInfo.signedAttrs ?? []).filter((a) => a.attrType === type);
  const [attribute, ...others] = attributes;
  const [value, ...moreValues] = attribute?.attrValues ?? [];
  if (attribute === undefined || others.length > 0 || value === undefined || moreValues.length > 0) {
    throw malformed(`must have exactly one ${name} signed attribute with one value`);
  }
  return Buffer.from(value);
}

function sameBytes(a: ArrayBuffer | Uint8Array, b: ArrayBuffer | Uint8Array): boolean {
  return Buffer.from(a instanceof ArrayBuffer ? new Uint8Array(a) : a).equals(Buffer.from(b instanceof ArrayBuffer ? new Uint8Array(b) : b));
}

function signerCertificate(signedData: SignedData, signerInfo: SignerInfo): { signer: Certificate; others: Certificate[] } {
  const set = signedData.certificates;
  const certificates = set === undefined ? [] : Array.from(set).flatMap((choice) => (choice.certificate === undefined ? [] : [choice.certificate]));
  const { issuerAndSerialNumber, subjectKeyIdentifier } = signerInfo.sid;
  const matches = (certificate: Certificate): boolean => {
    const tbs = certificate.tbsCertificate;
    if (issuerAndSerialNumber !== undefined) {
      return sameBytes(tbs.serialNumber, issuerAndSerialNumber.serialNumber) && sameBytes(AsnConvert.serialize(tbs.issuer), AsnConvert.serialize(issuerAndSerialNumber.issuer));
    }
    if (subjectKeyIdentifier !== undefined) {
      const extension = tbs.extensions?.find((e) => e.extnID === id_ce_subjectKeyIdentifier);
      if (extension === undefined) return false;
      return sameBytes(AsnConvert.parse(extension.extnValue, SubjectKeyIdentifier).buffer, subjectKeyIdentifier.buffer);
    }
    return false;
  };
  const signer = certificates.find(matches);
  if (signer === undefined) throw malformed("does not carry the signer's certificate");
  return { signer, others: certificates.filter((c) => c !== signer) };
}

/** The hash of the signature algorithm, checked against DESIGN.md's encodings for the key. */
function signatureHash(signerInfo: SignerInfo, signer: SigningKey): DigestAlgorithm {
  const { algorithm, parameters } = signerInfo.signatureAlgorithm;
  const ecdsaHash = ECDSA_OIDS[algorithm];
  if (ecdsaHash !== undefined) {
    if (signer.algorithm !== 'ecdsa-p256' && signer.algorithm !== 'ecdsa-p384') throw malformed('names ECDSA for a key that is not ECDSA');
    return ecdsaHash;
  }
  if (algorithm === id_RSASSA_PSS) {
    if (signer.algorithm !== 'rsa-pss-3072' && signer.algorithm !== 'rsa-pss-4096') throw malformed('names RSASSA-PSS for a key that is not RSA');
    if (parameters === null || parameters === undefined) throw malformed('has RSASSA-PSS without parameters');
    let params: RsaSaPssParams;
    let mgfHash: AlgorithmIdentifier;
    try {
      params = AsnConvert.parse(parameters, RsaSaPssParams);
      if (params.maskGenAlgorithm.algorithm !== id_mgf1 || params.maskGenAlgorithm.parameters === null || params.maskGenAlgorithm.parameters === undefined) {
        throw malformed('has RSASSA-PSS with a mask generation other than MGF1');
      }
      mgfHash = AsnConvert.parse(params.maskGenAlgorithm.parameters, AlgorithmIdentifier);
    } catch (error) {
      if (error instanceof VerificationRefusal) throw error;
      throw malformed('has unreadable RSASSA-PSS parameters');
    }
    const hash = DIGEST_OIDS[params.hashAlgorithm.algorithm];
    if (hash === undefined || DIGEST_OIDS[mgfHash.algorithm] !== hash || params.saltLength !== DIGEST_LENGTHS[hash] || params.trailerField !== 1) {
      throw malformed('has RSASSA-PSS parameters other than hash H, MGF1 with H and a salt as long as H');
    }
    return hash;
  }
  throw malformed('uses a signature algorithm Signet does not make (ECDSA or RSASSA-PSS)');
}

function certificatePem(certificate: Certificate): string {
  return pemOfDer(Buffer.from(AsnConvert.serialize(certificate)));
}

/**
 * Verifies a detached CMS signature over the manifest. Parsing is lazy in places (a
 * certificate's times and names are converted when re-encoded), so anything the ASN.1
 * library throws on this untrusted input is a malformed signature, never a crash.
 */
export function verifyCmsSignature(manifest: Buffer, signatureFile: Buffer): CmsVerification {
  try {
    return verifyCms(manifest, signatureFile);
  } catch (error) {
    if (error instanceof VerificationRefusal) throw error;
    throw malformed('cannot be read');
  }
}

function verifyCms(manifest: Buffer, signatureFile: Buffer): CmsVerification {
  const pem = PEM.exec(signatureFile.toString('latin1'));
  const der = pem?.[1] === undefined ? signatureFile : Buffer.from(pem[1].replace(/\s+/g, ''), 'base64');
  const signedData = parseSignedData(der);
  if (signedData.encapContentInfo.eContentType !== id_data || signedData.encapContentInfo.eContent !== undefined) {
    throw malformed('is not a detached signature over data (id-data without eContent)');
  }
  const [signerInfo, ...otherSigners] = signedData.signerInfos;
  if (signerInfo === undefined || otherSigners.length > 0) throw malformed('must have exactly one SignerInfo');
  const attributes = signerInfo.signedAttrs;
  if (attributes === undefined || attributes.length === 0) throw malformed('has no signed attributes');
  // RFC 5652 §5.4: the DER SET OF; under the [0] IMPLICIT tag it must be what was received.
  const toBeSigned = Buffer.from(AsnConvert.serialize(new SignedAttributesSet(attributes)));
  if (!der.includes(Buffer.concat([Buffer.from([0xa0]), toBeSigned.subarray(1)]))) throw malformed('has signed attributes that are not DER-encoded');

  const digestAlgorithm = DIGEST_OIDS[signerInfo.digestAlgorithm.algorithm];
  if (digestAlgorithm === undefined) throw malformed('uses a digest algorithm other than SHA-256, SHA-384 or SHA-512');
  if (!singleAttributeValue(signerInfo, id_contentType, 'contentType').equals(ID_DATA_DER)) throw malformed('signs a content type other than id-data');
  let messageDigest: Buffer;
  try {
    messageDigest = Buffer.from(AsnConvert.parse(singleAttributeValue(signerInfo, id_messageDigest, 'messageDigest'), MessageDigest).buffer);
  } catch (error) {
    if (error instanceof VerificationRefusal) throw error;
    throw malformed('has an unreadable messageDigest attribute');
  }
  if (!messageDigest.equals(createHash(digestAlgorithm).update(manifest).digest())) {
    throw refuse('signature-invalid', 'MANIFEST_MISMATCH', `the CMS signature's messageDigest is not the ${digestAlgorithm} of the manifest`);
  }

  const { signer: signerCert, others } = signerCertificate(signedData, signerInfo);
  const leafPem = certificatePem(signerCert);
  const signer = signingKeyOf(leafPem);
  const hash = signatureHash(signerInfo, signer);
  if (!verifyMessageSignature(signer, hash, toBeSigned, Buffer.from(signerInfo.signature.buffer))) {
    throw refuse('signature-invalid', 'SIGNATURE_INVALID', "the CMS signature does not verify with the signer certificate's key");
  }
  return { certificatePem: leafPem, intermediatesPem: others.map(certificatePem), signer, der, digestAlgorithm, signedAttributes: toBeSigned };
}
