/**
 * A real OIDC issuer for tests: an HTTPS server on 127.0.0.1 (port chosen by the OS)
 * with its own CA and a leaf certificate for IP 127.0.0.1, serving OpenID discovery
 * and a JWKS, and minting GitHub-Actions-shaped id tokens with keys made by jose.
 *
 * Fault switches (redirect, slow, huge, arbitrary answers, a rewritten discovery
 * document) and counters of every connection and fetch let tests check what the
 * verifier did on the wire, not only what it answered.
 */
import { KeyObject, randomUUID, sign } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { createCertificateAuthority, issueLeafCertificate, toPem } from '../../tls/dev-pki.js';

export type IssuerKeyAlgorithm = 'RS256' | 'ES256';

export interface IssuerSigningKey {
  readonly kid: string;
  readonly alg: IssuerKeyAlgorithm;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  /** As published in the JWKS (kid, alg, use: sig). */
  readonly publicJwk: JWK;
}

export interface MintOptions {
  /** `kid` header; defaults to the signing key's. */
  readonly kid?: string;
  /** `alg` header; defaults to the signing key's. */
  readonly alg?: string;
  /** Extra or overriding protected-header members (jku, x5u, jwk, crit, typ, …). */
  readonly header?: Record<string, unknown>;
  /** Sign with this key instead of the issuer's current one (an attacker's key, an HMAC secret). */
  readonly key?: CryptoKey | Uint8Array;
  /** Sign with the issuer key of this kid. */
  readonly signWith?: string;
  /** Lifetime in seconds (default 300). */
  readonly expiresIn?: number;
}

export interface RawAnswer {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
}

export interface TestOidcIssuer {
  /** `https://127.0.0.1:PORT`, the `iss` of its tokens. */
  readonly issuer: string;
  readonly jwksUri: string;
  /** PEM of the CA that issued the server certificate. */
  readonly caPem: string;
  /** Default `aud` of minted tokens. */
  readonly audience: string;
  readonly keys: readonly IssuerSigningKey[];
  /** The key `mint` signs with by default (the newest RS256 key). */
  readonly currentKid: string;
  /** TCP connections accepted, and requests per path. */
  readonly counters: { connections: number; discovery: number; jwks: number; other: number };
  readonly jwks: () => { keys: JWK[] };
  /** Claims `mint` uses before overrides, at the issuer's clock. */
  defaultClaims(): Record<string, unknown>;
  /** A signed id token; claim overrides set to `undefined` remove the claim. */
  mint(claims?: Record<string, unknown>, options?: MintOptions): Promise<string>;
  /**
   * A token with exactly this header and payload, signed with an issuer key (default the
   * current one), without jose's checks on the header (for `crit` and other oddities).
   */
  signRaw(header: Record<string, unknown>, payload: Record<string, unknown>, kid?: string): string;
  /** Replaces the current key with a new one; the old one leaves the JWKS. Returns the new kid. */
  rotate(): Promise<string>;
  /** Publishes one more key (the current key does not change). Returns its kid. */
  addKey(alg?: IssuerKeyAlgorithm): Promise<IssuerSigningKey>;
  redirectJwksTo(url: string | undefined): void;
  slowJwks(ms: number | undefined): void;
  /** Answer the JWKS with `bytes` of JSON, streamed without a length, or with Content-Length when `declared`. */
  hugeJwks(options?: { bytes?: number; declared?: boolean } | false): void;
  /** Answer the JWKS with exactly this. */
  rawJwks(answer: RawAnswer | undefined): void;
  /** Members merged over the discovery document (e.g. another `jwks_uri` or `issuer`). */
  patchDiscovery(patch: Record<string, unknown> | undefined): void;
  /** Clears every fault switch and counter. */
  reset(): void;
  close(): Promise<void>;
}

export interface TestOidcIssuerOptions {
  /** Default `aud` of minted tokens (default `signet-test`). */
  readonly audience?: string;
  /** Clock in milliseconds; minted `iat`/`nbf`/`exp` follow it. */
  readonly now?: () => number;
  /** Also publish an ES256 key at start. */
  readonly es256?: boolean;
}

export async function createIssuerKey(alg: IssuerKeyAlgorithm): Promise<IssuerSigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const exported = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(exported);
  return { kid, alg, privateKey, publicKey, publicJwk: { ...exported, kid, alg, use: 'sig' } };
}

/** Base64url of a JSON value, for hand-built (unsigned or malformed) tokens. */
export function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** A compact token from parts, no signature computed. */
export function compactToken(header: unknown, payload: unknown, signature = ''): string {
  return `${b64json(header)}.${b64json(payload)}.${signature}`;
}

export async function startTestOidcIssuer(options: TestOidcIssuerOptions = {}): Promise<TestOidcIssuer> {
  const now = options.now ?? Date.now;
  const audience = options.audience ?? 'signet-test';
  const ca = await createCertificateAuthority('Signet test OIDC issuer CA');
  const leaf = await issueLeafCertificate(ca, { commonName: '127.0.0.1', usages: ['server'], ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'] });
  const caPem = (await toPem(ca)).certificatePem;
  const leafPem = await toPem(leaf);

  let keys: IssuerSigningKey[] = [await createIssuerKey('RS256')];
  if (options.es256 === true) keys.push(await createIssuerKey('ES256'));
  let currentKid = keys[0]!.kid;

  const counters = { connections: 0, discovery: 0, jwks: 0, other: 0 };
  let redirectTo: string | undefined;
  let slowMs: number | undefined;
  let huge: { bytes: number; declared: boolean } | undefined;
  let raw: RawAnswer | undefined;
  let discoveryPatch: Record<string, unknown> | undefined;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();
  let origin = '';

  const jwks = (): { keys: JWK[] } => ({ keys: keys.map((k) => k.publicJwk) });

  function sendJson(res: ServerResponse, value: unknown): void {
    const body = JSON.stringify(value);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  }

  function serveJwks(res: ServerResponse): void {
    if (redirectTo !== undefined) {
      res.writeHead(302, { location: redirectTo });
      res.end();
      return;
    }
    if (raw !== undefined) {
      res.writeHead(raw.status ?? 200, raw.headers ?? {});
      res.end(raw.body ?? '');
      return;
    }
    if (huge !== undefined) {
      const { bytes, declared } = huge;
      // A JWKS padded with keys that never end: valid JSON if read to the end.
      const prefix = '{"keys":[';
      const filler = '{"kty":"oct","k":"' + 'A'.repeat(1000) + '"},';
      const suffix = '{"kty":"oct","k":"AA"}]}';
      const count = Math.ceil(bytes / filler.length);
      const total = prefix.length + count * filler.length + suffix.length;
      res.writeHead(200, { 'content-type': 'application/json', ...(declared ? { 'content-length': String(total) } : {}) });
      res.write(prefix);
      let sent = 0;
      const pump = (): void => {
        while (sent < count) {
          sent += 1;
          if (!res.write(filler)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end(suffix);
      };
      res.on('close', () => {
        sent = count + 1; // stop pumping once the client hung up
      });
      pump();
      return;
    }
    sendJson(res, jwks());
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', origin).pathname;
    if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
      counters.discovery += 1;
      sendJson(res, {
        issuer: origin,
        jwks_uri: `${origin}/jwks`,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public', 'pairwise'],
        id_token_signing_alg_values_supported: ['RS256', 'ES256'],
        claims_supported: ['sub', 'aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'ref', 'sha', 'repository', 'repository_id'],
        scopes_supported: ['openid'],
        ...discoveryPatch,
      });
      return;
    }
    if (req.method === 'GET' && path === '/jwks') {
      counters.jwks += 1;
      if (slowMs !== undefined) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!res.destroyed) serveJwks(res);
        }, slowMs);
        timers.add(timer);
        return;
      }
      serveJwks(res);
      return;
    }
    counters.other += 1;
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"not found"}');
  }

  const server: Server = createServer({ key: leafPem.privateKeyPem, cert: leafPem.certificatePem }, handle);
  server.on('connection', (socket: Socket) => {
    counters.connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve();
    });
  });
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

  function keyOf(kid: string): IssuerSigningKey {
    const key = keys.find((k) => k.kid === kid);
    if (key === undefined) throw new Error(`test issuer has no key ${kid}`);
    return key;
  }

  const issuer: TestOidcIssuer = {
    get issuer() {
      return origin;
    },
    get jwksUri() {
      return `${origin}/jwks`;
    },
    caPem,
    audience,
    get keys() {
      return keys;
    },
    get currentKid() {
      return currentKid;
    },
    counters,
    jwks,
    defaultClaims() {
      const iat = Math.floor(now() / 1000);
      return {
        iss: origin,
        aud: audience,
        sub: 'repo:example/demo:ref:refs/heads/main',
        jti: randomUUID(),
        iat,
        nbf: iat,
        exp: iat + 300,
        ref: 'refs/heads/main',
        sha: 'd6cd1e2bd19e03a81132a23b2025920577f84e37',
        repository: 'example/demo',
        repository_id: '123456789',
        repository_owner: 'example',
        repository_owner_id: '987654',
        repository_visibility: 'private',
        run_id: '5555555555',
        run_number: '42',
        run_attempt: '1',
        actor: 'octocat',
        actor_id: '583231',
        workflow: 'release',
        workflow_ref: 'example/demo/.github/workflows/release.yml@refs/heads/main',
        workflow_sha: 'd6cd1e2bd19e03a81132a23b2025920577f84e37',
        job_workflow_ref: 'example/demo/.github/workflows/release.yml@refs/heads/main',
        job_workflow_sha: 'd6cd1e2bd19e03a81132a23b2025920577f84e37',
        head_ref: '',
        base_ref: '',
        event_name: 'push',
        ref_type: 'branch',
        ref_protected: 'true',
        environment: 'production',
        runner_environment: 'github-hosted',
      };
    },
    async mint(claims = {}, mintOptions = {}) {
      const defaults = issuer.defaultClaims();
      if (mintOptions.expiresIn !== undefined) defaults.exp = (defaults.iat as number) + mintOptions.expiresIn;
      // An override of `undefined` removes the claim.
      const payload = Object.fromEntries(Object.entries({ ...defaults, ...claims }).filter(([, value]) => value !== undefined));
      const signer = keyOf(mintOptions.signWith ?? currentKid);
      const header = { alg: mintOptions.alg ?? signer.alg, typ: 'JWT', kid: mintOptions.kid ?? signer.kid, ...mintOptions.header };
      // Bypass SignJWT's claim helpers: tests need claims of any shape, including wrong types.
      return new SignJWT(payload).setProtectedHeader(header).sign(mintOptions.key ?? signer.privateKey);
    },
    signRaw(header, payload, kid) {
      const signer = keyOf(kid ?? currentKid);
      const input = `${b64json(header)}.${b64json(payload)}`;
      const privateKey = KeyObject.from(signer.privateKey);
      const signature =
        signer.alg === 'ES256' ? sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }) : sign('sha256', Buffer.from(input), privateKey);
      return `${input}.${signature.toString('base64url')}`;
    },
    async rotate() {
      const next = await createIssuerKey('RS256');
      keys = [...keys.filter((k) => k.kid !== currentKid), next];
      currentKid = next.kid;
      return next.kid;
    },
    async addKey(alg = 'RS256') {
      const added = await createIssuerKey(alg);
      keys = [...keys, added];
      return added;
    },
    redirectJwksTo(url) {
      redirectTo = url;
    },
    slowJwks(ms) {
      slowMs = ms;
    },
    hugeJwks(hugeOptions = {}) {
      huge = hugeOptions === false ? undefined : { bytes: hugeOptions.bytes ?? 4 * 1024 * 1024, declared: hugeOptions.declared ?? false };
    },
    rawJwks(answer) {
      raw = answer;
    },
    patchDiscovery(patch) {
      discoveryPatch = patch;
    },
    reset() {
      redirectTo = undefined;
      slowMs = undefined;
      huge = undefined;
      raw = undefined;
      discoveryPatch = undefined;
      counters.connections = 0;
      counters.discovery = 0;
      counters.jwks = 0;
      counters.other = 0;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
    },
  };
  return issuer;
}
