/**
 * Sigstore bundles v0.3 and trusted roots (formats/sigstore-bundle.ts), built from a
 * real transparency log (SQLite store, TransparencyLog, checkpoints and inclusion
 * promise signed by a P-256 log key through `openssl pkeyutl`) and checked without
 * formats/ code:
 *   - the JSON shape, written from the protobuf-specs field names (Bundle,
 *     VerificationMaterial, TransparencyLogEntry, InclusionProof, Checkpoint,
 *     MessageSignature, Envelope; TrustedRoot) and their JSON mapping (int64 as
 *     strings, bytes as base64), as sigstore-js' bundle validation reads them;
 *   - every signature with openssl (artifact or DSSE PAE, checkpoint note, inclusion
 *     promise), the inclusion proof with the reference Merkle code of test/log, the
 *     chain with `openssl verify`, and the entry body against the bundle content,
 *     which is what Sigstore verifiers compare (sigstore-js verify/src/tlog);
 *   - and end to end by @sigstore/verify 3.1 itself, with the trusted root built here
 *     and `ctlogThreshold: 0` (SIGSTORE-NOTES.md), which must accept both bundle kinds
 *     and refuse each tampering.
 */
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDsseEnvelope, preAuthenticationEncoding, DSSE_IN_TOTO_PAYLOAD_TYPE } from '../../formats/dsse.js';
import { dsseRekordLeaf, DSSE_REKOR_KIND } from '../../formats/rekor-dsse.js';
import {
  buildSigstoreBundle,
  buildSigstoreTrustedRoot,
  SIGSTORE_BUNDLE_V03_MEDIA_TYPE,
  SIGSTORE_TRUSTED_ROOT_MEDIA_TYPE,
  type SigstoreBundle,
  type SigstoreBundleInput,
} from '../../formats/sigstore-bundle.js';
import { HASHEDREKORD_KIND, hashedRekordLeaf } from '../../log/entries.js';
import { TransparencyLog, type LogReceipt } from '../../log/transparency-log.js';
import { openStore } from '../../store/open-store.js';
import type { SignetStore } from '../../store/store.js';
import { recursiveVerifyInclusion } from '../log/reference.js';
import { createTestHierarchy, type TestHierarchy } from './pki.js';

const ORIGIN = 'signet.test/log';

let h: TestHierarchy;
let store: SignetStore;
let log: TransparencyLog;
let logKeyFile: string;
let logPubFile: string;
let logPublicKeyPem: string;

/** ECDSA over a precomputed SHA-256 digest, as the HSM's log key does: `openssl pkeyutl -sign` signs the digest as given. */
function opensslDigestSigner(keyFile: string) {
  return (digest: Buffer): Promise<Buffer> => Promise.resolve(execFileSync('openssl', ['pkeyutl', '-sign', '-inkey', keyFile], { input: digest }));
}

beforeAll(async () => {
  h = await createTestHierarchy('ecdsa-p256');
  const logKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  logKeyFile = join(h.dir, 'log-key.pem');
  logPubFile = join(h.dir, 'log-pub.pem');
  logPublicKeyPem = logKey.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  writeFileSync(logKeyFile, logKey.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(logPubFile, logPublicKeyPem);
  store = await openStore({ driver: 'sqlite', sqlite: { path: join(h.dir, 'log.db') } });
  log = new TransparencyLog({ store, origin: ORIGIN, publicKeyPem: logPublicKeyPem, sign: opensslDigestSigner(logKeyFile) });
  await log.open();
  // Some earlier entries, so the proof has several levels.
  for (let i = 0; i < 6; i++) {
    await log.append([{ kind: 'signet.decision/v1', leaf: Buffer.from(`{"n":${i}}`), integratedTime: 1, linkedIndex: null }]);
  }
});

afterAll(async () => {
  await store.close();
  rmSync(h.dir, { recursive: true, force: true });
});

/** Appends a leaf as the service does, and returns its receipt with an inclusion promise. */
async function logged(kind: string, leaf: Buffer): Promise<{ receipt: LogReceipt; leaf: Buffer; logId: Buffer }> {
  const integratedTime = Math.floor(Date.now() / 1000);
  const [index = -1] = await log.append([{ kind, leaf, integratedTime, linkedIndex: 0 }]);
  const receipt = await log.receipt(index, { decisionIndex: 0, integratedTime });
  const promise = await log.inclusionPromise(await log.entry(index));
  return { receipt: { ...receipt, inclusionPromise: promise }, leaf, logId: log.logId };
}

function opensslVerify(publicKeyFile: string, signature: Buffer, data: Buffer): boolean {
  const sigFile = join(h.dir, `sig-${randomBytes(4).toString('hex')}`);
  const dataFile = `${sigFile}.data`;
  writeFileSync(sigFile, signature);
  writeFileSync(dataFile, data);
  return spawnSync('openssl', ['dgst', '-sha256', '-verify', publicKeyFile, '-signature', sigFile, dataFile]).status === 0;
}

const INT64 = /^(0|[1-9][0-9]*)$/;
const isBase64 = (s: unknown): s is string => typeof s === 'string' && s.length > 0 && Buffer.from(s, 'base64').toString('base64') === s;

/** The bundle's shape, from the protobuf-specs names; returns every problem found. */
function bundleShapeProblems(bundle: any): string[] {
  const problems: string[] = [];
  const expectThat = (ok: boolean, what: string): void => {
    if (!ok) problems.push(what);
  };
  expectThat(bundle.mediaType === 'application/vnd.dev.sigstore.bundle.v0.3+json', 'mediaType');
  const material = bundle.verificationMaterial;
  expectThat(isBase64(material?.certificate?.rawBytes), 'verificationMaterial.certificate.rawBytes');
  expectThat(material?.x509CertificateChain === undefined && material?.publicKey === undefined, 'verificationMaterial has one content (certificate)');
  expectThat(Array.isArray(material?.tlogEntries) && material.tlogEntries.length === 1, 'verificationMaterial.tlogEntries');
  const entry = material?.tlogEntries?.[0];
  expectThat(INT64.test(entry?.logIndex), 'tlogEntries[0].logIndex');
  expectThat(isBase64(entry?.logId?.keyId) && Buffer.from(entry.logId.keyId, 'base64').length === 32, 'tlogEntries[0].logId.keyId');
  expectThat(typeof entry?.kindVersion?.kind === 'string' && typeof entry?.kindVersion?.version === 'string', 'tlogEntries[0].kindVersion');
  expectThat(INT64.test(entry?.integratedTime) && entry.integratedTime !== '0', 'tlogEntries[0].integratedTime');
  expectThat(isBase64(entry?.inclusionPromise?.signedEntryTimestamp), 'tlogEntries[0].inclusionPromise.signedEntryTimestamp');
  const proof = entry?.inclusionProof;
  expectThat(proof?.logIndex === entry?.logIndex, 'inclusionProof.logIndex');
  expectThat(isBase64(proof?.rootHash) && Buffer.from(proof.rootHash, 'base64').length === 32, 'inclusionProof.rootHash');
  expectThat(INT64.test(proof?.treeSize) && Number(proof.treeSize) > Number(entry?.logIndex), 'inclusionProof.treeSize');
  expectThat(Array.isArray(proof?.hashes) && (proof.hashes as unknown[]).every((x) => isBase64(x) && Buffer.from(x, 'base64').length === 32), 'inclusionProof.hashes');
  expectThat(typeof proof?.checkpoint?.envelope === 'string' && (proof.checkpoint.envelope as string).endsWith('\n'), 'inclusionProof.checkpoint.envelope');
  expectThat(isBase64(entry?.canonicalizedBody), 'tlogEntries[0].canonicalizedBody');
  const hasMessage = bundle.messageSignature !== undefined;
  const hasDsse = bundle.dsseEnvelope !== undefined;
  expectThat(hasMessage !== hasDsse, 'exactly one of messageSignature and dsseEnvelope');
  if (hasMessage) {
    expectThat(bundle.messageSignature.messageDigest?.algorithm === 'SHA2_256', 'messageSignature.messageDigest.algorithm');
    expectThat(isBase64(bundle.messageSignature.messageDigest?.digest), 'messageSignature.messageDigest.digest');
    expectThat(isBase64(bundle.messageSignature.signature), 'messageSignature.signature');
  }
  if (hasDsse) {
    expectThat(typeof bundle.dsseEnvelope.payloadType === 'string' && bundle.dsseEnvelope.payloadType !== '', 'dsseEnvelope.payloadType');
    expectThat(isBase64(bundle.dsseEnvelope.payload), 'dsseEnvelope.payload');
    expectThat(Array.isArray(bundle.dsseEnvelope.signatures) && bundle.dsseEnvelope.signatures.length === 1, 'dsseEnvelope.signatures');
    expectThat(isBase64(bundle.dsseEnvelope.signatures?.[0]?.sig) && typeof bundle.dsseEnvelope.signatures?.[0]?.keyid === 'string', 'dsseEnvelope.signatures[0]');
  }
  const known = new Set(['mediaType', 'verificationMaterial', 'messageSignature', 'dsseEnvelope']);
  for (const key of Object.keys(bundle)) expectThat(known.has(key), `unknown field ${key}`);
  return problems;
}

/** The log parts of a bundle, each checked with openssl or the reference Merkle code. */
function checkTlogEntry(bundle: SigstoreBundle): any {
  const entry = bundle.verificationMaterial.tlogEntries[0]!;
  const body = Buffer.from(entry.canonicalizedBody, 'base64');
  const parsedBody = JSON.parse(body.toString('utf8'));
  expect(entry.kindVersion).toEqual({ kind: parsedBody.kind, version: parsedBody.apiVersion });

  // logId = SHA-256 of the log key's DER SPKI.
  const spki = execFileSync('openssl', ['pkey', '-pubin', '-in', logPubFile, '-outform', 'DER']);
  const logId = createHash('sha256').update(spki).digest();
  expect(entry.logId.keyId).toBe(logId.toString('base64'));

  // Inclusion promise: the log key over canonical {body, integratedTime, logID, logIndex}.
  const promised = `{"body":"${entry.canonicalizedBody}","integratedTime":${entry.integratedTime},"logID":"${logId.toString('hex')}","logIndex":${entry.logIndex}}`;
  expect(opensslVerify(logPubFile, Buffer.from(entry.inclusionPromise.signedEntryTimestamp, 'base64'), Buffer.from(promised))).toBe(true);

  // Inclusion proof against the proof's root, with the reference RFC 9162 code.
  const proof = entry.inclusionProof;
  const leafHash = createHash('sha256').update(Buffer.from([0])).update(body).digest();
  expect(
    recursiveVerifyInclusion(leafHash, Number(proof.logIndex), Number(proof.treeSize), proof.hashes.map((x) => Buffer.from(x, 'base64')), Buffer.from(proof.rootHash, 'base64')),
  ).toBe(true);

  // Checkpoint: origin, size, root of the proof, signed by the log key; key hint = logId[:4].
  const note = proof.checkpoint.envelope;
  const split = note.indexOf('\n\n');
  const noteBody = note.slice(0, split + 1);
  expect(noteBody).toBe(`${ORIGIN}\n${proof.treeSize}\n${proof.rootHash}\n`);
  const signatureLine = /^\u2014 (\S+) (\S+)$/.exec(note.slice(split + 2, -1));
  expect(signatureLine?.[1]).toBe(ORIGIN);
  const blob = Buffer.from(signatureLine?.[2] ?? '', 'base64');
  expect(blob.subarray(0, 4)).toEqual(logId.subarray(0, 4));
  expect(opensslVerify(logPubFile, blob.subarray(4), Buffer.from(noteBody))).toBe(true);
  return parsedBody;
}

function messageBundleInput(artifact: Buffer, signature: Buffer, logEntry: SigstoreBundleInput['log']): SigstoreBundleInput {
  return {
    keyAlgorithm: 'ecdsa-p256',
    publicKeyPem: h.publicKeyPem,
    certificate: h.leafPem,
    content: { kind: 'message-signature', sha256: createHash('sha256').update(artifact).digest(), signature },
    log: logEntry,
  };
}

describe('Sigstore bundle with a message signature', () => {
  it('has the v0.3 shape, and every signature, proof and body in it checks out', async () => {
    const artifact = randomBytes(10_000);
    const digest = createHash('sha256').update(artifact).digest();
    const signature = sign('sha256', artifact, h.privateKey);
    const leaf = hashedRekordLeaf({ digest: { algorithm: 'sha256', value: digest.toString('hex') }, signatureBase64: signature.toString('base64'), publicKeyPem: h.leafPem });
    const bundle = buildSigstoreBundle(messageBundleInput(artifact, signature, await logged(HASHEDREKORD_KIND, leaf)));
    const json = JSON.parse(JSON.stringify(bundle));
    expect(bundleShapeProblems(json)).toEqual([]);
    expect(json.mediaType).toBe(SIGSTORE_BUNDLE_V03_MEDIA_TYPE);

    // The certificate is the leaf, and it holds the key that signed the artifact.
    const certFile = join(h.dir, 'bundle-cert.der');
    writeFileSync(certFile, Buffer.from(bundle.verificationMaterial.certificate.rawBytes, 'base64'));
    const certPub = join(h.dir, 'bundle-cert-pub.pem');
    execFileSync('bash', ['-c', `openssl x509 -inform DER -in "${certFile}" -pubkey -noout > "${certPub}"`]);
    expect(opensslVerify(certPub, Buffer.from(bundle.messageSignature!.signature, 'base64'), artifact)).toBe(true);
    expect(bundle.messageSignature!.messageDigest.digest).toBe(digest.toString('base64'));

    const body = checkTlogEntry(bundle);
    // What Sigstore verifiers compare: the body's signature and digest are the bundle's.
    expect(body).toMatchObject({ kind: 'hashedrekord', apiVersion: '0.0.1' });
    expect(body.spec.signature.content).toBe(bundle.messageSignature!.signature);
    expect(body.spec.data.hash).toEqual({ algorithm: 'sha256', value: digest.toString('hex') });
  });

  it('refuses a receipt that is not for this entry, or has no promise, or points at another checkpoint', async () => {
    const artifact = Buffer.from('artifact');
    const digest = createHash('sha256').update(artifact).digest();
    const signature = sign('sha256', artifact, h.privateKey);
    const leaf = hashedRekordLeaf({ digest: { algorithm: 'sha256', value: digest.toString('hex') }, signatureBase64: signature.toString('base64'), publicKeyPem: h.leafPem });
    const entry = await logged(HASHEDREKORD_KIND, leaf);
    const mismatch = expect.objectContaining({ code: 'FORMAT_RECEIPT_MISMATCH' });

    const otherLeaf = Buffer.from(leaf.toString().replace('"sha256"', '"sha384"'));
    expect(() => buildSigstoreBundle(messageBundleInput(artifact, signature, { ...entry, leaf: otherLeaf }))).toThrow(mismatch);
    expect(() => buildSigstoreBundle(messageBundleInput(artifact, signature, { ...entry, receipt: { ...entry.receipt, inclusionPromise: null } }))).toThrow(mismatch);
    expect(() => buildSigstoreBundle(messageBundleInput(artifact, signature, { ...entry, receipt: { ...entry.receipt, treeSize: entry.receipt.treeSize + 1 } }))).toThrow(mismatch);
    // The entry records another signature or another digest than the bundle would claim.
    const otherSignature = sign('sha256', artifact, h.privateKey);
    expect(() => buildSigstoreBundle(messageBundleInput(artifact, otherSignature, entry))).toThrow(mismatch);
    expect(() => buildSigstoreBundle(messageBundleInput(Buffer.from('other'), signature, entry))).toThrow(mismatch);
  });

  it('refuses keys other than P-256, and a certificate for another key', async () => {
    const artifact = Buffer.from('artifact');
    const signature = sign('sha256', artifact, h.privateKey);
    const leaf = hashedRekordLeaf({ digest: { algorithm: 'sha256', value: createHash('sha256').update(artifact).digest('hex') }, signatureBase64: signature.toString('base64'), publicKeyPem: h.leafPem });
    const entry = await logged(HASHEDREKORD_KIND, leaf);
    expect(() => buildSigstoreBundle({ ...messageBundleInput(artifact, signature, entry), keyAlgorithm: 'ecdsa-p384' })).toThrow(expect.objectContaining({ code: 'FORMAT_KEY_UNSUPPORTED' }));
    expect(() => buildSigstoreBundle({ ...messageBundleInput(artifact, signature, entry), keyAlgorithm: 'ed25519' })).toThrow(expect.objectContaining({ code: 'FORMAT_KEY_UNSUPPORTED' }));
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => buildSigstoreBundle({ ...messageBundleInput(artifact, signature, entry), publicKeyPem: stranger })).toThrow(expect.objectContaining({ code: 'FORMAT_CERTIFICATE_INVALID' }));
  });
});

describe('Sigstore bundle with a DSSE envelope', () => {
  it('has the v0.3 shape; the PAE signature, the dsse entry body, the proof and the promise check out', async () => {
    const statement = Buffer.from(`${JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'a', digest: { sha256: '00'.repeat(32) } }] })}\n`);
    const pae = preAuthenticationEncoding(DSSE_IN_TOTO_PAYLOAD_TYPE, statement);
    const envelope = buildDsseEnvelope(DSSE_IN_TOTO_PAYLOAD_TYPE, statement, [{ keyid: 'demo-release@1', sig: sign('sha256', pae, h.privateKey) }]);
    const leaf = dsseRekordLeaf({ envelope, verifierPem: h.leafPem });
    const bundle = buildSigstoreBundle({
      keyAlgorithm: 'ecdsa-p256',
      publicKeyPem: h.publicKeyPem,
      certificate: h.leafPem,
      content: { kind: 'dsse', envelope },
      log: await logged(DSSE_REKOR_KIND, leaf),
    });
    expect(bundleShapeProblems(JSON.parse(JSON.stringify(bundle)))).toEqual([]);
    expect(bundle.dsseEnvelope).toEqual(envelope);
    expect(opensslVerify(h.files.publicKey, Buffer.from(bundle.dsseEnvelope!.signatures[0]!.sig, 'base64'), pae)).toBe(true);

    const body = checkTlogEntry(bundle);
    expect(body).toMatchObject({ kind: 'dsse', apiVersion: '0.0.1' });
    expect(body.spec.signatures).toEqual([{ signature: envelope.signatures[0]!.sig, verifier: Buffer.from(h.leafPem).toString('base64') }]);
    expect(body.spec.payloadHash).toEqual({ algorithm: 'sha256', value: createHash('sha256').update(statement).digest('hex') });
    expect(body.spec.envelopeHash.algorithm).toBe('sha256');
  });

  it('refuses an entry logged as hashedrekord, and an envelope with two signatures', async () => {
    const statement = Buffer.from('{}');
    const pae = preAuthenticationEncoding(DSSE_IN_TOTO_PAYLOAD_TYPE, statement);
    const sig = sign('sha256', pae, h.privateKey);
    const envelope = buildDsseEnvelope(DSSE_IN_TOTO_PAYLOAD_TYPE, statement, [{ keyid: '', sig }]);
    const wrongKind = hashedRekordLeaf({ digest: { algorithm: 'sha256', value: createHash('sha256').update(statement).digest('hex') }, signatureBase64: sig.toString('base64'), publicKeyPem: h.leafPem });
    const base = { keyAlgorithm: 'ecdsa-p256' as const, publicKeyPem: h.publicKeyPem, certificate: h.leafPem };
    const entry = await logged(HASHEDREKORD_KIND, wrongKind);
    expect(() => buildSigstoreBundle({ ...base, content: { kind: 'dsse', envelope }, log: entry })).toThrow(expect.objectContaining({ code: 'FORMAT_RECEIPT_MISMATCH' }));
    const twice = buildDsseEnvelope(DSSE_IN_TOTO_PAYLOAD_TYPE, statement, [{ keyid: '', sig }, { keyid: '', sig }]);
    expect(() => buildSigstoreBundle({ ...base, content: { kind: 'dsse', envelope: twice }, log: entry })).toThrow(expect.objectContaining({ code: 'FORMAT_INPUT_INVALID' }));
  });
});

describe('Sigstore trusted root', () => {
  it('names the CA chain (intermediate, root) and the log key, in the trusted root v0.2 shape', () => {
    const validFrom = new Date('2026-01-01T00:00:00Z');
    const root = buildSigstoreTrustedRoot({
      certificateAuthorities: [{ chain: [h.intermediatePem, h.rootPem], uri: 'https://signet.test/v1/trust' }],
      logs: [{ origin: ORIGIN, publicKeyPem: logPublicKeyPem, validFrom }],
    });
    const json = JSON.parse(JSON.stringify(root));
    expect(json.mediaType).toBe(SIGSTORE_TRUSTED_ROOT_MEDIA_TYPE);
    expect(json.ctlogs).toEqual([]);
    expect(json.timestampAuthorities).toEqual([]);
    const spki = execFileSync('openssl', ['pkey', '-pubin', '-in', logPubFile, '-outform', 'DER']);
    expect(json.tlogs).toEqual([
      {
        baseUrl: `https://${ORIGIN}`,
        hashAlgorithm: 'SHA2_256',
        publicKey: { rawBytes: spki.toString('base64'), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start: '2026-01-01T00:00:00.000Z' } },
        logId: { keyId: createHash('sha256').update(spki).digest('base64') },
      },
    ]);
    const [authority] = json.certificateAuthorities;
    expect(authority.subject).toEqual({ organization: 'Signet Test', commonName: 'Signet Test Code Signing Root' });
    expect(authority.uri).toBe('https://signet.test/v1/trust');
    expect(Date.parse(authority.validFor.start)).toBeLessThanOrEqual(Date.now());

    // The chain it names verifies the bundle's leaf with openssl.
    const [intermediateDer, rootDer] = (authority.certChain.certificates as { rawBytes: string }[]).map((c) => Buffer.from(c.rawBytes, 'base64'));
    const files = ['chain-intermediate.pem', 'chain-root.pem'].map((name) => join(h.dir, name));
    writeFileSync(files[0]!, execFileSync('openssl', ['x509', '-inform', 'DER'], { input: intermediateDer }));
    writeFileSync(files[1]!, execFileSync('openssl', ['x509', '-inform', 'DER'], { input: rootDer }));
    const verified = spawnSync('openssl', ['verify', '-CAfile', files[1]!, '-untrusted', files[0]!, '-purpose', 'any', h.files.leaf], { encoding: 'utf8' });
    expect(verified.stdout).toContain(': OK');
  });

  it('refuses a chain out of order, a leaf as CA, a log key that is not P-256, a base URL without the origin', () => {
    const log = { origin: ORIGIN, publicKeyPem: logPublicKeyPem, validFrom: new Date() };
    const ca = { chain: [h.intermediatePem, h.rootPem], uri: 'https://signet.test' };
    const invalid = expect.objectContaining({ code: 'FORMAT_CERTIFICATE_INVALID' });
    expect(() => buildSigstoreTrustedRoot({ certificateAuthorities: [{ ...ca, chain: [h.rootPem, h.intermediatePem] }], logs: [log] })).toThrow(invalid);
    expect(() => buildSigstoreTrustedRoot({ certificateAuthorities: [{ ...ca, chain: [h.intermediatePem] }], logs: [log] })).toThrow(invalid);
    expect(() => buildSigstoreTrustedRoot({ certificateAuthorities: [{ ...ca, chain: [h.leafPem, h.intermediatePem, h.rootPem] }], logs: [log] })).toThrow(invalid);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => buildSigstoreTrustedRoot({ certificateAuthorities: [ca], logs: [{ ...log, publicKeyPem: p384 }] })).toThrow(expect.objectContaining({ code: 'FORMAT_KEY_UNSUPPORTED' }));
    expect(() => buildSigstoreTrustedRoot({ certificateAuthorities: [ca], logs: [{ ...log, baseUrl: 'https://elsewhere.test' }] })).toThrow(
      expect.objectContaining({ code: 'FORMAT_INPUT_INVALID' }),
    );
    expect(() => buildSigstoreTrustedRoot({ certificateAuthorities: [ca], logs: [{ ...log, validUntil: new Date(0) }] })).toThrow(expect.objectContaining({ code: 'FORMAT_INPUT_INVALID' }));
  });
});

describe('accepted by @sigstore/verify with the Signet trusted root', () => {
  const SAN = { subjectAlternativeName: '^https://signet\\.test/keys/demo-release@1$' };

  function verifierFor(hierarchy: TestHierarchy): Verifier {
    const trustedRoot = buildSigstoreTrustedRoot({
      certificateAuthorities: [{ chain: [hierarchy.intermediatePem, hierarchy.rootPem], uri: 'https://signet.test/v1/trust' }],
      logs: [{ origin: ORIGIN, publicKeyPem: logPublicKeyPem, validFrom: new Date(Date.now() - 3_600_000) }],
    });
    return new Verifier(toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(JSON.stringify(trustedRoot)))), { ctlogThreshold: 0, tlogThreshold: 1 });
  }

  /** The error code @sigstore/verify throws, or 'OK'. */
  function outcome(verifier: Verifier, bundle: unknown, artifact: Buffer | undefined, policy: { subjectAlternativeName?: string } = SAN): string {
    try {
      verifier.verify(toSignedEntity(bundleFromJSON(JSON.parse(JSON.stringify(bundle))), artifact), policy);
      return 'OK';
    } catch (error) {
      return (error as { code?: string }).code ?? String(error);
    }
  }

  it('a message signature: accepted; refused for a changed artifact, another identity, a changed proof or promise, a foreign CA', async () => {
    const artifact = randomBytes(5000);
    const digest = createHash('sha256').update(artifact).digest();
    const signature = sign('sha256', artifact, h.privateKey);
    const leaf = hashedRekordLeaf({ digest: { algorithm: 'sha256', value: digest.toString('hex') }, signatureBase64: signature.toString('base64'), publicKeyPem: h.leafPem });
    const bundle = buildSigstoreBundle(messageBundleInput(artifact, signature, await logged(HASHEDREKORD_KIND, leaf)));
    const verifier = verifierFor(h);
    expect(outcome(verifier, bundle, artifact)).toBe('OK');

    const changed = Buffer.from(artifact);
    changed[0] = (changed[0] ?? 0) ^ 0x01;
    expect(outcome(verifier, bundle, changed)).toBe('SIGNATURE_ERROR');
    expect(outcome(verifier, bundle, artifact, { subjectAlternativeName: '^https://elsewhere$' })).toBe('UNTRUSTED_SIGNER_ERROR');
    const badProof = JSON.parse(JSON.stringify(bundle));
    badProof.verificationMaterial.tlogEntries[0].inclusionProof.hashes[0] = Buffer.alloc(32).toString('base64');
    expect(outcome(verifier, badProof, artifact)).toBe('TLOG_INCLUSION_PROOF_ERROR');
    const badPromise = JSON.parse(JSON.stringify(bundle));
    badPromise.verificationMaterial.tlogEntries[0].integratedTime = String(Number(badPromise.verificationMaterial.tlogEntries[0].integratedTime) + 1);
    expect(outcome(verifier, badPromise, artifact)).toBe('TLOG_INCLUSION_PROMISE_ERROR');
    expect(outcome(verifierFor(await createTestHierarchy('ecdsa-p256')), bundle, artifact)).toBe('CERTIFICATE_ERROR');
  });

  it('a DSSE envelope: accepted; refused with a changed payload', async () => {
    const statement = Buffer.from(`${JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'a', digest: { sha256: '11'.repeat(32) } }] })}\n`);
    const pae = preAuthenticationEncoding(DSSE_IN_TOTO_PAYLOAD_TYPE, statement);
    const envelope = buildDsseEnvelope(DSSE_IN_TOTO_PAYLOAD_TYPE, statement, [{ keyid: 'demo-release@1', sig: sign('sha256', pae, h.privateKey) }]);
    const bundle = buildSigstoreBundle({
      keyAlgorithm: 'ecdsa-p256',
      publicKeyPem: h.publicKeyPem,
      certificate: h.leafPem,
      content: { kind: 'dsse', envelope },
      log: await logged(DSSE_REKOR_KIND, dsseRekordLeaf({ envelope, verifierPem: h.leafPem })),
    });
    const verifier = verifierFor(h);
    expect(outcome(verifier, bundle, undefined)).toBe('OK');
    const changed = Buffer.from(statement);
    changed[5] = (changed[5] ?? 0) ^ 0x01;
    expect(outcome(verifier, { ...bundle, dsseEnvelope: { ...envelope, payload: changed.toString('base64') } }, undefined)).toBe('TLOG_BODY_ERROR');
  });
});
