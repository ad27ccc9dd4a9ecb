// Block offload: after a layout change, hands the blocks of partitions this node no longer
// holds in any live layout version (the version that moved them away is retired, so their new
// nodes finished syncing) to each of their nodes that lacks them, then deletes them here. It
// walks the whole store, so it runs rarely, and at once when the set of such partitions changes.
import { partitionOfHashHex, releasedPartitions, type Placement } from "../cluster/layout";
import { assert } from "../util/assert";
import type { BlockRoom, BufferPool } from "../util/buffer-pool";
import type { BlockHash } from "../util/ids";
import type { MemoryBudget } from "../util/memory-budget";
import { logger } from "../util/log";
import { WorkerLoop } from "../util/worker-loop";
import type { HashLocks } from "./hash-lock";
import type { RemoteBlocks } from "./manager";
import type { LocalBlockStore } from "./store";

const log = logger("block");

/** How often a node looks for blocks it no longer holds (also run by `bunker repair blocks`). */
const OFFLOAD_INTERVAL_MS = 10 * 60 * 1000;
/**
 * How often a node checks whether the layout took partitions away from it; when the set of such
 * partitions changes, an offload pass starts at once instead of at the next interval.
 */
export const OFFLOAD_LAYOUT_CHECK_MS = 5_000;

export class BlockOffload {
  /** Its pass returns how many blocks left this node. */
  readonly loop: WorkerLoop<number>;
  /** The partitions this node held in no live layout version at the last check, as a key. */
  private lastReleased = "";

  constructor(
    private readonly store: LocalBlockStore,
    private readonly placement: Placement,
    private readonly locks: HashLocks,
    /** Undefined on a single-node build, where nothing is ever offloaded (the loop is not started). */
    private readonly remote: RemoteBlocks | undefined,
    /** Where the block being handed over is read to: the loop's budget (the node's own requests' share), and the block buffer pool. */
    memory: { budget: MemoryBudget; pool: BufferPool },
  ) {
    this.loop = new WorkerLoop(
      { name: "block offload", intervalMs: OFFLOAD_INTERVAL_MS, poll: { everyMs: OFFLOAD_LAYOUT_CHECK_MS, due: () => this.layoutChanged() }, budget: memory.budget },
      ({ signal, budget }) => this.pass(signal, { lease: (bytes) => budget!.acquireUpTo(bytes), pool: memory.pool }),
    );
  }

  get stats() {
    return this.loop.stats;
  }

  /**
   * One pass over the stored blocks (or the one under way). A node that cannot be reached
   * leaves the block in place until a later pass. Returns how many blocks left this node.
   */
  run(): Promise<number> {
    return this.loop.run();
  }

  /**
   * Whether the partitions this node no longer holds are not those of the last check and some
   * are left. Looked at only between passes: a pass under way may have gone past blocks of newly
   * released partitions, so the change is seen by the first check after it.
   */
  private layoutChanged(): boolean {
    const released = releasedPartitions(this.placement);
    const key = released.map((r) => r.partition).join(",");
    if (key === this.lastReleased) return false;
    this.lastReleased = key;
    return released.length > 0;
  }

  private async pass(signal: AbortSignal, room: BlockRoom): Promise<number> {
    const self = this.placement.selfId;
    let moved = 0;
    for await (const hash of this.store.list()) {
      if (signal.aborted) break;
      const holders = new Set(this.placement.writeSets(partitionOfHashHex(hash)).flat());
      if (holders.size === 0 || holders.has(self)) continue;
      try {
        if (await this.locks.with(hash, () => this.offloadOne(hash, holders, room))) moved++;
      } catch (err) {
        this.stats.noteError(err);
        log.debug(`offload of ${hash.slice(0, 16)}: ${(err as Error).message}`);
      }
    }
    if (moved > 0) log.info(`offloaded ${moved} blocks this node no longer holds`);
    return moved;
  }

  /** One block at a time, under one lease. */
  private async offloadOne(hash: BlockHash, holders: Set<string>, room: BlockRoom): Promise<boolean> {
    const stored = await this.store.readLeased(hash, room);
    if (!stored) return false;
    try {
      assert(this.remote !== undefined, "a node that offloads blocks has an RPC route to their holders");
      for (const node of holders) {
        if (!(await this.remote.has(node, hash))) await this.remote.put(node, hash, stored.data, stored.compressed);
      }
    } finally {
      stored.release();
      room.pool.giveOrFree(stored.data);
    }
    return this.store.delete(hash);
  }
}
