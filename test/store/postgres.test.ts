/**
 * What only the PostgreSQL store has to prove: several replicas (separate pools) on one
 * database stay correct under real concurrency (one log with contiguous indexes and
 * consistent roots, one claim per token, usage limits), and the store fails closed with
 * STORE_UNAVAILABLE while the database is away, hung or killing its sessions, then
 * recovers by itself without being reopened. Plus its options and configuration.
 *
 * The database is reached through SIGNET_TEST_POSTGRES_URL (backends.ts), each test in
 * a fresh schema; "away" and "hung" are produced by a TCP proxy in front of the server,
 * so that other tests sharing the server are not disturbed.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../config/load.js';
import { nodeKey, rootPlan, treeRoot } from '../../log/merkle.js';
import { isStoreError } from '../../store/errors.js';
import { openStore } from '../../store/open-store.js';
import { SELECT_HEAD } from '../../store/postgres/postgres-log.js';
import { openPostgresStore, type PostgresStoreOptions } from '../../store/postgres/postgres-store.js';
import type { CounterIncrement, LogEntryInput, SignetStore } from '../../store/store.js';
import { mth, ReferenceTree } from '../log/reference.js';
import {
  describeBackends,
  postgresAdmin,
  postgresDatabase,
  postgresStoreOptions,
  postgresTestUrl,
  yieldTurns,
  type TestDatabase,
} from './backends.js';
import { keyVersion, makeTempDir, requestHash, tokenClaim } from './sqlite-fixtures.js';
// A TCP proxy in front of the database: `down` refuses and cuts connections, `pause` stops all traffic.
import { TcpProxy as DatabaseProxy } from '../helpers/tcp-proxy.js';

const ISSUER = tokenClaim('x').issuer;

function entry(tag: string): LogEntryInput {
  return { kind: 'signet.decision/v1', leaf: Buffer.from(JSON.stringify({ tag })), integratedTime: 1_700_000_000, linkedIndex: null };
}

function entries(tag: string, count: number): LogEntryInput[] {
  return Array.from({ length: count }, (_, i) => entry(`${tag}-${i}`));
}

/** A unique application_name, so that a test terminates only its own store's sessions. */
function applicationName(): string {
  return `signet-test-${randomBytes(6).toString('hex')}`;
}

/** Ends every session of the store named `name` (pg_terminate_backend), as an operator or a failover would. */
async function terminateSessions(name: string): Promise<number> {
  const { rows } = await postgresAdmin().query(
    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
    [name],
  );
  return rows.length;
}

async function eventually<T>(what: string, attempt: () => Promise<T>, withinMs: number): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what} did not succeed within ${withinMs} ms`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** Every leaf, read back in order (entries() itself refuses a hole below the size). */
async function allLeaves(store: SignetStore): Promise<Buffer[]> {
  const size = await store.log.size();
  const leaves: Buffer[] = [];
  for (let start = 0; start < size; start += 1000) {
    leaves.push(...(await store.log.entries(start, Math.min(size, start + 1000))).map((record) => record.leaf));
  }
  expect(leaves).toHaveLength(size);
  return leaves;
}

/** The stored tree is exactly the RFC 9162 tree of the stored leaves (test/log/reference.ts): every node, and the root. */
async function expectConsistentTree(store: SignetStore, db: TestDatabase): Promise<Buffer[]> {
  const leaves = await allLeaves(store);
  const reference = new ReferenceTree(leaves);
  const rows = (await db.raw.query('SELECT level, idx, hash FROM log_nodes')) as { level: number; idx: number; hash: Buffer }[];
  const expectedNodes = reference.perfectSubtrees();
  expect(rows).toHaveLength(expectedNodes.size);
  for (const row of rows) expect(row.hash.equals(expectedNodes.get(`${row.level}:${row.idx}`)!), `${row.level}:${row.idx}`).toBe(true);
  if (leaves.length > 0) {
    const hashes = await store.log.nodes(rootPlan(leaves.length));
    expect(treeRoot(leaves.length, (ref) => hashes.get(nodeKey(ref))!).equals(mth(leaves))).toBe(true);
  }
  return leaves;
}


// ---------------------------------------------------------------------------------

describe('options and configuration', () => {
  it('refuses bad options with a TypeError naming every bad field, never the URL', () => {
    const secret = 'hunter2-not-a-real-password';
    const bad: PostgresStoreOptions[] = [
      { url: 'mysql://localhost/db' },
      { url: `postgres://u:${secret}@localhost/db`, schema: 'Bad-Schema' },
      { url: `postgres://u:${secret}@localhost/db`, poolSize: 0 },
      { url: `postgres://u:${secret}@localhost/db`, poolSize: 1.5 },
      { url: `postgres://u:${secret}@localhost/db`, statementTimeoutMs: 0 },
      { url: `postgres://u:${secret}@localhost/db`, connectTimeoutMs: -1 },
      { url: `postgres://u:${secret}@localhost/db`, applicationName: 'has space' },
    ];
    for (const options of bad) {
      let error: unknown;
      try {
        openPostgresStore(options);
      } catch (caught) {
        error = caught;
      }
      expect(error, JSON.stringify(options)).toBeInstanceOf(TypeError);
      expect((error as Error).message).not.toContain(secret);
    }
  });

  it('fails with STORE_UNAVAILABLE, naming neither host nor password, when the database cannot be reached', async () => {
    const secret = 'hunter2-not-a-real-password';
    // Port 1 on loopback: nothing listens there.
    const store = openPostgresStore({ url: `postgres://signet:${secret}@127.0.0.1:1/signet`, connectTimeoutMs: 2000 });
    try {
      const error: unknown = await store.checkWritable().catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect((error as Error).message).not.toMatch(new RegExp(`${secret}|127\\.0\\.0\\.1`));
      await expect(store.migrate()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      await expect(store.transaction((tx) => tx.keys.list())).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      await store.close();
    }
  });

  const base = {
    server: { tls: { certFile: 'tls/server.pem', keyFile: 'tls/key.pem', clientCaFile: 'tls/ca.pem' } },
    hsm: { module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'signet', pin: { env: 'SIGNET_HSM_PIN' } },
    policy: { file: 'policy.yaml' },
    log: { origin: 'signet.example.com/log' },
    oidc: { audience: 'signet', issuers: [{ name: 'dev', issuer: 'https://dev.invalid', jwks: { file: 'oidc/jwks.json' } }] },
  };

  it('reads storage.postgres from the config: the URL from env or file (as the HSM PIN), defaults, relative paths', () => {
    const fromEnv = parseConfig({ ...base, storage: { driver: 'postgres', postgres: { url: { env: 'SIGNET_DB_URL' } } } }, '/etc/signet');
    expect(fromEnv.storage).toEqual({
      driver: 'postgres',
      postgres: { url: { env: 'SIGNET_DB_URL' }, poolSize: 10, statementTimeoutMs: 5000, connectTimeoutMs: 5000 },
    });
    const fromFile = parseConfig(
      { ...base, storage: { driver: 'postgres', postgres: { url: { file: 'db-url' }, schema: 'signet', poolSize: 20 } } },
      '/etc/signet',
    );
    expect(fromFile.storage).toMatchObject({ postgres: { url: { file: '/etc/signet/db-url' }, schema: 'signet', poolSize: 20 } });
    // A URL without a password may be written inline (the password then comes from PGPASSWORD or ~/.pgpass).
    const inline = parseConfig({ ...base, storage: { driver: 'postgres', postgres: { url: 'postgres://signet@db/signet' } } }, '/');
    expect(inline.storage).toMatchObject({ postgres: { url: 'postgres://signet@db/signet' } });
  });

  it('refuses a password written into the config, and bad storage fields, naming each', () => {
    for (const url of ['postgres://signet:s3cret@db/signet', 'postgres://signet@db/signet?password=s3cret']) {
      let problems = '';
      try {
        parseConfig({ ...base, storage: { driver: 'postgres', postgres: { url } } }, '/');
      } catch (error) {
        problems = String((error as { problems?: string[] }).problems?.join('\n'));
      }
      expect(problems).toContain('storage.postgres.url');
      expect(problems).not.toContain('s3cret');
    }
    let problems = '';
    try {
      parseConfig(
        { ...base, storage: { driver: 'postgres', postgres: { url: { env: 'X' }, poolSize: 0, statementTimeoutMs: 1, schema: 'A B' } } },
        '/',
      );
    } catch (error) {
      problems = String((error as { problems?: string[] }).problems?.join('\n'));
    }
    for (const field of ['storage.postgres.poolSize', 'storage.postgres.statementTimeoutMs', 'storage.postgres.schema']) {
      expect(problems).toContain(field);
    }
  });
});

describeBackends('PostgreSQL store', ['postgres'], () => {
  let db: (TestDatabase & { readonly schema: string }) | undefined;
  const stores: SignetStore[] = [];
  const proxies: DatabaseProxy[] = [];

  beforeEach(async () => {
    db = await postgresDatabase();
  });

  afterEach(async () => {
    await Promise.allSettled(stores.splice(0).map((store) => store.close()));
    await Promise.allSettled(proxies.splice(0).map((proxy) => proxy.down()));
    await db?.destroy();
    db = undefined;
  });

  function database(): TestDatabase & { readonly schema: string } {
    if (db === undefined) throw new Error('no database outside a test');
    return db;
  }

  /** Another replica: a store with a pool of its own on the test schema. */
  async function replica(overrides: Partial<PostgresStoreOptions> = {}): Promise<SignetStore> {
    const store = await openStore({ driver: 'postgres', postgres: postgresStoreOptions(database().schema, overrides) });
    stores.push(store);
    return store;
  }

  async function proxy(): Promise<DatabaseProxy> {
    const started = await DatabaseProxy.start(postgresTestUrl()!);
    proxies.push(started);
    return started;
  }

  describe('several replicas on one database', () => {
    it('append concurrently into one tree: contiguous indexes, no gap, consistent roots and checkpoints', async () => {
      const replicas = [await replica({ poolSize: 5 }), await replica({ poolSize: 5 })];
      const appended: { firstIndex: number; size: number; leaves: Buffer[] }[] = [];

      /** Records a checkpoint of the tree as this replica sees it now; a smaller one than the latest is refused. */
      const checkpoint = async (store: SignetStore): Promise<void> => {
        const size = await store.log.size();
        if (size === 0) return;
        const hashes = await store.log.nodes(rootPlan(size));
        const rootHash = treeRoot(size, (ref) => hashes.get(nodeKey(ref))!);
        try {
          await store.log.addCheckpoint({ size, rootHash, note: `test\n${size}\n`, createdAt: new Date().toISOString() });
        } catch (error) {
          // Another replica recorded a larger one meanwhile: checkpoints never go back.
          if (!isStoreError(error) || error.code !== 'STORE_CONFLICT') throw error;
        }
      };

      const worker = async (store: SignetStore, name: string): Promise<void> => {
        for (let round = 0; round < 25; round += 1) {
          const batch = entries(`${name}-${round}`, 1 + (round % 4));
          const leaves = batch.map((e) => e.leaf);
          if (round % 3 === 0) {
            // In a transaction with other writes; every fifth such transaction is rolled back.
            // Every other one may share its database transaction (TransactionOptions).
            const rollBack = round % 5 === 0;
            const result = await store
              .transaction(
                async (tx) => {
                  await tx.tokenUses.claim(tokenClaim(`${name}-${round}`));
                  const appendedNow = await tx.log.append(batch);
                  if (rollBack) throw new Error('rolled back');
                  return appendedNow;
                },
                { concurrent: round % 2 === 0 },
              )
              .catch((error: unknown) => {
                if ((error as Error).message !== 'rolled back') throw error;
                return undefined;
              });
            if (result !== undefined) appended.push({ ...result, leaves });
          } else {
            appended.push({ ...(await store.log.append(batch)), leaves });
          }
          if (round % 6 === 5) await checkpoint(store);
        }
      };
      await Promise.all(replicas.flatMap((store, r) => Array.from({ length: 6 }, (_, w) => worker(store, `r${r}w${w}`))));

      // The appends' ranges tile [0, size) exactly, each entry holds its writer's leaf.
      const leaves = await expectConsistentTree(replicas[0]!, database());
      const owner: (Buffer | undefined)[] = new Array<Buffer | undefined>(leaves.length);
      for (const { firstIndex, size, leaves: written } of appended) {
        expect(size - firstIndex).toBe(written.length);
        written.forEach((leaf, position) => {
          expect(owner[firstIndex + position], `index ${firstIndex + position} given twice`).toBeUndefined();
          owner[firstIndex + position] = leaf;
        });
      }
      leaves.forEach((leaf, index) => {
        expect(owner[index]?.equals(leaf), `index ${index}`).toBe(true);
      });

      // Checkpoints: sizes only go up, and each root is the reference root of that prefix.
      await checkpoint(replicas[1]!);
      const checkpoints = await replicas[1]!.log.checkpoints(-1, 1000);
      expect(checkpoints.length).toBeGreaterThan(0);
      expect(checkpoints.at(-1)?.size).toBe(leaves.length);
      const reference = new ReferenceTree(leaves);
      for (const recorded of checkpoints) expect(recorded.rootHash.equals(reference.mth(0, recorded.size))).toBe(true);
    });

    it('give exactly one of 100 concurrent claims of one token `claimed`, across two replicas', async () => {
      const replicas = [await replica({ poolSize: 10 }), await replica({ poolSize: 10 })];
      for (let round = 0; round < 3; round += 1) {
        const tokenId = `contended-${round}`;
        const claims = Array.from({ length: 100 }, (_, i) => tokenClaim(tokenId, `request ${i}`));
        const outcomes = await Promise.all(
          claims.map((claim, i) => {
            const store = replicas[i % 2]!;
            return i % 4 === 1 ? store.transaction((tx) => tx.tokenUses.claim(claim)) : store.tokenUses.claim(claim);
          }),
        );
        const winners = outcomes.flatMap((outcome, i) => (outcome.kind === 'claimed' ? [i] : []));
        expect(winners).toHaveLength(1);
        const stored = await replicas[0]!.tokenUses.get(ISSUER, tokenId);
        expect(stored?.requestHash).toBe(claims[winners[0]!]!.requestHash);
        for (const outcome of outcomes) if (outcome.kind === 'used') expect(outcome.record).toEqual(stored);
      }
    });

    it('hold a usage limit of N across two replicas, all or nothing', async () => {
      const replicas = [await replica({ poolSize: 8 }), await replica({ poolSize: 8 })];
      const limit = 37;
      const increments: CounterIncrement[] = [
        { counter: 'rate:project:example', window: '2026-11-27T10:01', limit: 1000 },
        { counter: 'usage:key:demo-release@1', window: 'total', limit },
      ];
      const outcomes = await Promise.all(Array.from({ length: 200 }, (_, i) => replicas[i % 2]!.counters.consume(increments)));
      expect(outcomes.filter((o) => o.allowed)).toHaveLength(limit);
      for (const outcome of outcomes) if (!outcome.allowed) expect(outcome.exceeded).toEqual(['usage:key:demo-release@1']);
      expect(await replicas[0]!.counters.current('usage:key:demo-release@1', 'total')).toBe(limit);
      // A refused consume added nothing to the other counter either.
      expect(await replicas[1]!.counters.current('rate:project:example', '2026-11-27T10:01')).toBe(limit);
    });

    it('hold a usage limit when consumes run in transactions that may roll back', async () => {
      const replicas = [await replica({ poolSize: 8 }), await replica({ poolSize: 8 })];
      const limit = 20;
      const usage: CounterIncrement = { counter: 'usage:key:k@1', window: 'total', limit };
      let committed = 0;
      await Promise.all(
        Array.from({ length: 120 }, async (_, i) => {
          const store = replicas[i % 2]!;
          if (i % 3 !== 0) {
            if ((await store.counters.consume([usage])).allowed) committed += 1;
            return;
          }
          await store
            .transaction(async (tx) => {
              const outcome = await tx.counters.consume([usage]);
              await yieldTurns(1);
              if (i % 2 === 0) throw new Error('nothing was signed');
              if (outcome.allowed) committed += 1;
            })
            .catch(() => undefined);
        }),
      );
      const count = await replicas[0]!.counters.current(usage.counter, 'total');
      expect(count).toBe(committed);
      expect(count).toBeLessThanOrEqual(limit);
    });

    it('never deadlock between the log lock and the rows of the signing path: every transaction served, limits exact', async () => {
      // The signing path's two transactions, at once on two replicas: decisions claim a
      // token, consume a shared counter, then append; signatures append, then complete
      // their token. A group holding the log lock while waiting for a counter row that a
      // group of the other replica holds while waiting for the log lock would deadlock.
      const replicas = [await replica({ poolSize: 6 }), await replica({ poolSize: 6 })];
      const CONCURRENT = { concurrent: true } as const;
      const limit = { counter: 'usage:key:p:k@1', window: 'total', limit: 100_000 };
      const deadlocks = async (): Promise<number> =>
        Number((await postgresAdmin().query('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()')).rows[0]?.deadlocks);
      const ROUNDS = 15;
      const WORKERS = 6;
      // Tokens the signature transactions complete, claimed beforehand.
      for (let r = 0; r < 2; r += 1) {
        for (let w = 0; w < WORKERS; w += 1) {
          for (let i = 0; i < ROUNDS; i += 1) await replicas[r]!.tokenUses.claim(tokenClaim(`s-r${r}-w${w}-${i}`));
        }
      }
      const before = await deadlocks();
      let decisions = 0;
      let signatures = 0;
      const decide = async (store: SignetStore, id: string): Promise<void> => {
        await store.transaction(async (tx) => {
          await tx.tokenUses.claim(tokenClaim(id));
          await tx.counters.consume([limit]);
          await tx.log.append(entries(id, 1));
        }, CONCURRENT);
        decisions += 1;
      };
      const sign = async (store: SignetStore, id: string): Promise<void> => {
        await store.transaction(async (tx) => {
          await tx.log.append(entries(id, 1));
          await tx.tokenUses.complete(ISSUER, id, requestHash('request'), '{}');
        }, CONCURRENT);
        signatures += 1;
      };
      // Replica 0 decides only; replica 1 signs and decides side by side, so its groups
      // hold signatures' appends and decisions' consumes together.
      await Promise.all([
        ...Array.from({ length: WORKERS }, async (_, w) => {
          for (let i = 0; i < 2 * ROUNDS; i += 1) await decide(replicas[0]!, `d-r0-w${w}-${i}`);
        }),
        ...Array.from({ length: WORKERS }, async (_, w) => {
          for (let i = 0; i < ROUNDS; i += 1) await decide(replicas[1]!, `d-r1-w${w}-${i}`);
        }),
        ...Array.from({ length: WORKERS }, async (_, w) => {
          for (let i = 0; i < ROUNDS; i += 1) {
            await sign(replicas[1]!, `s-r0-w${w}-${i}`);
            await sign(replicas[1]!, `s-r1-w${w}-${i}`);
          }
        }),
      ]);
      expect([decisions, signatures]).toEqual([3 * WORKERS * ROUNDS, 2 * WORKERS * ROUNDS]);
      expect(await replicas[0]!.counters.current(limit.counter, limit.window)).toBe(decisions);
      expect(await expectConsistentTree(replicas[0]!, database())).toHaveLength(decisions + signatures);
      expect((await deadlocks()) - before).toBe(0);
    }, 120_000);

    it('migrate a fresh schema once when replicas start together', async () => {
      const [first, ...others] = await Promise.all([replica(), replica(), replica()]);
      const version = await first.schemaVersion();
      expect(version).toBeGreaterThan(0);
      for (const store of others) expect(await store.schemaVersion()).toBe(version);
      expect(await database().raw.value('SELECT COUNT(*) FROM schema_migrations')).toBe(version);
    });
  });

  describe('connection loss', () => {
    it('fails closed while the database is away, and recovers by itself when it is back', async () => {
      const front = await proxy();
      const store = await replica({ url: front.urlFor(postgresTestUrl()!), connectTimeoutMs: 1000, poolSize: 3 });
      await store.keys.insert(keyVersion('k', 1, 'active'));
      expect((await store.tokenUses.claim(tokenClaim('before'))).kind).toBe('claimed');

      await front.down();
      const calls: (() => Promise<unknown>)[] = [
        () => store.checkWritable(),
        () => store.keys.get('k@1'),
        () => store.tokenUses.claim(tokenClaim('while-away')),
        () => store.counters.consume([{ counter: 'c', window: 'total', limit: 10 }]),
        () => store.log.append(entries('while-away', 2)),
        () => store.transaction((tx) => tx.keys.list()),
      ];
      for (const call of calls) await expect(call()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });

      await front.up();
      const started = Date.now();
      await eventually('a write after the database returned', () => store.checkWritable(), 5000);
      expect(Date.now() - started).toBeLessThan(5000);
      // Everything works again, on the same store object.
      expect((await store.tokenUses.claim(tokenClaim('after'))).kind).toBe('claimed');
      expect(await store.log.append(entries('after', 2))).toEqual({ firstIndex: 0, size: 2 });
      expect((await store.keys.get('k@1'))?.state).toBe('active');
      expect(await store.tokenUses.get(ISSUER, 'while-away')).toBeNull();
    });

    it('fails closed when the database hangs, within the statement timeout, and recovers', async () => {
      const front = await proxy();
      const store = await replica({
        url: front.urlFor(postgresTestUrl()!),
        connectTimeoutMs: 1000,
        statementTimeoutMs: 500,
        poolSize: 2,
      });
      await store.checkWritable();
      front.pause();
      const started = Date.now();
      await expect(store.checkWritable()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      // The client-side bound: statement timeout + 2 s.
      expect(Date.now() - started).toBeLessThan(6000);
      await expect(store.keys.list()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
      front.resume();
      await eventually('a write after the database answered again', () => store.checkWritable(), 5000);
      expect(await store.keys.list()).toEqual([]);
    });

    it('survives sessions terminated mid-load: only STORE_UNAVAILABLE, nothing half-done, then recovery without reopening', async () => {
      const name = applicationName();
      const store = await replica({ applicationName: name, poolSize: 4 });
      const observer = await replica();
      const appended: { firstIndex: number; leaves: Buffer[] }[] = [];
      const failures: unknown[] = [];
      let successes = 0;
      let stop = false;

      const worker = async (w: number): Promise<void> => {
        for (let i = 0; !stop; i += 1) {
          const tokenId = `w${w}-${i}`;
          const hash = requestHash(tokenId);
          try {
            const claim = await store.tokenUses.claim(tokenClaim(tokenId, tokenId));
            expect(claim.kind).toBe('claimed');
            const counted = await store.counters.consume([{ counter: `usage:w${w}`, window: 'total', limit: 1_000_000 }]);
            expect(counted.allowed).toBe(true);
            const batch = [entry(`${tokenId}-decision`), entry(`${tokenId}-signature`)];
            const result = await (i % 2 === 0
              ? store.log.append(batch)
              : store.transaction(async (tx) => tx.log.append(batch)));
            appended.push({ firstIndex: result.firstIndex, leaves: batch.map((e) => e.leaf) });
            await store.tokenUses.complete(ISSUER, tokenId, hash, JSON.stringify({ index: result.firstIndex }));
            successes += 1;
          } catch (error) {
            failures.push(error);
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        }
      };
      const load = Promise.all(Array.from({ length: 6 }, (_, w) => worker(w)));
      await eventually('some load', () => (successes < 20 ? Promise.reject(new Error('not yet')) : Promise.resolve()), 20_000);
      let terminated = 0;
      for (let round = 0; round < 3; round += 1) {
        terminated += await terminateSessions(name);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const successesAtLoss = successes;
      // Service resumes by itself: successes keep coming after the losses.
      await eventually(
        'successes after the loss',
        () => (successes < successesAtLoss + 30 ? Promise.reject(new Error('not yet')) : Promise.resolve()),
        10_000,
      );
      stop = true;
      await load;

      expect(terminated).toBeGreaterThan(0);
      expect(failures.length).toBeGreaterThan(0);
      for (const failure of failures) {
        expect(isStoreError(failure), String(failure)).toBe(true);
        expect(failure).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      }
      // Every append that was answered is in the log at the index it was given; the tree is whole.
      const leaves = await expectConsistentTree(observer, database());
      for (const { firstIndex, leaves: written } of appended) {
        written.forEach((leaf, position) => {
          expect(leaves[firstIndex + position]?.equals(leaf)).toBe(true);
        });
      }
      await store.checkWritable();
    });

    it('aborts a transaction whose session is terminated: STORE_UNAVAILABLE, nothing committed', async () => {
      const name = applicationName();
      const store = await replica({ applicationName: name, poolSize: 2 });
      const outcome = await store
        .transaction(async (tx) => {
          await tx.keys.insert(keyVersion('k', 1));
          await terminateSessions(name);
          await new Promise((resolve) => setTimeout(resolve, 100));
          await tx.keys.insert(keyVersion('k', 2));
        })
        .catch((error: unknown) => error);
      expect(outcome).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(await eventually('a read after the loss', () => store.keys.list(), 5000)).toEqual([]);
    });
  });

  describe('transactions (group commit)', () => {
    it('commit nothing of a transaction whose statement the database refused without a savepoint, even if its work carries on', async () => {
      const store = await replica();
      await store.log.append(entries('base', 3));
      // A stray node where the next append's leaf node goes: that append's INSERT fails.
      await database().raw.query('INSERT INTO log_nodes (level, idx, hash) VALUES (0, 3, ?)', [Buffer.alloc(32)]);
      const [refused, other] = await Promise.allSettled([
        store.transaction(async (tx) => {
          await tx.tokenUses.claim(tokenClaim('in-refused'));
          // The append is sent without waiting for its answer (its indexes are known
          // under the lock): the refusal shows at the transaction's next statement.
          await tx.log.append(entries('blocked', 1)).catch(() => undefined);
          // Carrying on is refused: the database aborted the transaction.
          await expect(tx.keys.list()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
          return 'carried on';
        }),
        store.transaction(async (tx) => {
          await tx.tokenUses.claim(tokenClaim('in-other'));
          return 'committed';
        }),
      ]);
      expect(refused).toMatchObject({ status: 'rejected', reason: { code: 'STORE_UNAVAILABLE' } });
      expect(other).toEqual({ status: 'fulfilled', value: 'committed' });
      expect(await store.tokenUses.get(ISSUER, 'in-refused')).toBeNull();
      expect(await store.tokenUses.get(ISSUER, 'in-other')).not.toBeNull();
      expect(await store.log.size()).toBe(3);
    });

    it('commit nothing of a group in which an append refused after its transaction ended', async () => {
      const store = await replica();
      await store.log.append(entries('base', 3));
      await database().raw.query('INSERT INTO log_nodes (level, idx, hash) VALUES (0, 3, ?)', [Buffer.alloc(32)]);
      // The append is the last statement of its transaction: its refusal is answered
      // only after the transaction ended, so the whole group fails, nothing committed.
      const outcomes = await Promise.allSettled([
        store.transaction(async (tx) => {
          await tx.tokenUses.claim(tokenClaim('first'));
          return tx.log.append(entries('blocked', 1));
        }),
        store.transaction(async (tx) => {
          await tx.tokenUses.claim(tokenClaim('second'));
          return 'second';
        }),
        store.transaction(async (tx) => tx.log.append(entries('third', 1))),
      ]);
      for (const outcome of outcomes) expect(outcome).toMatchObject({ status: 'rejected', reason: { code: 'STORE_UNAVAILABLE' } });
      expect(await store.tokenUses.get(ISSUER, 'first')).toBeNull();
      expect(await store.tokenUses.get(ISSUER, 'second')).toBeNull();
      expect(await store.log.size()).toBe(3);
      // The log is stuck at the damage, as before; the rest of the store is not.
      await expect(store.log.append(entries('again', 1))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
      await store.transaction(async (tx) => tx.tokenUses.claim(tokenClaim('after')));
      expect(await store.tokenUses.get(ISSUER, 'after')).not.toBeNull();
    });

    it('fail only the refused one of a group of plain appends, each call then run alone', async () => {
      const store = await replica();
      await store.log.append(entries('base', 3));
      await database().raw.query('INSERT INTO log_nodes (level, idx, hash) VALUES (0, 4, ?)', [Buffer.alloc(32)]);
      // Appended together, [3] fits and [4] does not (its leaf node is taken): the group
      // is refused, then each call is written alone: the first goes in, the second not.
      const [fits, blocked] = await Promise.allSettled([store.log.append(entries('fits', 1)), store.log.append(entries('blocked', 1))]);
      expect(fits).toEqual({ status: 'fulfilled', value: { firstIndex: 3, size: 4 } });
      expect(blocked).toMatchObject({ status: 'rejected', reason: { code: 'STORE_CONFLICT' } });
      expect(await store.log.size()).toBe(4);
    });

    describe('begun with `concurrent`', () => {
      const CONCURRENT = { concurrent: true } as const;

      it('run at once, their calls interleaved, and commit together', async () => {
        const store = await replica();
        const events: string[] = [];
        const outcomes = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            store.transaction(async (tx) => {
              events.push(`start ${i}`);
              await tx.tokenUses.claim(tokenClaim(`c${i}`));
              events.push(`claimed ${i}`);
              return tx.log.append(entries(`c${i}`, 1 + (i % 2)));
            }, CONCURRENT),
          ),
        );
        // Every transaction had started before the first claim was answered.
        expect(events.slice(0, 8).every((event) => event.startsWith('start'))).toBe(true);
        const leaves = await expectConsistentTree(store, database());
        expect(leaves).toHaveLength(12);
        expect(outcomes.map(({ firstIndex, size }) => size - firstIndex)).toEqual(outcomes.map((_, i) => 1 + (i % 2)));
        for (let i = 0; i < 8; i += 1) expect(await store.tokenUses.get(ISSUER, `c${i}`)).not.toBeNull();

        // Without the option, one at a time.
        events.length = 0;
        await Promise.all(
          Array.from({ length: 3 }, (_, i) =>
            store.transaction(async (tx) => {
              events.push(`start ${i}`);
              await tx.tokenUses.claim(tokenClaim(`s${i}`));
              events.push(`claimed ${i}`);
            }),
          ),
        );
        expect(events).toEqual(['start 0', 'claimed 0', 'start 1', 'claimed 1', 'start 2', 'claimed 2']);
      });

      it('run again one at a time, each from the start, when one of them fails; only that one is refused', async () => {
        const store = await replica();
        const runs = new Array<number>(6).fill(0);
        const outcomes = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) =>
            store.transaction(async (tx) => {
              runs[i] = (runs[i] ?? 0) + 1;
              await tx.tokenUses.claim(tokenClaim(`r${i}`));
              const appended = await tx.log.append(entries(`r${i}`, 1));
              if (i === 2) throw new Error('refused by its work');
              return appended;
            }, CONCURRENT),
          ),
        );
        expect(runs).toEqual([2, 2, 2, 2, 2, 2]);
        expect(outcomes[2]).toMatchObject({ status: 'rejected', reason: { message: 'refused by its work' } });
        expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(5);
        expect(await expectConsistentTree(store, database())).toHaveLength(5);
        expect(await store.tokenUses.get(ISSUER, 'r2')).toBeNull();
        expect(await store.tokenUses.get(ISSUER, 'r3')).not.toBeNull();
      });

      it('hold a limit exactly: a refused consume sends the group back to run one at a time', async () => {
        const store = await replica();
        const outcomes = await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            store.transaction(async (tx) => {
              await tx.tokenUses.claim(tokenClaim(`l${i}`));
              const consumed = await tx.counters.consume([
                { counter: 'rate:project:p', window: '2025-01-02T03:00', limit: 10 },
                { counter: 'usage:key:p:k@1', window: 'total', limit: 3 },
              ]);
              if (!consumed.allowed) {
                await tx.tokenUses.release(ISSUER, `l${i}`, requestHash('request'));
                await tx.log.append(entries(`deny${i}`, 1));
                return 'refused';
              }
              await tx.log.append(entries(`allow${i}`, 1));
              return 'allowed';
            }, CONCURRENT),
          ),
        );
        expect(outcomes.filter((outcome) => outcome === 'allowed')).toHaveLength(3);
        expect(await store.counters.current('usage:key:p:k@1', 'total')).toBe(3);
        expect(await store.counters.current('rate:project:p', '2025-01-02T03:00')).toBe(3);
        expect(await expectConsistentTree(store, database())).toHaveLength(6);
        const kept = await Promise.all(Array.from({ length: 6 }, (_, i) => store.tokenUses.get(ISSUER, `l${i}`)));
        expect(kept.filter((use) => use !== null)).toHaveLength(3);
      });

      it('give the one use of a token to one of them', async () => {
        const store = await replica();
        const outcomes = await Promise.all(
          Array.from({ length: 5 }, () => store.transaction(async (tx) => (await tx.tokenUses.claim(tokenClaim('same'))).kind, CONCURRENT)),
        );
        expect(outcomes.filter((kind) => kind === 'claimed')).toHaveLength(1);
        expect(outcomes.filter((kind) => kind === 'used')).toHaveLength(4);
      });

      it('commit nothing when a write they sent is refused, then run one at a time', async () => {
        const store = await replica();
        await store.log.append(entries('base', 3));
        await database().raw.query('INSERT INTO log_nodes (level, idx, hash) VALUES (0, 4, ?)', [Buffer.alloc(32)]);
        const runs = [0, 0, 0];
        const outcomes = await Promise.allSettled(
          [0, 1, 2].map((i) =>
            store.transaction(async (tx) => {
              runs[i] = (runs[i] ?? 0) + 1;
              await tx.tokenUses.claim(tokenClaim(`w${i}`));
              return tx.log.append(entries(`w${i}`, 1));
            }, CONCURRENT),
          ),
        );
        expect(runs).toEqual([2, 2, 2]);
        // One at a time, the refused append (index 4) is answered after its transaction
        // ended: the whole group fails, as any group would.
        for (const outcome of outcomes) expect(outcome).toMatchObject({ status: 'rejected', reason: { code: 'STORE_UNAVAILABLE' } });
        expect(await store.log.size()).toBe(3);
        for (const i of [0, 1, 2]) expect(await store.tokenUses.get(ISSUER, `w${i}`)).toBeNull();
      });

      it("start from the log head they left while nobody else appends, and run again one at a time when another replica did", async () => {
        const store = await replica();
        const other = await replica();
        let runs = 0;
        const group = (tag: string): Promise<{ firstIndex: number; size: number }[]> =>
          Promise.all(
            [1, 2].map((n) =>
              store.transaction(async (tx) => {
                runs += 1;
                await tx.tokenUses.claim(tokenClaim(`${tag}-${n}`));
                return tx.log.append(entries(`${tag}-${n}`, n));
              }, CONCURRENT),
            ),
          );
        // The first read finds no head remembered, the second the one left: trusted from then on.
        for (const tag of ['a', 'b', 'c', 'd']) await group(tag);
        expect(runs).toBe(8);
        // Another replica appends: the next group, started from the head remembered,
        // takes an index already used; it is rolled back and runs again, one at a time.
        await other.log.append(entries('other', 3));
        runs = 0;
        const after = await group('e');
        expect(runs).toBe(4);
        // Their order among themselves is not fixed; together they take [15, 18).
        const sizes = (appended: { firstIndex: number; size: number }[]): number[] => appended.map(({ firstIndex, size }) => size - firstIndex);
        expect(sizes(after)).toEqual([1, 2]);
        expect(Math.min(...after.map((range) => range.firstIndex))).toBe(15);
        expect(Math.max(...after.map((range) => range.size))).toBe(18);
        // No longer trusted: the next group reads the head (and runs once).
        runs = 0;
        await other.log.append(entries('other2', 1));
        const last = await group('f');
        expect(runs).toBe(2);
        expect(sizes(last)).toEqual([1, 2]);
        expect(Math.min(...last.map((range) => range.firstIndex))).toBe(19);
        expect(Math.max(...last.map((range) => range.size))).toBe(22);
        expect(await expectConsistentTree(store, database())).toHaveLength(22);
      });

      it('share a group with other transactions, which run once, one at a time, after them', async () => {
        const store = await replica();
        let plainRuns = 0;
        const outcomes = await Promise.all([
          store.transaction(async (tx) => (await tx.log.append(entries('a', 1))).firstIndex, CONCURRENT),
          store.transaction(async (tx) => {
            plainRuns += 1;
            await tx.keys.insert(keyVersion('k', 1));
            return (await tx.log.append(entries('plain', 1))).firstIndex;
          }),
          store.transaction(async (tx) => (await tx.log.append(entries('b', 1))).firstIndex, CONCURRENT),
        ]);
        expect(plainRuns).toBe(1);
        expect(outcomes).toEqual([0, 2, 1]);
        expect(await expectConsistentTree(store, database())).toHaveLength(3);
        expect(await store.keys.get('k@1')).not.toBeNull();
      });
    });

    it('answers for the Merkle nodes it saw committed without reading them, never for those of a write rolled back', async () => {
      const store = await replica();
      const other = await replica();
      // Rolled back: its nodes must never be served.
      await expect(
        store.transaction(async (tx) => {
          await tx.log.append(entries('gone', 4));
          throw new Error('rolled back');
        }),
      ).rejects.toThrow('rolled back');
      await Promise.all([
        store.transaction(async (tx) => tx.log.append(entries('tx', 3)), { concurrent: true }),
        store.transaction(async (tx) => tx.log.append(entries('tx2', 1)), { concurrent: true }),
      ]);
      await store.log.append(entries('plain', 2));
      await other.log.append(entries('other', 2));
      const leaves = await expectConsistentTree(store, database());
      expect(leaves).toHaveLength(8);
      // What this store committed it now answers from memory: a node damaged behind its
      // back is still served as committed, where another replica reads the damage.
      const refs = [{ level: 2, index: 0 }, { level: 0, index: 4 }];
      const before = await store.log.nodes(refs);
      await database().raw.query('UPDATE log_nodes SET hash = ? WHERE level = 2 AND idx = 0', [Buffer.alloc(32, 7)]);
      expect(await store.log.nodes(refs)).toEqual(before);
      expect((await other.log.nodes(refs)).get('2:0')).toEqual(Buffer.alloc(32, 7));
    });

    it('never commits a damaged token use that a transaction tried to complete', async () => {
      const store = await replica();
      await store.tokenUses.claim(tokenClaim('jti'));
      await database().raw.execUnchecked("UPDATE token_uses SET created_at = '2025-01-02T03:00:00Z'");
      const outcome = await store
        .transaction(async (tx) => {
          await expect(tx.tokenUses.complete(ISSUER, 'jti', requestHash('request'), '{"a":1}')).rejects.toMatchObject({
            code: 'STORE_CORRUPT',
          });
          await tx.keys.insert(keyVersion('k', 1));
        })
        .catch((error: unknown) => error);
      expect(outcome).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(await database().raw.query('SELECT state, response FROM token_uses')).toEqual([{ state: 'pending', response: null }]);
      expect(await store.keys.list()).toEqual([]);
    });

    it('reuse the log head within a transaction group, and read it again after a rollback', async () => {
      const store = await replica();
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          store.transaction(async (tx) => {
            const first = await tx.log.append(entries(`g${i}a`, 1 + (i % 3)));
            const second = await tx.log.append(entries(`g${i}b`, 1));
            if (i % 5 === 2) throw new Error('rolled back');
            return [first, second];
          }),
        ),
      );
      const kept = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
      expect(kept).toHaveLength(16);
      const leaves = await expectConsistentTree(store, database());
      const ranges = kept.flat().map(({ firstIndex, size }) => [firstIndex, size] as const).sort((a, b) => a[0] - b[0]);
      let next = 0;
      for (const [firstIndex, size] of ranges) {
        expect(firstIndex).toBe(next);
        next = size;
      }
      expect(next).toBe(leaves.length);
    });
  });

  describe('locks and timeouts', () => {
    it('serialises appends with an advisory lock, and bounds the wait by the statement timeout', async () => {
      const store = await replica({ statementTimeoutMs: 300 });
      const holder = await postgresAdmin().connect();
      try {
        // The lock postgres-log.ts takes, held from outside by a session-level lock.
        await holder.query("SELECT pg_advisory_lock(x'53474e54'::int, hashtext('log append:' || $1::text))", [database().schema]);
        const started = Date.now();
        await expect(store.log.append(entries('blocked', 1))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
        expect(Date.now() - started).toBeLessThan(3000);
        expect(await store.log.size()).toBe(0);
        await holder.query("SELECT pg_advisory_unlock(x'53474e54'::int, hashtext('log append:' || $1::text))", [database().schema]);
        expect(await store.log.append(entries('free', 1))).toEqual({ firstIndex: 0, size: 1 });
      } finally {
        holder.release();
      }
    });

    it("reads the log's right edge by primary-key probes, not a pass over every node, whatever the log's size", async () => {
      const store = await replica();
      for (let i = 0; i < 20; i += 1) await store.log.append(entries(`p${i}`, 100));
      await database().raw.exec('ANALYZE log_nodes');
      const plan = (await database().raw.query(`EXPLAIN ${SELECT_HEAD}`)).map((row) => String(row['QUERY PLAN'])).join('\n');
      expect(plan).not.toMatch(/Seq Scan on log_nodes/);
      expect(plan).toMatch(/Index Scan using log_nodes_pkey on log_nodes/);
      expect(await store.log.append(entries('next', 1))).toEqual({ firstIndex: 2000, size: 2001 });
      await expectConsistentTree(store, database());
    });

    it('keeps schemas apart: two Signet schemas in one database do not share a log', async () => {
      const other = await postgresDatabase();
      try {
        const mine = await replica();
        const theirs = await other.open();
        await Promise.all([mine.log.append(entries('mine', 3)), theirs.log.append(entries('theirs', 5))]);
        expect(await mine.log.size()).toBe(3);
        expect(await theirs.log.size()).toBe(5);
      } finally {
        await other.destroy();
      }
    });
  });

  describe('collation', () => {
    it('orders and compares text as SQLite does (bytes) in a database whose default collation is linguistic', async () => {
      const store = await replica();
      // As if the database had been created with an ICU locale: every text column that
      // takes the database default gets a linguistic collation, where 'B' sorts after
      // 'a' and punctuation is nearly ignored.
      const columns = (await database().raw.query(
        `SELECT c.relname AS table, a.attname AS column FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = ? AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
            AND a.atttypid = 'text'::regtype AND a.attcollation = 100`,
        [database().schema],
      )) as { table: string; column: string }[];
      expect(columns.length).toBeGreaterThan(0);
      for (const { table, column } of columns) {
        await database().raw.exec(`ALTER TABLE ${table} ALTER COLUMN "${column}" TYPE text COLLATE "und-x-icu"`);
      }
      for (const name of ['b', 'B', 'a.x', 'a-x', 'a_x', 'A']) await store.keys.insert(keyVersion(name, 1));
      expect((await store.keys.list()).map((k) => k.name)).toEqual(['A', 'B', 'a-x', 'a.x', 'a_x', 'b']);
      await store.tokenUses.claim(tokenClaim('old', 'r', { expiresAt: '2025-01-02T03:10:00.000Z' }));
      await store.tokenUses.claim(tokenClaim('new', 'r', { expiresAt: '2025-01-02T03:30:00.000Z' }));
      expect(await store.tokenUses.purgeExpired('2025-01-02T03:20:00.000Z')).toBe(1);
      await store.counters.consume([{ counter: 'rate:p', window: '2026-11-27T09:59', limit: 5 }]);
      await store.counters.consume([{ counter: 'rate:p', window: 'total', limit: 5 }]);
      expect(await store.counters.purgeWindowsBefore('2026-11-27T10:00')).toBe(1);
    });
  });

  describe('opening from configuration', () => {
    it('opens with the URL read from an environment variable or a file', async () => {
      const temp = makeTempDir();
      // A fixed name: the environment is this test file's own process.
      const variable = 'SIGNET_TEST_POSTGRES_STORE_URL';
      try {
        process.env[variable] = postgresTestUrl();
        const fromEnv = await openStore({ driver: 'postgres', postgres: { url: { env: variable }, schema: database().schema } });
        stores.push(fromEnv);
        await fromEnv.checkWritable();
        const file = join(temp.dir, 'db-url');
        writeFileSync(file, `${postgresTestUrl()!}\n`, { mode: 0o600 });
        const fromFile = await openStore({ driver: 'postgres', postgres: { url: { file }, schema: database().schema } });
        stores.push(fromFile);
        expect(fromFile.kind).toBe('postgres');
        await fromFile.checkWritable();
        delete process.env.SIGNET_TEST_POSTGRES_STORE_URL;
        await expect(openStore({ driver: 'postgres', postgres: { url: { env: variable } } })).rejects.toMatchObject({
          code: 'CONFIG_SECRET_MISSING',
        });
      } finally {
        delete process.env.SIGNET_TEST_POSTGRES_STORE_URL;
        temp.cleanup();
      }
    });
  });
});
