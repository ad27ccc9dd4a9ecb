// Placement from the live layout history: which nodes an entry or a block is written to
// (every live version, while data moves) and which nodes a read asks (the newest synced
// version; this node first, then its zone, then the others).
import { PARTITION_COUNT, quorumsFor, type ConsistencyMode, type Placement, type Quorums } from "./layout";
import { readVersion, type AppliedVersion, type LayoutHistory } from "./layout-history";
import type { PeerLiveness } from "./liveness";

export class HistoryPlacement implements Placement {
  readonly quorums: Quorums;
  /**
   * readNodes' answers for the history they were computed from: every table read asks, and a
   * history is never changed in place (a new layout or sync state is a new object).
   */
  private readCache: { history: LayoutHistory; version: AppliedVersion | undefined; byPartition: (readonly string[] | undefined)[] } | undefined;

  constructor(
    readonly selfId: string,
    private readonly history: () => LayoutHistory,
    replicationFactor: number,
    mode: ConsistencyMode,
    readonly liveness?: PeerLiveness,
  ) {
    this.quorums = quorumsFor(replicationFactor, mode);
  }

  writeSets(partition: number): string[][] {
    const seen = new Set<string>();
    const sets: string[][] = [];
    for (const v of this.history().versions) {
      const nodes = v.ring[partition % PARTITION_COUNT]!;
      const key = [...nodes].sort().join(",");
      if (seen.has(key)) continue;
      seen.add(key);
      sets.push(nodes);
    }
    return sets;
  }

  readNodes(partition: number): readonly string[] {
    const h = this.history();
    let cache = this.readCache;
    if (cache === undefined || cache.history !== h) cache = this.readCache = { history: h, version: readVersion(h), byPartition: [] };
    const v = cache.version;
    if (!v) return [];
    const p = partition % PARTITION_COUNT;
    const known = cache.byPartition[p];
    if (known !== undefined) return known;
    const myZone = v.roles[this.selfId]?.zone;
    const rank = (n: string) => (n === this.selfId ? 0 : myZone !== undefined && v.roles[n]?.zone === myZone ? 1 : 2);
    const nodes = Object.freeze([...v.ring[p]!].sort((a, b) => rank(a) - rank(b)));
    cache.byPartition[p] = nodes;
    return nodes;
  }

  /** Every node of the current layout, gateways included: full-copy tables live there. */
  allNodes(): string[] {
    const versions = this.history().versions;
    const latest = versions[versions.length - 1];
    const nodes = new Set(latest ? Object.keys(latest.roles) : []);
    nodes.add(this.selfId);
    return [...nodes];
  }
}
