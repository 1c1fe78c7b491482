/**
 * `signet init --dir D [--json] [--port P] [--force]`: a complete development set-up
 * in one directory: a SoftHSM token with its own SOFTHSM2_CONF, the code-signing root
 * and intermediate CA keys and a P-256 release key (with its leaf certificate)
 * generated in it, the TLS server CA and server certificate, the CI client CA and one
 * client certificate, the officer CA and three officers (alice, bob, carol) with their
 * client certificates and TOTP secrets, the SQLite database, `signet.yaml` and an
 * example policy.
 *
 * Officers' TOTP secrets are sealed by an AES key generated in the token for that
 * purpose (signer/secret-sealing.ts) before they reach storage; the plain base32 secret
 * is written only to the officer's own file (`officers/<name>.totp`, mode 0600) and
 * printed with `--json`, for development.
 *
 * Secrets (the token PINs) go to files with mode 0600 that the config names; the
 * config itself holds none.
 *
 * Storage is a SQLite file in D by default. With `postgres` (`--postgres-url U
 * [--postgres-schema S]`), everything init records (keys, the CA hierarchy, officers)
 * goes to that PostgreSQL database instead, and the config names it, so that several
 * replicas (`signet serve` with that config, on other ports) share it. The URL may
 * carry a password: it is written to secrets/postgres-url (0600), which the config
 * names. The database must not hold a set-up already: --force never empties one.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { CertificateAuthority } from '../ca/authority.js';
import { caSettingsFrom, CA_DEFAULTS } from '../ca/settings.js';
import { addEnrolledOfficer } from '../keyrotation/officers.js';
import { GOVERNANCE_DEFAULTS } from '../keyrotation/settings.js';
import { createSigningKey } from '../keyrotation/signing-keys.js';
import { newTotpSecret, totpSecretToBase32 } from '../keyrotation/totp.js';
import { openSecretSealer } from '../signer/secret-sealing.js';
import { openPkcs11Hsm } from '../signer/pkcs11-hsm.js';
import { createSoftHsmToken } from '../softhsm/token.js';
import { openStore, type StoreConfig } from '../store/open-store.js';
import { createCertificateAuthority, issueLeafCertificate, toPem } from '../tls/dev-pki.js';
import { createDevIssuer, DEV_AUDIENCE, DEV_ISSUER, DEV_REPOSITORY } from './dev-issuer.js';
import { CliError } from './errors.js';

export const DEV_TOKEN_LABEL = 'signet-dev';
export const DEV_PROJECT = 'example';
export const DEV_KEY_NAME = 'demo-release';
export const DEV_ISSUER_NAME = 'dev';
export const DEV_LOG_KEY_NAME = 'signet-log';
/** The development officers: three, so that the default 2-of-3 quorum (proposer excluded) can be met. */
export const DEV_OFFICERS = ['alice', 'bob', 'carol'] as const;

export interface InitOptions {
  readonly dir: string;
  readonly port: number;
  readonly force: boolean;
  /** Record the set-up in this PostgreSQL database (and schema) instead of a SQLite file. */
  readonly postgres?: { readonly url: string; readonly schema?: string | undefined } | undefined;
}

/** The fixed fields of DESIGN.md ("Fixed fields"), plus a few more. Paths are absolute. */
export interface InitResult {
  readonly config: string;
  readonly url: string;
  readonly caCert: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly project: string;
  readonly keyId: string;
  readonly keyName: string;
  readonly policy: string;
  /** The SQLite file; with PostgreSQL storage `postgres:<schema>` (the URL is in secrets/postgres-url). */
  readonly database: string;
  readonly softhsm2Conf: string;
  /** The code-signing root CA certificate (PEM): what verifiers anchor trust in. */
  readonly codeSigningRoot: string;
  readonly officers: readonly { name: string; cert: string; key: string; totpSecret: string }[];
}

/** What init writes; `--force` removes exactly these and nothing else in the directory. */
const OWNED = ['signet.yaml', 'policy.yaml', 'signet.db', 'signet.db-wal', 'signet.db-shm', 'hsm', 'secrets', 'tls', 'oidc', 'officers', 'signet-init.json', 'code-signing-root.pem'];

/** Where init records its keys, and how the config it writes names that place. */
function storageOf(options: InitOptions, path: (...parts: string[]) => string): { open: StoreConfig; config: object; database: string } {
  if (options.postgres === undefined) {
    return { open: { driver: 'sqlite', sqlite: { path: path('signet.db') } }, config: { driver: 'sqlite', sqlite: { path: 'signet.db' } }, database: path('signet.db') };
  }
  const { url, schema } = options.postgres;
  writeFileSync(path('secrets', 'postgres-url'), `${url}\n`, { mode: 0o600 });
  const named = schema === undefined ? {} : { schema };
  return {
    open: { driver: 'postgres', postgres: { url, ...named } },
    config: { driver: 'postgres', postgres: { url: { file: 'secrets/postgres-url' }, ...named } },
    database: `postgres:${schema ?? 'search_path'}`,
  };
}

export async function runInit(options: InitOptions): Promise<InitResult> {
  const dir = resolve(options.dir);
  const present = existsSync(dir) ? OWNED.filter((name) => existsSync(join(dir, name))) : [];
  if (present.length > 0 && !options.force) {
    throw new CliError('INIT_EXISTS', `${dir} already holds a Signet set-up (${present.join(', ')}); pass --force to replace it`);
  }
  for (const name of present) rmSync(join(dir, name), { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (readdirSync(dir).length === 0) chmodSync(dir, 0o700);
  for (const sub of ['hsm', 'secrets', 'tls', 'oidc', 'officers']) mkdirSync(join(dir, sub), { mode: 0o700 });

  const path = (...parts: string[]): string => join(dir, ...parts);
  const writeSecret = (file: string, content: string): void => {
    writeFileSync(file, content, { mode: 0o600 });
  };

  // Token PINs: random, in files only the service user can read.
  const pin = randomBytes(16).toString('hex');
  const soPin = randomBytes(16).toString('hex');
  writeSecret(path('secrets', 'hsm-pin'), `${pin}\n`);
  writeSecret(path('secrets', 'hsm-so-pin'), `${soPin}\n`);
  const token = await createSoftHsmToken({ dir: path('hsm'), label: DEV_TOKEN_LABEL, pin, soPin });

  // TLS: two separate hierarchies, server and CI client.
  const serverCa = await createCertificateAuthority('Signet Dev TLS Server CA');
  const server = await issueLeafCertificate(serverCa, {
    commonName: 'localhost',
    usages: ['server'],
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
  });
  const clientCa = await createCertificateAuthority('Signet Dev CI Client CA');
  const client = await issueLeafCertificate(clientCa, { commonName: 'ci-example', usages: ['client'] });
  const [serverCaPem, serverPem, clientCaPem, clientPem] = await Promise.all([toPem(serverCa), toPem(server), toPem(clientCa), toPem(client)]);
  writeFileSync(path('tls', 'server-ca.pem'), serverCaPem.certificatePem);
  writeSecret(path('tls', 'server-ca-key.pem'), serverCaPem.privateKeyPem);
  writeFileSync(path('tls', 'server.pem'), serverPem.certificatePem + serverCaPem.certificatePem);
  writeSecret(path('tls', 'server-key.pem'), serverPem.privateKeyPem);
  writeFileSync(path('tls', 'ci-client-ca.pem'), clientCaPem.certificatePem);
  writeSecret(path('tls', 'ci-client-ca-key.pem'), clientCaPem.privateKeyPem);
  writeFileSync(path('tls', 'client.pem'), clientPem.certificatePem);
  writeSecret(path('tls', 'client-key.pem'), clientPem.privateKeyPem);
  const clientFingerprint = createHash('sha256').update(Buffer.from(client.certificate.rawData)).digest('hex');

  // The officer CA, a third TLS hierarchy, and one client certificate and TOTP secret per officer.
  const officerCa = await createCertificateAuthority('Signet Dev Officer CA');
  const officerCaPem = await toPem(officerCa);
  writeFileSync(path('tls', 'officer-ca.pem'), officerCaPem.certificatePem);
  writeSecret(path('tls', 'officer-ca-key.pem'), officerCaPem.privateKeyPem);
  const officers: { name: string; cert: string; key: string; totpSecret: string; certificatePem: string; certificateSha256: string; secret: Buffer }[] = [];
  for (const name of DEV_OFFICERS) {
    const pair = await issueLeafCertificate(officerCa, { commonName: name, usages: ['client'] });
    const pem = await toPem(pair);
    const secret = newTotpSecret();
    const totpSecret = totpSecretToBase32(secret);
    writeFileSync(path('officers', `${name}.pem`), pem.certificatePem);
    writeSecret(path('officers', `${name}-key.pem`), pem.privateKeyPem);
    writeSecret(path('officers', `${name}.totp`), `${totpSecret}\n`);
    officers.push({
      name,
      cert: path('officers', `${name}.pem`),
      key: path('officers', `${name}-key.pem`),
      totpSecret,
      certificatePem: pem.certificatePem,
      certificateSha256: createHash('sha256').update(Buffer.from(pair.certificate.rawData)).digest('hex'),
      secret,
    });
  }

  // The development OIDC issuer: its key signs `signet dev-token` tokens; the config
  // trusts its public JWKS as a static file (air-gapped style, no network).
  await createDevIssuer({ privateJwkFile: path('oidc', 'dev-issuer-key.json'), jwksFile: path('oidc', 'dev-issuer-jwks.json') });

  // The code-signing CA (root and intermediate in the token) and the release key,
  // generated inside the token, recorded in storage as active, with its leaf certificate.
  // Its CRL URL names the service's port when one was given (port 0: chosen at start).
  const logOrigin = '127.0.0.1/log';
  const caConfig = options.port === 0 ? {} : { publicUrl: `https://127.0.0.1:${options.port}` };
  const caSettings = caSettingsFrom({ ca: { ...CA_DEFAULTS, ...caConfig }, log: { origin: logOrigin } });
  let rootPem: string;
  process.env.SOFTHSM2_CONF = token.confPath;
  const hsm = await openPkcs11Hsm({ modulePath: token.modulePath, tokenLabel: DEV_TOKEN_LABEL, pin, poolSize: 1, signWorkers: 1 });
  let keyId: string;
  const storage = storageOf(options, path);
  try {
    const store = await openStore(storage.open);
    try {
      if ((await store.keys.list()).length > 0) {
        throw new CliError('INIT_EXISTS', 'the PostgreSQL database already holds a Signet set-up; use a fresh database or schema');
      }
      const ca = new CertificateAuthority({ hsm, store, settings: caSettings, logKeyName: DEV_LOG_KEY_NAME });
      rootPem = (await ca.initHierarchy()).root.certificatePem;
      keyId = (await createSigningKey(hsm, store, DEV_KEY_NAME, 'ecdsa-p256', new Date(), (key) => ca.issueLeaf(key.keyId))).keyId;
      // The transparency log's checkpoint key: ECDSA P-256 (SIGSTORE-NOTES.md), in the token.
      await createSigningKey(hsm, store, DEV_LOG_KEY_NAME, 'ecdsa-p256');
      // The officers, their TOTP secrets sealed by a key made here for it (the service only opens it).
      const sealer = await openSecretSealer(hsm, { label: GOVERNANCE_DEFAULTS.sealingKeyLabel, createIfMissing: true });
      for (const officer of officers) {
        await addEnrolledOfficer(store, sealer, {
          name: officer.name,
          certificatePem: officer.certificatePem,
          certificateSha256: officer.certificateSha256,
          totpSecret: officer.secret,
          now: new Date(),
        });
        officer.secret.fill(0);
      }
    } finally {
      await store.close();
    }
  } finally {
    await hsm.close();
  }

  const policy = {
    version: 1,
    projects: {
      [DEV_PROJECT]: {
        keys: [DEV_KEY_NAME],
        defaultKey: DEV_KEY_NAME,
        digestAlgorithms: ['sha256', 'sha384', 'sha512'],
        formats: ['raw', 'dsse', 'sigstore-bundle', 'pgp', 'cms'],
        clients: [{ fingerprint: clientFingerprint, description: 'dev CI client (tls/client.pem)' }],
        identities: [
          {
            issuer: DEV_ISSUER_NAME,
            description: 'pushes to main and v* tags of example/demo',
            claims: { repository: DEV_REPOSITORY, ref: { glob: ['refs/heads/main', 'refs/tags/v*'] } },
          },
        ],
      },
    },
  };
  writeFileSync(path('policy.yaml'), `# Example signing policy made by \`signet init\`. Deny by default.\n${toYaml(policy)}`);

  const config = {
    server: {
      host: '127.0.0.1',
      port: options.port,
      tls: { certFile: 'tls/server.pem', keyFile: 'tls/server-key.pem', clientCaFile: 'tls/ci-client-ca.pem', officerCaFile: 'tls/officer-ca.pem' },
    },
    hsm: {
      module: token.modulePath,
      tokenLabel: DEV_TOKEN_LABEL,
      pin: { file: 'secrets/hsm-pin' },
      softhsm2Conf: 'hsm/softhsm2.conf',
      sessions: 2,
      signWorkers: 2,
    },
    storage: storage.config,
    policy: { file: 'policy.yaml' },
    // The checkpoint signer name: the service's host without the port, plus /log.
    log: { origin: logOrigin, keyName: DEV_LOG_KEY_NAME },
    ...(options.port === 0 ? {} : { ca: caConfig }),
    oidc: {
      audience: DEV_AUDIENCE,
      issuers: [{ name: DEV_ISSUER_NAME, issuer: DEV_ISSUER, preset: 'github-actions', jwks: { file: 'oidc/dev-issuer-jwks.json' } }],
    },
    logging: { level: 'info' },
  };
  writeFileSync(
    path('signet.yaml'),
    `# Development configuration made by \`signet init\`. Paths are relative to this file.\n# The PIN lives in secrets/hsm-pin (mode 0600); the config only names it.\n${toYaml(config)}`,
  );

  const result: InitResult = {
    config: path('signet.yaml'),
    url: `https://127.0.0.1:${options.port}`,
    caCert: path('tls', 'server-ca.pem'),
    clientCert: path('tls', 'client.pem'),
    clientKey: path('tls', 'client-key.pem'),
    project: DEV_PROJECT,
    keyId,
    keyName: DEV_KEY_NAME,
    policy: path('policy.yaml'),
    database: storage.database,
    softhsm2Conf: token.confPath,
    codeSigningRoot: path('code-signing-root.pem'),
    officers: officers.map(({ name, cert, key, totpSecret }) => ({ name, cert, key, totpSecret })),
  };
  writeFileSync(path('code-signing-root.pem'), rootPem);
  // The profile names each officer's secret file; the secrets themselves stay in those 0600 files.
  const profile = { ...result, officers: result.officers.map(({ name, cert, key }) => ({ name, cert, key, totpSecretFile: path('officers', `${name}.totp`) })) };
  writeFileSync(path('signet-init.json'), `${JSON.stringify(profile, null, 2)}\n`);
  return result;
}
