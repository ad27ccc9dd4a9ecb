// Table offload (src/table/offload.ts): rows of sharded tables in partitions this node holds in
// no live layout version are pushed to every holder, then deleted here. In-process nodes over
// temp sqlite files, a fake placement whose live versions a test sets, and a fake route between
// the nodes that can be cut.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PARTITION_COUNT, type Placement } from "../../../src/cluster/layout.ts";
import { GroupCommitter } from "../../../src/db/committer.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { decodeEntry } from "../../../src/db/entry-codec.ts";
import { LocalStore, SYNC_BUCKETS } from "../../../src/table/local-store.ts";
import { partitionOfEntry } from "../../../src/table/partition.ts";
import type { TableSchema } from "../../../src/table/schema.ts";
import {
  RpcOffloadRemote,
  TABLE_OFFLOAD_CALL_TIMEOUT_MS,
  TABLE_OFFLOAD_INTERVAL_MS,
  TABLE_OFFLOAD_PAGE_WIRE_BYTES,
  TABLE_OFFLOAD_PAGE_ROWS,
  TABLE_OFFLOAD_PAGES_PER_PASS,
  TableOffload,
  type OffloadRemote,
  type TableOffloadOptions,
} from "../../../src/table/offload.ts";
import { ShardedTableSync, SYNC_BATCH_WIRE_BYTES, SYNC_ENTRY_MAX_WIRE_BYTES, wireBytes } from "../../../src/table/sync.ts";
import { encodeEntry } from "../../../src/db/entry-codec.ts";
import { objectSchema, type ObjectEntry } from "../../../src/model/object.ts";
import { versionBlockSchema, versionSchema } from "../../../src/model/version.ts";
import { blockRefSchema, type BlockRefEntry } from "../../../src/model/block-ref.ts";
import { uploadPartSchema, uploadSchema } from "../../../src/model/upload.ts";
import { keySchema, type KeyEntry } from "../../../src/model/key.ts";
import { startPair } from "../rpc/helpers.ts";
import { encodeJson, MAX_HEAD_BYTES, type RpcNode } from "../../../src/rpc/rpc.ts";
import { captureStderr } from "../rpc/helpers.ts";

const NODES = ["self", "n1", "n2", "n3"] as const;
type NodeId = (typeof NODES)[number];
const SHARDED = [objectSchema, versionSchema, versionBlockSchema, blockRefSchema, uploadSchema, uploadPartSchema] as TableSchema<unknown>[];
const TABLES = SHARDED.map((s) => s.name as string);

let dir: string;
const open: Database[] = [];
const now = () => 1_000_000;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-offload-"));
});
afterEach(async () => {
  for (const d of open.splice(0)) d.close();
  await rm(dir, { recursive: true, force: true });
});

/** Live layout versions as rings (ring[p] = the nodes of partition p), oldest first. */
class FakePlacement implements Placement {
  versions: string[][][] = [];
  readonly quorums = { read: 2, write: 2 };
  constructor(readonly selfId: string) {}
  writeSets(partition: number): string[][] {
    const seen = new Set<string>();
    return this.versions.map((ring) => ring[partition]!).filter((nodes) => {
      const key = [...nodes].sort().join(",");
      return seen.has(key) ? false : (seen.add(key), true);
    });
  }
  readNodes(partition: number): string[] {
    return this.versions.at(-1)?.[partition] ?? [];
  }
  allNodes(): string[] {
    return [...NODES];
  }
}

const ring = (nodesOf: (p: number) => string[]) => Array.from({ length: PARTITION_COUNT }, (_, p) => nodesOf(p));
/** The usual layout of these tests: self holds the even partitions and gave the odd ones away. */
const isHeld = (p: number) => p % 2 === 0;
const SPLIT = ring((p) => (isHeld(p) ? ["self", "n1", "n2"] : ["n1", "n2", "n3"]));
const ALL_HELD = ring(() => ["self", "n1", "n2"]);
const NONE_HELD = ring(() => ["n1", "n2", "n3"]);

/** A partition key of `schema` whose partition satisfies `want` (hex, so it also names a block). */
function pkWhere(schema: TableSchema<unknown>, want: (p: number) => boolean, seed: string): string {
  for (let i = 0; ; i++) {
    const pk = createHash("sha256").update(`${seed}/${i}`).digest("hex");
    if (want(partitionOfEntry(schema, pk))) return pk;
  }
}

/** The i-th entry of a table under partition key `pk`. */
function entry(table: string, pk: string, i: number, tag = "a"): unknown {
  switch (table) {
    case "object":
      return { bucketId: pk, key: `k${i}`, versions: [{ uuid: `${pk.slice(0, 8)}-${i}`, timestamp: 10, state: { kind: "complete", data: { kind: "inline", meta: { size: 1, etag: tag, headers: [] }, base64: "eA==" } } }] } satisfies ObjectEntry;
    case "version":
      return { uuid: pk, deleted: false, backlink: null };
    case "version_block":
      return { uuid: pk, part: 0, offset: i, hash: "ab".repeat(32), size: 1 };
    case "block_ref":
      return { hash: pk, version: `v${i}`, deleted: false } satisfies BlockRefEntry;
    case "mpu":
      return { bucketId: pk, key: `k${i}`, uploadId: `u${i}`, timestamp: 1, deleted: false, headers: [] };
    case "mpu_part":
      return { uploadId: pk, part: i + 1, timestamp: 1, version: `pv${i}`, etag: tag, size: 1 };
  }
  throw new Error(table);
}

interface Row {
  part: number;
  pk: string;
  sk: string;
  v: Uint8Array;
}

interface Node {
  db: Database;
  committer: GroupCommitter;
  stores: Map<string, LocalStore<unknown>>;
}

function cluster(opts: TableOffloadOptions = {}) {
  const nodes = new Map<NodeId, Node>();
  for (const id of NODES) {
    const db = openDatabase(join(dir, `${id}.sqlite`), { fsync: false });
    open.push(db);
    const committer = new GroupCommitter(db);
    const stores = new Map<string, LocalStore<unknown>>([...SHARDED, keySchema as TableSchema<unknown>].map((s) => [s.name, new LocalStore(s, db, committer, now, { gcDelayMs: 1000 })]));
    nodes.set(id, { db, committer, stores });
  }
  const down = new Set<string>();
  const calls: { node: string; table: string; count: number; bytes: number }[] = [];
  /** Runs on a holder right after it merged a push (to interleave a concurrent change). */
  let afterPush: (node: string, table: string, entries: unknown[]) => Promise<void> = async () => {};
  const remote: OffloadRemote = {
    async push(node, table, entries) {
      if (down.has(node)) throw new Error(`${node} is unreachable`);
      calls.push({ node, table, count: entries.length, bytes: entries.reduce((n: number, e) => n + JSON.stringify(e).length, 0) });
      await nodes.get(node as NodeId)!.stores.get(table)!.apply(entries);
      await afterPush(node, table, entries);
      // Merged, but the acknowledgement is lost when the node went away meanwhile.
      if (down.has(node)) throw new Error(`${node} went away before answering`);
    },
  };
  const placement = new FakePlacement("self");
  placement.versions = [SPLIT];
  const self = nodes.get("self")!;
  const offload = new TableOffload(self.stores, placement, self.committer, remote, opts);
  const node = (id: NodeId) => nodes.get(id)!;
  const rows = (id: NodeId, table: string): Row[] => node(id).db.query(`SELECT part, pk, sk, v FROM t_${table} ORDER BY pk, sk`).all() as Row[];
  return {
    node,
    placement,
    offload,
    down,
    calls,
    rows,
    setAfterPush: (f: typeof afterPush) => (afterPush = f),
    /** Passes until one ends below the page bound; the summed report. */
    drain: async () => {
      const sum = { passes: 0, pages: 0, offloaded: 0, kept: 0, changed: 0 };
      for (let more = true; more; ) {
        const r = await offload.runOnce();
        sum.passes++;
        sum.pages += r.pages;
        sum.offloaded += r.offloaded;
        sum.kept += r.kept;
        sum.changed += r.changed;
        more = r.more;
      }
      return sum;
    },
    /** Every sharded row of a node, by table. */
    dump: (id: NodeId) => Object.fromEntries(TABLES.map((t) => [t, rows(id, t)])),
    /** `perPk` entries under each of `pks` partition keys per table, in partitions that satisfy `want`. */
    fill: async (id: NodeId, want: (p: number) => boolean, pks: number, perPk: number, seed = "x") => {
      for (const schema of SHARDED) {
        const entries: unknown[] = [];
        for (let k = 0; k < pks; k++) {
          const pk = pkWhere(schema, want, `${seed}/${schema.name}/${k}`);
          // version has one row per partition key.
          for (let i = 0; i < (schema.name === "version" ? 1 : perPk); i++) entries.push(entry(schema.name, pk, i));
        }
        await node(id).stores.get(schema.name)!.apply(entries);
      }
    },
    todo: (id: NodeId) => node(id).db.query(`SELECT tbl, pk, sk FROM table_gc_todo ORDER BY tbl, pk, sk`).all() as { tbl: string; pk: string; sk: string }[],
  };
}

/**
 * An object entry ~10 times larger in JSON than stored: each header pair is two dictionary
 * words, 4 bytes stored and 43 of JSON.
 */
function wordy(pk: string, i: number, pairs: number): ObjectEntry {
  const o = entry("object", pk, i) as ObjectEntry;
  const headers = Array.from({ length: pairs }, () => ["content-type", "application/octet-stream"] as [string, string]);
  return { ...o, versions: [{ ...o.versions[0]!, state: { kind: "complete", data: { kind: "inline", meta: { size: 1, etag: "e", headers }, base64: "eA==" } } }] };
}

/** Every row `before` held that is no longer on `id` is on each of `holders`, byte for byte: nothing was deleted undelivered. */
function expectDeliveredOnly(c: ReturnType<typeof cluster>, before: Record<string, Row[]>, holders: NodeId[], id: NodeId = "self"): void {
  const now = c.dump(id);
  for (const [table, rows] of Object.entries(before)) {
    const left = new Set(now[table]!.map((r) => `${r.pk}/${r.sk}`));
    const gone = rows.filter((r) => !left.has(`${r.pk}/${r.sk}`));
    for (const h of holders) {
      const there = new Map(c.rows(h, table).map((r) => [`${r.pk}/${r.sk}`, r.v]));
      for (const r of gone) expect(there.get(`${r.pk}/${r.sk}`)).toEqual(r.v);
    }
  }
}

const partOf = (r: Row) => Math.floor(r.part / SYNC_BUCKETS);
const only = (d: Record<string, Row[]>, want: (p: number) => boolean) => Object.fromEntries(Object.entries(d).map(([t, rs]) => [t, rs.filter((r) => want(partOf(r)))]));
const count = (d: Record<string, Row[]>) => Object.values(d).reduce((n, rs) => n + rs.length, 0);
const empty = Object.fromEntries(TABLES.map((t) => [t, []]));

describe("offload of partitions this node no longer holds", () => {
  test("rows of released partitions go to every holder, then leave this node; held partitions are untouched", async () => {
    const c = cluster();
    await c.fill("self", isHeld, 3, 2, "held");
    await c.fill("self", (p) => !isHeld(p), 3, 2, "gone");
    // A tombstone in each kind of partition: both are queued for table GC.
    const goneTomb = pkWhere(blockRefSchema as TableSchema<unknown>, (p) => !isHeld(p), "tomb-gone");
    const heldTomb = pkWhere(blockRefSchema as TableSchema<unknown>, isHeld, "tomb-held");
    await c.node("self").stores.get("block_ref")!.apply([{ hash: goneTomb, version: "t", deleted: true }, { hash: heldTomb, version: "t", deleted: true }]);
    // A full-copy table lives on every node: never offloaded.
    const key: KeyEntry = { id: "GK1", secret: "s", created: 1, deleted: false, name: { ts: 1, v: "k" }, allowCreateBucket: { ts: 1, v: false } };
    await c.node("self").stores.get("key")!.apply([key]);
    expect(c.todo("self")).toHaveLength(2);

    const before = c.dump("self");
    const released = only(before, (p) => !isHeld(p));
    const held = only(before, isHeld);
    expect(count(released)).toBe(6 * 3 * 2 - 3 + 1); // 3 keys x 2 rows per table, version 1 row per key, plus the tombstone
    expect(count(held)).toBeGreaterThan(0);

    const report = await c.offload.runOnce();
    expect(report).toMatchObject({ released: PARTITION_COUNT / 2, offloaded: count(released), pushed: count(released), kept: 0, changed: 0, deferred: 0, more: false });
    // Every holder of a released partition got exactly those rows, byte for byte; n3 holds
    // nothing of the partitions self kept, so nothing else reached anyone.
    for (const id of ["n1", "n2", "n3"] as const) expect(c.dump(id)).toEqual(released);
    // This node keeps exactly the rows of the partitions it holds, unchanged.
    expect(c.dump("self")).toEqual(held);
    expect(c.node("self").stores.get("key")!.get("", "GK1")).toEqual(key);
    expect(c.calls.some((x) => x.table === "key")).toBe(false);
    // The offloaded tombstone's GC row went with it (the new holders queued their own).
    expect(c.todo("self")).toEqual([{ tbl: "block_ref", pk: heldTomb, sk: "t" }]);
    expect(c.todo("n3")).toEqual([{ tbl: "block_ref", pk: goneTomb, sk: "t" }]);
    // Reads through the store agree (no stale cache, digests recomputed).
    expect(c.node("self").stores.get("block_ref")!.get(goneTomb, "t")).toBeUndefined();
    expect(c.node("self").stores.get("block_ref")!.partitionDigests().every((d, p) => isHeld(p) || d === "")).toBe(true);

    // Nothing left: the next pass pushes nothing.
    c.calls.length = 0;
    expect(await c.offload.runOnce()).toMatchObject({ pages: 0, offloaded: 0 });
    expect(c.calls).toEqual([]);
  });

  test("a partition held in any live layout version is never touched; once that version retires it is offloaded", async () => {
    const c = cluster();
    await c.fill("self", () => true, 8, 2);
    const before = c.dump("self");

    // No layout yet: nobody knows who should hold anything.
    c.placement.versions = [];
    expect(await c.offload.runOnce()).toMatchObject({ released: 0, pages: 0, offloaded: 0 });
    // Every partition held, now and in the next version.
    c.placement.versions = [ALL_HELD];
    expect(await c.offload.runOnce()).toMatchObject({ released: 0, pages: 0 });
    // Moving away: self is in the old version only, which is still live.
    c.placement.versions = [ALL_HELD, NONE_HELD];
    expect(await c.offload.runOnce()).toMatchObject({ released: 0, pages: 0 });
    // A newer version gives it back: still held.
    c.placement.versions = [NONE_HELD, ALL_HELD];
    expect(await c.offload.runOnce()).toMatchObject({ released: 0, pages: 0 });
    expect(c.calls).toEqual([]);
    expect(c.dump("self")).toEqual(before);

    // The version that held them retired: everything goes, to the holders of both live versions.
    const NEXT = ring(() => ["n1", "n3"]);
    c.placement.versions = [NONE_HELD, NEXT];
    expect(await c.drain()).toMatchObject({ offloaded: count(before), kept: 0 });
    expect(c.dump("self")).toEqual(empty);
    for (const id of ["n1", "n2", "n3"] as const) expect(c.dump(id)).toEqual(before);
  });

  test("an unreachable holder keeps the rows (its other partitions are not even tried); a later pass moves them", async () => {
    const c = cluster();
    await c.fill("self", (p) => !isHeld(p), 4, 2);
    const before = c.dump("self");
    c.down.add("n3");
    const report = await c.offload.runOnce();
    expect(report).toMatchObject({ offloaded: 0, pushed: 0 });
    expect(report.kept).toBeGreaterThan(0);
    expect(report.deferred).toBeGreaterThan(0);
    expect(c.dump("self")).toEqual(before);
    expect(c.dump("n3")).toEqual(empty);
    // One page was tried; every other partition that needs n3 waited instead.
    expect(report.pages).toBe(1);
    expect(c.offload.stats.info()).toMatchObject({ name: "table offload", errors: 1 });
    expect(c.offload.stats.info().queueLength).toBeGreaterThan(0);

    c.down.clear();
    expect(await c.offload.runOnce()).toMatchObject({ offloaded: count(before), kept: 0, deferred: 0 });
    expect(c.dump("self")).toEqual(empty);
    for (const id of ["n1", "n2", "n3"] as const) expect(c.dump(id)).toEqual(before);
    expect(c.offload.stats.info().queueLength).toBe(0);
  });

  test("a holder that merged the page but never acknowledged it: nothing is deleted here", async () => {
    const c = cluster();
    await c.fill("self", (p) => !isHeld(p), 1, 1);
    const before = c.dump("self");
    c.setAfterPush(async (node) => {
      if (node === "n1") c.down.add("n2");
    });
    const report = await c.offload.runOnce();
    expect(report).toMatchObject({ offloaded: 0, pushed: 0, pages: 1 });
    expect(c.dump("self")).toEqual(before);
    // n2 has the page, yet without its answer this node cannot know it.
    expect(count(c.dump("n2"))).toBe(1);
  });

  test("a row changed between read and delete is kept; the next pass hands the new value over", async () => {
    const c = cluster();
    await c.fill("self", (p) => !isHeld(p), 2, 2);
    const before = c.dump("self");
    let old: ObjectEntry | undefined;
    let newer: ObjectEntry | undefined;
    c.setAfterPush(async (node, table, entries) => {
      if (node !== "n3" || table !== "object" || old) return;
      // A late write (from a node that still had the old layout) reaches this node while the
      // page it is in is on its way.
      old = entries[0] as ObjectEntry;
      const late: ObjectEntry = { ...old, versions: [{ uuid: "late", timestamp: 99, state: { kind: "complete", data: { kind: "deleteMarker" } } }] };
      [newer] = (await c.node("self").stores.get("object")!.apply([late])) as ObjectEntry[];
    });
    const report = await c.offload.runOnce();
    expect(report).toMatchObject({ changed: 1, offloaded: count(before) - 1 });
    const left = c.dump("self");
    expect(count(left)).toBe(1);
    expect(decodeEntry(left.object![0]!.v)).toEqual(newer);
    // The holders have the value that was pushed, not yet the late one.
    expect(c.node("n1").stores.get("object")!.get(old!.bucketId, old!.key)).toEqual(old!);

    expect(await c.offload.runOnce()).toMatchObject({ offloaded: 1, changed: 0 });
    expect(c.dump("self")).toEqual(empty);
    for (const id of ["n1", "n2", "n3"] as const) expect(c.node(id).stores.get("object")!.get(old!.bucketId, old!.key)).toEqual(newer!);
  });

  test("a layout change during the push keeps the page: the partition came back, or a holder was not sent it", async () => {
    const c = cluster();
    await c.fill("self", (p) => !isHeld(p), 1, 1);
    const before = c.dump("self");
    c.setAfterPush(async () => {
      c.placement.versions = [SPLIT, ALL_HELD];
    });
    expect(await c.offload.runOnce()).toMatchObject({ offloaded: 0, pushed: count(before), kept: count(before) });
    expect(c.dump("self")).toEqual(before);

    const OTHER = ring((p) => (isHeld(p) ? ["self"] : ["n1", "n2"]));
    c.placement.versions = [SPLIT];
    c.setAfterPush(async () => {
      c.placement.versions = [SPLIT, ring(() => ["n1", "n2", "x9"])];
    });
    expect(await c.offload.runOnce()).toMatchObject({ offloaded: 0, kept: count(before) });
    expect(c.dump("self")).toEqual(before);

    c.setAfterPush(async () => {});
    c.placement.versions = [OTHER];
    expect(await c.offload.runOnce()).toMatchObject({ offloaded: count(before) });
    expect(c.dump("self")).toEqual(empty);
  });
});

describe("bounds", () => {
  test("pages hold at most pageRows rows and a pass at most pagesPerPass pages; later passes finish", async () => {
    const c = cluster({ pageRows: 4, pagesPerPass: 3 });
    const pk = pkWhere(blockRefSchema as TableSchema<unknown>, (p) => !isHeld(p), "many");
    const store = c.node("self").stores.get("block_ref")!;
    await store.apply(Array.from({ length: 30 }, (_, i) => entry("block_ref", pk, i)));
    const all = c.rows("self", "block_ref");

    const first = await c.offload.runOnce();
    expect(first).toMatchObject({ pages: 3, pushed: 12, offloaded: 12, more: true });
    // One call per holder per page, each with at most a page.
    expect(c.calls).toHaveLength(9);
    expect(Math.max(...c.calls.map((x) => x.count))).toBe(4);
    expect(c.rows("self", "block_ref")).toHaveLength(18);
    expect(c.rows("n1", "block_ref")).toHaveLength(12);

    expect(await c.offload.runOnce()).toMatchObject({ pages: 3, offloaded: 12, more: true });
    // The last pass ends with the rows, not at the bound: nothing more to do.
    expect(await c.offload.runOnce()).toMatchObject({ pages: 2, offloaded: 6, more: false });
    expect(c.rows("self", "block_ref")).toEqual([]);
    for (const id of ["n1", "n2", "n3"] as const) expect(c.rows(id, "block_ref")).toEqual(all);
  });

  test("pages are also cut at pageWireBytes of JSON (a row larger than that still goes, alone)", async () => {
    const c = cluster({ pageWireBytes: 3000 });
    const pk = pkWhere(objectSchema as TableSchema<unknown>, (p) => !isHeld(p), "big");
    const store = c.node("self").stores.get("object")!;
    const big = (i: number, size: number): ObjectEntry => {
      const o = entry("object", pk, i) as ObjectEntry;
      return { ...o, versions: [{ ...o.versions[0]!, state: { kind: "complete", data: { kind: "inline", meta: { size, etag: "e", headers: [] }, base64: "x".repeat(size) } } }] };
    };
    await store.apply([big(0, 1000), big(1, 1000), big(2, 1000), big(3, 5000), big(4, 10)]);
    expect(await c.offload.runOnce()).toMatchObject({ offloaded: 5 });
    const pages = c.calls.filter((x) => x.node === "n1");
    // 1000-byte rows go two or fewer to a page; the 5000-byte row alone.
    expect(pages.length).toBeGreaterThanOrEqual(3);
    expect(pages.reduce((n, x) => n + x.count, 0)).toBe(5);
    for (const x of pages) expect(x.count === 1 || x.bytes <= 3000).toBe(true);
  });

  // pageRows 1: the huge row is a page of its own, passed over.
  for (const pageRows of [TABLE_OFFLOAD_PAGE_ROWS, 1])
    test(`an entry no message can carry is never pushed nor deleted here, with a warning; the rest goes (pages of ${pageRows} rows)`, async () => {
      const c = cluster({ pageRows });
      const pk = pkWhere(objectSchema as TableSchema<unknown>, (p) => !isHeld(p), `huge-${pageRows}`);
      const huge = wordy(pk, 1, Math.ceil(SYNC_ENTRY_MAX_WIRE_BYTES / 43) + 10);
      expect(wireBytes(huge)).toBeGreaterThan(SYNC_ENTRY_MAX_WIRE_BYTES);
      await c.node("self").stores.get("object")!.apply([entry("object", pk, 0), huge, entry("object", pk, 2)]);
      const before = c.dump("self");
      const { result: report, output: stderr } = await captureStderr(() => c.offload.runOnce());
      expect(report).toMatchObject({ pushed: 2, offloaded: 2, tooLarge: 1, kept: 0, changed: 0, more: false });
      expect(stderr).toMatch(/object entry .* is \d+ bytes of JSON, over the \d+ one message carries: not offloaded, kept here/);
      // It stays here, as it was; every holder got the other two and never the huge one.
      expect(c.dump("self")).toEqual({ ...empty, object: before.object!.filter((r) => r.sk === "k1") });
      for (const id of ["n1", "n2", "n3"] as const) expect(c.rows(id, "object").map((r) => r.sk)).toEqual(["k0", "k2"]);
      expect(Math.max(...c.calls.map((x) => x.bytes))).toBeLessThan(SYNC_BATCH_WIRE_BYTES);
      expectDeliveredOnly(c, before, ["n1", "n2", "n3"]);
      // Every later pass passes it over again (and deletes nothing).
      c.calls.length = 0;
      const again = await captureStderr(() => c.offload.runOnce());
      expect(again.result).toMatchObject({ pushed: 0, offloaded: 0, tooLarge: 1 });
      expect(c.calls).toEqual([]);
      expect(count(c.dump("self"))).toBe(1);
    });

  test("a page cut at the JSON bound: a holder lost after the first page keeps every row not yet delivered here", async () => {
    const c = cluster({ pageWireBytes: 20_000 });
    const pk = pkWhere(objectSchema as TableSchema<unknown>, (p) => !isHeld(p), "cut");
    // 12 entries of ~4.3 KB of JSON (~400 bytes stored): four to a page.
    await c.node("self").stores.get("object")!.apply(Array.from({ length: 12 }, (_, i) => wordy(pk, i, 100)));
    const before = c.dump("self");
    // n3 goes away while the second page is on its way: it merges it, but never answers.
    c.setAfterPush(async (node) => {
      if (node === "n1" && c.calls.filter((x) => x.node === "n1").length === 2) c.down.add("n3");
    });
    const report = await c.offload.runOnce();
    expect(report.offloaded).toBe(4);
    expect(report.kept).toBe(4);
    expect(count(c.dump("self"))).toBe(8);
    expectDeliveredOnly(c, before, ["n1", "n2", "n3"]);
    c.down.clear();
    c.setAfterPush(async () => {});
    expect(await c.offload.runOnce()).toMatchObject({ offloaded: 8, kept: 0 });
    expect(c.dump("self")).toEqual(empty);
    for (const id of ["n1", "n2", "n3"] as const) expect(c.dump(id)).toEqual(before);
  });

  test("defaults are named and bounded", async () => {
    expect(TABLE_OFFLOAD_PAGE_ROWS).toBeGreaterThan(0);
    expect(TABLE_OFFLOAD_PAGES_PER_PASS).toBeGreaterThan(0);
    // A page must fit in one RPC message, with room for the JSON around it: sync's push bound.
    expect(TABLE_OFFLOAD_PAGE_WIRE_BYTES).toBe(SYNC_BATCH_WIRE_BYTES);
    expect(TABLE_OFFLOAD_PAGE_WIRE_BYTES).toBeLessThanOrEqual(MAX_HEAD_BYTES / 2);
    expect(TABLE_OFFLOAD_INTERVAL_MS).toBe(10 * 60 * 1000);
    expect(TABLE_OFFLOAD_CALL_TIMEOUT_MS).toBeGreaterThan(0);
    const c = cluster();
    const pk = pkWhere(blockRefSchema as TableSchema<unknown>, (p) => !isHeld(p), "default");
    await c.node("self").stores.get("block_ref")!.apply(Array.from({ length: TABLE_OFFLOAD_PAGE_ROWS + 5 }, (_, i) => entry("block_ref", pk, i)));
    expect(await c.offload.runOnce()).toMatchObject({ pages: 2, offloaded: TABLE_OFFLOAD_PAGE_ROWS + 5 });
    expect(c.calls.filter((x) => x.node === "n1").map((x) => x.count)).toEqual([TABLE_OFFLOAD_PAGE_ROWS, 5]);
  });
});

describe("worker", () => {
  test("started, it notices a released partition by itself and offloads it; stopped, it does nothing", async () => {
    const c = cluster({ layoutCheckMs: 5 });
    c.placement.versions = [ALL_HELD];
    await c.fill("self", () => true, 2, 1);
    const before = c.dump("self");
    c.offload.start();
    await Bun.sleep(50);
    expect(c.calls).toEqual([]);
    c.placement.versions = [SPLIT];
    for (let i = 0; i < 200 && count(c.dump("self")) !== count(only(before, isHeld)); i++) await Bun.sleep(5);
    expect(c.dump("self")).toEqual(only(before, isHeld));
    expect(c.offload.stats.info()).toMatchObject({ name: "table offload", queueLength: 0 });
    expect(c.offload.stats.info().passes).toBeGreaterThan(0);

    await c.offload.stop();
    c.placement.versions = [NONE_HELD];
    c.offload.trigger();
    await Bun.sleep(50);
    expect(count(c.dump("self"))).toBe(count(only(before, isHeld)));
  });
});

describe("over RPC", () => {
  const rpcs: RpcNode[] = [];
  afterEach(async () => {
    await Promise.all(rpcs.splice(0).map((n) => n.close()));
  });

  test("RpcOffloadRemote pushes through the sync push endpoint; a sync pass calls its listeners", async () => {
    const [a, b] = await startPair(rpcs);
    const db = openDatabase(join(dir, "b.sqlite"), { fsync: false });
    open.push(db);
    const store = new LocalStore(blockRefSchema, db, new GroupCommitter(db), now);
    const received: [string, unknown[]][] = [];
    const placement = new FakePlacement(b.id);
    const sync = new ShardedTableSync(b, new Map([["block_ref", store as LocalStore<unknown>]]), placement, (table, entries) => received.push([table, entries]));
    const refs = [entry("block_ref", "cd".repeat(32), 0), entry("block_ref", "cd".repeat(32), 1)] as BlockRefEntry[];
    await new RpcOffloadRemote(a).push(b.id, "block_ref", refs);
    expect(store.get("cd".repeat(32), "v1")).toEqual(refs[1]!);
    // The holder learns of the references, so it checks it has their blocks.
    expect(received).toEqual([["block_ref", refs]]);
    await expect(new RpcOffloadRemote(a, 1000).push("ef".repeat(32), "block_ref", refs)).rejects.toThrow();

    const passes: number[] = [];
    sync.onPass((r) => passes.push(r.partitions));
    await sync.syncAll();
    expect(passes).toEqual([0]);
  });

  test("pages of entries ~10 times larger in JSON than stored cross the wire under the head limit, and the partition is handed over", async () => {
    const [a, b] = await startPair(rpcs);
    const dbOf = (name: string) => {
      const db = openDatabase(join(dir, `${name}.sqlite`), { fsync: false });
      open.push(db);
      return db;
    };
    const dbA = dbOf("a");
    const committerA = new GroupCommitter(dbA);
    const onA = new LocalStore(objectSchema, dbA, committerA, now);
    const dbB = dbOf("b");
    const onB = new LocalStore(objectSchema, dbB, new GroupCommitter(dbB), now);
    new ShardedTableSync(b, new Map([["object", onB as LocalStore<unknown>]]), new FakePlacement(b.id));
    // b alone holds every partition; a none.
    const placement = new FakePlacement(a.id);
    placement.versions = [ring(() => [b.id])];
    const pk = pkWhere(objectSchema as TableSchema<unknown>, () => true, "wordy");
    const entries = Array.from({ length: TABLE_OFFLOAD_PAGE_ROWS }, (_, i) => wordy(pk, i, 1000));
    // One page by the row bound, and by the old bound on stored bytes (4 MiB): its JSON is past the head limit.
    expect(entries.reduce((n, e) => n + encodeEntry(e).byteLength, 0)).toBeLessThan(4 * 1024 * 1024);
    expect(encodeJson({ table: "object", entries }).byteLength).toBeGreaterThan(MAX_HEAD_BYTES);
    await onA.apply(entries);
    const sizes: number[] = [];
    const rpcRemote = new RpcOffloadRemote(a);
    const remote: OffloadRemote = {
      push: (node, table, page) => (sizes.push(encodeJson({ table, entries: page }).byteLength), rpcRemote.push(node, table, page)),
    };
    const offload = new TableOffload(new Map([["object", onA as LocalStore<unknown>]]), placement, committerA, remote);
    expect(await offload.runOnce()).toMatchObject({ pushed: entries.length, offloaded: entries.length, kept: 0, tooLarge: 0 });
    expect(offload.stats.info().errors).toBe(0);
    expect(sizes.length).toBeGreaterThan(1);
    for (const n of sizes) expect(n).toBeLessThanOrEqual(SYNC_BATCH_WIRE_BYTES + 1024);
    const got = onB.range(pk, { limit: -1 }) as ObjectEntry[];
    expect(got.length).toBe(entries.length);
    const sent = new Map(entries.map((e) => [e.key, e]));
    expect(got.every((e) => Bun.deepEquals(e, sent.get(e.key)))).toBe(true);
    expect(onA.hasRowsInPartition(partitionOfEntry(objectSchema as TableSchema<unknown>, pk))).toBe(false);
  });
});
