/**
 * Issue 6, "crash during execution": a rotation's execution is killed between its steps
 * and the service restarted; afterwards exactly one version of the key is active and
 * the log tells what happened.
 *
 * The real `signet serve`, armed with one failpoint (`SIGNET_FAILPOINTS`,
 * service/failpoints.ts), SIGKILLs itself at that point of the execution: after
 * `execution-started` is durable, after the pending version is recorded (key pair in
 * the HSM, row in storage), after its certificate is issued. Restarted without the
 * failpoint, the service must still sign with the old version (the only active one),
 * record `execution-interrupted` once the dead process's execution lease has expired
 * (keyrotation/execution-lease.ts; 10 s), keep a log that `signet log verify` accepts,
 * and complete the rotation when an officer executes the proposal again.
 *
 * Each crash point has its own `signet init` directory (fresh officers: a TOTP code
 * counts once per officer) and runs concurrently with the others.
 */
import { describe, expect, it } from 'vitest';
import { runLogVerify } from '../../cli/log-verify.js';
import { ROTATION_FAILPOINTS, type RotationFailpoint } from '../../keyrotation/execute.js';
import { runCli, startServe } from '../helpers/cli.js';
import { approve, getJson, governanceEvents, json, officer, propose, setUpOfficers, signOverHttps, totp, type OfficerEnvironment } from '../helpers/officers.js';

/** The environment without any failpoint, whatever the test runner's has. */
function withoutFailpoints(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.SIGNET_FAILPOINTS;
  return env;
}

async function activeVersions(env: OfficerEnvironment): Promise<{ keyId: string; state: string }[]> {
  const { keys } = (await getJson(env, '/v1/keys')) as { keys: { keyId: string; name: string; state: string }[] };
  return keys.filter((k) => k.name === 'demo-release').map((k) => ({ keyId: k.keyId, state: k.state }));
}

async function proposalEvents(env: OfficerEnvironment, id: string): Promise<Record<string, any>[]> {
  return (await governanceEvents(env)).filter((e) => e.proposalId === id);
}

/** Polls until `predicate` holds for the proposal's events (or fails after `timeoutMs`). */
async function eventsWhen(env: OfficerEnvironment, id: string, predicate: (events: Record<string, any>[]) => boolean, timeoutMs: number): Promise<Record<string, any>[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const events = await proposalEvents(env, id);
    if (predicate(events) || Date.now() > deadline) return events;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** `signet log verify --url … --ca …`: in-process (the command's own function), or as the CLI. */
async function logVerifies(env: OfficerEnvironment, how: 'in-process' | 'cli'): Promise<void> {
  if (how === 'in-process') {
    const audit = await runLogVerify({ url: env.init.url, ca: env.init.caCert, db: undefined, origin: undefined, publicKey: undefined, checkpoint: undefined });
    expect(audit.problem).toBeNull();
    expect(audit.ok).toBe(true);
    return;
  }
  const audit = await runCli(['log', 'verify', '--url', env.init.url, '--ca', env.init.caCert, '--json']);
  expect(audit.code, `${audit.stdout}\n${audit.stderr}`).toBe(0);
  expect(JSON.parse(audit.stdout)).toMatchObject({ ok: true });
}

/** What storage holds after a crash at each point, as `execution-interrupted` reports it. */
const FOUND: Record<RotationFailpoint, { activeKeyId: string; pendingKeyId: string | null; pendingCertificate: boolean }> = {
  'rotation.after-start': { activeKeyId: 'demo-release@1', pendingKeyId: null, pendingCertificate: false },
  'rotation.after-generate': { activeKeyId: 'demo-release@1', pendingKeyId: 'demo-release@2', pendingCertificate: false },
  'rotation.after-certificate': { activeKeyId: 'demo-release@1', pendingKeyId: 'demo-release@2', pendingCertificate: true },
};

describe.concurrent('a rotation killed between its steps', () => {
  for (const point of ROTATION_FAILPOINTS) {
    it(`${point}: after a restart the old version is the only active one, the log says so, and executing again completes`, { timeout: 120_000 }, async () => {
      const env = await setUpOfficers({ prefix: 'signet-rotation-crash-', serveEnv: { ...withoutFailpoints(), SIGNET_FAILPOINTS: point } });
      try {
        const rotation = await propose(env, 'alice', 'rotate-key', '--key-name', 'demo-release', '--reason', `crash test at ${point}`);
        json(await approve(env, 'bob', rotation.id, totp(env.secret('bob'))));
        expect(json(await approve(env, 'carol', rotation.id, totp(env.secret('carol')))).quorum).toMatchObject({ met: true });

        // The service dies in the middle of the request: SIGKILL, sent by itself.
        const execution = await officer(env, 'bob', 'execute', rotation.id);
        expect(execution.code).not.toBe(0);
        expect(await env.serve.exited).toEqual({ code: null, signal: 'SIGKILL' });

        env.serve = await startServe(env.init.config, withoutFailpoints());
        expect(await activeVersions(env)).toContainEqual({ keyId: 'demo-release@1', state: 'active' });
        expect((await activeVersions(env)).filter((k) => k.state === 'active')).toEqual([{ keyId: 'demo-release@1', state: 'active' }]);
        expect((await getJson(env, '/v1/keys/demo-release')).keyId).toBe('demo-release@1');
        expect(await signOverHttps(env, `signed after the crash at ${point}`)).toBe('demo-release@1');

        // Recorded once the dead process's execution lease has expired.
        const interrupted = await eventsWhen(env, rotation.id, (events) => events.some((e) => e.event === 'execution-interrupted'), 30_000);
        const generatedBefore = point === 'rotation.after-start' ? [] : ['key-generated'];
        expect(interrupted.map((e) => String(e.event))).toEqual(['proposed', 'approved', 'approved', 'execution-started', ...generatedBefore, 'execution-interrupted']);
        expect(interrupted.at(-1)).toMatchObject({ proposalId: rotation.id, action: 'rotate-key', found: FOUND[point] });
        await logVerifies(env, 'in-process');

        const executed = json(await officer(env, 'carol', 'execute', rotation.id)) as { proposal: { status: string }; keys: { keyId: string; state: string }[] };
        expect(executed.proposal.status).toBe('executed');
        expect(executed.keys.map((k) => [k.keyId, k.state])).toEqual([
          ['demo-release@1', 'verify-only'],
          ['demo-release@2', 'active'],
        ]);
        expect(await activeVersions(env)).toEqual([
          { keyId: 'demo-release@1', state: 'verify-only' },
          { keyId: 'demo-release@2', state: 'active' },
        ]);
        expect(await signOverHttps(env, `signed after the rotation at ${point}`)).toBe('demo-release@2');

        // The second execution resumed with the pending version the first one left, if any.
        const generatedAfter = point === 'rotation.after-start' ? ['key-generated'] : [];
        const events = (await proposalEvents(env, rotation.id)).map((e) => String(e.event));
        expect(events).toEqual([
          'proposed',
          'approved',
          'approved',
          'execution-started',
          ...generatedBefore,
          'execution-interrupted',
          'execution-started',
          ...generatedAfter,
          'executed',
        ]);
        await logVerifies(env, 'cli');
      } finally {
        if (env.serve.child.exitCode === null && env.serve.child.signalCode === null) expect(await env.serve.stop()).toBe(0);
      }
    });
  }
});
