// Turns a body into stored data for one version: cuts it into block_size blocks,
// hashes each with BLAKE3 and the body's MD5 off-thread (the requested checksums run here),
// stores each block, then records the references in batches; a bounded window of blocks is in flight.
// Bodies smaller than INLINE_THRESHOLD come back inline and write no block at all.
import { CryptoHasher } from "bun";
import { createChecksum, type ChecksumAlgorithm, type StreamingChecksum } from "../util/checksum";
import { BLOCKS_IN_FLIGHT_PER_REQUEST, INLINE_THRESHOLD } from "../util/limits";
import { blake3Sync, hashHex, sharedBytes, type HashPool, type Md5Stream } from "../block/hash";
import { BACKGROUND_WRITE_BYTES_MAX, type BlockManager } from "../block/manager";
import { assert } from "../util/assert";
import { BufferPool } from "../util/buffer-pool";
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
/**
 * Free block buffers kept for reuse (first-touch memory is slow on these machines): as many as
 * a body can have in use, its blocks in flight plus the copies that finish after the write
 * quorum (at 16, a 3-node RF 3 PUT allocated a fresh zeroed SharedArrayBuffer for most blocks).
 */
function bufferPoolMax(blockSize: number): number {
  return BLOCKS_IN_FLIGHT_PER_REQUEST + Math.ceil(BACKGROUND_WRITE_BYTES_MAX / blockSize);
}
/** Block references committed together (about 2 sqlite pages per block instead of 16). */
const REFS_PER_COMMIT = 32;
/** Reference commits a body may have waiting before it stops reading more blocks. */
const REF_COMMITS_IN_FLIGHT = 2;
/** One pool per block size (a server has one); block buffers are shared memory, which the BLAKE3 and MD5 workers read in place. */
const bufferPools = new Map<number, BufferPool>();

function takeBuffer(blockSize: number): Uint8Array {
  let pool = bufferPools.get(blockSize);
  if (!pool) bufferPools.set(blockSize, (pool = new BufferPool(blockSize, bufferPoolMax(blockSize), sharedBytes)));
  return pool.take();
}

/** A small body's exact-size buffer is not the pool's: it is left to the garbage collector. */
function releaseBuffer(buf: Uint8Array, blockSize: number): void {
  bufferPools.get(blockSize)?.give(buf);
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
  const firstSize = opts.sizeHint !== undefined && opts.sizeHint < cut ? Math.max(opts.sizeHint, 1) : blockSize;
  let buf = firstSize === blockSize ? takeBuffer(blockSize) : firstSize >= HASH_IN_WORKER_MIN ? sharedBytes(firstSize) : new Uint8Array(firstSize);
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

  const storeBlock = async (block: Uint8Array, offset: number, md5Read: Promise<void> | undefined) => {
    const plainSize = block.length;
    const stored = opts.encryption ? encryptBlock(opts.encryption, block) : block;
    let hashed: { hash: Uint8Array; buf: Uint8Array } = { hash: new Uint8Array(0), buf: stored };
    let settled: Promise<void> | undefined;
    let deferred = false;
    try {
      // A small block hashes in microseconds: a round trip to the worker would cost more.
      hashed = stored.length < HASH_IN_WORKER_MIN ? { hash: blake3Sync(stored), buf: stored } : await hasher.hash(stored);
      const put = blocks.put(hashHex(hashed.hash), hashed.buf);
      if (opts.deferRefs) {
        assert(offset === 0 && deferredBlock === undefined, "deferred references are for single-block bodies");
        deferred = true;
        // The buffer is free once the MD5 worker and every copy are done with it (a put that
        // fails has no copy left in flight).
        const buf = opts.encryption ? block : hashed.buf;
        void Promise.all([md5Read?.catch(() => {}), put.then(({ settled: s }) => s, () => {})]).then(() => releaseBuffer(buf, blockSize));
        const stored = put.then(() => {});
        stored.catch(() => {}); // the caller awaits it: a failure is reported there
        deferredBlock = { hash: hashHex(hashed.hash), size: plainSize, stored };
        return;
      }
      ({ settled } = await put);
    } finally {
      if (!deferred) {
        // The MD5 worker may still be reading the buffer (its failure shows in the digest), and
        // so may the copies of the block that finish after the write quorum.
        await md5Read?.catch(() => {});
        const buf = opts.encryption ? block : hashed.buf;
        if (settled && !opts.encryption) void settled.then(() => releaseBuffer(buf, blockSize));
        else releaseBuffer(buf, blockSize);
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

  const dispatch = async (block: Uint8Array, offset: number) => {
    while (inFlight.size - refCommits >= BLOCKS_IN_FLIGHT_PER_REQUEST || refCommits > REF_COMMITS_IN_FLIGHT) await Promise.race(inFlight);
    if (failure) throw failure;
    if (blockCount === 0 && block.length >= HASH_IN_WORKER_MIN) workerMd5 = hasher.openMd5();
    // Posted here, in body order; the worker handles messages in the order they arrive.
    const md5Read = workerMd5?.update(block);
    if (workerMd5 === undefined) localMd5.update(block);
    blockCount++;
    track(storeBlock(block, offset, md5Read));
  };

  try {
    for await (const chunk of opts.chunks) {
      if (failure) throw failure;
      for (const s of sums.values()) s.update(chunk);
      let pos = 0;
      while (pos < chunk.length) {
        if (fill === buf.length) {
          // Only a small first buffer can be full here: the body outgrew its hint.
          const grown = takeBuffer(blockSize);
          grown.set(buf.subarray(0, fill));
          buf = grown;
        }
        const n = Math.min(chunk.length - pos, buf.length - fill, cut - fill);
        buf.set(chunk.subarray(pos, pos + n), fill);
        fill += n;
        pos += n;
        size += n;
        if (fill === cut) {
          await dispatch(cut === buf.length ? buf : buf.subarray(0, cut), size - cut);
          buf = takeBuffer(blockSize);
          fill = 0;
        }
      }
    }
    let inline: Uint8Array | undefined;
    if (blockCount === 0 && opts.allowInline && size < INLINE_THRESHOLD) {
      inline = buf.slice(0, fill);
      localMd5.update(inline);
      releaseBuffer(buf, blockSize);
    } else if (fill > 0) {
      await dispatch(buf.subarray(0, fill), size - fill);
    } else {
      releaseBuffer(buf, blockSize);
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
  }
}
