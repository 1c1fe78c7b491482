/**
 * Independent verification of HSM signatures for the signer tests: node:crypto and the
 * openssl CLI, each given only the exported public key PEM.
 */
import { execFile } from 'node:child_process';
import { constants, verify } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIGEST_LENGTHS, type DigestAlgorithm, type KeyAlgorithm } from '../../signer/algorithms.js';

export type SignedOver =
  /** The signature covers `data` hashed with `hash` (signDigest of hash(data), or signMessage). */
  | { readonly kind: 'message'; readonly data: Buffer; readonly hash: DigestAlgorithm }
  /** Ed25519 only: the signature is PureEdDSA over `data` itself. */
  | { readonly kind: 'raw'; readonly data: Buffer };

function family(algorithm: KeyAlgorithm): 'ecdsa' | 'ed25519' | 'rsa-pss' {
  if (algorithm.startsWith('ecdsa-')) return 'ecdsa';
  if (algorithm === 'ed25519') return 'ed25519';
  return 'rsa-pss';
}

export function verifyWithNode(algorithm: KeyAlgorithm, publicKeyPem: string, over: SignedOver, signature: Buffer): boolean {
  switch (family(algorithm)) {
    case 'ed25519':
      return verify(null, over.data, publicKeyPem, signature);
    case 'ecdsa':
      if (over.kind !== 'message') throw new TypeError('ECDSA signs a hash');
      return verify(over.hash, over.data, { key: publicKeyPem, dsaEncoding: 'der' }, signature);
    case 'rsa-pss':
      if (over.kind !== 'message') throw new TypeError('RSA-PSS signs a hash');
      return verify(
        over.hash,
        over.data,
        { key: publicKeyPem, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: DIGEST_LENGTHS[over.hash] },
        signature,
      );
  }
}

function run(command: string, args: readonly string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

/**
 * Verifies with the openssl CLI: `openssl dgst -verify` over the message for ECDSA and
 * RSA-PSS (PSS with MGF1 over the same hash and salt = hash length), `openssl pkeyutl
 * -verify -rawin` for Ed25519. Returns whether openssl said the signature is good.
 */
export async function verifyWithOpenssl(
  algorithm: KeyAlgorithm,
  publicKeyPem: string,
  over: SignedOver,
  signature: Buffer,
): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), 'signet-openssl-'));
  try {
    const pub = join(dir, 'pub.pem');
    const data = join(dir, 'data.bin');
    const sig = join(dir, 'sig.bin');
    await Promise.all([writeFile(pub, publicKeyPem), writeFile(data, over.data), writeFile(sig, signature)]);
    let args: string[];
    if (family(algorithm) === 'ed25519') {
      args = ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', data, '-sigfile', sig];
    } else {
      if (over.kind !== 'message') throw new TypeError(`${algorithm} signs a hash`);
      const pss =
        family(algorithm) === 'rsa-pss'
          ? [
              '-sigopt',
              'rsa_padding_mode:pss',
              '-sigopt',
              `rsa_pss_saltlen:${DIGEST_LENGTHS[over.hash]}`,
              '-sigopt',
              `rsa_mgf1_md:${over.hash}`,
            ]
          : [];
      args = ['dgst', `-${over.hash}`, ...pss, '-verify', pub, '-signature', sig, data];
    }
    const { code, output } = await run('openssl', args);
    return code === 0 && /Verified OK|Signature Verified Successfully/.test(output);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Verifies a signature over a precomputed digest with `openssl pkeyutl -verify`, which
 * takes the digest itself (no hashing), as the HSM did.
 */
export async function verifyDigestWithOpenssl(
  algorithm: KeyAlgorithm,
  publicKeyPem: string,
  hash: DigestAlgorithm,
  digest: Buffer,
  signature: Buffer,
): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), 'signet-openssl-'));
  try {
    const pub = join(dir, 'pub.pem');
    const data = join(dir, 'digest.bin');
    const sig = join(dir, 'sig.bin');
    await Promise.all([writeFile(pub, publicKeyPem), writeFile(data, digest), writeFile(sig, signature)]);
    const options =
      family(algorithm) === 'rsa-pss'
        ? [
            '-pkeyopt',
            'rsa_padding_mode:pss',
            '-pkeyopt',
            `digest:${hash}`,
            '-pkeyopt',
            `rsa_pss_saltlen:${DIGEST_LENGTHS[hash]}`,
            '-pkeyopt',
            `rsa_mgf1_md:${hash}`,
          ]
        : [];
    const { code, output } = await run('openssl', [
      'pkeyutl',
      '-verify',
      '-pubin',
      '-inkey',
      pub,
      '-in',
      data,
      '-sigfile',
      sig,
      ...options,
    ]);
    return code === 0 && /Signature Verified Successfully/.test(output);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
