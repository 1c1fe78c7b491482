/**
 * The request path's metric updates are applied to prom-client in batches
 * (server/metrics.ts, PendingUpdates): an exposition must still show every update made
 * before it, whether fewer than a batch are pending or several batches went by.
 */
import { describe, expect, it } from 'vitest';
import { SignetMetrics } from '../../server/metrics.js';
import type { Hsm } from '../../signer/types.js';

function metrics(): SignetMetrics {
  return new SignetMetrics({ processMetrics: false, isKnownProject: (project) => project === 'demo', hsmSignCapacity: 2 });
}

function value(exposition: string, series: string): number {
  const line = exposition.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  if (line === undefined) throw new Error(`no series ${series} in the exposition`);
  return Number(line.slice(series.length + 1));
}

describe('metric updates applied in batches', () => {
  it('an exposition shows every update made before it, a partial batch included', async () => {
    const subject = metrics();
    for (let i = 0; i < 3; i += 1) await subject.measureLogAppend(() => Promise.resolve(i));
    const first = (await subject.exposition()).body;
    expect(value(first, 'signet_log_appends_total{outcome="ok"}')).toBe(3);
    expect(value(first, 'signet_log_append_duration_seconds_count')).toBe(3);

    // Several batches' worth, and failures: all counted, none twice.
    for (let i = 0; i < 700; i += 1) {
      await subject.measureLogAppend(() => (i % 7 === 0 ? Promise.reject(new Error('unwritable')) : Promise.resolve(i))).catch(() => undefined);
      subject.observeRequest({ method: 'POST', route: '/v1/sign', status: 200, seconds: 0.002, sign: { project: 'demo', dryRun: false, errorCode: undefined, denyReasons: [] } });
    }
    const second = (await subject.exposition()).body;
    expect(value(second, 'signet_log_appends_total{outcome="ok"}')).toBe(3 + 600);
    expect(value(second, 'signet_log_appends_total{outcome="error"}')).toBe(100);
    expect(value(second, 'signet_log_append_duration_seconds_count')).toBe(703);
    expect(value(second, 'signet_http_requests_total{route="/v1/sign",method="POST",status="200"}')).toBe(700);
    expect(value(second, 'signet_sign_requests_total{project="demo",outcome="signed",reason="none"}')).toBe(700);
    expect(value(second, 'signet_sign_request_duration_seconds_bucket{le="0.0025",outcome="signed"}')).toBe(700);
  });

  it('the HSM in-flight gauge is exact at a scrape: operations still running count, finished ones do not', async () => {
    const subject = metrics();
    let release: () => void = () => undefined;
    const held = new Promise<Buffer>((resolve) => {
      release = () => {
        resolve(Buffer.alloc(64));
      };
    });
    const hsm = subject.instrumentHsm({ signDigest: () => held, ping: () => Promise.resolve() } as unknown as Hsm);
    const ref = { label: 'k', id: 'k' } as never;
    const running = [hsm.signDigest(ref, Buffer.alloc(32) as never), hsm.signDigest(ref, Buffer.alloc(32) as never)];
    const during = (await subject.exposition()).body;
    expect(value(during, 'signet_hsm_operations_in_flight{operation="sign"}')).toBe(2);
    release();
    await Promise.all(running);
    const after = (await subject.exposition()).body;
    expect(value(after, 'signet_hsm_operations_in_flight{operation="sign"}')).toBe(0);
    expect(value(after, 'signet_hsm_operation_duration_seconds_count{operation="sign"}')).toBe(2);
  });
});
