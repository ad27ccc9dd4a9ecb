// What a background worker (anti-entropy, resync, GC, ...) has been doing, for `bunker worker
// list` and the admin ListWorkers endpoint. Each worker wraps one pass in `run()`.

export interface WorkerInfo {
  name: string;
  state: "busy" | "idle";
  /** Passes finished, with and without an error. */
  passes: number;
  errors: number;
  lastStartedAt: number | null;
  lastFinishedAt: number | null;
  lastError: string | null;
  /** Items waiting, for workers that have a queue. */
  queueLength?: number;
}

export class WorkerStats {
  private busy = 0;
  private passes = 0;
  private errors = 0;
  private lastStartedAt: number | null = null;
  private lastFinishedAt: number | null = null;
  private lastError: string | null = null;

  constructor(
    readonly name: string,
    private readonly queueLength?: () => number,
  ) {}

  /** Runs one pass and records it; the pass's result or error goes through unchanged. */
  async run<T>(pass: () => Promise<T>): Promise<T> {
    this.busy++;
    this.lastStartedAt = Date.now();
    try {
      return await pass();
    } catch (err) {
      this.errors++;
      this.lastError = (err as Error).message ?? String(err);
      throw err;
    } finally {
      this.busy--;
      this.passes++;
      this.lastFinishedAt = Date.now();
    }
  }

  /** Records an error a pass handled itself (it logged and carried on). */
  noteError(err: unknown): void {
    this.errors++;
    this.lastError = err instanceof Error ? err.message : String(err);
  }

  info(): WorkerInfo {
    return {
      name: this.name,
      state: this.busy > 0 ? "busy" : "idle",
      passes: this.passes,
      errors: this.errors,
      lastStartedAt: this.lastStartedAt,
      lastFinishedAt: this.lastFinishedAt,
      lastError: this.lastError,
      ...(this.queueLength ? { queueLength: this.queueLength() } : {}),
    };
  }
}
