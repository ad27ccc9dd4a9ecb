// Objects (sharded by bucket id): each key holds a list of versions. A version becomes
// visible only in the `complete` state, or, while `pending`, once its one block is known to be
// on a write quorum (model/pending.ts); the merge keeps the newest complete version and
// anything newer still uploading or pending, and drops the rest (their data is then released).
// A complete version's data never changes; its tags are a last-writer-wins register beside it.
import { adjustLocalCounts, type BucketCounts } from "./counter";
import type { ChecksumAlgorithm, ChecksumType } from "../util/checksum";
import type { EncryptionRecord } from "../block/encryption";
import type { TableSchema } from "../table/schema";
import { TableRows } from "../db/table-rows";
import { compareBallots, type Ballot } from "../table/cas-register";
import { assert } from "../util/assert";
import { uploadSortKey, type UploadEntry } from "./upload";

/** Stored response headers: content-type, cache-control, ..., x-amz-meta-*. Lowercase names. */
export type HeaderList = [string, string][];

export interface ObjectChecksum {
  algorithm: ChecksumAlgorithm;
  /** base64 */
  value: string;
  /** COMPOSITE checksums of multipart uploads end in "-N"; a PutObject's is FULL_OBJECT. */
  type: ChecksumType;
}

export interface ObjectMeta {
  size: number;
  etag: string;
  headers: HeaderList;
  checksum?: ObjectChecksum;
  /**
   * SSE-C: the object is stored sealed under a key derived from the customer's key, which is
   * never stored (the record holds a salt and a MAC to recognise it).
   */
  encryption?: EncryptionRecord;
  /** Part sizes, for GET ?partNumber=N on multipart objects. */
  parts?: number[];
  /**
   * Each part's checksum (base64, of `checksum.algorithm`), beside `parts`: GET ?partNumber=N
   * and GetObjectAttributes answer them. Absent when the upload had no checksum algorithm, and
   * in objects completed before they were kept.
   */
  partChecksums?: string[];
}

export type ObjectData =
  | { kind: "deleteMarker" }
  | { kind: "inline"; meta: ObjectMeta; base64: string }
  | {
      kind: "blocks";
      meta: ObjectMeta;
      /**
       * The hash of the object's only block, when it has one block: a GET then reads it with
       * no version-block lookup (one round trip fewer across sites; Garage's FirstBlock).
       */
      singleBlock?: string;
    };

/** An object's tags, in the order they were given (S3 keys are unique within a set). */
export type TagList = [string, string][];

/**
 * The tags of a complete version: PutObjectTagging and DeleteObjectTagging rewrite them after
 * the data is written, so they merge on their own clock. Absent: no tags ever set.
 */
export interface TagRegister {
  timestamp: number;
  set: TagList;
}

/** The data of a version stored as one block, named in the entry itself. */
export type SingleBlockData = { kind: "blocks"; meta: ObjectMeta; singleBlock: string };

export type VersionState =
  | { kind: "uploading"; multipart: boolean; headers: HeaderList; checksumAlgorithm?: ChecksumAlgorithm; uploader: string }
  /**
   * A one-block PUT's whole version, written in the same round trip as its block (model/
   * object-writer.ts): invisible as it is, served once its block is seen on a write quorum of
   * its nodes (model/pending.ts), and then rewritten as `complete` with the same data and tags.
   */
  | { kind: "pending"; data: SingleBlockData; tags?: TagRegister }
  /**
   * A conditional write's version as an acceptor of the key's register accepted it (model/
   * conditional-write.ts): invisible as it is, served once the register shows it chosen (model/
   * pending.ts), then rewritten as `complete`. Copies merge to the highest ballot.
   */
  | { kind: "proposed"; data: ObjectData; tags?: TagRegister; ballot: Ballot }
  | { kind: "complete"; data: ObjectData; tags?: TagRegister }
  | { kind: "aborted" };

export interface ObjectVersion {
  uuid: string;
  timestamp: number;
  state: VersionState;
}

/** A version in the pending state. */
export type PendingVersion = ObjectVersion & { state: Extract<VersionState, { kind: "pending" }> };
/** A complete version, as an acceptor of the key's register records that it accepted it at `ballot`. */
export function proposedVersion(v: ObjectVersion, ballot: Ballot): ProposedVersion {
  assert(v.state.kind === "complete", "the register's values are complete versions");
  const { data, tags } = v.state;
  return { uuid: v.uuid, timestamp: v.timestamp, state: tags === undefined ? { kind: "proposed", data, ballot } : { kind: "proposed", data, tags, ballot } };
}

/** A version in the proposed state. */
export type ProposedVersion = ObjectVersion & { state: Extract<VersionState, { kind: "proposed" }> };

export interface ObjectEntry {
  bucketId: string;
  key: string;
  versions: ObjectVersion[];
}

// A version is pending (one-block PUT) or proposed (conditional write), never both: same rank.
const STATE_RANK = { uploading: 0, pending: 1, proposed: 1, complete: 2, aborted: 3 } as const;

/** The newer register; on a tie the larger set (by its JSON), so every replica picks the same. */
function mergeTags(a: TagRegister | undefined, b: TagRegister | undefined): TagRegister | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  if (a.timestamp !== b.timestamp) return a.timestamp > b.timestamp ? a : b;
  return JSON.stringify(a.set) >= JSON.stringify(b.set) ? a : b;
}

type DataState = Extract<VersionState, { kind: "pending" | "complete" }>;

const holdsData = (s: VersionState): s is DataState => s.kind === "pending" || s.kind === "complete";

function mergeVersion(a: ObjectVersion, b: ObjectVersion): ObjectVersion {
  if (a.state.kind === "proposed" && b.state.kind === "proposed") return compareBallots(a.state.ballot, b.state.ballot) >= 0 ? a : b;
  // aborted absorbs complete absorbs pending absorbs uploading. Copies of one version that
  // hold its data (pending, complete) hold the same data (written once, by construction) and
  // maybe different tags: the newer tags win.
  if (holdsData(a.state) && holdsData(b.state)) {
    const winner = STATE_RANK[b.state.kind] > STATE_RANK[a.state.kind] ? b : a;
    const tags = mergeTags(a.state.tags, b.state.tags);
    if (tags === undefined) return winner;
    // Rebuilt with a fixed field order: replicas that merged in different orders must store
    // the same bytes (read repair and anti-entropy compare encodings).
    const state = winner.state as DataState;
    return {
      uuid: a.uuid,
      timestamp: a.timestamp,
      state:
        state.kind === "complete"
          ? { kind: "complete", data: state.data, tags: { timestamp: tags.timestamp, set: tags.set } }
          : { kind: "pending", data: state.data, tags: { timestamp: tags.timestamp, set: tags.set } },
    };
  }
  return STATE_RANK[b.state.kind] > STATE_RANK[a.state.kind] ? b : a;
}

/** The tags of a complete version (none when never set or deleted). */
export function versionTags(v: ObjectVersion): TagList {
  return v.state.kind === "complete" ? (v.state.tags?.set ?? []) : [];
}

function compareVersions(a: ObjectVersion, b: ObjectVersion): number {
  return a.timestamp - b.timestamp || (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0);
}

/** A version that shows no data and can never become visible again. */
function isDeletion(v: ObjectVersion): boolean {
  return v.state.kind === "aborted" || (v.state.kind === "complete" && v.state.data.kind === "deleteMarker");
}

/**
 * Keeps the newest complete version and every newer version (uploading, pending); drops older
 * ones. A pending version is not complete here: until it is, the version it replaces must stay.
 */
export function pruneVersions(versions: ObjectVersion[]): ObjectVersion[] {
  const sorted = [...versions].sort(compareVersions);
  let lastComplete = -1;
  for (let i = sorted.length - 1; i >= 0; i--) {
    if (sorted[i]!.state.kind === "complete") {
      lastComplete = i;
      break;
    }
  }
  return lastComplete > 0 ? sorted.slice(lastComplete) : sorted;
}

export const objectSchema: TableSchema<ObjectEntry> = {
  name: "object",
  replication: "sharded",
  partitionKey: (o) => o.bucketId,
  sortKey: (o) => o.key,
  merge(a, b) {
    const byUuid = new Map<string, ObjectVersion>();
    for (const v of [...a.versions, ...b.versions]) {
      const prev = byUuid.get(v.uuid);
      byUuid.set(v.uuid, prev ? mergeVersion(prev, v) : v);
    }
    return { bucketId: a.bucketId, key: a.key, versions: pruneVersions([...byUuid.values()]) };
  },
  // What start-up repair (model/repair.ts) looks at: a PUT being received, a version pending or proposed.
  unsettled: (o) => o.versions.some((v) => (v.state.kind === "uploading" && !v.state.multipart) || v.state.kind === "pending" || v.state.kind === "proposed"),
  // Only delete markers and aborted versions: nothing visible, nothing still uploading. (An
  // entry that still holds an upload is live: collecting it could drop the upload's result.)
  isTombstone: (o) => o.versions.every(isDeletion),
  holdTombstone(o, db) {
    // A delete marker dropped any older multipart upload of the key from the entry; while such
    // an upload is open, the marker must stay to hide what its completion would write.
    const uploads = TableRows.of(db, "mpu").entries(o.bucketId, uploadSortKey(o.key, ""), `${o.key}\u0001`) as UploadEntry[];
    return uploads.some((u) => !u.deleted);
  },
  onMerge(old, incoming, merged, ctx) {
    // Versions that left the entry or were aborted no longer need their data. One that left
    // may have been read as the visible version somewhere (on any replica, whatever this one
    // last saw of it), so its block list outlives it by the read grace; an aborted version was
    // never served and goes at once.
    const live = new Map(merged.versions.map((v) => [v.uuid, v.state.kind]));
    const seen = new Set([...(old?.versions ?? []), ...incoming.versions].map((v) => v.uuid));
    for (const uuid of seen) {
      const state = live.get(uuid);
      if (state === undefined) ctx.enqueue("version", { uuid, deleted: true, backlink: null }, "after-read-grace");
      else if (state === "aborted") ctx.enqueue("version", { uuid, deleted: true, backlink: null });
    }
    adjustLocalCounts(ctx.db, merged.bucketId, visibleDelta(old, merged));
  },
  onRemove(stored, ctx) {
    adjustLocalCounts(ctx.db, stored.bucketId, visibleDelta(stored, undefined));
  },
};

/** What a change of an entry does to its bucket's object and byte counts. */
export function visibleDelta(before: ObjectEntry | undefined, after: ObjectEntry | undefined): BucketCounts {
  const b = visibleVersion(before);
  const a = visibleVersion(after);
  return {
    objects: (a ? 1 : 0) - (b ? 1 : 0),
    bytes: (a?.state.data.meta.size ?? 0) - (b?.state.data.meta.size ?? 0),
    uploads: 0,
  };
}

/** The version a GET sees: the newest complete one, unless it is a delete marker. */
/** A complete version that holds data: what GET and HEAD serve. */
export type VisibleVersion = ObjectVersion & { state: { kind: "complete"; data: Exclude<ObjectData, { kind: "deleteMarker" }> } };

export function visibleVersion(o: ObjectEntry | undefined): VisibleVersion | undefined {
  if (!o) return undefined;
  for (let i = o.versions.length - 1; i >= 0; i--) {
    const v = o.versions[i]!;
    if (v.state.kind !== "complete") continue;
    if (v.state.data.kind === "deleteMarker") return undefined;
    return v as VisibleVersion;
  }
  return undefined;
}

/** The timestamp of the entry's newest complete version (but `except`), -1 when it has none. */
export function newestCompleteTimestamp(o: ObjectEntry | undefined, except?: string): number {
  let newest = -1;
  for (const v of o?.versions ?? []) if (v.uuid !== except && v.state.kind === "complete" && v.timestamp > newest) newest = v.timestamp;
  return newest;
}

export function newestTimestamp(o: ObjectEntry | undefined): number {
  return o?.versions.reduce((m, v) => Math.max(m, v.timestamp), 0) ?? 0;
}
