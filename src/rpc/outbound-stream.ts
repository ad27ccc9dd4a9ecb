// The sending end of one direction of one request (the caller's request, or the callee's
// response): it cuts the head and the body into frames on its own lane of the send queue,
// respects the receiver's credit (send-side flow control) and the queue's byte bound, and can be
// stopped at any point (cancel, timeout, connection loss) without leaving frames behind.
//
// Body chunks are owned by the RPC layer once yielded (as with ReadableStream): frames point
// into them until they are sealed, so a producer must not reuse a yielded buffer.
import { assert } from "../util/assert.ts";
import { encodeWireError, RPC_ERR, RpcError } from "./errors.ts";
import { FLAG_BODY, FLAG_END, FLAG_ERROR, FLAG_MORE, MAX_FRAME_PAYLOAD, encodedFrameSize, type Frame } from "./frame.ts";
import { STREAM_WINDOW_BYTES } from "./inbound-body.ts";
import { Lane, type SendQueue } from "./send-queue.ts";

const EMPTY = new Uint8Array(0);

/** What a stream needs from its connection. */
export interface FrameSink {
  readonly queue: SendQueue;
  scheduleFlush(): void;
}

/** The body's producer threw: the receiver has been sent an ERROR frame. */
export class BodySourceError extends Error {
  constructor(readonly original: unknown) {
    super(original instanceof Error ? original.message : String(original));
    this.name = "BodySourceError";
  }
}

export class OutboundStream {
  readonly lane: Lane;
  private credit = STREAM_WINDOW_BYTES;
  private creditWaiter: (() => void) | null = null;
  private stopReason: Error | null = null;

  constructor(
    private readonly sink: FrameSink,
    readonly requestId: number,
    /** FLAG_RESPONSE for the callee's stream, 0 for the caller's. */
    private readonly directionFlag: number,
    readonly priority: number,
    private readonly idleTimeoutMs: number,
  ) {
    this.lane = new Lane(priority);
  }

  /** Set once stop() was called; the stream sends nothing more. */
  get stopped(): boolean {
    return this.stopReason !== null;
  }

  /** Frames of this stream that reached the socket (0: the peer knows nothing of it). */
  get framesSent(): number {
    return this.lane.sent;
  }

  /** Sends the head, cut into frames; the last one carries END when no body follows. */
  async sendHead(head: Uint8Array, bodyFollows: boolean): Promise<void> {
    let off = 0;
    do {
      const n = Math.min(head.length - off, MAX_FRAME_PAYLOAD);
      const last = off + n >= head.length;
      const flags = last ? (bodyFollows ? 0 : FLAG_END) : FLAG_MORE;
      await this.enqueue(flags, head.subarray(off, off + n));
      off += n;
    } while (off < head.length);
  }

  /**
   * Streams `body` as BODY frames within the receiver's credit, then a BODY|END frame. A producer
   * failure is forwarded as an ERROR frame and rethrown as BodySourceError. When stopped, throws
   * the stop reason. The producer's iterator is closed (return()) whenever the pump quits early.
   */
  async sendBody(body: AsyncIterable<Uint8Array>): Promise<void> {
    const it = body[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        this.throwIfStopped();
        let step: IteratorResult<Uint8Array>;
        try {
          step = await it.next();
        } catch (err) {
          finished = true; // the producer is already broken; do not call return() on it
          await this.sendError(err);
          throw new BodySourceError(err);
        }
        if (step.done) {
          finished = true;
          break;
        }
        const chunk = step.value;
        if (!(chunk instanceof Uint8Array)) {
          const err = new TypeError("body chunks must be Uint8Array");
          await this.sendError(err);
          throw new BodySourceError(err);
        }
        let off = 0;
        while (off < chunk.length) {
          await this.waitForCredit();
          const n = Math.min(chunk.length - off, MAX_FRAME_PAYLOAD, this.credit);
          this.credit -= n;
          await this.enqueue(FLAG_BODY, chunk.subarray(off, off + n));
          off += n;
        }
      }
      await this.enqueue(FLAG_BODY | FLAG_END, EMPTY);
    } finally {
      if (!finished) {
        try {
          await it.return?.();
        } catch {
          // the producer's own cleanup failed; the stream is over either way
        }
      }
    }
  }

  /** Ends this direction with an ERROR frame carrying `err`'s message (and string code). */
  async sendError(err: unknown): Promise<void> {
    if (this.stopped) return;
    await this.enqueue(FLAG_ERROR, encodeWireError(err));
  }

  /** Adds credit granted by the receiver. False: it granted more than was ever spent. */
  grant(bytes: number): boolean {
    if (this.stopped) return true; // late credit for a stream we gave up on
    this.credit += bytes;
    if (bytes <= 0 || this.credit > STREAM_WINDOW_BYTES) return false;
    const w = this.creditWaiter;
    this.creditWaiter = null;
    w?.();
    return true;
  }

  /** Stops the stream: drops its queued frames and wakes its waits with `reason`. Idempotent. */
  stop(reason: Error): void {
    if (this.stopReason) return;
    this.stopReason = reason;
    this.sink.queue.dropLane(this.lane, reason);
    const w = this.creditWaiter;
    this.creditWaiter = null;
    w?.();
  }

  private throwIfStopped(): void {
    if (this.stopReason) throw this.stopReason;
  }

  private async waitForCredit(): Promise<void> {
    this.throwIfStopped();
    while (this.credit <= 0) {
      assert(this.creditWaiter === null, "one credit wait per stream");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = await new Promise<boolean>((resolve) => {
        this.creditWaiter = () => resolve(false);
        timer = setTimeout(() => resolve(true), this.idleTimeoutMs);
      });
      clearTimeout(timer);
      this.creditWaiter = null;
      this.throwIfStopped();
      if (stalled) {
        throw new RpcError(`receiver granted no credit for ${this.idleTimeoutMs} ms (stalled stream)`, RPC_ERR.stalled);
      }
    }
  }

  private async enqueue(flags: number, payload: Uint8Array): Promise<void> {
    this.throwIfStopped();
    const frame: Frame = {
      requestId: this.requestId,
      flags: flags | this.directionFlag,
      priority: this.priority,
      payload,
    };
    await this.sink.queue.reserve(this.lane, encodedFrameSize(frame));
    // Stopped while waiting for room: the reservation is released by push() on a closed lane.
    this.sink.queue.push(this.lane, frame);
    this.throwIfStopped();
    this.sink.scheduleFlush();
  }
}
