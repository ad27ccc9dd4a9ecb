// Multipart uploads: Create, UploadPart, Complete, Abort, ListParts, ListMultipartUploads.
// Each part is a version of its own; Complete stitches the parts' blocks into the object's
// version (renumbered 1..N) and only then makes it visible.
import { CryptoHasher } from "bun";
import { MAX_LIST_KEYS, MAX_PART_NUMBER, MAX_PUT_SIZE } from "../../util/limits";
import {
  CHECKSUM_ALGORITHMS,
  checkChecksumType,
  checksumHeaderName,
  createChecksum,
  defaultChecksumType,
  isFullObjectAlgorithm,
  parseChecksumAlgorithm,
  toBase64,
  type ChecksumAlgorithm,
  type ChecksumType,
} from "../../util/checksum";
import { combineFullObject } from "../../util/crc-combine";
import { assert } from "../../util/assert";
import { uploadSortKey, partSortKey, type UploadEntry, type UploadPartEntry } from "../../model/upload";
import { parseDecimal } from "../../util/decimal";
import type { ObjectChecksum, ObjectMeta } from "../../model/object";
import { storeServices, type BucketRequest, type ObjectRequest } from "./context";
import { checkQuotas, withinSizeQuota } from "./quota";
import { parseTaggingHeader } from "./object-tagging";
import { parseSseC, bodyEtag, sseCResponseHeaders, unlockSseC } from "./sse-c";
import { newEncryptionRecord } from "../../block/encryption";
import { S3Error } from "./errors";
import { PayloadReader, readSmallBody } from "./body";
import { declaredChecksumType, declaredDigests, etagHeader, isChecksumValue, normalizeEtag, storedHeaders, verifyDigests, type DeclaredDigests } from "./headers";
import { completeUpload, startUpload, writePart, type UploadChecksum } from "../../model/object-writer";
import { writeCondition } from "./put";
import { isoDate, xmlResponse } from "./bucket";
import { children, childText, MAX_XML_BODY, parseXml, xmlDocument, type XmlElement } from "./xml";
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

/**
 * The checksum a CreateMultipartUpload asks for: x-amz-checksum-algorithm, and
 * x-amz-checksum-type or the algorithm's default type, refused as S3 refuses them.
 */
function declaredUploadChecksum(h: Headers): UploadChecksum | undefined {
  const type = declaredChecksumType(h);
  const algoName = h.get("x-amz-checksum-algorithm");
  if (algoName === null) {
    if (type !== undefined) throw new S3Error("InvalidRequest", "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.");
    return undefined;
  }
  const algorithm = parseChecksumAlgorithm(algoName);
  if (!algorithm) throw new S3Error("InvalidRequest", `Unsupported checksum algorithm: ${algoName}`);
  const chosen = type ?? defaultChecksumType(algorithm);
  const refusal = checkChecksumType(algorithm, chosen);
  if (refusal !== undefined) throw new S3Error("InvalidRequest", refusal);
  return { algorithm, type: chosen };
}

/** How an upload's part checksums make the object's; undefined when it has no algorithm. */
function uploadChecksumType(upload: UploadEntry): ChecksumType | undefined {
  // Rows stored before the type was kept are COMPOSITE: nothing else was accepted then.
  return upload.checksumAlgorithm && (upload.checksumType ?? "COMPOSITE");
}

export async function createMultipartUpload(r: ObjectRequest): Promise<Response> {
  const headers = storedHeaders(r.headers);
  const checksum = declaredUploadChecksum(r.headers);
  const sseC = parseSseC(r.headers);
  const upload = await startUpload(storeServices(r.services), { bucketId: r.bucket.id, key: r.key }, {
    headers,
    checksum,
    tags: parseTaggingHeader(r.headers.get("x-amz-tagging")) ?? [],
    encryption: sseC && newEncryptionRecord(sseC.key).record,
  });
  const extra: Record<string, string> = {
    ...(checksum ? { "x-amz-checksum-algorithm": checksum.algorithm, "x-amz-checksum-type": checksum.type } : {}),
    ...(sseC ? sseCResponseHeaders(sseC.keyMd5) : {}),
  };
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
 * A part of an upload created with a checksum algorithm has a checksum of that algorithm: the
 * client's, verified, or (sent without one) computed here. An encrypted upload's part is sealed
 * with the upload's key, which the request must give.
 */
export function storePart(r: ObjectRequest, upload: UploadEntry, part: number, chunks: AsyncIterable<Uint8Array>, sizeHint: number | undefined, digests = declaredDigests(r.headers, upload.checksumAlgorithm), trailers = () => new Map<string, string>()): Promise<UploadPartEntry> {
  // Another algorithm's checksum could not be combined with the other parts'.
  const expected = upload.checksumAlgorithm;
  if (expected && digests.checksumAlgorithm !== expected)
    throw new S3Error("InvalidRequest", `Checksum Type mismatch occurred, expected checksum Type: ${expected.toLowerCase()}, actual checksum Type: ${digests.checksumAlgorithm?.toLowerCase() ?? "null"}`);
  const dataKey = unlockSseC(upload.encryption, parseSseC(r.headers), "upload");
  return writePart(storeServices(r.services), upload, part, {
    chunks,
    sizeHint,
    checksumAlgorithms: digests.checksumAlgorithm ? [digests.checksumAlgorithm] : [],
    encryption: dataKey,
    describe: (body) => ({ etag: bodyEtag(body.md5, dataKey), checksum: verifyDigests(digests, body, trailers())?.value }),
  });
}

export async function uploadPart(r: ObjectRequest): Promise<Response> {
  const part = parsePartNumber(r.query.get("partNumber"));
  const upload = await getUpload(r, r.query.get("uploadId"));
  const payload = new PayloadReader(r, MAX_PUT_SIZE);
  const digests: DeclaredDigests = declaredDigests(r.headers, upload.checksumAlgorithm);
  // A part is no object yet, but a bucket full to its size quota takes no more data.
  await checkQuotas(r, payload.declaredLength ?? 0, { replacesKey: false });
  const chunks = payload.declaredLength === undefined ? withinSizeQuota(r, payload.chunks(), { replacesKey: false }) : payload.chunks();
  const entry = await storePart(r, upload, part, chunks, payload.declaredLength, digests, () => payload.trailers);
  const sseC = parseSseC(r.headers);
  const headers: Record<string, string> = { etag: etagHeader(entry.etag), ...(sseC ? sseCResponseHeaders(sseC.keyMd5) : {}) };
  if (entry.checksum && digests.checksumAlgorithm) headers[checksumHeaderName(digests.checksumAlgorithm)] = entry.checksum;
  return new Response(null, { status: 200, headers });
}

/** One <Part> of a CompleteMultipartUpload body. */
interface RequestedPart {
  num: number;
  etag: string;
  /** The part's checksum as the client names it (<ChecksumCRC32>...), when it does. */
  checksum?: { algorithm: ChecksumAlgorithm; value: string };
}

/** The <Checksum...> element of a <Part>: one at most, of an algorithm Bunker computes. */
function requestedPartChecksum(part: XmlElement): RequestedPart["checksum"] {
  const named = part.children.filter((c) => c.name.startsWith("Checksum"));
  if (named.length === 0) return undefined;
  if (named.length > 1) throw new S3Error("InvalidArgument", "Invalid Base64 or multiple checksums present in request");
  const element = named[0]!;
  const algorithm = parseChecksumAlgorithm(element.name.slice("Checksum".length));
  if (algorithm === undefined) throw new S3Error("NotImplemented", `<${element.name}>: Bunker does not compute this checksum (only ${CHECKSUM_ALGORITHMS.join(", ")})`);
  const value = element.text.trim();
  if (!isChecksumValue(algorithm, value)) throw new S3Error("InvalidArgument", "Invalid Base64 or multiple checksums present in request");
  return { algorithm, value };
}

/** The part list of a CompleteMultipartUpload body, checked for form and order; one entry per part number. */
function parseCompleteRequest(text: string): RequestedPart[] {
  const doc = parseXml(text);
  if (doc.name !== "CompleteMultipartUpload") throw new S3Error("MalformedXML", "Expected a <CompleteMultipartUpload> document");
  const requested = children(doc, "Part").map((p) => {
    // Spaces around an XML integer are the schema's; anything but decimal digits is malformed.
    // A number beyond 10000 is well-formed, and names no uploaded part (InvalidPart below).
    const num = parseDecimal(childText(p, "PartNumber")?.trim(), 0, Number.MAX_SAFE_INTEGER);
    const etag = childText(p, "ETag");
    if (num === undefined || etag === undefined) throw new S3Error("MalformedXML", "Each <Part> needs a <PartNumber> (a decimal integer) and an <ETag>");
    const checksum = requestedPartChecksum(p);
    return { num, etag: normalizeEtag(etag), ...(checksum ? { checksum } : {}) };
  });
  if (requested.length === 0) throw new S3Error("MalformedXML", "You must specify at least one part");
  for (let i = 1; i < requested.length; i++) {
    if (requested[i]!.num < requested[i - 1]!.num)
      throw new S3Error("InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be specified in order by part number.");
  }
  // A part number listed twice (a client that uploaded it again) counts once, as its last
  // entry: S3 accepts such a list (s3-tests test_multipart_resend_first_finishes_last).
  return requested.filter((p, i) => requested[i + 1]?.num !== p.num);
}

/** S3's ETag of a multipart object: the MD5 of the parts' binary MD5s, and their count. */
function multipartEtag(partEtags: readonly string[]): string {
  const md5s = new CryptoHasher("md5");
  for (const e of partEtags) md5s.update(Buffer.from(e, "hex"));
  return `${md5s.digest("hex")}-${partEtags.length}`;
}

/**
 * The object checksum a Complete declares in its headers (minio-go, hence restic and mc, send
 * the composite of the parts' checksums; a client that computed the whole object's CRC sends
 * it), checked against the upload before the body is read: one that cannot be checked is
 * refused, never ignored. So is an x-amz-checksum-type other than the upload's.
 */
function declaredObjectChecksum(r: ObjectRequest, upload: UploadEntry): { algorithm: ChecksumAlgorithm; value: string } | undefined {
  const type = declaredChecksumType(r.headers);
  const uploadType = uploadChecksumType(upload);
  // BadDigest, as the API reference of CompleteMultipartUpload says.
  if (type !== undefined && type !== uploadType)
    throw new S3Error("BadDigest", `The upload was created using the ${uploadType ?? "null"} checksum mode. The complete request must use the same checksum mode.`);
  const present = CHECKSUM_ALGORITHMS.filter((a) => r.headers.has(checksumHeaderName(a)));
  if (present.length > 1) throw new S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.");
  const declared = present[0];
  if (declared === undefined) return undefined;
  if (declared !== upload.checksumAlgorithm)
    throw new S3Error("InvalidRequest", `${checksumHeaderName(declared)} cannot be checked: the upload was created with ${upload.checksumAlgorithm ?? "no"} checksum algorithm`);
  return { algorithm: declared, value: r.headers.get(checksumHeaderName(declared))!.trim() };
}

/**
 * Checks the checksum a <Part> names against the part's stored one: a named checksum of another
 * algorithm or value is refused. A part may name none (the stored one, verified when the part
 * was sent, is used), as Ceph's s3-tests expect of AWS (test_multipart_use_cksum_helper_*).
 */
function checkRequestedPartChecksum(upload: UploadEntry, requested: RequestedPart, stored: UploadPartEntry): void {
  const algorithm = upload.checksumAlgorithm;
  const given = requested.checksum;
  if (given === undefined) return;
  if (algorithm && given.algorithm !== algorithm)
    throw new S3Error("BadDigest", `The ${given.algorithm.toLowerCase()} you specified for part ${requested.num} did not match what we received.`);
  // Without an upload algorithm, a part has the checksum it was sent with, if any.
  if (given.value !== stored.checksum) throw invalidPart(requested.num);
}

function invalidPart(num: number): S3Error {
  return new S3Error("InvalidPart", `One or more of the specified parts could not be found (part ${num}). The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.`);
}

/**
 * The object's checksum from its parts' (none without an upload algorithm): FULL_OBJECT is the
 * CRC of the whole object, combined from the part CRCs and sizes without reading the data;
 * COMPOSITE is the checksum of the part checksums, with the part count.
 */
function completedChecksum(upload: UploadEntry, chosen: readonly UploadPartEntry[]): ObjectChecksum | undefined {
  const algorithm = upload.checksumAlgorithm;
  const type = uploadChecksumType(upload);
  if (!algorithm || !type) return undefined;
  const digests = chosen.map((p) => {
    // Every part stored since the upload had its algorithm carries a checksum of it.
    if (p.checksum === undefined || !isChecksumValue(algorithm, p.checksum))
      throw new S3Error("InvalidPart", `Part ${p.part} has no stored ${algorithm} checksum to build the object's from; upload it again`);
    return Buffer.from(p.checksum, "base64");
  });
  if (type === "FULL_OBJECT") {
    assert(isFullObjectAlgorithm(algorithm), "FULL_OBJECT uploads have a CRC algorithm (refused at Create otherwise)");
    const combined = combineFullObject(algorithm, digests.map((checksum, i) => ({ checksum, size: chosen[i]!.size })));
    return { algorithm, value: toBase64(combined), type };
  }
  const composite = createChecksum(algorithm);
  for (const d of digests) composite.update(d);
  return { algorithm, value: `${toBase64(composite.digest())}-${chosen.length}`, type };
}

/** A declared object checksum must be the computed one (a COMPOSITE one may omit its "-N"). */
function checkDeclaredChecksum(declared: { algorithm: ChecksumAlgorithm; value: string } | undefined, checksum: ObjectChecksum | undefined, partCount: number): void {
  if (declared === undefined) return;
  assert(checksum !== undefined && checksum.algorithm === declared.algorithm, "a declared checksum is of the upload's algorithm, which every part has");
  const given = checksum.type === "COMPOSITE" && !/-\d+$/.test(declared.value) ? `${declared.value}-${partCount}` : declared.value;
  if (given !== checksum.value) throw new S3Error("BadDigest", `The ${declared.algorithm} you specified did not match the calculated checksum`);
}

export async function completeMultipartUpload(r: ObjectRequest): Promise<Response> {
  const upload = await findUpload(r, r.query.get("uploadId"));
  if (upload?.deleted) return repeatCompletion(r, upload);
  if (!upload) throw noSuchUpload();
  const condition = writeCondition(r.headers);
  // An encrypted upload is completed with its key (as AWS asks); a key given for another upload
  // is refused.
  const sseC = parseSseC(r.headers);
  if (sseC || upload.encryption) unlockSseC(upload.encryption, sseC, "upload");
  const declared = declaredObjectChecksum(r, upload);
  // Its x-amz-checksum-* headers describe the object, not this XML body.
  const requested = parseCompleteRequest(await readSmallBody(r, MAX_XML_BODY, false));
  const stored = new Map((await allParts(r, upload.uploadId)).map((p) => [p.part, p]));
  const chosen = requested.map((req, i) => {
    const p = stored.get(req.num);
    if (!p || p.etag !== req.etag) throw invalidPart(req.num);
    if (i < requested.length - 1 && p.size < MIN_PART_SIZE)
      throw new S3Error("EntityTooSmall", `Your proposed upload is smaller than the minimum allowed object size (part ${req.num} has ${p.size} bytes; every part but the last needs ${MIN_PART_SIZE})`);
    checkRequestedPartChecksum(upload, req, p);
    return p;
  });
  // As AWS: the object's part N is the upload's part N, so GET ?partNumber=N and the part
  // checksums it answers name the same part.
  if (upload.checksumAlgorithm && requested.some((p, i) => p.num !== i + 1))
    throw new S3Error("InvalidPartOrder", "With part checksums, the part numbers must start at 1 and be consecutive.");

  const checksum = completedChecksum(upload, chosen);
  checkDeclaredChecksum(declared, checksum, chosen.length);
  await checkQuotas(r, chosen.reduce((a, p) => a + p.size, 0));

  const etag = multipartEtag(chosen.map((p) => p.etag));
  const meta: ObjectMeta = {
    size: chosen.reduce((a, p) => a + p.size, 0),
    etag,
    headers: upload.headers,
    checksum,
    parts: chosen.map((p) => p.size),
    ...(checksum ? { partChecksums: chosen.map((p) => p.checksum!) } : {}),
    ...(upload.encryption ? { encryption: upload.encryption } : {}),
  };
  await completeUpload(storeServices(r.services), upload, chosen, [...stored.values()], meta, { kind: "completed", etag, ...(checksum ? { checksum: checksum.value } : {}) }, condition);
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
  const type = uploadChecksumType(upload);
  const checksum: ObjectChecksum | undefined = outcome.checksum !== undefined && upload.checksumAlgorithm && type ? { algorithm: upload.checksumAlgorithm, value: outcome.checksum, type } : undefined;
  return completionResponse(r, outcome.etag, checksum);
}

function completionResponse(r: ObjectRequest, etag: string, checksum: ObjectChecksum | undefined): Response {
  const location = r.services.settings.rootDomain ? `http://${r.bucketName}.${r.services.settings.rootDomain}/${urlEncodeKey(r.key)}` : `/${r.bucketName}/${urlEncodeKey(r.key)}`;
  // The key's headers are echoed, as on every SSE-C request (s3-tests check it on Complete).
  const sseC = parseSseC(r.headers);
  const extra: Record<string, string> = { ...(checksum ? { [checksumHeaderName(checksum.algorithm)]: checksum.value } : {}), ...(sseC ? sseCResponseHeaders(sseC.keyMd5) : {}) };
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
  // The parts' checksums of an encrypted upload are its owner's to read (AWS asks for the key
  // then); otherwise a key is optional, but one that is given must be the upload's.
  const sseC = parseSseC(r.headers);
  if (sseC || (upload.encryption && upload.checksumAlgorithm)) unlockSseC(upload.encryption, sseC, "upload");
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
      ChecksumType: uploadChecksumType(upload),
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
