/** Scheduled rotation, the pure part: which active keys are near their project's maximum age. */
import { describe, expect, it } from 'vitest';
import { findAgingKeys, scheduledProposalId } from '../../keyrotation/key-age.js';
import { policySchema } from '../../policy/schema.js';
import { activeKey } from './fixtures.js';

const DAY = 86_400_000;
const now = new Date('2026-06-01T00:00:00.000Z');

function policy(projects: Record<string, { keys: string[]; maxKeyAgeDays?: number }>) {
  return policySchema.parse({ version: 1, projects });
}

function activeSince(name: string, days: number, version = 1) {
  const at = new Date(now.getTime() - days * DAY).toISOString();
  return { ...activeKey(name, version), notBefore: at, createdAt: at };
}

describe('findAgingKeys', () => {
  it('reports active keys within the warning window or past the maximum, most urgent first', () => {
    const aging = findAgingKeys({
      keys: [activeSince('a', 80), activeSince('b', 95), activeSince('c', 10), { ...activeSince('d', 400), state: 'verify-only' as const, notAfter: now.toISOString() }],
      policy: policy({ p: { keys: ['a', 'b', 'c', 'd'], maxKeyAgeDays: 90 } }),
      now,
      warningDays: 14,
    });
    expect(aging.map((k) => [k.keyId, k.daysLeft, k.overdue])).toEqual([
      ['b@1', -5, true],
      ['a@1', 10, false],
    ]);
  });

  it('takes the smallest maximum among the projects that list a key, and ignores projects without one', () => {
    const [key] = findAgingKeys({
      keys: [activeSince('shared', 50)],
      policy: policy({ x: { keys: ['shared'], maxKeyAgeDays: 365 }, y: { keys: ['shared'], maxKeyAgeDays: 60 }, z: { keys: ['shared'] } }),
      now,
      warningDays: 14,
    });
    expect(key).toMatchObject({ keyId: 'shared@1', maxKeyAgeDays: 60, projects: ['x', 'y'], daysLeft: 10 });
    expect(findAgingKeys({ keys: [activeSince('shared', 50)], policy: policy({ z: { keys: ['shared'] } }), now, warningDays: 14 })).toEqual([]);
  });

  it('names scheduled proposals deterministically, as proposal ids', () => {
    const id = scheduledProposalId('demo-release@1', '2026-06-01');
    expect(id).toBe(scheduledProposalId('demo-release@1', '2026-06-01'));
    expect(id).not.toBe(scheduledProposalId('demo-release@2', '2026-06-01'));
    expect(id).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$/);
  });
});
