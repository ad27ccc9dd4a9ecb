// Group commit: writes requested by concurrent requests within one event-loop turn share
// one sqlite transaction (one WAL append, one fsync with metadata_fsync) instead of one
// each. Each write runs in its own savepoint, so one failing write fails alone.
// Transactions start IMMEDIATE: they take the write lock first, waiting (busy_timeout) while
// the checkpoint worker empties the WAL, where a read-then-write transaction whose snapshot the
// WAL reset made stale would fail at once with "database is locked".
import type { Database } from "bun:sqlite";

/** Most writes grouped in one transaction; more wait for the next turn. */
export const MAX_WRITES_PER_COMMIT = 512;

interface PendingWrite {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class GroupCommitter {
  private pending: PendingWrite[] = [];
  private scheduled = false;

  constructor(private readonly db: Database) {}

  /** Runs `fn` inside a transaction shared with other writes of this turn; resolves after commit. */
  write<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ run: fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Runs `fn` in its own transaction right now (start-up, tests, admin paths). */
  writeNow<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  private flush(): void {
    const batch = this.pending.splice(0, MAX_WRITES_PER_COMMIT);
    if (this.pending.length > 0) setImmediate(() => this.flush());
    else this.scheduled = false;

    // Fast path: the whole batch in one transaction, no savepoints (they double the
    // statements per write). A write that throws is rare: the batch then rolls back and is
    // replayed with one savepoint per write, so that write fails alone.
    const values: unknown[] = [];
    try {
      this.db.transaction(() => {
        for (const w of batch) values.push(w.run());
      }).immediate();
      batch.forEach((w, i) => w.resolve(values[i]));
      return;
    } catch {
      // fall through to the isolated replay
    }
    const outcomes: { ok: boolean; value: unknown }[] = [];
    try {
      this.db.transaction(() => {
        for (const w of batch) {
          try {
            outcomes.push({ ok: true, value: this.db.transaction(w.run)() });
          } catch (err) {
            outcomes.push({ ok: false, value: err });
          }
        }
      }).immediate();
    } catch (err) {
      // The commit itself failed (disk full, I/O error): nothing of this batch is durable.
      for (const w of batch) w.reject(err);
      return;
    }
    batch.forEach((w, i) => (outcomes[i]!.ok ? w.resolve(outcomes[i]!.value) : w.reject(outcomes[i]!.value)));
  }
}
