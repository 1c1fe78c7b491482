/**
 * `signet init --dir D [--json] [--port P] [--force]`: a complete development set-up
 * in one directory: a SoftHSM token with its own SOFTHSM2_CONF, a P-256 release key
 * generated in it, the TLS server CA and server certificate, the CI client CA and one
 * client certificate, the SQLite database, `signet.yaml` and an example policy.
 *
 * Secrets (the token PINs) go to files with mode 0600 that the config names; the
 * config itself holds none.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { createSigningKey } from '../keyrotation/signing-keys.js';
import { openPkcs11Hsm } from '../signer/pkcs11-hsm.js';
import { createSoftHsmToken } from '../softhsm/token.js';
import { openStore } from '../store/open-store.js';
import { createCertificateAuthority, issueLeafCertificate, toPem } from '../tls/dev-pki.js';
import { createDevIssuer, DEV_AUDIENCE, DEV_ISSUER, DEV_REPOSITORY } from './dev-issuer.js';
import { CliError } from './errors.js';

export const DEV_TOKEN_LABEL = 'signet-dev';
export const DEV_PROJECT = 'example';
export const DEV_KEY_NAME = 'demo-release';
export const DEV_ISSUER_NAME = 'dev';
export const DEV_LOG_KEY_NAME = 'signet-log';

export interface InitOptions {
  readonly dir: string;
  readonly port: number;
  readonly force: boolean;
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
  readonly database: string;
  readonly softhsm2Conf: string;
  readonly officers: readonly { name: string; cert: string; key: string; totpSecret: string }[];
}

/** What init writes; `--force` removes exactly these and nothing else in the directory. */
const OWNED = ['signet.yaml', 'policy.yaml', 'signet.db', 'signet.db-wal', 'signet.db-shm', 'hsm', 'secrets', 'tls', 'oidc', 'signet-init.json'];

export async function runInit(options: InitOptions): Promise<InitResult> {
  const dir = resolve(options.dir);
  const present = existsSync(dir) ? OWNED.filter((name) => existsSync(join(dir, name))) : [];
  if (present.length > 0 && !options.force) {
    throw new CliError('INIT_EXISTS', `${dir} already holds a Signet set-up (${present.join(', ')}); pass --force to replace it`);
  }
  for (const name of present) rmSync(join(dir, name), { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (readdirSync(dir).length === 0) chmodSync(dir, 0o700);
  for (const sub of ['hsm', 'secrets', 'tls', 'oidc']) mkdirSync(join(dir, sub), { mode: 0o700 });

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

  // The development OIDC issuer: its key signs `signet dev-token` tokens; the config
  // trusts its public JWKS as a static file (air-gapped style, no network).
  await createDevIssuer({ privateJwkFile: path('oidc', 'dev-issuer-key.json'), jwksFile: path('oidc', 'dev-issuer-jwks.json') });

  // The release key, generated inside the token, recorded in storage as active.
  process.env.SOFTHSM2_CONF = token.confPath;
  const hsm = await openPkcs11Hsm({ modulePath: token.modulePath, tokenLabel: DEV_TOKEN_LABEL, pin, poolSize: 1, signWorkers: 1 });
  let keyId: string;
  try {
    const store = await openStore({ driver: 'sqlite', sqlite: { path: path('signet.db') } });
    try {
      keyId = (await createSigningKey(hsm, store, DEV_KEY_NAME, 'ecdsa-p256')).keyId;
      // The transparency log's checkpoint key: ECDSA P-256 (SIGSTORE-NOTES.md), in the token.
      await createSigningKey(hsm, store, DEV_LOG_KEY_NAME, 'ecdsa-p256');
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
      tls: { certFile: 'tls/server.pem', keyFile: 'tls/server-key.pem', clientCaFile: 'tls/ci-client-ca.pem' },
    },
    hsm: {
      module: token.modulePath,
      tokenLabel: DEV_TOKEN_LABEL,
      pin: { file: 'secrets/hsm-pin' },
      softhsm2Conf: 'hsm/softhsm2.conf',
      sessions: 2,
      signWorkers: 2,
    },
    storage: { driver: 'sqlite', sqlite: { path: 'signet.db' } },
    policy: { file: 'policy.yaml' },
    // The checkpoint signer name: the service's host without the port, plus /log.
    log: { origin: '127.0.0.1/log', keyName: DEV_LOG_KEY_NAME },
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
    database: path('signet.db'),
    softhsm2Conf: token.confPath,
    officers: [],
  };
  writeFileSync(path('signet-init.json'), `${JSON.stringify(result, null, 2)}\n`);
  return result;
}
