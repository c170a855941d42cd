// The bench's statistics: nearest-rank percentiles, rounding, and a bounded-concurrency map.

/** Nearest-rank percentile. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

export const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits;

/** `<prefix>_p50_ms` and `<prefix>_p99_ms` of the samples, to 0.01 ms. */
export const p50p99 = (prefix: string, values: number[]) => ({
  [`${prefix}_p50_ms`]: round(percentile(values, 50)),
  [`${prefix}_p99_ms`]: round(percentile(values, 99)),
});

export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i]!, i);
      }
    }),
  );
  return results;
}
