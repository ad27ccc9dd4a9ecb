// Block buffers and their lifetimes: memory handed back to the allocator the moment its owner is
// done with it (freeNow), the lending of memory to a consumer that says when it is done
// (lend/chunkDone), and a pool of block-sized shared buffers, leased from the node's memory
// budget, for the memory that cannot be handed back early (SharedArrayBuffers).
//
// Why: memory the garbage collector frees only at its next collection is, on these machines,
// handed back to the OS in the meantime (the allocator purges free pages after 100 ms) and
// faulted in again by the next allocation. A receiving replica spent more time in page faults
// than on its work (docs/memory.md). Memory freed as soon as its last reader is done is reused
// at once by the next allocation of that size, still mapped.
import { assert } from "./assert";
import type { MemoryBudget, Release } from "./memory-budget";

/**
 * Smallest buffer freeNow hands back: smaller ones may be slices of Node's shared Buffer pool
 * (8 KiB slabs), and the allocator keeps small sizes on pages it reuses anyway.
 */
export const FREE_NOW_MIN_BYTES = 16 * 1024;

/**
 * Hands `buf`'s memory back to the allocator now (its ArrayBuffer is detached: every view of it
 * becomes empty) instead of at the next garbage collection. Only for memory the caller alone
 * reads: a socket read, a cipher's output, a block read from disk, a buffer it allocated. Shared
 * memory and buffers under FREE_NOW_MIN_BYTES are left to the collector.
 */
export function freeNow(buf: Uint8Array): void {
  detach(buf.buffer);
}

/**
 * A consumer is done with a chunk it was handed (a request body's): lent memory is given back
 * (chunkDone); a chunk spanning its whole buffer, the reader's own read, is freed (freeNow); a
 * view into a larger buffer is left alone, its producer may read the rest.
 */
export function consumed(chunk: Uint8Array): void {
  if (chunkDone(chunk)) return;
  if (chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength) freeNow(chunk);
}

function detach(ab: ArrayBufferLike): void {
  if (!(ab instanceof ArrayBuffer) || ab.byteLength < FREE_NOW_MIN_BYTES || ab.detached) return;
  ab.transfer(0);
}

/** A block buffer of `size` bytes whose memory is not zeroed (every byte is written before it is read). */
export function uninitialized(size: number): Uint8Array {
  return Buffer.allocUnsafeSlow(size);
}

/** What happens to lent memory once it is read: handed back (freeNow), back to its pool, or nothing. */
export type AfterLoan = "free" | BufferPool | undefined;

interface Loan {
  /** Byte ranges [start, end) of the buffer still being read. */
  parts: [number, number][];
  release: () => void;
  after: AfterLoan;
}

/** Lent memory, by the ArrayBuffer its chunks share. */
const lent = new WeakMap<ArrayBufferLike, Loan>();
/**
 * A consumer that drops a lent chunk without calling chunkDone (a bug, or a path that cannot
 * tell) must not keep the lender's lease forever: the release then runs when the memory is
 * collected. So a release never refers to the memory it releases.
 */
const collected = new FinalizationRegistry<() => void>((release) => release());

/**
 * Lends `chunk` to its consumer, who calls chunkDone on it (or on a view inside it) once done
 * reading; then its memory goes where `after` says, and `release` runs (once).
 */
export function lend(chunk: Uint8Array, release: () => void, after?: AfterLoan): Uint8Array {
  lendAll([chunk], release, after);
  return chunk;
}

/** Like lend, for several chunks (views of one buffer, not overlapping): released once every one is done. */
export function lendAll(chunks: readonly Uint8Array[], release: () => void, after?: AfterLoan): void {
  assert(chunks.length > 0, "something is lent");
  const buffer = chunks[0]!.buffer;
  assert(!lent.has(buffer), "a buffer is lent once at a time");
  assert(chunks.every((c) => c.buffer === buffer), "chunks lent together share one buffer");
  const loan: Loan = { parts: chunks.map((c) => [c.byteOffset, c.byteOffset + c.byteLength]), release, after };
  lent.set(buffer, loan);
  collected.register(buffer, release, loan);
}

/**
 * The consumer no longer reads this chunk: once no chunk of its memory is read, it may be reused.
 * Returns whether the chunk was lent memory (false: other memory, left as it is).
 */
export function chunkDone(chunk: Uint8Array): boolean {
  const buffer = chunk.buffer;
  const loan = lent.get(buffer);
  if (loan === undefined) return false;
  const at = chunk.byteOffset;
  const i = loan.parts.findIndex(([start, end]) => start <= at && at + chunk.byteLength <= end);
  if (i < 0) return true;
  loan.parts.splice(i, 1);
  if (loan.parts.length > 0) return true;
  lent.delete(buffer);
  collected.unregister(loan);
  // The lease first: a pool keeps a buffer only when the budget has room for it.
  loan.release();
  putAway(buffer, loan.after);
  return true;
}

function putAway(buffer: ArrayBufferLike, after: AfterLoan): void {
  if (after === "free") detach(buffer);
  else if (after) after.giveOrFree(new Uint8Array(buffer));
}

/**
 * Moves the loan of `from` (lent, and read to its end by the caller) to `to`, memory of the
 * caller's making from it (its decryption): whoever reads `to` now says when the lease ends.
 */
export function relend(from: Uint8Array, to: Uint8Array): Uint8Array {
  const loan = lent.get(from.buffer);
  if (loan === undefined) return to;
  lent.delete(from.buffer);
  collected.unregister(loan);
  putAway(from.buffer, loan.after);
  return lend(to, loan.release, "free");
}

/**
 * Where a block about to be read or received goes: `lease` finds room for it once its size is
 * known, then its memory comes from `pool` (a new buffer when it is larger than the pool's).
 * Its reader gives it back with pool.giveOrFree, then releases the lease.
 */
export interface BlockRoom {
  lease(bytes: number): Promise<Release>;
  pool: BufferPool;
}

/**
 * Block-sized buffers reused from one block to the next: a block buffer freed (freeNow) waits
 * too long for the next allocation of its size, which then faults fresh pages in (measured on a
 * receiving replica: every received block did), and shared memory (which the hashing workers
 * read in place) cannot be handed back early at all. A buffer in use is covered by its owner's
 * lease; a free one holds a lease of the pool's, taken only when the budget has room and nobody
 * waits. Free ones are kept up to `maxFree`, and all dropped when a lease does not fit or when
 * the pool has not been used for POOL_IDLE_MS.
 */
export class BufferPool {
  private readonly free: { buf: Uint8Array; lease: Release }[] = [];
  /** Memory this pool allocated: only that comes back into it. */
  private readonly own = new WeakSet<ArrayBufferLike>();
  private lastUse = 0;
  private readonly idleTimer: ReturnType<typeof setInterval>;
  private readonly unregister: () => void;

  constructor(
    readonly size: number,
    /** Free buffers kept. */
    readonly maxFree: number,
    private readonly budget: MemoryBudget,
    private readonly alloc: (size: number) => Uint8Array,
  ) {
    assert(size > 0 && maxFree >= 0, "a buffer pool needs a positive size");
    this.unregister = budget.onPressure(() => this.drop());
    this.idleTimer = setInterval(() => {
      if (this.free.length > 0 && performance.now() - this.lastUse >= POOL_IDLE_MS) this.drop();
    }, POOL_IDLE_MS);
    this.idleTimer.unref?.();
  }

  /** Free buffers now. */
  get freeCount(): number {
    return this.free.length;
  }

  /** A buffer for an owner whose own lease covers it: a free one (the pool's lease on it ends) or a new one. */
  take(): Uint8Array {
    this.lastUse = performance.now();
    const kept = this.free.pop();
    if (kept) {
      kept.lease();
      return kept.buf;
    }
    const fresh = this.alloc(this.size);
    this.own.add(fresh.buffer);
    return fresh;
  }

  /** `size` bytes for an owner whose lease covers them: from the pool when they fit a buffer of it, else new. */
  takeFor(size: number): Uint8Array {
    return size <= this.size ? this.take().subarray(0, size) : this.alloc(size);
  }

  /** Gives back memory from takeFor: the pool's to the pool, other memory to the allocator (freeNow). */
  giveOrFree(buf: Uint8Array): void {
    if (this.own.has(buf.buffer)) this.give(buf);
    else freeNow(buf);
  }

  /**
   * Returns a buffer taken from this pool, or any view of one: the whole buffer comes back, and
   * nothing may use it afterwards. Its owner gives back its own lease first, so that the pool
   * keeps it only when nobody waits for that memory. Other memory is ignored.
   */
  give(buf: Uint8Array): void {
    if (!this.own.has(buf.buffer)) return;
    this.lastUse = performance.now();
    // Given twice, one buffer would be handed to two takers at once.
    assert(!this.free.some((f) => f.buf.buffer === buf.buffer), "a pooled buffer is given back once");
    const lease = this.free.length < this.maxFree ? this.budget.tryAcquire(this.size) : undefined;
    if (lease) this.free.push({ buf: new Uint8Array(buf.buffer, 0, this.size), lease });
  }

  /** Drops every free buffer and its lease: plain memory is handed back at once, shared memory by the collector. */
  drop(): void {
    if (this.free.length === 0) return;
    let shared = false;
    for (const f of this.free.splice(0)) {
      shared ||= !(f.buf.buffer instanceof ArrayBuffer);
      freeNow(f.buf);
      f.lease();
    }
    if (shared) Bun.gc(false);
  }

  /** Stops the idle check and drops the free buffers (shutdown, tests). */
  close(): void {
    clearInterval(this.idleTimer);
    this.unregister();
    this.drop();
  }
}

/** A pool not used for this long drops its free buffers (RSS goes back down after a burst). */
export const POOL_IDLE_MS = 2_000;
