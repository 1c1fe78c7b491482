/**
 * The seams between the PKCS#11 adapter and the rest of Signet. Everything above the
 * signer depends on these interfaces only; `Pkcs11Hsm` (signer/pkcs11-hsm.ts) is the
 * one real implementation.
 */
import type { DigestAlgorithm, KeyAlgorithm } from './algorithms.js';

/**
 * Names one private/public key pair inside the token. `hsmKeyId` is the hex of the
 * objects' CKA_ID: stable across sessions, restarts and slot renumbering, unlike an
 * object handle, which is never exposed outside the adapter.
 */
export interface HsmKeyRef {
  readonly hsmKeyId: string;
  readonly algorithm: KeyAlgorithm;
}

export interface GeneratedKeyPair extends HsmKeyRef {
  /** CKA_LABEL given to both objects (human-readable, e.g. `signet:demo-release@1`). */
  readonly label: string;
  /** SubjectPublicKeyInfo, PEM. */
  readonly publicKeyPem: string;
}

/** What the token says about a private key; used to prove custody in tests and at start. */
export interface PrivateKeyAttributes {
  readonly sensitive: boolean;
  readonly extractable: boolean;
  readonly alwaysSensitive: boolean;
  readonly neverExtractable: boolean;
  readonly sign: boolean;
  readonly decrypt: boolean;
  readonly unwrap: boolean;
  readonly derive: boolean;
  readonly token: boolean;
  readonly private: boolean;
}

export interface DigestInput {
  readonly algorithm: DigestAlgorithm;
  readonly value: Buffer;
}

/**
 * Signs inside the HSM. Output encodings are fixed (DESIGN.md): DER `ECDSA-Sig-Value`
 * for ECDSA, the raw 64 bytes for Ed25519, the raw modulus-sized block for RSA-PSS
 * (MGF1 with the same hash, salt as long as the hash).
 */
export interface HsmSigner {
  /**
   * Signs a precomputed digest. ECDSA: CKM_ECDSA over the digest. RSA-PSS: CKM_RSA_PKCS_PSS
   * with the digest's hash. Ed25519: PureEdDSA over the digest bytes themselves.
   */
  signDigest(key: HsmKeyRef, digest: DigestInput): Promise<Buffer>;
  /**
   * Signs a whole message (for formats such as DSSE PAE). ECDSA and RSA-PSS hash the
   * message with `hash` (default sha256) and sign the digest; Ed25519 signs the message.
   */
  signMessage(key: HsmKeyRef, message: Buffer, hash?: DigestAlgorithm): Promise<Buffer>;
}

/** Key management in the token: generation and lookup. Never exports private material. */
export interface HsmKeyStore {
  generateKeyPair(algorithm: KeyAlgorithm, label: string): Promise<GeneratedKeyPair>;
  /** True when both the private and public objects with this CKA_ID exist. */
  hasKeyPair(key: HsmKeyRef): Promise<boolean>;
  publicKeyPem(key: HsmKeyRef): Promise<string>;
  privateKeyAttributes(key: HsmKeyRef): Promise<PrivateKeyAttributes>;
}

export interface HsmHealth {
  /** Resolves when the token answers (opens a session and reads token info). */
  ping(): Promise<void>;
}

/** What the token says about a secret (symmetric) key; proves custody of the sealing key. */
export interface SecretKeyAttributes {
  readonly sensitive: boolean;
  readonly extractable: boolean;
  readonly alwaysSensitive: boolean;
  readonly neverExtractable: boolean;
  readonly encrypt: boolean;
  readonly decrypt: boolean;
  readonly sign: boolean;
  readonly verify: boolean;
  readonly wrap: boolean;
  readonly unwrap: boolean;
  readonly derive: boolean;
  readonly token: boolean;
  readonly private: boolean;
}

/**
 * Seals small secrets (officers' TOTP seeds) with an AES key that never leaves the
 * HSM, so storage only ever holds ciphertext. `aad` names what the secret belongs to
 * (an officer): a sealed value moved to another record no longer unseals.
 * Implemented by signer/secret-sealing.ts over the adapter's session pool.
 */
export interface HsmSecretSealer {
  /** CKA_LABEL of the sealing key. */
  readonly keyLabel: string;
  /** A printable, versioned envelope (key id, IV, ciphertext and tag). */
  seal(plaintext: Uint8Array, aad: string): Promise<string>;
  /** The plaintext, or SEALED_SECRET_REJECTED if the envelope, its key or `aad` do not match. */
  unseal(sealed: string, aad: string): Promise<Buffer>;
  keyAttributes(): Promise<SecretKeyAttributes>;
}

export interface Hsm extends HsmSigner, HsmKeyStore, HsmHealth {
  /** Waits for in-flight operations, closes every session and logs out. */
  close(): Promise<void>;
}
