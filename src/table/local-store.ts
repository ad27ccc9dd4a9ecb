// One node's copy of a table in sqlite: read, and merge-then-write entries with the
// table's CRDT join, running its update hook in the same transaction. Rows are stored and
// digested by db/table-rows.ts, in the binary row format of db/entry-codec.ts.
import type { Database, Statement } from "bun:sqlite";
import { createHash } from "node:crypto";
import type { GroupCommitter } from "../db/committer";
import { decodeEntry, encodeEntry, entryJson } from "../db/entry-codec";
import { releaseRow, SYNC_BUCKETS, TableRows, type StoredRow } from "../db/table-rows";
import type { CrdtTableName } from "../db/migrations";
import type { HookContext, TableSchema } from "./schema";
import { partitionOfEntry } from "./partition";
import { PARTITION_COUNT } from "../cluster/layout";
import { GcTodo, tableGcDelayMs } from "./gc";
import { readGraceMs } from "./read-grace";

export { SYNC_BUCKETS, type StoredRow };
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

/** A tombstone as one replica holds it: its key and its exact value. */
export interface TombstoneRef {
  pk: string;
  sk: string;
  /** The value's canonical JSON text (getEncoded); a replica deletes only an identical value. */
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
  /**
   * Told of every cascading write queued, with the clock time it is due at (0: now), from inside
   * the transaction that queues it: whoever drains the queue wakes for it once that commits.
   */
  onEnqueue?: (due: number) => void;
}

/** Where a page of a partition's rows ends: the next page starts after it. */
export type RowCursor = Pick<StoredRow, "part" | "id">;

export interface RangeQuery {
  /** Inclusive lower bound of the sort key. */
  start?: string;
  /** Exclusive upper bound of the sort key. */
  end?: string;
  limit: number;
}

export class LocalStore<E> {
  private readonly rows: TableRows;
  private readonly queueStmt: Statement;
  /**
   * Full-copy tables (keys, buckets, aliases) are small and read on every request: they
   * are cached whole in memory. This process is the only writer, so the cache stays exact.
   */
  private readonly cache: Map<string, E | null> | undefined;
  /** Set for sharded tables whose schema knows its tombstones: they are queued for table GC. */
  private readonly gcTodo: GcTodo | undefined;
  private readonly gcDelayMs: number;
  private readonly readGraceMs: number;
  private readonly onEnqueue: ((due: number) => void) | undefined;

  constructor(
    readonly schema: TableSchema<E>,
    private readonly db: Database,
    private readonly committer: GroupCommitter,
    private readonly now: () => number,
    options: LocalStoreOptions = {},
  ) {
    this.rows = TableRows.of(db, schema.name);
    this.queueStmt = db.query(`INSERT INTO insert_queue (tbl, v, due) VALUES (?, ?, ?)`);
    if (schema.replication === "full") this.cache = new Map();
    this.gcTodo = schema.replication === "sharded" && schema.isTombstone ? new GcTodo(db) : undefined;
    this.gcDelayMs = options.gcDelayMs ?? tableGcDelayMs();
    this.readGraceMs = options.readGraceMs ?? readGraceMs();
    this.onEnqueue = options.onEnqueue;
  }

  /**
   * The stored value as canonical JSON text: what table GC names a tombstone by across nodes
   * (delete-if-equal compares it), the same text on every node that stores the same value.
   */
  getEncoded(pk: string, sk: string): string | undefined {
    const row = this.rows.get(pk, sk);
    return row ? entryJson(row.v) : undefined;
  }

  get(pk: string, sk: string): E | undefined {
    const cacheKey = this.cache && `${pk}\u0000${sk}`;
    if (cacheKey !== undefined) {
      const hit = this.cache!.get(cacheKey);
      if (hit !== undefined) return hit ?? undefined;
    }
    const row = this.rows.get(pk, sk);
    // One row, which lives as long as its entry: an inline body is a view of it, not a copy,
    // and it is not handed back (a range read's rows are, many at a time).
    const value = row ? (decodeEntry(row.v, { rowKept: true }) as E) : undefined;
    // Never cache what a transaction has not committed yet: it could still roll back.
    if (cacheKey !== undefined && !this.db.inTransaction) this.cache!.set(cacheKey, value ?? null);
    return value;
  }

  range(pk: string, q: RangeQuery): E[] {
    return this.rows.range(pk, q.start ?? "", q.end ?? null, q.limit).map((v) => {
      const e = decodeEntry(v) as E;
      releaseRow(v);
      return e;
    });
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
      const stored = this.rows.get(pk, sk);
      const old = stored ? (decodeEntry(stored.v) as E) : undefined;
      const merged = old === undefined ? incoming : this.schema.merge(old, incoming);
      const encoded = encodeEntry(merged);
      if (stored === undefined || !sameBytes(encoded, stored.v)) {
        const part = stored?.part ?? syncBucketOf(partitionOfEntry(this.schema, pk), pk, sk);
        this.rows.put(pk, sk, part, encoded, this.schema.unsettled?.(merged) ?? false, stored);
        // Dropped rather than updated: if the transaction rolls back, the next read reloads.
        this.cache?.delete(`${pk}\u0000${sk}`);
        // Only a changed value is (re)queued: a repeated tombstone keeps its original due time.
        if (this.gcTodo && this.schema.isTombstone!(merged)) this.gcTodo.arm(this.schema.name, pk, sk, JSON.stringify(merged), this.now() + this.gcDelayMs);
      }
      this.schema.onMerge?.(old, incoming, merged, ctx);
      return merged;
    });
  }

  /**
   * One digest per partition ("" for an empty one), the first level of anti-entropy: replicas
   * compare these with one call per table and go down to sync buckets only where they differ.
   * Kept up to date by every write (db/table-rows.ts): no scan of the table.
   */
  partitionDigests(): string[] {
    return this.rows.partitionDigests(PARTITION_COUNT);
  }

  /**
   * Digest of each of the SYNC_BUCKETS sync buckets of a partition: two replicas compare
   * these and exchange only the buckets that differ. One pass over that partition's rows.
   */
  bucketDigests(partition: number): string[] {
    return this.rows.bucketDigests(partition);
  }

  /**
   * The rows of one sync bucket (ids), each with its row hash (the digests XOR these):
   * anti-entropy compares them with a peer's to send only the entries that differ, read by id
   * (storedById). Bounded: a bucket is 1/65536 of the table, and past MAX_SYNC_BUCKET_ENTRIES
   * this throws.
   */
  bucketRows(bucket: number): { id: number; hash: string; read: number }[] {
    const rows = this.rows.bucketRows(bucket, MAX_SYNC_BUCKET_ENTRIES + 1);
    if (rows.length > MAX_SYNC_BUCKET_ENTRIES) throw new Error(`sync bucket ${bucket} of ${this.schema.name} exceeds ${MAX_SYNC_BUCKET_ENTRIES} entries`);
    return rows;
  }

  /** The stored bytes of the row with this id (bucketRows), if it is still there. */
  storedById(id: number): Uint8Array | undefined {
    return this.rows.byId(id);
  }

  /** The entry stored as `v` (a row read by storedById). */
  decodeStored(v: Uint8Array): E {
    return decodeEntry(v) as E;
  }

  /** True when this node stores at least one entry of `partition`. */
  hasRowsInPartition(partition: number): boolean {
    return this.rows.anyIn(partition * SYNC_BUCKETS, (partition + 1) * SYNC_BUCKETS);
  }

  /**
   * Up to `limit` stored rows of `partition` in (part, id) order, starting after `after`
   * (from the first row when undefined): table offload reads a partition page by page.
   */
  partitionPage(partition: number, after: RowCursor | undefined, limit: number): StoredRow[] {
    return this.rows.page(partition * SYNC_BUCKETS, (partition + 1) * SYNC_BUCKETS, after, limit);
  }

  /** The entry a stored row holds. */
  decode(row: StoredRow): E {
    return decodeEntry(row.v) as E;
  }

  /**
   * Up to `limit` entries marked unsettled (schema.unsettled), after the one with id `afterId`,
   * each with its id to continue from: start-up repair reads these and nothing else.
   */
  unsettledEntries(afterId: number, limit: number): { id: number; entry: E }[] {
    return this.rows.unsettled(afterId, limit).map((r) => ({ id: r.id, entry: decodeEntry(r.v) as E }));
  }

  /**
   * Removes an entry only if it is still stored exactly as `v` (table offload: a value merged in
   * since it was read and pushed may not be on the new holders yet, so it stays for a later
   * pass). The caller must be inside a transaction.
   */
  deleteIfUnchangedInTransaction(pk: string, sk: string, v: Uint8Array): "deleted" | "absent" | "changed" {
    const stored = this.rows.get(pk, sk);
    if (stored === undefined) return "absent";
    if (!sameBytes(stored.v, v)) return "changed";
    this.deleteInTransaction(pk, sk);
    return "deleted";
  }

  private hookContext(): HookContext {
    return {
      db: this.db,
      enqueue: (table: CrdtTableName, entry: unknown, when = "now") => {
        const due = when === "now" ? 0 : this.now() + this.readGraceMs;
        this.queueStmt.run(table, JSON.stringify(entry), due);
        this.onEnqueue?.(due);
      },
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
    this.rows.delete(pk, sk);
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
    const row = this.rows.get(t.pk, t.sk);
    if (row === undefined) {
      this.gcTodo?.remove(this.schema.name, t.pk, t.sk);
      return "absent";
    }
    const entry = decodeEntry(row.v) as E;
    // A different value (something merged in since the sender read it) stays.
    if (JSON.stringify(entry) !== t.v) return { current: entry };
    // Never trust the sender alone to say that a value is garbage.
    if (this.schema.replication !== "sharded" || !this.schema.isTombstone?.(entry)) return "held";
    if (this.holdsTombstone(entry)) return "held";
    this.deleteInTransaction(t.pk, t.sk);
    return "deleted";
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}
