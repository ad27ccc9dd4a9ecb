// One node's copy of a table in sqlite: read, and merge-then-write entries with the
// table's CRDT join, running its update hook in the same transaction.
import type { Database, Statement } from "bun:sqlite";
import type { GroupCommitter } from "../db/committer";
import type { CrdtTableName } from "../db/migrations";
import type { HookContext, TableSchema } from "./schema";

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
  /**
   * Full-copy tables (keys, buckets, aliases) are small and read on every request: they
   * are cached whole in memory. This process is the only writer, so the cache stays exact.
   */
  private readonly cache: Map<string, E | null> | undefined;

  constructor(
    readonly schema: TableSchema<E>,
    private readonly db: Database,
    private readonly committer: GroupCommitter,
    private readonly now: () => number,
  ) {
    const t = `t_${schema.name}`;
    this.getStmt = db.query(`SELECT v FROM ${t} WHERE pk = ? AND sk = ?`);
    this.putStmt = db.query(`INSERT OR REPLACE INTO ${t} (pk, sk, v) VALUES (?, ?, ?)`);
    this.deleteStmt = db.query(`DELETE FROM ${t} WHERE pk = ? AND sk = ?`);
    this.rangeStmt = db.query(
      `SELECT v FROM ${t} WHERE pk = ?1 AND sk >= ?2 AND (?3 IS NULL OR sk < ?3) ORDER BY sk LIMIT ?4`,
    );
    this.queueStmt = db.query(`INSERT INTO insert_queue (tbl, v) VALUES (?, ?)`);
    if (schema.replication === "full") this.cache = new Map();
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

  /** Merges entries into the store; resolves once committed (group commit). */
  async apply(entries: readonly E[]): Promise<void> {
    await this.committer.write(() => this.applyInTransaction(entries));
  }

  /** Merges entries; the caller must be inside a transaction. Returns the stored values. */
  applyInTransaction(entries: readonly E[]): E[] {
    const ctx: HookContext = {
      db: this.db,
      enqueue: (table: CrdtTableName, entry: unknown) => this.queueStmt.run(table, JSON.stringify(entry)),
      now: this.now,
    };
    return entries.map((incoming) => {
      const pk = this.schema.partitionKey(incoming);
      const sk = this.schema.sortKey(incoming);
      const old = this.get(pk, sk);
      const merged = old === undefined ? incoming : this.schema.merge(old, incoming);
      const encoded = JSON.stringify(merged);
      if (old === undefined || encoded !== JSON.stringify(old)) {
        this.putStmt.run(pk, sk, encoded);
        // Dropped rather than updated: if the transaction rolls back, the next read reloads.
        this.cache?.delete(`${pk}\u0000${sk}`);
      }
      this.schema.onMerge?.(old, incoming, merged, ctx);
      return merged;
    });
  }

  /** Removes an entry outright: only for garbage that no CRDT merge can resurrect. */
  deleteInTransaction(pk: string, sk: string): void {
    this.deleteStmt.run(pk, sk);
    this.cache?.delete(`${pk}\u0000${sk}`);
  }
}
