/**
 * `signet officer …`: the security officers' client, over mTLS with the officer's own
 * client certificate (officer CA). In development `--dir D --officer NAME` finds the
 * service URL and CA in D's `signet-init.json` and the officer's certificate, key and
 * TOTP secret file under D/officers; otherwise give `--url --ca --cert --key`.
 *
 * The TOTP code of `approve` and `freeze` comes from `--code`, or is read from the
 * terminal without echo. Before approving, the CLI recomputes the proposal's hash from
 * the content the server returned (RFC 8785 canonical JSON, SHA-256) and approves that
 * hash: an approval can only ever be for the content the officer was shown.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import QRCode from 'qrcode';
import { KEY_ALGORITHMS } from '../signer/algorithms.js';
import { GOVERNANCE_DEFAULTS } from '../keyrotation/settings.js';
import { proposalHash, type ProposalContent } from '../keyrotation/proposals.js';
import { otpauthUri, totpSecretFromBase32 } from '../keyrotation/totp.js';
import { CliError } from './errors.js';
import { createAgent, expectOk, requestJson } from './https-client.js';
import { readClientProfile } from './profile.js';

export const OFFICER_USAGE = `  officer <command> (--dir D --officer NAME | --url U --ca F --cert F --key F) [--json]
    status                                     who the certificate belongs to, enrolled, locked out
    enroll                                     print the otpauth URI and a QR code for an authenticator app
    list [--status open|executed|withdrawn]    proposals with their quorum count
    show ID                                    one proposal, its content hash and approvals
    propose rotate-key --key-name K [--project P] [--algorithm A]
    propose retire-key --key-id K@N
    propose compromise-key --key-id K@N [--compromised-at ISO-8601]
    propose revoke-certificate (--fingerprint HEX | --cert-file F)
    propose add-officer --name N --cert-file F
    propose remove-officer --name N
    propose set-quorum --quorum-file F         (JSON: defaultApprovals, approvals, proposerMayApprove, proposalTtlSeconds)
    propose set-policy --policy-file F
    propose unfreeze (--project P | --all)     every propose takes [--reason R]
    approve ID [--code C]                      approve with a TOTP code (prompted when not given)
    execute ID                                 carry out a proposal whose quorum is met
    freeze (--project P | --all) [--code C] [--reason R]
                                               stop signing at once (one officer)
    unfreeze (--project P | --all) [--reason R]
                                               open an unfreeze proposal (needs the quorum)
    revoke (--key-id K@N [--compromised-at T] | --fingerprint HEX | --cert-file F) [--reason R]
                                               open a revocation proposal
`;

type Values = Record<string, string | boolean | undefined>;

const CONNECTION = {
  dir: { type: 'string' },
  officer: { type: 'string' },
  url: { type: 'string' },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  json: { type: 'boolean' },
} as const;

function parse(args: string[], options: Record<string, { type: 'string' | 'boolean' }>): { values: Values; positionals: string[] } {
  try {
    const parsed = parseArgs({ args, options: { ...CONNECTION, ...options }, strict: true, allowPositionals: true });
    return { values: parsed.values, positionals: parsed.positionals };
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

function readText(path: string): string {
  try {
    return readFileSync(resolve(path), 'utf8');
  } catch (error) {
    throw new CliError('FILE_UNREADABLE', `cannot read ${path}`, { cause: error });
  }
}

interface OfficerConnection {
  readonly url: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** The officer's TOTP secret file (development set-ups only). */
  readonly totpSecretFile: string | undefined;
  readonly officer: string | undefined;
  /** Default project of a development set-up. */
  readonly project: string | undefined;
}

function connection(values: Values): OfficerConnection {
  const dir = str(values, 'dir');
  const officer = str(values, 'officer');
  if (dir !== undefined && officer === undefined) throw new CliError('USAGE', '--dir needs --officer NAME');
  if (officer !== undefined && !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(officer)) throw new CliError('USAGE', '--officer is an officer name');
  const profile = dir === undefined ? undefined : readClientProfile(dir);
  const officers = dir === undefined || officer === undefined ? undefined : join(resolve(dir), 'officers');
  const url = str(values, 'url') ?? profile?.url;
  const ca = str(values, 'ca') ?? profile?.caCert;
  const cert = str(values, 'cert') ?? (officers === undefined ? undefined : join(officers, `${officer}.pem`));
  const key = str(values, 'key') ?? (officers === undefined ? undefined : join(officers, `${officer}-key.pem`));
  const missing = Object.entries({ '--url': url, '--ca': ca, '--cert': cert, '--key': key })
    .filter(([, value]) => value === undefined)
    .map(([flag]) => flag);
  if (missing.length > 0 || url === undefined || ca === undefined || cert === undefined || key === undefined) {
    throw new CliError('USAGE', `missing ${missing.join(', ')} (or --dir D --officer NAME with a signet init directory)`);
  }
  return {
    url,
    ca,
    cert,
    key,
    totpSecretFile: officers === undefined ? undefined : join(officers, `${officer}.totp`),
    officer,
    project: profile?.project,
  };
}

class OfficerClient {
  readonly #connection: OfficerConnection;
  readonly #agent: ReturnType<typeof createAgent>;

  constructor(target: OfficerConnection) {
    this.#connection = target;
    this.#agent = createAgent({ caFile: target.ca, certFile: target.cert, keyFile: target.key });
  }

  async call(method: 'GET' | 'POST', path: string, what: string, body?: unknown): Promise<Record<string, unknown>> {
    const response = await requestJson(this.#agent, new URL(path, this.#connection.url).toString(), {
      method,
      ...(method === 'POST' ? { body: body ?? {} } : {}),
    });
    return expectOk(response, what) as Record<string, unknown>;
  }

  close(): void {
    this.#agent.destroy();
  }
}

interface ProposalJson {
  id: string;
  hash: string;
  status: string;
  content: ProposalContent;
  approvals: { officer: string; approvedAt: string }[];
  closedAt: string | null;
  quorum: { required: number; counted: string[]; discounted: { officer: string; reason: string }[]; met: boolean };
}

function describeProposal(p: ProposalJson): string {
  const lines = [
    `proposal ${p.id}  ${p.status}`,
    `  action:   ${JSON.stringify(p.content.action)}`,
    `  proposer: ${p.content.proposer}${p.content.reason === '' ? '' : `  (${p.content.reason})`}`,
    `  hash:     ${p.hash}`,
    `  expires:  ${p.content.expiresAt}`,
    `  quorum:   ${p.quorum.counted.length} of ${p.quorum.required}${p.quorum.met ? ' (met)' : ''}${p.quorum.counted.length > 0 ? `: ${p.quorum.counted.join(', ')}` : ''}`,
  ];
  for (const d of p.quorum.discounted) lines.push(`  not counted: ${d.officer} (${d.reason})`);
  return lines.join('\n');
}

function output(values: Values, value: unknown, text: string): void {
  process.stdout.write(values.json === true ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

/**
 * Reads a TOTP code from the terminal without echoing it (raw mode, one character at a
 * time). Refuses when stdin is not a terminal: codes are not read from pipes by accident.
 */
export async function promptCode(prompt: string): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY) throw new CliError('USAGE', '--code is required when stdin is not a terminal');
  process.stderr.write(prompt);
  input.setRawMode(true);
  input.resume();
  try {
    return await new Promise<string>((resolvePrompt, reject) => {
      let code = '';
      const onData = (chunk: Buffer): void => {
        for (const char of chunk.toString('utf8')) {
          if (char === '\r' || char === '\n') {
            input.off('data', onData);
            process.stderr.write('\n');
            resolvePrompt(code);
            return;
          }
          if (char === '\u0003' || char === '\u0004') {
            input.off('data', onData);
            process.stderr.write('\n');
            reject(new CliError('USAGE', 'no code entered'));
            return;
          }
          if (char === '\u007f' || char === '\b') code = code.slice(0, -1);
          else if (/^[0-9]$/.test(char) && code.length < 6) code += char;
        }
      };
      input.on('data', onData);
    });
  } finally {
    input.setRawMode(false);
    input.pause();
  }
}

async function totpCode(values: Values, what: string): Promise<string> {
  const code = str(values, 'code') ?? (await promptCode(`TOTP code to ${what}: `));
  if (!/^[0-9]{6}$/.test(code)) throw new CliError('USAGE', 'a TOTP code is six digits');
  return code;
}

function scope(values: Values): string | null {
  const project = str(values, 'project');
  if ((project === undefined) === (values.all !== true)) throw new CliError('USAGE', 'give --project P or --all');
  return project ?? null;
}

/** The action of `propose <type> …`, from flags. */
function proposedAction(type: string | undefined, values: Values, target: OfficerConnection): Record<string, unknown> {
  switch (type) {
    case 'rotate-key': {
      const algorithm = str(values, 'algorithm') ?? null;
      if (algorithm !== null && !(KEY_ALGORITHMS as readonly string[]).includes(algorithm)) {
        throw new CliError('USAGE', `--algorithm is one of ${KEY_ALGORITHMS.join(', ')}`);
      }
      const project = str(values, 'project') ?? target.project;
      if (project === undefined) throw new CliError('USAGE', '--project is required');
      return { type, project, key: required(values, 'key-name'), algorithm };
    }
    case 'retire-key':
      return { type, keyId: required(values, 'key-id') };
    case 'compromise-key': {
      const at = str(values, 'compromised-at');
      return { type, keyId: required(values, 'key-id'), ...(at === undefined ? {} : { compromisedAt: new Date(at).toISOString() }) };
    }
    case 'revoke-certificate':
      return { type, certificateSha256: fingerprintOf(values) };
    case 'add-officer':
      return { type, officer: required(values, 'name'), certificateSha256: fingerprintOf(values) };
    case 'remove-officer':
      return { type, officer: required(values, 'name') };
    case 'set-quorum': {
      let quorum: unknown;
      try {
        quorum = JSON.parse(readText(required(values, 'quorum-file')));
      } catch (error) {
        if (error instanceof CliError) throw error;
        throw new CliError('USAGE', '--quorum-file is not JSON');
      }
      return { type, quorum };
    }
    case 'set-policy': {
      return { type, policySha256: createHash('sha256').update(readFileSync(resolve(required(values, 'policy-file')))).digest('hex') };
    }
    case 'unfreeze':
      return { type, project: scope(values) };
    case undefined:
    default:
      throw new CliError('USAGE', `propose takes one of: rotate-key, retire-key, compromise-key, revoke-certificate, add-officer, remove-officer, set-quorum, set-policy, unfreeze`);
  }
}

/** Hex SHA-256 of a DER certificate: `--fingerprint` as given, or computed from `--cert-file`. */
function fingerprintOf(values: Values): string {
  const fingerprint = str(values, 'fingerprint');
  const file = str(values, 'cert-file');
  if ((fingerprint === undefined) === (file === undefined)) throw new CliError('USAGE', 'give --fingerprint HEX or --cert-file F');
  if (fingerprint !== undefined) {
    const normalized = fingerprint.replaceAll(':', '').toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(normalized)) throw new CliError('USAGE', '--fingerprint is a SHA-256 in hex');
    return normalized;
  }
  try {
    return new X509Certificate(readText(file ?? '')).fingerprint256.replaceAll(':', '').toLowerCase();
  } catch (error) {
    if (error instanceof CliError) throw error;
    throw new CliError('USAGE', `${file ?? ''} is not a PEM certificate`);
  }
}

const PROPOSE_FLAGS = {
  'key-name': { type: 'string' },
  'key-id': { type: 'string' },
  project: { type: 'string' },
  all: { type: 'boolean' },
  algorithm: { type: 'string' },
  'compromised-at': { type: 'string' },
  fingerprint: { type: 'string' },
  'cert-file': { type: 'string' },
  name: { type: 'string' },
  'quorum-file': { type: 'string' },
  'policy-file': { type: 'string' },
  reason: { type: 'string' },
} as const;

/** Runs `signet officer <sub> …`; returns the exit status. */
export async function runOfficerCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const flags: Record<string, Record<string, { type: 'string' | 'boolean' }>> = {
    status: {},
    enroll: {},
    list: { status: { type: 'string' } },
    show: {},
    propose: PROPOSE_FLAGS,
    approve: { code: { type: 'string' } },
    execute: {},
    freeze: { project: { type: 'string' }, all: { type: 'boolean' }, code: { type: 'string' }, reason: { type: 'string' } },
    unfreeze: { project: { type: 'string' }, all: { type: 'boolean' }, reason: { type: 'string' } },
    revoke: { 'key-id': { type: 'string' }, 'compromised-at': { type: 'string' }, fingerprint: { type: 'string' }, 'cert-file': { type: 'string' }, reason: { type: 'string' } },
  };
  const options = sub === undefined ? undefined : flags[sub];
  if (options === undefined) throw new CliError('USAGE', 'officer takes status, enroll, list, show, propose, approve, execute, freeze, unfreeze or revoke');
  const { values, positionals } = parse(rest, options);
  const allowed = sub === 'show' || sub === 'approve' || sub === 'execute' || sub === 'propose' ? 1 : 0;
  if (positionals.length !== allowed) {
    throw new CliError('USAGE', allowed === 0 ? `officer ${sub} takes no positional argument` : `officer ${sub} takes one ${sub === 'propose' ? 'action type' : 'proposal id'}`);
  }
  const target = connection(values);
  const client = new OfficerClient(target);
  const reason = str(values, 'reason');
  try {
    switch (sub) {
      case 'status': {
        const status = await client.call('GET', '/v1/officer/status', 'reading the officer status');
        output(values, status, `officer ${String(status.officer)}: ${status.enrolled === true ? 'enrolled' : 'not enrolled'}${typeof status.lockedUntil === 'string' ? `, locked out until ${status.lockedUntil}` : ''}`);
        return 0;
      }
      case 'enroll':
        return await enroll(client, target, values);
      case 'list': {
        const status = str(values, 'status');
        const listed = await client.call('GET', `/v1/officer/proposals${status === undefined ? '' : `?status=${encodeURIComponent(status)}`}`, 'listing proposals');
        const proposals = listed.proposals as ProposalJson[];
        output(values, listed, proposals.length === 0 ? 'no proposals' : proposals.map(describeProposal).join('\n'));
        return 0;
      }
      case 'show': {
        const proposal = (await client.call('GET', `/v1/officer/proposals/${encodeURIComponent(positionals[0] ?? '')}`, 'reading the proposal')) as unknown as ProposalJson;
        const local = proposalHash(proposal.content);
        const note = local === proposal.hash ? '' : `\n  WARNING: the content hashes to ${local}, not to the recorded hash`;
        output(values, { ...proposal, contentHash: local }, describeProposal(proposal) + note);
        return 0;
      }
      case 'propose': {
        const action = proposedAction(positionals[0], values, target);
        const proposal = (await client.call('POST', '/v1/officer/proposals', 'proposing', { action, ...(reason === undefined ? {} : { reason }) })) as unknown as ProposalJson;
        output(values, proposal, describeProposal(proposal));
        return 0;
      }
      case 'approve': {
        const id = positionals[0] ?? '';
        const proposal = (await client.call('GET', `/v1/officer/proposals/${encodeURIComponent(id)}`, 'reading the proposal')) as unknown as ProposalJson;
        // The hash approved is the one of the content shown here, computed here.
        const hash = proposalHash(proposal.content);
        if (hash !== proposal.hash) {
          throw new CliError('PROPOSAL_MISMATCH', `proposal ${id}: the content hashes to ${hash}, but the service records ${proposal.hash}; not approving`);
        }
        if (values.json !== true) process.stderr.write(`${describeProposal(proposal)}\n`);
        const code = await totpCode(values, `approve ${id}`);
        const approved = (await client.call('POST', `/v1/officer/proposals/${encodeURIComponent(id)}/approvals`, 'approving', { proposalHash: hash, code })) as unknown as ProposalJson;
        output(values, approved, `approved ${id}: ${approved.quorum.counted.length} of ${approved.quorum.required}${approved.quorum.met ? ' (quorum met: it can be executed)' : ''}`);
        return 0;
      }
      case 'execute': {
        const id = positionals[0] ?? '';
        const result = await client.call('POST', `/v1/officer/proposals/${encodeURIComponent(id)}/execute`, 'executing');
        const keys = result.keys as { keyId: string; state: string }[];
        output(values, result, `executed ${id}${keys.length === 0 ? '' : `: ${keys.map((k) => `${k.keyId} ${k.state}`).join(', ')}`}`);
        return 0;
      }
      case 'freeze': {
        const project = scope(values);
        const code = await totpCode(values, `freeze ${project ?? 'everything'}`);
        const result = await client.call('POST', '/v1/officer/freeze', 'freezing', { project, code, ...(reason === undefined ? {} : { reason }) });
        output(values, result, `signing frozen for ${project === null ? 'every project' : `project ${project}`}; unfreezing needs the quorum`);
        return 0;
      }
      case 'unfreeze': {
        const proposal = (await client.call('POST', '/v1/officer/unfreeze', 'proposing to unfreeze', {
          project: scope(values),
          ...(reason === undefined ? {} : { reason }),
        })) as unknown as ProposalJson;
        output(values, proposal, describeProposal(proposal));
        return 0;
      }
      case 'revoke': {
        const keyId = str(values, 'key-id');
        const at = str(values, 'compromised-at');
        const body =
          keyId !== undefined
            ? { keyId, ...(at === undefined ? {} : { compromisedAt: new Date(at).toISOString() }) }
            : { certificateSha256: fingerprintOf(values) };
        const proposal = (await client.call('POST', '/v1/officer/revocations', 'proposing a revocation', { ...body, ...(reason === undefined ? {} : { reason }) })) as unknown as ProposalJson;
        output(values, proposal, describeProposal(proposal));
        return 0;
      }
      case undefined:
      default:
        throw new CliError('USAGE', `unknown officer command "${sub ?? ''}"`);
    }
  } finally {
    client.close();
  }
}

/**
 * Development officers have their secret in a file made by `signet init`: shown as an
 * otpauth URI and QR code from there. Otherwise the service enrols the officer (once)
 * and returns a new secret.
 */
async function enroll(client: OfficerClient, target: OfficerConnection, values: Values): Promise<number> {
  let officer: string;
  let uri: string;
  const file = target.totpSecretFile;
  let local: string | undefined;
  if (file !== undefined) {
    try {
      local = readFileSync(file, 'utf8').trim();
    } catch {
      local = undefined;
    }
  }
  if (local !== undefined && target.officer !== undefined) {
    officer = target.officer;
    uri = otpauthUri({ officer, secret: totpSecretFromBase32(local), issuer: GOVERNANCE_DEFAULTS.totpIssuer });
  } else {
    const enrolled = await client.call('POST', '/v1/officer/enrollment', 'enrolling');
    officer = String(enrolled.officer);
    uri = String(enrolled.otpauthUri);
  }
  const qr = await QRCode.toString(uri, { type: 'terminal', small: true });
  output(values, { officer, otpauthUri: uri }, `officer ${officer}: add this to an authenticator app (keep it secret)\n${uri}\n${qr}`);
  return 0;
}
