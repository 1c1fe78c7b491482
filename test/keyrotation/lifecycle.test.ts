/**
 * The key lifecycle: every (from, to) pair allowed or refused as the design says, what
 * each change does to the validity window, who signs, and which signatures verify by
 * their log time, including the one-second edges around a compromise.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyError } from '../../keyrotation/errors.js';
import {
  assertSingleActive,
  canSign,
  canTransition,
  planRotation,
  signatureValidAt,
  signatureValidity,
  transition,
  type LifecycleEvent,
} from '../../keyrotation/lifecycle.js';
import { KEY_STATES, type KeyState, type KeyVersionRecord } from '../../store/store.js';

/** The design (issue 6): pending → active → verify-only → retired; compromised from any state. */
const EXPECTED_ALLOWED: ReadonlySet<string> = new Set([
  'pending→active',
  'pending→retired', // a version whose rotation never completed
  'pending→compromised',
  'active→verify-only',
  'active→compromised',
  'verify-only→retired',
  'verify-only→compromised',
  'retired→compromised',
  'compromised→compromised', // only moves the compromise time earlier
]);

const T0 = new Date('2026-01-01T00:00:00.000Z');
const seconds = (date: Date | string): number => Math.floor(new Date(date).getTime() / 1000);
const plus = (date: Date, s: number): Date => new Date(date.getTime() + s * 1000);

function version(state: KeyState, overrides: Partial<KeyVersionRecord> = {}): KeyVersionRecord {
  const base: KeyVersionRecord = {
    keyId: 'demo@1',
    name: 'demo',
    version: 1,
    algorithm: 'ecdsa-p256',
    state,
    hsmKeyId: '00112233445566778899aabbccddeeff',
    publicKeyPem: '-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n',
    createdAt: T0.toISOString(),
    notBefore: T0.toISOString(),
    notAfter: state === 'verify-only' || state === 'retired' ? plus(T0, 3600).toISOString() : null,
    compromisedAt: state === 'compromised' ? plus(T0, 1800).toISOString() : null,
  };
  return { ...base, ...overrides };
}

function eventTo(to: KeyState, at: Date): LifecycleEvent | null {
  switch (to) {
    case 'pending':
      return null;
    case 'compromised':
      return { to, at, compromisedAt: plus(at, -60) };
    case 'active':
    case 'verify-only':
    case 'retired':
      return { to, at };
  }
}

describe('transitions', () => {
  const pairs = KEY_STATES.flatMap((from) => KEY_STATES.map((to) => [from, to] as const));

  it.each(pairs)('%s → %s is allowed exactly when the design says so', (from, to) => {
    const allowed = EXPECTED_ALLOWED.has(`${from}→${to}`);
    expect(canTransition(from, to)).toBe(allowed);
    const event = eventTo(to, plus(T0, 7200));
    if (event === null) {
      // Nothing ever goes back to pending; there is no event for it.
      expect(allowed).toBe(false);
      return;
    }
    if (allowed) {
      const next = transition(version(from), event);
      expect(next.state).toBe(to);
    } else {
      let error: unknown;
      try {
        transition(version(from), event);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(KeyError);
      expect((error as KeyError).code).toBe('KEY_TRANSITION_REFUSED');
    }
  });

  it('does not change the record it is given', () => {
    const record = Object.freeze(version('pending'));
    transition(record, { to: 'active', at: plus(T0, 10) });
    expect(record.state).toBe('pending');
  });

  it('activation opens the window and leaving active closes it', () => {
    const active = transition(version('pending'), { to: 'active', at: plus(T0, 100) });
    expect(active).toMatchObject({ notBefore: plus(T0, 100).toISOString(), notAfter: null });
    const verifyOnly = transition(active, { to: 'verify-only', at: plus(T0, 200) });
    expect(verifyOnly).toMatchObject({ notBefore: plus(T0, 100).toISOString(), notAfter: plus(T0, 200).toISOString() });
    const retired = transition(verifyOnly, { to: 'retired', at: plus(T0, 300) });
    expect(retired).toMatchObject({ state: 'retired', notBefore: verifyOnly.notBefore, notAfter: verifyOnly.notAfter });
  });

  it('a version that never became active keeps an empty window', () => {
    for (const event of [
      { to: 'retired', at: plus(T0, 50) },
      { to: 'compromised', at: plus(T0, 50), compromisedAt: plus(T0, 40) },
    ] as const) {
      const record = transition(version('pending'), event);
      expect(record.notBefore).toBe(record.notAfter);
      for (const t of [seconds(T0) - 1, seconds(T0), seconds(plus(T0, 40)), seconds(plus(T0, 50)), seconds(plus(T0, 99))]) {
        expect(signatureValidity(record, t)).toEqual({ valid: false, reason: 'KEY_NEVER_ACTIVE' });
      }
    }
  });

  it('compromising an active version ends its window and records the compromise time', () => {
    const record = transition(version('active'), { to: 'compromised', at: plus(T0, 500), compromisedAt: plus(T0, 300) });
    expect(record).toMatchObject({
      state: 'compromised',
      notAfter: plus(T0, 500).toISOString(),
      compromisedAt: plus(T0, 300).toISOString(),
    });
  });

  it('refuses a compromise time in the future', () => {
    expect(() => transition(version('active'), { to: 'compromised', at: T0, compromisedAt: plus(T0, 1) })).toThrow(KeyError);
  });

  it('a second compromise report can only move the time earlier', () => {
    const first = transition(version('verify-only'), { to: 'compromised', at: plus(T0, 5000), compromisedAt: plus(T0, 2000) });
    const later = transition(first, { to: 'compromised', at: plus(T0, 6000), compromisedAt: plus(T0, 3000) });
    expect(later.compromisedAt).toBe(plus(T0, 2000).toISOString());
    const earlier = transition(first, { to: 'compromised', at: plus(T0, 6000), compromisedAt: plus(T0, 1000) });
    expect(earlier.compromisedAt).toBe(plus(T0, 1000).toISOString());
  });

  it('rejects invalid dates as caller errors', () => {
    expect(() => transition(version('pending'), { to: 'active', at: new Date(Number.NaN) })).toThrow(TypeError);
  });
});

describe('who signs', () => {
  it.each(KEY_STATES)('%s', (state) => {
    expect(canSign(state)).toBe(state === 'active');
  });
});

describe('signature validity by log time', () => {
  const start = plus(T0, 1000.25); // activation at a fractional second
  const end = plus(T0, 2000.75);
  const active = version('active', { notBefore: start.toISOString() });
  const verifyOnly = version('verify-only', { notBefore: start.toISOString(), notAfter: end.toISOString() });

  it('pending versions never verify', () => {
    expect(signatureValidity(version('pending'), seconds(plus(T0, 10)))).toEqual({ valid: false, reason: 'KEY_NEVER_ACTIVE' });
  });

  it('active: from the second of activation on', () => {
    expect(signatureValidity(active, seconds(start) - 1)).toEqual({ valid: false, reason: 'BEFORE_VALIDITY' });
    expect(signatureValidAt(active, seconds(start))).toBe(true);
    expect(signatureValidAt(active, seconds(start) + 10_000_000)).toBe(true);
  });

  it.each(['verify-only', 'retired'] as const)('%s: within the window, edges included', (state) => {
    const record = { ...verifyOnly, state };
    expect(signatureValidity(record, seconds(start) - 1)).toEqual({ valid: false, reason: 'BEFORE_VALIDITY' });
    expect(signatureValidAt(record, seconds(start))).toBe(true);
    expect(signatureValidAt(record, seconds(end))).toBe(true);
    expect(signatureValidity(record, seconds(end) + 1)).toEqual({ valid: false, reason: 'AFTER_VALIDITY' });
  });

  it('compromised: valid only if the whole second of the log time lies before the compromise', () => {
    const compromisedAt = plus(T0, 1500.5);
    const record = { ...verifyOnly, state: 'compromised' as const, compromisedAt: compromisedAt.toISOString() };
    const c = seconds(compromisedAt);
    expect(signatureValidAt(record, c - 1)).toBe(true);
    expect(signatureValidity(record, c)).toEqual({ valid: false, reason: 'AFTER_COMPROMISE' });
    expect(signatureValidity(record, c + 1)).toEqual({ valid: false, reason: 'AFTER_COMPROMISE' });
    // On an exact second, the second starting at the compromise is already after it.
    const exact = { ...record, compromisedAt: plus(T0, 1500).toISOString() };
    expect(signatureValidAt(exact, seconds(plus(T0, 1499)))).toBe(true);
    expect(signatureValidAt(exact, seconds(plus(T0, 1500)))).toBe(false);
    // And the window still applies.
    expect(signatureValidity(record, seconds(start) - 1)).toEqual({ valid: false, reason: 'BEFORE_VALIDITY' });
  });

  it('a compromise time before activation invalidates everything', () => {
    const record = { ...verifyOnly, state: 'compromised' as const, compromisedAt: T0.toISOString() };
    for (let t = seconds(start) - 2; t <= seconds(end) + 2; t += 7) expect(signatureValidAt(record, t)).toBe(false);
  });

  it('fails closed on malformed times and inconsistent records', () => {
    for (const t of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60]) {
      expect(signatureValidity(active, t)).toEqual({ valid: false, reason: 'INVALID_TIME' });
    }
    expect(signatureValidAt({ ...verifyOnly, notAfter: null }, seconds(start) + 1)).toBe(false);
    expect(signatureValidAt({ ...verifyOnly, state: 'compromised', compromisedAt: null }, seconds(start) + 1)).toBe(false);
    expect(signatureValidAt({ ...verifyOnly, compromisedAt: start.toISOString() }, seconds(start) + 1)).toBe(false);
    expect(signatureValidAt({ ...verifyOnly, notBefore: 'yesterday' }, seconds(start) + 1)).toBe(false);
  });

  it('a signature logged after a compromise never verifies, whatever the history (property)', () => {
    const steps = fc.array(fc.constantFrom('active', 'verify-only', 'retired'), { maxLength: 3 });
    fc.assert(
      fc.property(steps, fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: -100, max: 20_000 }), (path, compromiseOffset, reportDelay, logOffset) => {
        let record = version('pending');
        let at = T0;
        for (const to of path) {
          if (!canTransition(record.state, to)) break;
          at = plus(at, 100);
          record = transition(record, { to, at });
        }
        const compromisedAt = plus(T0, compromiseOffset);
        const reportedAt = new Date(Math.max(at.getTime(), compromisedAt.getTime()) + reportDelay * 1000);
        record = transition(record, { to: 'compromised', at: reportedAt, compromisedAt });
        const t = seconds(T0) + logOffset;
        if (t >= seconds(compromisedAt)) expect(signatureValidAt(record, t)).toBe(false);
        if (path[0] !== 'active') expect(signatureValidAt(record, t)).toBe(false);
      }),
    );
  });
});

describe('rotation plan and the single-active invariant', () => {
  const v1 = version('active', { keyId: 'demo@1', version: 1 });
  const v2 = version('pending', { keyId: 'demo@2', version: 2, hsmKeyId: 'ff'.repeat(16) });

  it('activates the new version and moves the old one to verify-only at the same instant', () => {
    const at = plus(T0, 9000);
    const { retiring, activating } = planRotation([v1, v2], 'demo@2', at);
    expect(retiring).toMatchObject({ keyId: 'demo@1', state: 'verify-only', notAfter: at.toISOString() });
    expect(activating).toMatchObject({ keyId: 'demo@2', state: 'active', notBefore: at.toISOString(), notAfter: null });
    assertSingleActive([retiring, activating]);
  });

  it('refuses when the versions do not allow it', () => {
    const refuses = (versions: KeyVersionRecord[], next: string): void => {
      let error: unknown;
      try {
        planRotation(versions, next, plus(T0, 9000));
      } catch (e) {
        error = e;
      }
      expect((error as KeyError).code).toBe('KEY_STATE_CONFLICT');
    };
    refuses([v1], 'demo@2'); // unknown version
    refuses([v1, { ...v2, state: 'verify-only' }], 'demo@2'); // not pending
    refuses([{ ...v1, state: 'verify-only', notAfter: plus(T0, 10).toISOString() }, v2], 'demo@2'); // no active version
    refuses([v1, { ...v1, keyId: 'demo@3', version: 3 }, v2], 'demo@2'); // two active versions
    refuses([{ ...v1, keyId: 'demo@3', version: 3 }, v2], 'demo@2'); // not newer
    refuses([{ ...v1, notBefore: plus(T0, 10_000).toISOString() }, v2], 'demo@2'); // a clock behind the active version's start
  });

  it('assertSingleActive finds two active versions of one name only', () => {
    assertSingleActive([v1, { ...v1, keyId: 'other@1', name: 'other' }]);
    expect(() => {
      assertSingleActive([v1, { ...v1, keyId: 'demo@2', version: 2 }]);
    }).toThrow(KeyError);
  });
});
