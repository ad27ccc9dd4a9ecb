// The metadata schema, as an append-only list of migrations (index + 1 = schema version).
// Never edit a released migration: add a new one.
import type { Database } from "bun:sqlite";
import { encodeEntry } from "./entry-codec";
import { createTableSql, digestSlots, rowHash, storedKey, SYNC_DIGEST_SQL } from "./table-rows";

/** A migration that needs code, not only SQL: it runs inside the migration's transaction. */
export interface DataMigration {
  run(db: Database): void;
  /** It rewrites whole tables: the database file is compacted (VACUUM) afterwards. */
  rewritesTables?: boolean;
}
export type Migration = string | DataMigration;

/**
 * The first layout of a CRDT table (migrations 1 and 3; migration 6 replaced it): partition
 * key, sort key, JSON-encoded entry, and the sync bucket (partition << 8 | a hash byte of the
 * whole key) that anti-entropy compares.
 */
const crdtTable = (name: string) =>
  `CREATE TABLE t_${name} (pk TEXT NOT NULL, sk TEXT NOT NULL, v TEXT NOT NULL, part INTEGER NOT NULL, PRIMARY KEY (pk, sk)) WITHOUT ROWID;
   CREATE INDEX i_${name}_sync ON t_${name} (part);`;

/** The CRDT tables of migration 1; frozen, as that migration is released. */
const FIRST_RELEASE_TABLES = [
  "bucket", "bucket_alias", "key", // full copy
  "object", "version", "version_block", "block_ref", "mpu", "mpu_part", // sharded
] as const;

export const CRDT_TABLES = [
  ...FIRST_RELEASE_TABLES,
  "bucket_counter", // sharded, migration 3
] as const;
export type CrdtTableName = (typeof CRDT_TABLES)[number];

/** Text that marks, in a JSON row of t_object, a version start-up repair must look at. */
const UNSETTLED_JSON_MARKS = ['"kind":"uploading","multipart":false', '"kind":"pending"', '"kind":"proposed"'];

/**
 * Migration 6: every CRDT table from JSON rows in a WITHOUT ROWID table to the layout of
 * db/table-rows.ts (binary entries, rowid order, key and sync-bucket indexes, unsettled marks,
 * partition and sync-bucket digests). Rows are copied in key order, so ids follow keys as a sequential
 * load would have made them; indexes are built after the copy (sorted, packed pages).
 * The unsettled marks are what start-up repair searched the JSON for until then.
 */
function binaryRows(db: Database): void {
  db.exec(SYNC_DIGEST_SQL);
  for (const name of CRDT_TABLES) {
    db.exec(`ALTER TABLE t_${name} RENAME TO t_${name}_json`);
    const [create, ...indexes] = createTableSql(name).split(";").map((s) => s.trim()).filter(Boolean);
    db.exec(create!);
    const insert = db.query(`INSERT INTO t_${name} (pk, sk, part, unsettled, v) VALUES (?, ?, ?, ?, ?)`);
    const digests = new Map<string, { partition: number; bucket: number; n: number; x: Uint8Array }>();
    for (const r of db.query(`SELECT pk, sk, part, v FROM t_${name}_json ORDER BY pk, sk`).iterate() as IterableIterator<{ pk: string; sk: string; part: number; v: string }>) {
      const v = encodeEntry(JSON.parse(r.v));
      const unsettled = name === "object" && UNSETTLED_JSON_MARKS.some((m) => r.v.includes(m));
      insert.run(storedKey(r.pk), r.sk, r.part, unsettled ? 1 : null, v);
      const h = rowHash(r.pk, r.sk, v);
      for (const [partition, bucket] of digestSlots(r.part)) {
        let d = digests.get(`${partition}/${bucket}`);
        if (!d) digests.set(`${partition}/${bucket}`, (d = { partition, bucket, n: 0, x: new Uint8Array(h.length) }));
        d.n++;
        for (let i = 0; i < h.length; i++) d.x[i]! ^= h[i]!;
      }
    }
    db.exec(`DROP TABLE t_${name}_json`);
    for (const sql of indexes) db.exec(sql);
    const putDigest = db.query(`INSERT INTO sync_digest (tbl, partition, bucket, n, x) VALUES (?, ?, ?, ?, ?)`);
    for (const d of digests.values()) putDigest.run(name, d.partition, d.bucket, d.n, d.x);
  }
}

export const MIGRATIONS: readonly Migration[] = [
  // 1: first release
  [
    ...FIRST_RELEASE_TABLES.map(crdtTable),
    // Local reference counts of blocks, derived from t_block_ref by its update hook.
    `CREATE TABLE block_rc (hash TEXT PRIMARY KEY, refs INTEGER NOT NULL, deletable_at INTEGER) WITHOUT ROWID;`,
    `CREATE INDEX block_rc_deletable ON block_rc (deletable_at) WHERE deletable_at IS NOT NULL;`,
    // Blocks this node should hold but may lack: fetched from peers, with backoff on failure.
    `CREATE TABLE block_resync (hash TEXT PRIMARY KEY, next_try INTEGER NOT NULL, errors INTEGER NOT NULL DEFAULT 0, last_error TEXT) WITHOUT ROWID;`,
    `CREATE INDEX block_resync_due ON block_resync (next_try);`,
    // Cascading writes decided inside a transaction, applied later through the table layer.
    `CREATE TABLE insert_queue (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, v TEXT NOT NULL);`,
    // Node-local settings: node id, first-start markers.
    `CREATE TABLE node_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;`,
  ].join("\n"),
  // 2: tombstones waiting for table GC (table/gc.ts): one row per entry whose stored value is a
  // tombstone, with a hash of that value and when to try next.
  [
    `CREATE TABLE table_gc_todo (tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL, vhash TEXT NOT NULL, due INTEGER NOT NULL, tries INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tbl, pk, sk)) WITHOUT ROWID;`,
    `CREATE INDEX table_gc_todo_due ON table_gc_todo (due);`,
  ].join("\n"),
  // 3: per-bucket counts. bucket_counts is this node's own count of the objects, bytes and
  // open multipart uploads it stores, kept by the object and upload update hooks (filled from
  // the tables once, at first start after the upgrade); t_bucket_counter holds every storage
  // node's published counts, a sharded CRDT table read by `bucket info` and quotas.
  [
    crdtTable("bucket_counter"),
    `CREATE TABLE bucket_counts (bucket_id TEXT PRIMARY KEY, objects INTEGER NOT NULL, bytes INTEGER NOT NULL, uploads INTEGER NOT NULL) WITHOUT ROWID;`,
  ].join("\n"),
  // 4: a cascading write may wait (a superseded version's block list is kept for the reads
  // that already resolved it): `due` is when it may be applied, 0 = at once.
  [
    `ALTER TABLE insert_queue ADD COLUMN due INTEGER NOT NULL DEFAULT 0;`,
    `CREATE INDEX insert_queue_due ON insert_queue (due, id);`,
  ].join("\n"),
  // 5: this node's Paxos acceptor state per key for conditional writes (table/cas-register.ts):
  // the highest ballot promised and the last value accepted, both JSON. Local only: never
  // merged or synced between nodes.
  `CREATE TABLE cas_acceptor (pk TEXT NOT NULL, sk TEXT NOT NULL, promised TEXT, accepted TEXT, PRIMARY KEY (pk, sk)) WITHOUT ROWID;`,
  // 6: binary rows, ids in write order, unsettled marks, kept digests (binaryRows).
  { run: binaryRows, rewritesTables: true },
  // 7: each row's hash kept beside it (db/table-rows.ts, column h); rows keep NULL until rewritten.
  CRDT_TABLES.map((name) => `ALTER TABLE t_${name} ADD COLUMN h BLOB;`).join("\n"),
];
