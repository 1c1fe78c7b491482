#!/usr/bin/env node
/**
 * The `signet` command. Each subcommand lives in its own file; this one parses
 * arguments (node:util parseArgs, strict: unknown flags are errors) and turns errors
 * into one line on stderr with a stable code and a non-zero exit status.
 */
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { isSignetError } from '../errors/signet-error.js';
import { CA_USAGE, runCaCommand } from './ca.js';
import { DEV_AUDIENCE, mintDevToken } from './dev-issuer.js';
import { CliError } from './errors.js';
import { runInit } from './init.js';
import { runLogVerify } from './log-verify.js';
import { OFFICER_USAGE, runOfficerCommand } from './officer.js';
import { runManifestCommand } from './manifest.js';
import { runKeysCreate, runKeysList } from './keys.js';
import { readClientProfile } from './profile.js';
import { runServe } from './serve.js';
import { runSign } from './sign.js';
import { runVerifyCommand, VERIFY_USAGE } from './verify.js';

const USAGE = `usage: signet <command> [options]

  init --dir D [--json] [--port P] [--force]   development set-up: SoftHSM token, keys, TLS, config, policy
       [--postgres-url U [--postgres-schema S]]  record it in PostgreSQL (for replicas) instead of SQLite
  serve --config F                             run the service
  sign (--file F | --payload F) [--dir D | --url U --ca F --cert F --key F --project P]
       [--key-id K] [--digest-algorithm sha256|sha384|sha512] [--format raw|dsse|pgp|cms|sigstore-bundle]
       [--token T | --token-file F] [--dry-run]
       [--out F] [--receipt F]                 sign over mTLS with the CI id token ($SIGNET_ID_TOKEN);
                                               writes the signature and <out>.receipt.json
${VERIFY_USAGE}  dev-token --dir D [--claim name=value …] [--expires-in SECONDS]
                                               development only: an id token from the dev issuer made by init
  manifest create (--artifact F … | --dir D) --version V [--build-command C] [--toolchain NAME=VERSION …]
       [--image REF@sha256:HEX …] [--source-repository URL] [--commit SHA] [--ref REF] [--builder-id URI]
       [--out F] [--json]                      release manifest (in-toto Statement, SLSA provenance) from the files
                                               and the CI environment (GitHub Actions, GitLab CI); stdout without --out
  manifest schema                              print the manifest's JSON Schema
  log verify (--url U --ca F | --db FILE --origin O) [--public-key F] [--checkpoint F] [--json]
                                               recompute the whole log, check every checkpoint; exit 1
                                               naming the first bad index
  keys list (--dir D | --url U --ca F)         list signing keys (public endpoint)
  keys create --config F --name N [--algorithm ecdsa-p256|ecdsa-p384|ed25519|rsa-pss-3072|rsa-pss-4096]
                                               development only: generate a key version in the HSM
${CA_USAGE}${OFFICER_USAGE}`;

type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], options: ParseArgsConfig['options']): Values {
  try {
    return parseArgs({ args, options: options ?? {}, strict: true, allowPositionals: false }).values as Values;
  } catch (error) {
    throw new CliError('USAGE', (error as Error).message);
  }
}

function str(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

function required(values: Values, name: string): string {
  const value = str(values, name);
  if (value === undefined) throw new CliError('USAGE', `--${name} is required`);
  return value;
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'init': {
      const v = parse(rest, {
        dir: { type: 'string' },
        json: { type: 'boolean' },
        port: { type: 'string' },
        force: { type: 'boolean' },
        'postgres-url': { type: 'string' },
        'postgres-schema': { type: 'string' },
      });
      const port = Number(str(v, 'port') ?? '8443');
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new CliError('USAGE', '--port is a TCP port number');
      const postgresUrl = str(v, 'postgres-url');
      if (postgresUrl === undefined && str(v, 'postgres-schema') !== undefined) throw new CliError('USAGE', '--postgres-schema needs --postgres-url');
      const postgres = postgresUrl === undefined ? undefined : { url: postgresUrl, schema: str(v, 'postgres-schema') };
      const result = await runInit({ dir: required(v, 'dir'), port, force: v.force === true, postgres });
      print(v.json === true, result, `Signet development set-up written.\n  config:  ${result.config}\n  url:     ${result.url}\n  key:     ${result.keyId}\n  project: ${result.project}\nStart it with: signet serve --config ${result.config}`);
      return 0;
    }
    case 'serve': {
      const v = parse(rest, { config: { type: 'string' } });
      await runServe(required(v, 'config'));
      return -1; // keeps running until a signal
    }
    case 'sign': {
      const v = parse(rest, {
        dir: { type: 'string' },
        url: { type: 'string' },
        ca: { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        project: { type: 'string' },
        'key-id': { type: 'string' },
        file: { type: 'string' },
        payload: { type: 'string' },
        'digest-algorithm': { type: 'string' },
        format: { type: 'string' },
        out: { type: 'string' },
        receipt: { type: 'string' },
        token: { type: 'string' },
        'token-file': { type: 'string' },
        'dry-run': { type: 'boolean' },
        json: { type: 'boolean' },
      });
      const outcome = await runSign({
        dir: str(v, 'dir'),
        url: str(v, 'url'),
        ca: str(v, 'ca'),
        cert: str(v, 'cert'),
        key: str(v, 'key'),
        project: str(v, 'project'),
        keyId: str(v, 'key-id'),
        file: str(v, 'file'),
        payload: str(v, 'payload'),
        digestAlgorithm: str(v, 'digest-algorithm') ?? 'sha256',
        format: str(v, 'format') ?? 'raw',
        out: str(v, 'out'),
        receipt: str(v, 'receipt'),
        token: str(v, 'token'),
        tokenFile: str(v, 'token-file'),
        dryRun: v['dry-run'] === true,
      });
      if ('dryRun' in outcome) {
        const why = outcome.reasons.map((r) => `  ${r.code}: ${r.message}`).join('\n');
        print(v.json === true, outcome, outcome.allow ? `allowed (would sign with ${outcome.keyId ?? '?'})` : `denied\n${why}`);
        return outcome.allow ? 0 : 1;
      }
      print(v.json === true, outcome, `signed with ${outcome.keyId}\n  signature: ${outcome.signatureFile}\n  receipt:   ${outcome.receiptFile}`);
      return 0;
    }
    case 'dev-token': {
      const v = parseArgs({
        args: rest,
        options: { dir: { type: 'string' }, claim: { type: 'string', multiple: true }, 'expires-in': { type: 'string' } },
        strict: true,
        allowPositionals: false,
      }).values;
      if (v.dir === undefined) throw new CliError('USAGE', '--dir is required');
      const claims: Record<string, string> = {};
      for (const pair of v.claim ?? []) {
        const at = pair.indexOf('=');
        if (at <= 0) throw new CliError('USAGE', '--claim takes name=value');
        claims[pair.slice(0, at)] = pair.slice(at + 1);
      }
      const expiresIn = Number(v['expires-in'] ?? '600');
      if (!Number.isInteger(expiresIn)) throw new CliError('USAGE', '--expires-in is a whole number of seconds');
      const token = await mintDevToken({ privateJwkFile: join(v.dir, 'oidc', 'dev-issuer-key.json'), audience: DEV_AUDIENCE, claims, expiresInSeconds: expiresIn });
      process.stdout.write(`${token}\n`);
      return 0;
    }
    case 'manifest': {
      process.stdout.write(await runManifestCommand(rest, process.env));
      return 0;
    }
    case 'log': {
      const [sub, ...args] = rest;
      if (sub !== 'verify') throw new CliError('USAGE', 'log takes verify');
      const v = parse(args, {
        url: { type: 'string' },
        ca: { type: 'string' },
        db: { type: 'string' },
        origin: { type: 'string' },
        'public-key': { type: 'string' },
        checkpoint: { type: 'string' },
        json: { type: 'boolean' },
      });
      const result = await runLogVerify({
        url: str(v, 'url'),
        ca: str(v, 'ca'),
        db: str(v, 'db'),
        origin: str(v, 'origin'),
        publicKey: str(v, 'public-key'),
        checkpoint: str(v, 'checkpoint'),
      });
      for (const warning of result.warnings) process.stderr.write(`signet: warning: ${warning}\n`);
      const summary = result.ok
        ? `log verified: ${result.entries} entries, ${result.checkpoints} checkpoints${result.extendsSavedCheckpoint === true ? ', extends the saved checkpoint' : ''}`
        : result.problem !== null
          ? `LOG_INVALID at index ${result.problem.index}: ${result.problem.message}`
          : 'LOG_INVALID: the log does not extend the saved checkpoint';
      print(v.json === true, result, summary);
      return result.ok ? 0 : 1;
    }
    case 'verify':
      return runVerifyCommand(rest);
    case 'ca':
      return runCaCommand(rest);
    case 'officer':
      return runOfficerCommand(rest);
    case 'keys': {
      const [sub, ...args] = rest;
      if (sub === 'list') {
        const v = parse(args, { dir: { type: 'string' }, url: { type: 'string' }, ca: { type: 'string' }, json: { type: 'boolean' } });
        const dir = str(v, 'dir');
        const profile = dir === undefined ? undefined : readClientProfile(dir);
        const url = str(v, 'url') ?? profile?.url;
        const ca = str(v, 'ca') ?? profile?.caCert;
        if (url === undefined || ca === undefined) throw new CliError('USAGE', 'keys list needs --dir, or --url and --ca');
        const listed = (await runKeysList(url, ca)) as { keys: { keyId: string; algorithm: string; state: string }[] };
        print(v.json === true, listed, listed.keys.map((k) => `${k.keyId}\t${k.algorithm}\t${k.state}`).join('\n'));
        return 0;
      }
      if (sub === 'create') {
        const v = parse(args, { config: { type: 'string' }, name: { type: 'string' }, algorithm: { type: 'string' }, json: { type: 'boolean' } });
        const record = await runKeysCreate(required(v, 'config'), required(v, 'name'), str(v, 'algorithm') ?? 'ecdsa-p256');
        const { hsmKeyId: _hidden, ...shown } = record;
        print(v.json === true, shown, `created ${record.keyId} (${record.algorithm}, ${record.state})`);
        return 0;
      }
      throw new CliError('USAGE', 'keys takes list or create');
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new CliError('USAGE', `unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    if (isSignetError(error)) {
      process.stderr.write(`signet: ${error.code}: ${error.message}\n`);
      if (error.code === 'USAGE') process.stderr.write(USAGE);
      process.exitCode = error.code === 'USAGE' ? 2 : 1;
    } else {
      process.stderr.write(`signet: INTERNAL: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    }
  },
);
