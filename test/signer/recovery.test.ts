/**
 * Session recovery against a real SoftHSM token: sessions closed, the application
 * logged out or an operation left active underneath the session pool or the signing
 * workers must cost no request, concurrent failures must coalesce into one recovery per
 * pool or worker, and closing must drain.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHsmError, type HsmErrorCode } from '../../signer/errors.js';
import { hsmInternalsForTesting, openPkcs11Hsm } from '../../signer/pkcs11-hsm.js';
import { pkcs11js, type Pkcs11Handle } from '../../signer/pkcs11-module.js';
import type { GeneratedKeyPair, Hsm } from '../../signer/types.js';
import { createTestToken, removeTestToken, type TestToken } from '../helpers/softhsm.js';
import { verifyWithNode } from './signature-checks.js';

const POOL_SIZE = 4;
const SIGN_WORKERS = 2;
let token: TestToken;
let hsm: Hsm;
let key: GeneratedKeyPair;

async function expectHsmError(promise: Promise<unknown>, code: HsmErrorCode): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isHsmError(error), `expected an HsmError ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: string }).code).toBe(code);
}

/** Signs `count` random messages at once; every one must succeed and verify. */
async function signConcurrently(count: number): Promise<void> {
  const jobs = Array.from({ length: count }, async () => {
    const message = randomBytes(48);
    const digest = createHash('sha256').update(message).digest();
    const signature = await hsm.signDigest(key, { algorithm: 'sha256', value: digest });
    return { message, signature };
  });
  const settled = await Promise.allSettled(jobs);
  const failures = settled.filter((result) => result.status === 'rejected');
  expect(failures.map((failure) => String(failure.reason))).toEqual([]);
  for (const result of settled) {
    if (result.status !== 'fulfilled') continue;
    const over = { kind: 'message', data: result.value.message, hash: 'sha256' } as const;
    expect(verifyWithNode('ecdsa-p256', key.publicKeyPem, over, result.value.signature)).toBe(true);
  }
}

/** Every session the adapter holds now: the pool's and the signing workers'. */
function allSessionHandles(): Pkcs11Handle[] {
  const internals = hsmInternalsForTesting(hsm);
  return [...internals.sessionHandles(), ...internals.signerSessionHandles()];
}

/**
 * Every session in `earlier` that is no longer one of the adapter's current sessions
 * must be closed: stale sessions are dropped, never leaked. (SoftHSM reports no session
 * count, and reuses the numbers of closed sessions, hence "closed or current".)
 */
function expectStaleSessionsClosed(earlier: readonly Pkcs11Handle[]): void {
  const internals = hsmInternalsForTesting(hsm);
  const current = new Set(allSessionHandles().map((h) => h.toString('hex')));
  for (const handle of earlier) {
    if (current.has(handle.toString('hex'))) continue;
    expect(() => internals.pkcs11.C_GetSessionInfo(handle)).toThrow(/CKR_SESSION_HANDLE_INVALID/);
  }
  expect(internals.sessionHandles().length).toBeLessThanOrEqual(POOL_SIZE);
  expect(internals.signerSessionHandles().length).toBeLessThanOrEqual(SIGN_WORKERS);
}

function findPrivateKeyHandle(session: Pkcs11Handle): Pkcs11Handle {
  const { pkcs11 } = hsmInternalsForTesting(hsm);
  pkcs11.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
    { type: pkcs11js.CKA_ID, value: Buffer.from(key.hsmKeyId, 'hex') },
  ]);
  const [handle] = pkcs11.C_FindObjects(session, 1);
  pkcs11.C_FindObjectsFinal(session);
  if (handle === undefined) throw new Error('test key not found');
  return handle;
}

beforeAll(async () => {
  token = await createTestToken('signet-recovery');
  hsm = await openPkcs11Hsm({
    modulePath: token.modulePath,
    tokenLabel: token.label,
    pin: token.pin,
    poolSize: POOL_SIZE,
    signWorkers: SIGN_WORKERS,
  });
  key = await hsm.generateKeyPair('ecdsa-p256', 'signet:recovery@1');
  await signConcurrently(20); // Every worker session is now open, logged in and idle.
});

afterAll(async () => {
  await hsm.close();
  await removeTestToken(token);
});

describe('session recovery', () => {
  it('recovers from one worker session closed underneath it, with no failed request', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const { signerRecoveries, poolRecoveries } = {
      signerRecoveries: internals.signerRecoveries(),
      poolRecoveries: internals.recoveries(),
    };
    const earlier = internals.signerSessionHandles();
    expect(earlier).toHaveLength(SIGN_WORKERS);
    internals.pkcs11.C_CloseSession(earlier[0]!);

    await signConcurrently(100);
    // Only the worker whose session died recovered; signing never touches the pool.
    expect(internals.signerRecoveries()).toBe(signerRecoveries + 1);
    expect(internals.recoveries()).toBe(poolRecoveries);
    expectStaleSessionsClosed(earlier);
    expect(internals.signerSessionHandles()).toHaveLength(SIGN_WORKERS);
  });

  it('recovers from one pool session closed underneath it, with no failed request', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const { recoveries, generation } = { recoveries: internals.recoveries(), generation: internals.generation() };
    const earlier = internals.sessionHandles();
    expect(earlier).toHaveLength(POOL_SIZE);
    internals.pkcs11.C_CloseSession(earlier[0]!);

    // More readers than sessions: every pool session, the closed one included, is used.
    const answers = await Promise.allSettled(Array.from({ length: 20 }, () => hsm.publicKeyPem(key)));
    expect(answers.filter((answer) => answer.status === 'rejected')).toEqual([]);
    for (const answer of answers) expect(answer.status === 'fulfilled' && answer.value).toBe(key.publicKeyPem);
    expect(internals.recoveries()).toBe(recoveries + 1);
    expect(internals.generation()).toBe(generation + 1);
    // The other old-generation sessions still worked, but were closed, not reused.
    expectStaleSessionsClosed(earlier);
  });

  it('recovers from C_CloseAllSessions (which also logs out) with one recovery per worker', async () => {
    const internals = hsmInternalsForTesting(hsm);
    await signConcurrently(8);
    const recoveries = internals.signerRecoveries();
    const earlier = allSessionHandles();
    internals.pkcs11.C_CloseAllSessions(internals.slot);

    // Every job in flight on a worker fails at once; each worker recovers once, then
    // serves the rest of the burst.
    await signConcurrently(200);
    expect(internals.signerRecoveries()).toBe(recoveries + SIGN_WORKERS);
    await expect(hsm.ping()).resolves.toBeUndefined(); // The pool recovers on its next use.
    expectStaleSessionsClosed(earlier);
  });

  it('recovers when the application is logged out underneath the workers', async () => {
    const internals = hsmInternalsForTesting(hsm);
    await signConcurrently(8);
    const recoveries = internals.signerRecoveries();
    const [session] = internals.sessionHandles();
    internals.pkcs11.C_Logout(session!);

    await signConcurrently(50);
    // The cached key handles died with the login: each worker that signed started over.
    expect(internals.signerRecoveries()).toBeGreaterThan(recoveries);
    expect(internals.signerRecoveries()).toBeLessThanOrEqual(recoveries + SIGN_WORKERS);
    // And the key is found again (not reported missing while logged out).
    expect(await hsm.hasKeyPair(key)).toBe(true);
  });

  it('replaces worker sessions left with an active operation, without a recovery', async () => {
    const internals = hsmInternalsForTesting(hsm);
    await signConcurrently(8);
    const recoveries = internals.signerRecoveries();
    const { pkcs11 } = internals;
    const handles = internals.signerSessionHandles();
    expect(handles).toHaveLength(SIGN_WORKERS);
    for (const session of handles) {
      pkcs11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, findPrivateKeyHandle(session));
    }

    await signConcurrently(50);
    expect(internals.signerRecoveries()).toBe(recoveries);
    // The dirty sessions were closed; their numbers may since have been reused.
    expectStaleSessionsClosed(handles);
    expect(internals.signerSessionHandles()).toHaveLength(SIGN_WORKERS);
  });

  it('ping notices a lost session and recovers', async () => {
    const internals = hsmInternalsForTesting(hsm);
    await signConcurrently(8);
    const recoveries = internals.recoveries();
    internals.pkcs11.C_CloseAllSessions(internals.slot);
    await expect(hsm.ping()).resolves.toBeUndefined();
    expect(internals.recoveries()).toBe(recoveries + 1);
  });

  it('reports HSM_SESSION_LOST when the retry fails too, then works again', async () => {
    const internals = hsmInternalsForTesting(hsm);
    await signConcurrently(8);
    const recoveries = internals.signerRecoveries();
    // Fault injection on the real module: the next two C_SignInit calls of each worker
    // go to a session handle that does not exist, so SoftHSM itself answers
    // CKR_SESSION_HANDLE_INVALID, on the first attempt and on the retry.
    internals.injectSignerFault(2);
    let error: unknown;
    try {
      error = await hsm.signDigest(key, { algorithm: 'sha256', value: Buffer.alloc(32, 1) }).catch((e: unknown) => e);
    } finally {
      internals.injectSignerFault(0);
    }
    expect(isHsmError(error, 'HSM_SESSION_LOST'), String(error)).toBe(true);
    expect((error as { ckr: string }).ckr).toBe('CKR_SESSION_HANDLE_INVALID');
    expect((error as Error).message).toContain(key.hsmKeyId);
    expect((error as Error).message).not.toContain(token.pin);
    expect(internals.signerRecoveries()).toBe(recoveries + 2);
    await signConcurrently(20);
  });
});

describe('pool limits and shared login', () => {
  it('times out waiting for a session, and a second adapter closing does not log the first out', async () => {
    const small = await openPkcs11Hsm({
      modulePath: token.modulePath,
      tokenLabel: token.label,
      pin: token.pin,
      poolSize: 1,
      signWorkers: 1,
      acquireTimeoutMs: 5,
    });
    try {
      // Key generation holds the only session for far longer than 5 ms.
      const generation = small.generateKeyPair('rsa-pss-3072', 'signet:recovery-rsa@1');
      await expectHsmError(small.publicKeyPem(key), 'HSM_UNAVAILABLE');
      // Signing does not need the pool.
      const signature = await small.signDigest(key, { algorithm: 'sha256', value: Buffer.alloc(32, 2) });
      expect(signature.length).toBeGreaterThan(64);
      const rsa = await generation;
      expect(await small.hasKeyPair(rsa)).toBe(true);
    } finally {
      await small.close();
    }
    const internals = hsmInternalsForTesting(hsm);
    const { recoveries, signerRecoveries } = {
      recoveries: internals.recoveries(),
      signerRecoveries: internals.signerRecoveries(),
    };
    await signConcurrently(20);
    await expect(hsm.ping()).resolves.toBeUndefined();
    expect(internals.recoveries()).toBe(recoveries);
    expect(internals.signerRecoveries()).toBe(signerRecoveries);
  });
});

describe('close', () => {
  it('waits for in-flight signatures, then refuses new work and logs out', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const earlier = allSessionHandles();
    expect(internals.signerSessionHandles()).toHaveLength(SIGN_WORKERS);
    const inFlight = Array.from({ length: 40 }, () =>
      hsm.signDigest(key, { algorithm: 'sha256', value: randomBytes(32) }),
    );
    const closing = hsm.close();
    const results = await Promise.allSettled(inFlight);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    await closing;

    await expectHsmError(hsm.signDigest(key, { algorithm: 'sha256', value: randomBytes(32) }), 'HSM_POOL_CLOSED');
    await expectHsmError(hsm.ping(), 'HSM_POOL_CLOSED');
    expect(internals.signerSessionHandles()).toEqual([]); // Workers stopped.
    for (const handle of [...earlier, ...internals.sessionHandles()]) {
      expect(() => internals.pkcs11.C_GetSessionInfo(handle)).toThrow(/CKR_SESSION_HANDLE_INVALID/);
    }

    // Logged out: a new session sees the public state only.
    const session = internals.pkcs11.C_OpenSession(internals.slot, pkcs11js.CKF_SERIAL_SESSION);
    try {
      expect(internals.pkcs11.C_GetSessionInfo(session).state).toBe(0); // CKS_RO_PUBLIC_SESSION
    } finally {
      internals.pkcs11.C_CloseSession(session);
    }
    await expect(hsm.close()).resolves.toBeUndefined(); // Idempotent.
  });
});
