/**
 * Artifacts against the manifest: every artifact given must be a subject of the
 * manifest with the same size, SHA-256 and SHA-512 (in-toto DigestSet; the manifest
 * schema requires both, and both are compared: the bytes are read once for the two).
 * For a whole release directory every subject must also be present, so a release
 * cannot lose a file unnoticed.
 *
 * Pure. The caller hashes files as it streams them (large releases never sit in
 * memory) or passes bytes, which are hashed here.
 */
import { createHash } from 'node:crypto';
import type { ReleaseArtifact, ReleaseManifest } from '../manifest/schema.js';
import { quoted, refuse } from './result.js';

/** An artifact hashed by the caller (hex digests). */
export interface HashedArtifactInput {
  readonly name: string;
  readonly size: number;
  readonly sha256: string;
  readonly sha512: string;
}

/** An artifact as bytes, hashed here. */
export interface ArtifactBytesInput {
  readonly name: string;
  readonly bytes: Uint8Array;
}

export type ArtifactInput = HashedArtifactInput | ArtifactBytesInput;

export interface ArtifactCheckOptions {
  /**
   * `directory`: the artifacts are a whole release directory, named by their relative
   * paths; every subject of the manifest must be among them.
   * `files`: artifacts named one by one (by base name); each must be in the manifest,
   * found by its name or, failing that, by a unique subject whose last path segment it is.
   */
  readonly mode: 'directory' | 'files';
}

function hashed(artifact: ArtifactInput): HashedArtifactInput {
  if ('bytes' in artifact) {
    const bytes = artifact.bytes;
    return {
      name: artifact.name,
      size: bytes.byteLength,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      sha512: createHash('sha512').update(bytes).digest('hex'),
    };
  }
  return artifact;
}

function lastSegment(name: string): string {
  return name.slice(name.lastIndexOf('/') + 1);
}

/** Matches each artifact to its subject; refuses (class artifact-not-in-manifest) an unlisted or missing one. */
export function matchArtifacts(manifest: ReleaseManifest, names: readonly string[], options: ArtifactCheckOptions): ReleaseArtifact[] {
  if (names.length === 0) throw refuse('artifact-not-in-manifest', 'ARTIFACT_MISSING', 'no artifact was given to verify');
  const byName = new Map(manifest.subject.map((subject) => [subject.name, subject]));
  const matched: ReleaseArtifact[] = [];
  const seen = new Set<string>();
  for (const name of names) {
    let subject = byName.get(name);
    if (subject === undefined && options.mode === 'files') {
      const candidates = manifest.subject.filter((s) => lastSegment(s.name) === name);
      if (candidates.length === 1) subject = candidates[0];
    }
    if (subject === undefined) {
      throw refuse('artifact-not-in-manifest', 'ARTIFACT_NOT_IN_MANIFEST', `artifact ${quoted(name)} is not listed in the signed manifest`);
    }
    if (seen.has(subject.name)) {
      throw refuse('artifact-not-in-manifest', 'ARTIFACT_DUPLICATE', `two artifacts given match manifest entry ${quoted(subject.name)}`);
    }
    seen.add(subject.name);
    matched.push(subject);
  }
  if (options.mode === 'directory') {
    const missing = manifest.subject.find((subject) => !seen.has(subject.name));
    if (missing !== undefined) {
      throw refuse('artifact-not-in-manifest', 'ARTIFACT_MISSING', `artifact ${quoted(missing.name)} of the signed manifest is missing from the release directory`);
    }
  }
  return matched;
}

/**
 * Checks every artifact against the manifest; returns what was checked. Membership is
 * checked for all artifacts before any digest, so an unlisted file is reported as such
 * even if a listed one also changed.
 */
export function checkArtifacts(
  manifest: ReleaseManifest,
  artifacts: readonly ArtifactInput[],
  options: ArtifactCheckOptions,
): { name: string; sha256: string }[] {
  const subjects = matchArtifacts(
    manifest,
    artifacts.map((a) => a.name),
    options,
  );
  return artifacts.map((artifact, i) => {
    const subject = subjects[i];
    if (subject === undefined) throw new TypeError('matchArtifacts returned fewer subjects than artifacts');
    const actual = hashed(artifact);
    const sameDigests = actual.sha256 === subject.digest.sha256 && actual.sha512 === subject.digest.sha512;
    if (!sameDigests) {
      throw refuse('artifact-modified', 'ARTIFACT_MODIFIED', `artifact ${quoted(subject.name)} differs from the signed manifest (its SHA-256 is ${actual.sha256}, the manifest records ${subject.digest.sha256})`);
    }
    // Same digests with another size cannot happen for real bytes; a caller's size is checked anyway.
    if (actual.size !== subject.annotations.size) {
      throw refuse('artifact-modified', 'ARTIFACT_MODIFIED', `artifact ${quoted(subject.name)} is ${actual.size} bytes, the signed manifest records ${subject.annotations.size}`);
    }
    return { name: subject.name, sha256: actual.sha256 };
  });
}
