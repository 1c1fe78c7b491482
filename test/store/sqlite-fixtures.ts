/**
 * Shared set-up for the SQLite store tests: a fresh temporary directory per test,
 * well-formed key version records and token claims, and a raw better-sqlite3 handle for writing what the
 * store itself would refuse to write.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
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
