/**
 * CK_RVs after which a session, the login or the object handles found through them can
 * no longer be trusted (PKCS#11 v2.40 §5.1.2–5.1.3, return values of functions that use a
 * session or a token): the caller drops the session, opens a new one (logging in again
 * if needed), looks its objects up again and retries once. CKR_OBJECT_HANDLE_INVALID
 * and CKR_KEY_HANDLE_INVALID are here because a logout invalidates the handles of
 * private objects: SoftHSM 2.6.1 then answers C_SignInit with CKR_OBJECT_HANDLE_INVALID
 * (not CKR_USER_NOT_LOGGED_IN), and the old handle stays invalid after logging in again.
 *
 * Plain JavaScript so that both the session pool (TypeScript, main thread) and the sign
 * workers (loaded by Node directly, see sign-worker.mjs) share this one list.
 */

/** @type {ReadonlySet<string>} */
export const SESSION_LOSS_CKRS = new Set([
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_CLOSED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_DEVICE_ERROR',
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_KEY_HANDLE_INVALID',
]);
