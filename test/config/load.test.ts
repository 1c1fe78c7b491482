/** Config validation: every bad field at once, paths resolved, secrets from env or file only. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../config/errors.js';
import { loadConfig, parseConfig, readSecret } from '../../config/load.js';

const valid = {
  server: { tls: { certFile: 'tls/server.pem', keyFile: 'tls/key.pem', clientCaFile: 'tls/ca.pem' } },
  hsm: { module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'signet', pin: { env: 'SIGNET_HSM_PIN' } },
  storage: { driver: 'sqlite', sqlite: { path: 'signet.db' } },
  policy: { file: 'policy.yaml' },
  log: { origin: 'signet.example.com/log' },
  oidc: { audience: 'signet', issuers: [{ name: 'dev', issuer: 'https://dev.invalid', jwks: { file: 'oidc/jwks.json' } }] },
};

describe('config', () => {
  it('applies defaults, resolves relative paths against the config directory and freezes the result', () => {
    const config = parseConfig(valid, '/etc/signet');
    expect(config.server.port).toBe(8443);
    expect(config.server.host).toBe('127.0.0.1');
    expect(config.server.tls.certFile).toBe('/etc/signet/tls/server.pem');
    expect(config.storage).toEqual({ driver: 'sqlite', sqlite: { path: '/etc/signet/signet.db' } });
    expect(config.hsm.sessions).toBe(2);
    expect(config.hsm.signWorkers).toBe(2);
    expect(Object.isFrozen(config.server.tls)).toBe(true);
    expect(config.oidc.issuers[0]?.jwks).toEqual({ file: '/etc/signet/oidc/jwks.json' });
    expect(config.oidc.leewaySeconds).toBe(30);
  });

  it('reports every bad field at once', () => {
    const bad = {
      ...valid,
      server: { port: 70000, tls: { certFile: '', keyFile: 'k' } },
      hsm: { ...valid.hsm, pin: { env: 'SIGNET_HSM_PIN', file: 'x' }, sessions: 0 },
      storage: { driver: 'mysql' },
      oidc: { audience: 'signet', leewaySeconds: 300, issuers: [{ name: 'x', issuer: 'https://x', jwks: { uri: 'http://plain/jwks' } }] },
      extra: true,
    };
    try {
      parseConfig(bad, '/');
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const problems = (error as ConfigError).problems.join('\n');
      for (const path of ['server.port', 'server.tls.certFile', 'server.tls.clientCaFile', 'hsm.pin', 'hsm.sessions', 'storage.driver', 'oidc.leewaySeconds', 'oidc.issuers.0.jwks', '(root)']) {
        expect(problems).toContain(path);
      }
    }
  });

  it('refuses a PIN written into the config', () => {
    expect(() => parseConfig({ ...valid, hsm: { ...valid.hsm, pin: '1234' } }, '/')).toThrow(ConfigError);
    expect(() => parseConfig({ ...valid, hsm: { ...valid.hsm, pin: { value: '1234' } } }, '/')).toThrow(ConfigError);
  });

  it('reads secrets from an environment variable or a file, and never names the value in errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-config-'));
    writeFileSync(join(dir, 'pin'), 's3cret\n', { mode: 0o600 });
    expect(readSecret({ file: join(dir, 'pin') }, 'hsm.pin')).toBe('s3cret');
    process.env.SIGNET_TEST_PIN = 'from-env';
    expect(readSecret({ env: 'SIGNET_TEST_PIN' }, 'hsm.pin')).toBe('from-env');
    delete process.env.SIGNET_TEST_PIN;
    expect(() => readSecret({ env: 'SIGNET_TEST_PIN' }, 'hsm.pin')).toThrow(/SIGNET_TEST_PIN is not set/);
    writeFileSync(join(dir, 'empty'), '');
    expect(() => readSecret({ file: join(dir, 'empty') }, 'hsm.pin')).toThrow(/empty/);
  });

  it('reports unreadable and syntactically invalid files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'signet-config-'));
    expect(() => loadConfig(join(dir, 'missing.yaml'))).toThrow(expect.objectContaining({ code: 'CONFIG_UNREADABLE' }));
    writeFileSync(join(dir, 'bad.yaml'), 'server: [\n');
    expect(() => loadConfig(join(dir, 'bad.yaml'))).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});
