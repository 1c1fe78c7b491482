/**
 * What `signet verify` answers: verified, or refused with a failure class (which fixes
 * the exit status a deployment gate branches on), a stable code (what tests and
 * scripts match) and a one-line reason (what people read).
 *
 * The classes and their exit statuses are a public interface
 * (examples/ci/deploy-gate.sh): never renumber them.
 */

export const FAILURE_CLASSES = {
  /** Unreadable or malformed input that says nothing about the release itself (a file, the trust bundle, the receipt). */
  'input-invalid': 1,
  /** An artifact's bytes differ from what the manifest records. */
  'artifact-modified': 3,
  /** An artifact is not listed in the manifest, or a listed one is missing from the release directory. */
  'artifact-not-in-manifest': 4,
  /** The manifest is malformed, or the signature does not verify over it. */
  'signature-invalid': 5,
  /** The signing key does not chain to the trust bundle's roots (or the trust bundle is not the pinned one). */
  'untrusted-key': 6,
  /** The key (or its certificate) was not valid, or not in a state that may sign, at the log time. */
  'key-not-valid': 7,
  /** The log entry, its inclusion proof or the receipt around them do not match the signed tree. */
  'inclusion-proof-mismatch': 8,
  /** The checkpoint (or the inclusion promise) is not signed by the trust bundle's log key for its origin. */
  'checkpoint-invalid': 9,
  /** The logged pipeline identity is not the one required, or cannot be checked. */
  'identity-mismatch': 10,
} as const;

export type FailureClass = keyof typeof FAILURE_CLASSES;

/** Exit status of a usage mistake (bad or missing options), as for every `signet` command. */
export const USAGE_EXIT_CODE = 2;

export interface VerificationFailure {
  readonly ok: false;
  readonly class: FailureClass;
  readonly exitCode: number;
  readonly code: string;
  /** One line, for people; safe to print (no control characters). */
  readonly reason: string;
}

/** Where the log time used for the key's validity came from, strongest first. */
export type LogTimeSource =
  /** The logged decision entry (proven in the same tree) carries the same second. */
  | 'decision-entry'
  /** The log key signed it in the entry's inclusion promise (SET). */
  | 'inclusion-promise'
  /** Only the receipt states it: nothing in the log signs it (a warning says so). */
  | 'receipt';

/** Where the OpenPGP public key that checked a `pgp` signature came from. */
export type OpenPgpKeySource =
  /** The trust bundle's key entry carries the armored OpenPGP key (`pgpPublicKey`). */
  | 'trust-bundle'
  /** Built from the leaf certificate's public key and the key's creation time in the trust bundle. */
  | 'leaf-certificate';

export interface LoggedIdentity {
  readonly issuer: string;
  readonly subject: string;
  readonly claims: Readonly<Record<string, string>>;
}

export interface VerifiedRelease {
  readonly ok: true;
  readonly exitCode: 0;
  readonly code: 'VERIFIED';
  readonly reason: string;
  readonly format: string;
  readonly keyId: string;
  /** Serial number (hex) of the leaf certificate that chained to the trust bundle. */
  readonly certificateSerialNumber: string;
  readonly log: {
    readonly index: number;
    readonly treeSize: number;
    readonly integratedTime: number;
    /** integratedTime as RFC 3339. */
    readonly loggedAt: string;
    readonly timeSource: LogTimeSource;
  };
  /** The identity in the logged decision entry, when the receipt carries it. */
  readonly identity: LoggedIdentity | null;
  readonly artifacts: readonly { readonly name: string; readonly sha256: string }[];
  /** For `pgp` only. */
  readonly openPgpKeySource?: OpenPgpKeySource;
  /** Checks that could not be made as strongly as they should (the release still verified). */
  readonly warnings: readonly string[];
}

export type VerifyResult = VerifiedRelease | VerificationFailure;

/** Thrown inside the verifier and turned into a VerificationFailure at its edge. */
export class VerificationRefusal extends Error {
  constructor(
    readonly failureClass: FailureClass,
    readonly code: string,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'VerificationRefusal';
  }
}

export function refuse(failureClass: FailureClass, code: string, reason: string): VerificationRefusal {
  return new VerificationRefusal(failureClass, code, reason);
}

export function failure(failureClass: FailureClass, code: string, reason: string): VerificationFailure {
  return { ok: false, class: failureClass, exitCode: FAILURE_CLASSES[failureClass], code, reason: oneLine(reason) };
}

/**
 * A value from the inputs, quoted for a reason: JSON string escaping shows control
 * characters instead of printing them, and long values are cut.
 */
export function quoted(value: string, max = 200): string {
  const cut = value.length > max ? `${value.slice(0, max)}…` : value;
  return JSON.stringify(cut);
}

function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what it removes
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
}
