// The metadata database holds every S3 secret key in clear: its files are the owner's only.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../../src/db/sqlite";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bunker-dbmodes-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test("a new database, its -wal and -shm are 0600 and its directory 0700", () => {
  const meta = join(dir, "meta");
  const db = openDatabase(join(meta, "db.sqlite"), { fsync: false });
  db.exec("CREATE TABLE probe (x)");
  db.exec("INSERT INTO probe VALUES (1)");
  expect(statSync(meta).mode & 0o777).toBe(0o700);
  const files = readdirSync(meta).sort();
  expect(files).toEqual(["db.sqlite", "db.sqlite-shm", "db.sqlite-wal"]);
  for (const f of files) expect([f, statSync(join(meta, f)).mode & 0o777]).toEqual([f, 0o600]);
  db.close();
});
