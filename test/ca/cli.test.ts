/**
 * `signet ca …` and the CA parts of `signet init` / `signet keys create`, through the
 * real CLI (dist/cli/main.js) on a real development set-up: init makes the hierarchy
 * and the release key's certificate; `ca init` refuses a second hierarchy and rotates
 * the intermediate on request; new keys get certificates; `ca show` and `ca crl` report
 * and sign; usage errors exit 2.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { createDevEnvironment, type DevEnvironment } from '../helpers/dev-env.js';
import { openssl } from './support.js';

let env: DevEnvironment;

beforeAll(async () => {
  env = await createDevEnvironment();
});

async function show(): Promise<{ cas: { caId: string; status: string }[]; leaves: { keyId: string; serialNumber: string; certificatePem: string }[]; crls: { issuerCaId: string; crlNumber: number }[] }> {
  const result = await runCli(['ca', 'show', '--config', env.init.config, '--json']);
  expect(result.stderr).toBe('');
  return JSON.parse(result.stdout) as Awaited<ReturnType<typeof show>>;
}

describe('signet ca', () => {
  it('init made the hierarchy, the release key certificate and code-signing-root.pem', async () => {
    const state = await show();
    expect(state.cas.map((c) => [c.caId, c.status])).toEqual([
      ['root-1', 'active'],
      ['intermediate-1', 'active'],
    ]);
    expect(state.leaves.map((l) => l.keyId)).toEqual([env.init.keyId]);
    expect(readFileSync(env.init.codeSigningRoot, 'utf8')).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(JSON.stringify(state)).not.toMatch(/hsmKeyId/);
  });

  it('ca init refuses a second hierarchy, and --new-intermediate rotates the intermediate', async () => {
    const again = await runCli(['ca', 'init', '--config', env.init.config]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^signet: CA_EXISTS: /);
    const rotated = await runCli(['ca', 'init', '--config', env.init.config, '--new-intermediate', '--json']);
    expect(rotated.stderr).toBe('');
    expect(JSON.parse(rotated.stdout)).toMatchObject({ created: ['intermediate-2'], root: { caId: 'root-1' }, intermediate: { caId: 'intermediate-2' }, issued: [] });
    const state = await show();
    expect(Object.fromEntries(state.cas.map((c) => [c.caId, c.status]))).toEqual({ 'root-1': 'active', 'intermediate-1': 'retired', 'intermediate-2': 'active' });
    expect(state.crls.map((c) => c.issuerCaId)).toContain('intermediate-2');
  });

  it('keys create gives the new key a certificate from the active intermediate, which openssl accepts', async () => {
    const created = await runCli(['keys', 'create', '--config', env.init.config, '--name', 'nightly', '--algorithm', 'ed25519', '--json']);
    expect(created.stderr).toBe('');
    const leaf = (await show()).leaves.find((l) => l.keyId === 'nightly@1');
    expect(leaf).toBeDefined();
    const path = join(env.dir, 'nightly.pem');
    writeFileSync(path, leaf!.certificatePem);
    expect(openssl(['x509', '-noout', '-issuer', '-in', path]).stdout).toContain('Intermediate 2');
  });

  it('ca crl signs the next CRL and writes it; usage mistakes exit 2', async () => {
    const out = join(env.dir, 'now.crl');
    const crl = await runCli(['ca', 'crl', '--config', env.init.config, '--out', out, '--json']);
    expect(crl.stderr).toBe('');
    expect(JSON.parse(crl.stdout)).toMatchObject({ issuerCaId: 'intermediate-2', crlNumber: 2, file: out });
    expect(openssl(['crl', '-inform', 'DER', '-in', out, '-noout', '-crlnumber']).stdout).toMatch(/crlNumber=0x02/);
    for (const args of [['ca'], ['ca', 'bogus'], ['ca', 'revoke', '--config', env.init.config], ['ca', 'revoke', '--config', env.init.config, '--serial', '01', '--reason', 'because'], ['ca', 'issue', '--config', env.init.config]]) {
      const result = await runCli(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(/^signet: USAGE: /);
    }
  });
});

