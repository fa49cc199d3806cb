// Order statistics for noisy timings: medians and high percentiles, never single samples.

/** Nearest-rank percentile (p in 0..100) of the samples; NaN when there are none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] as number;
}

export function median(samples: readonly number[]): number {
  return percentile(samples, 50);
}

export function mean(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  return samples.reduce((a, b) => a + b, 0) / samples.length;
}

/** Rounded for output: 0.1 ms resolution is below these machines' noise. */
export function r1(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 10) / 10 : x;
}

export function r2(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 100) / 100 : x;
}

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
}

export function summarize(samples: readonly number[]): Summary {
  return {
    n: samples.length,
    p50: r1(percentile(samples, 50)),
    p95: r1(percentile(samples, 95)),
    p99: r1(percentile(samples, 99)),
    min: r1(samples.length ? Math.min(...samples) : Number.NaN),
    max: r1(samples.length ? Math.max(...samples) : Number.NaN),
  };
}

/** Whether item `i` of `total` is one of `picked` spread evenly over them (the last item is
 *  always one when picked > 0): the bench's hook events among its apply events. */
export function evenlySpaced(i: number, picked: number, total: number): boolean {
  return Math.floor(((i + 1) * picked) / total) > Math.floor((i * picked) / total);
}
