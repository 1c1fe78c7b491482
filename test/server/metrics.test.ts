/**
 * Prometheus metrics against the real development service (SoftHSM token, SQLite,
 * TLS on loopback): counters move with real sign requests, the exposition passes
 * Prometheus's own parser (`promtool check metrics`), and no label carries a token, a
 * subject, a PIN, an HSM key id or a project name the policy does not know. Also the
 * separate plain-HTTP metrics listener, and /openapi.json against the routes served.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../store/open-store.js';
import {
  createDevEnvironment,
  devClientTls,
  devToken,
  httpsCall,
  startDevService,
  type DevEnvironment,
  type StartedService,
} from '../helpers/dev-env.js';

let env: DevEnvironment;
let service: StartedService;
let tls: { ca: Buffer; cert: Buffer; key: Buffer };
const tokensSent: string[] = [];

beforeAll(async () => {
  env = await createDevEnvironment();
  // Both places at once: /metrics on the main listener (the default) and a separate
  // plain-HTTP listener on a loopback port the OS picks.
  const config = parseYaml(readFileSync(env.init.config, 'utf8')) as Record<string, unknown>;
  config.metrics = { onMainListener: true, listen: { host: '127.0.0.1', port: 0 } };
  writeFileSync(env.init.config, toYaml(config));
  service = await startDevService(env);
  tls = devClientTls(env);
});

afterAll(async () => {
  await service.stop();
});

async function sign(body: unknown, options: { token?: string | null; claims?: Record<string, string> } = {}) {
  const token = options.token === undefined ? await devToken(env, options.claims) : options.token;
  if (token !== null) tokensSent.push(token);
  return httpsCall(`${service.url}/v1/sign`, {
    json: body,
    ...tls,
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
}

async function scrape(): Promise<string> {
  const answer = await httpsCall(`${service.url}/metrics`, { ca: tls.ca });
  expect(answer.status).toBe(200);
  expect(answer.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return answer.text;
}

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/**
 * The samples of an exposition, for reading values. Validity is promtool's job (the
 * test below); this only splits `name{label="value",…} number` lines, which is all the
 * text format has once comments are skipped (label values here never hold quotes).
 */
function samples(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (match === null) throw new Error(`not a sample line: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

/** The sum over the series of `name` whose labels include `labels`; 0 when there is none. */
function valueOf(text: string, name: string, labels: Record<string, string> = {}): number {
  return samples(text)
    .filter((sample) => sample.name === name && Object.entries(labels).every(([k, v]) => sample.labels[k] === v))
    .reduce((total, sample) => total + sample.value, 0);
}

const digest = (text: string) => ({ algorithm: 'sha256', value: createHash('sha256').update(text).digest('hex') });

describe('GET /metrics', () => {
  it('counts sign requests by project, outcome and reason, and times the HSM, the log and the whole request', async () => {
    const before = await scrape();

    expect((await sign({ project: env.init.project, digest: digest('metrics 1') })).status).toBe(200);
    // Denied by policy (a branch the example policy does not allow): logged, counted with its reasons.
    expect((await sign({ project: env.init.project, digest: digest('metrics 2') }, { claims: { ref: 'refs/heads/feature' } })).status).toBe(403);
    // No token, or no client certificate: authentication failures, counted but never
    // logged in the transparency log. Without a certificate the body is never read.
    expect((await sign({ project: env.init.project, digest: digest('metrics 3') }, { token: null })).status).toBe(401);
    const noCertificate = await httpsCall(`${service.url}/v1/sign`, { json: { project: env.init.project, digest: digest('metrics 3') }, ca: tls.ca });
    expect(noCertificate.status).toBe(401);
    // A project the policy does not know is counted as "unknown", never by the name sent.
    expect((await sign({ project: 'attacker-chosen-name', digest: digest('metrics 4') })).status).toBe(403);
    // A dry run.
    expect((await sign({ project: env.init.project, digest: digest('metrics 5'), dryRun: true })).status).toBe(200);

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) => valueOf(after, name, labels) - valueOf(before, name, labels);

    expect(delta('signet_sign_requests_total', { project: 'example', outcome: 'signed', reason: 'none' })).toBe(1);
    expect(delta('signet_sign_requests_total', { project: 'example', outcome: 'denied', reason: 'POLICY_DENIED' })).toBe(1);
    expect(delta('signet_sign_requests_total', { project: 'example', outcome: 'unauthenticated', reason: 'TOKEN_MISSING' })).toBe(1);
    expect(delta('signet_sign_requests_total', { project: 'none', outcome: 'unauthenticated', reason: 'CLIENT_CERT_REQUIRED' })).toBe(1);
    expect(delta('signet_sign_requests_total', { project: 'unknown', outcome: 'denied', reason: 'POLICY_DENIED' })).toBe(1);
    expect(delta('signet_sign_requests_total', { project: 'example', outcome: 'dry_run', reason: 'none' })).toBe(1);
    expect(delta('signet_policy_deny_reasons_total', { project: 'example', reason: 'IDENTITY_NOT_ALLOWED' })).toBe(1);
    expect(delta('signet_policy_deny_reasons_total', { project: 'unknown', reason: 'PROJECT_UNKNOWN' })).toBe(1);
    expect(delta('signet_sign_request_duration_seconds_count', { outcome: 'signed' })).toBe(1);

    // The signature and its log checkpoint: at least two HSM signatures, no HSM error.
    expect(delta('signet_hsm_operation_duration_seconds_count', { operation: 'sign' })).toBeGreaterThanOrEqual(2);
    expect(valueOf(after, 'signet_hsm_errors_total')).toBe(0);
    expect(valueOf(after, 'signet_hsm_sign_workers')).toBe(2);
    // Appends: two denials, the allow decision and the signature (some may share a transaction).
    expect(delta('signet_log_appends_total', { outcome: 'ok' })).toBeGreaterThanOrEqual(3);
    expect(delta('signet_log_append_duration_seconds_count', {})).toBe(delta('signet_log_appends_total', { outcome: 'ok' }));
    expect(valueOf(after, 'signet_log_appends_total', { outcome: 'error' })).toBe(0);

    const log = await httpsCall(`${service.url}/v1/log`, { ca: tls.ca });
    expect(valueOf(after, 'signet_log_entries')).toBe(log.json.treeSize);
    expect(valueOf(after, 'signet_log_checkpoint_size')).toBeGreaterThan(0);
    expect(valueOf(after, 'signet_log_checkpoint_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 3600);
    expect(valueOf(after, 'signet_hsm_up')).toBe(1);
    expect(valueOf(after, 'signet_storage_up')).toBe(1);

    expect(valueOf(after, 'signet_key_age_seconds', { key_id: env.init.keyId, key_name: 'demo-release', state: 'active' })).toBeGreaterThanOrEqual(0);
    const keyIds = samples(after).filter((s) => s.name === 'signet_key_age_seconds').map((s) => s.labels.key_id);
    expect(keyIds).toEqual(expect.arrayContaining([env.init.keyId, 'signet-log@1']));
    const serverNotAfter = valueOf(after, 'signet_certificate_not_after_timestamp_seconds', { certificate: 'tls-server' });
    expect(serverNotAfter).toBeGreaterThan(Date.now() / 1000);
    expect(valueOf(after, 'signet_certificate_not_after_timestamp_seconds', { certificate: 'tls-ci-client-ca' })).toBeGreaterThan(Date.now() / 1000);
    // The code-signing hierarchy and the signing key's leaf are watched too.
    const watched = samples(after).filter((s) => s.name === 'signet_certificate_not_after_timestamp_seconds').map((s) => s.labels.certificate ?? '');
    expect(watched.some((name) => name.startsWith('ca:root:'))).toBe(true);
    expect(watched.some((name) => name.startsWith('ca:intermediate:'))).toBe(true);
    expect(watched.some((name) => name.startsWith(`leaf:${env.init.keyId}:`))).toBe(true);

    expect(delta('signet_http_requests_total', { route: '/v1/sign', method: 'POST', status: '200' })).toBe(2);
    expect(valueOf(after, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
  });

  it("passes Prometheus's own text-format parser and linter (promtool check metrics)", async () => {
    const text = await scrape();
    const check = spawnSync('bash', ['scripts/promtool.sh', 'check', 'metrics'], { input: text, encoding: 'utf8' });
    const problems = `${check.stdout}${check.stderr}`.split('\n').filter((line) => line.trim() !== '');
    // prom-client's own Node.js gauges keep their historical `_total` names; nothing else may be reported.
    const known = /^nodejs_active_(handles|requests|resources)_total non-counter metrics should not have "_total" suffix$/;
    expect(problems.filter((line) => !known.test(line))).toEqual([]);
    expect(check.error).toBeUndefined();
  });

  it('no label carries a token, a subject, a PIN, an HSM key id or an unknown project name', async () => {
    await sign({ project: 'another-unknown-project', digest: digest('metrics 6') }, { claims: { repository: 'evil/repo' } });
    const text = await scrape();
    const pin = readFileSync(join(env.dir, 'secrets', 'hsm-pin'), 'utf8').trim();
    const store = await openStore({ driver: 'sqlite', sqlite: { path: env.init.database } });
    const hsmKeyIds = (await store.keys.list()).map((k) => k.hsmKeyId);
    await store.close();
    const forbidden = [...tokensSent, ...tokensSent.flatMap((t) => t.split('.')), pin, ...hsmKeyIds, 'repo:example/demo', 'evil/repo', 'attacker-chosen-name', 'another-unknown-project'];
    for (const secret of forbidden) expect(text).not.toContain(secret);

    // Every label value comes from a bounded set.
    for (const { labels } of samples(text)) {
      if ('project' in labels) expect(['example', 'unknown', 'none']).toContain(labels.project);
      if ('reason' in labels) expect(labels.reason).toMatch(/^(none|[A-Z][A-Z0-9_]*)$/);
      if ('route' in labels) expect(labels.route).toMatch(/^(unmatched|\/[A-Za-z0-9/:_.-]*)$/);
      if ('key_id' in labels) expect(labels.key_id).toMatch(/^[a-z0-9][a-z0-9._-]*@\d+$/);
    }
  });

  it('is also served by the separate plain-HTTP listener, which serves nothing else', async () => {
    expect(service.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const get = (url: string) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        request(url, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString('utf8')));
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, text });
          });
        })
          .on('error', reject)
          .end();
      });
    const metrics = await get(service.metricsUrl!);
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('signet_sign_requests_total');
    expect((await get(service.metricsUrl!.replace(/\/metrics$/, '/v1/keys'))).status).toBe(404);
  });
});

describe('/openapi.json', () => {
  it('documents every route the service serves, and serves every route it documents', async () => {
    const doc = await httpsCall(`${service.url}/openapi.json`, { ca: tls.ca });
    expect(doc.status).toBe(200);
    const documented = new Set(
      Object.entries(doc.json.paths as Record<string, Record<string, unknown>>).flatMap(([path, operations]) =>
        Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
      ),
    );
    // hono writes path parameters as :name, OpenAPI as {name}. The document itself is
    // the one route it does not describe.
    const served = new Set(
      service.routes.filter((r) => r.path !== '/openapi.json').map((r) => `${r.method} ${r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`),
    );
    expect([...served].sort()).toEqual([...documented].sort());
    expect(documented).toContain('GET /metrics');
  });
});
