// Block references (sharded by block hash, next to the block itself): which versions use a
// block. The update hook keeps the local reference count that block GC reads.
import type { TableSchema } from "../table/schema";
import { addRef, releaseRef } from "../block/rc";

export interface BlockRefEntry {
  hash: string;
  version: string;
  deleted: boolean;
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
    if (isLive) addRef(ctx.db, merged.hash);
    else releaseRef(ctx.db, merged.hash, ctx.now());
  },
  // A live reference handed to its new holders (table offload) no longer counts here.
  onRemove(stored, ctx) {
    if (!stored.deleted) releaseRef(ctx.db, stored.hash, ctx.now());
  },
};
