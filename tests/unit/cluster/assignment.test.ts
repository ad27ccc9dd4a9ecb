// Partition assignment: every constraint on random clusters (seeded), optimality of the
// partition size and of the number of moves against an exhaustive search on small clusters and
// an independent max-flow on large ones, move counts on typical cluster changes, Garage's
// documented examples, and speed.
import { describe, expect, test } from "bun:test";
import {
  computeAssignment,
  LayoutError,
  type AssignmentInput,
  type AssignmentResult,
  type ZoneRedundancy,
} from "../../../src/cluster/assignment.ts";
import { PARTITION_COUNT, type NodeRole } from "../../../src/cluster/layout.ts";
import { mulberry32 } from "../../helpers/random";

/** Seeded helpers over mulberry32, so a failure is reproducible. */
function rng(seed: number) {
  const next = mulberry32(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[int(0, items.length - 1)]!;
  return { next, int, pick };
}
type Rng = ReturnType<typeof rng>;

const GB = 1_000_000_000;
const role = (zone: string, capacity: number | null): NodeRole => ({ zone, capacity, tags: [] });

function storageIds(roles: Record<string, NodeRole>): string[] {
  return Object.keys(roles)
    .filter((id) => (roles[id]!.capacity ?? 0) > 0)
    .sort();
}

function effectiveRedundancy(input: AssignmentInput): number {
  const roles = input.roles;
  const zones = new Set(storageIds(roles).map((id) => roles[id]!.zone));
  return input.zoneRedundancy === "maximum" ? Math.min(input.replicationFactor, zones.size) : input.zoneRedundancy;
}

function countMoves(ring: string[][], previous: string[][] | undefined): number {
  if (previous === undefined) return 0;
  return ring.reduce((sum, held, p) => sum + held.filter((id) => !previous[p]!.includes(id)).length, 0);
}

/** Every constraint of a valid assignment, checked from the outside. */
function expectValid(input: AssignmentInput, result: AssignmentResult): void {
  const { roles, replicationFactor: rf } = input;
  const partitions = input.partitions ?? PARTITION_COUNT;
  const zr = effectiveRedundancy(input);
  const { ring, partitionSize } = result;
  expect(ring.length).toBe(partitions);
  expect(Number.isSafeInteger(partitionSize) && partitionSize >= 1).toBe(true);
  expect(result.usableCapacity).toBe(partitionSize * partitions);
  const perNode: Record<string, number> = {};
  const perZone: Record<string, number> = {};
  for (const [id, r] of Object.entries(roles)) {
    if (r.capacity === null) continue;
    perNode[id] = 0;
    perZone[r.zone] = 0;
  }
  for (const held of ring) {
    expect(held.length).toBe(rf);
    expect(new Set(held).size).toBe(rf);
    for (const id of held) {
      expect(roles[id]?.capacity ?? 0).toBeGreaterThan(0);
      perNode[id]!++;
      perZone[roles[id]!.zone]!++;
    }
    expect(new Set(held.map((id) => roles[id]!.zone)).size).toBeGreaterThanOrEqual(zr);
  }
  for (const id of storageIds(roles)) {
    expect(perNode[id]!).toBeLessThanOrEqual(Math.floor(roles[id]!.capacity! / partitionSize));
  }
  expect(result.partitionsPerNode).toEqual(perNode);
  expect(result.partitionsPerZone).toEqual(perZone);
  expect(result.moves).toBe(countMoves(ring, input.previous));
}

// --- Independent references ----------------------------------------------------------------

/**
 * Exhaustive search: for each partition size from the largest down, every assignment of a valid
 * replica set to each partition; returns the first size that fits and the fewest moves there.
 */
function bruteForce(input: AssignmentInput): { partitionSize: number; moves: number } | null {
  const { roles, replicationFactor: rf, previous } = input;
  const partitions = input.partitions!;
  const zr = effectiveRedundancy(input);
  const nodes = storageIds(roles);
  const sets: number[][] = [];
  const choose = (from: number, chosen: number[]) => {
    if (chosen.length === rf) {
      if (new Set(chosen.map((n) => roles[nodes[n]!]!.zone)).size >= zr) sets.push([...chosen]);
      return;
    }
    for (let n = from; n < nodes.length; n++) choose(n + 1, [...chosen, n]);
  };
  choose(0, []);
  const setMoves = (p: number, set: number[]) =>
    previous === undefined ? 0 : set.filter((n) => !previous[p]!.includes(nodes[n]!)).length;

  const maxCapacity = Math.max(0, ...nodes.map((id) => roles[id]!.capacity!));
  for (let size = maxCapacity; size >= 1; size--) {
    const room = nodes.map((id) => Math.floor(roles[id]!.capacity! / size));
    let best = Infinity;
    const search = (p: number, moves: number) => {
      if (moves >= best) return;
      if (p === partitions) {
        best = moves;
        return;
      }
      for (const set of sets) {
        if (set.some((n) => room[n]! === 0)) continue;
        for (const n of set) room[n]!--;
        search(p + 1, moves + setMoves(p, set));
        for (const n of set) room[n]!++;
      }
    };
    search(0, 0);
    if (best < Infinity) return { partitionSize: size, moves: best };
  }
  return null;
}

/**
 * Plain augmenting-path max-flow on Garage's network (source -> Pup/Pdown -> PZ -> node -> sink),
 * written separately from the implementation: does a full assignment exist at this size?
 */
function flowFits(input: AssignmentInput, size: number): boolean {
  const { roles, replicationFactor: rf } = input;
  const partitions = input.partitions ?? PARTITION_COUNT;
  const zr = effectiveRedundancy(input);
  const nodes = storageIds(roles);
  const zones = [...new Set(nodes.map((id) => roles[id]!.zone))];
  const adj: number[][] = [];
  const to: number[] = [];
  const cap: number[] = [];
  const vertex = (() => {
    let count = 0;
    return () => {
      adj.push([]);
      return count++;
    };
  })();
  const edge = (u: number, v: number, c: number) => {
    adj[u]!.push(to.length);
    to.push(v);
    cap.push(c);
    adj[v]!.push(to.length);
    to.push(u);
    cap.push(0);
  };
  const source = vertex();
  const sink = vertex();
  const nodeVertex = nodes.map(() => vertex());
  nodes.forEach((id, n) => edge(nodeVertex[n]!, sink, Math.floor(roles[id]!.capacity! / size)));
  for (let p = 0; p < partitions; p++) {
    const up = vertex();
    const down = vertex();
    edge(source, up, zr);
    edge(source, down, rf - zr);
    const zoneVertex = zones.map(() => vertex());
    zones.forEach((_, z) => {
      edge(up, zoneVertex[z]!, 1);
      edge(down, zoneVertex[z]!, rf);
    });
    nodes.forEach((id, n) => edge(zoneVertex[zones.indexOf(roles[id]!.zone)]!, nodeVertex[n]!, 1));
  }
  let flow = 0;
  for (;;) {
    const seen = new Uint8Array(adj.length);
    const viaEdge = new Int32Array(adj.length).fill(-1);
    const stack = [source];
    seen[source] = 1;
    while (stack.length > 0 && !seen[sink]) {
      const u = stack.pop()!;
      for (const e of adj[u]!) {
        if (cap[e]! > 0 && !seen[to[e]!]) {
          seen[to[e]!] = 1;
          viaEdge[to[e]!] = e;
          stack.push(to[e]!);
        }
      }
    }
    if (!seen[sink]) return flow === partitions * rf;
    for (let v = sink; v !== source; v = to[viaEdge[v]! ^ 1]!) {
      cap[viaEdge[v]!]!--;
      cap[viaEdge[v]! ^ 1]!++;
    }
    flow++;
  }
}

// --- Random clusters ------------------------------------------------------------------------

const ZONE_NAMES = ["dc-a", "dc-b", "dc-c", "dc-d", "dc-e"];

function randomRoles(r: Rng, maxNodes: number, maxZones: number, capacity: () => number): Record<string, NodeRole> {
  const zones = ZONE_NAMES.slice(0, r.int(1, maxZones));
  const roles: Record<string, NodeRole> = {};
  const count = r.int(1, maxNodes);
  for (let i = 0; i < count; i++) {
    const id = `n${r.int(0, 0xffff).toString(16).padStart(4, "0")}${i}`;
    const kind = r.next();
    roles[id] = role(r.pick(zones), kind < 0.12 ? null : kind < 0.17 ? 0 : capacity());
  }
  return roles;
}

function randomRedundancy(r: Rng, rf: number): ZoneRedundancy {
  return r.next() < 0.4 ? "maximum" : r.int(1, rf);
}

/** Why a layout must be refused, or null when one must exist (capacities are large enough). */
function expectedRefusal(input: AssignmentInput): string | null {
  const nodes = storageIds(input.roles);
  const zones = new Set(nodes.map((id) => input.roles[id]!.zone));
  if (nodes.length < input.replicationFactor) return "nodes";
  if (effectiveRedundancy(input) > zones.size) return "zones";
  return null;
}

describe("computeAssignment on random clusters", () => {
  test("every constraint holds, re-running keeps everything, output is deterministic", () => {
    const r = rng(0xb0c5e);
    let built = 0;
    for (let round = 0; round < 120; round++) {
      const rf = r.pick([1, 2, 3, 5]);
      const roles = randomRoles(r, 12, 5, () => r.int(1, 4000) * 1_000_000);
      const input: AssignmentInput = { replicationFactor: rf, zoneRedundancy: randomRedundancy(r, rf), roles };
      const refusal = expectedRefusal(input);
      if (refusal !== null) {
        expect(() => computeAssignment(input)).toThrow(LayoutError);
        continue;
      }
      const result = computeAssignment(input);
      built++;
      expectValid(input, result);
      expect(result.moves).toBe(0);

      // Same input with the roles listed in another order: same output.
      const reordered = Object.fromEntries(Object.entries(roles).reverse());
      expect(computeAssignment({ ...input, roles: reordered })).toEqual(result);

      // Applying the result again moves nothing and changes nothing.
      const again = computeAssignment({ ...input, previous: result.ring });
      expect(again.moves).toBe(0);
      expect(again.ring).toEqual(result.ring);
      expect(again.partitionSize).toBe(result.partitionSize);

      // A random previous ring (including nodes that left): still valid, and no worse than
      // keeping nothing.
      const ids = [...Object.keys(roles), "gone-1", "gone-2"];
      const previous = Array.from({ length: PARTITION_COUNT }, () =>
        Array.from({ length: rf }, () => r.pick(ids)).filter((id, i, all) => all.indexOf(id) === i),
      );
      const moved = computeAssignment({ ...input, previous });
      expectValid({ ...input, previous }, moved);
      expect(moved.partitionSize).toBe(result.partitionSize);
    }
    expect(built).toBeGreaterThan(60);
  }, 60_000); // CPU-bound: generous under a loaded machine

  test("the partition size is the largest that fits (independent max-flow at size + 1)", () => {
    const r = rng(0x5eed);
    let checked = 0;
    for (let round = 0; round < 45; round++) {
      const rf = r.pick([1, 2, 3, 5]);
      const partitions = r.pick([PARTITION_COUNT, 64, 7]);
      const input: AssignmentInput = {
        replicationFactor: rf,
        zoneRedundancy: randomRedundancy(r, rf),
        roles: randomRoles(r, 10, 5, () => r.int(1, 200) * 1000 + r.int(0, 999)),
        partitions,
      };
      if (expectedRefusal(input) !== null) continue;
      const result = computeAssignment(input);
      expectValid(input, result);
      expect(flowFits(input, result.partitionSize)).toBe(true);
      expect(flowFits(input, result.partitionSize + 1)).toBe(false);
      checked++;
    }
    expect(checked).toBeGreaterThan(20);
  });

  test("small clusters: partition size and moves equal the exhaustive optimum", () => {
    const r = rng(0x0b7);
    let compared = 0;
    for (let round = 0; round < 400; round++) {
      const rf = r.pick([1, 2, 3, 5]);
      const partitions = r.int(1, 5);
      const roles = randomRoles(r, 5, 3, () => r.int(1, 24));
      const ids = [...Object.keys(roles), "gone"];
      const previous =
        r.next() < 0.25
          ? undefined
          : Array.from({ length: partitions }, () =>
              Array.from({ length: r.int(0, rf) }, () => r.pick(ids)).filter((id, i, all) => all.indexOf(id) === i),
            );
      const input: AssignmentInput = {
        replicationFactor: rf,
        zoneRedundancy: randomRedundancy(r, rf),
        roles,
        previous,
        partitions,
      };
      const best = expectedRefusal(input) === null ? bruteForce(input) : null;
      if (best === null) {
        expect(() => computeAssignment(input)).toThrow(LayoutError);
        continue;
      }
      const result = computeAssignment(input);
      expectValid(input, result);
      expect(result.partitionSize).toBe(best.partitionSize);
      expect(result.usableCapacity).toBe(best.partitionSize * partitions);
      expect(result.moves).toBe(best.moves);
      compared++;
    }
    expect(compared).toBeGreaterThan(180);
  });
});

// --- Cluster changes ------------------------------------------------------------------------

function cluster(spec: [string, string, number | null][]): Record<string, NodeRole> {
  return Object.fromEntries(spec.map(([id, zone, capacity]) => [id, role(zone, capacity)]));
}

function apply(roles: Record<string, NodeRole>, rf: number, previous?: string[][]): AssignmentResult {
  const input: AssignmentInput = { replicationFactor: rf, zoneRedundancy: "maximum", roles, previous };
  const result = computeAssignment(input);
  expectValid(input, result);
  return result;
}

describe("moves when the cluster changes", () => {
  test("a node added to a balanced cluster takes its fair share, and only that moves", () => {
    const five = cluster([1, 2, 3, 4, 5].map((i) => [`node${i}`, `dc${i}`, GB]));
    const before = apply(five, 3);
    const after = apply({ ...five, node6: role("dc6", GB) }, 3, before.ring);
    const fairShare = (PARTITION_COUNT * 3) / 6;
    expect(after.partitionsPerNode["node6"]).toBe(fairShare);
    expect(after.moves).toBe(after.partitionsPerNode["node6"]!);
    // The copies it takes come evenly from the others.
    for (let i = 1; i <= 5; i++) expect(after.partitionsPerNode[`node${i}`]).toBe(fairShare);
  });

  test("a node added to a new zone beside paired zones moves about its share", () => {
    const six = cluster(
      ["a", "b", "c"].flatMap((z): [string, string, number][] => [
        [`${z}1`, `dc-${z}`, GB],
        [`${z}2`, `dc-${z}`, GB],
      ]),
    );
    const before = apply(six, 3);
    for (const id of Object.keys(six)) expect(before.partitionsPerNode[id]).toBe(128);
    const after = apply({ ...six, d1: role("dc-d", GB) }, 3, before.ring);
    const gained = after.partitionsPerNode["d1"]!;
    expect(gained).toBeGreaterThan(0);
    expect(gained).toBeLessThanOrEqual(Math.ceil((PARTITION_COUNT * 3) / 7) + 1);
    expect(after.moves).toBe(gained);
  });

  test("removing a node moves only the copies it held", () => {
    const six = cluster([1, 2, 3, 4, 5, 6].map((i) => [`node${i}`, `dc${i}`, GB]));
    const before = apply(six, 3);
    const { node4: _removed, ...five } = six;
    const after = apply(five, 3, before.ring);
    expect(after.moves).toBe(before.partitionsPerNode["node4"]!);

    const paired = cluster([
      ["a1", "dc-a", GB],
      ["a2", "dc-a", GB],
      ["b1", "dc-b", GB],
      ["b2", "dc-b", GB],
      ["c1", "dc-c", GB],
    ]);
    const first = apply(paired, 3);
    const { a2: _gone, ...rest } = paired;
    const second = apply(rest, 3, first.ring);
    expect(second.partitionsPerNode["a1"]).toBe(PARTITION_COUNT);
    expect(second.moves).toBe(first.partitionsPerNode["a2"]!);
  });

  test("a node whose capacity doubles in a one-zone cluster takes what balance requires", () => {
    const three = cluster([
      ["x", "dc1", GB],
      ["y", "dc1", GB],
      ["z", "dc1", GB],
    ]);
    const before = apply(three, 1);
    const after = apply({ ...three, z: role("dc1", 2 * GB) }, 1, before.ring);
    expect(after.partitionsPerNode).toEqual({ x: 64, y: 64, z: 128 });
    expect(after.moves).toBe(128 - before.partitionsPerNode["z"]!);
  });
});

describe("Garage's documented examples (doc/book/operations/layout.md)", () => {
  const MB = 1_000_000;
  const threeZones = cluster([
    ["node1", "dc1", 1000 * MB],
    ["node2", "dc2", 1000 * MB],
    ["node3", "dc3", 1000 * MB],
  ]);

  test("example 1: a node added to an already-full zone gets 0 partitions", () => {
    const before = apply(threeZones, 3);
    expect(before.partitionSize).toBe(Math.floor((1000 * MB) / 256)); // "3.9 MB"
    const after = apply({ ...threeZones, node4: role("dc1", 1000 * MB) }, 3, before.ring);
    expect(after.partitionSize).toBe(before.partitionSize);
    expect(after.moves).toBe(0);
    expect(after.partitionsPerNode).toEqual({ node1: 256, node2: 256, node3: 256, node4: 0 });
    expect(after.partitionsPerZone).toEqual({ dc1: 256, dc2: 256, dc3: 256 });
    expect(after.messages.some((m) => m.includes("node4") && m.includes("0 partitions"))).toBe(true);
    expect(after.messages).toContain("0 partition copies must be transferred to new nodes.");

    // The documented remedy: half the capacity on each node of dc1 forces the split.
    const halved = apply({ ...threeZones, node1: role("dc1", 500 * MB), node4: role("dc1", 500 * MB) }, 3, before.ring);
    expect(halved.partitionsPerNode["node1"]).toBe(128);
    expect(halved.partitionsPerNode["node4"]).toBe(128);
    expect(halved.moves).toBe(128);
  });

  test("example 1 from scratch: the spare zone is filled evenly", () => {
    const fresh = apply({ ...threeZones, node4: role("dc1", 1000 * MB) }, 3);
    const { node1, node4 } = fresh.partitionsPerNode;
    expect(node1! + node4!).toBe(256);
    expect(Math.abs(node1! - node4!)).toBeLessThanOrEqual(256 / 16); // one balance slice
  });

  test("example 2: a node moved from a half-used zone to a full one: 128 copies move", () => {
    const v8 = { ...threeZones, node4: role("dc1", 1000 * MB) };
    const before = apply({ ...threeZones, node1: role("dc1", 500 * MB), node4: role("dc1", 500 * MB) }, 3);
    // Back to full capacities: nothing moves, node1 and node4 stay at 50 %.
    const settled = apply(v8, 3, before.ring);
    expect(settled.moves).toBe(0);
    expect(settled.partitionsPerNode["node1"]).toBe(128);
    expect(settled.partitionsPerNode["node4"]).toBe(128);

    const after = apply({ ...v8, node4: role("dc3", 1000 * MB) }, 3, settled.ring);
    expect(after.moves).toBe(128); // Garage: "A total of 128 new copies of partitions need to be transferred."
    expect(after.partitionsPerNode["node1"]).toBe(256);
    expect(after.partitionsPerNode["node2"]).toBe(256);
    expect(after.partitionsPerNode["node3"]! + after.partitionsPerNode["node4"]!).toBe(256);
  });
});

describe("refused layouts", () => {
  const refuse = (input: AssignmentInput, pattern: RegExp) => {
    expect(() => computeAssignment(input)).toThrow(LayoutError);
    expect(() => computeAssignment(input)).toThrow(pattern);
  };
  const two = cluster([
    ["a", "dc1", GB],
    ["b", "dc2", GB],
    ["gw", "dc3", null],
  ]);

  test("fewer storage nodes than the replication factor (gateways and zero capacity do not count)", () => {
    refuse({ replicationFactor: 3, zoneRedundancy: "maximum", roles: two }, /fewer than the replication factor/);
    refuse(
      { replicationFactor: 3, zoneRedundancy: "maximum", roles: { ...two, c: role("dc3", 0) } },
      /fewer than the replication factor/,
    );
    refuse({ replicationFactor: 1, zoneRedundancy: "maximum", roles: {} }, /fewer than the replication factor/);
  });

  test("fewer zones than the zone redundancy, or a redundancy above RF", () => {
    const sameZone = cluster([
      ["a", "dc1", GB],
      ["b", "dc1", GB],
      ["c", "dc2", GB],
    ]);
    refuse({ replicationFactor: 3, zoneRedundancy: 3, roles: sameZone }, /fewer than the zone redundancy/);
    refuse({ replicationFactor: 2, zoneRedundancy: 3, roles: sameZone }, /zone redundancy must be/);
    refuse({ replicationFactor: 2, zoneRedundancy: 0, roles: sameZone }, /zone redundancy must be/);
    const relaxed = computeAssignment({ replicationFactor: 3, zoneRedundancy: "maximum", roles: sameZone });
    expect(relaxed.ring[0]).toHaveLength(3);
  });

  test("capacity too small for even 1-byte partitions; invalid numbers", () => {
    refuse(
      { replicationFactor: 2, zoneRedundancy: "maximum", roles: cluster([["a", "dc1", 300], ["b", "dc2", 100]]) },
      /too small/,
    );
    refuse({ replicationFactor: 0, zoneRedundancy: "maximum", roles: two }, /replication factor must be/);
    refuse({ replicationFactor: 1, zoneRedundancy: "maximum", roles: { a: role("dc1", -5) } }, /capacity of node a/);
    refuse({ replicationFactor: 1, zoneRedundancy: "maximum", roles: { a: role("dc1", 1.5) } }, /capacity of node a/);
  });
});

describe("speed", () => {
  test("50 nodes in 5 zones, RF 3: fresh and after adding a node, each well under 300 ms", () => {
    const roles = cluster(
      Array.from({ length: 50 }, (_, i): [string, string, number] => [
        `node${String(i).padStart(2, "0")}`,
        `dc${i % 5}`,
        (1 + ((i * 7) % 10)) * 100 * GB,
      ]),
    );
    const input: AssignmentInput = { replicationFactor: 3, zoneRedundancy: "maximum", roles };
    let started = performance.now();
    const fresh = computeAssignment(input);
    const freshMs = performance.now() - started;
    const grownInput = { ...input, roles: { ...roles, extra: role("dc2", 500 * GB) }, previous: fresh.ring };
    started = performance.now();
    const grown = computeAssignment(grownInput);
    const grownMs = performance.now() - started;
    expectValid(input, fresh);
    expectValid(grownInput, grown);
    expect(grown.moves).toBeGreaterThan(0);
    expect(freshMs).toBeLessThan(300);
    expect(grownMs).toBeLessThan(300);
  });
});
