/**
 * CPU time read from /proc (proc(5): utime and stime, fields 14 and 15 of
 * /proc/PID/stat, or of /proc/PID/task/PID/stat for the main thread alone; in clock
 * ticks of 1/100 s on Linux). Used to report CPU per request beside the rates, which
 * hide part of a cost when the machine, not the process, is what limits them.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** USER_HZ, which Linux fixes at 100 for /proc whatever the kernel's own tick rate. */
const CLOCK_TICKS_PER_SECOND = 100;

/**
 * User + system CPU seconds process `pid` has used so far, all threads or its main
 * thread only (the thread whose id is the process id). NaN where there is no /proc or
 * no such process.
 */
export function processCpuSeconds(pid: number | undefined, scope: 'all threads' | 'main thread' = 'all threads'): number {
  if (pid === undefined) return Number.NaN;
  try {
    return statCpuSeconds(scope === 'main thread' ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`);
  } catch {
    return Number.NaN;
  }
}

/** utime + stime of a /proc stat file, in seconds; throws if it cannot be read. */
function statCpuSeconds(path: string): number {
  const stat = readFileSync(path, 'utf8');
  // The command name (field 2) may hold spaces; the fields after it are plain.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
}

/**
 * User + system CPU seconds of each thread of process `pid`, keyed `main thread` or
 * `NAME#RANK`: NAME from /proc/PID/task/TID/comm (Node 20 calls every thread "node"),
 * RANK the thread's place among the process's threads in thread-id order, that is in
 * creation order, which is the same from one run of a service to the next (what each
 * rank is in the signing service: BENCHMARKS.md). Threads that ended meanwhile are
 * missing from a difference. Empty where there is no /proc.
 */
export function threadCpuSeconds(pid: number | undefined): Map<string, number> {
  const byName = new Map<string, number>();
  if (pid === undefined) return byName;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  tids.sort((a, b) => Number(a) - Number(b));
  for (const [rank, tid] of tids.entries()) {
    try {
      const name = tid === String(pid) ? 'main thread' : `${readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()}#${rank}`;
      byName.set(name, (byName.get(name) ?? 0) + statCpuSeconds(`/proc/${pid}/task/${tid}/stat`));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return byName;
}
