/**
 * Child process of the benchmark: the raw PKCS#11 P-256 sign rate, the limit that the
 * service's end-to-end rate is compared with. A synchronous C_Sign loop on one
 * session with CKM_ECDSA over a 32-byte digest: no pool, no event loop, no TLS.
 *
 * Runs in its own process so it measures the token alone and SoftHSM reads the
 * benchmark's SOFTHSM2_CONF fresh (it reads it once, at C_Initialize).
 *
 * argv: modulePath tokenLabel pinFile hsmKeyIdHex seconds
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type * as Pkcs11Js from 'pkcs11js';

const pkcs11js = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Js;
const [modulePath, tokenLabel, pinFile, keyIdHex, secondsText] = process.argv.slice(2);
if (modulePath === undefined || tokenLabel === undefined || pinFile === undefined || keyIdHex === undefined) {
  throw new Error('usage: raw-pkcs11 modulePath tokenLabel pinFile hsmKeyIdHex seconds');
}
const seconds = Number(secondsText ?? '3');

const module = new pkcs11js.PKCS11();
module.load(modulePath);
module.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
const slot = module.C_GetSlotList(true).find((s) => module.C_GetTokenInfo(s).label.trim() === tokenLabel);
if (slot === undefined) throw new Error(`no token ${tokenLabel}`);
const session = module.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
module.C_Login(session, pkcs11js.CKU_USER, readFileSync(pinFile, 'utf8').trim());
module.C_FindObjectsInit(session, [
  { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
  { type: pkcs11js.CKA_ID, value: Buffer.from(keyIdHex, 'hex') },
]);
const [key] = module.C_FindObjects(session, 1);
module.C_FindObjectsFinal(session);
if (key === undefined) throw new Error('key not found');

const digest = randomBytes(32);
const out = Buffer.alloc(128);
let count = 0;
const started = process.hrtime.bigint();
const deadline = started + BigInt(Math.round(seconds * 1e9));
while (process.hrtime.bigint() < deadline) {
  for (let i = 0; i < 100; i += 1) {
    module.C_SignInit(session, { mechanism: pkcs11js.CKM_ECDSA }, key);
    module.C_Sign(session, digest, out);
  }
  count += 100;
}
const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
module.C_Logout(session);
module.C_CloseSession(session);
module.C_Finalize();
process.stdout.write(`${JSON.stringify({ signatures: count, seconds: elapsed, perSecond: count / elapsed })}\n`);
