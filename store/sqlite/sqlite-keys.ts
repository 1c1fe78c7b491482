/** `KeyRepository` on SQLite. */
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
import { atomically, type Runner, type SqliteAccess } from './sqlite-support.js';

/** The public `KeyRepository`: each call handed to a runner (queued, or inside a transaction). */
export class SqliteKeyRepository implements KeyRepository {
  readonly #operations: SqliteKeyOperations;
  readonly #run: Runner;

  constructor(operations: SqliteKeyOperations, run: Runner) {
    this.#operations = operations;
    this.#run = run;
  }

  list(): Promise<KeyVersionRecord[]> {
    return this.#run('listing keys', () => this.#operations.list(), 'read');
  }

  get(keyId: string): Promise<KeyVersionRecord | null> {
    return this.#run(`reading key ${describeId(keyId)}`, () => this.#operations.get(keyId), 'read');
  }

  listVersions(name: string): Promise<KeyVersionRecord[]> {
    return this.#run(`listing versions of key ${describeId(name)}`, () => this.#operations.listVersions(name), 'read');
  }

  getActive(name: string): Promise<KeyVersionRecord | null> {
    return this.#run(`reading the active version of key ${describeId(name)}`, () =>
      this.#operations.getActive(name),
    'read');
  }

  insert(record: KeyVersionRecord): Promise<void> {
    // Describing the call must not throw, whatever a caller passed; insert validates.
    const candidate: unknown = record;
    const keyId =
      typeof candidate === 'object' && candidate !== null && 'keyId' in candidate ? candidate.keyId : undefined;
    return this.#run(`inserting key ${describeId(keyId)}`, () => {
      this.#operations.insert(record);
    });
  }

  updateState(keyId: string, state: KeyState, at: string, window?: KeyValidityWindow): Promise<void> {
    return this.#run(`updating the state of key ${describeId(keyId)}`, () => {
      this.#operations.updateState(keyId, state, at, window);
    });
  }
}

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

/** The synchronous SQL behind `KeyRepository`; callers provide ordering and error translation. */
export class SqliteKeyOperations {
  readonly #access: SqliteAccess;

  constructor(access: SqliteAccess) {
    this.#access = access;
  }

  list(): KeyVersionRecord[] {
    return this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions ORDER BY name, version`)
      .all()
      .map(keyVersionFromRow);
  }

  get(keyId: string): KeyVersionRecord | null {
    requireString('keyId', keyId);
    const row = this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE key_id = ?`).get(keyId);
    return row === undefined ? null : keyVersionFromRow(row);
  }

  listVersions(name: string): KeyVersionRecord[] {
    requireString('name', name);
    return this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE name = ? ORDER BY version`)
      .all(name)
      .map(keyVersionFromRow);
  }

  getActive(name: string): KeyVersionRecord | null {
    requireString('name', name);
    const row = this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE name = ? AND state = 'active'`).get(
      name,
    );
    return row === undefined ? null : keyVersionFromRow(row);
  }

  insert(candidate: KeyVersionRecord): void {
    const record = requireKeyVersion(candidate);
    atomically(this.#access, () => {
      // Checked first for a precise message; the primary key and the partial unique
      // index still refuse the write if anything slips past (another process).
      if (this.#exists(record.keyId)) {
        throw new StoreError('STORE_CONFLICT', `key version ${record.keyId} already exists`);
      }
      if (record.state === 'active') this.#requireNoOtherActive(record.name, record.keyId);
      this.#statement(
        `INSERT INTO key_versions (${KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
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
        record.createdAt,
      );
    });
  }

  updateState(keyId: string, state: KeyState, at: string, window?: KeyValidityWindow): void {
    requireString('keyId', keyId);
    const stateValue: unknown = state;
    if (typeof stateValue !== 'string' || !isKeyState(stateValue)) throw new TypeError('invalid key state');
    const when = requireTimestamp('state change time', at);
    const validity = window === undefined ? undefined : requireValidityWindow(window);

    atomically(this.#access, () => {
      const row = this.#statement(`SELECT ${KEY_COLUMNS} FROM key_versions WHERE key_id = ?`).get(keyId);
      if (row === undefined) throw new StoreError('STORE_NOT_FOUND', `key version ${describeId(keyId)} does not exist`);
      const current = keyVersionFromRow(row);

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
      if (state === 'active') this.#requireNoOtherActive(current.name, current.keyId);

      // The right-hand sides see the old row: state_changed_at moves only when the
      // state does, not when only the compromise instant is moved earlier.
      this.#statement(
        `UPDATE key_versions
            SET state_changed_at = CASE WHEN state = ? THEN state_changed_at ELSE ? END,
                state = ?,
                compromised_at = ?,
                not_before = ?,
                not_after = ?
          WHERE key_id = ?`,
      ).run(state, when, state, compromisedAt, notBefore, notAfter, current.keyId);
    });
  }

  #statement(sql: string): ReturnType<SqliteAccess['statement']> {
    return this.#access.statement(sql);
  }

  #exists(keyId: string): boolean {
    return this.#statement('SELECT 1 FROM key_versions WHERE key_id = ?').get(keyId) !== undefined;
  }

  #requireNoOtherActive(name: string, keyId: string): void {
    const other: unknown = this.#statement(
      "SELECT key_id FROM key_versions WHERE name = ? AND state = 'active' AND key_id <> ?",
    )
      .pluck()
      .get(name, keyId);
    if (other !== undefined) {
      throw new StoreError(
        'STORE_CONFLICT',
        `key ${name} already has an active version (${typeof other === 'string' ? describeId(other) : 'unreadable'})`,
      );
    }
  }
}
