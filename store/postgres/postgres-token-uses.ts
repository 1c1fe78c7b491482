/**
 * `TokenUseRepository` on PostgreSQL.
 *
 * A claim is INSERT … ON CONFLICT DO NOTHING: the primary key (issuer, token_id)
 * decides which claim is first, across every replica. A claim racing with an
 * uncommitted insert of the same token waits for it; at READ COMMITTED the read that
 * follows a refused insert is a new statement with a new snapshot, so it sees the row
 * that won. If that row is gone by then (released or purged in between), the claim is
 * simply tried again. Completing a use locks its row first (SELECT … FOR UPDATE), then
 * completes it and returns it as it was, in one statement inside a transaction that is
 * rolled back unless the row was valid, so a damaged row is reported, never overwritten.
 *
 * Error codes beyond the interface's are those of the SQLite backend
 * (sqlite-token-uses.ts): `complete` fails with STORE_NOT_FOUND whenever there is no
 * pending use for that request, and `release` never fails for lack of one.
 */
import { StoreError } from '../errors.js';
import type { TokenClaimOutcome, TokenUseRecord, TokenUseRepository } from '../store.js';
import {
  describeId,
  requireRequestHash,
  requireResponse,
  requireTimestamp,
  requireTokenKey,
  requireTokenUseClaim,
  tokenUseFromRow,
} from '../validation.js';
import type { PgRunner, PgSession } from './postgres-session.js';

type ClaimInput = Parameters<TokenUseRepository['claim']>[0];

const TOKEN_USE_COLUMNS = 'issuer, token_id, request_hash, state, response, created_at, expires_at';
const SELECT_USE = `SELECT ${TOKEN_USE_COLUMNS} FROM token_uses WHERE issuer = $1 AND token_id = $2`;
const CLAIMED: TokenClaimOutcome = Object.freeze({ kind: 'claimed' });
/** The row as it was, locked; completed in the same statement if it is pending for this request. */
const COMPLETE = `
WITH current AS (
  ${SELECT_USE} FOR UPDATE
), done AS (
  UPDATE token_uses AS t SET state = 'done', response = $4
    FROM current AS c
   WHERE t.issuer = c.issuer AND t.token_id = c.token_id AND c.state = 'pending' AND c.request_hash = $3
  RETURNING 1
)
SELECT ${TOKEN_USE_COLUMNS}, EXISTS (SELECT 1 FROM done) AS completed FROM current`;
/** A claim finds the winning row gone only if it is released or purged at that very moment; more than a few times in a row is not a race. */
const CLAIM_ATTEMPTS = 5;

function describeUse(issuer: unknown, tokenId: unknown): string {
  return `the use of token ${describeId(tokenId)} of issuer ${describeId(issuer)}`;
}

export class PostgresTokenUseRepository implements TokenUseRepository {
  readonly #run: PgRunner;

  constructor(run: PgRunner) {
    this.#run = run;
  }

  claim(candidate: ClaimInput): Promise<TokenClaimOutcome> {
    // Describing the call must not throw, whatever a caller passed; claim validates.
    const value: unknown = candidate;
    const fields = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
    return this.#run(`claiming ${describeUse(fields.issuer, fields.tokenId)}`, async (db) => {
      const use = requireTokenUseClaim(candidate);
      for (let attempt = 1; attempt <= CLAIM_ATTEMPTS; attempt += 1) {
        const inserted = await db.query(
          `INSERT INTO token_uses (${TOKEN_USE_COLUMNS}) VALUES ($1, $2, $3, 'pending', NULL, $4, $5)
             ON CONFLICT (issuer, token_id) DO NOTHING`,
          [use.issuer, use.tokenId, use.requestHash, use.createdAt, use.expiresAt],
        );
        if (inserted.rowCount === 1) return CLAIMED;
        const record = await readUse(db, use.issuer, use.tokenId, '');
        if (record !== null) return Object.freeze({ kind: 'used' as const, record });
      }
      throw new StoreError('STORE_UNAVAILABLE', `${describeUse(use.issuer, use.tokenId)} could not be recorded`);
    }, 'write-unrefused');
  }

  complete(issuerArg: string, tokenIdArg: string, requestHashArg: string, responseArg: string): Promise<void> {
    return this.#run(`completing ${describeUse(issuerArg, tokenIdArg)}`, async (db) => {
      const { issuer, tokenId } = requireTokenKey(issuerArg, tokenIdArg);
      const requestHash = requireRequestHash(requestHashArg);
      const response = requireResponse(responseArg);
      await db.atomically(async () => {
        // One statement locks the row, completes it if it is pending for this request,
        // and returns it as it was before; the row is validated before anything is
        // committed, so a damaged row is reported (and the unit rolled back), never
        // overwritten, and the error says why there is nothing to complete.
        const row = (await db.query(COMPLETE, [issuer, tokenId, requestHash, response])).rows[0];
        let current: TokenUseRecord | null;
        try {
          current = row === undefined ? null : tokenUseFromRow(row);
        } catch (error) {
          if (row?.completed === true) db.discardOnFailure();
          throw error;
        }
        const problem =
          current === null
            ? 'was never recorded, or was released or purged'
            : current.state !== 'pending'
              ? 'is already done'
              : current.requestHash !== requestHash
                ? 'is pending for another request'
                : null;
        if (problem !== null) {
          throw new StoreError('STORE_NOT_FOUND', `no pending ${describeUse(issuer, tokenId)}: it ${problem}`);
        }
      });
    }, 'write-unrefused');
  }

  release(issuerArg: string, tokenIdArg: string, requestHashArg: string): Promise<void> {
    return this.#run(`releasing ${describeUse(issuerArg, tokenIdArg)}`, async (db) => {
      const { issuer, tokenId } = requireTokenKey(issuerArg, tokenIdArg);
      const requestHash = requireRequestHash(requestHashArg);
      // One statement, so atomic by itself; the WHERE clause is the whole rule: only a
      // pending use, only for this request.
      await db.query(
        `DELETE FROM token_uses WHERE issuer = $1 AND token_id = $2 AND state = 'pending' AND request_hash = $3`,
        [issuer, tokenId, requestHash],
      );
    });
  }

  get(issuerArg: string, tokenIdArg: string): Promise<TokenUseRecord | null> {
    return this.#run(
      `reading ${describeUse(issuerArg, tokenIdArg)}`,
      async (db) => {
        const { issuer, tokenId } = requireTokenKey(issuerArg, tokenIdArg);
        return readUse(db, issuer, tokenId, '');
      },
      'read',
    );
  }

  purgeExpired(nowArg: string): Promise<number> {
    return this.#run('purging expired token uses', async (db) => {
      const now = requireTimestamp('now', nowArg);
      // Canonical timestamps compare as text in time order (validation.ts); the columns
      // are COLLATE "C", so text order is byte order whatever the database's collation.
      return (await db.query('DELETE FROM token_uses WHERE expires_at < $1', [now])).rowCount;
    });
  }

  releaseAbandoned(createdBeforeArg: string): Promise<number> {
    return this.#run('releasing abandoned token uses', async (db) => {
      const createdBefore = requireTimestamp('createdBefore', createdBeforeArg);
      return (await db.query("DELETE FROM token_uses WHERE state = 'pending' AND created_at < $1", [createdBefore])).rowCount;
    });
  }
}

async function readUse(db: PgSession, issuer: string, tokenId: string, lock: '' | ' FOR UPDATE'): Promise<TokenUseRecord | null> {
  const row = (await db.query(`${SELECT_USE}${lock}`, [issuer, tokenId])).rows[0];
  return row === undefined ? null : tokenUseFromRow(row);
}
