/**
 * A P-256 log key for tests of the log's own logic: a key file that `openssl pkeyutl`
 * signs with, which signs a SHA-256 digest as given, as the HSM's log key does. What
 * these tests exercise is the log's handling of checkpoints, not the HSM (the service
 * tests sign with the HSM).
 */
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const keyDir = mkdtempSync(join(tmpdir(), 'signet-test-log-key-'));
afterAll(() => {
  rmSync(keyDir, { recursive: true, force: true });
});
let keys = 0;

/** `privateKey` is the path of a PEM key file. */
export function keyPair(): { privateKey: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const path = join(keyDir, `log-${(keys += 1)}.pem`);
  writeFileSync(path, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return { privateKey: path, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

/** ECDSA over an already computed SHA-256 digest, DER output, as the HSM signs it. */
export function digestSigner(keyFile: string): (digest: Buffer) => Promise<Buffer> {
  return (digest) =>
    new Promise((resolve, reject) => {
      const child = execFile('openssl', ['pkeyutl', '-sign', '-inkey', keyFile], { encoding: 'buffer' }, (error, stdout) => {
        if (error === null) resolve(stdout);
        else reject(new Error('openssl pkeyutl failed', { cause: error }));
      });
      child.stdin?.end(digest);
    });
}
