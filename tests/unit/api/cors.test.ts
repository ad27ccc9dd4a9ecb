// CORS rule matching, the preflight answer and the headers of actual responses, as AWS
// evaluates them; and what PutBucketCors accepts.
import { describe, expect, test } from "bun:test";
import { addCorsHeaders, matchingRule, parseCorsConfiguration, preflightResponse, wildcardMatch } from "../../../src/api/s3/cors";
import { S3Error } from "../../../src/api/s3/errors";
import type { CorsRule } from "../../../src/model/bucket";

const rule = (r: Partial<CorsRule>): CorsRule => ({
  id: null,
  allowedOrigins: ["*"],
  allowedMethods: ["GET"],
  allowedHeaders: [],
  exposeHeaders: [],
  maxAgeSeconds: null,
  ...r,
});

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return (e as S3Error).code;
  }
  return "ok";
}

describe("wildcardMatch", () => {
  test("exact, one wildcard anywhere, regex characters taken literally", () => {
    expect(wildcardMatch("https://a.example", "https://a.example")).toBe(true);
    expect(wildcardMatch("https://a.example", "https://b.example")).toBe(false);
    expect(wildcardMatch("https://*.example.com", "https://app.example.com")).toBe(true);
    expect(wildcardMatch("https://*.example.com", "https://example.com")).toBe(false);
    expect(wildcardMatch("https://*.example.com", "https://app.exampleXcom")).toBe(false);
    expect(wildcardMatch("*", "anything at all")).toBe(true);
    expect(wildcardMatch("x-amz-*", "X-Amz-Date", true)).toBe(true);
    expect(wildcardMatch("x-amz-*", "X-Amz-Date")).toBe(false);
    expect(wildcardMatch("*a", "ba")).toBe(true);
    expect(wildcardMatch("a*b*c", "aXbYbZc")).toBe(true);
    expect(wildcardMatch("a*b*c", "aXbYbZ")).toBe(false);
    expect(wildcardMatch("**", "")).toBe(true);
  });
  test("a pattern built to make a backtracking matcher explode answers at once", () => {
    const started = performance.now();
    expect(wildcardMatch("*a*a*a*a*a*a*a*b", "a".repeat(5000))).toBe(false);
    // generous bound: a backtracking regex takes seconds at 100 characters, this is linear-ish
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe("matchingRule", () => {
  const rules = [
    rule({ id: "uploads", allowedOrigins: ["https://app.example"], allowedMethods: ["PUT", "POST"], allowedHeaders: ["content-type", "x-amz-*"] }),
    rule({ id: "reads", allowedOrigins: ["*"], allowedMethods: ["GET", "HEAD"] }),
  ];
  test("first rule matching origin, method and every requested header", () => {
    expect(matchingRule(rules, "https://app.example", "PUT", ["content-type", "x-amz-date"])?.id).toBe("uploads");
    expect(matchingRule(rules, "https://app.example", "PUT", ["authorization"])).toBeUndefined();
    expect(matchingRule(rules, "https://other.example", "PUT")).toBeUndefined();
    expect(matchingRule(rules, "https://other.example", "GET")?.id).toBe("reads");
    expect(matchingRule(rules, "https://app.example", "DELETE")).toBeUndefined();
  });
});

describe("preflightResponse", () => {
  const headers = (h: Record<string, string>) => new Headers(h);
  const rules = [rule({ allowedOrigins: ["https://app.example"], allowedMethods: ["PUT"], allowedHeaders: ["*"], exposeHeaders: ["ETag"], maxAgeSeconds: 600 })];
  test("a matching preflight gets the grant, echoing the origin and the requested headers", () => {
    const r = preflightResponse(rules, headers({ origin: "https://app.example", "access-control-request-method": "PUT", "access-control-request-headers": "Content-Type, X-Amz-Date" }));
    expect(r.status).toBe(200);
    expect(r.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(r.headers.get("access-control-allow-methods")).toBe("PUT");
    expect(r.headers.get("access-control-allow-headers")).toBe("content-type, x-amz-date");
    expect(r.headers.get("access-control-allow-credentials")).toBe("true");
    expect(r.headers.get("access-control-expose-headers")).toBe("ETag");
    expect(r.headers.get("access-control-max-age")).toBe("600");
  });
  test("no match, no rules, or missing headers are refused", () => {
    expect(codeOf(() => preflightResponse(rules, headers({ origin: "https://evil.example", "access-control-request-method": "PUT" })))).toBe("AccessForbidden");
    expect(codeOf(() => preflightResponse(null, headers({ origin: "https://app.example", "access-control-request-method": "PUT" })))).toBe("AccessForbidden");
    expect(codeOf(() => preflightResponse(rules, headers({ "access-control-request-method": "PUT" })))).toBe("BadRequest");
    expect(codeOf(() => preflightResponse(rules, headers({ origin: "https://app.example" })))).toBe("BadRequest");
  });
  test("\"*\" origin answers \"*\" and never allows credentials", () => {
    const r = preflightResponse([rule({})], headers({ origin: "https://x.example", "access-control-request-method": "GET" }));
    expect(r.headers.get("access-control-allow-origin")).toBe("*");
    expect(r.headers.has("access-control-allow-credentials")).toBe(false);
  });
});

describe("addCorsHeaders", () => {
  test("adds the grant of the matching rule; Vary whenever the bucket has rules", () => {
    const rules = [rule({ allowedOrigins: ["https://app.example"], exposeHeaders: ["ETag", "x-amz-request-id"] })];
    const ok = addCorsHeaders(new Response("x"), rules, new Headers({ origin: "https://app.example" }), "GET");
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(ok.headers.get("access-control-expose-headers")).toBe("ETag, x-amz-request-id");
    const other = addCorsHeaders(new Response("x"), rules, new Headers({ origin: "https://evil.example" }), "GET");
    expect(other.headers.has("access-control-allow-origin")).toBe(false);
    expect(other.headers.get("vary")).toBe("Origin");
    const none = addCorsHeaders(new Response("x"), null, new Headers({ origin: "https://app.example" }), "GET");
    expect(none.headers.has("vary")).toBe(false);
  });
  test("rules stored before PutBucketCors checked them: values that cannot be sent are left out, nothing throws", () => {
    const stored = [
      rule({
        allowedMethods: ["GET", "PATCH\n"],
        exposeHeaders: ["ETag", "x-a\r\nx-b", "x-中", "x a", "*", "x-amz-request-id"],
        maxAgeSeconds: 1e300,
      }),
    ];
    const actual = addCorsHeaders(new Response("x"), stored, new Headers({ origin: "https://app.example" }), "GET");
    expect(actual.headers.get("access-control-allow-origin")).toBe("*");
    expect(actual.headers.get("access-control-allow-methods")).toBe("GET");
    expect(actual.headers.get("access-control-expose-headers")).toBe("ETag, x-amz-request-id");
    expect(actual.headers.has("access-control-max-age")).toBe(false);
    const preflight = preflightResponse(stored, new Headers({ origin: "https://app.example", "access-control-request-method": "GET" }));
    expect(preflight.status).toBe(200);
    expect(preflight.headers.get("access-control-expose-headers")).toBe("ETag, x-amz-request-id");
  });
});

describe("parseCorsConfiguration", () => {
  const xml = (rules: string) => `<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${rules}</CORSConfiguration>`;
  test("rules with every field", () => {
    const parsed = parseCorsConfiguration(
      xml(
        "<CORSRule><ID>r1</ID><AllowedOrigin>https://*.example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>" +
          "<AllowedHeader>Content-Type</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule>" +
          "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod></CORSRule>",
      ),
    );
    expect(parsed).toEqual([
      { id: "r1", allowedOrigins: ["https://*.example.com"], allowedMethods: ["GET", "PUT"], allowedHeaders: ["content-type"], exposeHeaders: ["ETag"], maxAgeSeconds: 3000 },
      { id: null, allowedOrigins: ["*"], allowedMethods: ["HEAD"], allowedHeaders: [], exposeHeaders: [], maxAgeSeconds: null },
    ]);
  });
  test("refusals", () => {
    const one = (inner: string) => xml(`<CORSRule>${inner}</CORSRule>`);
    expect(codeOf(() => parseCorsConfiguration(""))).toBe("MalformedXML");
    expect(codeOf(() => parseCorsConfiguration(xml("")))).toBe("MalformedXML");
    expect(codeOf(() => parseCorsConfiguration(one("<AllowedMethod>GET</AllowedMethod>")))).toBe("MalformedXML");
    expect(codeOf(() => parseCorsConfiguration(one("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>")))).toBe("InvalidRequest");
    expect(codeOf(() => parseCorsConfiguration(one("<AllowedOrigin>https://*.*.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod>")))).toBe("InvalidRequest");
    expect(codeOf(() => parseCorsConfiguration(one("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedHeader>*a*b</AllowedHeader>")))).toBe("InvalidRequest");
    expect(codeOf(() => parseCorsConfiguration(one("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>-1</MaxAgeSeconds>")))).toBe("MalformedXML");
    const many = xml("<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>".repeat(101));
    expect(codeOf(() => parseCorsConfiguration(many))).toBe("InvalidRequest");
  });
  test("values that could not go out in a response header, and integers that are not decimal", () => {
    const with_ = (inner: string) => xml(`<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>${inner}</CORSRule>`);
    for (const bad of ["x-a&#10;x-b", "x-a&#13;b", "x-中", "x a", "a:b", "", "*", "x-amz-*"]) {
      expect({ bad, code: codeOf(() => parseCorsConfiguration(with_(`<ExposeHeader>${bad}</ExposeHeader>`))) }).toEqual({ bad, code: "InvalidRequest" });
    }
    for (const bad of ["x-a&#1;", "x-中", "x a", ""]) {
      expect({ bad, code: codeOf(() => parseCorsConfiguration(with_(`<AllowedHeader>${bad}</AllowedHeader>`))) }).toEqual({ bad, code: "InvalidRequest" });
    }
    for (const bad of ["https://a&#10;.example", "https://ü.example", "https://a .example", "&#127;"]) {
      const doc = xml(`<CORSRule><AllowedOrigin>${bad}</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>`);
      expect({ bad, code: codeOf(() => parseCorsConfiguration(doc)) }).toEqual({ bad, code: "InvalidRequest" });
    }
    for (const bad of ["0x10", "1e3", " ", "+5", "2147483648", "99999999999999999999"]) {
      expect({ bad, code: codeOf(() => parseCorsConfiguration(with_(`<MaxAgeSeconds>${bad}</MaxAgeSeconds>`))) }).toEqual({ bad, code: "MalformedXML" });
    }
    // Whitespace around a value is the document's layout, not part of the value.
    const [ok] = parseCorsConfiguration(with_("<AllowedHeader> x-amz-* </AllowedHeader><ExposeHeader>\n  ETag\n</ExposeHeader><MaxAgeSeconds> 2147483647 </MaxAgeSeconds>"));
    expect(ok).toMatchObject({ allowedHeaders: ["x-amz-*"], exposeHeaders: ["ETag"], maxAgeSeconds: 2147483647 });
  });
});
