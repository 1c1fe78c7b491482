/**
 * The migration list as data: ordered, complete, and in step with the fixed algorithm
 * and state names; and the runner on both backends: idempotent, recorded, atomic per
 * migration, safe when two processes or replicas migrate at once, and refusing schema
 * histories it does not recognise.
 */
import { describe, expect, it } from 'vitest';
import { nodeKey, type NodeRef } from '../../log/merkle.js';
import { KEY_ALGORITHMS } from '../../signer/algorithms.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from '../../store/migrations.js';
import { KEY_STATES, type KeyVersionRecord } from '../../store/store.js';
import { describeDatabase, type TestDatabase } from './backends.js';
import { keyVersion } from './sqlite-fixtures.js';
import { ReferenceTree } from '../log/reference.js';

const HASH = 'ab'.repeat(32);

function sqlOf(db: TestDatabase, migration: Migration): string {
  return db.backend === 'sqlite' ? migration.sqlite : migration.postgres;
}

/** Applies `migration` outside the store, as a release that stopped there would have, and records it. */
async function applyByHand(db: TestDatabase, migration: Migration): Promise<void> {
  await db.raw.exec(sqlOf(db, migration));
  await db.raw.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [
    migration.version,
    migration.name,
    '2025-01-01T00:00:00.000Z',
  ]);
}

/**
 * A database as a release with only migration 1 left it: that migration's own SQL, its
 * record, and key rows written the way that release wrote them.
 */
async function createVersion1Database(db: TestDatabase, keys: readonly KeyVersionRecord[]): Promise<void> {
  await applyByHand(db, MIGRATIONS[0]!);
  for (const k of keys) {
    await db.raw.query(
      `INSERT INTO key_versions (key_id, name, version, algorithm, state, hsm_key_id, public_key_pem, created_at,
         not_before, not_after, compromised_at, state_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        k.keyId,
        k.name,
        k.version,
        k.algorithm,
        k.state,
        k.hsmKeyId,
        k.publicKeyPem,
        k.createdAt,
        k.notBefore,
        k.notAfter,
        k.compromisedAt,
        k.createdAt,
      ],
    );
  }
}

async function tableNames(db: TestDatabase): Promise<string[]> {
  return (await db.schemaObjects()).filter((object) => object.type === 'table').map((object) => object.name);
}

describe('MIGRATIONS', () => {
  it('are numbered 1, 2, 3, … without gaps, with distinct names', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, index) => index + 1));
    expect(new Set(MIGRATIONS.map((m) => m.name)).size).toBe(MIGRATIONS.length);
    expect(LATEST_SCHEMA_VERSION).toBe(MIGRATIONS.length);
  });

  it('carry SQL for both dialects', () => {
    for (const migration of MIGRATIONS) {
      expect(migration.sqlite.trim()).not.toBe('');
      expect(migration.postgres.trim()).not.toBe('');
    }
  });

  // A new algorithm or state name needs a migration that widens the CHECK; this fails
  // until one exists.
  it('allow exactly the fixed algorithm and state names', () => {
    for (const dialect of ['sqlite', 'postgres'] as const) {
      const sql = MIGRATIONS.map((m) => m[dialect]).join('\n');
      const algorithms = /algorithm\s+TEXT\s+NOT NULL\s+CHECK \(algorithm IN \(([^)]*)\)\)/.exec(sql)?.[1];
      const states = /state\s+TEXT\s+NOT NULL\s+CHECK \(state IN \(([^)]*)\)\)/.exec(sql)?.[1];
      expect(algorithms?.split(',').map((s) => s.trim().replace(/'/g, ''))).toEqual([...KEY_ALGORITHMS]);
      expect(states?.split(',').map((s) => s.trim().replace(/'/g, ''))).toEqual([...KEY_STATES]);
    }
  });

  it('are frozen', () => {
    expect(Object.isFrozen(MIGRATIONS)).toBe(true);
    for (const migration of MIGRATIONS) expect(Object.isFrozen(migration)).toBe(true);
  });
});

describeDatabase('migrate', (t) => {
  it('starts at version 0 and records every migration once, however often it runs', async () => {
    const store = t.db.openUnmigrated();
    expect(await store.schemaVersion()).toBe(0);
    await store.migrate();
    await store.migrate();
    await Promise.all([store.migrate(), store.migrate()]);
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    await store.close();
    const recorded = (await t.db.raw.query('SELECT version, name, applied_at FROM schema_migrations ORDER BY version')) as {
      version: number;
      name: string;
      applied_at: string;
    }[];
    expect(recorded.map(({ version, name }) => ({ version, name }))).toEqual(
      MIGRATIONS.map(({ version, name }) => ({ version, name })),
    );
    for (const row of recorded) expect(Number.isNaN(Date.parse(row.applied_at))).toBe(false);
  });

  it('applies each migration once when two stores (processes, replicas) migrate at once', async () => {
    const stores = [t.db.openUnmigrated(), t.db.openUnmigrated(), t.db.openUnmigrated()];
    await Promise.all(stores.map((store) => store.migrate()));
    for (const store of stores) expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect(await t.db.raw.value('SELECT COUNT(*) FROM schema_migrations')).toBe(MIGRATIONS.length);
  });

  it('is idempotent across reopenings', async () => {
    const first = await t.db.open();
    await first.close();
    const second = await t.db.open();
    expect(await second.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect(await t.db.raw.value('SELECT COUNT(*) FROM schema_migrations')).toBe(MIGRATIONS.length);
  });

  // The same objects, by the same names, in both dialects.
  it('creates the tables, the CHECKs and the indexes', async () => {
    await (await t.db.open()).close();
    expect(await t.db.schemaObjects()).toEqual([
      { type: 'table', name: 'ca_certificates' },
      { type: 'index', name: 'ca_certificates_one_active_per_role' },
      { type: 'table', name: 'certificate_revocations' },
      { type: 'table', name: 'counters' },
      { type: 'table', name: 'crls' },
      { type: 'table', name: 'governance_settings' },
      { type: 'table', name: 'health_probe' },
      { type: 'table', name: 'key_versions' },
      { type: 'index', name: 'key_versions_one_active_per_name' },
      { type: 'table', name: 'leaf_certificates' },
      { type: 'index', name: 'leaf_certificates_key' },
      { type: 'table', name: 'leases' },
      { type: 'table', name: 'log_checkpoints' },
      { type: 'table', name: 'log_entries' },
      // SQLite's is keyed by entry bucket first (migration 7); PostgreSQL's by prefix.
      { type: 'index', name: t.db.backend === 'sqlite' ? 'log_entries_leaf_hash_bucket' : 'log_entries_leaf_hash_prefix' },
      // SQLite keeps nodes in log_entries rows (migration 8).
      ...(t.db.backend === 'sqlite' ? [] : [{ type: 'table', name: 'log_nodes' }]),
      { type: 'table', name: 'officers' },
      { type: 'table', name: 'proposal_approvals' },
      { type: 'table', name: 'proposals' },
      { type: 'index', name: 'proposals_by_status' },
      { type: 'table', name: 'revoked_client_certificates' },
      { type: 'table', name: 'schema_migrations' },
      { type: 'table', name: 'signing_freezes' },
      { type: 'table', name: 'token_uses' },
      { type: 'index', name: 'token_uses_expires_at' },
    ]);
    // The database refuses an unknown algorithm even when the store's checks are bypassed.
    await expect(
      t.db.raw.exec(
        `INSERT INTO key_versions (key_id, name, version, algorithm, state, hsm_key_id, public_key_pem,
           created_at, not_before, state_changed_at) VALUES ('k@1', 'k', 1, 'rsa-1024', 'pending', '00', 'x', 't', 't', 't')`,
      ),
    ).rejects.toThrow(t.db.violations.check);
  });

  it('makes the database itself refuse invalid token uses and counts', async () => {
    await (await t.db.open()).close();
    const insertUse = (state: string, response: string | null, tokenId = 't'): Promise<unknown> =>
      t.db.raw.query(
        `INSERT INTO token_uses (issuer, token_id, request_hash, state, response, created_at, expires_at)
           VALUES ('i', ?, ?, ?, ?, '2025-01-01T00:00:00.000Z', '2025-01-01T01:00:00.000Z')`,
        [tokenId, HASH, state, response],
      );
    const { check, unique } = t.db.violations;
    await expect(insertUse('used', null)).rejects.toThrow(check);
    await expect(insertUse('done', null)).rejects.toThrow(check);
    await expect(insertUse('pending', '{}')).rejects.toThrow(check);
    await insertUse('pending', null);
    await insertUse('done', '{}', 'other');
    await expect(insertUse('pending', null)).rejects.toThrow(unique);
    await expect(t.db.raw.exec(`INSERT INTO counters (counter, "window", count) VALUES ('c', 'total', -1)`)).rejects.toThrow(
      check,
    );
  });

  it('makes the database itself refuse malformed log rows', async () => {
    await (await t.db.open()).close();
    const hash = Buffer.alloc(32, 1);
    const insertEntry = (idx: number, kind: string, leaf: Buffer, leafHash: Buffer, linked: number | null): Promise<unknown> =>
      t.db.raw.query(
        'INSERT INTO log_entries (idx, kind, leaf, leaf_hash, integrated_time, linked_idx) VALUES (?, ?, ?, ?, 0, ?)',
        [idx, kind, leaf, leafHash, linked],
      );
    const insertNode = (level: number, idx: number, nodeHash: Buffer): Promise<unknown> =>
      t.db.raw.query('INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)', [level, idx, nodeHash]);
    const { check, unique, foreignKey } = t.db.violations;
    const leaf = Buffer.from('leaf');
    for (const kind of ['', 'Upper', 'a b', 'x'.repeat(65)]) await expect(insertEntry(0, kind, leaf, hash, null), kind).rejects.toThrow(check);
    await expect(insertEntry(0, 'k', Buffer.alloc(0), hash, null)).rejects.toThrow(check);
    await expect(insertEntry(0, 'k', leaf, Buffer.alloc(31), null)).rejects.toThrow(check);
    await expect(insertEntry(-1, 'k', leaf, hash, null)).rejects.toThrow(check);
    await insertEntry(0, 'signet.decision/v1', leaf, hash, null);
    await expect(insertEntry(1, 'k', leaf, hash, 1)).rejects.toThrow(check);
    await expect(insertEntry(5, 'k', leaf, hash, 3)).rejects.toThrow(foreignKey);
    await insertEntry(1, 'k', leaf, hash, 0);
    await expect(insertEntry(1, 'k', leaf, hash, null)).rejects.toThrow(unique);
    if (t.db.backend === 'sqlite') {
      // Subtree hashes, in the row of the entry that completes them (migration 8): whole 32-byte hashes, at least one.
      for (const bad of [Buffer.alloc(0), Buffer.alloc(31), Buffer.alloc(33), Buffer.alloc(54 * 32)]) {
        await expect(t.db.raw.query('UPDATE log_entries SET subtree_hashes = ? WHERE idx = 1', [bad]), String(bad.length)).rejects.toThrow(check);
      }
      await t.db.raw.query('UPDATE log_entries SET subtree_hashes = ? WHERE idx = 1', [hash]);
    } else {
      await expect(insertNode(0, 0, Buffer.alloc(33))).rejects.toThrow(check);
      await expect(insertNode(54, 0, hash)).rejects.toThrow(check);
      await insertNode(0, 0, hash);
      await expect(insertNode(0, 0, hash)).rejects.toThrow(unique);
    }
    await expect(
      t.db.raw.query("INSERT INTO log_checkpoints (size, root_hash, note, created_at) VALUES (1, ?, 'n', 't')", [Buffer.alloc(31)]),
    ).rejects.toThrow(check);
  });

  it('upgrades a version-2 database to the latest version, keeping its rows', async () => {
    const keys = [keyVersion('demo-release', 1, 'active')];
    await createVersion1Database(t.db, keys);
    await applyByHand(t.db, MIGRATIONS[1]!);
    await t.db.raw.query(
      `INSERT INTO token_uses (issuer, token_id, request_hash, state, response, created_at, expires_at)
         VALUES ('https://issuer.example', 'jti-1', ?, 'done', '{"ok":true}', '2025-01-01T00:00:00.000Z',
                 '2025-01-01T01:00:00.000Z')`,
      [HASH],
    );
    await t.db.raw.exec(`INSERT INTO counters (counter, "window", count) VALUES ('usage:key:demo-release@1', 'total', 7)`);

    const store = t.db.openUnmigrated();
    expect(await store.schemaVersion()).toBe(2);
    await store.migrate();
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect(await store.keys.list()).toEqual(keys);
    expect(await store.tokenUses.get('https://issuer.example', 'jti-1')).toMatchObject({
      state: 'done',
      response: '{"ok":true}',
    });
    expect(await store.counters.current('usage:key:demo-release@1', 'total')).toBe(7);
    // The log tables are there, empty, and work.
    expect(await store.log.size()).toBe(0);
    await expect(
      store.log.append([{ kind: 'signet.decision/v1', leaf: Buffer.from('{}'), integratedTime: 1, linkedIndex: null }]),
    ).resolves.toEqual({ firstIndex: 0, size: 1 });
    expect(await store.log.latestCheckpoint()).toBeNull();
  });

  it('upgrades a version-6 database with a log, keeping every entry and node and finding leaves by hash', async () => {
    for (const migration of MIGRATIONS.slice(0, 6)) await applyByHand(t.db, migration);
    // 37 entries and their perfect subtrees, written as version 6 laid them out.
    const leaves = Array.from({ length: 37 }, (_, i) => Buffer.from(JSON.stringify({ kind: 'test', i })));
    const tree = new ReferenceTree(leaves);
    const refs: NodeRef[] = [];
    for (const [index, leaf] of leaves.entries()) {
      await t.db.raw.query(
        'INSERT INTO log_entries (idx, kind, leaf, leaf_hash, integrated_time, linked_idx) VALUES (?, ?, ?, ?, 1, NULL)',
        [index, 'signet.decision/v1', leaf, tree.mth(index, index + 1)],
      );
    }
    const nodes = tree.perfectSubtrees();
    for (const [key, hash] of nodes) {
      const [level = -1, index = -1] = key.split(':').map(Number);
      refs.push({ level, index });
      await t.db.raw.query('INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)', [level, index, hash]);
    }

    const store = t.db.openUnmigrated();
    expect(await store.schemaVersion()).toBe(6);
    await store.migrate();
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect(await store.log.size()).toBe(leaves.length);
    const stored = await store.log.nodes(refs);
    for (const ref of refs) expect(stored.get(nodeKey(ref)), nodeKey(ref)).toEqual(nodes.get(nodeKey(ref)));
    for (const index of [0, 17, 36]) expect(await store.log.indexOfLeafHash(tree.mth(index, index + 1))).toBe(index);
    // The next append finds the siblings it needs and completes 1:18, 2:9 … as before.
    const next = Buffer.from(JSON.stringify({ kind: 'test', i: 37 }));
    await expect(store.log.append([{ kind: 'signet.decision/v1', leaf: next, integratedTime: 1, linkedIndex: null }])).resolves.toEqual({ firstIndex: 37, size: 38 });
    const grown = new ReferenceTree([...leaves, next]);
    expect((await store.log.nodes([{ level: 1, index: 18 }])).get('1:18')).toEqual(grown.mth(36, 38));
    await store.close();
  });

  it.runIf(t.backend === 'sqlite')('refuses to move a version-7 log whose nodes have a gap in their levels (migration 8)', async () => {
    for (const migration of MIGRATIONS.slice(0, 7)) await applyByHand(t.db, migration);
    const leaves = Array.from({ length: 8 }, (_, i) => Buffer.from(`leaf ${i}`));
    const tree = new ReferenceTree(leaves);
    for (const [index, leaf] of leaves.entries()) {
      await t.db.raw.query('INSERT INTO log_entries (idx, kind, leaf, leaf_hash, integrated_time, linked_idx) VALUES (?, ?, ?, ?, 1, NULL)', [index, 'signet.decision/v1', leaf, tree.mth(index, index + 1)]);
    }
    for (const [key, hash] of tree.perfectSubtrees()) {
      const [level = -1, index = -1] = key.split(':').map(Number);
      // Entry 7 completes 1:3, 2:1 and 3:0; 2:1 is lost.
      if (level === 2 && index === 1) continue;
      await t.db.raw.query('INSERT INTO log_nodes (leaf_end, level, idx, hash) VALUES (?, ?, ?, ?)', [(index + 1) * 2 ** level, level, index, hash]);
    }
    const store = t.db.openUnmigrated();
    await expect(store.migrate()).rejects.toMatchObject({ code: 'STORE_MIGRATION_FAILED' });
    // Rolled back: still version 7, nodes where they were.
    expect(await store.schemaVersion()).toBe(7);
    expect(await t.db.raw.query('SELECT count(*) AS n FROM log_nodes')).toEqual([{ n: 14 }]);
    await store.close();
  });

  it('upgrades a version-1 database to the latest version, keeping its key rows', async () => {
    const keys = [
      keyVersion('demo-release', 1, 'verify-only'),
      keyVersion('demo-release', 2, 'active', { notAfter: '2030-01-01T00:00:00.000Z' }),
      keyVersion('old', 1, 'compromised'),
    ];
    await createVersion1Database(t.db, keys);

    const store = t.db.openUnmigrated();
    expect(await store.schemaVersion()).toBe(1);
    await store.migrate();
    expect(await store.schemaVersion()).toBe(LATEST_SCHEMA_VERSION);
    expect(await store.keys.list()).toEqual([...keys].sort((a, b) => a.name.localeCompare(b.name) || a.version - b.version));
    expect((await store.keys.getActive('demo-release'))?.keyId).toBe('demo-release@2');
    // The new tables are there and work.
    await expect(
      store.tokenUses.claim({
        issuer: 'https://issuer.example',
        tokenId: 'jti-1',
        requestHash: HASH,
        createdAt: '2025-01-01T00:00:00.000Z',
        expiresAt: '2025-01-01T01:00:00.000Z',
      }),
    ).resolves.toEqual({ kind: 'claimed' });
    await expect(store.counters.consume([{ counter: 'usage:key:demo-release@2', window: 'total', limit: 1 }])).resolves.toEqual({
      allowed: true,
    });
    await store.close();
    expect(await t.db.raw.query('SELECT version, name FROM schema_migrations ORDER BY version')).toEqual(
      MIGRATIONS.map(({ version, name }) => ({ version, name })),
    );
  });

  it('rolls a failing migration 2 back whole, leaving version 1 and its rows in place', async () => {
    const keys = [keyVersion('k', 1, 'active')];
    await createVersion1Database(t.db, keys);
    // A table in the way of the second CREATE TABLE of migration 2, after the first succeeded.
    await t.db.raw.exec('CREATE TABLE counters (anything TEXT)');

    const store = t.db.openUnmigrated();
    await expect(store.migrate()).rejects.toMatchObject({ code: 'STORE_MIGRATION_FAILED' });
    expect(await store.schemaVersion()).toBe(1);
    expect(await store.keys.list()).toEqual(keys);
    await store.close();
    expect(await tableNames(t.db)).toEqual(['counters', 'health_probe', 'key_versions', 'schema_migrations']);
  });

  it('refuses a database whose schema is newer than the code (STORE_CORRUPT)', async () => {
    await (await t.db.open()).close();
    await t.db.raw.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [
      LATEST_SCHEMA_VERSION + 1,
      'from the future',
      new Date().toISOString(),
    ]);
    await expect(t.db.open()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    const reopened = t.db.openUnmigrated();
    await expect(reopened.migrate()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    expect(await reopened.schemaVersion()).toBe(LATEST_SCHEMA_VERSION + 1);
  });

  it('refuses a history that differs from the code (STORE_CORRUPT)', async () => {
    await (await t.db.open()).close();
    await t.db.raw.exec("UPDATE schema_migrations SET name = 'something else' WHERE version = 1");
    await expect(t.db.open()).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
  });

  it('rolls a failing migration back whole and reports STORE_MIGRATION_FAILED', async () => {
    // A table in the way makes migration 1 fail half-way, after schema_migrations exists.
    await t.db.raw.exec('CREATE TABLE health_probe (anything TEXT)');
    const failing = t.db.openUnmigrated();
    await expect(failing.migrate()).rejects.toMatchObject({ code: 'STORE_MIGRATION_FAILED' });
    expect(await failing.schemaVersion()).toBe(0);
    await failing.close();
    expect(await tableNames(t.db)).toEqual(['health_probe']);
  });
});
