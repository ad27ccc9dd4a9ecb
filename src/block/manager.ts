// The block manager: the data path of blocks. It stores a block on the nodes of its partition
// (compressed first when that helps), reads it back from the nearest copy, and tells whether a
// write quorum holds one (presence). It also puts together this node's block workers, each in
// its own file: resync.ts (fetch blocks this node lacks), gc.ts (delete unreferenced blocks),
// orphans.ts (files no reference ever counted), offload.ts (blocks a layout change moved away);
// rc.ts owns the reference counts and hash-lock.ts the per-block lock they share with writes.
//
// Memory (docs/memory.md): every block buffer of the data path is leased from the node's budget
// (block_ram_buffer_max), in three parts. Blocks of other nodes' requests (received to be
// stored, read to be sent: rpc-blocks.ts) lease from the whole budget, and always find its
// reserve free: nothing that waits on another node holds it. This node's own requests (PUTs,
// GETs, resync, offload) lease from `local`, and the sources of copies from `copySources`: a
// copy's reader waits only for other copies' readers, never for writers like its own, which
// already holds a window of `local`.
import type { Database } from "bun:sqlite";
import { partitionOfHashHex, type Placement } from "../cluster/layout";
import { replicaQuorum } from "../table/quorum";
import { assert } from "../util/assert";
import { logger } from "../util/log";
import { compressIfSmaller, type ZstdCodec } from "./codec";
import type { LocalBlockStore, StoredBlock } from "./store";
import type { WorkerStats } from "../util/worker-stats";
import { BufferPool, freeNow, lend, uninitialized, type BlockRoom } from "../util/buffer-pool";
import { parseBlockHash, type BlockHash } from "../util/ids";
import { DEFAULT_BLOCK_RAM_BUFFER_MAX, MemoryBudget, MIN_BUDGET_BLOCKS, type Release } from "../util/memory-budget";
import { BlockGc } from "./gc";
import { HashLocks } from "./hash-lock";
import { BlockOffload } from "./offload";
import { OrphanCollector } from "./orphans";
import { BLOCK_GC_DELAY_MS, BlockRc } from "./rc";
import { BlockResync } from "./resync";

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
  /**
   * The stored block, in memory of `room` leased once its size is known (the caller calls
   * `release`, then gives `data` back to room.pool), or null when the node lacks it.
   */
  get(node: string, hashHex: BlockHash, room: BlockRoom): Promise<{ data: Uint8Array; compressed: boolean; release: Release } | null>;
}

/** What a put leaves to its caller. */
export interface PutOutcome {
  /** Resolves once every copy is written or has failed (never rejects). */
  settled: Promise<void>;
  /**
   * Copies still being written after the write quorum read the caller's buffer until `settled`,
   * under a lease of the put's own: the caller's lease on that buffer may end now, but the buffer
   * is reused only after `settled`. When false, the caller's buffer is no longer read.
   */
  background: boolean;
}

export class BlockNotFoundError extends Error {
  constructor(readonly hashHex: string) {
    super(`block ${hashHex} is missing on every node that should hold it`);
  }
}

/** Bytes sampled to decide whether a block is worth compressing. */
const COMPRESSION_PROBE_BYTES = 32 * 1024;
/** A sample must shrink below this ratio for the whole block to be compressed. */
const COMPRESSION_PROBE_MAX_RATIO = 0.95;
/**
 * Part of the budget this node's own requests leave to blocks of other nodes' requests (a quarter,
 * at least PEER_RESERVE_MIN_BLOCKS blocks): they always find room here, whatever this node's own
 * requests, which may be waiting for them, hold.
 */
export const PEER_RESERVE_SHARE = 0.25;
export const PEER_RESERVE_MIN_BLOCKS = 2;
/** Part of the budget for the sources of copies (a sixteenth, at least one reader's window of two blocks). */
export const COPY_SOURCES_SHARE = 1 / 16;
export const COPY_SOURCES_MIN_BLOCKS = 2;
/** Free block buffers of the node's pool for blocks read and received (leased, dropped when the budget is short). */
const POOL_FREE_MAX = 16;
/**
 * Longest a presence check waits for a node's answer: a reader waits on it, and a node that
 * does not answer this fast counts as unknown (a reader then serves the previous version).
 */
export const PRESENCE_TIMEOUT_MS = 5_000;
/** Block hashes read per query when `repair blocks` queues every block. */
const REPAIR_PAGE = 1000;

export interface BlockManagerOptions {
  blockSize: number;
  /** zstd level, or null when compression is off. */
  compressionLevel: number | null;
  /** Clock of GC, resync and orphan collection (default Date.now; tests move it). */
  now?: () => number;
  /** Age from which a file no reference counted is an orphan (default ORPHAN_GRACE_MS). */
  orphanGraceMs?: number;
  /** The node's budget of block buffers (default: DEFAULT_BLOCK_RAM_BUFFER_MAX of its own). */
  budget?: MemoryBudget;
}

/** The shares of `budget` that this node's own requests and the sources of copies lease from (see the header). */
export function budgetShares(budget: MemoryBudget, blockSize: number): { local: MemoryBudget; copySources: MemoryBudget } {
  const reserve = Math.max(PEER_RESERVE_MIN_BLOCKS * blockSize, Math.floor(budget.maxBytes * PEER_RESERVE_SHARE));
  const copies = Math.max(COPY_SOURCES_MIN_BLOCKS * blockSize, Math.floor(budget.maxBytes * COPY_SOURCES_SHARE));
  const local = budget.maxBytes - reserve - copies;
  assert(local >= 2 * blockSize, "the budget leaves room for this node's requests (config checks MIN_BUDGET_BLOCKS)");
  return { local: budget.share("block buffers of this node's requests", local), copySources: budget.share("block buffers of copy sources", copies) };
}

export class BlockManager {
  readonly rc: BlockRc;
  readonly resync: BlockResync;
  readonly gc: BlockGc;
  readonly offload: BlockOffload;
  readonly orphans: OrphanCollector;
  /** Every block buffer of this node (block_ram_buffer_max). */
  readonly budget: MemoryBudget;
  /** The part of it this node's own requests use. */
  readonly local: MemoryBudget;
  /** The part of it the sources of copies use. */
  readonly copySources: MemoryBudget;
  /** Block buffers for blocks read from disk and received from peers. */
  readonly buffers: BufferPool;
  private readonly locks = new HashLocks();
  /** The clock GC compares deletion times with: a postponement must use the same one. */
  private readonly now: () => number;

  constructor(
    readonly store: LocalBlockStore,
    private readonly placement: Placement,
    private readonly codec: ZstdCodec,
    db: Database,
    private readonly opts: BlockManagerOptions,
    private readonly remote?: RemoteBlocks,
  ) {
    this.budget = opts.budget ?? new MemoryBudget("block buffers", Math.max(DEFAULT_BLOCK_RAM_BUFFER_MAX, MIN_BUDGET_BLOCKS * opts.blockSize));
    ({ local: this.local, copySources: this.copySources } = budgetShares(this.budget, opts.blockSize));
    this.buffers = new BufferPool(opts.blockSize, POOL_FREE_MAX, this.budget, uninitialized);
    this.rc = new BlockRc(db);
    const now = (this.now = opts.now ?? Date.now);
    this.resync = new BlockResync(db, this.rc, store, placement, (h, data, compressed) => this.storeLocal(h, data, compressed), remote, { budget: this.local, pool: this.buffers }, now);
    this.gc = new BlockGc(this.rc, store, this.locks, now);
    this.offload = new BlockOffload(store, placement, this.locks, remote, { budget: this.local, pool: this.buffers });
    this.orphans = new OrphanCollector(this.rc, store, this.locks, now, opts.orphanGraceMs);
  }

  /**
   * Stores a block (plaintext, named by its BLAKE3 hash) on a write quorum of its nodes and
   * resolves then; the other copies go on in the background (PutOutcome says who owns the memory
   * they read). The caller leases `plain`. Its compressed form is leased here, when the budget
   * has room at once (else the block is stored as it is: a put never waits for memory). Copies
   * after the quorum read `plain` under a lease of their own when there is room at once; else
   * the put waits for all its copies. A put that fails has no write left in flight.
   */
  async put(hashHex: BlockHash, plain: Uint8Array): Promise<PutOutcome> {
    const copyLease = this.opts.compressionLevel === null ? undefined : this.local.tryAcquire(plain.length);
    let packed: { data: Uint8Array; compressed: boolean } = { data: plain, compressed: false };
    try {
      if (copyLease && (await this.looksCompressible(plain))) packed = await compressIfSmaller(this.codec, plain, this.opts.compressionLevel!);
    } catch (err) {
      copyLease?.();
      throw err;
    }
    const { data, compressed } = packed;
    if (copyLease && data === plain) copyLease();
    // The compressed copy is this put's own: freed, and its lease given back, once it is written.
    const done = (): void => {
      if (data === plain) return;
      freeNow(data);
      copyLease!();
    };
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
      done();
      throw err;
    }
    const settled = Promise.allSettled(writes).then(done);
    if (running === 0 || data !== plain) return { settled, background: false };
    const background = this.local.tryAcquire(data.length);
    if (!background) {
      await settled;
      return { settled, background: false };
    }
    void settled.then(background);
    return { settled, background: true };
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
   * Reads a block's plaintext from the nearest node that has it, under a lease of `local` held
   * while it is read (waited for: the caller holds no other lease meanwhile); the plaintext is
   * then the caller's. The hash comes from a table entry (typed as a plain string in the model),
   * so it is parsed here.
   */
  async get(hashHex: string): Promise<Uint8Array> {
    const lease = await this.local.acquire(this.readCover());
    try {
      const { data, release } = await this.read(parseBlockHash(hashHex), this.readCover(), undefined);
      release();
      return data;
    } finally {
      lease();
    }
  }

  /**
   * Like get, for bytes on their way out to a client, in memory the caller leased (`cover`
   * bytes, at least readCover()): the plaintext is lent (util/buffer-pool) until the consumer
   * calls chunkDone on it, then freed, and `done` runs. When the read fails, `done` does not run:
   * the caller's lease is still its own.
   */
  async getLent(hashHex: string, cover: number, done: () => void): Promise<Uint8Array> {
    assert(cover >= this.readCover(), "a lent read is covered by its caller's lease");
    const { data, release } = await this.read(parseBlockHash(hashHex), cover, undefined);
    return lend(
      data,
      () => {
        release();
        done();
      },
      this.buffers,
    );
  }

  /**
   * Bytes a read must have leased: the stored form and the plaintext made from it (decompressed
   * or, for SSE-C, decrypted by the caller) may be in memory at once, each at most a block.
   */
  readCover(): number {
    return 2 * this.opts.blockSize;
  }

  /**
   * The plaintext of a block, within `cover` leased bytes (a stored block larger than that, left
   * by an earlier larger block_size, leases the difference: `release` gives it back, after the
   * plaintext is given back to this.buffers).
   */
  private async read(hashHex: BlockHash, cover: number, signal: AbortSignal | undefined): Promise<{ data: Uint8Array; release: Release }> {
    const room: BlockRoom = { lease: async (bytes) => (bytes <= cover ? () => {} : this.local.acquireUpTo(bytes - cover, signal)), pool: this.buffers };
    for (const node of this.placement.readNodes(partitionOfHashHex(hashHex))) {
      try {
        const stored = node === this.placement.selfId ? await this.store.readLeased(hashHex, room) : await this.remoteGet(node, hashHex, room);
        if (!stored) {
          // This node should have had it: fetch it in the background.
          if (node === this.placement.selfId && this.remote) this.resync.enqueue([hashHex]);
          continue;
        }
        if (!stored.compressed) return stored; // with its lease beyond `cover`, if any
        try {
          return { data: await this.codec.decompress(stored.data, this.opts.blockSize), release: () => {} };
        } finally {
          stored.release();
          this.buffers.giveOrFree(stored.data);
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
  private async remoteGet(node: string, hashHex: BlockHash, room: BlockRoom): Promise<(StoredBlock & { release: Release }) | null> {
    const attempt = this.remoteFor(node).get(node, hashHex, room);
    try {
      const [got] = await replicaQuorum([node], () => attempt, 1, { liveness: this.placement.liveness, mode: "progress" });
      return got!;
    } catch (err) {
      // Given up on, the transfer may still end: its memory is then freed here.
      void attempt.then(
        (late) => {
          if (!late) return;
          late.release();
          this.buffers.giveOrFree(late.data);
        },
        () => {},
      );
      throw err;
    }
  }

  private putTo(node: string, hashHex: BlockHash, data: Uint8Array, compressed: boolean, signal?: AbortSignal): Promise<void> {
    if (node === this.placement.selfId) return this.storeLocal(hashHex, data, compressed);
    return this.remoteFor(node).put(node, hashHex, data, compressed, signal);
  }

  /** Writes a block to this node's disk (for local puts and for peers' puts over RPC). */
  storeLocal(hashHex: BlockHash, data: Uint8Array, compressed: boolean): Promise<void> {
    return this.locks.with(hashHex, async () => {
      // A block waiting for GC is about to be referenced again: push its deletion back so
      // the reference (committed after the store) arrives first.
      this.rc.postponeDeletion(hashHex, this.now() + BLOCK_GC_DELAY_MS);
      await this.store.write(hashHex, data, compressed);
    });
  }

  private remoteFor(node: string): RemoteBlocks {
    assert(this.remote !== undefined, `no RPC route to node ${node.slice(0, 16)} (single-node build)`);
    return this.remote;
  }

  start(): void {
    this.gc.loop.start();
    this.resync.loop.start();
    // Offloading walks the whole store: rare, and only in a cluster.
    if (this.remote) this.offload.loop.start();
    // Orphans are left by a crash, so one scan after each start finds them.
    this.orphans.loop.start();
    this.orphans.loop.wake();
  }

  async stop(): Promise<void> {
    await Promise.all([this.gc.loop.stop(), this.resync.loop.stop(), this.offload.loop.stop(), this.orphans.loop.stop()]);
  }

  /** The block workers, for `bunker worker list`. */
  workers(): WorkerStats[] {
    return [this.resync.stats, this.offload.stats, this.gc.stats, this.orphans.stats];
  }

  /**
   * `bunker repair blocks`: queues for a check every block this node holds references to (so
   * should store), and starts a resync pass (missing ones are fetched) and an offload pass.
   * Returns how many were queued.
   */
  queueAllForResync(): number {
    let after = "";
    let queued = 0;
    for (;;) {
      const page = this.rc.referenced(after, REPAIR_PAGE);
      if (page.length === 0) break;
      this.resync.enqueue(page);
      queued += page.length;
      after = page[page.length - 1]!;
    }
    this.resync.loop.wake();
    this.offload.loop.wake();
    return queued;
  }
}
