// The node-level RPC API the rest of Bunker uses. RpcNode owns the TCP listener, dialing, the
// handshake of every socket (with its timeout and refusal logging), the one-connection-per-peer
// registry (a duplicate from a simultaneous dial is resolved the same way on both sides), the
// endpoint handler table, and peer-up / peer-down events. Calls to this node itself run the
// local handler directly, so a cluster of one uses the same code paths as a cluster of nine.
import type { Socket, SocketHandler, TCPSocketListener } from "bun";
import type { KeyObject } from "node:crypto";
import { assert } from "../util/assert.ts";
import { logger } from "../util/log.ts";
import { RateLimitedLog, suppressedNote } from "../util/rate-limited-log.ts";
import { Connection, DEFAULT_CALL_TIMEOUT_MS, type ConnectionStats, type InboundRequest, type Reply } from "./connection.ts";
import { RPC_ERR, RpcError } from "./errors.ts";
import {
  dialerHandshake,
  HANDSHAKE_TIMEOUT_MS,
  HandshakeError,
  identityIsConsistent,
  isNodeId,
  listenerHandshake,
  NETWORK_KEY_BYTES,
  type HandshakeIo,
  type HandshakeResult,
} from "./handshake.ts";
import { Transport } from "./transport.ts";
import { parseNodeId, type NodeId } from "../util/ids.ts";

export { RPC_ERR, RpcError } from "./errors.ts";
export { PRIO_BACKGROUND, PRIO_HIGH, PRIO_NORMAL, MAX_FRAME_PAYLOAD } from "./frame.ts";
export { encodeJson, decodeJson } from "./payload.ts";
export {
  DEFAULT_CALL_TIMEOUT_MS,
  MAX_CONCURRENT_HANDLERS,
  MAX_HEAD_BYTES,
  MAX_INFLIGHT_CALLS,
  type ConnectionStats,
} from "./connection.ts";
export { STREAM_IDLE_TIMEOUT_MS, STREAM_WINDOW_BYTES } from "./inbound-body.ts";
export { MAX_SEND_QUEUE_BYTES } from "./send-queue.ts";
export { HANDSHAKE_TIMEOUT_MS, PROTOCOL_VERSION } from "./handshake.ts";

const log = logger("rpc");

/** A losing duplicate connection stays open this long for calls the peer started on it. */
export const DUPLICATE_GRACE_MS = 2_000;
/**
 * Refused handshakes (wrong network key, garbage, timeouts) are logged once per source address
 * per this interval, with a count of those left out: anyone who can reach the RPC port can
 * cause one per connection.
 */
export const HANDSHAKE_REFUSAL_LOG_INTERVAL_MS = 60_000;

export interface RpcOptions {
  nodeKey: { id: string; privateKey: KeyObject; publicKey: KeyObject };
  /** rpc_secret: 32 bytes shared by every node of the cluster. */
  networkKey: Uint8Array;
  bindHost: string;
  /** 0 picks a free port (read it back from `port` after listen()). */
  bindPort: number;
  /** Tuning for tests; defaults are the named constants. */
  handshakeTimeoutMs?: number;
  streamIdleTimeoutMs?: number;
  maxSendQueueBytes?: number;
  handshakeRefusalLogIntervalMs?: number;
  /** Tests only: play a node of another release (handshake.ts PROTOCOL_VERSION otherwise). */
  protocolVersion?: number;
}

export interface HandlerRequest {
  /** The caller, authenticated by the handshake. */
  from: NodeId;
  payload: Uint8Array;
  body?: AsyncIterable<Uint8Array>;
  signal: AbortSignal;
}

export type Handler = (req: HandlerRequest) => Promise<Reply>;
export type { Reply };

export interface CallOpts {
  priority?: number;
  timeoutMs?: number;
  body?: AsyncIterable<Uint8Array>;
  signal?: AbortSignal;
}

export type PeerEvent = "peer-up" | "peer-down";

const short = (id: string) => id.slice(0, 16);

export class RpcNode {
  readonly id: NodeId;
  private readonly opts: RpcOptions;
  private listener: TCPSocketListener<Transport> | null = null;
  /** The connection in use for each peer. */
  private readonly conns = new Map<NodeId, Connection>();
  /** Every open connection, including losing duplicates that are draining. */
  private readonly live = new Set<Connection>();
  private readonly dialing = new Map<string, Promise<void>>();
  private readonly handshaking = new Set<Transport>();
  private readonly handlers = new Map<string, Handler>();
  private readonly events: Record<PeerEvent, ((peerId: NodeId) => void)[]> = { "peer-up": [], "peer-down": [] };
  private closing = false;
  private readonly refusalLog: RateLimitedLog;
  /** Handshakes refused by peers we dialed, per address: the cluster redials them every few seconds. */
  private readonly dialRefusalLog: RateLimitedLog;

  constructor(opts: RpcOptions) {
    assert(opts.networkKey.length === NETWORK_KEY_BYTES, "rpc_secret (network key) is 32 bytes");
    assert(isNodeId(opts.nodeKey.id), "node id is 64 lowercase hex digits");
    assert(identityIsConsistent(opts.nodeKey), "node id matches the node's public key");
    this.opts = opts;
    this.id = parseNodeId(opts.nodeKey.id);
    this.refusalLog = new RateLimitedLog(opts.handshakeRefusalLogIntervalMs ?? HANDSHAKE_REFUSAL_LOG_INTERVAL_MS);
    this.dialRefusalLog = new RateLimitedLog(opts.handshakeRefusalLogIntervalMs ?? HANDSHAKE_REFUSAL_LOG_INTERVAL_MS);
  }

  async listen(): Promise<void> {
    assert(this.listener === null, "listen() is called once");
    assert(!this.closing, "listen() before close()");
    const handlers = this.socketHandlers((t) => this.accept(t));
    this.listener = Bun.listen<Transport>({
      hostname: this.opts.bindHost,
      port: this.opts.bindPort,
      socket: handlers,
    });
  }

  get port(): number {
    assert(this.listener !== null, "port is known after listen()");
    return this.listener.port;
  }

  /** Ensures a connection to `peerId` at host:port. Idempotent; concurrent calls share a dial. */
  connect(peerId: string, host: string, port: number): Promise<void> {
    if (!isNodeId(peerId)) return Promise.reject(new RpcError(`invalid node id '${peerId}'`, RPC_ERR.handshake));
    if (this.closing) return Promise.reject(new RpcError("rpc node is closed", RPC_ERR.closed));
    if (peerId === this.id || this.conns.has(peerId)) return Promise.resolve();
    const pending = this.dialing.get(peerId);
    if (pending) return pending;
    const dial = this.dial(peerId, host, port).finally(() => this.dialing.delete(peerId));
    this.dialing.set(peerId, dial);
    return dial;
  }

  isConnected(peerId: string): boolean {
    return peerId === this.id || this.conns.has(peerId as NodeId);
  }

  /** Connected peers (this node excluded). */
  peers(): NodeId[] {
    return [...this.conns.keys()];
  }

  handle(endpoint: string, handler: Handler): void {
    assert(endpoint.length > 0, "endpoint name is not empty");
    assert(!this.handlers.has(endpoint), `endpoint '${endpoint}' is registered once`);
    this.handlers.set(endpoint, handler);
  }

  call(peerId: string, endpoint: string, payload: Uint8Array, opts: CallOpts = {}): Promise<Reply> {
    if (peerId === this.id) return this.callLocal(endpoint, payload, opts);
    const conn = this.conns.get(peerId as NodeId);
    if (!conn) return Promise.reject(new RpcError(`not connected to peer ${short(peerId)}`, RPC_ERR.notConnected));
    return conn.call(endpoint, payload, opts);
  }

  on(event: PeerEvent, fn: (peerId: NodeId) => void): void {
    this.events[event].push(fn);
  }

  /** Counters of the connection to `peerId` (send queue bound, bytes), if connected. */
  connectionStats(peerId: string): ConnectionStats | undefined {
    return this.conns.get(peerId as NodeId)?.stats();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    // Connections first, so their calls fail with "closed" rather than "connection lost".
    const err = new RpcError("rpc node is shutting down", RPC_ERR.closed);
    for (const t of this.handshaking) t.close(err, true);
    for (const conn of [...this.live]) conn.close(err);
    this.listener?.stop(true);
    await Promise.allSettled([...this.dialing.values()]);
  }

  // ------------------------------------------------------------------ internals

  private socketHandlers(onOpen: (t: Transport) => void): SocketHandler<Transport> {
    return {
      open: (socket: Socket<Transport>) => {
        if (!socket.data) socket.data = new Transport();
        socket.data.attach(socket);
        onOpen(socket.data);
      },
      data: (socket, data) => socket.data.handleData(data),
      drain: (socket) => socket.data.handleDrain(),
      // The peer sent FIN: a connection is full-duplex for us, so it is over.
      end: (socket) => socket.data.close(new RpcError(`connection to ${socket.data.remote} lost`, RPC_ERR.connectionLost)),
      error: (socket, error) => socket.data?.handleSocketClosed(error),
      close: (socket, error) => socket.data?.handleSocketClosed(error),
    };
  }

  private handshakeIo(t: Transport): HandshakeIo {
    return {
      read: (n) => t.read(n),
      write: (bytes) =>
        new Promise<void>((resolve) => {
          if (t.write(bytes) || t.closed) return resolve(); // a closed socket fails the next read
          t.onDrain = () => {
            t.onDrain = () => {};
            resolve();
          };
          t.onClose(() => resolve());
        }),
    };
  }

  /** Runs a handshake under HANDSHAKE_TIMEOUT_MS; on expiry the socket is reset. */
  private async timed(t: Transport, handshake: Promise<HandshakeResult>): Promise<HandshakeResult> {
    this.handshaking.add(t);
    const timeoutMs = this.opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expiry = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new HandshakeError(`handshake timed out after ${timeoutMs} ms`, "protocol");
        t.close(new RpcError(err.message, RPC_ERR.handshake), true);
        reject(err);
      }, timeoutMs);
    });
    try {
      return await Promise.race([handshake, expiry]);
    } finally {
      clearTimeout(timer);
      this.handshaking.delete(t);
    }
  }

  private async accept(t: Transport): Promise<void> {
    let result: HandshakeResult;
    try {
      result = await this.timed(t, listenerHandshake(this.handshakeIo(t), this.opts.networkKey, this.opts.nodeKey, this.opts.protocolVersion));
    } catch (err) {
      if (err instanceof HandshakeError) {
        const message = err.message;
        this.refusalLog.note(t.remoteAddress, (suppressed) =>
          log.warn(`refused connection from ${t.remote}: ${message}${suppressedNote(suppressed, `refused connections from ${t.remoteAddress}`)}`),
        );
      } else {
        log.debug(`handshake with ${t.remote} aborted: ${(err as Error).message}`);
      }
      t.close(new RpcError(`handshake failed: ${(err as Error).message}`, RPC_ERR.handshake));
      return;
    }
    if (this.closing) {
      t.close(new RpcError("rpc node is shutting down", RPC_ERR.closed));
      return;
    }
    this.adopt(t, result, result.peerId);
  }

  private async dial(peerId: string, host: string, port: number): Promise<void> {
    const t = new Transport();
    try {
      await Bun.connect<Transport>({ hostname: host, port, data: t, socket: this.socketHandlers(() => {}) });
    } catch (err) {
      throw new RpcError(`cannot connect to ${host}:${port}: ${(err as Error).message}`, RPC_ERR.notConnected);
    }
    if (this.closing) {
      t.close(new RpcError("rpc node is shutting down", RPC_ERR.closed), true);
      throw new RpcError("rpc node is shutting down", RPC_ERR.closed);
    }
    let result: HandshakeResult;
    try {
      result = await this.timed(t, dialerHandshake(this.handshakeIo(t), this.opts.networkKey, this.opts.nodeKey, peerId, this.opts.protocolVersion));
    } catch (err) {
      const message = (err as Error).message;
      t.close(new RpcError(`handshake failed: ${message}`, RPC_ERR.handshake));
      if (err instanceof HandshakeError) {
        this.dialRefusalLog.note(`${host}:${port}`, (suppressed) =>
          log.warn(`refused connection to ${host}:${port}: ${message}${suppressedNote(suppressed, `refused connections to ${host}:${port}`)}`),
        );
        throw new RpcError(`handshake with ${host}:${port} failed: ${message}`, RPC_ERR.handshake);
      }
      throw new RpcError(
        `handshake with ${host}:${port} failed: the peer closed the connection ` +
          `(wrong rpc_secret, an older Bunker release, or it is not node ${short(peerId)})`,
        RPC_ERR.handshake,
      );
    }
    if (this.closing) {
      t.close(new RpcError("rpc node is shutting down", RPC_ERR.closed));
      throw new RpcError("rpc node is shutting down", RPC_ERR.closed);
    }
    this.adopt(t, result, this.id);
  }

  /** Registers an authenticated connection; of two to the same peer, one wins on both sides. */
  private adopt(t: Transport, hs: HandshakeResult, dialerId: string): void {
    const peerId = hs.peerId;
    const conn = new Connection({
      peerId,
      dialerId,
      transport: t,
      sealer: hs.sealer,
      opener: hs.opener,
      dispatch: (req) => this.dispatch(req),
      maxSendQueueBytes: this.opts.maxSendQueueBytes,
      streamIdleTimeoutMs: this.opts.streamIdleTimeoutMs,
    });
    this.live.add(conn);
    conn.onClose(() => {
      this.live.delete(conn);
      if (this.conns.get(peerId) === conn) {
        this.conns.delete(peerId);
        this.emit("peer-down", peerId);
      }
    });
    const current = this.conns.get(peerId);
    if (current === undefined) {
      this.conns.set(peerId, conn);
      conn.start();
      if (!conn.closed) this.emit("peer-up", peerId);
      return;
    }
    // Both nodes dialed at once (or the peer reconnected before we saw the old socket die).
    // Keep the connection dialed by the smaller node id; between two from the same dialer,
    // the newer. Both sides compute the same answer, so they keep the same socket.
    const preferDialer = this.id < peerId ? this.id : peerId;
    const newWins = conn.dialerId === current.dialerId ? true : conn.dialerId === preferDialer;
    const kept = short(newWins ? conn.dialerId : current.dialerId);
    log.debug(`duplicate connection to peer ${short(peerId)}: keeping the one dialed by ${kept}`);
    conn.start();
    if (newWins) {
      this.conns.set(peerId, conn);
      current.drain(DUPLICATE_GRACE_MS);
    } else {
      conn.drain(DUPLICATE_GRACE_MS);
    }
  }

  private dispatch(req: InboundRequest): Promise<Reply> {
    const handler = this.handlers.get(req.endpoint);
    if (!handler) {
      const message = `unknown endpoint '${req.endpoint}' on node ${short(this.id)}`;
      return Promise.reject(new RpcError(message, RPC_ERR.unknownEndpoint));
    }
    return handler({ from: req.from, payload: req.payload, body: req.body, signal: req.signal });
  }

  /** A call to this node: the handler runs in place, with the same timeout, abort and errors. */
  private async callLocal(endpoint: string, payload: Uint8Array, opts: CallOpts): Promise<Reply> {
    const handler = this.handlers.get(endpoint);
    if (!handler) {
      throw new RpcError(`unknown endpoint '${endpoint}' on node ${short(this.id)}`, RPC_ERR.unknownEndpoint, true);
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const abort = new AbortController();
    let stop!: (err: RpcError) => void;
    const stopped = new Promise<never>((_, reject) => (stop = reject));
    const onAbort = () => {
      const err = new RpcError(`call '${endpoint}' to this node was cancelled`, RPC_ERR.cancelled);
      abort.abort(err);
      stop(err);
    };
    const timer = setTimeout(() => {
      const err = new RpcError(`call '${endpoint}' to this node timed out after ${timeoutMs} ms`, RPC_ERR.timeout);
      abort.abort(err);
      stop(err);
    }, timeoutMs);
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      const run = handler({ from: this.id, payload, body: opts.body, signal: abort.signal }).catch((err: unknown) => {
        if (err instanceof RpcError && err.remote) throw err;
        const code = (err as { code?: unknown } | null)?.code;
        const message = err instanceof Error ? err.message : String(err);
        throw new RpcError(message, typeof code === "string" ? code : RPC_ERR.remote, true);
      });
      return await Promise.race([run, stopped]);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  private emit(event: PeerEvent, peerId: NodeId): void {
    for (const fn of this.events[event]) {
      try {
        fn(peerId);
      } catch (err) {
        log.error(`${event} listener failed: ${(err as Error).message}`);
      }
    }
  }
}
