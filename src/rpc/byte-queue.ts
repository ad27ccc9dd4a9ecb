// A FIFO of received byte chunks that length-prefixed parsers (records, frames, handshake
// messages) read from. It owns the reassembly of data that TCP split at arbitrary points:
// reads are zero-copy when the bytes sit in one chunk and copy only when they span chunks.
// With `keepDropped`, the chunks it has read to their end are kept aside for the owner, who may
// hand their memory back once it no longer reads views of them (takeDropped).
import { assert } from "../util/assert.ts";

export class ByteQueue {
  private chunks: Uint8Array[] = [];
  /** Offset of the first unread byte inside chunks[0]. */
  private headOffset = 0;
  private total = 0;
  private dropped: Uint8Array[] = [];

  constructor(private readonly keepDropped = false) {}

  get length(): number {
    return this.total;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** The byte at `index` from the read position, without consuming it. */
  peekByte(index: number): number {
    assert(index >= 0 && index < this.total, "peekByte within the queued bytes");
    let i = index + this.headOffset;
    for (const chunk of this.chunks) {
      if (i < chunk.length) return chunk[i]!;
      i -= chunk.length;
    }
    throw new Error("unreachable: index checked against total");
  }

  peekU32(index: number): number {
    return (
      ((this.peekByte(index) << 24) |
        (this.peekByte(index + 1) << 16) |
        (this.peekByte(index + 2) << 8) |
        this.peekByte(index + 3)) >>>
      0
    );
  }

  /**
   * Consumes exactly n bytes (n <= length). Zero-copy when they lie in one received chunk; else
   * copied into `scratch` when given (at least n bytes, reused by the caller), or a new buffer.
   */
  read(n: number, scratch?: Uint8Array): Uint8Array {
    assert(n >= 0 && n <= this.total, "read within the queued bytes");
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[0]!;
    const available = first.length - this.headOffset;
    if (n <= available) {
      const out = first.subarray(this.headOffset, this.headOffset + n);
      this.consume(n);
      return out;
    }
    assert(scratch === undefined || scratch.length >= n, "a scratch buffer holds the read");
    // allocUnsafe: every byte is overwritten below, so zero-filling would be wasted work.
    const out = scratch ? scratch.subarray(0, n) : Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.chunks[0]!;
      const take = Math.min(n - filled, chunk.length - this.headOffset);
      out.set(chunk.subarray(this.headOffset, this.headOffset + take), filled);
      filled += take;
      this.consume(take);
    }
    return out;
  }

  /** The chunks read to their end since the last call (with `keepDropped`). */
  takeDropped(): Uint8Array[] {
    const out = this.dropped;
    this.dropped = [];
    return out;
  }

  /** Removes and returns everything queued (used when a parser hands the stream over). */
  drainAll(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let i = 0; i < this.chunks.length; i++) {
      const chunk = this.chunks[i]!;
      out.push(i === 0 ? chunk.subarray(this.headOffset) : chunk);
    }
    this.chunks = [];
    this.headOffset = 0;
    this.total = 0;
    return out.filter((c) => c.length > 0);
  }

  private consume(n: number): void {
    this.total -= n;
    this.headOffset += n;
    while (this.chunks.length > 0 && this.headOffset >= this.chunks[0]!.length) {
      this.headOffset -= this.chunks[0]!.length;
      const done = this.chunks.shift()!;
      if (this.keepDropped) this.dropped.push(done);
    }
    if (this.chunks.length === 0) {
      assert(this.total === 0 && this.headOffset === 0, "empty queue has no bytes");
    }
  }
}
