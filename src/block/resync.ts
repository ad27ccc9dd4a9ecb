// Block resync (Garage's resync.rs): the persisted queue (block_resync) of blocks this node
// should hold and may lack, and the worker that checks them and fetches missing ones from
// another node of their partition, retrying a failing block with a doubling backoff. Blocks are
// queued when a read finds one missing here, when references arrive from peers, when scrub
// moves a corrupted one aside, and by `bunker repair blocks`.
import type { Database, Statement } from "bun:sqlite";
import { partitionOfHashHex, type Placement } from "../cluster/layout";
import { assert } from "../util/assert";
import type { BlockRoom, BufferPool } from "../util/buffer-pool";
import type { BlockHash } from "../util/ids";
import type { MemoryBudget } from "../util/memory-budget";
import { WorkerLoop } from "../util/worker-loop";
import type { RemoteBlocks } from "./manager";
import type { BlockRc } from "./rc";
import type { LocalBlockStore } from "./store";

/** How often the resync queue is looked at, and how many entries a pass takes. */
const RESYNC_INTERVAL_MS = 1_000;
const RESYNC_BATCH = 32;
/** Retry delays of a failing resync: doubling from the first to the longest. */
const RESYNC_FIRST_BACKOFF_MS = 10_000;
const RESYNC_MAX_BACKOFF_MS = 60 * 60 * 1000;
/** Failing blocks listed by `bunker block list-errors`. */
const RESYNC_ERRORS_LISTED = 1000;
/** Characters of a fetch error kept with the queue entry. */
const RESYNC_ERROR_CHARS = 500;

export interface ResyncError {
  hash: string;
  errors: number;
  nextTry: number;
  lastError: string | null;
}

export class BlockResync {
  readonly loop: WorkerLoop<void>;
  private readonly enqueueStmt: Statement;
  private readonly dueStmt: Statement;
  private readonly doneStmt: Statement;
  private readonly failedStmt: Statement;
  private readonly countStmt: Statement;
  private readonly errorsStmt: Statement;

  constructor(
    private readonly db: Database,
    private readonly rc: BlockRc,
    private readonly store: LocalBlockStore,
    private readonly placement: Placement,
    /** Writes a fetched block here (manager.ts storeLocal: under the hash lock). */
    private readonly storeLocal: (hash: BlockHash, data: Uint8Array, compressed: boolean) => Promise<void>,
    private readonly remote: RemoteBlocks | undefined,
    /** Where a fetched block's memory comes from: the loop's budget (the node's own requests' share), and the block buffer pool. */
    memory: { budget: MemoryBudget; pool: BufferPool },
    /** Clock of the backoff and of what is due (tests move it). */
    private readonly now: () => number = Date.now,
  ) {
    this.enqueueStmt = db.query(`INSERT INTO block_resync (hash, next_try) VALUES (?, ?) ON CONFLICT(hash) DO NOTHING`);
    this.dueStmt = db.query(`SELECT hash, errors FROM block_resync WHERE next_try <= ? ORDER BY next_try LIMIT ?`);
    this.doneStmt = db.query(`DELETE FROM block_resync WHERE hash = ?`);
    this.failedStmt = db.query(`UPDATE block_resync SET errors = errors + 1, next_try = ?, last_error = ? WHERE hash = ?`);
    this.countStmt = db.query(`SELECT count(*) AS n FROM block_resync`);
    this.errorsStmt = db.query(`SELECT hash, errors, next_try, last_error FROM block_resync WHERE errors > 0 ORDER BY errors DESC LIMIT ?`);
    this.loop = new WorkerLoop({ name: "block resync", intervalMs: RESYNC_INTERVAL_MS, queueLength: () => this.queueLength(), budget: memory.budget }, ({ budget }) =>
      this.pass({ lease: (bytes) => budget!.acquireUpTo(bytes), pool: memory.pool }),
    );
  }

  get stats() {
    return this.loop.stats;
  }

  /** Queues blocks to check (and fetch if missing); `delayMs` lets in-flight writes land first. */
  enqueue(hashes: Iterable<BlockHash>, delayMs = 0): void {
    const at = this.now() + delayMs;
    this.db.transaction(() => {
      for (const h of hashes) this.enqueueStmt.run(h, at);
    }).immediate();
  }

  /** Blocks whose resync keeps failing, for `bunker block list-errors`. */
  errors(): ResyncError[] {
    return (this.errorsStmt.all(RESYNC_ERRORS_LISTED) as { hash: string; errors: number; next_try: number; last_error: string | null }[]).map((r) => ({
      hash: r.hash,
      errors: r.errors,
      nextTry: r.next_try,
      lastError: r.last_error,
    }));
  }

  queueLength(): number {
    return (this.countStmt.get() as { n: number }).n;
  }

  /** One pass over the due entries of the queue (or the one under way). */
  run(): Promise<void> {
    return this.loop.run();
  }

  private async pass(room: BlockRoom): Promise<void> {
    const due = this.dueStmt.all(this.now(), RESYNC_BATCH) as { hash: BlockHash; errors: number }[];
    for (const { hash, errors } of due) {
      try {
        await this.resyncOne(hash, room);
        this.doneStmt.run(hash);
      } catch (err) {
        const backoff = Math.min(RESYNC_MAX_BACKOFF_MS, RESYNC_FIRST_BACKOFF_MS * 2 ** errors);
        this.failedStmt.run(this.now() + backoff, (err as Error).message.slice(0, RESYNC_ERROR_CHARS), hash);
        this.stats.noteError(err);
      }
    }
  }

  private async resyncOne(hash: BlockHash, room: BlockRoom): Promise<void> {
    if (!this.rc.isReferenced(hash)) return; // no longer needed here
    const self = this.placement.selfId;
    const partition = partitionOfHashHex(hash);
    const holders = new Set(this.placement.writeSets(partition).flat());
    if (!holders.has(self) || (await this.store.has(hash))) return;
    for (const node of this.placement.readNodes(partition)) {
      if (node === self) continue;
      assert(this.remote !== undefined, `no RPC route to node ${node.slice(0, 16)} (single-node build)`);
      // One block at a time, leased once its size is known: the pass holds no other lease.
      const got = await this.remote.get(node, hash, room).catch(() => null);
      if (got) {
        try {
          await this.storeLocal(hash, got.data, got.compressed);
        } finally {
          got.release();
          room.pool.giveOrFree(got.data);
        }
        return;
      }
    }
    throw new Error("no reachable node has this block");
  }
}
