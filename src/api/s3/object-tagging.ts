// Get/Put/DeleteObjectTagging, and the x-amz-tagging header that sets the tags of an object
// being written. Tags belong to the visible version: setting them writes that version again
// (same uuid, timestamp and data) with a newer tag register, which the object merge keeps
// (model/object.ts), so they replicate like the rest of the version's metadata.
// A new version gets its tags from the write (x-amz-tagging, parsed here; CopyObject's COPY
// directive keeps the source's) through the object writer (model/object-writer.ts).
import { versionTags, visibleVersion, type VisibleVersion } from "../../model/object";
import { readObject } from "../../model/pending";
import type { ObjectRequest } from "./context";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import { S3Error } from "./errors";
import { OBJECT_TAGS_MAX, parseTaggingXml, taggingXml, validateTags, type TagSet } from "./tag-set";
import { NULL_VERSION_ID } from "./version-id";

/**
 * Largest Tagging document read: 10 tags of 128 + 256 characters, each written as a character
 * reference of up to 10 bytes, is under 40 KiB; the rest is markup.
 */
const MAX_TAGGING_BODY = 64 * 1024;

const BAD_TAGGING_HEADER = "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates.";

function decodeComponent(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    throw new S3Error("InvalidArgument", BAD_TAGGING_HEADER);
  }
}

/**
 * The tags an `x-amz-tagging` header (or PostObject's equivalent) asks a new object to have:
 * URL query form, `k1=v1&k2=v2`, checked as PutObjectTagging checks its document. Undefined
 * when there is no header; an empty header is an empty set.
 */
export function parseTaggingHeader(value: string | null): TagSet | undefined {
  if (value === null) return undefined;
  const tags: TagSet = [];
  const keys = new Set<string>();
  for (const pair of value.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const key = decodeComponent(eq < 0 ? pair : pair.slice(0, eq));
    const tagValue = eq < 0 ? "" : decodeComponent(pair.slice(eq + 1));
    if (keys.has(key)) throw new S3Error("InvalidArgument", BAD_TAGGING_HEADER);
    keys.add(key);
    tags.push([key, tagValue]);
  }
  validateTags(tags, OBJECT_TAGS_MAX);
  return tags;
}

async function visible(r: ObjectRequest): Promise<VisibleVersion> {
  const version = visibleVersion(await readObject(r.services, r.bucket.id, r.key));
  if (!version) throw new S3Error("NoSuchKey", "The specified key does not exist.");
  return version;
}

/** A `versionId` here is the null version: the router refused any other (unsupported.ts). */
function versionHeaders(r: ObjectRequest): Record<string, string> {
  return r.query.has("versionId") ? { "x-amz-version-id": NULL_VERSION_ID } : {};
}

/**
 * Writes the visible version again with `tags`. Stamped past the register it read, so a tag
 * write read by this one is never taken for newer. A version replaced meanwhile by a newer
 * write drops out at the merge, with these tags: they were that version's, as on S3.
 */
async function setTags(r: ObjectRequest, tags: TagSet): Promise<void> {
  const version = await visible(r);
  const { model } = r.services;
  const timestamp = model.clock.nowAfter(Math.max(version.timestamp, version.state.tags?.timestamp ?? 0));
  await model.objects.insert({
    bucketId: r.bucket.id,
    key: r.key,
    versions: [{ uuid: version.uuid, timestamp: version.timestamp, state: { kind: "complete", data: version.state.data, tags: { timestamp, set: tags } } }],
  });
}

export async function getObjectTagging(r: ObjectRequest): Promise<Response> {
  const version = await visible(r);
  return xmlResponse(taggingXml(versionTags(version)), 200, versionHeaders(r));
}

export async function putObjectTagging(r: ObjectRequest): Promise<Response> {
  const tags = parseTaggingXml(await readSmallBody(r, MAX_TAGGING_BODY), OBJECT_TAGS_MAX);
  await setTags(r, tags);
  return new Response(null, { status: 200, headers: versionHeaders(r) });
}

export async function deleteObjectTagging(r: ObjectRequest): Promise<Response> {
  await setTags(r, []);
  return new Response(null, { status: 204, headers: versionHeaders(r) });
}
