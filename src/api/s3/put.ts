// PutObject: the request's conditions, headers, digests and quota; the version itself is
// written by the one object writer (src/model/object-writer.ts).
import { checksumHeaderName } from "../../util/checksum";
import { writeObject, type WriteCondition } from "../../model/object-writer";
import { S3Error } from "./errors";
import { storeServices, type ObjectRequest } from "./context";
import { PayloadReader } from "./body";
import { declaredDigests, etagHeader, normalizeEtag, storedHeaders, verifyDigests } from "./headers";
import { checkQuotas, withinSizeQuota } from "./quota";
import { parseTaggingHeader } from "./object-tagging";
import { parseSseC, bodyEtag, sseCResponseHeaders } from "./sse-c";
import { newEncryptionRecord } from "../../block/encryption";

/**
 * The request's write condition (If-None-Match: * or ETags, If-Match: ETags or *), or none. It
 * is checked by the key's register against the version current when the write is installed
 * (model/conditional-write.ts): of concurrent conditional writes, at most one sees what it wants.
 */
export function writeCondition(headers: Headers): WriteCondition | undefined {
  const ifNoneMatch = headers.get("if-none-match");
  const ifMatch = headers.get("if-match");
  if (ifNoneMatch === null && ifMatch === null) return undefined;
  const unwanted = ifNoneMatch?.split(",").map(normalizeEtag);
  const wanted = ifMatch?.split(",").map(normalizeEtag);
  return (current) => {
    // `*`: the key must not exist; ETags: the current object must not be one of them.
    if (unwanted && current && (unwanted.includes("*") || unwanted.includes(current.state.data.meta.etag)))
      throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
    if (wanted) {
      if (!current) throw new S3Error("NoSuchKey", "The specified key does not exist.");
      if (!wanted.includes("*") && !wanted.includes(current.state.data.meta.etag))
        throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
    }
  };
}

export async function putObject(r: ObjectRequest): Promise<Response> {
  const condition = writeCondition(r.headers);
  const headers = storedHeaders(r.headers);
  const tags = parseTaggingHeader(r.headers.get("x-amz-tagging")) ?? [];
  const digests = declaredDigests(r.headers);
  const sseC = parseSseC(r.headers);
  const sealing = sseC && newEncryptionRecord(sseC.key);
  const payload = new PayloadReader(r);
  // A declared length is checked against the quotas before anything is stored. A chunked body
  // of unknown length (bounded by PayloadReader) is checked again once its size is known, in
  // `describe`; a bucket already full refuses it at once, as a form upload (post-object.ts).
  await checkQuotas(r, payload.declaredLength ?? 1);
  const { meta } = await writeObject(storeServices(r.services), { bucketId: r.bucket.id, key: r.key }, {
    headers,
    declaredLength: payload.declaredLength,
    chunks: payload.declaredLength === undefined ? withinSizeQuota(r, payload.chunks()) : payload.chunks(),
    checksumAlgorithms: digests.checksumAlgorithm ? [digests.checksumAlgorithm] : [],
    tags,
    encryption: sealing?.dataKey,
    condition,
    describe: async (body) => {
      if (payload.declaredLength === undefined) await checkQuotas(r, body.size);
      return {
        size: body.size,
        etag: bodyEtag(body.md5, sealing?.dataKey),
        headers,
        checksum: verifyDigests(digests, body, payload.trailers),
        ...(sealing ? { encryption: sealing.record } : {}),
      };
    },
  });
  const out: Record<string, string> = { etag: etagHeader(meta.etag), ...(sseC ? sseCResponseHeaders(sseC.keyMd5) : {}) };
  if (meta.checksum) out[checksumHeaderName(meta.checksum.algorithm)] = meta.checksum.value;
  return new Response(null, { status: 200, headers: out });
}
