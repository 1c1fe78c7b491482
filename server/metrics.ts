/**
 * Prometheus metrics (prom-client): what an operator watches and alerts on
 * (docker/prometheus/alerts.yml). One registry per running service, served as the
 * Prometheus text exposition format 0.0.4 on `GET /metrics` (server/metrics-settings.ts
 * says where).
 *
 * Label values come from bounded sets only, so no caller can grow the series count or
 * smuggle data into the exposition: project names the policy in force knows (anything
 * else is `unknown`), error and deny-reason codes, route patterns, HTTP methods from a
 * fixed list, key ids recorded in storage, certificate names given by the service's own
 * code. Never a token, a subject, a claim, a digest, a PIN or an HSM handle.
 *
 * Values that live outside this process (the log's size, key ages, certificate expiry,
 * whether the HSM and storage answer) are read when a scrape asks for them, once per
 * scrape however many scrapers ask at the same moment, each probe bounded in time.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Env } from 'hono';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { isSignetError } from '../errors/signet-error.js';
import { TransparencyLog, type TransparencyLogOptions } from '../log/transparency-log.js';
import type { DigestAlgorithm, KeyAlgorithm } from '../signer/algorithms.js';
import type { DigestInput, Hsm, HsmKeyRef } from '../signer/types.js';
import type { LogEntryInput, SignetStore, StoreTransaction } from '../store/store.js';

/** What a sign request came to, as an operator reads it. */
export type SignOutcome =
  /** A signature left the service (or an identical retry got it back). */
  | 'signed'
  /** A dry run answered (allowed or not). */
  | 'dry_run'
  /** Refused by the policy or a rate or usage limit (logged in the transparency log). */
  | 'denied'
  /** No or bad client certificate, or a missing, invalid or replayed id token (not logged in the transparency log). */
  | 'unauthenticated'
  /** Any other client fault: a malformed body, an unknown or inactive key, … */
  | 'rejected'
  /** HSM, storage, log or JWKS unavailable, or shutting down: nothing was signed. */
  | 'unavailable'
  /** A fault of the service itself (500): nothing was signed. */
  | 'failed';

/** One certificate whose end of validity is exported; `certificate` names it (a fixed name, not a subject). */
export interface CertificateExpiry {
  readonly certificate: string;
  readonly notAfter: Date;
}

/**
 * Feeds `signet_certificate_not_after_timestamp_seconds`, called at each scrape. The
 * service registers its TLS certificates; the code-signing CA registers its hierarchy
 * through `SignetMetrics.addCertificateSource` in service/wiring.ts.
 */
export type CertificateExpirySource = () => readonly CertificateExpiry[] | Promise<readonly CertificateExpiry[]>;

export interface ObservedRequest {
  readonly method: string;
  /** The matched route pattern (hono's `routePath`), never the raw path. */
  readonly route: string;
  readonly status: number;
  readonly seconds: number;
  /** Set for POST /v1/sign. */
  readonly sign?: {
    /** The project named in the body, when the body was read; mapped to `unknown` unless the policy knows it. */
    readonly project: string | undefined;
    readonly dryRun: boolean;
    /** The error code answered, when the request failed. */
    readonly errorCode: string | undefined;
    /** Codes of the policy's deny reasons, for POLICY_DENIED and RATE_LIMITED. */
    readonly denyReasons: readonly string[];
  };
}

export interface SignetMetricsOptions {
  /** Node.js process metrics (prom-client's default collectors) in the same registry. */
  readonly processMetrics: boolean;
  /** Whether a project name is one the policy in force knows (a bounded label set). */
  readonly isKnownProject: (project: string) => boolean;
  /** Signing worker threads: the HSM's signing capacity. */
  readonly hsmSignCapacity: number;
  /** How long a scrape-time probe (HSM ping, storage write) may take before it counts as down. */
  readonly probeTimeoutMs?: number;
}

const UNKNOWN_PROJECT = 'unknown';
const NO_PROJECT = 'none';
const KNOWN_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
const DEFAULT_PROBE_TIMEOUT_MS = 2000;

/** Seconds; HSM signatures take about a millisecond on SoftHSM and up to tens on network HSMs (BENCHMARKS.md). */
const FAST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Seconds; a whole request includes the token check (a JWKS fetch when keys rotate) and two durable appends. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * How many request-path updates wait before they are applied to prom-client's metrics
 * (and every scrape applies the rest first): a few dozen requests' worth, applied in a
 * loop of about 0.1 ms.
 */
const UPDATE_BATCH = 256;

/**
 * Counter, gauge and histogram updates made on the request path, applied to prom-client
 * in batches. Each prom-client call resolves its series (labels checked and hashed,
 * buckets searched): fractions of a microsecond in a warm loop, but about 3 µs in the
 * loaded service, where each comes cold among a request's other work, and a signing
 * request makes about a dozen (BENCHMARKS.md, "Fewer reads, hashes and library calls per request").
 * Recording one here is an array push; a batch is applied in one warm loop. A scrape
 * applies what is pending before it reads, so an exposition shows every update made
 * before it, exactly as if each had been applied at once.
 */
class PendingUpdates {
  #updates: (() => void)[] = [];

  add(update: () => void): void {
    this.#updates.push(update);
    if (this.#updates.length >= UPDATE_BATCH) this.apply();
  }

  apply(): void {
    const updates = this.#updates;
    this.#updates = [];
    for (const update of updates) update();
  }
}

export class SignetMetrics {
  readonly registry = new Registry();
  readonly #pending = new PendingUpdates();
  readonly #options: SignetMetricsOptions;
  readonly #certificateSources = new Map<string, CertificateExpirySource>();
  #store: SignetStore | undefined;
  #hsm: Hsm | undefined;
  #refreshing: Promise<void> | undefined;

  readonly #signRequests: Counter<'project' | 'outcome' | 'reason'>;
  readonly #signDuration: Histogram<'outcome'>;
  readonly #denyReasons: Counter<'project' | 'reason'>;
  readonly #httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly #httpDuration: Histogram<'route' | 'method'>;
  readonly #hsmDuration: Histogram<'operation'>;
  readonly #hsmErrors: Counter<'operation' | 'code'>;
  readonly #hsmInFlight: Gauge<'operation'>;
  readonly #hsmUp: Gauge;
  readonly #logAppends: Counter<'outcome'>;
  readonly #logAppendDuration: Histogram;
  readonly #logEntries: Gauge;
  readonly #checkpointSize: Gauge;
  readonly #checkpointTime: Gauge;
  readonly #storageUp: Gauge;
  readonly #keyAge: Gauge<'key_id' | 'key_name' | 'state'>;
  readonly #keyNotAfter: Gauge<'key_id' | 'key_name' | 'state'>;
  readonly #certificateNotAfter: Gauge<'certificate'>;
  readonly #scrapeErrors: Counter<'source'>;

  constructor(options: SignetMetricsOptions) {
    this.#options = options;
    const registers = [this.registry];
    if (options.processMetrics) collectDefaultMetrics({ register: this.registry });

    new Gauge({ name: 'signet_build_info', help: 'Always 1; labels say which Signet this is.', labelNames: ['version'], registers }).set(
      { version: packageVersion() },
      1,
    );

    this.#signRequests = new Counter({
      name: 'signet_sign_requests_total',
      help: 'POST /v1/sign requests by project (as the policy names it; unknown otherwise), outcome and reason (the error code; "none" when signed).',
      labelNames: ['project', 'outcome', 'reason'],
      registers,
    });
    this.#signDuration = new Histogram({
      name: 'signet_sign_request_duration_seconds',
      help: 'Whole POST /v1/sign requests, from routing to the answer, by outcome.',
      labelNames: ['outcome'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.#denyReasons = new Counter({
      name: 'signet_policy_deny_reasons_total',
      help: 'Reasons of refused sign requests (each refusal counts every reason it gave), by project.',
      labelNames: ['project', 'reason'],
      registers,
    });
    this.#httpRequests = new Counter({
      name: 'signet_http_requests_total',
      help: 'HTTP requests by route pattern, method and status.',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.#httpDuration = new Histogram({
      name: 'signet_http_request_duration_seconds',
      help: 'HTTP request duration by route pattern and method.',
      labelNames: ['route', 'method'],
      buckets: REQUEST_BUCKETS,
      registers,
    });

    this.#hsmDuration = new Histogram({
      name: 'signet_hsm_operation_duration_seconds',
      help: 'HSM operations (sign, ping, generate, lookup), including the wait for a free session or signing worker.',
      labelNames: ['operation'],
      buckets: FAST_BUCKETS,
      registers,
    });
    this.#hsmErrors = new Counter({
      name: 'signet_hsm_errors_total',
      help: 'Failed HSM operations by operation and error code (HSM_UNAVAILABLE, HSM_SIGN_FAILED, …).',
      labelNames: ['operation', 'code'],
      registers,
    });
    this.#hsmInFlight = new Gauge({
      name: 'signet_hsm_operations_in_flight',
      help: 'HSM operations running or waiting for a session or signing worker now.',
      labelNames: ['operation'],
      registers,
    });
    new Gauge({
      name: 'signet_hsm_sign_workers',
      help: 'Signing worker threads (one HSM session each): in-flight sign operations above this are queued.',
      registers,
    }).set(options.hsmSignCapacity);
    this.#hsmUp = new Gauge({ name: 'signet_hsm_up', help: '1 when the HSM answered a ping at this scrape, else 0.', registers });

    this.#logAppends = new Counter({
      name: 'signet_log_appends_total',
      help: 'Transparency-log appends by this replica (each may carry several entries), by outcome (ok, error).',
      labelNames: ['outcome'],
      registers,
    });
    this.#logAppendDuration = new Histogram({
      name: 'signet_log_append_duration_seconds',
      help: 'Transparency-log appends: until the entries are durable, or written in the transaction that commits them.',
      buckets: FAST_BUCKETS,
      registers,
    });
    this.#logEntries = new Gauge({ name: 'signet_log_entries', help: 'Entries in the transparency log (the tree size), read from storage at this scrape.', registers });
    this.#checkpointSize = new Gauge({ name: 'signet_log_checkpoint_size', help: 'Tree size of the latest signed checkpoint.', registers });
    this.#checkpointTime = new Gauge({
      name: 'signet_log_checkpoint_timestamp_seconds',
      help: 'When the latest signed checkpoint was made (Unix seconds).',
      registers,
    });
    this.#storageUp = new Gauge({ name: 'signet_storage_up', help: '1 when storage accepted a durable write at this scrape, else 0.', registers });

    this.#keyAge = new Gauge({
      name: 'signet_key_age_seconds',
      help: 'Age of each signing key version since it was created, by key id, name and state.',
      labelNames: ['key_id', 'key_name', 'state'],
      registers,
    });
    this.#keyNotAfter = new Gauge({
      name: 'signet_key_not_after_timestamp_seconds',
      help: 'End of the validity window of each key version that has one (Unix seconds).',
      labelNames: ['key_id', 'key_name', 'state'],
      registers,
    });
    this.#certificateNotAfter = new Gauge({
      name: 'signet_certificate_not_after_timestamp_seconds',
      help: 'notAfter of the certificates the service uses or issues (Unix seconds), by certificate name.',
      labelNames: ['certificate'],
      registers,
    });
    this.#scrapeErrors = new Counter({
      name: 'signet_metrics_source_errors_total',
      help: 'Scrape-time reads that failed (storage, certificate sources); their gauges are left out of that scrape.',
      labelNames: ['source'],
      registers,
    });
  }

  /** Records one HTTP request (called once per request by the app's outermost middleware). */
  observeRequest(request: ObservedRequest): void {
    const method = KNOWN_METHODS.has(request.method) ? request.method : 'OTHER';
    // Unmatched paths land on a wildcard middleware: one series for all of them.
    const route = request.route.includes('*') ? 'unmatched' : request.route;
    const sign = request.sign;
    this.#pending.add(() => {
      this.#httpRequests.inc({ route, method, status: String(request.status) });
      this.#httpDuration.observe({ route, method }, request.seconds);
      if (sign === undefined) return;
      const project = sign.project === undefined ? NO_PROJECT : this.#options.isKnownProject(sign.project) ? sign.project : UNKNOWN_PROJECT;
      const outcome = signOutcome(request.status, sign.errorCode, sign.dryRun);
      this.#signRequests.inc({ project, outcome, reason: sign.errorCode ?? 'none' });
      this.#signDuration.observe({ outcome }, request.seconds);
      for (const reason of new Set(sign.denyReasons)) this.#denyReasons.inc({ project, reason });
    });
  }

  /**
   * The HSM as the service should use it: the same adapter, with every operation timed
   * and counted. Errors pass through unchanged.
   */
  instrumentHsm(hsm: Hsm): Hsm {
    this.#hsm = hsm;
    const measure = async <T>(operation: string, run: () => Promise<T>): Promise<T> => {
      this.#pending.add(() => {
        this.#hsmInFlight.inc({ operation });
      });
      const started = performance.now();
      try {
        return await run();
      } catch (error) {
        const code = errorCode(error);
        this.#pending.add(() => {
          this.#hsmErrors.inc({ operation, code });
        });
        throw error;
      } finally {
        const seconds = (performance.now() - started) / 1000;
        this.#pending.add(() => {
          this.#hsmDuration.observe({ operation }, seconds);
          this.#hsmInFlight.dec({ operation });
        });
      }
    };
    return {
      signDigest: (key: HsmKeyRef, digest: DigestInput) => measure('sign', () => hsm.signDigest(key, digest)),
      signMessage: (key: HsmKeyRef, message: Buffer, hash?: DigestAlgorithm) =>
        measure('sign', () => (hash === undefined ? hsm.signMessage(key, message) : hsm.signMessage(key, message, hash))),
      generateKeyPair: (algorithm: KeyAlgorithm, label: string) => measure('generate', () => hsm.generateKeyPair(algorithm, label)),
      hasKeyPair: (key: HsmKeyRef) => measure('lookup', () => hsm.hasKeyPair(key)),
      publicKeyPem: (key: HsmKeyRef) => measure('lookup', () => hsm.publicKeyPem(key)),
      privateKeyAttributes: (key: HsmKeyRef) => measure('lookup', () => hsm.privateKeyAttributes(key)),
      ping: () => measure('ping', () => hsm.ping()),
      close: () => hsm.close(),
    };
  }

  /** Storage read at each scrape: log size, latest checkpoint, keys; and a durable-write probe. */
  watchStore(store: SignetStore): void {
    this.#store = store;
  }

  /**
   * Adds a source of certificate expiry times, read at each scrape. A source with the
   * same name replaces the earlier one. This is the hook for the code-signing CA.
   */
  addCertificateSource(name: string, source: CertificateExpirySource): void {
    this.#certificateSources.set(name, source);
  }

  /** Measures one log append (used by `MeasuredTransparencyLog`). */
  async measureLogAppend<T>(append: () => Promise<T>): Promise<T> {
    const started = performance.now();
    let outcome = 'error';
    try {
      const result = await append();
      outcome = 'ok';
      return result;
    } finally {
      const seconds = (performance.now() - started) / 1000;
      this.#pending.add(() => {
        this.#logAppends.inc({ outcome });
        this.#logAppendDuration.observe(seconds);
      });
    }
  }

  /** The text exposition, with every scrape-time value read first. */
  async exposition(): Promise<{ readonly contentType: string; readonly body: string }> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    await this.#refreshing;
    this.#pending.apply();
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  async #refresh(): Promise<void> {
    await Promise.all([this.#refreshHsm(), this.#refreshStore(), this.#refreshCertificates()]);
  }

  async #refreshHsm(): Promise<void> {
    const hsm = this.#hsm;
    if (hsm === undefined) return;
    this.#hsmUp.set((await this.#probe(() => hsm.ping())) ? 1 : 0);
  }

  async #refreshStore(): Promise<void> {
    const store = this.#store;
    if (store === undefined) return;
    const writable = await this.#probe(() => store.checkWritable());
    this.#storageUp.set(writable ? 1 : 0);
    this.#logEntries.reset();
    this.#checkpointSize.reset();
    this.#checkpointTime.reset();
    this.#keyAge.reset();
    this.#keyNotAfter.reset();
    try {
      const [size, checkpoint, keys] = await this.#bounded(Promise.all([store.log.size(), store.log.latestCheckpoint(), store.keys.list()]));
      this.#logEntries.set(size);
      if (checkpoint !== null) {
        this.#checkpointSize.set(checkpoint.size);
        this.#checkpointTime.set(Date.parse(checkpoint.createdAt) / 1000);
      }
      const now = Date.now();
      for (const key of keys) {
        const labels = { key_id: key.keyId, key_name: key.name, state: key.state };
        this.#keyAge.set(labels, Math.max(0, (now - Date.parse(key.createdAt)) / 1000));
        if (key.notAfter !== null) this.#keyNotAfter.set(labels, Date.parse(key.notAfter) / 1000);
      }
    } catch {
      this.#scrapeErrors.inc({ source: 'storage' });
    }
  }

  async #refreshCertificates(): Promise<void> {
    this.#certificateNotAfter.reset();
    await Promise.all(
      [...this.#certificateSources].map(async ([name, source]) => {
        try {
          for (const certificate of await this.#bounded(Promise.resolve(source()))) {
            this.#certificateNotAfter.set({ certificate: certificate.certificate }, certificate.notAfter.getTime() / 1000);
          }
        } catch {
          this.#scrapeErrors.inc({ source: `certificates:${name}` });
        }
      }),
    );
  }

  async #probe(run: () => Promise<void>): Promise<boolean> {
    try {
      await this.#bounded(run());
      return true;
    } catch {
      return false;
    }
  }

  /** Rejects when `work` takes longer than the probe timeout (the work itself goes on). */
  async #bounded<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new Error('timed out'));
      }, this.#options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS);
    });
    try {
      return await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The transparency log with every append measured, on its own or inside a storage
 * transaction. The signing path appends through this class, so the append latency and
 * failures seen here are the ones that gate signatures.
 */
export class MeasuredTransparencyLog extends TransparencyLog {
  readonly #metrics: SignetMetrics;

  constructor(options: TransparencyLogOptions, metrics: SignetMetrics) {
    super(options);
    this.#metrics = metrics;
  }

  override append(entries: readonly LogEntryInput[]): Promise<number[]> {
    return this.#metrics.measureLogAppend(() => super.append(entries));
  }

  override appendIn(tx: StoreTransaction, entries: readonly LogEntryInput[]): Promise<number[]> {
    return this.#metrics.measureLogAppend(() => super.appendIn(tx, entries));
  }
}

/** What a sign request came to, from its status and error code. */
export function signOutcome(status: number, errorCode: string | undefined, dryRun: boolean): SignOutcome {
  if (errorCode === undefined && status < 400) return dryRun ? 'dry_run' : 'signed';
  if (errorCode === 'POLICY_DENIED' || errorCode === 'RATE_LIMITED') return 'denied';
  if (errorCode !== undefined && (errorCode.startsWith('TOKEN_') || errorCode.startsWith('CLIENT_CERT_'))) {
    // TOKEN_IN_USE is a retry racing the original request, not an identity failure.
    return errorCode === 'TOKEN_IN_USE' ? 'rejected' : 'unauthenticated';
  }
  if (status === 503) return 'unavailable';
  if (status >= 500) return 'failed';
  return 'rejected';
}

/** The certificates in a PEM bundle, named `name`, `name#2`, … in file order. */
export function pemCertificateExpiries(name: string, pem: string | Buffer): CertificateExpiry[] {
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block, index) => ({
    certificate: index === 0 ? name : `${name}#${index + 1}`,
    notAfter: new Date(new X509Certificate(block).validTo),
  }));
}

/** The version in Signet's package.json: beside server/ in a checkout, one level up from dist/server/ when built. */
function packageVersion(): string {
  for (const relative of ['../package.json', '../../package.json']) {
    try {
      const manifest = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (manifest.name === 'signet' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // Not there: try the next place.
    }
  }
  return 'unknown';
}

function errorCode(error: unknown): string {
  return isSignetError(error) ? error.code : 'UNKNOWN';
}

const metricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  summary: 'Prometheus metrics (text exposition format 0.0.4)',
  description: 'Counters, histograms and gauges for operators; labels carry no token, subject, claim or secret.',
  responses: { 200: { description: 'Metrics', content: { 'text/plain': { schema: z.string() } } } },
});

/** `GET /metrics` on an app (the main listener, when `metrics.onMainListener`). */
export function addMetricsRoute<E extends Env>(app: OpenAPIHono<E>, metrics: SignetMetrics): void {
  app.openapi(metricsRoute, async (c) => {
    const { contentType, body } = await metrics.exposition();
    return c.text(body, 200, { 'content-type': contentType });
  });
}

export interface MetricsListener {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A plain-HTTP listener that serves `GET /metrics` and answers 404 to anything else
 * (`metrics.listen`). No TLS and no authentication: bind it to loopback or a monitoring
 * network only (SECURITY.md).
 */
export async function listenMetrics(metrics: SignetMetrics, host: string, port: number): Promise<MetricsListener> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/metrics' || (request.method !== 'GET' && request.method !== 'HEAD')) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    metrics.exposition().then(
      ({ contentType, body }) => {
        response.writeHead(200, { 'content-type': contentType }).end(request.method === 'HEAD' ? undefined : body);
      },
      () => {
        response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
      },
    );
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    port: bound,
    url: `http://${shownHost}:${bound}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
