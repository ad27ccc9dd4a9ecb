// The S3 endpoint: parses bucket and key (path or virtual-host style), authenticates with
// SigV4 or SigV2, checks permissions, and dispatches to the handler of each S3 operation.
import { Elysia } from "elysia";
import { randomBytes } from "node:crypto";
import { bucketOfHost, rawUrlOf } from "../http";
import { logger } from "../../util/log";
import { metrics, secondsSince, type Labels } from "../../util/metrics";
import { MAX_KEY_BYTES } from "../../util/limits";
import { S3Error, toS3Error } from "./errors";
import { verifyRequest } from "./sigv4";
import { carriesSigV2, verifyRequestV2 } from "./sigv2";
import { xmlDocument } from "./xml";
import { refuseUnsupported, type RoutedOperation } from "./unsupported";
import type { BucketRequest, ObjectRequest, S3Request, S3Services } from "./context";
import type { BucketEntry, CorsRule } from "../../model/bucket";
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
import * as objectTaggingOps from "./object-tagging";
import * as aclOps from "./acl";
import * as bucketTaggingOps from "./bucket-tagging";
import * as attributesOps from "./attributes";
import { postObject } from "./post-object";

const log = logger("s3");

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

/**
 * The bucket a Host header names, for the last Host and root domain seen: a client sends the
 * same Host on every request, and bucketOfHost costs three regular expressions.
 */
let lastHost: { host: string | null; rootDomain: string | undefined; bucket: string | undefined } = { host: null, rootDomain: undefined, bucket: undefined };

function vhostBucketOf(host: string | null, rootDomain: string | undefined): string | undefined {
  const last = lastHost;
  if (host !== null && host === last.host && rootDomain === last.rootDomain) return last.bucket;
  const bucket = bucketOfHost(host, rootDomain, false);
  lastHost = { host, rootDomain, bucket };
  return bucket;
}

function parseTarget(rawPath: string, host: string | null, rootDomain: string | undefined): Target {
  const vhostBucket = vhostBucketOf(host, rootDomain);
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

function errorResponse(err: S3Error, resource: string, requestId: string, isHead: boolean, region: string): Response {
  const headers: Record<string, string> = { "x-amz-request-id": requestId, ...err.headers };
  if (isHead || err.status === 304) return new Response(null, { status: err.status, headers });
  headers["content-type"] = "application/xml";
  // As AWS, a request signed for another region is told the right one: minio-go (restic)
  // signs its first GetBucketLocation for us-east-1 and takes the region from this element.
  const regionHint = err.code === "AuthorizationHeaderMalformed" ? { Region: region } : {};
  const body = xmlDocument(
    "Error",
    { Code: err.code, Message: err.message, ...regionHint, Resource: resource, RequestId: requestId },
    { xmlns: undefined },
  );
  return new Response(body, { status: err.status, headers });
}

function requirePermission(r: S3Request & { bucket: { keys: Record<string, { read: boolean; write: boolean; owner: boolean }> } }, perm: Permission): void {
  const p = r.bucket.keys[r.apiKey.id];
  if (!p || !p[perm]) throw new S3Error("AccessDenied", `This key does not have ${perm} permission on bucket ${r.bucketName}`);
}

type MethodOps = Partial<Record<"GET" | "HEAD" | "PUT" | "POST" | "DELETE", string>>;
const configOps = (get: string, put: string, del: string): MethodOps => ({ GET: get, PUT: put, DELETE: del });

/**
 * Every S3 sub-resource (a query key that names an operation: AWS S3 API reference) and the
 * operation it names on a bucket, by method. A request on a bucket with no sub-resource is one
 * of the plain bucket operations (""): CreateBucket is only ever a PUT with no sub-resource.
 */
const BUCKET_OPERATIONS: Record<string, MethodOps> = {
  "": { GET: "ListObjects", HEAD: "HeadBucket", PUT: "CreateBucket", DELETE: "DeleteBucket", POST: "PostObject" },
  abac: { GET: "GetBucketAbac", PUT: "PutBucketAbac" },
  accelerate: { GET: "GetBucketAccelerateConfiguration", PUT: "PutBucketAccelerateConfiguration" },
  acl: { GET: "GetBucketAcl", PUT: "PutBucketAcl" },
  analytics: configOps("GetBucketAnalyticsConfiguration", "PutBucketAnalyticsConfiguration", "DeleteBucketAnalyticsConfiguration"),
  cors: configOps("GetBucketCors", "PutBucketCors", "DeleteBucketCors"),
  delete: { POST: "DeleteObjects" },
  encryption: configOps("GetBucketEncryption", "PutBucketEncryption", "DeleteBucketEncryption"),
  "intelligent-tiering": configOps("GetBucketIntelligentTieringConfiguration", "PutBucketIntelligentTieringConfiguration", "DeleteBucketIntelligentTieringConfiguration"),
  inventory: configOps("GetBucketInventoryConfiguration", "PutBucketInventoryConfiguration", "DeleteBucketInventoryConfiguration"),
  lifecycle: configOps("GetBucketLifecycleConfiguration", "PutBucketLifecycleConfiguration", "DeleteBucketLifecycle"),
  location: { GET: "GetBucketLocation" },
  logging: { GET: "GetBucketLogging", PUT: "PutBucketLogging" },
  metadataAnnotationTable: { PUT: "UpdateBucketMetadataAnnotationTableConfiguration" },
  metadataConfiguration: { GET: "GetBucketMetadataConfiguration", POST: "CreateBucketMetadataConfiguration", DELETE: "DeleteBucketMetadataConfiguration" },
  metadataInventoryTable: { PUT: "UpdateBucketMetadataInventoryTableConfiguration" },
  metadataJournalTable: { PUT: "UpdateBucketMetadataJournalTableConfiguration" },
  metadataTable: { GET: "GetBucketMetadataTableConfiguration", POST: "CreateBucketMetadataTableConfiguration", DELETE: "DeleteBucketMetadataTableConfiguration" },
  metrics: configOps("GetBucketMetricsConfiguration", "PutBucketMetricsConfiguration", "DeleteBucketMetricsConfiguration"),
  notification: { GET: "GetBucketNotificationConfiguration", PUT: "PutBucketNotificationConfiguration" },
  "object-lock": { GET: "GetObjectLockConfiguration", PUT: "PutObjectLockConfiguration" },
  ownershipControls: configOps("GetBucketOwnershipControls", "PutBucketOwnershipControls", "DeleteBucketOwnershipControls"),
  policy: configOps("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
  policyStatus: { GET: "GetBucketPolicyStatus" },
  publicAccessBlock: configOps("GetPublicAccessBlock", "PutPublicAccessBlock", "DeletePublicAccessBlock"),
  replication: configOps("GetBucketReplication", "PutBucketReplication", "DeleteBucketReplication"),
  requestPayment: { GET: "GetBucketRequestPayment", PUT: "PutBucketRequestPayment" },
  session: { GET: "CreateSession" },
  tagging: configOps("GetBucketTagging", "PutBucketTagging", "DeleteBucketTagging"),
  uploads: { GET: "ListMultipartUploads" },
  versioning: { GET: "GetBucketVersioning", PUT: "PutBucketVersioning" },
  versions: { GET: "ListObjectVersions" },
  website: configOps("GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
};

/** The same for a request on an object. */
const OBJECT_OPERATIONS: Record<string, MethodOps> = {
  "": { GET: "GetObject", HEAD: "HeadObject", PUT: "PutObject", DELETE: "DeleteObject", POST: "CompleteMultipartUpload" },
  acl: { GET: "GetObjectAcl", PUT: "PutObjectAcl" },
  annotation: { GET: "GetObjectAnnotation", PUT: "PutObjectAnnotation", DELETE: "DeleteObjectAnnotation" },
  attributes: { GET: "GetObjectAttributes" },
  encryption: { PUT: "UpdateObjectEncryption" },
  "legal-hold": { GET: "GetObjectLegalHold", PUT: "PutObjectLegalHold" },
  renameObject: { PUT: "RenameObject" },
  restore: { POST: "RestoreObject" },
  retention: { GET: "GetObjectRetention", PUT: "PutObjectRetention" },
  select: { POST: "SelectObjectContent" },
  tagging: { GET: "GetObjectTagging", PUT: "PutObjectTagging", DELETE: "DeleteObjectTagging" },
  torrent: { GET: "GetObjectTorrent" },
  uploads: { POST: "CreateMultipartUpload" },
};

const SUBRESOURCES = new Set([...Object.keys(BUCKET_OPERATIONS), ...Object.keys(OBJECT_OPERATIONS)].filter((s) => s !== ""));

/** An operation on a bucket Bunker implements: the permission it needs there, and its handler
 * (given an ObjectRequest whose key is only set for object operations). */
interface Implemented {
  permission: Permission | "none";
  handle: (r: ObjectRequest) => Response | Promise<Response>;
}

/**
 * Every operation Bunker implements on a bucket (ListBuckets and CreateBucket come before there
 * is one). As Garage: only an owner deletes a bucket, publishes it or sets its CORS rules;
 * lifecycle rules, tags, ACLs and ownership controls are read with read and changed with write.
 */
const IMPLEMENTED: Record<Exclude<RoutedOperation, "ListBuckets" | "CreateBucket">, Implemented> = {
  // A form is authorized by its signed policy and answered before SigV4 (answerS3): a POST
  // on a bucket reaching dispatch is not a form.
  PostObject: { permission: "none", handle: () => { throw new S3Error("PreconditionFailed", "Bucket POST must be of the enclosure-type multipart/form-data"); } },
  HeadBucket: { permission: "read", handle: (r) => new Response(null, { status: 200, headers: { "x-amz-bucket-region": r.services.settings.region } }) },
  GetBucketLocation: { permission: "read", handle: bucketOps.getBucketLocation },
  GetBucketVersioning: { permission: "read", handle: bucketOps.getBucketVersioning },
  ListObjects: { permission: "read", handle: listObjectsV1 },
  ListObjectsV2: { permission: "read", handle: listOps.listObjectsV2 },
  ListObjectVersions: { permission: "read", handle: listOps.listObjectVersions },
  ListMultipartUploads: { permission: "read", handle: multipartOps.listMultipartUploads },
  DeleteBucket: { permission: "owner", handle: bucketOps.deleteBucket },
  DeleteObjects: { permission: "write", handle: deleteOps.deleteObjects },
  GetObject: { permission: "read", handle: (r) => getOps.getObject(r, false) },
  HeadObject: { permission: "read", handle: (r) => getOps.getObject(r, true) },
  GetObjectAttributes: { permission: "read", handle: attributesOps.getObjectAttributes },
  ListParts: { permission: "read", handle: multipartOps.listParts },
  PutObject: { permission: "write", handle: putOps.putObject },
  CopyObject: { permission: "write", handle: copyOps.copyObject },
  DeleteObject: { permission: "write", handle: deleteOps.deleteObject },
  CreateMultipartUpload: { permission: "write", handle: multipartOps.createMultipartUpload },
  UploadPart: { permission: "write", handle: multipartOps.uploadPart },
  UploadPartCopy: { permission: "write", handle: copyOps.uploadPartCopy },
  CompleteMultipartUpload: { permission: "write", handle: multipartOps.completeMultipartUpload },
  AbortMultipartUpload: { permission: "write", handle: multipartOps.abortMultipartUpload },
  GetBucketWebsite: { permission: "owner", handle: websiteOps.getBucketWebsite },
  PutBucketWebsite: { permission: "owner", handle: websiteOps.putBucketWebsite },
  DeleteBucketWebsite: { permission: "owner", handle: websiteOps.deleteBucketWebsite },
  GetBucketCors: { permission: "owner", handle: corsOps.getBucketCors },
  PutBucketCors: { permission: "owner", handle: corsOps.putBucketCors },
  DeleteBucketCors: { permission: "owner", handle: corsOps.deleteBucketCors },
  GetBucketLifecycleConfiguration: { permission: "read", handle: lifecycleOps.getBucketLifecycle },
  PutBucketLifecycleConfiguration: { permission: "write", handle: lifecycleOps.putBucketLifecycle },
  DeleteBucketLifecycle: { permission: "write", handle: lifecycleOps.deleteBucketLifecycle },
  GetObjectTagging: { permission: "read", handle: objectTaggingOps.getObjectTagging },
  PutObjectTagging: { permission: "write", handle: objectTaggingOps.putObjectTagging },
  DeleteObjectTagging: { permission: "write", handle: objectTaggingOps.deleteObjectTagging },
  GetBucketAcl: { permission: "read", handle: aclOps.getBucketAcl },
  PutBucketAcl: { permission: "write", handle: aclOps.putBucketAcl },
  GetObjectAcl: { permission: "read", handle: aclOps.getObjectAcl },
  PutObjectAcl: { permission: "write", handle: aclOps.putObjectAcl },
  GetBucketOwnershipControls: { permission: "read", handle: aclOps.getBucketOwnershipControls },
  PutBucketOwnershipControls: { permission: "write", handle: aclOps.putBucketOwnershipControls },
  GetBucketPolicyStatus: { permission: "read", handle: bucketOps.getBucketPolicyStatus },
  GetBucketTagging: { permission: "read", handle: bucketTaggingOps.getBucketTagging },
  PutBucketTagging: { permission: "write", handle: bucketTaggingOps.putBucketTagging },
  DeleteBucketTagging: { permission: "write", handle: bucketTaggingOps.deleteBucketTagging },
};

function listObjectsV1(r: BucketRequest): Promise<Response> | Response {
  if (r.query.has("list-type")) throw new S3Error("InvalidArgument", "Invalid list-type: only 2 is supported");
  return listOps.listObjectsV1(r);
}

function isImplemented(op: string): op is RoutedOperation {
  return op === "ListBuckets" || op === "CreateBucket" || Object.hasOwn(IMPLEMENTED, op);
}

/**
 * The S3 operation a request names (AWS name), whether Bunker implements it or not. Query
 * parameters that are not sub-resources (prefix, x-id, versionId, ...) do not change the
 * operation; S3 ignores the ones it does not know, and so does Bunker. A method S3 has no
 * operation for on that resource is refused with 405, several sub-resources with 400.
 */
function operationOf(method: string, target: Target, q: URLSearchParams, headers: Headers): string {
  const notAllowed = () => new S3Error("MethodNotAllowed", "The specified method is not allowed against this resource");
  if (target.bucketName === undefined) {
    if (method !== "GET") throw notAllowed();
    // The same request as ListBuckets but for directory buckets, which Bunker does not have:
    // only the SDK's operation hint tells them apart.
    return q.get("x-id") === "ListDirectoryBuckets" ? "ListDirectoryBuckets" : "ListBuckets";
  }
  const subs: string[] = [];
  for (const k of q.keys()) if (SUBRESOURCES.has(k) && !subs.includes(k)) subs.push(k);
  if (subs.length > 1) throw new S3Error("InvalidRequest", `A request names one sub-resource at most (got ${subs.join(", ")})`);
  const sub = subs[0] ?? "";
  const table = target.key === undefined ? BUCKET_OPERATIONS : OBJECT_OPERATIONS;
  const op = table[sub]?.[method as keyof MethodOps];
  if (op === undefined) throw notAllowed();
  if (sub !== "") return op;
  if (target.key === undefined) return op === "ListObjects" && q.get("list-type") === "2" ? "ListObjectsV2" : op;
  const copy = headers.has("x-amz-copy-source");
  switch (method) {
    case "GET":
      return q.has("uploadId") ? "ListParts" : op;
    case "PUT":
      if (q.has("uploadId") || q.has("partNumber")) return copy ? "UploadPartCopy" : "UploadPart";
      return copy ? "CopyObject" : op;
    case "DELETE":
      return q.has("uploadId") ? "AbortMultipartUpload" : op;
    case "POST":
      // POST on an object is CompleteMultipartUpload (?uploadId) or a sub-resource.
      if (!q.has("uploadId")) throw notAllowed();
      return op;
    default:
      return op;
  }
}

function hasAnyPermission(r: BucketRequest): boolean {
  const p = r.bucket.keys[r.apiKey.id];
  return !!p && (p.read || p.write || p.owner);
}

/** The operation a request names, or the refusal operationOf gave (answered after authentication). */
type Operation = { op: string } | { refusal: unknown };

async function dispatch(r: S3Request, operation: Operation, bucket: BucketEntry | undefined): Promise<Response> {
  if ("refusal" in operation) throw operation.refusal;
  const { op } = operation;
  if (op === "ListBuckets") {
    refuseUnsupported(op, r.headers, r.query);
    return bucketOps.listBuckets(r);
  }
  if (op === "CreateBucket") {
    refuseUnsupported(op, r.headers, r.query);
    return bucketOps.createBucket(r as S3Request & { bucketName: string });
  }
  if (r.bucketName === undefined) throw new S3Error("NotImplemented", `${op} is not implemented by Bunker`);
  if (!bucket) throw new S3Error("NoSuchBucket", "The specified bucket does not exist");
  const br = r as BucketRequest;
  br.bucket = bucket;
  if (!isImplemented(op)) {
    if (!hasAnyPermission(br)) throw new S3Error("AccessDenied", `This key has no permission on bucket ${r.bucketName}`);
    throw new S3Error("NotImplemented", `${op} is not implemented by Bunker`);
  }
  const { permission, handle } = IMPLEMENTED[op as keyof typeof IMPLEMENTED];
  if (permission !== "none") requirePermission(br, permission);
  refuseUnsupported(op, r.headers, r.query);
  return handle(br as ObjectRequest);
}

/** Gives up the rest of a request body (it is not read: the response closes the connection). */
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

/** True when the query names an S3 sub-resource (`?delete`, `?uploads`, `?acl`...). */
function namesSubresource(rawQuery: string): boolean {
  for (const k of new URLSearchParams(rawQuery).keys()) if (SUBRESOURCES.has(k)) return true;
  return false;
}

function isForm(headers: Headers): boolean {
  return /^multipart\/form-data\b/i.test(headers.get("content-type") ?? "");
}

/**
 * The S3 operation a request names, for metrics (a fixed set of names): "NotImplemented" for
 * every operation Bunker does not implement, "Unknown" for a request that names none.
 */
export function s3EndpointName(method: string, target: Target, q: URLSearchParams, headers: Headers): string {
  if (method === "OPTIONS") return "Options";
  try {
    return endpointNameOf(operationOf(method, target, q, headers));
  } catch {
    return "Unknown";
  }
}

/** The metric name of an operation found by operationOf. */
function endpointNameOf(op: string): string {
  return isImplemented(op) ? op : "NotImplemented";
}

/** One label set per endpoint (and status), made once: the metrics find their series by it. */
const endpointLabels = new Map<string, Labels>();
const errorLabels = new Map<string, Labels>();
/** Distinct (endpoint, status) label sets kept here; the metrics bound their own series anyway. */
const LABEL_SETS_MAX = 1024;

function labelsOf(cache: Map<string, Labels>, key: string, make: () => Labels): Labels {
  let labels = cache.get(key);
  if (!labels) {
    labels = make();
    if (cache.size < LABEL_SETS_MAX) cache.set(key, labels);
  }
  return labels;
}

/** Counts a request under its endpoint name; a request too malformed to name counts as Unknown. */
function recordS3Request(endpoint: string, status: number, startedNs: number): void {
  const labels = labelsOf(endpointLabels, endpoint, () => ({ api_endpoint: endpoint }));
  requestCounter.inc(labels);
  requestDuration.observe(labels, secondsSince(startedNs));
  if (status >= 400) errorCounter.inc(labelsOf(errorLabels, `${endpoint} ${status}`, () => ({ api_endpoint: endpoint, status_code: String(status) })));
}

export async function handleS3(request: Request, services: S3Services): Promise<Response> {
  const startedNs = Bun.nanoseconds();
  const named = { endpoint: "Unknown" };
  const response = await answerS3(request, services, named);
  recordS3Request(named.endpoint, response.status, startedNs);
  return response;
}

/**
 * Request ids: a random prefix drawn once per process and a counter, 16 upper-case hex digits
 * as AWS's. Unique within a process's life without drawing random bytes per request.
 */
const REQUEST_ID_PREFIX = randomBytes(4).toString("hex").toUpperCase();
let requestSeq = 0;

function newRequestId(): string {
  requestSeq = (requestSeq + 1) >>> 0;
  return REQUEST_ID_PREFIX + requestSeq.toString(16).toUpperCase().padStart(8, "0");
}

/** The decoded query, first value of each name only (as S3). */
function firstValues(rawQuery: string): URLSearchParams {
  const query = new URLSearchParams();
  if (rawQuery === "") return query;
  for (const [k, v] of new URLSearchParams(rawQuery)) if (!query.has(k)) query.set(k, v);
  return query;
}

/**
 * `named.endpoint` is set as soon as the operation is known (before authentication), so that
 * refused requests are counted under what they asked for.
 */
async function answerS3(request: Request, services: S3Services, named: { endpoint: string }): Promise<Response> {
  const requestId = newRequestId();
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
    const bucket = target.bucketName === undefined ? undefined : services.model.resolveBucket(target.bucketName);
    corsRules = bucket?.cors?.v ?? null;
    const query = firstValues(rawQuery);
    let operation: Operation;
    if (request.method === "OPTIONS") {
      named.endpoint = "Options";
      // A browser's preflight carries no signature: it is answered from the rules alone.
      await discardBody(request);
      let rules: CorsRule[] | null | undefined;
      if (target.bucketName !== undefined) {
        if (!bucket) throw new S3Error("NoSuchBucket", "The specified bucket does not exist");
        rules = corsRules;
      }
      const preflight = corsOps.preflightResponse(rules, request.headers);
      preflight.headers.set("x-amz-request-id", requestId);
      return preflight;
    }
    try {
      const op = operationOf(request.method, target, query, request.headers);
      operation = { op };
      named.endpoint = endpointNameOf(op);
    } catch (err) {
      operation = { refusal: err };
    }
    if (request.method === "POST" && target.bucketName !== undefined && target.key === undefined && isForm(request.headers) && !namesSubresource(rawQuery)) {
      // A browser form: authenticated by the signed policy it carries, not by SigV4 headers.
      // (A form body sent to `?delete` or `?uploads` is that operation's request, not an upload.)
      const response = await postObject(request, services, target.bucketName, (name) => services.model.resolveBucket(name));
      response.headers.set("x-amz-request-id", requestId);
      return withCors(response);
    }
    const signed = { method: request.method, rawPath, rawQuery, headers: request.headers };
    const secretOf = (id: string) => services.model.getKey(id)?.secret;
    const auth = carriesSigV2(signed)
      ? verifyRequestV2({ ...signed, virtualHostBucket: bucketOfHost(request.headers.get("host"), services.settings.rootDomain, false) }, secretOf)
      : verifyRequest(signed, secretOf, { region: services.settings.region });
    const apiKey = services.model.getKey(auth.accessKeyId);
    if (!apiKey) throw new S3Error("InvalidAccessKeyId", "The access key ID you provided does not exist");
    const response = await dispatch(
      {
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
      },
      operation,
      bucket,
    );
    response.headers.set("x-amz-request-id", requestId);
    return withCors(response);
  } catch (err) {
    await discardBody(request);
    const context = `request ${requestId} ${request.method} ${rawPath}`;
    const s3err = toS3Error(err, context);
    // One line per server-side failure, with the request id a client reports: toS3Error has
    // logged a bug (with its stack); a known one (e.g. no quorum) is logged here. A refusal
    // of what Bunker does not implement (501) is the client's request, not a failure.
    const loggedAsBug = s3err.code === "InternalError" && !(err instanceof S3Error);
    if (s3err.status === 501) log.debug(`${context}: ${s3err.code} ${s3err.message}`);
    else if (s3err.status >= 500 && !loggedAsBug) log.warn(`${context}: ${s3err.code} ${s3err.message}`);
    // Errors carry the CORS headers too, so that a browser page can read why it failed.
    return withCors(errorResponse(s3err, rawPath, requestId, isHead, services.settings.region));
  }
}

/**
 * The S3 endpoint for serveNode: every method and path goes to handleS3, which parses the
 * target itself. Elysia is the stack's HTTP layer; here it costs ~1-2 µs of a ~200 µs GET
 * (measured in session 9, benchmarks/footprint/cpu.ts), not worth a second way to serve.
 */
export function s3App(services: S3Services) {
  const handler = ({ request }: { request: Request }) => handleS3(request, services);
  return new Elysia({ normalize: false })
    .all("/", handler, { parse: "none" })
    .all("/*", handler, { parse: "none" });
}
