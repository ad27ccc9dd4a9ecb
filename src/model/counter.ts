// Per-bucket counts (objects, bytes, open multipart uploads), as Garage's bucket_object_counter.
//
// A bucket's objects all live in one partition (the object table is keyed by bucket id), so
// each node holding that partition can count them exactly from its own copy. It keeps that
// count in the local table bucket_counts, changed by the object and upload update hooks in the
// same transaction as the entries themselves (so a crash can never leave them apart), and
// publishes it under its own node id in the sharded bucket_counter table. A reader takes the
// values of the nodes that serve reads of the partition and keeps the largest: replicas agree
// once synced, and the largest is the safe side for quotas.
import type { Database, Statement } from "bun:sqlite";
import type { TableSchema } from "../table/schema";

export interface BucketCounts {
  objects: number;
  bytes: number;
  /** Multipart uploads created and neither completed nor aborted. */
  uploads: number;
}

export const ZERO_COUNTS: BucketCounts = { objects: 0, bytes: 0, uploads: 0 };

/** One node's published counts of a bucket; the newest publication of each node wins. */
export interface PublishedCounts extends BucketCounts {
  ts: number;
}

export interface BucketCounterEntry {
  bucketId: string;
  /** node id -> that node's counts */
  nodes: Record<string, PublishedCounts>;
}

function newerCounts(a: PublishedCounts, b: PublishedCounts): PublishedCounts {
  if (a.ts !== b.ts) return a.ts > b.ts ? a : b;
  // Same timestamp from the same node means the same publication; keep a deterministic pick.
  return JSON.stringify(a) >= JSON.stringify(b) ? a : b;
}

export const bucketCounterSchema: TableSchema<BucketCounterEntry> = {
  name: "bucket_counter",
  replication: "sharded",
  partitionKey: (c) => c.bucketId,
  sortKey: () => "",
  merge(a, b) {
    // Keys in sorted order: replicas that merged in different orders store the same bytes,
    // which read repair and anti-entropy compare.
    const ids = [...new Set([...Object.keys(a.nodes), ...Object.keys(b.nodes)])].sort();
    const nodes: Record<string, PublishedCounts> = {};
    for (const id of ids) {
      const x = a.nodes[id];
      const y = b.nodes[id];
      nodes[id] = x && y ? newerCounts(x, y) : (x ?? y)!;
    }
    return { bucketId: a.bucketId, nodes };
  },
};

/** The counts a reader trusts: the largest value of each field among `trusted` nodes. */
export function countsOf(entry: BucketCounterEntry | undefined, trusted: readonly string[]): BucketCounts {
  const out = { ...ZERO_COUNTS };
  if (!entry) return out;
  for (const id of trusted) {
    const c = entry.nodes[id];
    if (!c) continue;
    out.objects = Math.max(out.objects, c.objects);
    out.bytes = Math.max(out.bytes, c.bytes);
    out.uploads = Math.max(out.uploads, c.uploads);
  }
  return out;
}

/** Adds a change to this node's own counts of a bucket; call inside the write transaction. */
export function adjustLocalCounts(db: Database, bucketId: string, delta: BucketCounts): void {
  if (delta.objects === 0 && delta.bytes === 0 && delta.uploads === 0) return;
  let stmt = adjustStatements.get(db);
  if (stmt === undefined) {
    stmt = db.query(
      `INSERT INTO bucket_counts (bucket_id, objects, bytes, uploads) VALUES (?1, ?2, ?3, ?4)
       ON CONFLICT (bucket_id) DO UPDATE SET objects = objects + ?2, bytes = bytes + ?3, uploads = uploads + ?4`,
    );
    adjustStatements.set(db, stmt);
  }
  stmt.run(bucketId, delta.objects, delta.bytes, delta.uploads);
}

/** adjustLocalCounts runs in every object write: its statement is looked up once per database, not by its text. */
const adjustStatements = new WeakMap<Database, Statement>();

/** This node's own counts of every bucket it has stored something of (or of one bucket). */
export function localCounts(db: Database, bucketId?: string): Map<string, BucketCounts> {
  const rows = (
    bucketId === undefined
      ? db.query(`SELECT bucket_id, objects, bytes, uploads FROM bucket_counts`).all()
      : db.query(`SELECT bucket_id, objects, bytes, uploads FROM bucket_counts WHERE bucket_id = ?`).all(bucketId)
  ) as {
    bucket_id: string;
    objects: number;
    bytes: number;
    uploads: number;
  }[];
  return new Map(rows.map((r) => [r.bucket_id, { objects: r.objects, bytes: r.bytes, uploads: r.uploads }]));
}
