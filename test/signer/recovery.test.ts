/**
 * Session recovery against a real SoftHSM token: sessions closed, the application
 * logged out or an operation left active underneath the pool must cost no request,
 * concurrent failures must coalesce into one recovery, and closing must drain.
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

/**
 * Every session in `earlier` that is no longer one of the pool's current sessions must be
 * closed: stale sessions are dropped, never leaked. (SoftHSM reports no session count.)
 */
function expectStaleSessionsClosed(earlier: readonly Pkcs11Handle[]): void {
  const { pkcs11 } = hsmInternalsForTesting(hsm);
  const current = new Set(hsmInternalsForTesting(hsm).sessionHandles().map((h) => h.toString('hex')));
  for (const handle of earlier) {
    if (current.has(handle.toString('hex'))) continue;
    expect(() => pkcs11.C_GetSessionInfo(handle)).toThrow(/CKR_SESSION_HANDLE_INVALID/);
  }
  expect(current.size).toBeLessThanOrEqual(POOL_SIZE);
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
  hsm = await openPkcs11Hsm({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, poolSize: POOL_SIZE });
  key = await hsm.generateKeyPair('ecdsa-p256', 'signet:recovery@1');
  await signConcurrently(20); // Every pool session is now open, logged in and idle.
});

afterAll(async () => {
  await hsm.close();
  await removeTestToken(token);
});

describe('session recovery', () => {
  it('recovers from one pool session closed underneath it, with no failed request', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const { recoveries, generation } = { recoveries: internals.recoveries(), generation: internals.generation() };
    const earlier = internals.sessionHandles();
    expect(earlier).toHaveLength(POOL_SIZE);
    internals.pkcs11.C_CloseSession(earlier[0]!);

    await signConcurrently(100);
    expect(internals.recoveries()).toBe(recoveries + 1);
    expect(internals.generation()).toBe(generation + 1);
    // The other old-generation sessions still worked, but were closed, not reused.
    expectStaleSessionsClosed(earlier);
  });

  it('recovers from C_CloseAllSessions (which also logs out) with one coalesced recovery', async () => {
    const internals = hsmInternalsForTesting(hsm);
    await signConcurrently(8); // Refill the pool.
    const recoveries = internals.recoveries();
    const earlier = internals.sessionHandles();
    internals.pkcs11.C_CloseAllSessions(internals.slot);

    // Every pooled session fails at once; they must share one recovery.
    await signConcurrently(200);
    expect(internals.recoveries()).toBe(recoveries + 1);
    expectStaleSessionsClosed(earlier);
  });

  it('recovers when the application is logged out underneath the pool', async () => {
    const internals = hsmInternalsForTesting(hsm);
    await signConcurrently(8);
    const recoveries = internals.recoveries();
    const [session] = internals.sessionHandles();
    internals.pkcs11.C_Logout(session!);

    await signConcurrently(50);
    expect(internals.recoveries()).toBe(recoveries + 1);
    // And the key is found again (not reported missing while logged out).
    expect(await hsm.hasKeyPair(key)).toBe(true);
  });

  it('replaces sessions left with an active operation, without a full recovery', async () => {
    const internals = hsmInternalsForTesting(hsm);
    await signConcurrently(8);
    const recoveries = internals.recoveries();
    const { pkcs11 } = internals;
    const handles = internals.sessionHandles();
    expect(handles.length).toBeGreaterThan(0);
    for (const session of handles) {
      pkcs11.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, findPrivateKeyHandle(session));
    }

    await signConcurrently(50);
    expect(internals.recoveries()).toBe(recoveries);
    // The dirty sessions were replaced, not reused.
    expectStaleSessionsClosed(handles);
    for (const handle of handles) {
      expect(internals.sessionHandles().some((h) => h.equals(handle))).toBe(false);
    }
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
    const { pkcs11 } = internals;
    const recoveries = internals.recoveries();
    // Fault injection on the real module: every C_SignInit is sent to a session handle
    // that does not exist, so SoftHSM itself answers CKR_SESSION_HANDLE_INVALID.
    const original = pkcs11.C_SignInit.bind(pkcs11);
    const deadSession = Buffer.alloc(8, 0xff);
    pkcs11.C_SignInit = (_session, mechanism, keyHandle) => {
      original(deadSession, mechanism, keyHandle);
    };
    try {
      await expectHsmError(
        hsm.signDigest(key, { algorithm: 'sha256', value: Buffer.alloc(32, 1) }),
        'HSM_SESSION_LOST',
      );
    } finally {
      pkcs11.C_SignInit = original;
    }
    expect(internals.recoveries()).toBe(recoveries + 2);
    await signConcurrently(20);
  });
});

describe('pool limits and shared login', () => {
  it('times out waiting for a session, and a second pool closing does not log the first out', async () => {
    const small = await openPkcs11Hsm({
      modulePath: token.modulePath,
      tokenLabel: token.label,
      pin: token.pin,
      poolSize: 1,
      acquireTimeoutMs: 5,
    });
    try {
      // Key generation holds the only session for far longer than 5 ms.
      const generation = small.generateKeyPair('rsa-pss-3072', 'signet:recovery-rsa@1');
      await expectHsmError(small.signDigest(key, { algorithm: 'sha256', value: Buffer.alloc(32, 2) }), 'HSM_UNAVAILABLE');
      const rsa = await generation;
      expect(await small.hasKeyPair(rsa)).toBe(true);
    } finally {
      await small.close();
    }
    const recoveries = hsmInternalsForTesting(hsm).recoveries();
    await signConcurrently(20);
    expect(hsmInternalsForTesting(hsm).recoveries()).toBe(recoveries);
  });
});

describe('close', () => {
  it('waits for in-flight signatures, then refuses new work and logs out', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const earlier = internals.sessionHandles();
    const inFlight = Array.from({ length: 40 }, () =>
      hsm.signDigest(key, { algorithm: 'sha256', value: randomBytes(32) }),
    );
    const closing = hsm.close();
    const results = await Promise.allSettled(inFlight);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    await closing;

    await expectHsmError(hsm.signDigest(key, { algorithm: 'sha256', value: randomBytes(32) }), 'HSM_POOL_CLOSED');
    await expectHsmError(hsm.ping(), 'HSM_POOL_CLOSED');
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
