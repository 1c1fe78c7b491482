/**
 * CPU time read from /proc (proc(5): utime and stime, fields 14 and 15 of
 * /proc/PID/stat, or of /proc/PID/task/PID/stat for the main thread alone; in clock
 * ticks of 1/100 s on Linux). Used to report CPU per request beside the rates, which
 * hide part of a cost when the machine, not the process, is what limits them.
 */
import { readFileSync } from 'node:fs';

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
    const stat = readFileSync(scope === 'main thread' ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; the fields after it are plain.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}
