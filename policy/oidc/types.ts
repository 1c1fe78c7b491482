/**
 * The seam between OIDC id-token verification and the rest of Signet. The signing
 * path depends only on `PipelineTokenVerifier`; `createPipelineTokenVerifier`
 * (policy/oidc/verifier.ts) is the implementation over jose.
 */
import { SignetError } from '../../errors/signet-error.js';

/** A pipeline identity proven by a verified id token. */
export interface VerifiedIdentity {
  /** Name of the configured issuer that verified it (signet.yaml `oidc.issuers[].name`). */
  readonly issuerName: string;
  /** The token's `iss`, exactly. */
  readonly issuer: string;
  readonly subject: string;
  /** The token's `jti`: a token serves one request. */
  readonly tokenId: string;
  /** Seconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  /** Every claim of the verified payload (never the token itself). */
  readonly claims: Readonly<Record<string, unknown>>;
}

export interface PipelineTokenVerifier {
  /** Verifies a compact JWS id token; throws IdentityError on any problem. */
  verify(token: string): Promise<VerifiedIdentity>;
}

export const IDENTITY_ERROR_CODES = [
  'TOKEN_MISSING',
  'TOKEN_TOO_LARGE',
  'TOKEN_MALFORMED',
  /** alg none, symmetric algorithms, or an algorithm not on the issuer's allow-list. */
  'TOKEN_ALGORITHM_REFUSED',
  /** `iss` names no configured issuer. */
  'TOKEN_ISSUER_UNKNOWN',
  /** No key of the issuer has the token's `kid` (after one refresh, within the cooldown). */
  'TOKEN_KEY_UNKNOWN',
  'TOKEN_SIGNATURE_INVALID',
  /** `aud` missing or not this service's audience. */
  'TOKEN_AUDIENCE_INVALID',
  'TOKEN_EXPIRED',
  'TOKEN_NOT_YET_VALID',
  /** `iat` older than the configured maximum token age, or in the future. */
  'TOKEN_TOO_OLD',
  /** A required claim (exp, iat, nbf, jti, sub) is missing or of the wrong type. */
  'TOKEN_CLAIM_MISSING',
  /** The `jti` was already used for a different request. */
  'TOKEN_REPLAYED',
  /** The issuer's keys could not be fetched (timeout, too large, redirect, bad JSON): a server-side fault. */
  'JWKS_UNAVAILABLE',
] as const;
export type IdentityErrorCode = (typeof IDENTITY_ERROR_CODES)[number];

/**
 * Identity failures. Messages are fixed per code and never contain the token or any
 * part of it; details for operators go into `cause` (logged, never sent).
 */
export class IdentityError extends SignetError<IdentityErrorCode> {}
