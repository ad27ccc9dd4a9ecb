// CORS for browsers: a bucket's rules (Put/Get/DeleteBucketCors), the answer to a preflight
// OPTIONS, and the headers added to actual responses. The S3 and web endpoints share it.
// Rules are evaluated as AWS does: the first rule whose origin, method and (for a preflight)
// every requested header match wins; "*" in a pattern matches any run of characters.
// Values of a rule go out in response headers, so PutBucketCors refuses any that could not;
// rules stored before that check are sent without such values.
import type { CorsRule } from "../../model/bucket";
import { readSmallBody } from "./body";
import { xmlResponse } from "./bucket";
import type { BucketRequest } from "./context";
import { S3Error } from "./errors";
import { isHeaderName } from "./headers";
import { parseDecimal } from "../../util/decimal";
import { children, childText, MAX_XML_BODY, parseXml, xmlDocument } from "./xml";

/** AWS's limit on rules per bucket. */
export const CORS_RULES_MAX = 100;
/** AWS's limit on a rule ID. */
const CORS_RULE_ID_MAX = 255;
/** Longest preflight or CORS header list we look at; a browser sends a handful. */
const CORS_REQUEST_HEADERS_MAX = 100;
const CORS_METHODS = new Set(["GET", "PUT", "POST", "DELETE", "HEAD"]);
/** MaxAgeSeconds is an Integer in AWS's schema (32-bit signed). */
const CORS_MAX_AGE_MAX = 2 ** 31 - 1;
/**
 * An origin as a browser sends it is ASCII (scheme, punycode host, port) with no space; a
 * pattern with any other character could match none, and is refused as a likely mistake.
 */
const ORIGIN_PATTERN = /^[\x21-\x7e]+$/;

/** An ExposeHeader value that can be sent: a header name, without AWS's refused wildcard. */
function isExposableHeader(h: string): boolean {
  return isHeaderName(h) && !h.includes("*");
}

/** A value for an error message, control characters escaped: they must not reach the error XML. */
function shown(v: string): string {
  return /^[\x20-\x7e]*$/.test(v) ? v : JSON.stringify(v).slice(1, -1);
}

function isMaxAge(n: number | null): n is number {
  return n !== null && Number.isSafeInteger(n) && n >= 0 && n <= CORS_MAX_AGE_MAX;
}

/**
 * True when `value` matches `pattern`, where "*" stands for any run of characters. Greedy
 * two-pointer matching, at worst pattern length x value length steps: never a backtracking
 * regex, which a crafted rule could make take minutes on an unauthenticated preflight.
 */
export function wildcardMatch(pattern: string, value: string, ignoreCase = false): boolean {
  const p = ignoreCase ? pattern.toLowerCase() : pattern;
  const v = ignoreCase ? value.toLowerCase() : value;
  let pi = 0;
  let vi = 0;
  let star = -1; // position in p just after the last "*" seen
  let mark = 0; // position in v that the last "*" has swallowed up to
  while (vi < v.length) {
    if (pi < p.length && p[pi] !== "*" && p[pi] === v[vi]) {
      pi++;
      vi++;
    } else if (pi < p.length && p[pi] === "*") {
      star = ++pi;
      mark = vi;
    } else if (star >= 0) {
      pi = star;
      vi = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.length && p[pi] === "*") pi++;
  return pi === p.length;
}

/** The first rule allowing `origin` to use `method` with every header of `requestHeaders`. */
export function matchingRule(rules: readonly CorsRule[], origin: string, method: string, requestHeaders: readonly string[] = []): CorsRule | undefined {
  return rules.find(
    (rule) =>
      rule.allowedOrigins.some((o) => wildcardMatch(o, origin)) &&
      rule.allowedMethods.includes(method) &&
      requestHeaders.every((h) => rule.allowedHeaders.some((a) => wildcardMatch(a, h, true))),
  );
}

function headerList(value: string | null): string[] {
  if (!value) return [];
  return value
    .split(",")
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== "")
    .slice(0, CORS_REQUEST_HEADERS_MAX);
}

/** The Access-Control-* headers a matching rule grants (shared by preflight and actual). */
function grantHeaders(rule: CorsRule, origin: string): Record<string, string> {
  const anyOrigin = rule.allowedOrigins.includes("*");
  // The filters only matter for rules stored before PutBucketCors checked them: a value that
  // cannot be sent is left out rather than failing every request with an Origin.
  const out: Record<string, string> = {
    "access-control-allow-origin": anyOrigin ? "*" : origin,
    "access-control-allow-methods": rule.allowedMethods.filter((m) => CORS_METHODS.has(m)).join(", "),
    vary: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
  };
  // Credentials may only go with an echoed origin, never with "*" (Fetch standard).
  if (!anyOrigin) out["access-control-allow-credentials"] = "true";
  const expose = rule.exposeHeaders.filter(isExposableHeader);
  if (expose.length > 0) out["access-control-expose-headers"] = expose.join(", ");
  if (isMaxAge(rule.maxAgeSeconds)) out["access-control-max-age"] = String(rule.maxAgeSeconds);
  return out;
}

/**
 * The answer to a preflight `OPTIONS` for a bucket (rules null: the bucket has none, or
 * undefined: no bucket in the request, e.g. ListBuckets, which any origin may try: it needs
 * a signature anyway).
 */
export function preflightResponse(rules: readonly CorsRule[] | null | undefined, headers: Headers): Response {
  const origin = headers.get("origin");
  const method = headers.get("access-control-request-method");
  if (!origin) throw new S3Error("BadRequest", "Insufficient information. Origin request header needed.");
  if (!method) throw new S3Error("BadRequest", "Invalid Access-Control-Request-Method: null");
  const requested = headerList(headers.get("access-control-request-headers"));
  if (rules === undefined) {
    const out: Record<string, string> = { "access-control-allow-origin": "*", "access-control-allow-methods": "GET" };
    if (requested.length > 0) out["access-control-allow-headers"] = requested.join(", ");
    return new Response(null, { status: 200, headers: out });
  }
  const rule = rules ? matchingRule(rules, origin, method, requested) : undefined;
  if (!rule) throw new S3Error("AccessForbidden", "CORSResponse: This CORS request is not allowed. The origin, method or headers are not allowed by the bucket's CORS rules.");
  const out = grantHeaders(rule, origin);
  if (requested.length > 0) out["access-control-allow-headers"] = requested.join(", ");
  return new Response(null, { status: 200, headers: out });
}

/** Adds what the first rule matching the request's Origin and method grants to `response`. */
export function addCorsHeaders(response: Response, rules: readonly CorsRule[] | null, requestHeaders: Headers, method: string): Response {
  if (!rules || rules.length === 0) return response;
  const origin = requestHeaders.get("origin");
  // A cache must not serve one origin's answer to another.
  if (!response.headers.has("vary")) response.headers.set("vary", "Origin");
  if (!origin) return response;
  const rule = matchingRule(rules, origin, method);
  if (!rule) return response;
  for (const [name, value] of Object.entries(grantHeaders(rule, origin))) response.headers.set(name, value);
  return response;
}

// ---------------------------------------------------------------- configuration API

/** Parses and checks a CORSConfiguration document as AWS does. */
export function parseCorsConfiguration(text: string): CorsRule[] {
  if (text.trim() === "") throw new S3Error("MalformedXML", "The request body is empty: a CORSConfiguration is required");
  const doc = parseXml(text);
  if (doc.name !== "CORSConfiguration") throw new S3Error("MalformedXML", `Expected a CORSConfiguration, got ${doc.name}`);
  const ruleEls = children(doc, "CORSRule");
  if (ruleEls.length === 0) throw new S3Error("MalformedXML", "A CORSConfiguration needs at least one CORSRule");
  if (ruleEls.length > CORS_RULES_MAX) throw new S3Error("InvalidRequest", `A CORSConfiguration may have at most ${CORS_RULES_MAX} rules`);
  return ruleEls.map((el): CorsRule => {
    const texts = (name: string) => children(el, name).map((c) => c.text.trim());
    const id = childText(el, "ID") ?? null;
    if (id !== null && id.length > CORS_RULE_ID_MAX) throw new S3Error("InvalidArgument", `A CORSRule ID is at most ${CORS_RULE_ID_MAX} characters`);
    const allowedOrigins = texts("AllowedOrigin");
    const allowedMethods = texts("AllowedMethod");
    if (allowedOrigins.length === 0 || allowedMethods.length === 0) throw new S3Error("MalformedXML", "Each CORSRule needs an AllowedOrigin and an AllowedMethod");
    const allowedHeaders = texts("AllowedHeader").map((h) => h.toLowerCase());
    const exposeHeaders = texts("ExposeHeader");
    for (const o of allowedOrigins) {
      if (!ORIGIN_PATTERN.test(o)) throw new S3Error("InvalidRequest", `AllowedOrigin "${shown(o)}" holds a character no origin has (origins are ASCII, without spaces)`);
    }
    for (const h of allowedHeaders) {
      if (!isHeaderName(h)) throw new S3Error("InvalidRequest", `AllowedHeader "${shown(h)}" is not a header name`);
    }
    for (const [what, values] of [["AllowedOrigin", allowedOrigins], ["AllowedHeader", allowedHeaders]] as const) {
      for (const o of values) if ((o.match(/\*/g)?.length ?? 0) > 1) throw new S3Error("InvalidRequest", `${what} "${o}" can not have more than one wildcard.`);
    }
    for (const h of exposeHeaders) {
      if (h.includes("*")) throw new S3Error("InvalidRequest", `ExposeHeader "${shown(h)}" contains wildcard. We currently do not support wildcard for ExposeHeader.`);
      if (!isHeaderName(h)) throw new S3Error("InvalidRequest", `ExposeHeader "${shown(h)}" is not a header name`);
    }
    for (const m of allowedMethods) {
      if (!CORS_METHODS.has(m)) throw new S3Error("InvalidRequest", `Found unsupported HTTP method in CORS config. Unsupported method is ${shown(m)}`);
    }
    const maxAgeText = childText(el, "MaxAgeSeconds")?.trim();
    let maxAgeSeconds: number | null = null;
    if (maxAgeText !== undefined) {
      const n = parseDecimal(maxAgeText, 0, CORS_MAX_AGE_MAX);
      if (n === undefined) throw new S3Error("MalformedXML", `MaxAgeSeconds must be an integer between 0 and ${CORS_MAX_AGE_MAX}, got "${shown(maxAgeText)}"`);
      maxAgeSeconds = n;
    }
    return { id, allowedOrigins, allowedMethods, allowedHeaders, exposeHeaders, maxAgeSeconds };
  });
}

export async function putBucketCors(r: BucketRequest): Promise<Response> {
  const rules = parseCorsConfiguration(await readSmallBody(r, MAX_XML_BODY));
  await r.services.model.setCors(r.bucket, rules);
  return new Response(null, { status: 200 });
}

export function getBucketCors(r: BucketRequest): Response {
  const rules = r.bucket.cors?.v;
  if (!rules) throw new S3Error("NoSuchCORSConfiguration", "The CORS configuration does not exist");
  return xmlResponse(
    xmlDocument("CORSConfiguration", {
      CORSRule: rules.map((rule) => ({
        ID: rule.id ?? undefined,
        AllowedOrigin: rule.allowedOrigins,
        AllowedMethod: rule.allowedMethods,
        AllowedHeader: rule.allowedHeaders,
        ExposeHeader: rule.exposeHeaders,
        MaxAgeSeconds: rule.maxAgeSeconds ?? undefined,
      })),
    }),
  );
}

export async function deleteBucketCors(r: BucketRequest): Promise<Response> {
  if (r.bucket.cors?.v) await r.services.model.setCors(r.bucket, null);
  return new Response(null, { status: 204 });
}
