// A multiplexed RPC connection to one authenticated peer, over the encrypted transport. It owns
// request ids, the caller's and the callee's per-request state machines, per-call timeouts and
// cancellation, the routing of received frames, and the writer that packs queued frames into
// encrypted records. Bodies stream with credit flow control (inbound-body.ts,
// outbound-stream.ts); the send queue orders frames by priority (send-queue.ts).
//
// Life of a call, caller side: head frames (endpoint + payload) [+ body frames] go out on the
// call's lane; the call resolves when the response head arrives (its body, if any, then streams
// into an InboundBody) and rejects on an ERROR frame, timeout, abort or connection loss. Giving
// up locally sends CANCEL, unless nothing of the call ever reached the socket.
// Callee side: the head is reassembled, the dispatcher runs the handler with an AbortSignal that
// fires on CANCEL or connection loss, and the reply goes back on a lane of the request's priority.
import { assert } from "../util/assert.ts";
import { chunkDone, freeNow, lendAll } from "../util/buffer-pool.ts";
import type { NodeId } from "../util/ids.ts";
import { logger } from "../util/log.ts";
import type { BoxOpener, BoxSealer } from "./box-stream.ts";
import { MAX_RECORD_BYTES, MAX_RECORD_PLAINTEXT } from "./box-stream.ts";
import { decodeWireError, RPC_ERR, RpcError } from "./errors.ts";
import {
  CREDIT_PAYLOAD_BYTES,
  FLAG_BODY,
  FLAG_CANCEL,
  FLAG_CREDIT,
  FLAG_END,
  FLAG_ERROR,
  FLAG_MORE,
  FLAG_RESPONSE,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  PRIO_CONTROL,
  PRIO_NORMAL,
  encodedFrameSize,
  writeFrameHeader,
  type Frame,
} from "./frame.ts";
import { InboundBody, STREAM_IDLE_TIMEOUT_MS } from "./inbound-body.ts";
import { BodySourceError, OutboundStream } from "./outbound-stream.ts";
import { MAX_SEND_QUEUE_BYTES, SendQueue } from "./send-queue.ts";
import type { Transport } from "./transport.ts";

const log = logger("rpc");

/** Default time from sending a call to receiving its response head (Garage: rpc_timeout_msec). */
export const DEFAULT_CALL_TIMEOUT_MS = 300_000;
/** Largest request or response head (endpoint + payload); bulk data belongs in bodies. */
export const MAX_HEAD_BYTES = 16 * 1024 * 1024;
/**
 * Calls awaiting their response head, per connection; more wait (most urgent first) before
 * sending anything, so a burst of calls queues at the caller instead of flooding the callee.
 * A call whose response body is streaming no longer counts: slow readers of bodies must not
 * block new calls.
 */
export const MAX_INFLIGHT_CALLS = 512;
/**
 * Handlers running at once for one peer (until they return; streaming the reply body does not
 * count); more are refused with a "busy" error. Twice the caller's limit: a well-behaved peer
 * never hits it, even while handlers it gave up on (timeout, cancel) are still winding down.
 */
export const MAX_CONCURRENT_HANDLERS = 2 * MAX_INFLIGHT_CALLS;
/**
 * The writer closes a record once it holds this much (two full frames): fewer, larger records
 * mean fewer cipher set-ups and buffers per byte, and AES-GCM is still at full speed at 128 KiB.
 */
export const RECORD_TARGET_BYTES = 128 * 1024;
/**
 * Records are packed into one reusable buffer of this size per socket write: loopback TCP costs
 * about as much per write as per byte, so few large writes beat one write per record.
 */
export const WRITE_BATCH_BYTES = 1024 * 1024;
/** Endpoint names are sent with a u8 length. */
export const MAX_ENDPOINT_BYTES = 255;
const MAX_REQUEST_ID = 0xffff_ffff;
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

export interface Reply {
  payload: Uint8Array;
  body?: AsyncIterable<Uint8Array>;
}

export interface InboundRequest {
  from: NodeId;
  endpoint: string;
  payload: Uint8Array;
  body?: AsyncIterable<Uint8Array>;
  signal: AbortSignal;
}

/** Runs the handler for a request; throws RpcError(unknown-endpoint) when there is none. */
export type Dispatcher = (req: InboundRequest) => Promise<Reply>;

export interface CallOptions {
  priority?: number;
  timeoutMs?: number;
  body?: AsyncIterable<Uint8Array>;
  signal?: AbortSignal;
}

export interface ConnectionParams {
  peerId: NodeId;
  /** Node id of the side that dialed: decides which of two duplicate connections survives. */
  dialerId: string;
  transport: Transport;
  sealer: BoxSealer;
  opener: BoxOpener;
  dispatch: Dispatcher;
  maxSendQueueBytes?: number;
  streamIdleTimeoutMs?: number;
}

export interface ConnectionStats {
  /** Node id of the side that dialed this connection. */
  dialerId: string;
  queuedBytes: number;
  queueHighWater: number;
  maxQueueBytes: number;
  pendingCalls: number;
  /** Calls waiting for one of the MAX_INFLIGHT_CALLS slots. */
  queuedCalls: number;
  servedRequests: number;
  activeHandlers: number;
  bytesSent: number;
  bytesReceived: number;
}

/** A peer broke the protocol: the connection is closed. */
class ProtocolViolation extends Error {}

/** Reassembles a head sent as MORE frames, within MAX_HEAD_BYTES. */
class HeadAssembler {
  private parts: Uint8Array[] = [];
  private bytes = 0;
  complete = false;

  add(payload: Uint8Array): boolean {
    this.bytes += payload.length;
    if (this.bytes > MAX_HEAD_BYTES) return false;
    this.parts.push(payload);
    return true;
  }

  take(): Uint8Array {
    this.complete = true;
    const parts = this.parts;
    this.parts = [];
    if (parts.length === 1) return parts[0]!;
    const out = new Uint8Array(this.bytes);
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}

interface PendingCall {
  id: number;
  endpoint: string;
  out: OutboundStream;
  head: HeadAssembler;
  responseBody: InboundBody | null;
  /** The caller's promise has been resolved or rejected. */
  settled: boolean;
  /** Removed from the call table; frames for it are ignored from now on. */
  finished: boolean;
  priority: number;
  /** Holds one of the MAX_INFLIGHT_CALLS slots (until the response head arrives). */
  hasSlot: boolean;
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout> | null;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

interface ServedRequest {
  id: number;
  head: HeadAssembler;
  body: InboundBody | null;
  out: OutboundStream;
  abort: AbortController;
  finished: boolean;
}

export function encodeRequestHead(endpoint: string, payload: Uint8Array): Uint8Array {
  const name = utf8.encode(endpoint);
  assert(name.length > 0 && name.length <= MAX_ENDPOINT_BYTES, "endpoint name is 1..255 bytes");
  const out = new Uint8Array(1 + name.length + payload.length);
  out[0] = name.length;
  out.set(name, 1);
  out.set(payload, 1 + name.length);
  return out;
}

export function decodeRequestHead(head: Uint8Array): { endpoint: string; payload: Uint8Array } {
  const n = head[0];
  if (n === undefined || n === 0 || head.length < 1 + n) throw new Error("malformed request head");
  return { endpoint: utf8Strict.decode(head.subarray(1, 1 + n)), payload: head.subarray(1 + n) };
}

function creditPayload(bytes: number): Uint8Array {
  const out = new Uint8Array(CREDIT_PAYLOAD_BYTES);
  new DataView(out.buffer).setUint32(0, bytes);
  return out;
}

function readCredit(payload: Uint8Array): number {
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
}

export class Connection {
  readonly peerId: NodeId;
  readonly dialerId: string;
  readonly queue: SendQueue;
  private readonly transport: Transport;
  private readonly sealer: BoxSealer;
  private readonly opener: BoxOpener;
  private readonly dispatch: Dispatcher;
  private readonly idleTimeoutMs: number;
  private readonly decoder = new FrameDecoder();
  private readonly calls = new Map<number, PendingCall>();
  private readonly served = new Map<number, ServedRequest>();
  private readonly closeListeners: ((err: RpcError) => void)[] = [];
  private nextId = 1;
  private activeHandlers = 0;
  private inflightCalls = 0;
  /** Calls waiting for a slot, most urgent first, FIFO within a priority. */
  private slotWaiters: { call: PendingCall; grant: () => void }[] = [];
  private flushScheduled = false;
  private draining = false;
  private started = false;
  private closeError: RpcError | null = null;
  private bytesSent = 0;
  private bytesReceived = 0;
  /**
   * Output buffer, reused by every flush: flush() only writes when the transport holds no
   * unsent remainder, i.e. once the kernel has copied all of the previous batch.
   */
  private readonly writeBuffer = Buffer.allocUnsafe(WRITE_BATCH_BYTES);

  constructor(params: ConnectionParams) {
    this.peerId = params.peerId;
    this.dialerId = params.dialerId;
    this.transport = params.transport;
    this.sealer = params.sealer;
    this.opener = params.opener;
    this.dispatch = params.dispatch;
    this.idleTimeoutMs = params.streamIdleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS;
    this.queue = new SendQueue(params.maxSendQueueBytes ?? MAX_SEND_QUEUE_BYTES);
  }

  /** Starts reading and writing. Separate from the constructor so the owner can register first. */
  start(): void {
    assert(!this.started, "a connection starts once");
    this.started = true;
    this.transport.onDrain = () => this.flush();
    this.transport.onClose((err) =>
      this.shutdown(
        err.code === RPC_ERR.connectionLost
          ? new RpcError(`connection to peer ${this.short} (${this.transport.remote}) lost`, RPC_ERR.connectionLost)
          : err,
      ),
    );
    if (!this.closed) this.transport.startStreaming((chunk) => this.receive(chunk));
  }

  get closed(): boolean {
    return this.closeError !== null;
  }

  get remoteAddress(): string {
    return this.transport.remote;
  }

  private get short(): string {
    return this.peerId.slice(0, 16);
  }

  onClose(fn: (err: RpcError) => void): void {
    if (this.closeError) fn(this.closeError);
    else this.closeListeners.push(fn);
  }

  stats(): ConnectionStats {
    return {
      dialerId: this.dialerId,
      queuedBytes: this.queue.queuedBytes,
      queueHighWater: this.queue.highWater,
      maxQueueBytes: this.queue.maxBytes,
      pendingCalls: this.calls.size,
      queuedCalls: this.slotWaiters.length,
      servedRequests: this.served.size,
      activeHandlers: this.activeHandlers,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
    };
  }

  /** Closes the connection; every pending call and stream fails with `err`. */
  close(err: RpcError = new RpcError(`connection to peer ${this.short} closed`, RPC_ERR.closed)): void {
    this.transport.close(err);
    this.shutdown(err);
  }

  /**
   * The owner stopped using this connection for new calls (a duplicate lost). Close it once
   * nothing is in flight, but not before `graceMs`: the peer may still send calls it started
   * before it saw the other connection.
   */
  drain(graceMs: number): void {
    const timer = setTimeout(() => {
      this.draining = true;
      this.closeIfDrained();
    }, graceMs);
    timer.unref?.();
  }

  // ------------------------------------------------------------------ caller side

  call(endpoint: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Reply> {
    if (this.closeError) {
      return Promise.reject(
        new RpcError(`not connected to peer ${this.short}: ${this.closeError.message}`, RPC_ERR.notConnected),
      );
    }
    const priority = opts.priority ?? PRIO_NORMAL;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    assert(Number.isInteger(priority) && priority >= 0 && priority <= 0xff, "priority is a u8");
    assert(timeoutMs > 0, "call timeout is positive");
    const nameBytes = utf8.encode(endpoint).length;
    if (nameBytes > MAX_ENDPOINT_BYTES || nameBytes === 0) {
      const message = `endpoint name '${endpoint}' must be 1..${MAX_ENDPOINT_BYTES} bytes`;
      return Promise.reject(new RpcError(message, RPC_ERR.protocol));
    }
    if (1 + nameBytes + payload.length > MAX_HEAD_BYTES) {
      const message = `request payload of ${payload.length} bytes exceeds the ${MAX_HEAD_BYTES}-byte head limit; use a body`;
      return Promise.reject(new RpcError(message, RPC_ERR.protocol));
    }
    const head = encodeRequestHead(endpoint, payload);

    const id = this.allocateId();
    let resolve!: (r: Reply) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<Reply>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const call: PendingCall = {
      id,
      endpoint,
      out: new OutboundStream(this, id, 0, priority, this.idleTimeoutMs),
      head: new HeadAssembler(),
      responseBody: null,
      settled: false,
      finished: false,
      priority,
      hasSlot: false,
      resolve,
      reject,
      timer: null,
      signal: opts.signal,
      onAbort: null,
    };
    this.calls.set(id, call);

    call.timer = setTimeout(
      () =>
        this.abortCall(
          call,
          new RpcError(`call '${endpoint}' to peer ${this.short} timed out after ${timeoutMs} ms`, RPC_ERR.timeout),
        ),
      timeoutMs,
    );
    if (opts.signal) {
      const signal = opts.signal;
      call.onAbort = () =>
        this.abortCall(call, new RpcError(`call '${endpoint}' to peer ${this.short} was cancelled`, RPC_ERR.cancelled));
      if (signal.aborted) {
        call.onAbort();
        return promise;
      }
      signal.addEventListener("abort", call.onAbort, { once: true });
    }

    const body = opts.body;
    const send = async () => {
      await this.acquireSlot(call);
      if (call.finished) return;
      await call.out.sendHead(head, body !== undefined);
      if (body !== undefined) await call.out.sendBody(body);
    };
    send().catch((err: unknown) => {
      // A stopped stream was stopped on purpose (completion, cancel, loss): nothing to add.
      if (call.finished || call.out.stopped) return;
      if (err instanceof BodySourceError) {
        const original = err.original instanceof Error ? err.original : new Error(String(err.original));
        this.failCallLocally(call, original);
      } else {
        this.abortCall(call, err instanceof Error ? err : new Error(String(err)));
      }
    });
    return promise;
  }

  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id >= MAX_REQUEST_ID ? 1 : id + 1;
      if (!this.calls.has(id)) return id;
    }
  }

  private acquireSlot(call: PendingCall): Promise<void> {
    if (this.inflightCalls < MAX_INFLIGHT_CALLS && this.slotWaiters.length === 0) {
      this.inflightCalls++;
      call.hasSlot = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let i = this.slotWaiters.length;
      while (i > 0 && this.slotWaiters[i - 1]!.call.priority > call.priority) i--;
      this.slotWaiters.splice(i, 0, { call, grant: resolve });
    });
  }

  private releaseSlot(call: PendingCall): void {
    if (call.hasSlot) {
      call.hasSlot = false;
      this.inflightCalls--;
      assert(this.inflightCalls >= 0, "in-flight call count never negative");
    } else {
      // Still waiting, or already released: leave the queue if in it, release nothing.
      const i = this.slotWaiters.findIndex((w) => w.call === call);
      if (i >= 0) {
        const [waiter] = this.slotWaiters.splice(i, 1);
        waiter!.grant(); // its sender sees call.finished and stops
      }
    }
    while (this.inflightCalls < MAX_INFLIGHT_CALLS && this.slotWaiters.length > 0) {
      const next = this.slotWaiters.shift()!;
      this.inflightCalls++;
      next.call.hasSlot = true;
      next.grant();
    }
  }

  /** Removes the call from the table and disarms its timer and abort listener. */
  private finishCall(call: PendingCall): void {
    call.finished = true;
    this.releaseSlot(call);
    if (this.calls.get(call.id) === call) this.calls.delete(call.id);
    if (call.timer) clearTimeout(call.timer);
    call.timer = null;
    if (call.onAbort && call.signal) call.signal.removeEventListener("abort", call.onAbort);
    call.onAbort = null;
    this.closeIfDrained();
  }

  /** The callee finished the call (response END or ERROR): no CANCEL is needed. */
  private completeCall(call: PendingCall, err: Error | null, reply?: Reply): void {
    if (call.finished) return;
    this.finishCall(call);
    // The callee is done: whatever remains of our request body is not wanted any more.
    call.out.stop(new RpcError(`call '${call.endpoint}' is complete`, RPC_ERR.cancelled));
    if (!call.settled) {
      call.settled = true;
      if (err) call.reject(err);
      else call.resolve(reply!);
    } else if (err) {
      call.responseBody?.fail(err);
    }
  }

  /**
   * Our request body's producer failed. The ERROR frame queued behind the body tells the callee
   * (a CANCEL would overtake it, being a control frame); the call fails here at once.
   */
  private failCallLocally(call: PendingCall, err: Error): void {
    if (call.finished) return;
    this.finishCall(call);
    // Nothing reached the peer yet: drop the whole request instead of sending it to fail.
    if (call.out.framesSent === 0) call.out.stop(err);
    if (!call.settled) {
      call.settled = true;
      call.reject(err);
    } else {
      call.responseBody?.fail(err);
    }
  }

  /** We give up on the call (timeout, abort, stalled stream): tell the callee if it knows of it. */
  private abortCall(call: PendingCall, err: Error): void {
    if (call.finished) return;
    this.finishCall(call);
    const peerKnows = call.out.framesSent > 0;
    call.out.stop(err);
    if (peerKnows && !this.closed) {
      this.sendControl({ requestId: call.id, flags: FLAG_CANCEL, priority: PRIO_CONTROL, payload: EMPTY });
    }
    if (!call.settled) {
      call.settled = true;
      call.reject(err);
    } else {
      call.responseBody?.fail(err);
    }
  }

  private onResponseFrame(f: Frame): void {
    const call = this.calls.get(f.requestId);
    if (!call) {
      // A late frame of a call that finished or was given up.
      if (f.flags & FLAG_BODY) chunkDone(f.payload);
      return;
    }
    if (f.flags & FLAG_CREDIT) {
      if (!call.out.grant(readCredit(f.payload))) throw new ProtocolViolation("credit beyond the stream window");
      return;
    }
    if (f.flags & FLAG_CANCEL) {
      // The callee no longer reads our request body; the call itself goes on.
      call.out.stop(new RpcError(`peer stopped reading the body of '${call.endpoint}'`, RPC_ERR.cancelled));
      return;
    }
    if (f.flags & FLAG_ERROR) {
      this.completeCall(call, decodeWireError(f.payload));
      return;
    }
    if (!(f.flags & FLAG_BODY)) {
      if (call.head.complete) throw new ProtocolViolation("a second response head");
      if (!call.head.add(f.payload)) throw new ProtocolViolation(`response head over ${MAX_HEAD_BYTES} bytes`);
      if (f.flags & FLAG_MORE) return;
      const payload = call.head.take();
      if (f.flags & FLAG_END) {
        this.completeCall(call, null, { payload });
        return;
      }
      // The timeout covers the wait for the head; the body is guarded by the idle timeout.
      if (call.timer) clearTimeout(call.timer);
      call.timer = null;
      this.releaseSlot(call);
      call.responseBody = new InboundBody({
        grant: (bytes) =>
          this.sendControl({
            requestId: call.id,
            flags: FLAG_CREDIT,
            priority: PRIO_CONTROL,
            payload: creditPayload(bytes),
          }),
        abandon: () => {
          const err = new RpcError(`response body of '${call.endpoint}' abandoned by the caller`, RPC_ERR.cancelled);
          this.abortCall(call, err);
        },
        idleTimeoutMs: this.idleTimeoutMs,
        describe: `response body of '${call.endpoint}' from peer ${this.short}`,
      });
      call.settled = true;
      call.resolve({ payload, body: call.responseBody });
      return;
    }
    const body = call.responseBody;
    if (!body) throw new ProtocolViolation("response body frame without an announced body");
    if (!body.push(f.payload)) throw new ProtocolViolation("response body beyond the granted credit");
    if (f.flags & FLAG_END) {
      body.end();
      this.completeCall(call, null);
    }
  }

  // ------------------------------------------------------------------ callee side

  private onRequestFrame(f: Frame): void {
    let req = this.served.get(f.requestId);
    if (f.flags & FLAG_CANCEL) {
      if (req) this.cancelServed(req, new RpcError(`request cancelled by peer ${this.short}`, RPC_ERR.cancelled));
      return;
    }
    if (f.flags & FLAG_CREDIT) {
      if (req && !req.out.grant(readCredit(f.payload))) throw new ProtocolViolation("credit beyond the stream window");
      return;
    }
    if (!req) {
      // Body or error frames of a request already finished here (we stopped reading it).
      if (f.flags & FLAG_BODY) chunkDone(f.payload);
      if (f.flags & (FLAG_BODY | FLAG_ERROR)) return;
      req = {
        id: f.requestId,
        head: new HeadAssembler(),
        body: null,
        out: new OutboundStream(this, f.requestId, FLAG_RESPONSE, f.priority, this.idleTimeoutMs),
        abort: new AbortController(),
        finished: false,
      };
      this.served.set(f.requestId, req);
    }
    if (f.flags & FLAG_ERROR) {
      // The caller's body producer failed.
      const err = decodeWireError(f.payload);
      if (req.body) req.body.fail(new RpcError(`caller's request body failed: ${err.message}`, err.code, true));
      else this.cancelServed(req, err);
      return;
    }
    if (!(f.flags & FLAG_BODY)) {
      if (req.head.complete) throw new ProtocolViolation("a second request head");
      if (!req.head.add(f.payload)) throw new ProtocolViolation(`request head over ${MAX_HEAD_BYTES} bytes`);
      if (f.flags & FLAG_MORE) return;
      const head = req.head.take();
      if (!(f.flags & FLAG_END)) {
        const id = req.id;
        req.body = new InboundBody({
          grant: (bytes) =>
            this.sendControl({
              requestId: id,
              flags: FLAG_CREDIT | FLAG_RESPONSE,
              priority: PRIO_CONTROL,
              payload: creditPayload(bytes),
            }),
          abandon: () =>
            this.sendControl({ requestId: id, flags: FLAG_CANCEL | FLAG_RESPONSE, priority: PRIO_CONTROL, payload: EMPTY }),
          idleTimeoutMs: this.idleTimeoutMs,
          describe: `request body from peer ${this.short}`,
        });
      }
      void this.runHandler(req, head);
      return;
    }
    if (!req.body) throw new ProtocolViolation("request body frame without an announced body");
    if (!req.body.push(f.payload)) throw new ProtocolViolation("request body beyond the granted credit");
    if (f.flags & FLAG_END) req.body.end();
  }

  private async runHandler(req: ServedRequest, head: Uint8Array): Promise<void> {
    let decoded: { endpoint: string; payload: Uint8Array };
    try {
      decoded = decodeRequestHead(head);
    } catch {
      await this.replyError(req, new RpcError("malformed request head", RPC_ERR.protocol));
      return;
    }
    if (this.activeHandlers >= MAX_CONCURRENT_HANDLERS) {
      await this.replyError(
        req,
        new RpcError(`peer is busy: ${MAX_CONCURRENT_HANDLERS} requests already running on this connection`, RPC_ERR.busy),
      );
      return;
    }
    let reply: Reply;
    this.activeHandlers++;
    try {
      reply = await this.dispatch({
        from: this.peerId,
        endpoint: decoded.endpoint,
        payload: decoded.payload,
        body: req.body ?? undefined,
        signal: req.abort.signal,
      });
      if (!reply || !(reply.payload instanceof Uint8Array)) {
        throw new RpcError(`handler for '${decoded.endpoint}' returned no payload bytes`, RPC_ERR.remote);
      }
      if (reply.payload.length > MAX_HEAD_BYTES) {
        // Sent as is, the caller would have to drop the connection; fail just this call.
        if (reply.body) void closeIterable(reply.body);
        throw new RpcError(
          `handler for '${decoded.endpoint}' returned a ${reply.payload.length}-byte payload, ` +
            `over the ${MAX_HEAD_BYTES}-byte head limit`,
          RPC_ERR.protocol,
        );
      }
    } catch (err) {
      await this.replyError(req, err);
      return;
    } finally {
      this.activeHandlers--;
      assert(this.activeHandlers >= 0, "handler count never negative");
    }
    if (req.finished) {
      // Cancelled while the handler ran: release the producer it handed back.
      if (reply.body) void closeIterable(reply.body);
      return;
    }
    try {
      await req.out.sendHead(reply.payload, reply.body !== undefined);
      if (reply.body) await req.out.sendBody(reply.body);
    } catch (err) {
      // Stopped: cancelled or connection lost. A producer failure was already sent as ERROR.
      // A stalled receiver gets an ERROR, should it ever read again.
      if (!req.out.stopped && !(err instanceof BodySourceError)) {
        await req.out.sendError(err).catch(() => {});
      }
    }
    this.finishServed(req);
  }

  private async replyError(req: ServedRequest, err: unknown): Promise<void> {
    if (!req.finished) {
      try {
        await req.out.sendError(err);
      } catch {
        // stopped meanwhile: the caller is gone
      }
    }
    this.finishServed(req);
  }

  /** The request is over on our side: stop reading its body and forget it. */
  private finishServed(req: ServedRequest): void {
    if (req.finished) return;
    req.finished = true;
    req.body?.discard();
    if (this.served.get(req.id) === req) this.served.delete(req.id);
    this.closeIfDrained();
  }

  private cancelServed(req: ServedRequest, err: RpcError): void {
    if (req.finished) return;
    req.abort.abort(err);
    req.body?.fail(err);
    req.out.stop(err);
    this.finishServed(req);
  }

  // ------------------------------------------------------------------ wire

  sendControl(frame: Frame): void {
    if (this.closed) return;
    this.queue.pushControl(frame);
    this.scheduleFlush();
  }

  scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    // setImmediate, not a microtask: streams interleave their awaits with microtasks, so a
    // microtask flush would write each frame alone. Deferring to the next loop turn lets every
    // ready stream queue its frames first, and they leave in large batches.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Packs queued frames into records, records into a batch, and writes while the socket accepts. */
  private flush(): void {
    while (!this.closed && this.transport.writable && !this.queue.isEmpty) {
      let used = 0;
      while (!this.queue.isEmpty && used + MAX_RECORD_BYTES <= this.writeBuffer.length) {
        used += this.sealRecord(used);
      }
      assert(used > 0, "a non-empty queue yields a record");
      this.bytesSent += used;
      if (!this.transport.write(this.writeBuffer.subarray(0, used))) break; // the rest goes out on drain
    }
    if (this.draining) this.closeIfDrained();
  }

  /** Pops frames (most urgent first) into one record sealed at `offset`; returns its size. */
  private sealRecord(offset: number): number {
    const parts: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const next = this.queue.peek();
      if (next === undefined) break;
      const frameSize = encodedFrameSize(next);
      if (size > 0 && size + frameSize > MAX_RECORD_PLAINTEXT) break;
      const frame = this.queue.pop()!;
      const header = new Uint8Array(FRAME_HEADER_BYTES);
      writeFrameHeader(header, 0, frame);
      parts.push(header, frame.payload);
      size += frameSize;
      if (size >= RECORD_TARGET_BYTES) break;
    }
    return this.sealer.sealInto(this.writeBuffer, offset, parts, size);
  }

  private receive(chunk: Uint8Array): void {
    if (this.closed) return;
    this.bytesReceived += chunk.length;
    try {
      for (const plain of this.opener.push(chunk)) {
        const frames = this.decoder.push(plain);
        const bodies = this.lendRecord(plain, frames);
        for (const frame of frames) {
          if (frame.flags & FLAG_RESPONSE) this.onResponseFrame(frame);
          else this.onRequestFrame(frame);
          if (this.closed) return;
        }
        if (bodies === 0) freeNow(plain);
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      log.warn(`protocol error from peer ${this.short} (${this.transport.remote}): ${message}; closing the connection`);
      const rpcErr = new RpcError(`connection to peer ${this.short} closed: protocol error: ${message}`, RPC_ERR.protocol);
      this.transport.close(rpcErr, true);
      this.shutdown(rpcErr);
    }
  }

  /**
   * A record's memory goes back to the allocator as soon as nothing reads it (util/buffer-pool
   * freeNow): its body chunks are lent to their readers (InboundBody: the reader, or the body
   * dropping them, calls chunkDone), and control frames are read while routed. A record with a
   * head, or whose end the decoder keeps for the next frame, is left to the collector: a head's
   * reader may keep views of it. Returns how many body chunks were lent, or -1 when the record
   * is not freed here.
   */
  private lendRecord(plain: Uint8Array, frames: readonly Frame[]): number {
    if (this.decoder.pending > 0) return -1;
    const bodies: Uint8Array[] = [];
    for (const f of frames) {
      const control = (f.flags & (FLAG_CREDIT | FLAG_CANCEL | FLAG_ERROR)) !== 0;
      if (!control && !(f.flags & FLAG_BODY)) return -1;
      if (f.payload.length > 0 && f.payload.buffer !== plain.buffer) return -1;
      if (f.flags & FLAG_BODY && f.payload.length > 0) bodies.push(f.payload);
    }
    if (bodies.length > 0) lendAll(bodies, () => {}, "free");
    return bodies.length;
  }

  private closeIfDrained(): void {
    if (!this.draining || this.closed) return;
    if (this.calls.size > 0 || this.served.size > 0) return;
    // Queued frames (final responses) must reach the socket before the FIN; flush() calls
    // back here once they have.
    if (!this.queue.isEmpty || !this.transport.writable) return;
    this.close(new RpcError(`connection to peer ${this.short} replaced by another one`, RPC_ERR.closed));
  }

  /** Fails everything in flight. Runs once, whoever notices the end first. */
  private shutdown(err: RpcError): void {
    if (this.closeError) return;
    this.closeError = err;
    this.queue.fail(err);
    for (const call of [...this.calls.values()]) {
      this.finishCall(call);
      call.out.stop(err);
      if (!call.settled) {
        call.settled = true;
        call.reject(err);
      } else {
        call.responseBody?.fail(err);
      }
    }
    for (const req of [...this.served.values()]) this.cancelServed(req, err);
    log.debug(`connection to peer ${this.short} (${this.transport.remote}) closed: ${err.message}`);
    for (const fn of this.closeListeners.splice(0)) fn(err);
  }
}

async function closeIterable(body: AsyncIterable<Uint8Array>): Promise<void> {
  try {
    await body[Symbol.asyncIterator]().return?.();
  } catch {
    // the producer's cleanup failed; nothing more to do
  }
}
