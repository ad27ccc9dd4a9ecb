// CopyObject and UploadPartCopy. CopyObject never rewrites data: the new version references
// the source's blocks. UploadPartCopy streams the chosen byte range into a new part (block
// dedup still stores aligned blocks once).
import { versionTags, visibleVersion, type ObjectMeta } from "../../model/object";
import { parseTaggingHeader } from "./object-tagging";
import { copyObject as writeCopy } from "../../model/object-writer";
import { storeServices, type ObjectRequest } from "./context";
import { checkQuotas } from "./quota";
import { S3Error } from "./errors";
import { checkVersionId } from "./version-id";
import { xmlResponse, isoDate } from "./bucket";
import { xmlDocument } from "./xml";
import { checkConditions, streamBlocks } from "./get";
import { etagHeader, storedHeaders } from "./headers";
import { parsePartNumber, storePart } from "./multipart";
import { parseDecimal } from "../../util/decimal";
import { uploadSortKey } from "../../model/upload";
import { MAX_PUT_SIZE } from "../../util/limits";


async function resolveSource(r: ObjectRequest) {
  const raw = r.headers.get("x-amz-copy-source")!;
  // `bucket/key?versionId=...`: the key is percent-encoded, so a raw '?' starts the query.
  const qi = raw.indexOf("?");
  const sourceVersionId = new URLSearchParams(qi < 0 ? "" : raw.slice(qi + 1)).get("versionId");
  let decoded: string;
  try {
    decoded = decodeURIComponent(qi < 0 ? raw : raw.slice(0, qi));
  } catch {
    throw new S3Error("InvalidArgument", "Invalid copy source encoding");
  }
  const path = decoded.startsWith("/") ? decoded.slice(1) : decoded;
  const slash = path.indexOf("/");
  if (slash <= 0 || slash === path.length - 1) throw new S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
  const bucketName = path.slice(0, slash);
  const key = path.slice(slash + 1);
  const bucket = r.services.model.resolveBucket(bucketName);
  if (!bucket) throw new S3Error("NoSuchBucket", "The specified source bucket does not exist");
  if (!bucket.keys[r.apiKey.id]?.read) throw new S3Error("AccessDenied", `This key does not have read permission on bucket ${bucketName}`);
  checkVersionId(sourceVersionId);
  const entry = await r.services.model.objects.get(bucket.id, key);
  const version = visibleVersion(entry);
  if (!version) throw new S3Error("NoSuchKey", "The specified source key does not exist.");
  checkConditions(r.headers, version.state.data.meta.etag, version.timestamp, "x-amz-copy-source-", "412");
  return { bucket, key, version };
}

export async function copyObject(r: ObjectRequest): Promise<Response> {
  const src = await resolveSource(r);
  const directive = (r.headers.get("x-amz-metadata-directive") ?? "COPY").toUpperCase();
  if (directive !== "COPY" && directive !== "REPLACE") throw new S3Error("InvalidArgument", "Unknown metadata directive");
  const sameObject = src.bucket.id === r.bucket.id && src.key === r.key;
  if (sameObject && directive === "COPY")
    throw new S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
  const data = src.version.state.data;
  await checkQuotas(r, data.meta.size);
  const meta: ObjectMeta = { ...data.meta, headers: directive === "REPLACE" ? storedHeaders(r.headers) : data.meta.headers };
  // COPY (the default) carries the source's tags; REPLACE takes x-amz-tagging (none if absent).
  const tags = (r.headers.get("x-amz-tagging-directive") ?? "COPY").toUpperCase() === "REPLACE" ? (parseTaggingHeader(r.headers.get("x-amz-tagging")) ?? []) : versionTags(src.version);
  const written = await writeCopy(storeServices(r.services), { bucketId: r.bucket.id, key: r.key }, src.version, meta, tags);
  return xmlResponse(xmlDocument("CopyObjectResult", { LastModified: isoDate(written.timestamp), ETag: etagHeader(meta.etag) }));
}

export async function uploadPartCopy(r: ObjectRequest): Promise<Response> {
  const part = parsePartNumber(r.query.get("partNumber"));
  const uploadId = r.query.get("uploadId") ?? "";
  const upload = await r.services.model.uploads.get(r.bucket.id, uploadSortKey(r.key, uploadId));
  if (!upload || upload.deleted) throw new S3Error("NoSuchUpload", "The specified upload does not exist");
  const src = await resolveSource(r);
  const data = src.version.state.data;
  const size = data.meta.size;
  let start = 0;
  let end = size - 1;
  const rangeHeader = r.headers.get("x-amz-copy-source-range");
  if (rangeHeader !== null) {
    const m = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader.trim());
    const first = parseDecimal(m?.[1], 0, Number.MAX_SAFE_INTEGER);
    const last = parseDecimal(m?.[2], 0, Number.MAX_SAFE_INTEGER);
    if (first === undefined || last === undefined)
      throw new S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy");
    // AWS answers a range outside the source with InvalidArgument, not GET's InvalidRange.
    if (first > last || last >= size) throw new S3Error("InvalidArgument", `Range specified is not valid for source object of size: ${size}`);
    start = first;
    end = last;
  }
  if (end - start + 1 > MAX_PUT_SIZE) throw new S3Error("EntityTooLarge", "A part may not exceed 5 GiB");
  const chunks: AsyncIterable<Uint8Array> =
    size === 0
      ? (async function* () {})()
      : data.kind === "inline"
        ? (async function* () {
            yield Buffer.from(data.base64, "base64").subarray(start, end + 1);
          })()
        : streamBlocks(r.services, src.version.uuid, start, end);
  const entry = await storePart(r, upload, part, chunks, end - start + 1, { checksumInTrailer: false, checksumAlgorithm: upload.checksumAlgorithm });
  return xmlResponse(xmlDocument("CopyPartResult", { LastModified: isoDate(entry.timestamp), ETag: etagHeader(entry.etag) }));
}
