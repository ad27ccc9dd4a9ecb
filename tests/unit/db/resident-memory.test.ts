// Reading a whole metadata database does not make it resident in the process: pages come
// through SQLite's bounded page cache, not through a memory map whose touched pages would
// count in RSS (db/sqlite.ts MMAP_BYTES). Measured from /proc, as a bound, not a timing.
import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { openDatabase, PAGE_CACHE_KIB } from "../../../src/db/sqlite.ts";
import { READ_GC_BYTES, releaseRow, TableRows } from "../../../src/db/table-rows.ts";
import { decodeEntry, encodeEntry } from "../../../src/db/entry-codec.ts";

/** Size of the database the test reads: well above the page cache. */
const DB_BYTES = 64 * 1024 * 1024;
const ROW_BYTES = 4000;
const ROWS = Math.ceil(DB_BYTES / ROW_BYTES);

let dir: string;
let db: Database;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-rss-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

/** Resident memory of this process, MiB: file-backed (mapped files) and anonymous. */
function resident(): { file: number; anon: number } {
  const status = readFileSync("/proc/self/status", "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)![1]);
  return { file: kib("RssFile") / 1024, anon: kib("RssAnon") / 1024 };
}

test("a full scan of a database four times the page cache leaves the process's file-backed RSS where it was", () => {
  db.exec(`CREATE TABLE filler (id INTEGER PRIMARY KEY, v BLOB NOT NULL)`);
  const insert = db.query(`INSERT INTO filler (v) VALUES (?)`);
  const chunk = randomBytes(ROW_BYTES);
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) insert.run(chunk);
  })();
  db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  expect(DB_BYTES / 1024).toBeGreaterThan(4 * PAGE_CACHE_KIB);
  const before = resident();
  // Every page read, nothing large kept by JavaScript.
  const { n } = db.query(`SELECT sum(length(v)) AS n FROM filler`).get() as { n: number };
  expect(n).toBe(ROWS * ROW_BYTES);
  const after = resident();
  expect(after.file - before.file).toBeLessThan(8);
  expect(after.anon - before.anon).toBeLessThan(PAGE_CACHE_KIB / 1024 + 16);
});

test("reading a table larger than the collector notices, row batch by row batch, keeps RSS bounded (READ_GC_BYTES)", async () => {
  const t = TableRows.of(db, "object");
  const value = encodeEntry({ kind: "inline", base64: randomBytes(1024).toString("base64") });
  const rows = Math.ceil(DB_BYTES / value.byteLength);
  db.transaction(() => {
    for (let i = 0; i < rows; i++) t.put("bucket", `k${String(i).padStart(8, "0")}`, 0, value, false, undefined);
  })();
  Bun.gc(true);
  const before = resident().anon;
  let peak = before;
  let read = 0;
  for (;;) {
    const batch = t.range("bucket", `k${String(read).padStart(8, "0")}`, null, 256);
    read += batch.length;
    for (const v of batch) {
      expect((decodeEntry(v) as { base64: string }).base64.length).toBe(1368);
      releaseRow(v);
    }
    peak = Math.max(peak, resident().anon);
    if (batch.length < 256) break;
    await Bun.sleep(0);
  }
  expect(read).toBe(rows);
  // Measured: 7-8 MiB; 20 MiB with no collection paced and no row released.
  expect(READ_GC_BYTES).toBeLessThanOrEqual(8 * 1024 * 1024);
  expect(peak - before).toBeLessThan(12);
});

test("releaseRow frees a row read alone and leaves a view of a larger buffer as it is", () => {
  const own = new Uint8Array(2000).fill(7);
  releaseRow(own);
  expect(own.byteLength).toBe(0);
  const shared = new Uint8Array(4000);
  const view = shared.subarray(1000, 3000);
  releaseRow(view);
  expect(view.byteLength).toBe(2000);
  expect(shared.byteLength).toBe(4000);
});
