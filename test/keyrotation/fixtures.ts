/** Officers, governance and keys for the proposal tests: plain records, as storage would hold them. */
import { createHash, randomBytes } from 'node:crypto';
import { DEFAULT_QUORUM_POLICY, initialGovernance, type Governance, type OfficerRecord, type QuorumPolicy } from '../../keyrotation/proposals.js';
import type { KeyVersionRecord } from '../../store/store.js';
import { referenceHotp } from './reference-totp.js';

export interface TestOfficer {
  readonly name: string;
  readonly secret: Buffer;
  readonly certificateSha256: string;
}

export const T0 = new Date('2026-03-01T12:00:10.000Z');

export function fingerprint(seed: string): string {
  return createHash('sha256').update(seed).digest('hex');
}

export function makeOfficers(names: readonly string[]): TestOfficer[] {
  return names.map((name) => ({ name, secret: randomBytes(20), certificateSha256: fingerprint(`cert:${name}:${randomBytes(8).toString('hex')}`) }));
}

export function officerRecord(officer: TestOfficer, at: Date = T0): OfficerRecord {
  return {
    name: officer.name,
    certificateSha256: officer.certificateSha256,
    status: 'active',
    // Opaque to the core; a real one comes from signer/secret-sealing.ts.
    sealedTotpSecret: `signet-sealed:v1:test:${officer.name}`,
    lastTotpStep: null,
    addedAt: at.toISOString(),
    removedAt: null,
  };
}

export function governanceOf(officers: readonly TestOfficer[], quorum: QuorumPolicy = DEFAULT_QUORUM_POLICY): Governance {
  return initialGovernance(officers.map((o) => officerRecord(o)), quorum);
}

export const stepOf = (at: Date): number => Math.floor(at.getTime() / 30_000);

/** The officer's code for the step of `at` plus `delta`, computed independently of the product. */
export function codeFor(officer: TestOfficer, at: Date, delta = 0): string {
  return referenceHotp(officer.secret, stepOf(at) + delta);
}

export function activeKey(name = 'demo-release', version = 1): KeyVersionRecord {
  return {
    keyId: `${name}@${version}`,
    name,
    version,
    algorithm: 'ecdsa-p256',
    state: 'active',
    hsmKeyId: randomBytes(16).toString('hex'),
    publicKeyPem: '-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n',
    createdAt: '2026-01-01T00:00:00.000Z',
    notBefore: '2026-01-01T00:00:00.000Z',
    notAfter: null,
    compromisedAt: null,
  };
}
