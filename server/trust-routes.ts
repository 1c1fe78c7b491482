/**
 * Public trust routes (no client certificate): what an offline verifier fetches once.
 *
 *   GET /v1/trust                   the trust bundle (ca/trust-bundle.ts, schemas/trust-bundle.schema.json)
 *   GET /v1/trust/jwks              JWK Set of the signing keys (RFC 7517), x5c chains included
 *   GET /v1/trust/sigstore          the same trust as a Sigstore trusted root (SIGSTORE-NOTES.md)
 *   GET /v1/keys/{keyId}/chain      PEM chain: leaf, intermediate, root (RFC 8555 §9.1 media type)
 *   GET /v1/keys/{keyId}/pgp        the key as an armored OpenPGP public key, self-certified in the HSM
 *   GET /v1/ca/{caId}/crl           the CA's latest CRL, DER (RFC 5280 §5; the URL in every leaf)
 *   GET /v1/ca/intermediate.crl     the same for the active intermediate
 *
 * Every answer carries Cache-Control and a strong ETag (SHA-256 of the body); a
 * matching If-None-Match gets 304 (RFC 9110 §13.1.2). Everything is read from storage
 * per request, so a revocation made by another process or replica is served at once.
 * The one HSM operation, the OpenPGP self-certification, is made once per key version
 * and process and then cached: a public endpoint must not let anyone make the HSM sign
 * at will.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context, Env } from 'hono';
import { etag } from 'hono/etag';
import { listExpiringCertificates, type ExpiringCertificate } from '../ca/expiry.js';
import { leafUri } from '../ca/profiles.js';
import type { CaSettings } from '../ca/settings.js';
import { buildJwks, buildTrustBundle, chainOf, currentLeaf, TRUST_BUNDLE_MEDIA_TYPE, type TrustState } from '../ca/trust-bundle.js';
import { buildSigstoreTrustedRoot, SIGSTORE_TRUSTED_ROOT_MEDIA_TYPE, type TrustedCertificateAuthority } from '../formats/sigstore-bundle.js';
import { resolveKey } from '../keyrotation/signing-keys.js';
import { armoredPublicKey, supportsOpenPgp } from '../signer/openpgp/openpgp-key.js';
import type { HsmSigner } from '../signer/types.js';
import type { KeyVersionRecord, SignetStore } from '../store/store.js';
import { CA_ID } from '../store/certificate-validation.js';
import { HttpError } from './http-errors.js';
import { ErrorSchema, KeyIdParamSchema } from './schemas.js';

export interface TrustDependencies {
  readonly store: SignetStore;
  /** The transparency log's public identity. */
  readonly log: { readonly origin: string; readonly logId: Buffer; readonly publicKeyPem: string };
  /** Signs the OpenPGP self-certifications (HsmSigner.signMessage). */
  readonly hsm: HsmSigner;
  readonly settings: CaSettings;
  /** The log key is published as the log's, never as a signing key. */
  readonly logKeyName: string;
  readonly now: () => Date;
}

/** Documents change only when keys or certificates do; caches revalidate with the ETag. */
const CACHE_CONTROL = 'public, max-age=300';
const CHAIN_MEDIA_TYPE = 'application/pem-certificate-chain';
const CRL_MEDIA_TYPE = 'application/pkix-crl';
const PGP_MEDIA_TYPE = 'application/pgp-keys';
const JWKS_MEDIA_TYPE = 'application/jwk-set+json';

const notFound = { description: 'No such key, certificate or CA', content: { 'application/json': { schema: ErrorSchema } } };
const badRequest = { description: 'Malformed parameter', content: { 'application/json': { schema: ErrorSchema } } };
const text = (description: string, mediaType: string) => ({ description, content: { [mediaType]: { schema: z.string() } } });

const CaIdParamSchema = z.object({
  caId: z.string().regex(CA_ID).openapi({ param: { name: 'caId', in: 'path' }, example: 'intermediate-1' }),
});

const CaSchema = z.object({
  caId: z.string(),
  subject: z.string(),
  serialNumber: z.string(),
  status: z.enum(['active', 'retired']),
  algorithm: z.string(),
  certificatePem: z.string(),
  notBefore: z.string(),
  notAfter: z.string(),
  issuerCaId: z.string().nullable(),
  crlUrl: z.string(),
});

/** The trust bundle for /openapi.json; the normative schema is schemas/trust-bundle.schema.json. */
const TrustBundleSchema = z
  .object({
    mediaType: z.literal(TRUST_BUNDLE_MEDIA_TYPE),
    version: z.literal(1),
    log: z.object({ origin: z.string(), logId: z.string(), publicKeyPem: z.string(), signatureAlgorithm: z.literal('ecdsa-p256-sha256') }),
    roots: z.array(CaSchema),
    intermediates: z.array(CaSchema),
    keys: z.array(
      z.object({
        keyId: z.string(),
        name: z.string(),
        version: z.number().int(),
        algorithm: z.string(),
        state: z.string(),
        publicKeyPem: z.string(),
        identity: z.string(),
        createdAt: z.string(),
        notBefore: z.string(),
        notAfter: z.string().nullable(),
        compromisedAt: z.string().nullable(),
        certificatePem: z.string().nullable(),
        certificates: z.array(
          z.object({
            serialNumber: z.string(),
            issuerCaId: z.string(),
            certificatePem: z.string(),
            notBefore: z.string(),
            notAfter: z.string(),
            revocation: z.object({ revokedAt: z.string(), reason: z.string() }).nullable(),
          }),
        ),
      }),
    ),
    revocations: z.array(z.object({ serialNumber: z.string(), issuerCaId: z.string(), keyId: z.string().nullable(), revokedAt: z.string(), reason: z.string() })),
    crls: z.array(z.object({ issuerCaId: z.string(), crlNumber: z.number().int(), thisUpdate: z.string(), nextUpdate: z.string(), url: z.string(), crlPem: z.string() })),
  })
  .openapi('TrustBundle', { description: 'Everything an offline verifier needs; JSON Schema: schemas/trust-bundle.schema.json' });

const JwksSchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).openapi('Jwks');

const SigstoreTimeRangeSchema = z.object({ start: z.string(), end: z.string().optional() });

/** dev.sigstore.trustroot.v1.TrustedRoot in the protobuf-specs JSON mapping (formats/sigstore-bundle.ts). */
const SigstoreTrustedRootSchema = z
  .object({
    mediaType: z.literal(SIGSTORE_TRUSTED_ROOT_MEDIA_TYPE),
    tlogs: z.array(
      z.object({
        baseUrl: z.string(),
        hashAlgorithm: z.literal('SHA2_256'),
        publicKey: z.object({ rawBytes: z.string(), keyDetails: z.literal('PKIX_ECDSA_P256_SHA_256'), validFor: SigstoreTimeRangeSchema }),
        logId: z.object({ keyId: z.string() }),
      }),
    ),
    certificateAuthorities: z.array(
      z.object({
        subject: z.object({ organization: z.string().optional(), commonName: z.string().optional() }),
        uri: z.string(),
        certChain: z.object({ certificates: z.array(z.object({ rawBytes: z.string() })) }),
        validFor: SigstoreTimeRangeSchema,
      }),
    ),
    // Always empty: no CT log (verifiers pass ctlogThreshold: 0) and no TSA (the inclusion promise times entries).
    ctlogs: z.array(z.unknown()).max(0),
    timestampAuthorities: z.array(z.unknown()).max(0),
  })
  .openapi('SigstoreTrustedRoot', { description: 'Sigstore trusted root: verify Signet bundles with @sigstore/verify (ctlogThreshold: 0), cosign or sigstore-go' });

/**
 * The Sigstore trusted root of the published trust: each intermediate (active or
 * retired: its certificates stay valid) with its root as one certificate authority,
 * and the transparency log with its key, valid from the log key's creation (whole
 * seconds, as integratedTime is). Deterministic for a given state, like the bundle.
 */
async function sigstoreTrustedRoot(deps: TrustDependencies): Promise<ReturnType<typeof buildSigstoreTrustedRoot>> {
  const [cas, logKeys] = await Promise.all([deps.store.certificates.listCas(), deps.store.keys.listVersions(deps.logKeyName)]);
  const spki = (pem: string): string => createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('base64');
  const logKey = logKeys.find((key) => spki(key.publicKeyPem) === spki(deps.log.publicKeyPem));
  if (logKey === undefined) throw new HttpError('NOT_FOUND', 'the log key is not among the stored key versions');
  const uri = `${deps.settings.publicUrl}/v1/trust`;
  const certificateAuthorities = cas
    .filter((ca) => ca.role === 'intermediate')
    .sort((a, b) => (`${a.createdAt}\u0000${a.caId}` < `${b.createdAt}\u0000${b.caId}` ? -1 : 1))
    .flatMap((intermediate): TrustedCertificateAuthority[] => {
      const root = cas.find((ca) => ca.caId === intermediate.issuerCaId);
      return root === undefined ? [] : [{ chain: [intermediate.certificatePem, root.certificatePem], uri }];
    });
  if (certificateAuthorities.length === 0) throw new HttpError('NOT_FOUND', 'there is no code-signing CA yet');
  const validFrom = new Date(Math.floor(Date.parse(logKey.createdAt) / 1000) * 1000);
  return buildSigstoreTrustedRoot({ certificateAuthorities, logs: [{ origin: deps.log.origin, publicKeyPem: deps.log.publicKeyPem, validFrom }] });
}

async function trustState(store: SignetStore): Promise<TrustState> {
  const [cas, leaves, revocations, keys] = await Promise.all([
    store.certificates.listCas(),
    store.certificates.listLeaves(),
    store.certificates.listRevocations(),
    store.keys.list(),
  ]);
  const crls = (await Promise.all(cas.map((ca) => store.certificates.latestCrl(ca.caId)))).filter((crl) => crl !== null);
  return { cas, leaves, revocations, crls, keys };
}

/** A key a caller named (name or version) that is published: the log key is not. */
async function publishedKey(deps: TrustDependencies, reference: string): Promise<KeyVersionRecord> {
  const key = await resolveKey(deps.store, reference);
  if (key.name === deps.logKeyName) throw new HttpError('NOT_FOUND', 'the log key is published at /v1/log, not as a signing key');
  return key;
}

function sha256Digest(body: Uint8Array): ArrayBuffer {
  const digest = createHash('sha256').update(body).digest();
  return digest.buffer.slice(digest.byteOffset, digest.byteOffset + digest.byteLength);
}

function cacheable<E extends Env>(c: Context<E>, maxAgeSeconds?: number): void {
  c.header('Cache-Control', maxAgeSeconds === undefined ? CACHE_CONTROL : `public, max-age=${Math.max(0, maxAgeSeconds)}`);
}

export function addTrustRoutes<E extends Env>(app: OpenAPIHono<E>, deps: TrustDependencies): void {
  // Registered before the routes so it wraps them: strong ETags, 304 on If-None-Match.
  const etags = etag({ generateDigest: sha256Digest });
  for (const path of ['/v1/trust', '/v1/trust/jwks', '/v1/trust/sigstore', '/v1/keys/:keyId/chain', '/v1/keys/:keyId/pgp', '/v1/ca/*']) app.use(path, etags);

  const armoredKeys = new Map<string, Promise<string>>();

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/trust',
      summary: 'Trust bundle for offline verifiers: roots, intermediates, every signing key with its certificates and state, revocations, CRLs, the log key',
      responses: { 200: { description: 'Trust bundle', content: { 'application/json': { schema: TrustBundleSchema } } } },
    }),
    async (c) => {
      const bundle = buildTrustBundle(
        await trustState(deps.store),
        { origin: deps.log.origin, logId: deps.log.logId.toString('hex'), publicKeyPem: deps.log.publicKeyPem },
        { publicUrl: deps.settings.publicUrl, logOrigin: deps.settings.logOrigin, logKeyName: deps.logKeyName },
        deps.now(),
      );
      cacheable(c);
      // The schema's arrays are mutable in TypeScript; the bundle's are readonly. Same shape.
      return c.json(bundle as unknown as z.infer<typeof TrustBundleSchema>, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/trust/jwks',
      summary: 'JWK Set of the signing keys that may verify signatures (kid = key version), with x5c chains',
      responses: { 200: { description: 'JWK Set', content: { [JWKS_MEDIA_TYPE]: { schema: JwksSchema } } } },
    }),
    async (c) => {
      const jwks = buildJwks(await trustState(deps.store), deps.logKeyName, deps.now());
      cacheable(c);
      return c.json({ keys: [...jwks.keys] }, 200, { 'Content-Type': JWKS_MEDIA_TYPE });
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/trust/sigstore',
      summary: 'The trust as a Sigstore trusted root (v0.2): the code-signing CAs and the transparency log, for sigstore clients verifying Signet bundles offline',
      responses: { 200: { description: 'Sigstore trusted root', content: { 'application/json': { schema: SigstoreTrustedRootSchema } } }, 404: notFound },
    }),
    async (c) => {
      const trustedRoot = await sigstoreTrustedRoot(deps);
      cacheable(c);
      // The schema's arrays are mutable in TypeScript; the document's are readonly. Same shape.
      return c.json(trustedRoot as unknown as z.infer<typeof SigstoreTrustedRootSchema>, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/keys/{keyId}/chain',
      summary: "The key's current certificate chain, PEM: leaf, intermediate, root",
      request: { params: KeyIdParamSchema },
      responses: { 200: text('Certificate chain', CHAIN_MEDIA_TYPE), 400: badRequest, 404: notFound },
    }),
    async (c) => {
      const key = await publishedKey(deps, c.req.valid('param').keyId);
      const [leaves, revocations, cas] = await Promise.all([
        deps.store.certificates.leavesOfKey(key.keyId),
        deps.store.certificates.listRevocations(),
        deps.store.certificates.listCas(),
      ]);
      const leaf = currentLeaf(leaves, new Set(revocations.map((r) => r.serialNumber)), deps.now());
      const chain = leaf === null ? null : chainOf(leaf, cas);
      if (chain === null) throw new HttpError('NOT_FOUND', `key ${key.keyId} has no valid certificate`);
      cacheable(c);
      c.header('Content-Type', CHAIN_MEDIA_TYPE);
      return c.body(chain.join(''), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/keys/{keyId}/pgp',
      summary: 'The key as an armored OpenPGP public key with a self-certification made in the HSM (ECDSA and Ed25519 keys)',
      request: { params: KeyIdParamSchema },
      responses: { 200: text('Armored OpenPGP public key', PGP_MEDIA_TYPE), 400: badRequest, 404: notFound },
    }),
    async (c) => {
      const key = await publishedKey(deps, c.req.valid('param').keyId);
      if (!supportsOpenPgp(key.algorithm)) throw new HttpError('NOT_FOUND', `OpenPGP cannot represent ${key.algorithm} keys`);
      let armored = armoredKeys.get(key.keyId);
      if (armored === undefined) {
        armored = armoredPublicKey(
          {
            algorithm: key.algorithm,
            publicKeyPem: key.publicKeyPem,
            createdAt: new Date(key.createdAt),
            signMessage: (message, hash) => deps.hsm.signMessage({ hsmKeyId: key.hsmKeyId, algorithm: key.algorithm }, message, hash),
          },
          `Signet release key ${key.keyId} (${leafUri(deps.settings.logOrigin, key.keyId)})`,
        );
        armoredKeys.set(key.keyId, armored);
        // A failure (HSM down) is not cached: the next request tries again.
        armored.catch(() => armoredKeys.delete(key.keyId));
      }
      const body = await armored;
      cacheable(c);
      c.header('Content-Type', PGP_MEDIA_TYPE);
      return c.body(body, 200);
    },
  );

  const serveCrl = async (c: Context<E>, caId: string): Promise<Response> => {
    const crl = await deps.store.certificates.latestCrl(caId);
    if (crl === null) throw new HttpError('NOT_FOUND', `no CRL for CA ${caId}`);
    // Cached no longer than the CRL is current, and at most an hour: a new CRL (a
    // revocation) must reach verifiers soon.
    cacheable(c, Math.min(3600, Math.floor((Date.parse(crl.nextUpdate) - deps.now().getTime()) / 1000)));
    c.header('Content-Type', CRL_MEDIA_TYPE);
    c.header('Expires', new Date(crl.nextUpdate).toUTCString());
    return c.body(new Uint8Array(crl.der), 200);
  };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/ca/intermediate.crl',
      summary: "The active intermediate CA's latest CRL (DER)",
      responses: { 200: text('CRL', CRL_MEDIA_TYPE), 404: notFound },
    }),
    async (c) => {
      const intermediate = (await deps.store.certificates.listCas()).find((ca) => ca.role === 'intermediate' && ca.status === 'active');
      if (intermediate === undefined) throw new HttpError('NOT_FOUND', 'there is no active intermediate CA');
      return serveCrl(c, intermediate.caId);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/ca/{caId}/crl',
      summary: "A CA's latest CRL (DER): the CRL distribution point of the certificates it issued",
      request: { params: CaIdParamSchema },
      responses: { 200: text('CRL', CRL_MEDIA_TYPE), 400: badRequest, 404: notFound },
    }),
    (c) => serveCrl(c, c.req.valid('param').caId) as never,
  );
}

/** What /readyz shows about certificates: those expiring within the warning window. Never affects readiness. */
export async function certificateReadiness(deps: TrustDependencies): Promise<{ windowDays: number; expiring: ExpiringCertificate[] }> {
  const windowDays = deps.settings.expiryWarningDays;
  return { windowDays, expiring: await listExpiringCertificates(deps.store, { now: deps.now(), windowDays }) };
}
