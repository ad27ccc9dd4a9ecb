// Put/Get/DeleteBucketLifecycleConfiguration: expiration (Days or Date) and the cleanup of
// stale multipart uploads, filtered by prefix, object size and tags (the subset Garage has,
// plus tag filters and the older <Rule><Prefix> form that s3cmd still sends). A rule reads back
// as it was written (legacy Prefix, Filter, Filter/And, or neither). Transitions and
// noncurrent versions are refused with 501 rather than stored and ignored. model/lifecycle.ts
// applies the rules.
import { randomBytes } from "node:crypto";
import type { LifecycleExpiration, LifecycleFilter, LifecycleRule } from "../../model/bucket";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import type { BucketRequest } from "./context";
import { S3Error } from "./errors";
import { parseDecimal } from "../../util/decimal";
import { OBJECT_TAGS_MAX, parseTagElement, validateTags } from "./tag-set";
import { child, children, childText, MAX_XML_BODY, parseXml, xmlDocument, type XmlElement, type XmlNode } from "./xml";

/** AWS's limit on rules per bucket. */
export const LIFECYCLE_RULES_MAX = 1000;
const RULE_ID_MAX = 255;
/** Random bytes of the ID given to a rule written without one (AWS names every rule). */
const GENERATED_ID_BYTES = 24;
const UNSUPPORTED_ACTIONS = ["Transition", "Transitions", "NoncurrentVersionTransition", "NoncurrentVersionExpiration"];
/** The conditions a Filter (or its And) may hold. */
const FILTER_CONDITIONS = new Set(["Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"]);

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

/** The one text of `name` in `el`, undefined when absent; twice is not the schema. */
function onlyText(el: XmlElement, name: string): string | undefined {
  const found = children(el, name);
  if (found.length > 1) throw new S3Error("MalformedXML", `${el.name} may have one ${name}`);
  return found[0]?.text;
}

function parseFilter(rule: XmlElement): LifecycleFilter {
  const legacyPrefix = onlyText(rule, "Prefix");
  const filters = children(rule, "Filter");
  if (filters.length > 1) throw new S3Error("MalformedXML", "A rule may have one Filter");
  const filter = filters[0];
  if (legacyPrefix !== undefined && filter) throw new S3Error("MalformedXML", "A rule may have a Prefix or a Filter, not both");
  if (!filter) return { prefix: legacyPrefix ?? "", sizeGreaterThan: null, sizeLessThan: null, tags: [], syntax: legacyPrefix === undefined ? "none" : "prefix" };
  const and = child(filter, "And");
  if (filter.children.length > 1) throw new S3Error("MalformedXML", and ? "A Filter with And may hold nothing else" : "Several Filter conditions must be wrapped in And");
  const conditions = and ?? filter;
  // A condition not understood would widen the filter: the rule would expire more than asked.
  const unknown = conditions.children.find((c) => !FILTER_CONDITIONS.has(c.name));
  if (unknown) throw new S3Error("MalformedXML", `${unknown.name} is not a lifecycle filter condition`);
  if (and && and.children.length === 0) throw new S3Error("MalformedXML", "An And needs at least one condition");
  const tags = children(conditions, "Tag").map(parseTagElement);
  // An object carries at most OBJECT_TAGS_MAX tags: a filter needing more would match nothing.
  validateTags(tags, OBJECT_TAGS_MAX);
  const prefix = onlyText(conditions, "Prefix");
  const out: LifecycleFilter = {
    prefix: prefix ?? "",
    sizeGreaterThan: size(onlyText(conditions, "ObjectSizeGreaterThan"), "ObjectSizeGreaterThan"),
    sizeLessThan: size(onlyText(conditions, "ObjectSizeLessThan"), "ObjectSizeLessThan"),
    tags,
    syntax: and ? "and" : "filter",
    prefixElement: prefix !== undefined,
  };
  if (out.sizeGreaterThan !== null && out.sizeLessThan !== null && out.sizeGreaterThan >= out.sizeLessThan)
    throw new S3Error("InvalidArgument", "ObjectSizeGreaterThan must be less than ObjectSizeLessThan");
  return out;
}

type ParsedExpiration = Pick<LifecycleRule, "expiration" | "expiredObjectDeleteMarker">;

function parseExpiration(el: XmlElement | undefined): ParsedExpiration {
  if (!el) return { expiration: null };
  const days = onlyText(el, "Days");
  const date = onlyText(el, "Date");
  const marker = onlyText(el, "ExpiredObjectDeleteMarker");
  if (marker !== undefined) {
    if (days !== undefined || date !== undefined) throw new S3Error("InvalidArgument", "ExpiredObjectDeleteMarker cannot be specified with Days or Date in a Lifecycle Expiration Policy");
    const value = marker.trim();
    if (value !== "true" && value !== "false") throw new S3Error("MalformedXML", "ExpiredObjectDeleteMarker must be true or false");
    return { expiration: null, expiredObjectDeleteMarker: value === "true" };
  }
  if ((days === undefined) === (date === undefined)) throw new S3Error("MalformedXML", "Expiration needs exactly one of Days, Date or ExpiredObjectDeleteMarker");
  if (days !== undefined) return { expiration: { days: positiveDays(days, "Expiration Days") } };
  const ms = Date.parse(date!.trim());
  if (Number.isNaN(ms) || ms % (24 * 60 * 60 * 1000) !== 0) throw new S3Error("InvalidArgument", "Expiration Date must be an ISO 8601 date at midnight UTC");
  return { expiration: { date: new Date(ms).toISOString() } };
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
      ...parseExpiration(child(el, "Expiration")),
      abortIncompleteUploadDays: abortEl ? positiveDays(childText(abortEl, "DaysAfterInitiation"), "DaysAfterInitiation") : null,
    };
    if (!rule.expiration && rule.expiredObjectDeleteMarker === undefined && rule.abortIncompleteUploadDays === null)
      throw new S3Error("InvalidRequest", "A rule needs an action: Expiration or AbortIncompleteMultipartUpload");
    if (rule.abortIncompleteUploadDays !== null && (rule.filter.sizeGreaterThan !== null || rule.filter.sizeLessThan !== null))
      throw new S3Error("InvalidRequest", "AbortIncompleteMultipartUpload cannot be combined with an object size filter");
    // Uploads carry no tags: a tag filter could never be met.
    if (rule.abortIncompleteUploadDays !== null && (rule.filter.tags?.length ?? 0) > 0)
      throw new S3Error("InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags");
    return rule;
  });
}

/** A rule's filter conditions, in the schema's order. */
function conditionsXml(f: LifecycleFilter): Record<string, XmlNode> {
  return {
    Prefix: f.prefixElement ? f.prefix : undefined,
    Tag: (f.tags ?? []).map(([Key, Value]) => ({ Key, Value })),
    ObjectSizeGreaterThan: f.sizeGreaterThan ?? undefined,
    ObjectSizeLessThan: f.sizeLessThan ?? undefined,
  };
}

/** The rule's Prefix or Filter element (or neither), as it was written. */
function filterXml(f: LifecycleFilter): Record<string, XmlNode> {
  switch (f.syntax) {
    case "prefix":
      return { Prefix: f.prefix };
    case "none":
      return {};
    case "filter":
      return { Filter: conditionsXml(f) };
    case "and":
      return { Filter: { And: conditionsXml(f) } };
    case undefined: {
      // Stored before the syntax was kept: a Filter, with And when it has several conditions.
      const conditions: Record<string, XmlNode> = {};
      if (f.prefix !== "" || (f.sizeGreaterThan === null && f.sizeLessThan === null)) conditions.Prefix = f.prefix;
      if (f.sizeGreaterThan !== null) conditions.ObjectSizeGreaterThan = f.sizeGreaterThan;
      if (f.sizeLessThan !== null) conditions.ObjectSizeLessThan = f.sizeLessThan;
      return { Filter: Object.keys(conditions).length > 1 ? { And: conditions } : conditions };
    }
  }
}

function expirationXml(r: LifecycleRule): XmlNode {
  if (r.expiration) return "days" in r.expiration ? { Days: r.expiration.days } : { Date: r.expiration.date };
  if (r.expiredObjectDeleteMarker !== undefined) return { ExpiredObjectDeleteMarker: r.expiredObjectDeleteMarker };
  return undefined;
}

export function lifecycleConfigurationXml(rules: readonly LifecycleRule[]): string {
  return xmlDocument("LifecycleConfiguration", {
    Rule: rules.map((r) => ({
      ID: r.id ?? undefined,
      ...filterXml(r.filter),
      Status: r.enabled ? "Enabled" : "Disabled",
      Expiration: expirationXml(r),
      AbortIncompleteMultipartUpload: r.abortIncompleteUploadDays !== null ? { DaysAfterInitiation: r.abortIncompleteUploadDays } : undefined,
    })),
  });
}

/** The ID AWS gives a rule written without one: random, so it names no other rule. */
function generatedRuleId(): string {
  return randomBytes(GENERATED_ID_BYTES).toString("base64");
}

export async function putBucketLifecycle(r: BucketRequest): Promise<Response> {
  const rules = parseLifecycleConfiguration(await readSmallBody(r, MAX_XML_BODY)).map((rule) => (rule.id === null ? { ...rule, id: generatedRuleId() } : rule));
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
