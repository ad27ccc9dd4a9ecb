// Object metadata carried in HTTP headers: which request headers are stored with an
// object, what a header value may hold, how checksums and Content-MD5 are declared and
// verified, and ETags.
import { MAX_USER_METADATA_BYTES } from "../../util/limits";
import { checksumHeaderName, parseChecksumAlgorithm, toBase64, type ChecksumAlgorithm, type ChecksumType, CHECKSUM_ALGORITHMS, CHECKSUM_DIGEST_LENGTH } from "../../util/checksum";
import type { HeaderList, ObjectChecksum } from "../../model/object";
import { S3Error } from "./errors";
import type { WrittenBody } from "../../model/body-writer";

/**
 * What an HTTP field value may hold (RFC 9110 §5.5): tab, space, visible ASCII, and obs-text
 * (bytes 0x80-0xFF, which Bun reads and writes as the Latin-1 characters of those codes).
 * Anything else cannot go back out: Bun throws on CR, LF, NUL and characters beyond Latin-1,
 * and Node's HTTP parser (so every JS client) refuses a response with any other control or DEL.
 */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** RFC 9110 token: the characters of a header name. */
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** True when `value` can be sent as an HTTP header value. */
export function isHeaderValue(value: string): boolean {
  return HEADER_VALUE.test(value);
}

/** True when `name` is a valid HTTP header name. */
export function isHeaderName(name: string): boolean {
  return HEADER_NAME.test(name);
}

/**
 * The header value for text that arrived as Unicode (a percent-decoded query parameter): its
 * UTF-8 bytes, as the client encoded them. Refused (InvalidArgument) when it holds a character
 * no header value may hold, such as a line break that would start a header of its own.
 */
export function headerValueFromText(what: string, text: string): string {
  const bytes = Buffer.from(text, "utf8").toString("latin1");
  if (!isHeaderValue(bytes)) throw new S3Error("InvalidArgument", `${what} holds a character that an HTTP header value may not hold (a control character or line break): ${JSON.stringify(text)}`);
  return bytes;
}

/** The content coding that frames an aws-chunked (SigV4 streaming) body. */
const AWS_CHUNKED = "aws-chunked";

/**
 * The Content-Encoding an object keeps: the value as sent, byte for byte ("deflate, gzip"
 * stays so), less any aws-chunked coding, which is the framing of the request body and not a
 * property of the object; undefined when nothing else is left. The codings around a removed
 * one keep their own spelling: "gzip, aws-chunked" and "aws-chunked, gzip" keep "gzip". An
 * empty value stores no Content-Encoding.
 */
export function storedContentEncoding(value: string): string | undefined {
  if (value.trim() === "") return undefined;
  const codings = value.split(",");
  if (!codings.some((c) => c.trim().toLowerCase() === AWS_CHUNKED)) return value;
  const kept = codings.filter((c) => c.trim().toLowerCase() !== AWS_CHUNKED && c.trim() !== "");
  return kept.length > 0 ? kept.join(",").trim() : undefined;
}

/** Standard headers stored with an object and returned on GET/HEAD. */
export const STORED_HEADERS = ["content-type", "content-encoding", "content-disposition", "content-language", "cache-control", "expires", "x-amz-website-redirect-location"];

export function storedHeaders(h: Headers): HeaderList {
  const out: HeaderList = [];
  let userBytes = 0;
  h.forEach((value, name) => {
    const n = name.toLowerCase();
    const stored = STORED_HEADERS.includes(n) || n.startsWith("x-amz-meta-");
    // Refused here rather than stored: every later GET or HEAD would have to send it back.
    if (stored && !isHeaderValue(value)) throw new S3Error("InvalidArgument", `The value of ${n} holds a character that an HTTP header value may not hold (a control character or line break)`);
    if (STORED_HEADERS.includes(n)) {
      if (n === "content-encoding") {
        const coding = storedContentEncoding(value);
        if (coding !== undefined) out.push([n, coding]);
        return;
      }
      out.push([n, value]);
    } else if (n.startsWith("x-amz-meta-")) {
      userBytes += n.length - "x-amz-meta-".length + value.length;
      out.push([n, value]);
    }
  });
  if (userBytes > MAX_USER_METADATA_BYTES)
    throw new S3Error("MetadataTooLarge", `Your metadata headers exceed the maximum allowed metadata size (${MAX_USER_METADATA_BYTES} bytes)`);
  const redirect = out.find(([n]) => n === "x-amz-website-redirect-location");
  if (redirect && !/^(\/|https?:\/\/)/.test(redirect[1]))
    throw new S3Error("InvalidArgument", "x-amz-website-redirect-location must start with /, http:// or https://");
  return out;
}

/** What the client asked us to verify, known before the body is read. */
export interface DeclaredDigests {
  contentMd5?: Uint8Array;
  /** Algorithm of the x-amz-checksum-* value (header, or trailer announced in x-amz-trailer). */
  checksumAlgorithm?: ChecksumAlgorithm;
  /** Expected base64 value when sent as a header; from the trailer otherwise. */
  checksumValue?: string;
  checksumInTrailer: boolean;
}

export function declaredDigests(h: Headers, uploadAlgorithm?: ChecksumAlgorithm): DeclaredDigests {
  const d: DeclaredDigests = { checksumInTrailer: false };
  const md5 = h.get("content-md5");
  if (md5 !== null) {
    const bytes = Buffer.from(md5, "base64");
    if (bytes.length !== 16 || bytes.toString("base64") !== md5.trim()) throw new S3Error("InvalidDigest", "The Content-MD5 you specified is not valid");
    d.contentMd5 = bytes;
  }
  const present = CHECKSUM_ALGORITHMS.filter((a) => h.has(checksumHeaderName(a)));
  if (present.length > 1) throw new S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header; multiple checksum types are not allowed");
  if (present.length === 1) {
    d.checksumAlgorithm = present[0];
    d.checksumValue = h.get(checksumHeaderName(present[0]!))!;
  }
  const trailer = h.get("x-amz-trailer");
  if (trailer && present.length > 0) throw new S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header or trailer; multiple checksums are not allowed");
  if (trailer) {
    const name = trailer.trim().toLowerCase();
    const algo = name.startsWith("x-amz-checksum-") ? parseChecksumAlgorithm(name.slice("x-amz-checksum-".length)) : undefined;
    if (!algo) throw new S3Error("InvalidRequest", `Unsupported trailer: ${trailer}`);
    d.checksumAlgorithm = algo;
    d.checksumInTrailer = true;
  }
  const sdkAlgo = h.get("x-amz-sdk-checksum-algorithm") ?? h.get("x-amz-checksum-algorithm");
  if (!d.checksumAlgorithm && sdkAlgo) {
    const algo = parseChecksumAlgorithm(sdkAlgo);
    if (!algo) throw new S3Error("InvalidRequest", `Unsupported checksum algorithm: ${sdkAlgo}`);
    d.checksumAlgorithm = algo;
  }
  d.checksumAlgorithm ??= uploadAlgorithm;
  return d;
}

/** Checks the body against Content-MD5 and the declared checksum; returns the checksum to store. */
export function verifyDigests(d: DeclaredDigests, body: WrittenBody, trailers: Map<string, string>): ObjectChecksum | undefined {
  if (d.contentMd5 && Buffer.compare(Buffer.from(d.contentMd5), Buffer.from(body.md5)) !== 0)
    throw new S3Error("BadDigest", "The Content-MD5 you specified did not match what we received");
  if (!d.checksumAlgorithm) return undefined;
  const computed = toBase64(body.checksums.get(d.checksumAlgorithm)!);
  const expected = d.checksumInTrailer ? trailers.get(checksumHeaderName(d.checksumAlgorithm)) : d.checksumValue;
  if (expected !== undefined && expected.trim() !== computed)
    throw new S3Error("BadDigest", `The ${d.checksumAlgorithm} you specified did not match the calculated checksum`);
  return { algorithm: d.checksumAlgorithm, value: computed, type: "FULL_OBJECT" };
}

/** x-amz-checksum-type (CreateMultipartUpload, CompleteMultipartUpload); undefined when absent. */
export function declaredChecksumType(h: Headers): ChecksumType | undefined {
  const raw = h.get("x-amz-checksum-type");
  if (raw === null) return undefined;
  const type = raw.trim().toUpperCase();
  if (type !== "FULL_OBJECT" && type !== "COMPOSITE") throw new S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.");
  return type;
}

/** True when `value` is a checksum of `algo` as S3 writes it: canonical base64 of its digest length. */
export function isChecksumValue(algo: ChecksumAlgorithm, value: string): boolean {
  const bytes = Buffer.from(value, "base64");
  return bytes.length === CHECKSUM_DIGEST_LENGTH[algo] && bytes.toString("base64") === value;
}

/** The response headers of a stored checksum (GET and HEAD with x-amz-checksum-mode: ENABLED). */
export function checksumHeaders(checksum: ObjectChecksum): Record<string, string> {
  return { [checksumHeaderName(checksum.algorithm)]: checksum.value, "x-amz-checksum-type": checksum.type };
}

export function etagHeader(etag: string): string {
  return `"${etag}"`;
}

/** Strips quotes and W/ from an ETag in a condition header. */
export function normalizeEtag(s: string): string {
  return s.trim().replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
}
