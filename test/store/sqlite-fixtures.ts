/**
 * Shared set-up for the SQLite store tests: a fresh temporary directory per test,
 * well-formed key version records and token claims, and a raw better-sqlite3 handle for writing what the
 * store itself would refuse to write.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { vi } from 'vitest';
import { openSqliteStore, type SqliteStoreOptions } from '../../store/sqlite/sqlite-store.js';
import type { KeyState, KeyVersionRecord, SignetStore } from '../../store/store.js';

/** A real SPKI PEM, as the HSM adapter returns them. */
export const PUBLIC_KEY_PEM = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .publicKey.export({ type: 'spki', format: 'pem' })
  .toString();

export function makeTempDir(): { dir: string; dbPath: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'signet-store-'));
  return {
    dir,
    dbPath: join(dir, 'signet.db'),
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function keyVersion(
  name: string,
  version: number,
  state: KeyState = 'pending',
  overrides: Partial<KeyVersionRecord> = {},
): KeyVersionRecord {
  const at = '2025-01-02T03:04:05.000Z';
  return {
    keyId: `${name}@${version}`,
    name,
    version,
    algorithm: 'ecdsa-p256',
    state,
    hsmKeyId: `0a1b2c${version.toString(16).padStart(2, '0')}`,
    publicKeyPem: PUBLIC_KEY_PEM,
    createdAt: at,
    notBefore: at,
    notAfter: null,
    compromisedAt: state === 'compromised' ? at : null,
    ...overrides,
  };
}

/** Opens the file directly, outside the store, for set-up the store would not allow. */
export function withRawDatabase<T>(path: string, use: (db: Database.Database) => T): T {
  const db = new Database(path, { fileMustExist: true });
  try {
    return use(db);
  } finally {
    db.close();
  }
}

/** The error a synchronous call throws, or undefined when it returns. */
export function thrownBy(call: () => unknown): unknown {
  try {
    call();
    return undefined;
  } catch (error) {
    return error;
  }
}

/**
 * Opens a store and also hands back its private connection, captured by a spy on the
 * first pragma() call the store makes while configuring it. Per-connection settings can
 * only be observed, or changed to provoke failures, on that very handle.
 */
export function openSqliteStoreWithConnection(options: SqliteStoreOptions): {
  store: SignetStore;
  connection: Database.Database;
} {
  const pragma = vi.spyOn(Database.prototype, 'pragma');
  try {
    const store = openSqliteStore(options);
    const connection = pragma.mock.contexts[0] as Database.Database | undefined;
    if (connection === undefined) throw new Error('the store configured no connection');
    return { store, connection };
  } finally {
    pragma.mockRestore();
  }
}

/** A well-formed request hash (hex SHA-256) derived from `seed`. */
export function requestHash(seed: string): string {
  return createHash('sha256').update(seed).digest('hex');
}

export type TokenUseClaim = Parameters<SignetStore['tokenUses']['claim']>[0];

/** A claim of token `tokenId` of a fixed issuer, valid for an hour from 2025-01-02T03:00Z. */
export function tokenClaim(tokenId: string, seed = 'request', overrides: Partial<TokenUseClaim> = {}): TokenUseClaim {
  return {
    issuer: 'https://token.actions.githubusercontent.com',
    tokenId,
    requestHash: requestHash(seed),
    createdAt: '2025-01-02T03:00:00.000Z',
    expiresAt: '2025-01-02T04:00:00.000Z',
    ...overrides,
  };
}

/**
 * How many transactions are committed in the database's WAL file since it was last
 * reset: the frames whose header carries a commit marker, as long as their salts match
 * the WAL header's (https://www.sqlite.org/fileformat2.html#walformat). A group commit
 * is one of them however many calls it holds, so tests can count fsyncs this way.
 */
export function walCommits(dbPath: string): number {
  const walPath = `${dbPath}-wal`;
  if (!existsSync(walPath)) return 0;
  const wal = readFileSync(walPath);
  if (wal.length < 32) return 0;
  const pageSize = wal.readUInt32BE(8);
  const salts = wal.subarray(16, 24);
  let commits = 0;
  for (let offset = 32; offset + 24 + pageSize <= wal.length; offset += 24 + pageSize) {
    if (!wal.subarray(offset + 8, offset + 16).equals(salts)) break;
    if (wal.readUInt32BE(offset + 4) !== 0) commits += 1;
  }
  return commits;
}
