// The one way a new object version is written, for every S3 operation that writes one (PutObject,
// PostObject, CopyObject, UploadPart, UploadPartCopy, Create/CompleteMultipartUpload). It owns
// the order that makes a crash safe (nothing is visible until the last metadata write), the plan
// that decides how much of that order a body needs, and the abort that releases what a failed
// write left behind. The S3 layer parses, authorises and answers; it decides nothing here.
import { assert } from "../util/assert";
import { newUuid } from "../util/ids";
import { INLINE_THRESHOLD } from "../util/limits";
import type { ChecksumAlgorithm, ChecksumType } from "../util/checksum";
import { writeBody, type StoreServices, type WrittenBody } from "./body-writer";
import { encryptBlock, encryptedBlockPlainSize, type DataKey, type EncryptionRecord } from "../block/encryption";
import type { HeaderList, ObjectData, ObjectMeta, PendingVersion, SingleBlockData, TagList, VersionState, VisibleVersion } from "./object";
import { completedVersion, versionRows } from "./pending";
import type { UploadEntry, UploadOutcome, UploadPartEntry } from "./upload";
import { ConditionalUnavailableError, installConditionally } from "./conditional-write";

/**
 * How a new version's data is stored, chosen from the body's declared length before a byte is
 * read:
 * - `inline`: below INLINE_THRESHOLD, the body lives in the object entry: one metadata write.
 * - `single-block`: at most one block: the block, and the version (pending), its block reference
 *   and the object entry, in one round trip (insertPending); the version completes after.
 * - `announced`: larger, or of unknown length: the version is announced as uploading
 *   (invisible), its blocks and references are written, and only then is it completed. A body
 *   of unknown length that turns out small is still kept inline, under the announced version.
 */
export type WritePlan = { kind: "inline" } | { kind: "single-block" } | { kind: "announced" };

export function planWrite(declaredLength: number | undefined, blockSize: number): WritePlan {
  if (declaredLength === undefined) return { kind: "announced" };
  if (declaredLength < INLINE_THRESHOLD) return { kind: "inline" };
  if (declaredLength <= blockSize) return { kind: "single-block" };
  return { kind: "announced" };
}

/** Where a version goes. */
export interface ObjectTarget {
  bucketId: string;
  key: string;
}

/** The identity of a written version: its uuid and the timestamp that orders it. */
export interface WrittenVersion {
  uuid: string;
  timestamp: number;
}

/**
 * A copy or a completion found fewer bytes in its source's block list than the source's size
 * (a replica out of reach answered a partial list): nothing was made visible; retrying may work.
 */
export class IncompleteBlockListError extends Error {
  constructor(readonly what: string) {
    super(`the block list of ${what} could not be read whole`);
  }
}

/**
 * A CompleteMultipartUpload that failed part way left block rows that a completion with other
 * parts cannot overwrite: completing would serve them. The upload must be aborted.
 */
export class StaleCompletionError extends Error {
  constructor(readonly uploadId: string) {
    super(`upload ${uploadId} was completed before with other parts, and that attempt failed part way`);
  }
}

export interface NewObjectBody {
  headers: HeaderList;
  /** The length the request declared, when it declared one (a form upload does not). */
  declaredLength: number | undefined;
  chunks: AsyncIterable<Uint8Array>;
  checksumAlgorithms: readonly ChecksumAlgorithm[];
  /** The version's tags (x-amz-tagging); none when empty. */
  tags: TagList;
  /** SSE-C: the object's data key; its record goes in the meta `describe` gives. */
  encryption?: DataKey;
  /**
   * Checks the stored body (digests, size bounds, quotas) and gives the version's metadata. A
   * throw here aborts the version: nothing becomes visible.
   */
  describe(body: WrittenBody): ObjectMeta | Promise<ObjectMeta>;
  /** A conditional write (If-None-Match / If-Match): see WriteCondition. */
  condition?: WriteCondition;
}

/**
 * The condition of a conditional write: it throws (the S3 layer's PreconditionFailed,
 * NoSuchKey) when the key's current visible version does not satisfy it. A conditional version
 * is installed through the key's register (conditional-write.ts), never by a plain write.
 */
export type WriteCondition = (current: VisibleVersion | undefined) => void;

/**
 * Runs `work` on a version announced as uploading, and marks it aborted if `work` fails, so its
 * blocks are released at once instead of waiting for the repair at the next start. Every path
 * that announces a version goes through here.
 */
async function withAnnouncedVersion<T>(
  services: StoreServices,
  target: ObjectTarget,
  headers: HeaderList,
  work: (version: WrittenVersion) => Promise<T>,
): Promise<T> {
  const { model } = services;
  const version = await model.startVersion(target.bucketId, target.key, { kind: "uploading", multipart: false, headers, uploader: model.placement.selfId });
  try {
    return await work(version);
  } catch (err) {
    // A conditional write whose outcome is unknown may still be installed by whoever next
    // takes the key's register: its version must stay completable.
    if (!(err instanceof ConditionalUnavailableError)) await abortVersion(services, target, version).catch(() => {});
    throw err;
  }
}

/** Marks an unfinished version aborted so its blocks are released. */
function abortVersion(services: StoreServices, target: ObjectTarget, version: WrittenVersion): Promise<void> {
  return services.model.objects.insert({ bucketId: target.bucketId, key: target.key, versions: [{ uuid: version.uuid, timestamp: version.timestamp, state: { kind: "aborted" } }] });
}

/**
 * The state of a complete version. Tags written with the data carry the version's own
 * timestamp: a later PutObjectTagging is stamped past it and wins.
 */
function completeState(data: ObjectData, timestamp: number, tags: TagList): VersionState {
  return tags.length === 0 ? { kind: "complete", data } : { kind: "complete", data, tags: { timestamp, set: tags } };
}

/**
 * Completes an announced version: the last write, after which GET sees it. A conditional one
 * is installed through the key's register, and only if its condition holds.
 */
async function completeVersion(services: StoreServices, target: ObjectTarget, version: WrittenVersion, data: ObjectData, tags: TagList, condition?: WriteCondition): Promise<void> {
  const complete = { uuid: version.uuid, timestamp: version.timestamp, state: completeState(data, version.timestamp, tags) };
  if (condition) await installConditionally(services, target, condition, { kind: "fixed", version: complete });
  else await services.model.objects.insert({ bucketId: target.bucketId, key: target.key, versions: [complete] });
}

/** A version with nothing tied to its uuid yet (inline data, a delete marker), installed through the key's register if its condition holds. */
async function installFresh(services: StoreServices, target: ObjectTarget, data: ObjectData, tags: TagList, condition: WriteCondition): Promise<WrittenVersion> {
  const v = await installConditionally(services, target, condition, { kind: "fresh", state: (timestamp) => completeState(data, timestamp, tags) });
  return { uuid: v.uuid, timestamp: v.timestamp };
}

function inlineOrBlocks(meta: ObjectMeta, body: WrittenBody, encryption: DataKey | undefined): ObjectData {
  return body.inline
    ? { kind: "inline", meta, base64: Buffer.from(encryption ? encryptBlock(encryption, body.inline) : body.inline).toString("base64") }
    : { kind: "blocks", meta, ...(body.deferredBlock ? { singleBlock: body.deferredBlock.hash } : {}) };
}

/** Stores a body as the new current version of `target` (PutObject, PostObject). */
export async function writeObject(services: StoreServices, target: ObjectTarget, body: NewObjectBody): Promise<WrittenVersion & { meta: ObjectMeta }> {
  // A sealed block carries less plaintext than a block: the plan counts in plaintext bytes.
  const planned = planWrite(body.declaredLength, body.encryption ? encryptedBlockPlainSize(services.blockSize) : services.blockSize);
  // A conditional write ties its data to the version it proposes before the register decides.
  const plan: WritePlan = body.condition && planned.kind === "single-block" ? { kind: "announced" } : planned;
  const store = (versionUuid: string) =>
    writeBody(services, {
      versionUuid,
      part: 0,
      chunks: body.chunks,
      checksumAlgorithms: body.checksumAlgorithms,
      allowInline: true,
      deferRefs: plan.kind === "single-block",
      sizeHint: body.declaredLength,
      encryption: body.encryption,
    });

  switch (plan.kind) {
    case "announced":
      return withAnnouncedVersion(services, target, body.headers, async (version) => {
        const written = await store(version.uuid);
        const meta = await body.describe(written);
        // The version's blocks are referenced under its uuid already: it completes as it is.
        await completeVersion(services, target, version, inlineOrBlocks(meta, written, body.encryption), body.tags, body.condition);
        return { ...version, meta };
      });
    case "inline":
    case "single-block": {
      // Nothing is tied to a uuid until the metadata write: it may be restamped past a newer
      // version (model.insertNewestVersions). A failure before it leaves, at most, a stored
      // block that nothing references, which orphan collection removes.
      const written = await store(newUuid());
      const meta = await body.describe(written);
      assert(plan.kind === "single-block" || written.inline !== undefined, "a body declared below the inline threshold is stored inline");
      const data = inlineOrBlocks(meta, written, body.encryption);
      if (body.condition) return { ...(await installFresh(services, target, data, body.tags, body.condition)), meta };
      // A body stored inline (it came in below the inline threshold) has no block to wait for.
      if (written.deferredBlock && data.kind === "blocks") return { ...(await insertPending(services, target, { ...data, singleBlock: written.deferredBlock.hash }, body.tags, written.deferredBlock)), meta };
      return { ...(await insertNewest(services, target, data, body.tags)), meta };
    }
  }
}

/**
 * Writes a one-block version in one round trip: its block and its whole version, `pending`, at
 * once (model/pending.ts says when a pending version is served). Once both reached their
 * quorum the version is durable and the call returns; its completion is written after, in the
 * background. A block that failed is settled before the error is thrown: aborted if a quorum
 * of its nodes cannot hold it, completed if it is on a quorum after all, left pending (for
 * readers and the repair) when the nodes cannot tell.
 */
async function insertPending(services: StoreServices, target: ObjectTarget, data: SingleBlockData, tags: TagList, block: NonNullable<WrittenBody["deferredBlock"]>): Promise<WrittenVersion> {
  const { model } = services;
  // Every version built: a restamped write leaves its earlier attempts pending too.
  const built: PendingVersion[] = [];
  const metadata = model.insertNewestVersions([
    (uuid, timestamp) => {
      const state: PendingVersion["state"] = tags.length === 0 ? { kind: "pending", data } : { kind: "pending", data, tags: { timestamp, set: tags } };
      built.push({ uuid, timestamp, state });
      return { entry: { bucketId: target.bucketId, key: target.key, versions: [built[built.length - 1]!] }, alongside: versionRows(model, target.bucketId, target.key, uuid, block) };
    },
  ]);
  const [stored, inserted] = await Promise.allSettled([block.stored, metadata]);
  const version = built[built.length - 1];
  assert(version !== undefined, "the version was built");
  if (stored.status === "rejected") {
    // Never abort a version whose block is on a quorum after all (a copy that answered late):
    // a reader may serve it. Then it is as durable as any other, and completes below.
    const presence = await services.blocks.presence(block.hash).catch(() => "unknown" as const);
    if (presence === "short") {
      const aborted = built.map((v) => ({ uuid: v.uuid, timestamp: v.timestamp, state: { kind: "aborted" as const } }));
      await model.objects.insert({ bucketId: target.bucketId, key: target.key, versions: aborted }).catch(() => {});
    }
    if (presence !== "quorum") throw stored.reason;
  }
  if (inserted.status === "rejected") throw inserted.reason;
  // Its rows are on a write quorum already (written with it): only the entry changes.
  const complete = { bucketId: target.bucketId, key: target.key, versions: [completedVersion(version)] };
  await model.writeLater(`completion of ${target.key}`, () => model.objects.insert(complete), true);
  return { uuid: version.uuid, timestamp: version.timestamp };
}

/**
 * Writes an inline version (nothing is tied to its uuid yet) in one round trip; restamped past a
 * newer version if a replica has one.
 */
async function insertNewest(services: StoreServices, target: ObjectTarget, data: ObjectData, tags: TagList): Promise<WrittenVersion> {
  const { model } = services;
  let written: WrittenVersion | undefined;
  await model.insertNewestVersions([
    (uuid, timestamp) => {
      written = { uuid, timestamp };
      return { entry: { bucketId: target.bucketId, key: target.key, versions: [{ uuid, timestamp, state: completeState(data, timestamp, tags) }] } };
    },
  ]);
  assert(written !== undefined, "the version was written");
  return written;
}

/**
 * Writes a copy of `source` as the new current version of `target` with `meta` and `tags`
 * (CopyObject). No data is copied: the new version references the source's blocks.
 */
export async function copyObject(services: StoreServices, target: ObjectTarget, source: VisibleVersion, meta: ObjectMeta, tags: TagList, condition?: WriteCondition): Promise<WrittenVersion> {
  const data = source.state.data;
  if (data.kind === "inline") {
    const inline: ObjectData = { kind: "inline", meta, base64: data.base64 };
    return condition ? installFresh(services, target, inline, tags, condition) : insertNewest(services, target, inline, tags);
  }
  // Reading the source already advanced this node's clock past what its replicas had seen;
  // announcing also covers a newer write to the destination.
  return withAnnouncedVersion(services, target, meta.headers, async (version) => {
    // Never complete a copy with less than its source.
    if ((await services.model.copyBlocks(source.uuid, version.uuid)) !== data.meta.size) throw new IncompleteBlockListError("the source object");
    await completeVersion(services, target, version, { kind: "blocks", meta, ...(data.singleBlock ? { singleBlock: data.singleBlock } : {}) }, tags, condition);
    return version;
  });
}

// ---- multipart uploads ----

/** The checksum a multipart upload was created with: the parts' algorithm, and how they combine. */
export interface UploadChecksum {
  algorithm: ChecksumAlgorithm;
  type: ChecksumType;
}

/** What an upload's completed version will carry, fixed when the upload is created. */
export interface UploadSettings {
  headers: HeaderList;
  checksum: UploadChecksum | undefined;
  tags: TagList;
  encryption: EncryptionRecord | undefined;
}

/**
 * Opens a multipart upload: its final version (uuid = upload id) is announced as uploading,
 * and the upload row is written beside it, with what the completed version will carry.
 */

export async function startUpload(services: StoreServices, target: ObjectTarget, settings: UploadSettings): Promise<UploadEntry> {
  const { model } = services;
  const { headers, checksum, tags, encryption } = settings;
  const upload: UploadEntry = {
    bucketId: target.bucketId,
    key: target.key,
    uploadId: newUuid(),
    timestamp: model.clock.now(),
    deleted: false,
    headers,
    checksumAlgorithm: checksum?.algorithm,
    ...(tags.length > 0 ? { tags } : {}),
    ...(checksum ? { checksumType: checksum.type } : {}),
    ...(encryption ? { encryption } : {}),
  };
  await Promise.all([
    model.objects.insert({
      bucketId: target.bucketId,
      key: target.key,
      versions: [{ uuid: upload.uploadId, timestamp: upload.timestamp, state: { kind: "uploading", multipart: true, headers, checksumAlgorithm: upload.checksumAlgorithm, uploader: model.placement.selfId } }],
    }),
    model.uploads.insert(upload),
  ]);
  return upload;
}

export interface PartBody {
  chunks: AsyncIterable<Uint8Array>;
  sizeHint: number | undefined;
  checksumAlgorithms: readonly ChecksumAlgorithm[];
  /** Checks the stored part (digests) and gives its ETag and checksum (base64), if it has one. A throw releases the part. */
  describe(body: WrittenBody): { etag: string; checksum?: string };
  /** SSE-C: the upload's data key. */
  encryption?: DataKey;
}

/**
 * Stores one part of an open upload as a version of its own (UploadPart, UploadPartCopy) and
 * records it in the upload. A part that fails is released at once.
 */
export async function writePart(services: StoreServices, upload: UploadEntry, part: number, body: PartBody): Promise<UploadPartEntry> {
  const { model } = services;
  const version = newUuid();
  await model.versions.insert({ uuid: version, deleted: false, backlink: { kind: "upload", uploadId: upload.uploadId, part } });
  try {
    const written = await writeBody(services, { versionUuid: version, part, chunks: body.chunks, checksumAlgorithms: body.checksumAlgorithms, allowInline: false, sizeHint: body.sizeHint, encryption: body.encryption });
    const { etag, checksum } = body.describe(written);
    const entry: UploadPartEntry = {
      uploadId: upload.uploadId,
      part,
      timestamp: model.clock.now(),
      version,
      etag,
      size: written.size,
      checksum,
      deleted: false, // last, as in the tombstone the close makes of it (one encoding)
    };
    await model.uploadParts.insert(entry);
    return entry;
  } catch (err) {
    await model.versions.insert({ uuid: version, deleted: true, backlink: null }).catch(() => {});
    throw err;
  }
}

/**
 * Completes an upload with `chosen` parts (in order): the final version references their
 * blocks, renumbered 1..N, and becomes visible with `meta`; then the upload is closed and every
 * part version released. A failure leaves the upload open, as it was, for the client to retry.
 */
export async function completeUpload(services: StoreServices, upload: UploadEntry, chosen: readonly UploadPartEntry[], allParts: readonly UploadPartEntry[], meta: ObjectMeta, outcome: UploadOutcome, condition?: WriteCondition): Promise<void> {
  const { model } = services;
  const target = { bucketId: upload.bucketId, key: upload.key };
  const version = { uuid: upload.uploadId, timestamp: upload.timestamp };
  await model.versions.insert({ uuid: version.uuid, deleted: false, backlink: { kind: "object", ...target } });
  // Rows already there come from an earlier attempt that failed part way, maybe with other
  // parts: block rows are never removed, so what this attempt does not overwrite would stay.
  const retried = (await model.versionBlocks.range(version.uuid, { limit: 1 })).length > 0;
  for (let i = 0; i < chosen.length; i++) {
    // Never complete an object with less than its parts.
    if ((await model.copyBlocks(chosen[i]!.version, version.uuid, i + 1)) !== chosen[i]!.size) throw new IncompleteBlockListError(`part ${chosen[i]!.part}`);
  }
  if (retried) {
    let stored = 0;
    for await (const rows of model.blockPages(version.uuid)) for (const row of rows) stored += row.size;
    if (stored !== meta.size) throw new StaleCompletionError(upload.uploadId);
  }
  await completeVersion(services, target, version, { kind: "blocks", meta }, upload.tags ?? [], condition);
  // Closing the upload makes its replicas tombstone the part rows (uploadSchema.onMerge): the
  // parts' blocks were copied above.
  await model.closeUpload(upload, allParts, outcome);
}
