/**
 * `TokenUseRepository` on SQLite.
 *
 * A claim is one INSERT … ON CONFLICT DO NOTHING followed by a read of the row, both
 * under one write lock (`atomically`): the primary key decides which claim is first,
 * across every connection and process on the file, and the read returns exactly the row
 * that won. Error codes beyond the interface's:
 *
 * - `complete` fails with STORE_NOT_FOUND whenever there is no *pending* use of the
 *   token for that request hash: no row (never claimed, released or purged), a use
 *   already done, or one pending for another request. The message says which. In each
 *   case the caller no longer owns a pending use, and the stored row is left unchanged.
 * - `release` never fails for lack of a matching pending use: it runs on failure paths,
 *   where a second error would only hide the first, and releasing twice is harmless.
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
import { atomically, type Runner, type SqliteAccess } from './sqlite-support.js';

type ClaimInput = Parameters<TokenUseRepository['claim']>[0];

export class SqliteTokenUseRepository implements TokenUseRepository {
  readonly #operations: SqliteTokenUseOperations;
  readonly #run: Runner;

  constructor(operations: SqliteTokenUseOperations, run: Runner) {
    this.#operations = operations;
    this.#run = run;
  }

  claim(use: ClaimInput): Promise<TokenClaimOutcome> {
    // Describing the call must not throw, whatever a caller passed; claim validates.
    const candidate: unknown = use;
    const fields = typeof candidate === 'object' && candidate !== null ? (candidate as Record<string, unknown>) : {};
    return this.#run(`claiming ${describeUse(fields.issuer, fields.tokenId)}`, () => this.#operations.claim(use));
  }

  complete(issuer: string, tokenId: string, requestHash: string, response: string): Promise<void> {
    return this.#run(`completing ${describeUse(issuer, tokenId)}`, () => {
      this.#operations.complete(issuer, tokenId, requestHash, response);
    });
  }

  release(issuer: string, tokenId: string, requestHash: string): Promise<void> {
    return this.#run(`releasing ${describeUse(issuer, tokenId)}`, () => {
      this.#operations.release(issuer, tokenId, requestHash);
    });
  }

  get(issuer: string, tokenId: string): Promise<TokenUseRecord | null> {
    return this.#run(`reading ${describeUse(issuer, tokenId)}`, () => this.#operations.get(issuer, tokenId), 'read');
  }

  purgeExpired(now: string): Promise<number> {
    return this.#run('purging expired token uses', () => this.#operations.purgeExpired(now));
  }

  releaseAbandoned(createdBefore: string): Promise<number> {
    return this.#run('releasing abandoned token uses', () => this.#operations.releaseAbandoned(createdBefore));
  }
}

function describeUse(issuer: unknown, tokenId: unknown): string {
  return `the use of token ${describeId(tokenId)} of issuer ${describeId(issuer)}`;
}

const TOKEN_USE_COLUMNS = 'issuer, token_id, request_hash, state, response, created_at, expires_at';
const SELECT_USE = `SELECT ${TOKEN_USE_COLUMNS} FROM token_uses WHERE issuer = ? AND token_id = ?`;
const CLAIMED: TokenClaimOutcome = Object.freeze({ kind: 'claimed' });

/** The synchronous SQL behind `TokenUseRepository`; callers provide ordering and error translation. */
export class SqliteTokenUseOperations {
  readonly #access: SqliteAccess;

  constructor(access: SqliteAccess) {
    this.#access = access;
  }

  claim(candidate: ClaimInput): TokenClaimOutcome {
    const use = requireTokenUseClaim(candidate);
    return atomically(this.#access, () => {
      const inserted = this.#access
        .statement(
          `INSERT INTO token_uses (${TOKEN_USE_COLUMNS}) VALUES (?, ?, ?, 'pending', NULL, ?, ?)
             ON CONFLICT (issuer, token_id) DO NOTHING`,
        )
        .run(use.issuer, use.tokenId, use.requestHash, use.createdAt, use.expiresAt);
      if (inserted.changes === 1) return CLAIMED;
      const record = this.#read(use.issuer, use.tokenId);
      // Only the primary key can make the insert do nothing, and the write lock is
      // still held, so the row that did must be there.
      if (record === null) {
        throw new StoreError('STORE_UNAVAILABLE', `${describeUse(use.issuer, use.tokenId)} could not be recorded`);
      }
      return Object.freeze({ kind: 'used', record });
    });
  }

  complete(issuerArg: string, tokenIdArg: string, requestHashArg: string, responseArg: string): void {
    const { issuer, tokenId } = requireTokenKey(issuerArg, tokenIdArg);
    const requestHash = requireRequestHash(requestHashArg);
    const response = requireResponse(responseArg);
    atomically(this.#access, () => {
      // Read first: a damaged row is reported, never overwritten, and the error says why
      // there is nothing to complete.
      const current = this.#read(issuer, tokenId);
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
      this.#access
        .statement(
          `UPDATE token_uses SET state = 'done', response = ?
            WHERE issuer = ? AND token_id = ? AND state = 'pending' AND request_hash = ?`,
        )
        .run(response, issuer, tokenId, requestHash);
    });
  }

  release(issuerArg: string, tokenIdArg: string, requestHashArg: string): void {
    const { issuer, tokenId } = requireTokenKey(issuerArg, tokenIdArg);
    const requestHash = requireRequestHash(requestHashArg);
    // One statement, so atomic by itself; the WHERE clause is the whole rule: only a
    // pending use, only for this request.
    this.#access
      .statement(
        `DELETE FROM token_uses WHERE issuer = ? AND token_id = ? AND state = 'pending' AND request_hash = ?`,
      )
      .run(issuer, tokenId, requestHash);
  }

  get(issuerArg: string, tokenIdArg: string): TokenUseRecord | null {
    const { issuer, tokenId } = requireTokenKey(issuerArg, tokenIdArg);
    return this.#read(issuer, tokenId);
  }

  purgeExpired(nowArg: string): number {
    const now = requireTimestamp('now', nowArg);
    // Canonical timestamps compare as text in time order (validation.ts).
    return this.#access.statement('DELETE FROM token_uses WHERE expires_at < ?').run(now).changes;
  }

  releaseAbandoned(createdBeforeArg: string): number {
    const createdBefore = requireTimestamp('createdBefore', createdBeforeArg);
    return this.#access.statement("DELETE FROM token_uses WHERE state = 'pending' AND created_at < ?").run(createdBefore).changes;
  }

  #read(issuer: string, tokenId: string): TokenUseRecord | null {
    const row = this.#access.statement(SELECT_USE).get(issuer, tokenId);
    return row === undefined ? null : tokenUseFromRow(row);
  }
}
