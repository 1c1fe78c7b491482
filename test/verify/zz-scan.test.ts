import { afterAll, beforeAll, it } from 'vitest';
import { verifyRelease } from '../../verify/verify-release.js';
import { VerifyFixture, type Release } from './fixture.js';
let fixture: VerifyFixture;
beforeAll(async () => { fixture = await VerifyFixture.start(); });
afterAll(async () => { await fixture.stop(); });
it('scan', { timeout: 900_000 }, async () => {
  const releases: [string, Release][] = [['synthetic sigstore', await fixture.release('sigstore-bundle')]];
  for (const format of ['raw', 'dsse', 'pgp', 'cms', 'sigstore-bundle'] as const) releases.push([`service ${format}`, await fixture.signedByService({ format })]);
  for (const [label, release] of releases) {
    const receiptBytes = Buffer.from(JSON.stringify(release.receipt));
    for (const target of ['signature', 'manifest', 'receipt'] as const) {
      const bytes = target === 'receipt' ? receiptBytes : release[target];
      for (let at = 0; at < bytes.length; at += 1) {
        const changed = Buffer.from(bytes); changed[at]! ^= 1 << (at % 8);
        try {
          const r = await verifyRelease({ manifest: target === 'manifest' ? changed : release.manifest, signature: target === 'signature' ? changed : release.signature, receipt: target === 'receipt' ? changed : receiptBytes, trustBundle: release.trustBundle, artifacts: release.artifacts, artifactMode: 'directory' });
          if (r.ok && target !== 'receipt') console.log('OK!', label, target, at, JSON.stringify(bytes.subarray(Math.max(0, at - 30), at + 30).toString('latin1')));
          if (r.ok && target === 'receipt') console.log('receipt-ok', label, JSON.stringify(bytes.subarray(Math.max(0, at - 40), at + 10).toString('latin1')));
        } catch (e) { console.log('THROW', label, target, at, (e as Error).message.slice(0, 200)); }
      }
    }
  }
});
