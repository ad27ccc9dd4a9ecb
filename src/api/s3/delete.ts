// DeleteObject and DeleteObjects: a delete marker stamped by the hybrid clock, written in one
// quorum write with no read first. The data is released in the background. A conditional
// delete (If-Match, or <ETag> in a DeleteObjects entry) is installed through the key's
// register, as every conditional write (model/conditional-write.ts).
import type { ObjectEntry } from "../../model/object";
import { ConditionalConflictError, ConditionalUnavailableError, installConditionally } from "../../model/conditional-write";
import { storeServices, type BucketRequest, type ObjectRequest } from "./context";
import { S3Error, toS3Error } from "./errors";
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

/** Conditional entries of one DeleteObjects request installed at once (each takes the key's register). */
const CONDITIONAL_DELETES_IN_FLIGHT = 8;

/**
 * S3's conditional delete: `ifMatch` (an ETag, a list of them, or `*`) must match the current
 * version, and a missing object fails with NoSuchKey. The delete marker is installed through
 * the key's register (model/conditional-write.ts), so the check and the delete are one step.
 */
async function deleteIfMatch(r: BucketRequest, key: string, ifMatch: string): Promise<void> {
  const wanted = ifMatch.split(",").map(normalizeEtag);
  await installConditionally(
    storeServices(r.services),
    { bucketId: r.bucket.id, key },
    (current) => {
      if (!current) throw new S3Error("NoSuchKey", "The specified key does not exist.");
      if (!wanted.includes("*") && !wanted.includes(current.state.data.meta.etag))
        throw new S3Error("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
    },
    { kind: "fresh", state: () => ({ kind: "complete", data: { kind: "deleteMarker" } }) },
  );
}

/** A `versionId` here is the null version: the router refused any other (unsupported.ts). */
export async function deleteObject(r: ObjectRequest): Promise<Response> {
  const ifMatch = r.headers.get("if-match");
  if (ifMatch !== null) await deleteIfMatch(r, r.key, ifMatch);
  else await r.services.model.insertNewestVersions([deleteMarker(r.bucket.id, r.key)]);
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
  // Conditional entries each take their key's register, a few at a time; the others are
  // deleted together in one write.
  const conditional = entries.filter((e) => !e.error && e.etag !== undefined);
  for (let i = 0; i < conditional.length; i += CONDITIONAL_DELETES_IN_FLIGHT) {
    await Promise.all(
      conditional.slice(i, i + CONDITIONAL_DELETES_IN_FLIGHT).map(async (e) => {
        try {
          await deleteIfMatch(r, e.key, e.etag!);
        } catch (err) {
          // The entry's own outcome (refused, conflicting, out of reach) is reported in it; a
          // bug fails the request.
          if (!(err instanceof S3Error || err instanceof ConditionalConflictError || err instanceof ConditionalUnavailableError)) throw err;
          const s3 = toS3Error(err);
          e.error = { code: s3.code, message: s3.message };
        }
      }),
    );
  }
  await r.services.model.insertNewestVersions(entries.filter((e) => !e.error && e.etag === undefined).map((e) => deleteMarker(r.bucket.id, e.key)));
  const deleted = entries.filter((e) => !e.error);
  return xmlResponse(
    xmlDocument("DeleteResult", {
      Deleted: quiet ? [] : deleted.map((e) => ({ Key: e.key, VersionId: e.versionId })),
      Error: entries.filter((e) => e.error).map((e) => ({ Key: e.key, VersionId: e.versionId, Code: e.error!.code, Message: e.error!.message })),
    }),
  );
}
