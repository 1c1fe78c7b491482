/**
 * `Hsm` (signer/types.ts) over a PKCS#11 token: signing, key generation and public key
 * export, with every private key kept inside the token.
 *
 * Layers: pkcs11-module.ts (load/initialise once, find the slot, login bookkeeping) →
 * session-pool.ts (sessions, recovery, retry) and sign-workers.ts + sign-worker.mjs
 * (signing on worker threads, each with a session of its own) → this file (mechanisms,
 * key lookup, encodings). pkcs11js errors are translated into `HsmError` before leaving it.
 *
 * Signing runs on worker threads because C_SignInit is synchronous and costly (SoftHSM
 * decrypts the key object there): on the event loop it starved the HTTP service. Input
 * checks, the choice of mechanism and the output encoding stay here, on the caller's
 * thread; everything else (key generation, attribute reads, ping) uses the session pool.
 *
 * Output encodings (types.ts): ECDSA as DER ECDSA-Sig-Value (RFC 5480 §2.2.3 / X9.62),
 * Ed25519 as the raw 64 bytes (RFC 8032 §5.1.6), RSA-PSS as the modulus-sized block
 * (RFC 8017 §8.1) with MGF1 over the same hash and a salt as long as the hash.
 */
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { endianness } from 'node:os';
import { ECDSASigValue } from '@peculiar/asn1-ecc';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import type * as Pkcs11Js from 'pkcs11js';
import { DIGEST_LENGTHS, isDigestAlgorithm, isKeyAlgorithm, type DigestAlgorithm, type KeyAlgorithm } from './algorithms.js';
import { HsmError, hsmErrorFrom, isHsmError, type HsmErrorCode } from './errors.js';
import {
  buildKeyPairTemplate,
  CKM_EDDSA,
  assertValidKeyLabel,
  keyObjectSearchTemplate,
  keySpec,
  newKeyId,
  type KeySpec,
} from './key-templates.js';
import {
  findTokenSlot,
  leaseTokenLogin,
  loadPkcs11Module,
  pkcs11js,
  type Pkcs11,
  type Pkcs11Handle,
  type TokenLocation,
} from './pkcs11-module.js';
import { SessionPool, type HsmLogger, type PoolSession } from './session-pool.js';
import { SignWorkers, type KeyDescriptor, type SignFailure } from './sign-workers.js';
import type {
  DigestInput,
  GeneratedKeyPair,
  Hsm,
  HsmKeyRef,
  PrivateKeyAttributes,
} from './types.js';

export type { HsmLogger } from './session-pool.js';

export interface OpenPkcs11HsmOptions {
  /** Absolute path of the PKCS#11 library. */
  readonly modulePath: string;
  readonly tokenLabel: string;
  /** Disambiguates tokens sharing a label. */
  readonly tokenSerial?: string;
  /** User PIN. Kept in memory to log in again after a session loss. */
  readonly pin: string;
  /** Sessions in the pool, 1–64 (default 4). */
  readonly poolSize?: number;
  /** How long an operation may wait for a free session (default 30 s). */
  readonly acquireTimeoutMs?: number;
  /** How many operations may wait for a session (default 10 000). */
  readonly maxWaiting?: number;
  /**
   * Worker threads that sign, each with a session of its own, 1–16 (default 2: one per
   * core of the target machine). Signing jobs wait for a free worker with the same
   * `acquireTimeoutMs` and `maxWaiting` limits as operations waiting for a session.
   */
  readonly signWorkers?: number;
  readonly logger?: HsmLogger;
}

const DEFAULT_POOL_SIZE = 4;
const MAX_POOL_SIZE = 64;
const DEFAULT_ACQUIRE_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_WAITING = 10_000;
const DEFAULT_SIGN_WORKERS = 2;
const MAX_SIGN_WORKERS = 16;

/** CK_TOKEN_INFO flags (v2.40 §3.2) not exported by pkcs11js. */
const CKF_USER_PIN_FINAL_TRY = 0x0002_0000;
const CKF_USER_PIN_LOCKED = 0x0004_0000;
const CKF_TOKEN_INITIALIZED = 0x0000_0400;

/**
 * Opens the token and logs in. Fails with one `HsmError` naming the first problem:
 * HSM_PIN_MISSING, HSM_MODULE_NOT_FOUND, HSM_UNAVAILABLE (module not loadable),
 * HSM_TOKEN_NOT_FOUND / HSM_TOKEN_AMBIGUOUS, HSM_PIN_LOCKED or HSM_PIN_INCORRECT.
 * Bad option types or ranges are programming errors and throw TypeError.
 */
export async function openPkcs11Hsm(options: OpenPkcs11HsmOptions): Promise<Hsm> {
  // Opening the pool is synchronous PKCS#11 work; an async function turns a throw into a rejection.
  const { hsm, signers } = openSync(options);
  try {
    await signers.ready;
  } catch (error) {
    await hsm.close();
    throw error;
  }
  return hsm;
}

function openSync(options: OpenPkcs11HsmOptions): { hsm: Hsm; signers: SignWorkers } {
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE;
  const acquireTimeoutMs = options.acquireTimeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS;
  const maxWaiting = options.maxWaiting ?? DEFAULT_MAX_WAITING;
  const signWorkers = options.signWorkers ?? DEFAULT_SIGN_WORKERS;
  if (!Number.isInteger(poolSize) || poolSize < 1 || poolSize > MAX_POOL_SIZE) {
    throw new TypeError(`poolSize must be an integer from 1 to ${MAX_POOL_SIZE}`);
  }
  if (!Number.isInteger(signWorkers) || signWorkers < 1 || signWorkers > MAX_SIGN_WORKERS) {
    throw new TypeError(`signWorkers must be an integer from 1 to ${MAX_SIGN_WORKERS}`);
  }
  if (!Number.isInteger(acquireTimeoutMs) || acquireTimeoutMs < 1) {
    throw new TypeError('acquireTimeoutMs must be a positive integer');
  }
  if (!Number.isInteger(maxWaiting) || maxWaiting < 0) throw new TypeError('maxWaiting must be a non-negative integer');
  if (typeof options.pin !== 'string' || options.pin === '') {
    throw new HsmError('HSM_PIN_MISSING', `no PIN was given for token "${options.tokenLabel}"`);
  }

  const module = loadPkcs11Module(options.modulePath);
  const location = findTokenSlot(module, options.tokenLabel, options.tokenSerial);
  if ((location.flags & CKF_TOKEN_INITIALIZED) === 0) {
    throw new HsmError('HSM_TOKEN_NOT_FOUND', `token "${location.label}" is not initialised`);
  }
  if ((location.flags & CKF_USER_PIN_LOCKED) !== 0) {
    throw new HsmError('HSM_PIN_LOCKED', `the user PIN of token "${location.label}" is locked`);
  }
  if ((location.flags & CKF_USER_PIN_FINAL_TRY) !== 0) {
    options.logger?.warn({ tokenLabel: location.label }, 'the next wrong PIN locks this token');
  }

  const loginLease = leaseTokenLogin(module, location, options.pin);
  let pool: SessionPool;
  try {
    pool = SessionPool.open({
      module,
      slot: location.slot,
      pin: options.pin,
      tokenLabel: location.label,
      loginLease,
      size: poolSize,
      readWrite: true, // Key generation creates token objects (v2.40 §5.6.1, CKF_RW_SESSION).
      acquireTimeoutMs,
      maxWaiting,
      logger: options.logger,
    });
  } catch (error) {
    loginLease.release();
    throw error;
  }
  // Started after the pool has logged in: the workers find the application logged in.
  const signers = new SignWorkers({
    module,
    modulePath: module.libPath,
    tokenLabel: location.label,
    tokenSerial: location.serial,
    pin: options.pin,
    count: signWorkers,
    acquireTimeoutMs,
    maxWaiting,
    logger: options.logger,
  });
  options.logger?.info(
    { tokenLabel: location.label, serial: location.serial, sessions: poolSize, signWorkers },
    'HSM token opened',
  );
  const hsm = new Pkcs11Hsm(module, location, pool, signers);
  internals.set(hsm, { module, location, pool, signers });
  return { hsm, signers };
}

interface ResolvedKeyRef {
  readonly hsmKeyId: string;
  readonly id: Buffer;
  readonly algorithm: KeyAlgorithm;
  readonly spec: KeySpec;
}

interface CachedObject {
  readonly generation: number;
  readonly algorithm: KeyAlgorithm;
  readonly handle: Pkcs11Handle;
  /** Private keys: bytes of a raw signature from C_Sign (the most, for ECDSA). */
  readonly signatureLength: number;
}

const HEX_KEY_ID = /^(?:[0-9a-f]{2}){1,64}$/;

const MAX_CACHED_DESCRIPTORS = 1024;

/**
 * The `Hsm` implementation. Built by `openPkcs11Hsm` only; object handles it caches are
 * tagged with the pool generation they were found in and never used across generations.
 */
class Pkcs11Hsm implements Hsm {
  readonly #module: Pkcs11;
  readonly #location: TokenLocation;
  readonly #pool: SessionPool;
  readonly #signers: SignWorkers;
  readonly #privateKeys = new Map<string, CachedObject>();
  readonly #publicKeys = new Map<string, CachedObject>();
  /** What the workers need to find and check each key, built once per (id, algorithm). */
  readonly #descriptors = new Map<string, KeyDescriptor>();
  #closing: Promise<void> | undefined;

  constructor(module: Pkcs11, location: TokenLocation, pool: SessionPool, signers: SignWorkers) {
    this.#module = module;
    this.#location = location;
    this.#pool = pool;
    this.#signers = signers;
  }

  async signDigest(key: HsmKeyRef, digest: DigestInput): Promise<Buffer> {
    const ref = resolveKeyRef(key);
    const hash = checkDigest(digest);
    return this.#sign(ref, hash, digest.value, null);
  }

  async signMessage(key: HsmKeyRef, message: Buffer, hash: DigestAlgorithm = 'sha256'): Promise<Buffer> {
    const ref = resolveKeyRef(key);
    if (!isDigestAlgorithm(hash)) throw new HsmError('HSM_INVALID_INPUT', 'unknown hash algorithm');
    if (!Buffer.isBuffer(message)) throw new HsmError('HSM_INVALID_INPUT', 'the message must be a Buffer');
    // PureEdDSA signs the message itself (RFC 8032 §5.1.6); ECDSA and RSA-PSS sign its
    // digest (SoftHSM has no CKM_ECDSA_SHA256, and hashing before the token keeps large
    // messages off it). The worker hashes: a large message costs this thread two copies
    // (ours, and the one posted to the worker), not a hash.
    return this.#sign(ref, hash, message, ref.spec.kind === 'eddsa' ? null : hash);
  }

  async generateKeyPair(algorithm: KeyAlgorithm, label: string): Promise<GeneratedKeyPair> {
    if (typeof algorithm !== 'string' || !isKeyAlgorithm(algorithm)) {
      throw new HsmError('HSM_INVALID_INPUT', 'unknown key algorithm');
    }
    assertValidKeyLabel(label);
    const spec = keySpec(algorithm);
    this.#assertOpen();
    try {
      return await this.#pool.run('generating a key pair', async (session) => {
        // A fresh CKA_ID per attempt: if a first attempt created objects before its
        // session died, a retry must not create a second pair under the same id.
        const id = newKeyId();
        const template = buildKeyPairTemplate(algorithm, id, label);
        const pair = await this.#module.C_GenerateKeyPairAsync(
          session.handle,
          template.mechanism,
          template.publicKey,
          template.privateKey,
        );
        try {
          this.#assertCustody(session, pair.privateKey);
          const publicKeyPem = exportPublicKeyPem(this.#module, session, pair.publicKey, spec);
          return { hsmKeyId: id.toString('hex'), algorithm, label, publicKeyPem };
        } catch (error) {
          // Leave no half-checked key behind: it could be picked up later by its id.
          for (const handle of [pair.privateKey, pair.publicKey]) {
            try {
              this.#module.C_DestroyObject(session.handle, handle);
            } catch {
              // Best effort; the error below is what matters.
            }
          }
          throw error;
        }
      });
    } catch (error) {
      throw hsmErrorFrom(error, 'HSM_KEYGEN_FAILED', `generating an ${algorithm} key pair`);
    }
  }

  async hasKeyPair(key: HsmKeyRef): Promise<boolean> {
    const ref = resolveKeyRef(key);
    return this.#withSession(`looking up key ${ref.hsmKeyId}`, 'HSM_UNAVAILABLE', (session) => {
      try {
        this.#privateKey(session, ref);
        this.#publicKey(session, ref);
        return true;
      } catch (error) {
        if (isHsmError(error, 'HSM_KEY_NOT_FOUND')) return false;
        throw error;
      }
    });
  }

  async publicKeyPem(key: HsmKeyRef): Promise<string> {
    const ref = resolveKeyRef(key);
    return this.#withSession(`reading public key ${ref.hsmKeyId}`, 'HSM_UNAVAILABLE', (session) =>
      exportPublicKeyPem(this.#module, session, this.#publicKey(session, ref).handle, ref.spec),
    );
  }

  async privateKeyAttributes(key: HsmKeyRef): Promise<PrivateKeyAttributes> {
    const ref = resolveKeyRef(key);
    return this.#withSession(`reading attributes of key ${ref.hsmKeyId}`, 'HSM_UNAVAILABLE', (session) => {
      const read = readBooleans(this.#module, session, this.#privateKey(session, ref).handle, [
        pkcs11js.CKA_SENSITIVE,
        pkcs11js.CKA_EXTRACTABLE,
        pkcs11js.CKA_ALWAYS_SENSITIVE,
        pkcs11js.CKA_NEVER_EXTRACTABLE,
        pkcs11js.CKA_SIGN,
        pkcs11js.CKA_DECRYPT,
        pkcs11js.CKA_UNWRAP,
        pkcs11js.CKA_DERIVE,
        pkcs11js.CKA_TOKEN,
        pkcs11js.CKA_PRIVATE,
      ]);
      return {
        sensitive: read(pkcs11js.CKA_SENSITIVE),
        extractable: read(pkcs11js.CKA_EXTRACTABLE),
        alwaysSensitive: read(pkcs11js.CKA_ALWAYS_SENSITIVE),
        neverExtractable: read(pkcs11js.CKA_NEVER_EXTRACTABLE),
        sign: read(pkcs11js.CKA_SIGN),
        decrypt: read(pkcs11js.CKA_DECRYPT),
        unwrap: read(pkcs11js.CKA_UNWRAP),
        derive: read(pkcs11js.CKA_DERIVE),
        token: read(pkcs11js.CKA_TOKEN),
        private: read(pkcs11js.CKA_PRIVATE),
      };
    });
  }

  async ping(): Promise<void> {
    await this.#withSession('checking the token', 'HSM_UNAVAILABLE', (session) => {
      this.#module.C_GetTokenInfo(this.#location.slot);
      this.#pool.assertLoggedIn(session);
    });
  }

  /**
   * Waits for signatures in flight or queued, stops the signing workers (they close
   * their sessions), then closes the pool, which logs out: in that order, so that no
   * worker finds itself logged out and logs in again.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.#signers.close();
      } finally {
        await this.#pool.close();
        this.#privateKeys.clear();
        this.#publicKeys.clear();
        this.#descriptors.clear();
      }
    })();
    return this.#closing;
  }

  async #sign(ref: ResolvedKeyRef, hash: DigestAlgorithm, data: Buffer, prehash: DigestAlgorithm | null): Promise<Buffer> {
    const what = `signing with key ${ref.hsmKeyId}`;
    const key = this.#descriptor(ref);
    let raw: Buffer;
    try {
      const outcome = await this.#signers.run({
        key,
        mechanism: signMechanism(ref.spec, hash),
        prehash,
        // Our own copy, of exactly the input's bytes (a Buffer may be a view into a
        // shared 8 KiB pool, which posting would copy whole): the caller may modify its
        // buffer while the job waits, and the copy is posted again if a worker dies.
        data: new Uint8Array(data),
      });
      if (!outcome.ok) throw signFailure(outcome, ref, what);
      raw = outcome.signature;
      if (ref.spec.kind === 'ecdsa') return ecdsaSignatureToDer(raw, ref.spec.fieldBytes);
    } catch (error) {
      throw hsmErrorFrom(error, 'HSM_SIGN_FAILED', what);
    }
    if (raw.length !== key.signatureLength) {
      throw new HsmError('HSM_SIGN_FAILED', 'the token returned a signature of unexpected length');
    }
    return raw;
  }

  /** The worker's view of a key reference; see `KeyDescriptor`. */
  #descriptor(ref: ResolvedKeyRef): KeyDescriptor {
    const cacheKey = `${ref.hsmKeyId}/${ref.algorithm}`;
    const cached = this.#descriptors.get(cacheKey);
    if (cached !== undefined) return cached;
    const { spec } = ref;
    // Posting copies whole ArrayBuffers: give every byte array one of its own.
    const descriptor: KeyDescriptor =
      spec.kind === 'rsa-pss'
        ? {
            cacheKey,
            id: new Uint8Array(ref.id),
            keyType: spec.keyType,
            ecParams: [],
            modulusBits: spec.modulusBits,
            signatureLength: spec.modulusBits / 8,
          }
        : {
            cacheKey,
            id: new Uint8Array(ref.id),
            keyType: spec.keyType,
            ecParams: spec.acceptedEcParams.map((params) => new Uint8Array(params)),
            modulusBits: 0,
            signatureLength: 2 * spec.fieldBytes,
          };
    // Bounded: callers name a handful of keys, but an id is caller input.
    if (this.#descriptors.size >= MAX_CACHED_DESCRIPTORS) this.#descriptors.clear();
    this.#descriptors.set(cacheKey, descriptor);
    return descriptor;
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) throw new HsmError('HSM_POOL_CLOSED', 'the HSM adapter is closed');
  }

  async #withSession<T>(what: string, fallback: HsmErrorCode, body: (session: PoolSession) => T): Promise<T> {
    this.#assertOpen();
    try {
      return await this.#pool.run(what, (session) => Promise.resolve(body(session)));
    } catch (error) {
      throw hsmErrorFrom(error, fallback, what);
    }
  }

  /** The private key object of `ref`, checked against its algorithm and cached per generation. */
  #privateKey(session: PoolSession, ref: ResolvedKeyRef): CachedObject {
    const cached = this.#privateKeys.get(ref.hsmKeyId);
    if (cached?.generation === session.generation && cached.algorithm === ref.algorithm) return cached;
    const handle = this.#findKeyObject(session, ref, 'private');
    const signatureLength = this.#checkKeyMatches(session, handle, ref);
    const entry = { generation: session.generation, algorithm: ref.algorithm, handle, signatureLength };
    this.#privateKeys.set(ref.hsmKeyId, entry);
    return entry;
  }

  #publicKey(session: PoolSession, ref: ResolvedKeyRef): CachedObject {
    const cached = this.#publicKeys.get(ref.hsmKeyId);
    if (cached?.generation === session.generation && cached.algorithm === ref.algorithm) return cached;
    const handle = this.#findKeyObject(session, ref, 'public');
    this.#checkKeyMatches(session, handle, ref);
    const entry = { generation: session.generation, algorithm: ref.algorithm, handle, signatureLength: 0 };
    this.#publicKeys.set(ref.hsmKeyId, entry);
    return entry;
  }

  /** C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal (v2.40 §5.7.7–5.7.9). */
  #findKeyObject(session: PoolSession, ref: ResolvedKeyRef, objectClass: 'private' | 'public'): Pkcs11Handle {
    this.#module.C_FindObjectsInit(session.handle, keyObjectSearchTemplate(ref.id, objectClass));
    let found: Pkcs11Handle[];
    try {
      found = this.#module.C_FindObjects(session.handle, 2);
    } finally {
      // Always end the search: an active find operation blocks the next one.
      this.#module.C_FindObjectsFinal(session.handle);
    }
    const [handle, other] = found;
    if (handle === undefined) {
      // Private objects are invisible, not an error, once the application is logged
      // out (v2.40 §4.4, CKA_PRIVATE): check before concluding the key does not exist.
      if (objectClass === 'private') this.#pool.assertLoggedIn(session);
      throw new HsmError('HSM_KEY_NOT_FOUND', `no ${ref.algorithm} key pair with id ${ref.hsmKeyId} in the token`);
    }
    if (other !== undefined) {
      throw new HsmError(
        'HSM_KEY_NOT_FOUND',
        `several ${objectClass} key objects carry id ${ref.hsmKeyId}; refusing to choose one`,
      );
    }
    return handle;
  }

  /**
   * Checks that the object is a key of the algorithm the caller named, so that a wrong
   * reference fails cleanly instead of signing with an unexpected mechanism. Returns the
   * raw signature length.
   */
  #checkKeyMatches(session: PoolSession, handle: Pkcs11Handle, ref: ResolvedKeyRef): number {
    const { spec } = ref;
    const mismatch = (): HsmError =>
      new HsmError('HSM_KEY_NOT_FOUND', `key ${ref.hsmKeyId} in the token is not an ${ref.algorithm} key`);
    const read = (type: number): Buffer | undefined =>
      this.#module.C_GetAttributeValue(session.handle, handle, [{ type }])[0]?.value;
    // Key type first: asking an EC key for CKA_MODULUS is CKR_ATTRIBUTE_TYPE_INVALID.
    const keyType = read(pkcs11js.CKA_KEY_TYPE);
    if (keyType === undefined || readUlong(keyType) !== spec.keyType) throw mismatch();
    const value = read(spec.kind === 'rsa-pss' ? pkcs11js.CKA_MODULUS : pkcs11js.CKA_EC_PARAMS);
    if (value === undefined) throw mismatch();
    switch (spec.kind) {
      case 'ecdsa':
      case 'eddsa':
        if (!spec.acceptedEcParams.some((params) => params.equals(value))) throw mismatch();
        return 2 * spec.fieldBytes;
      case 'rsa-pss':
        if (bitLength(value) !== spec.modulusBits) throw mismatch();
        return spec.modulusBits / 8;
    }
  }

  /**
   * Defence in depth after generation: the token must have applied our template. A
   * token that silently ignores CKA_SENSITIVE or CKA_EXTRACTABLE must not hold our keys.
   */
  #assertCustody(session: PoolSession, privateKey: Pkcs11Handle): void {
    const read = readBooleans(this.#module, session, privateKey, [
      pkcs11js.CKA_SENSITIVE,
      pkcs11js.CKA_EXTRACTABLE,
      pkcs11js.CKA_SIGN,
      pkcs11js.CKA_DECRYPT,
      pkcs11js.CKA_UNWRAP,
      pkcs11js.CKA_DERIVE,
    ]);
    const safe =
      read(pkcs11js.CKA_SENSITIVE) &&
      !read(pkcs11js.CKA_EXTRACTABLE) &&
      read(pkcs11js.CKA_SIGN) &&
      !read(pkcs11js.CKA_DECRYPT) &&
      !read(pkcs11js.CKA_UNWRAP) &&
      !read(pkcs11js.CKA_DERIVE);
    if (!safe) {
      throw new HsmError('HSM_KEYGEN_FAILED', 'the token did not apply the sign-only, non-extractable key template');
    }
  }
}


/**
 * The error for a job a signing worker could not complete. Worded here, with the key id
 * the caller gave; a worker reports a kind and a CK_RV name only.
 */
function signFailure(outcome: SignFailure, ref: ResolvedKeyRef, what: string): HsmError {
  const { ckr } = outcome;
  switch (outcome.failure) {
    case 'key-not-found':
      return new HsmError('HSM_KEY_NOT_FOUND', `no ${ref.algorithm} key pair with id ${ref.hsmKeyId} in the token`);
    case 'key-ambiguous':
      return new HsmError(
        'HSM_KEY_NOT_FOUND',
        `several private key objects carry id ${ref.hsmKeyId}; refusing to choose one`,
      );
    case 'key-mismatch':
      return new HsmError('HSM_KEY_NOT_FOUND', `key ${ref.hsmKeyId} in the token is not an ${ref.algorithm} key`);
    case 'malformed-attribute':
      return new HsmError('HSM_UNSUPPORTED', 'the token returned a malformed CK_ULONG attribute');
    case 'session-lost':
      return new HsmError('HSM_SESSION_LOST', `${what} failed: the HSM session was lost twice (${ckr ?? 'unknown'})`, {
        ckr: ckr ?? undefined,
      });
    case 'ckr':
    case 'internal':
      // A CK_RV name alone, as the message pkcs11js would have raised, for the usual mapping.
      return hsmErrorFrom(ckr === null ? new Error('signing worker error') : new Error(ckr), 'HSM_SIGN_FAILED', what);
  }
}

/** Validates a caller's key reference; the id is the hex of CKA_ID (types.ts). */
function resolveKeyRef(key: HsmKeyRef): ResolvedKeyRef {
  const { hsmKeyId, algorithm } = key as Partial<HsmKeyRef>;
  if (typeof algorithm !== 'string' || !isKeyAlgorithm(algorithm)) {
    throw new HsmError('HSM_INVALID_INPUT', 'the key reference names an unknown algorithm');
  }
  if (typeof hsmKeyId !== 'string' || !HEX_KEY_ID.test(hsmKeyId)) {
    throw new HsmError('HSM_INVALID_INPUT', 'the key id must be 1 to 64 bytes of lower-case hex');
  }
  return { hsmKeyId, id: Buffer.from(hsmKeyId, 'hex'), algorithm, spec: keySpec(algorithm) };
}

function checkDigest(digest: DigestInput): DigestAlgorithm {
  const { algorithm, value } = digest as Partial<DigestInput>;
  if (typeof algorithm !== 'string' || !isDigestAlgorithm(algorithm)) {
    throw new HsmError('HSM_INVALID_INPUT', 'unknown digest algorithm');
  }
  if (!Buffer.isBuffer(value) || value.length !== DIGEST_LENGTHS[algorithm]) {
    throw new HsmError('HSM_INVALID_INPUT', `a ${algorithm} digest is exactly ${DIGEST_LENGTHS[algorithm]} bytes`);
  }
  return algorithm;
}

const PSS_HASH: Readonly<Record<DigestAlgorithm, { readonly hashAlg: number; readonly mgf: number }>> = Object.freeze({
  sha256: { hashAlg: pkcs11js.CKM_SHA256, mgf: pkcs11js.CKG_MGF1_SHA256 },
  sha384: { hashAlg: pkcs11js.CKM_SHA384, mgf: pkcs11js.CKG_MGF1_SHA384 },
  sha512: { hashAlg: pkcs11js.CKM_SHA512, mgf: pkcs11js.CKG_MGF1_SHA512 },
});

/**
 * The signing mechanism for a key and the hash of the data it receives.
 * - CKM_ECDSA (Current Mechanisms v2.40 §2.3) signs the digest as given.
 * - CKM_EDDSA without parameters is PureEdDSA Ed25519 (PKCS#11 3.0 Current Mechanisms,
 *   EdDSA): it signs the bytes it receives, whatever they are.
 * - CKM_RSA_PKCS_PSS (Current Mechanisms v2.40 §2.1.10) takes the digest and
 *   CK_RSA_PKCS_PSS_PARAMS (§2.1.9) whose hashAlg must be the digest's hash; MGF1 uses the same hash and the
 *   salt is as long as the hash (RFC 8017 §9.1, the usual choice and ours in types.ts).
 */
function signMechanism(spec: KeySpec, hash: DigestAlgorithm): Pkcs11Js.Mechanism {
  switch (spec.kind) {
    case 'ecdsa':
      return { mechanism: pkcs11js.CKM_ECDSA };
    case 'eddsa':
      return { mechanism: CKM_EDDSA };
    case 'rsa-pss': {
      const parameter: Pkcs11Js.RsaPSS = {
        type: pkcs11js.CK_PARAMS_RSA_PSS,
        hashAlg: PSS_HASH[hash].hashAlg,
        mgf: PSS_HASH[hash].mgf,
        saltLen: DIGEST_LENGTHS[hash],
      };
      return { mechanism: pkcs11js.CKM_RSA_PKCS_PSS, parameter };
    }
  }
}

/**
 * The INTEGER content for an unsigned big-endian value: minimal, and with a leading zero
 * when the top bit is set so the value stays positive (X.690 §8.3.2–8.3.3). asn1-schema's
 * ArrayBuffer integer converter encodes the bytes it is given as they are.
 */
function unsignedIntegerContent(value: Buffer): Buffer {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start++;
  const trimmed = value.subarray(start);
  const first = trimmed[0] ?? 0;
  return (first & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed;
}

/** DER tags (X.690 §8.3, §8.9) and the largest length of the short form (§8.1.3.4). */
const DER_SEQUENCE = 0x30;
const DER_INTEGER = 0x02;
const DER_SHORT_LENGTH_MAX = 127;

/**
 * CKM_ECDSA returns r || s as two halves of equal length, at most `fieldBytes` each
 * (Current Mechanisms v2.40 §2.3.1; tokens normally pad both to the full length, but
 * the spec allows shorter halves). X.509, CMS, DSSE and most verifiers want the DER
 * ECDSA-Sig-Value of RFC 5480 §2.2.3.
 */
export function ecdsaSignatureToDer(raw: Buffer, fieldBytes: number): Buffer {
  if (raw.length === 0 || raw.length % 2 !== 0 || raw.length > 2 * fieldBytes) {
    throw new HsmError('HSM_SIGN_FAILED', 'the token returned an ECDSA signature of unexpected length');
  }
  const half = raw.length / 2;
  const r = raw.subarray(0, half);
  const s = raw.subarray(half);
  // r and s lie in [1, n-1] (SEC 1 §4.1.3); zero means the token produced garbage.
  if (r.every((byte) => byte === 0) || s.every((byte) => byte === 0)) {
    throw new HsmError('HSM_SIGN_FAILED', 'the token returned an invalid ECDSA signature');
  }
  const rContent = unsignedIntegerContent(r);
  const sContent = unsignedIntegerContent(s);
  const length = 2 + rContent.length + 2 + sContent.length;
  if (length > DER_SHORT_LENGTH_MAX) {
    // Longer than any P-256 or P-384 signature: asn1-schema writes the long length form.
    const value = new ECDSASigValue({ r: new Uint8Array(rContent).buffer, s: new Uint8Array(sContent).buffer });
    return Buffer.from(AsnConvert.serialize(value));
  }
  // SEQUENCE { INTEGER r, INTEGER s }, every length in the short form. Written here
  // rather than through asn1-schema, which spent 60–90 µs of the event loop on each
  // signature (V8 profiles of the signing benchmark); encodings.test.ts holds this to
  // asn1-schema's output for random values and to node:crypto's verification.
  const der = Buffer.allocUnsafe(2 + length);
  der[0] = DER_SEQUENCE;
  der[1] = length;
  der[2] = DER_INTEGER;
  der[3] = rContent.length;
  rContent.copy(der, 4);
  const sAt = 4 + rContent.length;
  der[sAt] = DER_INTEGER;
  der[sAt + 1] = sContent.length;
  sContent.copy(der, sAt + 2);
  return der;
}

/**
 * Decodes CKA_EC_POINT, which PKCS#11 defines as the DER encoding of an X9.62 ECPoint,
 * i.e. an OCTET STRING around the point (Current Mechanisms v2.40 §2.3; Edwards
 * keys likewise in 3.0). Some tokens return the bare point; we do not guess
 * (a bare P-256 point starts with 04, as does the OCTET STRING tag): the value must be
 * exactly one DER OCTET STRING, which we check by re-encoding, because asn1-schema
 * accepts trailing bytes and BER. Returns the point: 04 || X || Y for ECDSA curves, the
 * 32-byte RFC 8032 encoding for Ed25519.
 */
export function decodeEcPoint(der: Buffer, algorithm: KeyAlgorithm): Buffer {
  const spec = keySpec(algorithm);
  if (spec.kind === 'rsa-pss') throw new TypeError(`${algorithm} keys have no EC point`);
  const refuse = (): HsmError =>
    new HsmError('HSM_UNSUPPORTED', `the token returned a CKA_EC_POINT that is not a DER-wrapped ${spec.curve} point`);
  let point: Buffer;
  try {
    const parsed = AsnConvert.parse(der, OctetString);
    if (!Buffer.from(AsnConvert.serialize(parsed)).equals(der)) throw refuse();
    point = Buffer.from(parsed.buffer);
  } catch {
    throw refuse();
  }
  const expected = spec.kind === 'ecdsa' ? 1 + 2 * spec.fieldBytes : spec.fieldBytes;
  if (point.length !== expected || (spec.kind === 'ecdsa' && point[0] !== 0x04)) throw refuse();
  return point;
}

/**
 * SubjectPublicKeyInfo PEM of a public key object, built by node:crypto from a JWK of
 * the token's attributes (which also checks that an EC point lies on its curve).
 */
function exportPublicKeyPem(module: Pkcs11, session: PoolSession, handle: Pkcs11Handle, spec: KeySpec): string {
  let jwk: JsonWebKey;
  if (spec.kind === 'rsa-pss') {
    const [modulus, exponent] = module
      .C_GetAttributeValue(session.handle, handle, [{ type: pkcs11js.CKA_MODULUS }, { type: pkcs11js.CKA_PUBLIC_EXPONENT }])
      .map((attribute) => attribute.value);
    if (modulus === undefined || exponent === undefined || bitLength(modulus) !== spec.modulusBits) {
      throw new HsmError('HSM_UNSUPPORTED', `the token returned an RSA modulus that is not ${spec.modulusBits} bits`);
    }
    jwk = { kty: 'RSA', n: stripLeadingZeros(modulus).toString('base64url'), e: stripLeadingZeros(exponent).toString('base64url') };
  } else {
    const [encoded] = module
      .C_GetAttributeValue(session.handle, handle, [{ type: pkcs11js.CKA_EC_POINT }])
      .map((attribute) => attribute.value);
    const point = decodeEcPoint(encoded ?? Buffer.alloc(0), spec.algorithm);
    jwk =
      spec.kind === 'eddsa'
        ? { kty: 'OKP', crv: spec.curve, x: point.toString('base64url') }
        : {
            kty: 'EC',
            crv: spec.curve,
            x: point.subarray(1, 1 + spec.fieldBytes).toString('base64url'),
            y: point.subarray(1 + spec.fieldBytes).toString('base64url'),
          };
  }
  try {
    const pem = createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    return typeof pem === 'string' ? pem : pem.toString('utf8');
  } catch (error) {
    throw new HsmError('HSM_UNSUPPORTED', `the token returned an invalid ${spec.algorithm} public key`, { cause: error });
  }
}

/** Reads CK_BBOOL attributes (one byte; CK_FALSE is 0). */
export function readBooleans(
  module: Pkcs11,
  session: PoolSession,
  handle: Pkcs11Handle,
  types: readonly number[],
): (type: number) => boolean {
  const values = new Map<number, Buffer>();
  for (const { type, value } of module.C_GetAttributeValue(session.handle, handle, types.map((type) => ({ type })))) {
    values.set(type, value);
  }
  return (type) => {
    const value = values.get(type);
    if (value?.length !== 1) {
      throw new HsmError('HSM_UNSUPPORTED', `the token returned a malformed boolean attribute 0x${type.toString(16)}`);
    }
    return value[0] !== 0;
  };
}

/** CK_ULONG attribute values come back in the host's native size and byte order. */
function readUlong(value: Buffer): number {
  const little = endianness() === 'LE';
  if (value.length === 8) return Number(little ? value.readBigUInt64LE(0) : value.readBigUInt64BE(0));
  if (value.length === 4) return little ? value.readUInt32LE(0) : value.readUInt32BE(0);
  throw new HsmError('HSM_UNSUPPORTED', 'the token returned a malformed CK_ULONG attribute');
}

function stripLeadingZeros(value: Buffer): Buffer {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start++;
  return value.subarray(start);
}

/** Bit length of an unsigned big-endian integer. */
function bitLength(value: Buffer): number {
  const trimmed = stripLeadingZeros(value);
  const first = trimmed[0] ?? 0;
  return first === 0 ? 0 : (trimmed.length - 1) * 8 + (32 - Math.clz32(first));
}

interface Internals {
  readonly module: Pkcs11;
  readonly location: TokenLocation;
  readonly pool: SessionPool;
  readonly signers: SignWorkers;
}

const internals = new WeakMap<Hsm, Internals>();

/**
 * The module and session pool behind an `Hsm` opened by `openPkcs11Hsm`, for the other
 * token operations of the PKCS#11 adapter (signer/secret-sealing.ts). For `signer/` only:
 * code above the adapter uses the interfaces of types.ts.
 */
export interface Pkcs11SessionAccess {
  readonly module: Pkcs11;
  /** `SessionPool.run`: a logged-in session to itself, with recovery and one retry. */
  run<T>(what: string, operation: (session: PoolSession) => Promise<T>): Promise<T>;
  /** `SessionPool.assertLoggedIn`: private objects are invisible, not an error, after a logout. */
  assertLoggedIn(session: PoolSession): void;
}

export function pkcs11SessionAccess(hsm: Hsm): Pkcs11SessionAccess {
  const found = internals.get(hsm);
  if (found === undefined) throw new TypeError('not an Hsm opened by openPkcs11Hsm');
  const { module, pool } = found;
  return {
    module,
    run: (what, operation) => pool.run(what, operation),
    assertLoggedIn: (session) => {
      pool.assertLoggedIn(session);
    },
  };
}

/** What `hsmInternalsForTesting` exposes. Not part of the adapter's contract. */
export interface HsmInternalsForTesting {
  /** The pkcs11js instance the adapter uses (shared by the whole process). */
  readonly pkcs11: Pkcs11;
  readonly slot: Pkcs11Handle;
  /** Handles of the pool's sessions of the current generation. */
  sessionHandles(): Pkcs11Handle[];
  /** Current pool generation (starts at 0, +1 per recovery). */
  generation(): number;
  recoveries(): number;
  /** Handles of the sessions the signing workers hold now (one per live worker that has one). */
  signerSessionHandles(): Pkcs11Handle[];
  /** Sessions the signing workers dropped after a loss (each worker recovers on its own). */
  signerRecoveries(): number;
  /** Signing workers started since open, replacements included. */
  signerWorkersStarted(): number;
  /** Signing workers ready for jobs now. */
  signerWorkersReady(): number;
  /** Jobs completed by the worker now in each slot. */
  signerJobsCompleted(): number[];
  /** Terminates the signing worker in slot `index`, as a crash would; resolves once it has exited. */
  killSignerWorker(index: number): Promise<void>;
  /** Makes the next `count` C_SignInit calls of every signing worker go to a dead session handle. */
  injectSignerFault(count: number): void;
}

/**
 * FOR TESTS AND THE BENCHMARK ONLY: reaches under an `Hsm` opened by `openPkcs11Hsm`
 * to break its sessions on purpose or call the module directly. Production code has no
 * reason to touch session handles, and must not.
 */
export function hsmInternalsForTesting(hsm: Hsm): HsmInternalsForTesting {
  const found = internals.get(hsm);
  if (found === undefined) throw new TypeError('not an Hsm opened by openPkcs11Hsm');
  const { module, location, pool, signers } = found;
  return {
    pkcs11: module,
    slot: location.slot,
    sessionHandles: () => pool.sessionHandlesForTesting(),
    generation: () => pool.generation,
    recoveries: () => pool.recoveries,
    signerSessionHandles: () => signers.sessionHandlesForTesting(),
    signerRecoveries: () => signers.recoveries,
    signerWorkersStarted: () => signers.started,
    signerWorkersReady: () => signers.readyCount,
    signerJobsCompleted: () => signers.completedForTesting(),
    killSignerWorker: (index) => signers.killForTesting(index),
    injectSignerFault: (count) => {
      signers.injectFaultForTesting(count);
    },
  };
}
