/**
 * `signet keys list` (public, over HTTPS) and `signet keys create` (development
 * set-ups only: it opens the HSM and storage named by the config directly; in
 * production new key versions come from approved rotations). A created key gets its
 * code-signing certificate when the CA hierarchy exists.
 */
import { CertificateAuthority } from '../ca/authority.js';
import { caSettingsFrom } from '../ca/settings.js';
import { loadConfig } from '../config/load.js';
import { createSigningKey } from '../keyrotation/signing-keys.js';
import { isKeyAlgorithm, KEY_ALGORITHMS } from '../signer/algorithms.js';
import { openConfiguredHsm } from '../service/open-hsm.js';
import type { KeyVersionRecord } from '../store/store.js';
import { openStore } from '../store/open-store.js';
import { CliError } from './errors.js';
import { createAgent, expectOk, requestJson } from './https-client.js';

export async function runKeysList(url: string, caFile: string): Promise<unknown> {
  const agent = createAgent({ caFile });
  try {
    return expectOk(await requestJson(agent, new URL('/v1/keys', url).toString()), 'listing keys');
  } finally {
    agent.destroy();
  }
}

export async function runKeysCreate(configPath: string, name: string, algorithm: string): Promise<KeyVersionRecord> {
  if (!isKeyAlgorithm(algorithm)) throw new CliError('USAGE', `--algorithm is one of ${KEY_ALGORITHMS.join(', ')}`);
  const config = loadConfig(configPath);
  const hsm = await openConfiguredHsm(config, { poolSize: 1, signWorkers: 1 });
  try {
    const store = await openStore(config.storage);
    try {
      // A new signing key gets its code-signing certificate once the CA exists (signet ca init).
      const ca = new CertificateAuthority({ hsm, store, settings: caSettingsFrom(config), logKeyName: config.log.keyName });
      const certify = name !== config.log.keyName && (await ca.active()).intermediate !== null ? (key: KeyVersionRecord) => ca.issueLeaf(key.keyId) : undefined;
      return await createSigningKey(hsm, store, name, algorithm, new Date(), certify);
    } finally {
      await store.close();
    }
  } finally {
    await hsm.close();
  }
}
