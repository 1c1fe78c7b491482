/**
 * Opens the HSM a validated config names: exports SOFTHSM2_CONF first when the config
 * gives one (SoftHSM reads it once, at C_Initialize), reads the PIN from its source,
 * and opens the token by label (and serial). The one place the service, the CLI and
 * the benchmark turn `hsm:` settings into an adapter.
 */
import { readSecret } from '../config/load.js';
import type { SignetConfig } from '../config/schema.js';
import { openPkcs11Hsm, type HsmLogger } from '../signer/pkcs11-hsm.js';
import type { Hsm } from '../signer/types.js';

export interface OpenConfiguredHsmOptions {
  /** Overrides `hsm.sessions` (tools that only manage keys need one). */
  readonly poolSize?: number;
  /** Overrides `hsm.signWorkers`. */
  readonly signWorkers?: number;
  readonly logger?: HsmLogger;
}

export function openConfiguredHsm(config: Readonly<SignetConfig>, options: OpenConfiguredHsmOptions = {}): Promise<Hsm> {
  if (config.hsm.softhsm2Conf !== undefined) process.env.SOFTHSM2_CONF = config.hsm.softhsm2Conf;
  return openPkcs11Hsm({
    modulePath: config.hsm.module,
    tokenLabel: config.hsm.tokenLabel,
    ...(config.hsm.tokenSerial === undefined ? {} : { tokenSerial: config.hsm.tokenSerial }),
    pin: readSecret(config.hsm.pin, 'hsm.pin'),
    poolSize: options.poolSize ?? config.hsm.sessions,
    signWorkers: options.signWorkers ?? config.hsm.signWorkers,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
}
