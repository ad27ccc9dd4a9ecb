// Cluster layout: which nodes store which of the 256 partitions, and the quorums that follow
// from replication_factor and consistency_mode. A single node is a layout of one: the same
// code paths serve a one-node install and a multi-site cluster.
import { assert } from "../util/assert";
import type { PeerLiveness } from "./liveness";

export const PARTITION_BITS = 8;
export const PARTITION_COUNT = 1 << PARTITION_BITS;

export type ConsistencyMode = "consistent" | "degraded" | "dangerous";

export interface NodeRole {
  zone: string;
  /** Bytes; null for a gateway that stores nothing. */
  capacity: number | null;
  tags: string[];
}

export interface LayoutVersion {
  version: number;
  replicationFactor: number;
  roles: Record<string, NodeRole>;
  /** ring[p] = the node ids holding partition p, best-first. */
  ring: string[][];
}

export interface Quorums {
  read: number;
  write: number;
}

/** Garage's quorums: consistent R = ceil(N/2), W = N + 1 - R; degraded R = 1; dangerous R = W = 1. */
export function quorumsFor(replicationFactor: number, mode: ConsistencyMode): Quorums {
  assert(replicationFactor >= 1, "replication factor >= 1");
  const read = Math.ceil(replicationFactor / 2);
  const write = replicationFactor + 1 - read;
  if (mode === "dangerous") return { read: 1, write: 1 };
  if (mode === "degraded") return { read: 1, write };
  return { read, write };
}

export function singleNodeLayout(nodeId: string, capacity: number | null = null): LayoutVersion {
  return {
    version: 1,
    replicationFactor: 1,
    roles: { [nodeId]: { zone: "dc1", capacity, tags: [] } },
    ring: Array.from({ length: PARTITION_COUNT }, () => [nodeId]),
  };
}

/** Partition of a 32-byte hash (hex): its top PARTITION_BITS bits. */
export function partitionOfHashHex(hashHex: string): number {
  return parseInt(hashHex.slice(0, 2), 16);
}

/** Where entries and blocks live, as seen by the table and block layers. */
export interface Placement {
  readonly selfId: string;
  /** One node set per live layout version; a write needs `quorums.write` acks in each. */
  writeSets(partition: number): string[][];
  /** Nodes to read from, preferred first (self, same zone, lowest ping). */
  readNodes(partition: number): readonly string[];
  /** Every node of the layout, gateways included: where full-copy tables live. */
  allNodes(): string[];
  readonly quorums: Quorums;
  /** Peer reachability, for quorums that must not wait on a peer known down or silent. */
  readonly liveness?: PeerLiveness;
}

/** A partition this node holds in no live layout version, and the nodes that do. */
export interface ReleasedPartition {
  partition: number;
  /** Every node of the partition over all live layout versions, sorted. */
  holders: string[];
}

/**
 * The partitions the node of `placement` holds in no live layout version (none before a layout
 * exists): what its offload workers hand over to the holders, then delete.
 */
export function releasedPartitions(placement: Placement): ReleasedPartition[] {
  const out: ReleasedPartition[] = [];
  for (let p = 0; p < PARTITION_COUNT; p++) {
    const holders = [...new Set(placement.writeSets(p).flat())];
    if (holders.length === 0 || holders.includes(placement.selfId)) continue;
    out.push({ partition: p, holders: holders.sort() });
  }
  return out;
}

export class LayoutPlacement implements Placement {
  readonly quorums: Quorums;

  constructor(
    readonly selfId: string,
    private readonly layout: LayoutVersion,
    mode: ConsistencyMode,
  ) {
    assert(layout.ring.length === PARTITION_COUNT, "ring covers every partition");
    const replicas = layout.ring[0]!.length;
    const q = quorumsFor(layout.replicationFactor, mode);
    // A layout smaller than the replication factor (a lone node configured with RF 3)
    // cannot reach more acks than it has replicas.
    this.quorums = { read: Math.min(q.read, replicas), write: Math.min(q.write, replicas) };
  }

  writeSets(partition: number): string[][] {
    return [this.layout.ring[partition]!];
  }

  allNodes(): string[] {
    return Object.keys(this.layout.roles);
  }

  readNodes(partition: number): string[] {
    const nodes = this.layout.ring[partition]!;
    return nodes.includes(this.selfId) ? [this.selfId, ...nodes.filter((n) => n !== this.selfId)] : nodes;
  }
}
