// Table GC of tombstones (src/table/gc.ts): in-process replicas over temp sqlite files, a fake
// RPC route between them, and a fake clock so the GC delay and retry backoff pass instantly.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout, type LayoutVersion } from "../../../src/cluster/layout.ts";
import { GroupCommitter } from "../../../src/db/committer.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { HybridClock } from "../../../src/util/hlc.ts";
import { LocalStore, type TombstoneRef } from "../../../src/table/local-store.ts";
import type { TableSchema } from "../../../src/table/schema.ts";
import {
  GcTodo,
  TABLE_GC_BATCH,
  TABLE_GC_DELAY_ENV,
  TABLE_GC_DELAY_MS,
  TABLE_GC_RETRY_MAX_MS,
  TABLE_GC_RETRY_MIN_MS,
  TableGc,
  tableGcDelayMs,
  valueHash,
  type GcReplicas,
} from "../../../src/table/gc.ts";
import { RpcReplicas, serveTables } from "../../../src/table/rpc-replicas.ts";
import { objectSchema, type ObjectEntry, type ObjectVersion, type VersionState } from "../../../src/model/object.ts";
import { versionBlockSchema, versionSchema, type VersionEntry } from "../../../src/model/version.ts";
import { blockRefSchema, type BlockRefEntry } from "../../../src/model/block-ref.ts";
import { uploadPartSchema, uploadSchema, type UploadEntry } from "../../../src/model/upload.ts";
import { keySchema } from "../../../src/model/key.ts";
import { Model } from "../../../src/model/model.ts";
import { startPair } from "../rpc/helpers.ts";
import type { RpcNode } from "../../../src/rpc/rpc.ts";

const DELAY = 1_000;
const NODES = ["self", "n2", "n3"] as const;
type NodeId = (typeof NODES)[number];
const SCHEMAS = [objectSchema, versionSchema, versionBlockSchema, blockRefSchema, uploadSchema, uploadPartSchema] as TableSchema<unknown>[];

let dir: string;
let t: number;
const now = () => t;
const open: Database[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-gc-"));
  t = 1_000_000;
});
afterEach(async () => {
  for (const d of open.splice(0)) d.close();
  await rm(dir, { recursive: true, force: true });
});

const H = (c: string) => c.repeat(64);
const ref = (hash: string, version: string, deleted = true): BlockRefEntry => ({ hash, version, deleted });
const marker: VersionState = { kind: "complete", data: { kind: "deleteMarker" } };
const data = (etag: string): VersionState => ({ kind: "complete", data: { kind: "inline", meta: { size: 1, etag, headers: [] }, base64: "eA==" } });
const uploading: VersionState = { kind: "uploading", multipart: true, headers: [], uploader: "self" };
const ver = (uuid: string, timestamp: number, state: VersionState): ObjectVersion => ({ uuid, timestamp, state });
const obj = (key: string, ...versions: ObjectVersion[]): ObjectEntry => ({ bucketId: "bkt", key, versions });

interface Node {
  id: NodeId;
  db: Database;
  committer: GroupCommitter;
  stores: Map<string, LocalStore<unknown>>;
  gc: TableGc;
}

/** Three replicas of every partition; `self` runs the GC unless a test runs another node's. */
function cluster(opts: { batchSize?: number } = {}) {
  const layout: LayoutVersion = {
    version: 1,
    replicationFactor: 3,
    roles: Object.fromEntries(NODES.map((n, i) => [n, { zone: `z${i}`, capacity: 1, tags: [] }])),
    ring: Array.from({ length: 256 }, () => [...NODES]),
  };
  const down = new Set<string>();
  const calls: { node: string; kind: "insert" | "delete"; count: number }[] = [];
  /** Runs on a replica right after it merged a GC push (to interleave a concurrent write). */
  let afterPush: (node: NodeId, table: string) => Promise<void> = async () => {};
  const nodes = new Map<NodeId, Node>();
  const store = (node: string, table: string) => nodes.get(node as NodeId)!.stores.get(table)!;
  const reach = (node: string) => {
    if (down.has(node)) throw new Error(`${node} is unreachable`);
  };
  const remote: GcReplicas = {
    async insert(node, table, entries, report) {
      reach(node);
      calls.push({ node, kind: "insert", count: entries.length });
      const merged = await store(node, table).apply(entries);
      await afterPush(node as NodeId, table);
      return report ? merged : undefined;
    },
    async deleteIfEqual(node, table, items) {
      reach(node);
      calls.push({ node, kind: "delete", count: items.length });
      return store(node, table).deleteIfEqual(items);
    },
  };
  for (const id of NODES) {
    const db = openDatabase(join(dir, `${id}.sqlite`), { fsync: false });
    open.push(db);
    const committer = new GroupCommitter(db);
    const stores = new Map(SCHEMAS.map((s) => [s.name as string, new LocalStore(s, db, committer, now, { gcDelayMs: DELAY })]));
    const gc = new TableGc(stores, new LayoutPlacement(id, layout, "consistent"), db, committer, remote, { now, batchSize: opts.batchSize });
    nodes.set(id, { id, db, committer, stores, gc });
  }
  const node = (id: NodeId) => nodes.get(id)!;
  return {
    node,
    down,
    calls,
    setAfterPush: (f: typeof afterPush) => (afterPush = f),
    /** Applies entries to the given replicas (all by default), as a write quorum would. */
    put: async (table: string, entries: unknown[], on: readonly NodeId[] = NODES) => {
      for (const id of on) await node(id).stores.get(table)!.apply(entries);
    },
    get: (id: NodeId, table: string, pk: string, sk: string) => node(id).stores.get(table)!.get(pk, sk),
    todo: (id: NodeId) => node(id).db.query(`SELECT tbl, pk, sk, vhash, due, tries FROM table_gc_todo ORDER BY tbl, pk, sk`).all() as { tbl: string; pk: string; sk: string; vhash: string; due: number; tries: number }[],
  };
}

describe("table GC across three replicas", () => {
  test("(a) a tombstone is collected after the delay, on every replica", async () => {
    const c = cluster();
    await c.put("block_ref", [ref(H("a"), "v1", false)]);
    await c.put("block_ref", [ref(H("a"), "v1")]);
    await c.put("version", [{ uuid: "v1", deleted: true, backlink: null } satisfies VersionEntry]);
    const upload: UploadEntry = { bucketId: "bkt", key: "k", uploadId: "u1", timestamp: 5, deleted: true, headers: [] };
    await c.put("mpu", [upload]);
    for (const id of NODES) {
      const rows = c.todo(id);
      expect(rows.map((r) => r.tbl)).toEqual(["block_ref", "mpu", "version"]);
      expect(rows.every((r) => r.due === t + DELAY && r.tries === 0)).toBe(true);
    }

    // Not before the delay.
    t += DELAY - 1;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 0, collected: 0 });
    expect(c.get("self", "block_ref", H("a"), "v1")).toEqual(ref(H("a"), "v1"));
    expect(c.calls).toEqual([]);

    t += 1;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 3, collected: 3, postponed: 0 });
    for (const id of NODES) {
      expect(c.get(id, "block_ref", H("a"), "v1")).toBeUndefined();
      expect(c.get(id, "version", "v1", "")).toBeUndefined();
      expect(c.get(id, "mpu", "bkt", "k\u0000u1")).toBeUndefined();
      // The other replicas' own rows went with their copies.
      expect(c.todo(id)).toEqual([]);
    }
    // Pushed to, then deleted on, both other replicas.
    expect(c.calls.filter((x) => x.kind === "insert").map((x) => x.node).sort()).toEqual(["n2", "n2", "n2", "n3", "n3", "n3"]);
    expect(c.calls.filter((x) => x.kind === "delete").map((x) => x.node).sort()).toEqual(["n2", "n2", "n2", "n3", "n3", "n3"]);
  });

  test("(b) nothing is deleted anywhere while a replica is unreachable; collected once it is back", async () => {
    const c = cluster();
    await c.put("block_ref", [ref(H("b"), "v1")]);
    t += DELAY;
    c.down.add("n3");
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 1, collected: 0, postponed: 1 });
    for (const id of NODES) expect(c.get(id, "block_ref", H("b"), "v1")).toEqual(ref(H("b"), "v1"));
    expect(c.calls.some((x) => x.kind === "delete")).toBe(false);
    const [row] = c.todo("self");
    expect(row).toMatchObject({ tries: 1, due: t + TABLE_GC_RETRY_MIN_MS });

    // Back, but the row waits for its retry time.
    c.down.clear();
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 0 });
    expect(c.get("self", "block_ref", H("b"), "v1")).toBeDefined();

    t += TABLE_GC_RETRY_MIN_MS;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 1, collected: 1 });
    for (const id of NODES) expect(c.get(id, "block_ref", H("b"), "v1")).toBeUndefined();
    expect(c.todo("self")).toEqual([]);
  });

  test("(b) a replica lost between push and delete: the local copy stays; the retry re-pushes and collects", async () => {
    const c = cluster();
    await c.put("block_ref", [ref(H("c"), "v1")]);
    t += DELAY;
    c.setAfterPush(async (node) => {
      if (node === "n3") c.down.add("n3");
    });
    expect(await c.node("self").gc.runOnce()).toMatchObject({ collected: 0, postponed: 1 });
    expect(c.get("self", "block_ref", H("c"), "v1")).toEqual(ref(H("c"), "v1"));
    expect(c.get("n3", "block_ref", H("c"), "v1")).toEqual(ref(H("c"), "v1"));

    c.setAfterPush(async () => {});
    c.down.clear();
    // Backoff doubles: the second failure waits twice as long.
    t += TABLE_GC_RETRY_MIN_MS;
    c.down.add("n2");
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 1, postponed: 1 });
    expect(c.todo("self")[0]).toMatchObject({ tries: 2, due: t + 2 * TABLE_GC_RETRY_MIN_MS });
    c.down.clear();
    t += 2 * TABLE_GC_RETRY_MIN_MS;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ collected: 1 });
    for (const id of NODES) expect(c.get(id, "block_ref", H("c"), "v1")).toBeUndefined();
  });

  test("(c) a replica holding a newer live value keeps it; this node learns it and drops its row", async () => {
    const c = cluster();
    const dm = obj("k", ver("m1", 20, marker));
    await c.put("object", [dm]);
    const newer = obj("k", ver("p2", 30, data("e2")));
    await c.put("object", [newer], ["n2"]);
    t += DELAY;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ collected: 0, changed: 1 });
    expect(c.get("n2", "object", "bkt", "k")).toEqual(newer);
    expect(c.get("self", "object", "bkt", "k")).toEqual(newer);
    expect(c.todo("self")).toEqual([]);
    // No replica was asked to delete: n3 still holds the marker, until it learns the same way.
    expect(c.calls.some((x) => x.kind === "delete")).toBe(false);
    expect(c.get("n3", "object", "bkt", "k")).toEqual(dm);
    expect(await c.node("n3").gc.runOnce()).toMatchObject({ collected: 0, changed: 1 });
    expect(c.get("n3", "object", "bkt", "k")).toEqual(newer);
    expect(c.todo("n3")).toEqual([]);
  });

  test("(c) a replica holding a newer tombstone: this node's row is re-armed for the newer value", async () => {
    const c = cluster();
    await c.put("object", [obj("k", ver("m1", 20, marker))]);
    t += 10;
    const newer = obj("k", ver("m2", 30, marker));
    await c.put("object", [newer], ["n2"]);
    t += DELAY;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ collected: 0, changed: 1 });
    expect(c.get("self", "object", "bkt", "k")).toEqual(newer);
    // The new value waits a full delay from now.
    expect(c.todo("self")).toEqual([{ tbl: "object", pk: "bkt", sk: "k", vhash: valueHash(JSON.stringify(newer)), due: t + DELAY, tries: 0 }]);
    t += DELAY;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ collected: 1 });
    for (const id of NODES) expect(c.get(id, "object", "bkt", "k")).toBeUndefined();
  });

  test("(c) a write that reaches a replica between push and delete makes it refuse and keep it", async () => {
    const c = cluster();
    await c.put("object", [obj("k", ver("m1", 20, marker))]);
    t += DELAY;
    const newer = obj("k", ver("p2", 30, data("e2")));
    c.setAfterPush(async (node) => {
      if (node === "n2") await c.node("n2").stores.get("object")!.apply([newer]);
    });
    expect(await c.node("self").gc.runOnce()).toMatchObject({ collected: 0, changed: 1 });
    expect(c.get("n2", "object", "bkt", "k")).toEqual(newer);
    expect(c.get("self", "object", "bkt", "k")).toEqual(newer);
    expect(c.todo("self")).toEqual([]);
    // n3 may delete its marker: every replica held it, and the newer value is on two of them.
    expect(c.get("n3", "object", "bkt", "k")).toBeUndefined();
  });

  test("(c) delete-if-equal on a replica: a different encoding is refused and kept", async () => {
    const c = cluster();
    const store = c.node("n2").stores.get("block_ref")!;
    await store.apply([ref(H("d"), "v1")]);
    const other = JSON.stringify({ ...ref(H("d"), "v1"), extra: 1 });
    const refs: TombstoneRef[] = [
      { pk: H("d"), sk: "v1", v: other },
      { pk: H("e"), sk: "v1", v: JSON.stringify(ref(H("e"), "v1")) },
    ];
    expect(await store.deleteIfEqual(refs)).toEqual([{ current: ref(H("d"), "v1") }, "absent"]);
    expect(store.get(H("d"), "v1")).toEqual(ref(H("d"), "v1"));
    expect(await store.deleteIfEqual([{ pk: H("d"), sk: "v1", v: JSON.stringify(ref(H("d"), "v1")) }])).toEqual(["deleted"]);
    expect(store.get(H("d"), "v1")).toBeUndefined();
    expect(c.todo("n2")).toEqual([]);
  });
});

describe("live entries are never collected", () => {
  test("(d) live entries queue nothing, and a forged or stale row deletes nothing", async () => {
    const c = cluster();
    const live = obj("k", ver("p1", 10, data("e1")));
    await c.put("object", [live]);
    await c.put("block_ref", [ref(H("f"), "v1", false)]);
    await c.put("version", [{ uuid: "v1", deleted: false, backlink: null }]);
    await c.put("mpu", [{ bucketId: "bkt", key: "k", uploadId: "u1", timestamp: 5, deleted: false, headers: [] }]);
    for (const id of NODES) expect(c.todo(id)).toEqual([]);

    // A tombstone superseded by a newer write: its row is stale.
    const dm = obj("gone-then-back", ver("m1", 20, marker));
    await c.put("object", [dm]);
    const back = obj("gone-then-back", ver("p3", 30, data("e3")));
    await c.put("object", [back]);
    expect(c.todo("self")).toHaveLength(1);
    // A row forged for a live entry, with the right hash: the GC must still refuse it.
    const todo = new GcTodo(c.node("self").db);
    todo.arm("block_ref", H("f"), "v1", JSON.stringify(ref(H("f"), "v1", false)), t);

    t += 100 * DELAY;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 2, stale: 2, collected: 0 });
    expect(c.calls).toEqual([]);
    expect(c.todo("self")).toEqual([]);
    expect(c.get("self", "object", "bkt", "k")).toEqual(live);
    expect(c.get("self", "object", "bkt", "gone-then-back")).toEqual(back);
    expect(c.get("self", "block_ref", H("f"), "v1")).toEqual(ref(H("f"), "v1", false));

    // A replica asked to delete a live entry, even with its exact encoding, refuses.
    const n2 = c.node("n2").stores.get("block_ref")!;
    expect(await n2.deleteIfEqual([{ pk: H("f"), sk: "v1", v: JSON.stringify(ref(H("f"), "v1", false)) }])).toEqual(["held"]);
    expect(n2.get(H("f"), "v1")).toEqual(ref(H("f"), "v1", false));
  });

  test("(d) full-copy tables queue nothing", async () => {
    const db = openDatabase(join(dir, "full.sqlite"), { fsync: false });
    open.push(db);
    const store = new LocalStore(keySchema, db, new GroupCommitter(db), now, { gcDelayMs: 0 });
    await store.apply([{ id: "GK1", secret: "", created: 1, deleted: true, name: { ts: 1, v: "x" }, allowCreateBucket: { ts: 1, v: false } }]);
    expect(db.query(`SELECT count(*) AS n FROM table_gc_todo`).get()).toEqual({ n: 0 });
  });
});

describe("object tombstones (single-node model, no RPC)", () => {
  let db: Database;
  let model: Model;
  let gc: TableGc;
  let later: number;

  beforeEach(() => {
    db = openDatabase(join(dir, "model.sqlite"), { fsync: false });
    open.push(db);
    const placement = new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent");
    model = new Model(db, placement, undefined, new HybridClock(), { tableGcDelayMs: DELAY, readGraceMs: 0 });
    later = Date.now() + 10 * DELAY;
    gc = new TableGc(model.localStores(), placement, db, model.committer, undefined, { now: () => later });
  });
  afterEach(async () => {
    await gc.stop();
    await model.stop();
  });

  test("isTombstone: only delete markers and aborted versions", () => {
    const is = (...vs: ObjectVersion[]) => objectSchema.isTombstone!(obj("k", ...vs));
    expect(is(ver("m", 1, marker))).toBe(true);
    expect(is(ver("m", 1, marker), ver("a", 2, { kind: "aborted" }))).toBe(true);
    expect(is(ver("a", 2, { kind: "aborted" }))).toBe(true);
    expect(is(ver("p", 1, data("e")))).toBe(false);
    expect(is(ver("m", 1, marker), ver("u", 2, uploading))).toBe(false);
    expect(is(ver("p", 1, data("e")), ver("a", 2, { kind: "aborted" }))).toBe(false);
    expect(versionSchema.isTombstone!({ uuid: "v", deleted: true, backlink: null })).toBe(true);
    expect(versionSchema.isTombstone!({ uuid: "v", deleted: false, backlink: null })).toBe(false);
    expect(blockRefSchema.isTombstone!(ref(H("a"), "v"))).toBe(true);
    expect(blockRefSchema.isTombstone!(ref(H("a"), "v", false))).toBe(false);
    expect(uploadSchema.isTombstone!({ bucketId: "b", key: "k", uploadId: "u", timestamp: 1, deleted: false, headers: [] })).toBe(false);
  });

  test("(e) a delete-marker-only object is collected; one with a live or uploading version is not", async () => {
    await model.objects.insert(obj("deleted", ver("m1", 20, marker)));
    await model.objects.insert(obj("replaced-by-marker", ver("p1", 10, data("e1"))));
    await model.objects.insert(obj("replaced-by-marker", ver("m2", 20, marker)));
    await model.objects.insert(obj("aborted", ver("a1", 20, { kind: "aborted" })));
    await model.objects.insert(obj("live", ver("p5", 10, data("e5"))));
    await model.objects.insert(obj("marker-then-upload", ver("m3", 20, marker), ver("u1", 30, uploading)));
    await model.objects.insert(obj("marker-then-put", ver("m4", 20, marker)));
    await model.objects.insert(obj("marker-then-put", ver("p4", 30, data("e4"))));

    expect((await gc.runOnce()).collected).toBe(3);
    const keys = model.objects.local.range("bkt", { limit: 100 }).map((o) => o.key);
    expect(keys).toEqual(["live", "marker-then-put", "marker-then-upload"]);

    // The cascade's version tombstones (replaced, aborted, superseded marker) are collected in turn.
    await model.drainInsertQueue();
    expect(model.versions.local.get("p1", "")).toEqual({ uuid: "p1", deleted: true, backlink: null });
    later = Date.now() + 10 * DELAY;
    expect(await gc.runOnce()).toMatchObject({ examined: 3, collected: 3 });
    for (const uuid of ["p1", "a1", "m4"]) expect(model.versions.local.get(uuid, "")).toBeUndefined();
  });

  test("(e) a marker that hides an open multipart upload of its key is held until the upload closes", async () => {
    const upload: UploadEntry = { bucketId: "bkt", key: "k", uploadId: "u0", timestamp: 10, deleted: false, headers: [] };
    await model.uploads.insert(upload);
    await model.objects.insert(obj("k", ver("u0", 10, uploading)));
    await model.objects.insert(obj("k", ver("m1", 20, marker)));
    // An open upload of another key does not matter.
    await model.uploads.insert({ ...upload, key: "k2", uploadId: "u9" });
    await model.objects.insert(obj("k2x", ver("m2", 20, marker)));

    expect(await gc.runOnce()).toMatchObject({ collected: 1, postponed: 1 });
    expect(model.objects.local.get("bkt", "k")).toEqual(obj("k", ver("m1", 20, marker)));
    expect(model.objects.local.get("bkt", "k2x")).toBeUndefined();

    await model.uploads.insert({ ...upload, deleted: true });
    later += TABLE_GC_RETRY_MIN_MS + 10 * DELAY;
    const r = await gc.runOnce();
    expect(r.collected).toBe(2); // the marker, and the closed upload
    expect(model.objects.local.get("bkt", "k")).toBeUndefined();
    expect(model.uploads.local.get("bkt", "k\u0000u0")).toBeUndefined();
  });
});

describe("worker", () => {
  test("(f) one pass takes at most one batch; each push and delete carries at most a batch", async () => {
    const c = cluster({ batchSize: 4 });
    await c.put("block_ref", Array.from({ length: 10 }, (_, i) => ref(H("a"), `v${i}`)));
    t += DELAY;
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 4, collected: 4 });
    expect(c.todo("self")).toHaveLength(6);
    expect(Math.max(...c.calls.map((x) => x.count))).toBeLessThanOrEqual(4);
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 4, collected: 4 });
    expect(await c.node("self").gc.runOnce()).toMatchObject({ examined: 2, collected: 2 });
    expect(c.todo("self")).toEqual([]);
    expect(c.node("self").stores.get("block_ref")!.range(H("a"), { limit: 100 })).toEqual([]);
  });

  test("(f) the default batch is TABLE_GC_BATCH", async () => {
    const db = openDatabase(join(dir, "one.sqlite"), { fsync: false });
    open.push(db);
    const committer = new GroupCommitter(db);
    const store = new LocalStore(blockRefSchema, db, committer, now, { gcDelayMs: 0 });
    await store.apply(Array.from({ length: TABLE_GC_BATCH + 10 }, (_, i) => ref(H("b"), `v${String(i).padStart(4, "0")}`)));
    const gc = new TableGc(new Map([["block_ref", store as LocalStore<unknown>]]), new LayoutPlacement("n", singleNodeLayout("n"), "consistent"), db, committer, undefined, { now });
    expect(await gc.runOnce()).toMatchObject({ examined: TABLE_GC_BATCH, collected: TABLE_GC_BATCH });
    expect(await gc.runOnce()).toMatchObject({ examined: 10, collected: 10 });
  });

  test("started, it collects by itself and reports in its WorkerStats", async () => {
    const c = cluster();
    await c.put("block_ref", [ref(H("c"), "v1")]);
    t += DELAY;
    const gc = new TableGc(c.node("self").stores, new LayoutPlacement("self", singleNodeLayout("self"), "consistent"), c.node("self").db, c.node("self").committer, undefined, { now, intervalMs: 5 });
    expect(gc.stats.info()).toMatchObject({ name: "table gc", passes: 0, queueLength: 1 });
    gc.start();
    for (let i = 0; i < 200 && c.get("self", "block_ref", H("c"), "v1") !== undefined; i++) await Bun.sleep(5);
    await gc.stop();
    expect(c.get("self", "block_ref", H("c"), "v1")).toBeUndefined();
    expect(gc.stats.info().passes).toBeGreaterThan(0);
    expect(gc.stats.info().queueLength).toBe(0);
  });

  test("the delay is 24 h unless the environment overrides it", () => {
    const saved = process.env[TABLE_GC_DELAY_ENV];
    try {
      delete process.env[TABLE_GC_DELAY_ENV];
      expect(tableGcDelayMs()).toBe(TABLE_GC_DELAY_MS);
      expect(TABLE_GC_DELAY_MS).toBe(24 * 3600 * 1000);
      process.env[TABLE_GC_DELAY_ENV] = "1234";
      expect(tableGcDelayMs()).toBe(1234);
      process.env[TABLE_GC_DELAY_ENV] = "soon";
      expect(() => tableGcDelayMs()).toThrow(TABLE_GC_DELAY_ENV);
    } finally {
      if (saved === undefined) delete process.env[TABLE_GC_DELAY_ENV];
      else process.env[TABLE_GC_DELAY_ENV] = saved;
    }
    expect(TABLE_GC_RETRY_MAX_MS).toBeGreaterThan(TABLE_GC_RETRY_MIN_MS);
  });
});

describe("delete-if-equal over RPC", () => {
  const rpcs: RpcNode[] = [];
  afterEach(async () => {
    await Promise.all(rpcs.splice(0).map((n) => n.close()));
  });

  test("the endpoint deletes an equal tombstone, keeps a different value, and is reached by RpcReplicas", async () => {
    const [a, b] = await startPair(rpcs);
    const db = openDatabase(join(dir, "b.sqlite"), { fsync: false });
    open.push(db);
    const store = new LocalStore(blockRefSchema, db, new GroupCommitter(db), now, { gcDelayMs: DELAY });
    serveTables(b, new HybridClock(), new Map([["block_ref", store as LocalStore<unknown>]]));
    await store.apply([ref(H("a"), "v1"), ref(H("a"), "v2")]);
    const client = new RpcReplicas(a, new HybridClock());
    const outcomes = await client.deleteIfEqual(b.id, "block_ref", [
      { pk: H("a"), sk: "v1", v: JSON.stringify(ref(H("a"), "v1")) },
      { pk: H("a"), sk: "v2", v: JSON.stringify(ref(H("a"), "v2", false)) },
    ]);
    expect(outcomes).toEqual(["deleted", { current: ref(H("a"), "v2") }]);
    expect(store.get(H("a"), "v1")).toBeUndefined();
    expect(store.get(H("a"), "v2")).toEqual(ref(H("a"), "v2"));
  });
});
