// Put/Get/DeleteBucketLifecycleConfiguration: expiration (Days or Date) and the cleanup of
// stale multipart uploads, filtered by prefix and object size (the subset Garage has, plus
// the older <Rule><Prefix> form that s3cmd still sends). Transitions, tags and noncurrent
// versions are refused with 501 rather than stored and ignored. model/lifecycle.ts applies them.
import type { LifecycleExpiration, LifecycleRule } from "../../model/bucket";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import type { BucketRequest } from "./context";
import { S3Error } from "./errors";
import { parseDecimal } from "../../util/decimal";
import { child, children, childText, MAX_XML_BODY, parseXml, xmlDocument, type XmlElement, type XmlNode } from "./xml";

/** AWS's limit on rules per bucket. */
export const LIFECYCLE_RULES_MAX = 1000;
const RULE_ID_MAX = 255;
const UNSUPPORTED_ACTIONS = ["Transition", "Transitions", "NoncurrentVersionTransition", "NoncurrentVersionExpiration"];

/** Days are an Integer in AWS's schema (32-bit signed). */
const DAYS_MAX = 2 ** 31 - 1;

// Spaces around an XML integer are the schema's; inside, only decimal digits.
function positiveDays(text: string | undefined, what: string): number {
  const n = parseDecimal(text?.trim(), 1, DAYS_MAX);
  if (n === undefined) throw new S3Error("InvalidArgument", `${what} must be an integer between 1 and ${DAYS_MAX}`);
  return n;
}

function size(text: string | undefined, what: string): number | null {
  if (text === undefined) return null;
  const n = parseDecimal(text.trim(), 0, Number.MAX_SAFE_INTEGER);
  if (n === undefined) throw new S3Error("InvalidArgument", `${what} must be a non-negative integer`);
  return n;
}

function parseFilter(rule: XmlElement): LifecycleRule["filter"] {
  const legacyPrefix = childText(rule, "Prefix");
  const filter = child(rule, "Filter");
  if (legacyPrefix !== undefined && filter) throw new S3Error("MalformedXML", "A rule may have a Prefix or a Filter, not both");
  if (!filter) return { prefix: legacyPrefix ?? "", sizeGreaterThan: null, sizeLessThan: null };
  const and = child(filter, "And");
  if (filter.children.length > 1) throw new S3Error("MalformedXML", and ? "A Filter with And may hold nothing else" : "Several Filter conditions must be wrapped in And");
  const conditions = and ?? filter;
  if (child(conditions, "Tag")) throw new S3Error("NotImplemented", "Lifecycle filters on tags are not implemented by Bunker");
  const out = {
    prefix: childText(conditions, "Prefix") ?? "",
    sizeGreaterThan: size(childText(conditions, "ObjectSizeGreaterThan"), "ObjectSizeGreaterThan"),
    sizeLessThan: size(childText(conditions, "ObjectSizeLessThan"), "ObjectSizeLessThan"),
  };
  if (out.sizeGreaterThan !== null && out.sizeLessThan !== null && out.sizeGreaterThan >= out.sizeLessThan)
    throw new S3Error("InvalidArgument", "ObjectSizeGreaterThan must be less than ObjectSizeLessThan");
  return out;
}

function parseExpiration(el: XmlElement | undefined): LifecycleExpiration | null {
  if (!el) return null;
  if (child(el, "ExpiredObjectDeleteMarker")) throw new S3Error("NotImplemented", "ExpiredObjectDeleteMarker is not implemented by Bunker (it has no versioning)");
  const days = childText(el, "Days");
  const date = childText(el, "Date");
  if ((days === undefined) === (date === undefined)) throw new S3Error("MalformedXML", "Expiration needs exactly one of Days or Date");
  if (days !== undefined) return { days: positiveDays(days, "Expiration Days") };
  const ms = Date.parse(date!.trim());
  if (Number.isNaN(ms) || ms % (24 * 60 * 60 * 1000) !== 0) throw new S3Error("InvalidArgument", "Expiration Date must be an ISO 8601 date at midnight UTC");
  return { date: new Date(ms).toISOString() };
}

/** Parses and checks a LifecycleConfiguration document. */
export function parseLifecycleConfiguration(text: string): LifecycleRule[] {
  if (text.trim() === "") throw new S3Error("MalformedXML", "The request body is empty: a LifecycleConfiguration is required");
  const doc = parseXml(text);
  if (doc.name !== "LifecycleConfiguration") throw new S3Error("MalformedXML", `Expected a LifecycleConfiguration, got ${doc.name}`);
  const ruleEls = children(doc, "Rule");
  if (ruleEls.length === 0) throw new S3Error("MalformedXML", "A LifecycleConfiguration needs at least one Rule");
  if (ruleEls.length > LIFECYCLE_RULES_MAX) throw new S3Error("InvalidRequest", `A LifecycleConfiguration may have at most ${LIFECYCLE_RULES_MAX} rules`);
  const ids = new Set<string>();
  return ruleEls.map((el): LifecycleRule => {
    for (const a of UNSUPPORTED_ACTIONS) if (child(el, a)) throw new S3Error("NotImplemented", `Lifecycle ${a} is not implemented by Bunker`);
    const id = childText(el, "ID") ?? null;
    if (id !== null) {
      if (id.length > RULE_ID_MAX) throw new S3Error("InvalidArgument", `A rule ID is at most ${RULE_ID_MAX} characters`);
      if (ids.has(id)) throw new S3Error("InvalidArgument", `Rule ID ${id} is used twice`);
      ids.add(id);
    }
    const status = childText(el, "Status");
    if (status !== "Enabled" && status !== "Disabled") throw new S3Error("MalformedXML", "A rule's Status must be Enabled or Disabled");
    const abortEl = child(el, "AbortIncompleteMultipartUpload");
    const rule: LifecycleRule = {
      id,
      enabled: status === "Enabled",
      filter: parseFilter(el),
      expiration: parseExpiration(child(el, "Expiration")),
      abortIncompleteUploadDays: abortEl ? positiveDays(childText(abortEl, "DaysAfterInitiation"), "DaysAfterInitiation") : null,
    };
    if (!rule.expiration && rule.abortIncompleteUploadDays === null)
      throw new S3Error("InvalidRequest", "A rule needs an action: Expiration or AbortIncompleteMultipartUpload");
    if (rule.abortIncompleteUploadDays !== null && (rule.filter.sizeGreaterThan !== null || rule.filter.sizeLessThan !== null))
      throw new S3Error("InvalidRequest", "AbortIncompleteMultipartUpload cannot be combined with an object size filter");
    return rule;
  });
}

function filterXml(f: LifecycleRule["filter"]): XmlNode {
  const conditions: Record<string, XmlNode> = {};
  if (f.prefix !== "" || (f.sizeGreaterThan === null && f.sizeLessThan === null)) conditions.Prefix = f.prefix;
  if (f.sizeGreaterThan !== null) conditions.ObjectSizeGreaterThan = f.sizeGreaterThan;
  if (f.sizeLessThan !== null) conditions.ObjectSizeLessThan = f.sizeLessThan;
  return Object.keys(conditions).length > 1 ? { And: conditions } : conditions;
}

export function lifecycleConfigurationXml(rules: readonly LifecycleRule[]): string {
  return xmlDocument("LifecycleConfiguration", {
    Rule: rules.map((r) => ({
      ID: r.id ?? undefined,
      Filter: filterXml(r.filter),
      Status: r.enabled ? "Enabled" : "Disabled",
      Expiration: r.expiration ? ("days" in r.expiration ? { Days: r.expiration.days } : { Date: r.expiration.date }) : undefined,
      AbortIncompleteMultipartUpload: r.abortIncompleteUploadDays !== null ? { DaysAfterInitiation: r.abortIncompleteUploadDays } : undefined,
    })),
  });
}

export async function putBucketLifecycle(r: BucketRequest): Promise<Response> {
  const rules = parseLifecycleConfiguration(await readSmallBody(r, MAX_XML_BODY));
  await r.services.model.setLifecycle(r.bucket, rules);
  return new Response(null, { status: 200 });
}

export function getBucketLifecycle(r: BucketRequest): Response {
  const rules = r.bucket.lifecycle?.v;
  if (!rules) throw new S3Error("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist");
  return xmlResponse(lifecycleConfigurationXml(rules));
}

export async function deleteBucketLifecycle(r: BucketRequest): Promise<Response> {
  if (r.bucket.lifecycle?.v) await r.services.model.setLifecycle(r.bucket, null);
  return new Response(null, { status: 204 });
}
