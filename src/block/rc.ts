// The block_rc table: how many live references (block_ref rows) this node holds to each block,
// and from when a block that has none may be deleted. Every statement on block_rc is here: the
// block_ref table's hooks (model/block-ref.ts) count references with addRef / releaseRef, block
// GC deletes what has stayed at zero past BLOCK_GC_DELAY_MS, resync and orphan collection ask
// whether a block is needed or known.
import type { Database, Statement } from "bun:sqlite";
import type { BlockHash } from "../util/ids";

/** How long a block with no reference stays on disk before GC may delete it (Garage: 10 min). */
export const BLOCK_GC_DELAY_MS = 10 * 60 * 1000;

/** One live reference more: the block is no longer up for deletion. */
export function addRef(db: Database, hash: string): void {
  db.query(
    `INSERT INTO block_rc (hash, refs, deletable_at) VALUES (?, 1, NULL)
     ON CONFLICT(hash) DO UPDATE SET refs = refs + 1, deletable_at = NULL`,
  ).run(hash);
}

/** One reference fewer; at zero the block may be deleted BLOCK_GC_DELAY_MS after `now`. */
export function releaseRef(db: Database, hash: string, now: number): void {
  db.query(
    `UPDATE block_rc SET refs = refs - 1,
       deletable_at = CASE WHEN refs - 1 <= 0 THEN ?2 ELSE NULL END WHERE hash = ?1`,
  ).run(hash, now + BLOCK_GC_DELAY_MS);
}

export class BlockRc {
  /** A read first: the update (its own commit) runs only for the rare block awaiting GC. */
  private readonly pendingGc: Statement;
  private readonly postponeGc: Statement;
  private readonly refsOf: Statement;
  private readonly knownStmt: Statement;
  private readonly referencedPage: Statement;
  private readonly duePage: Statement;
  private readonly deleteDue: Statement;

  constructor(db: Database) {
    this.pendingGc = db.query(`SELECT 1 FROM block_rc WHERE hash = ? AND deletable_at IS NOT NULL`);
    this.postponeGc = db.query(`UPDATE block_rc SET deletable_at = max(deletable_at, ?2) WHERE hash = ?1 AND deletable_at IS NOT NULL`);
    this.refsOf = db.query(`SELECT refs FROM block_rc WHERE hash = ?`);
    this.knownStmt = db.query(`SELECT 1 FROM block_rc WHERE hash = ?`);
    this.referencedPage = db.query(`SELECT hash FROM block_rc WHERE refs > 0 AND hash > ? ORDER BY hash LIMIT ?`);
    this.duePage = db.query(`SELECT hash FROM block_rc WHERE deletable_at IS NOT NULL AND deletable_at <= ? AND refs <= 0 LIMIT ?`);
    this.deleteDue = db.query(`DELETE FROM block_rc WHERE hash = ? AND refs <= 0 AND deletable_at IS NOT NULL AND deletable_at <= ?`);
  }

  /** A block waiting for GC is about to be referenced again: its deletion waits until `until` at least. */
  postponeDeletion(hash: BlockHash, until: number): void {
    if (this.pendingGc.get(hash)) this.postponeGc.run(hash, until);
  }

  /** Whether a live reference here needs the block. */
  isReferenced(hash: BlockHash): boolean {
    const row = this.refsOf.get(hash) as { refs: number } | null;
    return row != null && row.refs > 0;
  }

  /** Whether any reference ever counted the block (a file without a row is an orphan). */
  isKnown(hash: BlockHash): boolean {
    return this.knownStmt.get(hash) != null;
  }

  /** Referenced blocks in hash order after `after`, at most `limit`. */
  referenced(after: string, limit: number): BlockHash[] {
    return (this.referencedPage.all(after, limit) as { hash: BlockHash }[]).map((r) => r.hash);
  }

  /** Blocks with no reference whose deletion time is at or before `now`, at most `limit`. */
  dueForDeletion(now: number, limit: number): BlockHash[] {
    return (this.duePage.all(now, limit) as { hash: BlockHash }[]).map((r) => r.hash);
  }

  /** Drops the block's row if it is still due (no reference arrived meanwhile); true if it did. */
  forgetIfDue(hash: BlockHash, now: number): boolean {
    return this.deleteDue.run(hash, now).changes > 0;
  }
}
