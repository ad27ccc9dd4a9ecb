// PutObject. Order makes a crash safe: the version is announced as "uploading" (invisible),
// its blocks and references are written, and only then is it marked complete. A body that
// fits inline skips the first step: one metadata write in all.
import { assert } from "../../util/assert";
import { newUuid } from "../../util/ids";
import { INLINE_THRESHOLD } from "../../util/limits";
import { checksumHeaderName } from "../../util/checksum";
import { visibleVersion, type ObjectData, type ObjectEntry, type ObjectMeta } from "../../model/object";
import { S3Error } from "./errors";
import type { ObjectRequest } from "./context";
import { PayloadReader } from "./body";
import { declaredDigests, etagHeader, normalizeEtag, storedHeaders, verifyDigests } from "./headers";
import { writeBody, type WrittenBody } from "./object-writer";
import { checkQuotas } from "./quota";

/**
 * Conditional writes (If-None-Match: * / If-Match: etag), checked against a quorum read just
 * before the write. Without consensus this is not atomic: two racing conditional writes can
 * both pass. It does protect against the common case of overwriting by mistake.
 */
export async function checkWriteConditions(r: ObjectRequest): Promise<void> {
  const ifNoneMatch = r.headers.get("if-none-match");
  const ifMatch = r.headers.get("if-match");
  if (ifNoneMatch === null && ifMatch === null) return;
  if (ifNoneMatch !== null && ifNoneMatch.trim() !== "*")
    throw new S3Error("NotImplemented", "If-None-Match on writes only supports the value *");
  const current = visibleVersion(await r.services.model.objects.get(r.bucket.id, r.key));
  if (ifNoneMatch !== null && current)
    throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
  if (ifMatch !== null) {
    if (!current) throw new S3Error("NoSuchKey", "The specified key does not exist.");
    const wanted = ifMatch.split(",").map(normalizeEtag);
    if (!wanted.includes("*") && !wanted.includes(current.state.data.meta.etag))
      throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
  }
}

export async function putObject(r: ObjectRequest): Promise<Response> {
  const { model } = r.services;
  await checkWriteConditions(r);
  const headers = storedHeaders(r.headers);
  const digests = declaredDigests(r.headers);
  const payload = new PayloadReader(r);
  // An object body always declares its length (PayloadReader refuses it otherwise) and must
  // match it: the quota check can run before anything is stored.
  assert(payload.declaredLength !== undefined, "a PutObject body declares its length");
  await checkQuotas(r, payload.declaredLength);
  let uuid = newUuid();
  let timestamp = model.clock.now();
  const bucketId = r.bucket.id;
  const small = payload.declaredLength !== undefined && payload.declaredLength < INLINE_THRESHOLD;
  // A body of at most one block needs no "uploading" step: its block is stored first and the
  // whole version is recorded in one metadata write.
  const singleBlock = !small && payload.declaredLength !== undefined && payload.declaredLength <= r.services.settings.blockSize;

  if (!small && !singleBlock) {
    ({ uuid, timestamp } = await model.startVersion(bucketId, r.key, { kind: "uploading", multipart: false, headers, uploader: model.placement.selfId }));
  }

  let body: WrittenBody;
  let meta: ObjectMeta;
  try {
    body = await writeBody(r.services, {
      versionUuid: uuid,
      part: 0,
      chunks: payload.chunks(),
      checksumAlgorithms: digests.checksumAlgorithm ? [digests.checksumAlgorithm] : [],
      allowInline: true,
      deferRefs: singleBlock,
      sizeHint: payload.declaredLength,
    });
    const checksum = verifyDigests(digests, body, payload.trailers);
    meta = { size: body.size, etag: Buffer.from(body.md5).toString("hex"), headers, checksum };
  } catch (err) {
    if (!small && !singleBlock) await abortVersion(r, uuid, timestamp).catch(() => {});
    throw err;
  }

  assert(body.inline !== undefined || !small, "a body declared below the inline threshold is stored inline");
  const data: ObjectData = body.inline
    ? { kind: "inline", meta, base64: Buffer.from(body.inline).toString("base64") }
    : { kind: "blocks", meta, ...(body.deferredBlock ? { singleBlock: body.deferredBlock.hash } : {}) };
  const entryOf = (uuid: string, timestamp: number): ObjectEntry => ({
    bucketId,
    key: r.key,
    versions: [{ uuid, timestamp, state: { kind: "complete", data } }],
  });
  const deferred = body.deferredBlock;
  if (!small && !singleBlock) {
    // The version's blocks are referenced under this uuid already: it completes as it is.
    await model.objects.insert(entryOf(uuid, timestamp));
  } else {
    // Nothing is tied to a uuid yet: the write may be restamped past a newer version.
    await model.insertNewestVersions([
      (uuid, timestamp) => ({
        entry: entryOf(uuid, timestamp),
        alongside: deferred
          ? Promise.all([
              model.versions.insert({ uuid, deleted: false, backlink: { kind: "object", bucketId, key: r.key } }),
              model.versionBlocks.insert({ uuid, part: 0, offset: 0, hash: deferred.hash, size: deferred.size }),
              model.blockRefs.insert({ hash: deferred.hash, version: uuid, deleted: false }),
            ])
          : undefined,
      }),
    ]);
  }
  const out: Record<string, string> = { etag: etagHeader(meta.etag) };
  if (meta.checksum) out[checksumHeaderName(meta.checksum.algorithm)] = meta.checksum.value;
  return new Response(null, { status: 200, headers: out });
}

/** Marks an unfinished version aborted so its blocks are released. */
export async function abortVersion(r: Pick<ObjectRequest, "bucket" | "key" | "services">, uuid: string, timestamp: number): Promise<void> {
  await r.services.model.objects.insert({ bucketId: r.bucket.id, key: r.key, versions: [{ uuid, timestamp, state: { kind: "aborted" } }] });
}
