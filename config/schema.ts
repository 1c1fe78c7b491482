/**
 * The schema of `signet.yaml`. Parsed and validated once at start; every bad field is
 * reported at once (config/load.ts), then the result is frozen. Relative paths are
 * resolved against the directory of the config file.
 *
 * Secrets (the HSM PIN) are never values in this file: the file names an environment
 * variable or a secret file that holds them (DESIGN.md, "Keys, policy and state").
 */
import { z } from 'zod';
import { caSchema } from '../ca/settings.js';
import { governanceSchema } from '../keyrotation/settings.js';
import { oidcSchema } from '../policy/oidc/config.js';
import { metricsSchema } from '../server/metrics-settings.js';

const secretSource = z
  .object({
    env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an environment variable name').optional(),
    file: z.string().min(1).optional(),
  })
  .strict()
  .refine((s) => (s.env === undefined) !== (s.file === undefined), {
    error: 'give exactly one of "env" or "file"',
  });

/** A postgres:// URL that carries no password (in its authority or as a parameter). */
function isPasswordFreeUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.password === '' && !url.searchParams.has('password');
  } catch {
    return false;
  }
}

/**
 * Several replicas share one PostgreSQL database (store/postgres/). The URL may hold a
 * password, so it is a secret source like the HSM PIN; a URL without one (the password
 * then comes from PGPASSWORD or ~/.pgpass) may be written inline.
 */
const postgresStorage = z
  .object({
    url: z.union([
      z
        .string()
        .regex(/^postgres(?:ql)?:\/\/\S+$/, 'must be a postgres:// URL')
        .refine(isPasswordFreeUrl, { error: 'a URL holding a password must come from "env" or "file"' }),
      secretSource,
    ]),
    /** The schema holding Signet's tables (search_path); default: the server's search_path. */
    schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case identifier').optional(),
    poolSize: z.number().int().min(1).max(1000).default(10),
    /** Longest a statement may run, lock waits included, before the request fails with 503. */
    statementTimeoutMs: z.number().int().min(100).max(600_000).default(5_000),
    /** Longest to wait for a connection. */
    connectTimeoutMs: z.number().int().min(100).max(600_000).default(5_000),
  })
  .strict();

export const configSchema = z
  .object({
    server: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8443),
        tls: z
          .object({
            certFile: z.string().min(1),
            keyFile: z.string().min(1),
            /** CA that CI client certificates must chain to for POST /v1/sign. */
            clientCaFile: z.string().min(1),
            /** CA that officers' client certificates must chain to for /v1/officer/*; without it those routes are off. */
            officerCaFile: z.string().min(1).optional(),
          })
          .strict(),
        /** Largest request body accepted, in bytes (a payload carries a whole manifest). */
        maxBodyBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(1024 * 1024),
        /** How long shutdown waits for in-flight requests before closing the HSM and store. */
        shutdownGraceMs: z.number().int().min(0).max(120_000).default(10_000),
        /** Node's per-socket request timeout; stops slow-loris clients holding sockets. */
        requestTimeoutMs: z.number().int().min(1000).max(300_000).default(30_000),
      })
      .strict(),
    hsm: z
      .object({
        module: z.string().min(1),
        tokenLabel: z.string().min(1).max(32),
        tokenSerial: z.string().min(1).max(16).optional(),
        pin: secretSource,
        /** SoftHSM only: its configuration file, exported as SOFTHSM2_CONF before the module loads. */
        softhsm2Conf: z.string().min(1).optional(),
        /** Session pool for key management, readiness and other rare operations. */
        sessions: z.number().int().min(1).max(64).default(2),
        /**
         * Worker threads that sign, each with its own session: C_SignInit and C_Sign both
         * run off the event loop. About the number of cores is right (BENCHMARKS.md).
         */
        signWorkers: z.number().int().min(1).max(16).default(2),
      })
      .strict(),
    storage: z.discriminatedUnion('driver', [
      z.object({ driver: z.literal('sqlite'), sqlite: z.object({ path: z.string().min(1) }).strict() }).strict(),
      z.object({ driver: z.literal('postgres'), postgres: postgresStorage }).strict(),
    ]),
    policy: z.object({ file: z.string().min(1) }).strict(),
    log: z
      .object({
        /** Checkpoint signer name and C2SP origin, e.g. `signet.example.com/log` (letters, digits, ".", "/", "-"). */
        origin: z.string().regex(/^[A-Za-z0-9.\-/]{1,255}$/, 'letters, digits, ".", "/" and "-" only'),
        /** The ECDSA P-256 key (its name) that signs checkpoints; never usable by a project. */
        keyName: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/).default('signet-log'),
      })
      .strict(),
    /** The code-signing CA in the HSM (ca/settings.ts): validity windows, CRL, expiry watch. */
    ca: caSchema,
    /** Officers' TOTP, wrong-code limit, scheduled rotation (keyrotation/settings.ts). */
    governance: governanceSchema,
    /** Issuers of the CI id tokens that POST /v1/sign requires. */
    oidc: oidcSchema,
    /** Where GET /metrics is served (server/metrics-settings.ts). */
    metrics: metricsSchema,
    logging: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
  })
  .strict();

export type SignetConfigInput = z.input<typeof configSchema>;
export type SignetConfig = z.output<typeof configSchema>;
export type SecretSource = z.output<typeof secretSource>;
