/**
 * The catalogue of signing keys: versions and states live in storage, the key pairs
 * in the HSM, joined by the CKA_ID recorded at generation. Creating a key directly is
 * for `signet init` and development set-ups; in production new versions come from
 * quorum-approved rotations.
 */
import type { KeyAlgorithm } from '../signer/algorithms.js';
import type { Hsm, HsmKeyRef } from '../signer/types.js';
import type { KeyVersionRecord, SignetStore } from '../store/store.js';
import { KeyError } from './errors.js';
import { formatKeyId, isKeyName, parseKeyReference } from './key-id.js';
import { wholeSeconds } from './lifecycle.js';

export function keyRef(record: KeyVersionRecord): HsmKeyRef {
  return { hsmKeyId: record.hsmKeyId, algorithm: record.algorithm };
}

/**
 * Issues the code-signing certificate of a new key version (ca/authority.ts,
 * `CertificateAuthority.issueLeaf`), so that keyrotation/ need not know the CA.
 */
export type KeyCertifier = (key: KeyVersionRecord) => Promise<unknown>;

/**
 * Generates a new version of `name` in the HSM and records it. The first version is
 * made `active`; later ones are `pending` until a rotation activates them. With
 * `certify`, the new version then gets its leaf certificate; if that fails the key
 * version stays recorded without one (`signet ca issue` gives it one later).
 */
export async function createSigningKey(
  hsm: Hsm,
  store: SignetStore,
  name: string,
  algorithm: KeyAlgorithm,
  now: Date = new Date(),
  certify?: KeyCertifier,
): Promise<KeyVersionRecord> {
  if (!isKeyName(name)) throw new KeyError('KEY_ID_INVALID', `"${name}" is not a valid key name`);
  const existing = await store.keys.listVersions(name);
  const version = existing.reduce((max, k) => Math.max(max, k.version), 0) + 1;
  const keyId = formatKeyId(name, version);
  const generated = await hsm.generateKeyPair(algorithm, `signet:${keyId}`);
  const at = wholeSeconds(now).toISOString();
  const record: KeyVersionRecord = {
    keyId,
    name,
    version,
    algorithm,
    state: existing.length === 0 ? 'active' : 'pending',
    hsmKeyId: generated.hsmKeyId,
    publicKeyPem: generated.publicKeyPem,
    createdAt: at,
    notBefore: at,
    notAfter: null,
    compromisedAt: null,
  };
  await store.keys.insert(record);
  if (certify !== undefined) await certify(record);
  return record;
}

/** Resolves a request's `keyId` (a name or a version id) to a stored key version. */
export async function resolveKey(store: SignetStore, reference: string): Promise<KeyVersionRecord> {
  const parsed = parseKeyReference(reference);
  if (parsed === null) throw new KeyError('KEY_ID_INVALID', 'keyId must be a key name or <name>@<version>');
  const record =
    parsed.version === undefined
      ? await store.keys.getActive(parsed.name)
      : await store.keys.get(formatKeyId(parsed.name, parsed.version));
  if (record === null) throw new KeyError('KEY_NOT_FOUND', `no key "${reference}"`);
  return record;
}

/**
 * Start-up check: every key version that may still sign or must still be published
 * has its key pair in the token. A service that cannot find a configured key refuses
 * to start rather than failing per request.
 */
export async function assertKeysPresent(hsm: Hsm, store: SignetStore): Promise<void> {
  const missing: string[] = [];
  for (const record of await store.keys.list()) {
    if (record.state === 'retired') continue;
    if (!(await hsm.hasKeyPair(keyRef(record)))) missing.push(record.keyId);
  }
  if (missing.length > 0) {
    throw new KeyError('KEY_MISSING_IN_HSM', `key pairs missing from the HSM token: ${missing.join(', ')}`);
  }
}
