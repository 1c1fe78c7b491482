/**
 * Officers end to end, with the real service (`signet serve`) and the real CLI
 * (`signet officer …`) over mTLS with the officers' certificates from `signet init`.
 * TOTP codes are computed independently of the product, by `oathtool --totp -b SECRET`
 * (OATH Toolkit, RFC 6238), from the base32 secrets `signet init --json` printed.
 *
 * A code counts once per officer and only codes of the current step ±1 are accepted, so
 * an officer can approve at most twice in quick succession (steps t and t+1): each
 * scenario runs on its own `signet init` directory to have fresh officers. The helpers
 * are shared with other officer tests (test/helpers/officers.ts).
 */
import { createHash, verify } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signatureValidAt } from '../../keyrotation/lifecycle.js';
import { openStore } from '../../store/open-store.js';
import type { KeyVersionRecord } from '../../store/store.js';
import { loadCertificateAuthority, issueLeafCertificate, toPem } from '../../tls/dev-pki.js';
import { runCli, startServe } from '../helpers/cli.js';
import { httpsCall } from '../helpers/dev-env.js';
import {
  allLeavesText,
  approve,
  getJson,
  governanceEvents,
  json,
  officer,
  propose,
  setUpOfficers,
  sign,
  totp,
  type OfficerEnvironment as Environment,
} from '../helpers/officers.js';

const environments: Environment[] = [];

async function setUp(): Promise<Environment> {
  const env = await setUpOfficers();
  environments.push(env);
  return env;
}

afterAll(async () => {
  for (const env of environments) expect(await env.serve.stop()).toBe(0);
});

describe('rotation by quorum', { timeout: 180_000 }, () => {
  let env: Environment;
  let before: { receipt: any; artifact: string };
  let rotation: { id: string; hash: string };
  const codes: string[] = [];

  beforeAll(async () => {
    env = await setUp();
  });

  it('signs with the first version before any rotation', async () => {
    const { result, artifact } = await sign(env, 'release 1.0');
    const outcome = json(result) as { keyId: string; receiptFile: string };
    expect(outcome.keyId).toBe('demo-release@1');
    before = { receipt: JSON.parse(readFileSync(outcome.receiptFile, 'utf8')), artifact };
  });

  it('a single approval does not execute; the proposer cannot approve; a wrong or reused code does not count', async () => {
    rotation = await propose(env, 'alice', 'rotate-key', '--key-name', 'demo-release', '--reason', 'yearly rotation');
    const other = await propose(env, 'alice', 'rotate-key', '--key-name', 'demo-release');
    const bobCode = totp(env.secret('bob'));
    codes.push(bobCode);
    expect(json(await approve(env, 'bob', rotation.id, bobCode)).quorum).toMatchObject({ counted: ['bob'], required: 2, met: false });
    // bob's code, just used, on another proposal: refused, and it approves nothing.
    const reused = await approve(env, 'bob', other.id, bobCode);
    expect(reused.code).toBe(1);
    expect(reused.stderr).toContain('TOTP_REUSED');

    const single = await officer(env, 'alice', 'execute', rotation.id);
    expect(single.code).toBe(1);
    expect(single.stderr).toContain('QUORUM_NOT_MET');

    const own = await approve(env, 'alice', rotation.id, totp(env.secret('alice')));
    expect(own.stderr).toContain('PROPOSER_CANNOT_APPROVE');
    const wrong = await approve(env, 'carol', other.id, bobCode === '000000' ? '111111' : '000000');
    expect(wrong.stderr).toMatch(/TOTP_INVALID|TOTP_REUSED/);
    expect(json(await officer(env, 'alice', 'show', other.id)).quorum.counted).toEqual([]);

    // A CI client certificate is no officer's: the officer routes refuse it.
    const ci = await httpsCall(`${env.init.url}/v1/officer/status`, {
      ca: readFileSync(env.init.caCert),
      cert: readFileSync(env.init.clientCert),
      key: readFileSync(env.init.clientKey),
    });
    expect(ci.status).toBe(401);
    expect(ci.json.error.code).toBe('CLIENT_CERT_UNTRUSTED');
  });

  it('a second officer approves; executing rotates: new version active, old one verify-only', async () => {
    const carolCode = totp(env.secret('carol'), 30);
    codes.push(carolCode);
    expect(json(await approve(env, 'carol', rotation.id, carolCode)).quorum).toMatchObject({ counted: ['bob', 'carol'], met: true });
    const executed = json(await officer(env, 'bob', 'execute', rotation.id)) as { proposal: { status: string }; keys: { keyId: string; state: string }[] };
    expect(executed.proposal.status).toBe('executed');
    expect(executed.keys.map((k) => [k.keyId, k.state])).toEqual([
      ['demo-release@1', 'verify-only'],
      ['demo-release@2', 'active'],
    ]);
    const again = await officer(env, 'bob', 'execute', rotation.id);
    expect(again.stderr).toContain('PROPOSAL_CLOSED');
  });

  it('new signatures use the new version; the old version stays in /v1/trust and its signature still verifies', async () => {
    const { result } = await sign(env, 'release 2.0');
    expect(json(result).keyId).toBe('demo-release@2');

    const trust = (await getJson(env, '/v1/trust')) as { keys: (KeyVersionRecord & { certificatePem: string | null })[] };
    const old = trust.keys.find((k) => k.keyId === 'demo-release@1');
    const current = trust.keys.find((k) => k.keyId === 'demo-release@2');
    expect(old).toMatchObject({ state: 'verify-only' });
    expect(old?.notAfter).not.toBeNull();
    expect(current).toMatchObject({ state: 'active', notAfter: null });
    expect(current?.notBefore).toBe(old?.notAfter);
    expect(current?.certificatePem).toMatch(/BEGIN CERTIFICATE/);
    expect((await getJson(env, '/v1/keys/demo-release')).keyId).toBe('demo-release@2');

    // The signature made before the rotation: valid with the bundle's public key, and
    // logged inside the old version's validity window.
    if (old === undefined) throw new Error('old version missing from the trust bundle');
    const signature = Buffer.from(before.receipt.signature as string, 'base64');
    expect(verify('sha256', readFileSync(before.artifact), old.publicKeyPem, signature)).toBe(true);
    expect(signatureValidAt({ ...old, hsmKeyId: '00' }, before.receipt.log.integratedTime as number)).toBe(true);
    // A signature claimed for the old version after the rotation would be outside it.
    expect(signatureValidAt({ ...old, hsmKeyId: '00' }, Math.floor(Date.parse(old.notAfter ?? '') / 1000) + 1)).toBe(false);
  });

  it('the log tells the whole story, without codes or secrets', async () => {
    const events = (await governanceEvents(env)).filter((e) => e.proposalId === rotation.id).map((e) => e.event as string);
    expect(events).toEqual(['proposed', 'approved', 'approved', 'execution-started', 'key-generated', 'executed']);
    const text = await allLeavesText(env);
    for (const o of env.init.officers) expect(text).not.toContain(o.totpSecret);
    for (const code of codes) expect(text).not.toMatch(new RegExp(`(?<![0-9a-f])${code}(?![0-9a-f])`));
  });
});

describe('freeze, unfreeze, revocation of a CI client certificate, wrong-code limit', { timeout: 180_000 }, () => {
  let env: Environment;

  beforeAll(async () => {
    env = await setUp();
  });

  it('one officer freezes the project at once; signing is refused and logged as a deny', async () => {
    expect(json((await sign(env, 'before the freeze')).result).keyId).toBe('demo-release@1');
    const frozen = json(await officer(env, 'alice', 'freeze', '--project', 'example', '--code', totp(env.secret('alice')), '--reason', 'incident'));
    expect(frozen.proposal).toMatchObject({ status: 'executed', content: { action: { type: 'freeze', project: 'example' } } });
    const refused = (await sign(env, 'during the freeze')).result;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('SIGNING_FROZEN');
    // A dry run says so too (and, as every dry run, logs nothing).
    const dryRun = await httpsCall(`${env.init.url}/v1/sign`, {
      ca: readFileSync(env.init.caCert),
      cert: readFileSync(env.init.clientCert),
      key: readFileSync(env.init.clientKey),
      headers: { authorization: `Bearer ${(await runCli(['dev-token', '--dir', env.dir])).stdout.trim()}` },
      json: { project: env.init.project, digest: { algorithm: 'sha256', value: '00'.repeat(32) }, dryRun: true },
    });
    expect(dryRun.status, dryRun.text).toBe(200);
    expect(dryRun.json).toMatchObject({ dryRun: true, allow: false, reasons: [{ code: 'SIGNING_FROZEN' }] });
    const text = await allLeavesText(env);
    expect(text).toContain('"code":"SIGNING_FROZEN"');
  });

  it('unfreezing needs the quorum', async () => {
    const unfreeze = json(await officer(env, 'alice', 'unfreeze', '--project', 'example')) as { id: string };
    json(await approve(env, 'bob', unfreeze.id, totp(env.secret('bob'))));
    expect((await officer(env, 'bob', 'execute', unfreeze.id)).stderr).toContain('QUORUM_NOT_MET');
    expect((await sign(env, 'still frozen')).result.stderr).toContain('SIGNING_FROZEN');
    json(await approve(env, 'carol', unfreeze.id, totp(env.secret('carol'))));
    json(await officer(env, 'carol', 'execute', unfreeze.id));
    expect(json((await sign(env, 'after the unfreeze')).result).keyId).toBe('demo-release@1');
  });

  it('a revoked CI client certificate signs nothing', async () => {
    const revocation = json(await officer(env, 'alice', 'revoke', '--cert-file', env.init.clientCert, '--reason', 'runner compromised')) as { id: string };
    json(await approve(env, 'bob', revocation.id, totp(env.secret('bob'), 30)));
    json(await approve(env, 'carol', revocation.id, totp(env.secret('carol'), 30)));
    json(await officer(env, 'alice', 'execute', revocation.id));
    const refused = (await sign(env, 'with a revoked certificate')).result;
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('CLIENT_CERT_REVOKED');
    // An officer certificate is no CI client's either.
    const asOfficer = await httpsCall(`${env.init.url}/v1/sign`, {
      ca: readFileSync(env.init.caCert),
      cert: readFileSync(join(env.dir, 'officers', 'alice.pem')),
      key: readFileSync(join(env.dir, 'officers', 'alice-key.pem')),
      json: { project: 'example', digest: { algorithm: 'sha256', value: '00'.repeat(32) } },
    });
    expect(asOfficer.status).toBe(401);
    expect(asOfficer.json.error.code).toBe('CLIENT_CERT_UNTRUSTED');
  });

  it('too many wrong codes lock an officer out, even with the right code', async () => {
    const target = await propose(env, 'bob', 'rotate-key', '--key-name', 'demo-release');
    const right = totp(env.secret('alice'), 30);
    const wrong = right === '000000' ? '111111' : '000000';
    for (let i = 0; i < 5; i++) expect((await approve(env, 'alice', target.id, wrong)).stderr).toContain('TOTP_INVALID');
    const locked = await approve(env, 'alice', target.id, right);
    expect(locked.stderr).toContain('TOTP_LOCKED');
    expect(json(await officer(env, 'alice', 'status')).lockedUntil).toMatch(/^\d{4}-/);
  });
});

describe('officers join and leave by quorum', { timeout: 180_000 }, () => {
  let env: Environment;
  let dave: { cert: string; key: string; secret: string };

  beforeAll(async () => {
    env = await setUp();
  });

  it('adds an officer, who enrols once through the service', async () => {
    const ca = await loadCertificateAuthority(readFileSync(join(env.dir, 'tls', 'officer-ca.pem'), 'utf8'), readFileSync(join(env.dir, 'tls', 'officer-ca-key.pem'), 'utf8'));
    const pem = await toPem(await issueLeafCertificate(ca, { commonName: 'dave', usages: ['client'] }));
    const cert = join(env.dir, 'dave.pem');
    const key = join(env.dir, 'dave-key.pem');
    writeFileSync(cert, pem.certificatePem);
    writeFileSync(key, pem.privateKeyPem, { mode: 0o600 });

    const added = await propose(env, 'alice', 'add-officer', '--name', 'dave', '--cert-file', cert);
    json(await approve(env, 'bob', added.id, totp(env.secret('bob'))));
    json(await approve(env, 'carol', added.id, totp(env.secret('carol'))));
    json(await officer(env, 'alice', 'execute', added.id));

    const asDave = ['--url', env.init.url, '--ca', env.init.caCert, '--cert', cert, '--key', key, '--json'];
    const enrolled = json(await runCli(['officer', 'enroll', ...asDave])) as { officer: string; otpauthUri: string };
    expect(enrolled.officer).toBe('dave');
    const secret = new URL(enrolled.otpauthUri).searchParams.get('secret') ?? '';
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    const twice = await runCli(['officer', 'enroll', ...asDave]);
    expect(twice.stderr).toContain('OFFICER_ALREADY_ENROLLED');
    dave = { cert, key, secret };
  });

  it("a removed officer's approval stops counting", async () => {
    const asDave = ['--url', env.init.url, '--ca', env.init.caCert, '--cert', dave.cert, '--key', dave.key, '--json'];
    const rotation = await propose(env, 'alice', 'rotate-key', '--key-name', 'demo-release');
    json(await approve(env, 'carol', rotation.id, totp(env.secret('carol'), 30)));

    const removal = await propose(env, 'alice', 'remove-officer', '--name', 'carol');
    json(await approve(env, 'bob', removal.id, totp(env.secret('bob'), 30)));
    json(await runCli(['officer', 'approve', removal.id, '--code', totp(dave.secret), ...asDave]));
    json(await officer(env, 'alice', 'execute', removal.id));

    const shown = json(await officer(env, 'alice', 'show', rotation.id));
    expect(shown.quorum).toMatchObject({ counted: [], discounted: [{ officer: 'carol', reason: 'OFFICER_REMOVED' }] });
    json(await runCli(['officer', 'approve', rotation.id, '--code', totp(dave.secret, 30), ...asDave]));
    const refused = await officer(env, 'alice', 'execute', rotation.id);
    expect(refused.stderr).toContain('QUORUM_NOT_MET');
    expect((await officer(env, 'carol', 'status')).stderr).toContain('OFFICER_REMOVED');
    expect((await getJson(env, '/v1/keys/demo-release')).keyId).toBe('demo-release@1');
  });
});

describe('a policy change takes effect only with the quorum (set-policy)', { timeout: 180_000 }, () => {
  let env: Environment;
  let policyFile: string;
  let original: string;

  beforeAll(async () => {
    env = await setUp();
    policyFile = join(env.dir, 'policy.yaml');
    original = readFileSync(policyFile, 'utf8');
  });

  /** The same rules under another hash: a comment changes the file's bytes. */
  const version = (name: string): string => `${original}\n# policy version ${name}\n`;
  const sha256Of = (text: string): string => createHash('sha256').update(text).digest('hex');
  const entriesOf = async (kind: string): Promise<{ kind: string; leaf: string }[]> => {
    const { treeSize } = (await getJson(env, '/v1/log')) as { treeSize: number };
    const { entries } = (await getJson(env, `/v1/log/entries?start=0&end=${treeSize}`)) as { entries: { kind: string; leaf: string }[] };
    return entries.filter((e) => e.kind === kind);
  };
  const loadedPolicies = async (): Promise<string[]> =>
    (await entriesOf('signet.policy/v1')).map((e) => (JSON.parse(Buffer.from(e.leaf, 'base64').toString('utf8')) as { spec: { sha256: string } }).spec.sha256);
  const decisions = async (): Promise<number> => (await entriesOf('signet.decision/v1')).length;
  /** Sends SIGHUP and waits for the service to report the reload's outcome. */
  const reload = async (): Promise<'reloaded' | 'refused'> => {
    const before = env.serve.output().length;
    env.serve.child.kill('SIGHUP');
    for (let waited = 0; waited < 5_000; waited += 50) {
      const said = env.serve.output().slice(before);
      if (said.includes('policy reloaded')) return 'reloaded';
      if (said.includes('policy reload refused')) return 'refused';
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error('the service did not report the reload within 5 s');
  };
  /** What /readyz says of the policy. */
  const readiness = async (): Promise<unknown> => ((await httpsCall(`${env.init.url}/readyz`, { ca: readFileSync(env.init.caCert) })).json as { policy: unknown }).policy;
  const signs = async (content: string): Promise<string> => {
    const { result } = await sign(env, content);
    return result.code === 0 ? 'signed' : result.stderr;
  };

  it('once a quorum approved a policy that is not loaded, nothing is signed until it is', async () => {
    expect(await signs('before any approval')).toBe('signed');
    const approvedText = version('2');
    const proposalFile = join(env.dir, 'policy-2.yaml');
    writeFileSync(proposalFile, approvedText);
    const change = await propose(env, 'alice', 'set-policy', '--policy-file', proposalFile, '--reason', 'tighten');
    json(await approve(env, 'bob', change.id, totp(env.secret('bob'))));
    json(await approve(env, 'carol', change.id, totp(env.secret('carol'))));
    json(await officer(env, 'alice', 'execute', change.id));

    // The file in place is still the old one: refused, with a stable code, and no decision is made (none logged).
    const decisionsBefore = await decisions();
    const refused = await signs('under the old policy');
    expect(refused).toContain('POLICY_NOT_APPROVED');
    expect(await decisions()).toBe(decisionsBefore);
    expect(await readiness()).toEqual({ sha256: sha256Of(original), approvedSha256: sha256Of(approvedText), approved: false });

    // Another file is refused on reload; the approved one is loaded, and signing resumes.
    writeFileSync(policyFile, version('unapproved'));
    expect(await reload()).toBe('refused');
    expect(env.serve.output()).toContain('POLICY_NOT_APPROVED');
    expect(await signs('still refused')).toContain('POLICY_NOT_APPROVED');
    writeFileSync(policyFile, approvedText);
    expect(await reload()).toBe('reloaded');
    expect(await signs('under the approved policy')).toBe('signed');
    expect(await readiness()).toEqual({ sha256: sha256Of(approvedText), approvedSha256: sha256Of(approvedText), approved: true });
    const loaded = await loadedPolicies();
    expect(loaded.at(-1)).toBe(sha256Of(approvedText));
    expect(loaded).not.toContain(sha256Of(version('unapproved')));
  });

  it('a policy file deployed first is refused on reload, then put in force by the execution itself', async () => {
    const nextText = version('3');
    writeFileSync(policyFile, nextText);
    expect(await reload()).toBe('refused');
    expect(await signs('while the new file waits for its approval')).toBe('signed');

    const change = await propose(env, 'bob', 'set-policy', '--policy-file', policyFile);
    json(await approve(env, 'alice', change.id, totp(env.secret('alice'), 30)));
    json(await approve(env, 'carol', change.id, totp(env.secret('carol'), 30)));
    json(await officer(env, 'bob', 'execute', change.id));
    for (let waited = 0; !(await loadedPolicies()).includes(sha256Of(nextText)); waited += 50) {
      expect(waited, 'the approved file is loaded within 5 s of the execution').toBeLessThan(5_000);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(await signs('under the newly approved policy')).toBe('signed');
  });

  it('a policy approved on another replica is put in force by every replica by itself', async () => {
    const nextText = version('4');
    writeFileSync(policyFile, nextText);
    // Another replica executing set-policy on the same database: here another process's
    // connection (this test's) records the approved hash, so this service is not told.
    const store = await openStore({ driver: 'sqlite', sqlite: { path: join(env.dir, 'signet.db') } });
    try {
      await store.governance.setPolicySha256(sha256Of(nextText), new Date().toISOString());
    } finally {
      await store.close();
    }
    for (let waited = 0; ; waited += 100) {
      const policy = (await readiness()) as { sha256: string; approved: boolean };
      if (policy.sha256 === sha256Of(nextText) && policy.approved) break;
      expect(waited, 'the approved file is in force within 15 s').toBeLessThan(15_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect((await loadedPolicies()).at(-1)).toBe(sha256Of(nextText));
    expect(await signs('after an approval made elsewhere')).toBe('signed');
  });

  it('a service started with a file the officers did not approve starts, signs nothing, and recovers once the file is put back', async () => {
    const approvedText = readFileSync(policyFile, 'utf8');
    writeFileSync(policyFile, version('not approved'));
    expect(await env.serve.stop()).toBe(0);
    env.serve = await startServe(env.init.config);
    expect(env.serve.output()).toContain('the policy file is not the policy the officers approved');
    expect(await readiness()).toEqual({ sha256: sha256Of(version('not approved')), approvedSha256: sha256Of(approvedText), approved: false });
    expect(await signs('under an unapproved policy')).toContain('POLICY_NOT_APPROVED');

    writeFileSync(policyFile, approvedText);
    for (let waited = 0; !((await readiness()) as { approved: boolean }).approved; waited += 100) {
      expect(waited, 'the approved file is in force within 15 s').toBeLessThan(15_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await signs('under the approved policy again')).toBe('signed');
  });
});
