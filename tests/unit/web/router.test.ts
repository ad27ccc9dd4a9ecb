// The web endpoint's pure parts: which bucket a Host names, which key a path asks for, and
// what PutBucketWebsite accepts.
import { describe, expect, test } from "bun:test";
import { bucketNameOfHost, keyOfPath } from "../../../src/web/router";
import { parseWebsiteConfiguration } from "../../../src/api/s3/website";
import { S3Error } from "../../../src/api/s3/errors";

describe("bucketNameOfHost", () => {
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
    expect(code(() => parseWebsiteConfiguration(xml("<RedirectAllRequestsTo><HostName>x.org</HostName></RedirectAllRequestsTo>")))).toBe("NotImplemented");
    expect(
      code(() => parseWebsiteConfiguration(xml("<IndexDocument><Suffix>i.html</Suffix></IndexDocument><RoutingRules><RoutingRule/></RoutingRules>"))),
    ).toBe("NotImplemented");
  });
});
