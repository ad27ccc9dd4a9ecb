// AWS Signature Version 2 verification for the S3 API, the legacy scheme of s3cmd
// --signature-v2, boto's "s3" signer and old SDKs: the `Authorization: AWS <id>:<signature>`
// header and presigned URLs (`AWSAccessKeyId`, `Expires`, `Signature`). Owns the V2 string to
// sign (positional headers, canonicalized x-amz-* headers and resource) and its checks
// (AWS's "Signing and authenticating REST requests"). The router picks this verifier for
// requests that carry a V2 signature and sigv4.ts's for the others.
//
// A V2 signature covers no body: the payload is unsigned (Content-MD5, when sent, is checked
// by the body reader), and V4's aws-chunked streaming modes, whose chunk signatures chain from
// a V4 signature, are refused.

import { createHmac } from "node:crypto";
import { parseDecimal } from "../../util/decimal";
import { S3Error } from "./errors";
import {
  MAX_CLOCK_SKEW_MS,
  parsePayloadMode,
  percentDecode,
  headerReadings,
  signaturesEqual,
  signedBytes,
  splitRawQuery,
  trimAll,
  type AuthContext,
  type HeaderReading,
  type PayloadMode,
  type SignedRequest,
} from "./sigv4";

/** How a V2 Authorization header starts (V4's starts "AWS4-"). */
const V2_AUTH_PREFIX = "AWS ";
const Q_ACCESS_KEY = "AWSAccessKeyId";
const Q_EXPIRES = "Expires";
const Q_SIGNATURE = "Signature";
/** V4 query parameters: a V2 request carrying one names two mechanisms. */
const V4_QUERY_AUTH = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"];

/**
 * Query parameters that belong to the signed resource: AWS's list (sub-resources, the
 * response-* overrides, `delete`) and those botocore and s3cmd sign besides (cors, tagging,
 * restore, select...). A parameter a client signs but this list lacks, or the reverse, makes
 * the signature mismatch: the list is the union so that every one of these clients verifies.
 */
export const SIGNED_SUBRESOURCES: ReadonlySet<string> = new Set([
  "accelerate",
  "acl",
  "analytics",
  "cors",
  "defaultObjectAcl",
  "delete",
  "inventory",
  "lifecycle",
  "location",
  "logging",
  "metrics",
  "notification",
  "object-lock",
  "partNumber",
  "policy",
  "replication",
  "requestPayment",
  "response-cache-control",
  "response-content-disposition",
  "response-content-encoding",
  "response-content-language",
  "response-content-type",
  "response-expires",
  "restore",
  "select",
  "select-type",
  "storageClass",
  "tagging",
  "torrent",
  "uploadId",
  "uploads",
  "versionId",
  "versioning",
  "versions",
  "website",
]);

export interface V2Request extends SignedRequest {
  /** The bucket the Host header names (virtual-hosted style): it leads the signed resource. */
  virtualHostBucket?: string;
}

/** True when the request carries a V2 signature: the `AWS ` header, or its query parameters without V4's. */
export function carriesSigV2(req: SignedRequest): boolean {
  const authorization = req.headers.get("authorization");
  if (authorization !== null) return authorization.startsWith(V2_AUTH_PREFIX);
  const names = queryNames(req.rawQuery);
  return (names.has(Q_ACCESS_KEY) || names.has(Q_SIGNATURE)) && !V4_QUERY_AUTH.some((n) => names.has(n));
}

function queryNames(rawQuery: string): Set<string> {
  return new Set(splitRawQuery(rawQuery).map(([n]) => decodeText(n)));
}

function decodeText(raw: string): string {
  return Buffer.from(percentDecode(raw, false)).toString("utf8");
}

/** A query value as the bytes it encodes, one Latin-1 character each (as header values are). */
function decodeBytes(raw: string): string {
  return Buffer.from(percentDecode(raw, false)).toString("latin1");
}

// ---------------------------------------------------------------------------
// The string to sign

/**
 * CanonicalizedAmzHeaders: every x-amz-* header, names lowercased and sorted, values trimmed,
 * one "name:value\n" line each; repeats joined with "," (from an entry list; a Headers object
 * has already joined them with ", ", so a request repeating an x-amz-* header does not verify).
 * Non-ASCII values are read as sigv4.ts's HeaderReading says.
 */
export function canonicalizedAmzHeaders(headers: Headers | Iterable<readonly [string, string]>, reading: HeaderReading = "text"): string {
  const grouped = new Map<string, string[]>();
  for (const [name, value] of headers) {
    const n = name.toLowerCase();
    if (!n.startsWith("x-amz-")) continue;
    const v = trimAll(value, reading);
    const list = grouped.get(n);
    if (list) list.push(v);
    else grouped.set(n, [v]);
  }
  // Names are ASCII tokens: code-unit order is byte order.
  return [...grouped.keys()]
    .sort()
    .map((n) => `${n}:${grouped.get(n)!.join(",")}\n`)
    .join("");
}

/**
 * CanonicalizedResource: "/bucket" when the Host header names it, the path as sent (not
 * decoded), then the signed sub-resources sorted by name, with their values decoded ("When
 * signing, you do not encode these values"), e.g. "/bucket/key?partNumber=2&uploadId=x".
 * `bucketSlash` reads a path-style request on a bucket itself, "/bucket", as the bucket's
 * resource "/bucket/" (botocore sends `PUT /bucket` signed so; other clients sign the path).
 */
export function canonicalizedResource(rawPath: string, rawQuery: string, virtualHostBucket?: string, bucketSlash = false): string {
  const path = rawPath === "" ? "/" : bucketSlash && virtualHostBucket === undefined && /^\/[^/]+$/.test(rawPath) ? `${rawPath}/` : rawPath;
  let resource = (virtualHostBucket === undefined ? "" : `/${virtualHostBucket}`) + path;
  const subs: Array<[string, string]> = [];
  for (const part of rawQuery.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = decodeText(eq < 0 ? part : part.slice(0, eq));
    if (!SIGNED_SUBRESOURCES.has(name)) continue;
    subs.push([name, eq < 0 ? name : `${name}=${decodeBytes(part.slice(eq + 1))}`]);
  }
  if (subs.length > 0) {
    subs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)); // stable: repeats keep their order
    resource += "?" + subs.map(([, s]) => s).join("&");
  }
  return resource;
}

export interface StringToSignV2Parts {
  method: string;
  contentMd5: string;
  contentType: string;
  /** The Date header, "" when x-amz-date is sent (it is among the amz headers), or the query's Expires. */
  date: string;
  /** As returned by canonicalizedAmzHeaders(). */
  amzHeaders: string;
  /** As returned by canonicalizedResource(). */
  resource: string;
}

export function stringToSignV2(p: StringToSignV2Parts): string {
  return `${p.method}\n${p.contentMd5}\n${p.contentType}\n${p.date}\n${p.amzHeaders}${p.resource}`;
}

/** Base64 HMAC-SHA1 of the string to sign under the secret key. */
export function signatureV2(secret: string, stringToSign: string | Uint8Array): string {
  return createHmac("sha1", secret).update(stringToSign).digest("base64");
}

// ---------------------------------------------------------------------------
// Verification

function signatureMismatch(): S3Error {
  return new S3Error(
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
  );
}

function lookup(lookupSecret: (id: string) => string | undefined, accessKeyId: string): string {
  const secret = lookupSecret(accessKeyId);
  if (secret === undefined) throw new S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.");
  return secret;
}

/**
 * The payload mode of a V2 request: unsigned. A SHA-256 the client states in
 * x-amz-content-sha256 (an x-amz-* header, so under the signature) is still checked against
 * the body; a streaming mode needs V4 chunk signatures and is refused.
 */
function payloadOf(headers: Headers): PayloadMode {
  const value = headers.get("x-amz-content-sha256");
  if (value === null) return { kind: "unsigned" };
  const mode = parsePayloadMode(value);
  if (mode === undefined) throw new S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a valid sha256 value.");
  if (mode.kind !== "unsigned" && mode.kind !== "sha256") {
    throw new S3Error("InvalidRequest", `x-amz-content-sha256: ${value} (an aws-chunked upload) needs AWS Signature Version 4, not Version 2`);
  }
  return mode;
}

/** The AuthContext of a V2 request: V4's chunk-signing fields stay empty, as no V2 payload is chunk-signed. */
function v2Context(accessKeyId: string, payload: PayloadMode): AuthContext {
  return { accessKeyId, payload, signingKey: new Uint8Array(0), seedSignature: "", amzDate: "", scope: "" };
}

/**
 * Tries each reading of the resource (bucketSlash) and of non-ASCII header bytes
 * (HeaderReading). The resource is bytes whatever the reading: its sub-resource values are
 * the UTF-8 bytes their percent-encoding carries, which is what every client signs.
 */
function matches(secret: string, req: V2Request, parts: Omit<StringToSignV2Parts, "resource" | "amzHeaders">, given: string): boolean {
  const resources = new Set([false, true].map((slash) => canonicalizedResource(req.rawPath, req.rawQuery, req.virtualHostBucket, slash)));
  const headerText = `${parts.contentMd5}${parts.contentType}${parts.date}${canonicalizedAmzHeaders(req.headers)}`;
  for (const reading of headerReadings(headerText)) {
    const head = signedBytes(stringToSignV2({ ...parts, amzHeaders: canonicalizedAmzHeaders(req.headers, reading), resource: "" }), reading);
    for (const resource of resources) {
      if (signaturesEqual(signatureV2(secret, Buffer.concat([head, signedBytes(resource, "bytes")])), given)) return true;
    }
  }
  return false;
}

export function verifyRequestV2(
  req: V2Request,
  lookupSecret: (accessKeyId: string) => string | undefined,
  opts: { now?: Date } = {},
): AuthContext {
  const now = (opts.now ?? new Date()).getTime();
  const authorization = req.headers.get("authorization");
  const query = new Map<string, string>();
  for (const [n, v] of splitRawQuery(req.rawQuery)) {
    const name = decodeText(n);
    if (!query.has(name)) query.set(name, decodeText(v));
  }
  const common = {
    method: req.method.toUpperCase(),
    contentMd5: req.headers.get("content-md5") ?? "",
    contentType: req.headers.get("content-type") ?? "",
  };
  if (authorization !== null) {
    if (query.has(Q_SIGNATURE) || V4_QUERY_AUTH.some((n) => query.has(n))) {
      throw new S3Error(
        "InvalidArgument",
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
      );
    }
    const { accessKeyId, signature } = parseAuthorizationV2(authorization);
    // The request time: x-amz-date (then the Date position is signed empty), else Date.
    const xAmzDate = req.headers.get("x-amz-date");
    const dateText = xAmzDate ?? req.headers.get("date");
    const requestMs = dateText === null ? NaN : Date.parse(dateText);
    if (!Number.isFinite(requestMs) || requestMs < 0) {
      throw new S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
    }
    const payload = payloadOf(req.headers);
    const secret = lookup(lookupSecret, accessKeyId);
    if (Math.abs(now - requestMs) > MAX_CLOCK_SKEW_MS) {
      throw new S3Error("RequestTimeTooSkewed", "The difference between the request time and the current time is too large.");
    }
    if (!matches(secret, req, { ...common, date: xAmzDate === null ? dateText! : "" }, signature)) throw signatureMismatch();
    return v2Context(accessKeyId, payload);
  }

  const accessKeyId = query.get(Q_ACCESS_KEY);
  const expiresText = query.get(Q_EXPIRES);
  const signature = query.get(Q_SIGNATURE);
  if (accessKeyId === undefined || expiresText === undefined || signature === undefined) {
    throw new S3Error("AccessDenied", "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters");
  }
  // x-amz-* query parameters stand for headers in a V2 URL (botocore moves them there):
  // signing them without applying them would store an object without what they ask.
  const amzParam = [...query.keys()].find((n) => n.toLowerCase().startsWith("x-amz-"));
  if (amzParam !== undefined) {
    throw new S3Error("NotImplemented", `Bunker does not take x-amz-* headers from the query string of a Signature Version 2 URL (${amzParam}): send it as a header`);
  }
  // Seconds since the epoch. AWS sets no upper bound on a V2 URL's lifetime, and neither does
  // Bunker: the signer chose it, and the signature covers it.
  const expires = parseDecimal(expiresText, 0, Number.MAX_SAFE_INTEGER);
  if (expires === undefined) throw new S3Error("AccessDenied", `Invalid date (should be seconds since epoch): ${expiresText}`);
  const payload = payloadOf(req.headers);
  const secret = lookup(lookupSecret, accessKeyId);
  if (now > expires * 1000) throw new S3Error("AccessDenied", "Request has expired");
  if (!matches(secret, req, { ...common, date: expiresText }, signature)) throw signatureMismatch();
  return v2Context(accessKeyId, payload);
}

/** `AWS <AccessKeyId>:<Signature>`. */
function parseAuthorizationV2(value: string): { accessKeyId: string; signature: string } {
  const rest = value.slice(V2_AUTH_PREFIX.length).trim();
  const colon = rest.indexOf(":");
  const accessKeyId = colon < 0 ? "" : rest.slice(0, colon);
  const signature = colon < 0 ? "" : rest.slice(colon + 1);
  if (accessKeyId === "" || signature === "" || /\s/.test(rest)) {
    throw new S3Error("InvalidArgument", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature");
  }
  return { accessKeyId, signature };
}
