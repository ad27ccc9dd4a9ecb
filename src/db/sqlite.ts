// Opens the metadata database (bun:sqlite, WAL) and applies schema migrations.
// Every table of every layer is created here, in numbered migrations, so a data
// directory written by an older release can be upgraded in place.
import { Database } from "bun:sqlite";
import { dirname } from "node:path";
import { createPrivateFile, makePrivateDir } from "../util/private-files";
import { MIGRATIONS } from "./migrations";
import { logger } from "../util/log";

const log = logger("db");

export interface OpenOptions {
  /** metadata_fsync: sync the WAL on every commit (survives power loss), not only at checkpoints. */
  fsync: boolean;
}

export function openDatabase(path: string, opts: OpenOptions): Database {
  if (path !== ":memory:") {
    makePrivateDir(dirname(path));
    // It holds every S3 secret key in clear; SQLite gives -wal and -shm the main file's mode.
    createPrivateFile(path);
  }
  const db = new Database(path, { create: true, strict: true });
  db.exec("PRAGMA journal_mode = WAL");
  // NORMAL in WAL mode never corrupts and loses nothing on a process crash; FULL also
  // survives power loss at the price of one fsync per commit.
  db.exec(`PRAGMA synchronous = ${opts.fsync ? "FULL" : "NORMAL"}`);
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("PRAGMA cache_size = -16000"); // 16 MiB: small boards have little memory
  // Pages read through a memory map rather than one pread each: HEAD of a small object
  // 3300 -> 4500/s here. Address space only; the kernel keeps or drops the pages as it needs.
  db.exec("PRAGMA mmap_size = 268435456");
  db.exec("PRAGMA foreign_keys = OFF");
  migrate(db);
  return db;
}

export function schemaVersion(db: Database): number {
  return (db.query("PRAGMA user_version").get() as { user_version: number }).user_version;
}

function migrate(db: Database): void {
  const current = schemaVersion(db);
  if (current > MIGRATIONS.length)
    throw new Error(
      `metadata database has schema version ${current}, newer than this release knows (${MIGRATIONS.length}); refusing to start`,
    );
  let rewrote = false;
  for (let v = current; v < MIGRATIONS.length; v++) {
    const m = MIGRATIONS[v]!;
    const started = Date.now();
    db.transaction(() => {
      if (typeof m === "string") db.exec(m);
      else m.run(db);
      db.exec(`PRAGMA user_version = ${v + 1}`);
    })();
    if (typeof m !== "string" && m.rewritesTables) {
      rewrote = current > 0; // a new database has nothing to compact
      if (rewrote) log.info(`metadata: schema ${v + 1} applied in ${Date.now() - started} ms`);
    }
  }
  if (rewrote) compact(db);
}

/**
 * Gives the pages a table rewrite freed back to the file system (the old rows' pages would
 * otherwise stay in the file, free, until new rows fill them). Needs free space for a copy of
 * the database; without it the database stays as it is, correct, only larger.
 */
function compact(db: Database): void {
  const started = Date.now();
  try {
    db.exec("VACUUM");
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    log.info(`metadata: compacted in ${Date.now() - started} ms`);
  } catch (err) {
    log.warn(`metadata: could not compact after the upgrade (${(err as Error).message}); the freed pages stay in the file and are reused`);
  }
}
