// The rows of a CRDT table in sqlite (t_<name>, created by db/migrations.ts): every read and
// write of them goes through here, so that what is kept beside each row stays exact:
//   - v: the entry in the binary row format (db/entry-codec.ts);
//   - part: its sync bucket (partition * SYNC_BUCKETS + a hash byte of its key), indexed, so
//     anti-entropy and offload read one partition or bucket without scanning the others;
//   - unsettled: 1 for entries start-up repair must come back to (an upload in progress, a
//     version not settled yet), in a partial index, so repair reads those and nothing else;
//   - h: the row's hash as the digests count it (rowHash), written with the row (migration 7;
//     NULL for a row not rewritten since, whose hash is then computed from v when needed): a
//     write need not hash the row it replaces, and comparing a sync bucket row by row reads
//     the hashes, not the entries;
//   - sync_digest: per table, partition and sync bucket, the row count and the XOR of a hash of
//     each row, kept up to date by every write, so comparing partitions (then the buckets of one
//     partition) with a peer reads 256 small rows instead of the table. XOR makes a digest
//     independent of the order rows were written in: replicas holding the same rows agree.
// Rows have an integer id (rowid) in the order they were first written and a unique index on
// (pk, sk): a row of a 1 KiB inline object (~1.2 KB) then lives whole in its table page, three
// to a page, where a WITHOUT ROWID table (an index b-tree, at most ~1000 bytes of a row in its
// page) spilled every such row onto an overflow page of its own.
// A partition key that is an id or a hash (64 lowercase hex digits: bucket ids, version uuids,
// block hashes) is stored as its 32 bytes (a BLOB), any other as text: the key index, one entry
// per object, is 40% smaller. Partition keys are only ever compared for equality, so the mix of
// types orders nothing wrongly. (By hand: WHERE pk = X'<hex>'.)
import type { Database, Statement } from "bun:sqlite";
import { createHash } from "node:crypto";
import { decodeEntry } from "./entry-codec";

/** Sync buckets per partition (a two-level summary: partition, then bucket). */
export const SYNC_BUCKETS = 256;
/** Bytes of a row's hash that go into a digest (128 bits: no accidental match between sets). */
const ROW_HASH_BYTES = 16;

/** A row as get() reads it: id, sync bucket, stored bytes, and its hash when kept (see h above). */
export interface PointRow {
  id: number;
  part: number;
  v: Uint8Array;
  h: Uint8Array | null;
}

/** A stored row: its id, sync bucket, key and stored bytes. */
export interface StoredRow {
  id: number;
  part: number;
  pk: string;
  sk: string;
  /** The stored bytes (db/entry-codec.ts). */
  v: Uint8Array;
}

const ID_KEY = /^[0-9a-f]{64}$/;

/** A partition key as stored (see the header). */
export function storedKey(pk: string): string | Uint8Array {
  return ID_KEY.test(pk) ? Buffer.from(pk, "hex") : pk;
}

/** A stored partition key as the table layer knows it. */
export function keyText(stored: string | Uint8Array): string {
  return typeof stored === "string" ? stored : Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength).toString("hex");
}

/** The hash of one row that digests XOR together. */
export function rowHash(pk: string, sk: string, v: Uint8Array): Uint8Array {
  return createHash("sha256").update(pk).update("\u0000").update(sk).update("\u0000").update(v).digest().subarray(0, ROW_HASH_BYTES);
}

function xorInto(acc: Uint8Array, h: Uint8Array): void {
  for (let i = 0; i < ROW_HASH_BYTES; i++) acc[i]! ^= h[i]!;
}

/** A digest as peers exchange it: "" for no rows, else the XOR of the row hashes in hex. */
function digestText(n: number, x: Uint8Array): string {
  return n === 0 ? "" : Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString("hex");
}

/** The SQL that creates a CRDT table of this layout, but for column h, which migration 7 adds (used by migration 6; never edit a released one). */
export function createTableSql(name: string): string {
  return `CREATE TABLE t_${name} (id INTEGER PRIMARY KEY, pk NOT NULL, sk TEXT NOT NULL, part INTEGER NOT NULL, unsettled INTEGER, v BLOB NOT NULL);
   CREATE UNIQUE INDEX i_${name}_key ON t_${name} (pk, sk);
   CREATE INDEX i_${name}_part ON t_${name} (part);
   CREATE INDEX i_${name}_unsettled ON t_${name} (id) WHERE unsettled IS NOT NULL;`;
}

/**
 * The digests of every table (see the header): one row per partition (bucket = WHOLE_PARTITION)
 * and one per sync bucket (bucket = its index in the partition) that holds or held rows.
 */
export const SYNC_DIGEST_SQL = `CREATE TABLE sync_digest (tbl TEXT NOT NULL, partition INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL, x BLOB NOT NULL, PRIMARY KEY (tbl, partition, bucket)) WITHOUT ROWID;`;
/** The `bucket` of a partition's own digest row. */
const WHOLE_PARTITION = -1;

/** The digest rows a row in sync bucket `part` counts in: its partition's and its bucket's. */
export function digestSlots(part: number): [partition: number, bucket: number][] {
  const partition = Math.floor(part / SYNC_BUCKETS);
  return [
    [partition, WHOLE_PARTITION],
    [partition, part % SYNC_BUCKETS],
  ];
}

/**
 * Bytes of rows handed out after which a full garbage collection runs. bun:sqlite gives each row
 * its own ArrayBuffer and decoding one makes strings (an inline body's base64, about as long
 * again), both outside the collector's count of what was allocated: a listing of 1M rows of
 * 1 KiB objects (1.2 GB read) grew RSS by 140 MiB before a collection came on its own. Every
 * 4 MiB read (~3 500 such rows) costs one collection of ~15 ms, 15-25% of a listing's time.
 * Sweeps of 200 000 objects with a 4 MiB page cache: +34 MiB at 8 MiB, +32 at 4 MiB; with a
 * 2 MiB cache, +31 at 8 MiB, +30 at 6 MiB; +100 with no collection paced. At 1M objects, 6 MiB
 * gave +33.5 MiB (bound: 32).
 */
export const READ_GC_BYTES = 4 * 1024 * 1024;
/**
 * What one row's hash counts towards READ_GC_BYTES where anti-entropy compares it (its hex
 * text, its place in the lists, sets and JSON of both sides: a few hundred bytes, and a pass
 * makes them fast). By measurement, a catch-up of 2 000 objects at 1M (bench:scale, RSS peak of
 * the node that has them): not counted 179 MiB, 256 bytes 123 MiB, 1 KiB 118 MiB (a collection
 * about every sync bucket; the pass takes ~11 s, against ~100 s when every entry was read).
 */
const ROW_HASH_COMPARED_BYTES = 1024;
let readSinceGc = 0;
let gcPending = false;

/** Counts `bytes` of rows handed to JS; past READ_GC_BYTES, a collection runs once this turn is done. */
export function noteRowsRead(bytes: number): void {
  readSinceGc += bytes;
  if (readSinceGc < READ_GC_BYTES || gcPending) return;
  gcPending = true;
  setImmediate(() => {
    gcPending = false;
    readSinceGc = 0;
    Bun.gc(true);
  });
}

function noteRows<R extends { v: Uint8Array }>(rows: R[]): R[] {
  let n = 0;
  for (const r of rows) n += r.v.byteLength;
  noteRowsRead(n);
  return rows;
}

/**
 * Hands a row's bytes back to the allocator now, once they were decoded (decoding copies every
 * string out): only for bytes nothing else reads, as returned by get() or range().
 */
export function releaseRow(v: Uint8Array): void {
  const ab = v.buffer;
  if (ab instanceof ArrayBuffer && v.byteOffset === 0 && v.byteLength === ab.byteLength && !ab.detached) ab.transfer(0);
}

const instances = new WeakMap<Database, Map<string, TableRows>>();

export class TableRows {
  /** The rows of table `name` in `db` (statements prepared once per database and table). */
  static of(db: Database, name: string): TableRows {
    let byName = instances.get(db);
    if (!byName) instances.set(db, (byName = new Map()));
    let rows = byName.get(name);
    if (!rows) byName.set(name, (rows = new TableRows(db, name)));
    return rows;
  }

  private readonly getStmt: Statement;
  private readonly hasStmt: Statement;
  private readonly insertStmt: Statement;
  private readonly updateStmt: Statement;
  private readonly deleteStmt: Statement;
  private readonly rangeStmt: Statement;
  private readonly ofKeyStmt: Statement;
  private readonly bucketRowsStmt: Statement;
  private readonly byIdStmt: Statement;
  private readonly pageStmt: Statement;
  private readonly anyInRangeStmt: Statement;
  private readonly unsettledStmt: Statement;
  private readonly allStmt: Statement;
  private readonly bySortKeyStmt: Statement;
  private readonly digestGetStmt: Statement;
  private readonly digestPutStmt: Statement;
  private readonly partitionDigestsStmt: Statement;
  private readonly bucketDigestsStmt: Statement;

  private constructor(
    db: Database,
    readonly name: string,
  ) {
    const t = `t_${name}`;
    this.getStmt = db.query(`SELECT id, part, v, h FROM ${t} WHERE pk = ? AND sk = ?`);
    this.hasStmt = db.query(`SELECT 1 AS x FROM ${t} WHERE pk = ? AND sk = ?`);
    this.insertStmt = db.query(`INSERT INTO ${t} (pk, sk, part, unsettled, v, h) VALUES (?, ?, ?, ?, ?, ?)`);
    this.updateStmt = db.query(`UPDATE ${t} SET unsettled = ?, v = ?, h = ? WHERE id = ?`);
    this.deleteStmt = db.query(`DELETE FROM ${t} WHERE id = ?`);
    this.rangeStmt = db.query(`SELECT v FROM ${t} WHERE pk = ?1 AND sk >= ?2 AND (?3 IS NULL OR sk < ?3) ORDER BY sk LIMIT ?4`);
    this.ofKeyStmt = db.query(`SELECT id, part, sk, v, h FROM ${t} WHERE pk = ? ORDER BY sk`);
    // The entry only where no hash is kept (a row not rewritten since migration 7).
    this.bucketRowsStmt = db.query(`SELECT id, pk, sk, h, CASE WHEN h IS NULL THEN v END AS v FROM ${t} WHERE part = ? LIMIT ?`);
    this.byIdStmt = db.query(`SELECT v FROM ${t} WHERE id = ?`);
    this.pageStmt = db.query(`SELECT id, part, pk, sk, v FROM ${t} WHERE part >= ?1 AND part < ?2 AND (part, id) > (?3, ?4) ORDER BY part, id LIMIT ?5`);
    this.anyInRangeStmt = db.query(`SELECT 1 AS x FROM ${t} WHERE part >= ? AND part < ? LIMIT 1`);
    this.unsettledStmt = db.query(`SELECT id, v FROM ${t} WHERE unsettled IS NOT NULL AND id > ? ORDER BY id LIMIT ?`);
    this.allStmt = db.query(`SELECT v FROM ${t}`);
    this.bySortKeyStmt = db.query(`SELECT sk, v FROM ${t} ORDER BY sk LIMIT ?`);
    this.digestGetStmt = db.query(`SELECT n, x FROM sync_digest WHERE tbl = ? AND partition = ? AND bucket = ?`);
    this.digestPutStmt = db.query(`INSERT OR REPLACE INTO sync_digest (tbl, partition, bucket, n, x) VALUES (?, ?, ?, ?, ?)`);
    this.partitionDigestsStmt = db.query(`SELECT partition, n, x FROM sync_digest WHERE tbl = ? AND bucket = ${WHOLE_PARTITION}`);
    this.bucketDigestsStmt = db.query(`SELECT bucket, n, x FROM sync_digest WHERE tbl = ? AND partition = ? AND bucket >= 0`);
  }

  /** The stored bytes of (pk, sk), with the row's id and sync bucket. */
  get(pk: string, sk: string): PointRow | undefined {
    const row = this.getStmt.get(storedKey(pk), sk) as PointRow | null;
    if (row === null) return undefined;
    // Not counted towards READ_GC_BYTES: a point read's row is one row, freed with the entry
    // decoded from it (local-store.ts), and a paced full collection every few hundred GETs
    // would cost more CPU than the rows it frees.
    return row;
  }

  has(pk: string, sk: string): boolean {
    return this.hasStmt.get(storedKey(pk), sk) !== null;
  }

  /** Stored bytes of the rows of `pk` with start <= sk < end (end null: no bound), in sk order. */
  range(pk: string, start: string, end: string | null, limit: number): Uint8Array[] {
    return noteRows(this.rangeStmt.all(storedKey(pk), start, end, limit) as { v: Uint8Array }[]).map((r) => r.v);
  }

  /** The entries of `pk` with start <= sk < end, decoded, in sk order (lookups inside update hooks). */
  entries(pk: string, start = "", end: string | null = null): unknown[] {
    return this.range(pk, start, end, -1).map((v) => decodeEntry(v));
  }

  /** The entry stored at (pk, sk), decoded. */
  entry(pk: string, sk: string): unknown {
    const row = this.get(pk, sk);
    return row ? decodeEntry(row.v) : undefined;
  }

  /**
   * Writes (pk, sk) as `v` in sync bucket `part`. `old` is the row as get() returned it in this
   * transaction (undefined: none). The caller must be inside a transaction.
   */
  put(pk: string, sk: string, part: number, v: Uint8Array, unsettled: boolean, old: PointRow | undefined): void {
    const h = rowHash(pk, sk, v);
    if (old) {
      this.updateStmt.run(unsettled ? 1 : null, v, h, old.id);
      this.noteChange(old.part, 0, old.h ?? rowHash(pk, sk, old.v), h);
    } else {
      this.insertStmt.run(storedKey(pk), sk, part, unsettled ? 1 : null, v, h);
      this.noteChange(part, 1, h);
    }
  }

  /** Removes (pk, sk); returns its stored bytes, or undefined if absent. Inside a transaction. */
  delete(pk: string, sk: string): Uint8Array | undefined {
    const old = this.get(pk, sk);
    if (!old) return undefined;
    this.deleteStmt.run(old.id);
    this.noteChange(old.part, -1, old.h ?? rowHash(pk, sk, old.v));
    return old.v;
  }

  /** Removes every row of `pk`; returns their stored bytes in sk order. Inside a transaction. */
  takeAll(pk: string): Uint8Array[] {
    const rows = noteRows(this.ofKeyStmt.all(storedKey(pk)) as (PointRow & { sk: string })[]) as (PointRow & { sk: string })[];
    for (const r of rows) {
      this.deleteStmt.run(r.id);
      this.noteChange(r.part, -1, r.h ?? rowHash(pk, r.sk, r.v));
    }
    return rows.map((r) => r.v);
  }

  /**
   * XORs row hashes into (or out of) the digests of sync bucket `part` and of its partition;
   * `count` is the change in rows.
   */
  private noteChange(part: number, count: number, ...hashes: Uint8Array[]): void {
    for (const [partition, bucket] of digestSlots(part)) {
      const cur = this.digestGetStmt.get(this.name, partition, bucket) as { n: number; x: Uint8Array } | null;
      const x = new Uint8Array(ROW_HASH_BYTES);
      if (cur) x.set(cur.x);
      for (const h of hashes) xorInto(x, h);
      this.digestPutStmt.run(this.name, partition, bucket, (cur?.n ?? 0) + count, x);
    }
  }

  /**
   * The ids of up to `limit` rows of one sync bucket, each with its hash as digests count it
   * (hex): what anti-entropy compares row by row inside a bucket whose digest differs. Only the
   * kept hashes are read, not the entries (byId reads the few that differ).
   */
  bucketRows(bucket: number, limit: number): { id: number; hash: string; read: number }[] {
    const rows = this.bucketRowsStmt.all(bucket, limit) as { id: number; pk: string | Uint8Array; sk: string; h: Uint8Array | null; v: Uint8Array | null }[];
    // The hashes compared are garbage a moment later, as rows read are: they count towards
    // the paced collection too (ROW_HASH_COMPARED_BYTES).
    noteRowsRead(rows.length * ROW_HASH_COMPARED_BYTES);
    return rows.map((r) => {
      const h = r.h ?? rowHash(keyText(r.pk), r.sk, r.v!);
      if (r.v !== null) noteRowsRead(r.v.byteLength);
      // `read`: the entry's bytes read to hash it (a row not rewritten since migration 7).
      return { id: r.id, hash: Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString("hex"), read: r.v?.byteLength ?? 0 };
    });
  }

  /** The stored bytes of the row with this id, if it is still there. */
  byId(id: number): Uint8Array | undefined {
    const row = this.byIdStmt.get(id) as { v: Uint8Array } | null;
    if (row === null) return undefined;
    noteRowsRead(row.v.byteLength);
    return row.v;
  }

  /** One digest per partition, "" where this node holds nothing (at most 256 small rows read). */
  partitionDigests(partitions: number): string[] {
    const out = new Array<string>(partitions).fill("");
    for (const r of this.partitionDigestsStmt.all(this.name) as { partition: number; n: number; x: Uint8Array }[]) {
      if (r.partition < partitions) out[r.partition] = digestText(r.n, r.x);
    }
    return out;
  }

  /** The digest of each sync bucket of `partition` (at most 256 small rows read). */
  bucketDigests(partition: number): string[] {
    const out = new Array<string>(SYNC_BUCKETS).fill("");
    for (const r of this.bucketDigestsStmt.all(this.name, partition) as { bucket: number; n: number; x: Uint8Array }[]) out[r.bucket] = digestText(r.n, r.x);
    return out;
  }

  /** Up to `limit` rows with lo <= part < hi, in (part, id) order, after `after`. */
  page(lo: number, hi: number, after: { part: number; id: number } | undefined, limit: number): StoredRow[] {
    const rows = noteRows(this.pageStmt.all(after ? Math.max(lo, after.part) : lo, hi, after?.part ?? -1, after?.id ?? -1, limit) as (Omit<StoredRow, "pk"> & { pk: string | Uint8Array })[]) as (Omit<StoredRow, "pk"> & { pk: string | Uint8Array })[];
    return rows.map((r) => ({ ...r, pk: keyText(r.pk) }));
  }

  anyIn(lo: number, hi: number): boolean {
    return this.anyInRangeStmt.get(lo, hi) !== null;
  }

  /** Up to `limit` rows marked unsettled, in id order after `afterId`. */
  unsettled(afterId: number, limit: number): { id: number; v: Uint8Array }[] {
    return noteRows(this.unsettledStmt.all(afterId, limit) as { id: number; v: Uint8Array }[]);
  }

  /** Every row's stored bytes, streamed (one-time fills, tests). */
  iterate(): IterableIterator<Uint8Array> {
    const rows = this.allStmt.iterate() as IterableIterator<{ v: Uint8Array }>;
    return (function* () {
      for (const r of rows) yield r.v;
    })();
  }

  /** Up to `limit` rows in sort-key order (full-copy tables, whose partition key is ""). */
  bySortKey(limit: number): { sk: string; v: Uint8Array }[] {
    return this.bySortKeyStmt.all(limit) as { sk: string; v: Uint8Array }[];
  }
}
