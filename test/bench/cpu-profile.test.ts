import { describe, expect, it } from 'vitest';
import { AREAS, ELSEWHERE, timeByArea, type CpuProfile } from '../../bench/cpu-profile.js';
import type { ProfiledPhase } from '../../bench/phases.js';

const [SQLITE, LOG] = [AREAS[0].name, AREAS[1].name];

function frame(id: number, functionName: string, url: string, children: number[] = []): CpuProfile['nodes'][number] {
  return { id, callFrame: { functionName, url, lineNumber: 0 }, children };
}

/**
 * A service's main thread, one sample every 10 µs: idle, garbage collection, a request
 * handler, the log's receipt under it, a node read the receipt makes from the SQLite
 * store under that, a store commit on its own, and a leaf built by the log's code.
 */
const profile: CpuProfile = {
  nodes: [
    frame(1, '(root)', '', [2, 3, 4, 5, 8]),
    frame(2, '(idle)', ''),
    frame(3, '(garbage collector)', ''),
    frame(4, 'signRequest', 'file:///srv/dist/service/sign-request.js', [6]),
    frame(5, '#commit', 'file:///srv/dist/store/sqlite/sqlite-store.js'),
    frame(6, 'receipt', 'file:///srv/dist/log/transparency-log.js', [7]),
    frame(7, 'nodes', 'file:///srv/dist/store/sqlite/sqlite-log.js'),
    frame(8, 'decisionLeaf', 'file:///srv/dist/log/entries.js'),
  ],
  startTime: 0,
  samples: [2, 3, 4, 6, 7, 5, 8, 4],
  timeDeltas: [0, 10, 10, 10, 10, 10, 10, 10],
};

function window(startMicroseconds: number, endMicroseconds: number): ProfiledPhase {
  return { service: 'on', phase: 'closed loop', startMicroseconds, endMicroseconds, requests: 1 };
}

describe('timeByArea', () => {
  it('counts each busy sample once, in the first area any frame of its stack is in', () => {
    const times = timeByArea(profile, [window(0, 100)]);
    // Idle left out; the last sample stands for no time (nothing follows it).
    expect(times.busy).toBe(60);
    expect(times.byArea.get(SQLITE)).toBe(20);
    expect(times.byArea.get(LOG)).toBe(20);
    expect(times.byArea.get(ELSEWHERE)).toBe(20);
    // The node read under the receipt is the log's; the commit on its own is not.
    expect(times.sqliteForTheLog).toBe(10);
  });

  it('counts only the samples inside the windows', () => {
    const times = timeByArea(profile, [window(20, 50)]);
    expect(times.busy).toBe(30);
    expect(times.byArea.get(ELSEWHERE)).toBe(10);
    expect(times.byArea.get(LOG)).toBe(10);
    expect(times.byArea.get(SQLITE)).toBe(10);
    expect(times.sqliteForTheLog).toBe(10);
  });
});
