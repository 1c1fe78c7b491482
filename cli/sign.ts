/**
 * `signet sign`: the CI client. Hashes the artifact locally (or sends the manifest
 * bytes), calls POST /v1/sign over mutual TLS, writes the signature in the asked
 * format and, beside it, the whole answer as the receipt (`<out>.receipt.json`),
 * which `signet verify` reads: chain, log entry and leaf, inclusion proof, checkpoint
 * and the logged decision.
 *
 * What `--out` holds, per format (its natural file, what other tools read):
 *   raw              the signature bytes (DER for ECDSA)           default <file>.sig
 *   pgp              the binary OpenPGP signature (`gpg --verify`), and <out>.asc armored
 *                                                                  default <file>.sig
 *   cms              the DER SignedData (`openssl cms -verify`)    default <file>.p7s
 *   dsse             the DSSE envelope, JSON                       default <file>.dsse.json
 *   sigstore-bundle  the Sigstore bundle, JSON                     default <file>.sigstore.json
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { isDigestAlgorithm, type DigestAlgorithm } from '../signer/algorithms.js';
import { PAYLOAD_FORMATS, SIGNATURE_FORMATS, type SignatureFormat } from '../signer/formats.js';
import { CliError } from './errors.js';
import { createAgent, expectOk, requestJson } from './https-client.js';
import { readClientProfile } from './profile.js';

export interface SignOptions {
  readonly dir: string | undefined;
  readonly url: string | undefined;
  readonly ca: string | undefined;
  readonly cert: string | undefined;
  readonly key: string | undefined;
  readonly project: string | undefined;
  readonly keyId: string | undefined;
  readonly file: string | undefined;
  readonly payload: string | undefined;
  readonly digestAlgorithm: string;
  readonly format: string;
  readonly out: string | undefined;
  readonly receipt: string | undefined;
  /** The CI id token: `--token`, else `--token-file`, else $SIGNET_ID_TOKEN. */
  readonly token: string | undefined;
  readonly tokenFile: string | undefined;
  readonly dryRun: boolean;
}

export interface DryRunOutcome {
  readonly dryRun: true;
  readonly allow: boolean;
  readonly reasons: readonly { code: string; message: string }[];
  readonly keyId?: string;
}

export interface SignOutcome {
  readonly signatureFile: string;
  /** pgp: the ASCII-armored signature beside it. */
  readonly armoredFile?: string;
  readonly receiptFile: string;
  readonly keyId: string;
  readonly response: Record<string, unknown>;
}

export async function hashFile(path: string, algorithm: DigestAlgorithm): Promise<Buffer> {
  const hash = createHash(algorithm);
  try {
    await pipeline(createReadStream(path), hash);
  } catch (error) {
    throw new CliError('FILE_UNREADABLE', `cannot read ${path}`, { cause: error });
  }
  return hash.digest();
}

function idToken(options: SignOptions): string {
  const token = options.token ?? (options.tokenFile === undefined ? undefined : readBytes(resolve(options.tokenFile)).toString('utf8').trim()) ?? process.env.SIGNET_ID_TOKEN;
  if (token === undefined || token === '') {
    throw new CliError('USAGE', 'an id token is required: --token, --token-file or $SIGNET_ID_TOKEN (in development: signet dev-token --dir D)');
  }
  return token;
}

export async function runSign(options: SignOptions): Promise<SignOutcome | DryRunOutcome> {
  const profile = options.dir === undefined ? undefined : readClientProfile(options.dir);
  const url = options.url ?? profile?.url;
  const ca = options.ca ?? profile?.caCert;
  const cert = options.cert ?? profile?.clientCert;
  const key = options.key ?? profile?.clientKey;
  const project = options.project ?? profile?.project;
  const missing = Object.entries({ '--url': url, '--ca': ca, '--cert': cert, '--key': key, '--project': project })
    .filter(([, value]) => value === undefined)
    .map(([flag]) => flag);
  if (missing.length > 0) throw new CliError('USAGE', `missing ${missing.join(', ')} (or --dir with a signet init directory)`);
  if ((options.file === undefined) === (options.payload === undefined)) throw new CliError('USAGE', 'give exactly one of --file or --payload');
  if (!isDigestAlgorithm(options.digestAlgorithm)) throw new CliError('USAGE', '--digest-algorithm is sha256, sha384 or sha512');
  if (!(SIGNATURE_FORMATS as readonly string[]).includes(options.format)) throw new CliError('USAGE', `--format is one of ${SIGNATURE_FORMATS.join(', ')}`);
  const format = options.format as SignatureFormat;
  const algorithm = options.digestAlgorithm;
  if (PAYLOAD_FORMATS.has(format) && options.payload === undefined) {
    throw new CliError('USAGE', `--format ${format} signs the manifest itself: give it with --payload, not --file`);
  }

  const token = idToken(options);
  const subject = resolve(options.file ?? options.payload ?? '');
  const body: Record<string, unknown> = {
    project,
    format,
    ...(options.keyId === undefined ? {} : { keyId: options.keyId }),
    ...(options.dryRun ? { dryRun: true } : {}),
  };
  if (options.file !== undefined) {
    body.digest = { algorithm, value: (await hashFile(subject, algorithm)).toString('hex') };
  } else {
    body.payload = readBytes(subject).toString('base64');
    body.digest = { algorithm };
  }

  const agent = createAgent({ caFile: ca ?? '', certFile: cert, keyFile: key });
  try {
    const response = expectOk(
      await requestJson(agent, new URL('/v1/sign', url).toString(), { method: 'POST', body, headers: { authorization: `Bearer ${token}` } }),
      'signing',
    ) as Record<string, unknown>;
    if (response.dryRun === true) return response as unknown as DryRunOutcome;
    const signed = signatureFileOf(format, response);
    const signatureFile = resolve(options.out ?? `${subject}${DEFAULT_SUFFIXES[format]}`);
    const receiptFile = resolve(options.receipt ?? `${signatureFile}.receipt.json`);
    writeFileSync(signatureFile, signed.content);
    const armoredFile = signed.armored === undefined ? undefined : `${signatureFile}.asc`;
    if (armoredFile !== undefined && signed.armored !== undefined) writeFileSync(armoredFile, signed.armored);
    const receipt = { artifact: { name: basename(subject), digest: body.digest }, ...response };
    writeFileSync(receiptFile, `${JSON.stringify(receipt, null, 2)}\n`);
    return { signatureFile, ...(armoredFile === undefined ? {} : { armoredFile }), receiptFile, keyId: String(response.keyId), response };
  } finally {
    agent.destroy();
  }
}

const DEFAULT_SUFFIXES: Readonly<Record<SignatureFormat, string>> = {
  raw: '.sig',
  pgp: '.sig',
  cms: '.p7s',
  dsse: '.dsse.json',
  'sigstore-bundle': '.sigstore.json',
};

/** The natural file of each format, from the answer (DESIGN.md "Fixed fields"). */
function signatureFileOf(format: SignatureFormat, response: Record<string, unknown>): { content: Buffer | string; armored?: string } {
  const missing = (field: string): CliError => new CliError('REQUEST_FAILED', `the service answered a ${format} signature without "${field}"`);
  const json = (field: 'envelope' | 'bundle'): string => {
    const value = response[field];
    if (typeof value !== 'object' || value === null) throw missing(field);
    return `${JSON.stringify(value, null, 2)}\n`;
  };
  switch (format) {
    case 'dsse':
      return { content: json('envelope') };
    case 'sigstore-bundle':
      return { content: json('bundle') };
    case 'raw':
    case 'cms':
    case 'pgp': {
      if (typeof response.signature !== 'string') throw missing('signature');
      const content = Buffer.from(response.signature, 'base64');
      if (format !== 'pgp') return { content };
      if (typeof response.armored !== 'string') throw missing('armored');
      return { content, armored: response.armored };
    }
  }
}

function readBytes(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new CliError('FILE_UNREADABLE', `cannot read ${path}`, { cause: error });
  }
}
