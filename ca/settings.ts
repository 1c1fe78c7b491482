/**
 * The `ca:` section of `signet.yaml` and the settings the CA derives from it: how long
 * each certificate lives, where verifiers fetch the CRL, when expiry warnings start.
 * Every value has a default, so a configuration without the section is valid.
 */
import { z } from 'zod';

export const CA_DEFAULTS = Object.freeze({
  organization: 'Signet',
  rootValidityDays: 3650,
  intermediateValidityDays: 1825,
  leafValidityDays: 365,
  crlValidityHours: 168,
  expiryWarningDays: 30,
});

/** An absolute http(s) URL without query or fragment; the public base of this service. */
const publicUrl = z
  .string()
  .max(512)
  .refine(
    (value) => {
      try {
        const url = new URL(value);
        return (url.protocol === 'https:' || url.protocol === 'http:') && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
      } catch {
        return false;
      }
    },
    { error: 'must be an absolute http(s) URL without query, fragment or credentials' },
  );

export const caSchema = z
  .object({
    /**
     * Where verifiers reach this service's public endpoints, e.g. `https://signet.example.com`.
     * Written into leaf certificates (CRL distribution point). Default: `https://` and
     * the host part of `log.origin`.
     */
    publicUrl: publicUrl.optional(),
    /** O= of every CA and leaf subject. */
    organization: z.string().min(1).max(64).regex(/^[^,=+<>#;"\\]+$/, 'no DN special characters').default(CA_DEFAULTS.organization),
    rootValidityDays: z.number().int().min(30).max(36_500).default(CA_DEFAULTS.rootValidityDays),
    intermediateValidityDays: z.number().int().min(7).max(36_500).default(CA_DEFAULTS.intermediateValidityDays),
    leafValidityDays: z.number().int().min(1).max(3650).default(CA_DEFAULTS.leafValidityDays),
    /** thisUpdate → nextUpdate of each CRL; the service signs a new one when half of it has passed. */
    crlValidityHours: z.number().int().min(2).max(24 * 366).default(CA_DEFAULTS.crlValidityHours),
    /** Certificates expiring within this many days show in /readyz and are logged as warnings. */
    expiryWarningDays: z.number().int().min(0).max(3650).default(CA_DEFAULTS.expiryWarningDays),
  })
  .strict()
  .refine((ca) => ca.intermediateValidityDays <= ca.rootValidityDays, {
    error: 'intermediateValidityDays may not exceed rootValidityDays',
    path: ['intermediateValidityDays'],
  })
  .default({ ...CA_DEFAULTS });

export type CaConfig = z.output<typeof caSchema>;

/** What the CA and the trust routes need, derived once from the validated config. */
export interface CaSettings {
  readonly organization: string;
  readonly rootValidityDays: number;
  readonly intermediateValidityDays: number;
  readonly leafValidityDays: number;
  readonly crlValidityHours: number;
  readonly expiryWarningDays: number;
  /** Base URL of the public endpoints, without a trailing slash. */
  readonly publicUrl: string;
  /** The log origin: leaf SANs are `https://<origin>/keys/<keyId>`. */
  readonly logOrigin: string;
}

export function caSettingsFrom(config: { readonly ca: CaConfig; readonly log: { readonly origin: string } }): CaSettings {
  const host = config.log.origin.split('/')[0] ?? config.log.origin;
  const base = config.ca.publicUrl ?? `https://${host}`;
  return Object.freeze({
    organization: config.ca.organization,
    rootValidityDays: config.ca.rootValidityDays,
    intermediateValidityDays: config.ca.intermediateValidityDays,
    leafValidityDays: config.ca.leafValidityDays,
    crlValidityHours: config.ca.crlValidityHours,
    expiryWarningDays: config.ca.expiryWarningDays,
    publicUrl: base.replace(/\/+$/, ''),
    logOrigin: config.log.origin,
  });
}
