// A bounded load loop: n operations on a fixed number of concurrent workers, cut off after a
// time limit, with per-operation latencies and a cap on errors.

/** Runs fn(i) for i = 0..n-1 on `concurrency` workers; stops early after limitMs. */
export async function pool(n: number, concurrency: number, limitMs: number, fn: (i: number) => Promise<void>) {
  let next = 0;
  let errors = 0;
  let firstError: string | undefined;
  const latencies: number[] = [];
  const deadline = performance.now() + limitMs;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n && performance.now() < deadline) {
      const i = next++;
      const s = performance.now();
      try {
        await fn(i);
        latencies.push(performance.now() - s);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
        if (errors > 100) throw new Error(`too many errors, first: ${firstError}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  return { done: latencies.length, errors, firstError, latencies, seconds, timedOut: next < n };
}
