// Anti-entropy of full-copy tables (src/table/full-sync.ts): a dump is read in pages bounded by
// entry count and JSON size, with a sort-key cursor, and a push goes in pages the same way, so a
// table whose JSON is past the 16 MiB head limit still converges. Real nodes on loopback (the
// RPC layer enforces the head limit), stores over temp sqlite files.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Type } from "@sinclair/typebox";
import { GroupCommitter } from "../../../src/db/committer.ts";
import { encodeEntry } from "../../../src/db/entry-codec.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { bucketSchema, type BucketEntry } from "../../../src/model/bucket.ts";
import { ENTRY_VALIDATORS } from "../../../src/model/entry-schemas.ts";
import { keySchema, type KeyEntry } from "../../../src/model/key.ts";
import { decodeJson, encodeJson, MAX_HEAD_BYTES, type RpcNode } from "../../../src/rpc/rpc.ts";
import { FULL_SYNC_PAGE_ENTRIES, FullTableSync, fullPage, MAX_FULL_TABLE_ENTRIES } from "../../../src/table/full-sync.ts";
import { LocalStore } from "../../../src/table/local-store.ts";
import type { TableSchema } from "../../../src/table/schema.ts";
import { SYNC_BATCH_WIRE_BYTES, SYNC_ENTRY_MAX_WIRE_BYTES, wireBytes } from "../../../src/table/sync.ts";
import { compileValidator } from "../../../src/util/validator.ts";
import { captureStderr, startPair } from "../rpc/helpers.ts";

let dir: string;
const dbs: Database[] = [];
const nodes: RpcNode[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-full-sync-"));
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  for (const db of dbs.splice(0)) db.close();
  await rm(dir, { recursive: true, force: true });
});

const BUCKETS = { ...bucketSchema, validateEntry: ENTRY_VALIDATORS.bucket } as TableSchema<unknown>;
const KEYS = { ...keySchema, validateEntry: ENTRY_VALIDATORS.key } as TableSchema<unknown>;

function storeOf(name: string): { db: Database; stores: Map<string, LocalStore<unknown>> } {
  const db = openDatabase(join(dir, `${name}.sqlite`), { fsync: false });
  dbs.push(db);
  const committer = new GroupCommitter(db);
  return { db, stores: new Map([BUCKETS, KEYS].map((s) => [s.name, new LocalStore(s, db, committer, () => 1)])) };
}

/**
 * A bucket ~10 times larger in JSON than stored: each tag is two dictionary words, 4 bytes
 * stored and 43 of JSON.
 */
function wordyBucket(seed: string, tags: number, ts = 1): BucketEntry {
  const pairs = Array.from({ length: tags }, () => ["content-type", "application/octet-stream"] as [string, string]);
  return {
    id: createHash("sha256").update(seed).digest("hex"),
    created: 1,
    deleted: false,
    keys: {},
    website: { ts: 0, v: null },
    // As merges write them (a merge fills in the settings an entry lacks).
    cors: { ts: 0, v: null },
    quotas: { ts: 0, v: { maxSize: null, maxObjects: null } },
    lifecycle: { ts: 0, v: null },
    tags: { ts, v: pairs },
  };
}

const key = (i: number): KeyEntry => ({ id: `GK${String(i).padStart(6, "0")}`, secret: "s".repeat(32), created: 1, deleted: false, name: { ts: 1, v: `key ${i}` }, allowCreateBucket: { ts: 1, v: false } });

/** Every page of a store's table, from the start, as fullPage reads them (bounded: stops at 10 000 pages). */
function pages(store: LocalStore<unknown>, maxEntries?: number): { entries: unknown[]; next?: string }[] {
  const out: { entries: unknown[]; next?: string }[] = [];
  let after: string | undefined;
  for (let i = 0; i < 10_000; i++) {
    const page = fullPage(store, after, maxEntries);
    out.push(page);
    if (page.next === undefined) return out;
    after = page.next;
  }
  throw new Error("pages do not end");
}

const rowsOf = (db: Database, table: string) => db.query(`SELECT sk, v FROM t_${table} ORDER BY sk`).all() as { sk: string; v: Uint8Array }[];

describe("dump pages", () => {
  test("cover every entry once, in sort-key order, at most maxEntries rows each; a cursor whose row is gone still works", async () => {
    const { db, stores } = storeOf("a");
    const store = stores.get("key")!;
    const all = Array.from({ length: 10 }, (_, i) => key(i));
    await store.apply(all);
    const got = pages(store, 3);
    expect(got.map((p) => p.entries.length)).toEqual([3, 3, 3, 1]);
    expect(got.flatMap((p) => p.entries)).toEqual(all);
    expect(got.map((p) => p.next)).toEqual(["GK000002", "GK000005", "GK000008", undefined]);
    // The row a cursor names was deleted meanwhile: the next page starts after where it was.
    db.run(`DELETE FROM t_key WHERE sk = 'GK000005'`);
    expect(fullPage(store, "GK000005", 3)).toEqual({ entries: all.slice(6, 9), next: "GK000008" });
    // Exactly maxEntries left: one more page, empty, says the end.
    expect(fullPage(store, "GK000006", 3)).toEqual({ entries: all.slice(7, 10), next: "GK000009" });
    expect(fullPage(store, "GK000009", 3)).toEqual({ entries: [] });
    expect(fullPage(store, undefined, 100)).toEqual({ entries: all.filter((k) => k.id !== "GK000005") });
  });

  test("end at SYNC_BATCH_WIRE_BYTES of JSON, cursor included, however small the entries are stored", async () => {
    const { stores } = storeOf("a");
    const store = stores.get("bucket")!;
    // 2 500 buckets, ~2 MB stored, ~21 MB of JSON: one answer of them all is past the head limit.
    const all = Array.from({ length: 2_500 }, (_, i) => wordyBucket(`b${i}`, 200));
    expect(all.reduce((n, b) => n + encodeEntry(b).byteLength, 0)).toBeLessThan(4 * 1024 * 1024);
    expect(encodeJson({ entries: all }).byteLength).toBeGreaterThan(MAX_HEAD_BYTES);
    await store.apply(all);
    const got = pages(store);
    expect(got.length).toBeGreaterThanOrEqual(3);
    for (const p of got) {
      expect(p.entries.length).toBeLessThanOrEqual(FULL_SYNC_PAGE_ENTRIES);
      expect(encodeJson(p).byteLength).toBeLessThanOrEqual(SYNC_BATCH_WIRE_BYTES + 64);
    }
    expect(got.flatMap((p) => p.entries)).toEqual([...all].sort((x, y) => (x.id < y.id ? -1 : 1)));
  });

  test("an entry no message can carry is left out with a warning; the entries around it are not", async () => {
    const { stores } = storeOf("a");
    const store = stores.get("bucket")!;
    const small = [wordyBucket("s1", 1), wordyBucket("s2", 1)];
    const huge = wordyBucket("huge", Math.ceil(SYNC_ENTRY_MAX_WIRE_BYTES / 43) + 10);
    expect(wireBytes(huge)).toBeGreaterThan(SYNC_ENTRY_MAX_WIRE_BYTES);
    await store.apply([...small, huge]);
    const { result, output } = await captureStderr(async () => pages(store));
    expect(result.flatMap((p) => p.entries)).toEqual(small.sort((x, y) => (x.id < y.id ? -1 : 1)));
    for (const p of result) expect(encodeJson(p).byteLength).toBeLessThanOrEqual(SYNC_BATCH_WIRE_BYTES + 64);
    expect(output).toMatch(/bucket entry .* is \d+ bytes of JSON, over the \d+ one message carries: not sent to peers/);
  });
});

describe("two nodes over RPC", () => {
  test("tables whose JSON is past the head limit converge, both ways, through paged dumps and pushes", async () => {
    const [a, b] = await startPair(nodes);
    const onA = storeOf("a");
    const onB = storeOf("b");
    // Disjoint buckets on each side, and one both hold, newer on a.
    const shared = wordyBucket("shared", 200, 1);
    const newer = wordyBucket("shared", 200, 2);
    await onA.stores.get("bucket")!.apply([...Array.from({ length: 2_500 }, (_, i) => wordyBucket(`a${i}`, 200)), newer]);
    await onB.stores.get("bucket")!.apply([...Array.from({ length: 2_500 }, (_, i) => wordyBucket(`b${i}`, 200)), shared]);
    // What one answer of the whole table, as the dump was, would have been.
    expect(encodeJson({ entries: onA.stores.get("bucket")!.range("", { limit: -1 }) }).byteLength).toBeGreaterThan(MAX_HEAD_BYTES);
    new FullTableSync(a, onA.db, onA.stores, () => [b.id]);
    const sync = new FullTableSync(b, onB.db, onB.stores, () => [a.id]);
    // What b sends and is answered, by endpoint.
    const sizes: [string, number][] = [];
    const call = b.call.bind(b);
    b.call = async (peer, name, payload, opts) => {
      sizes.push([name, payload.byteLength]);
      const reply = await call(peer, name, payload, opts);
      sizes.push([`${name} answer`, reply.payload.byteLength]);
      return reply;
    };
    // b pulls a's dump (~21 MB of JSON), then pushes its own table back: the RPC layer refuses
    // any message head past MAX_HEAD_BYTES, so this converges only if every message is under it.
    await sync.syncAll();
    expect(sync.stats.info().errors).toBe(0);
    const count = (name: string) => sizes.filter(([n]) => n === name).length;
    expect(count("table/full-dump answer")).toBeGreaterThanOrEqual(3);
    expect(count("table/full-push")).toBeGreaterThanOrEqual(3);
    for (const [, n] of sizes) expect(n).toBeLessThanOrEqual(SYNC_BATCH_WIRE_BYTES + 1024);
    const rowsA = rowsOf(onA.db, "bucket");
    expect(rowsA).toHaveLength(5_001);
    expect(rowsOf(onB.db, "bucket")).toEqual(rowsA);
    expect(onB.stores.get("bucket")!.get("", newer.id)).toEqual(newer);
    // Nothing left to exchange: the next pass compares digests only.
    sizes.length = 0;
    await sync.syncAll();
    expect(sizes.map(([n]) => n)).toEqual(["table/full-digest", "table/full-digest answer", "table/full-digest", "table/full-digest answer"]);
  });

  test("a node of the release before (no cursor, whole table in one answer) still syncs with this one", async () => {
    const [a, b] = await startPair(nodes);
    const onA = storeOf("a");
    const keys = Array.from({ length: 5 }, (_, i) => key(i));
    // b answers as that release did: the whole table, whatever the request holds.
    const asked: unknown[] = [];
    b.handle("table/full-digest", async () => ({ payload: encodeJson({ digest: "different" }) }));
    b.handle("table/full-dump", async ({ payload }) => (asked.push(decodeJson(payload)), { payload: encodeJson({ entries: keys }) }));
    b.handle("table/full-push", async () => ({ payload: encodeJson({}) }));
    const sync = new FullTableSync(a, onA.db, new Map([["key", onA.stores.get("key")!]]), () => [b.id]);
    await sync.syncAll();
    expect(sync.stats.info().errors).toBe(0);
    expect(asked).toEqual([{ table: "key" }]);
    expect(rowsOf(onA.db, "key")).toHaveLength(5);

    // And its checks, the old shapes, accept what this release sends and answers.
    const oldDumpRequest = compileValidator(Type.Object({ table: Type.String() }));
    const oldDumpAnswer = compileValidator(Type.Object({ entries: Type.Array(Type.Unknown(), { maxItems: MAX_FULL_TABLE_ENTRIES }) }));
    expect(oldDumpRequest.check({ table: "key", after: "GK000001" })).toBe(true);
    expect(oldDumpAnswer.check(fullPage(onA.stores.get("key")!, undefined, 2))).toBe(true);
  });

  test("a peer whose dump cursor does not move on is refused: the loop ends", async () => {
    const [a, b] = await startPair(nodes);
    const onA = storeOf("a");
    let calls = 0;
    b.handle("table/full-digest", async () => ({ payload: encodeJson({ digest: "different" }) }));
    b.handle("table/full-dump", async () => (calls++, { payload: encodeJson({ entries: [key(1)], next: "GK000001" }) }));
    b.handle("table/full-push", async () => ({ payload: encodeJson({}) }));
    const sync = new FullTableSync(a, onA.db, new Map([["key", onA.stores.get("key")!]]), () => [b.id]);
    await captureStderr(() => sync.syncAll());
    expect(calls).toBe(2);
    expect(sync.stats.info().errors).toBe(1);
  });
});
