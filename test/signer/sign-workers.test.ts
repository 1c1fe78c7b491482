/**
 * Signing on worker threads against a real SoftHSM token: every worker's signatures
 * verify for every algorithm, bursts stay correct, a dying worker is replaced without a
 * failed or wrong answer, the wait queue keeps its limits, and close() finishes the
 * signatures in flight before it stops the workers and closes their sessions.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { KEY_ALGORITHMS, type DigestAlgorithm, type KeyAlgorithm } from '../../signer/algorithms.js';
import { isHsmError, type HsmErrorCode } from '../../signer/errors.js';
import { hsmInternalsForTesting, openPkcs11Hsm, type HsmLogger } from '../../signer/pkcs11-hsm.js';
import type { Pkcs11Handle } from '../../signer/pkcs11-module.js';
import { JOBS_PER_WORKER } from '../../signer/sign-workers.js';
import type { GeneratedKeyPair, Hsm } from '../../signer/types.js';
import { createTestToken, removeTestToken, type TestToken } from '../helpers/softhsm.js';
import { verifyDigestWithOpenssl, verifyWithNode, verifyWithOpenssl, type SignedOver } from './signature-checks.js';

const SIGN_WORKERS = 3;
let token: TestToken;
let hsm: Hsm;
const keys = new Map<KeyAlgorithm, GeneratedKeyPair>();
const logged: { obj: object; msg: string }[] = [];
const logger: HsmLogger = {
  warn: (obj, msg) => logged.push({ obj, msg }),
  info: (obj, msg) => logged.push({ obj, msg }),
};

function keyOf(algorithm: KeyAlgorithm): GeneratedKeyPair {
  const key = keys.get(algorithm);
  if (key === undefined) throw new Error(`no ${algorithm} key`);
  return key;
}

async function expectHsmError(promise: Promise<unknown>, code: HsmErrorCode): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isHsmError(error), `expected an HsmError ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: string }).code).toBe(code);
}

interface Signed {
  readonly key: GeneratedKeyPair;
  readonly over: SignedOver;
  readonly signature: Buffer;
}

/** One signature: a digest or a whole message, with a hash that varies with `i`. */
async function signOne(target: Hsm, key: GeneratedKeyPair, i: number): Promise<Signed> {
  const hashes: readonly DigestAlgorithm[] = ['sha256', 'sha384', 'sha512'];
  const hash = hashes[i % hashes.length]!;
  const message = randomBytes(40 + (i % 50));
  if (i % 2 === 0) {
    const digest = createHash(hash).update(message).digest();
    const signature = await target.signDigest(key, { algorithm: hash, value: digest });
    const over: SignedOver = key.algorithm === 'ed25519' ? { kind: 'raw', data: digest } : { kind: 'message', data: message, hash };
    return { key, over, signature };
  }
  const signature = await target.signMessage(key, message, hash);
  const over: SignedOver = key.algorithm === 'ed25519' ? { kind: 'raw', data: message } : { kind: 'message', data: message, hash };
  return { key, over, signature };
}

function expectAllVerify(results: readonly Signed[]): void {
  for (const { key, over, signature } of results) {
    expect(verifyWithNode(key.algorithm, key.publicKeyPem, over, signature), key.algorithm).toBe(true);
  }
}

/** Sessions in `earlier` that are not current any more must be closed (numbers are reused). */
function expectClosedUnlessCurrent(target: Hsm, earlier: readonly Pkcs11Handle[]): void {
  const internals = hsmInternalsForTesting(target);
  const current = new Set(
    [...internals.sessionHandles(), ...internals.signerSessionHandles()].map((h) => h.toString('hex')),
  );
  for (const handle of earlier) {
    if (current.has(handle.toString('hex'))) continue;
    expect(() => internals.pkcs11.C_GetSessionInfo(handle)).toThrow(/CKR_SESSION_HANDLE_INVALID/);
  }
}

beforeAll(async () => {
  token = await createTestToken('signet-workers');
  hsm = await openPkcs11Hsm({
    modulePath: token.modulePath,
    tokenLabel: token.label,
    pin: token.pin,
    poolSize: 2,
    signWorkers: SIGN_WORKERS,
    logger,
  });
  const generated = await Promise.all(
    KEY_ALGORITHMS.map((algorithm) => hsm.generateKeyPair(algorithm, `signet:workers-${algorithm}@1`)),
  );
  for (const key of generated) keys.set(key.algorithm, key);
});

afterAll(async () => {
  await hsm.close();
  await removeTestToken(token);
});

describe('signing workers', () => {
  it('start with a session each and leave the pool alone', () => {
    const internals = hsmInternalsForTesting(hsm);
    expect(internals.signerWorkersStarted()).toBe(SIGN_WORKERS);
    expect(internals.signerSessionHandles()).toHaveLength(SIGN_WORKERS);
    for (const handle of internals.signerSessionHandles()) {
      // Read-only, logged-in user sessions (CKS_RO_USER_FUNCTIONS).
      expect(internals.pkcs11.C_GetSessionInfo(handle).state).toBe(1);
    }
  });

  it.each(KEY_ALGORITHMS)('every worker signs %s so that node:crypto and openssl verify it', async (algorithm) => {
    const key = keyOf(algorithm);
    const internals = hsmInternalsForTesting(hsm);
    const before = internals.signerJobsCompleted();
    // All workers idle: the first SIGN_WORKERS jobs go to a different worker each.
    const results = await Promise.all(Array.from({ length: 2 * SIGN_WORKERS }, (_, i) => signOne(hsm, key, i)));
    const after = internals.signerJobsCompleted();
    for (let worker = 0; worker < SIGN_WORKERS; worker++) expect(after[worker]! - before[worker]!).toBeGreaterThan(0);

    expectAllVerify(results);
    for (const { over, signature } of results) {
      expect(await verifyWithOpenssl(algorithm, key.publicKeyPem, over, signature)).toBe(true);
    }
    // A digest signature also verifies as such, with no hashing by the verifier.
    if (algorithm !== 'ed25519') {
      const digest = createHash('sha256').update('digest check').digest();
      const signature = await hsm.signDigest(key, { algorithm: 'sha256', value: digest });
      expect(await verifyDigestWithOpenssl(algorithm, key.publicKeyPem, 'sha256', digest, signature)).toBe(true);
    }
  });

  it('500 concurrent signatures of mixed algorithms all verify', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const before = { recoveries: internals.signerRecoveries(), started: internals.signerWorkersStarted() };
    const mix: readonly KeyAlgorithm[] = ['ecdsa-p256', 'ecdsa-p256', 'ed25519', 'ecdsa-p384', 'ecdsa-p256'];
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) => {
        // A few slow RSA signatures among them, so that workers finish out of order.
        const algorithm: KeyAlgorithm = i % 50 === 7 ? 'rsa-pss-3072' : mix[i % mix.length]!;
        return signOne(hsm, keyOf(algorithm), i);
      }),
    );
    expect(results).toHaveLength(500);
    expectAllVerify(results);
    expect(internals.signerRecoveries()).toBe(before.recoveries);
    expect(internals.signerWorkersStarted()).toBe(before.started);
    expect(internals.signerSessionHandles()).toHaveLength(SIGN_WORKERS);
  });

  it('checks input on the calling thread: a bad request never reaches a worker', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const before = internals.signerJobsCompleted();
    const key = keyOf('ecdsa-p256');
    await expectHsmError(hsm.signDigest(key, { algorithm: 'sha256', value: Buffer.alloc(31) }), 'HSM_INVALID_INPUT');
    await expectHsmError(hsm.signDigest({ hsmKeyId: 'XYZ', algorithm: 'ecdsa-p256' }, { algorithm: 'sha256', value: Buffer.alloc(32) }), 'HSM_INVALID_INPUT');
    await expectHsmError(hsm.signMessage(key, 'text' as unknown as Buffer), 'HSM_INVALID_INPUT');
    expect(internals.signerJobsCompleted()).toEqual(before);
  });

  it('reports missing and mismatched keys found by a worker with the caller-facing codes', async () => {
    const digest = { algorithm: 'sha256', value: Buffer.alloc(32, 3) } as const;
    const missing = { hsmKeyId: randomBytes(16).toString('hex'), algorithm: 'ed25519' } as const;
    const error = await hsm.signDigest(missing, digest).catch((e: unknown) => e);
    expect(isHsmError(error, 'HSM_KEY_NOT_FOUND')).toBe(true);
    expect((error as Error).message).toContain(missing.hsmKeyId);
    expect((error as Error).message).not.toContain(token.pin);
    const p384 = keyOf('ecdsa-p384');
    await expectHsmError(hsm.signDigest({ hsmKeyId: p384.hsmKeyId, algorithm: 'ecdsa-p256' }, digest), 'HSM_KEY_NOT_FOUND');
    await expectHsmError(hsm.signDigest({ hsmKeyId: p384.hsmKeyId, algorithm: 'rsa-pss-4096' }, digest), 'HSM_KEY_NOT_FOUND');
    // The right reference still signs on every worker afterwards.
    expectAllVerify(await Promise.all(Array.from({ length: 6 }, (_, i) => signOne(hsm, p384, i))));
  });

  it('replaces a killed worker; its job is retried and no caller sees an error or a wrong answer', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const started = internals.signerWorkersStarted();
    const earlier = internals.signerSessionHandles();
    const key = keyOf('ecdsa-p256');
    const edKey = keyOf('ed25519');
    logged.length = 0;

    const jobs = Array.from({ length: 300 }, (_, i) => signOne(hsm, i % 3 === 0 ? edKey : key, i));
    // Let the burst get going: with 300 queued, every worker always holds a job.
    await jobs[10];
    await internals.killSignerWorker(0);
    const settled = await Promise.allSettled(jobs);
    expect(settled.flatMap((result) => (result.status === 'rejected' ? [String(result.reason)] : []))).toEqual([]);
    expectAllVerify(settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : [])));

    expect(internals.signerWorkersStarted()).toBe(started + 1);
    const retried = logged.filter(({ msg }) => msg === 'HSM signing worker stopped; starting a new one');
    expect(retried).toHaveLength(1);
    expect(retried[0]?.obj).toMatchObject({ worker: 0 });
    expect((retried[0]?.obj as { jobsRetried: number }).jobsRetried).toBeGreaterThan(0);
    expect(JSON.stringify(logged)).not.toContain(token.pin);

    // The dead worker's session was closed for it; the replacement has its own.
    await vi.waitFor(() => {
      expect(internals.signerWorkersReady()).toBe(SIGN_WORKERS);
    });
    expectAllVerify(await Promise.all(Array.from({ length: 2 * SIGN_WORKERS }, (_, i) => signOne(hsm, key, i))));
    expect(internals.signerSessionHandles()).toHaveLength(SIGN_WORKERS);
    expectClosedUnlessCurrent(hsm, earlier);
  });

  it('replaces an idle worker that was killed, and restarts one killed while starting after a delay', async () => {
    const internals = hsmInternalsForTesting(hsm);
    const key = keyOf('ecdsa-p256');
    const started = internals.signerWorkersStarted();
    const last = SIGN_WORKERS - 1;
    await internals.killSignerWorker(last);
    expectAllVerify(await Promise.all(Array.from({ length: 30 }, (_, i) => signOne(hsm, key, i))));
    await vi.waitFor(() => {
      expect(internals.signerWorkersReady()).toBe(SIGN_WORKERS);
    });
    expect(internals.signerWorkersStarted()).toBe(started + 1);

    // Killed before it is ready, a worker counts as a failed start: its replacement
    // comes after a short delay, meanwhile the others take the jobs.
    await internals.killSignerWorker(last); // The ready replacement.
    await internals.killSignerWorker(last); // Its own replacement, still starting.
    expectAllVerify(await Promise.all(Array.from({ length: 30 }, (_, i) => signOne(hsm, key, i))));
    await vi.waitFor(
      () => {
        expect(internals.signerWorkersReady()).toBe(SIGN_WORKERS);
      },
      { timeout: 5_000 },
    );
    expect(internals.signerWorkersStarted()).toBe(started + 3);
    expectAllVerify(await Promise.all(Array.from({ length: 30 }, (_, i) => signOne(hsm, key, i))));
    expect(internals.signerSessionHandles()).toHaveLength(SIGN_WORKERS);
  });
});

describe('the signing queue', () => {
  it('refuses at once when the wait queue is full, and times out waiting for a worker', async () => {
    const rsa = keyOf('rsa-pss-4096');
    const p256 = keyOf('ecdsa-p256');
    const options = { modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, poolSize: 1, signWorkers: 1 };
    const noQueue = await openPkcs11Hsm({ ...options, maxWaiting: 0 });
    try {
      // The worker holds the job it signs and the next few; nothing may wait beyond that.
      const held = Array.from({ length: JOBS_PER_WORKER }, (_, i) => signOne(noQueue, p256, i));
      await expectHsmError(signOne(noQueue, p256, JOBS_PER_WORKER), 'HSM_UNAVAILABLE');
      expectAllVerify(await Promise.all(held));
    } finally {
      await noQueue.close();
    }

    const impatient = await openPkcs11Hsm({ ...options, acquireTimeoutMs: 1 });
    try {
      // An RSA-4096 signature takes several milliseconds in SoftHSM, and the worker holds
      // nothing else: the jobs queued behind it wait at least that long for a free slot,
      // so they give up after 1 ms with HSM_UNAVAILABLE. (With fast jobs in the slot, a
      // loaded machine could deliver the worker's answer in the same turn of the event
      // loop as the 1 ms timer, and a queued job would be dispatched before it fired.)
      const slow = signOne(impatient, rsa, 0);
      // Held by the worker behind the slow one: they do not time out.
      const held = Array.from({ length: JOBS_PER_WORKER - 1 }, (_, i) => signOne(impatient, rsa, i + 1));
      const waiting = Array.from({ length: 5 }, (_, i) => signOne(impatient, p256, i));
      for (const job of waiting) await expectHsmError(job, 'HSM_UNAVAILABLE');
      expectAllVerify([await slow, ...(await Promise.all(held))]);
      // The worker is still fine afterwards.
      expectAllVerify([await signOne(impatient, p256, 9)]);
    } finally {
      await impatient.close();
    }
  });
});

describe('close', () => {
  it('finishes the signatures in flight, then stops the workers and closes their sessions', async () => {
    const other = await openPkcs11Hsm({
      modulePath: token.modulePath,
      tokenLabel: token.label,
      pin: token.pin,
      poolSize: 1,
      signWorkers: 2,
    });
    const internals = hsmInternalsForTesting(other);
    const sessions = [...internals.sessionHandles(), ...internals.signerSessionHandles()];
    expect(sessions).toHaveLength(3);

    const inFlight = Array.from({ length: 120 }, (_, i) =>
      signOne(other, keyOf(i % 40 === 0 ? 'rsa-pss-3072' : i % 2 === 0 ? 'ecdsa-p256' : 'ed25519'), i),
    );
    const closing = other.close();
    await expectHsmError(signOne(other, keyOf('ecdsa-p256'), 0), 'HSM_POOL_CLOSED');
    await expectHsmError(other.ping(), 'HSM_POOL_CLOSED');
    const settled = await Promise.allSettled(inFlight);
    expect(settled.filter((result) => result.status === 'rejected')).toEqual([]);
    expectAllVerify(settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : [])));
    await closing;

    expect(internals.signerSessionHandles()).toEqual([]);
    for (const handle of sessions) {
      expect(() => internals.pkcs11.C_GetSessionInfo(handle)).toThrow(/CKR_SESSION_HANDLE_INVALID/);
    }
    await expect(other.close()).resolves.toBeUndefined(); // Idempotent.

    // The adapter still open shares the login: closing the other did not log it out.
    const recoveries = hsmInternalsForTesting(hsm).signerRecoveries();
    expectAllVerify(await Promise.all(Array.from({ length: 10 }, (_, i) => signOne(hsm, keyOf('ecdsa-p384'), i))));
    expect(hsmInternalsForTesting(hsm).signerRecoveries()).toBe(recoveries);
  });
});
