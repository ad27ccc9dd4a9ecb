// A TCP latency proxy for benchmarks, because netem (tc qdisc) is not available on these
// machines. It owns:
//   - LatencyProxy: one listener that forwards every accepted connection to one target
//     host:port and holds every chunk for a fixed delay in each direction (client -> target
//     "up", target -> client "down", set separately and changeable at run time). Order is kept,
//     buffering is bounded (the reading side is paused when too much is queued and resumed at
//     half of it), FIN is forwarded after the data before it (half-close), a reset or a close is
//     forwarded as a reset, and stop() closes the listener and every connection.
//   - ZoneProxies: given the zone of each node and a matrix of one-way delays between zones,
//     one listener per (caller zone, node), so that a caller in zone X reaching a node in zone Y
//     through addr(X, node) sees oneWay[X][Y] going and oneWay[Y][X] coming back.
//
// The limitation that matters (be honest about it when reading the figures): Bunker nodes learn
// each other's RPC address by gossip (`rpc_public_addr`), so a node has ONE advertised address
// that every peer dials, whatever its zone; the proxy cannot tell callers apart either (all of
// them come from 127.0.0.1). advertisedAddr(node) therefore refuses a matrix in which callers of
// that node from different zones would need different delays. With one node per zone and the
// same RTT between every pair of zones (what benchmarks/geo.ts runs), a listener in front of
// each node's RPC port with RTT/2 per direction gives exactly the zone-pair RTT: there is one
// connection per pair of nodes, and whichever side dialed, its bytes cross one proxy each way.
// Distinct delays per zone pair, or several nodes per zone with a different intra-zone delay,
// need each node to be advertised per zone (not possible in Bunker today).
//
// The delay is applied per chunk as read from the socket (receive time + delay), not per
// packet: there is no bandwidth limit, jitter or loss. Timers have ~1 ms resolution. The bounded
// queue acts like a TCP window: one connection carries at most about maxQueuedBytes per delay
// (4 MiB / 25 ms: ~60-160 MiB/s measured), which is plenty for latency runs, not for bulk runs.
import type { Socket, TCPSocketListener } from "bun";

export interface HostPort {
  host: string;
  port: number;
}

/** Bytes queued in one direction of one connection before its reading side is paused. */
export const DEFAULT_MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** How long stop() waits for sockets to report their close. */
const STOP_WAIT_MS = 1_000;

export interface LatencyProxyOptions {
  /** Where connections go; a function is resolved at each accept (the target may start later). */
  target: HostPort | (() => HostPort);
  /** Delay of every chunk going client -> target, ms. */
  upMs: number;
  /** Delay of every chunk going target -> client, ms. */
  downMs: number;
  /** Default 127.0.0.1, port 0 (a free port: read `port`). */
  listenHost?: string;
  listenPort?: number;
  /** Per direction and connection; default DEFAULT_MAX_QUEUED_BYTES. */
  maxQueuedBytes?: number;
}

export interface ProxyStats {
  /** Connections accepted so far, and still open. */
  accepted: number;
  open: number;
  /** Bytes forwarded client -> target and target -> client. */
  upBytes: number;
  downBytes: number;
  /** Highest number of bytes queued in one direction of one connection. */
  queuedHighWater: number;
  /** Times a reading side was paused because its queue was full. */
  pauses: number;
}

type Direction = "up" | "down";

/** A chunk waiting for its time; `bytes === null` is the end of the stream (FIN, or reset if `reset`). */
interface Pending {
  due: number;
  bytes: Uint8Array | null;
  reset?: boolean;
}

/** Socket methods present at run time on Bun TCP sockets but missing from bun-types. */
type Pausable = { pause(): boolean; resume(): boolean };

/** One direction of one connection: source socket -> delay queue -> destination socket. */
class Pipe {
  private readonly queue: Pending[] = [];
  private queued = 0;
  private lastDue = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private paused = false;
  /** Waiting for the destination's `drain` after a partial write. */
  private blocked = false;
  private ended = false;
  source: Socket<Conn> | null = null;
  /** null until the target connection is open (up direction). */
  dest: Socket<Conn> | null = null;
  done = false;

  constructor(
    private readonly proxy: LatencyProxy,
    private readonly dir: Direction,
    private readonly onDone: () => void,
  ) {}

  /** Bytes read from the source: copied (the caller's buffer is not ours) and queued. */
  push(chunk: Uint8Array): void {
    if (this.done || this.ended) return;
    this.enqueue({ due: 0, bytes: new Uint8Array(chunk) });
    this.queued += chunk.length;
    this.proxy.noteQueued(this.queued);
    if (this.queued > this.proxy.maxQueuedBytes && !this.paused && this.source) {
      this.paused = true;
      this.proxy.stats.pauses++;
      (this.source as unknown as Pausable).pause();
    }
  }

  /** The source sent FIN (or went away: then a reset is forwarded), after the bytes before it. */
  end(reset: boolean): void {
    if (this.done || this.ended) return;
    this.ended = true;
    this.enqueue({ due: 0, bytes: null, reset });
  }

  /** The destination went away: what is queued can never be delivered. */
  discard(): void {
    if (this.done) return;
    this.queue.length = 0;
    this.queued = 0;
    this.finish();
  }

  drained(): void {
    this.blocked = false;
    this.pump();
  }

  setDest(dest: Socket<Conn>): void {
    this.dest = dest;
    this.pump();
  }

  private enqueue(p: Pending): void {
    // Never earlier than the chunk before it: order holds even when the delay is lowered.
    p.due = Math.max(performance.now() + this.proxy.delay(this.dir), this.lastDue);
    this.lastDue = p.due;
    this.queue.push(p);
    if (this.queue.length === 1) this.pump(); // otherwise a timer or a drain is already pending
  }

  /** Writes every chunk whose time has come, then arms a timer for the next one. */
  private pump(): void {
    if (this.done || this.timer !== null) return;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const wait = head.due - performance.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.pump();
        }, Math.ceil(wait));
        return;
      }
      if (this.dest === null || this.blocked) return; // resumed by setDest() / drained()
      if (head.bytes === null) {
        this.queue.shift();
        // shutdown() sends FIN and keeps reading; Bun's end() would close both halves.
        if (head.reset) this.dest.terminate();
        else this.dest.shutdown();
        this.finish();
        return;
      }
      // Always pass the length (Bun's write(buf, off) without it throws).
      const n = this.dest.write(head.bytes, 0, head.bytes.length);
      if (n < 0) return this.discard();
      this.queued -= n;
      if (this.dir === "up") this.proxy.stats.upBytes += n;
      else this.proxy.stats.downBytes += n;
      if (this.paused && this.queued <= this.proxy.maxQueuedBytes / 2 && this.source) {
        this.paused = false;
        (this.source as unknown as Pausable).resume();
      }
      if (n < head.bytes.length) {
        head.bytes = head.bytes.subarray(n);
        this.blocked = true;
        return;
      }
      this.queue.shift();
    }
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.onDone();
  }
}

/** One proxied connection: the accepted client socket and the socket to the target. */
class Conn {
  readonly up: Pipe;
  readonly down: Pipe;
  target: Socket<Conn> | null = null;
  clientClosed = false;
  targetClosed = false;

  constructor(
    readonly proxy: LatencyProxy,
    readonly client: Socket<Conn>,
  ) {
    const check = () => this.maybeDone();
    this.up = new Pipe(proxy, "up", check);
    this.down = new Pipe(proxy, "down", check);
    this.up.source = client;
    this.down.dest = client;
  }

  onTargetOpen(target: Socket<Conn>): void {
    this.target = target;
    if (this.proxy.isStopped) return void target.terminate();
    target.setNoDelay(true);
    this.down.source = target;
    this.up.setDest(target);
  }

  /**
   * A socket is gone: its outgoing direction ends (a reset if it closed with an error; Bun
   * reports a FIN that arrives after our own FIN as a plain close, without `end`), and what was
   * queued for it is dropped.
   */
  onClosed(side: "client" | "target", err?: Error): void {
    if (side === "client") {
      this.clientClosed = true;
      this.up.end(err !== undefined);
      this.down.discard();
    } else {
      this.targetClosed = true;
      this.down.end(err !== undefined);
      this.up.discard();
    }
    this.maybeDone();
  }

  terminate(): void {
    if (!this.clientClosed) this.client.terminate();
    if (this.target && !this.targetClosed) this.target.terminate();
    this.up.discard();
    this.down.discard();
  }

  private maybeDone(): void {
    if (this.clientClosed && this.targetClosed) this.proxy.forget(this);
  }
}

export class LatencyProxy {
  readonly stats: ProxyStats = { accepted: 0, open: 0, upBytes: 0, downBytes: 0, queuedHighWater: 0, pauses: 0 };
  readonly maxQueuedBytes: number;
  private upMs: number;
  private downMs: number;
  private readonly conns = new Set<Conn>();
  private readonly listener: TCPSocketListener<Conn>;
  private stopped = false;

  constructor(private readonly opts: LatencyProxyOptions) {
    this.upMs = opts.upMs;
    this.downMs = opts.downMs;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    const proxy = this;
    this.listener = Bun.listen<Conn>({
      hostname: opts.listenHost ?? "127.0.0.1",
      port: opts.listenPort ?? 0,
      allowHalfOpen: true,
      socket: {
        binaryType: "uint8array",
        open(client) {
          proxy.accept(client);
        },
        data(client, chunk) {
          client.data.up.push(chunk);
        },
        drain(client) {
          client.data.down.drained();
        },
        end(client) {
          client.data.up.end(false);
        },
        close(client, err) {
          client.data?.onClosed("client", err);
        },
        error() {
          // `close` follows with the error
        },
      },
    });
  }

  get host(): string {
    return this.listener.hostname;
  }

  get port(): number {
    return this.listener.port;
  }

  /** host:port to give clients (what a node advertises as rpc_public_addr). */
  get addr(): string {
    return `${this.host}:${this.port}`;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  delay(dir: Direction): number {
    return dir === "up" ? this.upMs : this.downMs;
  }

  /** Changes the delays of chunks read from now on (queued chunks keep their time; order holds). */
  setDelay(upMs: number, downMs: number): void {
    this.upMs = upMs;
    this.downMs = downMs;
  }

  /** Closes the listener and every connection (reset). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.listener.stop(true);
    for (const c of this.conns) c.terminate();
    const deadline = Date.now() + STOP_WAIT_MS;
    while (this.conns.size > 0 && Date.now() < deadline) await Bun.sleep(5);
    this.conns.clear();
    this.stats.open = 0;
  }

  // ---- used by Conn and Pipe ----

  noteQueued(n: number): void {
    if (n > this.stats.queuedHighWater) this.stats.queuedHighWater = n;
  }

  forget(c: Conn): void {
    if (this.conns.delete(c)) this.stats.open--;
  }

  private accept(client: Socket<Conn>): void {
    const conn = new Conn(this, client);
    client.data = conn;
    if (this.stopped) return void client.terminate();
    client.setNoDelay(true);
    this.conns.add(conn);
    this.stats.accepted++;
    this.stats.open++;
    const t = typeof this.opts.target === "function" ? this.opts.target() : this.opts.target;
    Bun.connect<Conn>({
      hostname: t.host,
      port: t.port,
      data: conn,
      allowHalfOpen: true,
      socket: {
        binaryType: "uint8array",
        open(target) {
          target.data.onTargetOpen(target);
        },
        data(target, chunk) {
          target.data.down.push(chunk);
        },
        drain(target) {
          target.data.up.drained();
        },
        end(target) {
          target.data.down.end(false);
        },
        close(target, err) {
          target.data.onClosed("target", err);
        },
        error() {},
        connectError(target) {
          // The client sees a reset, as if the target had refused it.
          const conn = target.data;
          conn.targetClosed = true;
          conn.terminate();
          conn.proxy.forget(conn);
        },
      },
    }).catch(() => {
      // reported through connectError
    });
  }
}

// ---- several zones ----

/** oneWayMs[from][to]: delay of bytes sent by a node of zone `from` to a node of zone `to`, ms. */
export type DelayMatrix = Record<string, Record<string, number>>;

export interface ZoneNode {
  name: string;
  zone: string;
  /** The node's real RPC address; a function if it is known only after the listeners exist. */
  target: HostPort | (() => HostPort);
}

function oneWay(m: DelayMatrix, from: string, to: string): number {
  const v = m[from]?.[to];
  if (v === undefined || !(v >= 0)) throw new Error(`delay matrix: no delay from zone ${from} to zone ${to}`);
  return v;
}

/** One listener per (caller zone, node), for every zone that holds some other node. */
export class ZoneProxies {
  private readonly byKey = new Map<string, { proxy: LatencyProxy; from: string; to: string }>();

  private constructor(
    private readonly nodes: ZoneNode[],
    private matrix: DelayMatrix,
  ) {}

  static start(nodes: ZoneNode[], oneWayMs: DelayMatrix, opts: { maxQueuedBytes?: number } = {}): ZoneProxies {
    const zp = new ZoneProxies(nodes, oneWayMs);
    for (const node of nodes) {
      const callerZones = new Set(nodes.filter((n) => n !== node).map((n) => n.zone));
      for (const from of callerZones) {
        const proxy = new LatencyProxy({
          target: node.target,
          upMs: oneWay(oneWayMs, from, node.zone),
          downMs: oneWay(oneWayMs, node.zone, from),
          maxQueuedBytes: opts.maxQueuedBytes,
        });
        zp.byKey.set(`${from}\n${node.name}`, { proxy, from, to: node.zone });
      }
    }
    return zp;
  }

  /** The address a caller in `fromZone` should dial to reach `node` with that zone pair's delays. */
  addr(fromZone: string, node: string): string {
    const e = this.byKey.get(`${fromZone}\n${node}`);
    if (!e) throw new Error(`no listener from zone ${fromZone} to node ${node}`);
    return e.proxy.addr;
  }

  /**
   * The one address `node` can advertise (rpc_public_addr) so that every peer, whatever its
   * zone, sees the right delays. Throws when callers from different zones need different ones
   * (see the header: Bunker advertises one address per node). It is the listener of the first
   * caller zone, so its stats() entry counts the callers of every zone.
   */
  advertisedAddr(node: string): string {
    const mine = [...this.byKey.entries()].filter(([k]) => k.endsWith(`\n${node}`)).map(([, e]) => e);
    if (mine.length === 0) throw new Error(`no listener for node ${node}`);
    const d = (e: (typeof mine)[number]) => `${oneWay(this.matrix, e.from, e.to)}/${oneWay(this.matrix, e.to, e.from)}`;
    const distinct = new Set(mine.map(d));
    if (distinct.size > 1)
      throw new Error(
        `node ${node}: callers from zones ${mine.map((e) => e.from).join(", ")} need different delays (${[...distinct].join(", ")} ms), ` +
          `but a node advertises one RPC address to every peer`,
      );
    return mine[0]!.proxy.addr;
  }

  /** New delays for every listener (for example 0 everywhere for a baseline on the same cluster). */
  setDelays(oneWayMs: DelayMatrix): void {
    for (const e of this.byKey.values()) e.proxy.setDelay(oneWay(oneWayMs, e.from, e.to), oneWay(oneWayMs, e.to, e.from));
    this.matrix = oneWayMs;
  }

  /** Every listener's counters, keyed "fromZone->node". */
  stats(): Record<string, ProxyStats> {
    const out: Record<string, ProxyStats> = {};
    for (const [k, e] of this.byKey) out[k.replace("\n", "->")] = { ...e.proxy.stats };
    return out;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.byKey.values()].map((e) => e.proxy.stop()));
  }
}

/** The same one-way delay between every pair of distinct zones, `intraMs` inside a zone. */
export function uniformMatrix(zones: string[], oneWayMs: number, intraMs = 0): DelayMatrix {
  const m: DelayMatrix = {};
  for (const a of zones) {
    m[a] = {};
    for (const b of zones) m[a]![b] = a === b ? intraMs : oneWayMs;
  }
  return m;
}
