/**
 * `openPkcs11Hsm` fails at start, with one HsmError and the right code, for each way
 * the configuration can be wrong. Order matters in this file: the wrong-PIN test runs
 * while nothing in the process is logged in, so it reaches the token's own PIN check.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHsmError, type HsmErrorCode } from '../../signer/errors.js';
import { openPkcs11Hsm, type OpenPkcs11HsmOptions } from '../../signer/pkcs11-hsm.js';
import type { Hsm } from '../../signer/types.js';
import { createTestToken, removeTestToken, type TestToken } from '../helpers/softhsm.js';

let token: TestToken;
const opened: Hsm[] = [];

async function expectOpenFails(options: OpenPkcs11HsmOptions, code: HsmErrorCode): Promise<Error> {
  const error: unknown = await openPkcs11Hsm(options).then(
    (hsm) => {
      opened.push(hsm);
      return undefined;
    },
    (e: unknown) => e,
  );
  expect(isHsmError(error), `expected an HsmError ${code}, got ${String(error)}`).toBe(true);
  expect((error as { code: string }).code).toBe(code);
  expect((error as Error).message).not.toContain(token.pin);
  return error as Error;
}

function good(): OpenPkcs11HsmOptions {
  return { modulePath: token.modulePath, tokenLabel: token.label, pin: token.pin, poolSize: 1 };
}

beforeAll(async () => {
  token = await createTestToken('signet-startup');
  // Two tokens sharing a label, made before the module is first initialised (SoftHSM
  // reads its token directory then).
  const run = promisify(execFile);
  for (let i = 0; i < 2; i++) {
    await run('softhsm2-util', ['--init-token', '--free', '--label', 'twin', '--so-pin', token.soPin, '--pin', token.pin], {
      env: { ...process.env, SOFTHSM2_CONF: token.confPath },
    });
  }
});

afterAll(async () => {
  await Promise.all(opened.map((hsm) => hsm.close()));
  await removeTestToken(token);
});

describe('openPkcs11Hsm start-up errors', () => {
  it('HSM_PIN_MISSING for an empty PIN', async () => {
    await expectOpenFails({ ...good(), pin: '' }, 'HSM_PIN_MISSING');
  });

  it('HSM_MODULE_NOT_FOUND for a missing or relative module path', async () => {
    const error = await expectOpenFails({ ...good(), modulePath: '/nonexistent/libsofthsm2.so' }, 'HSM_MODULE_NOT_FOUND');
    expect(error.message).toContain('/nonexistent/libsofthsm2.so');
    await expectOpenFails({ ...good(), modulePath: 'libsofthsm2.so' }, 'HSM_MODULE_NOT_FOUND');
    await expectOpenFails({ ...good(), modulePath: '' }, 'HSM_MODULE_NOT_FOUND');
  });

  it('HSM_UNAVAILABLE for a file that is not a PKCS#11 library', async () => {
    await expectOpenFails({ ...good(), modulePath: '/etc/hostname' }, 'HSM_UNAVAILABLE');
  });

  it('HSM_PIN_INCORRECT for a wrong PIN', async () => {
    await expectOpenFails({ ...good(), pin: `${token.pin}x` }, 'HSM_PIN_INCORRECT');
  });

  it('HSM_TOKEN_NOT_FOUND for an unknown label or serial, naming the labels present', async () => {
    const error = await expectOpenFails({ ...good(), tokenLabel: 'no-such-token' }, 'HSM_TOKEN_NOT_FOUND');
    expect(error.message).toContain('"signet-startup"');
    await expectOpenFails({ ...good(), tokenSerial: '0000000000000000' }, 'HSM_TOKEN_NOT_FOUND');
    await expectOpenFails({ ...good(), tokenLabel: 'x'.repeat(33) }, 'HSM_TOKEN_NOT_FOUND');
  });

  it('HSM_TOKEN_AMBIGUOUS when two tokens share the label', async () => {
    await expectOpenFails({ ...good(), tokenLabel: 'twin' }, 'HSM_TOKEN_AMBIGUOUS');
  });

  it('TypeError for nonsensical pool or signing worker options', async () => {
    await expect(openPkcs11Hsm({ ...good(), poolSize: 0 })).rejects.toThrow(TypeError);
    await expect(openPkcs11Hsm({ ...good(), poolSize: 1.5 })).rejects.toThrow(TypeError);
    await expect(openPkcs11Hsm({ ...good(), acquireTimeoutMs: 0 })).rejects.toThrow(TypeError);
    await expect(openPkcs11Hsm({ ...good(), signWorkers: 0 })).rejects.toThrow(TypeError);
    await expect(openPkcs11Hsm({ ...good(), signWorkers: 17 })).rejects.toThrow(TypeError);
    await expect(openPkcs11Hsm({ ...good(), signWorkers: 1.5 })).rejects.toThrow(TypeError);
  });

  it('opens with the right settings, and still refuses a wrong PIN once logged in', async () => {
    const hsm = await openPkcs11Hsm(good());
    opened.push(hsm);
    await expect(hsm.ping()).resolves.toBeUndefined();
    // The token itself would now answer CKR_USER_ALREADY_LOGGED_IN without checking.
    await expectOpenFails({ ...good(), pin: 'wrong-pin' }, 'HSM_PIN_INCORRECT');
    // A second adapter with the right PIN shares the login.
    const second = await openPkcs11Hsm(good());
    opened.push(second);
    await expect(second.ping()).resolves.toBeUndefined();
  });
});
