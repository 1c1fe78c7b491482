/**
 * The per-project signing policy file. Deny by default: a project, key, client,
 * digest algorithm or format that the file does not name is refused.
 *
 * Client certificates are named by their SHA-256 fingerprint (hex, colons and case
 * ignored); the TLS layer has already checked that they chain to the CI client CA and
 * carry the clientAuth EKU before the policy sees them.
 */
import { z } from 'zod';
import { DIGEST_ALGORITHMS } from '../signer/algorithms.js';
import { SIGNATURE_FORMATS } from '../signer/formats.js';

const keyName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'key names are lowercase letters, digits, ".", "_" and "-"');
const projectName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'project names are lowercase letters, digits, ".", "_" and "-"');

export const fingerprintSchema = z
  .string()
  .transform((s) => s.replace(/^sha256:/i, '').replaceAll(':', '').toLowerCase())
  .pipe(z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 fingerprint (64 hex digits, colons allowed)'));

const clientRule = z
  .object({
    /** SHA-256 fingerprint of the DER client certificate. */
    fingerprint: fingerprintSchema,
    /** Optional subset of the project's keys this client may use; all of them when absent. */
    keys: z.array(keyName).min(1).optional(),
    description: z.string().max(200).optional(),
  })
  .strict();

const projectPolicy = z
  .object({
    keys: z.array(keyName).min(1),
    defaultKey: keyName.optional(),
    digestAlgorithms: z.array(z.enum(DIGEST_ALGORITHMS)).min(1).default([...DIGEST_ALGORITHMS]),
    formats: z.array(z.enum(SIGNATURE_FORMATS)).min(1).default(['raw']),
    clients: z.array(clientRule).default([]),
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
      const clients: unknown[] = Array.isArray(project.clients) ? project.clients : [];
      const seen = new Set<string>();
      clients.forEach((client, index) => {
        const { fingerprint, keys: clientKeys } = (client ?? {}) as { fingerprint?: unknown; keys?: unknown };
        // One entry per certificate: with two, which one grants would depend on order.
        if (typeof fingerprint === 'string') {
          if (seen.has(fingerprint)) ctx.addIssue({ code: 'custom', path: ['clients', index, 'fingerprint'], message: 'listed twice in this project' });
          seen.add(fingerprint);
        }
        for (const key of Array.isArray(clientKeys) ? (clientKeys as unknown[]) : []) {
          if (!keys.includes(key)) {
            ctx.addIssue({ code: 'custom', path: ['clients', index, 'keys'], message: `"${String(key)}" is not one of the project's keys` });
          }
        }
      });
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
