// Logging of events that anyone can repeat at will (refused connections, refused handshakes):
// at most one line per key (e.g. a source address) per interval, and that line says how many
// events of the key were left out since the previous one. A flood then costs a few lines a
// minute instead of filling the disk and burying every other line.

/**
 * Most keys remembered at once. Past it, the events of keys not yet remembered share one line
 * per interval: someone with many source addresses cannot grow the map without bound.
 */
const MAX_TRACKED_KEYS = 1024;
/** The shared key of the events beyond MAX_TRACKED_KEYS. */
const OVERFLOW_KEY = "\u0000overflow";

export class RateLimitedLog {
  private readonly seen = new Map<string, { loggedAt: number; suppressed: number }>();

  constructor(
    readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Calls `emit` with the number of events of `key` left out since its last line, unless `key`
   * had a line within the interval: then the event is only counted.
   */
  note(key: string, emit: (suppressed: number) => void): void {
    const t = this.now();
    if (!this.seen.has(key) && this.seen.size >= MAX_TRACKED_KEYS) {
      this.forgetOlderThan(t - this.intervalMs);
      if (this.seen.size >= MAX_TRACKED_KEYS) key = OVERFLOW_KEY;
    }
    const entry = this.seen.get(key);
    if (entry && t - entry.loggedAt < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    this.seen.set(key, { loggedAt: t, suppressed: 0 });
    emit(entry?.suppressed ?? 0);
  }

  private forgetOlderThan(cutoff: number): void {
    for (const [key, entry] of this.seen) if (entry.loggedAt <= cutoff) this.seen.delete(key);
  }
}

/** " (N more <what> since the last such line)" for a line standing for `suppressed` left-out events, else "". */
export function suppressedNote(suppressed: number, what: string): string {
  return suppressed > 0 ? ` (${suppressed} more ${what} since the last such line, not logged)` : "";
}
