// GetObjectAttributes (`GET /bucket/key?attributes`): what HeadObject and ListParts would tell
// of a stored object, in one answer whose parts x-amz-object-attributes chooses: its ETag, its
// checksum, its parts (with their checksums, in pages), its storage class and its size. Only
// metadata is read, never a block.
import { visibleVersion, type ObjectMeta } from "../../model/object";
import { readObject } from "../../model/pending";
import { parseSseC, sseCResponseHeaders, unlockSseC } from "./sse-c";
import { parseDecimal } from "../../util/decimal";
import type { ObjectRequest } from "./context";
import { S3Error } from "./errors";
import { xmlResponse } from "./bucket";
import { httpDate } from "./get";
import { xmlDocument, type XmlNode } from "./xml";

/** The attributes S3 defines, spelled as x-amz-object-attributes names them. */
const ATTRIBUTES = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"] as const;
type Attribute = (typeof ATTRIBUTES)[number];
/** Most parts in one page, and the page size when x-amz-max-parts is absent (S3's, as ListParts). */
const MAX_ATTRIBUTE_PARTS = 1000;
/** S3's integer headers are 32-bit signed: AWS refuses anything larger. */
const MAX_HEADER_INTEGER = 2 ** 31 - 1;

/** The attributes the request names: at least one, each of them one S3 defines. */
function requestedAttributes(h: Headers): Set<Attribute> {
  const names = (h.get("x-amz-object-attributes") ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
  if (names.length === 0) throw new S3Error("InvalidRequest", "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty");
  const out = new Set<Attribute>();
  for (const name of names) {
    const known = ATTRIBUTES.find((a) => a === name);
    if (known === undefined) throw new S3Error("InvalidArgument", `Invalid attribute name specified: ${JSON.stringify(name)} (one of ${ATTRIBUTES.join(", ")})`);
    out.add(known);
  }
  return out;
}

/** An integer header (x-amz-max-parts, x-amz-part-number-marker), undefined when absent. */
function headerInteger(h: Headers, name: string): number | undefined {
  const raw = h.get(name);
  if (raw === null) return undefined;
  const n = parseDecimal(raw.trim(), 0, MAX_HEADER_INTEGER);
  if (n === undefined) throw new S3Error("InvalidArgument", `${name} must be an integer between 0 and ${MAX_HEADER_INTEGER}, got ${JSON.stringify(raw)}`);
  return n;
}

/** The object's checksum as GetObjectAttributes shows it (a composite one with its "-N", as s3-tests expect). */
function checksumElement(meta: ObjectMeta): XmlNode {
  const c = meta.checksum;
  if (!c) return undefined;
  return { [`Checksum${c.algorithm}`]: c.value, ChecksumType: c.type };
}

/**
 * The parts of a multipart object (a single-part object has none to show), in pages, each with
 * its size and, when the upload had an algorithm, its checksum.
 */
function partsElement(meta: ObjectMeta, maxParts: number, marker: number): XmlNode {
  const sizes = meta.parts;
  if (sizes === undefined) return undefined;
  const checksums = meta.partChecksums;
  const algorithm = meta.checksum?.algorithm;
  // Parts are numbered 1..N (renumbered at completion): part n is at index n - 1.
  const first = Math.min(marker, sizes.length);
  const last = Math.min(first + maxParts, sizes.length);
  const page: XmlNode[] = [];
  for (let i = first; i < last; i++) page.push({ PartNumber: i + 1, Size: sizes[i]!, ...(checksums && algorithm ? { [`Checksum${algorithm}`]: checksums[i] } : {}) });
  return {
    PartsCount: sizes.length,
    PartNumberMarker: marker,
    NextPartNumberMarker: last > first ? last : undefined,
    MaxParts: maxParts,
    IsTruncated: last < sizes.length,
    Part: page,
  };
}

export async function getObjectAttributes(r: ObjectRequest): Promise<Response> {
  // The request is checked before the object is looked up: a bad one is refused either way.
  const wanted = requestedAttributes(r.headers);
  // 0 or absent: the default page; more than a page holds is clamped, as ListParts.
  const maxParts = Math.min(headerInteger(r.headers, "x-amz-max-parts") || MAX_ATTRIBUTE_PARTS, MAX_ATTRIBUTE_PARTS);
  const marker = headerInteger(r.headers, "x-amz-part-number-marker") ?? 0;
  const given = parseSseC(r.headers);
  const version = visibleVersion(await readObject(r.services, r.bucket.id, r.key));
  if (!version) throw new S3Error("NoSuchKey", "The specified key does not exist.");
  const meta = version.state.data.meta;
  // An encrypted object's attributes are its owner's to read, as its data (AWS: the key is needed).
  unlockSseC(meta.encryption, given, "read");
  const body = xmlDocument("GetObjectAttributesResponse", {
    ETag: wanted.has("ETag") ? meta.etag : undefined,
    Checksum: wanted.has("Checksum") ? checksumElement(meta) : undefined,
    ObjectParts: wanted.has("ObjectParts") ? partsElement(meta, maxParts, marker) : undefined,
    StorageClass: wanted.has("StorageClass") ? "STANDARD" : undefined,
    ObjectSize: wanted.has("ObjectSize") ? meta.size : undefined,
  });
  return xmlResponse(body, 200, { "last-modified": httpDate(version.timestamp), ...(given ? sseCResponseHeaders(given.keyMd5) : {}) });
}
