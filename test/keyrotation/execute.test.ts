/**
 * Execution in-process, on a real `signet init` set-up (SoftHSM token, SQLite file, the
 * code-signing CA in the token): a rotation that fails before its commit leaves the old
 * version the only active one and the proposal open, and executing again resumes with
 * the version already generated; a compromise revokes the version's certificate in the
 * CRL and records the compromise time, after which signatures are invalid. Codes are
 * computed by the test's own RFC 6238 implementation (reference-totp.ts).
 */
import 'reflect-metadata';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../ca/authority.js';
import { caSettingsFrom } from '../../ca/settings.js';
import { loadConfig } from '../../config/load.js';
import { GovernanceService, SigningGuard } from '../../keyrotation/governance-service.js';
import { signatureValidAt } from '../../keyrotation/lifecycle.js';
import { GOVERNANCE_DEFAULTS } from '../../keyrotation/settings.js';
import { totpSecretFromBase32 } from '../../keyrotation/totp.js';
import { openSecretSealer } from '../../signer/secret-sealing.js';
import { openConfiguredHsm } from '../../service/open-hsm.js';
import type { Hsm } from '../../signer/types.js';
import { openStore } from '../../store/open-store.js';
import type { SignetStore } from '../../store/store.js';
import { createDevEnvironment, type DevEnvironment } from '../helpers/dev-env.js';
import { referenceTotp } from './reference-totp.js';

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };

let env: DevEnvironment;
let hsm: Hsm;
let store: SignetStore;
let ca: CertificateAuthority;
let service: (overrides?: { failLeaf?: boolean }) => Promise<GovernanceService>;
const callers: Record<string, { certificateSha256: string }> = {};
const secrets: Record<string, Buffer> = {};

/** The officer's code for now (+30 s: the next step). */
function code(officer: string, offsetSeconds = 0): string {
  const secret = secrets[officer];
  if (secret === undefined) throw new Error(`no officer ${officer}`);
  return referenceTotp(secret, Math.floor(Date.now() / 1000) + offsetSeconds);
}

function caller(officer: string): { certificateSha256: string } {
  const found = callers[officer];
  if (found === undefined) throw new Error(`no officer ${officer}`);
  return found;
}

beforeAll(async () => {
  env = await createDevEnvironment();
  const config = loadConfig(env.init.config);
  hsm = await openConfiguredHsm(config, { poolSize: 1, signWorkers: 1 });
  store = await openStore(config.storage);
  ca = new CertificateAuthority({ hsm, store, settings: caSettingsFrom(config), logKeyName: config.log.keyName });
  const sealer = await openSecretSealer(hsm, { label: config.governance.sealingKeyLabel });
  for (const officer of env.init.officers) {
    callers[officer.name] = { certificateSha256: new X509Certificate(readFileSync(officer.cert)).fingerprint256.replaceAll(':', '').toLowerCase() };
    secrets[officer.name] = totpSecretFromBase32(officer.totpSecret);
  }
  service = (overrides = {}) =>
    Promise.resolve(
      new GovernanceService({
        store,
        hsm,
        ca:
          overrides.failLeaf === true
            ? { issueLeaf: () => Promise.reject(new Error('the CA is down')), revokeKey: (keyId, reason) => ca.revokeKey(keyId, reason) }
            : ca,
        sealer,
        settings: { ...GOVERNANCE_DEFAULTS },
        logger: silent,
        logKeyName: config.log.keyName,
        now: () => new Date(),
      }),
    );
});

afterAll(async () => {
  await store.close();
  await hsm.close();
});

async function governanceEvents(): Promise<Record<string, unknown>[]> {
  const size = await store.log.size();
  const entries = await store.log.entries(0, size);
  return entries
    .filter((e) => e.kind === 'signet.governance/v1')
    .map((e) => (JSON.parse(e.leaf.toString('utf8')) as { spec: Record<string, unknown> }).spec);
}

describe('execution', () => {
  let rotationId: string;

  it('a rotation that fails before its commit leaves the old version active and the proposal open', async () => {
    const failing = await service({ failLeaf: true });
    const { proposal } = await failing.propose(caller('alice'), { action: { type: 'rotate-key', project: 'example', key: 'demo-release', algorithm: null } });
    rotationId = proposal.content.id;
    await failing.approve(caller('bob'), rotationId, { proposalHash: proposal.hash, code: code('bob') });
    await failing.approve(caller('carol'), rotationId, { proposalHash: proposal.hash, code: code('carol') });

    await expect(failing.execute(caller('alice'), rotationId)).rejects.toThrow('the CA is down');
    const versions = await store.keys.listVersions('demo-release');
    expect(versions.map((k) => [k.keyId, k.state])).toEqual([
      ['demo-release@1', 'active'],
      ['demo-release@2', 'pending'],
    ]);
    expect((await store.governance.getProposal(rotationId))?.status).toBe('open');
    const events = (await governanceEvents()).filter((e) => e.proposalId === rotationId).map((e) => e.event);
    expect(events).toEqual(['proposed', 'approved', 'approved', 'execution-started', 'key-generated', 'execution-failed']);
  });

  it('executing again resumes with the version already generated: exactly one active version', async () => {
    const result = await (await service()).execute(caller('bob'), rotationId);
    expect(result.keys.map((k) => [k.keyId, k.state])).toEqual([
      ['demo-release@1', 'verify-only'],
      ['demo-release@2', 'active'],
    ]);
    const versions = await store.keys.listVersions('demo-release');
    expect(versions.map((k) => k.keyId)).toEqual(['demo-release@1', 'demo-release@2']);
    expect(versions.filter((k) => k.state === 'active')).toHaveLength(1);
    const leaves = await store.certificates.leavesOfKey('demo-release@2');
    expect(leaves).toHaveLength(1);
    // The windows meet: the old one ends when the new one starts, on a whole second.
    const [old, current] = versions;
    expect(old?.notAfter).toBe(current?.notBefore);
    expect(current?.notBefore).toMatch(/\.000Z$/);
  });

  it('a compromise revokes the certificate in the CRL and invalidates signatures logged from its time on', async () => {
    const governance = await service();
    const compromisedAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 5_000);
    const { proposal } = await governance.propose(caller('alice'), {
      action: { type: 'compromise-key', keyId: 'demo-release@1', compromisedAt: compromisedAt.toISOString() },
      reason: 'key material leaked',
    });
    await governance.approve(caller('bob'), proposal.content.id, { proposalHash: proposal.hash, code: code('bob', 30) });
    await governance.approve(caller('carol'), proposal.content.id, { proposalHash: proposal.hash, code: code('carol', 30) });
    const result = await governance.execute(caller('alice'), proposal.content.id);
    expect(result.keys).toMatchObject([{ keyId: 'demo-release@1', state: 'compromised', compromisedAt: compromisedAt.toISOString() }]);

    const [leaf] = await store.certificates.leavesOfKey('demo-release@1');
    const revocations = await store.certificates.listRevocations();
    expect(revocations).toContainEqual(expect.objectContaining({ serialNumber: leaf?.serialNumber, reason: 'keyCompromise' }));
    const crl = await store.certificates.latestCrl(leaf?.issuerCaId ?? '');
    expect(new x509.X509Crl(crl?.der ?? Buffer.alloc(0)).entries.map((e) => e.serialNumber.toLowerCase())).toContain(leaf?.serialNumber);

    const record = await store.keys.get('demo-release@1');
    if (record === null) throw new Error('missing');
    // A signature logged at the window's start is valid only if that was before the compromise.
    const t = Math.floor(compromisedAt.getTime() / 1000);
    const start = Math.floor(Date.parse(record.notBefore) / 1000);
    expect(signatureValidAt(record, start)).toBe(start < t);
    expect(signatureValidAt(record, t)).toBe(false);
  });

  it('the signing guard sees freezes and revocations', async () => {
    const guard = new SigningGuard({ store, cacheMs: 60_000 });
    expect(await guard.isFrozen('example')).toBe(false);
    const governance = await service();
    await governance.freeze(caller('alice'), { project: null, code: code('alice') });
    // Cached for a minute: a change is seen once the guard is told (as the service does).
    expect(await guard.isFrozen('example')).toBe(false);
    guard.invalidate();
    expect(await guard.isFrozen('example')).toBe(true);
    expect(await guard.isFrozen('another')).toBe(true);
    expect(await guard.isRevoked(caller('bob').certificateSha256)).toBe(false);
  });

  it('refuses proposals on the log key and on unknown keys', async () => {
    const governance = await service();
    await expect(governance.propose(caller('alice'), { action: { type: 'rotate-key', project: 'example', key: 'signet-log', algorithm: null } })).rejects.toMatchObject({
      code: 'LOG_KEY_RESERVED',
    });
    await expect(governance.propose(caller('alice'), { action: { type: 'retire-key', keyId: 'nothing@1' } })).rejects.toMatchObject({ code: 'KEY_NOT_FOUND' });
    await expect(governance.propose({ certificateSha256: '00'.repeat(32) }, { action: { type: 'freeze', project: null } })).rejects.toMatchObject({
      code: 'OFFICER_UNKNOWN',
    });
  });
});

