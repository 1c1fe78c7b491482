/**
 * The one place that builds a running Signet from a validated config: policy, HSM,
 * storage, start-up checks, HTTP app, listener, and the shutdown order. Every
 * dependency is checked before the listener opens, so a service that cannot find its
 * token, PIN, key or storage never accepts a connection.
 */
import { readFileSync } from 'node:fs';
import { readSecret } from '../config/load.js';
import { ConfigError } from '../config/errors.js';
import type { SignetConfig } from '../config/schema.js';
import { assertKeysPresent } from '../keyrotation/signing-keys.js';
import { loadPolicyFile, type LoadedPolicy } from '../policy/load.js';
import type { PipelineTokenVerifier } from '../policy/oidc/types.js';
import { createPipelineTokenVerifier } from '../policy/oidc/verifier.js';
import { createApp } from '../server/app.js';
import { listenHttps } from '../server/https-listener.js';
import { createLogger, flushLogs, type Logger } from '../server/logger.js';
import { openPkcs11Hsm } from '../signer/pkcs11-hsm.js';
import type { Hsm } from '../signer/types.js';
import { openStore } from '../store/open-store.js';
import type { SignetStore } from '../store/store.js';

export interface RunningService {
  readonly port: number;
  readonly url: string;
  readonly logger: Logger;
  /** Graceful stop; safe to call more than once. */
  stop(): Promise<void>;
  /** Re-reads the policy file; an invalid file is rejected and the old policy stays. */
  reloadPolicy(): LoadedPolicy;
}

export interface StartOptions {
  /** Where logs go (stdout when absent). */
  readonly logDestination?: NodeJS.WritableStream;
}

export async function startService(config: Readonly<SignetConfig>, options: StartOptions = {}): Promise<RunningService> {
  const logger = createLogger(config.logging.level, options.logDestination);
  let policy = loadPolicyFile(config.policy.file);

  const tls = {
    cert: readConfigFile(config.server.tls.certFile, 'server.tls.certFile'),
    key: readConfigFile(config.server.tls.keyFile, 'server.tls.keyFile'),
    clientCa: readConfigFile(config.server.tls.clientCaFile, 'server.tls.clientCaFile'),
  };

  if (config.hsm.softhsm2Conf !== undefined) process.env.SOFTHSM2_CONF = config.hsm.softhsm2Conf;
  const pin = readSecret(config.hsm.pin, 'hsm.pin');
  const hsm: Hsm = await openPkcs11Hsm({
    modulePath: config.hsm.module,
    tokenLabel: config.hsm.tokenLabel,
    ...(config.hsm.tokenSerial === undefined ? {} : { tokenSerial: config.hsm.tokenSerial }),
    pin,
    poolSize: config.hsm.sessions,
    signWorkers: config.hsm.signWorkers,
    logger,
  });

  const openedStore = await openStoreChecked(config, hsm);
  let tokens: PipelineTokenVerifier;
  try {
    tokens = createPipelineTokenVerifier(config.oidc, { logger });
  } catch (error) {
    await openedStore.close();
    await hsm.close();
    throw error;
  }

  let stopping = false;
  let inFlight = 0;
  const app = createApp({
    hsm,
    store: openedStore,
    tokens,
    now: () => new Date(),
    tokenLeewaySeconds: config.oidc.leewaySeconds,
    currentPolicy: () => policy,
    logger,
    maxBodyBytes: config.server.maxBodyBytes,
    isStopping: () => stopping,
    inFlight: {
      enter: () => {
        inFlight += 1;
      },
      leave: () => {
        inFlight -= 1;
      },
    },
  });

  let listener;
  try {
    listener = await listenHttps({
      host: config.server.host,
      port: config.server.port,
      ...tls,
      requestTimeoutMs: config.server.requestTimeoutMs,
      maxBodyBytes: config.server.maxBodyBytes,
      fetch: app.fetch,
    });
  } catch (error) {
    await openedStore.close();
    await hsm.close();
    throw error;
  }
  const port = listener.port;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
  const url = `https://${host}:${port}`;
  logger.info({ url, storage: openedStore.kind, policySha256: policy.sha256 }, 'signet listening');
  flushLogs(logger);

  // Housekeeping: token uses past their token's expiry and old rate windows. Not
  // needed for correctness (expired tokens are refused before their use is looked up).
  const housekeeping = setInterval(() => {
    const now = new Date();
    const minuteAgo = new Date(now.getTime() - 120_000).toISOString().slice(0, 16);
    Promise.all([openedStore.tokenUses.purgeExpired(now.toISOString()), openedStore.counters.purgeWindowsBefore(minuteAgo)]).catch(
      (error: unknown) => {
        logger.warn({ err: error }, 'housekeeping failed');
      },
    );
  }, 60_000);
  housekeeping.unref();

  let stopped: Promise<void> | undefined;
  const openListener = listener;
  return {
    port,
    url,
    logger,
    reloadPolicy: () => {
      const next = loadPolicyFile(config.policy.file);
      policy = next;
      logger.info({ policySha256: next.sha256 }, 'policy reloaded');
      return next;
    },
    stop: () => {
      stopped ??= (async () => {
        stopping = true;
        clearInterval(housekeeping);
        logger.info({ inFlight }, 'shutting down: no new requests');
        await openListener.close(config.server.shutdownGraceMs);
        await hsm.close();
        await openedStore.close();
        logger.info('stopped');
        flushLogs(logger);
      })();
      return stopped;
    },
  };
}

/** Opens storage and checks every live key is in the token; on failure closes the HSM too. */
async function openStoreChecked(config: Readonly<SignetConfig>, hsm: Hsm): Promise<SignetStore> {
  let store: SignetStore | undefined;
  try {
    const opened: SignetStore = await openStore(config.storage);
    store = opened;
    await assertKeysPresent(hsm, opened);
    return opened;
  } catch (error) {
    await store?.close();
    await hsm.close();
    throw error;
  }
}

function readConfigFile(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError('CONFIG_UNREADABLE', `${field}: cannot read ${path}`, [], { cause: error });
  }
}
