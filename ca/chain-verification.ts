/**
 * Offline verification of a code-signing certificate against a trust bundle: the path
 * leaf → intermediate → root (RFC 5280 §6, for this fixed two-level hierarchy), at a
 * given time (the signing time from the log, not "now": expiry is judged then), with
 * the profile's usages and the bundle's revocations and key states. Pure: input is the
 * bundle, the leaf (and optionally the intermediates that came with it) and the time;
 * nothing is fetched. `signet verify` uses it.
 *
 * Trust anchors are the bundle's roots only. Intermediates may come from the bundle or
 * the caller's chain; either way they must chain to an anchor. Signatures are checked
 * with node:crypto; extensions are read with @peculiar/x509. Every input is
 * untrusted: a malformed bundle or certificate is a refusal with a code, never a throw.
 */
import 'reflect-metadata';
import { createPublicKey, X509Certificate as NodeX509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';

export const CHAIN_FAILURE_CODES = [
  /** The trust bundle is not one (missing or malformed fields). */
  'BUNDLE_INVALID',
  /** A certificate cannot be parsed. */
  'CERT_MALFORMED',
  'CERT_NOT_YET_VALID',
  'CERT_EXPIRED',
  /** The leaf lacks the codeSigning extended key usage (or the intermediate excludes it). */
  'CERT_WRONG_EKU',
  /** The leaf lacks digitalSignature, or a CA certificate lacks keyCertSign. */
  'CERT_WRONG_KEY_USAGE',
  /** The leaf is a CA certificate, or the issuer is not one. */
  'CERT_WRONG_BASIC_CONSTRAINTS',
  /** No intermediate in the bundle or the given chain issued the leaf. */
  'CHAIN_INTERMEDIATE_MISSING',
  /** The intermediate does not chain to a root of the bundle. */
  'CHAIN_ROOT_UNTRUSTED',
  /** A certificate names its issuer but the issuer's signature does not verify. */
  'CHAIN_SIGNATURE_INVALID',
  'CERT_REVOKED',
  /** The key was compromised before the signing time. */
  'KEY_COMPROMISED',
] as const;
export type ChainFailureCode = (typeof CHAIN_FAILURE_CODES)[number];

export type CertificatePosition = 'leaf' | 'intermediate' | 'root';

export type ChainVerification =
  | {
      readonly ok: true;
      /** The bundle's key version this certificate belongs to, or null if the bundle does not list it. */
      readonly keyId: string | null;
      /** The leaf's URI SAN (the identity Sigstore policies match), or null. */
      readonly identity: string | null;
      readonly leafSerialNumber: string;
      readonly intermediateSubject: string;
      readonly rootSubject: string;
    }
  | { readonly ok: false; readonly code: ChainFailureCode; readonly certificate: CertificatePosition | null; readonly reason: string };

export interface ChainVerificationInput {
  /** A trust bundle as served by GET /v1/trust (parsed JSON; untrusted shape). */
  readonly bundle: unknown;
  /** The leaf certificate, PEM. */
  readonly leafPem: string;
  /** Intermediates that came with the leaf (e.g. a receipt's chain); the bundle's are used too. */
  readonly intermediatesPem?: readonly string[];
  /** When the signature was made (the log's integrated time). */
  readonly at: Date;
}

const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
const ANY_EKU = '2.5.29.37.0';

interface Parsed {
  readonly node: NodeX509Certificate;
  readonly peculiar: x509.X509Certificate;
}

interface BundleView {
  readonly roots: readonly string[];
  readonly intermediates: readonly string[];
  readonly revocations: readonly { serialNumber: string; revokedAt: string; reason: string }[];
  readonly keys: readonly { keyId: string; state: string; compromisedAt: string | null; publicKeyPem: string; serials: readonly string[] }[];
}

class Refusal extends Error {
  constructor(
    readonly code: ChainFailureCode,
    readonly certificate: CertificatePosition | null,
    readonly reason: string,
  ) {
    super(reason);
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function stringsOf(list: unknown, field: string): string[] | null {
  if (!Array.isArray(list)) return null;
  const out: string[] = [];
  for (const item of list) {
    if (!isRecord(item) || typeof item[field] !== 'string') return null;
    out.push(item[field]);
  }
  return out;
}

/** Reads what verification needs from an untrusted bundle; BUNDLE_INVALID naming the first bad part. */
function readBundle(bundle: unknown): BundleView {
  const bad = (what: string): Refusal => new Refusal('BUNDLE_INVALID', null, `the trust bundle has no valid ${what}`);
  if (!isRecord(bundle)) throw bad('top-level object');
  const roots = stringsOf(bundle.roots, 'certificatePem');
  if (roots === null) throw bad('roots');
  const intermediates = stringsOf(bundle.intermediates, 'certificatePem');
  if (intermediates === null) throw bad('intermediates');
  if (!Array.isArray(bundle.revocations)) throw bad('revocations');
  const revocations = bundle.revocations.map((r: unknown) => {
    if (!isRecord(r) || typeof r.serialNumber !== 'string' || typeof r.revokedAt !== 'string' || typeof r.reason !== 'string') throw bad('revocations');
    return { serialNumber: r.serialNumber.toLowerCase(), revokedAt: r.revokedAt, reason: r.reason };
  });
  if (!Array.isArray(bundle.keys)) throw bad('keys');
  const keys = bundle.keys.map((k: unknown) => {
    if (!isRecord(k) || typeof k.keyId !== 'string' || typeof k.state !== 'string' || typeof k.publicKeyPem !== 'string') throw bad('keys');
    const compromisedAt = typeof k.compromisedAt === 'string' ? k.compromisedAt : null;
    const serials = Array.isArray(k.certificates)
      ? k.certificates.flatMap((c: unknown) => (isRecord(c) && typeof c.serialNumber === 'string' ? [c.serialNumber.toLowerCase()] : []))
      : [];
    return { keyId: k.keyId, state: k.state, compromisedAt, publicKeyPem: k.publicKeyPem, serials };
  });
  return { roots, intermediates, revocations, keys };
}

function parse(pem: string, position: CertificatePosition): Parsed {
  try {
    return { node: new NodeX509Certificate(pem), peculiar: new x509.X509Certificate(pem) };
  } catch {
    throw new Refusal('CERT_MALFORMED', position, `the ${position} certificate cannot be parsed`);
  }
}

/** Parses what it can; a malformed bundle entry is skipped (it can anchor nothing). */
function parseAll(pems: readonly string[]): Parsed[] {
  return pems.flatMap((pem) => {
    try {
      return [parse(pem, 'intermediate')];
    } catch {
      return [];
    }
  });
}

function checkTime(certificate: Parsed, position: CertificatePosition, at: Date): void {
  const { notBefore, notAfter } = certificate.peculiar;
  if (at < notBefore) {
    throw new Refusal('CERT_NOT_YET_VALID', position, `the ${position} certificate is not valid before ${notBefore.toISOString()} (checked at ${at.toISOString()})`);
  }
  if (at > notAfter) {
    throw new Refusal('CERT_EXPIRED', position, `the ${position} certificate expired at ${notAfter.toISOString()} (checked at ${at.toISOString()})`);
  }
}

function isCa(certificate: Parsed): boolean {
  return certificate.peculiar.getExtension(x509.BasicConstraintsExtension)?.ca === true;
}

function hasKeyUsage(certificate: Parsed, flag: x509.KeyUsageFlags): boolean {
  const usage = certificate.peculiar.getExtension(x509.KeyUsagesExtension);
  return usage !== null && (usage.usages & flag) !== 0;
}

function extendedKeyUsages(certificate: Parsed): readonly string[] | null {
  const eku = certificate.peculiar.getExtension(x509.ExtendedKeyUsageExtension);
  return eku === null ? null : eku.usages.map(String);
}

/** The certificate among `candidates` that issued `child`: names and key identifiers match and the signature verifies. */
function findIssuer(child: Parsed, candidates: readonly Parsed[], position: CertificatePosition, missing: () => Refusal): Parsed {
  const named = candidates.filter((candidate) => child.node.checkIssued(candidate.node));
  for (const candidate of named) {
    if (child.node.verify(candidate.node.publicKey)) return candidate;
  }
  if (named.length > 0) {
    throw new Refusal('CHAIN_SIGNATURE_INVALID', position, `the ${position} certificate names a known issuer but its signature does not verify with that issuer's key`);
  }
  throw missing();
}

function leafIdentity(leaf: Parsed): string | null {
  const san = leaf.peculiar.getExtension(x509.SubjectAlternativeNameExtension);
  return san?.names.items.find((name) => name.type === 'url')?.value ?? null;
}

function verifyOrRefuse(input: ChainVerificationInput): ChainVerification {
  const bundle = readBundle(input.bundle);
  const at = input.at;
  if (!(at instanceof Date) || Number.isNaN(at.getTime())) throw new TypeError('at must be a valid Date');
  const leaf = parse(input.leafPem, 'leaf');

  // The leaf's profile (ca/profiles.ts): an end entity for digital signatures and code signing.
  if (isCa(leaf)) throw new Refusal('CERT_WRONG_BASIC_CONSTRAINTS', 'leaf', 'the leaf certificate is a CA certificate');
  if (!hasKeyUsage(leaf, x509.KeyUsageFlags.digitalSignature)) {
    throw new Refusal('CERT_WRONG_KEY_USAGE', 'leaf', 'the leaf certificate does not allow digitalSignature');
  }
  const leafEku = extendedKeyUsages(leaf);
  if (leafEku?.includes(CODE_SIGNING) !== true) {
    throw new Refusal('CERT_WRONG_EKU', 'leaf', 'the leaf certificate lacks the codeSigning extended key usage (1.3.6.1.5.5.7.3.3)');
  }
  checkTime(leaf, 'leaf', at);

  const intermediates = parseAll([...(input.intermediatesPem ?? []), ...bundle.intermediates]);
  const intermediate = findIssuer(
    leaf,
    intermediates,
    'leaf',
    () => new Refusal('CHAIN_INTERMEDIATE_MISSING', 'intermediate', `no intermediate CA in the trust bundle or the given chain issued the leaf (its issuer is "${leaf.peculiar.issuer}")`),
  );
  if (!isCa(intermediate)) throw new Refusal('CERT_WRONG_BASIC_CONSTRAINTS', 'intermediate', 'the leaf\'s issuer is not a CA certificate');
  if (!hasKeyUsage(intermediate, x509.KeyUsageFlags.keyCertSign)) {
    throw new Refusal('CERT_WRONG_KEY_USAGE', 'intermediate', 'the intermediate certificate does not allow keyCertSign');
  }
  const intermediateEku = extendedKeyUsages(intermediate);
  if (intermediateEku !== null && !intermediateEku.includes(CODE_SIGNING) && !intermediateEku.includes(ANY_EKU)) {
    throw new Refusal('CERT_WRONG_EKU', 'intermediate', 'the intermediate certificate is restricted to usages other than codeSigning');
  }
  checkTime(intermediate, 'intermediate', at);

  const roots = parseAll(bundle.roots);
  const root = findIssuer(
    intermediate,
    roots,
    'intermediate',
    () => new Refusal('CHAIN_ROOT_UNTRUSTED', 'root', `the intermediate "${intermediate.peculiar.subject}" does not chain to a root of the trust bundle`),
  );
  if (!isCa(root) || !root.node.verify(root.node.publicKey)) {
    throw new Refusal('CERT_WRONG_BASIC_CONSTRAINTS', 'root', 'the trust anchor is not a self-signed CA certificate');
  }
  checkTime(root, 'root', at);

  const serial = leaf.peculiar.serialNumber.toLowerCase();
  const leafSpki = leaf.node.publicKey.export({ type: 'spki', format: 'der' });
  const sameKey = (pem: string): boolean => {
    try {
      return createPublicKey(pem).export({ type: 'spki', format: 'der' }).equals(leafSpki);
    } catch {
      return false;
    }
  };
  const key = bundle.keys.find((k) => k.serials.includes(serial)) ?? bundle.keys.find((k) => sameKey(k.publicKeyPem));
  const compromisedAt = key?.state === 'compromised' && key.compromisedAt !== null ? Date.parse(key.compromisedAt) : Number.NaN;
  if (key !== undefined && !Number.isNaN(compromisedAt) && at.getTime() >= compromisedAt) {
    throw new Refusal('KEY_COMPROMISED', 'leaf', `key ${key.keyId} was compromised at ${key.compromisedAt ?? '?'}, before the signing time`);
  }

  // Revocation: a certificate revoked for key compromise is void whenever it signed,
  // unless the bundle dates the compromise (a key version compromised since a time the
  // officers set): then from that time on (or the revocation's, if earlier), as the
  // key state above. Any other reason voids signatures made from the revocation on.
  const revoked = bundle.revocations.find((r) => r.serialNumber === serial);
  if (revoked !== undefined) {
    const revokedAt = Date.parse(revoked.revokedAt);
    const voidFrom =
      revoked.reason !== 'keyCompromise' ? revokedAt : Number.isNaN(compromisedAt) || Number.isNaN(revokedAt) ? Number.NEGATIVE_INFINITY : Math.min(compromisedAt, revokedAt);
    if (Number.isNaN(voidFrom) || at.getTime() >= voidFrom) {
      throw new Refusal('CERT_REVOKED', 'leaf', `the leaf certificate was revoked at ${revoked.revokedAt} (${revoked.reason})`);
    }
  }

  return {
    ok: true,
    keyId: key?.keyId ?? null,
    identity: leafIdentity(leaf),
    leafSerialNumber: serial,
    intermediateSubject: intermediate.peculiar.subject,
    rootSubject: root.peculiar.subject,
  };
}

/**
 * Verifies that `leafPem` is a valid code-signing certificate under the bundle's roots
 * at `at`. Never throws for bad input (only for a caller's invalid `at`): a refusal has
 * a stable `code`, the certificate it concerns, and a reason for people.
 */
export function verifyCodeSigningChain(input: ChainVerificationInput): ChainVerification {
  try {
    return verifyOrRefuse(input);
  } catch (error) {
    if (error instanceof Refusal) return { ok: false, code: error.code, certificate: error.certificate, reason: error.reason };
    throw error;
  }
}
