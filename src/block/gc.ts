// Block GC: deletes the blocks no reference has needed for BLOCK_GC_DELAY_MS (rc.ts keeps the
// counts and the deletion times), a bounded batch at a time, each under its hash lock with the
// count checked again there, so a block stored again meanwhile is kept.
import { logger } from "../util/log";
import { WorkerLoop } from "../util/worker-loop";
import type { HashLocks } from "./hash-lock";
import type { BlockRc } from "./rc";
import type { LocalBlockStore } from "./store";

const log = logger("block");

/** Blocks deleted per GC round, so deletions never flood the disk (docs/stack-facts.md#other: discard). */
const GC_BATCH = 64;
const GC_INTERVAL_MS = 30_000;

export class BlockGc {
  readonly loop: WorkerLoop<void>;

  constructor(
    private readonly rc: BlockRc,
    private readonly store: LocalBlockStore,
    private readonly locks: HashLocks,
    /** Clock the deletion times are compared with (tests move it). */
    private readonly now: () => number = Date.now,
  ) {
    this.loop = new WorkerLoop({ name: "block gc", intervalMs: GC_INTERVAL_MS }, ({ signal }) => this.pass(signal));
  }

  get stats() {
    return this.loop.stats;
  }

  /** One pass: deletes blocks whose last reference went away more than the grace delay ago. */
  run(): Promise<void> {
    return this.loop.run();
  }

  private async pass(signal: AbortSignal): Promise<void> {
    const now = this.now();
    try {
      while (!signal.aborted) {
        const due = this.rc.dueForDeletion(now, GC_BATCH);
        if (due.length === 0) break;
        for (const hash of due) {
          await this.locks.with(hash, async () => {
            // Checked again under the lock: a new reference may have arrived meanwhile.
            if (this.rc.forgetIfDue(hash, now)) await this.store.delete(hash);
          });
        }
      }
    } catch (err) {
      log.warn(`gc: ${(err as Error).message}`);
      this.stats.noteError(err);
    }
  }
}
