/**
 * TOTP against the RFC 6238 Appendix B vectors (SHA-1), an independent implementation
 * written from the RFCs, and `oathtool` (OATH Toolkit) when it is installed; plus the
 * window and single-use rules.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isRotationError } from '../../keyrotation/errors.js';
import {
  checkTotpCode,
  newTotpSecret,
  otpauthUri,
  totpCodeAt,
  totpSecretFromBase32,
  totpSecretToBase32,
  totpStepAt,
  TOTP_SECRET_BYTES,
} from '../../keyrotation/totp.js';
import { referenceHotp, referenceTotp } from './reference-totp.js';

/** RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890". */
const RFC_SEED = Buffer.from('12345678901234567890', 'ascii');
/** RFC 6238 Appendix B, SHA1 rows: (Unix time, 8-digit TOTP). */
const RFC_VECTORS: readonly (readonly [number, string])[] = [
  [59, '94287082'],
  [1111111109, '07081804'],
  [1111111111, '14050471'],
  [1234567890, '89005924'],
  [2000000000, '69279037'],
  [20000000000, '65353130'],
];

const hasOathtool = ((): boolean => {
  try {
    execFileSync('oathtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function oathtool(secret: Uint8Array, seconds: number): string {
  // --now takes a date; "@<seconds>" is understood by its parse_datetime (GNU date syntax).
  return execFileSync('oathtool', ['--totp=SHA1', '--digits=6', '--time-step-size=30s', `--now=@${seconds}`, Buffer.from(secret).toString('hex')], {
    encoding: 'utf8',
  }).trim();
}

const at = (seconds: number): Date => new Date(seconds * 1000);

describe('RFC 6238 Appendix B (SHA-1)', () => {
  it.each(RFC_VECTORS)('at %i the 6-digit code is the last 6 digits of %s', (seconds, eightDigits) => {
    // code = truncated mod 10^digits (RFC 4226 §5.3), so the 6-digit code is the 8-digit one mod 10^6.
    expect(totpCodeAt(RFC_SEED, at(seconds))).toBe(eightDigits.slice(2));
    expect(referenceTotp(RFC_SEED, seconds, 8)).toBe(eightDigits);
  });

  it.each(RFC_VECTORS)('at %i checkTotpCode accepts the vector and reports its step', (seconds, eightDigits) => {
    const check = checkTotpCode({ secret: RFC_SEED, code: eightDigits.slice(2), at: at(seconds), lastUsedStep: null });
    expect(check).toEqual({ ok: true, step: Math.floor(seconds / 30) });
  });
});

describe.skipIf(!hasOathtool)('against oathtool', () => {
  it.each(RFC_VECTORS)('oathtool agrees at %i', (seconds, eightDigits) => {
    expect(oathtool(RFC_SEED, seconds)).toBe(eightDigits.slice(2));
  });

  it('agrees on random secrets and times', () => {
    for (let i = 0; i < 20; i++) {
      const secret = newTotpSecret();
      const seconds = Math.floor(Math.random() * 4_000_000_000);
      expect(totpCodeAt(secret, at(seconds))).toBe(oathtool(secret, seconds));
    }
  });
});

describe('generation and agreement with the reference', () => {
  it('agrees with the independent RFC implementation on random secrets and times', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 64 }), fc.integer({ min: 0, max: 2 ** 40 }), (secret, seconds) => {
        expect(totpCodeAt(secret, at(seconds))).toBe(referenceTotp(secret, seconds));
      }),
    );
  });

  it('makes 20-byte random secrets that round-trip through base32', () => {
    const secret = newTotpSecret();
    expect(secret).toHaveLength(TOTP_SECRET_BYTES);
    expect(newTotpSecret().equals(secret)).toBe(false);
    const base32 = totpSecretToBase32(secret);
    expect(base32).toMatch(/^[A-Z2-7]{32}$/);
    expect(totpSecretFromBase32(base32).equals(secret)).toBe(true);
    // Authenticator apps show secrets in lower case, grouped, sometimes padded.
    expect(totpSecretFromBase32(base32.toLowerCase().replace(/(.{4})/g, '$1 ')).equals(secret)).toBe(true);
  });

  it('refuses malformed and short secrets without echoing them', () => {
    for (const text of ['not base32!', 'MFRGGZDF', '']) {
      let error: unknown;
      try {
        totpSecretFromBase32(text);
      } catch (e) {
        error = e;
      }
      expect(isRotationError(error, 'TOTP_SECRET_INVALID')).toBe(true);
      if (text !== '') expect((error as Error).message).not.toContain(text);
    }
    expect(() => totpCodeAt(randomBytes(15), new Date())).toThrow(/TOTP secret/);
  });

  it('builds the otpauth URI authenticator apps import', () => {
    const uri = new URL(otpauthUri({ officer: 'alice', secret: RFC_SEED, issuer: 'Signet' }));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(decodeURIComponent(uri.pathname)).toBe('/Signet:alice');
    expect(uri.searchParams.get('secret')).toBe(totpSecretToBase32(RFC_SEED));
    expect(uri.searchParams.get('issuer')).toBe('Signet');
    expect(uri.searchParams.get('algorithm')).toBe('SHA1');
    expect(uri.searchParams.get('digits')).toBe('6');
    expect(uri.searchParams.get('period')).toBe('30');
    expect(() => otpauthUri({ officer: 'alice', secret: RFC_SEED, issuer: 'a:b' })).toThrow(TypeError);
  });
});

describe('checkTotpCode: window of ±1 step and single use', () => {
  const secret = Buffer.from('3132333435363738393031323334353637383930', 'hex');
  const now = 1_700_000_015; // 15 s into a step
  const step = Math.floor(now / 30);

  it('accepts the previous, current and next step and returns the step matched', () => {
    for (const delta of [-1, 0, 1]) {
      const code = referenceHotp(secret, step + delta);
      expect(checkTotpCode({ secret, code, at: at(now), lastUsedStep: null })).toEqual({ ok: true, step: step + delta });
    }
  });

  it('refuses codes two steps away', () => {
    for (const delta of [-2, 2]) {
      const code = referenceHotp(secret, step + delta);
      expect(checkTotpCode({ secret, code, at: at(now), lastUsedStep: null })).toEqual({ ok: false, reason: 'TOTP_INVALID' });
    }
  });

  it('refuses a code whose step is not after the last step used', () => {
    const code = referenceHotp(secret, step);
    expect(checkTotpCode({ secret, code, at: at(now), lastUsedStep: step })).toEqual({ ok: false, reason: 'TOTP_REUSED' });
    expect(checkTotpCode({ secret, code, at: at(now + 30), lastUsedStep: step })).toEqual({ ok: false, reason: 'TOTP_REUSED' });
    const earlier = referenceHotp(secret, step - 1);
    expect(checkTotpCode({ secret, code: earlier, at: at(now), lastUsedStep: step })).toEqual({ ok: false, reason: 'TOTP_REUSED' });
    const next = referenceHotp(secret, step + 1);
    expect(checkTotpCode({ secret, code: next, at: at(now), lastUsedStep: step })).toEqual({ ok: true, step: step + 1 });
  });

  it('refuses a code of another secret, and anything that is not six digits', () => {
    const other = randomBytes(20);
    const window = [-1, 0, 1].map((d) => referenceHotp(secret, step + d));
    const foreign = referenceHotp(other, step);
    if (!window.includes(foreign)) {
      expect(checkTotpCode({ secret, code: foreign, at: at(now), lastUsedStep: null })).toEqual({ ok: false, reason: 'TOTP_INVALID' });
    }
    const code = referenceHotp(secret, step);
    for (const bad of ['', code.slice(1), `${code}0`, ` ${code}`, `${code.slice(0, 5)}a`, '１２３４５６']) {
      expect(checkTotpCode({ secret, code: bad, at: at(now), lastUsedStep: null })).toEqual({ ok: false, reason: 'TOTP_INVALID' });
    }
  });

  it('never accepts a step at or before the last used one, whatever the code (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 2 ** 33 }), fc.integer({ min: -3, max: 3 }), fc.integer({ min: -2, max: 2 }), (s, codeDelta, lastDelta) => {
        const code = referenceHotp(secret, s + codeDelta);
        const lastUsedStep = s + lastDelta;
        const check = checkTotpCode({ secret, code, at: at(s * 30 + 10), lastUsedStep });
        if (check.ok) {
          expect(check.step).toBeGreaterThan(lastUsedStep);
          expect(Math.abs(check.step - s)).toBeLessThanOrEqual(1);
          expect(referenceHotp(secret, check.step)).toBe(code);
        }
      }),
    );
  });

  it('computes the step from the Unix epoch in 30-second steps', () => {
    expect(totpStepAt(at(59))).toBe(1);
    expect(totpStepAt(at(60))).toBe(2);
    expect(() => totpStepAt(new Date(Number.NaN))).toThrow(TypeError);
  });
});
