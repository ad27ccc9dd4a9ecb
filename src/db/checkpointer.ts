// WAL checkpoints off the request thread. SQLite's automatic checkpoint runs inside the commit
// that crosses 1000 WAL pages, on the thread that commits, and fsyncs the WAL and the database:
// measured during a 1 GiB PUT, one such fsync held the request thread for 0.48 s while the disk
// was busy writing blocks. Here the main connection never checkpoints; a worker with its own
// connection does, every CHECKPOINT_INTERVAL_MS. If the worker fails, automatic checkpoints are
// switched back on, so the WAL can never grow without bound.
import type { Database } from "bun:sqlite";
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

export type CheckpointRequest =
  | { kind: "open"; id: number; path: string; fsync: boolean; busyTimeoutMs: number }
  | { kind: "checkpoint"; id: number; truncateMinFrames: number };
export type CheckpointReply =
  | { id: number; ok: true }
  | { id: number; ok: false; error: string };

export class Checkpointer {
  readonly stats = new WorkerStats("wal checkpointer");
  private worker: Worker | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private nextId = 1;
  private pending = new Map<number, (reply: CheckpointReply) => void>();
  private stopped = false;

  constructor(
    private readonly db: Database,
    private readonly path: string,
    private readonly fsync: boolean,
  ) {}

  /** Takes checkpoints over from the main connection. */
  async start(): Promise<void> {
    const worker = new Worker(workerSpecifier("db", "checkpoint-worker", new URL("./checkpoint-worker.ts", import.meta.url)));
    this.worker = worker;
    worker.onmessage = (ev: MessageEvent<CheckpointReply>) => {
      const done = this.pending.get(ev.data.id);
      this.pending.delete(ev.data.id);
      done?.(ev.data);
    };
    worker.onerror = (ev) => this.fail(`checkpoint worker crashed: ${ev.message}`);
    const opened = await this.call({ kind: "open", id: this.nextId++, path: this.path, fsync: this.fsync, busyTimeoutMs: WORKER_BUSY_TIMEOUT_MS });
    if (!opened.ok) {
      this.fail(`checkpoint worker cannot open the database: ${opened.error}`);
      return;
    }
    this.db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    this.db.exec("PRAGMA wal_autocheckpoint = 0");
    worker.unref();
    this.schedule();
  }

  /** Stops the worker; the main connection checkpoints by itself again (and at close). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.shutDownWorker();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), CHECKPOINT_INTERVAL_MS);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    const reply = await this.stats.run(() => this.call({ kind: "checkpoint", id: this.nextId++, truncateMinFrames: WAL_TRUNCATE_MIN_FRAMES }));
    if (this.stopped) return;
    if (!reply.ok) return this.fail(`checkpoint failed: ${reply.error}`);
    this.schedule();
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
