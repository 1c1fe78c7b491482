/**
 * A small closed- and open-loop HTTPS load generator with client certificates, for
 * the benchmark. One TLS context (agent) reused by every request, keep-alive, as a
 * well-behaved CI client would do (PKCS11-NOTES.md: a new context per request halves
 * the handshake rate).
 */
import { Agent, request } from 'node:https';

export interface LoadTarget {
  readonly url: string;
  readonly body: () => string;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
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

function post(agent: Agent, target: LoadTarget): Promise<number> {
  const body = Buffer.from(target.body());
  return new Promise((resolve) => {
    const req = request(
      target.url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': String(body.length) } },
      (res) => {
        res.resume();
        res.on('end', () => { resolve(res.statusCode ?? 0); });
      },
    );
    req.on('error', () => { resolve(0); });
    req.end(body);
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function summarise(latencies: number[], statuses: Map<number, number>, seconds: number): LoadResult {
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
  return new Agent({ keepAlive: true, maxSockets: connections, ca: target.ca, cert: target.cert, key: target.key });
}

/** Closed loop: `connections` clients, each sending its next request when the last answered. */
export async function closedLoop(target: LoadTarget, connections: number, seconds: number): Promise<LoadResult> {
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
  agent.destroy();
  return summarise(latencies, statuses, elapsed);
}

/** Open loop: requests start at a fixed rate whatever the latency, so queueing shows in p99. */
export async function openLoop(target: LoadTarget, ratePerSecond: number, seconds: number, connections: number): Promise<LoadResult> {
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
    const t0 = performance.now();
    inFlight.push(
      post(agent, target).then((status) => {
        latencies.push(performance.now() - t0);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }),
    );
  }
  await Promise.all(inFlight);
  const elapsed = (performance.now() - started) / 1000;
  agent.destroy();
  return summarise(latencies, statuses, elapsed);
}
