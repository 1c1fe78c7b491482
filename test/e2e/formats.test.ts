/**
 * Every signature format end to end: `signet init` (SoftHSM token, code-signing CA,
 * SQLite), extra release keys made with `signet keys create`, the real service on a
 * loopback port, and the real CLI (`dist/cli/main.js`) writing each format's file and
 * its receipt. What the service makes is checked by tools that share no code with it:
 *   - pgp: `gpg --verify` after importing GET /v1/keys/{keyId}/pgp (binary and armored);
 *   - cms: `openssl cms -verify -binary -content … -inform DER -CAfile root.pem -purpose any`;
 *   - dsse: the PAE written out here from the DSSE spec (protocol.md) and
 *     `openssl dgst -sha256 -verify`;
 *   - sigstore-bundle: @sigstore/verify 3.1 with the trusted root from
 *     GET /v1/trust/sigstore and `ctlogThreshold: 0` (SIGSTORE-NOTES.md), for a message
 *     signature and for DSSE;
 *   - the log: each signature entry read back from GET /v1/log/entries, its leaf hash,
 *     its inclusion proof (the RFC 9162 reference of test/log/reference.ts), the
 *     checkpoint's signature, and the decision entry proven in the same tree.
 * And the refusals: a format a key algorithm cannot make, and dsse/pgp without the
 * payload, each with its code, signing and logging nothing.
 */
import { bundleFromJSON } from '@sigstore/bundle';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { verifyCheckpoint } from '../../log/checkpoint.js';
import { runCli } from '../helpers/cli.js';
import { createDevEnvironment, devClientTls, devToken, httpsCall, signaturesIssued, startDevService, type DevEnvironment, type StartedService } from '../helpers/dev-env.js';
import { recursiveVerifyInclusion, referenceLeafHash } from '../log/reference.js';

/** Extra release keys, each allowed to the example project. */
const EXTRA_KEYS = [
  { name: 'release-p384', algorithm: 'ecdsa-p384' },
  { name: 'release-ed25519', algorithm: 'ed25519' },
  { name: 'release-rsa', algorithm: 'rsa-pss-3072' },
] as const;

let env: DevEnvironment;
let service: StartedService;
let tls: { ca: Buffer; cert: Buffer; key: Buffer };
let work: string;
let manifest: string;
let manifestBytes: Buffer;
/** Every successful sign answer, checked against the log at the end. */
const answers: { format: string; answer: any }[] = [];

beforeAll(async () => {
  env = await createDevEnvironment();
  for (const key of EXTRA_KEYS) {
    const created = await runCli(['keys', 'create', '--config', env.init.config, '--name', key.name, '--algorithm', key.algorithm]);
    expect(created.code, created.stderr).toBe(0);
  }
  const policy = parseYaml(readFileSync(env.init.policy, 'utf8')) as { projects: Record<string, { keys: string[] }> };
  const project = policy.projects[env.init.project];
  if (project === undefined) throw new Error('no example project in the policy');
  project.keys.push(...EXTRA_KEYS.map((k) => k.name));
  writeFileSync(env.init.policy, toYaml(policy));
  service = await startDevService(env);
  tls = devClientTls(env);
  work = mkdtempSync(join(tmpdir(), 'signet-formats-'));
  // An in-toto Statement, as `signet manifest create` writes one.
  manifestBytes = Buffer.from(
    `${JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: 'app.tar.gz', digest: { sha256: createHash('sha256').update('app').digest('hex') } }],
      predicateType: 'https://signet.dev/release/v1',
      predicate: { version: '1.2.0' },
    })}\n`,
  );
  manifest = join(work, 'manifest.intoto.json');
  writeFileSync(manifest, manifestBytes);
});

afterAll(async () => {
  await service.stop();
});

interface CliSigned {
  readonly signatureFile: string;
  readonly armoredFile?: string;
  readonly receiptFile: string;
  readonly receipt: any;
}

/** `signet sign` with the dev client profile, against the running service. */
async function cliSign(args: readonly string[], out: string): Promise<CliSigned> {
  const token = await devToken(env);
  const result = await runCli(['sign', '--dir', env.dir, '--url', service.url, '--out', join(work, out), '--json', ...args], {
    env: { ...process.env, SIGNET_ID_TOKEN: token },
  });
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  const outcome = JSON.parse(result.stdout) as Omit<CliSigned, 'receipt'>;
  const receipt = JSON.parse(readFileSync(outcome.receiptFile, 'utf8'));
  answers.push({ format: receipt.format as string, answer: receipt });
  return { ...outcome, receipt };
}

async function signHttp(body: Record<string, unknown>, token?: string) {
  return httpsCall(`${service.url}/v1/sign`, { json: { project: env.init.project, ...body }, ...tls, headers: { authorization: `Bearer ${token ?? (await devToken(env))}` } });
}

async function publicKeyFile(keyId: string): Promise<string> {
  const key = await httpsCall(`${service.url}/v1/keys/${keyId}`, { ca: tls.ca });
  expect(key.status).toBe(200);
  const path = join(work, `${keyId}.pub.pem`);
  writeFileSync(path, key.json.publicKeyPem as string);
  return path;
}

function run(command: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

describe('every answer carries the chain', () => {
  it('raw: the chain is leaf, intermediate, root, and the leaf holds the key', async () => {
    const artifact = join(work, 'artifact.bin');
    writeFileSync(artifact, 'artifact bytes');
    const signed = await cliSign(['--file', artifact, '--format', 'raw'], 'artifact.sig');
    const chain = signed.receipt.chain as string[];
    expect(chain).toHaveLength(3);
    const published = await httpsCall(`${service.url}/v1/keys/${env.init.keyId}/chain`, { ca: tls.ca });
    expect(chain.join('')).toBe(published.text);
    const verified = execFileSync('openssl', ['dgst', '-sha256', '-verify', await publicKeyFile(env.init.keyId), '-signature', signed.signatureFile, artifact]).toString();
    expect(verified).toContain('Verified OK');
  });
});

describe('pgp', () => {
  async function gpgVerify(keyId: string, signature: string, data: string): Promise<{ code: number; stderr: string }> {
    const home = mkdtempSync(join(tmpdir(), 'signet-gpg-'));
    chmodSync(home, 0o700);
    const gpg = (args: readonly string[]) => run('gpg', ['--homedir', home, '--batch', '--no-tty', '--no-autostart', ...args]);
    const key = await httpsCall(`${service.url}/v1/keys/${keyId}/pgp`, { ca: tls.ca });
    expect(key.status).toBe(200);
    const keyFile = join(home, 'key.asc');
    writeFileSync(keyFile, key.text);
    const imported = await gpg(['--import', keyFile]);
    expect(imported.code, imported.stderr).toBe(0);
    return gpg(['--verify', signature, data]);
  }

  it('gpg --verify accepts the binary and the armored signature made with the published key (P-256)', async () => {
    const signed = await cliSign(['--payload', manifest, '--format', 'pgp'], 'manifest.pgp.sig');
    expect(signed.armoredFile).toBe(`${signed.signatureFile}.asc`);
    expect(readFileSync(signed.signatureFile).toString('base64')).toBe(signed.receipt.signature);
    expect(readFileSync(signed.armoredFile!, 'utf8')).toBe(signed.receipt.armored);
    expect(signed.receipt.armored).toMatch(/^-----BEGIN PGP SIGNATURE-----/);
    for (const file of [signed.signatureFile, signed.armoredFile!]) {
      const verified = await gpgVerify(env.init.keyId, file, manifest);
      expect(verified.code, verified.stderr).toBe(0);
      expect(verified.stderr).toContain('Good signature');
    }
    // One changed byte and gpg refuses.
    const changed = join(work, 'manifest-changed.json');
    writeFileSync(changed, Buffer.concat([manifestBytes.subarray(0, -1), Buffer.from('x')]));
    const refused = await gpgVerify(env.init.keyId, signed.signatureFile, changed);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('BAD signature');
  });

  it('Ed25519 keys too', async () => {
    const signed = await cliSign(['--payload', manifest, '--format', 'pgp', '--key-id', 'release-ed25519'], 'manifest.ed25519.sig');
    const verified = await gpgVerify('release-ed25519@1', signed.signatureFile, manifest);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stderr).toContain('Good signature');
  });
});

describe('cms', () => {
  function opensslCmsVerify(signature: string, content: string): { ok: boolean; output: string } {
    try {
      const output = execFileSync(
        'openssl',
        ['cms', '-verify', '-binary', '-content', content, '-inform', 'DER', '-in', signature, '-CAfile', env.init.codeSigningRoot, '-purpose', 'any', '-out', '/dev/null'],
        { stdio: 'pipe' },
      );
      return { ok: true, output: output.toString() };
    } catch (error) {
      return { ok: false, output: String((error as { stderr?: Buffer }).stderr ?? error) };
    }
  }

  it('openssl cms -verify accepts a detached SignedData over the manifest, from the payload (P-256)', async () => {
    const signed = await cliSign(['--payload', manifest, '--format', 'cms'], 'manifest.p7s');
    expect(readFileSync(signed.signatureFile).toString('base64')).toBe(signed.receipt.signature);
    const verified = opensslCmsVerify(signed.signatureFile, manifest);
    expect(verified.ok, verified.output).toBe(true);
    const changed = join(work, 'manifest-cms-changed.json');
    writeFileSync(changed, Buffer.concat([manifestBytes, Buffer.from(' ')]));
    expect(opensslCmsVerify(signed.signatureFile, changed).ok).toBe(false);
  });

  it('from a digest computed by the client, with SHA-384 and a P-384 key', async () => {
    const signed = await cliSign(['--file', manifest, '--format', 'cms', '--digest-algorithm', 'sha384', '--key-id', 'release-p384'], 'manifest.p384.p7s');
    const verified = opensslCmsVerify(signed.signatureFile, manifest);
    expect(verified.ok, verified.output).toBe(true);
  });

  it('with an RSA-PSS key (RFC 4056 parameters)', async () => {
    const signed = await cliSign(['--file', manifest, '--format', 'cms', '--key-id', 'release-rsa'], 'manifest.rsa.p7s');
    const verified = opensslCmsVerify(signed.signatureFile, manifest);
    expect(verified.ok, verified.output).toBe(true);
  });
});

describe('dsse', () => {
  it('the envelope signature verifies over the PAE with openssl; the envelope is the file and the answer', async () => {
    const signed = await cliSign(['--payload', manifest, '--format', 'dsse'], 'manifest.dsse.json');
    const envelope = JSON.parse(readFileSync(signed.signatureFile, 'utf8'));
    expect(envelope).toEqual(signed.receipt.envelope);
    expect(envelope.payloadType).toBe('application/vnd.in-toto+json');
    expect(Buffer.from(envelope.payload, 'base64').equals(manifestBytes)).toBe(true);
    expect(envelope.signatures).toHaveLength(1);
    expect(envelope.signatures[0].keyid).toBe(env.init.keyId);
    expect(envelope.signatures[0].sig).toBe(signed.receipt.signature);

    // PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body (DSSE protocol.md).
    const type = 'application/vnd.in-toto+json';
    const pae = Buffer.concat([Buffer.from(`DSSEv1 ${Buffer.byteLength(type)} ${type} ${manifestBytes.length} `), manifestBytes]);
    const paeFile = join(work, 'pae.bin');
    const sigFile = join(work, 'dsse.sig');
    writeFileSync(paeFile, pae);
    writeFileSync(sigFile, Buffer.from(envelope.signatures[0].sig, 'base64'));
    const pub = await publicKeyFile(env.init.keyId);
    expect(execFileSync('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', sigFile, paeFile]).toString()).toContain('Verified OK');
    // The signature covers the PAE, not the bare payload.
    expect(() => execFileSync('openssl', ['dgst', '-sha256', '-verify', pub, '-signature', sigFile, manifest], { stdio: 'pipe' })).toThrow();
  });
});

describe('sigstore-bundle', () => {
  let verifier: Verifier;
  // The leaf's URI SAN (ca/profiles.ts leafUri), anchored: the 3.x match is an unanchored regex.
  const policy = { subjectAlternativeName: '^https://127\\.0\\.0\\.1/log/keys/demo-release@1$' };

  beforeAll(async () => {
    const root = await httpsCall(`${service.url}/v1/trust/sigstore`, { ca: tls.ca });
    expect(root.status).toBe(200);
    expect(root.json.mediaType).toBe('application/vnd.dev.sigstore.trustedroot+json;version=0.2');
    verifier = new Verifier(toTrustMaterial(TrustedRoot.fromJSON(root.json)), { ctlogThreshold: 0, tlogThreshold: 1 });
  });

  function outcome(bundle: unknown, artifact: Buffer | undefined, identity = policy): string {
    try {
      verifier.verify(toSignedEntity(bundleFromJSON(bundle), artifact), identity);
      return 'OK';
    } catch (error) {
      return (error as { code?: string }).code ?? String(error);
    }
  }

  it('GET /v1/trust/sigstore has an ETag and answers 304 to If-None-Match', async () => {
    const first = await httpsCall(`${service.url}/v1/trust/sigstore`, { ca: tls.ca });
    const etag = first.headers.etag as string;
    expect(etag).toMatch(/^"/);
    expect(first.headers['cache-control']).toContain('max-age');
    const again = await httpsCall(`${service.url}/v1/trust/sigstore`, { ca: tls.ca, headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    const doc = await httpsCall(`${service.url}/openapi.json`, { ca: tls.ca });
    expect(Object.keys(doc.json.paths as object)).toContain('/v1/trust/sigstore');
    expect(Object.keys(doc.json.components.schemas as object)).toEqual(expect.arrayContaining(['SigstoreTrustedRoot', 'SigstoreBundle', 'DsseEnvelope']));
  });

  it('a message signature over the artifact digest: @sigstore/verify accepts it with the served trusted root', async () => {
    const signed = await cliSign(['--file', manifest, '--format', 'sigstore-bundle'], 'manifest.sigstore.json');
    const bundle = JSON.parse(readFileSync(signed.signatureFile, 'utf8'));
    expect(bundle).toEqual(signed.receipt.bundle);
    expect(bundle.mediaType).toBe('application/vnd.dev.sigstore.bundle.v0.3+json');
    expect(bundle.messageSignature).toBeDefined();
    expect(signed.receipt.log.inclusionPromise).toBeTypeOf('string');
    expect(outcome(bundle, manifestBytes)).toBe('OK');
    // Another artifact, or another identity, is refused.
    expect(outcome(bundle, Buffer.concat([manifestBytes, Buffer.from('x')]))).not.toBe('OK');
    expect(outcome(bundle, manifestBytes, { subjectAlternativeName: '^https://127\\.0\\.0\\.1/log/keys/other@1$' })).not.toBe('OK');
  });

  it('a DSSE envelope over the manifest: @sigstore/verify accepts it', async () => {
    const signed = await cliSign(['--payload', manifest, '--format', 'sigstore-bundle'], 'manifest.dsse.sigstore.json');
    const bundle = JSON.parse(readFileSync(signed.signatureFile, 'utf8'));
    expect(bundle.dsseEnvelope.payloadType).toBe('application/vnd.in-toto+json');
    expect(bundle.verificationMaterial.tlogEntries[0].kindVersion).toEqual({ kind: 'dsse', version: '0.0.1' });
    expect(outcome(bundle, undefined)).toBe('OK');
    const tampered = JSON.parse(JSON.stringify(bundle));
    tampered.dsseEnvelope.payload = Buffer.concat([manifestBytes, Buffer.from(' ')]).toString('base64');
    expect(outcome(tampered, undefined)).not.toBe('OK');
  });

  it('an identical retry gets the same signature in a bundle that still verifies', async () => {
    const token = await devToken(env);
    const body = { format: 'sigstore-bundle', digest: { algorithm: 'sha256', value: createHash('sha256').update(manifestBytes).digest('hex') } };
    const first = await signHttp(body, token);
    const retry = await signHttp(body, token);
    expect(first.status).toBe(200);
    expect(retry.status).toBe(200);
    expect(retry.json.signature).toBe(first.json.signature);
    expect(retry.json.log.index).toBe(first.json.log.index);
    expect(outcome(retry.json.bundle, manifestBytes)).toBe('OK');
    answers.push({ format: 'sigstore-bundle', answer: retry.json });
  });
});

describe('refusals: nothing is signed or logged', () => {
  async function expectRefused(body: Record<string, unknown>, status: number, code: string): Promise<void> {
    const before = signaturesIssued(service);
    const logBefore = (await httpsCall(`${service.url}/v1/log`, { ca: tls.ca })).json.treeSize as number;
    const answer = await signHttp(body);
    expect(answer.status, answer.text).toBe(status);
    expect(answer.json.error.code).toBe(code);
    expect(signaturesIssued(service)).toBe(before);
    expect((await httpsCall(`${service.url}/v1/log`, { ca: tls.ca })).json.treeSize).toBe(logBefore);
  }
  const payload = (): string => manifestBytes.toString('base64');
  const digest = (): { algorithm: string; value: string } => ({ algorithm: 'sha256', value: createHash('sha256').update(manifestBytes).digest('hex') });

  it('a format the key algorithm cannot make: FORMAT_KEY_UNSUPPORTED', async () => {
    await expectRefused({ format: 'cms', keyId: 'release-ed25519', digest: digest() }, 400, 'FORMAT_KEY_UNSUPPORTED');
    await expectRefused({ format: 'pgp', keyId: 'release-rsa', payload: payload() }, 400, 'FORMAT_KEY_UNSUPPORTED');
    await expectRefused({ format: 'sigstore-bundle', keyId: 'release-ed25519', digest: digest() }, 400, 'FORMAT_KEY_UNSUPPORTED');
    await expectRefused({ format: 'sigstore-bundle', keyId: 'release-p384', payload: payload() }, 400, 'FORMAT_KEY_UNSUPPORTED');
    await expectRefused({ format: 'sigstore-bundle', digest: { algorithm: 'sha384', value: 'ab'.repeat(48) } }, 400, 'FORMAT_KEY_UNSUPPORTED');
  });

  it('dsse and pgp without the payload: PAYLOAD_REQUIRED', async () => {
    await expectRefused({ format: 'dsse', digest: digest() }, 400, 'PAYLOAD_REQUIRED');
    await expectRefused({ format: 'pgp', digest: digest() }, 400, 'PAYLOAD_REQUIRED');
  });

  it('the CLI refuses --file for dsse and pgp before calling the service', async () => {
    const result = await runCli(['sign', '--dir', env.dir, '--url', service.url, '--file', manifest, '--format', 'dsse'], { env: { ...process.env, SIGNET_ID_TOKEN: 'unused' } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--payload');
  });
});

describe('the log records every signature (runs last: checks every answer above)', () => {
  it('each signature entry is in the log, with its leaf, a valid inclusion proof, a signed checkpoint, and its decision', async () => {
    const info = (await httpsCall(`${service.url}/v1/log`, { ca: tls.ca })).json as { origin: string; publicKeyPem: string };
    const kinds: Record<string, string[]> = {
      raw: ['hashedrekord/0.0.1'],
      dsse: ['dsse/0.0.1'],
      pgp: ['signet.envelope-signature/v1'],
      cms: ['signet.envelope-signature/v1'],
      'sigstore-bundle': ['hashedrekord/0.0.1', 'dsse/0.0.1'],
    };
    expect(new Set(answers.map((a) => a.format))).toEqual(new Set(Object.keys(kinds)));
    for (const { format, answer } of answers) {
      const log = answer.log;
      const entry = await httpsCall(`${service.url}/v1/log/entries/${log.index}`, { ca: tls.ca });
      expect(entry.status).toBe(200);
      expect(kinds[format]).toContain(entry.json.kind);
      expect(entry.json.leaf).toBe(log.leaf);
      const leaf = Buffer.from(log.leaf as string, 'base64');
      expect(referenceLeafHash(leaf).toString('base64')).toBe(log.leafHash);
      const b64 = (hashes: string[]) => hashes.map((h) => Buffer.from(h, 'base64'));
      expect(recursiveVerifyInclusion(referenceLeafHash(leaf), log.index, log.treeSize, b64(log.inclusionProof), Buffer.from(log.rootHash, 'base64'))).toBe(true);
      const [, size, root] = (log.checkpoint as string).split('\n');
      expect([size, root]).toEqual([String(log.treeSize), log.rootHash]);
      expect(verifyCheckpoint(log.checkpoint, info.origin, info.publicKeyPem).ok).toBe(true);
      // The entry records this signature.
      const body = JSON.parse(leaf.toString('utf8'));
      if (format === 'pgp' || format === 'cms') {
        expect(body).toMatchObject({ apiVersion: 'signet.dev/v1', kind: 'EnvelopeSignature', spec: { format, signature: { content: answer.signature }, data: { hash: answer.digest } } });
        if (format === 'cms') expect(body.spec.signedAttributes).toBeTypeOf('string');
      }
      // The decision: proven in the same tree, an allow for this key, format and digest.
      const decision = log.decision;
      expect(decision.index).toBe(log.decisionIndex);
      const decisionLeaf = Buffer.from(decision.leaf as string, 'base64');
      expect(recursiveVerifyInclusion(referenceLeafHash(decisionLeaf), decision.index, log.treeSize, b64(decision.inclusionProof), Buffer.from(log.rootHash, 'base64'))).toBe(true);
      const logged = JSON.parse(decisionLeaf.toString('utf8'));
      expect(logged).toMatchObject({ kind: 'SignDecision', spec: { decision: 'allow', keyId: answer.keyId, format, digest: answer.digest, identity: { claims: { repository: 'example/demo' } } } });
    }
  });
});
