/**
 * How far a benchmark's mean over a few rounds can be trusted. The end-to-end ratio is
 * measured in alternating rounds whose ratios move by ±10 points from one to the next
 * on a 2-core machine; a mean of four or eight such rounds is itself uncertain by
 * several points, and whether it meets a target says little unless that is shown.
 *
 * The interval is Student's t interval for the mean of the rounds (each round's ratio
 * taken as one sample: with and without the log are measured back to back, so machine
 * drift between rounds cancels within a round more than across them).
 */

/** Two-sided 95% critical values of Student's t, by degrees of freedom 1–30. */
const T_95 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093,
  2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];
/** The normal approximation beyond 30 degrees of freedom (t is within 2% of it there). */
const Z_95 = 1.96;

export interface MeanInterval {
  readonly mean: number;
  /** Half the width of the 95% interval; NaN with fewer than two samples. */
  readonly halfWidth: number;
  readonly low: number;
  readonly high: number;
}

/** The mean of `samples` and its two-sided 95% confidence interval. */
export function meanInterval95(samples: readonly number[]): MeanInterval {
  const n = samples.length;
  if (n === 0) return { mean: Number.NaN, halfWidth: Number.NaN, low: Number.NaN, high: Number.NaN };
  const mean = samples.reduce((sum, x) => sum + x, 0) / n;
  if (n < 2) return { mean, halfWidth: Number.NaN, low: Number.NaN, high: Number.NaN };
  const variance = samples.reduce((sum, x) => sum + (x - mean) ** 2, 0) / (n - 1);
  const t = T_95[n - 2] ?? Z_95;
  const halfWidth = t * Math.sqrt(variance / n);
  return { mean, halfWidth, low: mean - halfWidth, high: mean + halfWidth };
}
