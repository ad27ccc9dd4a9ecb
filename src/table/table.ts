// A replicated CRDT table: inserts reach a write quorum on the entry's nodes, reads ask a
// read quorum and merge the answers. On a one-node layout every replica is the local store.
import { assert } from "../util/assert";
import { logger } from "../util/log";
import type { Placement } from "../cluster/layout";
import type { LocalStore, RangeQuery } from "./local-store";
import { QuorumError, replicaQuorum } from "./quorum";
import type { TableSchema } from "./schema";
import { partitionOfEntry } from "./partition";
import { checkPeerEntries } from "./peer-entries";
import { RPC_ERR, RpcError } from "../rpc/rpc";

/** How the table reaches a copy on another node (the RPC layer provides it). */
export interface RemoteReplicas {
  /** With `report`, resolves to the replica's merged entries, in the order sent. */
  insert(node: string, table: string, entries: unknown[], report?: boolean): Promise<unknown[] | void>;
  get(node: string, table: string, pk: string, sk: string): Promise<unknown | undefined>;
  range(node: string, table: string, pk: string, q: RangeQuery): Promise<unknown[]>;
}

const log = logger("table");

/**
 * Partition keys whose partition is remembered (a SHA-256 each, ~2 µs): the object table's
 * keys are bucket ids, the same few on every request. Past this many the cache starts again.
 */
const PARTITION_CACHE_MAX = 1024;

export class Table<E> {
  readonly schema: TableSchema<E>;
  /** Hash-placed tables only: full-copy and block-hash placement cost nothing to compute. */
  private readonly partitions: Map<string, number> | undefined;

  constructor(
    readonly local: LocalStore<E>,
    private readonly placement: Placement,
    private readonly remote?: RemoteReplicas,
  ) {
    this.schema = local.schema;
    if (this.schema.replication !== "full" && this.schema.placement !== "block-hash") this.partitions = new Map();
  }

  async insert(entries: E | readonly E[]): Promise<void> {
    const list = (Array.isArray(entries) ? entries : [entries]) as readonly E[];
    const byPartition = new Map<number, E[]>();
    for (const e of list) {
      const p = this.partitionOf(this.schema.partitionKey(e));
      const group = byPartition.get(p);
      if (group) group.push(e);
      else byPartition.set(p, [e]);
    }
    await Promise.all([...byPartition].map(([p, group]) => this.insertPartition(p, group)));
  }

  /**
   * Like insert, and tells what each entry became on the replicas that acknowledged it: for
   * entry i, the merged entries of (at least) a write quorum of its replicas. A writer learns
   * this way, with no extra round trip, whether a replica already held something newer.
   */
  async insertReporting(entries: readonly E[]): Promise<E[][]> {
    if (entries.length === 1) {
      // One entry (every object write): one partition, without the grouping below.
      const entry = entries[0]!;
      const replies = await this.insertPartition(this.partitionOf(this.schema.partitionKey(entry)), [entry], true);
      return [replies.map((merged) => merged[0]!)];
    }
    const byPartition = new Map<number, number[]>();
    entries.forEach((e, i) => {
      const p = this.partitionOf(this.schema.partitionKey(e));
      const group = byPartition.get(p);
      if (group) group.push(i);
      else byPartition.set(p, [i]);
    });
    const out: E[][] = entries.map(() => []);
    await Promise.all(
      [...byPartition].map(async ([p, indices]) => {
        const replies = await this.insertPartition(p, indices.map((i) => entries[i]!), true);
        for (const merged of replies) indices.forEach((i, j) => out[i]!.push(merged[j]!));
      }),
    );
    return out;
  }

  /**
   * Reads an entry from a read quorum and merges the answers; replicas that answered with an
   * older or missing entry get the merged one in the background (read repair).
   */
  async get(pk: string, sk: string): Promise<E | undefined> {
    const nodes = this.readNodes(pk);
    if (nodes.length === 1 && nodes[0] === this.placement.selfId) {
      // This node is the only replica (a one-node layout): a synchronous local read, without
      // the quorum's timer and promises; a failure is still the quorum's.
      try {
        return this.local.get(pk, sk);
      } catch (err) {
        throw new QuorumError(1, 0, [err instanceof Error ? err.message : String(err)]);
      }
    }
    const answers = await this.quorum(
      nodes,
      async (node): Promise<{ node: string; entry: E | undefined }> => ({ node, entry: await this.getFrom(node, pk, sk) }),
      this.readQuorum(nodes),
    );
    const merged = this.mergeAll(answers.map((a) => a.entry).filter((e): e is E => e !== undefined));
    if (merged !== undefined && answers.length > 1) {
      const fresh = JSON.stringify(merged);
      this.repair(answers.filter((a) => a.entry === undefined || JSON.stringify(a.entry) !== fresh).map((a) => a.node), [merged]);
    }
    return merged;
  }

  /** Full-copy tables are on every node: the request path reads them with no round trip. */
  getLocal(pk: string, sk: string): E | undefined {
    return this.local.get(pk, sk);
  }

  /** Entries of one partition key in sort-key order, merged across a read quorum. */
  async range(pk: string, q: RangeQuery): Promise<E[]> {
    const nodes = this.readNodes(pk);
    const replies = await this.quorum(nodes, async (node) => ({ node, list: await this.rangeFrom(node, pk, q) }), this.readQuorum(nodes));
    const answers = replies.map((r) => r.list);
    if (answers.length === 1) return answers[0]!;
    const bySortKey = new Map<string, E>();
    for (const list of answers) {
      for (const e of list) {
        const sk = this.schema.sortKey(e);
        const prev = bySortKey.get(sk);
        bySortKey.set(sk, prev === undefined ? e : this.schema.merge(prev, e));
      }
    }
    // Each replica returned its first `limit` keys; only keys below the smallest of the
    // replicas' last keys are known to be complete.
    let horizon: string | undefined;
    for (const list of answers) {
      if (list.length < q.limit) continue;
      const last = this.schema.sortKey(list[list.length - 1]!);
      if (horizon === undefined || last < horizon) horizon = last;
    }
    const result = [...bySortKey.entries()]
      .filter(([sk]) => horizon === undefined || sk <= horizon)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .slice(0, q.limit)
      .map(([, e]) => e);
    // Read repair: each replica gets the merged entries it lacks or holds older, among those
    // it was in a position to return (below its own last key when it filled its limit).
    for (const { node, list } of replies) {
      const held = new Map(list.map((e) => [this.schema.sortKey(e), JSON.stringify(e)]));
      const last = list.length >= q.limit ? this.schema.sortKey(list[list.length - 1]!) : undefined;
      const stale = result.filter((e) => {
        const sk = this.schema.sortKey(e);
        return (last === undefined || sk <= last) && held.get(sk) !== JSON.stringify(e);
      });
      if (stale.length > 0) this.repair([node], stale);
    }
    return result;
  }

  /** Replicas that repaired entries were sent to, in the background (for tests and status). */
  readonly repairs = { sent: 0, failed: 0 };

  /** Sends merged entries to replicas that answered a read with less; never awaited. */
  private repair(nodes: string[], entries: E[]): void {
    for (const node of nodes) {
      this.repairs.sent++;
      this.insertTo(node, entries).catch((err) => {
        this.repairs.failed++;
        log.debug(`read repair of ${this.schema.name} on ${node.slice(0, 16)}: ${(err as Error).message}`);
      });
    }
  }

  /**
   * Every quorum of the table is on a request's path: bounded by REQUEST_QUORUM_TIMEOUT_MS,
   * and a replica known down fails at once (a node cut off answers 503 instead of waiting).
   */
  private quorum<R>(nodes: readonly string[], call: (node: string) => Promise<R>, need: number): Promise<R[]> {
    return replicaQuorum(nodes, call, need, { liveness: this.placement.liveness, mode: "deadline" });
  }

  private partitionOf(pk: string): number {
    const cache = this.partitions;
    if (cache === undefined) return partitionOfEntry(this.schema, pk);
    let p = cache.get(pk);
    if (p === undefined) {
      p = partitionOfEntry(this.schema, pk);
      if (cache.size >= PARTITION_CACHE_MAX) cache.clear();
      cache.set(pk, p);
    }
    return p;
  }

  private readNodes(pk: string): readonly string[] {
    if (this.schema.replication === "full") return [this.placement.selfId];
    return this.placement.readNodes(this.partitionOf(pk));
  }

  private readQuorum(nodes: readonly string[]): number {
    if (nodes.length === 0) throw new QuorumError(1, 0, ["no cluster layout has been applied yet"]);
    return Math.min(this.placement.quorums.read, nodes.length);
  }

  /** Resolves to the merged entries of each acknowledging replica when `report` is set. */
  private async insertPartition(partition: number, entries: E[], report = false): Promise<E[][]> {
    if (this.schema.replication === "full") {
      // Full-copy tables go to every node and need a majority of them (Garage v2).
      const nodes = this.placement.allNodes();
      return this.quorum(nodes, (node) => this.insertTo(node, entries, report), Math.floor(nodes.length / 2) + 1);
    }
    const sets = this.placement.writeSets(partition);
    if (sets.length === 0) throw new QuorumError(1, 0, ["no cluster layout has been applied yet"]);
    if (sets.length === 1 && sets[0]!.length === 1 && sets[0]![0] === this.placement.selfId) {
      // This node is the only replica (a one-node layout): the local write, without the
      // quorum's timer and promises; a failure is still the quorum's, as in get().
      let merged: E[];
      try {
        merged = await this.local.apply(entries);
      } catch (err) {
        throw new QuorumError(1, 0, [err instanceof Error ? err.message : String(err)]);
      }
      return [merged];
    }
    const acks = await Promise.all(
      sets.map((nodes) =>
        this.quorum(nodes, (node) => this.insertTo(node, entries, report), Math.min(this.placement.quorums.write, nodes.length)),
      ),
    );
    return acks.flat();
  }

  private async insertTo(node: string, entries: E[], report = false): Promise<E[]> {
    if (node === this.placement.selfId) return this.local.apply(entries);
    const merged = await this.remoteFor(node).insert(node, this.schema.name, entries, report);
    if (!report) return [];
    if (!Array.isArray(merged) || merged.length !== entries.length) {
      throw new RpcError(`${this.schema.name} insert on ${node.slice(0, 16)}: the replica reported ${Array.isArray(merged) ? merged.length : "no"} merged entries for ${entries.length}`, RPC_ERR.badResponse);
    }
    return this.fromPeer(node, "insert", merged);
  }

  private async getFrom(node: string, pk: string, sk: string): Promise<E | undefined> {
    if (node === this.placement.selfId) return this.local.get(pk, sk);
    const entry = await this.remoteFor(node).get(node, this.schema.name, pk, sk);
    return entry === undefined ? undefined : this.fromPeer(node, "get", [entry])[0];
  }

  private async rangeFrom(node: string, pk: string, q: RangeQuery): Promise<E[]> {
    if (node === this.placement.selfId) return this.local.range(pk, q);
    return this.fromPeer(node, "range", await this.remoteFor(node).range(node, this.schema.name, pk, q));
  }

  /** A replica's answer is merged and returned only if every entry has the table's shape. */
  private fromPeer(node: string, op: string, entries: readonly unknown[]): E[] {
    return checkPeerEntries(this.schema, entries, `${this.schema.name} ${op} on ${node.slice(0, 16)}`, RPC_ERR.badResponse);
  }

  private remoteFor(node: string): RemoteReplicas {
    assert(this.remote !== undefined, `no RPC route to node ${node.slice(0, 16)} (single-node build)`);
    return this.remote;
  }

  private mergeAll(entries: E[]): E | undefined {
    if (entries.length === 0) return undefined;
    return entries.reduce((a, b) => this.schema.merge(a, b));
  }
}
