/**
 * Hostile input for the verifier: receipts, signatures, manifests and trust bundles
 * come from whoever hands over a release. Whatever they hold, verifyRelease answers
 * with a result (never a throw), its exit status is its class's, its reason is one
 * printable line; and no change to a field that binds the release ever verifies.
 * Seeds are real releases of every format, as POST /v1/sign answers them and as the
 * builders in formats/ make them (SoftHSM keys, the real CA and log key).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SignatureFormat } from '../../signer/formats.js';
import { FAILURE_CLASSES, type VerifyResult } from '../../verify/result.js';
import { verifyRelease } from '../../verify/verify-release.js';
import { copy, VerifyFixture, type Release } from './fixture.js';

let fixture: VerifyFixture;
const seeds = new Map<string, Release>();
const FORMATS: readonly SignatureFormat[] = ['raw', 'dsse', 'pgp', 'cms', 'sigstore-bundle'];
/** `<format>` made with the builders, `service <format>` answered by POST /v1/sign. */
const SEEDS: readonly string[] = [...FORMATS, ...FORMATS.map((f) => `service ${f}`)];
const NOT_SIGSTORE = SEEDS.filter((seed) => !seed.endsWith('sigstore-bundle'));

beforeAll(async () => {
  fixture = await VerifyFixture.start();
  for (const format of FORMATS) {
    seeds.set(format, await fixture.release(format));
    seeds.set(`service ${format}`, await fixture.signedByService({ format }));
  }
});

afterAll(async () => {
  await fixture.stop();
});

function seed(name: string): Release {
  const release = seeds.get(name);
  if (release === undefined) throw new Error(`no ${name} seed`);
  return release;
}

const formatOf = (name: string): string => name.replace(/^service /, '');

async function run(release: Release, receiptBytes?: Buffer): Promise<VerifyResult> {
  const result = await verifyRelease({
    manifest: release.manifest,
    signature: release.signature,
    receipt: receiptBytes ?? Buffer.from(JSON.stringify(release.receipt)),
    trustBundle: release.trustBundle,
    artifacts: release.artifacts,
    artifactMode: 'directory',
  });
  if (result.ok) {
    expect(result.exitCode).toBe(0);
  } else {
    expect(result.exitCode).toBe(FAILURE_CLASSES[result.class]);
    expect(result.code).toMatch(/^[A-Z][A-Z0-9_]*$/);
    // eslint-disable-next-line no-control-regex -- control characters are what must not appear
    expect(result.reason).toMatch(/^[^\u0000-\u001f\u007f]+$/);
  }
  return result;
}

function setPath(target: any, path: readonly (string | number)[], value: unknown): void {
  let current = target;
  for (const key of path.slice(0, -1)) current = current[key];
  current[path[path.length - 1]!] = value;
}

function getPath(target: unknown, path: readonly (string | number)[]): unknown {
  return path.reduce<unknown>((current, key) => (current === undefined || current === null ? undefined : (current as Record<string | number, unknown>)[key]), target);
}

/** Receipt fields that bind the release: any other value must be refused. */
const BINDING_PATHS: readonly (readonly (string | number)[])[] = [
  ['format'],
  ['keyId'],
  ['signature'],
  ['digest', 'algorithm'],
  ['log', 'index'],
  ['log', 'leafHash'],
  ['log', 'treeSize'],
  ['log', 'rootHash'],
  ['log', 'inclusionProof'],
  ['log', 'inclusionProof', 0],
  ['log', 'checkpoint'],
  ['log', 'integratedTime'],
  ['log', 'leaf'],
  ['log', 'decision', 'index'],
  ['log', 'decision', 'leaf'],
  ['log', 'decision', 'inclusionProof', 0],
];

describe('receipts', () => {
  it('any value at a binding field is refused, never thrown', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...NOT_SIGSTORE), fc.constantFrom(...BINDING_PATHS), fc.jsonValue({ maxDepth: 2 }), async (name, path, value) => {
        const release = seed(name);
        const format = formatOf(name);
        fc.pre(JSON.stringify(getPath(release.receipt, path)) !== JSON.stringify(value));
        // Only a raw signature is over the digest the receipt names; envelopes name their own.
        fc.pre(!(format !== 'raw' && path[0] === 'digest'));
        const receipt = copy(release.receipt);
        setPath(receipt, path, value);
        const result = await run({ ...release, receipt });
        expect(result.ok, `${path.join('.')} = ${JSON.stringify(value)}`).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('arbitrary JSON anywhere, and arbitrary bytes, are answered with a result', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...SEEDS), fc.jsonValue({ maxDepth: 3 }), fc.uint8Array({ maxLength: 512 }), async (name, value, bytes) => {
        const release = seed(name);
        for (const key of Object.keys(release.receipt)) {
          const receipt = copy(release.receipt);
          receipt[key] = value;
          await run({ ...release, receipt });
        }
        await run(release, Buffer.from(JSON.stringify(value)));
        await run(release, Buffer.from(bytes));
      }),
      { numRuns: 60 },
    );
  });
});

describe('signatures and manifests', () => {
  it('one flipped bit anywhere in the signature or the manifest never verifies', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...SEEDS), fc.boolean(), fc.nat(), fc.integer({ min: 0, max: 7 }), async (name, inManifest, position, bit) => {
        const release = seed(name);
        const target = inManifest ? release.manifest : release.signature;
        const at = position % target.length;
        const changed = Buffer.from(target);
        changed[at] = (changed[at] ?? 0) ^ (1 << bit);
        const result = await run(inManifest ? { ...release, manifest: changed } : { ...release, signature: changed });
        expect(result.ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('arbitrary bytes as the signature of every format', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...SEEDS), fc.uint8Array({ minLength: 1, maxLength: 2048 }), async (name, bytes) => {
        const result = await run({ ...seed(name), signature: Buffer.from(bytes) });
        expect(result.ok).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it('Sigstore bundles: any value in a field of the bundle is answered, binding ones refused', async () => {
    const common: (string | number)[][] = [
      ['mediaType'],
      ['verificationMaterial', 'certificate', 'rawBytes'],
      ['verificationMaterial', 'tlogEntries', 0, 'logIndex'],
      ['verificationMaterial', 'tlogEntries', 0, 'logId', 'keyId'],
      ['verificationMaterial', 'tlogEntries', 0, 'integratedTime'],
      ['verificationMaterial', 'tlogEntries', 0, 'inclusionPromise', 'signedEntryTimestamp'],
      ['verificationMaterial', 'tlogEntries', 0, 'inclusionProof', 'rootHash'],
      ['verificationMaterial', 'tlogEntries', 0, 'inclusionProof', 'hashes', 0],
      ['verificationMaterial', 'tlogEntries', 0, 'inclusionProof', 'checkpoint', 'envelope'],
      ['verificationMaterial', 'tlogEntries', 0, 'canonicalizedBody'],
    ];
    // The builders' bundle holds a message signature; the service's (the manifest sent) a DSSE envelope.
    const cases = [
      { name: 'sigstore-bundle', paths: [...common, ['messageSignature', 'messageDigest', 'digest'], ['messageSignature', 'signature']] },
      { name: 'service sigstore-bundle', paths: [...common, ['dsseEnvelope', 'payload'], ['dsseEnvelope', 'payloadType'], ['dsseEnvelope', 'signatures', 0, 'sig']] },
    ];
    const pathCase = fc.constantFrom(...cases).chain((c) => fc.tuple(fc.constant(c.name), fc.constantFrom(...c.paths)));
    await fc.assert(
      fc.asyncProperty(pathCase, fc.jsonValue({ maxDepth: 2 }), async ([name, path], value) => {
        const release = seed(name);
        const bundle = JSON.parse(release.signature.toString('utf8'));
        fc.pre(JSON.stringify(getPath(bundle, path)) !== JSON.stringify(value));
        const changed = copy(bundle);
        setPath(changed, path, value);
        const receipt = copy(release.receipt);
        receipt.bundle = changed;
        const result = await run({ ...release, signature: Buffer.from(JSON.stringify(changed)), receipt });
        expect(result.ok, `${path.join('.')} = ${JSON.stringify(value)}`).toBe(false);
      }),
      { numRuns: 200 },
    );
  });
});

describe('trust bundles', () => {
  it('any value in a field of the trust bundle is answered with a result', async () => {
    const paths: (string | number)[][] = [
      ['log'],
      ['log', 'origin'],
      ['log', 'publicKeyPem'],
      ['log', 'logId'],
      ['roots'],
      ['roots', 0],
      ['roots', 0, 'certificatePem'],
      ['intermediates', 0, 'certificatePem'],
      ['keys'],
      ['keys', 0, 'state'],
      ['keys', 0, 'notBefore'],
      ['keys', 0, 'compromisedAt'],
      ['keys', 0, 'certificatePem'],
      ['keys', 0, 'certificates'],
      ['keys', 0, 'publicKeyPem'],
      ['keys', 0, 'pgpPublicKey'],
      ['revocations'],
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...SEEDS), fc.constantFrom(...paths), fc.jsonValue({ maxDepth: 2 }), async (name, path, value) => {
        const release = seed(name);
        const trustBundle = copy(release.trustBundle);
        setPath(trustBundle, path, value);
        await run({ ...release, trustBundle });
      }),
      { numRuns: 300 },
    );
    for (const value of [null, 42, 'bundle', [], { log: null }]) await run({ ...seed('raw'), trustBundle: value });
  });
});
