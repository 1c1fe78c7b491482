/**
 * OpenPGP keys and detached signatures made with real SoftHSM keys, checked by two
 * independent implementations: GnuPG 2.2 (the CLI, a fresh home directory per test) and
 * openpgp.js. RSA-PSS keys are refused with a stable code before the HSM is asked.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DigestAlgorithm, KeyAlgorithm } from '../../signer/algorithms.js';
import { isHsmError } from '../../signer/errors.js';
import { isOpenPgpError, type OpenPgpErrorCode } from '../../signer/openpgp/errors.js';
import {
  armoredPublicKey,
  detachedSignature,
  openPgpFingerprint,
  supportsOpenPgp,
  type OpenPgpKeySource,
} from '../../signer/openpgp/openpgp-key.js';
import { encodeLength, mpi } from '../../signer/openpgp/packets.js';
import { openPkcs11Hsm } from '../../signer/pkcs11-hsm.js';
import type { GeneratedKeyPair, Hsm } from '../../signer/types.js';
import { createTestToken, removeTestToken, type TestToken } from '../helpers/softhsm.js';

const SUPPORTED = ['ecdsa-p256', 'ecdsa-p384', 'ed25519'] as const satisfies readonly KeyAlgorithm[];
/** OpenPGP public-key algorithm ids GnuPG prints (RFC 4880 §9.1, RFC 6637, draft-koch-eddsa). */
const GPG_ALGORITHM: Record<(typeof SUPPORTED)[number], string> = { 'ecdsa-p256': '19', 'ecdsa-p384': '19', ed25519: '22' };
const CREATED = new Date('2024-03-01T12:00:00Z');
const USER_ID = 'Signet release key demo-release@1 <release@signet.example>';

let token: TestToken;
let hsm: Hsm;
const keys = new Map<string, GeneratedKeyPair>();
let hsmCalls = 0;

function keyOf(name: string): GeneratedKeyPair {
  const key = keys.get(name);
  if (key === undefined) throw new Error(`no key ${name}`);
  return key;
}

function sourceOf(name: string, overrides: Partial<OpenPgpKeySource> = {}): OpenPgpKeySource {
  const key = keyOf(name);
  return {
    algorithm: key.algorithm,
    publicKeyPem: key.publicKeyPem,
    createdAt: CREATED,
    signMessage: (message: Buffer, hash: DigestAlgorithm) => {
      hsmCalls += 1;
      return hsm.signMessage(key, message, hash);
    },
    ...overrides,
  };
}

beforeAll(async () => {
  token = await createTestToken();
  hsm = await openPkcs11Hsm({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, poolSize: 2 });
  const wanted: [string, KeyAlgorithm][] = [
    ...SUPPORTED.map((algorithm): [string, KeyAlgorithm] => [algorithm, algorithm]),
    ['rsa-pss-3072', 'rsa-pss-3072'],
    ['other-p256', 'ecdsa-p256'],
  ];
  await Promise.all(
    wanted.map(async ([name, algorithm]) => {
      keys.set(name, await hsm.generateKeyPair(algorithm, `signet:pgp-${name}@1`));
    }),
  );
});

afterAll(async () => {
  await hsm.close();
  await removeTestToken(token);
});

interface Gpg {
  readonly home: string;
  run(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  file(name: string, content: string | Buffer): Promise<string>;
}

/**
 * A fresh GnuPG home for one test. `--no-autostart` keeps gpg from launching an agent
 * or dirmngr (nothing here needs a secret key or the network), so nothing outlives the test.
 */
async function withGpg(body: (gpg: Gpg) => Promise<void>): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'signet-gpg-'));
  await chmod(home, 0o700);
  const gpg: Gpg = {
    home,
    run: (args) =>
      new Promise((resolve) => {
        execFile('gpg', ['--homedir', home, '--batch', '--no-tty', '--no-autostart', ...args], { encoding: 'utf8' }, (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
          resolve({ code, stdout, stderr });
        });
      }),
    file: async (name, content) => {
      const path = join(home, name);
      await writeFile(path, content);
      return path;
    },
  };
  try {
    await body(gpg);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

async function importKey(gpg: Gpg, armored: string): Promise<void> {
  const result = await gpg.run(['--import', await gpg.file('key.asc', armored)]);
  expect(result.code, result.stderr).toBe(0);
}

/** Fields of the first colon-format line of a record type (GnuPG doc/DETAILS). */
function colonRecord(output: string, type: string): string[] {
  const line = output.split('\n').find((l) => l.startsWith(`${type}:`));
  if (line === undefined) throw new Error(`no ${type} record in:\n${output}`);
  return line.split(':');
}

async function expectOpenPgpError(promise: Promise<unknown>, code: OpenPgpErrorCode): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isOpenPgpError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
}

describe.each(SUPPORTED)('%s', (algorithm) => {
  it('is supported', () => {
    expect(supportsOpenPgp(algorithm)).toBe(true);
  });

  it('gpg imports the public key, finds the self-signature valid and prints our fingerprint', async () => {
    const source = sourceOf(algorithm);
    const armored = await armoredPublicKey(source, USER_ID);
    expect(armored).toMatch(/^-----BEGIN PGP PUBLIC KEY BLOCK-----\n/);
    expect(armored).toMatch(/\n=[A-Za-z0-9+/]{4}\n-----END PGP PUBLIC KEY BLOCK-----\n$/); // CRC-24 line
    const fingerprint = openPgpFingerprint(source);
    expect(fingerprint).toMatch(/^[0-9A-F]{40}$/);

    await withGpg(async (gpg) => {
      await importKey(gpg, armored);
      const checked = await gpg.run(['--check-sigs', fingerprint]);
      expect(checked.code, checked.stderr).toBe(0);
      expect(checked.stdout).toMatch(/^sig!3 /m);
      expect(checked.stdout).not.toMatch(/^sig[-%?]/m);
      expect(checked.stdout).toContain(USER_ID);

      const colons = await gpg.run(['--with-colons', '--fixed-list-mode', '--check-sigs', fingerprint]);
      const pub = colonRecord(colons.stdout, 'pub');
      expect(pub[3]).toBe(GPG_ALGORITHM[algorithm]);
      expect(pub[5]).toBe(String(CREATED.getTime() / 1000));
      expect(pub[11]).toContain('s'); // may sign (key flags 0x02)
      expect(colonRecord(colons.stdout, 'fpr')[9]).toBe(fingerprint);
      const sig = colonRecord(colons.stdout, 'sig');
      expect(sig[1]).toBe('!');
      expect(sig[10]).toBe('13x'); // positive certification, exportable
    });
  });

  it('gpg accepts the detached signature, binary and armored, and rejects it for changed data', async () => {
    const source = sourceOf(algorithm);
    const data = Buffer.from(`{"release":"v1.2.3","algorithm":"${algorithm}"}\n`);
    const { binary, armored } = await detachedSignature(source, data);
    expect(armored).toMatch(/^-----BEGIN PGP SIGNATURE-----\n[\s\S]*\n=[A-Za-z0-9+/]{4}\n-----END PGP SIGNATURE-----\n$/);
    const fingerprint = openPgpFingerprint(source);

    await withGpg(async (gpg) => {
      await importKey(gpg, await armoredPublicKey(source, USER_ID));
      const dataPath = await gpg.file('data', data);
      const changedPath = await gpg.file('changed', Buffer.concat([data, Buffer.from(' ')]));
      for (const [name, content] of [
        ['data.sig', binary],
        ['data.asc', armored],
      ] as const) {
        const sigPath = await gpg.file(name, content);
        const good = await gpg.run(['--status-fd', '1', '--verify', sigPath, dataPath]);
        expect(good.code, good.stderr).toBe(0);
        expect(good.stdout).toMatch(/^\[GNUPG:\] GOODSIG /m);
        expect(good.stdout).toMatch(new RegExp(`^\\[GNUPG:\\] VALIDSIG ${fingerprint} `, 'm'));

        const bad = await gpg.run(['--status-fd', '1', '--verify', sigPath, changedPath]);
        expect(bad.code).not.toBe(0);
        expect(bad.stdout).toMatch(/^\[GNUPG:\] BADSIG /m);
        expect(bad.stdout).not.toMatch(/GOODSIG|VALIDSIG/);
      }
    });
  });

  it('openpgp.js reads the key, accepts the self-certification and verifies the signature', async () => {
    const source = sourceOf(algorithm);
    const key = await openpgp.readKey({ armoredKey: await armoredPublicKey(source, USER_ID) });
    if (!(key instanceof openpgp.PublicKey) || key.isPrivate()) throw new Error('expected a public key');
    expect(key.getFingerprint().toUpperCase()).toBe(openPgpFingerprint(source));
    expect(key.getCreationTime().getTime()).toBe(CREATED.getTime());
    await key.verifyPrimaryKey(); // throws unless a valid self-certification binds a user ID
    expect((await key.getPrimaryUser()).user.userID?.userID).toBe(USER_ID);

    const data = Buffer.from('release manifest bytes\n');
    const { binary, armored } = await detachedSignature(source, data);
    const unarmored = await openpgp.unarmor(armored);
    expect(Buffer.from(unarmored.data as unknown as Uint8Array).equals(binary)).toBe(true);

    for (const signature of [
      await openpgp.readSignature({ binarySignature: new Uint8Array(binary) }),
      await openpgp.readSignature({ armoredSignature: armored }),
    ]) {
      const good = await openpgp.verify({
        message: await openpgp.createMessage({ binary: new Uint8Array(data) }),
        signature,
        verificationKeys: key,
        expectSigned: true,
      });
      expect(good.signatures).toHaveLength(1);
      await expect(good.signatures[0]!.verified).resolves.toBe(true);

      await expect(
        openpgp.verify({
          message: await openpgp.createMessage({ binary: new Uint8Array(Buffer.from('release manifest bytes!\n')) }),
          signature,
          verificationKeys: key,
          expectSigned: true,
        }),
      ).rejects.toThrow();
    }
  });
});

describe('short MPIs', () => {
  // A signature value whose first octet is zero is written as a shorter MPI (RFC 4880
  // §3.2); readers must restore the fixed width (RFC 6637 §7, draft-koch-eddsa §6).
  // About 1 signature in 128 has one: sign until one shows up.
  it.each(['ecdsa-p256', 'ed25519'] as const)('%s: a signature with a leading-zero value verifies with gpg and openpgp.js', async (algorithm) => {
    const source = sourceOf(algorithm);
    // Packet header 2 + hashed part 45 + unhashed length 2 + left 16 bits 2 + two 34-octet MPIs.
    const fullLength = 2 + 45 + 2 + 2 + 2 * (2 + 32);
    let found: { data: Buffer; binary: Buffer } | undefined;
    for (let attempt = 0; attempt < 3000 && found === undefined; attempt += 1) {
      const data = Buffer.from(`attempt ${attempt}\n`);
      const { binary } = await detachedSignature(source, data);
      expect(binary.length).toBeLessThanOrEqual(fullLength);
      if (binary.length < fullLength) found = { data, binary };
    }
    if (found === undefined) throw new Error('no short signature value in 3000 signatures');
    const { data, binary } = found;

    const key = await openpgp.readKey({ armoredKey: await armoredPublicKey(source, USER_ID) });
    if (!(key instanceof openpgp.PublicKey) || key.isPrivate()) throw new Error('expected a public key');
    const result = await openpgp.verify({
      message: await openpgp.createMessage({ binary: new Uint8Array(data) }),
      signature: await openpgp.readSignature({ binarySignature: new Uint8Array(binary) }),
      verificationKeys: key,
      expectSigned: true,
    });
    await expect(result.signatures[0]!.verified).resolves.toBe(true);
    await withGpg(async (gpg) => {
      await importKey(gpg, key.armor());
      const good = await gpg.run(['--status-fd', '1', '--verify', await gpg.file('data.sig', binary), await gpg.file('data', data)]);
      expect(good.code, good.stderr).toBe(0);
      expect(good.stdout).toMatch(/^\[GNUPG:\] GOODSIG /m);
    });
  });
});

describe('fingerprint', () => {
  it('depends on the creation time to the second, and on the key', () => {
    const base = openPgpFingerprint(sourceOf('ecdsa-p256'));
    expect(openPgpFingerprint(sourceOf('ecdsa-p256', { createdAt: new Date(CREATED.getTime() + 999) }))).toBe(base);
    expect(openPgpFingerprint(sourceOf('ecdsa-p256', { createdAt: new Date(CREATED.getTime() + 1000) }))).not.toBe(base);
    expect(openPgpFingerprint(sourceOf('other-p256'))).not.toBe(base);
  });
});

describe('user IDs', () => {
  it('a user ID longer than 191 bytes (two-octet packet length) is accepted by gpg and openpgp.js', async () => {
    const source = sourceOf('ecdsa-p256');
    const longUserId = `Signet ${'release signing key '.repeat(15)}<release@signet.example>`;
    expect(Buffer.byteLength(longUserId)).toBeGreaterThan(191);
    const armored = await armoredPublicKey(source, longUserId);
    const key = await openpgp.readKey({ armoredKey: armored });
    expect((await key.getPrimaryUser()).user.userID?.userID).toBe(longUserId);
    await withGpg(async (gpg) => {
      await importKey(gpg, armored);
      const checked = await gpg.run(['--check-sigs', openPgpFingerprint(source)]);
      expect(checked.stdout).toMatch(/^sig!3 /m);
    });
  });

  it.each([
    ['empty', ''],
    ['a newline', 'Signet\n<release@signet.example>'],
    ['a NUL', 'Signet\u0000'],
    ['a lone surrogate', 'Signet \ud800'],
    ['too many bytes', 'x'.repeat(2049)],
  ])('a user ID with %s is refused before the HSM signs', async (_, userId) => {
    const before = hsmCalls;
    await expectOpenPgpError(armoredPublicKey(sourceOf('ed25519'), userId), 'OPENPGP_USER_ID_INVALID');
    expect(hsmCalls).toBe(before);
  });
});

describe('refusals', () => {
  it('RSA-PSS keys have no OpenPGP form: FORMAT_UNSUPPORTED_FOR_KEY, and the HSM is never asked', async () => {
    const before = hsmCalls;
    const source = sourceOf('rsa-pss-3072');
    expect(supportsOpenPgp('rsa-pss-3072')).toBe(false);
    expect(supportsOpenPgp('rsa-pss-4096')).toBe(false);
    await expectOpenPgpError(armoredPublicKey(source, USER_ID), 'FORMAT_UNSUPPORTED_FOR_KEY');
    await expectOpenPgpError(detachedSignature(source, Buffer.from('data')), 'FORMAT_UNSUPPORTED_FOR_KEY');
    let thrown: unknown;
    try {
      openPgpFingerprint(source);
    } catch (error) {
      thrown = error;
    }
    expect(isOpenPgpError(thrown, 'FORMAT_UNSUPPORTED_FOR_KEY')).toBe(true);
    expect(hsmCalls).toBe(before);
  });

  it('a public key that is not of the stated algorithm is refused', async () => {
    const p256 = keyOf('ecdsa-p256');
    await expectOpenPgpError(armoredPublicKey(sourceOf('ecdsa-p384', { publicKeyPem: p256.publicKeyPem }), USER_ID), 'OPENPGP_KEY_INVALID');
    await expectOpenPgpError(detachedSignature(sourceOf('ed25519', { publicKeyPem: p256.publicKeyPem }), Buffer.from('x')), 'OPENPGP_KEY_INVALID');
    await expectOpenPgpError(detachedSignature(sourceOf('ed25519', { publicKeyPem: 'not a key' }), Buffer.from('x')), 'OPENPGP_KEY_INVALID');
  });

  it('a creation time OpenPGP cannot store is refused', async () => {
    for (const createdAt of [new Date(Number.NaN), new Date('1960-01-01T00:00:00Z'), new Date('2200-01-01T00:00:00Z')]) {
      await expectOpenPgpError(detachedSignature(sourceOf('ed25519', { createdAt }), Buffer.from('x')), 'OPENPGP_KEY_INVALID');
    }
  });

  it('an ECDSA signature by another HSM key is caught before it is framed (HSM_SIGN_FAILED)', async () => {
    const source = sourceOf('ecdsa-p256', { signMessage: (message, hash) => hsm.signMessage(keyOf('other-p256'), message, hash) });
    const error: unknown = await detachedSignature(source, Buffer.from('data')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isHsmError(error, 'HSM_SIGN_FAILED'), String(error)).toBe(true);
  });

  it('an Ed25519 signature over other bytes is caught before it is framed (HSM_SIGN_FAILED)', async () => {
    const key = keyOf('ed25519');
    const source = sourceOf('ed25519', { signMessage: (message) => hsm.signMessage(key, Buffer.concat([message, Buffer.from([0])])) });
    const error: unknown = await armoredPublicKey(source, USER_ID).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isHsmError(error, 'HSM_SIGN_FAILED'), String(error)).toBe(true);
  });
});

describe('packet encodings (RFC 4880 vectors)', () => {
  it('body lengths, §4.2.3 "Packet Length Examples"', () => {
    expect(encodeLength(100).toString('hex')).toBe('64');
    expect(encodeLength(1723).toString('hex')).toBe('c5fb');
    expect(encodeLength(100000).toString('hex')).toBe('ff000186a0');
    // Boundaries of the one- and two-octet forms (§4.2.2.1, §4.2.2.2).
    expect(encodeLength(191).toString('hex')).toBe('bf');
    expect(encodeLength(192).toString('hex')).toBe('c000');
    expect(encodeLength(8383).toString('hex')).toBe('dfff');
    expect(encodeLength(8384).toString('hex')).toBe('ff000020c0');
  });

  it('MPIs, §3.2 examples; leading zero octets are dropped; zero is refused', () => {
    expect(mpi(Buffer.from([1])).toString('hex')).toBe('000101');
    expect(mpi(Buffer.from([1, 0xff])).toString('hex')).toBe('000901ff');
    expect(mpi(Buffer.from([0, 0, 1, 0xff])).toString('hex')).toBe('000901ff');
    expect(() => mpi(Buffer.from([0, 0]))).toThrow(RangeError);
  });
});
