/**
 * The security officers' routes (keyrotation/governance-service.ts), under /v1/officer.
 * Every one requires a client certificate that chains to the officer CA
 * (`server.tls.officerCaFile`) with the clientAuth EKU; a CI client certificate is
 * refused here, as an officer certificate is refused by POST /v1/sign. The certificate's
 * SHA-256 is what names the officer; approvals and freezes also need a fresh TOTP code
 * (RFC 6238) in the body. Codes are never logged or echoed.
 *
 *   GET  /v1/officer/status                       who the certificate belongs to, enrolled, locked out
 *   POST /v1/officer/enrollment                   first enrolment: a new TOTP secret, shown once
 *   GET  /v1/officer/proposals                    proposals, newest first, with their quorum count
 *   POST /v1/officer/proposals                    open a proposal (any action)
 *   GET  /v1/officer/proposals/{id}               one proposal
 *   POST /v1/officer/proposals/{id}/approvals     approve its hash with a TOTP code
 *   POST /v1/officer/proposals/{id}/execute       carry it out once the quorum is met
 *   POST /v1/officer/freeze                       one officer stops signing at once (TOTP code)
 *   POST /v1/officer/unfreeze                     open an unfreeze proposal (needs the quorum)
 *   POST /v1/officer/revocations                  open a revocation proposal: a client certificate, or a key version as compromised
 */
import { X509Certificate } from 'node:crypto';
import type { HttpBindings } from '@hono/node-server';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { GovernanceError } from '../keyrotation/governance-errors.js';
import type { GovernanceService, ProposalView } from '../keyrotation/governance-service.js';
import type { ExecutionResult } from '../keyrotation/execute.js';
import { PROPOSAL_ACTIONS } from '../keyrotation/proposals.js';
import { requireClientCertificate, type ClientCertificateVariables } from './client-certificate.js';
import { HttpError } from './http-errors.js';
import { ErrorSchema } from './schemas.js';

export interface OfficerRouteDependencies {
  /** Undefined when the service runs without an officer CA: every officer route answers OFFICER_ROUTES_DISABLED. */
  readonly governance: GovernanceService | undefined;
  /** PEM of the officer CA. */
  readonly officerCa: Buffer | undefined;
}

type OfficerEnv = { Bindings: HttpBindings; Variables: ClientCertificateVariables };

const json = <T extends z.ZodType>(schema: T, description: string) => ({ description, content: { 'application/json': { schema } } });
const refusals = {
  400: json(ErrorSchema, 'Malformed request or proposal'),
  401: json(ErrorSchema, 'No or untrusted client certificate'),
  403: json(ErrorSchema, 'Not an active officer, wrong TOTP code, or not allowed by the quorum rules'),
  404: json(ErrorSchema, 'No such proposal, or officer routes disabled'),
  409: json(ErrorSchema, 'The proposal or the keys are not in the state the request needs'),
  429: json(ErrorSchema, 'Too many wrong codes from this officer recently'),
} as const;

const SHA256 = /^[0-9a-f]{64}$/;
const ProposalIdParam = z.object({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/).openapi({ param: { name: 'id', in: 'path' }, example: '3f0c1a52-8d7e-4b8c-9a61-0f2b3c4d5e6f' }),
});
const TotpCode = z.string().regex(/^[0-9]{6}$/, 'six digits').openapi({ description: 'The current TOTP code of the officer (RFC 6238: SHA-1, 6 digits, 30 s)' });
const ProjectScope = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/).nullable().openapi({ description: 'A project, or null for everything' });
const Reason = z.string().max(1000).optional();

const QuorumSchema = z
  .object({
    required: z.number().int(),
    counted: z.array(z.string()),
    discounted: z.array(z.object({ officer: z.string(), reason: z.string() })),
    met: z.boolean(),
  })
  .openapi('QuorumStatus');

const ProposalSchema = z
  .object({
    id: z.string(),
    hash: z.string().openapi({ description: 'Hex SHA-256 of the canonical proposal document (RFC 8785): what officers approve' }),
    status: z.enum(['open', 'executed', 'withdrawn']),
    content: z.object({
      id: z.string(),
      action: z.record(z.string(), z.unknown()),
      proposer: z.string(),
      reason: z.string(),
      createdAt: z.string(),
      expiresAt: z.string(),
    }),
    approvals: z.array(z.object({ officer: z.string(), certificateSha256: z.string(), proposalHash: z.string(), approvedAt: z.string() })),
    closedAt: z.string().nullable(),
    quorum: QuorumSchema,
  })
  .openapi('Proposal');

const ExecutionSchema = z
  .object({
    proposal: ProposalSchema,
    keys: z.array(
      z.object({ keyId: z.string(), state: z.string(), notBefore: z.string(), notAfter: z.string().nullable(), compromisedAt: z.string().nullable() }),
    ),
  })
  .openapi('ProposalExecution');

const ActionSchema = z
  .looseObject({ type: z.enum(PROPOSAL_ACTIONS) })
  .openapi({ description: 'What the proposal asks for (keyrotation/proposals.ts, proposalActionSchema); checked in full, every problem listed' });

function proposalView(view: ProposalView): z.infer<typeof ProposalSchema> {
  const { proposal, quorum } = view;
  return {
    id: proposal.content.id,
    hash: proposal.hash,
    status: proposal.status,
    content: { ...proposal.content, action: { ...proposal.content.action } },
    // The TOTP step of each approval stays inside: it says nothing useful and is a code's time.
    approvals: proposal.approvals.map((a) => ({ officer: a.officer, certificateSha256: a.certificateSha256, proposalHash: a.proposalHash, approvedAt: a.approvedAt })),
    closedAt: proposal.closedAt,
    quorum: { required: quorum.required, counted: [...quorum.counted], discounted: quorum.discounted.map((d) => ({ ...d })), met: quorum.met },
  };
}

function executionView(result: ExecutionResult): z.infer<typeof ExecutionSchema> {
  return {
    proposal: proposalView(result),
    keys: result.keys.map((k) => ({ keyId: k.keyId, state: k.state, notBefore: k.notBefore, notAfter: k.notAfter, compromisedAt: k.compromisedAt })),
  };
}

export function addOfficerRoutes<E extends OfficerEnv>(app: OpenAPIHono<E>, deps: OfficerRouteDependencies): void {
  const { governance } = deps;
  const certificate = governance === undefined || deps.officerCa === undefined ? undefined : requireClientCertificate({ trustAnchors: deps.officerCa });
  app.use('/v1/officer/*', async (c, next) => {
    if (certificate === undefined) throw new GovernanceError('OFFICER_ROUTES_DISABLED', 'this service runs without an officer CA (server.tls.officerCaFile)');
    await certificate(c as unknown as Context<OfficerEnv, string>, next);
  });
  const service = (): GovernanceService => {
    if (governance === undefined) throw new GovernanceError('OFFICER_ROUTES_DISABLED', 'this service runs without an officer CA');
    return governance;
  };
  const caller = (c: Context<E>) => ({ certificateSha256: (c as unknown as Context<OfficerEnv>).get('clientCertificate').fingerprint });
  const officerSecurity = [{ officerCertificate: [] }];

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/officer/status',
      summary: "The officer the client certificate belongs to, and the state of their second factor",
      security: officerSecurity,
      responses: { 200: json(z.object({ officer: z.string(), enrolled: z.boolean(), lockedUntil: z.string().nullable() }).openapi('OfficerStatus'), 'Officer'), ...refusals },
    }),
    async (c) => c.json(await service().status(caller(c)), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/officer/enrollment',
      summary: 'First enrolment: a new TOTP secret for an officer who has none, returned once as base32 and an otpauth URI',
      security: officerSecurity,
      request: { body: { content: { 'application/json': { schema: z.object({}).strict() } }, required: true } },
      responses: {
        200: json(z.object({ officer: z.string(), totpSecret: z.string(), otpauthUri: z.string() }).openapi('OfficerEnrollment'), 'Enrolled'),
        ...refusals,
      },
    }),
    async (c) => {
      c.header('Cache-Control', 'no-store');
      return c.json(await service().enroll(caller(c)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/officer/proposals',
      summary: 'Proposals, newest first, each with its quorum as counted now',
      security: officerSecurity,
      request: {
        query: z.object({
          status: z.enum(['open', 'executed', 'withdrawn']).optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
      },
      responses: { 200: json(z.object({ proposals: z.array(ProposalSchema) }), 'Proposals'), ...refusals },
    }),
    async (c) => {
      const { status, limit } = c.req.valid('query');
      const views = await service().list(caller(c), { ...(status === undefined ? {} : { status }), limit });
      return c.json({ proposals: views.map(proposalView) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/officer/proposals',
      summary: 'Open a proposal: rotate, retire or compromise a key, revoke a certificate, add or remove an officer, change the quorum or the policy, unfreeze',
      security: officerSecurity,
      request: { body: { content: { 'application/json': { schema: z.object({ action: ActionSchema, reason: Reason }).strict() } }, required: true } },
      responses: { 201: json(ProposalSchema, 'Opened'), ...refusals },
    }),
    async (c) => {
      const body = c.req.valid('json');
      return c.json(proposalView(await service().propose(caller(c), { action: body.action, reason: body.reason })), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/officer/proposals/{id}',
      summary: 'One proposal with its approvals and quorum',
      security: officerSecurity,
      request: { params: ProposalIdParam },
      responses: { 200: json(ProposalSchema, 'Proposal'), ...refusals },
    }),
    async (c) => c.json(proposalView(await service().show(caller(c), c.req.valid('param').id)), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/officer/proposals/{id}/approvals',
      summary: "Approve the proposal's hash with a fresh TOTP code",
      description: 'The hash is the one the officer reviewed (the CLI recomputes it from the content). A code counts once per officer; wrong codes are counted.',
      security: officerSecurity,
      request: {
        params: ProposalIdParam,
        body: {
          content: { 'application/json': { schema: z.object({ proposalHash: z.string().regex(SHA256, '64 lower-case hex digits'), code: TotpCode }).strict() } },
          required: true,
        },
      },
      responses: { 200: json(ProposalSchema, 'Approved'), ...refusals },
    }),
    async (c) => {
      const body = c.req.valid('json');
      return c.json(proposalView(await service().approve(caller(c), c.req.valid('param').id, body)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/officer/proposals/{id}/execute',
      summary: 'Carry out a proposal whose quorum is met (a failed rotation leaves it open: execute again)',
      security: officerSecurity,
      request: { params: ProposalIdParam, body: { content: { 'application/json': { schema: z.object({}).strict() } }, required: true } },
      responses: { 200: json(ExecutionSchema, 'Executed'), ...refusals },
    }),
    async (c) => c.json(executionView(await service().execute(caller(c), c.req.valid('param').id)), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/officer/freeze',
      summary: 'Stop signing for a project (or everything) at once; one officer with a fresh TOTP code',
      security: officerSecurity,
      request: { body: { content: { 'application/json': { schema: z.object({ project: ProjectScope, reason: Reason, code: TotpCode }).strict() } }, required: true } },
      responses: { 200: json(ExecutionSchema, 'Frozen'), ...refusals },
    }),
    async (c) => {
      const body = c.req.valid('json');
      return c.json(executionView(await service().freeze(caller(c), { project: body.project, reason: body.reason, code: body.code })), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/officer/unfreeze',
      summary: 'Open an unfreeze proposal; signing resumes once the quorum approved and it is executed',
      security: officerSecurity,
      request: { body: { content: { 'application/json': { schema: z.object({ project: ProjectScope, reason: Reason }).strict() } }, required: true } },
      responses: { 201: json(ProposalSchema, 'Opened'), ...refusals },
    }),
    async (c) => {
      const body = c.req.valid('json');
      return c.json(proposalView(await service().propose(caller(c), { action: { type: 'unfreeze', project: body.project }, reason: body.reason })), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/officer/revocations',
      summary: "Open a revocation proposal: an officer's or CI client's certificate, or a key version as compromised",
      description:
        'Give exactly one of `certificateSha256` (hex SHA-256 of the DER certificate), `certificatePem`, or `keyId` (with `compromisedAt`, default now: signatures logged from then on are invalid).',
      security: officerSecurity,
      request: {
        body: {
          content: {
            'application/json': {
              schema: z
                .object({
                  certificateSha256: z.string().regex(SHA256).optional(),
                  certificatePem: z.string().max(32_768).optional(),
                  keyId: z.string().max(80).optional(),
                  compromisedAt: z.string().optional(),
                  reason: Reason,
                })
                .strict(),
            },
          },
          required: true,
        },
      },
      responses: { 201: json(ProposalSchema, 'Opened'), ...refusals },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const given = [body.certificateSha256, body.certificatePem, body.keyId].filter((v) => v !== undefined).length;
      if (given !== 1) throw new HttpError('INVALID_REQUEST', 'give exactly one of certificateSha256, certificatePem or keyId');
      let action: Record<string, unknown>;
      if (body.keyId !== undefined) {
        action = { type: 'compromise-key', keyId: body.keyId, ...(body.compromisedAt === undefined ? {} : { compromisedAt: body.compromisedAt }) };
      } else {
        if (body.compromisedAt !== undefined) throw new HttpError('INVALID_REQUEST', 'compromisedAt goes with keyId');
        action = { type: 'revoke-certificate', certificateSha256: body.certificateSha256 ?? certificateFingerprint(body.certificatePem ?? '') };
      }
      return c.json(proposalView(await service().propose(caller(c), { action, reason: body.reason })), 201);
    },
  );

  app.openAPIRegistry.registerComponent('securitySchemes', 'officerCertificate', {
    type: 'mutualTLS',
    description: 'A client certificate issued by the officer CA, with the clientAuth extended key usage',
  });
}

/** Hex SHA-256 of a PEM certificate's DER; INVALID_REQUEST when it does not parse. */
function certificateFingerprint(pem: string): string {
  try {
    return new X509Certificate(pem).fingerprint256.replaceAll(':', '').toLowerCase();
  } catch {
    throw new HttpError('INVALID_REQUEST', 'certificatePem is not a PEM certificate');
  }
}
