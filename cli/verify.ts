/**
 * `signet verify`: the deployment gate. Reads the release (artifacts, manifest,
 * signature, the receipt `signet sign` wrote beside it) and the trust bundle, hashes
 * the artifacts as it streams them, and hands everything to the pure verifier
 * (verify/verify-release.ts). Prints one line (or JSON) and exits with the failure
 * class's status (verify/result.ts), which examples/ci/deploy-gate.sh branches on.
 *
 * No network, except fetching the trust bundle once when it is given as an https URL;
 * `--trust-bundle-sha256` pins it (a file too) by the SHA-256 of its bytes.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { request } from 'node:https';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ManifestError } from '../manifest/errors.js';
import { listArtifactFiles, listReleaseDirectory } from '../manifest/create.js';
import type { HashedArtifactInput } from '../verify/artifacts.js';
import { failure, VerificationRefusal, type VerifyResult } from '../verify/result.js';
import { verifyRelease } from '../verify/verify-release.js';
import { CliError } from './errors.js';

export const VERIFY_USAGE = `  verify --manifest F --signature F [--receipt F] (--dir D | --artifact F …)
       --trust-bundle FILE|URL [--trust-bundle-sha256 HEX] [--repository R] [--workflow W] [--ref GLOB] [--json]
                                               verify a release offline (the receipt defaults to <signature>.receipt.json);
                                               exit 0 verified, 1 error, 2 usage, 3 artifact changed, 4 artifact not in
                                               the manifest or missing, 5 manifest or signature bad, 6 key not trusted,
                                               7 key not valid at the log time, 8 log proof bad, 9 checkpoint bad,
                                               10 identity not the one required
`;

export interface VerifyOptions {
  readonly manifest: string;
  readonly signature: string;
  readonly receipt: string | undefined;
  readonly dir: string | undefined;
  readonly artifacts: readonly string[];
  readonly trustBundle: string;
  readonly trustBundleSha256: string | undefined;
  readonly repository: string | undefined;
  readonly workflow: string | undefined;
  readonly ref: string | undefined;
}

/** The trust bundle is small; anything much larger is not one. */
const MAX_TRUST_BUNDLE_BYTES = 32 * 1024 * 1024;
const FETCH_TIMEOUT_MS = 30_000;

function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch {
    throw new VerificationRefusal('input-invalid', 'FILE_UNREADABLE', `cannot read the ${what} (${path})`);
  }
}

/** One GET over https, no redirects, size-limited; the only network access `signet verify` makes. */
async function fetchTrustBundle(url: string): Promise<Buffer> {
  const unavailable = (detail: string) => new VerificationRefusal('input-invalid', 'TRUST_BUNDLE_UNAVAILABLE', `cannot fetch the trust bundle from ${url}: ${detail}`);
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { method: 'GET', headers: { accept: 'application/json' }, timeout: FETCH_TIMEOUT_MS }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(unavailable(`HTTP ${String(res.statusCode)}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_TRUST_BUNDLE_BYTES) {
          req.destroy();
          reject(unavailable('the answer is too large to be a trust bundle'));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => {
        resolvePromise(Buffer.concat(chunks));
      });
      res.on('error', (error: Error) => {
        reject(unavailable(error.message));
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (error: Error) => {
      reject(unavailable(error.message));
    });
    req.end();
  });
}

async function loadTrustBundle(source: string, pin: string | undefined): Promise<unknown> {
  const bytes = /^https:\/\//i.test(source) ? await fetchTrustBundle(source) : readInput(resolve(source), 'trust bundle');
  if (pin !== undefined) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== pin) {
      throw new VerificationRefusal('untrusted-key', 'TRUST_BUNDLE_PIN_MISMATCH', `the trust bundle's SHA-256 is ${actual}, not the pinned ${pin}`);
    }
  }
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new VerificationRefusal('input-invalid', 'TRUST_BUNDLE_INVALID', 'the trust bundle is not JSON');
  }
}

/**
 * SHA-256 and SHA-512 of a file in one read. Synchronous reads into one reused buffer:
 * verification is bound by hashing, and streams would allocate a buffer per chunk and
 * cost a thread-pool round trip each (measured: about a third more CPU time on 1 GiB).
 */
function hashFile(path: string, name: string, buffer: Buffer): HashedArtifactInput {
  const sha256 = createHash('sha256');
  const sha512 = createHash('sha512');
  let size = 0;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    throw new VerificationRefusal('input-invalid', 'ARTIFACT_UNREADABLE', `cannot read artifact ${name}`);
  }
  try {
    for (;;) {
      const read = readSync(fd, buffer, 0, buffer.length, null);
      if (read === 0) break;
      const chunk = buffer.subarray(0, read);
      sha256.update(chunk);
      sha512.update(chunk);
      size += read;
    }
  } catch {
    throw new VerificationRefusal('input-invalid', 'ARTIFACT_UNREADABLE', `cannot read artifact ${name}`);
  } finally {
    closeSync(fd);
  }
  return { name, size, sha256: sha256.digest('hex'), sha512: sha512.digest('hex') };
}

/** The artifacts (a release directory, or files named one by one), hashed one after the other. */
function hashedArtifacts(options: VerifyOptions, exclude: readonly string[]): HashedArtifactInput[] {
  try {
    const files = options.dir !== undefined ? listReleaseDirectory(options.dir, exclude) : listArtifactFiles(options.artifacts);
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    return files.map((file) => hashFile(file.path, file.name, buffer));
  } catch (error) {
    if (!(error instanceof ManifestError)) throw error;
    switch (error.code) {
      case 'ARTIFACTS_MISSING':
        throw new VerificationRefusal('artifact-not-in-manifest', 'ARTIFACT_MISSING', error.message);
      case 'ARTIFACT_NAME_INVALID':
        throw new VerificationRefusal('artifact-not-in-manifest', 'ARTIFACT_NOT_IN_MANIFEST', error.message);
      case 'ARTIFACT_UNREADABLE':
      case 'ARTIFACT_DUPLICATE':
      case 'MANIFEST_INVALID':
      case 'MANIFEST_TOO_LARGE':
      case 'MANIFEST_SOURCE_MISSING':
      case 'MANIFEST_INPUT_INVALID':
        throw new VerificationRefusal('input-invalid', error.code, error.message);
    }
  }
}

export async function runVerify(options: VerifyOptions): Promise<VerifyResult> {
  const manifestPath = resolve(options.manifest);
  const signaturePath = resolve(options.signature);
  const receiptPath = resolve(options.receipt ?? `${options.signature}.receipt.json`);
  try {
    const trustBundle = await loadTrustBundle(options.trustBundle, options.trustBundleSha256);
    const manifest = readInput(manifestPath, 'manifest');
    const signature = readInput(signaturePath, 'signature');
    const receipt = readInput(receiptPath, 'receipt');
    const artifacts = hashedArtifacts(options, [manifestPath, signaturePath, receiptPath]);
    return await verifyRelease({
      manifest,
      signature,
      receipt,
      trustBundle,
      artifacts,
      artifactMode: options.dir !== undefined ? 'directory' : 'files',
      identity: {
        ...(options.repository === undefined ? {} : { repository: options.repository }),
        ...(options.workflow === undefined ? {} : { workflow: options.workflow }),
        ...(options.ref === undefined ? {} : { ref: options.ref }),
      },
    });
  } catch (error) {
    if (error instanceof VerificationRefusal) return failure(error.failureClass, error.code, error.reason);
    throw error;
  }
}

function parseVerifyArgs(args: string[]): VerifyOptions & { json: boolean } {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        manifest: { type: 'string' },
        signature: { type: 'string' },
        receipt: { type: 'string' },
        dir: { type: 'string' },
        artifact: { type: 'string', multiple: true },
        'trust-bundle': { type: 'string' },
        'trust-bundle-sha256': { type: 'string' },
        repository: { type: 'string' },
        workflow: { type: 'string' },
        ref: { type: 'string' },
        json: { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new CliError('USAGE', (error as Error).message);
  }
  const { manifest, signature } = values;
  const trustBundle = values['trust-bundle'];
  if (manifest === undefined || signature === undefined || trustBundle === undefined) {
    throw new CliError('USAGE', 'verify needs --manifest, --signature and --trust-bundle');
  }
  const artifacts = values.artifact ?? [];
  if ((values.dir === undefined) === (artifacts.length === 0)) throw new CliError('USAGE', 'give either --dir or one or more --artifact');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trustBundle) && !/^https:\/\//i.test(trustBundle)) {
    throw new CliError('USAGE', '--trust-bundle is a file or an https URL');
  }
  const pin = values['trust-bundle-sha256']?.toLowerCase();
  if (pin !== undefined && !/^[0-9a-f]{64}$/.test(pin)) throw new CliError('USAGE', '--trust-bundle-sha256 is 64 hex digits');
  for (const [name, value] of [['repository', values.repository], ['workflow', values.workflow], ['ref', values.ref]] as const) {
    if (value === '') throw new CliError('USAGE', `--${name} must not be empty`);
  }
  return {
    manifest,
    signature,
    receipt: values.receipt,
    dir: values.dir,
    artifacts,
    trustBundle,
    trustBundleSha256: pin,
    repository: values.repository,
    workflow: values.workflow,
    ref: values.ref,
    json: values.json === true,
  };
}

/** `signet verify …`: prints the result and returns the exit status. */
export async function runVerifyCommand(args: string[]): Promise<number> {
  const options = parseVerifyArgs(args);
  const result = await runVerify(options);
  if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (result.ok) {
    if (!options.json) process.stdout.write(`verified: ${result.reason}\n`);
    for (const warning of result.warnings) process.stderr.write(`signet verify: warning: ${warning}\n`);
  } else {
    process.stderr.write(`signet verify: ${result.code}: ${result.reason}\n`);
  }
  return result.exitCode;
}
