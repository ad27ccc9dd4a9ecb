// Turns a body into stored data for one version: cuts it into block_size blocks,
// hashes each with BLAKE3 and the body's MD5 off-thread (the requested checksums run here),
// stores each block, then records the references in batches; a bounded window of blocks is in flight.
// Bodies smaller than INLINE_THRESHOLD come back inline and write no block at all.
//
// Memory (docs/memory.md): a body's blocks live in a BudgetWindow of the node's budget (the
// share of its own requests): its first slots (the block being filled and one being stored) are
// waited for before the body is read, further ones (up to BLOCKS_IN_FLIGHT_PER_REQUEST blocks
// in flight) taken only when free. Block buffers are shared memory, kept in one pool per node.
import { CryptoHasher } from "bun";
import { createChecksum, type ChecksumAlgorithm, type StreamingChecksum } from "../util/checksum";
import { BLOCKS_IN_FLIGHT_PER_REQUEST, INLINE_THRESHOLD } from "../util/limits";
import { blake3Sync, hashHex, sharedBytes, type HashPool, type Md5Stream } from "../block/hash";
import type { BlockManager, PutOutcome } from "../block/manager";
import { assert } from "../util/assert";
import { BufferPool, consumed, freeNow } from "../util/buffer-pool";
import { BudgetWindow, type Release } from "../util/memory-budget";
import type { Model } from "./model";
import { encryptBlock, encryptedBlockPlainSize, type DataKey } from "../block/encryption";

/** What storing a body needs: the metadata tables, the block store and the hashing workers. */
export interface StoreServices {
  model: Model;
  blocks: BlockManager;
  hasher: HashPool;
  blockSize: number;
}

/**
 * Blocks at least this large are hashed in the worker; smaller ones on this thread. A body whose
 * first block is this large also has its MD5 computed there, block by block.
 */
const HASH_IN_WORKER_MIN = 128 * 1024;
/** Slots a body waits for: the block being filled and one being stored. */
const WINDOW_BASE_SLOTS = 2;
/** Slots a body may hold: its blocks in flight and the one being filled. */
const WINDOW_MAX_SLOTS = BLOCKS_IN_FLIGHT_PER_REQUEST + 1;
/**
 * Free block buffers a node's pool keeps for reuse (first-touch memory is slow on these
 * machines): two bodies' windows, as buffers handed to copies after the write quorum come back
 * only later (with one window's worth, an RF 3 coordinator still allocated a fresh
 * SharedArrayBuffer for many blocks). They hold leases of the budget, given up when it is short.
 */
const POOL_FREE_MAX = 2 * WINDOW_MAX_SLOTS;
/** Block references committed together (about 2 sqlite pages per block instead of 16). */
const REFS_PER_COMMIT = 32;
/** Reference commits a body may have waiting before it stops reading more blocks. */
const REF_COMMITS_IN_FLIGHT = 2;
/** One pool per node (its block manager); block buffers are shared memory, which the BLAKE3 and MD5 workers read in place. */
const bufferPools = new WeakMap<BlockManager, BufferPool>();

function poolOf(blocks: BlockManager, blockSize: number): BufferPool {
  let pool = bufferPools.get(blocks);
  if (!pool) bufferPools.set(blocks, (pool = new BufferPool(blockSize, POOL_FREE_MAX, blocks.local, sharedBytes)));
  assert(pool.size === blockSize, "a node has one block size");
  return pool;
}

/**
 * A body's block buffers: slots of its window, and the buffers it has free. A buffer whose slot
 * was an extra one goes back to the node's pool with the slot; one of the base slots is kept.
 */
class BodyBuffers {
  private readonly spare: Uint8Array[] = [];

  constructor(
    readonly window: BudgetWindow,
    private readonly pool: BufferPool,
  ) {}

  /** A buffer for a slot already taken from the window. */
  take(): Uint8Array {
    return this.spare.pop() ?? this.pool.take();
  }

  /** The buffer is no longer read, and its slot is given back. */
  done(buf: Uint8Array): void {
    const heldBefore = this.window.held;
    this.window.give();
    if (this.window.held < heldBefore) this.pool.give(buf);
    else this.spare.push(new Uint8Array(buf.buffer, 0, buf.buffer.byteLength));
  }

  /** The slot is given back now; the buffer, read by copies under their own lease, when `settled`. */
  handOff(buf: Uint8Array, settled: Promise<void>): void {
    this.window.give();
    void settled.then(() => this.pool.give(buf));
  }

  /** The body is done: its spare buffers go back to the pool once its window is released. */
  close(): void {
    this.window.close();
    for (const b of this.spare.splice(0)) this.pool.give(b);
  }
}
export interface WrittenBody {
  size: number;
  md5: Uint8Array;
  checksums: Map<ChecksumAlgorithm, Uint8Array>;
  /** Set when the whole body was small enough to live in the object entry. */
  inline?: Uint8Array;
  blockCount: number;
  /**
   * With `deferRefs`: the single block, whose references the caller writes, and its store on a
   * write quorum, still under way (the caller writes its metadata meanwhile and awaits both).
   */
  deferredBlock?: { hash: string; size: number; stored: Promise<void> };
}

export interface WriteBodyOptions {
  versionUuid: string;
  /** Part number for multipart uploads, 0 for a plain object. */
  part: number;
  /**
   * The body. A chunk is the writer's once yielded: lent memory is given back (chunkDone) and a
   * chunk spanning its whole buffer is freed (freeNow) once copied, so a producer never reads a
   * chunk it yielded whole again (the HTTP reader, aws-chunked decoding and the form parser
   * yield their reads whole only when they are done with them).
   */
  chunks: AsyncIterable<Uint8Array>;
  checksumAlgorithms: readonly ChecksumAlgorithm[];
  allowInline: boolean;
  /**
   * The body fits in one block: the caller records its references together with the object in
   * one metadata commit, sent while the block travels (writeBody returns once its store began).
   */
  deferRefs?: boolean;
  /** The body's announced length: a small body gets a buffer of its size, not a whole block. */
  sizeHint?: number;
  /**
   * SSE-C: each block is sealed with this key before it is named and stored (its name is the
   * hash of the sealed bytes, which reveals nothing of the plaintext and never dedups), and
   * holds BLOCK_OVERHEAD fewer plaintext bytes so that what is stored fits a block. Rows
   * record plaintext sizes. An inline body comes back in plaintext for the caller to seal.
   */
  encryption?: DataKey;
}

/** Who holds a block buffer's memory, and how it is given back. */
interface BlockOwner {
  /** The buffer is no longer read. */
  done(buf: Uint8Array): void;
  /** The buffer is read until `settled` by copies under a lease of their own (block/manager.ts PutOutcome). */
  handOff(buf: Uint8Array, settled: Promise<void>): void;
}

/** A body smaller than a block: one buffer of its size, under one lease. */
class SmallBuffer implements BlockOwner {
  private leased = true;

  constructor(private readonly lease: Release) {}

  /** The lease ends (once): the buffer is freed, or about to be. */
  endLease(): void {
    if (!this.leased) return;
    this.leased = false;
    this.lease();
  }

  done(buf: Uint8Array): void {
    this.endLease();
    freeNow(buf);
  }

  handOff(): void {
    this.endLease();
  }
}

export async function writeBody(services: StoreServices, opts: WriteBodyOptions): Promise<WrittenBody> {
  const { model, blocks, hasher, blockSize } = services;
  // MD5 runs on this thread for small bodies and in the hash worker for large ones; which one is
  // decided by the first block, as the stream's state cannot move between threads.
  const localMd5 = new CryptoHasher("md5");
  let workerMd5: Md5Stream | undefined;
  const sums = new Map<ChecksumAlgorithm, StreamingChecksum>(opts.checksumAlgorithms.map((a) => [a, createChecksum(a)]));
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let size = 0;
  let blockCount = 0;
  // Plaintext bytes per block: a sealed block carries its nonce and tag within the block size.
  const cut = opts.encryption ? encryptedBlockPlainSize(blockSize) : blockSize;
  // With SSE-C a block has a sealed copy beside it until it is stored.
  const copies = opts.encryption ? 2 : 1;
  // A body of unknown length starts in a buffer for an inline body: most such bodies are small.
  const firstSize =
    opts.sizeHint === undefined ? (opts.allowInline ? INLINE_THRESHOLD : blockSize) : opts.sizeHint < cut ? Math.max(opts.sizeHint, 1) : blockSize;
  let window: BodyBuffers | undefined;
  const openWindow = async (): Promise<BodyBuffers> => {
    // Waited for while nothing leased is held (see the growth below).
    window = new BodyBuffers(await BudgetWindow.open(blocks.local, copies * blockSize, WINDOW_BASE_SLOTS, WINDOW_MAX_SLOTS), poolOf(blocks, blockSize));
    assert(window.window.tryTake(), "a new window has a free slot");
    return window;
  };
  /** The buffer being filled and who holds its memory; undefined once dispatched. */
  let current: { buf: Uint8Array; owner: BlockOwner } | undefined;
  if (firstSize === blockSize) {
    const w = await openWindow();
    current = { buf: w.take(), owner: w };
  } else {
    // A body that will stay inline is held like the request's headers (per connection); a
    // larger one may become a block, and is leased.
    const lease = firstSize <= INLINE_THRESHOLD ? () => {} : await blocks.local.acquire(copies * firstSize);
    current = { buf: firstSize >= HASH_IN_WORKER_MIN ? sharedBytes(firstSize) : new Uint8Array(firstSize), owner: new SmallBuffer(lease) };
  }
  let fill = 0;
  let deferredBlock: WrittenBody["deferredBlock"];

  // References are committed in batches, after their blocks are stored: one commit per batch
  // instead of two per block (each commit rewrote ~16 sqlite pages). A block stored but not yet
  // referenced is safe from GC: storing postpones a pending deletion and refreshes the file's
  // mtime, and orphan collection only removes files unreferenced for an hour. A crash before
  // the commit leaves such orphans, and the version stays invisible.
  let pendingRefs: { offset: number; hash: string; size: number }[] = [];
  let refCommits = 0;
  const commitRefs = async (refs: { offset: number; hash: string; size: number }[]) => {
    await Promise.all([
      model.versionBlocks.insert(refs.map((b) => ({ uuid: opts.versionUuid, part: opts.part, offset: b.offset, hash: b.hash, size: b.size }))),
      model.blockRefs.insert(refs.map((b) => ({ hash: b.hash, version: opts.versionUuid, deleted: false }))),
    ]);
  };
  const flushRefs = () => {
    if (pendingRefs.length === 0) return;
    const refs = pendingRefs;
    pendingRefs = [];
    refCommits++;
    track(commitRefs(refs).finally(() => refCommits--));
  };

  const storeBlock = async (block: Uint8Array, owner: BlockOwner, offset: number, md5Read: Promise<void> | undefined) => {
    const plainSize = block.length;
    // The sealed copy is this body's (under the block's slot) and freed once no copy reads it.
    const sealed = opts.encryption ? encryptBlock(opts.encryption, block) : undefined;
    let hashed: { hash: Uint8Array; buf: Uint8Array } = { hash: new Uint8Array(0), buf: sealed ?? block };
    let outcome: PutOutcome | undefined;
    let deferred = false;
    try {
      // A small block hashes in microseconds: a round trip to the worker would cost more.
      hashed = hashed.buf.length < HASH_IN_WORKER_MIN ? { hash: blake3Sync(hashed.buf), buf: hashed.buf } : await hasher.hash(hashed.buf);
      const put = blocks.put(hashHex(hashed.hash), hashed.buf);
      if (opts.deferRefs) {
        assert(offset === 0 && deferredBlock === undefined, "deferred references are for single-block bodies");
        deferred = true;
        // The memory is free once the MD5 worker and every copy are done with it (a put that
        // fails has no copy left in flight).
        const storedBuf = hashed.buf;
        void Promise.all([md5Read?.catch(() => {}), put.then(({ settled: s }) => s, () => {})]).then(() => {
          if (sealed) freeNow(storedBuf);
          owner.done(block);
        });
        const stored = put.then(() => {});
        stored.catch(() => {}); // the caller awaits it: a failure is reported there
        deferredBlock = { hash: hashHex(hashed.hash), size: plainSize, stored };
        return;
      }
      outcome = await put;
    } finally {
      if (!deferred) {
        // The MD5 worker may still be reading the plaintext (its failure shows in the digest).
        await md5Read?.catch(() => {});
        const storedBuf = hashed.buf;
        if (!outcome?.background) {
          if (sealed) freeNow(storedBuf);
          owner.done(block);
        } else if (sealed) {
          // The copies read the sealed block: the plaintext is free now.
          void outcome.settled.then(() => freeNow(storedBuf));
          owner.done(block);
        } else {
          owner.handOff(block, outcome.settled);
        }
      }
    }
    const hash = hashHex(hashed.hash);
    pendingRefs.push({ offset, hash, size: plainSize });
    if (pendingRefs.length >= REFS_PER_COMMIT) flushRefs();
  };

  const track = (work: Promise<void>) => {
    const task: Promise<void> = work.then(
      () => void inFlight.delete(task),
      (err) => {
        inFlight.delete(task);
        failure ??= err;
      },
    );
    inFlight.add(task);
  };

  const dispatch = async (block: Uint8Array, owner: BlockOwner, offset: number) => {
    if (blockCount === 0 && block.length >= HASH_IN_WORKER_MIN) workerMd5 = hasher.openMd5();
    // Posted here, in body order; the worker handles messages in the order they arrive.
    const md5Read = workerMd5?.update(block);
    if (workerMd5 === undefined) localMd5.update(block);
    blockCount++;
    track(storeBlock(block, owner, offset, md5Read));
  };

  /** Waits until a block can be dispatched and a buffer filled after it (a slot of the window). */
  const nextSlot = async (w: BodyBuffers) => {
    for (;;) {
      if (failure) throw failure;
      const blocksInFlight = inFlight.size - refCommits;
      if (blocksInFlight < BLOCKS_IN_FLIGHT_PER_REQUEST && refCommits <= REF_COMMITS_IN_FLIGHT && w.window.tryTake()) return;
      // The base slots hold the block being filled and one in flight: something is in flight.
      assert(inFlight.size > 0, "a body waiting for a slot has work in flight");
      await Promise.race(inFlight);
    }
  };

  try {
    for await (const chunk of opts.chunks) {
      if (failure) throw failure;
      for (const s of sums.values()) s.update(chunk);
      let pos = 0;
      while (pos < chunk.length) {
        let cur: { buf: Uint8Array; owner: BlockOwner } = current!;
        if (fill === cur.buf.length) {
          // Only a small first buffer can be full here: a body of unknown length that is not
          // small, or one longer than announced (its reader then fails it). Its lease ends
          // before the wait for the window: a body waits for memory holding none.
          if (cur.owner instanceof SmallBuffer) cur.owner.endLease();
          const w = window ?? (await openWindow());
          const grown = w.take();
          grown.set(cur.buf.subarray(0, fill));
          cur.owner.done(cur.buf);
          current = cur = { buf: grown, owner: w };
        }
        const n = Math.min(chunk.length - pos, cur.buf.length - fill, cut - fill);
        cur.buf.set(chunk.subarray(pos, pos + n), fill);
        fill += n;
        pos += n;
        size += n;
        if (fill === cut) {
          const w = window!;
          await nextSlot(w);
          current = { buf: w.take(), owner: w };
          fill = 0;
          try {
            await dispatch(cut === cur.buf.length ? cur.buf : cur.buf.subarray(0, cut), cur.owner, size - cut);
          } catch (err) {
            cur.owner.done(cur.buf); // not in flight: nothing else gives it back
            throw err;
          }
        }
      }
      // Copied out: a lent chunk (a block read for a copy, api/s3/get.ts) goes back at once, a
      // read of the request's own (a whole buffer) is freed at once (see WriteBodyOptions.chunks).
      consumed(chunk);
    }
    let inline: Uint8Array | undefined;
    const last = current!;
    current = undefined;
    if (blockCount === 0 && opts.allowInline && size < INLINE_THRESHOLD) {
      inline = last.buf.slice(0, fill);
      localMd5.update(inline);
      last.owner.done(last.buf);
    } else if (fill > 0) {
      try {
        await dispatch(last.buf.subarray(0, fill), last.owner, size - fill);
      } catch (err) {
        last.owner.done(last.buf);
        throw err;
      }
    } else {
      last.owner.done(last.buf);
    }
    await Promise.all(inFlight);
    flushRefs();
    await Promise.all(inFlight);
    if (failure) throw failure;
    const checksums = new Map([...sums].map(([a, s]) => [a, s.digest()] as const));
    const md5 = workerMd5 ? await workerMd5.digest() : new Uint8Array(localMd5.digest());
    return { size, md5, checksums, inline, blockCount, deferredBlock };
  } catch (err) {
    workerMd5?.drop();
    // Let blocks already in flight settle so nothing writes after the caller aborts.
    await Promise.allSettled(inFlight);
    await deferredBlock?.stored.catch(() => {});
    throw err;
  } finally {
    if (current) current.owner.done(current.buf);
    window?.close();
  }
}
