/**
 * The client profile `signet init` writes (`signet-init.json`): lets `sign` and
 * `keys list` take `--dir D` instead of five flags in development.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CliError } from './errors.js';

export interface ClientProfile {
  readonly url: string;
  readonly caCert: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly project: string;
}

export function readClientProfile(dir: string): ClientProfile {
  const path = join(resolve(dir), 'signet-init.json');
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new CliError('FILE_UNREADABLE', `cannot read ${path} (made by signet init)`, { cause: error });
  }
  const { url, caCert, clientCert, clientKey, project } = parsed;
  if (typeof url !== 'string' || typeof caCert !== 'string' || typeof clientCert !== 'string' || typeof clientKey !== 'string' || typeof project !== 'string') {
    throw new CliError('FILE_UNREADABLE', `${path} is not a signet init profile`);
  }
  return { url, caCert, clientCert, clientKey, project };
}
