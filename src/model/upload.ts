// Multipart uploads: the upload header (sharded by bucket id, listed by key) and its parts
// (sharded by upload id). Each part is a version of its own; re-uploading a part number
// replaces it (newest timestamp wins).
import type { ChecksumAlgorithm } from "../util/checksum";
import type { TableSchema } from "../table/schema";
import type { HeaderList } from "./object";

export interface UploadEntry {
  bucketId: string;
  key: string;
  uploadId: string;
  /** Same timestamp as the object version the upload will complete into. */
  timestamp: number;
  /** Completed or aborted: no more parts accepted. */
  deleted: boolean;
  headers: HeaderList;
  checksumAlgorithm?: ChecksumAlgorithm;
}

export interface UploadPartEntry {
  uploadId: string;
  part: number;
  timestamp: number;
  version: string;
  etag: string;
  size: number;
  /** base64 checksum of the part, when the upload declared an algorithm. */
  checksum?: string;
}

/** Keys never contain NUL (refused at the API), so it separates key and upload id in order. */
export function uploadSortKey(key: string, uploadId: string): string {
  return `${key}\u0000${uploadId}`;
}

export function partSortKey(part: number): string {
  return String(part).padStart(5, "0");
}

export const uploadSchema: TableSchema<UploadEntry> = {
  name: "mpu",
  replication: "sharded",
  partitionKey: (u) => u.bucketId,
  sortKey: (u) => uploadSortKey(u.key, u.uploadId),
  merge: (a, b) => ({ ...a, deleted: a.deleted || b.deleted }),
  // Completed or aborted: its part versions were released when it was closed.
  isTombstone: (u) => u.deleted,
};

export const uploadPartSchema: TableSchema<UploadPartEntry> = {
  name: "mpu_part",
  replication: "sharded",
  partitionKey: (p) => p.uploadId,
  sortKey: (p) => partSortKey(p.part),
  merge(a, b) {
    if (a.timestamp !== b.timestamp) return a.timestamp > b.timestamp ? a : b;
    return a.version >= b.version ? a : b;
  },
  onMerge(old, incoming, merged, ctx) {
    // The part a re-upload replaced no longer needs its data.
    for (const p of [old, incoming]) {
      if (p && p.version !== merged.version) ctx.enqueue("version", { uuid: p.version, deleted: true, backlink: null });
    }
  },
};
