/**
 * When checkpoint rounds start (log/round-cadence.ts): at once unless the event loop was
 * saturated since the previous round; then as soon as the loop waits for I/O, or at the
 * ceiling. The bounds below are correctness checks with wide margins, not timings.
 */
import { describe, expect, it } from 'vitest';
import { busyLoopCadence } from '../../log/round-cadence.js';

/** Keeps this thread's event loop busy (never waiting for I/O) for `ms`, in short turns. */
function keepLoopBusy(ms: number): Promise<void> {
  const until = performance.now() + ms;
  return new Promise((resolve) => {
    const turn = (): void => {
      const slice = performance.now() + 2;
      while (performance.now() < slice && performance.now() < until) {
        // Busy on purpose: the loop must not wait for I/O.
      }
      if (performance.now() < until) setImmediate(turn);
      else resolve();
    };
    setImmediate(turn);
  });
}

function spinSynchronously(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Busy on purpose.
  }
}

describe('checkpoint round cadence', () => {
  it('starts the first round at once, and any round after an idle spell', async () => {
    const cadence = busyLoopCadence({ maxWaitMs: 5_000 });
    let started = performance.now();
    await cadence();
    expect(performance.now() - started).toBeLessThan(1_000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    started = performance.now();
    await cadence();
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('waits while the event loop stays busy, up to the ceiling', async () => {
    const cadence = busyLoopCadence({ maxWaitMs: 40 });
    await cadence();
    spinSynchronously(30);
    const busy = keepLoopBusy(400);
    const started = performance.now();
    await cadence();
    const waited = performance.now() - started;
    await busy;
    expect(waited).toBeGreaterThanOrEqual(35);
    expect(waited).toBeLessThan(1_000);
  });

  it('stops waiting as soon as the busy loop has to wait for I/O', async () => {
    const cadence = busyLoopCadence({ maxWaitMs: 5_000 });
    await cadence();
    // Saturated since the previous round, then nothing more to do.
    spinSynchronously(30);
    const started = performance.now();
    await cadence();
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('refuses options that make no sense', () => {
    expect(() => busyLoopCadence({ maxWaitMs: -1 })).toThrow(TypeError);
    expect(() => busyLoopCadence({ busyUtilization: 0 })).toThrow(TypeError);
    expect(() => busyLoopCadence({ busyUtilization: 1.5 })).toThrow(TypeError);
  });
});
