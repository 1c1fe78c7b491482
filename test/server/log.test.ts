/**
 * The transparency log end to end: receipts that anyone can check (inclusion proof,
 * signed checkpoint, leaf bytes), audit before answer, what is and is not logged, the
 * public log API, `signet log verify` against the service and against a database file
 * (detecting a changed leaf, a deleted entry and a rewritten checkpoint), and failing
 * closed when storage becomes unwritable mid-load.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCheckpoint } from '../../log/checkpoint.js';
import { leafHash, verifyConsistency, verifyInclusion } from '../../log/merkle.js';
import { LEAF_HASH_LOOKUPS_PER_SECOND } from '../../server/log-routes.js';
import { hsmInternalsForTesting } from '../../signer/pkcs11-hsm.js';
import { runCli } from '../helpers/cli.js';
import { createDevEnvironment, devClientTls, devToken, httpsCall, startDevService, type DevEnvironment, type StartedService } from '../helpers/dev-env.js';

let env: DevEnvironment;
let service: StartedService;
let tls: { ca: Buffer; cert: Buffer; key: Buffer };
let logInfo: { origin: string; publicKeyPem: string; treeSize: number };
/**
 * Entries `signet init` wrote before the service started (the CA's certificate events):
 * the service's own entries start here, with the policy it loaded.
 */
let base: number;

beforeAll(async () => {
  env = await createDevEnvironment();
  service = await startDevService(env);
  tls = devClientTls(env);
  logInfo = (await httpsCall(`${service.url}/v1/log`, { ca: tls.ca })).json;
  const first = (await httpsCall(`${service.url}/v1/log/entries?start=0&end=${logInfo.treeSize}`, { ca: tls.ca })).json.entries as { kind: string }[];
  base = first.findIndex((entry) => entry.kind === 'signet.policy/v1');
});

afterAll(async () => {
  await service.stop();
});

async function sign(body: Record<string, unknown> = {}, token?: string) {
  return httpsCall(`${service.url}/v1/sign`, {
    json: { project: 'example', digest: { algorithm: 'sha256', value: randomBytes(32).toString('hex') }, ...body },
    ...tls,
    headers: { authorization: `Bearer ${token ?? (await devToken(env))}` },
  });
}

const get = async (path: string): Promise<any> => (await httpsCall(`${service.url}${path}`, { ca: tls.ca })).json;
const logSize = async (): Promise<number> => (await get('/v1/log')).treeSize as number;

describe('receipts', () => {
  it('a signature comes with a receipt anyone can check offline', async () => {
    const answer = await sign();
    expect(answer.status).toBe(200);
    const receipt = answer.json.log;
    expect(receipt).toMatchObject({ inclusionPromise: null });
    expect(receipt.integratedTime).toBeGreaterThan(1_700_000_000);

    // The checkpoint is a C2SP signed note by the log key; its root is the receipt's.
    const checkpoint = verifyCheckpoint(receipt.checkpoint as string, logInfo.origin, logInfo.publicKeyPem);
    expect(checkpoint).toMatchObject({ ok: true, checkpoint: { size: receipt.treeSize } });
    expect(checkpoint.ok && checkpoint.checkpoint.rootHash.toString('base64')).toBe(receipt.rootHash);

    // The leaf bytes are public and hash to the receipt's leaf hash; the proof includes it.
    const entry = await get(`/v1/log/entries/${receipt.index}`);
    const leaf = Buffer.from(entry.leaf as string, 'base64');
    expect(createHash('sha256').update(Buffer.concat([Buffer.from([0]), leaf])).digest('base64')).toBe(receipt.leafHash);
    const proof = (receipt.inclusionProof as string[]).map((h) => Buffer.from(h, 'base64'));
    expect(verifyInclusion(leafHash(leaf), receipt.index, receipt.treeSize, proof, Buffer.from(receipt.rootHash as string, 'base64'))).toBe(true);

    // The leaf is a Rekor hashedrekord body naming this signature, digest and key.
    const body = JSON.parse(leaf.toString('utf8'));
    expect(leaf.toString('utf8')).toBe(JSON.stringify(body)); // canonical: no whitespace…
    expect(Object.keys(body)).toEqual(['apiVersion', 'kind', 'spec']); // …sorted keys
    expect(body).toMatchObject({ apiVersion: '0.0.1', kind: 'hashedrekord', spec: { data: { hash: { algorithm: 'sha256', value: answer.json.digest.value } }, signature: { content: answer.json.signature } } });
    const keyPem = Buffer.from(body.spec.signature.publicKey.content as string, 'base64').toString();
    expect(keyPem).toBe((await get(`/v1/keys/${answer.json.keyId as string}`)).publicKeyPem);
    expect(entry).toMatchObject({ kind: 'hashedrekord/0.0.1', linkedIndex: receipt.decisionIndex });

    // The decision came first, and says allow, who and under which policy.
    const decision = JSON.parse(Buffer.from((await get(`/v1/log/entries/${receipt.decisionIndex}`)).leaf as string, 'base64').toString());
    expect(receipt.decisionIndex).toBeLessThan(receipt.index);
    expect(decision).toMatchObject({
      kind: 'SignDecision',
      spec: { decision: 'allow', project: 'example', keyId: 'demo-release@1', policy: { sha256: answer.json.policy.sha256 }, identity: { subject: 'repo:example/demo:ref:refs/heads/main' } },
    });
    expect(decision.spec.identity.claims.repository).toBe('example/demo');
    expect(JSON.stringify(decision)).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\./); // no token in the log
  });

  it('the policy every decision names is itself in the log, rules included', async () => {
    const answer = await sign();
    const first = (await get(`/v1/log/entries?start=${base}&end=${base + 1}`)).entries[0];
    expect(first.kind).toBe('signet.policy/v1');
    const loaded = JSON.parse(Buffer.from(first.leaf as string, 'base64').toString());
    expect(loaded).toMatchObject({ kind: 'PolicyLoaded', spec: { reason: 'start', sha256: answer.json.policy.sha256 } });
    expect(loaded.spec.document.projects.example.keys).toEqual(['demo-release']);
  });

  it('denials by policy are logged; authentication failures and dry runs are not', async () => {
    let size = await logSize();
    const denied = await sign({}, await devToken(env, { ref: 'refs/heads/feature' }));
    expect(denied.status).toBe(403);
    expect(await logSize()).toBe(size + 1);
    const entry = JSON.parse(Buffer.from((await get(`/v1/log/entries/${size}`)).leaf as string, 'base64').toString());
    expect(entry.spec).toMatchObject({ decision: 'deny', reasons: [{ code: 'IDENTITY_NOT_ALLOWED' }] });

    size = await logSize();
    expect((await sign({}, 'not-a-token')).status).toBe(401);
    expect((await sign({ dryRun: true })).status).toBe(200);
    expect(await logSize()).toBe(size);
  });

  it('checkpoint history and consistency proofs show the log only grew', async () => {
    const before = (await get('/v1/log/checkpoints?after=0&limit=1000')).checkpoints as { size: number; rootHash: string }[];
    const answer = await sign();
    const after = (await get('/v1/log/checkpoints?after=0&limit=1000')).checkpoints as { size: number; rootHash: string; note: string }[];
    expect(after.length).toBeGreaterThan(before.length);
    // The note the receipt carries is in the history as soon as the answer is out,
    // though its record joins a later group commit.
    expect(after.map((c) => c.note)).toContain(answer.json.log.checkpoint);
    const sizes = after.map((c) => c.size);
    expect(sizes).toEqual([...sizes].sort((a, b) => a - b));
    const [first, last] = [after[0]!, after[after.length - 1]!];
    const proof = await get(`/v1/log/proof/consistency?first=${first.size}&second=${last.size}`);
    const hashes = (proof.hashes as string[]).map((h) => Buffer.from(h, 'base64'));
    expect(verifyConsistency(first.size, last.size, Buffer.from(first.rootHash, 'base64'), Buffer.from(last.rootHash, 'base64'), hashes)).toBe(true);
    const text = await httpsCall(`${service.url}/v1/log/checkpoint`, { ca: tls.ca });
    expect(text.headers['content-type']).toMatch(/^text\/plain/);
    expect(text.text).toBe(last.note);
  });

  it('inclusion proofs by leaf hash, and bad proof requests get 400', async () => {
    const answer = await sign();
    const byHash = await get(`/v1/log/proof/inclusion?leafHash=${encodeURIComponent(answer.json.log.leafHash as string)}&treeSize=${answer.json.log.treeSize}`);
    expect(byHash).toMatchObject({ index: answer.json.log.index, hashes: answer.json.log.inclusionProof, rootHash: answer.json.log.rootHash });
    const bad = await httpsCall(`${service.url}/v1/log/proof/inclusion?index=5&treeSize=3`, { ca: tls.ca });
    expect([bad.status, bad.json.error.code]).toEqual([400, 'LOG_PROOF_INVALID_REQUEST']);
    // A tree larger than the log: no node is read for it (its root included), whatever storage holds.
    const beyond = await httpsCall(`${service.url}/v1/log/proof/inclusion?index=0&treeSize=${(answer.json.log.treeSize as number) + 1000}`, { ca: tls.ca });
    expect([beyond.status, beyond.json.error.code]).toEqual([400, 'LOG_PROOF_INVALID_REQUEST']);
    const missing = await httpsCall(`${service.url}/v1/log/entries/999999`, { ca: tls.ca });
    expect([missing.status, missing.json.error.code]).toEqual([404, 'LOG_ENTRY_NOT_FOUND']);
  });

  it('bounds lookups by leaf hash (one at a time, LEAF_HASH_LOOKUPS_PER_SECOND a second): the surplus gets 429, lookups by index do not', async () => {
    const answer = await sign();
    const byHash = `${service.url}/v1/log/proof/inclusion?leafHash=${encodeURIComponent(answer.json.log.leafHash as string)}`;
    // Wait for a fresh one-second window, then ask twice as often as allowed, at once.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const burst = await Promise.all(Array.from({ length: 2 * LEAF_HASH_LOOKUPS_PER_SECOND }, () => httpsCall(byHash, { ca: tls.ca })));
    const statuses = burst.map((response) => response.status);
    expect(statuses.filter((status) => status === 200).length).toBeGreaterThanOrEqual(1);
    expect(statuses.filter((status) => status === 200).length).toBeLessThanOrEqual(LEAF_HASH_LOOKUPS_PER_SECOND);
    expect(statuses.every((status) => status === 200 || status === 429)).toBe(true);
    const refused = burst.find((response) => response.status === 429);
    expect(refused?.json.error.code).toBe('RATE_LIMITED');
    const byIndex = await httpsCall(`${service.url}/v1/log/proof/inclusion?index=${answer.json.log.index as number}`, { ca: tls.ca });
    expect(byIndex.status).toBe(200);
    // A second later the lookups are served again.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await httpsCall(byHash, { ca: tls.ca })).status).toBe(200);
  });
});

describe('signet log verify', () => {
  it('verifies the running service, and that it extends a checkpoint saved earlier', async () => {
    const saved = join(env.dir, 'saved-checkpoint.txt');
    writeFileSync(saved, (await httpsCall(`${service.url}/v1/log/checkpoint`, { ca: tls.ca })).text);
    await sign();
    const pub = join(env.dir, 'log-key.pem');
    writeFileSync(pub, logInfo.publicKeyPem);
    const result = await runCli(['log', 'verify', '--url', service.url, '--ca', env.init.caCert, '--public-key', pub, '--checkpoint', saved]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/log verified: \d+ entries, \d+ checkpoints, extends the saved checkpoint/);
  });

  describe('on a database file', () => {
    let pristine: string;
    let pub: string;

    beforeAll(async () => {
      for (let i = 0; i < 5; i += 1) await sign();
      // A consistent copy of the live database (SQLite's online backup).
      pristine = join(env.dir, 'copy.db');
      const live = new Database(env.init.database, { readonly: true });
      await live.backup(pristine);
      live.close();
      pub = join(env.dir, 'log-key.pem');
      writeFileSync(pub, logInfo.publicKeyPem);
    });

    function tampered(sql: string): string {
      const path = join(env.dir, `tampered-${randomBytes(4).toString('hex')}.db`);
      copyFileSync(pristine, path);
      const db = new Database(path);
      db.exec(sql);
      db.close();
      return path;
    }

    async function verifyDb(path: string) {
      return runCli(['log', 'verify', '--db', path, '--origin', logInfo.origin, '--public-key', pub]);
    }

    it('passes on the untouched copy', async () => {
      const result = await verifyDb(pristine);
      expect(result.code, result.stderr).toBe(0);
    });

    it('names the index of a changed leaf', async () => {
      const result = await verifyDb(tampered(`UPDATE log_entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'sha256', 'sha384') AS BLOB) WHERE idx = ${base + 3}`));
      expect(result.code).toBe(1);
      expect(result.stdout).toContain(`LOG_INVALID at index ${base + 3}`);
    });

    it('names the index of a changed leaf even when the nodes stored with it were removed', async () => {
      const result = await verifyDb(
        tampered(
          `UPDATE log_entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'sha256', 'sha384') AS BLOB), subtree_hashes = NULL WHERE idx = ${base + 2};`,
        ),
      );
      // The leaf-hash column still holds the old hash: the changed leaf is caught at its own index.
      expect(result.code).toBe(1);
      expect(result.stdout).toContain(`LOG_INVALID at index ${base + 2}`);
    });

    it('names the index of a deleted entry', async () => {
      const result = await verifyDb(tampered(`DELETE FROM log_entries WHERE idx = ${base + 4}`));
      expect(result.code).toBe(1);
      expect(result.stdout).toContain(`LOG_INVALID at index ${base + 4}`);
      expect(result.stdout).toContain(`entry ${base + 4} is missing`);
    });

    it('names a rewritten checkpoint', async () => {
      const size = (new Database(pristine, { readonly: true }).prepare('SELECT max(size) AS s FROM log_checkpoints').get() as { s: number }).s;
      // The signature at the end of the note is overwritten.
      const result = await verifyDb(tampered(`UPDATE log_checkpoints SET note = substr(note, 1, length(note) - 10) || 'AAAAAAAAA=' || char(10) WHERE size = ${size}`));
      expect(result.code).toBe(1);
      expect(result.stdout).toContain(`LOG_INVALID at index ${size}`);
      expect(result.stdout).toContain(`checkpoint ${size}`);
    });
  });
});

describe('fail closed', () => {
  it('storage made unwritable mid-load: no 2xx without its log entries, no HSM signature after a failed decision append', async () => {
    const internals = hsmInternalsForTesting(service.hsm);
    const signed = (): number => internals.signerJobsCompleted().reduce((a, b) => a + b, 0);
    const files = [env.init.database, `${env.init.database}-wal`];
    const load = async (count: number) => Promise.all(Array.from({ length: count }, () => sign()));

    const warm = await load(10);
    expect(warm.every((a) => a.status === 200)).toBe(true);

    execFileSync('chattr', ['+i', ...files]);
    let during: Awaited<ReturnType<typeof sign>>[];
    let signaturesDuring: number;
    try {
      const before = signed();
      during = await load(30);
      signaturesDuring = signed() - before;
    } finally {
      execFileSync('chattr', ['-i', ...files]);
    }
    expect(during.filter((a) => a.status === 200)).toEqual([]);
    for (const answer of during) expect(['503 STORAGE_UNAVAILABLE', '503 LOG_UNAVAILABLE']).toContain(`${answer.status} ${answer.json?.error?.code as string}`);
    expect(signaturesDuring).toBe(0); // neither a release signature nor a checkpoint

    // Writable again: the service recovers on its own, and every 2xx has its entry.
    await new Promise((r) => setTimeout(r, 50));
    const afterwards = await load(10);
    expect(afterwards.every((a) => a.status === 200)).toBe(true);
    for (const answer of [...warm, ...afterwards]) {
      const entry = await get(`/v1/log/entries/${answer.json.log.index}`);
      expect(JSON.parse(Buffer.from(entry.leaf as string, 'base64').toString()).spec.signature.content).toBe(answer.json.signature);
    }
  });

  it('only the log refusing appends (the token store still works): 503 LOG_UNAVAILABLE, nothing signed, tokens not used up', async () => {
    const internals = hsmInternalsForTesting(service.hsm);
    const signed = (): number => internals.signerJobsCompleted().reduce((a, b) => a + b, 0);
    const admin = new Database(env.init.database);
    const tokens = await Promise.all(Array.from({ length: 10 }, () => devToken(env)));
    const value = randomBytes(32).toString('hex');
    admin.exec("CREATE TRIGGER refuse_log BEFORE INSERT ON log_entries BEGIN SELECT RAISE(ABORT, 'log refused'); END");
    let answers: Awaited<ReturnType<typeof sign>>[];
    let signaturesDuring: number;
    try {
      const before = signed();
      answers = await Promise.all(tokens.map((token) => sign({ digest: { algorithm: 'sha256', value } }, token)));
      signaturesDuring = signed() - before;
    } finally {
      admin.exec('DROP TRIGGER refuse_log');
      admin.close();
    }
    expect(answers.map((a) => `${a.status} ${a.json.error.code as string}`)).toEqual(Array(10).fill('503 LOG_UNAVAILABLE'));
    expect(signaturesDuring).toBe(0);
    // The decision was never recorded, so the tokens were released: the same requests now succeed.
    const retried = await Promise.all(tokens.map((token) => sign({ digest: { algorithm: 'sha256', value } }, token)));
    expect(retried.map((a) => a.status)).toEqual(Array(10).fill(200));
  });
});
