import { describe, expect, it } from 'vitest';
import { meanInterval95 } from '../../bench/stats.js';

describe('meanInterval95', () => {
  it("is Student's t interval for the mean", () => {
    // mean 3, sample standard deviation √2.5, t(0.975, 4 df) = 2.776
    const interval = meanInterval95([1, 2, 3, 4, 5]);
    expect(interval.mean).toBe(3);
    expect(interval.halfWidth).toBeCloseTo(2.776 * Math.sqrt(2.5 / 5), 6);
    expect(interval.low).toBeCloseTo(3 - interval.halfWidth, 12);
    expect(interval.high).toBeCloseTo(3 + interval.halfWidth, 12);
  });

  it('uses the normal value beyond 30 degrees of freedom', () => {
    const samples = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 0.7 : 0.9));
    const interval = meanInterval95(samples);
    const sd = Math.sqrt(samples.reduce((sum, x) => sum + (x - 0.8) ** 2, 0) / 39);
    expect(interval.mean).toBeCloseTo(0.8, 12);
    expect(interval.halfWidth).toBeCloseTo(1.96 * (sd / Math.sqrt(40)), 12);
  });

  it('has no interval without at least two rounds', () => {
    expect(Number.isNaN(meanInterval95([]).mean)).toBe(true);
    const one = meanInterval95([0.83]);
    expect(one.mean).toBe(0.83);
    expect(Number.isNaN(one.halfWidth)).toBe(true);
    expect(Number.isNaN(one.low)).toBe(true);
  });
});
