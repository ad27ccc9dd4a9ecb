// Put/Get/DeleteBucketTagging: a bucket's tags (at most 50), kept in the bucket's entry and
// replaced whole by each Put, as AWS does. Nothing in Bunker acts on them: they are the
// owner's labels (cost centre, project), given back as written.
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import type { BucketRequest } from "./context";
import { S3Error } from "./errors";
import { BUCKET_TAGS_MAX, parseTaggingXml, taggingXml } from "./tag-set";
import { MAX_XML_BODY } from "./xml";

export async function putBucketTagging(r: BucketRequest): Promise<Response> {
  const tags = parseTaggingXml(await readSmallBody(r, MAX_XML_BODY), BUCKET_TAGS_MAX);
  // An empty TagSet leaves the bucket with no tags: GetBucketTagging then answers NoSuchTagSet.
  await r.services.model.setBucketTags(r.bucket, tags.length > 0 ? tags : null);
  return new Response(null, { status: 204 });
}

export function getBucketTagging(r: BucketRequest): Response {
  const tags = r.bucket.tags?.v;
  if (!tags) throw new S3Error("NoSuchTagSet", "The TagSet does not exist");
  return xmlResponse(taggingXml(tags));
}

export async function deleteBucketTagging(r: BucketRequest): Promise<Response> {
  if (r.bucket.tags?.v) await r.services.model.setBucketTags(r.bucket, null);
  return new Response(null, { status: 204 });
}
