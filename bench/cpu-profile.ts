/**
 * V8 CPU profiles (the `.cpuprofile` files `node --cpu-prof` writes) read over time
 * windows: main-thread time by function (self or inclusive) and by area of the code
 * base. Pure: bench/profile-phases.ts reads the files and prints.
 */
import { basename } from 'node:path';
import type { ProfiledPhase } from './phases.js';

export interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

export interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

function frameName(frame: CallFrame): string {
  const where = frame.url === '' ? '' : ` ${basename(frame.url)}:${frame.lineNumber + 1}`;
  return `${frame.functionName === '' ? '(anonymous)' : frame.functionName}${where}`;
}

interface ProfileTree {
  readonly byId: Map<number, ProfileNode>;
  readonly parent: Map<number, number>;
}

function treeOf(profile: CpuProfile): ProfileTree {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  return { byId, parent };
}

/** Calls `visit` for each sample inside the windows, with the time it stands for: until the next sample. */
function forEachSample(profile: CpuProfile, windows: readonly ProfiledPhase[], visit: (nodeId: number, micros: number) => void): void {
  let time = profile.startTime;
  for (let i = 0; i < profile.samples.length; i += 1) {
    time += profile.timeDeltas[i] ?? 0;
    const weight = profile.timeDeltas[i + 1] ?? 0;
    const nodeId = profile.samples[i];
    if (nodeId === undefined || !windows.some((w) => time >= w.startMicroseconds && time < w.endMicroseconds)) continue;
    visit(nodeId, weight);
  }
}

/**
 * Microseconds per function (self, or inclusive of callees) over the windows, and the
 * time all the samples there stand for (inclusive times overlap, so their sum is not it).
 */
export function timeByFunction(profile: CpuProfile, windows: readonly ProfiledPhase[], inclusive: boolean): { byFunction: Map<string, number>; sampled: number } {
  const { byId, parent } = treeOf(profile);
  const totals = new Map<string, number>();
  let sampled = 0;
  forEachSample(profile, windows, (sample, weight) => {
    sampled += weight;
    const names = new Set<string>();
    for (let id: number | undefined = sample; id !== undefined; id = inclusive ? parent.get(id) : undefined) {
      const node = byId.get(id);
      if (node === undefined) break;
      names.add(frameName(node.callFrame));
    }
    for (const name of names) totals.set(name, (totals.get(name) ?? 0) + weight);
  });
  return { byFunction: totals, sampled };
}

/**
 * Areas of the code base, by the path of a frame's file. A sample counts in the first
 * area any frame of its stack is in (a SQLite call the log makes is SQLite work, and
 * counted as the log's too in `sqliteForTheLog`), else in `elsewhere`; idle samples in
 * none.
 */
export const AREAS = [
  { name: 'SQLite store (store/sqlite)', fragment: '/store/sqlite/' },
  { name: 'log code (log/)', fragment: '/log/' },
] as const;
export const ELSEWHERE = 'elsewhere (HTTP, TLS, tokens, policy, HSM posts, GC, …)';

export interface AreaTimes {
  readonly byArea: Map<string, number>;
  /** Of the SQLite area, the samples with a frame of the log's code above them: the log's own reads and writes. */
  readonly sqliteForTheLog: number;
  readonly busy: number;
}

export function timeByArea(profile: CpuProfile, windows: readonly ProfiledPhase[]): AreaTimes {
  const { byId, parent } = treeOf(profile);
  const areaOf = new Map<number, { area: string; forTheLog: boolean } | null>();
  const classify = (leaf: number): { area: string; forTheLog: boolean } | null => {
    const known = areaOf.get(leaf);
    if (known !== undefined) return known;
    if (byId.get(leaf)?.callFrame.functionName === '(idle)') {
      areaOf.set(leaf, null);
      return null;
    }
    const urls: string[] = [];
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) urls.push(byId.get(id)?.callFrame.url ?? '');
    const area = AREAS.find((a) => urls.some((url) => url.includes(a.fragment)))?.name ?? ELSEWHERE;
    const forTheLog = area === AREAS[0].name && urls.some((url) => url.includes(AREAS[1].fragment));
    const result = { area, forTheLog };
    areaOf.set(leaf, result);
    return result;
  };
  const byArea = new Map<string, number>();
  let sqliteForTheLog = 0;
  let busy = 0;
  forEachSample(profile, windows, (sample, weight) => {
    const where = classify(sample);
    if (where === null) return;
    busy += weight;
    byArea.set(where.area, (byArea.get(where.area) ?? 0) + weight);
    if (where.forTheLog) sqliteForTheLog += weight;
  });
  return { byArea, sqliteForTheLog, busy };
}
