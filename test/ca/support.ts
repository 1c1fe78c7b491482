/**
 * Shared set-up for the CA tests: a real SoftHSM token, a real SQLite file, signing
 * keys generated in the token, and the real `openssl` CLI to judge the results.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../../ca/authority.js';
import { caSettingsFrom, CA_DEFAULTS, type CaConfig } from '../../ca/settings.js';
import { createSigningKey } from '../../keyrotation/signing-keys.js';
import { openPkcs11Hsm } from '../../signer/pkcs11-hsm.js';
import type { Hsm } from '../../signer/types.js';
import { openStore } from '../../store/open-store.js';
import type { SignetStore } from '../../store/store.js';
import { createTestToken, removeTestToken, type TestToken } from '../helpers/softhsm.js';

export const LOG_ORIGIN = 'signet.test/log';
export const LOG_KEY_NAME = 'signet-log';

export interface CaFixture {
  readonly dir: string;
  readonly token: TestToken;
  readonly hsm: Hsm;
  readonly store: SignetStore;
  readonly ca: CertificateAuthority;
  /** Writes `text` to a file in the fixture's directory and returns its path. */
  file(name: string, text: string | Buffer): string;
  close(): Promise<void>;
}

export async function createCaFixture(options: { ca?: Partial<CaConfig>; now?: () => Date } = {}): Promise<CaFixture> {
  const dir = mkdtempSync(join(tmpdir(), 'signet-ca-'));
  const token = await createTestToken();
  const hsm = await openPkcs11Hsm({ modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, poolSize: 2, signWorkers: 1 });
  const store = await openStore({ driver: 'sqlite', sqlite: { path: join(dir, 'signet.db') } });
  const settings = caSettingsFrom({ ca: { ...CA_DEFAULTS, publicUrl: 'https://signet.test', ...options.ca }, log: { origin: LOG_ORIGIN } });
  const ca = new CertificateAuthority({ hsm, store, settings, logKeyName: LOG_KEY_NAME, ...(options.now === undefined ? {} : { now: options.now }) });
  return {
    dir,
    token,
    hsm,
    store,
    ca,
    file(name, text) {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    },
    async close() {
      await store.close();
      await hsm.close();
      await removeTestToken(token);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Creates a signing key version in the HSM and storage (no certificate). */
export async function signingKey(fixture: CaFixture, name: string, algorithm: Parameters<typeof createSigningKey>[3] = 'ecdsa-p256') {
  return createSigningKey(fixture.hsm, fixture.store, name, algorithm);
}

export interface OpensslResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the openssl CLI (never through a shell). */
export function openssl(args: readonly string[]): OpensslResult {
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  if (result.error !== undefined) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** `openssl verify -x509_strict -CAfile root -untrusted intermediate leaf` with the leaf's usages printed. */
export function opensslVerifyChain(fixture: CaFixture, root: string, intermediate: string, leaf: string, prefix = 'chain'): OpensslResult {
  return openssl([
    'verify',
    '-x509_strict',
    '-CAfile',
    fixture.file(`${prefix}-root.pem`, root),
    '-untrusted',
    fixture.file(`${prefix}-intermediate.pem`, intermediate),
    fixture.file(`${prefix}-leaf.pem`, leaf),
  ]);
}

/** The leaf's extended key usage as `openssl x509 -ext extendedKeyUsage` prints it. */
export function opensslExtendedKeyUsage(fixture: CaFixture, pem: string, name = 'eku.pem'): string {
  return execFileSync('openssl', ['x509', '-noout', '-ext', 'extendedKeyUsage', '-in', fixture.file(name, pem)], { encoding: 'utf8' });
}
