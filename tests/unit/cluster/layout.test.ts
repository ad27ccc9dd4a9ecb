import { describe, expect, test } from "bun:test";
import {
  LayoutPlacement,
  PARTITION_COUNT,
  partitionOfHashHex,
  quorumsFor,
  singleNodeLayout,
  type ConsistencyMode,
} from "../../../src/cluster/layout.ts";
import { HistoryPlacement } from "../../../src/cluster/placement.ts";
import { applyStaged, emptyHistory, stageRole } from "../../../src/cluster/layout-history.ts";

describe("quorumsFor (Garage's table)", () => {
  // Garage rpc/replication_mode.rs: consistent R = ceil(N/2), W = N + 1 - R;
  // degraded R = 1, same W; dangerous R = W = 1.
  const expected: Record<number, Record<ConsistencyMode, [number, number]>> = {
    1: { consistent: [1, 1], degraded: [1, 1], dangerous: [1, 1] },
    2: { consistent: [1, 2], degraded: [1, 2], dangerous: [1, 1] },
    3: { consistent: [2, 2], degraded: [1, 2], dangerous: [1, 1] },
    5: { consistent: [3, 3], degraded: [1, 3], dangerous: [1, 1] },
  };
  for (const [rf, modes] of Object.entries(expected)) {
    for (const [mode, [read, write]] of Object.entries(modes)) {
      test(`RF ${rf} ${mode}: R=${read} W=${write}`, () => {
        expect(quorumsFor(Number(rf), mode as ConsistencyMode)).toEqual({ read, write });
      });
    }
  }

  test("consistent mode gives R + W > N (read-after-write) for every RF", () => {
    for (let n = 1; n <= 7; n++) {
      const q = quorumsFor(n, "consistent");
      expect(q.read + q.write).toBeGreaterThan(n);
      expect(q.write).toBeLessThanOrEqual(n);
    }
  });

  test("RF below 1 is refused", () => {
    expect(() => quorumsFor(0, "consistent")).toThrow();
  });
});

describe("partitionOfHashHex", () => {
  test("is the top byte of the hash", () => {
    expect(partitionOfHashHex("00" + "f".repeat(62))).toBe(0);
    expect(partitionOfHashHex("ff" + "0".repeat(62))).toBe(255);
    expect(partitionOfHashHex("a7" + "1".repeat(62))).toBe(0xa7);
    expect(partitionOfHashHex("7F" + "0".repeat(62))).toBe(0x7f);
  });
  test("always lands in [0, PARTITION_COUNT)", () => {
    for (let i = 0; i < 256; i++) {
      const p = partitionOfHashHex(i.toString(16).padStart(2, "0") + "ab".repeat(31));
      expect(p).toBe(i);
      expect(p).toBeLessThan(PARTITION_COUNT);
    }
  });
});

describe("single-node layout and placement", () => {
  test("every partition is held by the one node", () => {
    const l = singleNodeLayout("n1", 1000);
    expect(l.ring.length).toBe(PARTITION_COUNT);
    expect(l.ring.every((r) => r.length === 1 && r[0] === "n1")).toBe(true);
    expect(l.roles.n1!.capacity).toBe(1000);
    expect(l.replicationFactor).toBe(1);
  });

  test("placement writes and reads on self with quorum 1/1", () => {
    const p = new LayoutPlacement("n1", singleNodeLayout("n1"), "consistent");
    expect(p.quorums).toEqual({ read: 1, write: 1 });
    expect(p.writeSets(17)).toEqual([["n1"]]);
    expect(p.readNodes(200)).toEqual(["n1"]);
  });

  test("a layout smaller than its replication factor caps the quorums at the replica count", () => {
    const layout = { ...singleNodeLayout("n1"), replicationFactor: 3 };
    expect(new LayoutPlacement("n1", layout, "consistent").quorums).toEqual({ read: 1, write: 1 });
  });

  test("readNodes puts self first when self holds the partition", () => {
    const layout = {
      ...singleNodeLayout("a"),
      replicationFactor: 3,
      ring: Array.from({ length: PARTITION_COUNT }, () => ["a", "b", "c"]),
    };
    expect(new LayoutPlacement("c", layout, "consistent").readNodes(3)).toEqual(["c", "a", "b"]);
    expect(new LayoutPlacement("z", layout, "consistent").readNodes(3)).toEqual(["a", "b", "c"]);
    expect(new LayoutPlacement("c", layout, "consistent").quorums).toEqual({ read: 2, write: 2 });
  });
});

describe("HistoryPlacement.readNodes", () => {
  test("answers from the history it was computed from, and again once the history changes", () => {
    const role = (zone: string) => ({ zone, capacity: 1_000_000_000, tags: [] });
    let h = emptyHistory();
    for (const [n, z] of [["a", "z1"], ["b", "z1"], ["c", "z2"]] as const) h = stageRole(h, n, role(z), 1);
    h = applyStaged(h, 1, 3, 2).history;
    let current = h;
    const placement = new HistoryPlacement("c", () => current, 3, "consistent");
    const first = placement.readNodes(7);
    expect(first[0]).toBe("c"); // self first
    expect([...first].sort()).toEqual(["a", "b", "c"]);
    expect(placement.readNodes(7)).toBe(first); // the same answer, not recomputed
    expect(Object.isFrozen(first)).toBe(true); // nobody can change it for the next caller
    // A new history (here: a new layout version where c left) is a new object: new answers.
    current = applyStaged(stageRole(current, "c", null, 3), 2, 2, 4).history;
    const after = placement.readNodes(7);
    expect(after).not.toBe(first);
    expect(after).toEqual(placement.readNodes(7));
  });
});
