// A Bun TCP socket seen as a byte pipe. It owns the socket's quirks: partial writes and `drain`
// (Bun's socket.write is unbuffered and may accept fewer bytes than given), exact-length reads
// for the handshake, the hand-over of already-received bytes to the connection, and close.
import type { Socket } from "bun";
import { assert } from "../util/assert.ts";
import { ByteQueue } from "./byte-queue.ts";
import { RPC_ERR, RpcError } from "./errors.ts";

/** After a graceful end(), a peer that keeps the socket open is cut off after this delay. */
export const CLOSE_GRACE_MS = 2_000;

type CloseHandler = (err: RpcError) => void;

export class Transport {
  private socket: Socket<Transport> | null = null;
  /** Remainder of the last write that the kernel did not accept yet; at most one buffer. */
  private unsent: Uint8Array | null = null;
  private readonly inbox = new ByteQueue();
  private reader: { n: number; resolve: (b: Uint8Array) => void; reject: (e: Error) => void } | null = null;
  private dataHandler: ((chunk: Uint8Array) => void) | null = null;
  private readonly closeHandlers: CloseHandler[] = [];
  private closeError: RpcError | null = null;
  private graceTimer: ReturnType<typeof setTimeout> | null = null;
  /** Called when a partially written buffer has been fully handed to the kernel. */
  onDrain: () => void = () => {};
  /** The peer's address and port, for log lines. */
  remote = "unknown";
  /** The peer's address alone (what a refusal's log line is counted by). */
  remoteAddress = "unknown";

  attach(socket: Socket<Transport>): void {
    assert(this.socket === null, "a transport is attached once");
    this.socket = socket;
    this.remoteAddress = socket.remoteAddress;
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    // RPC frames are small and latency-bound; Nagle + delayed ACK would add ~40 ms stalls.
    socket.setNoDelay(true);
  }

  get closed(): boolean {
    return this.closeError !== null;
  }

  /** True when a write would reach the kernel now (nothing is waiting for `drain`). */
  get writable(): boolean {
    return this.unsent === null && !this.closed;
  }

  /**
   * Writes `bytes` (ownership passes to the transport). Returns true when the kernel took all
   * of it; otherwise the rest is kept and `onDrain` fires once it is written. Writing while a
   * remainder is pending is a bug: callers check `writable`.
   */
  write(bytes: Uint8Array): boolean {
    if (this.closed || this.socket === null) return false;
    assert(this.unsent === null, "no write while an earlier one waits for drain");
    return this.writeOut(bytes);
  }

  private writeOut(bytes: Uint8Array): boolean {
    // Always pass the length: Bun's write(buf, off) without it throws (docs/stack-facts.md#tcp-write).
    const n = this.socket!.write(bytes, 0, bytes.length);
    if (n < 0) {
      this.handleClose(new RpcError(`connection to ${this.remote} closed while writing`, RPC_ERR.connectionLost));
      return false;
    }
    if (n === bytes.length) {
      this.unsent = null;
      return true;
    }
    this.unsent = bytes.subarray(n);
    return false;
  }

  /** Reads exactly n bytes (handshake phase only, one read at a time). */
  read(n: number): Promise<Uint8Array> {
    assert(this.reader === null, "one pending read at a time");
    assert(this.dataHandler === null, "exact reads only before streaming starts");
    if (this.closeError) return Promise.reject(this.closeError);
    if (this.inbox.length >= n) return Promise.resolve(this.inbox.read(n));
    return new Promise((resolve, reject) => {
      this.reader = { n, resolve, reject };
    });
  }

  /** Switches to push mode: bytes already buffered are delivered first, then every chunk. */
  startStreaming(handler: (chunk: Uint8Array) => void): void {
    assert(this.reader === null, "no exact read pending when streaming starts");
    assert(this.dataHandler === null, "streaming starts once");
    this.dataHandler = handler;
    for (const chunk of this.inbox.drainAll()) {
      if (this.closed) return;
      handler(chunk);
    }
  }

  onClose(handler: CloseHandler): void {
    if (this.closeError) handler(this.closeError);
    else this.closeHandlers.push(handler);
  }

  /** Closes the socket. `abrupt` resets it (used on protocol violations). */
  close(err: RpcError, abrupt = false): void {
    const socket = this.socket;
    this.handleClose(err);
    if (socket === null) return;
    if (abrupt) {
      socket.terminate();
      return;
    }
    socket.end();
    this.graceTimer = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
    this.graceTimer.unref?.();
  }

  // ---- Bun socket callbacks (wired by rpc.ts) ----

  handleData(chunk: Uint8Array): void {
    if (this.closed) return;
    if (this.dataHandler) {
      this.dataHandler(chunk);
      return;
    }
    this.inbox.push(chunk);
    const reader = this.reader;
    if (reader && this.inbox.length >= reader.n) {
      this.reader = null;
      reader.resolve(this.inbox.read(reader.n));
    }
  }

  handleDrain(): void {
    if (this.closed || this.unsent === null) return;
    if (this.writeOut(this.unsent)) this.onDrain();
  }

  /** Bun's `close` callback: the socket is gone for good. */
  handleSocketClosed(err?: Error): void {
    if (this.graceTimer) {
      clearTimeout(this.graceTimer);
      this.graceTimer = null;
    }
    this.handleClose(err);
  }

  private handleClose(err?: Error | RpcError): void {
    if (this.closeError) return;
    this.closeError =
      err instanceof RpcError
        ? err
        : new RpcError(
            `connection to ${this.remote} lost${err ? `: ${err.message}` : ""}`,
            RPC_ERR.connectionLost,
          );
    this.unsent = null;
    const reader = this.reader;
    this.reader = null;
    reader?.reject(this.closeError);
    for (const handler of this.closeHandlers.splice(0)) handler(this.closeError);
  }
}
