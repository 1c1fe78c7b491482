/**
 * Configuration of the OIDC issuers whose id tokens the service accepts
 * (signet.yaml `oidc`). Validated with the rest of the config at start.
 */
import { z } from 'zod';

/** Asymmetric algorithms only: a symmetric `alg` would let anyone holding the public key forge tokens. */
export const TOKEN_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const;
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];

/** Known CI issuers: their claim sets are documented in README (policy claim rules). */
export const ISSUER_PRESETS = ['github-actions', 'gitlab-ci', 'generic'] as const;
export type IssuerPreset = (typeof ISSUER_PRESETS)[number];

const httpsUrl = z.url({ protocol: /^https$/, error: 'must be an https:// URL' });

export const issuerSchema = z
  .object({
    /** Name used by policies (`identities[].issuer`). */
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
    /** The exact `iss` value of its tokens. */
    issuer: z.string().min(1).max(512),
    preset: z.enum(ISSUER_PRESETS).default('generic'),
    /**
     * Where its keys come from: OpenID discovery at `<issuer>/.well-known/openid-configuration`
     * (default), an explicit JWKS URL on the issuer's host, or a static JWKS file for
     * air-gapped issuers. Relative paths are relative to signet.yaml.
     */
    jwks: z
      .union([
        z.object({ discovery: z.literal(true) }).strict(),
        z.object({ uri: httpsUrl }).strict(),
        z.object({ file: z.string().min(1) }).strict(),
      ])
      .default({ discovery: true }),
    algorithms: z.array(z.enum(TOKEN_ALGORITHMS)).min(1).default([...TOKEN_ALGORITHMS]),
    /**
     * Extra CA certificates (PEM file) to trust when fetching discovery and JWKS over
     * HTTPS, for issuers behind a private CA (GitHub Enterprise Server, self-managed
     * GitLab, tests). The system store is used when absent.
     */
    caFile: z.string().min(1).optional(),
  })
  .strict();

export const oidcSchema = z
  .object({
    /**
     * This service's audience: tokens must carry it in `aud`. Never the CI platform's
     * default audience (GitHub's is the repository owner's URL), so a token minted for
     * another service cannot be replayed here.
     */
    audience: z.string().min(1).max(256),
    /** Clock leeway for exp/nbf/iat in seconds (default 30, at most 60). */
    leewaySeconds: z.number().int().min(0).max(60).default(30),
    /** Oldest accepted `iat`, in seconds (default 15 minutes). */
    maxTokenAgeSeconds: z.number().int().min(30).max(86_400).default(900),
    /** Largest accepted token, in bytes. */
    maxTokenBytes: z.number().int().min(1024).max(65_536).default(16_384),
    /** JWKS cache: how long fetched keys are trusted, and the least time between two refreshes of one issuer. */
    jwksCacheSeconds: z.number().int().min(10).max(86_400).default(600),
    jwksCooldownSeconds: z.number().int().min(1).max(3600).default(30),
    /** Timeout for one discovery or JWKS fetch, and the largest accepted response. */
    fetchTimeoutMs: z.number().int().min(100).max(30_000).default(5000),
    maxJwksBytes: z.number().int().min(1024).max(1_048_576).default(131_072),
    issuers: z.array(issuerSchema).min(1),
  })
  .strict()
  .superRefine((oidc, ctx) => {
    const names = new Set<string>();
    const issuers = new Set<string>();
    oidc.issuers.forEach((issuer, index) => {
      if (names.has(issuer.name)) ctx.addIssue({ code: 'custom', path: ['issuers', index, 'name'], message: 'listed twice' });
      if (issuers.has(issuer.issuer)) ctx.addIssue({ code: 'custom', path: ['issuers', index, 'issuer'], message: 'listed twice' });
      names.add(issuer.name);
      issuers.add(issuer.issuer);
    });
  });

export type IssuerConfig = z.output<typeof issuerSchema>;
export type OidcConfig = z.output<typeof oidcSchema>;
