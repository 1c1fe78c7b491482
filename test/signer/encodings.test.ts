/**
 * The adapter's two parsers/encoders of token output, on published vectors and hostile
 * input: raw CKM_ECDSA output → DER ECDSA-Sig-Value, and CKA_EC_POINT → point.
 * No token needed.
 */
import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { ECDSASigValue } from '@peculiar/asn1-ecc';
import { AsnConvert } from '@peculiar/asn1-schema';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isHsmError, type HsmErrorCode } from '../../signer/errors.js';
import { decodeEcPoint, ecdsaSignatureToDer } from '../../signer/pkcs11-hsm.js';

function expectHsmError(run: () => unknown, code: HsmErrorCode): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(isHsmError(caught), `expected an HsmError ${code}, got ${String(caught)}`).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
}

// RFC 6979 §A.2.5: P-256 key, SHA-256, message "sample".
const RFC6979_P256 = {
  x: '60fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb6',
  y: '7903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299',
  r: 'efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716',
  s: 'f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8',
};

// RFC 8032 §7.1, TEST 1: Ed25519 public key.
const RFC8032_TEST1_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';

describe('ecdsaSignatureToDer', () => {
  it('encodes the RFC 6979 vector so that node:crypto verifies it', () => {
    const der = ecdsaSignatureToDer(Buffer.from(RFC6979_P256.r + RFC6979_P256.s, 'hex'), 32);
    // Both integers have the top bit set, so each gains a 00 byte: 30 46 02 21 00 r 02 21 00 s.
    expect(der.toString('hex')).toBe(`3046022100${RFC6979_P256.r}022100${RFC6979_P256.s}`);
    const key = createPublicKey({
      key: {
        kty: 'EC',
        crv: 'P-256',
        x: Buffer.from(RFC6979_P256.x, 'hex').toString('base64url'),
        y: Buffer.from(RFC6979_P256.y, 'hex').toString('base64url'),
      },
      format: 'jwk',
    });
    expect(verify('sha256', Buffer.from('sample'), { key, dsaEncoding: 'der' }, der)).toBe(true);
  });

  it('strips leading zero bytes and keeps values positive', () => {
    const r = Buffer.alloc(32);
    r[31] = 0x01; // r = 1
    const s = Buffer.alloc(32);
    s[2] = 0x80; // s = 0x80 << (29 * 8): top bit set after stripping two zero bytes
    // SEQUENCE(36) { INTEGER(1) 01, INTEGER(31) 00 80 00…00 }
    expect(ecdsaSignatureToDer(Buffer.concat([r, s]), 32).toString('hex')).toBe(`3024020101021f0080${'00'.repeat(29)}`);
  });

  it.each([
    ['prime256v1', 'sha256', 32, 400],
    ['secp384r1', 'sha384', 48, 50],
  ] as const)('matches node:crypto for random %s signatures (leading zeros included)', (curve, hash, fieldBytes, count) => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: curve });
    for (let i = 0; i < count; i++) {
      const message = Buffer.from(`message ${i}`);
      const raw = sign(hash, message, { key: privateKey, dsaEncoding: 'ieee-p1363' });
      const der = ecdsaSignatureToDer(raw, fieldBytes);
      expect(verify(hash, message, { key: publicKey, dsaEncoding: 'der' }, der)).toBe(true);
    }
  });

  // The encoder writes the DER itself; asn1-schema (which it used to call) is the reference.
  it('writes exactly what asn1-schema writes, for any r and s up to 66 bytes (P-521 size, long length form)', () => {
    const reference = (half: Buffer): ArrayBuffer => {
      let start = 0;
      while (start < half.length - 1 && half[start] === 0) start++;
      const trimmed = half.subarray(start);
      return new Uint8Array((trimmed[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed).buffer;
    };
    // Halves with runs of leading zero bytes and top bits set or not, never all zero.
    const half = (size: number) =>
      fc
        .tuple(fc.integer({ min: 0, max: size - 1 }), fc.uint8Array({ minLength: size, maxLength: size }))
        .map(([zeros, bytes]) => {
          const value = Buffer.from(bytes);
          value.fill(0, 0, zeros);
          if (value.every((byte) => byte === 0)) value[size - 1] = 1;
          return value;
        });
    let cases = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 66 }).chain((size) => fc.tuple(fc.constant(size), half(size), half(size))),
        ([size, r, s]) => {
          const expected = Buffer.from(AsnConvert.serialize(new ECDSASigValue({ r: reference(r), s: reference(s) })));
          expect(ecdsaSignatureToDer(Buffer.concat([r, s]), size).toString('hex')).toBe(expected.toString('hex'));
          cases += 1;
        },
      ),
      { numRuns: 2000 },
    );
    expect(cases).toBe(2000);
  });

  it('accepts the shorter r || s form PKCS#11 allows (equal halves below the field size)', () => {
    const r = Buffer.from(RFC6979_P256.r, 'hex').subarray(1);
    const s = Buffer.from(RFC6979_P256.s, 'hex').subarray(1);
    expect(ecdsaSignatureToDer(Buffer.concat([r, s]), 32).toString('hex')).toBe(
      `3044022000${r.toString('hex')}022000${s.toString('hex')}`,
    );
  });

  it('refuses output of the wrong length or with a zero half', () => {
    expectHsmError(() => ecdsaSignatureToDer(Buffer.alloc(63, 1), 32), 'HSM_SIGN_FAILED');
    expectHsmError(() => ecdsaSignatureToDer(Buffer.alloc(96, 1), 32), 'HSM_SIGN_FAILED');
    expectHsmError(() => ecdsaSignatureToDer(Buffer.alloc(0), 32), 'HSM_SIGN_FAILED');
    expectHsmError(() => ecdsaSignatureToDer(Buffer.concat([Buffer.alloc(32), Buffer.alloc(32, 1)]), 32), 'HSM_SIGN_FAILED');
    expectHsmError(() => ecdsaSignatureToDer(Buffer.concat([Buffer.alloc(32, 1), Buffer.alloc(32)]), 32), 'HSM_SIGN_FAILED');
  });
});

describe('decodeEcPoint', () => {
  const p256Point = Buffer.from(`04${RFC6979_P256.x}${RFC6979_P256.y}`, 'hex');
  const edPoint = Buffer.from(RFC8032_TEST1_PUBLIC, 'hex');

  it('unwraps a DER OCTET STRING as SoftHSM returns it', () => {
    expect(decodeEcPoint(Buffer.concat([Buffer.from([0x04, 0x41]), p256Point]), 'ecdsa-p256')).toEqual(p256Point);
    expect(decodeEcPoint(Buffer.concat([Buffer.from([0x04, 0x20]), edPoint]), 'ed25519')).toEqual(edPoint);
  });

  it.each([
    ['a bare uncompressed point (starts with 04 too)', p256Point],
    ['trailing bytes', Buffer.concat([Buffer.from([0x04, 0x41]), p256Point, Buffer.from([0x00])])],
    ['a BER long-form length', Buffer.concat([Buffer.from([0x04, 0x81, 0x41]), p256Point])],
    ['a truncated value', Buffer.concat([Buffer.from([0x04, 0x41]), p256Point.subarray(0, 40)])],
    ['a compressed point', Buffer.concat([Buffer.from([0x04, 0x21, 0x02]), p256Point.subarray(1, 33)])],
    ['a P-384-sized point', Buffer.concat([Buffer.from([0x04, 0x61, 0x04]), Buffer.alloc(96, 1)])],
    ['a BIT STRING', Buffer.concat([Buffer.from([0x03, 0x42, 0x00]), p256Point])],
    ['an empty value', Buffer.alloc(0)],
    ['garbage', Buffer.from('ffffffffffff', 'hex')],
  ])('refuses %s for P-256', (_name, value) => {
    expectHsmError(() => decodeEcPoint(value, 'ecdsa-p256'), 'HSM_UNSUPPORTED');
  });

  it.each([
    ['a bare 32-byte key', edPoint],
    ['a 31-byte key', Buffer.concat([Buffer.from([0x04, 0x1f]), edPoint.subarray(1)])],
    ['an uncompressed EC point', Buffer.concat([Buffer.from([0x04, 0x41]), p256Point])],
  ])('refuses %s for Ed25519', (_name, value) => {
    expectHsmError(() => decodeEcPoint(value, 'ed25519'), 'HSM_UNSUPPORTED');
  });
});
