/**
 * `signet ca …`: the code-signing CA for production ceremonies, run by an operator on a
 * host that holds the HSM configuration (it opens the token and storage the config
 * names, as `keys create` does; the service may keep running: revocations and new CRLs
 * are read from storage per request).
 *
 *   ca init   --config F [--new-intermediate]          root + intermediate in the HSM (what is missing), a
 *                                                      first CRL each, and a leaf for every key that has none
 *   ca show   --config F                               CAs, leaves, revocations, CRLs, expiring certificates
 *   ca issue  --config F --key-id K [--days N]         a new leaf for a key version (renewal)
 *   ca revoke --config F (--serial S | --key-id K) [--reason R]
 *                                                      revoke one leaf or all of a key's; signs a new CRL
 *   ca crl    --config F [--ca CAID] [--out FILE]      sign a new CRL now (default: the active intermediate)
 *
 * Every command takes `--json` for a machine-readable answer.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CertificateAuthority } from '../ca/authority.js';
import { listExpiringCertificates } from '../ca/expiry.js';
import { caSettingsFrom } from '../ca/settings.js';
import { loadConfig } from '../config/load.js';
import { openConfiguredHsm } from '../service/open-hsm.js';
import { isRevocationReason } from '../store/certificate-validation.js';
import { openStore } from '../store/open-store.js';
import { REVOCATION_REASONS, type SignetStore } from '../store/store.js';
import { CliError } from './errors.js';

export const CA_USAGE = `  ca init --config F [--new-intermediate] [--json]
                                               create the code-signing root and intermediate CA in the HSM
  ca show --config F [--json]                  CA certificates, leaves, revocations, CRLs, expiring certificates
  ca issue --config F --key-id K [--days N] [--json]
                                               issue a (new) code-signing certificate for a key version
  ca revoke --config F (--serial S | --key-id K) [--reason ${REVOCATION_REASONS.join('|')}] [--json]
                                               revoke certificates and sign a new CRL
  ca crl --config F [--ca CAID] [--out FILE] [--json]
                                               sign a new CRL now; --out writes it (DER)
`;

type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], options: Record<string, { type: 'string' | 'boolean' }>): Values {
  try {
    return parseArgs({ args, options: { config: { type: 'string' }, json: { type: 'boolean' }, ...options }, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new CliError('USAGE', (error as Error).message);
  }
}

function str(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** Opens the HSM and storage the config names, runs `work` with the CA, and closes both. */
async function withCa<T>(values: Values, work: (ca: CertificateAuthority, store: SignetStore) => Promise<T>): Promise<T> {
  const configPath = str(values, 'config');
  if (configPath === undefined) throw new CliError('USAGE', '--config is required');
  const config = loadConfig(configPath);
  const hsm = await openConfiguredHsm(config, { poolSize: 1, signWorkers: 1 });
  try {
    const store = await openStore(config.storage);
    try {
      return await work(new CertificateAuthority({ hsm, store, settings: caSettingsFrom(config), logKeyName: config.log.keyName }), store);
    } finally {
      await store.close();
    }
  } finally {
    await hsm.close();
  }
}

function output(values: Values, value: unknown, text: string): void {
  process.stdout.write(values.json === true ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

/** Runs `signet ca <sub> …`; returns the exit status. */
export async function runCaCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'init': {
      const v = parse(rest, { 'new-intermediate': { type: 'boolean' } });
      const result = await withCa(v, async (ca) => {
        const hierarchy = await ca.initHierarchy({ newIntermediate: v['new-intermediate'] === true });
        const leaves = await ca.issueMissingLeaves();
        return { ...hierarchy, leaves };
      });
      const { root, intermediate, created, leaves } = result;
      const shown = {
        created,
        root: { caId: root.caId, subject: root.subject, notAfter: root.notAfter, certificatePem: root.certificatePem },
        intermediate: { caId: intermediate.caId, subject: intermediate.subject, notAfter: intermediate.notAfter, certificatePem: intermediate.certificatePem },
        issued: leaves.map((leaf) => ({ keyId: leaf.keyId, serialNumber: leaf.serialNumber, notAfter: leaf.notAfter })),
      };
      output(
        v,
        shown,
        [
          `created: ${created.join(', ') || 'nothing'}`,
          `root:         ${root.caId}  ${root.subject}  until ${root.notAfter}`,
          `intermediate: ${intermediate.caId}  ${intermediate.subject}  until ${intermediate.notAfter}`,
          ...leaves.map((leaf) => `issued:       ${leaf.keyId}  serial ${leaf.serialNumber}  until ${leaf.notAfter}`),
          '',
          root.certificatePem.trimEnd(),
        ].join('\n'),
      );
      return 0;
    }
    case 'show': {
      const v = parse(rest, {});
      const shown = await withCa(v, async (ca, store) => {
        const [cas, leaves, revocations] = await Promise.all([store.certificates.listCas(), store.certificates.listLeaves(), store.certificates.listRevocations()]);
        const crls = (await Promise.all(cas.map((c) => store.certificates.latestCrl(c.caId)))).filter((crl) => crl !== null);
        const expiring = await listExpiringCertificates(store, { now: new Date(), windowDays: ca.settings.expiryWarningDays });
        return {
          cas: cas.map(({ hsmKeyId: _hidden, ...rest }) => rest),
          leaves,
          revocations,
          crls: crls.map((crl) => ({ issuerCaId: crl.issuerCaId, crlNumber: crl.crlNumber, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate })),
          expiring,
        };
      });
      const revoked = new Set(shown.revocations.map((r) => r.serialNumber));
      output(
        v,
        shown,
        [
          ...shown.cas.map((c) => `${c.role}\t${c.caId}\t${c.status}\t${c.notAfter}\t${c.subject}`),
          ...shown.leaves.map((l) => `leaf\t${l.keyId}\t${revoked.has(l.serialNumber) ? 'revoked' : 'valid'}\t${l.notAfter}\t${l.serialNumber}`),
          ...shown.crls.map((c) => `crl\t${c.issuerCaId}\t#${c.crlNumber}\tnext ${c.nextUpdate}`),
          ...shown.expiring.map((e) => `EXPIRING\t${e.role}\t${e.id}\t${e.notAfter}\t${e.daysLeft} days`),
        ].join('\n'),
      );
      return 0;
    }
    case 'issue': {
      const v = parse(rest, { 'key-id': { type: 'string' }, days: { type: 'string' } });
      const keyId = str(v, 'key-id');
      if (keyId === undefined) throw new CliError('USAGE', '--key-id is required');
      const daysText = str(v, 'days');
      const days = daysText === undefined ? undefined : Number(daysText);
      if (days !== undefined && (!Number.isInteger(days) || days < 1)) throw new CliError('USAGE', '--days is a positive whole number');
      const leaf = await withCa(v, (ca) => ca.issueLeaf(keyId, days === undefined ? {} : { days }));
      output(v, leaf, `issued ${leaf.keyId}: serial ${leaf.serialNumber}, until ${leaf.notAfter}\n${leaf.certificatePem.trimEnd()}`);
      return 0;
    }
    case 'revoke': {
      const v = parse(rest, { serial: { type: 'string' }, 'key-id': { type: 'string' }, reason: { type: 'string' } });
      const serial = str(v, 'serial');
      const keyId = str(v, 'key-id');
      if ((serial === undefined) === (keyId === undefined)) throw new CliError('USAGE', 'give exactly one of --serial or --key-id');
      const reason = str(v, 'reason') ?? 'unspecified';
      if (!isRevocationReason(reason)) throw new CliError('USAGE', `--reason is one of ${REVOCATION_REASONS.join(', ')}`);
      const result = await withCa(v, async (ca) => {
        if (serial !== undefined) {
          const { revocation, crl } = await ca.revoke(serial, reason);
          return { revocations: [revocation], crls: [crl] };
        }
        return ca.revokeKey(keyId ?? '', reason);
      });
      const shown = {
        revocations: result.revocations,
        crls: result.crls.map((crl) => ({ issuerCaId: crl.issuerCaId, crlNumber: crl.crlNumber, nextUpdate: crl.nextUpdate })),
      };
      output(
        v,
        shown,
        [...result.revocations.map((r) => `revoked ${r.serialNumber} (${r.reason})`), ...shown.crls.map((c) => `CRL ${c.issuerCaId} #${c.crlNumber} signed`)].join('\n') ||
          'nothing to revoke: every certificate of the key was already revoked',
      );
      return 0;
    }
    case 'crl': {
      const v = parse(rest, { ca: { type: 'string' }, out: { type: 'string' } });
      const crl = await withCa(v, (ca) => ca.signCrl(str(v, 'ca')));
      const out = str(v, 'out');
      if (out !== undefined) writeFileSync(out, crl.der);
      output(
        v,
        { issuerCaId: crl.issuerCaId, crlNumber: crl.crlNumber, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate, ...(out === undefined ? {} : { file: out }) },
        `CRL ${crl.issuerCaId} #${crl.crlNumber} signed, next update ${crl.nextUpdate}${out === undefined ? '' : `; written to ${out}`}`,
      );
      return 0;
    }
    case undefined:
    default:
      throw new CliError('USAGE', 'ca takes init, show, issue, revoke or crl');
  }
}
