// One loop of periodic background work (block GC, resync, anti-entropy, scrub, ...): when its
// passes run (a timer, a poll, or a request), that at most one runs at a time, its stats for
// `bunker worker list`, its stop, and the memory budget its buffers come from. What a pass does
// belongs to the worker that owns the loop.
import { assert } from "./assert";
import { logger } from "./log";
import type { MemoryBudget } from "./memory-budget";
import { WorkerStats } from "./worker-stats";

const log = logger("worker");

/** What a pass is given. */
export interface PassContext {
  /** Aborted by stop(): a long pass looks at it between items and returns early. */
  readonly signal: AbortSignal;
  /** Where the pass leases its buffers, for workers that hold block-sized ones. */
  readonly budget: MemoryBudget | undefined;
}

export type PassOutcome<T> = { ok: true; result: T } | { ok: false; error: unknown };

export interface WorkerLoopOptions<T> {
  /** Shown by `bunker worker list`. */
  name: string;
  /** Wait from the end of a pass to the next timed one; without it, passes run only when asked. */
  intervalMs?: number;
  /** Wait from start() to the first timed pass (default intervalMs); 0 runs one at once. */
  firstDelayMs?: number;
  /** The wait after a pass, chosen from how it went (a busy worker comes back sooner). */
  nextDelayMs?: (outcome: PassOutcome<T>) => number;
  /** Looked at every `everyMs` while no pass runs: true starts one (a layout change, a schedule come due). */
  poll?: { everyMs: number; due: () => boolean };
  /**
   * What run() during a pass gets: by default that pass; with `again`, a whole pass that starts
   * after it (calls meanwhile share it), for work the pass under way may already be past.
   */
  again?: boolean;
  /** Items waiting, for the stats. */
  queueLength?: () => number;
  budget?: MemoryBudget;
}

export class WorkerLoop<T> {
  readonly stats: WorkerStats;
  private running: Promise<T> | undefined;
  /** The pass asked for during the running one (`again`). */
  private next: Promise<T> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  private abort = new AbortController();
  private state: "new" | "started" | "stopped" = "new";

  constructor(
    private readonly opts: WorkerLoopOptions<T>,
    private readonly pass: (ctx: PassContext) => Promise<T>,
  ) {
    const positive = (ms: number | undefined) => ms === undefined || (Number.isFinite(ms) && ms > 0);
    assert(positive(opts.intervalMs) && positive(opts.poll?.everyMs), `${opts.name}: periods are positive`);
    const timed = opts.intervalMs !== undefined;
    assert(timed || (opts.firstDelayMs === undefined && opts.nextDelayMs === undefined), `${opts.name}: delays need an interval`);
    assert(opts.firstDelayMs === undefined || opts.firstDelayMs >= 0, `${opts.name}: the first delay is not negative`);
    this.stats = new WorkerStats(opts.name, opts.queueLength);
  }

  /** Starts the timer and the poll. */
  start(): void {
    assert(this.state !== "started", `${this.opts.name} is not started twice`);
    this.state = "started";
    this.abort = new AbortController();
    const poll = this.opts.poll;
    if (poll) {
      this.pollTimer = setInterval(() => {
        try {
          if (!this.running && poll.due()) this.wake();
        } catch (err) {
          log.warn(`${this.opts.name}: ${(err as Error).message}`);
        }
      }, poll.everyMs);
      this.pollTimer.unref?.();
    }
    if (this.opts.firstDelayMs === 0) this.wake();
    else this.arm(this.opts.firstDelayMs ?? this.opts.intervalMs);
  }

  /** Clears the timers, tells the running pass to stop, and waits for it (and one asked to follow it). */
  async stop(): Promise<void> {
    this.state = "stopped";
    clearTimeout(this.timer);
    clearInterval(this.pollTimer);
    this.abort.abort();
    for (let p = this.next ?? this.running; p; p = this.next ?? this.running) await p.catch(() => {});
  }

  /** One pass, or the one under way (see `again`); its result or error goes to the caller. */
  run(): Promise<T> {
    // After stop() the node is closing what passes use (its database): nothing new starts.
    if (this.state === "stopped") return Promise.reject(new Error(`${this.opts.name} is stopped`));
    if (!this.running) return this.begin();
    if (!this.opts.again) return this.running;
    this.next ??= this.running
      .catch(() => {})
      .then(() => {
        this.next = undefined;
        return this.run();
      });
    return this.next;
  }

  /** Starts a pass without waiting for it, between start() and stop(); an error is logged (and in the stats). */
  wake(): void {
    if (this.state !== "started") return;
    this.run().catch((err: unknown) => log.warn(`${this.opts.name}: ${err instanceof Error ? err.message : String(err)}`));
  }

  private begin(): Promise<T> {
    // The next timed pass is counted from the end of this one.
    clearTimeout(this.timer);
    const ctx: PassContext = { signal: this.abort.signal, budget: this.opts.budget };
    const pass: Promise<T> = this.stats.run(() => this.pass(ctx)).then(
      (result) => {
        this.ended(pass, { ok: true, result });
        return result;
      },
      (error: unknown) => {
        this.ended(pass, { ok: false, error });
        throw error;
      },
    );
    this.running = pass;
    return pass;
  }

  private ended(pass: Promise<T>, outcome: PassOutcome<T>): void {
    assert(this.running === pass, `${this.opts.name} runs one pass at a time`);
    this.running = undefined;
    let delay = this.opts.intervalMs;
    try {
      delay = this.opts.nextDelayMs?.(outcome) ?? delay;
    } catch (err) {
      // A loop whose next timer is never armed would stop silently: fall back to the interval.
      log.warn(`${this.opts.name}: choosing the next delay failed (${(err as Error).message}); using the interval`);
    }
    this.arm(delay);
  }

  private arm(ms: number | undefined): void {
    clearTimeout(this.timer);
    if (ms === undefined || this.state !== "started") return;
    this.timer = setTimeout(() => this.wake(), ms);
    this.timer.unref?.();
  }
}
