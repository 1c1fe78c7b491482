/**
 * End to end over real TLS on loopback: `signet init` set-up, the real service, a real
 * SoftHSM token and SQLite file. Covers the signing path's refusals (each signs
 * nothing) and the HTTP edge's handling of bad bodies.
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCheckpoint } from '../../log/checkpoint.js';
import { verifyInclusion } from '../../log/merkle.js';
import { createCertificateAuthority, issueLeafCertificate, loadCertificateAuthority, toPem } from '../../tls/dev-pki.js';
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

const digestOf = (text: string): string => createHash('sha256').update(text).digest('hex');

beforeAll(async () => {
  env = await createDevEnvironment();
  service = await startDevService(env);
  tls = devClientTls(env);
});

afterAll(async () => {
  await service.stop();
});

async function sign(body: unknown, client: { cert?: Buffer | string; key?: Buffer | string } = tls) {
  const token = await devToken(env);
  return httpsCall(`${service.url}/v1/sign`, { json: body, ca: tls.ca, ...client, headers: { authorization: `Bearer ${token}` } });
}

describe('POST /v1/sign', () => {
  it('signs a digest with the project default key; node and openssl verify it with the published key', async () => {
    const digest = digestOf('release 1.0.0');
    const answer = await sign({ project: env.init.project, digest: { algorithm: 'sha256', value: digest } });
    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ keyId: env.init.keyId, keyName: 'demo-release', algorithm: 'ecdsa-p256', format: 'raw' });
    expect(answer.headers['x-request-id']).toBeTypeOf('string');

    const key = await httpsCall(`${service.url}/v1/keys/${env.init.keyId}`, { ca: tls.ca });
    expect(key.status).toBe(200);
    expect(key.json).toMatchObject({ keyId: env.init.keyId, algorithm: 'ecdsa-p256', state: 'active' });
    expect(key.json).not.toHaveProperty('hsmKeyId');
    const signature = Buffer.from(answer.json.signature as string, 'base64');
    const publicKey = createPublicKey(key.json.publicKeyPem as string);
    expect(verify('sha256', Buffer.from('release 1.0.0'), publicKey, signature)).toBe(true);

    const pub = join(env.dir, 'pub.pem');
    const sig = join(env.dir, 'sig.der');
    const artifact = join(env.dir, 'artifact.txt');
    writeFileSync(pub, key.json.publicKeyPem as string);
    writeFileSync(sig, signature);
    writeFileSync(artifact, 'release 1.0.0');
    expect(execFileSync('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', sig, artifact]).toString()).toContain('Verified OK');
  });

  it('signs a payload (hashed by the service) and names the key version when asked by name@version', async () => {
    const payload = Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1' }));
    const answer = await sign({ project: env.init.project, keyId: env.init.keyId, payload: payload.toString('base64'), digest: { algorithm: 'sha384' } });
    expect(answer.status).toBe(200);
    expect(answer.json.digest).toEqual({ algorithm: 'sha384', value: createHash('sha384').update(payload).digest('hex') });
    const key = await httpsCall(`${service.url}/v1/keys/demo-release`, { ca: tls.ca });
    expect(verify('sha384', payload, key.json.publicKeyPem as string, Buffer.from(answer.json.signature as string, 'base64'))).toBe(true);
  });

  describe('refuses clients that are not allowed, and signs nothing for them', () => {
    const body = () => ({ project: env.init.project, digest: { algorithm: 'sha256', value: digestOf('x') } });

    it('no client certificate → 401 CLIENT_CERT_REQUIRED', async () => {
      const before = signaturesIssued(service);
      const answer = await sign(body(), {});
      expect(answer.status).toBe(401);
      expect(answer.json.error.code).toBe('CLIENT_CERT_REQUIRED');
      expect(signaturesIssued(service)).toBe(before);
    });

    it('a certificate from another CA → 401 CLIENT_CERT_UNTRUSTED', async () => {
      const rogueCa = await createCertificateAuthority('Rogue CA');
      const rogue = await toPem(await issueLeafCertificate(rogueCa, { commonName: 'ci-example', usages: ['client'] }));
      const before = signaturesIssued(service);
      const answer = await sign(body(), { cert: rogue.certificatePem, key: rogue.privateKeyPem });
      expect(answer.status).toBe(401);
      expect(answer.json.error.code).toBe('CLIENT_CERT_UNTRUSTED');
      expect(signaturesIssued(service)).toBe(before);
    });

    it('a certificate from the client CA without the clientAuth EKU → 403 CLIENT_CERT_WRONG_USAGE', async () => {
      const ca = await loadCertificateAuthority(readFileSync(join(env.dir, 'tls/ci-client-ca.pem'), 'utf8'), readFileSync(join(env.dir, 'tls/ci-client-ca-key.pem'), 'utf8'));
      for (const usages of [['server'], ['code-signing'], []] as const) {
        const leaf = await toPem(await issueLeafCertificate(ca, { commonName: 'not-a-client', usages: [...usages] }));
        const before = signaturesIssued(service);
        const answer = await sign(body(), { cert: leaf.certificatePem, key: leaf.privateKeyPem });
        expect(answer.status, `usages ${usages.join(',')}`).toBe(403);
        expect(answer.json.error.code).toBe('CLIENT_CERT_WRONG_USAGE');
        expect(signaturesIssued(service)).toBe(before);
      }
    });

    it('an expired certificate from the client CA → 401 CLIENT_CERT_UNTRUSTED', async () => {
      const ca = await loadCertificateAuthority(readFileSync(join(env.dir, 'tls/ci-client-ca.pem'), 'utf8'), readFileSync(join(env.dir, 'tls/ci-client-ca-key.pem'), 'utf8'));
      const leaf = await toPem(
        await issueLeafCertificate(ca, { commonName: 'old', usages: ['client'], notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) }),
      );
      const answer = await sign(body(), { cert: leaf.certificatePem, key: leaf.privateKeyPem });
      expect(answer.status).toBe(401);
      expect(answer.json.error.code).toBe('CLIENT_CERT_UNTRUSTED');
    });

    it('a valid client whose fingerprint is not on the project list → 403 POLICY_DENIED with the reason', async () => {
      const ca = await loadCertificateAuthority(readFileSync(join(env.dir, 'tls/ci-client-ca.pem'), 'utf8'), readFileSync(join(env.dir, 'tls/ci-client-ca-key.pem'), 'utf8'));
      const other = await toPem(await issueLeafCertificate(ca, { commonName: 'ci-other', usages: ['client'] }));
      const before = signaturesIssued(service);
      const answer = await sign(body(), { cert: other.certificatePem, key: other.privateKeyPem });
      expect(answer.status).toBe(403);
      expect(answer.json.error.code).toBe('POLICY_DENIED');
      expect(answer.json.error.reasons).toEqual([expect.objectContaining({ code: 'CLIENT_NOT_ALLOWED' })]);
      expect(signaturesIssued(service)).toBe(before);
    });

    it('an unknown project or a key the project may not use → 403 POLICY_DENIED', async () => {
      const before = signaturesIssued(service);
      const unknown = await sign({ ...body(), project: 'nope' });
      expect(unknown.status).toBe(403);
      expect(unknown.json.error.reasons[0].code).toBe('PROJECT_UNKNOWN');
      const otherKey = await sign({ ...body(), keyId: 'other-key' });
      expect(otherKey.status).toBe(403);
      expect(otherKey.json.error.reasons[0].code).toBe('KEY_NOT_ALLOWED');
      expect(signaturesIssued(service)).toBe(before);
    });
  });

  describe('bad bodies get 4xx with a stable code', () => {
    const cases: [string, { body: string | Buffer; headers?: Record<string, string> }, number, string][] = [
      ['malformed JSON', { body: '{"project": ' }, 400, 'INVALID_JSON'],
      ['a JSON array', { body: '[]' }, 400, 'INVALID_REQUEST'],
      ['wrong types', { body: JSON.stringify({ project: 5, digest: { algorithm: 'sha256', value: 7 } }) }, 400, 'INVALID_REQUEST'],
      ['unknown fields', { body: JSON.stringify({ project: 'example', digest: { algorithm: 'sha256', value: 'ab'.repeat(32) }, extra: 1 }) }, 400, 'INVALID_REQUEST'],
      ['an unknown digest algorithm', { body: JSON.stringify({ project: 'example', digest: { algorithm: 'md5', value: 'ab'.repeat(16) } }) }, 400, 'INVALID_REQUEST'],
      ['a digest of the wrong length', { body: JSON.stringify({ project: 'example', digest: { algorithm: 'sha256', value: 'ab'.repeat(20) } }) }, 400, 'DIGEST_INVALID'],
      ['non-hex digest', { body: JSON.stringify({ project: 'example', digest: { algorithm: 'sha256', value: 'zz'.repeat(32) } }) }, 400, 'INVALID_REQUEST'],
      ['neither digest nor payload', { body: JSON.stringify({ project: 'example' }) }, 400, 'INVALID_REQUEST'],
      ['both digest and payload', { body: JSON.stringify({ project: 'example', digest: { algorithm: 'sha256', value: 'ab'.repeat(32) }, payload: 'AAAA' }) }, 400, 'INVALID_REQUEST'],
      ['an unknown format', { body: JSON.stringify({ project: 'example', digest: { algorithm: 'sha256', value: 'ab'.repeat(32) }, format: 'jws' }) }, 400, 'INVALID_REQUEST'],
      ['a malformed keyId', { body: JSON.stringify({ project: 'example', keyId: '../../etc', digest: { algorithm: 'sha256', value: 'ab'.repeat(32) } }) }, 400, 'KEY_ID_INVALID'],
      ['an oversized body', { body: JSON.stringify({ project: 'example', payload: 'A'.repeat(2 * 1024 * 1024) }) }, 413, 'BODY_TOO_LARGE'],
      ['a body that is not JSON', { body: 'project=example', headers: { 'content-type': 'application/x-www-form-urlencoded' } }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['no content type', { body: '{}', headers: {} }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ];
    for (const [name, call, status, code] of cases) {
      it(`${name} → ${status} ${code}`, async () => {
        const before = signaturesIssued(service);
        const authorization = `Bearer ${await devToken(env)}`;
        const answer = await httpsCall(`${service.url}/v1/sign`, {
          method: 'POST',
          body: call.body,
          headers: { authorization, ...(call.headers ?? { 'content-type': 'application/json' }) },
          ...tls,
        });
        expect(answer.status).toBe(status);
        expect(answer.json.error.code).toBe(code);
        expect(typeof answer.json.error.message).toBe('string');
        expect(answer.text).not.toMatch(/at .*\.(ts|js):\d+/); // never a stack
        expect(signaturesIssued(service)).toBe(before);
      });
    }
  });
});

describe('log receipts', () => {
  type Receipt = { index: number; leafHash: string; treeSize: number; rootHash: string; inclusionProof: string[]; checkpoint: string };
  const logKey = async (): Promise<{ origin: string; publicKeyPem: string }> =>
    (await httpsCall(`${service.url}/v1/log`, { ca: tls.ca })).json as { origin: string; publicKeyPem: string };
  const proves = (log: Receipt): boolean =>
    verifyInclusion(Buffer.from(log.leafHash, 'base64'), log.index, log.treeSize, log.inclusionProof.map((h) => Buffer.from(h, 'base64')), Buffer.from(log.rootHash, 'base64'));

  it('concurrent answers: the signature entry and the stored answer are durable on arrival; the proof verifies against a signed checkpoint, which is then recorded', async () => {
    const { origin, publicKeyPem } = await logKey();
    const db = new Database(env.init.database, { readonly: true });
    try {
      const leafAt = db.prepare('SELECT leaf FROM log_entries WHERE idx = ?').pluck();
      const storedAnswers = db.prepare("SELECT count(*) FROM token_uses WHERE state = 'done'").pluck();
      const doneBefore = storedAnswers.get() as number;
      // Requests in flight together share group commits and checkpoint signing rounds.
      const answers = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const answer = await sign({ project: env.init.project, digest: { algorithm: 'sha256', value: digestOf(`concurrent ${i}`) } });
          const log = answer.json.log as Receipt;
          // Read the moment the answer arrives: its entry must be durable already.
          return { status: answer.status, signature: answer.json.signature as string, log, leaf: leafAt.get(log.index) as Buffer | undefined };
        }),
      );
      for (const { status, signature, log, leaf } of answers) {
        expect(status).toBe(200);
        expect(leaf, `entry ${log.index}`).toBeDefined();
        expect((JSON.parse(leaf!.toString('utf8')) as { spec: { signature: { content: string } } }).spec.signature.content).toBe(signature);
        expect(proves(log)).toBe(true);
        const checkpoint = verifyCheckpoint(log.checkpoint, origin, publicKeyPem);
        expect(checkpoint.ok && checkpoint.checkpoint.size === log.treeSize && checkpoint.checkpoint.rootHash.toString('base64') === log.rootHash).toBe(true);
      }
      expect(storedAnswers.get()).toBe(doneBefore + answers.length);
      // Every checkpoint handed out is recorded, in the next group commit.
      const recorded = db.prepare('SELECT note FROM log_checkpoints WHERE size = ?').pluck();
      for (let attempt = 0; attempt < 100 && answers.some(({ log }) => recorded.get(log.treeSize) === undefined); attempt += 1) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      for (const { log } of answers) expect(recorded.get(log.treeSize)).toBe(log.checkpoint);
    } finally {
      db.close();
    }
  });

  it('an identical retry gets the same signature and log entry, with a receipt that proves it', async () => {
    const token = await devToken(env);
    const body = { project: env.init.project, digest: { algorithm: 'sha256', value: digestOf('retried') } };
    const call = () => httpsCall(`${service.url}/v1/sign`, { json: body, ...tls, headers: { authorization: `Bearer ${token}` } });
    const first = await call();
    // Entries appended meanwhile move the log on: the retry proves against a newer checkpoint.
    await sign({ project: env.init.project, digest: { algorithm: 'sha256', value: digestOf('in between') } });
    const retry = await call();
    expect(first.status).toBe(200);
    expect(retry.status).toBe(200);
    expect(retry.json.signature).toBe(first.json.signature);
    const [a, b] = [first.json.log as Receipt, retry.json.log as Receipt];
    expect({ index: b.index, leafHash: b.leafHash }).toEqual({ index: a.index, leafHash: a.leafHash });
    expect(b.treeSize).toBeGreaterThan(a.treeSize);
    expect(proves(a) && proves(b)).toBe(true);
  });
});

describe('public endpoints', () => {
  it('GET /v1/keys lists keys without a client certificate and never shows HSM ids', async () => {
    const answer = await httpsCall(`${service.url}/v1/keys`, { ca: tls.ca });
    expect(answer.status).toBe(200);
    expect((answer.json.keys as { keyId: string }[]).map((k) => k.keyId)).toEqual([`demo-release@1`, `signet-log@1`]);
    expect(answer.text).not.toContain('hsmKeyId');
  });

  it('GET /v1/keys/{keyId} answers 404 KEY_NOT_FOUND for an unknown key', async () => {
    const answer = await httpsCall(`${service.url}/v1/keys/nope@9`, { ca: tls.ca });
    expect(answer.status).toBe(404);
    expect(answer.json.error.code).toBe('KEY_NOT_FOUND');
  });

  it('unknown routes answer 404 NOT_FOUND in the error shape', async () => {
    const answer = await httpsCall(`${service.url}/v2/anything`, { ca: tls.ca });
    expect(answer.status).toBe(404);
    expect(answer.json.error.code).toBe('NOT_FOUND');
  });

  it('/healthz and /readyz answer; /openapi.json documents the routes', async () => {
    expect((await httpsCall(`${service.url}/healthz`, { ca: tls.ca })).json).toEqual({ status: 'ok' });
    const ready = await httpsCall(`${service.url}/readyz`, { ca: tls.ca });
    expect(ready.status).toBe(200);
    expect(ready.json.checks.hsm.ok).toBe(true);
    expect(ready.json.checks.storage.ok).toBe(true);
    const doc = await httpsCall(`${service.url}/openapi.json`, { ca: tls.ca });
    expect(Object.keys(doc.json.paths as object)).toEqual(expect.arrayContaining(['/v1/sign', '/v1/keys', '/v1/keys/{keyId}', '/healthz', '/readyz']));
  });
});
