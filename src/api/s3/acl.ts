// ACLs as S3 has them with Object Ownership "BucketOwnerEnforced" (ACLs disabled), which is
// what Bunker's access model is: access is granted per key and bucket, never by an ACL.
// Get*Acl answer the owner (the requesting key, as ListBuckets and ListParts name it) with
// FULL_CONTROL; Put*Acl accept only what says the same (a canned `private` or
// `bucket-owner-full-control`, or a policy granting FULL_CONTROL to the owner alone) and
// refuse any other ACL with AWS's 400 AccessControlListNotSupported. The x-amz-acl header
// itself is checked by the refusal table (unsupported.ts), as on every other operation.
// GetBucketOwnershipControls answers BucketOwnerEnforced; PutBucketOwnershipControls accepts
// that setting only.
import { visibleVersion } from "../../model/object";
import { readObject } from "../../model/pending";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import type { BucketRequest, ObjectRequest, S3Request } from "./context";
import { S3Error } from "./errors";
import { child, children, childText, MAX_XML_BODY, parseXml, xmlAttrs, xmlDocument, type XmlElement } from "./xml";

const XSI = "http://www.w3.org/2001/XMLSchema-instance";
/** AWS's message for AccessControlListNotSupported. */
export const ACLS_DISABLED = "The bucket does not allow ACLs";
/** The one Object Ownership setting Bunker has. */
const OWNER_ENFORCED = "BucketOwnerEnforced";
/** The other settings S3 has, which would enable ACLs. */
const ACL_OWNERSHIPS = ["BucketOwnerPreferred", "ObjectWriter"];

function owner(r: S3Request): { ID: string; DisplayName: string } {
  return { ID: r.apiKey.id, DisplayName: r.apiKey.name.v };
}

function accessControlPolicy(r: S3Request): Response {
  return xmlResponse(
    xmlDocument("AccessControlPolicy", {
      Owner: owner(r),
      AccessControlList: {
        Grant: {
          Grantee: xmlAttrs({ "xmlns:xsi": XSI, "xsi:type": "CanonicalUser" }, owner(r)),
          Permission: "FULL_CONTROL",
        },
      },
    }),
  );
}

async function requireObject(r: ObjectRequest): Promise<void> {
  if (!visibleVersion(await readObject(r.services, r.bucket.id, r.key))) throw new S3Error("NoSuchKey", "The specified key does not exist.");
}

function malformed(what: string): S3Error {
  return new S3Error("MalformedACLError", `The XML you provided was not well-formed or did not validate against our published schema: ${what}`);
}

function notOwnerFullControl(why: string): S3Error {
  return new S3Error("AccessControlListNotSupported", `${ACLS_DISABLED}: ${why}; only FULL_CONTROL for the owner (private, bucket-owner-full-control) can be set`);
}

function parsePolicy(text: string): XmlElement {
  try {
    return parseXml(text);
  } catch (err) {
    if (err instanceof S3Error && err.code === "MalformedXML") throw malformed(err.message);
    throw err;
  }
}

/** Accepts an AccessControlPolicy granting FULL_CONTROL to `ownerId` and nothing else. */
export function checkAccessControlPolicy(text: string, ownerId: string): void {
  const doc = parsePolicy(text);
  if (doc.name !== "AccessControlPolicy") throw malformed(`expected an AccessControlPolicy, got ${doc.name}`);
  const lists = children(doc, "AccessControlList");
  if (lists.length !== 1) throw malformed("an AccessControlPolicy needs exactly one AccessControlList");
  const ownerEl = child(doc, "Owner");
  if (ownerEl && childText(ownerEl, "ID")?.trim() !== ownerId) throw notOwnerFullControl("the Owner is not the bucket's owner");
  const grants = children(lists[0]!, "Grant");
  if (grants.length === 0) throw notOwnerFullControl("the ACL grants nothing to the owner");
  for (const grant of grants) {
    const grantee = child(grant, "Grantee");
    const permission = childText(grant, "Permission");
    if (!grantee || permission === undefined) throw malformed("a Grant needs a Grantee and a Permission");
    if (grantee.attrs.type !== "CanonicalUser" || childText(grantee, "ID")?.trim() !== ownerId) throw notOwnerFullControl("the ACL has a grant to someone other than the owner");
    if (permission.trim() !== "FULL_CONTROL") throw notOwnerFullControl(`the ACL grants ${permission.trim()} to the owner`);
  }
}

/**
 * The ACL of a Put*Acl request: its x-amz-acl (already accepted by the refusal table) or its
 * AccessControlPolicy body, exactly one of them.
 */
async function checkAclRequest(r: BucketRequest): Promise<void> {
  const body = await readSmallBody(r, MAX_XML_BODY);
  const canned = r.headers.has("x-amz-acl");
  if (canned && body.trim() !== "") throw new S3Error("InvalidRequest", "Send a canned ACL (x-amz-acl) or an AccessControlPolicy body, not both");
  if (!canned && body.trim() === "") throw new S3Error("MissingSecurityHeader", "Your request was missing a required header: x-amz-acl (or an AccessControlPolicy body)");
  if (!canned) checkAccessControlPolicy(body, r.apiKey.id);
}

export function getBucketAcl(r: BucketRequest): Response {
  return accessControlPolicy(r);
}

export async function getObjectAcl(r: ObjectRequest): Promise<Response> {
  await requireObject(r);
  return accessControlPolicy(r);
}

/** Nothing is stored: the ACL accepted is the one the bucket has. */
export async function putBucketAcl(r: BucketRequest): Promise<Response> {
  await checkAclRequest(r);
  return new Response(null, { status: 200 });
}

export async function putObjectAcl(r: ObjectRequest): Promise<Response> {
  await checkAclRequest(r);
  await requireObject(r);
  return new Response(null, { status: 200 });
}

export function getBucketOwnershipControls(_r: BucketRequest): Response {
  return xmlResponse(xmlDocument("OwnershipControls", { Rule: { ObjectOwnership: OWNER_ENFORCED } }));
}

/** Accepts BucketOwnerEnforced, the setting every bucket has (nothing to store). */
export async function putBucketOwnershipControls(r: BucketRequest): Promise<Response> {
  const text = await readSmallBody(r, MAX_XML_BODY);
  if (text.trim() === "") throw new S3Error("MalformedXML", "The request body is empty: an OwnershipControls document is required");
  const doc = parseXml(text);
  if (doc.name !== "OwnershipControls") throw new S3Error("MalformedXML", `Expected OwnershipControls, got ${doc.name}`);
  const rules = children(doc, "Rule");
  if (rules.length !== 1) throw new S3Error("MalformedXML", "OwnershipControls needs exactly one Rule");
  const ownership = childText(rules[0]!, "ObjectOwnership")?.trim();
  if (ownership === OWNER_ENFORCED) return new Response(null, { status: 200 });
  if (ownership !== undefined && ACL_OWNERSHIPS.includes(ownership))
    throw new S3Error("NotImplemented", `ObjectOwnership ${ownership} would enable ACLs: Bunker does not implement ACLs (access is granted per key and bucket); only ${OWNER_ENFORCED} is accepted`);
  throw new S3Error("MalformedXML", `ObjectOwnership must be one of ${[OWNER_ENFORCED, ...ACL_OWNERSHIPS].join(", ")}`);
}
