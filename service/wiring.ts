/**
 * The one place that builds a running Signet from a validated config: policy, HSM,
 * storage, start-up checks, HTTP app, listener, and the shutdown order. Every
 * dependency is checked before the listener opens, so a service that cannot find its
 * token, PIN, key or storage never accepts a connection.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import type { SignetConfig } from '../config/schema.js';
import { CertificateAuthority } from '../ca/authority.js';
import { startCaDuties } from '../ca/duties.js';
import { caSettingsFrom } from '../ca/settings.js';
import { KeyError } from '../keyrotation/errors.js';
import { ROTATION_FAILPOINTS } from '../keyrotation/execute.js';
import { EXECUTION_LEASE_MS, startInterruptionWatch } from '../keyrotation/execution-lease.js';
import { GovernanceService, SigningGuard } from '../keyrotation/governance-service.js';
import { findAgingKeys, startKeyAgeDuties } from '../keyrotation/key-age.js';
import { assertKeysPresent, keyRef } from '../keyrotation/signing-keys.js';
import { policyLeaf, POLICY_KIND } from '../log/entries.js';
import { TransparencyLog } from '../log/transparency-log.js';
import { PolicyError } from '../policy/errors.js';
import { identitySummary } from '../policy/oidc/presets.js';
import { isApprovedPolicy, loadPolicyFile, type LoadedPolicy } from '../policy/load.js';
import type { PipelineTokenVerifier } from '../policy/oidc/types.js';
import { createPipelineTokenVerifier } from '../policy/oidc/verifier.js';
import { createApp } from '../server/app.js';
import { listenHttps } from '../server/https-listener.js';
import { createLogger, flushLogs, type Logger } from '../server/logger.js';
import { listenMetrics, MeasuredTransparencyLog, pemCertificateExpiries, SignetMetrics, type MetricsListener } from '../server/metrics.js';
import { openSecretSealer } from '../signer/secret-sealing.js';
import type { Hsm, HsmSecretSealer } from '../signer/types.js';
import { openStore } from '../store/open-store.js';
import type { SignetStore } from '../store/store.js';
import { failpointsFromEnvironment } from './failpoints.js';
import { clusterLeadership } from './leadership.js';
import { openConfiguredHsm } from './open-hsm.js';

/** How often every replica checks for a policy approved elsewhere (set-policy executed on another replica). */
const POLICY_WATCH_MS = 5_000;

export interface RunningService {
  /** The HSM adapter in use (for operations and tests; it holds no secret itself). */
  readonly hsm: Hsm;
  readonly port: number;
  readonly url: string;
  readonly logger: Logger;
  /** Prometheus metrics of this service (server/metrics.ts); the CA registers its certificates here. */
  readonly metrics: SignetMetrics;
  /** The separate plain-HTTP metrics listener's URL, when `metrics.listen` is set. */
  readonly metricsUrl: string | undefined;
  /** Every route the HTTP app serves (method and path pattern), for checks against /openapi.json. */
  readonly routes: readonly { readonly method: string; readonly path: string }[];
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
  /**
   * Benchmarks only (bench/serve.ts): swaps the opened transparency log for another,
   * to measure what the log costs. Neither the config nor the CLI can reach it; the
   * service has no way to run without its log.
   */
  readonly replaceLogForBenchmark?: (log: TransparencyLog, store: SignetStore) => TransparencyLog;
}

export async function startService(config: Readonly<SignetConfig>, options: StartOptions = {}): Promise<RunningService> {
  const logger = createLogger(config.logging.level, options.logDestination);
  // Crash tests only (service/failpoints.ts): inert unless SIGNET_FAILPOINTS is set.
  const failpoints = failpointsFromEnvironment(ROTATION_FAILPOINTS);
  if (failpoints !== undefined) logger.warn({ failpoints: failpoints.armed }, 'failpoints armed: this process kills itself when it reaches them (crash tests only)');
  let policy = loadPolicyFile(config.policy.file);

  const tls = {
    cert: readConfigFile(config.server.tls.certFile, 'server.tls.certFile'),
    key: readConfigFile(config.server.tls.keyFile, 'server.tls.keyFile'),
    clientCa: readConfigFile(config.server.tls.clientCaFile, 'server.tls.clientCaFile'),
  };
  // Officers authenticate with certificates of their own CA (DESIGN.md: a separate
  // hierarchy). The listener trusts both CAs; each route accepts only its own.
  const officerCa = config.server.tls.officerCaFile === undefined ? undefined : readConfigFile(config.server.tls.officerCaFile, 'server.tls.officerCaFile');

  const hsm: Hsm = await openConfiguredHsm(config, { logger });
  // The service signs through the measured adapter; `hsm` itself stays the raw one.
  const metrics = new SignetMetrics({
    processMetrics: config.metrics.processMetrics,
    isKnownProject: (project) => Object.hasOwn(policy.document.projects, project),
    hsmSignCapacity: config.hsm.signWorkers,
  });
  const measuredHsm = metrics.instrumentHsm(hsm);
  metrics.addCertificateSource('tls', () => [
    ...pemCertificateExpiries('tls-server', tls.cert),
    ...pemCertificateExpiries('tls-ci-client-ca', tls.clientCa),
    ...(officerCa === undefined ? [] : pemCertificateExpiries('tls-officer-ca', officerCa)),
  ]);

  const openedStore = await openStoreChecked(config, hsm);
  const caSettings = caSettingsFrom(config);
  const ca = new CertificateAuthority({ hsm, store: openedStore, settings: caSettings, logKeyName: config.log.keyName });
  // The code-signing hierarchy and every issued leaf, read at each scrape, so an
  // expiring CA or key certificate shows in metrics as well as /readyz and the log.
  metrics.addCertificateSource('code-signing', async () => {
    const [cas, leaves] = await Promise.all([openedStore.certificates.listCas(), openedStore.certificates.listLeaves()]);
    return [
      ...cas.filter((record) => record.status === 'active').map((record) => ({ certificate: `ca:${record.role}:${record.caId}`, notAfter: new Date(record.notAfter) })),
      ...leaves.map((record) => ({ certificate: `leaf:${record.keyId}:${record.serialNumber}`, notAfter: new Date(record.notAfter) })),
    ];
  });
  let tokens: PipelineTokenVerifier;
  let log: TransparencyLog;
  let sealer: HsmSecretSealer | undefined;
  try {
    assertPolicyKeepsLogKey(policy, config.log.keyName);
    tokens = createPipelineTokenVerifier(config.oidc, { logger });
    log = await openTransparencyLog(config, measuredHsm, openedStore, metrics);
    log = options.replaceLogForBenchmark?.(log, openedStore) ?? log;
    // CA keys recorded in storage must be in the token, like signing keys.
    await ca.assertKeysPresent();
    // With officer routes on, the key that seals their TOTP secrets must be in the token
    // (made by `signet init` or set-up, never here): otherwise no approval could be checked.
    if (officerCa !== undefined) sealer = await openSecretSealer(hsm, { label: config.governance.sealingKeyLabel });
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

  /** Puts `next` in force: recorded in the log first, so no decision is made under an unlogged policy. */
  const adoptPolicy = async (next: LoadedPolicy): Promise<LoadedPolicy> => {
    assertPolicyKeepsLogKey(next, config.log.keyName);
    await recordPolicy(next, 'reload');
    policy = next;
    logger.info({ policySha256: next.sha256 }, 'policy reloaded');
    return next;
  };
  /** The hash a quorum approved (set-policy), read from storage, not from a cache. */
  const approvedPolicySha256 = async (): Promise<string | null> => (await openedStore.governance.settings()).policySha256;
  /** The (approved, file) pair last warned about: a watch round repeats no warning. */
  let warnedAbout = '';
  let loadingApproved: Promise<void> | undefined;
  /**
   * Puts the approved policy in force when the file in place is that policy: at once
   * after this replica executes a set-policy, and every POLICY_WATCH_MS on every replica
   * (another may have executed it). One at a time, so an execution and a watch round
   * do not both record the same policy.
   */
  const loadApprovedPolicyFile = (): Promise<void> => {
    loadingApproved ??= (async () => {
      const approved = await approvedPolicySha256();
      if (isApprovedPolicy(policy.sha256, approved)) return;
      const next = loadPolicyFile(config.policy.file);
      if (!isApprovedPolicy(next.sha256, approved)) {
        const pair = `${approved} ${next.sha256}`;
        if (pair !== warnedAbout) {
          warnedAbout = pair;
          logger.warn({ approvedPolicySha256: approved, policySha256: policy.sha256, fileSha256: next.sha256 }, 'the policy file is not the policy the officers approved; signing is refused until the approved file is in place');
        }
        return;
      }
      await adoptPolicy(next);
    })().finally(() => {
      loadingApproved = undefined;
    });
    return loadingApproved;
  };
  try {
    // Started with a file the officers did not approve: said once here, and signing is
    // refused until the approved file is in place (the watch below loads it).
    await loadApprovedPolicyFile();
  } catch (error) {
    await openedStore.close();
    await hsm.close();
    throw error;
  }

  let stopping = false;
  let inFlight = 0;
  metrics.watchStore(openedStore);
  // Freezes and revoked client certificates, as the signing path sees them.
  const guard = new SigningGuard({ store: openedStore, cacheMs: config.governance.signingGuardCacheMs });
  // Periodic work runs on one replica of the cluster at a time: each duty's round runs
  // only while this replica holds the duty's lease in storage (service/leadership.ts).
  // Rotation executions hold a lease of their own under the same holder name.
  const leadership = clusterLeadership(openedStore.leases, logger);
  const governance =
    sealer === undefined
      ? undefined
      : new GovernanceService({
          store: openedStore,
          hsm,
          ca,
          sealer,
          settings: config.governance,
          logger,
          logKeyName: config.log.keyName,
          now: () => new Date(),
          executionHolder: leadership.holder,
          ...(failpoints === undefined ? {} : { failpoint: failpoints.hit }),
          onChange: () => {
            guard.invalidate();
            // An executed set-policy takes effect here at once when the approved file is
            // already in place (deployed first, its reload refused until the approval).
            loadApprovedPolicyFile().catch((error: unknown) => {
              logger.error({ err: error }, 'the approved policy could not be loaded; signing is refused until it is');
            });
          },
        });
  const keyAgeWarningDays = config.governance.keyAgeWarningDays;
  const agingKeys = async () =>
    findAgingKeys({ keys: await openedStore.keys.list(), policy: policy.document, now: new Date(), warningDays: keyAgeWarningDays }).filter(
      (key) => key.name !== config.log.keyName,
    );
  const app = createApp({
    hsm: measuredHsm,
    store: openedStore,
    tokens,
    log,
    summarizeIdentity: (identity) => identitySummary(presets.get(identity.issuerName) ?? 'generic', identity.claims),
    now: () => new Date(),
    tokenLeewaySeconds: config.oidc.leewaySeconds,
    currentPolicy: () => policy,
    logger,
    metrics,
    exposeMetrics: config.metrics.onMainListener,
    trust: { store: openedStore, log, hsm, settings: caSettings, logKeyName: config.log.keyName, now: () => new Date() },
    signingFrozen: (project) => guard.isFrozen(project),
    approvedPolicySha256: () => guard.approvedPolicySha256(),
    clients: { ciClientCa: tls.clientCa, isRevoked: (fingerprint) => guard.isRevoked(fingerprint) },
    officers: { governance, officerCa },
    readinessDetails: async () => {
      const inForce = policy.sha256;
      const approvedSha256 = await guard.approvedPolicySha256();
      return {
        keys: { warningDays: keyAgeWarningDays, aging: await agingKeys() },
        policy: { sha256: inForce, approvedSha256, approved: isApprovedPolicy(inForce, approvedSha256) },
      };
    },
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
      clientCa: officerCa === undefined ? tls.clientCa : Buffer.concat([tls.clientCa, Buffer.from('\n'), officerCa]),
      requestTimeoutMs: config.server.requestTimeoutMs,
      maxBodyBytes: config.server.maxBodyBytes,
      fetch: app.fetch,
    });
  } catch (error) {
    await openedStore.close();
    await hsm.close();
    throw error;
  }
  let metricsListener: MetricsListener | undefined;
  if (config.metrics.listen !== undefined) {
    try {
      metricsListener = await listenMetrics(metrics, config.metrics.listen.host, config.metrics.listen.port);
    } catch (error) {
      await listener.close(0);
      await openedStore.close();
      await hsm.close();
      throw error;
    }
  }
  const port = listener.port;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
  const url = `https://${host}:${port}`;
  logger.info({ url, metricsUrl: metricsListener?.url, storage: openedStore.kind, policySha256: policy.sha256 }, 'signet listening');
  flushLogs(logger);

  const housekeepingMs = 60_000;
  const dutyMs = 3_600_000;
  const mayTidy = leadership.duty('housekeeping', housekeepingMs);

  // Housekeeping: token uses past their token's expiry, old rate windows, and token
  // uses left pending by a request that died with its process (no request lives longer
  // than the request timeout, so older pending uses are abandoned). Runs at start too,
  // so a CI retry after a crash is served rather than told the token is in use.
  const abandonedAfterMs = config.server.requestTimeoutMs + 30_000;
  const tidy = async (): Promise<void> => {
    if (!(await mayTidy())) return;
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
  void tidy();
  const housekeeping = setInterval(() => void tidy(), housekeepingMs);
  housekeeping.unref();
  // A failing round (storage down, an invalid file) is reported once until it succeeds again.
  let watchFailing = false;
  const policyWatch = setInterval(() => {
    loadApprovedPolicyFile().then(
      () => {
        watchFailing = false;
      },
      (error: unknown) => {
        if (!watchFailing) logger.warn({ err: error }, 'could not check the approved policy; signing stays refused while it differs from the policy in force');
        watchFailing = true;
      },
    );
  }, POLICY_WATCH_MS);
  policyWatch.unref();
  // CRLs kept current, expiring certificates warned about (ca/duties.ts).
  const caDuties = startCaDuties({ ca, appendToLog: (entries) => log.append(entries), logger, intervalMs: dutyMs, mayRun: leadership.duty('ca-duties', dutyMs) });
  // Keys near their project's maximum age: reported, logged, optionally proposed for rotation (keyrotation/key-age.ts).
  const keyAgeDuties = startKeyAgeDuties({
    store: openedStore,
    policy: () => policy.document,
    warningDays: keyAgeWarningDays,
    autoPropose: config.governance.autoProposeRotation,
    logKeyName: config.log.keyName,
    logger,
    intervalMs: dutyMs,
    mayRun: leadership.duty('key-age', dutyMs),
  });
  // Rotations whose process died between steps are recorded `execution-interrupted`:
  // checked at start (and once the dead process's execution lease has expired), then
  // every minute on one replica (keyrotation/execution-lease.ts).
  const interruptions = startInterruptionWatch({
    store: openedStore,
    logger,
    now: () => new Date(),
    holder: `${leadership.holder}:watch`,
    leaseMs: EXECUTION_LEASE_MS,
    intervalMs: housekeepingMs,
    mayRun: leadership.duty('execution-recovery', housekeepingMs),
  });

  let stopped: Promise<void> | undefined;
  const openListener = listener;
  return {
    hsm,
    port,
    url,
    logger,
    metrics,
    metricsUrl: metricsListener?.url,
    routes: app.routes.filter((route) => route.method !== 'ALL').map((route) => ({ method: route.method, path: route.path })),
    reloadPolicy: async () => {
      const next = loadPolicyFile(config.policy.file);
      // Once officers approved a policy, only that policy may be put in force.
      const approved = await approvedPolicySha256();
      if (!isApprovedPolicy(next.sha256, approved)) {
        throw new PolicyError(
          'POLICY_NOT_APPROVED',
          `policy file ${config.policy.file} (SHA-256 ${next.sha256}) is not the policy the security officers approved (SHA-256 ${approved}); the policy in force stays`,
        );
      }
      return adoptPolicy(next);
    },
    stop: () => {
      stopped ??= (async () => {
        stopping = true;
        clearInterval(housekeeping);
        clearInterval(policyWatch);
        logger.info({ inFlight }, 'shutting down: no new requests');
        await caDuties.stop();
        await keyAgeDuties.stop();
        await interruptions.stop();
        // Another replica takes the duties over at its next round, not after the leases expire.
        await leadership.releaseAll();
        await openListener.close(config.server.shutdownGraceMs);
        await metricsListener?.close();
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
async function openTransparencyLog(config: Readonly<SignetConfig>, hsm: Hsm, store: SignetStore, metrics: SignetMetrics): Promise<TransparencyLog> {
  const key = await store.keys.getActive(config.log.keyName);
  if (key === null) {
    throw new KeyError('KEY_NOT_FOUND', `no active log key "${config.log.keyName}" (signet init makes one; production: signet keys create)`);
  }
  if (key.algorithm !== 'ecdsa-p256') throw new KeyError('KEY_ID_INVALID', `the log key must be ecdsa-p256 (it is ${key.algorithm})`);
  const log = new MeasuredTransparencyLog({
    store,
    origin: config.log.origin,
    publicKeyPem: key.publicKeyPem,
    sign: (digest) => hsm.signDigest(keyRef(key), { algorithm: 'sha256', value: digest }),
  }, metrics);
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
