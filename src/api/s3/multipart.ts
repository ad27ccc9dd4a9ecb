// Multipart uploads: Create, UploadPart, Complete, Abort, ListParts, ListMultipartUploads.
// Each part is a version of its own; Complete stitches the parts' blocks into the object's
// version (renumbered 1..N) and only then makes it visible.
import { CryptoHasher } from "bun";
import { MAX_LIST_KEYS, MAX_PART_NUMBER, MAX_PUT_SIZE } from "../../util/limits";
import { CHECKSUM_ALGORITHMS, checksumHeaderName, parseChecksumAlgorithm, createChecksum, toBase64, type ChecksumAlgorithm } from "../../util/checksum";
import { uploadSortKey, partSortKey, type UploadEntry, type UploadPartEntry } from "../../model/upload";
import { parseDecimal } from "../../util/decimal";
import type { ObjectMeta } from "../../model/object";
import { storeServices, type BucketRequest, type ObjectRequest } from "./context";
import { checkQuotas } from "./quota";
import { parseTaggingHeader } from "./object-tagging";
import { parseSseC, sseCEtag, sseCResponseHeaders, unlockSseC } from "./sse-c";
import { newEncryptionRecord } from "../../block/encryption";
import { S3Error } from "./errors";
import { PayloadReader, readSmallBody } from "./body";
import { declaredDigests, etagHeader, normalizeEtag, storedHeaders, verifyDigests } from "./headers";
import { completeUpload, startUpload, writePart } from "../../model/object-writer";
import { checkWriteConditions } from "./put";
import { isoDate, xmlResponse } from "./bucket";
import { children, childText, MAX_XML_BODY, parseXml, xmlDocument } from "./xml";
import { prefixEnd, queryInteger, urlEncodeKey } from "./list";

/** S3's minimum size of every part but the last. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;
/** Most parts in one ListParts page (S3's limit). */
const MAX_LIST_PARTS = 1000;

function noSuchUpload(): S3Error {
  return new S3Error("NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.");
}

/** The upload's row, open or closed; undefined when there is none. */
async function findUpload(r: ObjectRequest, uploadId: string | null): Promise<UploadEntry | undefined> {
  if (!uploadId || !/^[0-9a-f]{64}$/.test(uploadId)) return undefined;
  return r.services.model.uploads.get(r.bucket.id, uploadSortKey(r.key, uploadId));
}

/** The open upload the request names. */
async function getUpload(r: ObjectRequest, uploadId: string | null): Promise<UploadEntry> {
  const upload = await findUpload(r, uploadId);
  if (!upload || upload.deleted) throw noSuchUpload();
  return upload;
}

function liveParts(r: ObjectRequest, uploadId: string, start: string, limit: number): Promise<UploadPartEntry[]> {
  return r.services.model.liveParts(uploadId, start, limit);
}

function allParts(r: ObjectRequest, uploadId: string): Promise<UploadPartEntry[]> {
  return liveParts(r, uploadId, "", Infinity);
}

export async function createMultipartUpload(r: ObjectRequest): Promise<Response> {
  const headers = storedHeaders(r.headers);
  const algoName = r.headers.get("x-amz-checksum-algorithm");
  let checksumAlgorithm: ChecksumAlgorithm | undefined;
  if (algoName) {
    checksumAlgorithm = parseChecksumAlgorithm(algoName);
    if (!checksumAlgorithm) throw new S3Error("InvalidRequest", `Unsupported checksum algorithm: ${algoName}`);
  }
  const sseC = parseSseC(r.headers);
  const upload = await startUpload(storeServices(r.services), { bucketId: r.bucket.id, key: r.key }, {
    headers,
    checksumAlgorithm,
    tags: parseTaggingHeader(r.headers.get("x-amz-tagging")) ?? [],
    encryption: sseC && newEncryptionRecord(sseC.key).record,
  });
  const extra: Record<string, string> = { ...(checksumAlgorithm ? { "x-amz-checksum-algorithm": checksumAlgorithm } : {}), ...(sseC ? sseCResponseHeaders(sseC.keyMd5) : {}) };
  return xmlResponse(xmlDocument("InitiateMultipartUploadResult", { Bucket: r.bucketName, Key: r.key, UploadId: upload.uploadId }), 200, extra);
}

/** The partNumber query parameter (UploadPart, UploadPartCopy, GET and HEAD of one part). */
export function parsePartNumber(raw: string | null): number {
  const n = parseDecimal(raw, 1, MAX_PART_NUMBER);
  if (n === undefined) throw new S3Error("InvalidArgument", `Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive`);
  return n;
}

/**
 * Stores one part's body as a new version and records it in the upload, checking its digests.
 * An encrypted upload's part is sealed with the upload's key, which the request must give.
 */
export function storePart(r: ObjectRequest, upload: UploadEntry, part: number, chunks: AsyncIterable<Uint8Array>, sizeHint: number | undefined, digests = declaredDigests(r.headers, upload.checksumAlgorithm), trailers = () => new Map<string, string>()): Promise<UploadPartEntry> {
  const dataKey = unlockSseC(upload.encryption, parseSseC(r.headers), "upload");
  return writePart(storeServices(r.services), upload, part, {
    chunks,
    sizeHint,
    checksumAlgorithms: digests.checksumAlgorithm ? [digests.checksumAlgorithm] : [],
    encryption: dataKey,
    describe: (body) => ({ etag: dataKey ? sseCEtag() : Buffer.from(body.md5).toString("hex"), checksum: verifyDigests(digests, body, trailers())?.value }),
  });
}

export async function uploadPart(r: ObjectRequest): Promise<Response> {
  const part = parsePartNumber(r.query.get("partNumber"));
  const upload = await getUpload(r, r.query.get("uploadId"));
  const payload = new PayloadReader(r, MAX_PUT_SIZE);
  // A part is no object yet, but a bucket full to its size quota takes no more data.
  await checkQuotas(r, payload.declaredLength ?? 0, { replacesKey: false });
  const entry = await storePart(r, upload, part, payload.chunks(), payload.declaredLength, undefined, () => payload.trailers);
  const sseC = parseSseC(r.headers);
  const headers: Record<string, string> = { etag: etagHeader(entry.etag), ...(sseC ? sseCResponseHeaders(sseC.keyMd5) : {}) };
  if (entry.checksum && upload.checksumAlgorithm) headers[checksumHeaderName(upload.checksumAlgorithm)] = entry.checksum;
  return new Response(null, { status: 200, headers });
}

/** The part list of a CompleteMultipartUpload body, checked for form and order. */
function parseCompleteRequest(text: string): { num: number; etag: string }[] {
  const doc = parseXml(text);
  if (doc.name !== "CompleteMultipartUpload") throw new S3Error("MalformedXML", "Expected a <CompleteMultipartUpload> document");
  const requested = children(doc, "Part").map((p) => {
    // Spaces around an XML integer are the schema's; anything but decimal digits is malformed.
    // A number beyond 10000 is well-formed, and names no uploaded part (InvalidPart below).
    const num = parseDecimal(childText(p, "PartNumber")?.trim(), 0, Number.MAX_SAFE_INTEGER);
    const etag = childText(p, "ETag");
    if (num === undefined || etag === undefined) throw new S3Error("MalformedXML", "Each <Part> needs a <PartNumber> (a decimal integer) and an <ETag>");
    return { num, etag: normalizeEtag(etag) };
  });
  if (requested.length === 0) throw new S3Error("MalformedXML", "You must specify at least one part");
  for (let i = 1; i < requested.length; i++) {
    if (requested[i]!.num <= requested[i - 1]!.num)
      throw new S3Error("InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be specified in order by part number.");
  }
  return requested;
}

/** S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, and their count. */
function multipartEtag(partEtags: readonly string[]): string {
  const md5s = new CryptoHasher("md5");
  for (const e of partEtags) md5s.update(Buffer.from(e, "hex"));
  return `${md5s.digest("hex")}-${partEtags.length}`;
}

/**
 * A whole-object checksum sent with Complete (minio-go, hence restic and mc, send the composite
 * of the parts' checksums) is checked against the one computed from the parts, before anything
 * is written; one that cannot be checked is refused, never ignored.
 */
function checkDeclaredComposite(r: ObjectRequest, upload: UploadEntry, checksum: ObjectMeta["checksum"]): void {
  const declared = CHECKSUM_ALGORITHMS.find((a) => r.headers.has(checksumHeaderName(a)));
  if (declared === undefined) return;
  if (declared !== upload.checksumAlgorithm || checksum === undefined)
    throw new S3Error("InvalidRequest", `${checksumHeaderName(declared)} cannot be checked: the upload was created with ${upload.checksumAlgorithm ?? "no"} checksum algorithm, or a part has no checksum`);
  const given = r.headers.get(checksumHeaderName(declared))!.trim().replace(/-\d+$/, "");
  if (given !== checksum.value.replace(/-\d+$/, "")) throw new S3Error("BadDigest", `The ${declared} you specified did not match the calculated checksum`);
}

export async function completeMultipartUpload(r: ObjectRequest): Promise<Response> {
  const upload = await findUpload(r, r.query.get("uploadId"));
  if (upload?.deleted) return repeatCompletion(r, upload);
  if (!upload) throw noSuchUpload();
  await checkWriteConditions(r);
  // A key is optional here (no data is written), but one that is given must be the upload's.
  const sseC = parseSseC(r.headers);
  if (sseC) unlockSseC(upload.encryption, sseC, "upload");
  // Its x-amz-checksum-* headers describe the object, not this XML body.
  const requested = parseCompleteRequest(await readSmallBody(r, MAX_XML_BODY, false));
  const stored = new Map((await allParts(r, upload.uploadId)).map((p) => [p.part, p]));
  const chosen = requested.map(({ num, etag }, i) => {
    const p = stored.get(num);
    if (!p || p.etag !== etag) throw new S3Error("InvalidPart", `One or more of the specified parts could not be found (part ${num}). The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.`);
    if (i < requested.length - 1 && p.size < MIN_PART_SIZE)
      throw new S3Error("EntityTooSmall", `Your proposed upload is smaller than the minimum allowed object size (part ${num} has ${p.size} bytes; every part but the last needs ${MIN_PART_SIZE})`);
    return p;
  });

  let checksum: ObjectMeta["checksum"];
  if (upload.checksumAlgorithm && chosen.every((p) => p.checksum)) {
    const composite = createChecksum(upload.checksumAlgorithm);
    for (const p of chosen) composite.update(Buffer.from(p.checksum!, "base64"));
    checksum = { algorithm: upload.checksumAlgorithm, value: `${toBase64(composite.digest())}-${chosen.length}`, type: "COMPOSITE" };
  }
  checkDeclaredComposite(r, upload, checksum);
  await checkQuotas(r, chosen.reduce((a, p) => a + p.size, 0));

  const etag = multipartEtag(chosen.map((p) => p.etag));
  const meta: ObjectMeta = {
    size: chosen.reduce((a, p) => a + p.size, 0),
    etag,
    headers: upload.headers,
    checksum,
    parts: chosen.map((p) => p.size),
    ...(upload.encryption ? { encryption: upload.encryption } : {}),
  };
  await completeUpload(storeServices(r.services), upload, chosen, [...stored.values()], meta, { kind: "completed", etag, ...(checksum ? { checksum: checksum.value } : {}) });
  return completionResponse(r, etag, checksum);
}

/**
 * A Complete of an upload already closed. A client retries one whose answer it lost (a
 * timeout): with the same parts it gets the same answer, as from AWS, and nothing changes (the
 * retry may come after a newer write of the key). Other parts, or an aborted upload: there is
 * no upload left to complete.
 */
async function repeatCompletion(r: ObjectRequest, upload: UploadEntry): Promise<Response> {
  const outcome = upload.outcome;
  if (outcome?.kind !== "completed") throw noSuchUpload();
  // Its x-amz-checksum-* headers describe the object, not this XML body.
  const requested = parseCompleteRequest(await readSmallBody(r, MAX_XML_BODY, false));
  if (multipartEtag(requested.map((p) => p.etag)) !== outcome.etag) throw noSuchUpload();
  const checksum: ObjectMeta["checksum"] =
    outcome.checksum !== undefined && upload.checksumAlgorithm ? { algorithm: upload.checksumAlgorithm, value: outcome.checksum, type: "COMPOSITE" } : undefined;
  return completionResponse(r, outcome.etag, checksum);
}

function completionResponse(r: ObjectRequest, etag: string, checksum: ObjectMeta["checksum"]): Response {
  const location = r.services.settings.rootDomain ? `http://${r.bucketName}.${r.services.settings.rootDomain}/${urlEncodeKey(r.key)}` : `/${r.bucketName}/${urlEncodeKey(r.key)}`;
  const extra: Record<string, string> = checksum ? { [checksumHeaderName(checksum.algorithm)]: checksum.value } : {};
  return xmlResponse(
    xmlDocument("CompleteMultipartUploadResult", { Location: location, Bucket: r.bucketName, Key: r.key, ETag: etagHeader(etag), ...(checksum ? { [`Checksum${checksum.algorithm}`]: checksum.value, ChecksumType: checksum.type } : {}) }),
    200,
    extra,
  );
}

export async function abortMultipartUpload(r: ObjectRequest): Promise<Response> {
  await r.services.model.abortUpload(await getUpload(r, r.query.get("uploadId")));
  return new Response(null, { status: 204 });
}

export async function listParts(r: ObjectRequest): Promise<Response> {
  const upload = await getUpload(r, r.query.get("uploadId"));
  // A key is optional here, but one that is given must be the upload's.
  const sseC = parseSseC(r.headers);
  if (sseC) unlockSseC(upload.encryption, sseC, "upload");
  // 0 or absent: the default page; more than a page holds is clamped, as AWS does.
  const maxParts = Math.min(queryInteger(r.query, "max-parts") || MAX_LIST_PARTS, MAX_LIST_PARTS);
  const marker = queryInteger(r.query, "part-number-marker") ?? 0;
  const parts = await liveParts(r, upload.uploadId, partSortKey(marker) + "\u0000", maxParts + 1);
  const page = parts.slice(0, maxParts);
  const truncated = parts.length > maxParts;
  const algo = upload.checksumAlgorithm;
  return xmlResponse(
    xmlDocument("ListPartsResult", {
      Bucket: r.bucketName,
      Key: r.key,
      UploadId: upload.uploadId,
      Initiator: { ID: r.apiKey.id, DisplayName: r.apiKey.name.v },
      Owner: { ID: r.apiKey.id, DisplayName: r.apiKey.name.v },
      StorageClass: "STANDARD",
      PartNumberMarker: marker,
      NextPartNumberMarker: page.length > 0 ? page[page.length - 1]!.part : undefined,
      MaxParts: maxParts,
      IsTruncated: truncated,
      ChecksumAlgorithm: algo,
      Part: page.map((p) => ({
        PartNumber: p.part,
        LastModified: isoDate(p.timestamp),
        ETag: etagHeader(p.etag),
        Size: p.size,
        ...(algo && p.checksum ? { [`Checksum${algo}`]: p.checksum } : {}),
      })),
    }),
  );
}

export async function listMultipartUploads(r: BucketRequest): Promise<Response> {
  const q = r.query;
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") || undefined;
  // 0 or absent: the default page; more than a page holds is clamped, as AWS does.
  const maxUploads = Math.min(queryInteger(q, "max-uploads") || MAX_LIST_KEYS, MAX_LIST_KEYS);
  const keyMarker = q.get("key-marker") ?? "";
  const uploadIdMarker = q.get("upload-id-marker") ?? "";
  const enc = q.get("encoding-type") === "url" ? urlEncodeKey : (s: string) => s;
  const end = prefix === "" ? undefined : prefixEnd(prefix);
  let cursor = prefix;
  if (keyMarker !== "") {
    const after = uploadIdMarker !== "" ? uploadSortKey(keyMarker, uploadIdMarker) + "\u0000" : prefixEnd(keyMarker + "\u0000") ?? keyMarker;
    if (after > cursor) cursor = after;
  }
  const uploads: UploadEntry[] = [];
  const commonPrefixes: string[] = [];
  let truncated = false;
  scan: for (;;) {
    const rows = await r.services.model.uploads.range(r.bucket.id, { start: cursor, end, limit: 256 });
    let seeked = false;
    for (const u of rows) {
      cursor = uploadSortKey(u.key, u.uploadId) + "\u0000";
      if (u.deleted) continue;
      if (uploads.length + commonPrefixes.length === maxUploads) {
        truncated = true;
        break scan;
      }
      if (delimiter) {
        const idx = u.key.indexOf(delimiter, prefix.length);
        if (idx >= 0) {
          const cp = u.key.slice(0, idx + delimiter.length);
          commonPrefixes.push(cp);
          const skip = prefixEnd(cp);
          if (skip === undefined) break scan;
          cursor = skip;
          seeked = true;
          break;
        }
      }
      uploads.push(u);
    }
    if (!seeked && rows.length < 256) break;
  }
  const last = uploads[uploads.length - 1];
  return xmlResponse(
    xmlDocument("ListMultipartUploadsResult", {
      Bucket: r.bucketName,
      KeyMarker: enc(keyMarker),
      UploadIdMarker: uploadIdMarker,
      NextKeyMarker: truncated && last ? enc(last.key) : undefined,
      NextUploadIdMarker: truncated && last ? last.uploadId : undefined,
      Prefix: enc(prefix),
      Delimiter: delimiter !== undefined ? enc(delimiter) : undefined,
      MaxUploads: maxUploads,
      EncodingType: q.get("encoding-type") === "url" ? "url" : undefined,
      IsTruncated: truncated,
      Upload: uploads.map((u) => ({
        Key: enc(u.key),
        UploadId: u.uploadId,
        Initiator: { ID: r.apiKey.id, DisplayName: r.apiKey.name.v },
        Owner: { ID: r.apiKey.id, DisplayName: r.apiKey.name.v },
        StorageClass: "STANDARD",
        Initiated: isoDate(u.timestamp),
      })),
      CommonPrefixes: commonPrefixes.map((cp) => ({ Prefix: enc(cp) })),
    }),
  );
}
