// Bucket operations: ListBuckets (with AWS's paging and filters), CreateBucket, DeleteBucket,
// GetBucketLocation, GetBucketVersioning, GetBucketPolicyStatus.
import { isValidBucketName } from "../../model/bucket";
import { parseDecimal } from "../../util/decimal";
import { S3Error } from "./errors";
import { child, childText, MAX_XML_BODY, parseXml, xmlDocument } from "./xml";
import type { BucketRequest, S3Request } from "./context";
import { readSmallBody } from "./body";
import { decodeContinuationToken, encodeContinuationToken } from "./list";
import { BUCKET_TAGS_MAX, parseTags, type TagSet } from "./tag-set";

/** AWS's largest ListBuckets page, and its page size for a request that pages without max-buckets. */
const MAX_BUCKETS_PAGE = 10_000;
/** AWS's longest ListBuckets continuation token. */
const MAX_CONTINUATION_TOKEN = 1024;
/** Query parameters that make ListBuckets a paginated request (otherwise every bucket is listed). */
const LIST_BUCKETS_PAGING = ["max-buckets", "continuation-token", "prefix", "bucket-region"];
/** The region where AWS answers CreateBucket of a bucket one owns with 200 (legacy behaviour). */
const LEGACY_REGION = "us-east-1";

export function xmlResponse(body: string, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { "content-type": "application/xml", ...headers } });
}

export function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}

/** Where a ListBuckets page starts: the bucket name after which it continues (tokens are names). */
function bucketsAfter(token: string | null): string | undefined {
  if (token === null || token === "") return undefined;
  const name = token.length > MAX_CONTINUATION_TOKEN ? undefined : decodeContinuationToken(token);
  if (name === undefined || !isValidBucketName(name)) throw new S3Error("InvalidArgument", "The continuation token provided is incorrect");
  return name;
}

/**
 * The buckets the key may use (every name of each), by name. A request with any of max-buckets,
 * continuation-token, prefix or bucket-region is paginated as AWS does: pages of max-buckets
 * (10 000 by default), a ContinuationToken while more follow; without them, every bucket.
 */
export function listBuckets(r: S3Request): Response {
  const q = r.query;
  const region = r.services.settings.region;
  const paged = LIST_BUCKETS_PAGING.some((p) => q.has(p));
  const maxText = q.get("max-buckets");
  const max = maxText === null ? MAX_BUCKETS_PAGE : parseDecimal(maxText, 1, MAX_BUCKETS_PAGE);
  if (max === undefined) throw new S3Error("InvalidArgument", `max-buckets must be an integer from 1 to ${MAX_BUCKETS_PAGE}`);
  const after = bucketsAfter(q.get("continuation-token"));
  const prefix = q.get("prefix");
  const bucketRegion = q.get("bucket-region");
  const model = r.services.model;
  // Every bucket is in this server's region: a filter on another region matches none.
  const visible =
    bucketRegion !== null && bucketRegion !== region
      ? []
      : model
          .listBuckets()
          .filter((b) => {
            const p = b.keys[r.apiKey.id];
            return p && (p.read || p.write || p.owner);
          })
          .flatMap((b) => model.aliasesOf(b.id).map((name) => ({ name, created: b.created })))
          .filter((b) => (prefix === null || b.name.startsWith(prefix)) && (after === undefined || b.name > after))
          .sort((a, b) => (a.name < b.name ? -1 : 1));
  const page = paged ? visible.slice(0, max) : visible;
  const truncated = page.length < visible.length;
  return xmlResponse(
    xmlDocument("ListAllMyBucketsResult", {
      Owner: { ID: r.apiKey.id, DisplayName: r.apiKey.name.v },
      Buckets: { Bucket: page.map((b) => ({ Name: b.name, CreationDate: isoDate(b.created), BucketRegion: region })) },
      ContinuationToken: truncated ? encodeContinuationToken(page[page.length - 1]!.name) : undefined,
      Prefix: prefix ?? undefined,
    }),
  );
}

interface CreateBucketConfiguration {
  tags: TagSet | null;
}

/** Parses CreateBucket's optional body: a region that must be ours, and the bucket's first tags. */
function parseCreateBucketConfiguration(body: string, region: string): CreateBucketConfiguration {
  if (body.trim() === "") return { tags: null };
  const doc = parseXml(body);
  if (doc.name !== "CreateBucketConfiguration") throw new S3Error("MalformedXML", `Expected a CreateBucketConfiguration, got ${doc.name}`);
  const location = childText(doc, "LocationConstraint")?.trim();
  if (location !== undefined && location !== "" && location !== region)
    throw new S3Error("IllegalLocationConstraintException", `The ${location} location constraint is incompatible for the region specific endpoint this request was sent to (this server is region ${region})`);
  // <Location> and <Bucket> describe directory buckets (an Availability Zone, a data redundancy).
  for (const name of ["Location", "Bucket"]) if (child(doc, name)) throw new S3Error("NotImplemented", `CreateBucketConfiguration ${name}: Bunker has no directory buckets`);
  const tagsEl = child(doc, "Tags");
  const tags = tagsEl ? parseTags(tagsEl, BUCKET_TAGS_MAX) : [];
  return { tags: tags.length > 0 ? tags : null };
}

/**
 * As AWS outside us-east-1: a name the key already has (write or owner) is 409
 * BucketAlreadyOwnedByYou, any other taken name 409 BucketAlreadyExists. A server whose region
 * is us-east-1 answers 200 for the key's own bucket, as AWS does there for legacy clients, when
 * the request asks for nothing more than the bucket (no tags to apply).
 */
export async function createBucket(r: S3Request & { bucketName: string }): Promise<Response> {
  const model = r.services.model;
  const config = parseCreateBucketConfiguration(await readSmallBody(r, MAX_XML_BODY), r.services.settings.region);
  const created = new Response(null, { status: 200, headers: { location: `/${r.bucketName}` } });
  const existing = model.resolveBucket(r.bucketName);
  if (existing) {
    const p = existing.keys[r.apiKey.id];
    if (!p || !(p.write || p.owner)) throw new S3Error("BucketAlreadyExists", "The requested bucket name is not available");
    if (r.services.settings.region === LEGACY_REGION && config.tags === null) return created;
    throw new S3Error("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it");
  }
  if (!r.apiKey.allowCreateBucket.v) throw new S3Error("AccessDenied", "This key is not allowed to create buckets");
  if (!isValidBucketName(r.bucketName)) throw new S3Error("InvalidBucketName", "The specified bucket is not valid");
  await model.createBucket(r.bucketName, r.apiKey, config.tags);
  return created;
}

export async function deleteBucket(r: BucketRequest): Promise<Response> {
  await r.services.model.deleteBucket(r.bucket);
  return new Response(null, { status: 204 });
}

export function getBucketLocation(r: BucketRequest): Response {
  return xmlResponse(xmlDocument("LocationConstraint", r.services.settings.region));
}

export function getBucketVersioning(_r: BucketRequest): Response {
  // Bunker keeps one version per key: the bucket has never had versioning enabled.
  return xmlResponse(xmlDocument("VersioningConfiguration", {}));
}

/**
 * Public as AWS means it: anyone may read the bucket's objects, which is so when its website is
 * published (the web endpoint serves them without a signature) and not otherwise: access is
 * granted per key. Bunker has no bucket policies; the status describes that access instead.
 */
export function getBucketPolicyStatus(r: BucketRequest): Response {
  const website = r.bucket.website.v;
  const isPublic = website !== null && !website.redirectAllRequestsTo;
  return xmlResponse(xmlDocument("PolicyStatus", { IsPublic: isPublic }));
}
