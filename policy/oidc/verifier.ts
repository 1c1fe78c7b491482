/**
 * Verification of CI pipelines' OIDC id tokens (DESIGN.md, the signing path, step 2):
 * the `PipelineTokenVerifier` over jose, with the configured issuers' key caches.
 *
 * Order of checks, cheapest and least trusting first; nothing from the token is used
 * to decide where keys come from:
 * 1. size bound, then the compact JWS shape: three base64url segments (RFC 7515 §7.1);
 * 2. the protected header: `alg` on the asymmetric allow-list (`none` and HMAC refused,
 *    RFC 8725 §3.1–§3.2), no `crit` (RFC 7515 §4.1.11: we understand no extension),
 *    `typ` absent or JWT (RFC 8725 §3.11); `jku`, `x5u`, `jwk` and `x5c` are ignored
 *    (RFC 8725 §3.10);
 * 3. the unverified `iss` selects the issuer by exact string match (RFC 7519 §4.1.1 and
 *    RFC 8725 §3.8: it is compared, never resolved or normalised), whose allow-list must
 *    hold `alg`; the `kid` is looked up in that issuer's keys only;
 * 4. jose verifies the signature and the claims: `iss` exact, our own `aud`
 *    (RFC 7519 §4.1.3, RFC 8725 §3.9), `exp`/`nbf`/`iat` with a small leeway
 *    (RFC 7519 §4.1.4–§4.1.6), a maximum age, and `exp`, `iat`, `nbf`, `jti`, `sub` present.
 *
 * Every refusal is an IdentityError with a fixed message per code. Claims are
 * attacker-controlled until verified, and the token is a credential: neither appears
 * in a message or a `cause`.
 */
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type CryptoKey, type JWTPayload } from 'jose';
import { TOKEN_ALGORITHMS, type IssuerConfig, type OidcConfig, type TokenAlgorithm } from './config.js';
import { createJwksCaches, keyUnknown, type IssuerKeys, type OidcLogger } from './jwks-cache.js';
import { IdentityError, type IdentityErrorCode, type PipelineTokenVerifier, type VerifiedIdentity } from './types.js';

export interface PipelineTokenVerifierOptions {
  /** Clock in milliseconds since the epoch; drives claim checks and key-cache ages. */
  readonly now?: () => number;
  /** Reads `jwks.file` and `caFile` (absolute paths, as the config loader left them) at creation. */
  readonly readFile?: (path: string) => string;
  readonly logger?: OidcLogger;
}

/** Codes raised here; `JWKS_UNAVAILABLE` and `TOKEN_KEY_UNKNOWN` come from the key cache, `TOKEN_REPLAYED` from the replay check. */
type VerifierCode = Exclude<IdentityErrorCode, 'JWKS_UNAVAILABLE' | 'TOKEN_KEY_UNKNOWN' | 'TOKEN_REPLAYED'>;

const MESSAGES: Readonly<Record<VerifierCode, string>> = {
  TOKEN_MISSING: 'no id token was presented',
  TOKEN_TOO_LARGE: 'the id token is too large',
  TOKEN_MALFORMED: 'the id token is not a well-formed signed JWT',
  TOKEN_ALGORITHM_REFUSED: "the id token's signature algorithm is not accepted",
  TOKEN_ISSUER_UNKNOWN: 'the id token was issued by an issuer that is not configured',
  TOKEN_SIGNATURE_INVALID: "the id token's signature is invalid",
  TOKEN_AUDIENCE_INVALID: 'the id token was not issued for this service',
  TOKEN_EXPIRED: 'the id token has expired',
  TOKEN_NOT_YET_VALID: 'the id token is not valid yet',
  TOKEN_TOO_OLD: 'the id token was issued too long ago or in the future',
  TOKEN_CLAIM_MISSING: 'the id token lacks a required claim',
};

/**
 * `cause` is for the service log: a short fixed description, never a claim value or
 * part of the token (jose's claim errors carry the whole payload, so they are not kept).
 */
function refuse(code: VerifierCode, detail: string): IdentityError {
  return new IdentityError(code, MESSAGES[code], { cause: new Error(detail) });
}

const REQUIRED_CLAIMS = ['exp', 'iat', 'nbf', 'jti', 'sub'];
/** Base64url without padding (RFC 7515 §2); the signature may be empty only to be refused by `alg`. */
const SEGMENT = /^[A-Za-z0-9_-]+$/;
const MAX_KID_LENGTH = 256;

function isTokenAlgorithm(alg: string): alg is TokenAlgorithm {
  return (TOKEN_ALGORITHMS as readonly string[]).includes(alg);
}

/** The compact token split and its header checked; nothing here is trusted yet. */
function checkShape(token: unknown, maxBytes: number): { payload: JWTPayload; alg: TokenAlgorithm; kid: unknown } {
  if (typeof token !== 'string' || token === '') throw refuse('TOKEN_MISSING', 'empty or absent');
  // UTF-8 never takes fewer bytes than UTF-16 code units, so the cheap test comes first.
  if (token.length > maxBytes || Buffer.byteLength(token, 'utf8') > maxBytes) throw refuse('TOKEN_TOO_LARGE', `over ${maxBytes} bytes`);
  const segments = token.split('.');
  if (segments.length !== 3) throw refuse('TOKEN_MALFORMED', `${segments.length} segments, a compact JWS has 3`);
  const [encodedHeader = '', encodedPayload = '', signature = ''] = segments;
  if (!SEGMENT.test(encodedHeader) || !SEGMENT.test(encodedPayload) || (signature !== '' && !SEGMENT.test(signature))) {
    throw refuse('TOKEN_MALFORMED', 'a segment is not base64url');
  }

  // Typed loosely on purpose: every member is attacker-chosen until the signature verifies.
  let header: Readonly<Record<string, unknown>>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw refuse('TOKEN_MALFORMED', 'protected header is not a base64url JSON object');
  }
  const { alg } = header;
  if (typeof alg !== 'string' || alg === '') throw refuse('TOKEN_MALFORMED', 'no alg header');
  // RFC 8725 §3.1 and §3.2: `none` (in any spelling) and every symmetric algorithm are
  // refused outright; with HS256 the issuer's *public* key would serve as the HMAC secret.
  if (!isTokenAlgorithm(alg)) throw refuse('TOKEN_ALGORITHM_REFUSED', 'alg is not an accepted asymmetric algorithm');
  if (header.crit !== undefined) throw refuse('TOKEN_MALFORMED', 'crit header present; no extension is understood');
  if (header.typ !== undefined) {
    const typ = typeof header.typ === 'string' ? header.typ.toLowerCase() : '';
    if (typ !== 'jwt' && typ !== 'application/jwt') throw refuse('TOKEN_MALFORMED', 'typ header is not JWT');
  }
  if (signature === '') throw refuse('TOKEN_MALFORMED', 'empty signature');

  let payload: JWTPayload;
  try {
    payload = decodeJwt(token);
  } catch {
    throw refuse('TOKEN_MALFORMED', 'payload is not a base64url JSON object');
  }
  return { payload, alg, kid: header.kid };
}

/**
 * Translates jose's verification errors, keeping only fixed descriptions as cause;
 * undefined for anything else, which is a fault of ours (a key or option jose
 * rejects), not of the token.
 */
function translateJoseError(error: unknown): IdentityError | undefined {
  if (error instanceof errors.JWTExpired) {
    // jose reports both a past `exp` and an `iat` older than maxTokenAge as JWTExpired.
    return error.claim === 'iat' ? refuse('TOKEN_TOO_OLD', 'iat older than the maximum token age') : refuse('TOKEN_EXPIRED', 'exp in the past beyond leeway');
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    const detail = `claim ${error.claim}: ${error.reason}`;
    if (error.claim === 'aud') return refuse('TOKEN_AUDIENCE_INVALID', detail);
    if (error.claim === 'iss') return refuse('TOKEN_ISSUER_UNKNOWN', detail);
    if (error.reason === 'missing' || error.reason === 'invalid') return refuse('TOKEN_CLAIM_MISSING', detail);
    if (error.claim === 'nbf') return refuse('TOKEN_NOT_YET_VALID', detail);
    // `iat` after now + leeway: reported as TOO_OLD, as documented on the code (types.ts):
    // the token's age is outside [0, maxTokenAge], whichever side.
    if (error.claim === 'iat') return refuse('TOKEN_TOO_OLD', detail);
    return refuse('TOKEN_MALFORMED', detail);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return refuse('TOKEN_SIGNATURE_INVALID', 'signature does not verify');
  if (error instanceof errors.JOSEAlgNotAllowed) return refuse('TOKEN_ALGORITHM_REFUSED', 'alg not allowed for this issuer');
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid || error instanceof errors.JOSENotSupported) {
    // The code only: some jose messages quote header members, which are attacker data.
    return refuse('TOKEN_MALFORMED', error.code);
  }
  return undefined;
}

interface Issuer {
  readonly config: IssuerConfig;
  readonly keys: IssuerKeys;
}

/**
 * Builds the verifier for `config`. Reads static JWKS and CA files now and throws a
 * ConfigError listing every unusable issuer; remote keys are fetched on first use.
 */
export function createPipelineTokenVerifier(config: OidcConfig, options: PipelineTokenVerifierOptions = {}): PipelineTokenVerifier {
  const now = options.now ?? Date.now;
  const caches = createJwksCaches(config, {
    now,
    ...(options.readFile === undefined ? {} : { readFile: options.readFile }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  });
  const issuers = new Map<string, Issuer>();
  for (const issuer of config.issuers) {
    const keys = caches.get(issuer.issuer);
    if (keys !== undefined) issuers.set(issuer.issuer, { config: issuer, keys });
  }

  async function verify(token: string): Promise<VerifiedIdentity> {
    const { payload: unverified, alg, kid } = checkShape(token, config.maxTokenBytes);

    // Exact match through a Map: no trailing-slash, case or Unicode normalisation.
    const iss = unverified.iss;
    const issuer = typeof iss === 'string' ? issuers.get(iss) : undefined;
    if (issuer === undefined) throw refuse('TOKEN_ISSUER_UNKNOWN', 'iss matches no configured issuer');
    if (!issuer.config.algorithms.includes(alg)) throw refuse('TOKEN_ALGORITHM_REFUSED', `alg not allowed for issuer ${issuer.config.name}`);
    // Keys are selected by `kid` only (RFC 7515 §4.1.4); every CI issuer sets it.
    if (typeof kid !== 'string' || kid === '' || kid.length > MAX_KID_LENGTH) throw keyUnknown(new Error('no usable kid header'));

    const keys: readonly CryptoKey[] = await issuer.keys.keysFor(kid, alg);
    let payload: JWTPayload | undefined;
    let signatureFailure: IdentityError | undefined;
    // Several keys only when the issuer publishes one kid twice; the first that verifies wins.
    for (const key of keys) {
      try {
        ({ payload } = await jwtVerify(token, key, {
          algorithms: [...issuer.config.algorithms],
          issuer: issuer.config.issuer,
          audience: config.audience,
          clockTolerance: config.leewaySeconds,
          maxTokenAge: config.maxTokenAgeSeconds,
          requiredClaims: REQUIRED_CLAIMS,
          currentDate: new Date(now()),
        }));
        break;
      } catch (error) {
        const refused = translateJoseError(error);
        if (refused === undefined) throw error;
        if (refused.code !== 'TOKEN_SIGNATURE_INVALID') throw refused;
        signatureFailure = refused;
      }
    }
    if (payload === undefined) throw signatureFailure ?? refuse('TOKEN_SIGNATURE_INVALID', 'no key verified the signature');

    return identityOf(issuer.config, payload);
  }

  return { verify };
}

/** The checks jose leaves to us, then the identity. */
function identityOf(issuer: IssuerConfig, payload: JWTPayload): VerifiedIdentity {
  // RFC 7519 §4.1.3 allows several audiences; a token also meant for another service
  // could be replayed here by that service, so exactly one audience, ours, is accepted.
  const { aud } = payload;
  if (Array.isArray(aud) && aud.length !== 1) throw refuse('TOKEN_AUDIENCE_INVALID', 'more than one audience');
  const { sub, jti, iat, exp } = payload;
  if (typeof sub !== 'string' || sub === '') throw refuse('TOKEN_CLAIM_MISSING', 'sub is not a non-empty string');
  if (typeof jti !== 'string' || jti === '') throw refuse('TOKEN_CLAIM_MISSING', 'jti is not a non-empty string');
  // jose has checked these are numbers (required claims, RFC 7519 §2 NumericDate).
  if (typeof iat !== 'number' || typeof exp !== 'number') throw refuse('TOKEN_CLAIM_MISSING', 'iat or exp is not a number');
  return Object.freeze({
    issuerName: issuer.name,
    issuer: issuer.issuer,
    subject: sub,
    tokenId: jti,
    issuedAt: iat,
    expiresAt: exp,
    claims: Object.freeze({ ...payload }),
  });
}
