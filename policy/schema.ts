/**
 * The per-project signing policy file. Deny by default: a project, client, pipeline
 * identity, key, digest algorithm or format that the file does not name is refused.
 *
 * Client certificates are named by their SHA-256 fingerprint (hex, colons and case
 * ignored); the TLS layer has already checked that they chain to the CI client CA and
 * carry the clientAuth EKU before the policy sees them. Pipeline identities are
 * verified OIDC id tokens, matched by issuer and claim rules.
 */
import { z } from 'zod';
import { DIGEST_ALGORITHMS } from '../signer/algorithms.js';
import { SIGNATURE_FORMATS } from '../signer/formats.js';

const keyName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'key names are lowercase letters, digits, ".", "_" and "-"');
const projectName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'project names are lowercase letters, digits, ".", "_" and "-"');
const issuerName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'an issuer name from signet.yaml oidc.issuers');
const claimName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/, 'a claim name');

export const fingerprintSchema = z
  .string()
  .transform((s) => s.replace(/^sha256:/i, '').replaceAll(':', '').toLowerCase())
  .pipe(z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 fingerprint (64 hex digits, colons allowed)'));

const claimValue = z.union([z.string().max(1024), z.number(), z.boolean()]);

/**
 * How one claim must look. A plain value matches exactly (compared as text, so
 * `ref_protected: true` matches GitHub's "true"); `oneOf` lists exact values; `glob`
 * lists patterns where `*` matches within one path segment (no "/"), `**` matches
 * anything and `?` one character other than "/". Claims that are not strings, numbers
 * or booleans never match.
 */
export const claimMatcherSchema = z.union([
  claimValue,
  z.object({ oneOf: z.array(claimValue).min(1) }).strict(),
  z.object({ glob: z.union([z.string().min(1).max(1024), z.array(z.string().min(1).max(1024)).min(1)]) }).strict(),
]);

const identityRule = z
  .object({
    issuer: issuerName,
    /** Every listed claim must match (AND). Use immutable ids (repository_id, project_id) where you can. */
    claims: z.record(claimName, claimMatcherSchema).default({}),
    /** Optional subset of the project's keys this identity may use. */
    keys: z.array(keyName).min(1).optional(),
    description: z.string().max(200).optional(),
  })
  .strict();

/**
 * A distinguished name as Node prints it (`CN=ci-example\nO=Signet`, certificate order);
 * policies may write the parts separated by ", " instead of newlines.
 */
export function normalizeDistinguishedName(name: string): string {
  return name
    .split(/\n|,\s*/)
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .join(', ');
}

const distinguishedName = z.string().min(3).max(1024).transform(normalizeDistinguishedName);

const clientRule = z
  .object({
    /** SHA-256 fingerprint of the DER client certificate. */
    fingerprint: fingerprintSchema.optional(),
    /** The certificate's subject DN, exactly (e.g. `CN=ci-example, O=Signet`). */
    subject: distinguishedName.optional(),
    /** The DN of the CA that issued it: any certificate of that CI client CA. */
    issuer: distinguishedName.optional(),
    /** Optional subset of the project's keys this client may use; all of them when absent. */
    keys: z.array(keyName).min(1).optional(),
    description: z.string().max(200).optional(),
  })
  .strict()
  .refine((rule) => rule.fingerprint !== undefined || rule.subject !== undefined || rule.issuer !== undefined, {
    error: 'name the certificate by fingerprint, subject or issuer (every one given must match)',
  });

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof DAYS)[number];
const hhmm = z.string().regex(/^(?:[01]\d|2[0-3]):[0-5]\d$/, 'HH:MM, 24-hour');

const timeWindow = z
  .object({
    days: z.array(z.enum(DAYS)).min(1),
    /** UTC, inclusive start and exclusive end; `to` may be "24:00" for the end of the day. */
    from: hhmm,
    to: z.union([hhmm, z.literal('24:00')]),
  })
  .strict()
  .refine((w) => w.from < w.to, { error: '"from" must be before "to" (windows do not wrap midnight; use two)' });

const limits = z
  .object({
    /** Signatures per minute for the whole project (fixed one-minute windows, UTC). */
    projectPerMinute: z.number().int().min(1).optional(),
    /** Signatures per minute for one pipeline identity (issuer and subject). */
    identityPerMinute: z.number().int().min(1).optional(),
    /** Most signatures one key version may ever make for this project, by key name. */
    keyUsage: z.record(keyName, z.number().int().min(1)).optional(),
  })
  .strict();

const projectPolicy = z
  .object({
    keys: z.array(keyName).min(1),
    defaultKey: keyName.optional(),
    digestAlgorithms: z.array(z.enum(DIGEST_ALGORITHMS)).min(1).default([...DIGEST_ALGORITHMS]),
    formats: z.array(z.enum(SIGNATURE_FORMATS)).min(1).default(['raw']),
    clients: z.array(clientRule).default([]),
    /** Pipeline identities allowed to sign (any one rule matching is enough). */
    identities: z.array(identityRule).default([]),
    /**
     * When true, a request must carry the manifest itself (`payload`, an in-toto
     * Statement) and its source repository and commit must equal the token's
     * `repository` and `sha` (GitLab: `project_path` and `sha`).
     */
    requireManifestBinding: z.boolean().default(false),
    limits: limits.default({}),
    /** When set, signing is allowed only inside one of these UTC windows. */
    timeWindows: z.array(timeWindow).min(1).optional(),
    /**
     * Scheduled rotation: the active version of each of the project's keys should be
     * younger than this; keys near it are reported and logged (keyrotation/key-age.ts).
     * It never stops signing: rotating still takes the officers' quorum.
     */
    maxKeyAgeDays: z.number().int().min(1).max(3650).optional(),
  })
  .strict()
  // Cross-field rules. `when: () => true` runs them even when a field elsewhere is
  // invalid, so one pass reports every problem; the input may then be partly invalid,
  // hence the defensive reads.
  .superRefine(
    (project, ctx) => {
      const keys: unknown[] = Array.isArray(project.keys) ? project.keys : [];
      if (typeof project.defaultKey === 'string' && !keys.includes(project.defaultKey)) {
        ctx.addIssue({ code: 'custom', path: ['defaultKey'], message: "must be one of the project's keys" });
      }
      const checkSubset = (list: unknown, path: (string | number)[]): void => {
        for (const key of Array.isArray(list) ? (list as unknown[]) : []) {
          if (!keys.includes(key)) ctx.addIssue({ code: 'custom', path, message: `"${String(key)}" is not one of the project's keys` });
        }
      };
      const clients: unknown[] = Array.isArray(project.clients) ? project.clients : [];
      const seen = new Set<string>();
      clients.forEach((client, index) => {
        const { fingerprint, keys: clientKeys } = (client ?? {}) as { fingerprint?: unknown; keys?: unknown };
        // One entry per certificate: with two, which one grants would depend on order.
        if (typeof fingerprint === 'string') {
          if (seen.has(fingerprint)) ctx.addIssue({ code: 'custom', path: ['clients', index, 'fingerprint'], message: 'listed twice in this project' });
          seen.add(fingerprint);
        }
        checkSubset(clientKeys, ['clients', index, 'keys']);
      });
      const identities: unknown[] = Array.isArray(project.identities) ? project.identities : [];
      identities.forEach((rule, index) => {
        checkSubset((rule as { keys?: unknown } | null)?.keys, ['identities', index, 'keys']);
      });
      const usage = (project.limits as { keyUsage?: unknown } | undefined)?.keyUsage;
      if (usage !== null && typeof usage === 'object') checkSubset(Object.keys(usage), ['limits', 'keyUsage']);
    },
    { when: () => true },
  );

export const policySchema = z
  .object({
    version: z.literal(1),
    projects: z.record(projectName, projectPolicy),
  })
  .strict();

export type PolicyDocument = z.output<typeof policySchema>;
export type ProjectPolicy = z.output<typeof projectPolicy>;
export type IdentityRule = z.output<typeof identityRule>;
export type ClaimMatcher = z.output<typeof claimMatcherSchema>;
export type TimeWindow = z.output<typeof timeWindow>;
