import { describe, expect, test } from "bun:test";
import type { ClusterLayout } from "../../../src/cli/admin-client";
import { UsageError } from "../../../src/cli/args";
import {
  matchNode,
  parseCapacity,
  parseZoneRedundancy,
  stagedOrCurrentRole,
  zoneRedundancyText,
} from "../../../src/cli/commands/layout";

describe("parseCapacity (Garage's bytesize units)", () => {
  const ok: [string, number][] = [
    ["0.5K", 500],
    ["100G", 100e9],
    ["100g", 100e9],
    ["100 GB", 100e9],
    ["1T", 1e12],
    ["1.5T", 1.5e12],
    ["500M", 500e6],
    ["10GB", 10e9],
    ["3P", 3e15],
    ["2TiB", 2 * 1024 ** 4],
    ["2Ti", 2 * 1024 ** 4],
    ["1KiB", 1024],
    ["1.5KiB", 1536],
    ["4mib", 4 * 1024 ** 2],
    ["10Gi", 10 * 1024 ** 3],
    ["1Pi", 1024 ** 5],
    ["4096", 4096],
    ["4096B", 4096],
    [" 1G ", 1e9],
  ];
  for (const [text, bytes] of ok) {
    test(`'${text}' = ${bytes}`, () => expect(parseCapacity(text)).toBe(bytes));
  }

  for (const bad of ["", "G", "1.5", "-1G", "1X", "1GiBs", "1 000", "1e9", "0", "0G", "10E", "9000P"]) {
    test(`'${bad}' is refused`, () => expect(() => parseCapacity(bad)).toThrow(UsageError));
  }
});

describe("parseZoneRedundancy", () => {
  test("maximum and its Garage spellings, or a number of zones", () => {
    for (const t of ["maximum", "max", "none", "MAX"]) expect(parseZoneRedundancy(t)).toBe("maximum");
    expect(parseZoneRedundancy("1")).toEqual({ atLeast: 1 });
    expect(parseZoneRedundancy("3")).toEqual({ atLeast: 3 });
    for (const t of ["0", "-1", "2.5", "two", ""]) expect(() => parseZoneRedundancy(t)).toThrow(UsageError);
    expect(zoneRedundancyText("maximum")).toBe("maximum");
    expect(zoneRedundancyText({ atLeast: 2 })).toBe("2");
  });
});

describe("matchNode", () => {
  const ids = ["a".repeat(64), `ab${"1".repeat(62)}`, "c".repeat(64), "c".repeat(64)];

  test("a unique prefix, a full id, case and @addr do not matter; duplicates count once", () => {
    expect(matchNode(ids, "ab")).toBe(ids[1]!);
    expect(matchNode(ids, "AB1")).toBe(ids[1]!);
    expect(matchNode(ids, `${ids[1]}@10.0.0.2:3901`)).toBe(ids[1]!);
    expect(matchNode(ids, "c")).toBe(ids[2]!);
  });

  test("ambiguous, unknown and empty", () => {
    expect(() => matchNode(ids, "a")).toThrow("'a' matches 2 nodes");
    expect(() => matchNode(ids, "f")).toThrow("no node matches 'f'");
    expect(() => matchNode(ids, "")).toThrow(UsageError);
  });
});

describe("stagedOrCurrentRole", () => {
  const layout: ClusterLayout = {
    version: 1,
    roles: [
      { id: "n1", zone: "dc1", capacity: 10, tags: ["x"] },
      { id: "n2", zone: "dc2", capacity: null, tags: [] },
    ],
    parameters: { zoneRedundancy: "maximum" },
    partitionSize: 0,
    stagedRoleChanges: [
      { id: "n2", remove: true },
      { id: "n3", remove: false, zone: "dc3", capacity: 5, tags: ["y"] },
    ],
    stagedParameters: null,
  };

  test("staged first, then current; a staged removal or no role is null", () => {
    expect(stagedOrCurrentRole(layout, "n1")).toEqual({ zone: "dc1", capacity: 10, tags: ["x"] });
    expect(stagedOrCurrentRole(layout, "n2")).toBeNull();
    expect(stagedOrCurrentRole(layout, "n3")).toEqual({ zone: "dc3", capacity: 5, tags: ["y"] });
    expect(stagedOrCurrentRole(layout, "n4")).toBeNull();
  });

  test("a staged change without `remove` (Garage's shape) is a role", () => {
    const garage = { ...layout, stagedRoleChanges: [{ id: "n1", zone: "dc9", capacity: null, tags: [] }] };
    expect(stagedOrCurrentRole(garage, "n1")).toEqual({ zone: "dc9", capacity: null, tags: [] });
  });
});
