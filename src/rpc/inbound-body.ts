// The receiving end of a streamed body: an AsyncIterable<Uint8Array> over the BODY frames of one
// request direction. It owns receive-side flow control: the sender may have at most
// STREAM_WINDOW_BYTES unacknowledged, and credit is granted back only as the consumer reads, so a
// slow consumer holds the sender back instead of growing this buffer.
//
// Chunks may be lent memory (a received record, rpc/connection.ts): the reader calls chunkDone
// (util/buffer-pool) on each once it has copied it out, and chunks dropped here unread are
// marked done too.
import { assert } from "../util/assert.ts";
import { chunkDone } from "../util/buffer-pool.ts";
import { RPC_ERR, RpcError } from "./errors.ts";

/** Body bytes a sender may have in flight per stream before it waits for credit. */
export const STREAM_WINDOW_BYTES = 1024 * 1024;
/** Credit is returned in batches of this many consumed bytes (fewer CREDIT frames). */
export const CREDIT_BATCH_BYTES = STREAM_WINDOW_BYTES / 4;
/** A body stream that makes no progress for this long fails (sender or receiver side). */
export const STREAM_IDLE_TIMEOUT_MS = 60_000;

export interface InboundBodyHooks {
  /** Send a CREDIT frame for `bytes` the consumer has taken. */
  grant(bytes: number): void;
  /** The consumer stopped early (or stalled): tell the sender to stop. */
  abandon(): void;
  idleTimeoutMs: number;
  /** For error messages, e.g. "response body of 'block.get' from a1b2c3d4". */
  describe: string;
}

export class InboundBody implements AsyncIterable<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  /** Bytes the sender may still send without new credit. */
  private allowance = STREAM_WINDOW_BYTES;
  /** Bytes consumed but not yet granted back. */
  private ungranted = 0;
  private ended = false;
  private error: Error | null = null;
  private abandoned = false;
  private iterated = false;
  private waiter: { resolve: (r: IteratorResult<Uint8Array>) => void; reject: (e: Error) => void } | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly hooks: InboundBodyHooks) {}

  /** True once no more data will be delivered or accepted. */
  get finished(): boolean {
    return this.ended || this.error !== null || this.abandoned;
  }

  /** Bytes received and not yet consumed. */
  get buffered(): number {
    let n = 0;
    for (const c of this.chunks) n += c.length;
    return n;
  }

  /** Delivers a received chunk. False means the sender overran its credit (protocol error). */
  push(chunk: Uint8Array): boolean {
    if (this.finished) {
      chunkDone(chunk); // late frames after an abandon are dropped
      return true;
    }
    this.allowance -= chunk.length;
    if (this.allowance < 0) return false;
    if (chunk.length === 0) return true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      this.clearIdle();
      this.consumed(chunk.length);
      w.resolve({ value: chunk, done: false });
    } else {
      this.chunks.push(chunk);
    }
    return true;
  }

  end(): void {
    if (this.finished) return;
    this.ended = true;
    this.settleWaiter();
  }

  fail(err: Error): void {
    if (this.finished) return;
    this.error = err;
    this.dropChunks();
    this.settleWaiter();
  }

  /** Stops reading: drops what is buffered and tells the sender to stop. Idempotent. */
  discard(): void {
    if (this.finished) return;
    this.abandoned = true;
    this.dropChunks();
    this.settleWaiter();
    this.hooks.abandon();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    if (this.iterated) throw new RpcError(`${this.hooks.describe} can be read only once`, RPC_ERR.protocol);
    this.iterated = true;
    return {
      next: () => this.next(),
      return: async () => {
        this.discard();
        return { value: undefined, done: true };
      },
    };
  }

  private next(): Promise<IteratorResult<Uint8Array>> {
    assert(this.waiter === null, "one pending read on a body at a time");
    const chunk = this.chunks.shift();
    if (chunk !== undefined) {
      this.consumed(chunk.length);
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.error) return Promise.reject(this.error);
    if (this.ended || this.abandoned) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.idleTimer = setTimeout(() => {
        const err = new RpcError(
          `${this.hooks.describe} stalled: no data for ${this.hooks.idleTimeoutMs} ms`,
          RPC_ERR.stalled,
        );
        this.fail(err);
        this.hooks.abandon();
      }, this.hooks.idleTimeoutMs);
    });
  }

  private dropChunks(): void {
    for (const c of this.chunks.splice(0)) chunkDone(c);
  }

  private consumed(bytes: number): void {
    this.ungranted += bytes;
    if (this.ungranted >= CREDIT_BATCH_BYTES && !this.finished) {
      this.allowance += this.ungranted;
      assert(this.allowance <= STREAM_WINDOW_BYTES, "granted credit never exceeds the window");
      this.hooks.grant(this.ungranted);
      this.ungranted = 0;
    }
  }

  private settleWaiter(): void {
    this.clearIdle();
    const w = this.waiter;
    if (!w) return;
    this.waiter = null;
    if (this.error) w.reject(this.error);
    else w.resolve({ value: undefined, done: true });
  }

  private clearIdle(): void {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }
}
