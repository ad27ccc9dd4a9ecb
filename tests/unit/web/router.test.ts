// The web endpoint's pure parts: which bucket a Host names, which key a path asks for, and
// what PutBucketWebsite accepts.
import { describe, expect, test } from "bun:test";
import { keyOfPath, routingRedirect } from "../../../src/web/router";
import { bucketOfHost } from "../../../src/api/http";
import type { WebsiteRoutingRule } from "../../../src/model/bucket";
import { parseWebsiteConfiguration } from "../../../src/api/s3/website";
import { S3Error } from "../../../src/api/s3/errors";

/** As the web endpoint reads a Host: a bucket named like the whole host counts too. */
const bucketNameOfHost = (host: string | null, root: string | undefined) => bucketOfHost(host, root, true);

describe("bucketOfHost", () => {
  test("strips the port and the root domain; otherwise the whole host is the bucket", () => {
    expect(bucketNameOfHost("blog.web.example.com", "web.example.com")).toBe("blog");
    expect(bucketNameOfHost("Blog.Web.Example.com:3902", "web.example.com")).toBe("blog");
    expect(bucketNameOfHost("www.example.org", "web.example.com")).toBe("www.example.org");
    expect(bucketNameOfHost("www.example.org.", undefined)).toBe("www.example.org");
    expect(bucketNameOfHost("a.b.web.example.com", "web.example.com")).toBe("a.b");
  });
  test("no bucket for a missing host, the bare root domain's empty label, or an IPv6 literal", () => {
    expect(bucketNameOfHost(null, "web.example.com")).toBeUndefined();
    expect(bucketNameOfHost("", undefined)).toBeUndefined();
    expect(bucketNameOfHost("[::1]:3902", undefined)).toBeUndefined();
    // the root domain itself is not "<bucket>.<root>": it is looked up as a whole name
    expect(bucketNameOfHost("web.example.com", "web.example.com")).toBe("web.example.com");
  });
  test("on the S3 endpoint only <bucket>.<root> names a bucket", () => {
    expect(bucketOfHost("photos.s3.example.com:3900", "s3.example.com", false)).toBe("photos");
    expect(bucketOfHost("s3.example.com", "s3.example.com", false)).toBeUndefined();
    expect(bucketOfHost("localhost:3900", "s3.example.com", false)).toBeUndefined();
    expect(bucketOfHost("photos.s3.example.com", undefined, false)).toBeUndefined();
  });
});

describe("keyOfPath", () => {
  test("the root and paths ending in / get the index document", () => {
    expect(keyOfPath("/", "index.html")).toBe("index.html");
    expect(keyOfPath("/docs/", "index.html")).toBe("docs/index.html");
    expect(keyOfPath("/docs", "index.html")).toBe("docs");
    expect(keyOfPath("/a b/c.css", "index.htm")).toBe("a b/c.css");
  });
});

describe("parseWebsiteConfiguration", () => {
  const xml = (inner: string) => `<WebsiteConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${inner}</WebsiteConfiguration>`;
  const code = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as S3Error).code;
    }
    return "accepted";
  };
  test("index and optional error document", () => {
    expect(parseWebsiteConfiguration(xml("<IndexDocument><Suffix>index.html</Suffix></IndexDocument>"))).toEqual({ indexDocument: "index.html", errorDocument: null });
    expect(
      parseWebsiteConfiguration(xml("<IndexDocument><Suffix>i.htm</Suffix></IndexDocument><ErrorDocument><Key>errors/404.html</Key></ErrorDocument>")),
    ).toEqual({ indexDocument: "i.htm", errorDocument: "errors/404.html" });
  });
  test("refusals", () => {
    expect(code(() => parseWebsiteConfiguration(""))).toBe("MalformedXML");
    expect(code(() => parseWebsiteConfiguration("<Other/>"))).toBe("MalformedXML");
    expect(code(() => parseWebsiteConfiguration(xml("")))).toBe("InvalidArgument");
    expect(code(() => parseWebsiteConfiguration(xml("<IndexDocument><Suffix>i.html</Suffix></IndexDocument><ErrorDocument></ErrorDocument>")))).toBe("InvalidArgument");
    expect(parseWebsiteConfiguration(xml("<RedirectAllRequestsTo><HostName>x.org</HostName><Protocol>https</Protocol></RedirectAllRequestsTo>"))).toMatchObject({
      redirectAllRequestsTo: { hostName: "x.org", protocol: "https" },
    });
    expect(code(() => parseWebsiteConfiguration(xml("<RedirectAllRequestsTo><HostName>x.org</HostName></RedirectAllRequestsTo><IndexDocument><Suffix>i</Suffix></IndexDocument>")))).toBe("InvalidArgument");
    expect(code(() => parseWebsiteConfiguration(xml("<RedirectAllRequestsTo><Protocol>https</Protocol></RedirectAllRequestsTo>")))).toBe("InvalidArgument");
    expect(code(() => parseWebsiteConfiguration(xml("<RedirectAllRequestsTo><HostName>a b/c</HostName></RedirectAllRequestsTo>")))).toBe("InvalidArgument");
    const idx = "<IndexDocument><Suffix>i.html</Suffix></IndexDocument>";
    const rules = (r: string) => xml(`${idx}<RoutingRules>${r}</RoutingRules>`);
    expect(code(() => parseWebsiteConfiguration(rules("<RoutingRule/>")))).toBe("MalformedXML"); // no Redirect
    expect(code(() => parseWebsiteConfiguration(rules("<RoutingRule><Redirect/></RoutingRule>")))).toBe("InvalidArgument");
    expect(code(() => parseWebsiteConfiguration(rules("<RoutingRule><Redirect><ReplaceKeyWith>a</ReplaceKeyWith><ReplaceKeyPrefixWith>b</ReplaceKeyPrefixWith></Redirect></RoutingRule>")))).toBe("InvalidArgument");
    expect(code(() => parseWebsiteConfiguration(rules("<RoutingRule><Redirect><HttpRedirectCode>200</HttpRedirectCode></Redirect></RoutingRule>")))).toBe("InvalidArgument");
    expect(code(() => parseWebsiteConfiguration(rules("<RoutingRule><Redirect><Protocol>ftp</Protocol></Redirect></RoutingRule>")))).toBe("InvalidArgument");
    expect(code(() => parseWebsiteConfiguration(rules("<RoutingRule><Condition/><Redirect><HostName>x</HostName></Redirect></RoutingRule>")))).toBe("InvalidArgument");
    expect(code(() => parseWebsiteConfiguration(rules("<RoutingRule><Redirect><HostName>x</HostName></Redirect></RoutingRule>".repeat(51))))).toBe("InvalidArgument");
  });
});

describe("routing rules", () => {
  const rule = (condition: WebsiteRoutingRule["condition"], redirect: Partial<WebsiteRoutingRule["redirect"]>): WebsiteRoutingRule => ({
    condition,
    redirect: { protocol: null, hostName: null, replaceKeyPrefixWith: null, replaceKeyWith: null, httpRedirectCode: null, ...redirect },
  });
  const rules = [
    rule({ keyPrefixEquals: "old/", httpErrorCodeReturnedEquals: null }, { replaceKeyPrefixWith: "docs/" }),
    rule({ keyPrefixEquals: "img/", httpErrorCodeReturnedEquals: 404 }, { hostName: "cdn.example", protocol: "https", httpRedirectCode: 302 }),
    rule({ keyPrefixEquals: null, httpErrorCodeReturnedEquals: 404 }, { replaceKeyWith: "not found.html", httpRedirectCode: 307 }),
  ];
  const at = (key: string, status?: number) => {
    const r = routingRedirect(rules, key, status, "site.example");
    return r && `${r.status} ${r.headers.get("location")}`;
  };
  test("prefix rules apply before the lookup; error rules once it failed with their status", () => {
    expect(at("old/a/b c.html")).toBe("301 /docs/a/b%20c.html");
    expect(at("img/x.png")).toBeUndefined();
    expect(at("img/x.png", 404)).toBe("302 https://cdn.example/img/x.png");
    expect(at("other", 404)).toBe("307 /not%20found.html");
    expect(at("other", 403)).toBeUndefined();
    expect(at("other")).toBeUndefined();
    expect(routingRedirect(undefined, "x", 404, null)).toBeUndefined();
  });
  test("a protocol alone keeps the request's host", () => {
    const r = routingRedirect([rule(null, { protocol: "https" })], "a", undefined, "site.example:8080");
    expect(r?.headers.get("location")).toBe("https://site.example:8080/a");
  });
});
