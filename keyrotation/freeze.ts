/**
 * Emergency freeze, pure: signing can be stopped for one project or for everything.
 * Any single officer may freeze (a `freeze` proposal needs one approval, its proposer's
 * own); lifting a freeze needs the quorum of `unfreeze` (proposals.ts). While frozen,
 * the signing path refuses before the HSM is asked; rotation and revocation still run,
 * since they are how a freeze is usually resolved.
 */

/** Who froze, when, through which proposal. */
export interface FreezeMark {
  readonly proposalId: string;
  readonly by: string;
  /** ISO-8601 UTC. */
  readonly at: string;
}

export interface ProjectFreeze extends FreezeMark {
  readonly project: string;
}

export interface FreezeState {
  /** Everything is frozen when set. */
  readonly global: FreezeMark | null;
  /** Frozen projects, each at most once, sorted by name. */
  readonly projects: readonly ProjectFreeze[];
}

/** `null` names everything. */
export type FreezeScope = string | null;

export const NOT_FROZEN: FreezeState = Object.freeze({ global: null, projects: Object.freeze([]) });

/** Whether signing for `project` is frozen, by itself or globally. */
export function isFrozen(state: FreezeState, project: string): boolean {
  return state.global !== null || state.projects.some((p) => p.project === project);
}

/** Whether this exact scope carries a freeze (what `unfreeze` needs). */
export function isScopeFrozen(state: FreezeState, scope: FreezeScope): boolean {
  return scope === null ? state.global !== null : state.projects.some((p) => p.project === scope);
}

/** Freezes a scope. Freezing a frozen scope again keeps the first mark (idempotent). */
export function applyFreeze(state: FreezeState, scope: FreezeScope, mark: FreezeMark): FreezeState {
  if (isScopeFrozen(state, scope)) return state;
  if (scope === null) return { global: { ...mark }, projects: state.projects };
  const projects = [...state.projects, { ...mark, project: scope }].sort((a, b) => (a.project < b.project ? -1 : 1));
  return { global: state.global, projects };
}

/** Lifts the freeze of exactly this scope (a global unfreeze leaves project freezes alone). */
export function applyUnfreeze(state: FreezeState, scope: FreezeScope): FreezeState {
  if (scope === null) return { global: null, projects: state.projects };
  return { global: state.global, projects: state.projects.filter((p) => p.project !== scope) };
}
