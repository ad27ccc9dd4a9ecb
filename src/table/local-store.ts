// One node's copy of a table in sqlite: read, and merge-then-write entries with the
// table's CRDT join, running its update hook in the same transaction.
import type { Database, Statement } from "bun:sqlite";
import { createHash } from "node:crypto";
import type { GroupCommitter } from "../db/committer";
import type { CrdtTableName } from "../db/migrations";
import type { HookContext, TableSchema } from "./schema";
import { partitionOfEntry } from "./partition";
import { PARTITION_COUNT } from "../cluster/layout";
import { GcTodo, tableGcDelayMs } from "./gc";
import { readGraceMs } from "./read-grace";

/** Sync buckets per partition (a two-level summary: partition, then bucket). */
export const SYNC_BUCKETS = 256;
/** Most entries exchanged for one sync bucket in one message. */
export const MAX_SYNC_BUCKET_ENTRIES = 50_000;

/**
 * The sync bucket of an entry: its partition and a byte of the hash of its whole key, so a
 * partition's entries spread evenly over SYNC_BUCKETS buckets.
 */
export function syncBucketOf(partition: number, pk: string, sk: string): number {
  const spread = createHash("sha256").update(pk).update("\u0000").update(sk).digest()[0]!;
  return partition * SYNC_BUCKETS + spread;
}

/** A tombstone as one replica holds it: its key and its exact stored encoding. */
export interface TombstoneRef {
  pk: string;
  sk: string;
  /** The stored JSON encoding; a replica deletes only a byte-identical value. */
  v: string;
}

/**
 * What a replica did with a delete-if-equal request: deleted it, had nothing, kept it because
 * local state still needs it (or it is not a tombstone here), or holds a different value.
 */
export type DeleteOutcome = "deleted" | "absent" | "held" | { current: unknown };

export interface LocalStoreOptions {
  /** How long a tombstone waits before GC may collect it (default: tableGcDelayMs()). */
  gcDelayMs?: number;
  /** How long an "after-read-grace" cascade waits (default: readGraceMs()). */
  readGraceMs?: number;
}

/** A row as stored, with its sync bucket: what offloading reads, pushes and then removes. */
export interface StoredRow {
  part: number;
  pk: string;
  sk: string;
  /** The stored JSON encoding. */
  v: string;
}

/** Where a page of a partition's rows ends: the next page starts after it. */
export type RowCursor = Pick<StoredRow, "part" | "pk" | "sk">;

export interface RangeQuery {
  /** Inclusive lower bound of the sort key. */
  start?: string;
  /** Exclusive upper bound of the sort key. */
  end?: string;
  limit: number;
}

export class LocalStore<E> {
  private readonly getStmt: Statement;
  private readonly putStmt: Statement;
  private readonly deleteStmt: Statement;
  private readonly rangeStmt: Statement;
  private readonly queueStmt: Statement;
  private readonly bucketStmt: Statement;
  private readonly partitionStmt: Statement;
  private readonly tableStmt: Statement;
  private readonly pageStmt: Statement;
  private readonly anyInPartitionStmt: Statement;
  /** Bumped by every stored change: partition digests computed at the same count are reused. */
  private changes = 0;
  private digestCache: { changes: number; digests: string[] } | undefined;
  /**
   * Full-copy tables (keys, buckets, aliases) are small and read on every request: they
   * are cached whole in memory. This process is the only writer, so the cache stays exact.
   */
  private readonly cache: Map<string, E | null> | undefined;
  /** Set for sharded tables whose schema knows its tombstones: they are queued for table GC. */
  private readonly gcTodo: GcTodo | undefined;
  private readonly gcDelayMs: number;
  private readonly readGraceMs: number;

  constructor(
    readonly schema: TableSchema<E>,
    private readonly db: Database,
    private readonly committer: GroupCommitter,
    private readonly now: () => number,
    options: LocalStoreOptions = {},
  ) {
    const t = `t_${schema.name}`;
    this.getStmt = db.query(`SELECT v FROM ${t} WHERE pk = ? AND sk = ?`);
    this.putStmt = db.query(`INSERT OR REPLACE INTO ${t} (pk, sk, v, part) VALUES (?, ?, ?, ?)`);
    this.bucketStmt = db.query(`SELECT pk, sk, v FROM ${t} WHERE part = ? ORDER BY pk, sk LIMIT ?`);
    this.partitionStmt = db.query(`SELECT part, pk, sk, v FROM ${t} WHERE part >= ? AND part < ? ORDER BY part, pk, sk`);
    this.tableStmt = db.query(`SELECT part, pk, sk, v FROM ${t} ORDER BY part, pk, sk`);
    this.deleteStmt = db.query(`DELETE FROM ${t} WHERE pk = ? AND sk = ?`);
    // Both walk the (part) index, which also holds (pk, sk): no scan of other partitions. A page
    // starts its range at the cursor's sync bucket, so only rows of that one bucket are skipped.
    this.pageStmt = db.query(
      `SELECT part, pk, sk, v FROM ${t} WHERE part >= ?1 AND part < ?2 AND (part, pk, sk) > (?3, ?4, ?5) ORDER BY part, pk, sk LIMIT ?6`,
    );
    this.anyInPartitionStmt = db.query(`SELECT 1 AS x FROM ${t} WHERE part >= ? AND part < ? LIMIT 1`);
    this.rangeStmt = db.query(
      `SELECT v FROM ${t} WHERE pk = ?1 AND sk >= ?2 AND (?3 IS NULL OR sk < ?3) ORDER BY sk LIMIT ?4`,
    );
    this.queueStmt = db.query(`INSERT INTO insert_queue (tbl, v, due) VALUES (?, ?, ?)`);
    if (schema.replication === "full") this.cache = new Map();
    this.gcTodo = schema.replication === "sharded" && schema.isTombstone ? new GcTodo(db) : undefined;
    this.gcDelayMs = options.gcDelayMs ?? tableGcDelayMs();
    this.readGraceMs = options.readGraceMs ?? readGraceMs();
  }

  /** The stored JSON encoding of an entry, as delete-if-equal compares it. */
  getEncoded(pk: string, sk: string): string | undefined {
    return (this.getStmt.get(pk, sk) as { v: string } | null)?.v;
  }

  get(pk: string, sk: string): E | undefined {
    const cacheKey = this.cache && `${pk}\u0000${sk}`;
    if (cacheKey !== undefined) {
      const hit = this.cache!.get(cacheKey);
      if (hit !== undefined) return hit ?? undefined;
    }
    const row = this.getStmt.get(pk, sk) as { v: string } | null;
    const value = row ? (JSON.parse(row.v) as E) : undefined;
    // Never cache what a transaction has not committed yet: it could still roll back.
    if (cacheKey !== undefined && !this.db.inTransaction) this.cache!.set(cacheKey, value ?? null);
    return value;
  }

  range(pk: string, q: RangeQuery): E[] {
    const rows = this.rangeStmt.all(pk, q.start ?? "", q.end ?? null, q.limit) as { v: string }[];
    return rows.map((r) => JSON.parse(r.v) as E);
  }

  /** Merges entries into the store; resolves, once committed (group commit), to the merged values. */
  apply(entries: readonly E[]): Promise<E[]> {
    return this.committer.write(() => this.applyInTransaction(entries));
  }

  /** Merges entries; the caller must be inside a transaction. Returns the stored values. */
  applyInTransaction(entries: readonly E[]): E[] {
    const ctx = this.hookContext();
    return entries.map((incoming) => {
      const pk = this.schema.partitionKey(incoming);
      const sk = this.schema.sortKey(incoming);
      const old = this.get(pk, sk);
      const merged = old === undefined ? incoming : this.schema.merge(old, incoming);
      const encoded = JSON.stringify(merged);
      if (old === undefined || encoded !== JSON.stringify(old)) {
        this.putStmt.run(pk, sk, encoded, syncBucketOf(partitionOfEntry(this.schema, pk), pk, sk));
        this.changes++;
        // Dropped rather than updated: if the transaction rolls back, the next read reloads.
        this.cache?.delete(`${pk}\u0000${sk}`);
        // Only a changed value is (re)queued: a repeated tombstone keeps its original due time.
        if (this.gcTodo && this.schema.isTombstone!(merged)) this.gcTodo.arm(this.schema.name, pk, sk, encoded, this.now() + this.gcDelayMs);
      }
      this.schema.onMerge?.(old, incoming, merged, ctx);
      return merged;
    });
  }

  /**
   * One digest per partition ("" for an empty one), the first level of anti-entropy: replicas
   * compare these with one call per table and go down to sync buckets only where they differ.
   * One scan of the table, reused until something changes (an idle cluster scans nothing).
   */
  partitionDigests(): string[] {
    // Counted before the scan: a change committed during it makes the next call scan again.
    const changes = this.changes;
    if (this.digestCache?.changes === changes) return this.digestCache.digests;
    const digests = new Array<string>(PARTITION_COUNT).fill("");
    let current = -1;
    let hasher: ReturnType<typeof createHash> | undefined;
    const close = () => {
      if (hasher) digests[current] = hasher.digest("hex").slice(0, 32);
    };
    for (const r of this.tableStmt.iterate() as IterableIterator<{ part: number; pk: string; sk: string; v: string }>) {
      const partition = Math.floor(r.part / SYNC_BUCKETS);
      if (partition !== current) {
        close();
        current = partition;
        hasher = createHash("sha256");
      }
      hasher!.update(r.pk).update("\u0000").update(r.sk).update("\u0000").update(r.v).update("\u0001");
    }
    close();
    this.digestCache = { changes, digests };
    return digests;
  }

  /**
   * Digest of each of the SYNC_BUCKETS sync buckets of a partition: two replicas compare
   * these and exchange only the buckets that differ.
   */
  bucketDigests(partition: number): string[] {
    // Hashers only for buckets that hold something: most buckets of a small table are empty.
    const hashers: (ReturnType<typeof createHash> | undefined)[] = new Array(SYNC_BUCKETS);
    const rows = this.partitionStmt.iterate(partition * SYNC_BUCKETS, (partition + 1) * SYNC_BUCKETS) as IterableIterator<{ part: number; pk: string; sk: string; v: string }>;
    for (const r of rows) (hashers[r.part % SYNC_BUCKETS] ??= createHash("sha256")).update(r.pk).update("\u0000").update(r.sk).update("\u0000").update(r.v).update("\u0001");
    return Array.from({ length: SYNC_BUCKETS }, (_, b) => hashers[b]?.digest("hex").slice(0, 32) ?? "");
  }

  /** Every entry of one sync bucket (bounded: a bucket is 1/65536 of the table). */
  bucketEntries(bucket: number): E[] {
    const rows = this.bucketStmt.all(bucket, MAX_SYNC_BUCKET_ENTRIES + 1) as { v: string }[];
    if (rows.length > MAX_SYNC_BUCKET_ENTRIES) throw new Error(`sync bucket ${bucket} of ${this.schema.name} exceeds ${MAX_SYNC_BUCKET_ENTRIES} entries`);
    return rows.map((r) => JSON.parse(r.v) as E);
  }

  /** True when this node stores at least one entry of `partition`. */
  hasRowsInPartition(partition: number): boolean {
    return this.anyInPartitionStmt.get(partition * SYNC_BUCKETS, (partition + 1) * SYNC_BUCKETS) !== null;
  }

  /**
   * Up to `limit` stored rows of `partition` in (part, pk, sk) order, starting after `after`
   * (from the first row when undefined): table offload reads a partition page by page.
   */
  partitionPage(partition: number, after: RowCursor | undefined, limit: number): StoredRow[] {
    const lo = partition * SYNC_BUCKETS;
    const from = after ? Math.max(lo, after.part) : lo;
    return this.pageStmt.all(from, lo + SYNC_BUCKETS, after?.part ?? -1, after?.pk ?? "", after?.sk ?? "", limit) as StoredRow[];
  }

  /**
   * Removes an entry only if it is still stored exactly as `v` (table offload: a value merged in
   * since it was read and pushed may not be on the new holders yet, so it stays for a later
   * pass). The caller must be inside a transaction.
   */
  deleteIfUnchangedInTransaction(pk: string, sk: string, v: string): "deleted" | "absent" | "changed" {
    const stored = this.getEncoded(pk, sk);
    if (stored === undefined) return "absent";
    if (stored !== v) return "changed";
    this.deleteInTransaction(pk, sk);
    return "deleted";
  }

  private hookContext(): HookContext {
    return {
      db: this.db,
      enqueue: (table: CrdtTableName, entry: unknown, when = "now") =>
        this.queueStmt.run(table, JSON.stringify(entry), when === "now" ? 0 : this.now() + this.readGraceMs),
      now: this.now,
    };
  }

  /**
   * Removes an entry outright: only for garbage that no CRDT merge can resurrect, or for an
   * entry every node now responsible for it holds (table offload).
   */
  deleteInTransaction(pk: string, sk: string): void {
    if (this.schema.onRemove) {
      const stored = this.get(pk, sk);
      if (stored !== undefined) this.schema.onRemove(stored, this.hookContext());
    }
    this.deleteStmt.run(pk, sk);
    this.changes++;
    this.cache?.delete(`${pk}\u0000${sk}`);
    this.gcTodo?.remove(this.schema.name, pk, sk);
  }

  /** True while other local state still needs this tombstone (schema.holdTombstone). */
  holdsTombstone(entry: E): boolean {
    return this.schema.holdTombstone?.(entry, this.db) ?? false;
  }

  /** Table GC on this replica: removes each tombstone only if it is stored exactly as given. */
  deleteIfEqual(items: readonly TombstoneRef[]): Promise<DeleteOutcome[]> {
    return this.committer.write(() => items.map((t) => this.deleteIfEqualInTransaction(t)));
  }

  /** As deleteIfEqual; the caller must be inside a transaction. */
  deleteIfEqualInTransaction(t: TombstoneRef): DeleteOutcome {
    const stored = this.getEncoded(t.pk, t.sk);
    if (stored === undefined) {
      this.gcTodo?.remove(this.schema.name, t.pk, t.sk);
      return "absent";
    }
    // A different value (something merged in since the sender read it) stays.
    if (stored !== t.v) return { current: JSON.parse(stored) };
    const entry = JSON.parse(stored) as E;
    // Never trust the sender alone to say that a value is garbage.
    if (this.schema.replication !== "sharded" || !this.schema.isTombstone?.(entry)) return "held";
    if (this.holdsTombstone(entry)) return "held";
    this.deleteInTransaction(t.pk, t.sk);
    return "deleted";
  }
}
