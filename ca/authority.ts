/**
 * The code-signing CA over the HSM and storage: creates the hierarchy (root and
 * intermediate, ECDSA P-384, generated in the token), issues a leaf per signing key
 * version, revokes leaves and signs CRLs. Profiles are in profiles.ts; the HSM is
 * reached through the same PKCS#11 adapter as signing (hsm-crypto.ts).
 *
 * CA operations are rare and each takes at most a few HSM signatures: they run one at
 * a time in this process (a queue), and storage constraints (one active CA per role,
 * CRL numbers that only grow, unique serial numbers) keep two processes from
 * contradicting each other. Every certificate the HSM signs is verified with the
 * issuer's public key before it is stored, and every CA change is written to the
 * transparency log in the same storage transaction as the change itself.
 *
 * CA private keys never leave the HSM; if storing a new CA fails after its key pair
 * was generated, that key pair stays in the token unused (the adapter deletes no keys).
 */
import 'reflect-metadata';
import { createPublicKey, randomBytes, X509Certificate as NodeX509Certificate, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { HsmKeyRef, HsmKeyStore, HsmSigner } from '../signer/types.js';
import { isStoreError } from '../store/errors.js';
import type {
  CaCertificateRecord,
  CaRole,
  CrlRecord,
  KeyVersionRecord,
  LeafCertificateRecord,
  LogEntryInput,
  RevocationReason,
  RevocationRecord,
  SignetStore,
} from '../store/store.js';
import { CaError } from './errors.js';
import { createHsmCryptoBridge, type HsmCryptoBridge } from './hsm-crypto.js';
import { CERTIFICATE_EVENT_KIND, certificateEventLeaf, type CertificateEvent } from './log-entries.js';
import {
  CA_KEY_ALGORITHM,
  caSubject,
  caValidity,
  crlProfile,
  crlUrl,
  ecdsaSigningParameters,
  intermediateProfile,
  keyIdentifier,
  leafProfile,
  leafValidity,
  rootProfile,
  wholeSeconds,
  type CertificateTemplate,
  type IssuerInfo,
} from './profiles.js';
import type { CaSettings } from './settings.js';
import { currentLeaf } from './trust-bundle.js';

export interface CertificateAuthorityOptions {
  readonly hsm: HsmSigner & Pick<HsmKeyStore, 'generateKeyPair' | 'hasKeyPair'>;
  readonly store: SignetStore;
  readonly settings: CaSettings;
  /** The transparency log's key name: it never gets a code-signing certificate. */
  readonly logKeyName: string;
  readonly now?: () => Date;
}

export interface Hierarchy {
  readonly root: CaCertificateRecord;
  readonly intermediate: CaCertificateRecord;
  /** The CA ids this call created (empty when nothing was missing). */
  readonly created: readonly string[];
}

/** Key states that may get a certificate: keys that sign now, will sign, or verify old signatures. */
const CERTIFIABLE_STATES = new Set(['pending', 'active', 'verify-only']);

/** 128 random bits, positive, first octet non-zero so the hex is exactly what the certificate holds (RFC 5280 §4.1.2.2). */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f || 0x01;
  return bytes.toString('hex');
}

function spkiOf(publicKeyPem: string): ArrayBuffer {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return der.buffer.slice(der.byteOffset, der.byteOffset + der.byteLength);
}

function refOf(ca: CaCertificateRecord): HsmKeyRef {
  return { hsmKeyId: ca.hsmKeyId, algorithm: ca.algorithm };
}

function issuerInfo(ca: CaCertificateRecord): IssuerInfo {
  const certificate = new x509.X509Certificate(ca.certificatePem);
  const ski = certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  return {
    subject: certificate.subject,
    keyIdentifier: ski?.keyId ?? keyIdentifier(certificate.publicKey.rawData),
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  };
}

/** FIFO: each task starts after the previous one settled. */
class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

export class CertificateAuthority {
  readonly #hsm: CertificateAuthorityOptions['hsm'];
  readonly #store: SignetStore;
  readonly #settings: CaSettings;
  readonly #logKeyName: string;
  readonly #now: () => Date;
  readonly #bridge: HsmCryptoBridge;
  readonly #queue = new SerialQueue();

  constructor(options: CertificateAuthorityOptions) {
    this.#hsm = options.hsm;
    this.#store = options.store;
    this.#settings = options.settings;
    this.#logKeyName = options.logKeyName;
    this.#now = options.now ?? (() => new Date());
    this.#bridge = createHsmCryptoBridge(options.hsm);
  }

  get settings(): CaSettings {
    return this.#settings;
  }

  get store(): SignetStore {
    return this.#store;
  }

  /** The active root and intermediate, or null where there is none. */
  async active(): Promise<{ root: CaCertificateRecord | null; intermediate: CaCertificateRecord | null }> {
    const cas = await this.#store.certificates.listCas();
    return {
      root: cas.find((ca) => ca.role === 'root' && ca.status === 'active') ?? null,
      intermediate: cas.find((ca) => ca.role === 'intermediate' && ca.status === 'active') ?? null,
    };
  }

  /**
   * Creates what is missing of the hierarchy: a root if there is no active one, an
   * intermediate under it if there is none (or, with `newIntermediate`, a new one that
   * replaces the active intermediate, which is retired but stays published). Signs a
   * first CRL for each new CA. CA_EXISTS when nothing is missing and no new
   * intermediate was asked for.
   */
  initHierarchy(options: { readonly newIntermediate?: boolean } = {}): Promise<Hierarchy> {
    return this.#queue.run(async () => {
      const cas = await this.#store.certificates.listCas();
      let root = cas.find((ca) => ca.role === 'root' && ca.status === 'active') ?? null;
      let intermediate = cas.find((ca) => ca.role === 'intermediate' && ca.status === 'active') ?? null;
      if (root !== null && intermediate !== null && options.newIntermediate !== true) {
        throw new CaError('CA_EXISTS', `the CA hierarchy exists (${root.caId}, ${intermediate.caId}); use --new-intermediate to replace the intermediate`);
      }
      const created: CaCertificateRecord[] = [];
      const generation = (role: CaRole): number => cas.filter((ca) => ca.role === role).length + created.filter((ca) => ca.role === role).length + 1;
      if (root === null) {
        root = await this.#createCa('root', generation('root'), null, null);
        created.push(root);
      }
      if (intermediate === null || options.newIntermediate === true) {
        intermediate = await this.#createCa('intermediate', generation('intermediate'), root, intermediate);
        created.push(intermediate);
      }
      for (const ca of created) await this.#signCrl(ca);
      return { root, intermediate, created: created.map((ca) => ca.caId) };
    });
  }

  /** A new code-signing certificate for a key version, from the active intermediate. */
  issueLeaf(keyId: string, options: { readonly days?: number } = {}): Promise<LeafCertificateRecord> {
    return this.#queue.run(async () => {
      const key = await this.#store.keys.get(keyId);
      if (key === null) throw new CaError('CA_KEY_NOT_ELIGIBLE', `no key version "${keyId}"`);
      return this.#issueLeaf(key, options.days ?? this.#settings.leafValidityDays);
    });
  }

  /**
   * Issues a leaf for every key version that may sign and has no usable certificate
   * (after `ca init` on a database whose keys predate the CA). Returns what it issued.
   */
  issueMissingLeaves(): Promise<LeafCertificateRecord[]> {
    return this.#queue.run(async () => {
      const [keys, leaves, revocations] = await Promise.all([
        this.#store.keys.list(),
        this.#store.certificates.listLeaves(),
        this.#store.certificates.listRevocations(),
      ]);
      const revoked = new Set(revocations.map((r) => r.serialNumber));
      const now = this.#now();
      const issued: LeafCertificateRecord[] = [];
      for (const key of keys) {
        if (key.name === this.#logKeyName || !CERTIFIABLE_STATES.has(key.state)) continue;
        const current = currentLeaf(leaves.filter((l) => l.keyId === key.keyId), revoked, now);
        if (current !== null && Date.parse(current.notAfter) > now.getTime()) continue;
        issued.push(await this.#issueLeaf(key, this.#settings.leafValidityDays));
      }
      return issued;
    });
  }

  /** Revokes one leaf and signs a new CRL for its issuer. */
  revoke(serialNumber: string, reason: RevocationReason): Promise<{ revocation: RevocationRecord; crl: CrlRecord }> {
    return this.#queue.run(async () => {
      const leaf = await this.#store.certificates.getLeaf(serialNumber.toLowerCase());
      if (leaf === null) throw new CaError('CA_CERTIFICATE_NOT_FOUND', `no certificate with serial number ${serialNumber}`);
      const revocation = await this.#revoke(leaf, reason);
      const crl = await this.#signCrlOf(leaf.issuerCaId);
      return { revocation, crl };
    });
  }

  /** Revokes every unrevoked leaf of a key version (e.g. when it is compromised) and signs new CRLs. */
  revokeKey(keyId: string, reason: RevocationReason): Promise<{ revocations: RevocationRecord[]; crls: CrlRecord[] }> {
    return this.#queue.run(async () => {
      const [leaves, existing] = await Promise.all([this.#store.certificates.leavesOfKey(keyId), this.#store.certificates.listRevocations()]);
      if (leaves.length === 0) throw new CaError('CA_CERTIFICATE_NOT_FOUND', `key version "${keyId}" has no certificate`);
      const already = new Set(existing.map((r) => r.serialNumber));
      const revocations: RevocationRecord[] = [];
      for (const leaf of leaves) {
        if (!already.has(leaf.serialNumber)) revocations.push(await this.#revoke(leaf, reason));
      }
      const crls: CrlRecord[] = [];
      for (const caId of new Set(revocations.map((r) => r.issuerCaId))) crls.push(await this.#signCrlOf(caId));
      return { revocations, crls };
    });
  }

  /** Signs a new CRL for one CA now (the active intermediate when none is named). */
  signCrl(caId?: string): Promise<CrlRecord> {
    return this.#queue.run(async () => {
      if (caId !== undefined) return this.#signCrlOf(caId);
      const { intermediate } = await this.active();
      if (intermediate === null) throw new CaError('CA_NOT_INITIALISED', 'there is no active intermediate CA: run signet ca init');
      return this.#signCrl(intermediate);
    });
  }

  /**
   * Signs a new CRL for every unexpired CA whose latest CRL is missing, is past half of
   * its validity, or does not list every revocation (a revocation whose CRL signing
   * failed, or was recorded by another process). Returns the CRLs it signed.
   */
  refreshCrls(): Promise<CrlRecord[]> {
    return this.#queue.run(async () => {
      const [cas, revocations] = await Promise.all([this.#store.certificates.listCas(), this.#store.certificates.listRevocations()]);
      const now = this.#now();
      const signed: CrlRecord[] = [];
      for (const ca of cas) {
        if (Date.parse(ca.notAfter) <= now.getTime()) continue;
        const latest = await this.#store.certificates.latestCrl(ca.caId);
        const expected = revocations.filter((r) => r.issuerCaId === ca.caId).length;
        if (latest !== null && !crlNeedsRefresh(latest, expected, now)) continue;
        signed.push(await this.#signCrl(ca));
      }
      return signed;
    });
  }

  /** Start-up check: every unexpired CA's key pair is in the token. */
  async assertKeysPresent(): Promise<void> {
    const now = this.#now().getTime();
    const missing: string[] = [];
    for (const ca of await this.#store.certificates.listCas()) {
      if (Date.parse(ca.notAfter) <= now) continue;
      if (!(await this.#hsm.hasKeyPair(refOf(ca)))) missing.push(ca.caId);
    }
    if (missing.length > 0) throw new CaError('CA_KEY_MISSING', `CA key pairs missing from the HSM token: ${missing.join(', ')}`);
  }

  async #createCa(role: CaRole, generation: number, issuer: CaCertificateRecord | null, replaces: CaCertificateRecord | null): Promise<CaCertificateRecord> {
    const caId = `${role}-${generation}`;
    const subject = caSubject(role, generation, this.#settings.organization);
    const now = this.#now();
    const parent = issuer === null ? undefined : issuerInfo(issuer);
    const window = caValidity(now, role === 'root' ? this.#settings.rootValidityDays : this.#settings.intermediateValidityDays, parent);
    const pair = await this.#hsm.generateKeyPair(CA_KEY_ALGORITHM, `signet-ca:${caId}`);
    const publicKey = spkiOf(pair.publicKeyPem);
    const serialNumber = randomSerialNumber();
    const template =
      issuer === null || parent === undefined
        ? rootProfile({ serialNumber, subject, publicKey, ...window })
        : intermediateProfile({ serialNumber, subject, publicKey, issuer: parent, ...window });
    const signer = issuer === null ? { hsmKeyId: pair.hsmKeyId, algorithm: pair.algorithm } : refOf(issuer);
    const certificate = await this.#sign(template, signer, issuer?.certificatePem ?? null);
    const record: CaCertificateRecord = {
      caId,
      role,
      status: 'active',
      algorithm: pair.algorithm,
      hsmKeyId: pair.hsmKeyId,
      serialNumber: certificate.serialNumber.toLowerCase(),
      subject: certificate.subject,
      issuerCaId: issuer?.caId ?? null,
      certificatePem: pemOf(certificate),
      notBefore: certificate.notBefore.toISOString(),
      notAfter: certificate.notAfter.toISOString(),
      createdAt: now.toISOString(),
    };
    await this.#store.transaction(async (tx) => {
      if (replaces !== null) await tx.certificates.retireCa(replaces.caId);
      await tx.certificates.insertCa(record);
      await tx.log.append([
        this.#event(
          {
            event: 'ca-created',
            caId,
            role,
            serialNumber: record.serialNumber,
            subject: record.subject,
            issuerCaId: record.issuerCaId,
            certificatePem: record.certificatePem,
            time: record.createdAt,
          },
          now,
        ),
      ]);
    });
    return record;
  }

  async #issueLeaf(key: KeyVersionRecord, days: number): Promise<LeafCertificateRecord> {
    if (key.name === this.#logKeyName) {
      throw new CaError('CA_KEY_NOT_ELIGIBLE', 'the log key signs checkpoints only and gets no code-signing certificate');
    }
    if (!CERTIFIABLE_STATES.has(key.state)) throw new CaError('CA_KEY_NOT_ELIGIBLE', `key version ${key.keyId} is ${key.state}`);
    if (!Number.isInteger(days) || days < 1 || days > 3650) throw new CaError('CA_INVALID_INPUT', 'a leaf is valid for 1 to 3650 days');
    const { intermediate } = await this.active();
    if (intermediate === null) throw new CaError('CA_NOT_INITIALISED', 'there is no active intermediate CA: run signet ca init');
    const now = this.#now();
    const issuer = issuerInfo(intermediate);
    const template = leafProfile({
      serialNumber: randomSerialNumber(),
      keyId: key.keyId,
      organization: this.#settings.organization,
      logOrigin: this.#settings.logOrigin,
      crlUrl: crlUrl(this.#settings.publicUrl, intermediate.caId),
      publicKey: spkiOf(key.publicKeyPem),
      issuer,
      ...leafValidity(now, days, issuer),
    });
    const certificate = await this.#sign(template, refOf(intermediate), intermediate.certificatePem);
    const record: LeafCertificateRecord = {
      serialNumber: certificate.serialNumber.toLowerCase(),
      keyId: key.keyId,
      issuerCaId: intermediate.caId,
      certificatePem: pemOf(certificate),
      notBefore: certificate.notBefore.toISOString(),
      notAfter: certificate.notAfter.toISOString(),
      createdAt: now.toISOString(),
    };
    await this.#store.transaction(async (tx) => {
      await tx.certificates.insertLeaf(record);
      await tx.log.append([
        this.#event(
          {
            event: 'issued',
            keyId: key.keyId,
            serialNumber: record.serialNumber,
            issuerCaId: record.issuerCaId,
            certificatePem: record.certificatePem,
            time: record.createdAt,
          },
          now,
        ),
      ]);
    });
    return record;
  }

  async #revoke(leaf: LeafCertificateRecord, reason: RevocationReason): Promise<RevocationRecord> {
    const now = this.#now();
    const revocation: RevocationRecord = { serialNumber: leaf.serialNumber, issuerCaId: leaf.issuerCaId, revokedAt: now.toISOString(), reason };
    try {
      await this.#store.transaction(async (tx) => {
        await tx.certificates.revoke(revocation);
        await tx.log.append([
          this.#event(
            { event: 'revoked', keyId: leaf.keyId, serialNumber: leaf.serialNumber, issuerCaId: leaf.issuerCaId, reason, time: revocation.revokedAt },
            now,
          ),
        ]);
      });
    } catch (error) {
      if (isStoreError(error) && error.code === 'STORE_CONFLICT') {
        throw new CaError('CA_ALREADY_REVOKED', `certificate ${leaf.serialNumber} is already revoked`, { cause: error });
      }
      throw error;
    }
    return revocation;
  }

  async #signCrlOf(caId: string): Promise<CrlRecord> {
    const ca = (await this.#store.certificates.listCas()).find((c) => c.caId === caId);
    if (ca === undefined) throw new CaError('CA_CERTIFICATE_NOT_FOUND', `no CA "${caId}"`);
    return this.#signCrl(ca);
  }

  /** Signs and stores the next CRL of `ca`, listing every revocation it issued. */
  async #signCrl(ca: CaCertificateRecord): Promise<CrlRecord> {
    const [revocations, latest] = await Promise.all([this.#store.certificates.listRevocations(), this.#store.certificates.latestCrl(ca.caId)]);
    const now = this.#now();
    const thisUpdate = wholeSeconds(now);
    const nextUpdate = new Date(thisUpdate.getTime() + this.#settings.crlValidityHours * 3_600_000);
    const template = crlProfile({
      issuer: issuerInfo(ca),
      crlNumber: (latest?.crlNumber ?? 0) + 1,
      thisUpdate,
      nextUpdate,
      revoked: revocations
        .filter((r) => r.issuerCaId === ca.caId)
        .map((r) => ({ serialNumber: r.serialNumber, revokedAt: new Date(r.revokedAt), reason: r.reason })),
    });
    const signing = ecdsaSigningParameters(ca.algorithm).signing;
    const crl = await x509.X509CrlGenerator.create(
      { ...template, entries: [...template.entries], extensions: [...template.extensions], signingAlgorithm: signing, signingKey: this.#bridge.signingKey(refOf(ca)) },
      this.#bridge.crypto,
    );
    // Never publish what does not verify: a faulty token must not hand out a broken CRL.
    if (!(await crl.verify({ publicKey: new x509.X509Certificate(ca.certificatePem) }, webcrypto))) {
      throw new CaError('CA_SIGNATURE_INVALID', `the HSM's signature on the CRL of ${ca.caId} does not verify`);
    }
    const record: CrlRecord = {
      issuerCaId: ca.caId,
      crlNumber: (latest?.crlNumber ?? 0) + 1,
      thisUpdate: thisUpdate.toISOString(),
      nextUpdate: wholeSeconds(nextUpdate).toISOString(),
      der: Buffer.from(crl.rawData),
    };
    try {
      await this.#store.certificates.addCrl(record);
    } catch (error) {
      // Another process signed a CRL with this number meanwhile: theirs lists the same revocations or more.
      const newer = isStoreError(error) && error.code === 'STORE_CONFLICT' ? await this.#store.certificates.latestCrl(ca.caId) : null;
      if (newer === null) throw error;
      return newer;
    }
    return record;
  }

  /** Signs `template` with the HSM key `signer` and verifies the result with the issuer's public key. */
  async #sign(template: CertificateTemplate, signer: HsmKeyRef, issuerPem: string | null): Promise<x509.X509Certificate> {
    const signing = ecdsaSigningParameters(signer.algorithm).signing;
    const certificate = await x509.X509CertificateGenerator.create(
      { ...template, extensions: [...template.extensions], signingAlgorithm: signing, signingKey: this.#bridge.signingKey(signer) },
      this.#bridge.crypto,
    );
    const produced = new NodeX509Certificate(Buffer.from(certificate.rawData));
    const issuerKey = issuerPem === null ? produced.publicKey : new NodeX509Certificate(issuerPem).publicKey;
    if (!produced.verify(issuerKey)) {
      throw new CaError('CA_SIGNATURE_INVALID', `the HSM's signature on the certificate for ${template.subject} does not verify`);
    }
    return certificate;
  }

  #event(event: CertificateEvent, now: Date): LogEntryInput {
    return { kind: CERTIFICATE_EVENT_KIND, leaf: certificateEventLeaf(event), integratedTime: Math.floor(now.getTime() / 1000), linkedIndex: null };
  }
}

/** A CRL needs replacing once half its validity has passed, or when it lists fewer revocations than there are. */
export function crlNeedsRefresh(crl: CrlRecord, revocationCount: number, now: Date): boolean {
  const thisUpdate = Date.parse(crl.thisUpdate);
  const halfLife = thisUpdate + (Date.parse(crl.nextUpdate) - thisUpdate) / 2;
  if (now.getTime() >= halfLife) return true;
  return new x509.X509Crl(crl.der).entries.length !== revocationCount;
}

function pemOf(certificate: x509.X509Certificate): string {
  return `${certificate.toString('pem')}\n`;
}
