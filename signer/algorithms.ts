/**
 * The key and digest algorithms Signet supports, with their fixed names (DESIGN.md,
 * "Fixed values"). Pure data: no PKCS#11 here.
 */
export const KEY_ALGORITHMS = ['ecdsa-p256', 'ecdsa-p384', 'ed25519', 'rsa-pss-3072', 'rsa-pss-4096'] as const;
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];

export const DIGEST_ALGORITHMS = ['sha256', 'sha384', 'sha512'] as const;
export type DigestAlgorithm = (typeof DIGEST_ALGORITHMS)[number];

/** Output length in bytes of each digest algorithm. */
export const DIGEST_LENGTHS: Readonly<Record<DigestAlgorithm, number>> = Object.freeze({
  sha256: 32,
  sha384: 48,
  sha512: 64,
});

export function isKeyAlgorithm(value: string): value is KeyAlgorithm {
  return (KEY_ALGORITHMS as readonly string[]).includes(value);
}

export function isDigestAlgorithm(value: string): value is DigestAlgorithm {
  return (DIGEST_ALGORITHMS as readonly string[]).includes(value);
}
