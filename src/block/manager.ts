// The block manager: stores a block on the nodes of its partition (compressed first when
// that helps), reads it back from the nearest copy, and deletes blocks whose reference
// count has stayed at zero past the grace delay.
import type { Database } from "bun:sqlite";
import { stat } from "node:fs/promises";
import { partitionOfHashHex, releasedPartitions, type Placement } from "../cluster/layout";
import { replicaQuorum } from "../table/quorum";
import { assert } from "../util/assert";
import { logger } from "../util/log";
import { compressIfSmaller, type ZstdCodec } from "./codec";
import type { LocalBlockStore, StoredBlock } from "./store";
import { WorkerStats } from "../util/worker-stats";
import { BufferPool, lend } from "../util/buffer-pool";
import { parseBlockHash, type BlockHash } from "../util/ids";

const log = logger("block");

/**
 * Where a block stands against the write quorum (presence): `quorum`, a write quorum of each
 * of its node sets holds it; `short`, in each set too many nodes answered that they lack it for
 * a quorum to hold it; `unknown`, neither could be told (nodes that did not answer).
 */
export type BlockPresence = "quorum" | "short" | "unknown";

/** How a block reaches another node (the RPC layer provides it). */
export interface RemoteBlocks {
  /** `signal` aborts the transfer: once the put settles, `data` is no longer read. */
  put(node: string, hashHex: BlockHash, data: Uint8Array, compressed: boolean, signal?: AbortSignal): Promise<void>;
  has(node: string, hashHex: BlockHash): Promise<boolean>;
  get(node: string, hashHex: BlockHash): Promise<{ data: Uint8Array; compressed: boolean } | null>;
}

export class BlockNotFoundError extends Error {
  constructor(readonly hashHex: string) {
    super(`block ${hashHex} is missing on every node that should hold it`);
  }
}

/** How long a block with no reference stays on disk before GC may delete it (Garage: 10 min). */
export const BLOCK_GC_DELAY_MS = 10 * 60 * 1000;
/** Bytes sampled to decide whether a block is worth compressing. */
const COMPRESSION_PROBE_BYTES = 32 * 1024;
/** A sample must shrink below this ratio for the whole block to be compressed. */
const COMPRESSION_PROBE_MAX_RATIO = 0.95;
/** How often the resync queue is looked at, and how many entries a pass takes. */
const RESYNC_INTERVAL_MS = 1_000;
const RESYNC_BATCH = 32;
/** Bytes of block copies that may still be written after their put returned (Garage: block_ram_buffer_max). */
export const BACKGROUND_WRITE_BYTES_MAX = 64 * 1024 * 1024;
/** How often a node looks for blocks it no longer holds (also run by `bunker repair blocks`). */
const OFFLOAD_INTERVAL_MS = 10 * 60 * 1000;
/**
 * How often a node checks whether the layout took partitions away from it; when the set of such
 * partitions changes, an offload pass starts at once instead of at the next interval.
 */
export const OFFLOAD_LAYOUT_CHECK_MS = 5_000;
/**
 * Longest a presence check waits for a node's answer: a reader waits on it, and a node that
 * does not answer this fast counts as unknown (a reader then serves the previous version).
 */
export const PRESENCE_TIMEOUT_MS = 5_000;
/** Free block-sized buffers kept for reads streamed to clients (16 MiB with 1 MiB blocks). */
const READ_BUFFERS_KEPT = 16;
/** Block hashes read per query when `repair blocks` queues every block. */
const REPAIR_PAGE = 1000;
/** Retry delays of a failing resync: doubling from the first to the longest. */
const RESYNC_FIRST_BACKOFF_MS = 10_000;
const RESYNC_MAX_BACKOFF_MS = 60 * 60 * 1000;
/** Blocks deleted per GC round, so deletions never flood the disk (docs/stack-facts.md#other: discard). */
const GC_BATCH = 64;
const GC_INTERVAL_MS = 30_000;
/** A block file with no reference row is an orphan of a crashed upload once this old. */
export const ORPHAN_GRACE_MS = 60 * 60 * 1000;

export interface BlockManagerOptions {
  blockSize: number;
  /** zstd level, or null when compression is off. */
  compressionLevel: number | null;
}

export class BlockManager {
  private gcTimer: ReturnType<typeof setInterval> | undefined;
  private gcRunning: Promise<void> | undefined;
  private offloadRunning: Promise<number> | undefined;
  /** Bytes held by block copies still being written after their put returned. */
  private backgroundBytes = 0;
  private offloadTimer: ReturnType<typeof setInterval> | undefined;
  private layoutTimer: ReturnType<typeof setInterval> | undefined;
  /** The partitions this node held in no live layout version at the last check, as a key. */
  private lastReleased = "";
  readonly offloadStats = new WorkerStats("block offload");
  readonly gcStats = new WorkerStats("block gc");
  readonly orphanStats = new WorkerStats("orphan block collector");
  readonly resyncStats = new WorkerStats("block resync", () => this.resyncQueueLength());
  private readonly hashLocks = new Map<string, Promise<void>>();
  private resyncTimer: ReturnType<typeof setInterval> | undefined;
  private resyncRunning: Promise<void> | undefined;
  private readonly postponeGc;
  private readonly readBuffers: BufferPool;
  /** A read first: the update (its own commit) runs only for the rare block awaiting GC. */
  private readonly pendingGc;

  constructor(
    readonly store: LocalBlockStore,
    private readonly placement: Placement,
    private readonly codec: ZstdCodec,
    private readonly db: Database,
    private readonly opts: BlockManagerOptions,
    private readonly remote?: RemoteBlocks,
  ) {
    this.readBuffers = new BufferPool(opts.blockSize, READ_BUFFERS_KEPT);
    this.pendingGc = db.query(`SELECT 1 FROM block_rc WHERE hash = ? AND deletable_at IS NOT NULL`);
    this.postponeGc = db.query(`UPDATE block_rc SET deletable_at = max(deletable_at, ?2) WHERE hash = ?1 AND deletable_at IS NOT NULL`);
  }

  /**
   * Stores a block (plaintext, named by its BLAKE3 hash) on a write quorum of its nodes and
   * resolves then; the other copies go on in the background. Those still read `plain` (or its
   * compressed form): the caller must leave `plain` untouched until `settled` resolves (it
   * never rejects). Background copies hold at most BACKGROUND_WRITE_BYTES_MAX; beyond that a
   * put waits for all its copies. A put that fails has no write left in flight.
   */
  async put(hashHex: BlockHash, plain: Uint8Array): Promise<{ settled: Promise<void> }> {
    const { data, compressed } =
      this.opts.compressionLevel === null || !(await this.looksCompressible(plain))
        ? { data: plain, compressed: false }
        : await compressIfSmaller(this.codec, plain, this.opts.compressionLevel);
    const partition = partitionOfHashHex(hashHex);
    const writes: Promise<void>[] = [];
    let running = 0;
    const abort = new AbortController();
    const write = (node: string) => {
      running++;
      const w = this.putTo(node, hashHex, data, compressed, abort.signal).finally(() => running--);
      writes.push(w);
      return w;
    };
    try {
      // A peer known down is skipped, one silent for REQUEST_QUORUM_TIMEOUT_MS gives up its
      // place; a slow transfer that still gets credit back goes on.
      await Promise.all(
        this.placement.writeSets(partition).map((nodes) =>
          replicaQuorum(nodes, write, Math.min(this.placement.quorums.write, nodes.length), { liveness: this.placement.liveness, mode: "progress" }),
        ),
      );
    } catch (err) {
      // A write still streaming would read the caller's buffer after it is reused: stop them
      // (a silent peer would hold it until its call timeout) and wait until they have.
      abort.abort(err);
      await Promise.allSettled(writes);
      throw err;
    }
    const settled = Promise.allSettled(writes).then(() => {});
    if (running === 0) return { settled };
    if (this.backgroundBytes + data.length > BACKGROUND_WRITE_BYTES_MAX) {
      await settled;
      return { settled };
    }
    this.backgroundBytes += data.length;
    void settled.then(() => (this.backgroundBytes -= data.length));
    return { settled };
  }

  /**
   * Whether a write quorum of the block's nodes holds it (see BlockPresence). Every node is
   * asked at once and the answer comes as soon as it is decided: one round trip to the nearest
   * quorum. Only stored blocks count: a copy still in flight does not.
   */
  presence(hashText: string): Promise<BlockPresence> {
    const hashHex = parseBlockHash(hashText);
    const sets = this.placement.writeSets(partitionOfHashHex(hashHex));
    if (sets.length === 0) return Promise.resolve("unknown");
    const nodes = [...new Set(sets.flat())];
    const need = sets.map((set) => Math.min(this.placement.quorums.write, set.length));
    const answers = new Map<string, boolean>();
    return new Promise<BlockPresence>((resolve) => {
      let left = nodes.length;
      const timer = setTimeout(() => resolve("unknown"), PRESENCE_TIMEOUT_MS);
      const decide = () => {
        const counts = sets.map((set) => {
          let found = 0;
          let lacking = 0;
          for (const n of set) {
            const a = answers.get(n);
            if (a === true) found++;
            else if (a === false) lacking++;
          }
          return { found, lacking };
        });
        let verdict: BlockPresence | undefined;
        if (counts.every((c, i) => c.found >= need[i]!)) verdict = "quorum";
        else if (counts.every((c, i) => c.lacking > sets[i]!.length - need[i]!)) verdict = "short";
        else if (left === 0) verdict = "unknown";
        if (verdict === undefined) return;
        clearTimeout(timer);
        resolve(verdict);
      };
      for (const node of nodes) {
        // A peer known down is not waited for: it counts as no answer at once.
        const ask =
          node === this.placement.selfId
            ? this.store.has(hashHex)
            : this.placement.liveness?.isDown(node)
              ? Promise.reject(new Error(`node ${node.slice(0, 16)} is down`))
              : (async () => this.remoteFor(node).has(node, hashHex))();
        ask.then(
          (found) => answers.set(node, found),
          (err: unknown) => log.debug(`presence of ${hashHex.slice(0, 16)} on ${node.slice(0, 16)}: ${(err as Error).message}`),
        ).finally(() => {
          left--;
          decide();
        });
      }
    });
  }

  /**
   * Media, archives and encrypted data do not compress: a sample from the middle of a large
   * block tells, so such blocks skip the full compression that would be thrown away.
   */
  private async looksCompressible(plain: Uint8Array): Promise<boolean> {
    if (plain.length < 2 * COMPRESSION_PROBE_BYTES) return true;
    const mid = Math.floor((plain.length - COMPRESSION_PROBE_BYTES) / 2);
    const sample = plain.subarray(mid, mid + COMPRESSION_PROBE_BYTES);
    const packed = await this.codec.compress(sample, this.opts.compressionLevel ?? 1);
    return packed.length < sample.length * COMPRESSION_PROBE_MAX_RATIO;
  }

  /**
   * Reads a block's plaintext from the nearest node that has it. The hash comes from a table
   * entry (typed as a plain string in the model), so it is parsed here.
   */
  get(hashHex: string): Promise<Uint8Array> {
    return this.read(parseBlockHash(hashHex), false);
  }

  /**
   * Like get, for bytes on their way out to a client: a block read from this node's disk comes in
   * a reused buffer, lent (util/buffer-pool) until the consumer calls chunkDone on it.
   */
  getLent(hashHex: string): Promise<Uint8Array> {
    return this.read(parseBlockHash(hashHex), true);
  }

  private async read(hashHex: BlockHash, lendPooled: boolean): Promise<Uint8Array> {
    for (const node of this.placement.readNodes(partitionOfHashHex(hashHex))) {
      try {
        const stored: (StoredBlock & { buffer?: Uint8Array }) | null =
          node !== this.placement.selfId
            ? await this.remoteGet(node, hashHex)
            : lendPooled
              ? this.store.readPooled(hashHex, this.readBuffers)
              : await this.store.read(hashHex);
        if (!stored) {
          // This node should have had it: fetch it in the background.
          if (node === this.placement.selfId && this.remote) this.enqueueResync([hashHex]);
          continue;
        }
        const buffer = stored.buffer;
        if (!stored.compressed) return buffer ? lend(stored.data, () => this.readBuffers.give(buffer)) : stored.data;
        try {
          return await this.codec.decompress(stored.data, this.opts.blockSize);
        } finally {
          if (buffer) this.readBuffers.give(buffer);
        }
      } catch (err) {
        log.warn(`block ${hashHex.slice(0, 16)} from ${node.slice(0, 16)}: ${(err as Error).message}`);
      }
    }
    throw new BlockNotFoundError(hashHex);
  }

  /**
   * A block from a peer, for a client: a peer known down is not asked, and one that sends
   * nothing for REQUEST_QUORUM_TIMEOUT_MS is left (the read moves on to the next copy) while a
   * slow transfer goes on. What a peer left behind still sends lands in a buffer of its own.
   */
  private async remoteGet(node: string, hashHex: BlockHash): Promise<StoredBlock | null> {
    const remote = this.remoteFor(node);
    const [got] = await replicaQuorum([node], () => remote.get(node, hashHex), 1, { liveness: this.placement.liveness, mode: "progress" });
    return got!;
  }

  /**
   * Serialises work on one hash: GC's "no reference left, delete the file" must not
   * interleave with a write that found the file present. Writers store a block before
   * committing its reference; storing postpones a pending deletion (storeLocal) and refreshes
   * the file's mtime, which orphan collection checks under this lock.
   */
  private async withHashLock<T>(hashHex: BlockHash, fn: () => Promise<T>): Promise<T> {
    const prev = this.hashLocks.get(hashHex);
    const run = (prev ?? Promise.resolve()).then(fn, fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.hashLocks.set(hashHex, tail);
    try {
      return await run;
    } finally {
      if (this.hashLocks.get(hashHex) === tail) this.hashLocks.delete(hashHex);
    }
  }

  private putTo(node: string, hashHex: BlockHash, data: Uint8Array, compressed: boolean, signal?: AbortSignal): Promise<void> {
    if (node === this.placement.selfId) return this.storeLocal(hashHex, data, compressed);
    return this.remoteFor(node).put(node, hashHex, data, compressed, signal);
  }

  /** Writes a block to this node's disk (for local puts and for peers' puts over RPC). */
  storeLocal(hashHex: BlockHash, data: Uint8Array, compressed: boolean): Promise<void> {
    return this.withHashLock(hashHex, async () => {
      // A block waiting for GC is about to be referenced again: push its deletion back so
      // the reference (committed after the store) arrives first.
      if (this.pendingGc.get(hashHex)) this.postponeGc.run(hashHex, Date.now() + BLOCK_GC_DELAY_MS);
      await this.store.write(hashHex, data, compressed);
    });
  }

  private remoteFor(node: string): RemoteBlocks {
    assert(this.remote !== undefined, `no RPC route to node ${node.slice(0, 16)} (single-node build)`);
    return this.remote;
  }

  start(): void {
    this.gcTimer = setInterval(() => void this.runGc(), GC_INTERVAL_MS);
    this.resyncTimer = setInterval(() => void this.runResync(), RESYNC_INTERVAL_MS);
    // Offloading walks the whole store: rare, and only in a cluster.
    if (this.remote) {
      this.offloadTimer = setInterval(() => void this.offloadPass(), OFFLOAD_INTERVAL_MS);
      this.layoutTimer = setInterval(() => this.offloadOnLayoutChange(), OFFLOAD_LAYOUT_CHECK_MS);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.gcTimer);
    clearInterval(this.resyncTimer);
    clearInterval(this.offloadTimer);
    clearInterval(this.layoutTimer);
    await this.gcRunning;
    await this.resyncRunning;
    await this.offloadRunning;
  }

  // ---- resync: fetch blocks this node should hold but lacks ----

  /** Queues blocks to check (and fetch if missing); `delayMs` lets in-flight writes land first. */
  enqueueResync(hashes: Iterable<BlockHash>, delayMs = 0): void {
    const at = Date.now() + delayMs;
    const stmt = this.db.query(`INSERT INTO block_resync (hash, next_try) VALUES (?, ?) ON CONFLICT(hash) DO NOTHING`);
    this.db.transaction(() => {
      for (const h of hashes) stmt.run(h, at);
    }).immediate();
  }

  /**
   * `bunker repair blocks`: queues for a check every block this node holds references to (so
   * should store), and starts a resync pass; missing ones are fetched. Returns how many.
   */
  queueAllForResync(): number {
    const page = this.db.query(`SELECT hash FROM block_rc WHERE refs > 0 AND hash > ? ORDER BY hash LIMIT ?`);
    let after = "";
    let queued = 0;
    for (;;) {
      const rows = page.all(after, REPAIR_PAGE) as { hash: BlockHash }[];
      if (rows.length === 0) break;
      this.enqueueResync(rows.map((r) => r.hash));
      queued += rows.length;
      after = rows[rows.length - 1]!.hash;
    }
    void this.runResync();
    void this.offloadPass();
    return queued;
  }

  // ---- offload: blocks this node no longer holds after a layout change ----

  /**
   * One pass over the stored blocks: a block whose partition this node holds in no live layout
   * version (the version that moved it away is retired, so its new nodes finished syncing) is
   * sent to each of its nodes that lacks it, then deleted here. A node that cannot be reached
   * leaves the block in place until a later pass. Returns how many blocks left this node.
   */
  offloadPass(): Promise<number> {
    this.offloadRunning ??= this.offloadStats
      .run(async () => {
        const self = this.placement.selfId;
        let moved = 0;
        for await (const hash of this.store.list()) {
          const holders = new Set(this.placement.writeSets(partitionOfHashHex(hash)).flat());
          if (holders.size === 0 || holders.has(self)) continue;
          try {
            if (await this.withHashLock(hash, () => this.offloadOne(hash, holders))) moved++;
          } catch (err) {
            this.offloadStats.noteError(err);
            log.debug(`offload of ${hash.slice(0, 16)}: ${(err as Error).message}`);
          }
        }
        if (moved > 0) log.info(`offloaded ${moved} blocks this node no longer holds`);
        return moved;
      })
      .finally(() => {
        this.offloadRunning = undefined;
      });
    return this.offloadRunning;
  }

  /** Starts an offload pass when the partitions this node no longer holds are not those of the last check. */
  private offloadOnLayoutChange(): void {
    const released = releasedPartitions(this.placement);
    const key = released.map((r) => r.partition).join(",");
    if (key === this.lastReleased) return;
    if (released.length > 0) {
      // A pass under way may have gone past blocks of the newly released partitions: look again later.
      if (this.offloadRunning) return;
      void this.offloadPass();
    }
    this.lastReleased = key;
  }

  private async offloadOne(hash: BlockHash, holders: Set<string>): Promise<boolean> {
    const stored = await this.store.read(hash);
    if (!stored) return false;
    const remote = this.remoteFor([...holders][0]!);
    for (const node of holders) {
      if (!(await remote.has(node, hash))) await remote.put(node, hash, stored.data, stored.compressed);
    }
    return this.store.delete(hash);
  }

  /** Blocks whose resync keeps failing, for `bunker block list-errors`. */
  resyncErrors(): { hash: string; errors: number; nextTry: number; lastError: string | null }[] {
    return (
      this.db.query(`SELECT hash, errors, next_try, last_error FROM block_resync WHERE errors > 0 ORDER BY errors DESC LIMIT 1000`).all() as {
        hash: string;
        errors: number;
        next_try: number;
        last_error: string | null;
      }[]
    ).map((r) => ({ hash: r.hash, errors: r.errors, nextTry: r.next_try, lastError: r.last_error }));
  }

  resyncQueueLength(): number {
    return (this.db.query(`SELECT count(*) AS n FROM block_resync`).get() as { n: number }).n;
  }

  /** One pass over the due entries of the resync queue. */
  runResync(now = Date.now()): Promise<void> {
    this.resyncRunning ??= this.resyncStats.run(async () => {
      const due = this.db.query(`SELECT hash, errors FROM block_resync WHERE next_try <= ? ORDER BY next_try LIMIT ?`).all(now, RESYNC_BATCH) as {
        hash: BlockHash;
        errors: number;
      }[];
      for (const { hash, errors } of due) {
        try {
          await this.resyncOne(hash);
          this.db.query(`DELETE FROM block_resync WHERE hash = ?`).run(hash);
        } catch (err) {
          const backoff = Math.min(RESYNC_MAX_BACKOFF_MS, RESYNC_FIRST_BACKOFF_MS * 2 ** errors);
          this.db
            .query(`UPDATE block_resync SET errors = errors + 1, next_try = ?, last_error = ? WHERE hash = ?`)
            .run(Date.now() + backoff, (err as Error).message.slice(0, 500), hash);
          this.resyncStats.noteError(err);
        }
      }
    }).finally(() => {
      this.resyncRunning = undefined;
    });
    return this.resyncRunning;
  }

  private async resyncOne(hashHex: BlockHash): Promise<void> {
    const rc = this.db.query(`SELECT refs FROM block_rc WHERE hash = ?`).get(hashHex) as { refs: number } | null;
    if (!rc || rc.refs <= 0) return; // no longer needed here
    const self = this.placement.selfId;
    const holders = new Set(this.placement.writeSets(partitionOfHashHex(hashHex)).flat());
    if (!holders.has(self) || (await this.store.has(hashHex))) return;
    for (const node of this.placement.readNodes(partitionOfHashHex(hashHex))) {
      if (node === self) continue;
      const got = await this.remoteFor(node).get(node, hashHex).catch(() => null);
      if (got) {
        await this.storeLocal(hashHex, got.data, got.compressed);
        return;
      }
    }
    throw new Error("no reachable node has this block");
  }

  /** One GC pass: deletes blocks whose last reference went away more than the grace delay ago. */
  runGc(now = Date.now()): Promise<void> {
    this.gcRunning ??= this.gcStats.run(async () => {
      try {
        for (;;) {
          const rows = this.db
            .query(`SELECT hash FROM block_rc WHERE deletable_at IS NOT NULL AND deletable_at <= ? AND refs <= 0 LIMIT ?`)
            .all(now, GC_BATCH) as { hash: BlockHash }[];
          if (rows.length === 0) break;
          for (const { hash } of rows) {
            await this.withHashLock(hash, async () => {
              // Re-check inside the lock: a new reference may have arrived meanwhile.
              const gone = this.db
                .query(`DELETE FROM block_rc WHERE hash = ? AND refs <= 0 AND deletable_at IS NOT NULL AND deletable_at <= ?`)
                .run(hash, now);
              if (gone.changes > 0) await this.store.delete(hash);
            });
          }
        }
      } catch (err) {
        log.warn(`gc: ${(err as Error).message}`);
        this.gcStats.noteError(err);
      }
    }).finally(() => {
      this.gcRunning = undefined;
    });
    return this.gcRunning;
  }

  /**
   * Deletes block files that no reference ever counted (an upload killed between writing a
   * block and recording it) once they are older than ORPHAN_GRACE_MS. Returns how many.
   */
  collectOrphans(now = Date.now(), graceMs = ORPHAN_GRACE_MS): Promise<number> {
    return this.orphanStats.run(() => this.collectOrphansPass(now, graceMs));
  }

  private async collectOrphansPass(now: number, graceMs: number): Promise<number> {
    const known = this.db.query(`SELECT 1 FROM block_rc WHERE hash = ?`);
    let deleted = 0;
    for await (const hash of this.store.list()) {
      if (known.get(hash)) continue;
      const mtime = await this.mtimeOf(hash);
      if (mtime === undefined || now - mtime < graceMs) continue;
      // Checked again under the lock: a writer may have just stored it again (refreshing its
      // mtime) and not yet committed the reference.
      const removed = await this.withHashLock(hash, async () => {
        const fresh = await this.mtimeOf(hash);
        return !known.get(hash) && fresh !== undefined && now - fresh >= graceMs && (await this.store.delete(hash));
      });
      if (removed) deleted++;
    }
    if (deleted > 0) log.info(`collected ${deleted} orphan blocks`);
    return deleted;
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
