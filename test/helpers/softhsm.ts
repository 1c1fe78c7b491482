/**
 * A fresh SoftHSM token per test file. SoftHSM reads SOFTHSM2_CONF once, when the module
 * is initialised, so this sets it for the whole (forked) test process: call it before
 * the first `openPkcs11Hsm` of the file, and only once per file (vitest runs every test
 * file in its own process, see vitest.config.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSoftHsmToken } from '../../softhsm/token.js';

export interface TestToken {
  readonly dir: string;
  readonly confPath: string;
  readonly label: string;
  readonly pin: string;
  readonly soPin: string;
  readonly modulePath: string;
}

export async function createTestToken(label = 'signet-test'): Promise<TestToken> {
  const dir = await mkdtemp(join(tmpdir(), 'signet-softhsm-'));
  const pin = randomBytes(8).toString('hex');
  const soPin = randomBytes(8).toString('hex');
  const token = await createSoftHsmToken({ dir, label, pin, soPin });
  process.env.SOFTHSM2_CONF = token.confPath;
  return { dir, confPath: token.confPath, label, pin, soPin, modulePath: token.modulePath };
}

/** Deletes a token directory made by `createTestToken` (after the `Hsm` using it is closed). */
export async function removeTestToken(token: TestToken): Promise<void> {
  await rm(token.dir, { recursive: true, force: true });
}
