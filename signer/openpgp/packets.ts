/**
 * OpenPGP v4 packet framing (RFC 4880; RFC 6637 for ECDSA; draft-koch-eddsa-for-openpgp
 * for the legacy EdDSA form GnuPG 2.2 reads). Pure byte layout: no hashing, no signing,
 * no I/O. Hashing and signing happen in openpgp-key.ts with node:crypto and the HSM.
 *
 * Why by hand: openpgp.js (v6) builds these packets only while signing with a private
 * key it holds itself. Feeding it a signature made elsewhere needs members that are not
 * in its typed API (`signatureData`, `writeHashedSubPackets`, `toHash`, `params`), which
 * may change in any release without notice. The v4 layout, by contrast, is fixed by an
 * RFC and small; openpgp.js still does the armor (openpgp-key.ts) and, in the tests,
 * reads and verifies every packet written here, next to GnuPG.
 */

/** Packet tags, RFC 4880 §4.3. */
export const PacketTag = Object.freeze({ signature: 2, publicKey: 6, userId: 13 });

/** Public-key algorithm ids, RFC 4880 §9.1, RFC 6637 §5, draft-koch-eddsa-for-openpgp §5. */
export const PublicKeyAlgorithmId = Object.freeze({ ecdsa: 19, eddsaLegacy: 22 });

/** Hash algorithm ids, RFC 4880 §9.4. */
export const HashAlgorithmId = Object.freeze({ sha256: 8, sha384: 9, sha512: 10 });

/** Signature types, RFC 4880 §5.2.1. */
export const SignatureType = Object.freeze({ binary: 0x00, positiveCertification: 0x13 });

/** Signature subpacket types, RFC 4880 §5.2.3.1 and RFC 9580 §5.2.3.35 (issuer fingerprint). */
export const SubpacketType = Object.freeze({ creationTime: 2, issuerKeyId: 16, keyFlags: 27, issuerFingerprint: 33 });

/** Key flag "may be used to sign data", RFC 4880 §5.2.3.21. */
export const KEY_FLAG_SIGN = 0x02;

/**
 * Curve OIDs as they appear in key packets: the DER content octets without tag and
 * length (RFC 6637 §9, §11; draft-koch-eddsa-for-openpgp §4 for Ed25519).
 */
export const CurveOid = Object.freeze({
  /** 1.2.840.10045.3.1.7 */
  p256: Buffer.from('2a8648ce3d030107', 'hex'),
  /** 1.3.132.0.34 */
  p384: Buffer.from('2b81040022', 'hex'),
  /** 1.3.6.1.4.1.11591.15.1 */
  ed25519: Buffer.from('2b06010401da470f01', 'hex'),
});

const MAX_UINT32 = 0xffffffff;

function uint16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value);
  return out;
}

function uint32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

/**
 * A body length in the new format, RFC 4880 §4.2.2.1–3 (one, two or five octets). The
 * same encoding serves signature subpacket lengths (§5.2.3.1). Partial lengths are never
 * written: every body here is known in full.
 */
export function encodeLength(length: number): Buffer {
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_UINT32) throw new RangeError('OpenPGP length out of range');
  if (length < 192) return Buffer.from([length]);
  if (length < 8384) {
    const rest = length - 192;
    return Buffer.from([(rest >> 8) + 192, rest & 0xff]);
  }
  return Buffer.concat([Buffer.from([0xff]), uint32(length)]);
}

/** A packet with a new-format header (RFC 4880 §4.2: 0xC0 | tag, then the length). */
export function packet(tag: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xc0 | tag]), encodeLength(body.length), body]);
}

/**
 * A multiprecision integer, RFC 4880 §3.2: a two-octet count of significant bits, then
 * the big-endian value with no leading zero octets. Zero is refused: no field written
 * here may be zero (a curve point, an ECDSA r or s, an EdDSA R or S).
 */
export function mpi(value: Buffer): Buffer {
  let start = 0;
  while (start < value.length && value[start] === 0) start += 1;
  const digits = value.subarray(start);
  const first = digits[0];
  if (first === undefined) throw new RangeError('an OpenPGP MPI may not be zero here');
  const bits = (digits.length - 1) * 8 + (32 - Math.clz32(first));
  if (bits > 0xffff) throw new RangeError('OpenPGP MPI too long');
  return Buffer.concat([uint16(bits), digits]);
}

/** Seconds since the epoch as OpenPGP stores times (four octets, RFC 4880 §3.5). */
export function openPgpTime(date: Date): number {
  const seconds = Math.floor(date.getTime() / 1000);
  if (!Number.isSafeInteger(seconds) || seconds < 0 || seconds > MAX_UINT32) throw new RangeError('time not representable in OpenPGP');
  return seconds;
}

export interface EccPublicKey {
  readonly algorithmId: number;
  readonly createdSeconds: number;
  readonly curveOid: Buffer;
  /** The point as the MPI holds it: 04 || X || Y for ECDSA (RFC 6637 §6), 40 || A for legacy EdDSA (draft-koch §3). */
  readonly point: Buffer;
}

/**
 * The body of a v4 public-key packet with ECC key material, RFC 4880 §5.5.2 with the
 * algorithm-specific part of RFC 6637 §9 (and draft-koch-eddsa-for-openpgp §4, which
 * has the same shape): version, creation time, algorithm, OID length and OID, MPI(point).
 */
export function publicKeyBody(key: EccPublicKey): Buffer {
  if (key.curveOid.length === 0 || key.curveOid.length >= 0xff) throw new RangeError('bad curve OID');
  return Buffer.concat([
    Buffer.from([4]),
    uint32(key.createdSeconds),
    Buffer.from([key.algorithmId, key.curveOid.length]),
    key.curveOid,
    mpi(key.point),
  ]);
}

/**
 * How a key is fed to a hash for v4 fingerprints (RFC 4880 §12.2) and for key-bound
 * signatures (§5.2.4): 0x99, a two-octet length, the public-key packet body.
 */
export function keyHashPrefix(body: Buffer): Buffer {
  if (body.length > 0xffff) throw new RangeError('public key packet too long');
  return Buffer.concat([Buffer.from([0x99]), uint16(body.length), body]);
}

/** How a user ID is fed to a certification hash, RFC 4880 §5.2.4: 0xB4, a four-octet length, the UTF-8 octets. */
export function userIdHashPrefix(userId: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xb4]), uint32(userId.length), userId]);
}

/** One signature subpacket, RFC 4880 §5.2.3.1: length (of type and body), type, body. Never critical. */
export function subpacket(type: number, body: Buffer): Buffer {
  return Buffer.concat([encodeLength(body.length + 1), Buffer.from([type]), body]);
}

export const Subpackets = Object.freeze({
  creationTime: (seconds: number): Buffer => subpacket(SubpacketType.creationTime, uint32(seconds)),
  /** RFC 4880 §5.2.3.5: the low 64 bits of the v4 fingerprint (§12.2). */
  issuerKeyId: (fingerprint: Buffer): Buffer => subpacket(SubpacketType.issuerKeyId, fingerprint.subarray(fingerprint.length - 8)),
  /** RFC 9580 §5.2.3.35: key version, then the fingerprint. */
  issuerFingerprint: (fingerprint: Buffer): Buffer =>
    subpacket(SubpacketType.issuerFingerprint, Buffer.concat([Buffer.from([4]), fingerprint])),
  keyFlags: (flags: number): Buffer => subpacket(SubpacketType.keyFlags, Buffer.from([flags])),
});

export interface SignatureHeader {
  readonly signatureType: number;
  readonly publicKeyAlgorithmId: number;
  readonly hashAlgorithmId: number;
  readonly hashedSubpackets: readonly Buffer[];
}

/**
 * The hashed part of a v4 signature packet, RFC 4880 §5.2.3: version, signature type,
 * public-key algorithm, hash algorithm, two-octet length of the hashed subpackets, the
 * subpackets. It opens the packet and is also hashed (§5.2.4).
 */
export function signatureHashedPart(header: SignatureHeader): Buffer {
  const subpackets = Buffer.concat(header.hashedSubpackets);
  if (subpackets.length > 0xffff) throw new RangeError('hashed subpackets too long');
  return Buffer.concat([
    Buffer.from([4, header.signatureType, header.publicKeyAlgorithmId, header.hashAlgorithmId]),
    uint16(subpackets.length),
    subpackets,
  ]);
}

/** The v4 hash trailer, RFC 4880 §5.2.4: 0x04 0xFF and the four-octet length of the hashed part. */
export function signatureTrailer(hashedPart: Buffer): Buffer {
  return Buffer.concat([Buffer.from([4, 0xff]), uint32(hashedPart.length)]);
}

/**
 * The body of a v4 signature packet, RFC 4880 §5.2.3: the hashed part, an empty unhashed
 * subpacket area (everything a verifier needs is hashed), the left 16 bits of the signed
 * hash, then the algorithm's MPIs (r and s for ECDSA, RFC 6637 §7; R and S for legacy
 * EdDSA, draft-koch-eddsa-for-openpgp §6).
 */
export function signatureBody(hashedPart: Buffer, digest: Buffer, values: readonly Buffer[]): Buffer {
  if (digest.length < 2) throw new RangeError('digest too short');
  return Buffer.concat([hashedPart, uint16(0), digest.subarray(0, 2), ...values.map(mpi)]);
}
