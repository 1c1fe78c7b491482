/**
 * Releases to verify, made for real: `signet init` (SoftHSM token, code-signing CA,
 * SQLite), extra signing keys of every algorithm made with `signet keys create` (each
 * gets its certificate from the real intermediate), and the running service, whose
 * trust bundle (GET /v1/trust) is what releases are verified against.
 *
 * Two ways to get a release:
 * - `signedByService`: `POST /v1/sign` in any format, the manifest sent as payload (or
 *   its digest); the receipt is the answer and the signature file what `signet sign`
 *   writes for the format (the envelope or bundle JSON for dsse and sigstore-bundle,
 *   the signature bytes otherwise).
 * - `release(format, …)`: the envelope is assembled by the builders in formats/ around
 *   a signature the HSM makes with the release key (service.hsm), and logged in a small
 *   tree of its own whose checkpoint and inclusion promise the real log key signs in
 *   the HSM. The tree is computed with the RFC 6962 reference (test/log/reference.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrustBundle } from '../../ca/trust-bundle.js';
import { buildDetachedCms } from '../../formats/cms.js';
import { buildDsseEnvelope, DSSE_IN_TOTO_PAYLOAD_TYPE, preAuthenticationEncoding } from '../../formats/dsse.js';
import { dsseRekordLeaf } from '../../formats/rekor-dsse.js';
import { buildSigstoreBundle } from '../../formats/sigstore-bundle.js';
import { dsseSigningHash } from '../../formats/support.js';
import { canonicalJson } from '../../log/canonical-json.js';
import { signCheckpoint } from '../../log/checkpoint.js';
import { decisionLeaf, envelopeSignatureLeaf, hashedRekordLeaf, type DecisionEntry } from '../../log/entries.js';
import type { LogReceipt } from '../../log/transparency-log.js';
import type { BuildContext } from '../../manifest/ci-environment.js';
import { buildReleaseManifest, serializeReleaseManifest, type HashedArtifact } from '../../manifest/create.js';
import type { DigestAlgorithm, KeyAlgorithm } from '../../signer/algorithms.js';
import type { SignatureFormat } from '../../signer/formats.js';
import { detachedSignature } from '../../signer/openpgp/openpgp-key.js';
import type { HsmKeyRef } from '../../signer/types.js';
import { openStore } from '../../store/open-store.js';
import type { KeyVersionRecord } from '../../store/store.js';
import type { IdentityConstraints } from '../../verify/identity.js';
import type { VerifyResult } from '../../verify/result.js';
import { verifyRelease } from '../../verify/verify-release.js';
import { runCli } from '../helpers/cli.js';
import { createDevEnvironment, devClientTls, devToken, httpsCall, startDevService, type DevEnvironment, type StartedService } from '../helpers/dev-env.js';
import { mth, path as auditPath } from '../log/reference.js';

export const COMMIT = '4c1e0b1d9a7f3e2b6c5d8e9f0a1b2c3d4e5f6a7b';

/** What a GitHub Actions release run of example/demo logs as its identity (policy/oidc/presets.ts summary claims). */
export const GITHUB_CLAIMS: Readonly<Record<string, string>> = {
  iss: 'https://dev-issuer.signet.invalid',
  sub: 'repo:example/demo:ref:refs/tags/v1.2.0',
  repository: 'example/demo',
  repository_id: '100001',
  ref: 'refs/tags/v1.2.0',
  sha: COMMIT,
  job_workflow_ref: 'example/demo/.github/workflows/release.yml@refs/tags/v1.2.0',
  runner_environment: 'github-hosted',
  event_name: 'push',
};

export interface Artifact {
  readonly name: string;
  readonly bytes: Buffer;
}

/** A release as a verifier receives it; tests tamper with copies. */
export interface Release {
  readonly artifacts: Artifact[];
  readonly manifest: Buffer;
  readonly signature: Buffer;
  /** The receipt JSON (as `signet sign` writes it). */
  readonly receipt: any;
  readonly trustBundle: any;
}

export interface ReleaseOptions {
  /** Key name (default demo-release, ecdsa-p256). */
  readonly key?: string;
  readonly claims?: Readonly<Record<string, string>>;
  /** Put the signature entry's leaf in the receipt (log.leaf); default true. */
  readonly withLeaf?: boolean;
  /** Put the decision entry in the receipt (log.decision); default true. */
  readonly withDecision?: boolean;
  /** The log's integrated time (seconds); default now. */
  readonly integratedTime?: number;
  readonly digestAlgorithm?: DigestAlgorithm;
  /** For sigstore-bundle: a message signature (default) or a DSSE envelope. */
  readonly sigstoreContent?: 'message-signature' | 'dsse';
  readonly artifacts?: Artifact[];
  /** Changes to the logged decision entry (what a tampered or foreign decision would say). */
  readonly decision?: Partial<DecisionEntry>;
}

const KEYS: readonly { name: string; algorithm: KeyAlgorithm }[] = [
  { name: 'release-p384', algorithm: 'ecdsa-p384' },
  { name: 'release-ed25519', algorithm: 'ed25519' },
  { name: 'release-rsa', algorithm: 'rsa-pss-3072' },
];

export function defaultArtifacts(): Artifact[] {
  return [
    { name: 'app.tar.gz', bytes: randomBytes(4096) },
    { name: 'docs/manual.pdf', bytes: randomBytes(1000) },
    { name: 'checksums.txt', bytes: Buffer.from('hello\n') },
  ];
}

export function manifestOf(artifacts: readonly Artifact[]): Buffer {
  return manifestOfHashed(
    artifacts.map((a) => ({
      name: a.name,
      size: a.bytes.length,
      sha256: createHash('sha256').update(a.bytes).digest('hex'),
      sha512: createHash('sha512').update(a.bytes).digest('hex'),
    })),
  );
}

export function manifestOfHashed(artifacts: readonly HashedArtifact[]): Buffer {
  const context: BuildContext = {
    platform: 'github-actions',
    source: { repositoryUrl: 'https://github.com/example/demo', repository: 'example/demo', ref: 'refs/tags/v1.2.0', commit: COMMIT },
    builderId: 'https://github.com/example/demo/.github/workflows/release.yml@refs/tags/v1.2.0',
    invocationId: undefined,
    event: 'push',
    workflow: undefined,
    runner: undefined,
    containerImages: [],
  };
  const manifest = buildReleaseManifest({
    artifacts,
    version: '1.2.0',
    buildCommand: 'make dist',
    context,
    toolchains: { node: '20.19.0' },
    containerImages: [],
  });
  return serializeReleaseManifest(manifest);
}

export function copy<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

export function verify(release: Release, options: { identity?: IdentityConstraints; mode?: 'directory' | 'files'; artifacts?: Artifact[] } = {}): Promise<VerifyResult> {
  return verifyRelease({
    manifest: release.manifest,
    signature: release.signature,
    receipt: Buffer.from(JSON.stringify(release.receipt)),
    trustBundle: release.trustBundle,
    artifacts: (options.artifacts ?? release.artifacts).map((a) => ({ name: a.name, bytes: a.bytes })),
    artifactMode: options.mode ?? 'directory',
    ...(options.identity === undefined ? {} : { identity: options.identity }),
  });
}

const sha256 = (bytes: Buffer | string): Buffer => createHash('sha256').update(bytes).digest();

export class VerifyFixture {
  private constructor(
    readonly env: DevEnvironment,
    readonly service: StartedService,
    readonly keys: readonly KeyVersionRecord[],
    readonly trust: TrustBundle,
  ) {}

  /** `extraKeys`: also make the p384, Ed25519 and RSA-PSS release keys (slower). */
  static async start(options: { extraKeys?: boolean } = {}): Promise<VerifyFixture> {
    const env = await createDevEnvironment();
    for (const key of options.extraKeys === true ? KEYS : []) {
      const created = await runCli(['keys', 'create', '--config', env.init.config, '--name', key.name, '--algorithm', key.algorithm, '--json']);
      if (created.code !== 0) throw new Error(`keys create failed: ${created.stderr}`);
    }
    const store = await openStore({ driver: 'sqlite', sqlite: { path: env.init.database } });
    const keys = await store.keys.list();
    await store.close();
    const service = await startDevService(env);
    const trust = (await httpsCall(`${service.url}/v1/trust`, { ca: readFileSync(env.init.caCert) })).json as TrustBundle;
    return new VerifyFixture(env, service, keys, trust);
  }

  async stop(): Promise<void> {
    await this.service.stop();
  }

  trustBundle(): any {
    return copy(this.trust);
  }

  get url(): string {
    return this.service.url;
  }

  private record(name: string): KeyVersionRecord {
    const key = this.keys.find((k) => k.name === name && k.state === 'active');
    if (key === undefined) throw new Error(`no active key ${name}`);
    return key;
  }

  private ref(key: KeyVersionRecord): HsmKeyRef {
    return { hsmKeyId: key.hsmKeyId, algorithm: key.algorithm };
  }

  /** The key's certificate and the intermediate and root that issued it, from the trust bundle. */
  chainOf(keyId: string): string[] {
    const entry = this.trust.keys.find((k) => k.keyId === keyId);
    const leaf = entry?.certificatePem;
    const intermediate = this.trust.intermediates.find((ca) => ca.status === 'active');
    const root = this.trust.roots[0];
    if (leaf === undefined || leaf === null || intermediate === undefined || root === undefined) throw new Error(`no chain for ${keyId}`);
    return [leaf, intermediate.certificatePem, root.certificatePem];
  }

  /** Signs `digest` with the log key in the HSM (checkpoints and inclusion promises). */
  private signWithLogKey = (digest: Buffer): Promise<Buffer> => this.service.hsm.signDigest(this.ref(this.record('signet-log')), { algorithm: 'sha256', value: digest });

  /** POST /v1/sign with the manifest as payload, as `signet sign --payload` does; the receipt is what it writes. */
  async signedByService(
    options: { format?: SignatureFormat; send?: 'payload' | 'digest'; artifacts?: Artifact[]; claims?: Record<string, string>; withDecision?: boolean } = {},
  ): Promise<Release> {
    const artifacts = options.artifacts ?? defaultArtifacts();
    const manifest = manifestOf(artifacts);
    const { signature, receipt } = await this.signManifest(manifest, { claims: options.claims ?? {}, format: options.format ?? 'raw', send: options.send ?? 'payload' });
    if (options.withDecision === false) delete receipt.log.decision;
    return { artifacts, manifest, signature, receipt, trustBundle: this.trustBundle() };
  }

  /** The signature file and receipt of a manifest, from POST /v1/sign. */
  async signManifest(
    manifest: Buffer,
    options: { claims?: Record<string, string>; format?: SignatureFormat; send?: 'payload' | 'digest' } = {},
  ): Promise<{ signature: Buffer; receipt: any }> {
    const format = options.format ?? 'raw';
    const tls = devClientTls(this.env);
    const token = await devToken(this.env, options.claims ?? {});
    const subject =
      options.send === 'digest'
        ? { digest: { algorithm: 'sha256', value: createHash('sha256').update(manifest).digest('hex') } }
        : { payload: manifest.toString('base64'), digest: { algorithm: 'sha256' } };
    const answer = await httpsCall(`${this.url}/v1/sign`, {
      ...tls,
      json: { project: this.env.init.project, format, ...subject },
      headers: { authorization: `Bearer ${token}` },
    });
    if (answer.status !== 200) throw new Error(`sign failed: ${answer.text}`);
    const receipt = { artifact: { name: 'manifest.intoto.json', digest: { algorithm: 'sha256' } }, ...answer.json };
    const signature =
      format === 'dsse'
        ? Buffer.from(JSON.stringify(answer.json.envelope))
        : format === 'sigstore-bundle'
          ? Buffer.from(JSON.stringify(answer.json.bundle))
          : Buffer.from(answer.json.signature as string, 'base64');
    return { signature, receipt };
  }

  /** The decision entry of a receipt, read from the log as a verifier with network access could. */
  async decisionFromLog(log: { decisionIndex: number; treeSize: number }): Promise<{ index: number; leaf: string; inclusionProof: string[] }> {
    const ca = readFileSync(this.env.init.caCert);
    const entry = await httpsCall(`${this.url}/v1/log/entries/${log.decisionIndex}`, { ca });
    const proof = await httpsCall(`${this.url}/v1/log/proof/inclusion?index=${log.decisionIndex}&treeSize=${log.treeSize}`, { ca });
    if (entry.status !== 200 || proof.status !== 200) throw new Error('cannot read the decision entry');
    return { index: log.decisionIndex, leaf: entry.json.leaf, inclusionProof: proof.json.hashes };
  }

  /** A release in any format, signed in the HSM with a real key and logged in a tree signed by the real log key. */
  async release(format: SignatureFormat, options: ReleaseOptions = {}): Promise<Release> {
    const key = this.record(options.key ?? 'demo-release');
    const hsmKey = this.ref(key);
    const [leafPem, intermediatePem] = this.chainOf(key.keyId);
    if (leafPem === undefined || intermediatePem === undefined) throw new Error('no chain');
    const artifacts = options.artifacts ?? defaultArtifacts();
    const manifest = manifestOf(artifacts);
    const digestAlgorithm = options.digestAlgorithm ?? 'sha256';
    const digest = createHash(digestAlgorithm).update(manifest).digest();
    const integratedTime = options.integratedTime ?? Math.floor(Date.now() / 1000);
    const signMessage = (message: Buffer, hash?: DigestAlgorithm) => this.service.hsm.signMessage(hsmKey, message, hash);
    const envelopeLeaf = (kind: 'pgp' | 'cms', signature: Buffer): Buffer =>
      envelopeSignatureLeaf({ format: kind, digest: { algorithm: digestAlgorithm, value: digest.toString('hex') }, signatureBase64: signature.toString('base64'), publicKeyPem: key.publicKeyPem });

    let signatureFile: Buffer;
    let leaf: Buffer;
    const extra: Record<string, unknown> = {};
    let sigstore: ((receipt: LogReceipt, leaf: Buffer) => Buffer) | undefined;
    switch (format) {
      case 'raw': {
        signatureFile = await this.service.hsm.signDigest(hsmKey, { algorithm: digestAlgorithm, value: digest });
        leaf = hashedRekordLeaf({ digest: { algorithm: digestAlgorithm, value: digest.toString('hex') }, signatureBase64: signatureFile.toString('base64'), publicKeyPem: key.publicKeyPem });
        break;
      }
      case 'dsse': {
        const sig = await signMessage(preAuthenticationEncoding(DSSE_IN_TOTO_PAYLOAD_TYPE, manifest), dsseSigningHash(key.algorithm));
        const envelope = buildDsseEnvelope(DSSE_IN_TOTO_PAYLOAD_TYPE, manifest, [{ keyid: key.keyId, sig }]);
        signatureFile = sig;
        extra.envelope = envelope;
        leaf = dsseRekordLeaf({ envelope, verifierPem: key.publicKeyPem });
        break;
      }
      case 'pgp': {
        const signed = await detachedSignature({ algorithm: key.algorithm, publicKeyPem: key.publicKeyPem, createdAt: new Date(key.createdAt), signMessage: (m, h) => signMessage(m, h) }, manifest);
        signatureFile = signed.binary;
        extra.armored = signed.armored;
        leaf = envelopeLeaf('pgp', signed.binary);
        break;
      }
      case 'cms': {
        signatureFile = await buildDetachedCms(
          { keyAlgorithm: key.algorithm, publicKeyPem: key.publicKeyPem, certificates: [leafPem, intermediatePem], contentDigest: { algorithm: digestAlgorithm, value: digest }, signingTime: new Date(integratedTime * 1000) },
          (toBeSigned, hash) => signMessage(toBeSigned, hash),
        );
        leaf = envelopeLeaf('cms', signatureFile);
        break;
      }
      case 'sigstore-bundle': {
        const sha = sha256(manifest);
        if (options.sigstoreContent === 'dsse') {
          const sig = await signMessage(preAuthenticationEncoding(DSSE_IN_TOTO_PAYLOAD_TYPE, manifest), 'sha256');
          const envelope = buildDsseEnvelope(DSSE_IN_TOTO_PAYLOAD_TYPE, manifest, [{ keyid: '', sig }]);
          leaf = dsseRekordLeaf({ envelope, verifierPem: leafPem });
          signatureFile = sig;
          sigstore = (receipt, entryLeaf) =>
            Buffer.from(JSON.stringify(buildSigstoreBundle({ keyAlgorithm: key.algorithm, publicKeyPem: key.publicKeyPem, certificate: leafPem, content: { kind: 'dsse', envelope }, log: { receipt, leaf: entryLeaf, logId: Buffer.from(this.trust.log.logId, 'hex') } })));
        } else {
          const sig = await this.service.hsm.signDigest(hsmKey, { algorithm: 'sha256', value: sha });
          leaf = hashedRekordLeaf({ digest: { algorithm: 'sha256', value: sha.toString('hex') }, signatureBase64: sig.toString('base64'), publicKeyPem: leafPem });
          signatureFile = sig;
          sigstore = (receipt, entryLeaf) =>
            Buffer.from(
              JSON.stringify(
                buildSigstoreBundle({ keyAlgorithm: key.algorithm, publicKeyPem: key.publicKeyPem, certificate: leafPem, content: { kind: 'message-signature', sha256: sha, signature: sig }, log: { receipt, leaf: entryLeaf, logId: Buffer.from(this.trust.log.logId, 'hex') } }),
              ),
            );
        }
        break;
      }
    }

    // The log: two earlier entries, the decision, the signature, one later entry.
    const claims = options.claims ?? GITHUB_CLAIMS;
    const decision = decisionLeaf({
      decision: 'allow',
      reasons: [],
      requestId: 'req-1',
      project: 'example',
      keyId: key.keyId,
      format,
      digest: { algorithm: digestAlgorithm, value: digest.toString('hex') },
      manifest: true,
      identity: { issuer: claims.iss ?? 'https://dev-issuer.signet.invalid', subject: claims.sub ?? 'repo:example/demo', claims },
      client: { fingerprint: 'ab'.repeat(32), subject: 'CN=ci-example', issuer: 'CN=Signet Dev CI Client CA' },
      policySha256: 'cd'.repeat(32),
      time: new Date(integratedTime * 1000 + 123).toISOString(),
      ...options.decision,
    });
    const leaves = [Buffer.from('{"earlier":1}'), Buffer.from('{"earlier":2}'), decision, leaf, Buffer.from('{"later":1}')];
    const index = 3;
    const rootHash = mth(leaves);
    const origin = this.trust.log.origin;
    const checkpoint = await signCheckpoint({ origin, size: leaves.length, rootHash }, Buffer.from(this.trust.log.logId, 'hex'), this.signWithLogKey);
    const promisePayload = canonicalJson({ body: leaf.toString('base64'), integratedTime, logID: this.trust.log.logId, logIndex: index });
    const inclusionPromise = format === 'sigstore-bundle' ? (await this.signWithLogKey(sha256(promisePayload))).toString('base64') : null;
    const log: LogReceipt = {
      index,
      leafHash: createHash('sha256').update(Buffer.from([0])).update(leaf).digest('base64'),
      treeSize: leaves.length,
      rootHash: rootHash.toString('base64'),
      inclusionProof: auditPath(index, leaves).map((h) => h.toString('base64')),
      checkpoint,
      integratedTime,
      inclusionPromise,
      decisionIndex: 2,
    };
    // The answer's `signature`: the HSM's signature, or the whole envelope for pgp and cms.
    const answerSignature = signatureFile;
    if (sigstore !== undefined) {
      signatureFile = sigstore(log, leaf);
      extra.bundle = JSON.parse(signatureFile.toString('utf8'));
    }
    const receipt = {
      artifact: { name: 'manifest.intoto.json', digest: { algorithm: digestAlgorithm } },
      keyId: key.keyId,
      keyName: key.name,
      algorithm: key.algorithm,
      format,
      signature: answerSignature.toString('base64'),
      digest: { algorithm: digestAlgorithm, value: digest.toString('hex') },
      ...extra,
      log: {
        ...log,
        ...(options.withLeaf === false ? {} : { leaf: leaf.toString('base64') }),
        ...(options.withDecision === false ? {} : { decision: { index: 2, leaf: decision.toString('base64'), inclusionProof: auditPath(2, leaves).map((h) => h.toString('base64')) } }),
      },
    };
    return { artifacts, manifest, signature: signatureFile, receipt, trustBundle: this.trustBundle() };
  }
}

/** Path of a file in the fixture's development directory. */
export function devFile(fixture: VerifyFixture, ...parts: string[]): string {
  return join(fixture.env.dir, ...parts);
}
