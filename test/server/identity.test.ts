/**
 * Pipeline identity, policy and single use of tokens, end to end over real TLS with
 * the real service: the dev issuer of `signet init` (static JWKS), policy reloads,
 * replays, dry runs, manifest binding and limits. Every refusal must sign nothing and
 * leave the token unused.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import {
  createDevEnvironment,
  devClientTls,
  devToken,
  httpsCall,
  signaturesIssued,
  startDevService,
  type DevEnvironment,
  type StartedService,
} from '../helpers/dev-env.js';

let env: DevEnvironment;
let service: StartedService;
let tls: { ca: Buffer; cert: Buffer; key: Buffer };
let originalPolicy: string;

const digest = (): string => randomBytes(32).toString('hex');

beforeAll(async () => {
  env = await createDevEnvironment();
  service = await startDevService(env);
  tls = devClientTls(env);
  originalPolicy = readFileSync(env.init.policy, 'utf8');
});

afterAll(async () => {
  await service.stop();
});

beforeEach(async () => {
  writeFileSync(env.init.policy, originalPolicy);
  await service.reloadPolicy();
});

async function editPolicy(edit: (project: Record<string, unknown>) => void): Promise<void> {
  const doc = parseYaml(originalPolicy) as { projects: Record<string, Record<string, unknown>> };
  edit(doc.projects.example!);
  writeFileSync(env.init.policy, toYaml(doc));
  await service.reloadPolicy();
}

function reasonCodes(answer: { json: any }): string[] {
  return (answer.json.error.reasons as { code: string }[]).map((r) => r.code);
}

function sign(token: string | undefined, body: Record<string, unknown> = {}) {
  return httpsCall(`${service.url}/v1/sign`, {
    json: { project: 'example', digest: { algorithm: 'sha256', value: digest() }, ...body },
    ...tls,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
}

function expectRefused(answer: Awaited<ReturnType<typeof sign>>, status: number, code: string, before: number): void {
  expect(answer.status, answer.text).toBe(status);
  expect(answer.json.error.code).toBe(code);
  expect(signaturesIssued(service)).toBe(before);
}

describe('pipeline identity', () => {
  it('a valid token from the right pipeline signs, and the answer names the identity', async () => {
    const answer = await sign(await devToken(env));
    expect(answer.status).toBe(200);
    expect(answer.json.identity).toEqual({ issuer: 'https://dev-issuer.signet.invalid', subject: 'repo:example/demo:ref:refs/heads/main' });
  });

  it('a v* tag signs too', async () => {
    expect((await sign(await devToken(env, { ref: 'refs/tags/v2.0.0' }))).status).toBe(200);
  });

  it.each([
    ['no token', undefined, 401, 'TOKEN_MISSING'],
    ['a token of another scheme', 'Basic', 401, 'TOKEN_MISSING'],
    ['garbage', 'a.b.c', 401, 'TOKEN_MALFORMED'],
  ])('%s → %i %s, nothing signed', async (_name, token, status, code) => {
    const before = signaturesIssued(service);
    const answer =
      token === 'Basic'
        ? await httpsCall(`${service.url}/v1/sign`, { json: { project: 'example', digest: { algorithm: 'sha256', value: digest() } }, ...tls, headers: { authorization: 'Basic eDp5' } })
        : await sign(token);
    expectRefused(answer, status, code, before);
    expect(answer.headers['www-authenticate']).toBe('Bearer');
  });

  it.each([
    ['another repository', { repository: 'other/repo' }],
    ['a fork', { repository: 'attacker/demo', repository_owner: 'attacker' }],
    ['another branch', { ref: 'refs/heads/feature' }],
    ['a pull request ref', { ref: 'refs/pull/7/merge' }],
    ['a nested tag', { ref: 'refs/tags/v1/x' }],
  ])('a valid token for %s → 403 POLICY_DENIED, nothing signed, token not used up', async (_name, claims) => {
    const before = signaturesIssued(service);
    const token = await devToken(env, claims);
    const answer = await sign(token);
    expectRefused(answer, 403, 'POLICY_DENIED', before);
    expect(reasonCodes(answer)).toEqual(['IDENTITY_NOT_ALLOWED']);
    // The refused request did not consume the token: a request the policy allows can still use it.
    await editPolicy((p) => {
      p.identities = [{ issuer: 'dev', claims: {} }];
    });
    expect((await sign(token)).status).toBe(200);
  });

  it('a self-hosted runner where the policy requires hosted → 403', async () => {
    await editPolicy((p) => {
      (p.identities as { claims: Record<string, unknown> }[])[0]!.claims.runner_environment = 'github-hosted';
    });
    const before = signaturesIssued(service);
    expectRefused(await sign(await devToken(env, { runner_environment: 'self-hosted' })), 403, 'POLICY_DENIED', before);
    expect((await sign(await devToken(env))).status).toBe(200);
  });

  it('an expired token, a token for another audience and a token from an unknown issuer → 401', async () => {
    const before = signaturesIssued(service);
    const now = Math.floor(Date.now() / 1000);
    expectRefused(await sign(await devToken(env, { iat: String(now - 900), nbf: String(now - 900), exp: String(now - 300) })), 401, 'TOKEN_EXPIRED', before);
    expectRefused(await sign(await devToken(env, { aud: 'https://github.com/example' })), 401, 'TOKEN_AUDIENCE_INVALID', before);
    expectRefused(await sign(await devToken(env, { iss: 'https://token.actions.githubusercontent.com' })), 401, 'TOKEN_ISSUER_UNKNOWN', before);
  });

  it('a valid token with a client certificate the project does not allow → 403', async () => {
    await editPolicy((p) => {
      p.clients = [{ fingerprint: 'f'.repeat(64) }];
    });
    const before = signaturesIssued(service);
    const answer = await sign(await devToken(env));
    expectRefused(answer, 403, 'POLICY_DENIED', before);
    expect(reasonCodes(answer)).toEqual(['CLIENT_NOT_ALLOWED']);
  });
});

describe('single use of a token', () => {
  it('an identical retry gets the original answer (same signature bytes); a different request is refused', async () => {
    const token = await devToken(env);
    const value = digest();
    const first = await sign(token, { digest: { algorithm: 'sha256', value } });
    expect(first.status).toBe(200);
    const before = signaturesIssued(service);
    const retry = await sign(token, { digest: { algorithm: 'sha256', value } });
    expect(retry.status).toBe(200);
    // ECDSA signatures are randomised: equal bytes prove the answer was replayed, not re-signed.
    expect(retry.json.signature).toBe(first.json.signature);
    expect(signaturesIssued(service)).toBe(before + 1); // the retry is answered, but from storage
    const other = await sign(token, { digest: { algorithm: 'sha256', value: digest() } });
    expectRefused(other, 401, 'TOKEN_REPLAYED', before + 1);
  });

  it('50 concurrent requests with one token and different digests: exactly one signs', async () => {
    const token = await devToken(env);
    const answers = await Promise.all(Array.from({ length: 50 }, () => sign(token)));
    const ok = answers.filter((a) => a.status === 200);
    expect(ok).toHaveLength(1);
    for (const refused of answers.filter((a) => a.status !== 200)) {
      expect([refused.status, refused.json.error.code]).toEqual([401, 'TOKEN_REPLAYED']);
    }
  });

  it('concurrent identical retries all get the one answer', async () => {
    const token = await devToken(env);
    const value = digest();
    const answers = await Promise.all(Array.from({ length: 20 }, () => sign(token, { digest: { algorithm: 'sha256', value } })));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(new Set(answers.map((a) => a.json.signature as string)).size).toBe(1);
  });
});

describe('dry run', () => {
  it('explains an allow and a deny, and refuses what signing would refuse, without signing or using up the token', async () => {
    const before = signaturesIssued(service);
    const token = await devToken(env);
    const allowed = await sign(token, { dryRun: true });
    expect(allowed.status).toBe(200);
    expect(allowed.json).toMatchObject({ dryRun: true, allow: true, reasons: [], keyId: 'demo-release@1' });
    // pgp is allowed by the example policy, but it signs the manifest itself: a dry run
    // refuses what signing would refuse, with the same error.
    const impossible = await sign(token, { dryRun: true, format: 'pgp', project: 'example', digest: { algorithm: 'sha256', value: digest() } });
    expect(impossible.status).toBe(400);
    expect(impossible.json.error.code).toBe('PAYLOAD_REQUIRED');
    const deniedRef = await sign(await devToken(env, { ref: 'refs/heads/x' }), { dryRun: true });
    expect(deniedRef.json).toMatchObject({ dryRun: true, allow: false });
    expect(deniedRef.json.reasons[0].code).toBe('IDENTITY_NOT_ALLOWED');
    expect(signaturesIssued(service)).toBe(before);
    expect((await sign(token)).status).toBe(200); // the token is still unused
  });
});

describe('manifest binding', () => {
  const statement = (commit: string, repository = 'example/demo'): string =>
    Buffer.from(
      JSON.stringify({
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name: 'app.tar.gz', digest: { sha256: 'ab'.repeat(32) } }],
        predicateType: 'https://signet.dev/release-manifest/v1',
        predicate: { source: { repository, commit } },
      }),
    ).toString('base64');

  beforeEach(async () => {
    await editPolicy((p) => {
      p.requireManifestBinding = true;
    });
  });

  it('signs a manifest whose commit is the token sha, and refuses one whose commit is not', async () => {
    const sha = randomBytes(20).toString('hex');
    const good = await sign(await devToken(env, { sha }), { digest: undefined, payload: statement(sha) });
    expect(good.status).toBe(200);
    expect(good.json.digest.value).toBe(createHash('sha256').update(Buffer.from(statement(sha), 'base64')).digest('hex'));
    const before = signaturesIssued(service);
    const bad = await sign(await devToken(env, { sha }), { digest: undefined, payload: statement(randomBytes(20).toString('hex')) });
    expectRefused(bad, 403, 'POLICY_DENIED', before);
    expect(reasonCodes(bad)).toEqual(['MANIFEST_COMMIT_MISMATCH']);
    const foreign = await sign(await devToken(env, { sha }), { digest: undefined, payload: statement(sha, 'attacker/demo') });
    expect(reasonCodes(foreign)).toEqual(['MANIFEST_REPOSITORY_MISMATCH']);
    const digestOnly = await sign(await devToken(env, { sha }));
    expect(reasonCodes(digestOnly)).toEqual(['MANIFEST_REQUIRED']);
  });
});

describe('limits', () => {
  it('a project rate limit answers 429 RATE_LIMITED past the limit, without using up the token', async () => {
    await editPolicy((p) => {
      p.limits = { projectPerMinute: 3 };
    });
    // Keep clear of a minute boundary, where the window would reset mid-test.
    const secondsLeft = 60 - new Date().getUTCSeconds();
    if (secondsLeft < 5) await new Promise((r) => setTimeout(r, secondsLeft * 1000 + 100));
    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await sign(await devToken(env))).status);
    expect(statuses).toEqual([200, 200, 200]);
    const before = signaturesIssued(service);
    const limited = await sign(await devToken(env));
    expectRefused(limited, 429, 'RATE_LIMITED', before);
  });

  it('a key usage limit holds', async () => {
    await editPolicy((p) => {
      p.limits = { keyUsage: { 'demo-release': 2 } };
    });
    const statuses: number[] = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await sign(await devToken(env))).status);
    expect(statuses).toEqual([200, 200, 403]);
  });
});

describe('policy reload', () => {
  it('an invalid new policy is refused and the old one stays in force', async () => {
    writeFileSync(env.init.policy, 'version: 1\nprojects: { example: { keys: [] } }\n');
    await expect(service.reloadPolicy()).rejects.toMatchObject({ code: 'POLICY_INVALID' });
    expect((await sign(await devToken(env))).status).toBe(200);
  });
});
