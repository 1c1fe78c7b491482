/**
 * The HTTP API (hono). Routes are declared with their request and response schemas
 * (@hono/zod-openapi), so validation and /openapi.json come from one source.
 *
 * The edge only translates: it authenticates the TLS client, validates the body,
 * calls the use case (service/sign-request.ts) and maps errors through one table
 * (server/http-errors.ts).
 */
import type { HttpBindings } from '@hono/node-server';
import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { requestId, type RequestIdVariables } from 'hono/request-id';
import { routePath } from 'hono/route';
import type { LoadedPolicy } from '../policy/load.js';
import { resolveKey } from '../keyrotation/signing-keys.js';
import type { Hsm } from '../signer/types.js';
import type { KeyVersionRecord, SignetStore } from '../store/store.js';
import { SignError } from '../service/errors.js';
import { signRequest, type SignRequestDependencies } from '../service/sign-request.js';
import { requireClientCertificate, type ClientCertificateVariables } from './client-certificate.js';
import { HttpError, mapError } from './http-errors.js';
import { BODY_TOO_LARGE } from './https-listener.js';
import { addLogRoutes } from './log-routes.js';
import { addOfficerRoutes, type OfficerRouteDependencies } from './officer-routes.js';
import { addTrustRoutes, certificateReadiness, type TrustDependencies } from './trust-routes.js';
import type { Logger } from './logger.js';
import { addMetricsRoute, type SignetMetrics } from './metrics.js';
import {
  ErrorSchema,
  HealthSchema,
  KeyIdParamSchema,
  KeyListSchema,
  KeySchema,
  ReadinessSchema,
  SignRequestSchema,
  SignResponseSchema,
  DryRunResponseSchema,
} from './schemas.js';

export interface AppDependencies extends SignRequestDependencies {
  readonly hsm: Hsm;
  readonly store: SignetStore;
  readonly currentPolicy: () => LoadedPolicy;
  readonly logger: Logger;
  readonly maxBodyBytes: number;
  /** True once shutdown has begun: new signing requests are refused with 503. */
  readonly isStopping: () => boolean;
  /** Counts requests in flight so shutdown can wait for them. */
  readonly inFlight: { enter(): void; leave(): void };
  /** The published trust: CA certificates, chains, CRLs, trust bundle (server/trust-routes.ts). */
  readonly trust: TrustDependencies;
  /** Prometheus metrics; `exposeMetrics` also serves them as GET /metrics on this app. */
  readonly metrics?: SignetMetrics;
  readonly exposeMetrics?: boolean;
  /**
   * Client certificates: POST /v1/sign accepts only those chaining to `ciClientCa`
   * (the listener also trusts the officer CA) and not revoked by quorum.
   */
  readonly clients?: { readonly ciClientCa: Buffer; readonly isRevoked: (fingerprint: string) => Promise<boolean> };
  /** The officer routes (server/officer-routes.ts); off without an officer CA. */
  readonly officers?: OfficerRouteDependencies;
  /** Extra details for GET /readyz (informational; never make it fail). */
  readonly readinessDetails?: () => Promise<Record<string, unknown>>;
}

interface SignatureLogFields {
  readonly project: string;
  readonly keyId: string;
  readonly format: string;
  readonly digestAlgorithm: string;
}

/** What the metrics need to know about a sign request and a failure, set where they are known. */
interface MetricsFields {
  readonly signRequest: { readonly project: string; readonly dryRun: boolean };
  readonly failure: { readonly code: string; readonly reasons: readonly string[] };
}

type AppEnv = { Bindings: HttpBindings; Variables: ClientCertificateVariables & RequestIdVariables & { signature: SignatureLogFields } & MetricsFields };

const errorResponses = {
  400: { description: 'Malformed or invalid request', content: { 'application/json': { schema: ErrorSchema } } },
  401: { description: 'No or untrusted client certificate', content: { 'application/json': { schema: ErrorSchema } } },
  403: { description: 'Refused by policy or certificate usage', content: { 'application/json': { schema: ErrorSchema } } },
  404: { description: 'No such key', content: { 'application/json': { schema: ErrorSchema } } },
  409: { description: 'Key not active', content: { 'application/json': { schema: ErrorSchema } } },
  413: { description: 'Body too large', content: { 'application/json': { schema: ErrorSchema } } },
  415: { description: 'Body is not JSON', content: { 'application/json': { schema: ErrorSchema } } },
  503: { description: 'HSM or storage unavailable, shutting down, or the policy in force is not the one the officers approved; nothing was signed', content: { 'application/json': { schema: ErrorSchema } } },
} as const;

const signRoute = createRoute({
  method: 'post',
  path: '/v1/sign',
  summary: 'Sign a release-manifest digest with an HSM key',
  description:
    'Requires a client certificate chaining to the CI client CA with the clientAuth EKU and `Authorization: Bearer <OIDC id token>`; the project policy must allow both. A token serves one request; an identical retry gets the first answer back.',
  security: [{ bearer: [] }],
  request: { body: { content: { 'application/json': { schema: SignRequestSchema } }, required: true } },
  responses: {
    200: { description: 'Signed (or, for a dry run, the decision)', content: { 'application/json': { schema: SignResponseSchema.or(DryRunResponseSchema) } } },
    ...errorResponses,
  },
});

const listKeysRoute = createRoute({
  method: 'get',
  path: '/v1/keys',
  summary: 'Every signing key version with its public key and state',
  responses: { 200: { description: 'Keys', content: { 'application/json': { schema: KeyListSchema } } } },
});

const getKeyRoute = createRoute({
  method: 'get',
  path: '/v1/keys/{keyId}',
  summary: 'One key version (a key name answers its active version)',
  request: { params: KeyIdParamSchema },
  responses: {
    200: { description: 'Key', content: { 'application/json': { schema: KeySchema } } },
    400: errorResponses[400],
    404: errorResponses[404],
  },
});

const healthRoute = createRoute({
  method: 'get',
  path: '/healthz',
  summary: 'Liveness: the process answers',
  responses: { 200: { description: 'Alive', content: { 'application/json': { schema: HealthSchema } } } },
});

const readyRoute = createRoute({
  method: 'get',
  path: '/readyz',
  summary: 'Readiness: the HSM answers and storage is writable',
  responses: {
    200: { description: 'Ready', content: { 'application/json': { schema: ReadinessSchema } } },
    503: { description: 'Not ready', content: { 'application/json': { schema: ReadinessSchema } } },
  },
});

export function createApp(deps: AppDependencies): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    // Validation failures become INVALID_REQUEST with every bad field listed.
    defaultHook: (result) => {
      if (!result.success) {
        const problems = result.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(body)'}: ${i.message}`);
        throw new HttpError('INVALID_REQUEST', `invalid request: ${problems.join('; ')}`);
      }
      return undefined;
    },
  });

  app.use('*', requestId({ limitLength: 64 }));
  app.use('*', async (c, next) => {
    const started = process.hrtime.bigint();
    deps.inFlight.enter();
    try {
      await next();
    } finally {
      deps.inFlight.leave();
      if (deps.isStopping()) c.header('Connection', 'close');
      // One line per request: the access log also says what was signed, if anything.
      const client = c.get('clientCertificate') as ClientCertificateVariables['clientCertificate'] | undefined;
      const signature = c.get('signature') as SignatureLogFields | undefined;
      deps.metrics?.observeRequest({
        method: c.req.method,
        // The last route matched: the handler's pattern, or a wildcard middleware's when none matched.
        route: routePath(c as Context, -1),
        status: c.res.status,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
        ...(c.req.method === 'POST' && c.req.path === '/v1/sign'
          ? { sign: signObservation(c.get('signRequest'), c.get('failure')) }
          : {}),
      });
      deps.logger.info(
        {
          requestId: c.get('requestId'),
          method: c.req.method,
          path: c.req.path,
          status: c.res.status,
          durationMs: Number(process.hrtime.bigint() - started) / 1e6,
          ...(client === undefined ? {} : { clientFingerprint: client.fingerprint }),
          ...(signature === undefined ? {} : { signature }),
        },
        'request',
      );
    }
  });

  app.use('/v1/*', async (c, next) => {
    if (c.req.method === 'POST') {
      const mediaType = (c.req.header('content-type') ?? '').split(';')[0]?.trim().toLowerCase();
      if (mediaType !== 'application/json') throw new HttpError('UNSUPPORTED_MEDIA_TYPE', 'the body must be application/json');
    }
    await next();
  });
  app.use('/v1/*', async (c, next) => {
    // The listener read the body before routing and flagged it if it was too large.
    if ((c.env.incoming as { [BODY_TOO_LARGE]?: true })[BODY_TOO_LARGE] === true) {
      throw new HttpError('BODY_TOO_LARGE', `the body is larger than ${deps.maxBodyBytes} bytes`);
    }
    await next();
  });
  app.use('/v1/sign', requireClientCertificate(deps.clients === undefined ? {} : { trustAnchors: deps.clients.ciClientCa, isRevoked: deps.clients.isRevoked }));

  app.openapi(signRoute, async (c) => {
    if (deps.isStopping()) throw new SignError('SERVICE_STOPPING', 'shutting down');
    const body = c.req.valid('json');
    c.set('signRequest', { project: body.project, dryRun: body.dryRun });
    const answer = await signRequest(
      deps,
      { requestId: c.get('requestId'), client: c.get('clientCertificate'), bearerToken: bearerToken(c.req.header('authorization')) },
      {
        project: body.project,
        keyId: body.keyId,
        format: body.format,
        digest:
          body.digest?.value === undefined ? undefined : { algorithm: body.digest.algorithm, value: Buffer.from(body.digest.value, 'hex') },
        payload: body.payload === undefined ? undefined : Buffer.from(body.payload, 'base64'),
        payloadDigestAlgorithm: body.digest?.algorithm,
        dryRun: body.dryRun,
      },
    );
    if ('dryRun' in answer) {
      const { keyId, ...decision } = answer;
      return c.json({ ...decision, reasons: [...answer.reasons], ...(keyId === undefined ? {} : { keyId }), requestId: c.get('requestId') }, 200);
    }
    c.set('signature', { project: body.project, keyId: answer.keyId, format: answer.format, digestAlgorithm: answer.digest.algorithm });
    return c.json({ ...answer, log: { ...answer.log, inclusionProof: [...answer.log.inclusionProof] }, requestId: c.get('requestId') }, 200);
  });

  app.openapi(listKeysRoute, async (c) => {
    const keys = await deps.store.keys.list();
    return c.json({ keys: keys.map(publicKeyView) }, 200);
  });

  app.openapi(getKeyRoute, async (c) => {
    const key = await resolveKey(deps.store, c.req.valid('param').keyId);
    return c.json(publicKeyView(key), 200);
  });

  addLogRoutes(app, deps.log, deps.store);
  addTrustRoutes(app, deps.trust);
  addOfficerRoutes(app, deps.officers ?? { governance: undefined, officerCa: undefined });

  app.openapi(healthRoute, (c) => c.json({ status: 'ok' as const }, 200));

  app.openapi(readyRoute, async (c) => {
    const [hsm, storage, certificates, details] = await Promise.all([
      check(() => deps.hsm.ping()),
      check(() => deps.store.checkWritable()),
      // Expiring certificates are a warning for operators, never a reason to stop serving.
      certificateReadiness(deps.trust).catch(() => undefined),
      deps.readinessDetails?.().catch(() => undefined),
    ]);
    const stopping = deps.isStopping();
    const ready = hsm.ok && storage.ok && !stopping;
    const checks = { hsm, storage, accepting: stopping ? { ok: false, error: 'shutting down' } : { ok: true } };
    return c.json({ status: ready ? ('ready' as const) : ('not-ready' as const), checks, ...(certificates === undefined ? {} : { certificates }), ...details }, ready ? 200 : 503);
  });

  if (deps.metrics !== undefined && deps.exposeMetrics === true) addMetricsRoute(app, deps.metrics);

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'Signet', version: '1', description: 'Release-signing service: HSM keys, mTLS + policy, JSON errors {"error":{"code","message"}}.' },
  });

  app.notFound(() => {
    throw new HttpError('NOT_FOUND', 'no such route');
  });
  app.onError((error, c) => {
    const mapped = mapError(error, c.get('requestId'));
    const log = { requestId: c.get('requestId'), code: mapped.body.error.code, status: mapped.status };
    c.set('failure', { code: mapped.body.error.code, reasons: (mapped.body.error.reasons ?? []).map((r) => r.code) });
    if (mapped.status === 401 && mapped.body.error.code.startsWith('TOKEN_')) c.header('WWW-Authenticate', 'Bearer');
    if (mapped.serverFault) deps.logger.error({ ...log, err: error }, 'request failed');
    else deps.logger.info({ ...log, authFailure: c.get('authFailure') }, 'request refused');
    return c.json(mapped.body, mapped.status);
  });

  return app;
}

/** What the metrics count of a finished POST /v1/sign: its project (once the body was read) and how it ended. */
function signObservation(request: MetricsFields['signRequest'] | undefined, failure: MetricsFields['failure'] | undefined) {
  return { project: request?.project, dryRun: request?.dryRun ?? false, errorCode: failure?.code, denyReasons: failure?.reasons ?? [] };
}

/**
 * The token from `Authorization: Bearer <token>` (RFC 6750 §2.1), or undefined. Any
 * other scheme counts as no token.
 */
function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^Bearer +([^ ]+) *$/i.exec(header);
  return match?.[1];
}

function publicKeyView(key: KeyVersionRecord) {
  // hsmKeyId stays inside the service: clients never see HSM object identifiers.
  return {
    keyId: key.keyId,
    name: key.name,
    version: key.version,
    algorithm: key.algorithm,
    state: key.state,
    publicKeyPem: key.publicKeyPem,
    createdAt: key.createdAt,
    notBefore: key.notBefore,
    notAfter: key.notAfter,
    compromisedAt: key.compromisedAt,
  };
}

async function check(probe: () => Promise<void>): Promise<{ ok: boolean; error?: string }> {
  try {
    await probe();
    return { ok: true };
  } catch (error) {
    // Only the error code is shown: readiness is public.
    const code = (error as { code?: unknown }).code;
    return { ok: false, error: typeof code === 'string' ? code : 'unavailable' };
  }
}
