/**
 * Signing keys of the configured OIDC issuers, one cache per issuer: a key published
 * by one issuer can never verify a token of another (RFC 8725 §3.8: the issuer decides
 * which keys are acceptable, so keys are looked up only under the issuer they came from).
 *
 * Keys come from exactly one place per issuer, chosen by configuration:
 * - OpenID discovery: `<issuer>/.well-known/openid-configuration`, whose `issuer`
 *   must equal the configured issuer exactly and whose `jwks_uri` must be https on the
 *   issuer's own host (OpenID Connect Discovery 1.0 §4.3 and §7);
 * - an explicit JWKS URL on the issuer's host;
 * - a static JWKS file for air-gapped issuers, read and validated once at start.
 * Never from a token: `jku`, `x5u`, `jwk` and `x5c` headers are not consulted
 * (RFC 8725 §3.10; RFC 7515 §4.1.2, §4.1.3, §4.1.5, §4.1.6).
 *
 * Remote keys are refreshed when older than `jwksCacheSeconds` or when a token names an
 * unknown `kid`, at most once per `jwksCooldownSeconds` per issuer, with concurrent
 * refreshes coalesced into one fetch, so a flood of tokens with invented `kid`s costs
 * the issuer at most one fetch per cooldown. If a refresh fails, keys that are still
 * within their maximum age stay in use; past it, the issuer is unavailable (fail closed).
 * A successful refresh replaces the whole set: a key the issuer removed stops verifying.
 */
import { createPublicKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { importJWK, type CryptoKey, type JWK } from 'jose';
import { ConfigError } from '../../config/errors.js';
import { TOKEN_ALGORITHMS, type IssuerConfig, type OidcConfig, type TokenAlgorithm } from './config.js';
import { fetchJson as httpsFetchJson, keysUnavailable, type FetchJson } from './fetch-json.js';
import { IdentityError } from './types.js';

/** The logging this module needs; a pino logger fits. Fields never hold token data. */
export interface OidcLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface JwksCacheOptions {
  /** Clock in milliseconds since the epoch (tests freeze it). */
  readonly now?: () => number;
  /** Reads `jwks.file` and `caFile` (absolute paths) at creation; UTF-8 text. */
  readonly readFile?: (path: string) => string;
  readonly fetchJson?: FetchJson;
  readonly logger?: OidcLogger;
  /**
   * Oldest fetched key set still used while refreshes fail, in seconds. Defaults to
   * twice `jwksCacheSeconds`: one refresh period of grace, so a short issuer outage
   * does not stop signing, while a key the issuer removed is honoured for a bounded time.
   */
  readonly maxKeyAgeSeconds?: number;
}

/** The keys of one issuer. */
export interface IssuerKeys {
  readonly issuerName: string;
  /**
   * The keys with this `kid` usable with `alg` (usually one; several only if the issuer
   * publishes a `kid` twice). Throws IdentityError `TOKEN_KEY_UNKNOWN` or `JWKS_UNAVAILABLE`.
   */
  keysFor(kid: string, alg: TokenAlgorithm): Promise<readonly CryptoKey[]>;
}

/** One validated public key of a JWK Set. */
export interface PublicSigningKey {
  readonly kid: string;
  /** Public members only; anything else the issuer published is dropped. */
  readonly jwk: JWK;
  /** The allowed algorithms this key may verify: its family, its `alg` if set, and the issuer's allow-list. */
  readonly algorithms: readonly TokenAlgorithm[];
}

export interface ParsedJwks {
  readonly keys: readonly PublicSigningKey[];
  /** Why each unusable key was left out (no key material, no token data). */
  readonly skipped: readonly string[];
}

/** A JWK Set larger than this is refused as a whole; real issuers publish a handful. */
export const MAX_JWKS_KEYS = 100;
const MAX_KID_LENGTH = 256;
const RSA_MIN_BITS = 2048; // RFC 7518 §3.3 / §3.5: 2048 bits or larger.
const RSA_MAX_BITS = 8192;
/** RFC 7517 §4 / RFC 7518 §6.2.2, §6.3.2 and RFC 8037 §2: members that hold private key material. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** The one message of `TOKEN_KEY_UNKNOWN`; the detail goes into `cause`. */
export function keyUnknown(cause?: unknown): IdentityError {
  return new IdentityError('TOKEN_KEY_UNKNOWN', 'no signing key of the token issuer matches the token', cause === undefined ? undefined : { cause });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isAllowedAlgorithm(value: unknown): value is TokenAlgorithm {
  return typeof value === 'string' && (TOKEN_ALGORITHMS as readonly string[]).includes(value);
}

/** Public members and algorithm family of one JWK, or why it is unusable. */
function publicPart(key: Record<string, unknown>): { jwk: JWK; family: readonly TokenAlgorithm[] } | string {
  const str = (name: string): string | undefined => (typeof key[name] === 'string' ? key[name] : undefined);
  switch (key.kty) {
    case 'RSA': {
      const n = str('n');
      const e = str('e');
      if (n === undefined || e === undefined) return 'RSA key without n/e';
      return { jwk: { kty: 'RSA', n, e }, family: ['RS256', 'PS256'] };
    }
    case 'EC': {
      const x = str('x');
      const y = str('y');
      if (x === undefined || y === undefined) return 'EC key without x/y';
      if (key.crv === 'P-256') return { jwk: { kty: 'EC', crv: 'P-256', x, y }, family: ['ES256'] };
      if (key.crv === 'P-384') return { jwk: { kty: 'EC', crv: 'P-384', x, y }, family: ['ES384'] };
      return 'unsupported EC curve';
    }
    case 'OKP': {
      const x = str('x');
      if (x === undefined) return 'OKP key without x';
      if (key.crv === 'Ed25519') return { jwk: { kty: 'OKP', crv: 'Ed25519', x }, family: ['EdDSA'] };
      return 'unsupported OKP curve';
    }
    default:
      // Symmetric ("oct") keys in particular: a shared secret published in a JWKS is no key at all.
      return 'not an asymmetric key type (RSA, EC, OKP)';
  }
}

/** Why a JWK must not verify tokens, or undefined if it may. */
function unusableReason(key: Record<string, unknown>): string | undefined {
  if (typeof key.kid !== 'string' || key.kid === '' || key.kid.length > MAX_KID_LENGTH) return 'no usable kid';
  // RFC 7517 §4.2: a key published for another use (encryption) must not verify signatures.
  if (key.use !== undefined && key.use !== 'sig') return 'use is not "sig"';
  // RFC 7517 §4.3: when key_ops is present, it must allow verification.
  if (key.key_ops !== undefined && !(Array.isArray(key.key_ops) && key.key_ops.includes('verify'))) return 'key_ops does not allow verify';
  // A published private key is compromised by definition; anyone could forge with it.
  if (PRIVATE_MEMBERS.some((member) => Object.hasOwn(key, member))) return 'carries private key material';
  if (key.alg !== undefined && !isAllowedAlgorithm(key.alg)) return 'alg is not an accepted signature algorithm';
  return undefined;
}

/**
 * Validates a JWK Set (RFC 7517 §5) and keeps the keys that may verify id tokens:
 * asymmetric (RSA ≥ 2048 bits, P-256, P-384, Ed25519), for signatures, with a `kid`,
 * public parts only. Unusable keys are skipped with a reason; a document that is not
 * a JWK Set at all throws.
 */
export function parseJwks(document: unknown, allowed: readonly TokenAlgorithm[]): ParsedJwks {
  if (!isObject(document) || !Array.isArray(document.keys)) throw new Error('not a JWK Set (no "keys" array)');
  const entries: unknown[] = document.keys;
  if (entries.length > MAX_JWKS_KEYS) throw new Error(`JWK Set has more than ${MAX_JWKS_KEYS} keys`);
  const keys: PublicSigningKey[] = [];
  const skipped: string[] = [];
  entries.forEach((entry, index) => {
    const skip = (reason: string): void => {
      skipped.push(`keys[${index}]: ${reason}`);
    };
    if (!isObject(entry)) {
      skip('not an object');
      return;
    }
    const reason = unusableReason(entry);
    if (reason !== undefined) {
      skip(reason);
      return;
    }
    const part = publicPart(entry);
    if (typeof part === 'string') {
      skip(part);
      return;
    }
    try {
      // node:crypto validates the key material (points on the curve, RSA parameters) now,
      // so a bad key is reported at load time rather than on some later token.
      const details = createPublicKey({ key: { ...part.jwk }, format: 'jwk' }).asymmetricKeyDetails;
      const bits = details?.modulusLength;
      if (part.jwk.kty === 'RSA' && (bits === undefined || bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)) {
        skip(`RSA modulus must be ${RSA_MIN_BITS} to ${RSA_MAX_BITS} bits`);
        return;
      }
    } catch {
      skip('invalid key material');
      return;
    }
    // RFC 8725 §3.1 and RFC 7517 §4.4: a key is used with the algorithm it was published for.
    const algorithms = part.family.filter((alg) => (entry.alg === undefined || entry.alg === alg) && allowed.includes(alg));
    if (algorithms.length === 0) {
      skip('no accepted algorithm for this key');
      return;
    }
    keys.push({ kid: entry.kid as string, jwk: part.jwk, algorithms });
  });
  return { keys, skipped };
}

type KeySet = ReadonlyMap<string, ReadonlyMap<TokenAlgorithm, readonly CryptoKey[]>>;

async function importKeySet(keys: readonly PublicSigningKey[]): Promise<KeySet> {
  const set = new Map<string, Map<TokenAlgorithm, CryptoKey[]>>();
  for (const key of keys) {
    for (const alg of key.algorithms) {
      const imported = await importJWK(key.jwk, alg);
      if (imported instanceof Uint8Array) continue; // unreachable: only asymmetric kty get here
      let byAlg = set.get(key.kid);
      if (byAlg === undefined) {
        byAlg = new Map();
        set.set(key.kid, byAlg);
      }
      byAlg.set(alg, [...(byAlg.get(alg) ?? []), imported]);
    }
  }
  return set;
}

function lookup(set: KeySet, kid: string, alg: TokenAlgorithm): readonly CryptoKey[] | undefined {
  const keys = set.get(kid)?.get(alg);
  return keys !== undefined && keys.length > 0 ? keys : undefined;
}

/** Error chain as one line for the service log. */
function describe(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  while (current instanceof Error && parts.length < 5) {
    parts.push(current.message);
    current = current.cause;
  }
  return parts.length > 0 ? parts.join(': ') : String(error);
}

/** Keys of an air-gapped issuer: read and validated at start, imported once, never refreshed. */
class StaticIssuerKeys implements IssuerKeys {
  readonly issuerName: string;
  readonly #keys: readonly PublicSigningKey[];
  #imported: Promise<KeySet> | undefined;

  constructor(issuerName: string, keys: readonly PublicSigningKey[]) {
    this.issuerName = issuerName;
    this.#keys = keys;
  }

  async keysFor(kid: string, alg: TokenAlgorithm): Promise<readonly CryptoKey[]> {
    this.#imported ??= importKeySet(this.#keys);
    let set: KeySet;
    try {
      set = await this.#imported;
    } catch (error) {
      throw keysUnavailable(error);
    }
    const keys = lookup(set, kid, alg);
    if (keys === undefined) throw keyUnknown(new Error(`issuer ${this.issuerName}: kid not in the static JWKS`));
    return keys;
  }
}

type RemoteSource = { readonly kind: 'discovery'; readonly url: string } | { readonly kind: 'jwks'; readonly url: string };

interface RemoteSettings {
  readonly issuer: string;
  readonly algorithms: readonly TokenAlgorithm[];
  readonly source: RemoteSource;
  readonly ca: string | undefined;
  readonly cacheMs: number;
  readonly cooldownMs: number;
  readonly maxAgeMs: number;
  readonly fetchTimeoutMs: number;
  readonly maxJwksBytes: number;
  readonly now: () => number;
  readonly fetchJson: FetchJson;
  readonly logger: OidcLogger | undefined;
}

/**
 * Validates a discovery document (OpenID Connect Discovery 1.0 §4.3: its `issuer`
 * MUST be identical to the issuer it was fetched for) and returns its `jwks_uri`,
 * which must be https on the issuer's own host: whoever controls the document must
 * not be able to point us at keys hosted elsewhere.
 */
export function jwksUriFromDiscovery(document: Record<string, unknown>, issuer: string): string {
  if (document.issuer !== issuer) throw new Error('discovery "issuer" is not the configured issuer');
  if (typeof document.jwks_uri !== 'string') throw new Error('discovery has no "jwks_uri"');
  let uri: URL;
  try {
    uri = new URL(document.jwks_uri);
  } catch (error) {
    throw new Error('discovery "jwks_uri" is not a URL', { cause: error });
  }
  if (uri.protocol !== 'https:') throw new Error('discovery "jwks_uri" is not https');
  if (uri.host !== new URL(issuer).host) throw new Error(`discovery "jwks_uri" is on another host (${uri.host})`);
  return uri.href;
}

/** Keys fetched from the issuer, with the refresh rules in the module header. */
class RemoteIssuerKeys implements IssuerKeys {
  readonly issuerName: string;
  readonly #settings: RemoteSettings;
  #snapshot: { readonly keys: KeySet; readonly fetchedAt: number } | undefined;
  /** The `jwks_uri` from discovery, re-read once per cache period and after any failure. */
  #jwksUri: { readonly url: string; readonly resolvedAt: number } | undefined;
  #lastAttemptAt: number | undefined;
  #lastError: IdentityError | undefined;
  #inflight: Promise<IdentityError | undefined> | undefined;

  constructor(issuerName: string, settings: RemoteSettings) {
    this.issuerName = issuerName;
    this.#settings = settings;
  }

  async keysFor(kid: string, alg: TokenAlgorithm): Promise<readonly CryptoKey[]> {
    const { now, cacheMs, maxAgeMs } = this.#settings;
    const snapshot = this.#snapshot;
    let refreshError: IdentityError | undefined;
    const fresh = snapshot !== undefined && now() - snapshot.fetchedAt < cacheMs;
    if (!fresh || lookup(snapshot.keys, kid, alg) === undefined) refreshError = await this.#refreshUnlessCoolingDown();
    const current = this.#snapshot;
    if (current === undefined || now() - current.fetchedAt >= maxAgeMs) {
      throw refreshError ?? keysUnavailable(new Error(`issuer ${this.issuerName}: no key set within its maximum age`, { cause: this.#lastError }));
    }
    const keys = lookup(current.keys, kid, alg);
    if (keys === undefined) {
      throw keyUnknown(new Error(`issuer ${this.issuerName}: kid not in the JWKS`, refreshError === undefined ? undefined : { cause: refreshError }));
    }
    return keys;
  }

  /**
   * Starts a refresh unless one is running (then joins it) or one started less than a
   * cooldown ago (then does nothing). Resolves to the refresh's error, if any; never rejects.
   */
  #refreshUnlessCoolingDown(): Promise<IdentityError | undefined> {
    if (this.#inflight !== undefined) return this.#inflight;
    const now = this.#settings.now();
    // The cooldown counts from every attempt, failed ones included, so a failing issuer
    // is not hammered either.
    if (this.#lastAttemptAt !== undefined && now - this.#lastAttemptAt < this.#settings.cooldownMs) return Promise.resolve(undefined);
    this.#lastAttemptAt = now;
    const attempt = this.#refresh(now).then(
      () => undefined,
      (error: unknown) => {
        const failure = error instanceof IdentityError ? error : keysUnavailable(error);
        this.#lastError = failure;
        this.#jwksUri = undefined;
        this.#settings.logger?.warn({ issuer: this.issuerName, reason: describe(failure.cause) }, 'OIDC key refresh failed');
        return failure;
      },
    );
    this.#inflight = attempt.finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #refresh(startedAt: number): Promise<void> {
    const s = this.#settings;
    const fetchOptions = { timeoutMs: s.fetchTimeoutMs, maxBytes: s.maxJwksBytes, ca: s.ca };
    let parsed: ParsedJwks;
    let keys: KeySet;
    try {
      const url = await this.#resolveJwksUri(startedAt, fetchOptions);
      parsed = parseJwks(await s.fetchJson(url, fetchOptions), s.algorithms);
      keys = await importKeySet(parsed.keys);
    } catch (error) {
      throw error instanceof IdentityError ? error : keysUnavailable(new Error(`issuer ${this.issuerName}`, { cause: error }));
    }
    this.#snapshot = { keys, fetchedAt: startedAt };
    s.logger?.info({ issuer: this.issuerName, keys: parsed.keys.length, skipped: parsed.skipped }, 'OIDC keys refreshed');
  }

  async #resolveJwksUri(now: number, fetchOptions: Parameters<FetchJson>[1]): Promise<string> {
    const s = this.#settings;
    if (s.source.kind === 'jwks') return s.source.url;
    if (this.#jwksUri !== undefined && now - this.#jwksUri.resolvedAt < s.cacheMs) return this.#jwksUri.url;
    const url = jwksUriFromDiscovery(await s.fetchJson(s.source.url, fetchOptions), s.issuer);
    this.#jwksUri = { url, resolvedAt: now };
    return url;
  }
}

/** `issuer` as an https URL fit for discovery, or why not. */
function httpsIssuerUrl(issuer: string): URL | string {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    return 'issuer is not a URL; remote keys need an https issuer (or use jwks.file)';
  }
  if (url.protocol !== 'https:') return 'issuer must be an https URL for remote keys';
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    // OpenID Connect Discovery 1.0 §3 (`issuer`): https, with no query or fragment component.
    return 'issuer URL must not have a query, fragment or credentials';
  }
  return url;
}

/** OpenID Connect Discovery 1.0 §4.1: the issuer without its trailing slash, then the well-known path. */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

/**
 * Builds every configured issuer's key cache, keyed by the exact `iss` string. Reads
 * static JWKS files and CA files now; reports every problem at once as a ConfigError.
 */
export function createJwksCaches(config: OidcConfig, options: JwksCacheOptions = {}): ReadonlyMap<string, IssuerKeys> {
  const problems: string[] = [];
  const caches = new Map<string, IssuerKeys>();
  config.issuers.forEach((issuer, index) => {
    const report = (message: string): void => {
      problems.push(`oidc.issuers[${index}] (${issuer.name}): ${message}`);
    };
    const keys = createIssuerKeys(config, issuer, options, report);
    if (keys !== undefined) caches.set(issuer.issuer, keys);
  });
  if (problems.length > 0) throw new ConfigError('CONFIG_INVALID', 'OIDC issuer configuration is unusable', problems);
  return caches;
}

function readText(options: JwksCacheOptions, path: string, what: string, report: (message: string) => void): string | undefined {
  try {
    return (options.readFile ?? defaultReadFile)(path);
  } catch (error) {
    report(`cannot read ${what} ${path}: ${describe(error)}`);
    return undefined;
  }
}

/** Throws unless `text` holds at least one PEM certificate and every one parses (TLS would skip bad ones silently). */
function checkPemCertificates(text: string): void {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate');
  for (const block of blocks) new X509Certificate(block);
}

function defaultReadFile(path: string): string {
  return readFileSync(path, 'utf8');
}

function createIssuerKeys(config: OidcConfig, issuer: IssuerConfig, options: JwksCacheOptions, report: (message: string) => void): IssuerKeys | undefined {
  const { jwks } = issuer;
  if ('file' in jwks) {
    const text = readText(options, jwks.file, 'jwks.file', report);
    if (text === undefined) return undefined;
    let parsed: ParsedJwks;
    try {
      parsed = parseJwks(JSON.parse(text), issuer.algorithms);
    } catch (error) {
      report(`jwks.file ${jwks.file} is not a valid JWK Set: ${describe(error)}`);
      return undefined;
    }
    if (parsed.keys.length === 0) {
      report(`jwks.file ${jwks.file} has no usable signing key (${parsed.skipped.join('; ') || 'empty'})`);
      return undefined;
    }
    if (parsed.skipped.length > 0) options.logger?.warn({ issuer: issuer.name, skipped: parsed.skipped }, 'OIDC static JWKS: keys skipped');
    return new StaticIssuerKeys(issuer.name, parsed.keys);
  }

  let ca: string | undefined;
  if (issuer.caFile !== undefined) {
    ca = readText(options, issuer.caFile, 'caFile', report);
    if (ca === undefined) return undefined;
    try {
      checkPemCertificates(ca);
    } catch (error) {
      report(`caFile ${issuer.caFile} holds no valid PEM certificate: ${describe(error)}`);
      return undefined;
    }
  }
  const issuerUrl = httpsIssuerUrl(issuer.issuer);
  if (typeof issuerUrl === 'string') {
    report(issuerUrl);
    return undefined;
  }
  let source: RemoteSource;
  if ('uri' in jwks) {
    const uri = new URL(jwks.uri);
    if (uri.host !== issuerUrl.host) {
      // Same rule as for a discovered jwks_uri: the issuer's keys live on the issuer's host.
      report('jwks.uri must be on the issuer host (use jwks.file for keys published elsewhere)');
      return undefined;
    }
    source = { kind: 'jwks', url: uri.href };
  } else {
    source = { kind: 'discovery', url: discoveryUrl(issuer.issuer) };
  }
  const cacheMs = config.jwksCacheSeconds * 1000;
  return new RemoteIssuerKeys(issuer.name, {
    issuer: issuer.issuer,
    algorithms: issuer.algorithms,
    source,
    ca,
    cacheMs,
    // A cooldown longer than the cache period would leave stale keys unrefreshable.
    cooldownMs: Math.min(config.jwksCooldownSeconds * 1000, cacheMs),
    maxAgeMs: options.maxKeyAgeSeconds === undefined ? 2 * cacheMs : Math.max(options.maxKeyAgeSeconds * 1000, cacheMs),
    fetchTimeoutMs: config.fetchTimeoutMs,
    maxJwksBytes: config.maxJwksBytes,
    now: options.now ?? Date.now,
    fetchJson: options.fetchJson ?? httpsFetchJson,
    logger: options.logger,
  });
}
