/**
 * Reads the services' V8 CPU profiles that `npm run bench -- --only signing --profile DIR`
 * wrote, over one kind of measured phase alone, and prints each function's main-thread
 * time per answered request, with the log and without it, largest difference first.
 *
 *   node dist/bench/profile-phases.js DIR [--phase "common rate"|"closed loop"] [--top N] [--inclusive]
 *   node dist/bench/profile-phases.js DIR [--phase …] --areas
 *
 * `--areas` sums the main thread's busy time by where it was spent instead (AREAS):
 * in the SQLite store, in the log's own code, or elsewhere. That bounds what moving one
 * area to another thread could give each service: a writer thread would take the
 * SQLite area of both, a prover thread only the log's.
 *
 * Why over phases: a profile covers a service's whole run (start-up, warm-up, the
 * closed-loop rounds, the rounds at one common rate), and a service's CPU per request
 * depends on its rate. Over the common-rate rounds both services answer the same
 * requests at the same rate, so a difference per request is the log's own work, or
 * what the log makes others do. bench/main.ts writes DIR/phases.json: when each phase
 * ran, on the monotonic clock V8's profiles use, and how many requests it answered.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AREAS, ELSEWHERE, timeByArea, timeByFunction, type AreaTimes, type CpuProfile } from './cpu-profile.js';
import { PHASES_FILE, type ProfiledPhase } from './phases.js';

/** A service's profile (`service`: its `--log` variant), the windows of one kind of phase in it, and the requests answered there. */
function measuredPhases(dir: string, phases: readonly ProfiledPhase[], service: string, phase: string): { profile: CpuProfile; windows: ProfiledPhase[]; requests: number } {
  const windows = phases.filter((p) => p.service === service && p.phase === phase);
  const requests = windows.reduce((sum, w) => sum + w.requests, 0);
  const profile = JSON.parse(readFileSync(join(dir, `service-log-${service}.cpuprofile`), 'utf8')) as CpuProfile;
  return { profile, windows, requests };
}

function printAreas(dir: string, phases: readonly ProfiledPhase[], phase: string): void {
  const perRequest = (service: string): { areas: AreaTimes; requests: number } => {
    const { profile, windows, requests } = measuredPhases(dir, phases, service, phase);
    return { areas: timeByArea(profile, windows), requests };
  };
  const on = perRequest('on');
  const off = perRequest('off');
  const row = (name: string, withLog: number, without: number): string =>
    `${name.padEnd(60)} ${(withLog / on.requests).toFixed(1).padStart(8)} ${(without / off.requests).toFixed(1).padStart(8)} ${(withLog / on.requests - without / off.requests).toFixed(1).padStart(8)}`;
  const out = [
    `${phase}: with the log ${on.requests} requests, without ${off.requests}; main-thread µs per request, idle left out`,
    `${'area'.padEnd(60)} ${'with'.padStart(8)} ${'without'.padStart(8)} ${'diff'.padStart(8)}`,
    row('busy, in all', on.areas.busy, off.areas.busy),
    ...[...AREAS.map((a) => a.name), ELSEWHERE].map((name) => row(name, on.areas.byArea.get(name) ?? 0, off.areas.byArea.get(name) ?? 0)),
    row('  of the SQLite store, called by the log code', on.areas.sqliteForTheLog, off.areas.sqliteForTheLog),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      phase: { type: 'string', default: 'common rate' },
      top: { type: 'string', default: '40' },
      inclusive: { type: 'boolean', default: false },
      areas: { type: 'boolean', default: false },
    },
  });
  const [dir] = positionals;
  if (dir === undefined) throw new Error('usage: profile-phases DIR [--phase "common rate"|"closed loop"] [--top N] [--inclusive | --areas]');
  const phases = JSON.parse(readFileSync(join(dir, PHASES_FILE), 'utf8')) as ProfiledPhase[];
  if (values.areas) {
    printAreas(dir, phases, values.phase);
    return;
  }
  const perRequest = (service: string): { micros: Map<string, number>; sampled: number; requests: number } => {
    const { profile, windows, requests } = measuredPhases(dir, phases, service, values.phase);
    const { byFunction, sampled } = timeByFunction(profile, windows, values.inclusive);
    return { micros: new Map([...byFunction].map(([name, us]) => [name, us / requests])), sampled: sampled / requests, requests };
  };
  const on = perRequest('on');
  const off = perRequest('off');
  const names = new Set([...on.micros.keys(), ...off.micros.keys()]);
  const rows = [...names].map((name) => ({ name, on: on.micros.get(name) ?? 0, off: off.micros.get(name) ?? 0 }));
  rows.sort((a, b) => Math.abs(b.on - b.off) - Math.abs(a.on - a.off));
  const out = [
    `${values.phase}: with the log ${on.requests} requests, without ${off.requests}; µs per request (${values.inclusive ? 'inclusive' : 'self'})`,
    `${'all samples'.padEnd(70)} ${on.sampled.toFixed(1).padStart(8)} ${off.sampled.toFixed(1).padStart(8)}`,
    `${'function'.padEnd(70)} ${'with'.padStart(8)} ${'without'.padStart(8)} ${'diff'.padStart(8)}`,
    ...rows.slice(0, Number(values.top)).map((r) => `${r.name.slice(0, 70).padEnd(70)} ${r.on.toFixed(1).padStart(8)} ${r.off.toFixed(1).padStart(8)} ${(r.on - r.off).toFixed(1).padStart(8)}`),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

main();
