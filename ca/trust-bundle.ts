/**
 * The published trust (pure: records in, documents out), everything an offline
 * verifier needs and nothing else:
 *
 * - the trust bundle (GET /v1/trust): roots, intermediates, every signing key past and
 *   present with its certificates, state and validity window, every revocation and the
 *   latest CRL of each CA, and the transparency log's origin and public key. Its shape
 *   is `schemas/trust-bundle.schema.json`; `version` changes only with an incompatible
 *   change of that shape.
 * - the chain of a key (leaf, intermediate, root) and a JWKS of the signing keys.
 *
 * Output is deterministic for a given state (sorted, no "generated at" time), so its
 * hash serves as an ETag and caches revalidate cheaply.
 */
import { createHash, createPublicKey, type JsonWebKey } from 'node:crypto';
import type { CaCertificateRecord, CrlRecord, KeyState, KeyVersionRecord, LeafCertificateRecord, RevocationReason, RevocationRecord } from '../store/store.js';
import { crlUrl, leafUri } from './profiles.js';

export const TRUST_BUNDLE_MEDIA_TYPE = 'application/vnd.signet.trust-bundle+json;version=1';
export const TRUST_BUNDLE_VERSION = 1;

export interface TrustBundleCa {
  readonly caId: string;
  readonly subject: string;
  readonly serialNumber: string;
  /** `active` issues certificates; `retired` no longer does, but its certificates stay valid. */
  readonly status: 'active' | 'retired';
  readonly algorithm: string;
  readonly certificatePem: string;
  readonly notBefore: string;
  readonly notAfter: string;
  /** The issuing root; null for a root. */
  readonly issuerCaId: string | null;
  /** Where this CA's CRL is published. */
  readonly crlUrl: string;
}

export interface TrustBundleCertificate {
  readonly serialNumber: string;
  readonly issuerCaId: string;
  readonly certificatePem: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly revocation: { readonly revokedAt: string; readonly reason: RevocationReason } | null;
}

export interface TrustBundleKey {
  readonly keyId: string;
  readonly name: string;
  readonly version: number;
  readonly algorithm: string;
  readonly state: KeyState;
  readonly publicKeyPem: string;
  /** The identity in the leaf's URI SAN (what Sigstore identity policies match). */
  readonly identity: string;
  readonly createdAt: string;
  /** The key's own validity window; signatures outside it are not valid. */
  readonly notBefore: string;
  readonly notAfter: string | null;
  /** Signatures logged at or after this instant are invalid. */
  readonly compromisedAt: string | null;
  /** The current certificate (see `currentLeaf`), or null if the key has none. */
  readonly certificatePem: string | null;
  /** Every certificate the key ever had, oldest first. */
  readonly certificates: readonly TrustBundleCertificate[];
}

export interface TrustBundleRevocation {
  readonly serialNumber: string;
  readonly issuerCaId: string;
  readonly keyId: string | null;
  readonly revokedAt: string;
  readonly reason: RevocationReason;
}

export interface TrustBundleCrl {
  readonly issuerCaId: string;
  readonly crlNumber: number;
  readonly thisUpdate: string;
  readonly nextUpdate: string;
  readonly url: string;
  readonly crlPem: string;
}

export interface TrustBundleLog {
  readonly origin: string;
  /** Hex SHA-256 of the log key's DER SubjectPublicKeyInfo. */
  readonly logId: string;
  readonly publicKeyPem: string;
  /** Checkpoints are C2SP signed notes with ECDSA P-256 over SHA-256 (SIGSTORE-NOTES.md). */
  readonly signatureAlgorithm: 'ecdsa-p256-sha256';
}

export interface TrustBundle {
  readonly mediaType: typeof TRUST_BUNDLE_MEDIA_TYPE;
  readonly version: typeof TRUST_BUNDLE_VERSION;
  readonly log: TrustBundleLog;
  readonly roots: readonly TrustBundleCa[];
  readonly intermediates: readonly TrustBundleCa[];
  readonly keys: readonly TrustBundleKey[];
  readonly revocations: readonly TrustBundleRevocation[];
  readonly crls: readonly TrustBundleCrl[];
}

/** The stored state a bundle is built from. */
export interface TrustState {
  readonly cas: readonly CaCertificateRecord[];
  readonly leaves: readonly LeafCertificateRecord[];
  readonly revocations: readonly RevocationRecord[];
  /** The latest CRL of each CA that has one. */
  readonly crls: readonly CrlRecord[];
  readonly keys: readonly KeyVersionRecord[];
}

export interface PublicationSettings {
  readonly publicUrl: string;
  readonly logOrigin: string;
  /** The log's key name: it signs checkpoints, not releases, so it is not among `keys`. */
  readonly logKeyName: string;
}

const byText = <T>(key: (item: T) => string) => (a: T, b: T): number => {
  const x = key(a);
  const y = key(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

export function crlPem(der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN X509 CRL-----\n${lines.join('\n')}\n-----END X509 CRL-----\n`;
}

/**
 * The certificate a key presents now: among its unrevoked leaves, the one valid at
 * `now` that lasts longest; failing that, the newest unrevoked one (expired or not yet
 * valid: a verifier judges it at signing time). Null when every leaf is revoked or it
 * has none.
 */
export function currentLeaf(leaves: readonly LeafCertificateRecord[], revokedSerials: ReadonlySet<string>, now: Date): LeafCertificateRecord | null {
  const usable = leaves.filter((leaf) => !revokedSerials.has(leaf.serialNumber));
  const at = now.getTime();
  const valid = usable.filter((leaf) => Date.parse(leaf.notBefore) <= at && at <= Date.parse(leaf.notAfter));
  const pick = (list: readonly LeafCertificateRecord[], key: (leaf: LeafCertificateRecord) => string): LeafCertificateRecord | null =>
    list.reduce<LeafCertificateRecord | null>((best, leaf) => (best === null || key(leaf) > key(best) ? leaf : best), null);
  return pick(valid, (leaf) => leaf.notAfter) ?? pick(usable, (leaf) => leaf.createdAt);
}

/** Leaf, intermediate, root (PEM, leaf first), or null if an issuer is not among `cas`. */
export function chainOf(leaf: LeafCertificateRecord, cas: readonly CaCertificateRecord[]): string[] | null {
  const intermediate = cas.find((ca) => ca.caId === leaf.issuerCaId);
  const root = intermediate === undefined ? undefined : cas.find((ca) => ca.caId === intermediate.issuerCaId);
  if (intermediate === undefined || root === undefined) return null;
  return [leaf.certificatePem, intermediate.certificatePem, root.certificatePem];
}

function caView(ca: CaCertificateRecord, publicUrl: string): TrustBundleCa {
  return {
    caId: ca.caId,
    subject: ca.subject,
    serialNumber: ca.serialNumber,
    status: ca.status,
    algorithm: ca.algorithm,
    certificatePem: ca.certificatePem,
    notBefore: ca.notBefore,
    notAfter: ca.notAfter,
    issuerCaId: ca.issuerCaId,
    crlUrl: crlUrl(publicUrl, ca.caId),
  };
}

/** The keys a bundle lists: every version of every signing key, the log key excepted. */
export function publishedKeys(keys: readonly KeyVersionRecord[], logKeyName: string): KeyVersionRecord[] {
  return keys.filter((key) => key.name !== logKeyName).sort((a, b) => byText<KeyVersionRecord>((k) => k.name)(a, b) || a.version - b.version);
}

export function buildTrustBundle(state: TrustState, log: Omit<TrustBundleLog, 'signatureAlgorithm'>, settings: PublicationSettings, now: Date): TrustBundle {
  const revocations = new Map(state.revocations.map((r) => [r.serialNumber, r]));
  const revokedSerials = new Set(revocations.keys());
  const leafKey = new Map(state.leaves.map((leaf) => [leaf.serialNumber, leaf.keyId]));
  const cas = [...state.cas].sort(byText((ca) => `${ca.createdAt}\u0000${ca.caId}`));

  const keys = publishedKeys(state.keys, settings.logKeyName).map((key): TrustBundleKey => {
    const leaves = state.leaves.filter((leaf) => leaf.keyId === key.keyId).sort(byText((leaf) => `${leaf.notBefore}\u0000${leaf.serialNumber}`));
    const current = currentLeaf(leaves, revokedSerials, now);
    return {
      keyId: key.keyId,
      name: key.name,
      version: key.version,
      algorithm: key.algorithm,
      state: key.state,
      publicKeyPem: key.publicKeyPem,
      identity: leafUri(settings.logOrigin, key.keyId),
      createdAt: key.createdAt,
      notBefore: key.notBefore,
      notAfter: key.notAfter,
      compromisedAt: key.compromisedAt,
      certificatePem: current?.certificatePem ?? null,
      certificates: leaves.map((leaf) => {
        const revoked = revocations.get(leaf.serialNumber);
        return {
          serialNumber: leaf.serialNumber,
          issuerCaId: leaf.issuerCaId,
          certificatePem: leaf.certificatePem,
          notBefore: leaf.notBefore,
          notAfter: leaf.notAfter,
          revocation: revoked === undefined ? null : { revokedAt: revoked.revokedAt, reason: revoked.reason },
        };
      }),
    };
  });

  return {
    mediaType: TRUST_BUNDLE_MEDIA_TYPE,
    version: TRUST_BUNDLE_VERSION,
    log: { ...log, signatureAlgorithm: 'ecdsa-p256-sha256' },
    roots: cas.filter((ca) => ca.role === 'root').map((ca) => caView(ca, settings.publicUrl)),
    intermediates: cas.filter((ca) => ca.role === 'intermediate').map((ca) => caView(ca, settings.publicUrl)),
    keys,
    revocations: [...state.revocations]
      .sort(byText((r) => `${r.revokedAt}\u0000${r.serialNumber}`))
      .map((r) => ({ serialNumber: r.serialNumber, issuerCaId: r.issuerCaId, keyId: leafKey.get(r.serialNumber) ?? null, revokedAt: r.revokedAt, reason: r.reason })),
    crls: [...state.crls]
      .sort(byText((crl) => crl.issuerCaId))
      .map((crl) => ({
        issuerCaId: crl.issuerCaId,
        crlNumber: crl.crlNumber,
        thisUpdate: crl.thisUpdate,
        nextUpdate: crl.nextUpdate,
        url: crlUrl(settings.publicUrl, crl.issuerCaId),
        crlPem: crlPem(crl.der),
      })),
  };
}

/** Base64 DER of a PEM certificate (the `x5c` form, RFC 7517 §4.7). */
function pemToBase64Der(pem: string): string {
  return pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
}

export interface Jwks {
  readonly keys: readonly Readonly<Record<string, unknown>>[];
}

/** Keys that may verify signatures: not yet used (`pending`) and `compromised` keys are left out. */
const JWKS_STATES: ReadonlySet<KeyState> = new Set<KeyState>(['active', 'verify-only', 'retired']);

/**
 * A JWK Set (RFC 7517 §5) of the signing keys that may verify signatures. `kid` is the
 * key version id; `x5c` (§4.7) is the current chain, leaf first; `x5t#S256` (§4.9) the
 * SHA-256 of the leaf. No `alg`: one key signs with whichever digest a request names.
 */
export function buildJwks(state: TrustState, logKeyName: string, now: Date): Jwks {
  const revokedSerials = new Set(state.revocations.map((r) => r.serialNumber));
  const keys = publishedKeys(state.keys, logKeyName)
    .filter((key) => JWKS_STATES.has(key.state))
    .map((key) => {
      const jwk: JsonWebKey = createPublicKey(key.publicKeyPem).export({ format: 'jwk' });
      const leaf = currentLeaf(
        state.leaves.filter((l) => l.keyId === key.keyId),
        revokedSerials,
        now,
      );
      const chain = leaf === null ? null : chainOf(leaf, state.cas);
      const x5c = chain?.map(pemToBase64Der);
      const leafDer = x5c?.[0];
      return {
        ...jwk,
        kid: key.keyId,
        use: 'sig',
        ...(x5c === undefined || leafDer === undefined
          ? {}
          : { x5c, 'x5t#S256': createHash('sha256').update(Buffer.from(leafDer, 'base64')).digest('base64url') }),
      };
    });
  return { keys };
}
