// Versions (sharded by version uuid): the list of blocks that make up one object version
// or one multipart part. The header row carries the deletion flag; each block is its own
// row in version_block, so appending a block costs one small write whatever the size.
import type { Database } from "bun:sqlite";
import type { TableSchema } from "../table/schema";
import { decodeEntry } from "../db/entry-codec";
import { TableRows } from "../db/table-rows";

export type VersionBacklink = { kind: "object"; bucketId: string; key: string } | { kind: "upload"; uploadId: string; part: number };

export interface VersionEntry {
  uuid: string;
  deleted: boolean;
  backlink: VersionBacklink | null;
}

export interface VersionBlockEntry {
  uuid: string;
  /** Part number (1-based) for multipart objects, 0 for a plain PUT. */
  part: number;
  /** Offset of the block inside its part. */
  offset: number;
  /** BLAKE3 hash, hex. */
  hash: string;
  /** Plaintext size. */
  size: number;
}

export function blockSortKey(part: number, offset: number): string {
  return `${String(part).padStart(5, "0")}:${String(offset).padStart(13, "0")}`;
}

function tombstoneBlocks(db: Database, uuid: string, enqueue: (t: "block_ref", e: unknown) => void): void {
  for (const row of TableRows.of(db, "version_block").takeAll(uuid)) {
    const b = decodeEntry(row) as VersionBlockEntry;
    enqueue("block_ref", { hash: b.hash, version: uuid, deleted: true });
  }
}

export const versionSchema: TableSchema<VersionEntry> = {
  name: "version",
  replication: "sharded",
  partitionKey: (v) => v.uuid,
  sortKey: () => "",
  merge: (a, b) => ({ uuid: a.uuid, deleted: a.deleted || b.deleted, backlink: a.backlink ?? b.backlink }),
  // Its block rows and references were released when it was deleted.
  isTombstone: (v) => v.deleted,
  onMerge(old, _incoming, merged, ctx) {
    if (merged.deleted && !old?.deleted) tombstoneBlocks(ctx.db, merged.uuid, ctx.enqueue);
  },
};

export const versionBlockSchema: TableSchema<VersionBlockEntry> = {
  name: "version_block",
  replication: "sharded",
  partitionKey: (b) => b.uuid,
  sortKey: (b) => blockSortKey(b.part, b.offset),
  merge: (a) => a, // immutable facts: a block at (part, offset) of a version never changes
  onMerge(_old, _incoming, merged, ctx) {
    // A block that arrives after its version was deleted (an upload overtaken by a newer
    // PUT) must not keep its data alive.
    const header = TableRows.of(ctx.db, "version").entry(merged.uuid, "") as VersionEntry | undefined;
    if (header?.deleted) tombstoneBlocks(ctx.db, merged.uuid, ctx.enqueue);
  },
};
