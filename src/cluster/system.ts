// Cluster membership: who the peers are and where to reach them, whether they are up, and
// the layout history they share. Peers ping each other; a ping carries the sender's status,
// its layout digest and the peers it knows, so a full mesh forms from a single bootstrap
// address and a layout change reaches every node.
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import { call, handle } from "../rpc/endpoint";
import { PRIO_HIGH, type RpcNode } from "../rpc/rpc";
import { logger } from "../util/log";
import { WorkerLoop } from "../util/worker-loop";
import { PARTITION_COUNT, type ConsistencyMode, type NodeRole } from "./layout";
import { applyStaged, emptyHistory, markSynced, mergeHistories, stageRole, type LayoutHistory } from "./layout-history";
import { HistoryPlacement } from "./placement";
import { CLUSTER_PING, LAYOUT_PULL, LAYOUT_PUSH, type PingMessage } from "./messages";

const log = logger("cluster");

/** How often every peer is pinged (Garage: 15 s; shorter so failures show sooner). */
export const PING_INTERVAL_MS = 5_000;
/** A ping that takes longer than this counts as missed. */
export const PING_TIMEOUT_MS = 5_000;
/** Missed pings in a row before a peer is marked down. */
export const MISSED_PINGS_DOWN = 3;
/** Reconnection backoff to a known peer that is not connected: from the first to the longest wait. */
export const RECONNECT_MIN_MS = 1_000;
export const RECONNECT_MAX_MS = 60_000;

export interface NodeStatus {
  hostname: string;
  rpcAddr: string;
  layoutVersion: number;
  layoutDigest: string;
  data: { available: number; total: number };
  metadata: { available: number; total: number };
}

export interface PeerState {
  id: string;
  addr: string | null;
  status: NodeStatus | null;
  lastSeen: number | null;
  missedPings: number;
  nextReconnect: number;
  reconnectDelay: number;
}

export interface PeerView {
  id: string;
  addr: string | null;
  isUp: boolean;
  lastSeenSecsAgo: number | null;
  status: NodeStatus | null;
}

export interface ClusterOptions {
  rpc: RpcNode;
  db: Database;
  rpcPublicAddr: string;
  bootstrapPeers: string[];
  replicationFactor: number;
  consistencyMode: ConsistencyMode;
  hostname: string;
  diskStats: () => { data: { available: number; total: number }; metadata: { available: number; total: number } };
  now: () => number;
}

/** What two nodes compare to know whether their layout histories differ. */
function digestOf(history: LayoutHistory): string {
  return createHash("sha256").update(JSON.stringify(history)).digest("hex").slice(0, 32);
}

export class PeerAddressError extends Error {}

/** Parses "<64 hex id>@host:port" (IPv6 hosts in brackets). */
export function parsePeerAddress(spec: string): { id: string; host: string; port: number } {
  const m = /^([0-9a-f]{64})@(?:\[([^\]]+)\]|([^:@]+)):(\d+)$/.exec(spec.trim());
  if (!m) throw new PeerAddressError(`expected <node id (64 hex)>@<host>:<port>, got "${spec}"`);
  return { id: m[1]!, host: m[2] ?? m[3]!, port: Number(m[4]) };
}

function splitAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(addr);
  if (!m) throw new PeerAddressError(`bad address ${addr}`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

export class ClusterSystem {
  readonly placement: HistoryPlacement;
  private historyValue: LayoutHistory;
  /** Digest of historyValue, sent in every ping: hashing the JSON history per ping cost ~2% of a busy node. */
  private historyDigest = "";
  private readonly peersById = new Map<string, PeerState>();
  /**
   * Pings (and reconnects) every PING_INTERVAL_MS. A pass only sends them: each has its own
   * timeout, and a silent peer must not hold back the pings of the others.
   */
  private readonly pinger = new WorkerLoop({ name: "cluster ping", intervalMs: PING_INTERVAL_MS, firstDelayMs: 0 }, async () => void this.tick());
  private readonly rpc: RpcNode;

  constructor(private readonly opts: ClusterOptions) {
    this.rpc = opts.rpc;
    this.historyValue = this.loadHistory();
    this.historyDigest = digestOf(this.historyValue);
    this.placement = new HistoryPlacement(this.rpc.id, () => this.historyValue, opts.replicationFactor, opts.consistencyMode, {
      isDown: (id) => !this.isUp(id),
      heardProbe: (id) => this.heardProbe(id),
    });
    for (const [id, addr] of Object.entries(this.loadPeers())) this.learnPeer(id, addr);
    for (const spec of opts.bootstrapPeers) {
      const p = parsePeerAddress(spec);
      this.learnPeer(p.id, `${p.host.includes(":") ? `[${p.host}]` : p.host}:${p.port}`);
    }
  }

  get selfId(): string {
    return this.rpc.id;
  }

  history(): LayoutHistory {
    return this.historyValue;
  }

  /** A layout of this node alone, applied at first start of a stand-alone node (RF 1, no peers). */
  bootstrapSingleNode(role: NodeRole): void {
    if (this.historyValue.current > 0 || this.peersById.size > 0 || this.opts.replicationFactor !== 1) return;
    const staged = stageRole(emptyHistory(), this.selfId, role, this.opts.now());
    const { history } = applyStaged(staged, 1, 1, this.opts.now());
    this.setHistory(markSynced(history, this.selfId, 1));
    log.info("applied a one-node layout (version 1)");
  }

  /** Changes the layout history locally, persists it and pushes it to every connected peer. */
  updateHistory(change: (h: LayoutHistory) => LayoutHistory): LayoutHistory {
    const before = this.historyValue;
    let next = change(before);
    // A version this node applies or learns before holding any data of an earlier one is
    // synced at once: there is nothing to move yet.
    if (before.current === 0 && next.current > 0) next = markSynced(next, this.selfId, next.current);
    this.setHistory(next);
    void this.pushHistory();
    return this.historyValue;
  }

  start(): void {
    handle(this.rpc, CLUSTER_PING, async (msg, { from }) => {
      this.onPing(from, msg);
      return this.pingMessage();
    });
    handle(this.rpc, LAYOUT_PULL, async () => this.historyValue);
    handle(this.rpc, LAYOUT_PUSH, async (history) => {
      this.mergeHistory(history);
      return {};
    });
    this.rpc.on("peer-up", (id) => {
      const p = this.peersById.get(id) ?? this.learnPeer(id, null);
      p.missedPings = 0;
      p.lastSeen = this.opts.now();
      void this.pingPeer(id);
    });
    this.pinger.start();
  }

  stop(): void {
    // Its timer stops at once; pings in flight end with their timeout.
    void this.pinger.stop();
  }

  /** Connects to "id@host:port" and remembers the peer. */
  async connectTo(spec: string): Promise<void> {
    const p = parsePeerAddress(spec);
    await this.rpc.connect(p.id, p.host, p.port);
    this.learnPeer(p.id, `${p.host.includes(":") ? `[${p.host}]` : p.host}:${p.port}`);
    await this.pingPeer(p.id);
  }

  peers(): PeerView[] {
    const now = this.opts.now();
    return [...this.peersById.values()].map((p) => ({
      id: p.id,
      addr: p.addr,
      isUp: this.isUp(p.id),
      lastSeenSecsAgo: p.lastSeen === null ? null : Math.round((now - p.lastSeen) / 1000),
      status: p.status,
    }));
  }

  isUp(id: string): boolean {
    if (id === this.selfId) return true;
    const p = this.peersById.get(id);
    return !!p && this.rpc.isConnected(id) && p.missedPings < MISSED_PINGS_DOWN;
  }

  /**
   * Whether `id` sent anything since the probe was made or last asked: its connection's byte
   * count moved (a reply, credit for a body we stream, its pings or ours answered).
   */
  heardProbe(id: string): () => boolean {
    if (id === this.selfId) return () => true;
    const received = () => this.rpc.connectionStats(id)?.bytesReceived ?? -1;
    let last = received();
    return () => {
      const now = received();
      const heard = now !== last;
      last = now;
      return heard;
    };
  }

  localStatus(): NodeStatus {
    const disks = this.opts.diskStats();
    return {
      hostname: this.opts.hostname,
      rpcAddr: this.opts.rpcPublicAddr,
      layoutVersion: this.historyValue.current,
      layoutDigest: this.historyDigest,
      data: disks.data,
      metadata: disks.metadata,
    };
  }

  /** Partitions whose write quorum is reachable now, and those with every replica up. */
  partitionHealth(): { quorum: number; allOk: number } {
    const write = this.placement.quorums.write;
    let quorum = 0;
    let allOk = 0;
    for (let p = 0; p < PARTITION_COUNT; p++) {
      const sets = this.placement.writeSets(p);
      if (sets.length === 0) continue;
      const up = sets.map((nodes) => nodes.filter((n) => this.isUp(n)).length);
      if (sets.every((nodes, i) => up[i]! >= Math.min(write, nodes.length))) quorum++;
      if (sets.every((nodes, i) => up[i] === nodes.length)) allOk++;
    }
    return { quorum, allOk };
  }

  // ---- internals ----

  private pingMessage(): PingMessage {
    const peers = [...this.peersById.values()].filter((p) => p.addr !== null).map((p) => ({ id: p.id, addr: p.addr! }));
    peers.push({ id: this.selfId, addr: this.opts.rpcPublicAddr });
    return { status: this.localStatus(), peers };
  }

  private onPing(from: string, msg: PingMessage): void {
    const p = this.peersById.get(from) ?? this.learnPeer(from, msg.status.rpcAddr);
    p.status = msg.status;
    p.lastSeen = this.opts.now();
    p.missedPings = 0;
    if (msg.status.rpcAddr && p.addr !== msg.status.rpcAddr) {
      p.addr = msg.status.rpcAddr;
      this.savePeers();
    }
    for (const other of msg.peers) if (other.id !== this.selfId && !this.peersById.has(other.id)) this.learnPeer(other.id, other.addr);
    if (msg.status.layoutDigest !== this.historyDigest) void this.pullHistory(from);
  }

  private async pingPeer(id: string): Promise<void> {
    const p = this.peersById.get(id);
    if (!p) return;
    try {
      this.onPing(id, await call(this.rpc, id, CLUSTER_PING, this.pingMessage(), { priority: PRIO_HIGH, timeoutMs: PING_TIMEOUT_MS }));
    } catch {
      p.missedPings++;
      if (p.missedPings === MISSED_PINGS_DOWN) log.warn(`peer ${id.slice(0, 16)} is down (${MISSED_PINGS_DOWN} pings missed)`);
    }
  }

  private async tick(): Promise<void> {
    const now = this.opts.now();
    await Promise.all(
      [...this.peersById.values()].map(async (p) => {
        if (this.rpc.isConnected(p.id)) return this.pingPeer(p.id);
        if (p.addr === null || now < p.nextReconnect) return;
        try {
          const { host, port } = splitAddr(p.addr);
          await this.rpc.connect(p.id, host, port);
          p.reconnectDelay = RECONNECT_MIN_MS;
          log.info(`connected to ${p.id.slice(0, 16)} at ${p.addr}`);
        } catch (err) {
          p.missedPings = Math.max(p.missedPings, MISSED_PINGS_DOWN);
          p.nextReconnect = now + p.reconnectDelay;
          p.reconnectDelay = Math.min(RECONNECT_MAX_MS, p.reconnectDelay * 2);
          log.debug(`cannot reach ${p.id.slice(0, 16)} at ${p.addr}: ${(err as Error).message}`);
        }
      }),
    );
  }

  private learnPeer(id: string, addr: string | null): PeerState {
    let p = this.peersById.get(id);
    if (id === this.rpc.id) return { id, addr, status: null, lastSeen: null, missedPings: 0, nextReconnect: 0, reconnectDelay: RECONNECT_MIN_MS };
    if (!p) {
      p = { id, addr, status: null, lastSeen: null, missedPings: 0, nextReconnect: 0, reconnectDelay: RECONNECT_MIN_MS };
      this.peersById.set(id, p);
      this.savePeers();
    } else if (addr && !p.addr) {
      p.addr = addr;
      this.savePeers();
    }
    return p;
  }

  private async pullHistory(from: string): Promise<void> {
    try {
      this.mergeHistory(await call(this.rpc, from, LAYOUT_PULL, {}, { priority: PRIO_HIGH, timeoutMs: PING_TIMEOUT_MS }));
    } catch (err) {
      log.debug(`layout pull from ${from.slice(0, 16)}: ${(err as Error).message}`);
    }
  }

  private async pushHistory(): Promise<void> {
    const history = this.historyValue;
    await Promise.allSettled(this.rpc.peers().map((id) => call(this.rpc, id, LAYOUT_PUSH, history, { priority: PRIO_HIGH, timeoutMs: PING_TIMEOUT_MS })));
  }

  private mergeHistory(incoming: LayoutHistory): void {
    const merged = mergeHistories(this.historyValue, incoming);
    if (JSON.stringify(merged) === JSON.stringify(this.historyValue)) return;
    const before = this.historyValue.current;
    this.updateHistory(() => merged);
    if (merged.current !== before) log.info(`layout version ${merged.current} received`);
  }

  private setHistory(h: LayoutHistory): void {
    this.historyValue = h;
    this.historyDigest = digestOf(h);
    this.opts.db.query(`INSERT OR REPLACE INTO node_meta (k, v) VALUES ('layout_history', ?)`).run(JSON.stringify(h));
  }

  private loadHistory(): LayoutHistory {
    const row = this.opts.db.query(`SELECT v FROM node_meta WHERE k = 'layout_history'`).get() as { v: string } | null;
    return row ? (JSON.parse(row.v) as LayoutHistory) : emptyHistory();
  }

  private loadPeers(): Record<string, string> {
    const row = this.opts.db.query(`SELECT v FROM node_meta WHERE k = 'peers'`).get() as { v: string } | null;
    return row ? (JSON.parse(row.v) as Record<string, string>) : {};
  }

  private savePeers(): void {
    const peers: Record<string, string> = {};
    for (const p of this.peersById.values()) if (p.addr) peers[p.id] = p.addr;
    this.opts.db.query(`INSERT OR REPLACE INTO node_meta (k, v) VALUES ('peers', ?)`).run(JSON.stringify(peers));
  }
}
