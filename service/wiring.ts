/**
 * The one place that builds a running Signet from a validated config: policy, HSM,
 * storage, start-up checks, HTTP app, listener, and the shutdown order. Every
 * dependency is checked before the listener opens, so a service that cannot find its
 * token, PIN, key or storage never accepts a connection.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import type { SignetConfig } from '../config/schema.js';
import { KeyError } from '../keyrotation/errors.js';
import { assertKeysPresent, keyRef } from '../keyrotation/signing-keys.js';
import { policyLeaf, POLICY_KIND } from '../log/entries.js';
import { TransparencyLog } from '../log/transparency-log.js';
import { PolicyError } from '../policy/errors.js';
import { identitySummary } from '../policy/oidc/presets.js';
import { loadPolicyFile, type LoadedPolicy } from '../policy/load.js';
import type { PipelineTokenVerifier } from '../policy/oidc/types.js';
import { createPipelineTokenVerifier } from '../policy/oidc/verifier.js';
import { createApp } from '../server/app.js';
import { listenHttps } from '../server/https-listener.js';
import { createLogger, flushLogs, type Logger } from '../server/logger.js';
import type { Hsm } from '../signer/types.js';
import { openStore } from '../store/open-store.js';
import type { SignetStore } from '../store/store.js';
import { openConfiguredHsm } from './open-hsm.js';

export interface RunningService {
  /** The HSM adapter in use (for operations and tests; it holds no secret itself). */
  readonly hsm: Hsm;
  readonly port: number;
  readonly url: string;
  readonly logger: Logger;
  /** Graceful stop; safe to call more than once. */
  stop(): Promise<void>;
  /**
   * Re-reads the policy file and records the new version in the log; an invalid file,
   * or one that cannot be recorded, is rejected and the old policy stays.
   */
  reloadPolicy(): Promise<LoadedPolicy>;
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

  const hsm: Hsm = await openConfiguredHsm(config, { logger });

  const openedStore = await openStoreChecked(config, hsm);
  let tokens: PipelineTokenVerifier;
  let log: TransparencyLog;
  try {
    assertPolicyKeepsLogKey(policy, config.log.keyName);
    tokens = createPipelineTokenVerifier(config.oidc, { logger });
    log = await openTransparencyLog(config, hsm, openedStore);
  } catch (error) {
    await openedStore.close();
    await hsm.close();
    throw error;
  }
  const presets = new Map(config.oidc.issuers.map((issuer) => [issuer.name, issuer.preset]));
  const recordPolicy = async (loaded: LoadedPolicy, reason: 'start' | 'reload'): Promise<void> => {
    const now = new Date();
    await log.append([
      { kind: POLICY_KIND, leaf: policyLeaf({ sha256: loaded.sha256, document: loaded.document, reason, time: now.toISOString() }), integratedTime: Math.floor(now.getTime() / 1000), linkedIndex: null },
    ]);
  };
  try {
    await recordPolicy(policy, 'start');
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
    log,
    summarizeIdentity: (identity) => identitySummary(presets.get(identity.issuerName) ?? 'generic', identity.claims),
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

  // Housekeeping: token uses past their token's expiry, old rate windows, and token
  // uses left pending by a request that died with its process (no request lives longer
  // than the request timeout, so older pending uses are abandoned). Runs at start too,
  // so a CI retry after a crash is served rather than told the token is in use.
  const abandonedAfterMs = config.server.requestTimeoutMs + 30_000;
  const tidy = (): void => {
    const now = new Date();
    const minuteAgo = new Date(now.getTime() - 120_000).toISOString().slice(0, 16);
    Promise.all([
      openedStore.tokenUses.purgeExpired(now.toISOString()),
      openedStore.tokenUses.releaseAbandoned(new Date(now.getTime() - abandonedAfterMs).toISOString()),
      openedStore.counters.purgeWindowsBefore(minuteAgo),
    ]).catch((error: unknown) => {
      logger.warn({ err: error }, 'housekeeping failed');
    });
  };
  tidy();
  const housekeeping = setInterval(tidy, 60_000);
  housekeeping.unref();

  let stopped: Promise<void> | undefined;
  const openListener = listener;
  return {
    hsm,
    port,
    url,
    logger,
    reloadPolicy: async () => {
      const next = loadPolicyFile(config.policy.file);
      assertPolicyKeepsLogKey(next, config.log.keyName);
      // Recorded before it takes effect: no decision is made under an unlogged policy.
      await recordPolicy(next, 'reload');
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

/**
 * The log key signs checkpoints only. A policy naming it for a project would let a
 * pipeline make signatures that look like the log's own, so such a policy is refused.
 */
function assertPolicyKeepsLogKey(policy: LoadedPolicy, logKeyName: string): void {
  const offending = Object.entries(policy.document.projects)
    .filter(([, project]) => project.keys.includes(logKeyName))
    .map(([name]) => name);
  if (offending.length > 0) {
    throw new PolicyError('POLICY_INVALID', `the log key "${logKeyName}" may not be used by projects: ${offending.join(', ')}`);
  }
}

/** The log with its HSM key (the active version of `log.keyName`), and a checkpoint for its current size. */
async function openTransparencyLog(config: Readonly<SignetConfig>, hsm: Hsm, store: SignetStore): Promise<TransparencyLog> {
  const key = await store.keys.getActive(config.log.keyName);
  if (key === null) {
    throw new KeyError('KEY_NOT_FOUND', `no active log key "${config.log.keyName}" (signet init makes one; production: signet keys create)`);
  }
  if (key.algorithm !== 'ecdsa-p256') throw new KeyError('KEY_ID_INVALID', `the log key must be ecdsa-p256 (it is ${key.algorithm})`);
  const log = new TransparencyLog({
    store,
    origin: config.log.origin,
    publicKeyPem: key.publicKeyPem,
    sign: (digest) => hsm.signDigest(keyRef(key), { algorithm: 'sha256', value: digest }),
  });
  await log.open();
  return log;
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
