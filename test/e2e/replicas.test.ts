/**
 * Two replicas on one PostgreSQL (issue 8, acceptance): two `signet serve` processes on
 * one database schema and one SoftHSM token, made by `signet init --postgres-url …
 * --postgres-schema …`, each on its own port.
 *
 * - 10,000 sign requests (SIGNET_TEST_REPLICA_REQUESTS to change it) spread over both,
 *   64 in flight, each with a fresh id token minted beforehand: every signature
 *   verifies with the key's public key (node:crypto); the log holds exactly one
 *   decision and one signature entry per request, linked, with indexes 0..N-1 and no
 *   gap; receipts of one tree size carry one note, the one storage holds, and their
 *   proofs verify; the checkpoint each replica publishes never goes down, nor does the
 *   stored sequence; `signet log verify` passes through either replica.
 * - 100 concurrent uses of one token (`jti`) across both: exactly one request is
 *   signed; identical retries get that same answer, other requests TOKEN_REPLAYED.
 * - a per-key usage limit of N (policy `limits.keyUsage`) holds across both.
 * - periodic work (housekeeping, CA duties, key age) is held by one replica each.
 */
import { createHash, createPublicKey, randomBytes, verify, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { verifyCheckpoint } from '../../log/checkpoint.js';
import { DECISION_KIND, HASHEDREKORD_KIND } from '../../log/entries.js';
import { leafHash, verifyInclusion } from '../../log/merkle.js';
import { openStore } from '../../store/open-store.js';
import type { LogEntryRecord, SignetStore } from '../../store/store.js';
import { runCli } from '../helpers/cli.js';
import {
  createPostgresDevEnvironment,
  mintTokens,
  runConcurrently,
  signClient,
  startReplica,
  writeReplicaConfig,
  type PostgresDevEnvironment,
  type Replica,
  type SignClient,
} from '../helpers/replicas.js';
import { describeBackends } from '../store/backends.js';

const REQUESTS = Number(process.env.SIGNET_TEST_REPLICA_REQUESTS ?? '10000');
const IN_FLIGHT = 64;
const USAGE_LIMIT = 25;
const LIMITED_PROJECT = 'limited';

interface Signed {
  readonly data: Buffer;
  readonly replica: number;
  readonly status: number;
  readonly answer: any;
}

function digestBody(project: string, data: Buffer): unknown {
  return { project, digest: { algorithm: 'sha256', value: createHash('sha256').update(data).digest('hex') } };
}

async function allEntries(store: SignetStore): Promise<LogEntryRecord[]> {
  const size = await store.log.size();
  const entries: LogEntryRecord[] = [];
  for (let start = 0; start < size; start += 1000) entries.push(...(await store.log.entries(start, Math.min(size, start + 1000))));
  return entries;
}

function leafJson(entry: LogEntryRecord): any {
  return JSON.parse(entry.leaf.toString('utf8'));
}

describeBackends('two replicas on one PostgreSQL', ['postgres'], () => {
  // Set by beforeAll; afterAll cleans up whatever it got to.
  let env: PostgresDevEnvironment | undefined;
  let replicas: Replica[] = [];
  let client: SignClient | undefined;
  let store: SignetStore | undefined;
  let logPublicKey: KeyObject;
  let origin: string;

  beforeAll(async () => {
    const made = await createPostgresDevEnvironment();
    env = made;
    // init's policy, plus a project whose use of the release key is limited.
    const policy = parseYaml(readFileSync(made.init.policy, 'utf8')) as { projects: Record<string, Record<string, unknown>> };
    const example = policy.projects[made.init.project];
    policy.projects[LIMITED_PROJECT] = { ...example, limits: { keyUsage: { [made.init.keyName]: USAGE_LIMIT } } };
    const policyFile = join(made.dir, 'policy-replicas.yaml');
    writeFileSync(policyFile, toYaml(policy));
    const config = writeReplicaConfig(made, 'replica', { policyFile });
    replicas = [await startReplica('a', config), await startReplica('b', config)];
    const opened = signClient(made, IN_FLIGHT / 2);
    client = opened;
    store = await openStore({ driver: 'postgres', postgres: { url: made.postgresUrl, schema: made.schema, poolSize: 2 } });
    const trust = JSON.parse((await opened.get(replicas[0]!, '/v1/trust')).text) as { log: { origin: string; publicKeyPem: string } };
    logPublicKey = createPublicKey(trust.log.publicKeyPem);
    origin = trust.log.origin;
  }, 300_000);

  afterAll(async () => {
    await Promise.allSettled(replicas.map((replica) => replica.stop()));
    await client?.close();
    await store?.close();
    await env?.destroy();
  });

  const the = (): { env: PostgresDevEnvironment; client: SignClient; store: SignetStore } => ({ env: env!, client: client!, store: store! });

  it(`signs ${REQUESTS} requests spread over both: every signature verifies, the log has one decision and one signature per request, no gap`, async () => {
    const { env, client, store } = the();
    const tokens = await mintTokens(env, REQUESTS);
    const results: Signed[] = new Array<Signed>(REQUESTS);

    // Each replica's published checkpoint, polled during the run: it never goes down.
    const published: number[][] = [[], []];
    const run = { polling: true };
    const poll = (async () => {
      while (run.polling) {
        await Promise.all(
          replicas.map(async (replica, r) => {
            const { status, text } = await client.get(replica, '/v1/log/checkpoint');
            if (status === 200) published[r]?.push(Number(text.split('\n')[1]));
          }),
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();

    const started = performance.now();
    await runConcurrently(REQUESTS, IN_FLIGHT, async (i) => {
      const data = randomBytes(24);
      const replica = i % 2;
      const { status, json } = await client.sign(replicas[replica]!, tokens[i]!, digestBody(env.init.project, data));
      results[i] = { data, replica, status, answer: json };
    });
    const seconds = (performance.now() - started) / 1000;
    run.polling = false;
    await poll;
    process.stderr.write(`replicas: ${REQUESTS} sign requests over 2 replicas in ${seconds.toFixed(1)} s (${(REQUESTS / seconds).toFixed(0)}/s)\n`);

    const failed = results.filter((r) => r.status !== 200);
    expect(failed.slice(0, 5).map((r) => ({ status: r.status, body: r.answer }))).toEqual([]);
    expect(results.filter((r) => r.replica === 0).length).toBe(Math.ceil(REQUESTS / 2));

    // Every signature verifies with its key's public key.
    const keys = new Map<string, KeyObject>();
    for (const { answer } of results) {
      if (!keys.has(answer.keyId)) {
        const key = JSON.parse((await client.get(replicas[0]!, `/v1/keys/${encodeURIComponent(answer.keyId as string)}`)).text) as { publicKeyPem: string };
        keys.set(answer.keyId as string, createPublicKey(key.publicKeyPem));
      }
    }
    const unverified = results.filter(({ data, answer }) => !verify('sha256', data, keys.get(answer.keyId as string)!, Buffer.from(answer.signature as string, 'base64')));
    expect(unverified.length).toBe(0);

    // The log: indexes 0..size-1 without a gap; one decision and one signature entry per request.
    const entries = await allEntries(store);
    expect(entries.map((e) => e.index)).toEqual(entries.map((_, i) => i));
    const decisions = new Map<string, LogEntryRecord[]>();
    const signatures = new Map<string, LogEntryRecord[]>();
    for (const entry of entries) {
      if (entry.kind === DECISION_KIND) {
        const digest = leafJson(entry).spec.digest.value as string;
        decisions.set(digest, [...(decisions.get(digest) ?? []), entry]);
      } else if (entry.kind === HASHEDREKORD_KIND) {
        const digest = leafJson(entry).spec.data.hash.value as string;
        signatures.set(digest, [...(signatures.get(digest) ?? []), entry]);
      }
    }
    expect(decisions.size).toBe(REQUESTS);
    expect(signatures.size).toBe(REQUESTS);
    const mismatched: string[] = [];
    for (const { data, answer } of results) {
      const digest = createHash('sha256').update(data).digest('hex');
      const decision = decisions.get(digest) ?? [];
      const signature = signatures.get(digest) ?? [];
      const ok =
        decision.length === 1 &&
        signature.length === 1 &&
        leafJson(decision[0]!).spec.decision === 'allow' &&
        signature[0]!.index === answer.log.index &&
        signature[0]!.linkedIndex === decision[0]!.index &&
        answer.log.decisionIndex === decision[0]!.index &&
        leafJson(signature[0]!).spec.signature.content === answer.signature;
      if (!ok) mismatched.push(digest);
    }
    expect(mismatched.slice(0, 5)).toEqual([]);

    // Receipts: one note per tree size, the one storage holds, signed by the log key;
    // proofs verify against it.
    const notes = new Map<number, Set<string>>();
    for (const { answer } of results) notes.set(answer.log.treeSize as number, (notes.get(answer.log.treeSize as number) ?? new Set()).add(answer.log.checkpoint as string));
    for (const [size, set] of notes) {
      expect(set.size, `receipts of size ${size} carry ${set.size} notes`).toBe(1);
      const [note] = [...set];
      expect((await store.log.checkpoint(size))?.note).toBe(note);
      expect(verifyCheckpoint(note!, origin, logPublicKey)).toMatchObject({ ok: true, checkpoint: { size } });
    }
    for (const { answer } of results.filter((_, i) => i % 25 === 0)) {
      const { index, treeSize, rootHash, inclusionProof, leaf } = answer.log as { index: number; treeSize: number; rootHash: string; inclusionProof: string[]; leaf: string };
      expect(verifyInclusion(leafHash(Buffer.from(leaf, 'base64')), index, treeSize, inclusionProof.map((p) => Buffer.from(p, 'base64')), Buffer.from(rootHash, 'base64'))).toBe(true);
    }

    // Checkpoints never go down: as each replica published them, and as stored.
    for (const sizes of published) {
      expect(sizes.length).toBeGreaterThan(0);
      expect(sizes.every((size, i) => i === 0 || size >= sizes[i - 1]!)).toBe(true);
    }
    const stored = await store.log.checkpoints(-1, 1000);
    expect(stored.every((c, i) => i === 0 || c.size > stored[i - 1]!.size)).toBe(true);
  }, 900_000);

  it('gives exactly one success to 100 concurrent uses of one token across both replicas', async () => {
    const { env, client, store } = the();
    const [token] = await mintTokens(env, 1);
    const same = randomBytes(24);
    const bodies = Array.from({ length: 100 }, (_, i) => digestBody(env.init.project, i < 50 ? same : randomBytes(24)));
    const answers = await Promise.all(bodies.map((body, i) => client.sign(replicas[i % 2]!, token!, body)));
    const succeeded = answers.filter((a) => a.status === 200);
    expect(succeeded.length).toBeGreaterThanOrEqual(1);
    // One request was signed: every success is that one answer (identical retries get it back).
    expect(new Set(succeeded.map((a) => a.json.signature as string)).size).toBe(1);
    expect(new Set(succeeded.map((a) => a.json.digest.value as string)).size).toBe(1);
    const refused = answers.filter((a) => a.status !== 200);
    expect(refused.every((a) => a.json?.error?.code === 'TOKEN_REPLAYED')).toBe(true);
    // If an identical request won, all 50 identical ones got its answer; else the winner alone.
    expect(succeeded.length === 50 || succeeded.length === 1).toBe(true);
    // Exactly one decision in the log for all 100.
    const digests = new Set(bodies.map((b) => (b as { digest: { value: string } }).digest.value));
    const logged = (await allEntries(store)).filter((e) => e.kind === DECISION_KIND && digests.has(leafJson(e).spec.digest.value as string));
    expect(logged.length).toBe(1);
  }, 120_000);

  it(`holds a per-key usage limit of ${USAGE_LIMIT} across both replicas`, async () => {
    const { env, client, store } = the();
    const tokens = await mintTokens(env, 60);
    const answers = await Promise.all(tokens.map((token, i) => client.sign(replicas[i % 2]!, token, digestBody(LIMITED_PROJECT, randomBytes(24)))));
    expect(answers.filter((a) => a.status === 200).length).toBe(USAGE_LIMIT);
    const denied = answers.filter((a) => a.status !== 200);
    expect(denied.length).toBe(60 - USAGE_LIMIT);
    for (const answer of denied) {
      expect(answer.status).toBe(403);
      expect(answer.json.error.code).toBe('POLICY_DENIED');
      expect(JSON.stringify(answer.json.error)).toContain('USAGE_LIMIT_REACHED');
    }
    expect(await store.counters.current(`usage:key:${LIMITED_PROJECT}:${env.init.keyId}`, 'total')).toBe(USAGE_LIMIT);
  }, 120_000);

  it('runs each periodic duty on one replica (leases in storage)', async () => {
    const { store } = the();
    const pids = replicas.map((replica) => String(replica.process.child.pid));
    for (const duty of ['housekeeping', 'ca-duties', 'key-age']) {
      const lease = await store.leases.get(duty);
      expect(lease, duty).not.toBeNull();
      expect(pids).toContain(lease?.holder.split(':').at(-2));
    }
  });

  it('passes `signet log verify` through either replica', async () => {
    const { env } = the();
    for (const replica of replicas) {
      const result = await runCli(['log', 'verify', '--url', replica.url, '--ca', env.init.caCert, '--json'], { timeoutMs: 300_000 });
      expect(result.code, result.stderr + result.stdout.slice(0, 2000)).toBe(0);
    }
  }, 600_000);
});
