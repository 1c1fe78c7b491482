/**
 * A signing worker thread: C_SignInit + C_Sign on a PKCS#11 session of its own, so that
 * the main thread only posts a job and receives the raw signature.
 *
 * Why a thread: C_SignInit is synchronous in pkcs11js and SoftHSM does real work there
 * (it loads and decrypts the private key object), and even the asynchronous C_Sign costs
 * the event loop a dispatch and a callback. Here both calls are made synchronously, off
 * the main thread, one job after the other: a session runs one operation at a time
 * (PKCS#11 v2.40 §5.11, "Operations, sessions and threads" of the Usage Guide). The main
 * thread may post the next job before this one is answered; it waits in the port, which
 * saves the thread a sleep and a wake-up per job.
 *
 * Plain JavaScript with JSDoc types: Node cannot start a worker from TypeScript, and this
 * file must run unchanged under the test runner (which serves the .ts sources) and from
 * dist/. It imports only Node built-ins and pkcs11js for the same reason.
 *
 * Process-wide rules (PKCS#11 v2.40 §5.4, §5.6.7): the main thread has loaded and
 * initialised the module and logged the application in before any worker starts. A
 * worker initialises with CKF_OS_LOCKING_OK (answered CKR_CRYPTOKI_ALREADY_INITIALIZED),
 * never calls C_Finalize, and logs in only when it finds the application logged out.
 *
 * Nothing this thread posts carries the PIN, a key id or a handle in a message: failures
 * are reported as a kind and a CK_RV name, and the main thread words the error.
 * Session handles are posted, separately, so that the main thread can close the session
 * of a worker that died and so that tests can reach it.
 */
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { SESSION_LOSS_CKRS } from './session-loss.mjs';
import { parentPort, workerData } from 'node:worker_threads';

/** @typedef {import('pkcs11js').Handle} Handle */
/** @typedef {import('pkcs11js').Mechanism} Mechanism */
/** @typedef {import('pkcs11js').PKCS11} Pkcs11 */

/**
 * What the main thread passes at start.
 * @typedef {object} SignWorkerData
 * @property {string} modulePath Real path of the module library the main thread loaded.
 * @property {string} tokenLabel
 * @property {string} tokenSerial Serial of the token the main thread opened (labels may repeat).
 * @property {string} pin Only used to log in again after the application was logged out.
 */

/**
 * How to find and check a private key: the same check as pkcs11-hsm.ts makes on pool
 * sessions, so that a key reference naming the wrong algorithm fails cleanly instead of
 * signing with an unexpected mechanism.
 * @typedef {object} KeyDescriptor
 * @property {string} cacheKey Identifies (key id, algorithm) in this worker's handle cache.
 * @property {Uint8Array} id CKA_ID.
 * @property {number} keyType Expected CKA_KEY_TYPE.
 * @property {readonly Uint8Array[]} ecParams Accepted CKA_EC_PARAMS encodings (EC and Edwards keys).
 * @property {number} modulusBits Expected modulus size (RSA keys); 0 for EC and Edwards keys.
 * @property {number} signatureLength Bytes of the raw C_Sign output (the most, for ECDSA).
 */

/**
 * @typedef {object} SignRequest
 * @property {'sign'} type
 * @property {number} id Job number, echoed in the answer.
 * @property {string} key `cacheKey` of a key described to this worker before, or in `describe`.
 * @property {KeyDescriptor | null} describe The key's description, the first time the worker needs it.
 * @property {boolean} forgetKeys Forget every key described so far (and its handle) first.
 * @property {Mechanism} mechanism
 * @property {'sha256' | 'sha384' | 'sha512' | null} prehash Hash `data` first and sign the digest.
 * @property {Uint8Array} data
 */

/**
 * Stop: close the session and let the thread end.
 * @typedef {{ readonly type: 'close' }} CloseRequest
 */

/**
 * Test-only fault injection: the next `count` C_SignInit calls go to a session handle
 * that does not exist, so the module itself answers CKR_SESSION_HANDLE_INVALID.
 * @typedef {{ readonly type: 'fault'; readonly failSignInits: number }} FaultRequest
 */

/** @typedef {SignRequest | CloseRequest | FaultRequest} WorkerRequest */

/**
 * Why a job failed. `ckr` failures carry the CK_RV of the call that failed;
 * `session-lost` means a session loss survived one recovery and retry.
 * @typedef {'key-not-found' | 'key-ambiguous' | 'key-mismatch' | 'malformed-attribute' | 'session-lost' | 'ckr' | 'internal'} FailureKind
 */

/**
 * @typedef {{ readonly type: 'ready' }} ReadyResponse
 * @typedef {{ readonly type: 'init-failed'; readonly reason: 'module' | 'token-not-found' | 'ckr' | 'internal'; readonly ckr: string | null }} InitFailedResponse
 * @typedef {{ readonly type: 'session-opened'; readonly handle: Uint8Array }} SessionOpenedResponse
 * @typedef {{ readonly type: 'session-closing'; readonly handle: Uint8Array; readonly lost: boolean }} SessionClosingResponse
 * @typedef {{ readonly type: 'signed'; readonly id: number; readonly signature: Uint8Array }} SignedResponse
 * @typedef {{ readonly type: 'failed'; readonly id: number; readonly failure: FailureKind; readonly ckr: string | null }} FailedResponse
 * @typedef {ReadyResponse | InitFailedResponse | SessionOpenedResponse | SessionClosingResponse | SignedResponse | FailedResponse} WorkerResponse
 */

/**
 * pkcs11js is CommonJS and assembles its exports at run time, so the ESM loader cannot
 * see its named exports: load it through `require`, as pkcs11-module.ts does.
 */
/** @type {(id: 'pkcs11js') => typeof import('pkcs11js')} */
const requirePkcs11js = createRequire(import.meta.url);
const pkcs11js = requirePkcs11js('pkcs11js');


/** Logging in again with these would only burn PIN attempts. */
const FATAL_LOGIN_CKRS = new Set(['CKR_PIN_INCORRECT', 'CKR_PIN_INVALID', 'CKR_PIN_LEN_RANGE', 'CKR_PIN_LOCKED', 'CKR_PIN_EXPIRED']);

/** CK_STATE values (v2.40 §3.3) in which the user is logged in. */
const CKS_RO_USER_FUNCTIONS = 1;
const CKS_RW_USER_FUNCTIONS = 3;

const CKR_NAME = /\b(CKR_[A-Z0-9_]+)\b/;

/**
 * The CK_RV name of an error raised by pkcs11js (or by this file), else null.
 * @param {unknown} error
 * @returns {string | null}
 */
function ckrNameOf(error) {
  if (!(error instanceof Error)) return null;
  const match = CKR_NAME.exec(error.message);
  if (match?.[1] !== undefined) return match[1];
  const code = /** @type {{ code?: unknown }} */ (error).code;
  // pkcs11js names every standard CK_RV; a bare number means a vendor-defined value.
  return error.name === 'Pkcs11Error' && typeof code === 'number' && code !== 0
    ? `CKR_0x${code.toString(16).padStart(8, '0')}`
    : null;
}

/** A failure found by our own checks, after every PKCS#11 call completed: the session is clean. */
class KeyProblem extends Error {
  /** @param {FailureKind} kind */
  constructor(kind) {
    super(kind);
    this.name = 'KeyProblem';
    /** @readonly */
    this.kind = kind;
  }
}

/** @param {string} ckr */
function ckrError(ckr) {
  return new Error(ckr);
}

/** CK_ULONG attribute values come back in the host's native size and byte order. */
const LITTLE_ENDIAN = endianness() === 'LE';

/**
 * @param {Buffer} value
 * @returns {number}
 */
function readUlong(value) {
  if (value.length === 8) return Number(LITTLE_ENDIAN ? value.readBigUInt64LE(0) : value.readBigUInt64BE(0));
  if (value.length === 4) return LITTLE_ENDIAN ? value.readUInt32LE(0) : value.readUInt32BE(0);
  throw new KeyProblem('malformed-attribute');
}

/**
 * Bit length of an unsigned big-endian integer.
 * @param {Buffer} value
 * @returns {number}
 */
function bitLength(value) {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start++;
  const first = value[start] ?? 0;
  return first === 0 ? 0 : (value.length - start - 1) * 8 + (32 - Math.clz32(first));
}

/**
 * A copy of a handle for posting: the handle Buffer may be a view into a shared pool.
 * @param {Handle} handle
 * @returns {Uint8Array}
 */
function handleCopy(handle) {
  return new Uint8Array(handle);
}

/** CK_TOKEN_INFO character fields are fixed-size and blank-padded (§3.2). */
/** @param {string} field */
function unpad(field) {
  return field.replace(/[ \0]+$/, '');
}

class SignWorker {
  /** @type {Pkcs11} */
  #module;
  /** @type {Handle} */
  #slot;
  /** @type {string} */
  #pin;
  /** @type {(message: WorkerResponse, transfer?: ArrayBuffer[]) => void} */
  #post;

  /** @type {Handle | null} */
  #session = null;
  /** +1 per session opened: handles found in an earlier session are looked up again. */
  #generation = 0;
  /** @type {Map<string, { readonly generation: number; readonly handle: Handle }>} */
  #keys = new Map();
  /** Keys the main thread described, by `cacheKey`. @type {Map<string, KeyDescriptor>} */
  #descriptors = new Map();
  /** Set when logging in again was refused on the PIN: never try again. @type {string | null} */
  #fatalCkr = null;
  #failSignInits = 0;

  /**
   * @param {Pkcs11} module
   * @param {Handle} slot
   * @param {string} pin
   * @param {(message: WorkerResponse, transfer?: ArrayBuffer[]) => void} post
   */
  constructor(module, slot, pin, post) {
    this.#module = module;
    this.#slot = slot;
    this.#pin = pin;
    this.#post = post;
  }

  /** Opens the session ahead of the first job; a failure is retried by that job. */
  warmUp() {
    try {
      this.#ensureSession();
    } catch {
      // The first job opens the session again and reports what is wrong.
    }
  }

  /**
   * Signs, recovering once from a lost session, and posts the answer.
   * @param {SignRequest} job
   */
  sign(job) {
    if (job.forgetKeys) {
      this.#descriptors.clear();
      this.#keys.clear();
    }
    if (job.describe !== null) this.#descriptors.set(job.describe.cacheKey, job.describe);
    const key = this.#descriptors.get(job.key);
    if (key === undefined) {
      this.#fail(job, 'internal', null); // The main thread tracks what it described: a bug.
      return;
    }
    for (let attempt = 1; ; attempt++) {
      let signature;
      try {
        signature = this.#signOnce(job, key);
      } catch (error) {
        if (error instanceof KeyProblem) {
          this.#fail(job, error.kind, null);
          return;
        }
        const ckr = ckrNameOf(error);
        if (ckr !== null && SESSION_LOSS_CKRS.has(ckr)) {
          this.#dropSession(true);
          if (attempt === 1) continue;
          this.#fail(job, 'session-lost', ckr);
          return;
        }
        if (ckr !== null && FATAL_LOGIN_CKRS.has(ckr)) {
          // Raised by C_Login, before any operation started on the session.
          this.#fail(job, 'ckr', ckr);
          return;
        }
        // The session may hold an active operation: a failed C_Sign does not always
        // terminate it (CKR_BUFFER_TOO_SMALL never does; SoftHSM leaves it active after
        // CKR_ARGUMENTS_BAD). Never reuse it. CKR_OPERATION_ACTIVE means someone left
        // one there before us: a clean session deserves one more try.
        this.#replaceSession();
        if (ckr === 'CKR_OPERATION_ACTIVE' && attempt === 1) continue;
        this.#fail(job, ckr === null ? 'internal' : 'ckr', ckr);
        return;
      }
      const { buffer, byteOffset, byteLength } = signature;
      this.#post({ type: 'signed', id: job.id, signature: new Uint8Array(buffer, byteOffset, byteLength) }, [
        /** @type {ArrayBuffer} */ (buffer),
      ]);
      return;
    }
  }

  /** @param {number} count */
  injectFault(count) {
    this.#failSignInits = count;
  }

  /** Closes the session; the thread then ends once its port is closed. */
  close() {
    this.#dropSession(false);
  }

  /**
   * @param {SignRequest} job
   * @param {KeyDescriptor} key
   * @returns {Buffer} the raw signature, a view on an ArrayBuffer of its own (transferable)
   */
  #signOnce(job, key) {
    const session = this.#ensureSession();
    const handle = this.#privateKey(session, key);
    const data = Buffer.from(job.data.buffer, job.data.byteOffset, job.data.byteLength);
    // SoftHSM has no CKM_ECDSA_SHA256 and RSA-PSS takes a digest: hash here, off the main thread.
    const input = job.prehash === null ? data : createHash(job.prehash).update(data).digest();
    const output = Buffer.from(new ArrayBuffer(key.signatureLength));
    let target = session;
    if (this.#failSignInits > 0) {
      this.#failSignInits -= 1;
      target = Buffer.alloc(session.length, 0xff);
    }
    // v2.40 §5.11.1–5.11.2: C_SignInit then a single-part C_Sign.
    this.#module.C_SignInit(target, job.mechanism, handle);
    return this.#module.C_Sign(session, input, output);
  }

  /** @returns {Handle} */
  #ensureSession() {
    if (this.#session !== null) return this.#session;
    // Read-only is enough to sign with a token key; key generation stays on the main thread.
    const session = this.#module.C_OpenSession(this.#slot, pkcs11js.CKF_SERIAL_SESSION);
    this.#session = session;
    this.#generation += 1;
    this.#post({ type: 'session-opened', handle: handleCopy(session) });
    this.#ensureLoggedIn(session);
    return session;
  }

  /**
   * Login state belongs to the application (§5.6.7): the main thread logged in, but a
   * C_Logout or C_CloseAllSessions elsewhere in the process undoes it for everyone.
   * @param {Handle} session
   */
  #ensureLoggedIn(session) {
    if (this.#isLoggedIn(session)) return;
    if (this.#fatalCkr !== null) throw ckrError(this.#fatalCkr);
    try {
      this.#module.C_Login(session, pkcs11js.CKU_USER, this.#pin);
    } catch (error) {
      const ckr = ckrNameOf(error);
      if (ckr === 'CKR_USER_ALREADY_LOGGED_IN') return; // Another thread got there first.
      if (ckr !== null && FATAL_LOGIN_CKRS.has(ckr)) this.#fatalCkr = ckr;
      throw ckr === null ? error : ckrError(ckr);
    }
  }

  /**
   * @param {Handle} session
   * @returns {boolean}
   */
  #isLoggedIn(session) {
    const { state } = this.#module.C_GetSessionInfo(session);
    return state === CKS_RO_USER_FUNCTIONS || state === CKS_RW_USER_FUNCTIONS;
  }

  /**
   * The private key object for `key`, found by CKA_ID and class and checked against the
   * algorithm; cached for the lifetime of the current session.
   * @param {Handle} session
   * @param {KeyDescriptor} key
   * @returns {Handle}
   */
  #privateKey(session, key) {
    const cached = this.#keys.get(key.cacheKey);
    if (cached?.generation === this.#generation) return cached.handle;
    const module = this.#module;
    // C_FindObjectsInit / C_FindObjects / C_FindObjectsFinal (v2.40 §5.7.7–5.7.9).
    module.C_FindObjectsInit(session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
      { type: pkcs11js.CKA_ID, value: Buffer.from(key.id) },
    ]);
    let found;
    try {
      found = module.C_FindObjects(session, 2);
    } finally {
      // Always end the search: an active find operation blocks the next one.
      module.C_FindObjectsFinal(session);
    }
    const [handle, other] = found;
    if (handle === undefined) {
      // Private objects are invisible, not an error, once the application is logged out
      // (v2.40 §4.4, CKA_PRIVATE): that is a lost login, not a missing key.
      if (!this.#isLoggedIn(session)) throw ckrError('CKR_USER_NOT_LOGGED_IN');
      throw new KeyProblem('key-not-found');
    }
    if (other !== undefined) throw new KeyProblem('key-ambiguous');
    this.#checkKey(session, handle, key);
    this.#keys.set(key.cacheKey, { generation: this.#generation, handle });
    return handle;
  }

  /**
   * @param {Handle} session
   * @param {Handle} handle
   * @param {KeyDescriptor} key
   */
  #checkKey(session, handle, key) {
    /** @param {number} type */
    const read = (type) => this.#module.C_GetAttributeValue(session, handle, [{ type }])[0]?.value;
    // Key type first: asking an EC key for CKA_MODULUS is CKR_ATTRIBUTE_TYPE_INVALID.
    const keyType = read(pkcs11js.CKA_KEY_TYPE);
    if (keyType === undefined || readUlong(keyType) !== key.keyType) throw new KeyProblem('key-mismatch');
    if (key.modulusBits > 0) {
      const modulus = read(pkcs11js.CKA_MODULUS);
      if (modulus === undefined || bitLength(modulus) !== key.modulusBits) throw new KeyProblem('key-mismatch');
    } else {
      const params = read(pkcs11js.CKA_EC_PARAMS);
      if (params === undefined || !key.ecParams.some((accepted) => params.equals(accepted))) {
        throw new KeyProblem('key-mismatch');
      }
    }
  }

  /**
   * Closes the session and forgets every handle found in it. The main thread hears of it
   * first, so that it never closes a handle that may already belong to someone else.
   * @param {boolean} lost
   */
  #dropSession(lost) {
    const session = this.#session;
    this.#session = null;
    this.#keys.clear();
    if (session === null) return;
    this.#post({ type: 'session-closing', handle: handleCopy(session), lost });
    try {
      this.#module.C_CloseSession(session);
    } catch {
      // Typically CKR_SESSION_HANDLE_INVALID: already gone.
    }
  }

  /**
   * Swaps the session for a fresh one. The new one is opened first: closing the
   * application's last session would log it out (§5.6.2).
   */
  #replaceSession() {
    const old = this.#session;
    this.#session = null;
    this.#keys.clear();
    try {
      this.#ensureSession();
    } catch {
      // The next job opens one (and recovers if the token is really gone).
    }
    if (old === null) return;
    this.#post({ type: 'session-closing', handle: handleCopy(old), lost: false });
    try {
      this.#module.C_CloseSession(old);
    } catch {
      // Already gone.
    }
  }

  /**
   * @param {SignRequest} job
   * @param {FailureKind} failure
   * @param {string | null} ckr
   */
  #fail(job, failure, ckr) {
    this.#post({ type: 'failed', id: job.id, failure, ckr });
  }
}

/**
 * @param {Pkcs11} module
 * @param {string} label
 * @param {string} serial
 * @returns {Handle | null}
 */
function findSlot(module, label, serial) {
  for (const slot of module.C_GetSlotList(true)) {
    let info;
    try {
      info = module.C_GetTokenInfo(slot);
    } catch {
      continue; // Token removed between the two calls.
    }
    if (unpad(info.label) === label && unpad(info.serialNumber) === serial) return slot;
  }
  return null;
}

/**
 * Loads and initialises the module, finds the token by label and serial (never by slot
 * index: indexes move when tokens come and go).
 * @param {SignWorkerData} data
 * @param {(message: WorkerResponse, transfer?: ArrayBuffer[]) => void} post
 * @returns {SignWorker | null}
 */
function start(data, post) {
  const module = new pkcs11js.PKCS11();
  try {
    module.load(data.modulePath);
  } catch {
    post({ type: 'init-failed', reason: 'module', ckr: null });
    return null;
  }
  try {
    try {
      module.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (error) {
      if (ckrNameOf(error) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw error;
    }
    const slot = findSlot(module, data.tokenLabel, data.tokenSerial);
    if (slot === null) {
      post({ type: 'init-failed', reason: 'token-not-found', ckr: null });
      return null;
    }
    return new SignWorker(module, slot, data.pin, post);
  } catch (error) {
    const ckr = ckrNameOf(error);
    post({ type: 'init-failed', reason: ckr === null ? 'internal' : 'ckr', ckr });
    return null;
  }
}

/**
 * @param {unknown} value
 * @returns {SignWorkerData}
 */
function readWorkerData(value) {
  const { modulePath, tokenLabel, tokenSerial, pin } = /** @type {Partial<Record<keyof SignWorkerData, unknown>>} */ (
    value ?? {}
  );
  if (typeof modulePath !== 'string' || typeof tokenLabel !== 'string' || typeof tokenSerial !== 'string' || typeof pin !== 'string') {
    throw new TypeError('sign-worker.mjs needs modulePath, tokenLabel, tokenSerial and pin');
  }
  return { modulePath, tokenLabel, tokenSerial, pin };
}

const port = parentPort;
if (port === null) throw new Error('sign-worker.mjs runs as a worker thread only');

/** @type {(message: WorkerResponse, transfer?: ArrayBuffer[]) => void} */
const post = (message, transfer) => {
  port.postMessage(message, transfer);
};

const worker = start(readWorkerData(workerData), post);
if (worker === null) {
  port.close();
} else {
  worker.warmUp();
  port.on('message', (/** @type {WorkerRequest} */ message) => {
    switch (message.type) {
      case 'sign':
        worker.sign(message);
        break;
      case 'fault':
        worker.injectFault(message.failSignInits);
        break;
      case 'close':
        worker.close();
        port.close();
        break;
    }
  });
  post({ type: 'ready' });
}
