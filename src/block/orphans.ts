// Orphan collection: deletes block files that no reference ever counted (an upload killed
// between writing a block and recording its reference) once they are ORPHAN_GRACE_MS old. It
// runs once when the node starts.
import { stat } from "node:fs/promises";
import type { BlockHash } from "../util/ids";
import { logger } from "../util/log";
import { WorkerLoop } from "../util/worker-loop";
import type { HashLocks } from "./hash-lock";
import type { BlockRc } from "./rc";
import type { LocalBlockStore } from "./store";

const log = logger("block");

/** A block file with no reference row is an orphan of a crashed upload once this old. */
export const ORPHAN_GRACE_MS = 60 * 60 * 1000;

export class OrphanCollector {
  /** Its pass returns how many files it deleted. */
  readonly loop: WorkerLoop<number>;

  constructor(
    private readonly rc: BlockRc,
    private readonly store: LocalBlockStore,
    private readonly locks: HashLocks,
    private readonly now: () => number = Date.now,
    private readonly graceMs = ORPHAN_GRACE_MS,
  ) {
    this.loop = new WorkerLoop({ name: "orphan block collector" }, ({ signal }) => this.pass(signal));
  }

  get stats() {
    return this.loop.stats;
  }

  /** One scan of the store (or the one under way); resolves to the number of files deleted. */
  run(): Promise<number> {
    return this.loop.run();
  }

  private async pass(signal: AbortSignal): Promise<number> {
    const now = this.now();
    let deleted = 0;
    for await (const hash of this.store.list()) {
      if (signal.aborted) break;
      if (!(await this.isOrphan(hash, now))) continue;
      // Checked again under the lock: a writer may have just stored it again (refreshing its
      // mtime) and not yet committed the reference.
      if (await this.locks.with(hash, async () => (await this.isOrphan(hash, now)) && (await this.store.delete(hash)))) deleted++;
    }
    if (deleted > 0) log.info(`collected ${deleted} orphan blocks`);
    return deleted;
  }

  private async isOrphan(hash: BlockHash, now: number): Promise<boolean> {
    if (this.rc.isKnown(hash)) return false;
    const mtime = await this.mtimeOf(hash);
    return mtime !== undefined && now - mtime >= this.graceMs;
  }

  private async mtimeOf(hash: BlockHash): Promise<number | undefined> {
    for (const compressed of [false, true]) {
      try {
        return (await stat(this.store.path(hash, compressed))).mtimeMs;
      } catch {
        // try the other variant
      }
    }
    return undefined;
  }
}
