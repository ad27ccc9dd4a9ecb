// CopyObject and UploadPartCopy. CopyObject never rewrites data: the new version references
// the source's blocks. UploadPartCopy streams the chosen byte range into a new part (block
// dedup still stores aligned blocks once).
import { versionTags, visibleVersion, type ObjectMeta } from "../../model/object";
import { readObject } from "../../model/pending";
import { parseTaggingHeader } from "./object-tagging";
import { copyObject as writeCopy, writeObject } from "../../model/object-writer";
import { storeServices, type ObjectRequest } from "./context";
import { checkQuotas } from "./quota";
import { S3Error } from "./errors";
import { checkVersionId, NULL_VERSION_ID } from "./version-id";
import { xmlResponse, isoDate } from "./bucket";
import { xmlDocument } from "./xml";
import { checkConditions, readPlain } from "./get";
import { parseSseC, SSE_C_COPY_SOURCE_PREFIX, bodyEtag, sseCResponseHeaders, unlockSseC } from "./sse-c";
import { recordForCopy } from "../../block/encryption";
import { toBase64 } from "../../util/checksum";
import { etagHeader, storedHeaders } from "./headers";
import { writeCondition } from "./put";
import { parsePartNumber, storePart } from "./multipart";
import { parseDecimal } from "../../util/decimal";
import { uploadSortKey } from "../../model/upload";
import { MAX_PUT_SIZE } from "../../util/limits";

const WEBSITE_REDIRECT = "x-amz-website-redirect-location";

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
  const entry = await readObject(r.services, bucket.id, key);
  const version = visibleVersion(entry);
  if (!version) throw new S3Error("NoSuchKey", "The specified source key does not exist.");
  checkConditions(r.headers, version.state.data.meta.etag, version.timestamp, "x-amz-copy-source-", "412");
  const dataKey = unlockSseC(version.state.data.meta.encryption, parseSseC(r.headers, SSE_C_COPY_SOURCE_PREFIX), "read");
  // A source named by version id is answered with it (`null`, the only one), as S3 does.
  const versionHeaders: Record<string, string> = sourceVersionId !== null ? { "x-amz-copy-source-version-id": NULL_VERSION_ID } : {};
  return { bucket, key, version, dataKey, versionHeaders };
}

export async function copyObject(r: ObjectRequest): Promise<Response> {
  const src = await resolveSource(r);
  const directive = (r.headers.get("x-amz-metadata-directive") ?? "COPY").toUpperCase();
  if (directive !== "COPY" && directive !== "REPLACE") throw new S3Error("InvalidArgument", "Unknown metadata directive");
  const data = src.version.state.data;
  const destKey = parseSseC(r.headers);
  const sameObject = src.bucket.id === r.bucket.id && src.key === r.key;
  if (sameObject && directive === "COPY" && !destKey && !data.meta.encryption)
    throw new S3Error("InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
  await checkQuotas(r, data.meta.size);
  // COPY keeps the source's metadata but not its website redirect, which AWS takes from the
  // request (storedHeaders checks it) as with REPLACE.
  const requested = storedHeaders(r.headers);
  const headers =
    directive === "REPLACE" ? requested : [...data.meta.headers.filter(([n]) => n !== WEBSITE_REDIRECT), ...requested.filter(([n]) => n === WEBSITE_REDIRECT)];
  // COPY (the default) carries the source's tags; REPLACE takes x-amz-tagging (none if absent).
  const tags = (r.headers.get("x-amz-tagging-directive") ?? "COPY").toUpperCase() === "REPLACE" ? (parseTaggingHeader(r.headers.get("x-amz-tagging")) ?? []) : versionTags(src.version);
  const target = { bucketId: r.bucket.id, key: r.key };
  const condition = writeCondition(r.headers);
  // The copy references the source's stored blocks when they are what it must hold: both in
  // plaintext, or sealed under the same key. Otherwise the data is read, opened and rewritten.
  const sealing = destKey && recordForCopy(destKey.key, data.meta.encryption);
  const byReference = data.meta.encryption === undefined ? sealing === undefined : sealing?.shared === true;
  let written: { timestamp: number; etag: string };
  if (byReference) {
    const meta: ObjectMeta = { ...data.meta, headers };
    written = { ...(await writeCopy(storeServices(r.services), target, src.version, meta, tags, condition)), etag: meta.etag };
  } else {
    // Rewriting the data costs a read and a write of every byte, in this request: bounded as
    // AWS bounds every CopyObject (a reference copy costs metadata only and is not).
    if (data.meta.size > MAX_PUT_SIZE)
      throw new S3Error("InvalidRequest", `The specified copy source is larger than the maximum allowable size for a copy source: ${MAX_PUT_SIZE}`);
    // A multipart source's composite checksum describes its parts, which the copy does not
    // keep; a whole-object one is computed again over the bytes copied.
    const sum = data.meta.checksum?.type === "FULL_OBJECT" ? data.meta.checksum : undefined;
    const w = await writeObject(storeServices(r.services), target, {
      headers,
      declaredLength: data.meta.size,
      chunks: readPlain(r.services, src.version, src.dataKey, 0, data.meta.size - 1),
      checksumAlgorithms: sum ? [sum.algorithm] : [],
      tags,
      encryption: sealing?.dataKey,
      condition,
      describe: (body) => ({
        size: body.size,
        etag: bodyEtag(body.md5, sealing?.dataKey),
        headers,
        ...(sum ? { checksum: { ...sum, value: toBase64(body.checksums.get(sum.algorithm)!) } } : {}),
        ...(sealing ? { encryption: sealing.record } : {}),
      }),
    });
    written = { timestamp: w.timestamp, etag: w.meta.etag };
  }
  const echoed = { ...(destKey ? sseCResponseHeaders(destKey.keyMd5) : {}), ...src.versionHeaders };
  return xmlResponse(xmlDocument("CopyObjectResult", { LastModified: isoDate(written.timestamp), ETag: etagHeader(written.etag) }), 200, echoed);
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
    // A range past the source's end is InvalidRange (as s3-tests expect of AWS); one that ends
    // before it starts is malformed.
    if (first > last) throw new S3Error("InvalidArgument", `Range specified is not valid for source object of size: ${size}`);
    if (last >= size) throw new S3Error("InvalidRange", `Range specified is not valid for source object of size: ${size}`);
    start = first;
    end = last;
  }
  if (end - start + 1 > MAX_PUT_SIZE) throw new S3Error("EntityTooLarge", "A part may not exceed 5 GiB");
  const chunks = readPlain(r.services, src.version, src.dataKey, start, end);
  const entry = await storePart(r, upload, part, chunks, end - start + 1, { checksumInTrailer: false, checksumAlgorithm: upload.checksumAlgorithm });
  const destKey = parseSseC(r.headers);
  return xmlResponse(xmlDocument("CopyPartResult", { LastModified: isoDate(entry.timestamp), ETag: etagHeader(entry.etag) }), 200, { ...(destKey ? sseCResponseHeaders(destKey.keyMd5) : {}), ...src.versionHeaders });
}
