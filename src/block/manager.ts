// The block manager: the data path of blocks. It stores a block on the nodes of its partition
// (compressed first when that helps), reads it back from the nearest copy, and tells whether a
// write quorum holds one (presence). It also puts together this node's block workers, each in
// its own file: resync.ts (fetch blocks this node lacks), gc.ts (delete unreferenced blocks),
// orphans.ts (files no reference ever counted), offload.ts (blocks a layout change moved away);
// rc.ts owns the reference counts and hash-lock.ts the per-block lock they share with writes.
import type { Database } from "bun:sqlite";
import { partitionOfHashHex, type Placement } from "../cluster/layout";
import { replicaQuorum } from "../table/quorum";
import { assert } from "../util/assert";
import { logger } from "../util/log";
import { compressIfSmaller, type ZstdCodec } from "./codec";
import type { LocalBlockStore, StoredBlock } from "./store";
import type { WorkerStats } from "../util/worker-stats";
import { BufferPool, lend } from "../util/buffer-pool";
import { parseBlockHash, type BlockHash } from "../util/ids";
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
  get(node: string, hashHex: BlockHash): Promise<{ data: Uint8Array; compressed: boolean } | null>;
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
/** Bytes of block copies that may still be written after their put returned (Garage: block_ram_buffer_max). */
export const BACKGROUND_WRITE_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Longest a presence check waits for a node's answer: a reader waits on it, and a node that
 * does not answer this fast counts as unknown (a reader then serves the previous version).
 */
export const PRESENCE_TIMEOUT_MS = 5_000;
/** Free block-sized buffers kept for reads streamed to clients (16 MiB with 1 MiB blocks). */
const READ_BUFFERS_KEPT = 16;
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
}

export class BlockManager {
  readonly rc: BlockRc;
  readonly resync: BlockResync;
  readonly gc: BlockGc;
  readonly offload: BlockOffload;
  readonly orphans: OrphanCollector;
  /** Bytes held by block copies still being written after their put returned. */
  private backgroundBytes = 0;
  private readonly locks = new HashLocks();
  private readonly readBuffers: BufferPool;

  constructor(
    readonly store: LocalBlockStore,
    private readonly placement: Placement,
    private readonly codec: ZstdCodec,
    db: Database,
    private readonly opts: BlockManagerOptions,
    private readonly remote?: RemoteBlocks,
  ) {
    this.readBuffers = new BufferPool(opts.blockSize, READ_BUFFERS_KEPT);
    this.rc = new BlockRc(db);
    const now = opts.now ?? Date.now;
    this.resync = new BlockResync(db, this.rc, store, placement, (h, data, compressed) => this.storeLocal(h, data, compressed), remote, now);
    this.gc = new BlockGc(this.rc, store, this.locks, now);
    this.offload = new BlockOffload(store, placement, this.locks, remote);
    this.orphans = new OrphanCollector(this.rc, store, this.locks, now, opts.orphanGraceMs);
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
          if (node === this.placement.selfId && this.remote) this.resync.enqueue([hashHex]);
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

  private putTo(node: string, hashHex: BlockHash, data: Uint8Array, compressed: boolean, signal?: AbortSignal): Promise<void> {
    if (node === this.placement.selfId) return this.storeLocal(hashHex, data, compressed);
    return this.remoteFor(node).put(node, hashHex, data, compressed, signal);
  }

  /** Writes a block to this node's disk (for local puts and for peers' puts over RPC). */
  storeLocal(hashHex: BlockHash, data: Uint8Array, compressed: boolean): Promise<void> {
    return this.locks.with(hashHex, async () => {
      // A block waiting for GC is about to be referenced again: push its deletion back so
      // the reference (committed after the store) arrives first.
      this.rc.postponeDeletion(hashHex, Date.now() + BLOCK_GC_DELAY_MS);
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
