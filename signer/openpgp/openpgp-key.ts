/**
 * OpenPGP for HSM keys: the transferable public key of a signing key (public-key packet,
 * one user ID, a positive self-certification) and detached signatures over binary data,
 * both signed inside the HSM. Version 4 throughout, the newest version GnuPG 2.2 (Debian
 * 12) reads.
 *
 * Which keys (RFC 4880 §9.1):
 * - ecdsa-p256, ecdsa-p384: ECDSA, algorithm 19 (RFC 6637), signed with SHA-256 and
 *   SHA-384 respectively (RFC 6637 §12.2.1 pairs each curve with a hash of its size).
 * - ed25519: EdDSALegacy, algorithm 22 (draft-koch-eddsa-for-openpgp; RFC 9580 §5.5.5.5),
 *   with SHA-256. GnuPG 2.2 lacks the newer Ed25519 algorithm 27 of RFC 9580.
 * - rsa-pss-*: none. OpenPGP RSA signatures are PKCS#1 v1.5 (RFC 4880 §5.2.2) and these
 *   keys may only make PSS signatures in the HSM: FORMAT_UNSUPPORTED_FOR_KEY.
 *
 * Packet framing is written in packets.ts (why: see there); hashing is node:crypto's,
 * signing the HSM's, armor openpgp.js's. Every signature is checked against the key's
 * public key with node:crypto before it is framed, so a faulty HSM answer is never
 * published (fail closed).
 */
import { createHash, createPublicKey, verify, type JsonWebKey } from 'node:crypto';
import { ECDSASigValue } from '@peculiar/asn1-ecc';
import { AsnConvert } from '@peculiar/asn1-schema';
import { armor, enums } from 'openpgp';
import type { DigestAlgorithm, KeyAlgorithm } from '../algorithms.js';
import { HsmError } from '../errors.js';
import { OpenPgpError } from './errors.js';
import {
  CurveOid,
  HashAlgorithmId,
  KEY_FLAG_SIGN,
  PacketTag,
  PublicKeyAlgorithmId,
  SignatureType,
  Subpackets,
  keyHashPrefix,
  openPgpTime,
  packet,
  publicKeyBody,
  signatureBody,
  signatureHashedPart,
  signatureTrailer,
  userIdHashPrefix,
} from './packets.js';

export interface OpenPgpKeySource {
  readonly algorithm: KeyAlgorithm;
  /** SPKI PEM of the HSM key. */
  readonly publicKeyPem: string;
  /** The key's creation time: part of the v4 fingerprint (RFC 4880 §12.2), so it must be stored and never change. */
  readonly createdAt: Date;
  /** Signs a message in the HSM (HsmSigner.signMessage semantics, signer/types.ts): DER ECDSA-Sig-Value for ECDSA, raw 64 bytes for Ed25519. */
  readonly signMessage: (message: Buffer, hash: DigestAlgorithm) => Promise<Buffer>;
}

interface Profile {
  readonly kind: 'ecdsa' | 'eddsa';
  readonly algorithmId: number;
  readonly curveOid: Buffer;
  /** The JWK `crv` node:crypto reports for this key's SPKI. */
  readonly jwkCurve: 'P-256' | 'P-384' | 'Ed25519';
  /** Coordinate (ECDSA) or encoded point (EdDSA) length in bytes. */
  readonly fieldBytes: number;
  readonly hash: DigestAlgorithm;
}

function profileOf(algorithm: KeyAlgorithm): Profile | undefined {
  switch (algorithm) {
    case 'ecdsa-p256':
      return { kind: 'ecdsa', algorithmId: PublicKeyAlgorithmId.ecdsa, curveOid: CurveOid.p256, jwkCurve: 'P-256', fieldBytes: 32, hash: 'sha256' };
    case 'ecdsa-p384':
      return { kind: 'ecdsa', algorithmId: PublicKeyAlgorithmId.ecdsa, curveOid: CurveOid.p384, jwkCurve: 'P-384', fieldBytes: 48, hash: 'sha384' };
    case 'ed25519':
      return { kind: 'eddsa', algorithmId: PublicKeyAlgorithmId.eddsaLegacy, curveOid: CurveOid.ed25519, jwkCurve: 'Ed25519', fieldBytes: 32, hash: 'sha256' };
    case 'rsa-pss-3072':
    case 'rsa-pss-4096':
      return undefined;
  }
}

/** True when keys of this algorithm can be published and used in OpenPGP. */
export function supportsOpenPgp(algorithm: KeyAlgorithm): boolean {
  return typeof algorithm === 'string' && profileOf(algorithm) !== undefined;
}

function requireProfile(algorithm: KeyAlgorithm): Profile {
  const profile = typeof algorithm === 'string' ? profileOf(algorithm) : undefined;
  if (profile === undefined) {
    throw new OpenPgpError('FORMAT_UNSUPPORTED_FOR_KEY', `OpenPGP cannot represent ${algorithm} keys (OpenPGP RSA is PKCS#1 v1.5; these keys are PSS-only)`);
  }
  return profile;
}

interface PublicKeyMaterial {
  readonly profile: Profile;
  readonly createdSeconds: number;
  /** Body of the v4 public-key packet. */
  readonly body: Buffer;
  /** v4 fingerprint, 20 bytes. */
  readonly fingerprint: Buffer;
}

function keyInvalid(key: OpenPgpKeySource, detail: string, cause?: unknown): OpenPgpError {
  return new OpenPgpError('OPENPGP_KEY_INVALID', `the ${key.algorithm} key ${detail}`, cause === undefined ? undefined : { cause });
}

function base64UrlField(jwk: JsonWebKey, name: 'x' | 'y', length: number): Buffer | undefined {
  const value = jwk[name];
  if (typeof value !== 'string') return undefined;
  const bytes = Buffer.from(value, 'base64url');
  return bytes.length === length ? bytes : undefined;
}

/**
 * The public-key packet body and fingerprint of a key source. node:crypto parses the SPKI
 * (and rejects EC points off their curve); the JWK form gives the point's coordinates
 * with their full fixed length (RFC 7518 §6.2.1.2, RFC 8037 §2).
 */
function publicKeyMaterial(key: OpenPgpKeySource): PublicKeyMaterial {
  const profile = requireProfile(key.algorithm);
  if (!(key.createdAt instanceof Date) || Number.isNaN(key.createdAt.getTime())) throw keyInvalid(key, 'has no valid creation time');
  let createdSeconds: number;
  try {
    createdSeconds = openPgpTime(key.createdAt);
  } catch (error) {
    throw keyInvalid(key, 'has a creation time OpenPGP cannot store', error);
  }
  let jwk: JsonWebKey;
  try {
    jwk = createPublicKey({ key: key.publicKeyPem, format: 'pem' }).export({ format: 'jwk' });
  } catch (error) {
    throw keyInvalid(key, 'has an unreadable public key', error);
  }
  if (jwk.crv !== profile.jwkCurve) throw keyInvalid(key, `has a public key that is not on ${profile.jwkCurve}`);
  let point: Buffer;
  if (profile.kind === 'ecdsa') {
    const x = base64UrlField(jwk, 'x', profile.fieldBytes);
    const y = base64UrlField(jwk, 'y', profile.fieldBytes);
    if (jwk.kty !== 'EC' || x === undefined || y === undefined) throw keyInvalid(key, 'has a malformed public key');
    // Uncompressed SEC 1 point, RFC 6637 §6.
    point = Buffer.concat([Buffer.from([0x04]), x, y]);
  } else {
    const x = base64UrlField(jwk, 'x', profile.fieldBytes);
    if (jwk.kty !== 'OKP' || x === undefined) throw keyInvalid(key, 'has a malformed public key');
    // The native encoding behind the 0x40 prefix, draft-koch-eddsa-for-openpgp §3.
    point = Buffer.concat([Buffer.from([0x40]), x]);
  }
  const body = publicKeyBody({ algorithmId: profile.algorithmId, createdSeconds, curveOid: profile.curveOid, point });
  const fingerprint = createHash('sha1').update(keyHashPrefix(body)).digest();
  return { profile, createdSeconds, body, fingerprint };
}

/** The key's v4 fingerprint (RFC 4880 §12.2), 40 upper-case hex digits as GnuPG prints it. */
export function openPgpFingerprint(key: OpenPgpKeySource): string {
  return publicKeyMaterial(key).fingerprint.toString('hex').toUpperCase();
}

const MAX_USER_ID_BYTES = 2048;

/**
 * RFC 4880 §5.11 only asks for UTF-8; we also refuse what would garble a keyring listing
 * or a terminal (control characters) and what cannot round-trip (lone surrogates).
 */
function userIdBytes(userId: string): Buffer {
  const invalid = (detail: string): OpenPgpError => new OpenPgpError('OPENPGP_USER_ID_INVALID', `the OpenPGP user ID ${detail}`);
  if (typeof userId !== 'string' || userId.length === 0) throw invalid('is empty');
  for (let i = 0; i < userId.length; i += 1) {
    const unit = userId.charCodeAt(i);
    if (unit < 0x20 || (unit >= 0x7f && unit < 0xa0)) throw invalid('contains a control character');
  }
  const bytes = Buffer.from(userId, 'utf8');
  if (bytes.toString('utf8') !== userId) throw invalid('is not well-formed Unicode');
  if (bytes.length > MAX_USER_ID_BYTES) throw invalid(`is longer than ${MAX_USER_ID_BYTES} bytes`);
  return bytes;
}

function badHsmSignature(detail: string, cause?: unknown): HsmError {
  return new HsmError('HSM_SIGN_FAILED', `the HSM returned ${detail}`, cause === undefined ? undefined : { cause });
}

/** r and s of a DER ECDSA-Sig-Value (RFC 5480 §2.2.3), refusing anything but exact DER. */
function ecdsaValues(der: Buffer): [Buffer, Buffer] {
  let value: ECDSASigValue;
  try {
    value = AsnConvert.parse(der, ECDSASigValue);
  } catch (error) {
    throw badHsmSignature('an ECDSA signature that is not DER', error);
  }
  // asn1-schema accepts BER and trailing bytes; re-encoding proves the input was DER.
  if (!Buffer.from(AsnConvert.serialize(value)).equals(der)) throw badHsmSignature('an ECDSA signature that is not DER');
  return [Buffer.from(value.r), Buffer.from(value.s)];
}

/**
 * Signs the v4 signature hash input (RFC 4880 §5.2.4) in the HSM and returns the digest
 * (for the "left 16 bits" field) and the algorithm's signature values.
 *
 * ECDSA (RFC 6637 §7): the HSM hashes the input with the profile's hash and signs the
 * digest, exactly OpenPGP's ECDSA. Legacy EdDSA (draft-koch-eddsa-for-openpgp §6): the
 * signature is PureEdDSA over the *digest*, so the digest is the message given to the
 * HSM, whose Ed25519 signs what it is given.
 */
async function signInHsm(key: OpenPgpKeySource, profile: Profile, input: readonly Buffer[]): Promise<{ digest: Buffer; values: Buffer[] }> {
  const hash = createHash(profile.hash);
  for (const part of input) hash.update(part);
  const digest = hash.digest();
  if (profile.kind === 'ecdsa') {
    const message = Buffer.concat(input);
    const der = await key.signMessage(message, profile.hash);
    if (!Buffer.isBuffer(der)) throw badHsmSignature('no signature');
    const values = ecdsaValues(der);
    if (!verify(profile.hash, message, { key: key.publicKeyPem, dsaEncoding: 'der' }, der)) {
      throw badHsmSignature('an ECDSA signature that does not verify with the key');
    }
    return { digest, values };
  }
  const signature = await key.signMessage(digest, profile.hash);
  if (!Buffer.isBuffer(signature) || signature.length !== 64) throw badHsmSignature('an Ed25519 signature of unexpected length');
  if (!verify(null, digest, key.publicKeyPem, signature)) throw badHsmSignature('an Ed25519 signature that does not verify with the key');
  // R and S, the two halves of the RFC 8032 signature, each as an MPI.
  return { digest, values: [signature.subarray(0, 32), signature.subarray(32)] };
}

/**
 * One v4 signature packet. `prefix` is what the signature covers before its own hashed
 * part (RFC 4880 §5.2.4): the document for 0x00, key and user ID for certifications.
 */
async function signaturePacket(
  key: OpenPgpKeySource,
  material: PublicKeyMaterial,
  signatureType: number,
  createdSeconds: number,
  extraSubpackets: readonly Buffer[],
  prefix: readonly Buffer[],
): Promise<Buffer> {
  const hashedPart = signatureHashedPart({
    signatureType,
    publicKeyAlgorithmId: material.profile.algorithmId,
    hashAlgorithmId: HashAlgorithmId[material.profile.hash],
    // Issuer key ID and fingerprint are hashed too, so nobody can re-label the signature.
    hashedSubpackets: [
      Subpackets.creationTime(createdSeconds),
      ...extraSubpackets,
      Subpackets.issuerFingerprint(material.fingerprint),
      Subpackets.issuerKeyId(material.fingerprint),
    ],
  });
  const { digest, values } = await signInHsm(key, material.profile, [...prefix, hashedPart, signatureTrailer(hashedPart)]);
  return packet(PacketTag.signature, signatureBody(hashedPart, digest, values));
}

/**
 * The key as an armored transferable public key (RFC 4880 §11.1): public-key packet,
 * user ID packet, positive self-certification (0x13) made in the HSM with key flags
 * "sign" only (§5.2.3.21; the service never certifies other keys; a primary key certifies
 * its own user IDs regardless of flags).
 *
 * The self-certification is dated at the key's creation time, not now: verifiers
 * (openpgp.js among them) accept a signature only if the key was valid when it was made,
 * and a binding dated at publication would disown every signature made before it.
 */
export async function armoredPublicKey(key: OpenPgpKeySource, userId: string): Promise<string> {
  const material = publicKeyMaterial(key);
  const uid = userIdBytes(userId);
  const selfSignature = await signaturePacket(
    key,
    material,
    SignatureType.positiveCertification,
    material.createdSeconds,
    [Subpackets.keyFlags(KEY_FLAG_SIGN)],
    [keyHashPrefix(material.body), userIdHashPrefix(uid)],
  );
  const bytes = Buffer.concat([packet(PacketTag.publicKey, material.body), packet(PacketTag.userId, uid), selfSignature]);
  return armorBytes(enums.armor.publicKey, bytes);
}

/**
 * A detached signature of type 0x00 (binary document, RFC 4880 §5.2.1) over `data`, as
 * the packet (`binary`) and ASCII armor (`armored`).
 */
export async function detachedSignature(key: OpenPgpKeySource, data: Buffer): Promise<{ binary: Buffer; armored: string }> {
  const material = publicKeyMaterial(key);
  if (!Buffer.isBuffer(data)) throw new TypeError('the data to sign must be a Buffer');
  // A signature older than its key is refused by GnuPG ("key created in the future"):
  // with a clock behind the stored creation time, date the signature at the creation.
  const createdSeconds = Math.max(openPgpTime(new Date()), material.createdSeconds);
  const binary = await signaturePacket(key, material, SignatureType.binary, createdSeconds, [], [data]);
  return { binary, armored: armorBytes(enums.armor.signature, binary) };
}

/**
 * ASCII armor (RFC 4880 §6.2) by openpgp.js. The CRC-24 checksum line is emitted: it is
 * part of RFC 4880 armor, and GnuPG before 2.4.6 can fail to decode armor without it
 * when the base64 ends without padding (https://dev.gnupg.org/T7071).
 */
function armorBytes(type: enums.armor, bytes: Buffer): string {
  return armor(type, new Uint8Array(bytes), undefined, undefined, undefined, true);
}
