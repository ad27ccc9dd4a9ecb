// Migration 6 (db/migrations.ts): a data directory written by a release with JSON rows is
// upgraded in place. The old database is made as that release made it (its migrations 1-5, rows
// written as its LocalStore wrote them: JSON text in a WITHOUT ROWID table), then opened by this
// release, and read back through the table layer.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { GroupCommitter } from "../../../src/db/committer.ts";
import { MIGRATIONS } from "../../../src/db/migrations.ts";
import { openDatabase, schemaVersion } from "../../../src/db/sqlite.ts";
import { LocalStore, syncBucketOf } from "../../../src/table/local-store.ts";
import { partitionOfEntry } from "../../../src/table/partition.ts";
import { PARTITION_COUNT } from "../../../src/cluster/layout.ts";
import type { TableSchema } from "../../../src/table/schema.ts";
import { objectSchema, type ObjectEntry, type ObjectVersion } from "../../../src/model/object.ts";
import { versionBlockSchema, versionSchema } from "../../../src/model/version.ts";
import { blockRefSchema } from "../../../src/model/block-ref.ts";
import { bucketSchema } from "../../../src/model/bucket.ts";
import { valueHash } from "../../../src/table/gc.ts";

/** Schema version of the last release with JSON rows. */
const JSON_ROWS_VERSION = 5;
const OBJECTS = 600;

let dir: string;
const open: Database[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-rowmig-"));
});
afterEach(async () => {
  for (const db of open.splice(0)) db.close();
  await rm(dir, { recursive: true, force: true });
});

const hex = (n: number) => randomBytes(n).toString("hex");
const bucketId = hex(32);
const inline = (size: number): ObjectVersion["state"] => ({
  kind: "complete",
  data: { kind: "inline", meta: { size, etag: hex(16), headers: [["content-type", "text/plain"]] }, base64: randomBytes(size).toString("base64") },
});
const version = (state: ObjectVersion["state"], timestamp = 1_700_000_000_000): ObjectVersion => ({ uuid: hex(32), timestamp, state });

/** What the old release stored: entries of several tables, some of them mid-way through work. */
function oldEntries(): { schema: TableSchema<any>; entries: unknown[] }[] {
  const objects: ObjectEntry[] = Array.from({ length: OBJECTS }, (_, i) => ({ bucketId, key: `obj/${String(i).padStart(5, "0")}`, versions: [version(inline(1024))] }));
  const uploading: ObjectEntry = { bucketId, key: "uploading", versions: [version({ kind: "uploading", multipart: false, headers: [], uploader: hex(32) })] };
  const multipart: ObjectEntry = { bucketId, key: "multipart", versions: [version({ kind: "uploading", multipart: true, headers: [], uploader: hex(32) })] };
  const pending: ObjectEntry = {
    bucketId,
    key: "pending",
    versions: [version({ kind: "pending", data: { kind: "blocks", meta: { size: 9000, etag: hex(16), headers: [] }, singleBlock: hex(32) } })],
  };
  const marker: ObjectEntry = { bucketId, key: "gone", versions: [version({ kind: "complete", data: { kind: "deleteMarker" } })] };
  const v = hex(32);
  return [
    { schema: objectSchema, entries: [...objects, uploading, multipart, pending, marker] },
    { schema: versionSchema, entries: [{ uuid: v, deleted: false, backlink: { kind: "object", bucketId, key: "big" } }] },
    { schema: versionBlockSchema, entries: [0, 1, 2].map((i) => ({ uuid: v, part: 1, offset: i * 1048576, hash: hex(32), size: 1048576 })) },
    { schema: blockRefSchema, entries: [{ hash: hex(32), version: v, deleted: false }] },
    { schema: bucketSchema, entries: [{ id: bucketId, created: 1, deleted: false, keys: {}, website: { ts: 0, v: null } }] },
  ];
}

/** A database as the release with JSON rows left it: its migrations, its row encoding, its GC queue. */
function writeOldDatabase(path: string, tables: ReturnType<typeof oldEntries>): void {
  const db = new Database(path, { create: true, strict: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.transaction(() => {
    for (const m of MIGRATIONS.slice(0, JSON_ROWS_VERSION)) {
      if (typeof m !== "string") throw new Error("migrations 1-5 are SQL");
      db.exec(m);
    }
    db.exec(`PRAGMA user_version = ${JSON_ROWS_VERSION}`);
    for (const { schema, entries } of tables) {
      const insert = db.query(`INSERT OR REPLACE INTO t_${schema.name} (pk, sk, v, part) VALUES (?, ?, ?, ?)`);
      for (const e of entries) {
        const pk = schema.partitionKey(e);
        const sk = schema.sortKey(e);
        const json = JSON.stringify(e);
        insert.run(pk, sk, json, syncBucketOf(partitionOfEntry(schema, pk), pk, sk));
        if (schema.isTombstone?.(e)) db.query(`INSERT INTO table_gc_todo (tbl, pk, sk, vhash, due) VALUES (?, ?, ?, ?, 0)`).run(schema.name, pk, sk, valueHash(json));
      }
    }
  })();
  db.close();
}

const storesOf = (db: Database, tables: ReturnType<typeof oldEntries>) =>
  tables.map(({ schema, entries }) => ({ store: new LocalStore(schema, db, new GroupCommitter(db), () => 1), entries }));

function fileBytes(path: string): number {
  let n = 0;
  for (const f of [path, `${path}-wal`]) {
    try {
      n += statSync(f).size;
    } catch {}
  }
  return n;
}

describe("migration 6: JSON rows to binary rows", () => {
  test("every entry reads back as it was written; only in-progress objects are marked; the file shrinks", () => {
    const path = join(dir, "old.sqlite");
    const tables = oldEntries();
    writeOldDatabase(path, tables);
    const before = fileBytes(path);

    const db = openDatabase(path, { fsync: false });
    open.push(db);
    expect(schemaVersion(db)).toBe(MIGRATIONS.length);
    for (const { store, entries } of storesOf(db, tables)) {
      for (const e of entries) {
        expect(store.get(store.schema.partitionKey(e), store.schema.sortKey(e))).toEqual(e);
      }
    }
    const objects = new LocalStore(objectSchema, db, new GroupCommitter(db), () => 1);
    expect(objects.range(bucketId, { start: "obj/", end: "obj0", limit: 10_000 })).toHaveLength(OBJECTS);
    // What start-up repair must look at, and nothing else: the PUT being received and the pending version.
    expect(objects.unsettledEntries(0, 100).map((r) => r.entry.key).sort()).toEqual(["pending", "uploading"]);
    // Table GC's queue names values by a hash of their JSON: it still matches the stored tombstone.
    const todo = db.query(`SELECT pk, sk, vhash FROM table_gc_todo`).all() as { pk: string; sk: string; vhash: string }[];
    expect(todo).toHaveLength(1);
    expect(valueHash(objects.getEncoded(todo[0]!.pk, todo[0]!.sk)!)).toBe(todo[0]!.vhash);
    // 1 KiB bodies: base64 in JSON on overflow pages before, bytes in the row after (compacted).
    expect(fileBytes(path)).toBeLessThan(before * 0.5);
    const objectBytes = db.query(`SELECT sum(pgsize) AS n FROM dbstat WHERE name IN ('t_object', 'i_object_key', 'i_object_part', 'i_object_unsettled')`).get() as { n: number };
    expect(objectBytes.n / OBJECTS).toBeLessThan(1536);
  });

  test("a migrated node and a node that stored the same entries itself store the same rows and digests", async () => {
    const tables = oldEntries();
    const migratedPath = join(dir, "old.sqlite");
    writeOldDatabase(migratedPath, tables);
    const migrated = openDatabase(migratedPath, { fsync: false });
    const fresh = openDatabase(join(dir, "fresh.sqlite"), { fsync: false });
    open.push(migrated, fresh);
    const a = storesOf(migrated, tables);
    const b = storesOf(fresh, tables);
    // Written in another order, through the live write path.
    for (const { store, entries } of b) await store.apply([...entries].reverse());
    for (let t = 0; t < tables.length; t++) {
      const [x, y] = [a[t]!.store, b[t]!.store];
      if (x.schema.replication !== "sharded") continue;
      const digests = x.partitionDigests();
      expect(digests.some((d) => d !== "")).toBe(true);
      expect(y.partitionDigests()).toEqual(digests);
      for (let p = 0; p < PARTITION_COUNT; p++) {
        if (digests[p] === "") continue;
        expect(y.bucketDigests(p)).toEqual(x.bucketDigests(p));
      }
    }
  });
});
