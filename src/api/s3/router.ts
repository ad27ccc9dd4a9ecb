// The S3 endpoint: parses bucket and key (path or virtual-host style), authenticates with
// SigV4, checks permissions, and dispatches to the handler of each S3 operation.
import { Elysia } from "elysia";
import { randomBytes } from "node:crypto";
import { bucketOfHost, rawUrlOf } from "../http";
import { logger } from "../../util/log";
import { metrics, secondsSince } from "../../util/metrics";
import { MAX_KEY_BYTES } from "../../util/limits";
import { S3Error, toS3Error } from "./errors";
import { verifyRequest } from "./sigv4";
import { xmlDocument } from "./xml";
import type { BucketRequest, ObjectRequest, S3Request, S3Services } from "./context";
import type { CorsRule } from "../../model/bucket";
import * as bucketOps from "./bucket";
import * as getOps from "./get";
import * as putOps from "./put";
import * as deleteOps from "./delete";
import * as copyOps from "./copy";
import * as listOps from "./list";
import * as multipartOps from "./multipart";
import * as websiteOps from "./website";
import * as corsOps from "./cors";
import * as lifecycleOps from "./lifecycle";
import { postObject } from "./post-object";

const log = logger("s3");

/** Sub-resources we route but do not implement: they answer 501 NotImplemented. */
const UNSUPPORTED_SUBRESOURCES = [
  "acl", "policy", "policyStatus", "tagging", "replication", "notification",
  "logging", "encryption", "object-lock", "retention", "legal-hold", "analytics", "inventory", "metrics",
  "intelligent-tiering", "ownershipControls", "publicAccessBlock", "accelerate", "requestPayment", "torrent",
  "select", "restore", "versions", "attributes",
];

type Permission = "read" | "write" | "owner";

interface Target {
  bucketName?: string;
  key?: string;
}

function decodeKey(raw: string): string {
  let key: string;
  try {
    key = decodeURIComponent(raw);
  } catch {
    throw new S3Error("InvalidArgument", "The object key is not valid percent-encoded UTF-8");
  }
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new S3Error("KeyTooLongError", "Your key is too long");
  if (key.includes("\u0000")) throw new S3Error("InvalidArgument", "Object keys may not contain NUL");
  return key;
}

function parseTarget(rawPath: string, host: string | null, rootDomain: string | undefined): Target {
  const vhostBucket = bucketOfHost(host, rootDomain, false);
  if (vhostBucket !== undefined) {
    const bucketName = vhostBucket;
    const rest = rawPath.slice(1);
    return { bucketName, key: rest === "" ? undefined : decodeKey(rest) };
  }
  const path = rawPath.slice(1);
  if (path === "") return {};
  const slash = path.indexOf("/");
  const rawBucket = slash < 0 ? path : path.slice(0, slash);
  let bucketName: string;
  try {
    bucketName = decodeURIComponent(rawBucket);
  } catch {
    throw new S3Error("InvalidBucketName", "The bucket name is not valid percent-encoded text");
  }
  const rawKey = slash < 0 ? "" : path.slice(slash + 1);
  return { bucketName, key: rawKey === "" ? undefined : decodeKey(rawKey) };
}

function errorResponse(err: S3Error, resource: string, requestId: string, isHead: boolean): Response {
  const headers: Record<string, string> = { "x-amz-request-id": requestId, ...err.headers };
  if (isHead || err.status === 304) return new Response(null, { status: err.status, headers });
  headers["content-type"] = "application/xml";
  const body = xmlDocument(
    "Error",
    { Code: err.code, Message: err.message, Resource: resource, RequestId: requestId },
    { xmlns: undefined },
  );
  return new Response(body, { status: err.status, headers });
}

function requirePermission(r: S3Request & { bucket: { keys: Record<string, { read: boolean; write: boolean; owner: boolean }> } }, perm: Permission): void {
  const p = r.bucket.keys[r.apiKey.id];
  if (!p || !p[perm]) throw new S3Error("AccessDenied", `This key does not have ${perm} permission on bucket ${r.bucketName}`);
}

type ConfigHandler = (r: BucketRequest) => Response | Promise<Response>;

/**
 * Bucket configurations (`?website`, `?cors`, `?lifecycle`): their handlers and the permission
 * reading and changing each needs (as Garage: only an owner publishes a bucket or sets its CORS;
 * lifecycle rules are read with read and changed with write). Meaningless (501) on an object.
 */
const BUCKET_CONFIGS: Record<string, { read: Permission; change: Permission; GET: ConfigHandler; PUT: ConfigHandler; DELETE: ConfigHandler }> = {
  website: { read: "owner", change: "owner", GET: websiteOps.getBucketWebsite, PUT: websiteOps.putBucketWebsite, DELETE: websiteOps.deleteBucketWebsite },
  cors: { read: "owner", change: "owner", GET: corsOps.getBucketCors, PUT: corsOps.putBucketCors, DELETE: corsOps.deleteBucketCors },
  lifecycle: { read: "read", change: "write", GET: lifecycleOps.getBucketLifecycle, PUT: lifecycleOps.putBucketLifecycle, DELETE: lifecycleOps.deleteBucketLifecycle },
};
const BUCKET_CONFIG_SUBRESOURCES = Object.keys(BUCKET_CONFIGS);

function hasSubresource(q: URLSearchParams): string | undefined {
  return UNSUPPORTED_SUBRESOURCES.find((s) => q.has(s));
}

async function dispatch(r: S3Request): Promise<Response> {
  const q = r.query;
  const m = r.method;
  if (r.bucketName === undefined) {
    if (m === "GET") return bucketOps.listBuckets(r);
    throw new S3Error("MethodNotAllowed", "The specified method is not allowed against this resource");
  }
  const configName = BUCKET_CONFIG_SUBRESOURCES.find((c) => q.has(c));
  if (r.key === undefined && m === "PUT" && !hasSubresource(q) && configName === undefined) return bucketOps.createBucket(r as S3Request & { bucketName: string });

  const bucket = r.services.model.resolveBucket(r.bucketName);
  if (!bucket) throw new S3Error("NoSuchBucket", "The specified bucket does not exist");
  const br = { ...r, bucket } as BucketRequest;
  const unsupported = hasSubresource(q);

  if (r.key === undefined && configName !== undefined && !unsupported) {
    const config = BUCKET_CONFIGS[configName]!;
    requirePermission(br, m === "GET" ? config.read : config.change);
    if (m !== "GET" && m !== "PUT" && m !== "DELETE") throw new S3Error("MethodNotAllowed", "The specified method is not allowed against this resource");
    return config[m](br);
  }

  if (r.key === undefined) {
    switch (m) {
      case "HEAD":
        requirePermission(br, "read");
        return new Response(null, { status: 200, headers: { "x-amz-bucket-region": r.services.settings.region } });
      case "GET":
        requirePermission(br, "read");
        if (q.has("location")) return bucketOps.getBucketLocation(br);
        if (q.has("versioning")) return bucketOps.getBucketVersioning(br);
        if (unsupported) break;
        if (q.has("uploads")) return multipartOps.listMultipartUploads(br);
        if (q.get("list-type") === "2") return listOps.listObjectsV2(br);
        if (q.has("list-type")) throw new S3Error("InvalidArgument", "Invalid list-type: only 2 is supported");
        return listOps.listObjectsV1(br);
      case "DELETE":
        if (unsupported) break;
        requirePermission(br, "owner");
        return bucketOps.deleteBucket(br);
      case "POST":
        if (q.has("delete")) {
          requirePermission(br, "write");
          return deleteOps.deleteObjects(br);
        }
        break;
      case "PUT":
        break;
      default:
        throw new S3Error("MethodNotAllowed", "The specified method is not allowed against this resource");
    }
    throw new S3Error("NotImplemented", `This operation (${unsupported ?? m}) is not implemented by Bunker`);
  }

  const or = br as ObjectRequest;
  if (configName) throw new S3Error("NotImplemented", `?${configName} applies to a bucket, not to an object`);
  switch (m) {
    case "HEAD":
    case "GET":
      requirePermission(br, "read");
      if (unsupported) break;
      if (m === "GET" && q.has("uploadId")) return multipartOps.listParts(or);
      return getOps.getObject(or, m === "HEAD");
    case "PUT":
      requirePermission(br, "write");
      if (unsupported) break;
      if (q.has("uploadId") || q.has("partNumber")) {
        if (r.headers.has("x-amz-copy-source")) return copyOps.uploadPartCopy(or);
        return multipartOps.uploadPart(or);
      }
      if (r.headers.has("x-amz-copy-source")) return copyOps.copyObject(or);
      return putOps.putObject(or);
    case "DELETE":
      requirePermission(br, "write");
      if (unsupported) break;
      if (q.has("uploadId")) return multipartOps.abortMultipartUpload(or);
      return deleteOps.deleteObject(or);
    case "POST":
      requirePermission(br, "write");
      if (q.has("uploads")) return multipartOps.createMultipartUpload(or);
      if (q.has("uploadId")) return multipartOps.completeMultipartUpload(or);
      break;
    default:
      throw new S3Error("MethodNotAllowed", "The specified method is not allowed against this resource");
  }
  throw new S3Error("NotImplemented", `This operation (${unsupported ?? m}) is not implemented by Bunker`);
}

/** Drains what is left of a request body so the connection can be reused after an error. */
async function discardBody(request: Request): Promise<void> {
  if (!request.body || request.bodyUsed) return;
  try {
    await request.body.cancel();
  } catch {
    // the stream was already locked by a handler: nothing to do
  }
}

const requestCounter = metrics.counter("api_s3_request_counter", "S3 API requests, by endpoint");
const errorCounter = metrics.counter("api_s3_error_counter", "S3 API requests answered with an error status, by endpoint and status");
const requestDuration = metrics.histogram("api_s3_request_duration_seconds", "Time to answer an S3 API request (until the response starts), by endpoint");

function isForm(headers: Headers): boolean {
  return /^multipart\/form-data\b/i.test(headers.get("content-type") ?? "");
}

/** The S3 operation a request names, for metrics (a fixed set of names). */
export function s3EndpointName(method: string, target: Target, q: URLSearchParams, headers: Headers): string {
  if (method === "OPTIONS") return "Options";
  if (target.bucketName === undefined) return method === "GET" ? "ListBuckets" : "Unknown";
  if (hasSubresource(q)) return "NotImplemented";
  const verb = method === "GET" ? "Get" : method === "PUT" ? "Put" : method === "DELETE" ? "Delete" : undefined;
  if (target.key === undefined) {
    if (verb && q.has("website")) return `${verb}BucketWebsite`;
    if (verb && q.has("cors")) return `${verb}BucketCors`;
    if (verb && q.has("lifecycle")) return `${verb}BucketLifecycleConfiguration`;
    if (method === "HEAD") return "HeadBucket";
    if (method === "PUT") return "CreateBucket";
    if (method === "DELETE") return "DeleteBucket";
    if (method === "POST") return q.has("delete") ? "DeleteObjects" : isForm(headers) ? "PostObject" : "Unknown";
    if (method !== "GET") return "Unknown";
    if (q.has("location")) return "GetBucketLocation";
    if (q.has("versioning")) return "GetBucketVersioning";
    if (q.has("uploads")) return "ListMultipartUploads";
    return q.get("list-type") === "2" ? "ListObjectsV2" : "ListObjects";
  }
  const copy = headers.has("x-amz-copy-source");
  switch (method) {
    case "HEAD":
      return "HeadObject";
    case "GET":
      return q.has("uploadId") ? "ListParts" : "GetObject";
    case "PUT":
      if (q.has("uploadId") || q.has("partNumber")) return copy ? "UploadPartCopy" : "UploadPart";
      return copy ? "CopyObject" : "PutObject";
    case "DELETE":
      return q.has("uploadId") ? "AbortMultipartUpload" : "DeleteObject";
    case "POST":
      return q.has("uploads") ? "CreateMultipartUpload" : q.has("uploadId") ? "CompleteMultipartUpload" : "Unknown";
    default:
      return "Unknown";
  }
}

/** Counts a request under its endpoint name; a request too malformed to name counts as Unknown. */
function recordS3Request(request: Request, services: S3Services, status: number, startedNs: number): void {
  let endpoint = "Unknown";
  try {
    const raw = rawUrlOf(request);
    const qi = raw.indexOf("?");
    const target = parseTarget(qi < 0 ? raw : raw.slice(0, qi), request.headers.get("host"), services.settings.rootDomain);
    endpoint = s3EndpointName(request.method, target, new URLSearchParams(qi < 0 ? "" : raw.slice(qi + 1)), request.headers);
  } catch {
    // keeps "Unknown"
  }
  const labels = { api_endpoint: endpoint };
  requestCounter.inc(labels);
  requestDuration.observe(labels, secondsSince(startedNs));
  if (status >= 400) errorCounter.inc({ api_endpoint: endpoint, status_code: String(status) });
}

export async function handleS3(request: Request, services: S3Services): Promise<Response> {
  const startedNs = Bun.nanoseconds();
  const response = await answerS3(request, services);
  recordS3Request(request, services, response.status, startedNs);
  return response;
}

async function answerS3(request: Request, services: S3Services): Promise<Response> {
  const requestId = randomBytes(8).toString("hex").toUpperCase();
  const raw = rawUrlOf(request);
  const qi = raw.indexOf("?");
  const rawPath = qi < 0 ? raw : raw.slice(0, qi);
  const rawQuery = qi < 0 ? "" : raw.slice(qi + 1);
  const isHead = request.method === "HEAD";
  // The bucket's CORS rules, read locally (full-copy table) once the target is known.
  let corsRules: CorsRule[] | null = null;
  const withCors = (response: Response) => corsOps.addCorsHeaders(response, corsRules, request.headers, request.method);
  try {
    const target = parseTarget(rawPath, request.headers.get("host"), services.settings.rootDomain);
    if (target.bucketName !== undefined) corsRules = services.model.resolveBucket(target.bucketName)?.cors?.v ?? null;
    if (request.method === "OPTIONS") {
      // A browser's preflight carries no signature: it is answered from the rules alone.
      await discardBody(request);
      let rules: CorsRule[] | null | undefined;
      if (target.bucketName !== undefined) {
        if (!services.model.resolveBucket(target.bucketName)) throw new S3Error("NoSuchBucket", "The specified bucket does not exist");
        rules = corsRules;
      }
      const preflight = corsOps.preflightResponse(rules, request.headers);
      preflight.headers.set("x-amz-request-id", requestId);
      return preflight;
    }
    if (request.method === "POST" && target.bucketName !== undefined && target.key === undefined && isForm(request.headers)) {
      // A browser form: authenticated by the signed policy it carries, not by SigV4 headers.
      const response = await postObject(request, services, target.bucketName, (name) => services.model.resolveBucket(name));
      response.headers.set("x-amz-request-id", requestId);
      return withCors(response);
    }
    const auth = verifyRequest(
      { method: request.method, rawPath, rawQuery, headers: request.headers },
      (id) => services.model.getKey(id)?.secret,
      { region: services.settings.region },
    );
    const apiKey = services.model.getKey(auth.accessKeyId);
    if (!apiKey) throw new S3Error("InvalidAccessKeyId", "The access key ID you provided does not exist");
    const query = new URLSearchParams();
    for (const [k, v] of new URLSearchParams(rawQuery)) if (!query.has(k)) query.set(k, v);
    const response = await dispatch({
      request,
      method: request.method,
      query,
      headers: request.headers,
      requestId,
      bucketName: target.bucketName,
      key: target.key,
      auth,
      apiKey,
      services,
    });
    response.headers.set("x-amz-request-id", requestId);
    return withCors(response);
  } catch (err) {
    await discardBody(request);
    const s3err = toS3Error(err);
    if (s3err.status >= 500) log.warn(`${request.method} ${rawPath}: ${s3err.code} ${s3err.message}`);
    // Errors carry the CORS headers too, so that a browser page can read why it failed.
    return withCors(errorResponse(s3err, rawPath, requestId, isHead));
  }
}

export function s3App(services: S3Services) {
  const handler = ({ request }: { request: Request }) => handleS3(request, services);
  return new Elysia({ normalize: false })
    .all("/", handler, { parse: "none" })
    .all("/*", handler, { parse: "none" });
}
