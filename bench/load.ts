/**
 * A small closed- and open-loop HTTPS load generator with client certificates, for
 * the benchmark. It uses undici (one TLS context, keep-alive connections reused by
 * every request, as a well-behaved CI client does; PKCS11-NOTES.md: a new context per
 * request halves the handshake rate) because it costs far less CPU per request than
 * node:https, and the load generator shares the machine's cores with the service.
 */
import { Agent, request } from 'undici';

export interface LoadTarget {
  readonly url: string;
  readonly body: () => string;
  /** Headers for the next request (each request takes a fresh id token). */
  readonly headers: () => Record<string, string>;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** What one load phase saw; `summarise` turns one or more of them into a LoadResult. */
export interface LoadRun {
  readonly latencies: readonly number[];
  readonly statuses: ReadonlyMap<number, number>;
  readonly seconds: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly failures: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly statuses: Record<string, number>;
}

async function post(agent: Agent, target: LoadTarget): Promise<number> {
  try {
    const response = await request(target.url, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', ...target.headers() },
      body: target.body(),
    });
    await response.body.dump();
    return response.statusCode;
  } catch {
    return 0;
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** One result over several phases of the same kind (their requests and seconds added up). */
export function summarise(runs: readonly LoadRun[]): LoadResult {
  const latencies = runs.flatMap((run) => run.latencies);
  const statuses = new Map<number, number>();
  for (const run of runs) for (const [status, count] of run.statuses) statuses.set(status, (statuses.get(status) ?? 0) + count);
  const seconds = runs.reduce((total, run) => total + run.seconds, 0);
  const sorted = Float64Array.from(latencies).sort();
  const failures = [...statuses.entries()].filter(([s]) => s !== 200).reduce((n, [, c]) => n + c, 0);
  return {
    requests: latencies.length,
    failures,
    seconds,
    perSecond: (latencies.length - failures) / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    statuses: Object.fromEntries([...statuses.entries()].map(([k, v]) => [String(k), v])),
  };
}

function agentFor(target: LoadTarget, connections: number): Agent {
  return new Agent({ connections, pipelining: 1, connect: { ca: target.ca, cert: target.cert, key: target.key } });
}

/** Closed loop: `connections` clients, each sending its next request when the last answered. */
export async function closedLoop(target: LoadTarget, connections: number, seconds: number): Promise<LoadRun> {
  const agent = agentFor(target, connections);
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      const status = await post(agent, target);
      latencies.push(performance.now() - t0);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const elapsed = (performance.now() - started) / 1000;
  await agent.close();
  return { latencies, statuses, seconds: elapsed };
}

/**
 * Open loop: requests start on a fixed schedule whatever the latency, so queueing shows
 * in p99. Latency is measured from each request's scheduled start, so a load generator
 * that falls behind its schedule counts against the result rather than hiding it.
 */
export async function openLoop(target: LoadTarget, ratePerSecond: number, seconds: number, connections: number): Promise<LoadRun> {
  const agent = agentFor(target, connections);
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  const total = Math.max(1, Math.round(ratePerSecond * seconds));
  const interval = 1000 / ratePerSecond;
  const started = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let i = 0; i < total; i += 1) {
    const due = started + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inFlight.push(
      post(agent, target).then((status) => {
        latencies.push(performance.now() - due);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }),
    );
  }
  await Promise.all(inFlight);
  const elapsed = (performance.now() - started) / 1000;
  await agent.close();
  return { latencies, statuses, seconds: elapsed };
}
