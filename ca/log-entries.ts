/**
 * What the CA records in the transparency log, canonical JSON like log/entries.ts:
 *
 * - `signet.certificate/v1`: a CA created, a leaf issued, a leaf revoked. Written in
 *   the same storage transaction as the certificate or revocation itself, so neither
 *   exists without its entry. The certificate (PEM) is in the entry: anyone reading
 *   the log can see every certificate the CA ever issued.
 * - `signet.certificate-expiry/v1`: a warning that a certificate in use expires within
 *   the configured window (ca/expiry.ts), at most once per certificate per UTC day.
 */
import { canonicalBytes } from '../log/canonical-json.js';
import type { RevocationReason } from '../store/store.js';
import type { ExpiringCertificate } from './expiry.js';

export const CERTIFICATE_EVENT_KIND = 'signet.certificate/v1';
export const CERTIFICATE_EXPIRY_KIND = 'signet.certificate-expiry/v1';

export type CertificateEvent =
  | {
      readonly event: 'ca-created';
      readonly caId: string;
      readonly role: 'root' | 'intermediate';
      readonly serialNumber: string;
      readonly subject: string;
      readonly issuerCaId: string | null;
      readonly certificatePem: string;
      readonly time: string;
    }
  | {
      readonly event: 'issued';
      readonly keyId: string;
      readonly serialNumber: string;
      readonly issuerCaId: string;
      readonly certificatePem: string;
      readonly time: string;
    }
  | {
      readonly event: 'revoked';
      readonly keyId: string;
      readonly serialNumber: string;
      readonly issuerCaId: string;
      readonly reason: RevocationReason;
      readonly time: string;
    };

export function certificateEventLeaf(entry: CertificateEvent): Buffer {
  return canonicalBytes({ apiVersion: 'signet.dev/v1', kind: 'CertificateEvent', spec: { ...entry } });
}

export function certificateExpiryLeaf(entry: { readonly certificate: ExpiringCertificate; readonly windowDays: number; readonly time: string }): Buffer {
  const c = entry.certificate;
  return canonicalBytes({
    apiVersion: 'signet.dev/v1',
    kind: 'CertificateExpiryWarning',
    spec: {
      certificate: {
        role: c.role,
        id: c.id,
        serialNumber: c.serialNumber,
        keyId: c.keyId,
        notAfter: c.notAfter,
      },
      expired: c.expired,
      daysLeft: c.daysLeft,
      windowDays: entry.windowDays,
      time: entry.time,
    },
  });
}
