/**
 * The development OIDC issuer made by `signet init`: an RS256 key in a file (mode
 * 0600) and its public JWKS, which the development config trusts as a static JWKS
 * (no network). `signet dev-token` mints tokens shaped like GitHub Actions id tokens
 * with it. Development and tests only: a real deployment trusts its CI's issuer.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { CliError } from './errors.js';

export const DEV_ISSUER = 'https://dev-issuer.signet.invalid';
export const DEV_AUDIENCE = 'signet';
export const DEV_REPOSITORY = 'example/demo';

export interface DevIssuerFiles {
  readonly privateJwkFile: string;
  readonly jwksFile: string;
}

export async function createDevIssuer(files: DevIssuerFiles): Promise<void> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const kid = randomBytes(8).toString('hex');
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const publicJwk: JWK = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  writeFileSync(files.privateJwkFile, `${JSON.stringify(privateJwk)}\n`, { mode: 0o600 });
  writeFileSync(files.jwksFile, `${JSON.stringify({ keys: [publicJwk] }, null, 2)}\n`);
}

export interface DevTokenOptions {
  readonly privateJwkFile: string;
  readonly audience: string;
  /** Claims to add or override (`--claim name=value`). */
  readonly claims: Readonly<Record<string, string>>;
  readonly expiresInSeconds: number;
  readonly now?: Date;
}

export type DevTokenMinter = (claims: Readonly<Record<string, string>>, expiresInSeconds: number, now?: Date) => Promise<string>;

/** Loads the dev issuer key once; the returned function mints tokens with it. */
export async function createDevTokenMinter(privateJwkFile: string, audience: string): Promise<DevTokenMinter> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(readFileSync(privateJwkFile, 'utf8')) as JWK;
  } catch (error) {
    throw new CliError('FILE_UNREADABLE', `cannot read the dev issuer key ${privateJwkFile} (made by signet init)`, { cause: error });
  }
  const key = await importJWK(jwk, 'RS256');
  const kid = String(jwk.kid);
  return (overrides, expiresInSeconds, when) => signDevToken(key, kid, audience, overrides, expiresInSeconds, when ?? new Date());
}

/** One token, as `signet dev-token` prints it. */
export async function mintDevToken(options: DevTokenOptions): Promise<string> {
  const mint = await createDevTokenMinter(options.privateJwkFile, options.audience);
  return mint(options.claims, options.expiresInSeconds, options.now);
}

/**
 * A token with the claims of a GitHub Actions id token for a push to `main` of
 * example/demo, a fresh `jti` each time. `sub`, `ref_type` and the workflow refs
 * follow `repository` and `ref`; any override wins.
 */
async function signDevToken(
  key: Awaited<ReturnType<typeof importJWK>>,
  kid: string,
  audience: string,
  overrides: Readonly<Record<string, string>>,
  expiresInSeconds: number,
  when: Date,
): Promise<string> {
  const now = Math.floor(when.getTime() / 1000);
  const sha = randomBytes(20).toString('hex');
  const repository = overrides.repository ?? DEV_REPOSITORY;
  const ref = overrides.ref ?? 'refs/heads/main';
  const workflowRef = `${repository}/.github/workflows/release.yml@${ref}`;
  const payload: Record<string, string | number> = {
    iss: DEV_ISSUER,
    aud: audience,
    sub: `repo:${repository}:ref:${ref}`,
    jti: randomUUID(),
    iat: now,
    nbf: now,
    exp: now + expiresInSeconds,
    repository,
    repository_id: '100001',
    repository_owner: repository.split('/')[0] ?? 'example',
    repository_owner_id: '100000',
    repository_visibility: 'private',
    ref,
    ref_type: ref.startsWith('refs/tags/') ? 'tag' : 'branch',
    ref_protected: 'true',
    sha: overrides.sha ?? sha,
    workflow: 'release',
    workflow_ref: workflowRef,
    job_workflow_ref: workflowRef,
    job_workflow_sha: overrides.sha ?? sha,
    event_name: 'push',
    actor: 'dev',
    actor_id: '1',
    run_id: String(now),
    run_attempt: '1',
    runner_environment: 'github-hosted',
  };
  // Overrides win, registered claims included (tests mint expired or foreign tokens this way).
  for (const [name, value] of Object.entries(overrides)) {
    payload[name] = ['exp', 'nbf', 'iat'].includes(name) && /^\d+$/.test(value) ? Number(value) : value;
  }
  return new SignJWT(payload).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid }).sign(key);
}
