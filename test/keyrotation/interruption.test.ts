/**
 * Interrupted executions in-process, on a real `signet init` set-up (SoftHSM token,
 * SQLite file): what a process that died during a rotation leaves behind (its execution
 * lease and `execution-started`, nothing after) is simulated directly in storage, with
 * execution leases shortened to a fraction of a second. The lease refuses a second
 * execution while it is live; once it has expired, of several watchers racing for it
 * exactly one records `execution-interrupted`, with what storage holds; executing
 * again records the interruption itself if nobody has yet, and completes. The kill
 * itself is tested end to end (test/e2e/rotation-crash.test.ts).
 */
import 'reflect-metadata';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority } from '../../ca/authority.js';
import { caSettingsFrom } from '../../ca/settings.js';
import { loadConfig } from '../../config/load.js';
import { ROTATION_FAILPOINTS, type RotationFailpoint } from '../../keyrotation/execute.js';
import { executionLeaseName, recordInterrupted, startInterruptionWatch } from '../../keyrotation/execution-lease.js';
import { GovernanceService } from '../../keyrotation/governance-service.js';
import { governanceEntry } from '../../keyrotation/log-entries.js';
import { GOVERNANCE_DEFAULTS } from '../../keyrotation/settings.js';
import { totpSecretFromBase32 } from '../../keyrotation/totp.js';
import { failpointsFromEnvironment } from '../../service/failpoints.js';
import { openConfiguredHsm } from '../../service/open-hsm.js';
import { openSecretSealer } from '../../signer/secret-sealing.js';
import type { Hsm, HsmSecretSealer } from '../../signer/types.js';
import { openStore } from '../../store/open-store.js';
import type { SignetStore } from '../../store/store.js';
import { createDevEnvironment, type DevEnvironment } from '../helpers/dev-env.js';
import { referenceTotp } from './reference-totp.js';

const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };
const LEASE_MS = 400;

let env: DevEnvironment;
let hsm: Hsm;
let store: SignetStore;
let ca: CertificateAuthority;
let sealer: HsmSecretSealer;
let logKeyName: string;
const callers: Record<string, { certificateSha256: string }> = {};
const secrets: Record<string, Buffer> = {};

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

function service(options: { holder: string; failpoint?: (name: RotationFailpoint) => void }): GovernanceService {
  return new GovernanceService({
    store,
    hsm,
    ca,
    sealer,
    settings: { ...GOVERNANCE_DEFAULTS },
    logger: silent,
    logKeyName,
    now: () => new Date(),
    executionHolder: options.holder,
    executionLeaseMs: LEASE_MS,
    ...(options.failpoint === undefined ? {} : { failpoint: options.failpoint }),
  });
}

function watcher(holder: string) {
  return { store, logger: silent, now: () => new Date(), holder, leaseMs: LEASE_MS };
}

/**
 * A rotation of demo-release, approved by two officers other than its proposer, each
 * with the code of now + `offsetSeconds` (a code counts once per officer, within ±1 step
 * of now: each officer approves at most twice here, at offsets 0 and 30).
 */
async function approvedRotation(governance: GovernanceService, proposer: string, approvals: readonly (readonly [string, number])[]): Promise<string> {
  const { proposal } = await governance.propose(caller(proposer), { action: { type: 'rotate-key', project: 'example', key: 'demo-release', algorithm: null } });
  const id = proposal.content.id;
  for (const [officer, offsetSeconds] of approvals) {
    await governance.approve(caller(officer), id, { proposalHash: proposal.hash, code: code(officer, offsetSeconds) });
  }
  return id;
}

/** What a process killed right after `execution-started` leaves: its lease (not renewed any more) and that entry. */
async function leaveDeadExecution(id: string, holder: string): Promise<void> {
  expect(await store.leases.tryAcquire(executionLeaseName(id), holder, LEASE_MS)).toBe(true);
  const now = new Date();
  await store.transaction(async (tx) => {
    await tx.log.append([governanceEntry({ event: 'execution-started', proposalId: id, action: 'rotate-key', by: 'bob', time: now.toISOString() }, now)]);
  });
}

async function eventsOf(id: string): Promise<Record<string, unknown>[]> {
  const entries = await store.log.entries(0, await store.log.size());
  return entries
    .filter((e) => e.kind === 'signet.governance/v1')
    .map((e) => (JSON.parse(e.leaf.toString('utf8')) as { spec: Record<string, unknown> }).spec)
    .filter((e) => e.proposalId === id);
}

async function activeVersions(): Promise<string[]> {
  return (await store.keys.listVersions('demo-release')).filter((k) => k.state === 'active').map((k) => k.keyId);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  env = await createDevEnvironment();
  const config = loadConfig(env.init.config);
  logKeyName = config.log.keyName;
  hsm = await openConfiguredHsm(config, { poolSize: 1, signWorkers: 1 });
  store = await openStore(config.storage);
  ca = new CertificateAuthority({ hsm, store, settings: caSettingsFrom(config), logKeyName });
  sealer = await openSecretSealer(hsm, { label: config.governance.sealingKeyLabel });
  for (const officer of env.init.officers) {
    callers[officer.name] = { certificateSha256: new X509Certificate(readFileSync(officer.cert)).fingerprint256.replaceAll(':', '').toLowerCase() };
    secrets[officer.name] = totpSecretFromBase32(officer.totpSecret);
  }
});

afterAll(async () => {
  await store.close();
  await hsm.close();
});

describe('failpoints', () => {
  it('are inert without SIGNET_FAILPOINTS, and an unknown name is a config error', () => {
    expect(failpointsFromEnvironment(ROTATION_FAILPOINTS, {})).toBeUndefined();
    expect(failpointsFromEnvironment(ROTATION_FAILPOINTS, { SIGNET_FAILPOINTS: ' , ' })).toBeUndefined();
    expect(failpointsFromEnvironment(ROTATION_FAILPOINTS, { SIGNET_FAILPOINTS: 'rotation.after-certificate, rotation.after-start' })?.armed).toEqual([
      'rotation.after-start',
      'rotation.after-certificate',
    ]);
    let thrown: unknown;
    try {
      failpointsFromEnvironment(ROTATION_FAILPOINTS, { SIGNET_FAILPOINTS: 'rotation.after-start,rotation.after-lunch' });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: 'CONFIG_INVALID' });
    expect((thrown as Error).message).toContain('rotation.after-lunch');
  });
});

describe('an execution whose process died', () => {
  let id: string;

  it('keeps others from executing while its lease is live', async () => {
    const governance = service({ holder: 'replica-a:1:aa' });
    id = await approvedRotation(governance, 'alice', [
      ['bob', 0],
      ['carol', 0],
    ]);
    await leaveDeadExecution(id, 'replica-dead:1:dd');

    await expect(governance.execute(caller('bob'), id)).rejects.toMatchObject({ code: 'EXECUTION_IN_PROGRESS' });
    expect(await recordInterrupted(watcher('replica-a:1:aa:watch'), (await store.governance.getProposal(id))!)).toMatchObject({ kind: 'held' });
    expect(await activeVersions()).toEqual(['demo-release@1']);
    expect((await eventsOf(id)).map((e) => e.event)).toEqual(['proposed', 'approved', 'approved', 'execution-started']);
  });

  it('once the lease has expired, exactly one of several watchers records the interruption, with what it found', async () => {
    await sleep(LEASE_MS + 100);
    const proposal = (await store.governance.getProposal(id))!;
    const checks = await Promise.all(['replica-a:1:aa:watch', 'replica-b:2:bb:watch', 'replica-c:3:cc:watch'].map((holder) => recordInterrupted(watcher(holder), proposal)));
    expect(checks.filter((c) => c.kind === 'recorded')).toHaveLength(1);
    const events = await eventsOf(id);
    expect(events.map((e) => e.event)).toEqual(['proposed', 'approved', 'approved', 'execution-started', 'execution-interrupted']);
    expect(events.at(-1)).toMatchObject({
      action: 'rotate-key',
      found: { activeKeyId: 'demo-release@1', pendingKeyId: null, pendingCertificate: false },
    });
    expect(await store.leases.get(executionLeaseName(id))).toBeNull();
    // Recorded once: the next round finds nothing.
    expect(await recordInterrupted(watcher('replica-b:2:bb:watch'), proposal)).toEqual({ kind: 'none' });
  });

  it('executing again completes, passing every failpoint, and releases its lease', async () => {
    const reached: RotationFailpoint[] = [];
    const result = await service({ holder: 'replica-b:2:bb', failpoint: (name) => reached.push(name) }).execute(caller('carol'), id);
    expect(reached).toEqual([...ROTATION_FAILPOINTS]);
    expect(result.keys.map((k) => [k.keyId, k.state])).toEqual([
      ['demo-release@1', 'verify-only'],
      ['demo-release@2', 'active'],
    ]);
    expect(await activeVersions()).toEqual(['demo-release@2']);
    expect((await eventsOf(id)).map((e) => e.event)).toEqual([
      'proposed',
      'approved',
      'approved',
      'execution-started',
      'execution-interrupted',
      'execution-started',
      'key-generated',
      'executed',
    ]);
    expect(await store.leases.get(executionLeaseName(id))).toBeNull();
  });

  it('the next execution records an interruption nobody recorded yet, then carries on', async () => {
    const governance = service({ holder: 'replica-a:1:aa' });
    const next = await approvedRotation(governance, 'bob', [
      ['alice', 0],
      ['carol', 30],
    ]);
    await leaveDeadExecution(next, 'replica-dead:1:dd');
    await sleep(LEASE_MS + 100);
    await governance.execute(caller('alice'), next);
    expect(await activeVersions()).toEqual(['demo-release@3']);
    const events = await eventsOf(next);
    expect(events.map((e) => e.event)).toEqual([
      'proposed',
      'approved',
      'approved',
      'execution-started',
      'execution-interrupted',
      'execution-started',
      'key-generated',
      'executed',
    ]);
    expect(events[4]).toMatchObject({ found: { activeKeyId: 'demo-release@2', pendingKeyId: null } });
  });

  it('the watch records at start, and again once a lease it found live has expired', async () => {
    const governance = service({ holder: 'replica-a:1:aa' });
    const third = await approvedRotation(governance, 'carol', [
      ['alice', 30],
      ['bob', 30],
    ]);
    await leaveDeadExecution(third, 'replica-dead:1:dd');
    const watch = startInterruptionWatch({ ...watcher('replica-a:1:aa:watch'), intervalMs: 60_000 });
    try {
      await watch.runOnce();
      expect((await eventsOf(third)).map((e) => e.event)).not.toContain('execution-interrupted');
      const deadline = Date.now() + 5_000;
      while (!(await eventsOf(third)).some((e) => e.event === 'execution-interrupted') && Date.now() < deadline) await sleep(50);
      expect((await eventsOf(third)).filter((e) => e.event === 'execution-interrupted')).toHaveLength(1);
    } finally {
      await watch.stop();
    }
  });
});
