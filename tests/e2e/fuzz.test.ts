// Seeded fuzz of a running node: random methods, targets, S3 sub-resources with hostile values,
// S3 headers and bodies (random bytes, XML, forms, aws-chunked framing), signed with SigV4 so
// that they reach the handlers, or with no or broken credentials; plus random admin API and
// web endpoint requests. Asserts: no 5xx (501 aside), an answer to every complete request,
// no 2xx without credentials outside the public endpoints, the process alive and healthy,
// bounded RSS, and nothing stored but what a valid request created.
//
// "Stored" follows S3's definitions: a bucket may exist only after a 2xx CreateBucket (PUT on
// the bucket naming no sub-resource) or an admin answer naming it; an object only with the
// ETag of a 2xx PutObject/CopyObject (PUT naming no sub-resource, with a body matching its
// declared digests), CompleteMultipartUpload or PostObject (signed policy); an upload only after
// a 2xx CreateMultipartUpload.
//
// FUZZ_SEED=<n> replays a run (the seed is printed; a fresh one each run otherwise);
// FUZZ_REQUESTS=<n> changes the count; FUZZ_TRACE=<file> writes every request and its answer
// there. A failure report shows the first example of each failure class, shrunk by replaying
// it without its parts, with the server's log lines for it.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutBucketCorsCommand,
  PutBucketWebsiteCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { startServer, WEB_ROOT_DOMAIN, type TestServer } from "../helpers/server";
import { crc32c, crcBase64, MiB, sdkClient } from "../helpers/clients";
import { mulberry32 } from "../helpers/random";
import { parseDecimal } from "../../src/util/decimal";
import {
  postPolicyFields,
  presignTarget,
  rawExchange,
  sha256Hex,
  signedChunkedBody,
  signHeaders,
  unsignedChunkedBody,
  type HeaderList,
  type RawRequest,
  type RawResponse,
  type SigV4Credentials,
} from "../helpers/raw-request";

setDefaultTimeout(120_000);

function envInteger(name: string, fallback: number, max: number): number {
  const text = process.env[name];
  if (text === undefined) return fallback;
  const n = parseDecimal(text, 0, max);
  if (n === undefined) throw new Error(`${name} must be an integer from 0 to ${max}, got "${text}"`);
  return n;
}

const SEED = envInteger("FUZZ_SEED", Math.floor(Math.random() * 2 ** 32), 2 ** 32 - 1);
/** Requests per run: enough to reach most handlers with odd input, a few seconds of work. */
const REQUESTS = envInteger("FUZZ_REQUESTS", 1500, 1_000_000);
/** A complete request not answered within this is a hang (the server answers in milliseconds). */
const REQUEST_TIMEOUT_MS = 5_000;
/** The request loop stops starting requests after this, so the test stays well under a minute. */
const RUN_BUDGET_MS = 30_000;
/** Shrinking the failure examples (replays, inside the run's budget) stops after this. */
const SHRINK_BUDGET_MS = 6_000;
/** The server's resident memory bound during and after the run (a node idles near 100 MiB). */
const RSS_BOUND = 300 * MiB;
/** Response body bytes kept for the report. */
const SHOWN_BODY = 300;
/**
 * No request here carries more than a few MiB: one that grows the server's RSS by more than
 * this amplifies its input without bound.
 */
const RSS_JUMP = 64 * MiB;
const TRACE_FILE = process.env.FUZZ_TRACE;

// ------------------------------------------------------------------------------ randomness

class Rnd {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** [0, n) */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** [a, b] */
  range(a: number, b: number): number {
    return a + this.int(b - a + 1);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  weighted<T>(pairs: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [w] of pairs) total += w;
    let x = this.next() * total;
    for (const [w, v] of pairs) {
      if (x < w) return v;
      x -= w;
    }
    return pairs[pairs.length - 1]![1];
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i += 4) {
      const v = Math.floor(this.next() * 4294967296);
      b[i] = v & 0xff;
      if (i + 1 < n) b[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < n) b[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < n) b[i + 3] = (v >>> 24) & 0xff;
    }
    return b;
  }
  hex(n: number): string {
    return this.bytes(Math.ceil(n / 2)).toString("hex").slice(0, n);
  }
}

// ------------------------------------------------------------------------------ vocabulary

/** Sub-resources and parameters of the S3 API (query names), real ones first. */
const S3_PARAMS = [
  "uploads", "uploadId", "partNumber", "versionId", "versioning", "tagging", "acl", "cors", "website", "lifecycle",
  "delete", "location", "policy", "list-type", "max-keys", "prefix", "delimiter", "continuation-token", "start-after",
  "marker", "encoding-type", "fetch-owner", "max-uploads", "key-marker", "upload-id-marker", "max-parts",
  "part-number-marker", "response-content-type", "response-content-disposition", "response-content-encoding",
  "response-content-language", "response-cache-control", "response-expires", "versions", "restore", "select",
  "select-type", "attributes", "object-lock", "retention", "legal-hold", "notification", "logging", "replication",
  "encryption", "x-id", "publicAccessBlock", "ownershipControls", "requestPayment", "accelerate", "torrent",
  "X-Amz-Expires", "X-Amz-Algorithm", "Signature", "AWSAccessKeyId",
];
const ODD_PARAM_NAMES = ["", "%ZZ", "%00", "a%00b", "%C3%28", "x".repeat(300), "=", "uploads%00", "list%2Dtype", "UPLOADS", "+", "%20"];

const NUMBERS = [
  "0", "1", "2", "-1", "0x10", "1e3", "1.5", "+1", "%2B1", "01", "%201", "1000", "1001", "10000", "10001",
  "2147483647", "2147483648", "4294967296", "9007199254740993", "99999999999999999999999999", "NaN", "Infinity", "-0", "1_000",
];
/** Query values as they appear in a target (already percent-encoded, or deliberately not). */
const NASTY_QUERY_VALUES = [
  "", "%0D%0A", "a%0D%0AX-Injected:%201", "%0A", "%0D", "%00", "a%00b", "%C3%28", "%FF%FE", "%E2%82", "%ED%A0%80",
  "%F4%90%80%80", "%", "%%", "%2", "%ZZ", "%C0%AF", "+", "a+b", "%3Cx%3E", "%22", "%27", "..%2F..", "%2F", "/",
  "text%2Fhtml", "text%2Fplain%3B%20charset%3Dutf-8", "%E2%82%AC", "%F0%9F%92%A5", "%7F", "%08", "%1B%5B31m",
  "true", "false", "null", "url", "URL", "2", "STANDARD", "attachment%3B%20filename%3D%22a%0D%0Ab%22", "%C3%A9",
  "Thu%2C%2001%20Jan%201970%2000%3A00%3A00%20GMT", "a%2Cb", "%3B", "%7B%7D", "|", "^", "`", "{", "\xe9", "<",
];
const XML_ROOTS = [
  "CORSConfiguration", "LifecycleConfiguration", "WebsiteConfiguration", "Delete", "CompleteMultipartUpload",
  "CreateBucketConfiguration", "VersioningConfiguration", "Tagging", "AccessControlPolicy", "x",
];
const XML_NAMES = [
  "CORSRule", "AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader", "MaxAgeSeconds", "ID", "Rule",
  "Filter", "Prefix", "Status", "Expiration", "Days", "Date", "ExpiredObjectDeleteMarker", "AbortIncompleteMultipartUpload",
  "DaysAfterInitiation", "NoncurrentVersionExpiration", "Transition", "And", "Tag", "Key", "Value", "ObjectSizeGreaterThan",
  "ObjectSizeLessThan", "IndexDocument", "Suffix", "ErrorDocument", "RedirectAllRequestsTo", "HostName", "Protocol",
  "RoutingRules", "RoutingRule", "Condition", "KeyPrefixEquals", "HttpErrorCodeReturnedEquals", "Redirect",
  "ReplaceKeyWith", "ReplaceKeyPrefixWith", "HttpRedirectCode", "Object", "VersionId", "Quiet", "Part", "PartNumber",
  "ETag", "ChecksumCRC32", "LocationConstraint", "MfaDelete", "TagSet", "StorageClass",
];
const XML_TEXTS = [
  "", " ", "a", "GET", "PUT", "get", "DELETE", "BREW", "*", "**", "https://*.example.com", "http://a.example.com", "Enabled",
  "Disabled", "Suspended", "true", "false", "index.html", "error.html", "a/b", "/", "http", "https", "ftp", "example.com",
  "2020-01-01T00:00:00.000Z", "2099-01-01T00:00:00Z", "2020-13-45", "&lt;", "&amp;", "&#0;", "&#xD800;", "&#x110000;",
  "&#10;", "&#13;&#10;", "a&#13;&#10;X-Injected: 1", "&bogus;", "&", "<![CDATA[x]]>", "]]>", "é", "\u2028", "x y",
  "x-amz-*", "Content-Type", "ETag", "a\u00e9b", "%0D%0A", "garage", "us-east-1", "hello.txt", "dir/", "301", "302", "404",
  "0", "-1", "1e3", "99999999999", "x".repeat(300), "x".repeat(3000),
];
/** XML texts that are no valid HTTP header value once parsed (CORS and website settings end up in headers). */
const HEADER_NASTY_XML = ["a&#13;&#10;b", "x&#10;y", "\u0100", "\u2028", "a b", "é", "&#0;", "&#127;", "a&#9;b", "(x)", "a,b"];
const METHODS_S3: (readonly [number, string])[] = [
  [25, "GET"], [8, "HEAD"], [25, "PUT"], [15, "POST"], [10, "DELETE"], [7, "OPTIONS"], [2, "PATCH"],
  [1, "PROPFIND"], [1, "TRACE"], [1, "CONNECT"], [1, "FOO"], [1, "get"], [1, "M-SEARCH"],
];
const ADMIN_ENDPOINTS = [
  "GetClusterStatus", "GetClusterHealth", "GetNodeInfo", "ConnectClusterNodes", "GetClusterLayout", "UpdateClusterLayout",
  "PreviewClusterLayoutChanges", "RevertClusterLayout", "GetClusterLayoutHistory", "ListWorkers", "LaunchRepairOperation",
  "ListBlockErrors", "ListKeys", "GetKeyInfo", "CreateKey", "ImportKey", "UpdateKey", "DeleteKey", "ListBuckets",
  "GetBucketInfo", "CreateBucket", "UpdateBucket", "DeleteBucket", "InspectObject", "AddBucketAlias", "RemoveBucketAlias",
  "CleanupIncompleteUploads", "AllowBucketKey", "DenyBucketKey",
  // ApplyClusterLayout is left out: with the token, taking away the node's only role is a
  // legitimate admin action, after which 503 is the right answer to everything.
];
const ADMIN_FIELDS = [
  "name", "allow", "deny", "createBucket", "globalAlias", "bucketId", "accessKeyId", "secretAccessKey", "permissions", "read",
  "write", "owner", "websiteAccess", "enabled", "indexDocument", "errorDocument", "quotas", "maxSize", "maxObjects",
  "repairType", "olderThanSecs", "roles", "id", "zone", "capacity", "tags", "remove", "version", "localAlias", "key",
  "__proto__", "constructor",
];
/** Public endpoints: answering them without credentials is their purpose. */
const PUBLIC_ADMIN_PATHS = ["/health", "/metrics", "/check"];

// ------------------------------------------------------------------------------ cases

type Port = "s3" | "admin" | "web";
type S3Auth =
  | "sigv4" | "presigned" | "none" | "wrong-secret" | "unknown-key" | "bad-signature" | "skewed" | "wrong-region"
  | "tampered-query" | "junk-header" | "sigv2-header" | "sigv2-query" | "presigned-expired" | "presigned-junk" | "unsigned-amz";
type Payload = "unsigned" | "sha256" | "sha256-wrong" | "streaming" | "streaming-trailer" | "garbage";
type Framing = "exact" | "omit" | "te-chunked" | "longer" | "shorter" | "garbage-cl" | "cl-and-te";
type FormPolicy = "valid" | "uncovered-field" | "expired" | "bad-signature" | "garbage" | "none";

interface FormSpec {
  fields: HeaderList;
  policy: FormPolicy;
  filename: string;
  file: Buffer;
  boundary: string;
  /** Cut the body this many bytes into the file data (the file never ends). */
  truncateAt?: number;
  noFile?: boolean;
}

interface Case {
  index: number;
  port: Port;
  method: string;
  path: string;
  /** Raw query pieces ("name=value" or "name"), joined with "&". */
  query: string[];
  headers: HeaderList;
  body: Buffer;
  auth: S3Auth | "token" | "no-token" | "bad-token" | "public";
  payload: Payload;
  /** aws-chunked: chunk sizes and a mutation of the framed body. */
  chunks: number[];
  chunkMutation: "none" | "flip" | "truncate" | "append" | "bad-size";
  framing: Framing;
  garbageLength?: string;
  host: string | null;
  form?: FormSpec;
}

interface Ctx {
  server: TestServer;
  creds: SigV4Credentials;
  uploadId: string;
  partEtag: string;
  etags: string[];
  bucketIds: string[];
  victimKeyId: string;
}

function s3Host(ctx: Ctx): string {
  return `127.0.0.1:${ctx.server.s3Port}`;
}

const BUCKETS_EXISTING = ["fz-a", "fz-b", "fz-web"];
const BUCKETS_NEW = ["fz-n1", "fz-n2", "fz-n3", "fz-n4", "fz-n5"];
const BUCKETS_INVALID = [
  "A", "ab", "-ab", "ab-", "a".repeat(64), "fz..a", "192.168.5.4", "xn--abc", "fz_a", "%C3%A9t%C3%A9", "%ZZ", "%00", "fz-a%00",
  ".", "..", "fz-a.", "sthree-x", "x-s3alias", "FZ-A", "fz%2Da", "fz-a%2Fhello.txt",
];
const KEYS_EXISTING = ["hello.txt", "dir/a", "big", "mp", "%C3%A9t%C3%A9%20%2B.txt"];
const KEYS_ODD = [
  "%C3%28", "%FF", "%00", "a%00b", "%", "%%41", "%2", "..", ".", "../../etc/passwd", "a//b", "a/./b", "%2F", "%2Fabs", "x".repeat(1024),
  "x".repeat(1025), "\xe9", "%E2%80%AE", "%F0%9F%92%A5", "%0D%0Afoo", "a%20", "%20", "+", "~", "%7E", "dir/", "a%3Fb", "a;b", "a%23b",
  "%ED%A0%80", "%E2%82", "\x7f", "a b", "%u00e9",
];
const ODD_TARGETS = [
  "*", "//", "/..", "/./fz-a", "/fz-a/../fz-b", "http://127.0.0.1/fz-a/hello.txt", "/%2e%2e/", "fz-a", "/fz-a/hello.txt#frag",
  "/fz-a%2Fhello.txt", "/" + "a".repeat(5000), "/fz-a/" + "%41".repeat(3000), "/?", "/fz-a?", "/fz-a//", "/\\fz-a", "/fz-a/\\..\\x",
];

function pickKeySeg(r: Rnd): string {
  return r.weighted([
    [50, () => r.pick(KEYS_EXISTING)],
    [25, () => `new-${r.int(20)}${r.chance(0.3) ? "/x" : ""}`],
    [25, () => r.pick(KEYS_ODD)],
  ])();
}

function pickBucketSeg(r: Rnd): string {
  return r.weighted([
    [52, "fz-a"],
    [12, "fz-b"],
    [10, "fz-web"],
    [13, r.pick(BUCKETS_NEW)],
    [13, r.pick(BUCKETS_INVALID)],
  ]);
}

function queryValue(r: Rnd, ctx: Ctx): string {
  return r.weighted([
    [35, () => r.pick(NUMBERS)],
    [40, () => r.pick(NASTY_QUERY_VALUES)],
    [8, () => r.pick(["x", "%41", "%C3%A9", "%0D%0A"]).repeat(r.pick([100, 400, 1025, 3000]))],
    [17, () => r.pick([ctx.uploadId, ctx.uploadId.slice(1), ctx.uploadId + "0", encodeURIComponent(`"${ctx.partEtag}"`), r.hex(32), r.hex(64), "null", Buffer.from(r.bytes(r.range(1, 40))).toString("base64url")])],
  ])();
}

/** The parameters each kind of request really takes: most queries use them, to reach the handlers. */
function relevantParams(method: string, shape: "bucket" | "object" | "other"): readonly string[] {
  if (shape === "bucket") {
    if (method === "GET" || method === "HEAD") return ["list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after", "marker", "encoding-type", "fetch-owner", "uploads", "max-uploads", "key-marker", "upload-id-marker", "location", "versioning", "cors", "website", "lifecycle", "versions"];
    if (method === "POST") return ["delete", "uploads"];
    return ["cors", "website", "lifecycle", "versioning", "tagging", "acl", "policy", "location", "uploads"];
  }
  if (shape === "object") {
    if (method === "GET" || method === "HEAD") return ["response-content-type", "response-content-disposition", "response-content-encoding", "response-content-language", "response-cache-control", "response-expires", "partNumber", "versionId", "uploadId", "max-parts", "part-number-marker", "tagging", "acl", "attributes"];
    if (method === "PUT") return ["partNumber", "uploadId", "tagging", "acl", "versionId", "versioning", "uploads"];
    if (method === "POST") return ["uploads", "uploadId", "restore", "select"];
    return ["uploadId", "versionId", "tagging"];
  }
  return S3_PARAMS;
}

function genQuery(r: Rnd, ctx: Ctx, relevant: readonly string[] = S3_PARAMS): string[] {
  const n = r.weighted([[30, 0], [38, 1], [20, 2], [8, 3], [4, 5]]);
  const q: string[] = [];
  for (let i = 0; i < n; i++) {
    const name = r.weighted([[65, () => r.pick(relevant)], [28, () => r.pick(S3_PARAMS)], [7, () => r.pick(ODD_PARAM_NAMES)]])();
    if (name === "list-type" && r.chance(0.6)) q.push("list-type=2");
    else if (name === "uploadId" && r.chance(0.5)) q.push(`uploadId=${ctx.uploadId}`);
    else if (name === "partNumber" && r.chance(0.4)) q.push(`partNumber=${r.range(1, 3)}`);
    else if (r.chance(0.3)) q.push(name);
    else q.push(`${name}=${queryValue(r, ctx)}`);
  }
  if (r.chance(0.03)) q.push("");
  return q;
}

function oddHeaderValue(r: Rnd): string {
  return r.weighted([
    [30, () => r.pick(["", " ", "a", "\t x \t", "\xe9", "\xff\xfe", "\x80", "=?UTF-8?B?w6k=?=", '"quoted"', "a,b", "a;b=c", "\x7f", "%0D%0A", "\xa0nbsp", "a\tb"])],
    [25, () => r.pick(NUMBERS)],
    [8, () => r.pick(["x", "\xe9", "ab "]).repeat(r.pick([300, 2100, 3000, 9000]))],
    [2, () => "x".repeat(20_000)],
    [3, () => r.pick(["a\r\nX-Injected: 1", "a\x00b", "a\rb", "a\nb"])],
    [32, () => r.pick(["text/plain", "application/xml", "bytes=0-1", "*", "AES256", "STANDARD", "COPY", "REPLACE", "private", "http://example.com/"])],
  ])();
}

function contentMd5(body: Buffer): string {
  return createHash("md5").update(body).digest("base64");
}

function checksumOf(algo: string, data: Buffer): string | undefined {
  switch (algo) {
    case "crc32":
      return crcBase64(Bun.hash.crc32(data));
    case "crc32c":
      return crcBase64(crc32c(data));
    case "sha1":
    case "sha256":
      return createHash(algo).update(data).digest("base64");
  }
  return undefined;
}

/** True when a Content-MD5 or x-amz-checksum-<algorithm> header does not match `body` (other names are no digest). */
function digestsWrong(headers: HeaderList, body: Buffer): boolean {
  return headers.some(([n, v]) => {
    const name = n.toLowerCase();
    if (name === "content-md5") return v !== contentMd5(body);
    // CRC64NVME has no implementation here: a value for it is random, so wrong.
    const algo = name.slice("x-amz-checksum-".length);
    if (["crc32", "crc32c", "sha1", "sha256"].includes(algo)) return v !== checksumOf(algo, body);
    return algo === "crc64nvme";
  });
}

function checksumHeader(r: Rnd, body: Buffer, wrong: boolean): [string, string] {
  const data = wrong ? Buffer.concat([body, Buffer.from("x")]) : body;
  const algo = r.pick(["crc32", "crc32c", "sha1", "sha256", "crc64nvme", "md5"]);
  return [`x-amz-checksum-${algo}`, checksumOf(algo, data) ?? Buffer.from(r.bytes(8)).toString("base64")];
}

/** Random S3 headers (digests right or wrong for `body`). */
function genS3Headers(r: Rnd, ctx: Ctx, body: Buffer, method: string): HeaderList {
  const h: HeaderList = [];
  let dup = false;
  const gens: (readonly [number, () => void])[] = [
    [8, () => h.push(["Content-Type", r.pick(["application/xml", "text/plain", "application/octet-stream", "multipart/form-data; boundary=x", "multipart/form-data", "", oddHeaderValue(r)])])],
    [5, () => {
      const wrong = r.chance(0.4);
      h.push(["Content-MD5", r.weighted([[70, contentMd5(wrong ? Buffer.concat([body, Buffer.from("!")]) : body)], [30, r.pick(["abc", "", "=", createHash("md5").update(body).digest("hex"), "AAAAAAAAAAAAAAAAAAAAAA=="])]])]);
    }],
    [5, () => {
      h.push(checksumHeader(r, body, r.chance(0.4)));
    }],
    [3, () => h.push(["x-amz-sdk-checksum-algorithm", r.pick(["CRC32", "crc32c", "SHA1", "SHA256", "CRC64NVME", "MD5", "x", ""])])],
    [6, () => h.push(["Range", r.pick(["bytes=0-0", "bytes=-1", "bytes=5-", "bytes=0-99999999999999999999", "bytes=-0", "bytes=1-0", "bytes=0-1,2-3", "bytes=abc", "items=0-1", "bytes=99999999-", " bytes = 0 - 1 ", "bytes=-99999999999999999999", "bytes=0x10-", "bytes=1e3-"])])],
    [4, () => h.push([r.pick(["If-Match", "If-None-Match"]), r.pick(["*", `"${r.pick(ctx.etags)}"`, r.pick(ctx.etags), 'W/"x"', "", ",", '"a", "b"', oddHeaderValue(r)])])],
    [3, () => h.push([r.pick(["If-Modified-Since", "If-Unmodified-Since"]), r.pick([new Date().toUTCString(), "garbage", "0", "Thu, 01 Jan 1970 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "2020-01-01", oddHeaderValue(r)])])],
    [6, () => h.push(["x-amz-copy-source", r.pick(["fz-a/hello.txt", "/fz-a/hello.txt", "fz-a/hello.txt?versionId=null", "fz-a/hello.txt?versionId=x", "fz-a", "/", "", "nosuch/x", "fz-a/%C3%28", "fz-a/" + "x".repeat(1100), "%", "fz-b/../fz-a/hello.txt", "fz-a/big", "fz-a/mp", "fz-a/%C3%A9t%C3%A9%20%2B.txt", "fz-a/hello.txt?partNumber=1", oddHeaderValue(r)])])],
    [2, () => h.push(["x-amz-copy-source-range", r.pick(["bytes=0-1", "bytes=a", "bytes=0-99999999999", "bytes=5-1", "bytes=-1", oddHeaderValue(r)])])],
    [2, () => h.push([r.pick(["x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match", "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since"]), oddHeaderValue(r)])],
    [2, () => h.push([r.pick(["x-amz-metadata-directive", "x-amz-tagging-directive"]), r.pick(["COPY", "REPLACE", "x", ""])])],
    [3, () => h.push([r.pick(["x-amz-server-side-encryption", "x-amz-server-side-encryption-customer-algorithm", "x-amz-server-side-encryption-customer-key", "x-amz-server-side-encryption-customer-key-MD5", "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-server-side-encryption-context", "x-amz-server-side-encryption-bucket-key-enabled"]), r.pick(["AES256", "aws:kms", "x", "", Buffer.from(r.bytes(32)).toString("base64")])])],
    [3, () => h.push(["x-amz-tagging", r.pick(["a=b", "a", "=&=", "%ZZ=1", "a=b&a=c", "k".repeat(200) + "=v", oddHeaderValue(r)])])],
    [8, () => {
      const n = r.range(1, 4);
      for (let i = 0; i < n; i++) h.push([`x-amz-meta-${r.pick(["a", "Foo", "x".repeat(r.pick([1, 100, 2100])), "é", "a_b", "a.b", "", "1"])}`, oddHeaderValue(r)]);
    }],
    [2, () => h.push(["x-amz-storage-class", r.pick(["STANDARD", "GLACIER", "REDUCED_REDUNDANCY", "x", ""])])],
    [2, () => h.push(["x-amz-acl", r.pick(["private", "public-read", "x", ""])])],
    [2, () => h.push(["x-amz-website-redirect-location", r.pick(["/a", "http://x", "javascript:alert(1)", "x", "", "//evil.example", "/a\x7fb", "/\xe9", "http://a\x7f", oddHeaderValue(r)])])],
    [2, () => h.push([r.pick(["x-amz-expected-bucket-owner", "x-amz-request-payer", "x-amz-bucket-object-lock-enabled", "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold", "x-amz-grant-read", "x-amz-mfa", "x-amz-bypass-governance-retention", "x-amz-" + r.hex(6)]), oddHeaderValue(r)])],
    [3, () => h.push(["x-amz-decoded-content-length", r.pick([String(body.length), String(body.length + 1), "-1", "abc", "99999999999999", ""])])],
    [3, () => h.push(["Content-Encoding", r.pick(["aws-chunked", "gzip", "aws-chunked,gzip", "", "identity", oddHeaderValue(r)])])],
    [3, () => h.push([r.pick(["Cache-Control", "Content-Disposition", "Expires", "Content-Language"]), oddHeaderValue(r)])],
    [2, () => h.push(["Expect", r.pick(["100-continue", "x"])])],
    [5, () => {
      h.push(["Origin", r.pick(["https://docs.example.com", "https://a.example.com", "http://evil", "null", "", "*", oddHeaderValue(r)])]);
      if (method === "OPTIONS" || r.chance(0.3)) h.push(["Access-Control-Request-Method", r.pick(["GET", "PUT", "DELETE", "get", "", "BREW", oddHeaderValue(r)])]);
      if (r.chance(0.5)) h.push(["Access-Control-Request-Headers", r.pick(["x-amz-meta-a", "content-type, x-amz-date", "x y", "a,,b", "\x80", "a\tb", ",", "x".repeat(3000), Array.from({ length: 300 }, (_, i) => `h${i}`).join(","), oddHeaderValue(r)])]);
    }],
    [2, () => h.push(["x-amz-trailer", r.pick(["x-amz-checksum-crc32", "x-amz-checksum-foo", "garbage", ""])])],
    [1, () => {
      dup = true;
      h.push([r.pick(["Content-Type", "x-amz-meta-dup", "Range", "x-amz-copy-source"]), oddHeaderValue(r)], [r.pick(["content-type", "x-amz-meta-dup", "range"]), oddHeaderValue(r)]);
    }],
    [1, () => h.push([r.pick(["Bad Header", "x-amz-meta-\xe9", "(x)", "x-amz-meta-a:b", ""]), "v"])],
    [1, () => h.push(["Connection", r.pick(["keep-alive", "upgrade", "x"])], ["Upgrade", r.pick(["websocket", "h2c"])])],
  ];
  const n = r.weighted([[20, 0], [30, 1], [25, 2], [15, 3], [7, 5], [3, 8]]);
  for (let i = 0; i < n; i++) r.weighted(gens)();
  // Repeated headers only when chosen: the server signs them joined with ", " where AWS joins
  // with "," (a documented limit), so a repeat costs the request its signature.
  return dup ? h : h.filter(([n], i) => h.findIndex(([m]) => m.toLowerCase() === n.toLowerCase()) === i);
}

// ---- bodies

function xmlText(r: Rnd): string {
  return r.chance(0.5) ? r.pick(XML_TEXTS) : r.pick(NUMBERS);
}

function xmlElement(r: Rnd, depth: number): string {
  const name = r.pick(XML_NAMES);
  if (depth > 4 || r.chance(0.5)) return `<${name}>${xmlText(r)}</${name}>`;
  const n = r.range(0, 4);
  let inner = "";
  for (let i = 0; i < n; i++) inner += xmlElement(r, depth + 1);
  return `<${name}>${inner}</${name}>`;
}

function rep(n: number, f: (i: number) => string): string {
  let s = "";
  for (let i = 0; i < n; i++) s += f(i);
  return s;
}

function structuredXml(r: Rnd, ctx: Ctx, root: string): string {
  const t = () => xmlText(r);
  switch (root) {
    case "CORSConfiguration": {
      // Mostly rules the server accepts, so that their odd headers then reach real answers.
      const n = (lo: number) => (r.chance(0.85) ? r.range(lo, 3) : r.range(0, 3));
      const nasty = () => (r.chance(0.5) ? r.pick(HEADER_NASTY_XML) : t());
      return `<CORSConfiguration>${rep(r.weighted([[80, 1], [15, 3], [5, 101]]), () => `<CORSRule>${r.chance(0.3) ? `<ID>${t()}</ID>` : ""}${rep(n(1), () => `<AllowedOrigin>${r.weighted([[40, "*"], [40, "https://*.example.com"], [20, t()]])}</AllowedOrigin>`)}${rep(n(1), () => `<AllowedMethod>${r.weighted([[85, r.pick(["GET", "PUT", "HEAD", "DELETE", "POST"])], [15, t()]])}</AllowedMethod>`)}${rep(n(0), () => `<AllowedHeader>${r.pick(["*", "x-amz-*", "content-type", nasty()])}</AllowedHeader>`)}${rep(n(0), () => `<ExposeHeader>${r.pick(["ETag", "x-amz-request-id", nasty()])}</ExposeHeader>`)}${r.chance(0.4) ? `<MaxAgeSeconds>${r.pick(NUMBERS)}</MaxAgeSeconds>` : ""}</CORSRule>`)}</CORSConfiguration>`;
    }
    case "LifecycleConfiguration":
      return `<LifecycleConfiguration>${rep(r.range(0, 3), () => `<Rule>${r.chance(0.6) ? `<ID>${t()}</ID>` : ""}<Status>${r.pick(["Enabled", "Disabled", t()])}</Status>${r.pick([`<Filter><Prefix>${t()}</Prefix></Filter>`, `<Prefix>${t()}</Prefix>`, `<Filter><And><Prefix>${t()}</Prefix><ObjectSizeGreaterThan>${r.pick(NUMBERS)}</ObjectSizeGreaterThan></And></Filter>`, `<Filter><ObjectSizeLessThan>${r.pick(NUMBERS)}</ObjectSizeLessThan></Filter>`, "", `<Filter></Filter>`])}${r.pick([`<Expiration><Days>${r.pick(NUMBERS)}</Days></Expiration>`, `<Expiration><Date>${r.pick(["2099-01-01T00:00:00Z", "2099-01-01T00:00:00.000Z", "2099-01-01", t()])}</Date></Expiration>`, `<AbortIncompleteMultipartUpload><DaysAfterInitiation>${r.pick(NUMBERS)}</DaysAfterInitiation></AbortIncompleteMultipartUpload>`, `<Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>`, `<NoncurrentVersionExpiration><NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration>`, ""])}</Rule>`)}</LifecycleConfiguration>`;
    case "WebsiteConfiguration":
      return `<WebsiteConfiguration>${r.pick([`<IndexDocument><Suffix>${r.pick(["index.html", t()])}</Suffix></IndexDocument>`, ""])}${r.chance(0.5) ? `<ErrorDocument><Key>${r.pick(["error.html", t()])}</Key></ErrorDocument>` : ""}${r.chance(0.2) ? `<RedirectAllRequestsTo><HostName>${r.chance(0.5) ? r.pick(HEADER_NASTY_XML) : t()}</HostName>${r.chance(0.5) ? `<Protocol>${r.pick(["http", "https", t()])}</Protocol>` : ""}</RedirectAllRequestsTo>` : ""}${r.chance(0.4) ? `<RoutingRules>${rep(r.range(0, 3), () => `<RoutingRule>${r.chance(0.6) ? `<Condition>${r.chance(0.5) ? `<KeyPrefixEquals>${t()}</KeyPrefixEquals>` : ""}${r.chance(0.5) ? `<HttpErrorCodeReturnedEquals>${r.pick(["404", t()])}</HttpErrorCodeReturnedEquals>` : ""}</Condition>` : ""}<Redirect>${r.chance(0.5) ? `<HostName>${t()}</HostName>` : ""}${r.chance(0.3) ? `<Protocol>${r.pick(["http", "https", t()])}</Protocol>` : ""}${r.chance(0.5) ? `<ReplaceKeyWith>${t()}</ReplaceKeyWith>` : r.chance(0.5) ? `<ReplaceKeyPrefixWith>${t()}</ReplaceKeyPrefixWith>` : ""}${r.chance(0.4) ? `<HttpRedirectCode>${r.pick(["301", "302", t()])}</HttpRedirectCode>` : ""}</Redirect></RoutingRule>`)}</RoutingRules>` : ""}</WebsiteConfiguration>`;
    case "Delete":
      return `<Delete>${r.chance(0.5) ? `<Quiet>${r.pick(["true", "false", t()])}</Quiet>` : ""}${rep(r.weighted([[70, r.range(0, 4)], [25, r.range(5, 50)], [5, 1001]]), () => `<Object><Key>${r.pick([`new-${r.int(20)}`, "mp", t()])}</Key>${r.chance(0.2) ? `<VersionId>${t()}</VersionId>` : ""}</Object>`)}</Delete>`;
    case "CompleteMultipartUpload":
      return `<CompleteMultipartUpload>${rep(r.range(0, 4), (i) => `<Part><PartNumber>${r.chance(0.6) ? String(i + 1) : r.pick(NUMBERS)}</PartNumber><ETag>${r.pick([`"${ctx.partEtag}"`, ctx.partEtag, t()])}</ETag>${r.chance(0.1) ? `<ChecksumCRC32>${t()}</ChecksumCRC32>` : ""}</Part>`)}</CompleteMultipartUpload>`;
    case "CreateBucketConfiguration":
      return `<CreateBucketConfiguration><LocationConstraint>${r.pick(["garage", "us-east-1", "", t()])}</LocationConstraint></CreateBucketConfiguration>`;
    case "VersioningConfiguration":
      return `<VersioningConfiguration><Status>${r.pick(["Enabled", "Suspended", t()])}</Status></VersioningConfiguration>`;
    case "Tagging":
      return `<Tagging><TagSet>${rep(r.range(0, 3), () => `<Tag><Key>${t()}</Key><Value>${t()}</Value></Tag>`)}</TagSet></Tagging>`;
    default:
      return `<${root}>${rep(r.range(0, 4), () => xmlElement(r, 1))}</${root}>`;
  }
}

function hostileXml(r: Rnd): string {
  return r.pick([
    () => `<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">]><Delete><Object><Key>&e;</Key></Object></Delete>`,
    () => `<!DOCTYPE x SYSTEM "file:///etc/passwd"><CORSConfiguration><CORSRule><AllowedOrigin>&xxe;</AllowedOrigin></CORSRule></CORSConfiguration>`,
    () => "<a>".repeat(5000) + "</a>".repeat(5000),
    () => `<Delete>${"<Object><Key>k</Key></Object>".repeat(20000)}</Delete>`,
    () => `<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>`,
    () => `<CORSConfiguration></Delete>`,
    () => `<CORSConfiguration a="1" a="2" xmlns="urn:x" xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><s3:CORSRule/></CORSConfiguration>`,
    () => `\ufeff<?xml version="1.0" encoding="UTF-16"?><Delete/>`,
    () => `<?xml version="1.0" encoding="ISO-8859-1"?><Delete><Object><Key>\xe9</Key></Object></Delete>`,
    () => `<Delete><!-- c --><?pi x?><![CDATA[<Object>]]></Delete>`,
    () => `<Delete><Object><Key>${"x".repeat(200_000)}</Key></Object></Delete>`,
    () => `<${"x".repeat(10000)}/>`,
    () => `<CompleteMultipartUpload>${"<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>".repeat(10001)}</CompleteMultipartUpload>`,
    () => "\x00\x01<Delete/>",
    () => "<>",
    () => "",
  ])();
}

function genXmlBody(r: Rnd, ctx: Ctx, hint?: string): Buffer {
  let text = r.weighted([
    [55, () => structuredXml(r, ctx, hint && r.chance(0.7) ? hint : r.pick(XML_ROOTS))],
    [25, () => `<${r.pick(XML_ROOTS)}>${rep(r.range(0, 4), () => xmlElement(r, 1))}</${r.pick(XML_ROOTS)}>`],
    [20, () => hostileXml(r)],
  ])();
  if (r.chance(0.2)) text = `<?xml version="1.0" encoding="UTF-8"?>` + text;
  if (r.chance(0.15)) text = text.slice(0, r.int(text.length + 1));
  // Raw characters of the XML texts are latin1 or UTF-16 units: send them as UTF-8 except raw bytes.
  return /[^\x00-\xff]/.test(text) ? Buffer.from(text, "utf8") : Buffer.from(text, "latin1");
}

function genRandomBody(r: Rnd): Buffer {
  const size = r.weighted([
    [40, r.range(1, 100)],
    [35, r.range(101, 64 * 1024)],
    [15, r.range(64 * 1024, 300 * 1024)],
    [7, r.pick([8191, 8192, 8193, 1024 * 1024, 1024 * 1024 + 1])],
    [3, r.range(MiB, 5 * MiB / 2)],
  ]);
  return r.bytes(size);
}

function genForm(r: Rnd): FormSpec {
  const fields: HeaderList = [];
  const keys = [`new-${r.int(20)}`, "dir/${filename}", "${filename}", "\xe9", "a\x00b", "x".repeat(1100), "", "hello.txt", "../x", "%C3%28"];
  const nKeys = r.weighted([[85, 1], [10, 0], [5, 2]]);
  for (let i = 0; i < nKeys; i++) fields.push(["key", r.pick(keys)]);
  const extra = r.range(0, 3);
  for (let i = 0; i < extra; i++) {
    fields.push(
      r.pick([
        ["Content-Type", r.pick(["text/plain", "a\r\nb", ""])],
        ["success_action_status", r.pick(["200", "201", "204", "999", "abc", ""])],
        ["success_action_redirect", r.pick(["http://example.com/ok", "javascript:x", "not a url", "http://a\r\nb/"])],
        [`x-amz-meta-${r.pick(["a", "é", ""])}`, r.pick(["v", "\xe9", "x".repeat(3000)])],
        ["acl", r.pick(["private", "public-read", "x"])],
        ["tagging", "<Tagging/>"],
        ["x-ignore-foo", "bar"],
        [r.pick(["bucket", "Policy", "file", "x\r\ny", ""]), "v"],
      ] as [string, string][]),
    );
  }
  return {
    fields,
    policy: r.weighted([[55, "valid"], [8, "uncovered-field"], [8, "expired"], [8, "bad-signature"], [11, "garbage"], [10, "none"]] as const),
    filename: r.pick(["f.txt", "", "\xe9.bin", "a b.txt", "../../x"]),
    file: r.weighted([[60, () => r.bytes(r.range(0, 2000))], [30, () => r.bytes(r.range(2000, 200_000))], [10, () => r.bytes(r.range(MiB, 2 * MiB))]])(),
    boundary: r.pick(["XyZ", "----WebKitFormBoundary7MA4YWxkTrZu0gW", "a", "x".repeat(70), "b\xe9"]),
    truncateAt: r.chance(0.08) ? r.int(50) : undefined,
    noFile: r.chance(0.05),
  };
}

// ---- whole cases

function genS3Case(r: Rnd, ctx: Ctx, index: number): Case {
  const method = r.weighted(METHODS_S3);
  let path: string;
  let bucketOnly = false;
  const shape = r.weighted([[5, "root"], [6, "odd"], [34, "bucket"], [55, "object"]] as const);
  if (shape === "root") path = "/";
  else if (shape === "odd") path = r.pick(ODD_TARGETS);
  else if (shape === "bucket") {
    path = "/" + pickBucketSeg(r) + (r.chance(0.2) ? "/" : "");
    bucketOnly = true;
  } else path = "/" + pickBucketSeg(r) + "/" + pickKeySeg(r);
  const query = genQuery(r, ctx, relevantParams(method, shape === "bucket" ? "bucket" : shape === "object" ? "object" : "other"));
  const has = (n: string) => query.some((q) => q === n || q.startsWith(n + "="));

  let body: Buffer = Buffer.alloc(0);
  let form: FormSpec | undefined;
  const bodyKind = r.weighted([
    [method === "PUT" || method === "POST" ? 15 : 60, "empty"],
    [method === "PUT" ? 40 : 8, "random"],
    [has("cors") || has("lifecycle") || has("website") || has("delete") || has("uploadId") || has("versioning") || has("tagging") ? 55 : 12, "xml"],
    [method === "POST" && bucketOnly ? 45 : 1, "form"],
  ] as const);
  if (bodyKind === "random") body = genRandomBody(r);
  else if (bodyKind === "xml") {
    const hint = has("cors") ? "CORSConfiguration" : has("lifecycle") ? "LifecycleConfiguration" : has("website") ? "WebsiteConfiguration" : has("delete") ? "Delete" : has("uploadId") ? "CompleteMultipartUpload" : has("versioning") ? "VersioningConfiguration" : has("tagging") ? "Tagging" : undefined;
    body = genXmlBody(r, ctx, hint);
  } else if (bodyKind === "form") form = genForm(r);

  const headers = genS3Headers(r, ctx, body, method);
  const auth = r.weighted<S3Auth>([
    [68, "sigv4"], [7, "presigned"], [8, "none"], [2, "wrong-secret"], [2, "unknown-key"], [2, "bad-signature"], [2, "skewed"],
    [1, "wrong-region"], [2, "tampered-query"], [3, "junk-header"], [1, "sigv2-header"], [1, "sigv2-query"], [1, "presigned-expired"],
    [2, "presigned-junk"], [2, "unsigned-amz"],
  ]);
  const payload = r.weighted<Payload>([[38, "unsigned"], [30, "sha256"], [4, "sha256-wrong"], [18, "streaming"], [7, "streaming-trailer"], [3, "garbage"]]);
  const chunks = Array.from({ length: r.range(0, 4) }, () => r.pick([1, 100, 8192, 65536, r.range(1, 70000)]));
  const chunkMutation = payload === "streaming" || payload === "streaming-trailer" ? r.weighted([[78, "none"], [6, "flip"], [6, "truncate"], [5, "append"], [5, "bad-size"]] as const) : "none";
  const framing = r.weighted<Framing>([
    [84, "exact"], [body.length === 0 && !form ? 40 : 2, "omit"], [4, "te-chunked"], [3, "longer"], [3, "shorter"], [2, "garbage-cl"], [1, "cl-and-te"],
  ]);
  const host = r.weighted([[95, s3Host(ctx)], [2, `localhost:${ctx.server.s3Port}`], [1, "fz-a.s3.example.com"], [1, ""], [1, null]] as const);
  return {
    index, port: "s3", method, path, query, headers, body, auth, payload, chunks, chunkMutation, framing, host, form,
    garbageLength: r.pick(["abc", "-1", "1e3", "0x10", " 5", "99999999999999999999", "1,2", ""]),
  };
}

function jsonValue(r: Rnd, ctx: Ctx, depth: number): unknown {
  return r.weighted<() => unknown>([
    [30, () => r.pick([...ctx.bucketIds, ctx.victimKeyId, "fz-n1", "fz-admin", "FZ", "tables", "blocks", "scrub", "lifecycle", "test", "", "\u0000", "x".repeat(r.pick([10, 300, 5000])), `GK${r.hex(24)}`, r.hex(64), "é", "index.html", "127.0.0.1:1", `${r.hex(64)}@127.0.0.1:1`])],
    [15, () => r.pick([0, 1, -1, 1.5, 1e308, -1e308, 2 ** 53 + 1, 4294967296, 1e21])],
    [10, () => r.chance(0.5)],
    [5, () => null],
    [depth < 3 ? 12 : 0, () => Array.from({ length: r.range(0, 3) }, () => jsonValue(r, ctx, depth + 1))],
    [depth < 3 ? 28 : 0, () => jsonObject(r, ctx, depth + 1)],
  ])();
}

function jsonObject(r: Rnd, ctx: Ctx, depth: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const n = r.range(0, 4);
  for (let i = 0; i < n; i++) Object.defineProperty(o, r.pick(ADMIN_FIELDS), { value: jsonValue(r, ctx, depth), enumerable: true, configurable: true, writable: true });
  return o;
}

function genAdminCase(r: Rnd, ctx: Ctx, index: number): Case {
  const method = r.weighted([[45, "POST"], [40, "GET"], [5, "PUT"], [4, "DELETE"], [3, "OPTIONS"], [3, "HEAD"]]);
  const path = r.weighted([
    [78, () => "/v2/" + r.pick(ADMIN_ENDPOINTS)],
    [10, () => r.pick(PUBLIC_ADMIN_PATHS)],
    [12, () => r.pick(["/v2/", "/v2/../health", "/v1/ListKeys", "/v2/ListKeys/extra", "/V2/LISTKEYS", "/", "//v2//ListKeys", "/v2/%00", "/v2/" + "x".repeat(3000), "/v2/ListKeys%2F..", "*", "/v2/CreateBucket?"])],
  ])();
  const query: string[] = [];
  const nq = r.weighted([[50, 0], [35, 1], [15, 2]]);
  for (let i = 0; i < nq; i++) {
    const name = r.pick(["id", "globalAlias", "search", "showSecretKey", "bucketId", "key", "domain", "x", "%ZZ"]);
    const value = r.chance(0.6) ? encodeURIComponent(String(jsonValue(r, ctx, 3))) : queryValue(r, ctx);
    query.push(r.chance(0.1) ? name : `${name}=${value}`);
  }
  if (path === "/check" && r.chance(0.7)) query.push(`domain=${r.pick(["fz-web." + WEB_ROOT_DOMAIN, "fz-web", "fz-a", "", "%ZZ", "x".repeat(300), "[::1]", "fz-web.web.bunker.test:99999", "%00"])}`);
  const body = r.weighted([
    [method === "POST" ? 55 : 5, () => Buffer.from(JSON.stringify(jsonObject(r, ctx, 0)))],
    [5, () => Buffer.from(JSON.stringify(jsonValue(r, ctx, 0)) ?? "")],
    [8, () => Buffer.from(r.pick(["{", "[1,", "nul", '"\\u0000"', '{"__proto__":{"polluted":1}}', '{"a":' + "[".repeat(5000) + "]".repeat(5000) + "}", "{}garbage", "\xff\xfe{}", '{"name":"' + "x".repeat(200_000) + '"}']), "latin1")],
    [method === "POST" ? 10 : 40, () => Buffer.alloc(0)],
    [3, () => r.bytes(r.range(1, 3000))],
  ])();
  const headers: HeaderList = [];
  const ct = r.weighted([[70, "application/json"], [8, null], [6, "text/plain"], [6, "multipart/form-data; boundary=x"], [5, "application/x-www-form-urlencoded"], [5, "application/json; charset=latin1"]] as const);
  if (ct !== null) headers.push(["Content-Type", ct]);
  const auth = r.weighted([[65, "token"], [15, "no-token"], [20, "bad-token"]] as const);
  if (auth === "token") headers.push(["Authorization", r.weighted([[90, `Bearer ${ctx.server.adminToken}`], [10, `Bearer   ${ctx.server.adminToken}  `]])]);
  else if (auth === "bad-token") headers.push(["Authorization", r.pick(["Bearer", "Bearer ", "Bearer wrong", `Bearer ${ctx.server.adminToken}x`, `Bearer ${ctx.server.adminToken.slice(1)}`, `bearer ${ctx.server.adminToken}`, `Basic ${Buffer.from("admin:" + ctx.server.adminToken).toString("base64")}`, `Bearer\t${ctx.server.adminToken}`, "Bearer \xe9", "x".repeat(9000)])]);
  return {
    index, port: "admin", method, path, query, headers, body, auth, payload: "unsigned", chunks: [], chunkMutation: "none",
    framing: r.weighted([[94, "exact"], [3, "longer"], [3, "te-chunked"]]), host: `127.0.0.1:${ctx.server.adminPort}`,
  };
}

function genWebCase(r: Rnd, ctx: Ctx, index: number): Case {
  const method = r.weighted([[50, "GET"], [15, "HEAD"], [12, "OPTIONS"], [8, "PUT"], [8, "POST"], [5, "DELETE"], [2, "TRACE"]]);
  const host = r.weighted([
    [45, `fz-web.${WEB_ROOT_DOMAIN}`], [8, `fz-web.${WEB_ROOT_DOMAIN}:${ctx.server.webPort}`], [8, `fz-a.${WEB_ROOT_DOMAIN}`], [5, "fz-web"],
    [3, WEB_ROOT_DOMAIN], [3, `FZ-WEB.${WEB_ROOT_DOMAIN.toUpperCase()}.`], [3, ""], [3, null], [3, "[::1]"], [3, `fz-web.${WEB_ROOT_DOMAIN}:99999`],
    [3, "x".repeat(300)], [3, "\xe9." + WEB_ROOT_DOMAIN], [3, `.${WEB_ROOT_DOMAIN}`], [5, `127.0.0.1:${ctx.server.webPort}`],
  ] as const);
  const path = r.weighted([
    [30, () => r.pick(["/", "/index.html", "/error.html", "/dir/", "/dir", "/dir/index.html", "/nope", "/nope/"])],
    [40, () => "/" + pickKeySeg(r)],
    [15, () => r.pick(ODD_TARGETS)],
    [15, () => "/" + r.pick(["%C3%28", "%00", "x".repeat(1100), "..%2F..%2Fetc", "%2F%2Fevil.example", "\\evil.example", "/evil.example", "%5Cevil"])],
  ])();
  const query = r.chance(0.3) ? genQuery(r, ctx) : [];
  const headers = genS3Headers(r, ctx, Buffer.alloc(0), method);
  const body = r.chance(0.15) ? genRandomBody(r) : Buffer.alloc(0);
  return {
    index, port: "web", method, path, query, headers, body, auth: "public", payload: "unsigned", chunks: [], chunkMutation: "none",
    framing: r.weighted([[92, "exact"], [4, "longer"], [4, "te-chunked"]]), host,
  };
}

/**
 * A well-formed, signed bucket configuration change (CORS, website, lifecycle) with odd values:
 * random requests rarely produce one that the server accepts, and the settings it stores then
 * shape the answers to later requests (CORS and redirect headers).
 */
function genConfigCase(r: Rnd, ctx: Ctx, index: number): Case {
  const sub = r.pick(["cors", "website", "lifecycle"]);
  const root = { cors: "CORSConfiguration", website: "WebsiteConfiguration", lifecycle: "LifecycleConfiguration" }[sub]!;
  const method = r.weighted([[85, "PUT"], [10, "GET"], [5, "DELETE"]]);
  const body = method === "PUT" ? Buffer.from(structuredXml(r, ctx, root), "utf8") : Buffer.alloc(0);
  return {
    index, port: "s3", method, path: "/" + r.weighted([[50, "fz-a"], [35, "fz-web"], [15, "fz-b"]]), query: [sub],
    headers: r.chance(0.5) ? [["Content-MD5", contentMd5(body)]] : [], body,
    auth: "sigv4", payload: r.pick(["unsigned", "sha256"] as const), chunks: [], chunkMutation: "none", framing: "exact", host: s3Host(ctx),
  };
}

function genCase(r: Rnd, ctx: Ctx, index: number): Case {
  const port = r.weighted([[71, "s3"], [4, "config"], [13, "admin"], [12, "web"]] as const);
  if (port === "admin") return genAdminCase(r, ctx, index);
  if (port === "web") return genWebCase(r, ctx, index);
  if (port === "config") return genConfigCase(r, ctx, index);
  return genS3Case(r, ctx, index);
}

// ------------------------------------------------------------------------------ materialise

interface Built {
  request: RawRequest;
  port: number;
  /** The request was deliberately cut short: the server may close without an answer. */
  incomplete: boolean;
  /** The request carries valid credentials (SigV4, a signed POST policy, or the admin token). */
  authenticated: boolean;
  /** Body, digests and framing are consistent: the request may store what it carries. */
  intact: boolean;
  /** PostObject: the keys the form names (after ${filename}). */
  formKeys: string[];
  isForm: boolean;
}

function formBody(c: Case, ctx: Ctx, bucket: string): Buffer {
  const f = c.form!;
  const fields: HeaderList = [...f.fields];
  const exp = new Date(Date.now() + (f.policy === "expired" ? -3600_000 : 3600_000)).toISOString();
  const conditions: unknown[] = [{ bucket }, ["content-length-range", 0, 10 * MiB]];
  for (const [n] of f.fields) {
    const name = n.toLowerCase();
    if (name !== "file" && name !== "policy" && name !== "x-amz-signature") conditions.push(["starts-with", `$${n}`, ""]);
  }
  // A field the policy says nothing about: AWS refuses the form.
  if (f.policy === "uncovered-field") fields.push(["x-amz-meta-uncovered", "1"]);
  conditions.push(["starts-with", "$x-amz-algorithm", ""], ["starts-with", "$x-amz-credential", ""], ["starts-with", "$x-amz-date", ""]);
  const policyJson = JSON.stringify({ expiration: exp, conditions });
  if (f.policy === "valid" || f.policy === "uncovered-field" || f.policy === "expired") fields.push(...postPolicyFields(ctx.creds, policyJson));
  else if (f.policy === "bad-signature") fields.push(...postPolicyFields({ ...ctx.creds, secretAccessKey: ctx.creds.secretAccessKey.slice(1) + "0" }, policyJson));
  else if (f.policy === "garbage") fields.push(["policy", "!!not base64!!"], ["x-amz-algorithm", "AWS4-HMAC-SHA256"], ["x-amz-credential", "x/y"], ["x-amz-date", "z"], ["x-amz-signature", "00"]);
  const b = f.boundary;
  let text = fields.map(([n, v]) => `--${b}\r\nContent-Disposition: form-data; name="${n}"\r\n\r\n${v}\r\n`).join("");
  const head = Buffer.from(text + (f.noFile ? "" : `--${b}\r\nContent-Disposition: form-data; name="file"; filename="${f.filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`), "latin1");
  if (f.noFile) return Buffer.concat([head, Buffer.from(`--${b}--\r\n`, "latin1")]);
  if (f.truncateAt !== undefined) return Buffer.concat([head, f.file.subarray(0, Math.min(f.truncateAt, f.file.length))]);
  return Buffer.concat([head, f.file, Buffer.from(`\r\n--${b}--\r\n`, "latin1")]);
}

function httpChunked(body: Buffer): Buffer {
  if (body.length === 0) return Buffer.from("0\r\n\r\n");
  return Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from("\r\n0\r\n\r\n")]);
}

function targetOf(path: string, query: string[]): string {
  return query.length > 0 ? `${path}?${query.join("&")}` : path;
}

function mutateChunked(c: Case, framed: Buffer): Buffer {
  switch (c.chunkMutation) {
    case "flip": {
      const b = Buffer.from(framed);
      const i = (c.index * 7919) % b.length;
      // ^1 always changes the meaning (^0x20 could only change the case of a hex digit).
      b[i] = b[i]! ^ 0x01;
      return b;
    }
    case "truncate":
      return framed.subarray(0, Math.max(0, framed.length - 1 - ((c.index * 31) % Math.max(1, framed.length))));
    case "append":
      return Buffer.concat([framed, Buffer.from("5\r\nhello\r\n")]);
    case "bad-size":
      return Buffer.concat([Buffer.from("zz;chunk-signature=00\r\n"), framed]);
    default:
      return framed;
  }
}

/** One connection per request: ask the server to close it, unless the case sends its own Connection. */
function closing(headers: HeaderList): HeaderList {
  return headers.some(([n]) => n.toLowerCase() === "connection") ? [] : [["Connection", "close"]];
}

function build(c: Case, ctx: Ctx): Built {
  const port = c.port === "s3" ? ctx.server.s3Port : c.port === "admin" ? ctx.server.adminPort : ctx.server.webPort;
  let target = targetOf(c.path, c.query);
  const base: HeaderList = [];
  if (c.host !== null) base.push(["Host", c.host]);
  // A form brings its own Content-Type (with its boundary).
  base.push(...(c.form ? c.headers.filter(([n]) => n.toLowerCase() !== "content-type") : c.headers));
  const segs = c.path.split("?")[0]!.split("/");
  let payloadBody = c.body;
  let formKeys: string[] = [];
  if (c.form) {
    const bucket = decodeOr(segs[1] ?? "") ?? "";
    payloadBody = formBody(c, ctx, bucket);
    base.push(["Content-Type", `multipart/form-data; boundary=${c.form.boundary}`]);
    formKeys = c.form.fields.filter(([n]) => n === "key").map(([, v]) => v.replace("${filename}", c.form!.filename));
  }
  // As the server sees it: repeated headers joined with ", ", a bucket and no key.
  const contentType = base.filter(([n]) => n.toLowerCase() === "content-type").map(([, v]) => v.trim()).join(", ");
  const isForm = c.port === "s3" && c.method === "POST" && /^multipart\/form-data\b/i.test(contentType) && segs.length >= 2 && segs[1] !== "" && (segs.length === 2 || (segs.length === 3 && segs[2] === ""));

  let authenticated = false;
  // Digests are checked against the body actually sent (shrinking may have changed either).
  const isCopy = base.some(([n]) => n.toLowerCase() === "x-amz-copy-source");
  let intact = isForm || !digestsWrong(base, payloadBody);
  let wire: Buffer = payloadBody;
  let headers: HeaderList = base;

  // Length framing is decided first: Content-Length is one of the signed headers.
  const framingHeaders = (len: number): HeaderList => {
    switch (c.framing) {
      case "exact":
        return [["Content-Length", String(len)]];
      case "omit":
        return len === 0 ? [] : [["Content-Length", String(len)]];
      case "te-chunked":
        return [["Transfer-Encoding", "chunked"]];
      case "longer":
        return [["Content-Length", String(len + 10)]];
      case "shorter":
        return [["Content-Length", String(Math.max(0, len - 3))]];
      case "garbage-cl":
        return [["Content-Length", c.garbageLength ?? "abc"]];
      case "cl-and-te":
        return [["Content-Length", String(len)], ["Transfer-Encoding", "chunked"]];
    }
  };
  const incomplete = c.framing === "longer" || c.framing === "garbage-cl" || c.framing === "cl-and-te";
  if (c.framing !== "exact" && c.framing !== "omit" && c.framing !== "te-chunked") intact = intact && c.framing === "shorter";
  // A Content-Length shorter than the body makes a shorter body, valid only where nothing
  // vouches for the whole one (a digest, a payload hash, aws-chunked framing). An empty plain
  // body stays empty (its Content-Length cannot go below 0), so it stays what was signed.
  const declaresDigest = base.some(([n]) => /^(content-md5|x-amz-checksum-(crc32|crc32c|crc64nvme|sha1|sha256))$/i.test(n));
  const staysWhole = payloadBody.length === 0 && c.payload !== "streaming" && c.payload !== "streaming-trailer";
  if (c.framing === "shorter" && !staysWhole && !isForm && (declaresDigest || (c.payload !== "unsigned" && c.auth !== "presigned"))) intact = false;

  if (c.port === "s3" && !isForm) {
    const s3auth = c.auth as S3Auth;
    const streaming = c.payload === "streaming" || c.payload === "streaming-trailer";
    let framedBody: (sig: { signingKey: Buffer; date: string; scope: string; signature: string }) => Buffer = () => payloadBody;
    let hash: string;
    switch (c.payload) {
      case "unsigned":
        hash = "UNSIGNED-PAYLOAD";
        break;
      case "sha256":
        hash = sha256Hex(payloadBody);
        break;
      case "sha256-wrong":
        hash = sha256Hex(Buffer.concat([payloadBody, Buffer.from("x")]));
        intact = false;
        break;
      case "garbage":
        hash = "not-a-hash";
        intact = false;
        break;
      case "streaming":
        hash = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
        framedBody = (sig) => mutateChunked(c, signedChunkedBody(payloadBody, c.chunks, sig));
        break;
      case "streaming-trailer": {
        hash = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
        const trailer: [string, string] = ["x-amz-checksum-crc32", crcBase64(Bun.hash.crc32(payloadBody))];
        // Tiny chunks only on small bodies: 1-byte chunks of megabytes would only test our patience.
        framedBody = () => mutateChunked(c, unsignedChunkedBody(payloadBody, payloadBody.length > 100_000 ? 65536 : (c.chunks[0] ?? 65536), [trailer]));
        break;
      }
    }
    if (streaming) {
      // Presigned requests announce UNSIGNED-PAYLOAD: their body is taken as it is, framing and all.
      if (c.chunkMutation !== "none" && s3auth !== "presigned") intact = false;
      const framingNames = ["content-encoding", "x-amz-decoded-content-length", "x-amz-trailer"];
      const kept = base.filter(([n]) => !framingNames.includes(n.toLowerCase()));
      base.length = 0;
      base.push(...kept);
      base.push(["Content-Encoding", "aws-chunked"], ["x-amz-decoded-content-length", String(payloadBody.length)]);
      if (c.payload === "streaming-trailer") base.push(["x-amz-trailer", "x-amz-checksum-crc32"]);
    }
    const dummy = { signingKey: Buffer.alloc(32), date: "20000101T000000Z", scope: "x", signature: "0".repeat(64) };
    const wireLen = framedBody(dummy).length;
    const withLen: HeaderList = [...base, ...framingHeaders(wireLen), ...closing(base)];
    const creds = ctx.creds;
    const sign = (cr: SigV4Credentials, opts: { now?: number; unsigned?: string[] } = {}) => {
      const s = signHeaders(cr, c.method, target, withLen, hash, opts);
      headers = s.headers;
      wire = framedBody(s);
    };
    switch (s3auth) {
      case "sigv4":
        sign(creds);
        authenticated = true;
        break;
      case "presigned":
        target = presignTarget(creds, c.method, target, withLen, 3600);
        headers = withLen;
        wire = framedBody(dummy);
        authenticated = true;
        break;
      case "none":
        headers = withLen;
        wire = framedBody(dummy);
        break;
      case "wrong-secret":
        // Another first character, never the same one (a secret starting with "0" was signed right).
        sign({ ...creds, secretAccessKey: (creds.secretAccessKey.startsWith("0") ? "1" : "0") + creds.secretAccessKey.slice(1) });
        break;
      case "unknown-key":
        sign({ ...creds, accessKeyId: "GK000000000000000000000000" });
        break;
      case "bad-signature":
        sign(creds);
        headers = headers.map(([n, v]) => [n, n === "Authorization" ? v.slice(0, -1) + (v.endsWith("0") ? "1" : "0") : v]);
        break;
      case "skewed":
        sign(creds, { now: Date.now() - 20 * 60_000 });
        break;
      case "wrong-region":
        sign({ ...creds, region: "us-east-1" });
        break;
      case "tampered-query":
        sign(creds);
        target += (target.includes("?") ? "&" : "?") + "tampered=1";
        break;
      case "junk-header":
        headers = [...withLen, ["Authorization", ["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=", "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=x", `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/20200101/garage/s3/aws4_request,SignedHeaders=,Signature=`, "Bearer x", "\xe9", "AWS4-HMAC-SHA256 " + ",".repeat(3000), `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${"x".repeat(5000)}`][c.index % 8]!]];
        wire = framedBody(dummy);
        break;
      case "sigv2-header":
        headers = [...withLen, ["Authorization", `AWS ${creds.accessKeyId}:${Buffer.from(sha256Hex("x")).toString("base64").slice(0, 28)}`]];
        wire = framedBody(dummy);
        break;
      case "sigv2-query":
        target += (target.includes("?") ? "&" : "?") + `AWSAccessKeyId=${creds.accessKeyId}&Expires=9999999999&Signature=abc%3D`;
        headers = withLen;
        wire = framedBody(dummy);
        break;
      case "presigned-expired":
        target = presignTarget(creds, c.method, target, withLen, 60, Date.now() - 2 * 3600_000);
        headers = withLen;
        wire = framedBody(dummy);
        break;
      case "presigned-junk":
        target += (target.includes("?") ? "&" : "?") + ["X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Algorithm=x&X-Amz-Signature=y&X-Amz-Credential=z", `X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=${creds.accessKeyId}%2F20200101%2Fgarage%2Fs3%2Faws4_request&X-Amz-Date=20200101T000000Z&X-Amz-Expires=-1&X-Amz-SignedHeaders=host&X-Amz-Signature=00`, "X-Amz-Expires=99999999999&X-Amz-Signature=%ZZ&X-Amz-Credential=%00&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=x&X-Amz-SignedHeaders=host"][c.index % 4]!;
        headers = withLen;
        wire = framedBody(dummy);
        break;
      case "unsigned-amz":
        withLen.push(["x-amz-meta-unsigned", "1"]);
        sign(creds, { unsigned: ["x-amz-meta-unsigned"] });
        break;
    }
  } else {
    headers = [...base, ...framingHeaders(payloadBody.length), ...closing(base)];
    if (c.port === "admin") authenticated = c.auth === "token";
    if (isForm) authenticated = c.form !== undefined && (c.form.policy === "valid" || c.form.policy === "uncovered-field");
    if (isForm && (c.form === undefined || c.form.policy !== "valid" || c.form.truncateAt !== undefined || c.form.noFile)) intact = false;
  }
  if (c.framing === "te-chunked" || c.framing === "cl-and-te") wire = httpChunked(wire);
  // A copy's content comes from its source: whatever its own body, it may store a valid copy.
  if (isCopy) intact = true;
  return {
    request: { method: c.method, target, headers, body: wire, halfClose: incomplete },
    port,
    incomplete,
    authenticated,
    intact,
    formKeys,
    isForm,
  };
}

function decodeOr(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------ judging

interface Outcome {
  c: Case;
  b: Built;
  res: RawResponse;
  logs: string;
  /** The server's VmRSS before and after the request. */
  rss: [number, number];
}

interface Failure {
  cls: string;
  detail: string;
  outcome: Outcome;
}

function errorCode(res: RawResponse): string {
  const text = res.body.toString("latin1");
  return /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? /"code"\s*:\s*"([^"]*)"/.exec(text)?.[1] ?? res.headers.find(([n]) => n === "x-amz-error-code")?.[1] ?? "";
}

/** The first error the server logged for a request, without its variable parts. */
function logSignature(logs: string): string {
  const lines = logs.split("\n");
  const i = lines.findIndex((l) => /\b(ERROR|WARN)\b/.test(l));
  if (i < 0) return "";
  const msg = lines[i]!.replace(/^\S+\s+(ERROR|WARN)\s+/, "").replace(/(GET|PUT|POST|DELETE|HEAD|OPTIONS|PATCH) \S+:/, "$1 <path>:").slice(0, 160);
  const frame = lines.slice(i + 1, i + 6).find((l) => /^\s+at /.test(l) && l.includes("/src/"));
  return frame ? `${msg} @ ${frame.trim().replace(/^.*\/src\//, "src/").replace(/\)$/, "")}` : msg;
}

/** Every answer of the S3 code carries a request id: one without came from the HTTP layer. */
function fromHttpLayer(res: RawResponse): boolean {
  return !res.headers.some(([n]) => n === "x-amz-request-id");
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A request head any HTTP/1.1 server parses: known method, plain target, token names, one length. */
function wellFormedHead(req: RawRequest): boolean {
  if (!["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"].includes(req.method)) return false;
  if (!/^\/[\x21-\x7e]*$/.test(req.target)) return false;
  let size = req.method.length + req.target.length + 12;
  for (const [n, v] of req.headers) {
    if (!TOKEN.test(n) || !/^[\t\x20-\x7e\x80-\xff]*$/.test(v)) return false;
    size += n.length + v.length + 4;
  }
  const names = req.headers.map(([n]) => n.toLowerCase());
  const once = (n: string) => names.filter((m) => m === n).length === 1;
  return once("host") && once("content-length") && !names.includes("transfer-encoding") && !names.includes("upgrade") && !names.includes("expect") && size < 8 * 1024;
}

/**
 * A complete request followed by stray bytes (Content-Length shorter than what was sent) that
 * got the HTTP layer's 400, meant for the stray bytes, instead of its own answer: HTTP/1.1
 * answers requests in order, and this request was carried out.
 */
function lostAnswer(o: Outcome): boolean {
  return o.c.port === "s3" && o.c.framing === "shorter" && o.res.status === 400 && fromHttpLayer(o.res);
}

function publicAnswer(c: Case, b: Built): boolean {
  if (c.port === "web") return c.method === "GET" || c.method === "HEAD" || c.method === "OPTIONS";
  if (c.port === "admin") {
    // "/v2/../health" is /health: dot segments are resolved as any URL's.
    let path: string;
    try {
      path = new URL(c.path.split("?")[0]!, "http://x").pathname;
    } catch {
      return false;
    }
    return PUBLIC_ADMIN_PATHS.includes(path) && (c.method === "GET" || c.method === "HEAD");
  }
  return c.method === "OPTIONS" && !b.isForm;
}

function judge(o: Outcome): Failure[] {
  const { c, b, res } = o;
  const out: Failure[] = [];
  const where = `${c.port} ${c.method}`;
  if (o.rss[1] - o.rss[0] > RSS_JUMP) {
    out.push({ cls: `${where}: one request grew the server's RSS by more than ${RSS_JUMP / MiB} MiB`, detail: `RSS ${(o.rss[0] / MiB).toFixed(0)} → ${(o.rss[1] / MiB).toFixed(0)} MiB`, outcome: o });
  }
  if (res.status === 0) {
    // A request cut short may be dropped; CONNECT has no meaning for this server and node drops it.
    if (!b.incomplete && c.method !== "CONNECT") out.push({ cls: `${where}: no answer (${res.ending}) ${logSignature(o.logs)}`, detail: `no response: ${res.ending}${res.error ? ` (${res.error})` : ""}`, outcome: o });
    return out;
  }
  if (lostAnswer(o) && c.method !== "HEAD" && wellFormedHead(b.request)) {
    out.push({ cls: `${where}: the answer to a complete request followed by stray bytes is the HTTP layer's 400 for those bytes`, detail: "answer lost", outcome: o });
  }
  if (res.status >= 500 && res.status !== 501) {
    // An error the server did not log is told apart by its body, when that is not S3 XML.
    const text = res.body.subarray(0, 120).toString("latin1");
    const why = logSignature(o.logs) || (text.startsWith("<?xml") ? "" : `(not logged) ${text}`);
    out.push({ cls: `${where}: ${res.status} ${errorCode(res)} ${why}`, detail: `server error ${res.status}`, outcome: o });
  }
  if (res.status >= 200 && res.status < 300 && !b.authenticated && !publicAnswer(c, b)) {
    out.push({ cls: `${where}: ${res.status} without credentials (auth ${c.auth})`, detail: `2xx to an unauthenticated request`, outcome: o });
  }
  return out;
}

function shorten(s: string, max: number): string {
  return JSON.stringify(s.length > max ? `${s.slice(0, max / 2)}…(${s.length} chars)…${s.slice(-max / 2)}` : s).slice(1, -1);
}

function describeOutcome(o: Outcome): string {
  const r = o.b.request;
  const hdrs = r.headers.map(([n, v]) => `    ${n}: ${JSON.stringify(v.length > 200 ? v.slice(0, 200) + `…(${v.length})` : v).slice(1, -1)}`).join("\n");
  const bodyPreview = Buffer.from(r.body).subarray(0, 120).toString("latin1");
  return [
    `  request #${o.c.index} to ${o.c.port} port (auth ${o.c.auth}, payload ${o.c.payload}, framing ${o.c.framing}${o.c.chunkMutation !== "none" ? `, chunk mutation ${o.c.chunkMutation}` : ""}${o.b.isForm ? `, form policy ${o.c.form?.policy ?? "none"}` : ""}):`,
    `    ${r.method} ${shorten(r.target, 300)}`,
    hdrs,
    `    body: ${r.body.length} bytes${r.body.length ? `: ${JSON.stringify(bodyPreview)}${r.body.length > 120 ? "…" : ""}` : ""}`,
    `  response: ${o.res.status || "none"} (${o.res.ending}) ${JSON.stringify(o.res.body.subarray(0, SHOWN_BODY).toString("latin1"))}`,
    o.logs.trim() ? `  server log:\n${o.logs.trim().split("\n").slice(0, 8).map((l) => "    " + l).join("\n")}` : "  server log: (nothing)",
  ].join("\n");
}

// ------------------------------------------------------------------------------ state tracking

const sep = "\u0001";

class Ledger {
  readonly buckets = new Set<string>();
  /** bucket␁key → ETags that valid writes produced ("*" = any). */
  readonly objects = new Map<string, Set<string>>();
  readonly uploads = new Set<string>();
  /** bucket or bucket␁key → labels ("#12", "#12 (replay 3)") of requests that named it. */
  readonly touched = new Map<string, string[]>();
  /** label → one line: port, auth, method, target, status. */
  readonly lines = new Map<string, string>();
  replays = 0;

  object(bucket: string, key: string, etag: string): void {
    const k = bucket + sep + key;
    if (!this.objects.has(k)) this.objects.set(k, new Set());
    this.objects.get(k)!.add(etag);
  }
  touch(id: string, label: string): void {
    const list = this.touched.get(id) ?? [];
    if (list.length < 200 && !list.includes(label)) list.push(label);
    this.touched.set(id, list);
  }
}

/** S3 names whose presence makes a request another operation than CreateBucket / PutObject / CopyObject. */
const SUBRESOURCES = new Set([
  "acl", "cors", "lifecycle", "website", "versioning", "tagging", "policy", "logging", "notification", "replication", "encryption",
  "object-lock", "ownershipControls", "publicAccessBlock", "accelerate", "requestPayment", "analytics", "inventory", "metrics",
  "intelligent-tiering", "uploads", "uploadId", "partNumber", "delete", "location", "versions", "restore", "select",
  "torrent", "retention", "legal-hold", "attributes", "policyStatus",
]);

function etagOf(res: RawResponse): string {
  if (res.status === 400) return "*"; // a lost answer
  const h = res.headers.find(([n]) => n === "etag")?.[1];
  const x = /<ETag>([^<]*)<\/ETag>/.exec(res.body.toString("latin1"))?.[1];
  const raw = h ?? x?.replace(/&quot;/g, '"').replace(/&#34;/g, '"');
  return raw === undefined ? "*" : raw.replace(/^"|"$/g, "");
}

/** Records what a request may legitimately have created, from S3's definition of each operation. */
function record(ledger: Ledger, o: Outcome, label: string): void {
  const { c, b, res } = o;
  ledger.lines.set(label, `${c.port} ${c.auth} ${b.request.method} ${shorten(b.request.target, 200)} → ${res.status}`);
  if (c.port === "admin") {
    // Every alias in a successful admin answer names a bucket that exists legitimately.
    if (res.status >= 200 && res.status < 300 && b.authenticated && c.method === "POST") {
      for (const m of res.body.toString("utf8").matchAll(/"globalAliases":\[([^\]]*)\]/g)) for (const a of m[1]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)) ledger.buckets.add(JSON.parse(`"${a[1]}"`));
    }
    return;
  }
  if (c.port !== "s3") return;
  const target = b.request.target;
  const qi = target.indexOf("?");
  const rawPath = qi < 0 ? target : target.slice(0, qi);
  if (!rawPath.startsWith("/")) return;
  const path = rawPath.slice(1);
  const slash = path.indexOf("/");
  const bucket = decodeOr(slash < 0 ? path : path.slice(0, slash));
  const rawKey = slash < 0 ? "" : path.slice(slash + 1);
  const key = rawKey === "" ? undefined : decodeOr(rawKey);
  if (bucket === undefined || bucket === "") return;
  ledger.touch(bucket, label);
  if (key !== undefined) ledger.touch(bucket + sep + key, label);
  // Touched under the key as sent and as its bytes read in UTF-8 (what the server sees).
  for (const k of b.formKeys) {
    ledger.touch(bucket + sep + k, label);
    ledger.touch(bucket + sep + Buffer.from(k, "latin1").toString("utf8"), label);
  }
  // A form upload may answer 303 (success_action_redirect). A lost answer (reported on its
  // own) may hide a success: whatever the request could create is allowed, with any ETag.
  const lost = lostAnswer(o);
  const success = (res.status >= 200 && res.status < 300) || (b.isForm && res.status === 303) || lost;
  if (!success || !b.authenticated) return;
  const params = [...new URLSearchParams(qi < 0 ? "" : target.slice(qi + 1)).keys()];
  const subs = params.filter((p) => SUBRESOURCES.has(p));
  const mayStore = b.intact;
  if (b.isForm) {
    if (mayStore) for (const k of b.formKeys) ledger.object(bucket, k, etagOf(res));
    return;
  }
  if (c.method === "PUT" && rawKey === "" && subs.length === 0) ledger.buckets.add(bucket);
  if (key === undefined) return;
  if (c.method === "PUT" && subs.length === 0 && mayStore) ledger.object(bucket, key, etagOf(res));
  // Several sub-resources at once have no defined meaning: either of these readings may be taken.
  if (c.method === "POST" && subs.includes("uploadId") && !subs.includes("uploads")) ledger.object(bucket, key, etagOf(res));
  if (c.method === "POST" && subs.includes("uploads")) {
    const id = lost ? "*" : /<UploadId>([^<]*)<\/UploadId>/.exec(res.body.toString("utf8"))?.[1];
    if (id) ledger.uploads.add(bucket + sep + key + sep + id);
  }
}

// ------------------------------------------------------------------------------ the run

let server: TestServer;
let s3: S3Client;
let ctx: Ctx;
const ledger = new Ledger();

/** 0 once the process is gone. */
function rssOf(pid: number, field: "VmRSS" | "VmHWM"): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return Number(m![1]) * 1024;
  } catch {
    return 0;
  }
}

async function exchange(c: Case): Promise<Outcome> {
  const b = build(c, ctx);
  const before = server.logs().length;
  const rssBefore = rssOf(server.proc.pid, "VmRSS");
  const res = await rawExchange(b.port, b.request, { timeoutMs: REQUEST_TIMEOUT_MS, keepBody: 4096 });
  // The server's output is read asynchronously: give an error line a moment to arrive.
  if (res.status === 0 || res.status >= 500) await Bun.sleep(30);
  return { c, b, res, logs: server.logs().slice(before), rss: [rssBefore, rssOf(server.proc.pid, "VmRSS")] };
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  const etags: string[] = [];
  const put = async (bucket: string, key: string, body: Uint8Array | string) => {
    const r = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    etags.push(r.ETag!.replace(/"/g, ""));
    ledger.object(bucket, key, r.ETag!.replace(/"/g, ""));
  };
  for (const b of BUCKETS_EXISTING) {
    await s3.send(new CreateBucketCommand({ Bucket: b }));
    ledger.buckets.add(b);
  }
  await put("fz-a", "hello.txt", "hello");
  await put("fz-a", "dir/a", "a");
  await put("fz-a", "big", new Uint8Array(3 * MiB / 2).fill(7));
  await put("fz-a", "été +.txt", "odd");
  await put("fz-web", "index.html", "<h1>index</h1>");
  await put("fz-web", "error.html", "<h1>error</h1>");
  await put("fz-web", "dir/index.html", "<h1>dir</h1>");
  const cors = { CORSRules: [{ AllowedOrigins: ["https://*.example.com"], AllowedMethods: ["GET", "PUT", "HEAD"], AllowedHeaders: ["*"], ExposeHeaders: ["ETag"], MaxAgeSeconds: 60 }] };
  await s3.send(new PutBucketCorsCommand({ Bucket: "fz-a", CORSConfiguration: cors }));
  await s3.send(new PutBucketCorsCommand({ Bucket: "fz-web", CORSConfiguration: cors }));
  await s3.send(new PutBucketWebsiteCommand({ Bucket: "fz-web", WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" }, ErrorDocument: { Key: "error.html" }, RoutingRules: [{ Condition: { KeyPrefixEquals: "old/" }, Redirect: { ReplaceKeyPrefixWith: "dir/" } }] } }));
  const mp = await s3.send(new CreateMultipartUploadCommand({ Bucket: "fz-a", Key: "mp" }));
  const part = await s3.send(new UploadPartCommand({ Bucket: "fz-a", Key: "mp", UploadId: mp.UploadId, PartNumber: 1, Body: new Uint8Array(6 * MiB).fill(1) }));
  ledger.uploads.add("fz-a" + sep + "mp" + sep + mp.UploadId!);
  const victim = await server.admin<{ accessKeyId: string }>("POST", "/v2/CreateKey", { name: "victim" });
  const bucketIds: string[] = [];
  for (const b of BUCKETS_EXISTING) bucketIds.push((await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${b}`)).id);
  ctx = {
    server,
    creds: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, region: server.region },
    uploadId: mp.UploadId!,
    partEtag: part.ETag!.replace(/"/g, ""),
    etags,
    bucketIds,
    victimKeyId: victim.accessKeyId,
  };
});

afterAll(async () => {
  await server?.stop();
});

/** Lists every bucket (admin API) and its objects and uploads (SDK), checked against the ledger. */
async function storedStateFailures(): Promise<string[]> {
  const out: string[] = [];
  const touchedBy = (id: string) => {
    const list = ledger.touched.get(id);
    if (!list) return " (no fuzz request named it)";
    const ok = list.filter((l) => / → (2\d\d|303)$/.test(ledger.lines.get(l) ?? ""));
    const pick = ok.length > 0 ? ok : list;
    const shown = (pick.length > 6 ? [...pick.slice(0, 2), ...pick.slice(-4)] : pick).map((l) => `\n    ${l} ${ledger.lines.get(l)}`).join("");
    return ` (requests that named it: ${list.join(", ")}; ${ok.length > 0 ? "those answered 2xx or 303" : "none answered 2xx or 303"}:${shown})`;
  };
  const buckets = await server.admin<{ id: string; globalAliases: string[] }[]>("GET", "/v2/ListBuckets");
  for (const b of buckets) {
    for (const alias of b.globalAliases) if (!ledger.buckets.has(alias)) out.push(`bucket "${alias}" exists, but no valid CreateBucket answered 2xx for it${touchedBy(alias)}`);
    const alias = b.globalAliases[0];
    if (alias === undefined) continue;
    await server.admin("POST", "/v2/AllowBucketKey", { bucketId: b.id, accessKeyId: server.accessKeyId, permissions: { read: true, write: true, owner: true } });
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: alias, ContinuationToken: token, EncodingType: "url" }));
      for (const o of page.Contents ?? []) {
        const key = decodeOr(o.Key ?? "") ?? o.Key ?? "";
        const etag = (o.ETag ?? "").replace(/"/g, "");
        const allowed = ledger.objects.get(alias + sep + key);
        if (!allowed) out.push(`object ${alias}/${JSON.stringify(key)} exists, but no valid write answered 2xx for it${touchedBy(alias + sep + key)}`);
        else if (!allowed.has("*") && !allowed.has(etag)) out.push(`object ${alias}/${JSON.stringify(key)} has ETag ${etag}, which no valid write produced (valid writes: ${[...allowed].join(", ")})${touchedBy(alias + sep + key)}`);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: alias, EncodingType: "url" }));
    for (const u of uploads.Uploads ?? []) {
      const key = decodeOr(u.Key ?? "") ?? u.Key ?? "";
      if (!ledger.uploads.has(alias + sep + key + sep + u.UploadId) && !ledger.uploads.has(alias + sep + key + sep + "*")) out.push(`multipart upload ${u.UploadId} of ${alias}/${JSON.stringify(key)} exists, but no valid CreateMultipartUpload answered 2xx for it${touchedBy(alias + sep + key)}`);
    }
  }
  return out;
}

/** Drops headers, query pieces and body while the failure class stays the same. */
async function shrink(f: Failure, deadline: number): Promise<Outcome> {
  let best = f.outcome;
  const same = (o: Outcome) => judge(o).some((g) => g.cls === f.cls);
  const attempt = async (c: Case): Promise<boolean> => {
    if (Date.now() > deadline) return false;
    const o = await exchange(c);
    record(ledger, o, `#${c.index} (replay ${++ledger.replays})`);
    if (!same(o)) return false;
    best = o;
    return true;
  };
  // The original again: a class that does not reproduce alone is reported as such.
  if (Date.now() > deadline) return best;
  const again = await exchange(best.c);
  record(ledger, again, `#${best.c.index} (replay ${++ledger.replays})`);
  if (!same(again)) return { ...best, logs: best.logs + "\n(note: did not reproduce when replayed alone)" };
  best = again;
  for (let i = best.c.headers.length - 1; i >= 0; i--) {
    const c = best.c;
    await attempt({ ...c, headers: c.headers.filter((_, j) => j !== i) });
  }
  for (let i = best.c.query.length - 1; i >= 0; i--) await attempt({ ...best.c, query: best.c.query.filter((_, j) => j !== i) });
  if (best.c.body.length > 0) {
    if (!(await attempt({ ...best.c, body: Buffer.alloc(0) }))) await attempt({ ...best.c, body: best.c.body.subarray(0, Math.ceil(best.c.body.length / 16)) });
  }
  if (best.c.payload !== "unsigned") await attempt({ ...best.c, payload: "unsigned", chunkMutation: "none" });
  if (best.c.framing !== "exact") await attempt({ ...best.c, framing: "exact" });
  if (best.c.form && best.c.form.fields.length > 1) await attempt({ ...best.c, form: { ...best.c.form, fields: best.c.form.fields.filter(([n]) => n === "key") } });
  return best;
}

test(`fuzz: ${REQUESTS} random requests (seed ${SEED}) — no 5xx, no hang, no unauthenticated success, nothing stored without a valid write`, async () => {
  console.log(`fuzz seed ${SEED} (replay: FUZZ_SEED=${SEED} npx bun test tests/e2e/fuzz.test.ts)`);
  const r = new Rnd(SEED);
  const started = Date.now();
  const failures: Failure[] = [];
  let sent = 0;
  let maxRss = 0;
  const statusCounts = new Map<string, number>();
  const trace: string[] = [];
  const shrunk = new Map<string, Outcome>();
  let shrinkLeft = SHRINK_BUDGET_MS;
  for (let i = 0; i < REQUESTS; i++) {
    const c = genCase(r, ctx, i);
    if (Date.now() - started > RUN_BUDGET_MS) break;
    const o = await exchange(c);
    sent++;
    const key = `${c.port} ${o.res.status}${c.port === "s3" ? " " + errorCode(o.res) : ""}`;
    statusCounts.set(key, (statusCounts.get(key) ?? 0) + 1);
    record(ledger, o, `#${i}`);
    for (const f of judge(o)) {
      failures.push(f);
      // Shrunk at once, while the objects it names are as they were.
      // Memory, once grown, stays with the process: a replay would not show it again.
      if (!shrunk.has(f.cls)) {
        const t0 = Date.now();
        shrunk.set(f.cls, f.cls.includes("RSS") || server.proc.exitCode !== null ? f.outcome : await shrink(f, t0 + shrinkLeft));
        shrinkLeft -= Date.now() - t0;
      }
    }
    if (TRACE_FILE) trace.push(`${describeOutcome(o)}\n  server RSS after: ${(o.rss[1] / MiB).toFixed(0)} MiB`);
    maxRss = Math.max(maxRss, o.rss[1]);
    if (server.proc.exitCode !== null) {
      failures.push({ cls: "server process exited", detail: `exit code ${server.proc.exitCode}`, outcome: o });
      break;
    }
  }
  const elapsed = Date.now() - started;
  if (TRACE_FILE) writeFileSync(TRACE_FILE, trace.join("\n\n") + "\n");
  console.log(`fuzz: ${sent} of ${REQUESTS} requests in ${elapsed} ms; statuses: ${[...statusCounts].sort().map(([k, n]) => `${k}×${n}`).join(", ")}`);

  const problems: string[] = [];
  const alive = server.proc.exitCode === null;
  if (!alive) problems.push(`the server process exited (code ${server.proc.exitCode})\n${server.logs().slice(-3000)}`);
  else {
    const health = await fetch(`http://127.0.0.1:${server.adminPort}/health`).then((h) => h.status).catch((e: Error) => e.message);
    if (health !== 200) problems.push(`/health answers ${health} after the run`);
    maxRss = Math.max(maxRss, rssOf(server.proc.pid, "VmRSS"));
    const peak = rssOf(server.proc.pid, "VmHWM");
    console.log(`fuzz: server RSS max sampled ${(maxRss / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB`);
    if (peak > RSS_BOUND) problems.push(`the server's peak RSS was ${(peak / MiB).toFixed(0)} MiB (bound ${RSS_BOUND / MiB} MiB)`);
    problems.push(...(await storedStateFailures()).map((s) => `stored state: ${s}`));
  }

  // One example per class: the first, shrunk by replaying it without parts.
  const classes = new Map<string, Failure[]>();
  for (const f of failures) classes.set(f.cls, [...(classes.get(f.cls) ?? []), f]);
  const reports: string[] = [];
  for (const [cls, list] of classes) {
    reports.push(`■ ${cls}\n  ${list.length} request(s), e.g. #${list.slice(0, 8).map((f) => f.outcome.c.index).join(", #")}; the first (${list[0]!.detail}), shrunk:\n${describeOutcome(shrunk.get(cls) ?? list[0]!.outcome)}`);
  }
  const report = [...problems.map((p) => `■ ${p}`), ...reports].join("\n\n");
  expect(report === "" ? "no failures" : `FUZZ_SEED=${SEED}: ${classes.size} failure class(es), ${problems.length} other problem(s)\n\n${report}`).toBe("no failures");
});
