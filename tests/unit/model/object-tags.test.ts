// The tags of a complete version are a last-writer-wins register merged beside its (immutable)
// data: the object merge must stay a join (commutative, associative, idempotent) with copies of
// one version carrying different registers, and must keep the newest register whatever order
// the copies arrive in. Inputs are random (seeded) over a small pool so that ties happen.
import { describe, expect, test } from "bun:test";
import { objectSchema, versionTags, visibleVersion, type ObjectData, type ObjectEntry, type ObjectVersion, type TagRegister } from "../../../src/model/object.ts";
import { mulberry32 } from "../../helpers/random";

const ROUNDS = 300;

const DATA: ObjectData = { kind: "inline", meta: { size: 1, etag: "e1", headers: [] }, base64: "AQ==" };
/** Registers a version's copies may hold: timestamps repeat (ties) with different sets. */
const REGISTERS: (TagRegister | undefined)[] = [
  undefined,
  { timestamp: 100, set: [] },
  { timestamp: 100, set: [["a", "1"]] },
  { timestamp: 200, set: [["a", "2"], ["b", ""]] },
  { timestamp: 200, set: [["c", "3"]] },
  { timestamp: 300, set: [] },
];

function gen(next: () => number): ObjectEntry {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const tags = pick(REGISTERS);
  const state: ObjectVersion["state"] =
    next() < 0.2
      ? { kind: "uploading", multipart: false, headers: [], uploader: "node1" }
      : { kind: "complete", data: structuredClone(DATA), ...(tags ? { tags: structuredClone(tags) } : {}) };
  const versions: ObjectVersion[] = [{ uuid: "v1", timestamp: 10, state }];
  // Sometimes a newer version too, whose own tags are independent of v1's.
  if (next() < 0.3) versions.push({ uuid: "v2", timestamp: 20, state: { kind: "complete", data: structuredClone(DATA), tags: { timestamp: 50, set: [["x", "y"]] } } });
  return { bucketId: "b1", key: "k", versions };
}

const m = (a: ObjectEntry, b: ObjectEntry) => objectSchema.merge(structuredClone(a), structuredClone(b));
/** The bytes a replica stores: key order included, since replicas compare encodings. */
const bytes = (o: ObjectEntry) => JSON.stringify(o);

describe("object merge with tag registers", () => {
  test("is commutative, to the byte", () => {
    const next = mulberry32(11);
    for (let i = 0; i < ROUNDS; i++) {
      const [a, b] = [gen(next), gen(next)];
      expect(bytes(m(a, b))).toBe(bytes(m(b, a)));
    }
  });

  test("is associative", () => {
    const next = mulberry32(12);
    for (let i = 0; i < ROUNDS; i++) {
      const [a, b, c] = [gen(next), gen(next), gen(next)];
      expect(bytes(m(m(a, b), c))).toBe(bytes(m(a, m(b, c))));
    }
  });

  test("is idempotent", () => {
    const next = mulberry32(13);
    for (let i = 0; i < ROUNDS; i++) {
      const [a, b] = [gen(next), gen(next)];
      const ab = m(a, b);
      expect(bytes(m(ab, ab))).toBe(bytes(ab));
      expect(bytes(m(ab, a))).toBe(bytes(ab));
      expect(bytes(m(b, ab))).toBe(bytes(ab));
    }
  });

  test("keeps the newest register of all copies (ties: the same one everywhere), and the data", () => {
    const next = mulberry32(14);
    for (let i = 0; i < ROUNDS; i++) {
      const inputs = [gen(next), gen(next), gen(next)];
      const merged = inputs.reduce(m);
      const v1 = merged.versions.find((v) => v.uuid === "v1");
      if (!v1 || v1.state.kind !== "complete") continue;
      const registers = inputs.flatMap((o) => o.versions).flatMap((v) => (v.uuid === "v1" && v.state.kind === "complete" && v.state.tags ? [v.state.tags] : []));
      const newest = Math.max(-1, ...registers.map((r) => r.timestamp));
      if (newest < 0) {
        expect(v1.state.tags).toBeUndefined();
      } else {
        expect(v1.state.tags!.timestamp).toBe(newest);
        const tied = registers.filter((r) => r.timestamp === newest).map((r) => JSON.stringify(r.set));
        expect(JSON.stringify(v1.state.tags!.set)).toBe(tied.sort().at(-1)!);
      }
      expect(v1.state.data).toEqual(DATA);
    }
  });

  test("a later tag write wins over an earlier one in either order; deleting tags is a write too", () => {
    const at = (tags: TagRegister | undefined): ObjectEntry => ({
      bucketId: "b1",
      key: "k",
      versions: [{ uuid: "v1", timestamp: 10, state: { kind: "complete", data: structuredClone(DATA), ...(tags ? { tags } : {}) } }],
    });
    const none = at(undefined);
    const put = at({ timestamp: 100, set: [["k", "v"]] });
    const deleted = at({ timestamp: 200, set: [] });
    for (const [a, b] of [[none, put], [put, none]] as const) expect(versionTags(visibleVersion(m(a, b))!)).toEqual([["k", "v"]]);
    for (const [a, b] of [[put, deleted], [deleted, put]] as const) expect(versionTags(visibleVersion(m(a, b))!)).toEqual([]);
  });

  test("tags never bring back a version a newer one replaced", () => {
    const old: ObjectEntry = { bucketId: "b1", key: "k", versions: [{ uuid: "v1", timestamp: 10, state: { kind: "complete", data: structuredClone(DATA), tags: { timestamp: 900, set: [["k", "v"]] } } }] };
    const newer: ObjectEntry = { bucketId: "b1", key: "k", versions: [{ uuid: "v2", timestamp: 20, state: { kind: "complete", data: { kind: "deleteMarker" } } }] };
    expect(m(old, newer).versions.map((v) => v.uuid)).toEqual(["v2"]);
    expect(m(newer, old).versions.map((v) => v.uuid)).toEqual(["v2"]);
  });
});
