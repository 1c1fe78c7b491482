/**
 * Leases on both backends (store.ts `LeaseRepository`): the primitive that makes
 * periodic work run once per cluster. A lease is held by one holder at a time, across
 * stores on one database (replicas, or processes on one SQLite file); its holder renews
 * it; it can be taken over only once expired or released.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { describeStore } from './backends.js';

const MINUTE = 60_000;

describeStore('leases', (t) => {
  describe('tryAcquire', () => {
    it('gives a free lease to the first holder and refuses it to others until it expires', async () => {
      expect(await t.store.leases.get('ca-duties')).toBeNull();
      expect(await t.store.leases.tryAcquire('ca-duties', 'replica-a', MINUTE)).toBe(true);
      expect(await t.store.leases.tryAcquire('ca-duties', 'replica-b', MINUTE)).toBe(false);
      const held = await t.store.leases.get('ca-duties');
      expect(held).toMatchObject({ name: 'ca-duties', holder: 'replica-a' });
      const span = Date.parse(held?.expiresAt ?? '') - Date.parse(held?.acquiredAt ?? '');
      expect(span).toBe(MINUTE);
      // Other names are other leases.
      expect(await t.store.leases.tryAcquire('housekeeping', 'replica-b', MINUTE)).toBe(true);
    });

    it('renews for its holder, keeping when it was first taken', async () => {
      expect(await t.store.leases.tryAcquire('key-age', 'replica-a', 1000)).toBe(true);
      const first = await t.store.leases.get('key-age');
      await sleep(20);
      expect(await t.store.leases.tryAcquire('key-age', 'replica-a', MINUTE)).toBe(true);
      const renewed = await t.store.leases.get('key-age');
      expect(renewed?.acquiredAt).toBe(first?.acquiredAt);
      expect(Date.parse(renewed?.expiresAt ?? '')).toBeGreaterThan(Date.parse(first?.expiresAt ?? ''));
    });

    it('lets another holder take an expired lease', async () => {
      expect(await t.store.leases.tryAcquire('housekeeping', 'replica-a', 50)).toBe(true);
      expect(await t.store.leases.tryAcquire('housekeeping', 'replica-b', MINUTE)).toBe(false);
      await sleep(120);
      expect(await t.store.leases.tryAcquire('housekeeping', 'replica-b', MINUTE)).toBe(true);
      expect((await t.store.leases.get('housekeeping'))?.holder).toBe('replica-b');
      // The old holder lost it.
      expect(await t.store.leases.tryAcquire('housekeeping', 'replica-a', MINUTE)).toBe(false);
    });

    it('gives a free lease to exactly one of many replicas racing for it', async () => {
      const replicas = await Promise.all(Array.from({ length: 6 }, () => t.db.open()));
      for (let round = 0; round < 5; round += 1) {
        const name = `race-${round}`;
        const outcomes = await Promise.all(
          replicas.flatMap((store, replica) => [0, 1].map((n) => store.leases.tryAcquire(name, `replica-${replica}-${n}`, MINUTE))),
        );
        expect(outcomes.filter(Boolean)).toHaveLength(1);
        const holder = (await t.store.leases.get(name))?.holder;
        expect(outcomes[outcomes.indexOf(true)]).toBe(true);
        expect(holder).toBe(`replica-${Math.floor(outcomes.indexOf(true) / 2)}-${outcomes.indexOf(true) % 2}`);
      }
    });

    it('is kept across a reopen (it is in storage, not in the process)', async () => {
      expect(await t.store.leases.tryAcquire('ca-duties', 'replica-a', MINUTE)).toBe(true);
      const reopened = await t.reopen();
      expect(await reopened.leases.tryAcquire('ca-duties', 'replica-b', MINUTE)).toBe(false);
      expect(await reopened.leases.tryAcquire('ca-duties', 'replica-a', MINUTE)).toBe(true);
    });
  });

  describe('release', () => {
    it('frees the lease for the next holder at once, and only its holder can', async () => {
      expect(await t.store.leases.tryAcquire('ca-duties', 'replica-a', MINUTE)).toBe(true);
      expect(await t.store.leases.release('ca-duties', 'replica-b')).toBe(false);
      expect(await t.store.leases.tryAcquire('ca-duties', 'replica-b', MINUTE)).toBe(false);
      expect(await t.store.leases.release('ca-duties', 'replica-a')).toBe(true);
      expect(await t.store.leases.get('ca-duties')).toBeNull();
      expect(await t.store.leases.tryAcquire('ca-duties', 'replica-b', MINUTE)).toBe(true);
      expect(await t.store.leases.release('never-taken', 'replica-a')).toBe(false);
    });
  });

  describe('validation', () => {
    it('refuses bad arguments with a TypeError before writing', async () => {
      await expect(t.store.leases.tryAcquire('Bad Name', 'a', MINUTE)).rejects.toThrow(TypeError);
      await expect(t.store.leases.tryAcquire('x'.repeat(65), 'a', MINUTE)).rejects.toThrow(TypeError);
      await expect(t.store.leases.tryAcquire('ok', '', MINUTE)).rejects.toThrow(TypeError);
      await expect(t.store.leases.tryAcquire('ok', 'has space', MINUTE)).rejects.toThrow(TypeError);
      await expect(t.store.leases.tryAcquire('ok', 'a', 0)).rejects.toThrow(TypeError);
      await expect(t.store.leases.tryAcquire('ok', 'a', 1.5)).rejects.toThrow(TypeError);
      await expect(t.store.leases.tryAcquire('ok', 'a', 8 * 86_400_000)).rejects.toThrow(TypeError);
      await expect(t.store.leases.release('ok', '')).rejects.toThrow(TypeError);
      await expect(t.store.leases.get('')).rejects.toThrow(TypeError);
      expect(await t.db.raw.query('SELECT * FROM leases')).toEqual([]);
    });

    it('reports a damaged row as STORE_CORRUPT', async () => {
      await t.db.raw.execUnchecked("INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES ('ca-duties', 'a', 'yesterday', '2026-11-27T10:00:00.000Z')");
      await expect(t.store.leases.get('ca-duties')).rejects.toMatchObject({ code: 'STORE_CORRUPT' });
    });
  });
});
