/**
 * The `governance:` section of `signet.yaml`: officers' second factor, the bound on
 * wrong codes, and scheduled rotation. Every value has a default, so a configuration
 * without the section is valid. Which officers exist and the quorum live in storage
 * and change only through proposals (DESIGN.md); nothing here grants anyone anything.
 */
import { z } from 'zod';

export const GOVERNANCE_DEFAULTS = Object.freeze({
  /** CKA_LABEL of the AES key that seals officers' TOTP secrets (signer/secret-sealing.ts). */
  sealingKeyLabel: 'signet:totp-sealing',
  /** The issuer an authenticator app shows next to the officer's name. */
  totpIssuer: 'Signet',
  /** Wrong codes an officer may enter within `wrongCodeWindowSeconds` before approvals are refused. */
  maxWrongCodes: 5,
  wrongCodeWindowSeconds: 900,
  /** A key whose age is within this many days of its project's `maxKeyAgeDays` is reported. */
  keyAgeWarningDays: 14,
  /** Open a rotation proposal (still needing the quorum) when a key reaches the warning window. */
  autoProposeRotation: false,
  /**
   * How long the signing path may rely on the freeze and revocation state it read:
   * changes made by this process apply at once; those made by another replica within
   * this many milliseconds.
   */
  signingGuardCacheMs: 1000,
});

export const governanceSchema = z
  .object({
    sealingKeyLabel: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[\x20-\x7e]+$/, 'printable ASCII')
      .default(GOVERNANCE_DEFAULTS.sealingKeyLabel),
    totpIssuer: z
      .string()
      .min(1)
      .max(64)
      .regex(/^[^:\p{Cc}]+$/u, 'no ":" (it separates issuer and account in otpauth labels)')
      .default(GOVERNANCE_DEFAULTS.totpIssuer),
    maxWrongCodes: z.number().int().min(1).max(100).default(GOVERNANCE_DEFAULTS.maxWrongCodes),
    wrongCodeWindowSeconds: z.number().int().min(30).max(86_400).default(GOVERNANCE_DEFAULTS.wrongCodeWindowSeconds),
    keyAgeWarningDays: z.number().int().min(0).max(3650).default(GOVERNANCE_DEFAULTS.keyAgeWarningDays),
    autoProposeRotation: z.boolean().default(GOVERNANCE_DEFAULTS.autoProposeRotation),
    signingGuardCacheMs: z.number().int().min(0).max(60_000).default(GOVERNANCE_DEFAULTS.signingGuardCacheMs),
  })
  .strict()
  .default({ ...GOVERNANCE_DEFAULTS });

export type GovernanceSettings = z.output<typeof governanceSchema>;
