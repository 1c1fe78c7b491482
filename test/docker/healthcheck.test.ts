/**
 * The container health check (docker/healthcheck.ts) against the real development
 * service over real TLS: healthy when the service answers and its certificate verifies;
 * unhealthy with the wrong trust anchors, the wrong certificate name, or no service.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHealth } from '../../docker/healthcheck.js';
import { createDevEnvironment, startDevService, type DevEnvironment, type StartedService } from '../helpers/dev-env.js';

let env: DevEnvironment;
let service: StartedService;
let config: string;

beforeAll(async () => {
  env = await createDevEnvironment();
  service = await startDevService(env);
  // `signet init --port 0` lets the OS choose; the check reads the port from the config,
  // so it gets a copy that names the port the service listens on.
  const document = parseYaml(readFileSync(env.init.config, 'utf8')) as { server: { port: number } };
  document.server.port = service.port;
  config = join(env.dir, 'signet-healthcheck.yaml');
  writeFileSync(config, toYaml(document));
});

afterAll(async () => {
  await service.stop();
});

describe('docker/healthcheck.ts', () => {
  it("is healthy when /healthz answers over TLS verified against the server's own chain", async () => {
    expect(await checkHealth({ SIGNET_CONFIG: config })).toEqual({ healthy: true, reason: 'ok' });
  });

  it('is unhealthy when the certificate does not chain to the trust anchors given', async () => {
    const outcome = await checkHealth({ SIGNET_CONFIG: config, SIGNET_HEALTHCHECK_CA: join(env.dir, 'tls', 'ci-client-ca.pem') });
    expect(outcome.healthy).toBe(false);
    expect(outcome.reason).toMatch(/certificate/i);
  });

  it('is unhealthy when the certificate does not name the expected host', async () => {
    const outcome = await checkHealth({ SIGNET_CONFIG: config, SIGNET_HEALTHCHECK_SERVERNAME: 'signet.example.com' });
    expect(outcome.healthy).toBe(false);
    expect(outcome.reason).toMatch(/signet\.example\.com/);
  });

  it('is unhealthy when the config cannot be read', async () => {
    const outcome = await checkHealth({ SIGNET_CONFIG: join(env.dir, 'missing.yaml') });
    expect(outcome).toMatchObject({ healthy: false, reason: expect.stringMatching(/cannot read the config/) });
  });

  it('is unhealthy once the service has stopped', async () => {
    await service.stop();
    const outcome = await checkHealth({ SIGNET_CONFIG: config });
    expect(outcome.healthy).toBe(false);
    expect(outcome.reason).toMatch(/ECONNREFUSED/);
  });
});
