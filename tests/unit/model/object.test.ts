import { describe, expect, test } from "bun:test";
import {
  newestTimestamp,
  objectSchema,
  pruneVersions,
  visibleDelta,
  visibleVersion,
  type ObjectData,
  type ObjectEntry,
  type ObjectVersion,
  type VersionState,
} from "../../../src/model/object.ts";

const uploading: VersionState = { kind: "uploading", multipart: false, headers: [], uploader: "n1" };
const blocks = (etag: string): ObjectData => ({ kind: "blocks", meta: { size: 10, etag, headers: [] } });
const complete = (data: ObjectData = blocks("e")): VersionState => ({ kind: "complete", data });
const marker: VersionState = { kind: "complete", data: { kind: "deleteMarker" } };
const aborted: VersionState = { kind: "aborted" };
const oneBlock = { kind: "blocks" as const, meta: { size: 10, etag: "p", headers: [] }, singleBlock: "h".repeat(64) };
const pending = (tags?: { timestamp: number; set: [string, string][] }): VersionState => (tags ? { kind: "pending", data: oneBlock, tags } : { kind: "pending", data: oneBlock });
const v = (uuid: string, timestamp: number, state: VersionState): ObjectVersion => ({ uuid, timestamp, state });
const obj = (...versions: ObjectVersion[]): ObjectEntry => ({ bucketId: "b", key: "k", versions });
const uuids = (vs: ObjectVersion[]) => vs.map((x) => x.uuid);

describe("pruneVersions", () => {
  test("keeps the newest complete version and everything newer, sorted oldest first", () => {
    const vs = [v("d", 40, uploading), v("a", 10, complete()), v("c", 30, complete()), v("b", 20, uploading), v("e", 50, aborted)];
    expect(uuids(pruneVersions(vs))).toEqual(["c", "d", "e"]);
  });

  test("with no complete version keeps everything (sorted)", () => {
    const vs = [v("b", 20, uploading), v("a", 10, aborted), v("c", 30, uploading)];
    expect(uuids(pruneVersions(vs))).toEqual(["a", "b", "c"]);
  });

  test("a delete marker counts as complete: it hides and drops older versions", () => {
    expect(uuids(pruneVersions([v("a", 10, complete()), v("m", 20, marker), v("u", 30, uploading)]))).toEqual(["m", "u"]);
  });

  test("an aborted version does not count as complete", () => {
    expect(uuids(pruneVersions([v("a", 10, complete()), v("x", 20, aborted)]))).toEqual(["a", "x"]);
  });

  test("equal timestamps are ordered by uuid", () => {
    expect(uuids(pruneVersions([v("b", 10, complete()), v("a", 10, complete())]))).toEqual(["b"]);
    expect(uuids(pruneVersions([v("b", 10, uploading), v("a", 10, complete())]))).toEqual(["a", "b"]);
  });

  test("does not mutate its input", () => {
    const vs = [v("b", 20, complete()), v("a", 10, complete())];
    pruneVersions(vs);
    expect(uuids(vs)).toEqual(["b", "a"]);
  });

  test("empty stays empty", () => {
    expect(pruneVersions([])).toEqual([]);
  });
});

describe("object merge: version states", () => {
  const merge1 = (a: VersionState, b: VersionState) => objectSchema.merge(obj(v("x", 1, a)), obj(v("x", 1, b))).versions[0]!.state.kind;

  test("aborted absorbs complete absorbs uploading, in either order", () => {
    for (const [a, b, want] of [
      [uploading, complete(), "complete"],
      [uploading, aborted, "aborted"],
      [complete(), aborted, "aborted"],
      [uploading, uploading, "uploading"],
    ] as const) {
      expect(merge1(a, b)).toBe(want);
      expect(merge1(b, a)).toBe(want);
    }
  });

  test("pending sits between uploading and complete: complete and aborted absorb it, it absorbs uploading", () => {
    for (const [a, b, want] of [
      [uploading, pending(), "pending"],
      [pending(), pending(), "pending"],
      [pending(), complete(oneBlock), "complete"],
      [pending(), aborted, "aborted"],
    ] as const) {
      expect(merge1(a, b)).toBe(want);
      expect(merge1(b, a)).toBe(want);
    }
  });

  test("a pending version's tags merge with its completion's: the newer register wins, in either order", () => {
    const written = { timestamp: 1, set: [["a", "1"]] as [string, string][] };
    const retagged = { timestamp: 5, set: [["b", "2"]] as [string, string][] };
    const completed: VersionState = { kind: "complete", data: oneBlock, tags: retagged };
    for (const [a, b] of [
      [pending(written), completed],
      [completed, pending(written)],
    ] as const) {
      const state = objectSchema.merge(obj(v("x", 1, a)), obj(v("x", 1, b))).versions[0]!.state;
      expect(state).toEqual({ kind: "complete", data: oneBlock, tags: retagged });
    }
    // Copies merged in either order store the same bytes.
    const ab = objectSchema.merge(obj(v("x", 1, pending(retagged))), obj(v("x", 1, complete(oneBlock))));
    const ba = objectSchema.merge(obj(v("x", 1, complete(oneBlock))), obj(v("x", 1, pending(retagged))));
    expect(JSON.stringify(ab)).toBe(JSON.stringify(ba));
  });

  test("a pending version newer than the visible one is kept next to it, invisible; its completion replaces it", () => {
    const merged = objectSchema.merge(obj(v("cur", 10, complete())), obj(v("p", 20, pending())));
    expect(uuids(merged.versions)).toEqual(["cur", "p"]);
    expect(visibleVersion(merged)!.uuid).toBe("cur");
    expect(visibleDelta(obj(v("cur", 10, complete())), merged)).toEqual({ objects: 0, bytes: 0, uploads: 0 });
    const done = objectSchema.merge(merged, obj(v("p", 20, complete(oneBlock))));
    expect(uuids(done.versions)).toEqual(["p"]);
    // A pending version older than the newest complete one is dropped, as any older version.
    expect(uuids(objectSchema.merge(done, obj(v("older", 15, pending()))).versions)).toEqual(["p"]);
    // Only pending versions: nothing visible, and not a tombstone (it may be acknowledged).
    expect(visibleVersion(obj(v("p", 20, pending())))).toBeUndefined();
    expect(objectSchema.isTombstone!(obj(v("p", 20, pending())))).toBe(false);
  });

  test("a newer complete version drops older ones; an older one arriving late is dropped", () => {
    const merged = objectSchema.merge(obj(v("old", 10, complete(blocks("e-old")))), obj(v("new", 20, complete(blocks("e-new")))));
    expect(uuids(merged.versions)).toEqual(["new"]);
    const late = objectSchema.merge(merged, obj(v("old", 10, complete(blocks("e-old")))));
    expect(uuids(late.versions)).toEqual(["new"]);
    const lateUpload = objectSchema.merge(merged, obj(v("older", 5, uploading)));
    expect(uuids(lateUpload.versions)).toEqual(["new"]);
  });

  test("an upload in progress newer than the visible version is kept next to it", () => {
    const merged = objectSchema.merge(obj(v("cur", 10, complete())), obj(v("up", 20, uploading)));
    expect(uuids(merged.versions)).toEqual(["cur", "up"]);
    expect(visibleVersion(merged)!.uuid).toBe("cur");
    const done = objectSchema.merge(merged, obj(v("up", 20, complete(blocks("e2")))));
    expect(uuids(done.versions)).toEqual(["up"]);
  });
});

describe("visibleVersion", () => {
  test("undefined entry or no versions", () => {
    expect(visibleVersion(undefined)).toBeUndefined();
    expect(visibleVersion(obj())).toBeUndefined();
  });

  test("the newest complete version, skipping newer uploading and aborted ones", () => {
    const o = obj(v("a", 10, complete(blocks("ea"))), v("b", 20, uploading), v("c", 30, aborted));
    expect(visibleVersion(o)!.uuid).toBe("a");
  });

  test("a newest delete marker hides the object", () => {
    expect(visibleVersion(obj(v("a", 10, complete()), v("m", 20, marker)))).toBeUndefined();
    expect(visibleVersion(obj(v("m", 20, marker), v("u", 30, uploading)))).toBeUndefined();
  });

  test("a version written after a delete marker is visible again", () => {
    const o = objectSchema.merge(obj(v("m", 20, marker)), obj(v("b", 30, complete(blocks("eb")))));
    expect(visibleVersion(o)!.uuid).toBe("b");
  });

  test("only uploading versions: nothing visible", () => {
    expect(visibleVersion(obj(v("u", 10, uploading)))).toBeUndefined();
  });

  test("newestTimestamp covers every version state", () => {
    expect(newestTimestamp(undefined)).toBe(0);
    expect(newestTimestamp(obj(v("a", 10, complete()), v("b", 25, uploading)))).toBe(25);
  });
});
