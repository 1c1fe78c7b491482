/**
 * Token creation for `signet init`, tests and operators: softhsm/token.ts and
 * softhsm/create-token.sh both build a self-contained token directory and never touch
 * the system token store. This file loads no PKCS#11 module; it inspects tokens with
 * softhsm2-util only.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSoftHsmToken, SOFTHSM_MODULE_PATH, SoftHsmSetupError } from '../../softhsm/token.js';

const SCRIPT = fileURLToPath(new URL('../../softhsm/create-token.sh', import.meta.url));
let root: string;

function run(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { env, encoding: 'utf8' }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

async function labelsIn(confPath: string): Promise<string[]> {
  const { stdout } = await run('softhsm2-util', ['--show-slots'], { ...process.env, SOFTHSM2_CONF: confPath });
  return [...stdout.matchAll(/^\s*Label:[ \t]*(.*?)\s*$/gm)].map((m) => m[1] ?? '').filter((l) => l !== '');
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'signet-setup-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('createSoftHsmToken', () => {
  it('creates a private token directory with its own conf', async () => {
    const dir = join(root, 'ts');
    const token = await createSoftHsmToken({ dir, label: 'ts-token', pin: '1234-pin', soPin: 'so-pin-5678' });
    expect(token).toEqual({
      confPath: join(dir, 'softhsm2.conf'),
      tokenDir: join(dir, 'tokens'),
      label: 'ts-token',
      modulePath: SOFTHSM_MODULE_PATH,
    });
    const conf = await readFile(token.confPath, 'utf8');
    expect(conf).toMatch(new RegExp(`^directories\\.tokendir = ${token.tokenDir}$`, 'm'));
    expect(conf).toMatch(/^objectstore\.backend = file$/m);
    expect(conf).toMatch(/^log\.level = ERROR$/m);
    expect(await mode(token.confPath)).toBe(0o600);
    expect(await mode(dir)).toBe(0o700);
    expect(await labelsIn(token.confPath)).toEqual(['ts-token']);

    // A second label in the same directory is fine; the same label again is not.
    await createSoftHsmToken({ dir, label: 'second', pin: '1234-pin', soPin: 'so-pin-5678' });
    expect((await labelsIn(token.confPath)).sort()).toEqual(['second', 'ts-token']);
    await expect(createSoftHsmToken({ dir, label: 'ts-token', pin: '1234-pin', soPin: 'so-pin-5678' })).rejects.toMatchObject({
      code: 'SOFTHSM_TOKEN_EXISTS',
    });
  });

  it('reports every invalid field at once', async () => {
    const error: unknown = await createSoftHsmToken({ dir: join(root, 'bad'), label: 'x'.repeat(33), pin: '12', soPin: '' }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SoftHsmSetupError);
    expect((error as SoftHsmSetupError).code).toBe('SOFTHSM_INVALID_INPUT');
    expect((error as Error).message).toMatch(/label.*pin.*soPin/);
  });

  it('refuses the system token store', async () => {
    await expect(
      createSoftHsmToken({ dir: '/var/lib/softhsm', label: 'nope', pin: '1234', soPin: '12345678' }),
    ).rejects.toMatchObject({ code: 'SOFTHSM_INVALID_INPUT' });
  });

  it('explains what to do when softhsm2-util is missing, without leaking PINs', async () => {
    const path = process.env.PATH;
    process.env.PATH = join(root, 'empty-path');
    try {
      const error: unknown = await createSoftHsmToken({
        dir: join(root, 'nopath'),
        label: 'x',
        pin: 'secret-pin-1',
        soPin: 'secret-pin-2',
      }).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'SOFTHSM_UTIL_MISSING' });
      expect((error as Error).message).toContain('create-token.sh');
      expect((error as Error).message).not.toContain('secret-pin');
    } finally {
      process.env.PATH = path;
    }
  });
});

describe('create-token.sh', () => {
  it('uses the PINs from the environment and prints the conf path', async () => {
    const dir = join(root, 'sh-env');
    const result = await run('bash', [SCRIPT, dir, 'sh-token'], {
      ...process.env,
      SIGNET_HSM_PIN: 'env-user-pin',
      SIGNET_HSM_SO_PIN: 'env-so-pin',
    });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(join(dir, 'softhsm2.conf'));
    expect(await labelsIn(join(dir, 'softhsm2.conf'))).toEqual(['sh-token']);
    await expect(stat(join(dir, 'pin'))).rejects.toThrow();
    const conf = await readFile(join(dir, 'softhsm2.conf'), 'utf8');
    expect(conf).toContain(`directories.tokendir = ${join(dir, 'tokens')}\n`);
  });

  it('generates PINs into 0600 files when none are given, and refuses a duplicate label', async () => {
    const dir = join(root, 'sh-gen');
    const env = { ...process.env };
    delete env.SIGNET_HSM_PIN;
    delete env.SIGNET_HSM_SO_PIN;
    const result = await run('bash', [SCRIPT, dir, 'gen-token'], env);
    expect(result.code).toBe(0);
    for (const file of ['pin', 'so-pin']) {
      expect(await mode(join(dir, file))).toBe(0o600);
      expect((await readFile(join(dir, file), 'utf8')).trim()).toMatch(/^[0-9a-f]{32}$/);
    }
    const again = await run('bash', [SCRIPT, dir, 'gen-token'], env);
    expect(again.code).toBe(73);
    expect(again.stderr).toContain('already exists');
  });

  it('rejects bad arguments', async () => {
    expect((await run('bash', [SCRIPT])).code).toBe(64);
    expect((await run('bash', [SCRIPT, join(root, 'sh-bad'), 'y'.repeat(33)])).code).toBe(64);
  });
});
