// Reusable byte buffers of one size, and the lending of such a buffer to a consumer that gives it
// back when done. First-touch memory is slow on these machines: reading a block into a fresh
// allocation costs page faults and zeroing several times the copy itself (docs/stack-facts.md#variance).
import { assert } from "./assert";

export class BufferPool {
  private readonly free: Uint8Array[] = [];
  /** Memory this pool allocated: only that comes back into it. */
  private readonly own = new WeakSet<ArrayBufferLike>();

  constructor(
    readonly size: number,
    /** Free buffers kept; beyond that, returned buffers are left to the garbage collector. */
    readonly maxFree: number,
    private readonly alloc: (size: number) => Uint8Array = (n) => new Uint8Array(n),
  ) {
    assert(size > 0 && maxFree >= 0, "a buffer pool needs a positive size");
  }

  take(): Uint8Array {
    const reused = this.free.pop();
    if (reused) return reused;
    const fresh = this.alloc(this.size);
    this.own.add(fresh.buffer);
    return fresh;
  }

  /**
   * Returns a buffer taken from this pool, or any view of one (a block shorter than the buffer):
   * the whole buffer goes back, and nothing may use it afterwards. Other memory is ignored.
   */
  give(buf: Uint8Array): void {
    if (!this.own.has(buf.buffer)) return;
    // Given twice, one buffer would be handed to two takers at once.
    assert(!this.free.some((f) => f.buffer === buf.buffer), "a pooled buffer is given back once");
    if (this.free.length < this.maxFree) this.free.push(new Uint8Array(buf.buffer, 0, this.size));
  }
}

/** Release functions of lent memory, by the ArrayBuffer every chunk of it shares. */
const lent = new WeakMap<ArrayBufferLike, () => void>();

/**
 * Lends `chunk`'s memory to the consumer: once done with it, the consumer calls chunkDone and
 * `release` runs (once). A consumer that never calls chunkDone only costs a reallocation.
 * One chunk per buffer: the whole buffer is released with it.
 */
export function lend(chunk: Uint8Array, release: () => void): Uint8Array {
  assert(!lent.has(chunk.buffer), "a buffer is lent once at a time");
  lent.set(chunk.buffer, release);
  return chunk;
}

/** The consumer no longer reads this chunk: its buffer may be reused. No-op for other memory. */
export function chunkDone(chunk: Uint8Array): void {
  const release = lent.get(chunk.buffer);
  if (release === undefined) return;
  lent.delete(chunk.buffer);
  release();
}
