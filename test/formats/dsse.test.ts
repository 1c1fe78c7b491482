/**
 * DSSE (formats/dsse.ts) checked independently: the PAE is rebuilt by a shell script
 * with printf from the envelope's own fields (base64 -d), and the signature verified by
 * `openssl dgst -verify` (ECDSA, RSA-PSS) or `openssl pkeyutl -verify -rawin` (Ed25519).
 * Nothing from formats/ takes part in the check.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildDsseEnvelope, DSSE_IN_TOTO_PAYLOAD_TYPE, parseDsseEnvelope, preAuthenticationEncoding, type DsseEnvelope } from '../../formats/dsse.js';
import { dsseSigningHash } from '../../formats/support.js';
import { KEY_ALGORITHMS, type KeyAlgorithm } from '../../signer/algorithms.js';
import { createTestHierarchy, generateSigningKey, signMessage, type TestHierarchy } from './pki.js';

const CHECK_SCRIPT = String.raw`
set -euo pipefail
cd "$WORK"
printf '%s' "$ENVELOPE_PAYLOAD" | base64 -d > payload.bin
printf '%s' "$ENVELOPE_SIG" | base64 -d > sig.bin
type_len=$(printf '%s' "$ENVELOPE_TYPE" | wc -c)
payload_len=$(wc -c < payload.bin)
{ printf 'DSSEv1 %d %s %d ' "$type_len" "$ENVELOPE_TYPE" "$payload_len"; cat payload.bin; } > pae.bin
case "$ALGORITHM" in
  ed25519) openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in pae.bin -sigfile sig.bin ;;
  rsa-pss-*) openssl dgst "-$HASH" -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:-1 -verify pub.pem -signature sig.bin pae.bin ;;
  *) openssl dgst "-$HASH" -verify pub.pem -signature sig.bin pae.bin ;;
esac
`;

function shellVerify(h: TestHierarchy, envelope: DsseEnvelope): { ok: boolean; output: string } {
  const [signature] = envelope.signatures;
  const result = spawnSync('bash', ['-c', CHECK_SCRIPT], {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      WORK: h.dir,
      ENVELOPE_TYPE: envelope.payloadType,
      ENVELOPE_PAYLOAD: envelope.payload,
      ENVELOPE_SIG: signature?.sig ?? '',
      ALGORITHM: h.algorithm,
      HASH: dsseSigningHash(h.algorithm) ?? 'sha512',
    },
  });
  return { ok: result.status === 0, output: result.stdout + result.stderr };
}

function signEnvelope(h: TestHierarchy, payload: Buffer, payloadType = DSSE_IN_TOTO_PAYLOAD_TYPE): DsseEnvelope {
  const pae = preAuthenticationEncoding(payloadType, payload);
  const sig = signMessage(h.algorithm, h.privateKey, pae, dsseSigningHash(h.algorithm));
  return buildDsseEnvelope(payloadType, payload, [{ keyid: 'demo-release@1', sig }]);
}

const STATEMENT = Buffer.from(
  `${JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'app.tar.gz', digest: { sha256: 'ab'.repeat(32) } }], predicateType: 'https://slsa.dev/provenance/v1', predicate: { note: 'é — non-ASCII bytes count as bytes' } }, null, 2)}\n`,
);

describe('DSSE PAE', () => {
  it('matches the test vector of the DSSE protocol (secure-systems-lab/dsse protocol.md)', () => {
    expect(preAuthenticationEncoding('http://example.com/HelloWorld', Buffer.from('hello world')).toString('latin1')).toBe(
      'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
    );
  });

  it('counts bytes, not characters, and keeps an empty body', () => {
    expect(preAuthenticationEncoding('t/é', Buffer.from('ü')).equals(Buffer.concat([Buffer.from('DSSEv1 4 t/'), Buffer.from('é'), Buffer.from(' 2 '), Buffer.from('ü')]))).toBe(true);
    expect(preAuthenticationEncoding('a', Buffer.alloc(0)).toString()).toBe('DSSEv1 1 a 0 ');
    expect(() => preAuthenticationEncoding('', Buffer.from('x'))).toThrow(expect.objectContaining({ code: 'FORMAT_INPUT_INVALID' }));
  });
});

describe('DSSE envelope, verified by printf + openssl', () => {
  for (const algorithm of KEY_ALGORITHMS as readonly KeyAlgorithm[]) {
    it(`${algorithm}: accepted untouched, refused with a changed payload byte or another key`, async () => {
      const h = await createTestHierarchy(algorithm);
      const envelope = signEnvelope(h, STATEMENT);
      expect(envelope).toEqual({
        payloadType: 'application/vnd.in-toto+json',
        payload: STATEMENT.toString('base64'),
        signatures: [{ keyid: 'demo-release@1', sig: expect.any(String) }],
      });
      const accepted = shellVerify(h, envelope);
      expect(accepted.output).toMatch(/Verified OK|Signature Verified Successfully/);
      expect(accepted.ok).toBe(true);

      const changed = Buffer.from(STATEMENT);
      changed[10] = (changed[10] ?? 0) ^ 0x01;
      expect(shellVerify(h, { ...envelope, payload: changed.toString('base64') }).ok).toBe(false);
      // The payload type is authenticated too.
      expect(shellVerify(h, { ...envelope, payloadType: 'application/json' }).ok).toBe(false);

      // Another key of the same kind does not verify it.
      const otherDir = mkdtempSync(join(tmpdir(), 'signet-dsse-'));
      writeFileSync(join(otherDir, 'pub.pem'), generateSigningKey(algorithm).publicKey.export({ type: 'spki', format: 'pem' }));
      expect(shellVerify({ ...h, dir: otherDir }, envelope).ok).toBe(false);
    });
  }
});

describe('parseDsseEnvelope (hostile input)', () => {
  it('reads back what buildDsseEnvelope wrote, and URL-safe base64', () => {
    const envelope = buildDsseEnvelope('t', Buffer.from([0xfb, 0xff, 0xfe]), [{ keyid: 'k', sig: Buffer.from([0xfb, 0xef]) }]);
    const parsed = parseDsseEnvelope(JSON.parse(JSON.stringify(envelope)));
    expect(parsed.payload).toEqual(Buffer.from([0xfb, 0xff, 0xfe]));
    expect(parsed.signatures).toEqual([{ keyid: 'k', sig: Buffer.from([0xfb, 0xef]) }]);
    const urlSafe = parseDsseEnvelope({ payloadType: 't', payload: '-__-', signatures: [{ sig: '-_8' }] });
    expect(urlSafe.payload).toEqual(Buffer.from('+//+', 'base64'));
    expect(urlSafe.signatures[0]?.keyid).toBe('');
  });

  it.each([
    ['not an object', 'envelope'],
    [null, 'null'],
    [{ payloadType: '', payload: '', signatures: [{ sig: 'AA==' }] }, 'empty type'],
    [{ payloadType: 't', payload: 'not base64!', signatures: [{ sig: 'AA==' }] }, 'bad payload'],
    // Hung the parser (exponential backtracking) before its base64 pattern became one class.
    [{ payloadType: 't', payload: `${'A'.repeat(4096)}~`, signatures: [{ sig: 'AA==' }] }, 'long payload, one bad character'],
    [{ payloadType: 't', payload: 'AB==', signatures: [{ sig: 'AA==' }] }, 'unused bits set'],
    [{ payloadType: 't', payload: 'AA=', signatures: [{ sig: 'AA==' }] }, 'short padding'],
    [{ payloadType: 't', payload: '', signatures: [] }, 'no signature'],
    [{ payloadType: 't', payload: '', signatures: [{ sig: '' }] }, 'empty signature'],
    [{ payloadType: 't', payload: '', signatures: [{ sig: 'AA==', keyid: 7 }] }, 'numeric keyid'],
  ] as [unknown, string][])('refuses %j (%s) with FORMAT_INPUT_INVALID', (document) => {
    expect(() => parseDsseEnvelope(document)).toThrow(expect.objectContaining({ code: 'FORMAT_INPUT_INVALID' }));
  });

  it('refuses to build an envelope without signatures', () => {
    expect(() => buildDsseEnvelope('t', Buffer.from('x'), [])).toThrow(expect.objectContaining({ code: 'FORMAT_INPUT_INVALID' }));
  });
});
