/**
 * Once-per-cluster periodic work (service/leadership.ts), on both backends: two
 * replicas (two stores on one database, each with its own holder) run the key-age duty
 * side by side; only the lease holder's rounds run, so the warning is logged once, not
 * once per replica. When the holder stops gracefully it releases its leases and the
 * other replica takes the duty over at its next round. Without leadership, both run.
 */
import { describe, expect, it } from 'vitest';
import { startKeyAgeDuties, type KeyAgeDuties } from '../../keyrotation/key-age.js';
import { policySchema } from '../../policy/schema.js';
import { clusterLeadership, type ClusterLeadership } from '../../service/leadership.js';
import type { SignetStore } from '../../store/store.js';
import { describeStore } from '../store/backends.js';
import { keyVersion } from '../store/sqlite-fixtures.js';

const HOUR = 3_600_000;
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const policy = policySchema.parse({ version: 1, projects: { demo: { keys: ['demo-release'], maxKeyAgeDays: 30 } } });
const now = new Date('2026-11-27T10:00:00.000Z');

async function keyAgeEntries(store: SignetStore): Promise<number> {
  const size = await store.log.size();
  const entries = await store.log.entries(0, size);
  return entries.filter((entry) => entry.leaf.toString('utf8').includes('"key-age"')).length;
}

function duty(store: SignetStore, leadership: ClusterLeadership | undefined): KeyAgeDuties {
  return startKeyAgeDuties({
    store,
    policy: () => policy,
    warningDays: 14,
    autoPropose: false,
    logKeyName: 'log',
    logger: quiet,
    now: () => now,
    // Rounds are run by hand below: the timer never fires within a test.
    intervalMs: HOUR,
    ...(leadership === undefined ? {} : { mayRun: leadership.duty('key-age', HOUR) }),
  });
}

describe('cluster leadership of periodic work', () => {
  describeStore('two replicas', (t) => {
    it('runs a duty on the lease holder only, and hands it over at a graceful stop', async () => {
      // Active since January 2025, 30 days allowed: past its maximum age.
      await t.store.keys.insert(keyVersion('demo-release', 1, 'active'));
      const other = await t.db.open();
      const leaders = [clusterLeadership(t.store.leases, quiet, 'replica-a'), clusterLeadership(other.leases, quiet, 'replica-b')];
      const duties = [duty(t.store, leaders[0]), duty(other, leaders[1])];
      for (let round = 0; round < 4; round += 1) await Promise.all(duties.map((d) => d.runOnce()));
      // Each replica warns once a day when it runs the duty: one replica ran it.
      expect(await keyAgeEntries(t.store)).toBe(1);
      const holder = (await t.store.leases.get('key-age'))?.holder;
      expect(['replica-a', 'replica-b']).toContain(holder);

      const leading = holder === 'replica-a' ? 0 : 1;
      const following = 1 - leading;
      await duties[leading]?.stop();
      await leaders[leading]?.releaseAll();
      expect(await t.store.leases.get('key-age')).toBeNull();
      await duties[following]?.runOnce();
      expect((await t.store.leases.get('key-age'))?.holder).toBe(following === 0 ? 'replica-a' : 'replica-b');
      // The new holder runs it (and warns, its first round today).
      expect(await keyAgeEntries(t.store)).toBe(2);
      await duties[following]?.stop();
    });

    it('runs on every replica without leadership (the control)', async () => {
      await t.store.keys.insert(keyVersion('demo-release', 1, 'active'));
      const other = await t.db.open();
      const duties = [duty(t.store, undefined), duty(other, undefined)];
      for (let round = 0; round < 2; round += 1) await Promise.all(duties.map((d) => d.runOnce()));
      expect(await keyAgeEntries(t.store)).toBe(2);
      await Promise.all(duties.map((d) => d.stop()));
    });

    it('skips the round while the lease cannot be read (fail closed)', async () => {
      await t.store.keys.insert(keyVersion('demo-release', 1, 'active'));
      const other = await t.db.open();
      const leadership = clusterLeadership(other.leases, quiet, 'replica-b');
      await other.close();
      const skipped = duty(t.store, leadership);
      await skipped.runOnce();
      expect(await keyAgeEntries(t.store)).toBe(0);
      await skipped.stop();
    });
  });
});
