/**
 * Reads `signet.yaml`, validates every field (collecting all problems before failing),
 * resolves relative paths against the file's directory, and freezes the result.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from './errors.js';
import { configSchema, type SecretSource, type SignetConfig } from './schema.js';

export function formatZodIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`);
}

/** Parses YAML text, reporting syntax errors with their line, without echoing values. */
export function parseYamlDocument(text: string, what: string): unknown {
  try {
    return parseYaml(text, { prettyErrors: true, strict: true, uniqueKeys: true });
  } catch (error) {
    const line = (error as { linePos?: [{ line: number }] }).linePos?.[0]?.line;
    throw new ConfigError('CONFIG_INVALID', `${what} is not valid YAML${line === undefined ? '' : ` (line ${line})`}`, [], {
      cause: error,
    });
  }
}

export function loadConfig(path: string): Readonly<SignetConfig> {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    throw new ConfigError('CONFIG_UNREADABLE', `cannot read config file ${absolute}`, [], { cause: error });
  }
  return parseConfig(parseYamlDocument(text, `config file ${absolute}`), dirname(absolute));
}

export function parseConfig(document: unknown, baseDir: string): Readonly<SignetConfig> {
  const parsed = configSchema.safeParse(document);
  if (!parsed.success) {
    throw new ConfigError('CONFIG_INVALID', 'invalid configuration', formatZodIssues(parsed.error));
  }
  const config = parsed.data;
  const at = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  const resolved: SignetConfig = {
    ...config,
    server: {
      ...config.server,
      tls: {
        certFile: at(config.server.tls.certFile),
        keyFile: at(config.server.tls.keyFile),
        clientCaFile: at(config.server.tls.clientCaFile),
        ...(config.server.tls.officerCaFile === undefined ? {} : { officerCaFile: at(config.server.tls.officerCaFile) }),
      },
    },
    hsm: {
      ...config.hsm,
      pin: config.hsm.pin.file === undefined ? config.hsm.pin : { file: at(config.hsm.pin.file) },
      ...(config.hsm.softhsm2Conf === undefined ? {} : { softhsm2Conf: at(config.hsm.softhsm2Conf) }),
    },
    storage:
      config.storage.driver === 'sqlite'
        ? { driver: 'sqlite', sqlite: { path: at(config.storage.sqlite.path) } }
        : {
            ...config.storage,
            postgres: {
              ...config.storage.postgres,
              url:
                typeof config.storage.postgres.url !== 'string' && config.storage.postgres.url.file !== undefined
                  ? { file: at(config.storage.postgres.url.file) }
                  : config.storage.postgres.url,
            },
          },
    policy: { file: at(config.policy.file) },
    oidc: {
      ...config.oidc,
      issuers: config.oidc.issuers.map((issuer) => ({
        ...issuer,
        jwks: 'file' in issuer.jwks ? { file: at(issuer.jwks.file) } : issuer.jwks,
        ...(issuer.caFile === undefined ? {} : { caFile: at(issuer.caFile) }),
      })),
    },
  };
  return deepFreeze(resolved);
}

/**
 * Reads a secret named by the config. The value is trimmed of one trailing newline
 * and never logged or put in an error message.
 */
export function readSecret(source: SecretSource, what: string): string {
  let value: string | undefined;
  if (source.env !== undefined) {
    value = process.env[source.env];
    if (value === undefined || value === '') {
      throw new ConfigError('CONFIG_SECRET_MISSING', `${what}: environment variable ${source.env} is not set`);
    }
  } else if (source.file !== undefined) {
    try {
      value = readFileSync(source.file, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      throw new ConfigError('CONFIG_SECRET_MISSING', `${what}: cannot read secret file ${source.file}`, [], { cause: error });
    }
    if (value === '') throw new ConfigError('CONFIG_SECRET_MISSING', `${what}: secret file ${source.file} is empty`);
  }
  if (value === undefined) throw new ConfigError('CONFIG_SECRET_MISSING', `${what}: no source given`);
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
