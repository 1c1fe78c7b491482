/**
 * `KeyRepository` on PostgreSQL.
 *
 * One active version per name is enforced by the partial unique index of migration 1,
 * across every replica: two concurrent activations both pass any check made before
 * writing, and the index makes the second one wait for the first and then refuse
 * (STORE_CONFLICT). A state change locks its row (SELECT … FOR UPDATE) before reading
 * it, so the compromise rules below are applied to the row as it is, not as it was.
 */
import { StoreError } from '../errors.js';
import type { KeyRepository, KeyState, KeyValidityWindow, KeyVersionRecord } from '../store.js';
import {
  describeId,
  isKeyState,
  keyVersionFromRow,
  requireKeyVersion,
  requireString,
  requireTimestamp,
  requireValidityWindow,
} from '../validation.js';
import { isUniqueViolation, violatedConstraint } from './postgres-errors.js';
import type { PgRunner, PgSession } from './postgres-session.js';

const KEY_COLUMNS = [
  'key_id',
  'name',
  'version',
  'algorithm',
  'state',
  'hsm_key_id',
  'public_key_pem',
  'created_at',
  'not_before',
  'not_after',
  'compromised_at',
  'state_changed_at',
].join(', ');

/** The partial unique index of migration 1. */
const ONE_ACTIVE_INDEX = 'key_versions_one_active_per_name';

export class PostgresKeyRepository implements KeyRepository {
  readonly #run: PgRunner;

  constructor(run: PgRunner) {
    this.#run = run;
  }

  list(): Promise<KeyVersionRecord[]> {
    return this.#run(
      'listing keys',
      async (db) => (await db.query(`SELECT ${KEY_COLUMNS} FROM key_versions ORDER BY name, version`)).rows.map(keyVersionFromRow),
      'read',
    );
  }

  get(keyId: string): Promise<KeyVersionRecord | null> {
    return this.#run(
      `reading key ${describeId(keyId)}`,
      async (db) => {
        requireString('keyId', keyId);
        return readKey(db, keyId, '');
      },
      'read',
    );
  }

  listVersions(name: string): Promise<KeyVersionRecord[]> {
    return this.#run(
      `listing versions of key ${describeId(name)}`,
      async (db) => {
        requireString('name', name);
        const result = await db.query(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE name = $1 ORDER BY version`, [name]);
        return result.rows.map(keyVersionFromRow);
      },
      'read',
    );
  }

  getActive(name: string): Promise<KeyVersionRecord | null> {
    return this.#run(
      `reading the active version of key ${describeId(name)}`,
      async (db) => {
        requireString('name', name);
        const result = await db.query(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE name = $1 AND state = 'active'`, [name]);
        const row = result.rows[0];
        return row === undefined ? null : keyVersionFromRow(row);
      },
      'read',
    );
  }

  insert(candidate: KeyVersionRecord): Promise<void> {
    // Describing the call must not throw, whatever a caller passed; insert validates.
    const value: unknown = candidate;
    const keyId = typeof value === 'object' && value !== null && 'keyId' in value ? value.keyId : undefined;
    return this.#run(`inserting key ${describeId(keyId)}`, async (db) => {
      const record = requireKeyVersion(candidate);
      try {
        await db.query(
          `INSERT INTO key_versions (${KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $8)`,
          [
            record.keyId,
            record.name,
            record.version,
            record.algorithm,
            record.state,
            record.hsmKeyId,
            record.publicKeyPem,
            record.createdAt,
            record.notBefore,
            record.notAfter,
            record.compromisedAt,
          ],
        );
      } catch (error) {
        if (!isUniqueViolation(error)) throw error;
        throw violatedConstraint(error) === ONE_ACTIVE_INDEX
          ? new StoreError('STORE_CONFLICT', `key ${record.name} already has an active version`, { cause: error })
          : new StoreError('STORE_CONFLICT', `key version ${record.keyId} already exists`, { cause: error });
      }
    });
  }

  updateState(keyId: string, state: KeyState, at: string, window?: KeyValidityWindow): Promise<void> {
    return this.#run(`updating the state of key ${describeId(keyId)}`, async (db) => {
      requireString('keyId', keyId);
      const stateValue: unknown = state;
      if (typeof stateValue !== 'string' || !isKeyState(stateValue)) throw new TypeError('invalid key state');
      const when = requireTimestamp('state change time', at);
      const validity = window === undefined ? undefined : requireValidityWindow(window);

      await db.atomically(async () => {
        const current = await readKey(db, keyId, ' FOR UPDATE');
        if (current === null) throw new StoreError('STORE_NOT_FOUND', `key version ${describeId(keyId)} does not exist`);

        // Lifecycle rules belong to keyrotation/, but one is a security invariant worth a
        // second guard here: leaving `compromised` would quietly make signatures made
        // after the compromise valid again.
        if (current.state === 'compromised' && state !== 'compromised') {
          throw new StoreError('STORE_CONFLICT', `key version ${current.keyId} is compromised; that state is final`);
        }
        let compromisedAt: string | null = null;
        if (state === 'compromised') {
          // Reporting a compromise again can only move its instant earlier: the earliest
          // report invalidates the most signatures.
          compromisedAt =
            current.compromisedAt !== null && Date.parse(current.compromisedAt) <= Date.parse(when)
              ? current.compromisedAt
              : when;
        }
        const notBefore = validity?.notBefore ?? current.notBefore;
        const notAfter = validity === undefined ? current.notAfter : validity.notAfter;
        if (state === current.state && compromisedAt === current.compromisedAt && notBefore === current.notBefore && notAfter === current.notAfter) return;
        if (state === 'active') await requireNoOtherActive(db, current.name, current.keyId);

        try {
          // The right-hand sides see the old row: state_changed_at moves only when the
          // state does, not when only the compromise instant is moved earlier.
          await db.query(
            `UPDATE key_versions
                SET state_changed_at = CASE WHEN state = $1 THEN state_changed_at ELSE $2 END,
                    state = $1,
                    compromised_at = $3,
                    not_before = $5,
                    not_after = $6
              WHERE key_id = $4`,
            [state, when, compromisedAt, current.keyId, notBefore, notAfter],
          );
        } catch (error) {
          // Another replica activated a version of this name after the check above.
          if (!isUniqueViolation(error)) throw error;
          throw new StoreError('STORE_CONFLICT', `key ${current.name} already has an active version`, { cause: error });
        }
      });
    });
  }
}

async function readKey(db: PgSession, keyId: string, lock: '' | ' FOR UPDATE'): Promise<KeyVersionRecord | null> {
  const result = await db.query(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE key_id = $1${lock}`, [keyId]);
  const row = result.rows[0];
  return row === undefined ? null : keyVersionFromRow(row);
}

/** Checked first for a precise message; the partial unique index still refuses whatever slips past. */
async function requireNoOtherActive(db: PgSession, name: string, keyId: string): Promise<void> {
  const result = await db.query(
    "SELECT key_id FROM key_versions WHERE name = $1 AND state = 'active' AND key_id <> $2",
    [name, keyId],
  );
  const other: unknown = result.rows[0]?.key_id;
  if (other !== undefined) {
    throw new StoreError(
      'STORE_CONFLICT',
      `key ${name} already has an active version (${typeof other === 'string' ? describeId(other) : 'unreadable'})`,
    );
  }
}
