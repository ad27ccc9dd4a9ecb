// Partition assignment: which storage nodes hold each replica of each partition.
//
// Objectives, in strict priority order (Garage's, Oulamara & Auvolat arXiv:2302.13798):
//   1. validity: every partition has exactly RF distinct storage nodes spread over at least
//      `zoneRedundancy` zones, and no node holds more than floor(capacity / partitionSize)
//      partitions;
//   2. the largest partition size, i.e. the largest usable capacity (partitionSize x partitions);
//   3. the fewest replicas moved away from the previous ring;
//   4. within what is left free, each node filled in proportion to its capacity.
//
// All of it is one flow network (Garage's shape): source -> Pup(p) with capacity ZR and
// source -> Pdown(p) with capacity RF - ZR; Pup(p) -> PZ(p, z) with capacity 1 (so ZR units
// land in ZR distinct zones) and Pdown(p) -> PZ(p, z) with capacity RF - ZR; PZ(p, z) -> node n
// of zone z with capacity 1 (distinct nodes); node -> sink with the node's partition budget.
// An assignment is a flow of value partitions x RF, and every such flow is an assignment.
//
//   - (2) binary search on the partition size. The network is the same for every partition,
//     so a full flow exists iff a symmetric fractional one does, which reduces to two sums
//     over zones (see `fits`): each check is O(nodes), no flow needed;
//   - (3)+(4) one min-cost max-flow at that size (primal-dual: Dijkstra on reduced costs, then
//     Dinic on the zero-reduced-cost edges): a PZ -> node edge costs `moveCost` when the node
//     did not hold that partition before, and each node's budget is split into BALANCE_LEVELS
//     slices of cost 0, 1, 2, ... (convex, so slices fill evenly across nodes). `moveCost` is
//     larger than any total balance cost, so the flow minimises moves exactly, then balance.
//     Garage reaches (3) by negative-cycle cancelling from a flow seeded with the previous
//     edges; a min-cost flow reaches the same optimum directly.
//
// Ties: each partition explores zones and nodes in its own order, ranked by a hash of
// (partition, zone or node id), rendezvous-style, then by id. Equally good choices thus spread
// replica sets over all pairs of nodes (a node that leaves later hands its copies to many
// peers), and the output depends only on the input: the same input always gives the same ring.
import { formatBytes } from "../util/format.ts";
import { assert } from "../util/assert.ts";
import { PARTITION_COUNT, type NodeRole } from "./layout.ts";

export type ZoneRedundancy = number | "maximum";

export interface AssignmentInput {
  replicationFactor: number;
  /** "maximum" = min(RF, number of zones holding a node with capacity). */
  zoneRedundancy: ZoneRedundancy;
  /** Gateways (capacity null) and nodes of capacity 0 get nothing. */
  roles: Record<string, NodeRole>;
  /** Previous ring (partitions x old RF node ids), to minimise moves. Unknown ids count as gone. */
  previous?: string[][];
  /** Number of partitions; PARTITION_COUNT unless a test shrinks it for brute-force checks. */
  partitions?: number;
}

export interface AssignmentResult {
  /** ring[p]: RF distinct node ids; the ones kept from `previous` first, in their old order. */
  ring: string[][];
  /** Bytes each partition replica may hold. */
  partitionSize: number;
  /** partitionSize x partitions: what the cluster can store once, replicas aside. */
  usableCapacity: number;
  /** Every non-gateway node, including those that get 0. */
  partitionsPerNode: Record<string, number>;
  /** Replicas stored per zone of a non-gateway node. */
  partitionsPerZone: Record<string, number>;
  /** Replicas in `ring` that their node did not hold in `previous` (0 when there is none). */
  moves: number;
  /** Human-readable notes for `layout show`. */
  messages: string[];
}

/** A layout that cannot be built from these roles and parameters (user input, not a bug). */
export class LayoutError extends Error {}

/** Slices of each node's budget for the balance objective; more = finer balance, more phases. */
const BALANCE_LEVELS = 16;
/** Garage warns below this partition size: rounding then costs a visible share of capacity. */
const SMALL_PARTITION_SIZE = 100;
/** Below this share of raw capacity in use, explain what limits the layout. */
const LOW_UTILISATION_PERCENT = 80;
/** Upper bound on the partition count accepted from callers (partition ids are u16 in Garage). */
const MAX_PARTITIONS = 1 << 16;
/** Edge costs live in an Int32Array. */
const MAX_EDGE_COST = 2 ** 31 - 1;

const SOURCE = 0;
const SINK = 1;

// ---------------------------------------------------------------------------------------------
// Flow network: edges in parallel typed arrays, edge e's reverse is e ^ 1, and the out-edges of
// each vertex kept in insertion order (CSR) so exploration order, hence tie-breaking, is fixed.

class FlowNetwork {
  readonly from: Int32Array;
  readonly to: Int32Array;
  /** Capacity as added; the residual capacity `cap` starts equal to it. */
  readonly base: Int32Array;
  readonly cap: Int32Array;
  readonly cost: Int32Array;
  /** Out-edges of v are adj[start[v] .. start[v + 1]), once sealed. */
  readonly start: Int32Array;
  readonly adj: Int32Array;
  private edgeCount = 0;

  constructor(
    readonly vertexCount: number,
    maxEdges: number,
  ) {
    const slots = 2 * maxEdges;
    this.from = new Int32Array(slots);
    this.to = new Int32Array(slots);
    this.base = new Int32Array(slots);
    this.cap = new Int32Array(slots);
    this.cost = new Int32Array(slots);
    this.start = new Int32Array(vertexCount + 1);
    this.adj = new Int32Array(slots);
  }

  /** Adds u -> v and its reverse (capacity 0, opposite cost); returns the forward edge id. */
  add(u: number, v: number, capacity: number, cost = 0): number {
    const e = this.edgeCount;
    assert(e + 2 <= this.from.length, "edge count planned ahead");
    this.edgeCount += 2;
    this.from[e] = u;
    this.to[e] = v;
    this.base[e] = this.cap[e] = capacity;
    this.cost[e] = cost;
    this.from[e + 1] = v;
    this.to[e + 1] = u;
    this.cost[e + 1] = -cost;
    return e;
  }

  /** Groups out-edges by tail, keeping insertion order. Call once, after the last add. */
  seal(): void {
    const { start, from, adj, edgeCount, vertexCount } = this;
    for (let e = 0; e < edgeCount; e++) start[from[e]! + 1]!++;
    for (let v = 0; v < vertexCount; v++) start[v + 1]! += start[v]!;
    const fill = start.slice(0, vertexCount);
    for (let e = 0; e < edgeCount; e++) adj[fill[from[e]!]!++] = e;
  }

  /** Units on forward edge e. */
  flow(e: number): number {
    return this.base[e]! - this.cap[e]!;
  }
}

/**
 * Dinic's max-flow from SOURCE to SINK on top of the current residual flow, using only edges of
 * zero reduced cost (the admissible graph of the primal-dual method). Every augmenting path
 * enters the sink from a node vertex, which is entered only through a capacity-1 PZ -> node
 * edge, so each path carries exactly one unit.
 */
function augmentAdmissible(net: FlowNetwork, potential: Float64Array): number {
  const { vertexCount, from, to, cap, cost, start, adj } = net;
  const level = new Int32Array(vertexCount);
  const next = new Int32Array(vertexCount);
  const queue = new Int32Array(vertexCount);
  let sinkLevel = 0;

  // Depth is bounded by the sink's BFS level: a few vertices per storage node at most.
  const pushUnit = (u: number): boolean => {
    if (u === SINK) return true;
    const nextLevel = level[u]! + 1;
    for (const end = start[u + 1]!; next[u]! < end; next[u]!++) {
      const e = adj[next[u]!]!;
      const v = to[e]!;
      if (level[v] !== nextLevel || cap[e]! <= 0 || (nextLevel === sinkLevel && v !== SINK)) continue;
      if (cost[e]! + potential[u]! !== potential[v]!) continue;
      if (pushUnit(v)) {
        cap[e]!--;
        cap[e ^ 1]!++;
        return true;
      }
    }
    return false;
  };

  let total = 0;
  for (;;) {
    level.fill(-1);
    level[SOURCE] = 0;
    let head = 0;
    let tail = 0;
    queue[tail++] = SOURCE;
    // Breadth-first levels, stopping at the sink's level: nothing beyond it is on a shortest path.
    while (head < tail && level[SINK] === -1) {
      const u = queue[head++]!;
      for (let i = start[u]!; i < start[u + 1]!; i++) {
        const e = adj[i]!;
        const v = to[e]!;
        if (level[v] === -1 && cap[e]! > 0 && cost[e]! + potential[from[e]!]! === potential[v]!) {
          level[v] = level[u]! + 1;
          queue[tail++] = v;
        }
      }
    }
    sinkLevel = level[SINK]!;
    if (sinkLevel < 0) return total;
    next.set(start.subarray(0, vertexCount));
    while (pushUnit(SOURCE)) total++;
  }
}

/** Shortest distances from SOURCE over residual edges, by reduced cost (all >= 0). */
function reducedDistances(net: FlowNetwork, potential: Float64Array): Float64Array {
  const { vertexCount, to, cap, cost, start, adj } = net;
  const dist = new Float64Array(vertexCount).fill(Infinity);
  const done = new Uint8Array(vertexCount);
  const heap = new MinHeap();
  dist[SOURCE] = 0;
  heap.push(0, SOURCE);
  while (heap.size > 0) {
    const d = heap.topKey();
    const u = heap.pop();
    if (done[u]) continue;
    done[u] = 1;
    for (let i = start[u]!; i < start[u + 1]!; i++) {
      const e = adj[i]!;
      if (cap[e]! <= 0) continue;
      const v = to[e]!;
      const reduced = cost[e]! + potential[u]! - potential[v]!;
      assert(reduced >= 0, "reduced costs stay non-negative");
      if (d + reduced < dist[v]!) {
        dist[v] = d + reduced;
        heap.push(d + reduced, v);
      }
    }
  }
  return dist;
}

/**
 * Min-cost max-flow (primal-dual): repeatedly price vertices by shortest reduced distance, then
 * saturate every shortest augmenting path with Dinic on the zero-reduced-cost edges. Costs are
 * non-negative at the start, so zero potentials are feasible. Returns the flow value.
 */
function minCostMaxFlow(net: FlowNetwork): number {
  const potential = new Float64Array(net.vertexCount);
  let total = 0;
  for (;;) {
    const dist = reducedDistances(net, potential);
    const sinkDist = dist[SINK]!;
    if (sinkDist === Infinity) return total;
    // Capping at the sink's distance keeps every residual reduced cost >= 0, reachable or not.
    for (let v = 0; v < net.vertexCount; v++) potential[v]! += Math.min(dist[v]!, sinkDist);
    const pushed = augmentAdmissible(net, potential);
    assert(pushed > 0, "a shortest augmenting path is admissible");
    total += pushed;
  }
}

/** Binary min-heap of (key, vertex) pairs; stale entries are skipped by the caller. */
class MinHeap {
  private readonly keys: number[] = [];
  private readonly values: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  topKey(): number {
    return this.keys[0]!;
  }

  push(key: number, value: number): void {
    const { keys, values } = this;
    let i = keys.length;
    keys.push(key);
    values.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (keys[parent]! <= key) break;
      keys[i] = keys[parent]!;
      values[i] = values[parent]!;
      i = parent;
    }
    keys[i] = key;
    values[i] = value;
  }

  /** Removes the smallest entry and returns its vertex. */
  pop(): number {
    const { keys, values } = this;
    const top = values[0]!;
    const lastKey = keys.pop()!;
    const lastValue = values.pop()!;
    const n = keys.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let child = 2 * i + 1;
        if (child >= n) break;
        if (child + 1 < n && keys[child + 1]! < keys[child]!) child++;
        if (keys[child]! >= lastKey) break;
        keys[i] = keys[child]!;
        values[i] = values[child]!;
        i = child;
      }
      keys[i] = lastKey;
      values[i] = lastValue;
    }
    return top;
  }
}

// ---------------------------------------------------------------------------------------------
// The assignment problem.

interface Problem {
  partitions: number;
  rf: number;
  zr: number;
  /** Storage nodes with capacity > 0, sorted by id. */
  nodes: string[];
  capacity: number[];
  /** Index into `zones` of each node. */
  zoneOf: number[];
  /** Zones of the nodes above, sorted. */
  zones: string[];
}

/** FNV-1a over UTF-16 code units: a stable 32-bit hash of an id. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** murmur3's 32-bit finaliser: spreads every input bit over the output. */
function mix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Indices of `hashes` ranked for partition p (rendezvous hashing), ties by index. */
function preferenceOrder(hashes: readonly number[], p: number): number[] {
  const salt = mix32(p + 1);
  const rank = hashes.map((h) => mix32(h ^ salt));
  return hashes.map((_, i) => i).sort((a, b) => rank[a]! - rank[b]! || a - b);
}

/** Partitions node n may hold at this partition size (never more than one replica each). */
function budget(problem: Problem, n: number, partitionSize: number): number {
  return Math.min(problem.partitions, Math.floor(problem.capacity[n]! / partitionSize));
}

/**
 * Whether every partition can get its RF replicas when node n may hold `budgets[n]` of them.
 * The network is the same for every partition, so averaging any flow over all permutations of
 * the partitions gives an equally large fractional flow that is the same for each partition; and
 * a network with integer capacities has an integral flow as large as its best fractional one.
 * So a full assignment exists iff one partition can take fraction min(1, budget / partitions) of
 * each node: with K_z = sum of min(partitions, budget) over zone z, iff
 *   sum_z K_z >= partitions x RF            (enough replicas overall), and
 *   sum_z min(partitions, K_z) >= partitions x ZR   (enough zones hold at least one each).
 */
function fits(problem: Problem, budgets: readonly number[]): boolean {
  const { partitions, rf, zr, zones, zoneOf } = problem;
  const perZone = new Array<number>(zones.length).fill(0);
  for (const [n, k] of budgets.entries()) perZone[zoneOf[n]!]! += Math.min(partitions, k);
  const replicas = perZone.reduce((sum, k) => sum + k, 0);
  const spread = perZone.reduce((sum, k) => sum + Math.min(partitions, k), 0);
  return replicas >= partitions * rf && spread >= partitions * zr;
}

/** Largest partition size for which a full assignment exists (feasibility is monotone). */
function optimalPartitionSize(problem: Problem): number {
  const { partitions, rf, zr, nodes } = problem;
  const feasible = (size: number): boolean =>
    fits(
      problem,
      nodes.map((_, n) => budget(problem, n, size)),
    );
  if (!feasible(1)) {
    throw new LayoutError(
      `the cluster is too small: even 1-byte partitions do not fit ${partitions} partitions x ${rf} replicas ` +
        `on ${zoneRedundancyText(zr)} (each node holds at most one replica of a partition)`,
    );
  }
  let lo = 1; // feasible
  let hi = Math.max(...problem.capacity) + 1; // infeasible: every budget is 0
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (feasible(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

function zoneRedundancyText(zr: number): string {
  return zr === 1 ? "any zones" : `at least ${zr} distinct zones`;
}

/**
 * Node indices holding each partition at this size: fewest moves from `previous`, then budgets
 * filled evenly. `previous[p]` holds node indices (nodes no longer storing are dropped).
 */
function assignAtSize(problem: Problem, partitionSize: number, previous: Set<number>[] | null): number[][] {
  const { partitions, rf, zr, zones, nodes, zoneOf } = problem;
  const demand = partitions * rf;
  const maxBalanceCost = demand * (BALANCE_LEVELS - 1);
  // One more move always costs more than any balance gain, so moves are minimised first.
  const moveCost = previous === null ? 0 : maxBalanceCost + 1;
  assert(moveCost <= MAX_EDGE_COST, "edge costs fit in 32 bits");

  // Vertices: SOURCE, SINK, then Pup(p), Pdown(p), PZ(p, z) and the nodes, each block in order.
  const firstUp = 2;
  const firstDown = firstUp + partitions;
  const firstPartitionZone = firstDown + partitions;
  const firstNode = firstPartitionZone + partitions * zones.length;
  const vertexCount = firstNode + nodes.length;
  const spare = rf - zr;
  const perPartition = (spare > 0 ? 2 : 1) * (1 + zones.length) + nodes.length;
  const net = new FlowNetwork(vertexCount, partitions * perPartition + nodes.length * BALANCE_LEVELS);
  const pairEdge = new Int32Array(partitions * nodes.length);
  const zoneHash = zones.map(hashString);
  const nodeHash = nodes.map(hashString);
  for (let p = 0; p < partitions; p++) {
    const up = firstUp + p;
    const down = firstDown + p;
    const zoneBase = firstPartitionZone + p * zones.length;
    net.add(SOURCE, up, zr);
    if (spare > 0) net.add(SOURCE, down, spare);
    // Out-edges are explored in insertion order: insert in this partition's preference order.
    for (const z of preferenceOrder(zoneHash, p)) {
      net.add(up, zoneBase + z, 1);
      if (spare > 0) net.add(down, zoneBase + z, spare);
    }
    const kept = previous?.[p];
    for (const n of preferenceOrder(nodeHash, p)) {
      const cost = kept === undefined || kept.has(n) ? 0 : moveCost;
      pairEdge[p * nodes.length + n] = net.add(zoneBase + zoneOf[n]!, firstNode + n, 1, cost);
    }
  }
  for (let n = 0; n < nodes.length; n++) {
    const k = budget(problem, n, partitionSize);
    for (let level = 0; level < BALANCE_LEVELS; level++) {
      const slice = Math.floor(((level + 1) * k) / BALANCE_LEVELS) - Math.floor((level * k) / BALANCE_LEVELS);
      if (slice > 0) net.add(firstNode + n, SINK, slice, level);
    }
  }
  net.seal();
  const value = minCostMaxFlow(net);
  assert(value === demand, "the optimal partition size admits a full assignment");

  const holders: number[][] = Array.from({ length: partitions }, () => []);
  for (let p = 0; p < partitions; p++) {
    for (let n = 0; n < nodes.length; n++) {
      if (net.flow(pairEdge[p * nodes.length + n]!) === 1) holders[p]!.push(n);
    }
  }
  return holders;
}

// ---------------------------------------------------------------------------------------------
// Entry point.

function checkedInteger(value: number, what: string, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new LayoutError(`${what} must be an integer between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function computeAssignment(input: AssignmentInput): AssignmentResult {
  const partitions = checkedInteger(input.partitions ?? PARTITION_COUNT, "partition count", 1, MAX_PARTITIONS);
  const rf = checkedInteger(input.replicationFactor, "replication factor", 1, Number.MAX_SAFE_INTEGER);

  const ids = Object.keys(input.roles).sort(byId);
  for (const id of ids) {
    const capacity = input.roles[id]!.capacity;
    if (capacity !== null) checkedInteger(capacity, `capacity of node ${id}`, 0, Number.MAX_SAFE_INTEGER);
  }
  const nonGateways = ids.filter((id) => input.roles[id]!.capacity !== null);
  const nodes = nonGateways.filter((id) => input.roles[id]!.capacity! > 0);
  const zones = [...new Set(nodes.map((id) => input.roles[id]!.zone))].sort(byId);
  if (nodes.length < rf) {
    throw new LayoutError(
      `${nodes.length} storage node(s) with a positive capacity, fewer than the replication factor (${rf})`,
    );
  }
  const zr =
    input.zoneRedundancy === "maximum"
      ? Math.min(rf, zones.length)
      : checkedInteger(input.zoneRedundancy, "zone redundancy", 1, rf);
  if (zones.length < zr) {
    throw new LayoutError(`${zones.length} zone(s) with storage capacity, fewer than the zone redundancy (${zr})`);
  }

  const problem: Problem = {
    partitions,
    rf,
    zr,
    nodes,
    capacity: nodes.map((id) => input.roles[id]!.capacity!),
    zoneOf: nodes.map((id) => zones.indexOf(input.roles[id]!.zone)),
    zones,
  };
  const totalCapacity = problem.capacity.reduce((a, b) => a + b, 0);
  if (!Number.isSafeInteger(totalCapacity)) throw new LayoutError("total capacity exceeds 2^53 bytes");

  const previous = input.previous;
  if (previous !== undefined) {
    assert(previous.length === partitions, "previous ring covers every partition");
  }
  const nodeIndex = new Map(nodes.map((id, n) => [id, n]));
  const previousHolders =
    previous === undefined
      ? null
      : previous.map((held) => new Set(held.flatMap((id) => (nodeIndex.has(id) ? [nodeIndex.get(id)!] : []))));

  const partitionSize = optimalPartitionSize(problem);
  const holders = assignAtSize(problem, partitionSize, previousHolders);

  // Ring: nodes kept from the previous ring first, in their old order, then newcomers by id.
  const ring = holders.map((held, p) => {
    const ids = held.map((n) => nodes[n]!);
    const before = [...new Set(previous?.[p] ?? [])];
    const kept = before.filter((id) => ids.includes(id));
    return [...kept, ...ids.filter((id) => !kept.includes(id))];
  });
  let moves = 0;
  if (previous !== undefined) {
    for (const [p, held] of ring.entries()) moves += held.filter((id) => !previous[p]!.includes(id)).length;
  }

  const partitionsPerNode: Record<string, number> = {};
  const partitionsPerZone: Record<string, number> = {};
  for (const id of nonGateways) {
    partitionsPerNode[id] = 0;
    partitionsPerZone[input.roles[id]!.zone] = 0;
  }
  for (const held of ring) {
    for (const id of held) {
      partitionsPerNode[id]!++;
      partitionsPerZone[input.roles[id]!.zone]!++;
    }
  }

  // Every constraint, checked on the output itself.
  for (const held of ring) {
    assert(held.length === rf && new Set(held).size === rf, "each partition has RF distinct nodes");
    assert(new Set(held.map((id) => input.roles[id]!.zone)).size >= zr, "each partition spans the required zones");
  }
  for (const [n, id] of nodes.entries()) {
    assert(partitionsPerNode[id]! <= budget(problem, n, partitionSize), "no node holds more than its capacity");
  }

  const messages = describe(input, problem, partitionSize, totalCapacity, partitionsPerNode, moves);
  return {
    ring,
    partitionSize,
    usableCapacity: partitionSize * partitions,
    partitionsPerNode,
    partitionsPerZone,
    moves,
    messages,
  };
}

function describe(
  input: AssignmentInput,
  problem: Problem,
  partitionSize: number,
  totalCapacity: number,
  partitionsPerNode: Record<string, number>,
  moves: number,
): string[] {
  const { partitions, rf, zr } = problem;
  const stored = partitionSize * partitions * rf;
  const percent = (100 * stored) / totalCapacity;
  const messages = [
    `Partitions are replicated ${rf} times on ${zoneRedundancyText(zr)}.`,
    `Optimal partition size: ${formatBytes(partitionSize)}.`,
    `Usable capacity: ${formatBytes(partitionSize * partitions)} ` +
      `(${formatBytes(stored)} of ${formatBytes(totalCapacity)} raw capacity in use, ${percent.toFixed(1)} %).`,
  ];
  if (partitionSize < SMALL_PARTITION_SIZE) {
    messages.push(
      `Warning: the partition size is below ${SMALL_PARTITION_SIZE} bytes; check that node capacities are in bytes.`,
    );
  }
  if (percent < LOW_UTILISATION_PERCENT) {
    messages.push(
      "Much of the raw capacity cannot be used: the replication factor and zone redundancy force copies onto " +
        "zones or nodes with less capacity. Move capacity between zones or lower the zone redundancy; the " +
        "per-node figures show which nodes are full.",
    );
  }
  if (input.previous !== undefined) {
    messages.push(`${moves} partition ${moves === 1 ? "copy" : "copies"} must be transferred to new nodes.`);
  }
  for (const id of Object.keys(partitionsPerNode).sort(byId)) {
    if (partitionsPerNode[id]! > 0) continue;
    const { zone, capacity } = input.roles[id]!;
    if (capacity === 0) {
      messages.push(`Node ${id} gets 0 partitions: its capacity is 0.`);
    } else if (capacity! < partitionSize) {
      messages.push(
        `Node ${id} gets 0 partitions: its capacity (${formatBytes(capacity!)}) is below the partition size.`,
      );
    } else {
      messages.push(
        `Node ${id} gets 0 partitions: zone ${zone} already holds every copy the other zones leave room for, ` +
          `and moving data onto it would not add capacity. Lower the capacity of the other nodes of ${zone} ` +
          `to spread the data.`,
      );
    }
  }
  return messages;
}
