// Waiting for a quorum of replicas: resolve as soon as `need` calls succeed, fail as soon
// as too many have failed to reach it, and never wait longer than the timeout.

export class QuorumError extends Error {
  constructor(
    readonly need: number,
    readonly got: number,
    readonly errors: string[],
  ) {
    super(`quorum not reached: ${got} of ${need} replicas answered${errors.length ? ` (${errors.join("; ")})` : ""}`);
  }
}

/** Default time a quorum call may take before it fails. */
export const QUORUM_TIMEOUT_MS = 30_000;

export function quorum<T>(calls: readonly (() => Promise<T>)[], need: number, timeoutMs = QUORUM_TIMEOUT_MS): Promise<T[]> {
  return new Promise<T[]>((resolve, reject) => {
    if (need <= 0) return resolve([]);
    const results: T[] = [];
    const errors: string[] = [];
    let settled = false;
    const timer = setTimeout(() => finish(new QuorumError(need, results.length, [...errors, "timeout"])), timeoutMs);
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(results.slice());
    };
    if (calls.length < need) return finish(new QuorumError(need, 0, [`only ${calls.length} replicas`]));
    for (const call of calls) {
      call().then(
        (value) => {
          if (settled) return;
          results.push(value);
          if (results.length >= need) finish();
        },
        (err: unknown) => {
          errors.push(err instanceof Error ? err.message : String(err));
          if (calls.length - errors.length < need) finish(new QuorumError(need, results.length, errors));
        },
      );
    }
  });
}
