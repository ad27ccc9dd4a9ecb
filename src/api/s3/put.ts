// PutObject. Order makes a crash safe: the version is announced as "uploading" (invisible),
// its blocks and references are written, and only then is it marked complete. A body that
// fits inline skips the first step: one metadata write in all.
import { assert } from "../../util/assert";
import { newUuid } from "../../util/ids";
import { INLINE_THRESHOLD } from "../../util/limits";
import { checksumHeaderName } from "../../util/checksum";
import type { ObjectEntry, ObjectMeta } from "../../model/object";
import type { ObjectRequest } from "./context";
import { PayloadReader } from "./body";
import { declaredDigests, etagHeader, storedHeaders, verifyDigests } from "./headers";
import { writeBody, type WrittenBody } from "./object-writer";

export async function putObject(r: ObjectRequest): Promise<Response> {
  const { model } = r.services;
  const headers = storedHeaders(r.headers);
  const digests = declaredDigests(r.headers);
  const payload = new PayloadReader(r);
  const uuid = newUuid();
  const timestamp = model.clock.now();
  const bucketId = r.bucket.id;
  const small = payload.declaredLength !== undefined && payload.declaredLength < INLINE_THRESHOLD;

  if (!small) {
    await Promise.all([
      model.objects.insert({
        bucketId,
        key: r.key,
        versions: [{ uuid, timestamp, state: { kind: "uploading", multipart: false, headers, uploader: model.placement.selfId } }],
      }),
      model.versions.insert({ uuid, deleted: false, backlink: { kind: "object", bucketId, key: r.key } }),
    ]);
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
    });
    const checksum = verifyDigests(digests, body, payload.trailers);
    meta = { size: body.size, etag: Buffer.from(body.md5).toString("hex"), headers, checksum };
  } catch (err) {
    if (!small) await abortVersion(r, uuid, timestamp).catch(() => {});
    throw err;
  }

  const entry: ObjectEntry = {
    bucketId,
    key: r.key,
    versions: [
      {
        uuid,
        timestamp,
        state: {
          kind: "complete",
          data: body.inline
            ? { kind: "inline", meta, base64: Buffer.from(body.inline).toString("base64") }
            : { kind: "blocks", meta },
        },
      },
    ],
  };
  assert(body.inline !== undefined || !small, "a body declared below the inline threshold is stored inline");
  await model.objects.insert(entry);
  const out: Record<string, string> = { etag: etagHeader(meta.etag) };
  if (meta.checksum) out[checksumHeaderName(meta.checksum.algorithm)] = meta.checksum.value;
  return new Response(null, { status: 200, headers: out });
}

/** Marks an unfinished version aborted so its blocks are released. */
export async function abortVersion(r: ObjectRequest, uuid: string, timestamp: number): Promise<void> {
  await r.services.model.objects.insert({ bucketId: r.bucket.id, key: r.key, versions: [{ uuid, timestamp, state: { kind: "aborted" } }] });
}
