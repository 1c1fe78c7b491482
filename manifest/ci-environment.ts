/**
 * What the CI platform says about a build, read from its environment variables. Pure:
 * it is given the environment, so tests pass exactly the variables a runner sets.
 *
 * - GitHub Actions (GITHUB_ACTIONS=true), variables documented at
 *   https://docs.github.com/en/actions/reference/variables-reference: GITHUB_SERVER_URL,
 *   GITHUB_REPOSITORY, GITHUB_SHA, GITHUB_REF, GITHUB_WORKFLOW_REF, GITHUB_RUN_ID,
 *   GITHUB_RUN_ATTEMPT, GITHUB_EVENT_NAME, RUNNER_OS, RUNNER_ARCH, RUNNER_NAME,
 *   RUNNER_ENVIRONMENT, and the runner image (ImageOS, ImageVersion).
 * - GitLab CI (GITLAB_CI=true), https://docs.gitlab.com/ci/variables/predefined_variables/:
 *   CI_SERVER_URL, CI_PROJECT_PATH, CI_PROJECT_URL, CI_COMMIT_SHA, CI_COMMIT_TAG,
 *   CI_COMMIT_BRANCH, CI_COMMIT_REF_NAME, CI_CONFIG_PATH, CI_JOB_URL, CI_PIPELINE_SOURCE,
 *   CI_RUNNER_ID, CI_RUNNER_DESCRIPTION, CI_RUNNER_VERSION, CI_RUNNER_EXECUTABLE_ARCH,
 *   CI_JOB_IMAGE (recorded only when pinned by digest).
 * - Anywhere else, or to override what the platform says: explicit options.
 *
 * The repository it reports is what the CI token vouches for (`repository` on GitHub,
 * `project_path` on GitLab), so the policy's manifest binding can compare the two.
 */
import { ManifestError } from './errors.js';

export type Environment = Readonly<Record<string, string | undefined>>;

export type CiPlatform = 'github-actions' | 'gitlab-ci' | 'other';

export interface BuildSource {
  /** https URL of the repository, without `.git`. */
  readonly repositoryUrl: string;
  /** The repository path as CI tokens name it: `owner/repo` or `group/subgroup/project`. */
  readonly repository: string;
  /** Full git ref (`refs/heads/main`, `refs/tags/v1.2.0`), when known. */
  readonly ref: string | undefined;
  readonly commit: string;
}

export interface ContainerImageRef {
  readonly uri: string;
  readonly sha256: string;
}

export interface BuildContext {
  readonly platform: CiPlatform;
  readonly source: BuildSource;
  readonly builderId: string;
  readonly invocationId: string | undefined;
  readonly event: string | undefined;
  readonly workflow: { readonly repository: string; readonly path: string; readonly ref: string | undefined } | undefined;
  readonly runner:
    | {
        readonly os?: string;
        readonly arch?: string;
        readonly name?: string;
        readonly environment?: string;
        readonly image?: string;
        readonly version?: string;
      }
    | undefined;
  /** Images the platform itself reports with a digest (GitLab CI_JOB_IMAGE@sha256:…). */
  readonly containerImages: readonly ContainerImageRef[];
}

/** Values given on the command line; each one wins over what the environment says. */
export interface BuildContextOverrides {
  /** https URL of the source repository (`https://host/owner/repo`). */
  readonly sourceRepository?: string | undefined;
  readonly commit?: string | undefined;
  readonly ref?: string | undefined;
  readonly builderId?: string | undefined;
}

function value(env: Environment, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function compact<T extends Record<string, string | undefined>>(record: T): { [K in keyof T]?: string } | undefined {
  const entries = Object.entries(record).filter(([, v]) => v !== undefined);
  return entries.length === 0 ? undefined : (Object.fromEntries(entries) as { [K in keyof T]?: string });
}

export function detectPlatform(env: Environment): CiPlatform {
  if (env.GITHUB_ACTIONS === 'true') return 'github-actions';
  if (env.GITLAB_CI === 'true') return 'gitlab-ci';
  return 'other';
}

/** `https://host/owner/repo(.git)` → its path without `.git`; undefined when not an https URL with a path. */
export function repositoryPathOf(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'https:' || parsed.username !== '' || parsed.password !== '' || parsed.search !== '' || parsed.hash !== '') return undefined;
  const path = parsed.pathname.replace(/^\/+/, '').replace(/\/+$/, '').replace(/\.git$/, '');
  return path === '' || path.includes('@') ? undefined : path;
}

/** Parses an image reference pinned by digest: `registry/name[:tag]@sha256:<64 hex>`. */
export function parseContainerImage(reference: string): ContainerImageRef | undefined {
  const match = /^([^\s@]+)@sha256:([0-9a-f]{64})$/.exec(reference.trim());
  if (match === null) return undefined;
  return { uri: match[1] ?? '', sha256: match[2] ?? '' };
}

interface PlatformReading {
  readonly repositoryUrl: string | undefined;
  readonly commit: string | undefined;
  readonly ref: string | undefined;
  readonly builderId: string | undefined;
  readonly invocationId: string | undefined;
  readonly event: string | undefined;
  readonly workflow: BuildContext['workflow'];
  readonly runner: BuildContext['runner'];
  readonly containerImages: readonly ContainerImageRef[];
}

function readGitHub(env: Environment): PlatformReading {
  const server = (value(env, 'GITHUB_SERVER_URL') ?? 'https://github.com').replace(/\/+$/, '');
  const repository = value(env, 'GITHUB_REPOSITORY');
  const workflowRef = value(env, 'GITHUB_WORKFLOW_REF');
  const runId = value(env, 'GITHUB_RUN_ID');
  let workflow: BuildContext['workflow'];
  if (workflowRef !== undefined) {
    // owner/repo/.github/workflows/release.yml@refs/heads/main
    const at = workflowRef.lastIndexOf('@');
    const location = at < 0 ? workflowRef : workflowRef.slice(0, at);
    const segments = location.split('/');
    if (segments.length > 2) {
      workflow = { repository: segments.slice(0, 2).join('/'), path: segments.slice(2).join('/'), ref: at < 0 ? undefined : workflowRef.slice(at + 1) };
    }
  }
  const imageOs = value(env, 'ImageOS');
  const imageVersion = value(env, 'ImageVersion');
  return {
    repositoryUrl: repository === undefined ? undefined : `${server}/${repository}`,
    commit: value(env, 'GITHUB_SHA'),
    ref: value(env, 'GITHUB_REF'),
    // The workflow file at its ref is what a GitHub Actions id token names in
    // `job_workflow_ref`: the identity a verifier will require.
    builderId: workflowRef !== undefined ? `${server}/${workflowRef}` : repository === undefined ? undefined : `${server}/${repository}/actions`,
    invocationId:
      repository !== undefined && runId !== undefined ? `${server}/${repository}/actions/runs/${runId}/attempts/${value(env, 'GITHUB_RUN_ATTEMPT') ?? '1'}` : undefined,
    event: value(env, 'GITHUB_EVENT_NAME'),
    workflow,
    runner: compact({
      os: value(env, 'RUNNER_OS'),
      arch: value(env, 'RUNNER_ARCH'),
      name: value(env, 'RUNNER_NAME'),
      environment: value(env, 'RUNNER_ENVIRONMENT'),
      image: imageOs !== undefined && imageVersion !== undefined ? `${imageOs}/${imageVersion}` : undefined,
    }),
    containerImages: [],
  };
}

function readGitLab(env: Environment): PlatformReading {
  const server = value(env, 'CI_SERVER_URL')?.replace(/\/+$/, '');
  const project = value(env, 'CI_PROJECT_PATH');
  const projectUrl = value(env, 'CI_PROJECT_URL') ?? (server !== undefined && project !== undefined ? `${server}/${project}` : undefined);
  const tag = value(env, 'CI_COMMIT_TAG');
  const branch = value(env, 'CI_COMMIT_BRANCH') ?? value(env, 'CI_COMMIT_REF_NAME');
  const ref = tag !== undefined ? `refs/tags/${tag}` : branch !== undefined ? `refs/heads/${branch}` : undefined;
  const runnerId = value(env, 'CI_RUNNER_ID');
  const jobImage = value(env, 'CI_JOB_IMAGE');
  const pinned = jobImage === undefined ? undefined : parseContainerImage(jobImage);
  return {
    repositoryUrl: projectUrl,
    commit: value(env, 'CI_COMMIT_SHA'),
    ref,
    builderId: projectUrl === undefined ? undefined : runnerId !== undefined ? `${projectUrl}/-/runners/${runnerId}` : `${projectUrl}/-/pipelines`,
    invocationId: value(env, 'CI_JOB_URL'),
    event: value(env, 'CI_PIPELINE_SOURCE'),
    workflow: project === undefined ? undefined : { repository: project, path: value(env, 'CI_CONFIG_PATH') ?? '.gitlab-ci.yml', ref },
    runner: compact({
      arch: value(env, 'CI_RUNNER_EXECUTABLE_ARCH'),
      name: value(env, 'CI_RUNNER_DESCRIPTION'),
      version: value(env, 'CI_RUNNER_VERSION'),
    }),
    containerImages: pinned === undefined ? [] : [pinned],
  };
}

const NOTHING: PlatformReading = {
  repositoryUrl: undefined,
  commit: undefined,
  ref: undefined,
  builderId: undefined,
  invocationId: undefined,
  event: undefined,
  workflow: undefined,
  runner: undefined,
  containerImages: [],
};

/**
 * The build context from the CI environment and the overrides. Fails closed with every
 * missing or malformed value listed: a manifest must name the source it was built from.
 */
export function readBuildContext(env: Environment, overrides: BuildContextOverrides = {}): BuildContext {
  const platform = detectPlatform(env);
  const reading = platform === 'github-actions' ? readGitHub(env) : platform === 'gitlab-ci' ? readGitLab(env) : NOTHING;
  const repositoryUrl = (overrides.sourceRepository ?? reading.repositoryUrl)?.replace(/\/+$/, '').replace(/\.git$/, '');
  const commit = (overrides.commit ?? reading.commit)?.toLowerCase();
  const ref = overrides.ref ?? reading.ref;
  const repository = repositoryUrl === undefined ? undefined : repositoryPathOf(repositoryUrl);
  const builderId = overrides.builderId ?? reading.builderId ?? (repositoryUrl === undefined ? undefined : `${repositoryUrl}/local-build`);

  const problems: string[] = [];
  const where = platform === 'other' ? 'no CI platform detected (GITHUB_ACTIONS or GITLAB_CI); ' : '';
  if (repositoryUrl === undefined) problems.push(`${where}the source repository is unknown: give --source-repository https://host/owner/repo`);
  else if (repository === undefined) problems.push('the source repository must be an https URL such as https://github.com/owner/repo');
  if (commit === undefined) problems.push(`${where}the source commit is unknown: give --commit <sha>`);
  else if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(commit)) problems.push('the source commit must be 40 or 64 hex digits');
  if (ref !== undefined && (/\s|@/.test(ref) || ref.length > 1024)) problems.push('the source ref must have no spaces and no "@"');
  if (builderId !== undefined && !/^https:\/\/\S+$/.test(builderId)) problems.push('the builder id must be an https URI');
  if (problems.length > 0 || repositoryUrl === undefined || repository === undefined || commit === undefined || builderId === undefined) {
    throw new ManifestError(problems.some((p) => p.includes('unknown')) ? 'MANIFEST_SOURCE_MISSING' : 'MANIFEST_INPUT_INVALID', 'cannot tell which source was built', problems);
  }
  return {
    platform,
    source: { repositoryUrl, repository, ref, commit },
    builderId,
    invocationId: reading.invocationId,
    event: reading.event,
    workflow: reading.workflow,
    runner: reading.runner,
    containerImages: reading.containerImages,
  };
}
