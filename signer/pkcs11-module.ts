/**
 * Owns the process-wide PKCS#11 module state: loading a module library once,
 * `C_Initialize` with OS locking, finding a token's slot by label, and the
 * application-wide login state that all session pools on one token share.
 *
 * Why process-wide: Cryptoki state belongs to the application, not to a handle we hold
 * (PKCS#11 v2.40 §5.4.1–5.4.2). A second `C_Initialize` answers
 * CKR_CRYPTOKI_ALREADY_INITIALIZED, `C_Finalize` tears the library down under every
 * other user in the process, and a login or logout on one session applies to every
 * session of the application on that token (§5.6.7–5.6.8, C_Login/C_Logout).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute } from 'node:path';
import type * as Pkcs11Js from 'pkcs11js';
import { ckrNameOf, HsmError, hsmErrorFrom } from './errors.js';

/**
 * pkcs11js is CommonJS and assembles its exports at run time
 * (`module.exports = { ...native, PKCS11 }`), so Node's ESM loader cannot see its named
 * exports and its typings declare no default export: load it through `require`.
 */
export const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Js;

export type Pkcs11 = Pkcs11Js.PKCS11;
export type Pkcs11Handle = Pkcs11Js.Handle;

/** Loaded modules, keyed by the library's real path (symlinks to one file share an entry). */
const loadedModules = new Map<string, Pkcs11>();

/**
 * Returns the module at `modulePath`, loading and initialising it on first use.
 *
 * `CKF_OS_LOCKING_OK` (§5.4.1, CK_C_INITIALIZE_ARGS) is mandatory here: we call the
 * module from libuv worker threads (async sign, key generation), and without the flag
 * SoftHSM assumes a single-threaded caller, skips its locking and crashes under
 * concurrent signing. CKR_CRYPTOKI_ALREADY_INITIALIZED is fine: another wrapper in this
 * process got there first; its flags were its responsibility.
 */
export function loadPkcs11Module(modulePath: string): Pkcs11 {
  if (modulePath === '' || !isAbsolute(modulePath)) {
    // A bare name would be resolved by dlopen through LD_LIBRARY_PATH and the cache:
    // the library that ends up holding our PIN must be the one the operator named.
    throw new HsmError('HSM_MODULE_NOT_FOUND', 'the PKCS#11 module path must be an absolute path to a library file');
  }
  let realPath: string;
  try {
    realPath = realpathSync(modulePath);
  } catch (error) {
    throw new HsmError('HSM_MODULE_NOT_FOUND', `PKCS#11 module not found at ${modulePath}`, { cause: error });
  }
  const existing = loadedModules.get(realPath);
  if (existing !== undefined) return existing;

  const module = new pkcs11js.PKCS11();
  try {
    module.load(realPath);
  } catch (error) {
    throw new HsmError('HSM_UNAVAILABLE', `${modulePath} could not be loaded as a PKCS#11 module`, { cause: error });
  }
  try {
    module.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (error) {
    if (ckrNameOf(error) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      throw hsmErrorFrom(error, 'HSM_UNAVAILABLE', `initialising PKCS#11 module ${modulePath}`);
    }
  }
  loadedModules.set(realPath, module);
  return module;
}

/**
 * Finalises every module this process loaded. Only for an explicit process exit, after
 * every `Hsm` was closed: `C_Finalize` invalidates all sessions and handles of the
 * process (§5.4.2), including those of other wrappers sharing the library.
 */
export function finalizePkcs11ModulesAtExit(): void {
  for (const [path, module] of loadedModules) {
    loadedModules.delete(path);
    try {
      module.C_Finalize();
    } catch {
      // Exiting anyway; nothing useful to do with a failure here.
    }
  }
}

/** CK_TOKEN_INFO character fields are fixed-size and blank-padded (§3.2, CK_TOKEN_INFO). */
function unpad(field: string): string {
  return field.replace(/[ \0]+$/, '');
}

export interface TokenLocation {
  readonly slot: Pkcs11Handle;
  readonly label: string;
  readonly serial: string;
  /** CK_TOKEN_INFO.flags at discovery time. */
  readonly flags: number;
}

/**
 * Finds the slot holding the token labelled `label` (and with serial `serial`, when
 * given). Never by slot index: indexes and slot IDs move when tokens are added or
 * removed, and a signing service must not silently pick up a different token.
 */
export function findTokenSlot(module: Pkcs11, label: string, serial?: string): TokenLocation {
  const wanted = serial === undefined ? `label "${label}"` : `label "${label}" and serial "${serial}"`;
  if (label === '' || Buffer.byteLength(label, 'utf8') > 32) {
    throw new HsmError('HSM_TOKEN_NOT_FOUND', `no token can have ${wanted}: token labels are 1 to 32 bytes`);
  }
  let slots: Pkcs11Handle[];
  try {
    slots = module.C_GetSlotList(true);
  } catch (error) {
    throw hsmErrorFrom(error, 'HSM_UNAVAILABLE', 'listing PKCS#11 slots');
  }
  const seen: string[] = [];
  const matches: TokenLocation[] = [];
  for (const slot of slots) {
    let info: Pkcs11Js.TokenInfo;
    try {
      info = module.C_GetTokenInfo(slot);
    } catch {
      continue; // Token removed between the two calls, or a slot we cannot query.
    }
    const location = { slot, label: unpad(info.label), serial: unpad(info.serialNumber), flags: info.flags };
    if (location.label !== '') seen.push(location.label);
    if (location.label === label && (serial === undefined || location.serial === serial)) matches.push(location);
  }
  const [first, second] = matches;
  if (first === undefined) {
    const present = seen.length === 0 ? 'no labelled token is present' : `present: ${seen.map((l) => `"${l}"`).join(', ')}`;
    throw new HsmError('HSM_TOKEN_NOT_FOUND', `no PKCS#11 token with ${wanted} (${present})`);
  }
  if (second !== undefined) {
    throw new HsmError(
      'HSM_TOKEN_AMBIGUOUS',
      `${matches.length} PKCS#11 tokens have ${wanted}; configure the token serial to choose one`,
    );
  }
  return first;
}

/**
 * Bookkeeping of the application's login on one token, shared by every session pool
 * of this process on that token.
 *
 * Two problems it solves. First, `C_Logout` (and closing the last session) logs out
 * every pool on the token, so only the last pool to close may log out. Second, once the
 * application is logged in, `C_Login` answers CKR_USER_ALREADY_LOGGED_IN without
 * checking the PIN (SoftHSM 2.6.1, measured): a second pool opened with a wrong PIN
 * would start "successfully". The first pool's PIN digest lets us refuse it instead.
 */
export interface LoginLease {
  /** True when another live lease on the token already proved its PIN by logging in. */
  readonly shared: boolean;
  /** Gives the lease back; true when it was the last one, so the caller should log out. */
  release(): boolean;
}

interface TokenLogin {
  readonly pinDigest: Buffer;
  holders: number;
}

const tokenLogins = new Map<string, TokenLogin>();

function pinDigest(pin: string): Buffer {
  // Only compared in memory with another digest of this process; the PIN itself stays
  // in the pool (it must, to log in again after a session loss).
  return createHash('sha256').update('signet-hsm-pin\0').update(pin, 'utf8').digest();
}

export function leaseTokenLogin(module: Pkcs11, location: TokenLocation, pin: string): LoginLease {
  const key = `${module.libPath}\0${location.slot.toString('hex')}\0${location.serial}`;
  const digest = pinDigest(pin);
  const existing = tokenLogins.get(key);
  if (existing !== undefined && !timingSafeEqual(existing.pinDigest, digest)) {
    throw new HsmError('HSM_PIN_INCORRECT', `the PIN for token "${location.label}" is incorrect`);
  }
  const entry = existing ?? { pinDigest: digest, holders: 0 };
  entry.holders += 1;
  tokenLogins.set(key, entry);
  let released = false;
  return {
    shared: existing !== undefined,
    release(): boolean {
      if (released) return false;
      released = true;
      entry.holders -= 1;
      if (entry.holders > 0) return false;
      tokenLogins.delete(key);
      return true;
    },
  };
}
