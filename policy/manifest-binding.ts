/**
 * Manifest binding: when a request carries the release manifest itself (an in-toto
 * Statement, https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md),
 * a policy can require that the source it names is the source the CI token vouches
 * for: same repository, same commit. Pure; the payload is untrusted input.
 *
 * Where the source is read from, in order:
 *   - Signet's release-manifest predicate: `predicate.source.repository` and
 *     `predicate.source.commit`;
 *   - SLSA provenance v1: `predicate.buildDefinition.resolvedDependencies[0]`, its
 *     `uri` (`git+https://host/owner/repo@ref`) and `digest.gitCommit` (or `sha1`).
 */
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const SIGNET_MANIFEST_PREDICATE = 'https://signet.dev/release-manifest/v1';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';

export interface ManifestSource {
  /** `owner/repo` (or a GitLab `group/project` path), without host or scheme. */
  readonly repository: string | undefined;
  /** Lowercase hex commit id. */
  readonly commit: string | undefined;
}

export type ManifestReading = { readonly ok: true; readonly source: ManifestSource } | { readonly ok: false; readonly problem: string };

const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function repositoryFromUri(uri: string): string | undefined {
  // git+https://github.com/owner/repo@refs/heads/main → owner/repo
  const match = /^(?:git\+)?https:\/\/[^/]+\/(.+?)(?:\.git)?(?:@.*)?$/.exec(uri);
  return match?.[1];
}

function text(value: unknown, max = 512): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= max ? value : undefined;
}

/** Reads the source a manifest names. Never throws on bad input: it says what is wrong. */
export function readManifestSource(payload: Buffer): ManifestReading {
  if (payload.length > MAX_MANIFEST_BYTES) return { ok: false, problem: 'the manifest is too large' };
  let statement: unknown;
  try {
    statement = JSON.parse(payload.toString('utf8'));
  } catch {
    return { ok: false, problem: 'the manifest is not JSON' };
  }
  if (!isRecord(statement) || statement._type !== IN_TOTO_STATEMENT_V1) {
    return { ok: false, problem: `the manifest is not an in-toto Statement (_type ${IN_TOTO_STATEMENT_V1})` };
  }
  const predicate = statement.predicate;
  if (!isRecord(predicate)) return { ok: false, problem: 'the manifest has no predicate' };
  if (statement.predicateType === SIGNET_MANIFEST_PREDICATE) {
    const source = isRecord(predicate.source) ? predicate.source : {};
    return { ok: true, source: { repository: text(source.repository), commit: text(source.commit, 64)?.toLowerCase() } };
  }
  if (statement.predicateType === SLSA_PROVENANCE_V1) {
    const definition = isRecord(predicate.buildDefinition) ? predicate.buildDefinition : {};
    const dependencies = Array.isArray(definition.resolvedDependencies) ? (definition.resolvedDependencies as unknown[]) : [];
    const first = dependencies[0];
    if (!isRecord(first)) return { ok: true, source: { repository: undefined, commit: undefined } };
    const digest = isRecord(first.digest) ? first.digest : {};
    const uri = text(first.uri, 2048);
    return {
      ok: true,
      source: { repository: uri === undefined ? undefined : repositoryFromUri(uri), commit: (text(digest.gitCommit, 64) ?? text(digest.sha1, 64))?.toLowerCase() },
    };
  }
  return { ok: false, problem: 'the manifest predicate type is not one Signet reads for source binding' };
}

/** The repository and commit a verified token vouches for (GitHub Actions and GitLab CI claim names). */
export function tokenSource(claims: Readonly<Record<string, unknown>>): ManifestSource {
  return {
    repository: text(claims.repository) ?? text(claims.project_path),
    commit: text(claims.sha, 64)?.toLowerCase(),
  };
}
