// Multipart uploads: the upload header (sharded by bucket id, listed by key) and its parts
// (sharded by upload id). Each part is a version of its own; re-uploading a part number
// replaces it (newest timestamp wins).
//
// Closing an upload (complete or abort) records how it ended in its header (a retried Complete
// answers from it) and tombstones its part rows so that table GC collects them. The header and
// the parts live in different partitions (bucket id vs upload id), so the header's replicas
// cannot see the parts: each of them writes a "closed" marker row (part 0)
// into the upload's part partition, and each replica of that partition tombstones the parts it
// holds when the marker arrives, and any part that arrives after it.
import { TableRows } from "../db/table-rows";
import { adjustLocalCounts } from "./counter";
import type { Database } from "bun:sqlite";
import type { ChecksumAlgorithm, ChecksumType } from "../util/checksum";
import type { TableSchema } from "../table/schema";
import type { HeaderList, TagList } from "./object";
import type { EncryptionRecord } from "../block/encryption";

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
  /** Tags the completed object gets (x-amz-tagging at CreateMultipartUpload). */
  tags?: TagList;
  /** SSE-C: every part is sealed under this record's key, and so is the completed object. */
  encryption?: EncryptionRecord;
  /**
   * How the parts' checksums make the object's (x-amz-checksum-type at Create, or the
   * algorithm's default). Absent without an algorithm, and in rows stored before it was kept,
   * which were all COMPOSITE.
   */
  checksumType?: ChecksumType;
  /**
   * How a closed upload ended, so that a retried CompleteMultipartUpload (a client whose first
   * answer was lost) gets the same answer for as long as the closed row is kept (table GC delay).
   * Absent while open, and in rows closed before it was recorded. Always the last field.
   */
  outcome?: UploadOutcome;
}

/** A completed upload's ETag (hex, "-N") and checksum (base64; "-N" when COMPOSITE), or an abort. */
export type UploadOutcome = { kind: "completed"; etag: string; checksum?: string } | { kind: "aborted" };

/**
 * Join of two outcomes of one upload. An abort wins, as the aborted object version absorbs a
 * complete one (object.ts); two Completes racing with different part lists leave the greater
 * ETag, an arbitrary but deterministic choice, the same on every replica.
 */
export function joinOutcome(a: UploadOutcome | undefined, b: UploadOutcome | undefined): UploadOutcome | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  if (a.kind === "aborted") return a;
  if (b.kind === "aborted") return b;
  const ka = `${a.etag}/${a.checksum ?? ""}`;
  const kb = `${b.etag}/${b.checksum ?? ""}`;
  return ka >= kb ? a : b;
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
  /**
   * Its upload was closed: a tombstone for table GC. Absent in rows stored before the flag
   * existed, which read as live (see isLivePart).
   */
  deleted?: boolean;
}

/** Part number of the row that marks an upload closed (real parts are 1..10000). */
export const CLOSED_MARKER_PART = 0;

export function isLivePart(p: UploadPartEntry): boolean {
  return p.deleted !== true;
}

/** Keys never contain NUL (refused at the API), so it separates key and upload id in order. */
export function uploadSortKey(key: string, uploadId: string): string {
  return `${key}\u0000${uploadId}`;
}

export function partSortKey(part: number): string {
  return String(part).padStart(5, "0");
}

/** The same part row, deleted. `deleted` goes last so every replica stores one encoding. */
function partTombstone(p: UploadPartEntry): UploadPartEntry {
  const { deleted: _old, ...rest } = p;
  return { ...rest, deleted: true };
}

/** The marker every replica of a closed upload's header writes; identical on all of them. */
export function closedMarker(u: UploadEntry): UploadPartEntry {
  return { uploadId: u.uploadId, part: CLOSED_MARKER_PART, timestamp: u.timestamp, version: "", etag: "", size: 0, deleted: true };
}

const MARKER_SK = partSortKey(CLOSED_MARKER_PART);

export const uploadSchema: TableSchema<UploadEntry> = {
  name: "mpu",
  replication: "sharded",
  partitionKey: (u) => u.bucketId,
  sortKey: (u) => uploadSortKey(u.key, u.uploadId),
  merge(a, b) {
    const outcome = joinOutcome(a.outcome, b.outcome);
    // `outcome` goes last, so that every replica stores one encoding (table GC compares them).
    const { outcome: _old, ...rest } = a;
    const merged: UploadEntry = { ...rest, deleted: a.deleted || b.deleted };
    if (outcome !== undefined) merged.outcome = outcome;
    return merged;
  },
  // Completed or aborted: its part versions were released when it was closed.
  isTombstone: (u) => u.deleted,
  onMerge(old, _incoming, merged, ctx) {
    // Queued only once closed: Complete has read the parts (and copied their blocks) by then.
    if (merged.deleted && !old?.deleted) ctx.enqueue("mpu_part", closedMarker(merged));
    adjustLocalCounts(ctx.db, merged.bucketId, { objects: 0, bytes: 0, uploads: openCount(merged) - openCount(old) });
  },
  onRemove(stored, ctx) {
    adjustLocalCounts(ctx.db, stored.bucketId, { objects: 0, bytes: 0, uploads: -openCount(stored) });
  },
};

/** 1 for an upload that is still open, else 0: its weight in the bucket's upload count. */
export function openCount(u: UploadEntry | undefined): number {
  return u !== undefined && !u.deleted ? 1 : 0;
}

/** absent < false < true: a join of the flag in which an absent one (old rows) means live. */
function joinDeleted(a: boolean | undefined, b: boolean | undefined): boolean | undefined {
  if (a === true || b === true) return true;
  if (a === false || b === false) return false;
  return undefined;
}

function tombstoneLiveParts(db: Database, uploadId: string, enqueue: (t: "mpu_part", e: unknown) => void): void {
  for (const p of TableRows.of(db, "mpu_part").entries(uploadId, `${MARKER_SK}\u0000`) as UploadPartEntry[]) {
    if (isLivePart(p)) enqueue("mpu_part", partTombstone(p));
  }
}

export const uploadPartSchema: TableSchema<UploadPartEntry> = {
  name: "mpu_part",
  replication: "sharded",
  partitionKey: (p) => p.uploadId,
  sortKey: (p) => partSortKey(p.part),
  merge(a, b) {
    // The newest upload of the part number wins; the deletion flag is joined on its own.
    const newest = a.timestamp !== b.timestamp ? (a.timestamp > b.timestamp ? a : b) : a.version >= b.version ? a : b;
    const deleted = joinDeleted(a.deleted, b.deleted);
    if (newest.deleted === deleted) return newest;
    const { deleted: _old, ...rest } = newest;
    return { ...rest, deleted };
  },
  isTombstone: (p) => p.deleted === true,
  onMerge(old, incoming, merged, ctx) {
    if (merged.part === CLOSED_MARKER_PART) {
      if (old === undefined) tombstoneLiveParts(ctx.db, merged.uploadId, ctx.enqueue);
      return;
    }
    // The part a re-upload replaced no longer needs its data.
    for (const p of [old, incoming]) {
      if (p && p.version !== merged.version) ctx.enqueue("version", { uuid: p.version, deleted: true, backlink: null });
    }
    if (!isLivePart(merged)) {
      // Closed: its data goes too. finishUpload releases it as well, but not if its node died,
      // nor for a part stored after the close (an UploadPart racing with it).
      if (old === undefined || isLivePart(old)) ctx.enqueue("version", { uuid: merged.version, deleted: true, backlink: null });
    } else if (TableRows.of(ctx.db, "mpu_part").has(merged.uploadId, MARKER_SK)) {
      // Arrived after its upload was closed.
      ctx.enqueue("mpu_part", partTombstone(merged));
    }
  },
};
