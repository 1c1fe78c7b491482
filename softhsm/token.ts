/**
 * Creates a SoftHSM2 token in a directory of its own, for `signet init` and tests:
 * the TypeScript twin of softhsm/create-token.sh (same template, same layout), minus
 * package installation and PIN generation, which are the caller's business.
 *
 * Each token directory has its own SOFTHSM2_CONF file, so nothing here ever touches
 * the system token store. SoftHSM reads SOFTHSM2_CONF once, at C_Initialize: a process
 * that wants to use the token must set it before the PKCS#11 module is first loaded.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SignetError } from '../errors/signet-error.js';

export type SoftHsmSetupErrorCode =
  | 'SOFTHSM_UTIL_MISSING'
  | 'SOFTHSM_INVALID_INPUT'
  | 'SOFTHSM_TOKEN_EXISTS'
  | 'SOFTHSM_INIT_FAILED';

export class SoftHsmSetupError extends SignetError<SoftHsmSetupErrorCode> {}

const MODULE_CANDIDATES = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
] as const;

/**
 * The SoftHSM2 PKCS#11 library: the first candidate that exists, else the Debian path
 * (so that opening it reports HSM_MODULE_NOT_FOUND with a path an operator recognises).
 */
export const SOFTHSM_MODULE_PATH: string = MODULE_CANDIDATES.find((path) => existsSync(path)) ?? MODULE_CANDIDATES[0];

export interface SoftHsmToken {
  /** Absolute path of the token's softhsm2.conf: the value for SOFTHSM2_CONF. */
  readonly confPath: string;
  readonly tokenDir: string;
  readonly label: string;
  readonly modulePath: string;
}

/** Placeholder in softhsm2.conf.template. */
const TOKEN_DIR_PLACEHOLDER = '@SIGNET_TOKEN_DIR@';

/**
 * The template ships next to this file in the source tree (softhsm/) and at the package
 * root when running from dist/softhsm/.
 */
const TEMPLATE_CANDIDATES = [
  new URL('./softhsm2.conf.template', import.meta.url),
  new URL('../../softhsm/softhsm2.conf.template', import.meta.url),
];

async function readTemplate(): Promise<string> {
  for (const url of TEMPLATE_CANDIDATES) {
    try {
      return await readFile(url, 'utf8');
    } catch {
      // Try the next location.
    }
  }
  throw new SoftHsmSetupError('SOFTHSM_INIT_FAILED', 'softhsm2.conf.template was not found next to softhsm/token');
}

interface UtilResult {
  readonly stdout: string;
}

/**
 * Runs softhsm2-util with the token's own SOFTHSM2_CONF. Failures are reported from the
 * exit status and stderr only: Node's error message repeats the command line, which
 * holds the PINs.
 */
function softhsm2Util(confPath: string, args: readonly string[]): Promise<UtilResult> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      'softhsm2-util',
      args,
      { env: { ...process.env, SOFTHSM2_CONF: confPath }, encoding: 'utf8', timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error === null) {
          resolvePromise({ stdout });
          return;
        }
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(
            new SoftHsmSetupError(
              'SOFTHSM_UTIL_MISSING',
              'softhsm2-util is not installed: run softhsm/create-token.sh (it installs softhsm2) or install the softhsm2 package',
            ),
          );
          return;
        }
        const detail = stderr.trim().split('\n').slice(-3).join(' ').slice(0, 500);
        const status = error.killed ? 'was killed' : `exited with status ${String(error.code)}`;
        reject(new SoftHsmSetupError('SOFTHSM_INIT_FAILED', `softhsm2-util ${status}${detail === '' ? '' : `: ${detail}`}`));
      },
    );
  });
}

function tokenLabels(showSlotsOutput: string): string[] {
  return [...showSlotsOutput.matchAll(/^\s*Label:[ \t]*(.*?)\s*$/gm)].map((match) => match[1] ?? '');
}

function checkInput(opts: { dir: string; label: string; pin: string; soPin: string }): void {
  const problems: string[] = [];
  const labelBytes = Buffer.byteLength(opts.label, 'utf8');
  // CK_TOKEN_INFO.label is 32 bytes (PKCS#11 v2.40 §3.2); SoftHSM PINs are 4 to 255 bytes.
  if (labelBytes < 1 || labelBytes > 32 || /\p{Cc}/u.test(opts.label)) problems.push('label must be 1 to 32 printable bytes');
  for (const [name, pin] of [
    ['pin', opts.pin],
    ['soPin', opts.soPin],
  ] as const) {
    const bytes = Buffer.byteLength(pin, 'utf8');
    if (bytes < 4 || bytes > 255) problems.push(`${name} must be 4 to 255 bytes`);
  }
  if (opts.dir === '' || /\p{Cc}/u.test(opts.dir)) problems.push('dir must be a path without control characters');
  if (problems.length > 0) throw new SoftHsmSetupError('SOFTHSM_INVALID_INPUT', problems.join('; '));
}

/**
 * Creates `dir/tokens`, writes `dir/softhsm2.conf` and initialises a token labelled
 * `label` in it. `dir` may exist (even hold other tokens); a token with the same label
 * there is an error (SOFTHSM_TOKEN_EXISTS), since the adapter refuses ambiguous labels.
 */
export async function createSoftHsmToken(opts: {
  dir: string;
  label: string;
  pin: string;
  soPin: string;
}): Promise<SoftHsmToken> {
  checkInput(opts);
  const dir = resolve(opts.dir);
  const tokenDir = join(dir, 'tokens');
  const confPath = join(dir, 'softhsm2.conf');
  if (tokenDir === '/var/lib/softhsm/tokens' || tokenDir.startsWith('/var/lib/softhsm/')) {
    throw new SoftHsmSetupError('SOFTHSM_INVALID_INPUT', 'refusing to use the system SoftHSM token store');
  }

  await mkdir(tokenDir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const template = await readTemplate();
  await writeFile(confPath, template.replaceAll(TOKEN_DIR_PLACEHOLDER, tokenDir), { mode: 0o600 });

  const { stdout } = await softhsm2Util(confPath, ['--show-slots']);
  if (tokenLabels(stdout).includes(opts.label)) {
    throw new SoftHsmSetupError('SOFTHSM_TOKEN_EXISTS', `a token labelled "${opts.label}" already exists in ${tokenDir}`);
  }
  await softhsm2Util(confPath, ['--init-token', '--free', '--label', opts.label, '--so-pin', opts.soPin, '--pin', opts.pin]);
  return { confPath, tokenDir, label: opts.label, modulePath: SOFTHSM_MODULE_PATH };
}
