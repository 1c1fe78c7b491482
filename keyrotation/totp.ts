/**
 * Officers' second factor: TOTP (RFC 6238) as every authenticator app implements it —
 * HMAC-SHA-1, 6 digits, 30-second steps counted from the Unix epoch (RFC 6238 §4) —
 * computed by the `otpauth` library (HOTP of RFC 4226 over node:crypto's HMAC).
 *
 * Verification accepts the current step and one step either side (RFC 6238 §5.2
 * recommends at most one step of network delay) and returns the step that matched,
 * so the caller can enforce single use: a code is accepted only if its step is after
 * the last step this officer used (RFC 6238 §5.2: "the verifier MUST NOT accept the
 * second attempt of the OTP after the successful validation has been issued for the
 * first OTP"). Keeping the last step per officer, not per proposal, also stops one
 * code from approving two proposals.
 *
 * Pure apart from `newTotpSecret` (randomness). Secrets never appear in errors.
 */
import { randomBytes } from 'node:crypto';
import { HOTP, Secret, TOTP } from 'otpauth';
import { RotationError } from './errors.js';

export const TOTP_ALGORITHM = 'SHA1';
export const TOTP_DIGITS = 6;
export const TOTP_PERIOD_SECONDS = 30;
/** Steps accepted on either side of the current one. */
export const TOTP_WINDOW = 1;
/** 160 bits: the length RFC 4226 §4 (R6) recommends and HMAC-SHA-1's block-friendly size. */
export const TOTP_SECRET_BYTES = 20;
/** RFC 4226 §4 (R6): the shared secret MUST be at least 128 bits. */
const MIN_SECRET_BYTES = 16;
const MAX_SECRET_BYTES = 64;
const CODE = /^[0-9]{6}$/;

export type TotpCheck =
  | { readonly ok: true; readonly step: number }
  | { readonly ok: false; readonly reason: 'TOTP_INVALID' | 'TOTP_REUSED' };

/** A fresh random secret (20 bytes, node:crypto CSPRNG). */
export function newTotpSecret(): Buffer {
  return randomBytes(TOTP_SECRET_BYTES);
}

/** RFC 4648 base32 without padding, as otpauth URIs and `signet init --json` carry it. */
export function totpSecretToBase32(secret: Uint8Array): string {
  return toOtpSecret(secret).base32;
}

/**
 * Parses a base32 secret (case-insensitive, padding and spaces ignored, as apps show
 * it). Throws TOTP_SECRET_INVALID without echoing the input.
 */
export function totpSecretFromBase32(text: string): Buffer {
  let bytes: Uint8Array;
  try {
    bytes = Secret.fromBase32(text.replace(/[\s=]/g, '').toUpperCase()).bytes;
  } catch {
    throw new RotationError('TOTP_SECRET_INVALID', 'the TOTP secret is not valid base32');
  }
  const secret = Buffer.from(bytes);
  checkSecretLength(secret);
  return secret;
}

/** The RFC 6238 time step of an instant: floor(unix seconds / 30). */
export function totpStepAt(at: Date): number {
  return Math.floor(epochMillis(at) / 1000 / TOTP_PERIOD_SECONDS);
}

/** The code for a time step (for `signet init` demos, the CLI and tests). */
export function totpCodeForStep(secret: Uint8Array, step: number): string {
  if (!Number.isSafeInteger(step) || step < 0) throw new TypeError('a TOTP step is a non-negative integer');
  return HOTP.generate({ secret: toOtpSecret(secret), algorithm: TOTP_ALGORITHM, digits: TOTP_DIGITS, counter: step });
}

export function totpCodeAt(secret: Uint8Array, at: Date): string {
  return totpCodeForStep(secret, totpStepAt(at));
}

/**
 * Checks `code` against the steps around `at`. Among the steps in the window whose code
 * matches, returns the earliest one after `lastUsedStep` (so an accepted code burns as
 * little of the future as possible); TOTP_REUSED when the code matches only steps at
 * or before it; TOTP_INVALID when it matches none or is not six ASCII digits.
 * Comparisons are constant-time (otpauth uses crypto.timingSafeEqual).
 */
export function checkTotpCode(input: {
  readonly secret: Uint8Array;
  readonly code: string;
  readonly at: Date;
  readonly lastUsedStep: number | null;
}): TotpCheck {
  const { code, lastUsedStep } = input;
  if (lastUsedStep !== null && (!Number.isSafeInteger(lastUsedStep) || lastUsedStep < 0)) {
    throw new TypeError('lastUsedStep is a non-negative integer or null');
  }
  if (typeof code !== 'string' || !CODE.test(code)) return { ok: false, reason: 'TOTP_INVALID' };
  const secret = toOtpSecret(input.secret);
  const current = totpStepAt(input.at);
  let matchedEarlier = false;
  for (let step = current - TOTP_WINDOW; step <= current + TOTP_WINDOW; step++) {
    if (step < 0) continue;
    const matches =
      HOTP.validate({ token: code, secret, algorithm: TOTP_ALGORITHM, digits: TOTP_DIGITS, counter: step, window: 0 }) === 0;
    if (!matches) continue;
    if (lastUsedStep === null || step > lastUsedStep) return { ok: true, step };
    matchedEarlier = true;
  }
  return { ok: false, reason: matchedEarlier ? 'TOTP_REUSED' : 'TOTP_INVALID' };
}

/**
 * The Key URI an authenticator app imports (Google Authenticator Key Uri Format:
 * `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`).
 * The URI contains the secret: show it once, to the officer, and never log it.
 */
export function otpauthUri(input: { readonly officer: string; readonly secret: Uint8Array; readonly issuer: string }): string {
  if (input.officer === '' || input.issuer === '') throw new TypeError('officer and issuer must not be empty');
  // The Key Uri Format separates issuer and account with ":" in the label.
  if (input.issuer.includes(':')) throw new TypeError('the issuer must not contain ":"');
  return new TOTP({
    issuer: input.issuer,
    label: input.officer,
    issuerInLabel: true,
    secret: toOtpSecret(input.secret),
    algorithm: TOTP_ALGORITHM,
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
  }).toString();
}

function checkSecretLength(secret: Uint8Array): void {
  if (secret.length < MIN_SECRET_BYTES || secret.length > MAX_SECRET_BYTES) {
    throw new RotationError(
      'TOTP_SECRET_INVALID',
      `a TOTP secret is ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} bytes (RFC 4226 §4 asks for at least 128 bits)`,
    );
  }
}

function toOtpSecret(secret: Uint8Array): Secret {
  if (!(secret instanceof Uint8Array)) throw new TypeError('a TOTP secret is a Uint8Array');
  checkSecretLength(secret);
  // A copy of exactly these bytes: a Buffer may be a view into a larger pool.
  return new Secret({ buffer: new Uint8Array(secret).buffer });
}

function epochMillis(at: Date): number {
  const ms = at instanceof Date ? at.getTime() : Number.NaN;
  if (!Number.isFinite(ms) || ms < 0) throw new TypeError('a TOTP time is a valid Date after the Unix epoch');
  return ms;
}
