/**
 * `signet log verify`: recomputes the whole log and checks every checkpoint.
 *
 *   --url U --ca F       read a running service's public log API
 *   --db FILE --origin O read a SQLite database file directly (read-only, raw rows:
 *                        this does not trust the service's own storage code)
 *   --public-key F       the log's public key (PEM) to trust; without it the key the
 *                        service (or the database) names is used, and a warning says so
 *   --checkpoint F       a checkpoint saved earlier: also prove the current log extends it
 */
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { LogAuditor, type AuditProblem } from '../log/audit.js';
import { verifyCheckpoint } from '../log/checkpoint.js';
import { CliError } from './errors.js';
import { createAgent, expectOk, requestJson } from './https-client.js';

export interface LogVerifyOptions {
  readonly url: string | undefined;
  readonly ca: string | undefined;
  readonly db: string | undefined;
  readonly origin: string | undefined;
  readonly publicKey: string | undefined;
  readonly checkpoint: string | undefined;
}

export interface LogVerifyResult {
  readonly ok: boolean;
  readonly entries: number;
  readonly checkpoints: number;
  readonly problem: AuditProblem | null;
  readonly warnings: readonly string[];
  readonly extendsSavedCheckpoint: boolean | null;
}

interface SourceEntry {
  readonly index: number;
  readonly leaf: Buffer;
  readonly recorded: (Buffer | undefined)[];
}

interface Source {
  readonly origin: string;
  readonly publicKeyPem: string;
  readonly warnings: string[];
  checkpoints(): Promise<{ size: number; note: string }[]>;
  /** Yields entries in index order, with the hashes the source records for each. */
  entries(): Iterable<SourceEntry> | AsyncIterable<SourceEntry>;
  close(): void;
}

export async function runLogVerify(options: LogVerifyOptions): Promise<LogVerifyResult> {
  const trustedKey = options.publicKey === undefined ? undefined : readText(options.publicKey);
  const source =
    options.db !== undefined ? openDatabaseSource(options.db, options.origin, trustedKey) : await openServiceSource(options.url, options.ca, trustedKey);
  try {
    // A checkpoint saved earlier must verify with the same key; the log still extends it
    // when the root recomputed at its size is its root.
    let saved: { size: number; rootHash: Buffer } | undefined;
    if (options.checkpoint !== undefined) {
      const verified = verifyCheckpoint(readText(options.checkpoint), source.origin, source.publicKeyPem);
      if (!verified.ok) throw new CliError('REQUEST_FAILED', `the saved checkpoint does not verify: ${verified.reason}`);
      saved = verified.checkpoint;
    }
    const auditor = new LogAuditor(source.origin, source.publicKeyPem, await source.checkpoints(), saved === undefined ? [] : [saved.size]);
    const entries = source.entries();
    // A database file is read synchronously: a million entries through `for await`
    // would each cost a promise and a microtask turn for nothing.
    if (Symbol.asyncIterator in entries) {
      for await (const entry of entries) if (!auditor.feed(entry.index, entry.leaf, entry.recorded)) break;
    } else {
      for (const entry of entries) if (!auditor.feed(entry.index, entry.leaf, entry.recorded)) break;
    }
    const problem = auditor.finish();
    const extendsSaved = saved === undefined ? null : auditor.rootAt(saved.size)?.equals(saved.rootHash) === true;
    return {
      ok: problem === null && extendsSaved !== false,
      entries: auditor.size,
      checkpoints: auditor.checkedCheckpoints,
      problem,
      warnings: source.warnings,
      extendsSavedCheckpoint: extendsSaved,
    };
  } finally {
    source.close();
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new CliError('FILE_UNREADABLE', `cannot read ${path}`, { cause: error });
  }
}

function openDatabaseSource(path: string, origin: string | undefined, trustedKey: string | undefined): Source {
  if (origin === undefined) throw new CliError('USAGE', '--db needs --origin (the log origin of signet.yaml)');
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (error) {
    throw new CliError('FILE_UNREADABLE', `cannot open ${path} as a database`, { cause: error });
  }
  const warnings: string[] = [];
  let publicKeyPem = trustedKey;
  if (publicKeyPem === undefined) {
    const row = db.prepare("SELECT public_key_pem FROM key_versions WHERE name = 'signet-log' AND state = 'active'").get() as { public_key_pem: string } | undefined;
    if (row === undefined) throw new CliError('USAGE', 'no log key in the database: pass --public-key');
    publicKeyPem = row.public_key_pem;
    warnings.push('the log key was read from the database being verified; pass --public-key to check against a key you trust');
  }
  // Each entry with its level-0 node where one is stored apart from the entry, found by
  // the node's key: (leaf_end = idx + 1, level 0) in schema version 7, (level, idx)
  // before it; from version 8 on, the leaf hash is the level-0 node (no log_nodes). A
  // file is verified as it is, never migrated. One statement, rows as arrays: this loop
  // runs once per entry.
  const hasNodeTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'log_nodes'").get() !== undefined;
  const keyedByCompletion = hasNodeTable && db.prepare("SELECT 1 FROM pragma_table_info('log_nodes') WHERE name = 'leaf_end'").get() !== undefined;
  const entriesWithNodes = db
    .prepare(
      hasNodeTable
        ? `SELECT e.idx, e.leaf, e.leaf_hash, n.hash FROM log_entries AS e
             LEFT JOIN log_nodes AS n ON ${keyedByCompletion ? 'n.leaf_end = e.idx + 1 AND n.level = 0' : 'n.level = 0 AND n.idx = e.idx'}
            ORDER BY e.idx`
        : 'SELECT idx, leaf, leaf_hash, NULL FROM log_entries ORDER BY idx',
    )
    .raw();
  return {
    origin,
    publicKeyPem,
    warnings,
    checkpoints: () => Promise.resolve(db.prepare('SELECT size, note FROM log_checkpoints').all() as { size: number; note: string }[]),
    *entries() {
      // Raw rows, read in index order without loading the whole log into memory.
      const rows = entriesWithNodes.iterate() as IterableIterator<[number, Buffer, Buffer, Buffer | null]>;
      for (const [index, leaf, recordedLeafHash, node] of rows) {
        yield { index, leaf, recorded: [recordedLeafHash, node ?? undefined] };
      }
    },
    close: () => {
      db.close();
    },
  };
}

async function openServiceSource(url: string | undefined, ca: string | undefined, trustedKey: string | undefined): Promise<Source> {
  if (url === undefined || ca === undefined) throw new CliError('USAGE', 'log verify needs --url and --ca, or --db and --origin');
  const agent = createAgent({ caFile: ca }, true);
  const get = async (path: string): Promise<unknown> => expectOk(await requestJson(agent, new URL(path, url).toString()), `GET ${path}`);
  const info = (await get('/v1/log')) as { origin: string; publicKeyPem: string; treeSize: number };
  const warnings: string[] = [];
  if (trustedKey === undefined) warnings.push('the log key was taken from the service being verified; pass --public-key to check against a key you trust');
  return {
    origin: info.origin,
    publicKeyPem: trustedKey ?? info.publicKeyPem,
    warnings,
    async checkpoints() {
      const all: { size: number; note: string }[] = [];
      for (let after = -1; ; ) {
        const page = (await get(`/v1/log/checkpoints?after=${Math.max(0, after)}&limit=1000`)) as { checkpoints: { size: number; note: string }[] };
        // `after` is exclusive: the first page (after=0) leaves out only a size-0 checkpoint, which covers no entry.
        all.push(...page.checkpoints.filter((cp) => cp.size > after));
        if (page.checkpoints.length < 1000) break;
        after = page.checkpoints[page.checkpoints.length - 1]?.size ?? after;
      }
      return all;
    },
    async *entries() {
      for (let start = 0; start < info.treeSize; start += 1000) {
        const end = Math.min(info.treeSize, start + 1000);
        const page = (await get(`/v1/log/entries?start=${start}&end=${end}`)) as { entries: { index: number; leaf: string; leafHash: string }[] };
        for (const entry of page.entries) {
          yield { index: entry.index, leaf: Buffer.from(entry.leaf, 'base64'), recorded: [Buffer.from(entry.leafHash, 'base64')] };
        }
      }
    },
    close: () => {
      agent.destroy();
    },
  };
}
