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
  // Idle left out; the last sample stands for no time (nothing follows it). The node
  // read under the receipt is the log's SQLite work; the commit on its own is not.
  it.each([
    { from: 0, to: 100, busy: 60, sqlite: 20, log: 20, elsewhere: 20, sqliteForTheLog: 10 },
    { from: 20, to: 50, busy: 30, sqlite: 10, log: 10, elsewhere: 10, sqliteForTheLog: 10 },
  ])('counts each busy sample in [$from, $to) once, in the first area of its stack', (expected) => {
    const times = timeByArea(profile, [window(expected.from, expected.to)]);
    expect({
      busy: times.busy,
      sqlite: times.byArea.get(SQLITE),
      log: times.byArea.get(LOG),
      elsewhere: times.byArea.get(ELSEWHERE),
      sqliteForTheLog: times.sqliteForTheLog,
    }).toEqual({ busy: expected.busy, sqlite: expected.sqlite, log: expected.log, elsewhere: expected.elsewhere, sqliteForTheLog: expected.sqliteForTheLog });
  });
});
