// Bucket operations: ListBuckets, CreateBucket, DeleteBucket, GetBucketLocation, GetBucketVersioning.
import { isValidBucketName } from "../../model/bucket";
import { S3Error } from "./errors";
import { childText, MAX_XML_BODY, parseXml, xmlDocument } from "./xml";
import type { BucketRequest, S3Request } from "./context";
import { readSmallBody } from "./body";

export function xmlResponse(body: string, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: { "content-type": "application/xml", ...headers } });
}

export function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}

export function listBuckets(r: S3Request): Response {
  const model = r.services.model;
  const visible = model
    .listBuckets()
    .filter((b) => {
      const p = b.keys[r.apiKey.id];
      return p && (p.read || p.write || p.owner);
    })
    .flatMap((b) => model.aliasesOf(b.id).map((name) => ({ name, created: b.created })))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  return xmlResponse(
    xmlDocument("ListAllMyBucketsResult", {
      Owner: { ID: r.apiKey.id, DisplayName: r.apiKey.name.v },
      Buckets: { Bucket: visible.map((b) => ({ Name: b.name, CreationDate: isoDate(b.created) })) },
    }),
  );
}

export async function createBucket(r: S3Request & { bucketName: string }): Promise<Response> {
  const model = r.services.model;
  const body = await readSmallBody(r, MAX_XML_BODY);
  if (body.length > 0) {
    const doc = parseXml(body);
    const location = childText(doc, "LocationConstraint");
    if (location !== undefined && location !== "" && location !== r.services.settings.region)
      throw new S3Error("InvalidArgument", `Cannot create a bucket in region ${location}: this server is region ${r.services.settings.region}`);
  }
  const existing = model.resolveBucket(r.bucketName);
  if (existing) {
    const p = existing.keys[r.apiKey.id];
    if (p && (p.write || p.owner)) throw new S3Error("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it");
    throw new S3Error("BucketAlreadyExists", "The requested bucket name is not available");
  }
  if (!r.apiKey.allowCreateBucket.v) throw new S3Error("AccessDenied", "This key is not allowed to create buckets");
  if (!isValidBucketName(r.bucketName)) throw new S3Error("InvalidBucketName", "The specified bucket is not valid");
  await model.createBucket(r.bucketName, r.apiKey);
  return new Response(null, { status: 200, headers: { location: `/${r.bucketName}` } });
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
