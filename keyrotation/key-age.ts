/**
 * Scheduled rotation: each project may set `maxKeyAgeDays` in the policy; the active
 * version of each of its keys should be younger than that, counted from its activation
 * (the start of its validity window). `findAgingKeys` is pure; `startKeyAgeDuties` runs
 * inside `signet serve`: keys within `keyAgeWarningDays` of their limit (or past it) are
 * reported in /readyz, warned about in the service log and recorded in the transparency
 * log (`key-age`) at most once per key version per UTC day in this process, and, when
 * `governance.autoProposeRotation` is on, a rotation proposal is opened for them by the
 * service itself (SYSTEM_PROPOSER). That proposal still needs the officers' quorum:
 * nothing rotates by itself.
 *
 * With several replicas, `mayRun` (service/leadership.ts) lets one at a time run the
 * rounds; should two ever overlap, the proposal id is derived from the key version and
 * the day, so they open at most one per key version and day between them.
 */
import { createHash } from 'node:crypto';
import type { PolicyDocument } from '../policy/schema.js';
import type { KeyVersionRecord, SignetStore } from '../store/store.js';
import { isStoreError } from '../store/errors.js';
import type { GovernanceLogger } from './execute.js';
import { governanceEntry, proposedEvent } from './log-entries.js';
import { loadGovernance } from './officers.js';
import { createProposal, proposalDocument, SYSTEM_PROPOSER } from './proposals.js';

const DAY_MS = 86_400_000;

export interface AgingKey {
  readonly keyId: string;
  readonly name: string;
  /** Projects that list the key and set a maximum age. */
  readonly projects: readonly string[];
  readonly activeSince: string;
  /** The smallest maximum among those projects. */
  readonly maxKeyAgeDays: number;
  /** Whole days left before the maximum, rounded down; negative once past it. */
  readonly daysLeft: number;
  readonly overdue: boolean;
}

/** Active key versions within `warningDays` of their maximum age (or past it), by key id. */
export function findAgingKeys(input: {
  readonly keys: readonly KeyVersionRecord[];
  readonly policy: PolicyDocument;
  readonly now: Date;
  readonly warningDays: number;
}): AgingKey[] {
  const limits = new Map<string, { max: number; projects: string[] }>();
  for (const [project, settings] of Object.entries(input.policy.projects)) {
    const max = settings.maxKeyAgeDays;
    if (max === undefined) continue;
    for (const name of settings.keys) {
      const entry = limits.get(name) ?? { max, projects: [] };
      entry.max = Math.min(entry.max, max);
      entry.projects.push(project);
      limits.set(name, entry);
    }
  }
  const aging: AgingKey[] = [];
  for (const key of input.keys) {
    const limit = limits.get(key.name);
    if (key.state !== 'active' || limit === undefined) continue;
    const since = Date.parse(key.notBefore);
    if (Number.isNaN(since)) continue;
    const daysLeft = Math.floor((since + limit.max * DAY_MS - input.now.getTime()) / DAY_MS);
    if (daysLeft > input.warningDays) continue;
    aging.push({
      keyId: key.keyId,
      name: key.name,
      projects: [...limit.projects].sort(),
      activeSince: key.notBefore,
      maxKeyAgeDays: limit.max,
      daysLeft,
      overdue: input.now.getTime() >= since + limit.max * DAY_MS,
    });
  }
  return aging.sort((a, b) => a.daysLeft - b.daysLeft || (a.keyId < b.keyId ? -1 : 1));
}

export interface KeyAgeDutiesOptions {
  readonly store: SignetStore;
  readonly policy: () => PolicyDocument;
  readonly warningDays: number;
  readonly autoPropose: boolean;
  /** The transparency log's key: never proposed for rotation. */
  readonly logKeyName: string;
  readonly logger: GovernanceLogger;
  readonly now?: () => Date;
  /** Default: hourly. */
  readonly intervalMs?: number;
  /** Asked before each round; the round runs only if it resolves true (once-per-cluster leadership). Default: always. */
  readonly mayRun?: () => Promise<boolean>;
}

export interface KeyAgeDuties {
  /** One round now (also run at start); resolves when done, never rejects. */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

/** The deterministic id of the scheduler's rotation proposal for a key version on a day. */
export function scheduledProposalId(keyId: string, day: string): string {
  return `auto-rotate-${createHash('sha256').update(keyId).digest('hex').slice(0, 20)}-${day.replaceAll('-', '')}`;
}

export function startKeyAgeDuties(options: KeyAgeDutiesOptions): KeyAgeDuties {
  const now = options.now ?? (() => new Date());
  const warned = new Set<string>();
  let running: Promise<void> | undefined;

  const round = async (): Promise<void> => {
    // Not this replica's turn, or leadership unknown (the database is away): no round.
    const leading = options.mayRun === undefined || (await options.mayRun().catch(() => false));
    if (!leading) return;
    try {
      const at = now();
      const day = at.toISOString().slice(0, 10);
      const aging = findAgingKeys({ keys: await options.store.keys.list(), policy: options.policy(), now: at, warningDays: options.warningDays }).filter(
        (k) => k.name !== options.logKeyName,
      );
      const fresh = aging.filter((k) => !warned.has(`${k.keyId}:${day}`));
      if (fresh.length > 0) {
        await options.store.transaction(async (tx) => {
          await tx.log.append(
            fresh.map((k) =>
              governanceEntry(
                { event: 'key-age', keyId: k.keyId, projects: k.projects, activeSince: k.activeSince, maxKeyAgeDays: k.maxKeyAgeDays, daysLeft: k.daysLeft, time: at.toISOString() },
                at,
              ),
            ),
          );
        });
        for (const key of fresh) {
          warned.add(`${key.keyId}:${day}`);
          options.logger.warn({ key }, key.overdue ? 'signing key is past its maximum age' : 'signing key nears its maximum age');
        }
      }
      if (options.autoPropose) for (const key of aging) await propose(key, at, day);
    } catch (error) {
      options.logger.warn({ err: error }, 'key age check failed; will retry');
    }
  };

  const propose = async (key: AgingKey, at: Date, day: string): Promise<void> => {
    const open = await options.store.governance.listProposals({ status: 'open', limit: 1000 });
    if (open.some((p) => p.content.action.type === 'rotate-key' && p.content.action.key === key.name && at.getTime() < Date.parse(p.content.expiresAt))) return;
    const { governance } = await loadGovernance(options.store.governance);
    const project = key.projects[0];
    if (project === undefined) return;
    const proposal = createProposal(
      {
        id: scheduledProposalId(key.keyId, day),
        action: { type: 'rotate-key', project, key: key.name, algorithm: null },
        proposer: SYSTEM_PROPOSER,
        reason: `scheduled rotation: ${key.keyId} is ${key.overdue ? 'past' : 'near'} the maximum key age of ${key.maxKeyAgeDays} days`,
      },
      governance,
      at,
    );
    try {
      await options.store.transaction(async (tx) => {
        await tx.governance.insertProposal(proposal);
        await tx.log.append([governanceEntry(proposedEvent(proposal, proposalDocument(proposal.content)), at)]);
      });
      options.logger.info({ proposalId: proposal.content.id, keyId: key.keyId }, 'scheduled rotation proposed; it needs the quorum');
    } catch (error) {
      // Another replica opened it first.
      if (!(isStoreError(error) && error.code === 'STORE_CONFLICT')) throw error;
    }
  };

  const runOnce = (): Promise<void> => {
    running ??= round().finally(() => {
      running = undefined;
    });
    return running;
  };

  void runOnce();
  const timer = setInterval(() => void runOnce(), options.intervalMs ?? 3_600_000);
  timer.unref();
  return {
    runOnce,
    stop: async () => {
      clearInterval(timer);
      await running;
    },
  };
}
