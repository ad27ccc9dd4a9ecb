// DeleteObject and DeleteObjects: a delete marker stamped by the hybrid clock, written in one
// quorum write with no read first. The data is released in the background.
import type { ObjectEntry } from "../../model/object";
import type { BucketRequest, ObjectRequest } from "./context";
import { S3Error } from "./errors";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import { children, child, childText, MAX_XML_BODY, parseXml, xmlDocument } from "./xml";
import { CryptoHasher } from "bun";

/** S3 accepts at most this many keys per DeleteObjects request. */
export const MAX_DELETE_KEYS = 1000;

function deleteMarker(bucketId: string, key: string) {
  return (uuid: string, timestamp: number): { entry: ObjectEntry } => ({
    entry: { bucketId, key, versions: [{ uuid, timestamp, state: { kind: "complete", data: { kind: "deleteMarker" } } }] },
  });
}

export async function deleteObject(r: ObjectRequest): Promise<Response> {
  await r.services.model.insertNewestVersions([deleteMarker(r.bucket.id, r.key)]);
  return new Response(null, { status: 204 });
}

export async function deleteObjects(r: BucketRequest): Promise<Response> {
  const text = await readSmallBody(r, MAX_XML_BODY);
  const md5 = r.headers.get("content-md5");
  if (md5 !== null && new CryptoHasher("md5").update(text).digest("base64") !== md5.trim())
    throw new S3Error("BadDigest", "The Content-MD5 you specified did not match what we received");
  const doc = parseXml(text);
  if (doc.name !== "Delete") throw new S3Error("MalformedXML", "Expected a <Delete> document");
  const quiet = childText(doc, "Quiet")?.trim().toLowerCase() === "true";
  const objects = children(doc, "Object");
  if (objects.length === 0 || objects.length > MAX_DELETE_KEYS)
    throw new S3Error("MalformedXML", `A Delete request must name between 1 and ${MAX_DELETE_KEYS} objects`);
  const keys = objects.map((o) => {
    const k = child(o, "Key");
    if (!k) throw new S3Error("MalformedXML", "Each <Object> needs a <Key>");
    return k.text;
  });
  const model = r.services.model;
  const valid = keys.filter((k) => k.length > 0 && Buffer.byteLength(k) <= 1024 && !k.includes("\u0000"));
  await model.insertNewestVersions(valid.map((k) => deleteMarker(r.bucket.id, k)));
  const validSet = new Set(valid);
  return xmlResponse(
    xmlDocument("DeleteResult", {
      Deleted: quiet ? [] : keys.filter((k) => validSet.has(k)).map((k) => ({ Key: k })),
      Error: keys.filter((k) => !validSet.has(k)).map((k) => ({ Key: k, Code: "InvalidArgument", Message: "Invalid object key" })),
    }),
  );
}
