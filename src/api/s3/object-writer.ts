// Turns a request body into stored data for one version: cuts it into block_size blocks,
// hashes each with BLAKE3 off-thread while MD5 and the requested checksums run here, records
// the block references, then stores the block; a bounded window of blocks is in flight.
// Bodies smaller than INLINE_THRESHOLD come back inline and write no block at all.
import { CryptoHasher } from "bun";
import { createChecksum, type ChecksumAlgorithm, type StreamingChecksum } from "../../util/checksum";
import { BLOCKS_IN_FLIGHT_PER_REQUEST, INLINE_THRESHOLD } from "../../util/limits";
import { blake3Sync, hashHex } from "../../block/hash";
import { assert } from "../../util/assert";
import type { S3Services } from "./context";

/** Blocks at least this large are hashed in the worker; smaller ones on this thread. */
const HASH_IN_WORKER_MIN = 128 * 1024;
/** Free block buffers kept for reuse (first-touch memory is slow on these machines). */
const BUFFER_POOL_MAX = 16;
const bufferPool = new Map<number, Uint8Array[]>();

function takeBuffer(size: number): Uint8Array {
  return bufferPool.get(size)?.pop() ?? new Uint8Array(size);
}

function releaseBuffer(buf: Uint8Array, blockSize: number): void {
  const full = new Uint8Array(buf.buffer, 0, buf.buffer.byteLength);
  if (full.length !== blockSize) return; // a small body's exact-size buffer: not worth keeping
  const pool = bufferPool.get(full.length) ?? [];
  if (pool.length < BUFFER_POOL_MAX) pool.push(full);
  bufferPool.set(full.length, pool);
}

export interface WrittenBody {
  size: number;
  md5: Uint8Array;
  checksums: Map<ChecksumAlgorithm, Uint8Array>;
  /** Set when the whole body was small enough to live in the object entry. */
  inline?: Uint8Array;
  blockCount: number;
  /** With `deferRefs`: the single block stored, whose references the caller writes. */
  deferredBlock?: { hash: string; size: number };
}

export interface WriteBodyOptions {
  versionUuid: string;
  /** Part number for multipart uploads, 0 for a plain object. */
  part: number;
  chunks: AsyncIterable<Uint8Array>;
  checksumAlgorithms: readonly ChecksumAlgorithm[];
  allowInline: boolean;
  /**
   * The body fits in one block: store the block first and let the caller record it together
   * with the object in one metadata commit. A crash in between leaves an unreferenced block
   * that orphan collection removes.
   */
  deferRefs?: boolean;
  /** The body's announced length: a small body gets a buffer of its size, not a whole block. */
  sizeHint?: number;
}

export async function writeBody(services: S3Services, opts: WriteBodyOptions): Promise<WrittenBody> {
  const { model, blocks, hasher } = services;
  const blockSize = services.settings.blockSize;
  const md5 = new CryptoHasher("md5");
  const sums = new Map<ChecksumAlgorithm, StreamingChecksum>(opts.checksumAlgorithms.map((a) => [a, createChecksum(a)]));
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let size = 0;
  let blockCount = 0;
  const firstSize = opts.sizeHint !== undefined && opts.sizeHint < blockSize ? Math.max(opts.sizeHint, 1) : blockSize;
  let buf = firstSize === blockSize ? takeBuffer(blockSize) : new Uint8Array(firstSize);
  let fill = 0;
  let deferredBlock: WrittenBody["deferredBlock"];

  const storeBlock = async (block: Uint8Array, offset: number) => {
    // A small block hashes in microseconds: a round trip to the worker would cost more.
    const hashed = block.length < HASH_IN_WORKER_MIN ? { hash: blake3Sync(block), buf: block } : await hasher.hash(block);
    const hash = hashHex(hashed.hash);
    if (opts.deferRefs) {
      assert(offset === 0 && deferredBlock === undefined, "deferred references are for single-block bodies");
      try {
        await blocks.put(hash, hashed.buf);
        deferredBlock = { hash, size: hashed.buf.length };
      } finally {
        releaseBuffer(hashed.buf, blockSize);
      }
      return;
    }
    try {
      // The reference is committed before the block is stored, so block GC can never
      // delete a block that a version is about to use.
      await Promise.all([
        model.versionBlocks.insert({ uuid: opts.versionUuid, part: opts.part, offset, hash, size: hashed.buf.length }),
        model.blockRefs.insert({ hash, version: opts.versionUuid, deleted: false }),
      ]);
      await blocks.put(hash, hashed.buf);
    } finally {
      releaseBuffer(hashed.buf, blockSize);
    }
  };

  const dispatch = async (block: Uint8Array, offset: number) => {
    while (inFlight.size >= BLOCKS_IN_FLIGHT_PER_REQUEST) await Promise.race(inFlight);
    if (failure) throw failure;
    blockCount++;
    const task: Promise<void> = storeBlock(block, offset).then(
      () => void inFlight.delete(task),
      (err) => {
        inFlight.delete(task);
        failure ??= err;
      },
    );
    inFlight.add(task);
  };

  try {
    for await (const chunk of opts.chunks) {
      if (failure) throw failure;
      md5.update(chunk);
      for (const s of sums.values()) s.update(chunk);
      let pos = 0;
      while (pos < chunk.length) {
        if (fill === buf.length) {
          // Only a small first buffer can be full here: the body outgrew its hint.
          const grown = takeBuffer(blockSize);
          grown.set(buf.subarray(0, fill));
          buf = grown;
        }
        const n = Math.min(chunk.length - pos, buf.length - fill);
        buf.set(chunk.subarray(pos, pos + n), fill);
        fill += n;
        pos += n;
        size += n;
        if (fill === blockSize) {
          await dispatch(buf, size - blockSize);
          buf = takeBuffer(blockSize);
          fill = 0;
        }
      }
    }
    let inline: Uint8Array | undefined;
    if (blockCount === 0 && opts.allowInline && size < INLINE_THRESHOLD) {
      inline = buf.slice(0, fill);
      releaseBuffer(buf, blockSize);
    } else if (fill > 0) {
      await dispatch(buf.subarray(0, fill), size - fill);
    } else {
      releaseBuffer(buf, blockSize);
    }
    await Promise.all(inFlight);
    if (failure) throw failure;
    const checksums = new Map([...sums].map(([a, s]) => [a, s.digest()] as const));
    return { size, md5: new Uint8Array(md5.digest()), checksums, inline, blockCount, deferredBlock };
  } catch (err) {
    // Let blocks already in flight settle so nothing writes after the caller aborts.
    await Promise.allSettled(inFlight);
    throw err;
  }
}
