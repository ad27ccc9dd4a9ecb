// Block references (sharded by block hash, next to the block itself): which versions use a
// block. The update hook keeps the local reference count that block GC reads.
import type { HookContext, TableSchema } from "../table/schema";
import { BLOCK_GC_DELAY_MS } from "../block/manager";

export interface BlockRefEntry {
  hash: string;
  version: string;
  deleted: boolean;
}


/** One reference fewer; at zero the block may be deleted after the GC delay. */
function releaseRef(hash: string, ctx: HookContext): void {
  ctx.db
    .query(
      `UPDATE block_rc SET refs = refs - 1,
         deletable_at = CASE WHEN refs - 1 <= 0 THEN ?2 ELSE NULL END WHERE hash = ?1`,
    )
    .run(hash, ctx.now() + BLOCK_GC_DELAY_MS);
}

export const blockRefSchema: TableSchema<BlockRefEntry> = {
  name: "block_ref",
  replication: "sharded",
  placement: "block-hash",
  partitionKey: (r) => r.hash,
  sortKey: (r) => r.version,
  merge: (a, b) => ({ hash: a.hash, version: a.version, deleted: a.deleted || b.deleted }),
  // A deleted reference is no longer counted in block_rc: removing it changes no count.
  isTombstone: (r) => r.deleted,
  onMerge(old, _incoming, merged, ctx) {
    const wasLive = old !== undefined && !old.deleted;
    const isLive = !merged.deleted;
    if (wasLive === isLive) return;
    if (isLive) {
      ctx.db
        .query(
          `INSERT INTO block_rc (hash, refs, deletable_at) VALUES (?, 1, NULL)
           ON CONFLICT(hash) DO UPDATE SET refs = refs + 1, deletable_at = NULL`,
        )
        .run(merged.hash);
    } else releaseRef(merged.hash, ctx);
  },
  // A live reference handed to its new holders (table offload) no longer counts here.
  onRemove(stored, ctx) {
    if (!stored.deleted) releaseRef(stored.hash, ctx);
  },
};
