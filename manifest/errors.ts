/** Errors of the release manifest area: reading, validating and creating manifests. */
import { SignetError } from '../errors/signet-error.js';

export type ManifestErrorCode =
  /** The document is not JSON, or not a Signet release manifest (every bad field is listed). */
  | 'MANIFEST_INVALID'
  /** The manifest would exceed what the service accepts as a payload. */
  | 'MANIFEST_TOO_LARGE'
  /** Neither the CI environment nor the options say which source (repository, commit) was built. */
  | 'MANIFEST_SOURCE_MISSING'
  /** An option or environment value has the wrong form (version, image digest, toolchain, …). */
  | 'MANIFEST_INPUT_INVALID'
  /** An artifact cannot be read, is not a regular file, or its name is not a safe relative path. */
  | 'ARTIFACT_UNREADABLE'
  | 'ARTIFACT_NAME_INVALID'
  | 'ARTIFACT_DUPLICATE'
  | 'ARTIFACTS_MISSING';

export class ManifestError extends SignetError<ManifestErrorCode> {
  readonly problems: readonly string[];

  constructor(code: ManifestErrorCode, message: string, problems: readonly string[] = [], options?: { cause?: unknown }) {
    super(code, problems.length > 0 ? `${message}\n  - ${problems.join('\n  - ')}` : message, options);
    this.problems = problems;
  }
}
