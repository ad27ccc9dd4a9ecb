// WAL checkpoints off the request thread. SQLite's automatic checkpoint runs inside the commit
// that crosses 1000 WAL pages, on the thread that commits, and fsyncs the WAL and the database:
// measured during a 1 GiB PUT, one such fsync held the request thread for 0.48 s while the disk
// was busy writing blocks. Here the main connection never checkpoints; a worker with its own
// connection does, every CHECKPOINT_INTERVAL_MS. If the worker fails, automatic checkpoints are
// switched back on, so the WAL can never grow without bound.
// The worker is a whole JS isolate with its own connection: it is started by the first tick that
// finds something to copy (a write since the last checkpoint, or a WAL left over at start) and
// stopped after WORKER_IDLE_MS without any, so that an idle node does not pay for it. Started at
// boot it cost ~40 ms before the first request and ~4 MiB of idle RSS (measured on the
// compiled binary); an idle node writes nothing, so it now usually never starts.
import type { Database } from "bun:sqlite";
import { statSync } from "node:fs";
import { logger } from "../util/log";
import { workerSpecifier } from "../util/worker-path";
import { WorkerStats } from "../util/worker-stats";

const log = logger("db");

/** How often the worker checkpoints. */
export const CHECKPOINT_INTERVAL_MS = 1000;
/**
 * Size the WAL file is cut back to when a writer restarts it after a complete checkpoint.
 * Only PASSIVE checkpoints are taken: a TRUNCATE checkpoint waits for the writer lock, and
 * measured here it stalled the request thread's commits for seconds.
 */
export const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;
/** A completely checkpointed WAL of at least this many frames (4 KiB each) is emptied. */
export const WAL_TRUNCATE_MIN_FRAMES = 1024;
/** The worker's connection never waits for a lock longer than this. */
const WORKER_BUSY_TIMEOUT_MS = 200;
/** SQLite's default automatic checkpoint threshold, restored when the worker fails. */
const AUTO_CHECKPOINT_PAGES = 1000;
/** A checkpoint that has not answered after this is treated as a failed worker. */
const CHECKPOINT_TIMEOUT_MS = 60_000;
/** The worker is stopped after this long with nothing to copy; the next write starts it again. */
export const WORKER_IDLE_MS = 30_000;

export type CheckpointRequest =
  | { kind: "open"; id: number; path: string; fsync: boolean; busyTimeoutMs: number }
  | { kind: "checkpoint"; id: number; truncateMinFrames: number };
export type CheckpointReply =
  /** complete: every frame of the WAL is in the database file (always true for "open"). */
  | { id: number; ok: true; complete: boolean }
  | { id: number; ok: false; error: string };

export class Checkpointer {
  readonly stats = new WorkerStats("wal checkpointer");
  private worker: Worker | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** total_changes() of the main connection (set by start()). */
  private changes: () => number = () => 0;
  /** The change count at the last checkpoint that copied the whole WAL. */
  private copiedChanges = 0;
  private lastWorkAt = 0;
  private nextId = 1;
  private pending = new Map<number, (reply: CheckpointReply) => void>();
  private stopped = false;

  constructor(
    private readonly db: Database,
    private readonly path: string,
    private readonly fsync: boolean,
    /** Shorter times than the defaults, for tests. */
    private readonly opts: { intervalMs?: number; workerIdleMs?: number } = {},
  ) {}

  /**
   * Takes checkpoints over from the main connection. The worker itself starts on the first
   * tick with something to copy; a failure to start it hands checkpoints back (see fail()).
   */
  async start(): Promise<void> {
    const changes = this.db.query<{ n: number }, []>("SELECT total_changes() AS n");
    this.changes = () => changes.get()!.n;
    // A WAL with frames at start (a crash, or this start's own migrations) needs one pass.
    this.copiedChanges = walSize(this.path) > 0 ? -1 : this.changes();
    this.db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    this.db.exec("PRAGMA wal_autocheckpoint = 0");
    this.schedule();
  }

  /** Whether the worker isolate is running (it is started on demand). */
  get workerRunning(): boolean {
    return this.worker !== undefined;
  }

  /** Stops the worker; the main connection checkpoints by itself again (and at close). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.shutDownWorker();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), this.opts.intervalMs ?? CHECKPOINT_INTERVAL_MS);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    // Every write goes through the main connection, so its change count says whether the WAL
    // has grown since the last complete checkpoint (a row count, read without touching the WAL).
    const changes = this.changes();
    if (changes === this.copiedChanges) {
      if (this.worker && Date.now() - this.lastWorkAt >= (this.opts.workerIdleMs ?? WORKER_IDLE_MS)) this.retireWorker();
      return this.schedule();
    }
    if (!this.worker && !(await this.startWorker())) return;
    const reply = await this.stats.run(() => this.call({ kind: "checkpoint", id: this.nextId++, truncateMinFrames: WAL_TRUNCATE_MIN_FRAMES }));
    if (this.stopped) return;
    if (!reply.ok) return this.fail(`checkpoint failed: ${reply.error}`);
    // Frames a reader kept from being copied are tried again at the next tick.
    if (reply.complete) this.copiedChanges = changes;
    this.lastWorkAt = Date.now();
    this.schedule();
  }

  /** Starts the worker and opens its connection; false (and checkpoints handed back) if it cannot. */
  private async startWorker(): Promise<boolean> {
    const worker = new Worker(workerSpecifier("db", "checkpoint-worker", new URL("./checkpoint-worker.ts", import.meta.url)));
    this.worker = worker;
    worker.onmessage = (ev: MessageEvent<CheckpointReply>) => {
      const done = this.pending.get(ev.data.id);
      this.pending.delete(ev.data.id);
      done?.(ev.data);
    };
    worker.onerror = (ev) => this.fail(`checkpoint worker crashed: ${ev.message}`);
    // An idle worker must not keep the process alive.
    worker.unref();
    const opened = await this.call({ kind: "open", id: this.nextId++, path: this.path, fsync: this.fsync, busyTimeoutMs: WORKER_BUSY_TIMEOUT_MS });
    if (this.stopped) return false;
    if (!opened.ok) {
      this.fail(`checkpoint worker cannot open the database: ${opened.error}`);
      return false;
    }
    return true;
  }

  /** Stops an idle worker to give its memory back; the next write starts a new one. */
  private retireWorker(): void {
    this.worker?.terminate();
    this.worker = undefined;
  }

  private call(msg: CheckpointRequest): Promise<CheckpointReply> {
    return new Promise((resolve) => {
      const timeout = setTimeout(() => {
        this.pending.delete(msg.id);
        resolve({ id: msg.id, ok: false, error: `no answer within ${CHECKPOINT_TIMEOUT_MS} ms` });
      }, CHECKPOINT_TIMEOUT_MS);
      this.pending.set(msg.id, (reply) => {
        clearTimeout(timeout);
        resolve(reply);
      });
      this.worker!.postMessage(msg);
    });
  }

  private fail(why: string): void {
    if (this.stopped) return;
    log.error(`${why}; the request thread checkpoints by itself from now on`);
    this.stats.noteError(why);
    this.stopped = true;
    clearTimeout(this.timer);
    this.shutDownWorker();
  }

  private shutDownWorker(): void {
    this.db.exec(`PRAGMA wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
    this.worker?.terminate();
    this.worker = undefined;
    for (const done of this.pending.values()) done({ id: 0, ok: false, error: "checkpointer stopped" });
    this.pending.clear();
  }
}

/** Size of the WAL file next to the database at `path`, 0 when there is none. */
function walSize(path: string): number {
  try {
    return statSync(`${path}-wal`).size;
  } catch {
    return 0;
  }
}
