// DeleteObject and DeleteObjects: a delete marker stamped by the hybrid clock, written in one
// quorum write with no read first. The data is released in the background. A conditional
// delete (If-Match, or <ETag> in a DeleteObjects entry) reads the current version first: like
// conditional writes (put.ts) this is not atomic, but it never deletes an object that was
// already different when the request arrived.
import { visibleVersion, type ObjectEntry } from "../../model/object";
import type { BucketRequest, ObjectRequest } from "./context";
import { S3Error } from "./errors";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import { normalizeEtag } from "./headers";
import { NULL_VERSION_ID, checkVersionId } from "./version-id";
import { children, child, childText, MAX_XML_BODY, parseXml, xmlDocument, type XmlElement } from "./xml";

/** S3 accepts at most this many keys per DeleteObjects request. */
export const MAX_DELETE_KEYS = 1000;

function deleteMarker(bucketId: string, key: string) {
  return (uuid: string, timestamp: number): { entry: ObjectEntry } => ({
    entry: { bucketId, key, versions: [{ uuid, timestamp, state: { kind: "complete", data: { kind: "deleteMarker" } } }] },
  });
}

/**
 * S3's conditional delete: `ifMatch` (an ETag, a list of them, or `*`) must match the current
 * version, and a missing object fails with NoSuchKey.
 */
async function checkDeleteCondition(r: BucketRequest, key: string, ifMatch: string): Promise<void> {
  const current = visibleVersion(await r.services.model.objects.get(r.bucket.id, key));
  if (!current) throw new S3Error("NoSuchKey", "The specified key does not exist.");
  const wanted = ifMatch.split(",").map(normalizeEtag);
  if (!wanted.includes("*") && !wanted.includes(current.state.data.meta.etag))
    throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
}

/** A `versionId` here is the null version: the router refused any other (unsupported.ts). */
export async function deleteObject(r: ObjectRequest): Promise<Response> {
  const ifMatch = r.headers.get("if-match");
  if (ifMatch !== null) await checkDeleteCondition(r, r.key, ifMatch);
  await r.services.model.insertNewestVersions([deleteMarker(r.bucket.id, r.key)]);
  const headers: Record<string, string> = r.query.has("versionId") ? { "x-amz-version-id": NULL_VERSION_ID } : {};
  return new Response(null, { status: 204, headers });
}

interface DeleteEntry {
  key: string;
  versionId?: string;
  etag?: string;
  /** Why this entry is not deleted, as S3 reports it in the entry's <Error>. */
  error?: { code: string; message: string };
}

/** An entry's own refusal, before any object is read: S3 reports it and deletes the others. */
function entryError(o: XmlElement, key: string, versionId: string | undefined): DeleteEntry["error"] {
  if (key.length === 0 || Buffer.byteLength(key) > 1024 || key.includes("\u0000")) return { code: "InvalidArgument", message: "Invalid object key" };
  if (versionId !== undefined) {
    try {
      checkVersionId(versionId);
    } catch {
      // S3 reports any version a bucket does not hold, malformed or not, as NoSuchVersion here.
      return { code: "NoSuchVersion", message: "The specified version does not exist." };
    }
  }
  if (child(o, "LastModifiedTime") || child(o, "Size"))
    return { code: "NotImplemented", message: "Bunker implements conditional deletes on ETag only" };
  return undefined;
}

export async function deleteObjects(r: BucketRequest): Promise<Response> {
  const text = await readSmallBody(r, MAX_XML_BODY);
  const doc = parseXml(text);
  if (doc.name !== "Delete") throw new S3Error("MalformedXML", "Expected a <Delete> document");
  const quiet = childText(doc, "Quiet")?.trim().toLowerCase() === "true";
  const objects = children(doc, "Object");
  if (objects.length === 0 || objects.length > MAX_DELETE_KEYS)
    throw new S3Error("MalformedXML", `A Delete request must name between 1 and ${MAX_DELETE_KEYS} objects`);
  const entries: DeleteEntry[] = objects.map((o) => {
    const k = child(o, "Key");
    if (!k) throw new S3Error("MalformedXML", "Each <Object> needs a <Key>");
    const versionId = childText(o, "VersionId");
    const etag = childText(o, "ETag");
    return { key: k.text, versionId, etag, error: entryError(o, k.text, versionId) };
  });
  // Conditional entries are checked one by one (each is a read); the others need none.
  for (const e of entries) {
    if (e.error || e.etag === undefined) continue;
    try {
      await checkDeleteCondition(r, e.key, e.etag);
    } catch (err) {
      if (!(err instanceof S3Error)) throw err;
      e.error = { code: err.code, message: err.message };
    }
  }
  const deleted = entries.filter((e) => !e.error);
  await r.services.model.insertNewestVersions(deleted.map((e) => deleteMarker(r.bucket.id, e.key)));
  return xmlResponse(
    xmlDocument("DeleteResult", {
      Deleted: quiet ? [] : deleted.map((e) => ({ Key: e.key, VersionId: e.versionId })),
      Error: entries.filter((e) => e.error).map((e) => ({ Key: e.key, VersionId: e.versionId, Code: e.error!.code, Message: e.error!.message })),
    }),
  );
}
