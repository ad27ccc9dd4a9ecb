// Opens the metadata database (bun:sqlite, WAL) and applies schema migrations.
// Every table of every layer is created here, in numbered migrations, so a data
// directory written by an older release can be upgraded in place.
import { Database } from "bun:sqlite";
import { dirname } from "node:path";
import { createPrivateFile, makePrivateDir } from "../util/private-files";
import { MIGRATIONS } from "./migrations";
import { logger } from "../util/log";

const log = logger("db");

/**
 * SQLite's own page cache (anonymous memory, at most this much per connection); other pages come
 * from the kernel's file cache, which is not the process's resident memory. A listing fills it
 * whole: over a 200 000-object sweep, RSS +17 MiB with the former 16 MB cache against a 2 MB
 * one. Random GET and HEAD rates did not differ between 16 MB and 2 MB at 200 000 objects
 * (4 500-8 500 GET/s, 5 800-12 000 HEAD/s, alternating runs): the b-tree pages not held here
 * are a pread from the kernel's cache away.
 */
export const PAGE_CACHE_KIB = 2048;
/**
 * No memory map of the database file. Every page read through a map stays in the process's
 * resident memory (file-backed) until the kernel needs it: with the former 256 MiB map, RSS
 * went from 80 to 457 MiB over one listing of 1M objects (a 1.4 GB database), and to 339 MiB
 * after 50 000 random reads, for no measurable gain in CPU per read at that size (~30 us per
 * random get either way; HEAD ~410 us and a 1000-key list page ~14 ms of server CPU either
 * way). A database small enough to be mapped whole read ~8 us faster per get (18-21 vs 25-30),
 * at the price of its whole size in RSS.
 */
export const MMAP_BYTES = 0;

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
  db.exec(`PRAGMA cache_size = -${PAGE_CACHE_KIB}`);
  db.exec(`PRAGMA mmap_size = ${MMAP_BYTES}`);
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
