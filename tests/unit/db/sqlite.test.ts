import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { statSync } from "node:fs";
import { Checkpointer, CHECKPOINT_INTERVAL_MS, WAL_TRUNCATE_MIN_FRAMES } from "../../../src/db/checkpointer.ts";
import { GroupCommitter, MAX_WRITES_PER_COMMIT } from "../../../src/db/committer.ts";
import { CRDT_TABLES, MIGRATIONS } from "../../../src/db/migrations.ts";
import { openDatabase, schemaVersion } from "../../../src/db/sqlite.ts";

let dir: string;
const open: Database[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-db-"));
});
afterEach(async () => {
  for (const db of open.splice(0)) db.close();
  await rm(dir, { recursive: true, force: true });
});

function openDb(name = "meta/db.sqlite", fsync = false): Database {
  const db = openDatabase(join(dir, name), { fsync });
  open.push(db);
  return db;
}

function tableNames(db: Database): string[] {
  return (db.query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as { name: string }[]).map((r) => r.name);
}

describe("openDatabase / migrations", () => {
  test("a fresh database gets every migration and user_version = number of migrations", () => {
    const db = openDb();
    expect(MIGRATIONS.length).toBeGreaterThanOrEqual(1);
    expect(schemaVersion(db)).toBe(MIGRATIONS.length);
    const names = tableNames(db);
    for (const t of CRDT_TABLES) expect(names).toContain(`t_${t}`);
    for (const t of ["block_rc", "insert_queue", "node_meta"]) expect(names).toContain(t);
  });

  test("creates the parent directory, uses WAL, and synchronous follows metadata_fsync", () => {
    const a = openDb("deep/er/a.sqlite", false);
    const b = openDb("b.sqlite", true);
    expect((a.query("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode).toBe("wal");
    expect((a.query("PRAGMA synchronous").get() as { synchronous: number }).synchronous).toBe(1); // NORMAL
    expect((b.query("PRAGMA synchronous").get() as { synchronous: number }).synchronous).toBe(2); // FULL
  });

  test("reopening keeps data and does not re-run migrations", () => {
    const path = join(dir, "db.sqlite");
    const db = openDatabase(path, { fsync: false });
    db.query(`INSERT INTO node_meta (k, v) VALUES ('node_id', 'abc')`).run();
    db.close();
    const again = openDb("db.sqlite");
    expect(schemaVersion(again)).toBe(MIGRATIONS.length);
    expect(again.query(`SELECT v FROM node_meta WHERE k = 'node_id'`).get()).toEqual({ v: "abc" });
  });

  test("a database with a newer schema version is refused and left untouched", () => {
    const path = join(dir, "db.sqlite");
    const db = openDatabase(path, { fsync: false });
    db.exec(`PRAGMA user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => openDatabase(path, { fsync: false })).toThrow(/newer than this release/);
    const raw = new Database(path, { readonly: true });
    try {
      expect(schemaVersion(raw)).toBe(MIGRATIONS.length + 1);
    } finally {
      raw.close();
    }
  });

  test("an empty file at version 0 (e.g. created by an older tool) is migrated", () => {
    const path = join(dir, "db.sqlite");
    const raw = new Database(path, { create: true });
    raw.exec("CREATE TABLE unrelated (x)");
    raw.close();
    const db = openDb("db.sqlite");
    expect(schemaVersion(db)).toBe(MIGRATIONS.length);
    expect(tableNames(db)).toContain("unrelated");
  });
});

describe("GroupCommitter", () => {
  function setup() {
    const db = openDb("db.sqlite");
    db.exec("CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT)");
    // A second connection sees only committed data (WAL snapshot): it tells commits apart.
    const reader = new Database(join(dir, "db.sqlite"), { readonly: true });
    open.push(reader);
    const committed = () => (reader.query("SELECT count(*) AS n FROM w").get() as { n: number }).n;
    return { db, committer: new GroupCommitter(db), committed };
  }

  test("concurrent writes of one turn share one transaction and return their results", async () => {
    const { db, committer, committed } = setup();
    const seenCommitted: number[] = [];
    const ins = db.query("INSERT INTO w (id, v) VALUES (?, ?)");
    const writes = Array.from({ length: 20 }, (_, i) =>
      committer.write(() => {
        expect(db.inTransaction).toBe(true);
        seenCommitted.push(committed());
        ins.run(i, `v${i}`);
        return i * 10;
      }),
    );
    // Nothing runs synchronously: the batch is flushed on a later turn.
    expect(seenCommitted).toEqual([]);
    const results = await Promise.all(writes);
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i * 10));
    // Had any write committed on its own, a later one would have seen its row.
    expect(seenCommitted).toEqual(Array(20).fill(0));
    expect(committed()).toBe(20);
  });

  test("a throwing write fails alone; its partial changes are rolled back, the others commit", async () => {
    const { db, committer, committed } = setup();
    const ins = db.query("INSERT INTO w (id, v) VALUES (?, ?)");
    const a = committer.write(() => ins.run(1, "a").changes);
    const bad = committer.write(() => {
      ins.run(2, "half-done");
      throw new Error("boom");
    });
    const dup = committer.write(() => ins.run(1, "duplicate key")); // sqlite constraint error
    const c = committer.write(() => {
      ins.run(3, "c");
      return "ok";
    });
    expect(await a).toBe(1);
    await expect(bad).rejects.toThrow("boom");
    await expect(dup).rejects.toThrow(/UNIQUE|constraint/i);
    expect(await c).toBe("ok");
    await Promise.allSettled([bad, dup]);
    expect(committed()).toBe(2);
    expect(db.query("SELECT id, v FROM w ORDER BY id").all()).toEqual([
      { id: 1, v: "a" },
      { id: 3, v: "c" },
    ]);
  });

  test("more than MAX_WRITES_PER_COMMIT writes are split into several transactions", async () => {
    const { db, committer, committed } = setup();
    const ins = db.query("INSERT INTO w (id, v) VALUES (?, ?)");
    const total = MAX_WRITES_PER_COMMIT + 40;
    const seen: number[] = [];
    await Promise.all(
      Array.from({ length: total }, (_, i) =>
        committer.write(() => {
          seen.push(committed());
          ins.run(i, null);
        }),
      ),
    );
    expect(seen.slice(0, MAX_WRITES_PER_COMMIT).every((n) => n === 0)).toBe(true);
    expect(seen.slice(MAX_WRITES_PER_COMMIT).every((n) => n === MAX_WRITES_PER_COMMIT)).toBe(true);
    expect(committed()).toBe(total);
  });

  test("writes issued after a flush go into a new batch; writeNow commits synchronously", async () => {
    const { db, committer, committed } = setup();
    const ins = db.query("INSERT INTO w (id, v) VALUES (?, ?)");
    await committer.write(() => ins.run(1, null));
    expect(committed()).toBe(1);
    await committer.write(() => ins.run(2, null));
    expect(committed()).toBe(2);
    expect(committer.writeNow(() => ins.run(3, null).changes)).toBe(1);
    expect(committed()).toBe(3);
    expect(() =>
      committer.writeNow(() => {
        ins.run(4, null);
        throw new Error("nope");
      }),
    ).toThrow("nope");
    expect(committed()).toBe(3);
  });
});

describe("Checkpointer", () => {
  const autoCheckpoint = (db: Database) => (db.query("PRAGMA wal_autocheckpoint").get() as { wal_autocheckpoint: number }).wal_autocheckpoint;

  test("the worker copies the WAL into the database file; the main connection never checkpoints", async () => {
    const path = join(dir, "meta/db.sqlite");
    const db = openDb();
    const cp = new Checkpointer(db, path, false);
    await cp.start();
    try {
      expect(autoCheckpoint(db)).toBe(0);
      db.exec("CREATE TABLE big (v BLOB)");
      const before = statSync(path).size;
      const ins = db.query("INSERT INTO big VALUES (?)");
      // 8 MiB in the WAL: far past the 1000-page threshold at which the main connection would
      // otherwise have checkpointed by itself.
      for (let i = 0; i < 256; i++) db.transaction(() => ins.run(new Uint8Array(32 * 1024).fill(i)))();
      expect(statSync(path).size).toBe(before);
      const deadline = Date.now() + 10 * CHECKPOINT_INTERVAL_MS;
      while (statSync(path).size < before + 8 * 1024 * 1024 && Date.now() < deadline) await Bun.sleep(50);
      expect(statSync(path).size).toBeGreaterThanOrEqual(before + 8 * 1024 * 1024);
    } finally {
      await cp.stop();
    }
    expect(autoCheckpoint(db)).toBe(1000);
  });

  test("once writes stop, a large WAL copied in full is emptied; a write waiting meanwhile succeeds", async () => {
    const path = join(dir, "meta/db.sqlite");
    const db = openDb();
    const cp = new Checkpointer(db, path, false);
    await cp.start();
    try {
      db.exec("CREATE TABLE big (v BLOB)");
      const committer = new GroupCommitter(db);
      const ins = db.query("INSERT INTO big VALUES (?)");
      const count = db.query("SELECT count(*) AS n FROM big");
      // 8 MiB of frames, well past WAL_TRUNCATE_MIN_FRAMES; each write reads, then writes.
      for (let i = 0; i < 256; i++) await committer.write(() => (count.get(), ins.run(new Uint8Array(32 * 1024).fill(i))));
      expect(statSync(`${path}-wal`).size).toBeGreaterThan(WAL_TRUNCATE_MIN_FRAMES * 4096);
      const deadline = Date.now() + 10 * CHECKPOINT_INTERVAL_MS;
      while (statSync(`${path}-wal`).size > WAL_TRUNCATE_MIN_FRAMES * 4096 && Date.now() < deadline) {
        // Writes keep coming while the worker may be truncating: none may fail.
        await committer.write(() => (count.get(), ins.run(new Uint8Array(16))));
        await Bun.sleep(20);
      }
      expect(statSync(`${path}-wal`).size).toBeLessThan(WAL_TRUNCATE_MIN_FRAMES * 4096);
      expect((count.get() as { n: number }).n).toBeGreaterThan(256);
    } finally {
      await cp.stop();
    }
  }, 30_000);

  test("a worker that cannot open the database hands checkpoints back to the main connection", async () => {
    const db = openDb();
    const cp = new Checkpointer(db, dir /* a directory, not a database */, false);
    await cp.start();
    try {
      expect(autoCheckpoint(db)).toBe(0);
      // The worker starts with the first checkpoint to take.
      db.exec("CREATE TABLE t (v INTEGER)");
      db.query("INSERT INTO t VALUES (1)").run();
      const deadline = Date.now() + 10 * CHECKPOINT_INTERVAL_MS;
      while (autoCheckpoint(db) !== 1000 && Date.now() < deadline) await Bun.sleep(50);
      expect(autoCheckpoint(db)).toBe(1000);
      expect(cp.stats.info().errors).toBe(1);
      expect(cp.workerRunning).toBe(false);
    } finally {
      await cp.stop();
    }
  }, 30_000);

  test("the worker starts only when there is something to copy and stops once idle", async () => {
    const path = join(dir, "meta/db.sqlite");
    const intervalMs = 100;
    const idleMs = 3 * intervalMs;
    const waitUntil = async (what: () => boolean) => {
      const deadline = Date.now() + idleMs + 50 * intervalMs;
      while (!what() && Date.now() < deadline) await Bun.sleep(50);
      return what();
    };
    // A database closed cleanly has no WAL: reopened, nothing is to be copied.
    openDatabase(path, { fsync: false }).close();
    const db = openDb();
    const cp = new Checkpointer(db, path, false, { intervalMs, workerIdleMs: idleMs });
    await cp.start();
    try {
      await Bun.sleep(5 * intervalMs);
      expect(cp.workerRunning).toBe(false);
      expect(cp.stats.info().passes).toBe(0);
      expect(autoCheckpoint(db)).toBe(0);

      db.exec("CREATE TABLE t (v INTEGER)");
      db.query("INSERT INTO t VALUES (1)").run();
      expect(await waitUntil(() => cp.stats.info().passes > 0)).toBe(true);
      expect(cp.workerRunning).toBe(true);
      const walBefore = statSync(`${path}-wal`).size;
      expect(walBefore).toBeGreaterThan(0);
      // Idle: the worker goes away, and no further checkpoint runs.
      expect(await waitUntil(() => !cp.workerRunning)).toBe(true);
      const passes = cp.stats.info().passes;
      await Bun.sleep(5 * intervalMs);
      expect(cp.stats.info().passes).toBe(passes);
      expect(cp.workerRunning).toBe(false);

      // The next write starts a new one, which copies it.
      const sizeBefore = statSync(path).size;
      const ins = db.query("INSERT INTO t VALUES (?)");
      db.transaction(() => {
        for (let i = 0; i < 2000; i++) ins.run(i);
      })();
      expect(await waitUntil(() => cp.stats.info().passes > passes)).toBe(true);
      expect(await waitUntil(() => statSync(path).size > sizeBefore)).toBe(true);
      expect(cp.stats.info().errors).toBe(0);
    } finally {
      await cp.stop();
    }
  }, 30_000);
});
