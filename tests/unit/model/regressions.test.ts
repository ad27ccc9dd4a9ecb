// Regression tests for bugs found by review: background passes that ran once and never
// again, a key merge that was not commutative, a cache that kept a rolled-back value, and
// a quorum result that kept growing after it was returned.
import { parseBlockHash } from "../../../src/util/ids.ts";
import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout";
import { openDatabase } from "../../../src/db/sqlite";
import { GroupCommitter } from "../../../src/db/committer";
import { Model } from "../../../src/model/model";
import { keySchema, type KeyEntry } from "../../../src/model/key";
import { LocalStore } from "../../../src/table/local-store";
import { quorum } from "../../../src/table/quorum";
import { BlockManager } from "../../../src/block/manager";
import { LocalBlockStore } from "../../../src/block/store";
import { defaultZstd } from "../../../src/block/codec";

let dir: string;
let db: Database;
let model: Model;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-regress-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
  model = new Model(db, new LayoutPlacement("n", singleNodeLayout("n"), "consistent"));
});
afterEach(async () => {
  await model.stop();
  db.close();
  await rm(dir, { recursive: true, force: true });
});

test("the insert queue drains again after a pass that found it empty", async () => {
  await model.drainInsertQueue();
  db.query(`INSERT INTO insert_queue (tbl, v) VALUES ('version', ?)`).run(JSON.stringify({ uuid: "v1", deleted: true, backlink: null }));
  await model.drainInsertQueue();
  expect((db.query(`SELECT count(*) AS n FROM insert_queue`).get() as { n: number }).n).toBe(0);
  expect(model.versions.getLocal("v1", "")).toEqual({ uuid: "v1", deleted: true, backlink: null });
});

test("block GC runs again after a pass with nothing due", async () => {
  const store = new LocalBlockStore({ dataDir: join(dir, "blocks"), fsync: false });
  await store.init();
  const placement = new LayoutPlacement("n", singleNodeLayout("n"), "consistent");
  const blocks = new BlockManager(store, placement, defaultZstd(), db, { blockSize: 1 << 20, compressionLevel: null, now: () => 1000 });
  const hash = parseBlockHash("ab".repeat(32));
  await blocks.gc.run();
  await store.write(hash, new Uint8Array([1, 2, 3]), false);
  db.query(`INSERT INTO block_rc (hash, refs, deletable_at) VALUES (?, 0, 500)`).run(hash);
  await blocks.gc.run();
  expect(await store.has(hash)).toBe(false);
});

test("key merge is commutative when one copy is deleted", () => {
  const live: KeyEntry = { id: "GK1", secret: "s", created: 1, deleted: false, name: { ts: 1, v: "n" }, allowCreateBucket: { ts: 5, v: true } };
  const del: KeyEntry = { ...live, deleted: true, secret: "", allowCreateBucket: { ts: 1, v: false } };
  expect(keySchema.merge(live, del)).toEqual(keySchema.merge(del, live));
});

test("a rolled-back transaction leaves nothing in the full-copy cache", () => {
  const store = new LocalStore(keySchema, db, new GroupCommitter(db), () => 1);
  const k: KeyEntry = { id: "GK2", secret: "s", created: 1, deleted: false, name: { ts: 1, v: "n" }, allowCreateBucket: { ts: 1, v: false } };
  expect(() =>
    db.transaction(() => {
      store.applyInTransaction([k]);
      store.applyInTransaction([k]);
      throw new Error("rollback");
    })(),
  ).toThrow("rollback");
  expect(store.get("", k.id)).toBeUndefined();
});

test("a quorum result does not change after it was returned", async () => {
  const result = await quorum([async () => 1, () => Bun.sleep(5).then(() => 2)], 1);
  await Bun.sleep(15);
  expect(result).toEqual([1]);
});

test("storing a block that waits for GC postpones its deletion", async () => {
  const store = new LocalBlockStore({ dataDir: join(dir, "blocks"), fsync: false });
  await store.init();
  const placement = new LayoutPlacement("n", singleNodeLayout("n"), "consistent");
  const blocks = new BlockManager(store, placement, defaultZstd(), db, { blockSize: 1 << 20, compressionLevel: null });
  const hash = parseBlockHash("cd".repeat(32));
  await store.write(hash, new Uint8Array([4, 5, 6]), false);
  db.query(`INSERT INTO block_rc (hash, refs, deletable_at) VALUES (?, 0, 1)`).run(hash);
  await blocks.put(hash, new Uint8Array([4, 5, 6]));
  await blocks.gc.run();
  expect(await store.has(hash)).toBe(true);
});

test("blockPages walks every block even when the caller consumes each page", async () => {
  const rows = Array.from({ length: 10 }, (_, i) => ({ uuid: "v", part: 0, offset: i * 10, hash: "ef".repeat(32), size: 10 }));
  await model.versionBlocks.insert(rows);
  const seen: number[] = [];
  for await (const page of model.blockPages("v", 3)) while (page.length > 0) seen.push(page.shift()!.offset);
  expect(seen).toEqual(rows.map((r) => r.offset));
});

test("a block that cannot be fetched stays in the resync queue with its error and a backoff", async () => {
  const store = new LocalBlockStore({ dataDir: join(dir, "blocks"), fsync: false });
  await store.init();
  const layout = { version: 1, replicationFactor: 2, roles: { n: { zone: "a", capacity: 1, tags: [] }, m: { zone: "b", capacity: 1, tags: [] } }, ring: Array.from({ length: 256 }, () => ["n", "m"]) };
  const failingRemote = {
    has: async () => false,
    put: async () => {},
    get: async () => {
      throw new Error("peer unreachable");
    },
  };
  let later = 0;
  const now = () => Date.now() + later;
  const blocks = new BlockManager(store, new LayoutPlacement("n", layout, "consistent"), defaultZstd(), db, { blockSize: 1 << 20, compressionLevel: null, now }, failingRemote);
  const hash = parseBlockHash("9a".repeat(32));
  db.query(`INSERT INTO block_rc (hash, refs, deletable_at) VALUES (?, 1, NULL)`).run(hash);
  blocks.resync.enqueue([hash]);
  await blocks.resync.run();
  const errors = blocks.resync.errors();
  expect(errors.map((e) => [e.hash, e.errors])).toEqual([[hash, 1]]);
  expect(errors[0]!.nextTry).toBeGreaterThan(Date.now());
  // Once the block is present, the next pass drops it from the queue.
  await store.write(hash, new Uint8Array([1]), false);
  later = 3_600_000;
  await blocks.resync.run();
  expect(blocks.resync.queueLength()).toBe(0);
});
