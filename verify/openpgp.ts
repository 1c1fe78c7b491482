/**
 * `pgp` signatures: an OpenPGP v4 detached signature of type 0x00 over the manifest
 * bytes (RFC 4880 §5.2.1), checked by openpgp.js.
 *
 * The OpenPGP key is, in order of preference:
 * - the armored key the trust bundle's key entry carries (`pgpPublicKey`), read and
 *   used with openpgp.verify; its fingerprint must be the one of the certified key;
 * - else the v4 public-key packet built from the leaf certificate's public key and the
 *   key's creation time in the trust bundle (the same packet signer/openpgp publishes at
 *   /v1/keys/{keyId}/pgp, so the same fingerprint), against which openpgp.js checks the
 *   signature packet. Its self-certification, which needs the HSM, is not needed to
 *   check a signature: the certificate chain vouches for the key instead.
 * The result says which.
 */
import {
  createMessage,
  enums,
  PublicKeyPacket,
  readKey,
  readSignature,
  unarmor,
  verify as verifyOpenPgp,
  type LiteralDataPacket,
  type Signature,
  type SignaturePacket,
} from 'openpgp';
import { CurveOid, PublicKeyAlgorithmId, openPgpTime, publicKeyBody } from '../signer/openpgp/packets.js';
import type { TrustBundleKey } from './inputs.js';
import { refuse, type OpenPgpKeySource } from './result.js';
import type { SigningCertificate, SigningKey } from './signing-key.js';

const ARMOR_HEADER = '-----BEGIN PGP SIGNATURE-----';
/** SHA-256, SHA-384, SHA-512 (RFC 4880 §9.4): what signer/openpgp signs with. */
const ACCEPTED_HASHES: ReadonlySet<number> = new Set([enums.hash.sha256, enums.hash.sha384, enums.hash.sha512]);

export interface OpenPgpVerification {
  /** The binary signature packet (dearmored if it came armored): what the log records. */
  readonly binary: Buffer;
  readonly source: OpenPgpKeySource;
}

async function readDetached(signatureFile: Buffer): Promise<{ binary: Buffer; signature: Signature }> {
  const malformed = () => refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'the signature is not an OpenPGP detached signature');
  let binary = signatureFile;
  try {
    if (signatureFile.subarray(0, 64).toString('latin1').trimStart().startsWith(ARMOR_HEADER)) {
      // The armored input is a string, so openpgp.js returns the data as bytes, not a stream.
      const unarmored: { readonly data: unknown; readonly type: unknown } = await unarmor(signatureFile.toString('utf8'));
      if (unarmored.type !== enums.armor.signature || !(unarmored.data instanceof Uint8Array)) throw malformed();
      binary = Buffer.from(unarmored.data);
    }
    return { binary, signature: await readSignature({ binarySignature: new Uint8Array(binary) }) };
  } catch {
    throw malformed();
  }
}

/** The v4 public-key packet of the certified key (RFC 4880 §5.5.2, RFC 6637 §9, draft-koch-eddsa-for-openpgp §4). */
async function keyPacketOf(signer: SigningKey, createdAt: Date): Promise<PublicKeyPacket> {
  const jwk = signer.key.export({ format: 'jwk' });
  const coordinate = (value: string | undefined): Buffer => Buffer.from(value ?? '', 'base64url');
  let algorithmId: number;
  let curveOid: Buffer;
  let point: Buffer;
  switch (signer.algorithm) {
    case 'ecdsa-p256':
    case 'ecdsa-p384':
      algorithmId = PublicKeyAlgorithmId.ecdsa;
      curveOid = signer.algorithm === 'ecdsa-p256' ? CurveOid.p256 : CurveOid.p384;
      point = Buffer.concat([Buffer.from([0x04]), coordinate(jwk.x), coordinate(jwk.y)]);
      break;
    case 'ed25519':
      algorithmId = PublicKeyAlgorithmId.eddsaLegacy;
      curveOid = CurveOid.ed25519;
      point = Buffer.concat([Buffer.from([0x40]), coordinate(jwk.x)]);
      break;
    case 'rsa-pss-3072':
    case 'rsa-pss-4096':
      throw refuse('signature-invalid', 'FORMAT_KEY_UNSUPPORTED', `OpenPGP signatures are never made with ${signer.algorithm} keys (OpenPGP RSA is PKCS#1 v1.5)`);
  }
  const packet = new PublicKeyPacket();
  await packet.read(new Uint8Array(publicKeyBody({ algorithmId, createdSeconds: openPgpTime(createdAt), curveOid, point })));
  return packet;
}

function issuedBy(packet: SignaturePacket, key: PublicKeyPacket): boolean {
  const fingerprint = key.getFingerprintBytes();
  if (packet.issuerFingerprint !== null && fingerprint !== null && !Buffer.from(packet.issuerFingerprint).equals(Buffer.from(fingerprint))) return false;
  return packet.issuerKeyID.equals(key.getKeyID());
}

export async function verifyOpenPgpSignature(input: {
  readonly manifest: Buffer;
  readonly signatureFile: Buffer;
  readonly signer: SigningKey;
  readonly certificate: SigningCertificate;
  /** The trust bundle's entry of the certificate's key (its creation time is part of the OpenPGP key). */
  readonly bundleKey: TrustBundleKey | undefined;
  readonly now: Date;
}): Promise<OpenPgpVerification> {
  const { binary, signature } = await readDetached(input.signatureFile);
  const [packet, ...others] = signature.packets;
  if (packet === undefined || others.length > 0) throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'the OpenPGP signature must hold exactly one signature packet');
  if (packet.signatureType !== enums.signature.binary) throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'the OpenPGP signature is not a binary-document signature (type 0x00)');
  if (packet.hashAlgorithm === null || !ACCEPTED_HASHES.has(packet.hashAlgorithm)) {
    throw refuse('signature-invalid', 'SIGNATURE_MALFORMED', 'the OpenPGP signature uses a hash other than SHA-256, SHA-384 or SHA-512');
  }
  if (input.bundleKey === undefined) {
    throw refuse('untrusted-key', 'KEY_NOT_IN_TRUST_BUNDLE', "the signing certificate's key is not a key of the trust bundle");
  }
  const keyPacket = await keyPacketOf(input.signer, new Date(input.bundleKey.createdAt));
  if (!issuedBy(packet, keyPacket)) {
    // The signature names another key than the one the certificate holds.
    throw input.certificate.source === 'trust-bundle'
      ? refuse('untrusted-key', 'SIGNATURE_KEY_UNTRUSTED', `the OpenPGP signature was made by another key than ${input.bundleKey.keyId} of the trust bundle`)
      : refuse('signature-invalid', 'SIGNATURE_INVALID', "the OpenPGP signature was made by another key than the signing certificate's");
  }
  const message = await createMessage({ binary: new Uint8Array(input.manifest) });

  const armoredKey = input.bundleKey.pgpPublicKey;
  if (armoredKey !== undefined) {
    let key;
    try {
      key = await readKey({ armoredKey });
    } catch {
      throw refuse('input-invalid', 'TRUST_BUNDLE_INVALID', `the trust bundle's OpenPGP key of ${input.bundleKey.keyId} cannot be read`);
    }
    if (key.getFingerprint() !== keyPacket.getFingerprint()) {
      throw refuse('untrusted-key', 'OPENPGP_KEY_MISMATCH', `the trust bundle's OpenPGP key of ${input.bundleKey.keyId} is not the certified key`);
    }
    try {
      const result = await verifyOpenPgp({ message, signature, verificationKeys: key.toPublic(), expectSigned: true, format: 'binary', date: input.now });
      await Promise.all(result.signatures.map((s) => s.verified));
    } catch {
      throw refuse('signature-invalid', 'SIGNATURE_INVALID', 'the OpenPGP signature does not verify over the manifest');
    }
    return { binary, source: 'trust-bundle' };
  }

  const literal = message.packets.findPacket(enums.packet.literalData) as LiteralDataPacket | undefined;
  if (literal === undefined) throw new TypeError('createMessage made no literal data packet');
  try {
    await packet.verify(keyPacket, enums.signature.binary, literal, input.now, true);
  } catch {
    throw refuse('signature-invalid', 'SIGNATURE_INVALID', 'the OpenPGP signature does not verify over the manifest');
  }
  return { binary, source: 'leaf-certificate' };
}
