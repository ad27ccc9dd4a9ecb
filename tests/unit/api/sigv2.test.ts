// SigV2 verification (src/api/s3/sigv2.ts) against the worked examples of AWS's "Signing and
// authenticating REST requests" (Signature Version 2), and its refusals.
//
// The examples' signatures were computed when the documentation's bucket was "johnsmith"; the
// page has since renamed it (awsexamplebucket1, johnsmith.net) without recomputing them, so
// the original names are used here: with them, every example's signature is reproduced.
import { describe, expect, test } from "bun:test";
import {
  canonicalizedAmzHeaders,
  canonicalizedResource,
  carriesSigV2,
  signatureV2,
  stringToSignV2,
  verifyRequestV2,
  type V2Request,
} from "../../../src/api/s3/sigv2";
import { S3Error } from "../../../src/api/s3/errors";

const AKID = "AKIAIOSFODNN7EXAMPLE";
const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const secretOf = (id: string) => (id === AKID ? SECRET : undefined);

function req(method: string, target: string, headers: Record<string, string>, virtualHostBucket?: string): V2Request {
  const qi = target.indexOf("?");
  const h = new Headers();
  for (const [n, v] of Object.entries(headers)) h.append(n, v);
  return { method, rawPath: qi < 0 ? target : target.slice(0, qi), rawQuery: qi < 0 ? "" : target.slice(qi + 1), headers: h, virtualHostBucket };
}

function refusal(f: () => unknown): S3Error {
  try {
    f();
  } catch (err) {
    if (err instanceof S3Error) return err;
    throw err;
  }
  throw new Error("expected an S3Error");
}

const at = (date: string) => ({ now: new Date(Date.parse(date) + 1000) });

describe("AWS documentation examples (header authentication)", () => {
  const examples: Array<{ name: string; method: string; target: string; headers: Record<string, string>; bucket?: string; sts: string; signature: string }> = [
    {
      name: "Object GET (virtual-hosted bucket)",
      method: "GET",
      target: "/photos/puppy.jpg",
      headers: { host: "johnsmith.s3.amazonaws.com", date: "Tue, 27 Mar 2007 19:36:42 +0000" },
      bucket: "johnsmith",
      sts: "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg",
      signature: "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
    },
    {
      name: "Object PUT (Content-Type signed, Content-MD5 empty)",
      method: "PUT",
      target: "/photos/puppy.jpg",
      headers: { "content-type": "image/jpeg", "content-length": "94328", host: "johnsmith.s3.amazonaws.com", date: "Tue, 27 Mar 2007 21:15:45 +0000" },
      bucket: "johnsmith",
      sts: "PUT\n\nimage/jpeg\nTue, 27 Mar 2007 21:15:45 +0000\n/johnsmith/photos/puppy.jpg",
      signature: "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
    },
    {
      name: "List (query parameters that are no sub-resource are not signed)",
      method: "GET",
      target: "/?prefix=photos&max-keys=50&marker=puppy",
      headers: { "user-agent": "Mozilla/5.0", host: "johnsmith.s3.amazonaws.com", date: "Tue, 27 Mar 2007 19:42:41 +0000" },
      bucket: "johnsmith",
      sts: "GET\n\n\nTue, 27 Mar 2007 19:42:41 +0000\n/johnsmith/",
      signature: "htDYFYduRNen8P9ZfE/s9SuKy0U=",
    },
    {
      name: "Fetch ?acl (a sub-resource is signed)",
      method: "GET",
      target: "/?acl",
      headers: { host: "johnsmith.s3.amazonaws.com", date: "Tue, 27 Mar 2007 19:44:46 +0000" },
      bucket: "johnsmith",
      sts: "GET\n\n\nTue, 27 Mar 2007 19:44:46 +0000\n/johnsmith/?acl",
      signature: "c2WLPFtWHVgbEmeEG93a4cG37dM=",
    },
    {
      name: "List all my buckets",
      method: "GET",
      target: "/",
      headers: { host: "s3.amazonaws.com", date: "Wed, 28 Mar 2007 01:29:59 +0000" },
      sts: "GET\n\n\nWed, 28 Mar 2007 01:29:59 +0000\n/",
      signature: "qGdzdERIC03wnaRNKh6OqZehG9s=",
    },
    {
      name: "Unicode keys (path-style, the path signed as sent, escapes and their case kept)",
      method: "GET",
      target: "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
      headers: { host: "s3.amazonaws.com", date: "Wed, 28 Mar 2007 01:49:49 +0000" },
      sts: "GET\n\n\nWed, 28 Mar 2007 01:49:49 +0000\n/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
      signature: "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
    },
  ];
  for (const e of examples) {
    test(e.name, () => {
      const r = req(e.method, e.target, { ...e.headers, authorization: `AWS ${AKID}:${e.signature}` }, e.bucket);
      const sts = stringToSignV2({
        method: e.method,
        contentMd5: r.headers.get("content-md5") ?? "",
        contentType: r.headers.get("content-type") ?? "",
        date: r.headers.get("date")!,
        amzHeaders: canonicalizedAmzHeaders(r.headers),
        resource: canonicalizedResource(r.rawPath, r.rawQuery, e.bucket),
      });
      expect(sts).toBe(e.sts);
      expect(signatureV2(SECRET, sts)).toBe(e.signature);
      const ctx = verifyRequestV2(r, secretOf, at(e.headers.date!));
      expect(ctx.accessKeyId).toBe(AKID);
      expect(ctx.payload).toEqual({ kind: "unsigned" });
    });
  }

  test("Upload: x-amz-* headers lowercased, sorted, trimmed, repeats joined by a comma; only Content-MD5 and Content-Type of the entity headers", () => {
    const headers: Array<[string, string]> = [
      ["User-Agent", "curl/7.15.5"],
      ["Host", "static.johnsmith.net:8080"],
      ["Date", "Tue, 27 Mar 2007 21:06:08 +0000"],
      ["x-amz-acl", "public-read"],
      ["content-type", "application/x-download"],
      ["Content-MD5", "4gJE4saaMU4BqNR0kLY+lw=="],
      ["X-Amz-Meta-ReviewedBy", "joe@johnsmith.net"],
      ["X-Amz-Meta-ReviewedBy", "jane@johnsmith.net"],
      ["X-Amz-Meta-FileChecksum", "0x02661779"],
      ["X-Amz-Meta-ChecksumAlgorithm", "crc32"],
      ["Content-Disposition", "attachment; filename=database.dat"],
      ["Content-Encoding", "gzip"],
      ["Content-Length", "5913339"],
    ];
    const amz = canonicalizedAmzHeaders(headers);
    expect(amz).toBe(
      "x-amz-acl:public-read\nx-amz-meta-checksumalgorithm:crc32\nx-amz-meta-filechecksum:0x02661779\nx-amz-meta-reviewedby:joe@johnsmith.net,jane@johnsmith.net\n",
    );
    // A CNAME bucket (the whole host): its name leads the resource.
    const sts = stringToSignV2({
      method: "PUT",
      contentMd5: "4gJE4saaMU4BqNR0kLY+lw==",
      contentType: "application/x-download",
      date: "Tue, 27 Mar 2007 21:06:08 +0000",
      amzHeaders: amz,
      resource: canonicalizedResource("/db-backup.dat.gz", "", "static.johnsmith.net"),
    });
    expect(signatureV2(SECRET, sts)).toBe("ilyl83RwaSoYIEdixDQcA4OnAnc=");
  });

  test("x-amz-date: the Date position is signed empty and x-amz-date among the amz headers", () => {
    // (The documentation's Delete example puts the x-amz-date value in the Date position
    // instead, contradicting its own rule a paragraph earlier; clients follow the rule.)
    const xDate = "Tue, 27 Mar 2007 21:20:26 +0000";
    const sts = `DELETE\n\n\n\nx-amz-date:${xDate}\n/johnsmith/photos/puppy.jpg`;
    const r = req("DELETE", "/johnsmith/photos/puppy.jpg", {
      "user-agent": "dotnet",
      host: "s3.amazonaws.com",
      date: "Tue, 27 Mar 2007 21:20:27 +0000",
      "x-amz-date": xDate,
      authorization: `AWS ${AKID}:${signatureV2(SECRET, sts)}`,
    });
    expect(verifyRequestV2(r, secretOf, at(xDate)).accessKeyId).toBe(AKID);
    // Signed with the Date header in its position: not what AWS computes.
    const withDate = `DELETE\n\n\nTue, 27 Mar 2007 21:20:27 +0000\nx-amz-date:${xDate}\n/johnsmith/photos/puppy.jpg`;
    r.headers.set("authorization", `AWS ${AKID}:${signatureV2(SECRET, withDate)}`);
    expect(refusal(() => verifyRequestV2(r, secretOf, at(xDate))).code).toBe("SignatureDoesNotMatch");
  });
});

describe("AWS documentation example (query string authentication)", () => {
  const target = "/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620";
  const presigned = () => req("GET", target, { host: "johnsmith.s3.amazonaws.com" }, "johnsmith");

  test("valid until Expires (the Date and x-amz-date headers are not signed), refused after", () => {
    expect(carriesSigV2(presigned())).toBe(true);
    const before = new Date(1175139620 * 1000 - 60_000);
    const r = presigned();
    r.headers.set("date", "Thu, 01 Jan 2099 00:00:00 GMT");
    expect(verifyRequestV2(r, secretOf, { now: before }).accessKeyId).toBe(AKID);
    expect(verifyRequestV2(presigned(), secretOf, { now: new Date(1175139620 * 1000) }).accessKeyId).toBe(AKID);
    const expired = refusal(() => verifyRequestV2(presigned(), secretOf, { now: new Date(1175139621 * 1000) }));
    expect([expired.status, expired.code, expired.message]).toEqual([403, "AccessDenied", "Request has expired"]);
  });

  test("a tampered Expires, path or signature does not verify", () => {
    const now = { now: new Date(1175139620 * 1000 - 60_000) };
    for (const t of [target.replace("1175139620", "1175139621"), target.replace("puppy", "kitten"), target.replace("NpgC", "NpgD")]) {
      expect(refusal(() => verifyRequestV2(req("GET", t, { host: "x" }, "johnsmith"), secretOf, now)).code).toBe("SignatureDoesNotMatch");
    }
  });

  test("missing parameters, an Expires that is no number, x-amz-* in the query, an unknown key", () => {
    const now = { now: new Date(1175139620 * 1000 - 60_000) };
    const missing = refusal(() => verifyRequestV2(req("GET", "/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620", {}), secretOf, now));
    expect([missing.status, missing.code]).toEqual([403, "AccessDenied"]);
    const nan = refusal(() => verifyRequestV2(req("GET", target.replace("1175139620", "soon"), {}), secretOf, now));
    expect([nan.status, nan.code]).toEqual([403, "AccessDenied"]);
    expect(nan.message).toContain("soon");
    const amz = refusal(() => verifyRequestV2(req("GET", `${target}&x-amz-acl=private`, {}), secretOf, now));
    expect([amz.status, amz.code]).toEqual([501, "NotImplemented"]);
    const unknown = refusal(() => verifyRequestV2(req("GET", target.replace(AKID, "AKIDUNKNOWN"), {}), secretOf, now));
    expect([unknown.status, unknown.code]).toEqual([403, "InvalidAccessKeyId"]);
  });
});

describe("canonicalized resource", () => {
  test("sub-resources sorted by name, with their values decoded; other parameters left out", () => {
    expect(canonicalizedResource("/b/k", "uploadId=u%2F1&partNumber=2&x-id=UploadPart")).toBe("/b/k?partNumber=2&uploadId=u/1");
    expect(canonicalizedResource("/b/k", "versionId=3&acl")).toBe("/b/k?acl&versionId=3");
    expect(canonicalizedResource("/b/k", "response-content-disposition=attachment%3B%20filename%3D%22a.txt%22&response-content-type=text%2Fplain")).toBe(
      '/b/k?response-content-disposition=attachment; filename="a.txt"&response-content-type=text/plain',
    );
    expect(canonicalizedResource("/b", "delete")).toBe("/b?delete");
    expect(canonicalizedResource("/b", "delete", undefined, true)).toBe("/b/?delete");
    expect(canonicalizedResource("/b/k", "delete", undefined, true)).toBe("/b/k?delete");
    expect(canonicalizedResource("/", "tagging=", "vb")).toBe("/vb/?tagging=");
    for (const sub of ["cors", "lifecycle", "location", "logging", "notification", "policy", "requestPayment", "torrent", "uploads", "versioning", "versions", "website"]) {
      expect(canonicalizedResource("/b/", sub)).toBe(`/b/?${sub}`);
    }
  });

  test("a sub-resource value beyond ASCII is signed as its UTF-8 bytes", () => {
    const name = "é à.txt";
    const query = `response-content-disposition=${encodeURIComponent(`attachment; filename="${name}"`)}`;
    const date = "Tue, 27 Mar 2007 19:36:42 +0000";
    const sts = Buffer.concat([Buffer.from(`GET\n\n\n${date}\n/b/k?response-content-disposition=attachment; filename="`), Buffer.from(name, "utf8"), Buffer.from('"')]);
    const r = req("GET", `/b/k?${query}`, { date, authorization: `AWS ${AKID}:${signatureV2(SECRET, sts)}` });
    expect(verifyRequestV2(r, secretOf, at(date)).accessKeyId).toBe(AKID);
  });

  test("a path-style request on a bucket verifies signed as /bucket or /bucket/ (botocore signs the slash)", () => {
    const date = "Tue, 27 Mar 2007 19:36:42 +0000";
    for (const resource of ["/b", "/b/"]) {
      const r = req("PUT", "/b", { date, authorization: `AWS ${AKID}:${signatureV2(SECRET, `PUT\n\n\n${date}\n${resource}`)}` });
      expect(verifyRequestV2(r, secretOf, at(date)).accessKeyId).toBe(AKID);
    }
    // An object's path is not a bucket's: "/b/k" signed as "/b/k/" does not verify.
    const k = req("GET", "/b/k", { date, authorization: `AWS ${AKID}:${signatureV2(SECRET, `GET\n\n\n${date}\n/b/k/`)}` });
    expect(refusal(() => verifyRequestV2(k, secretOf, at(date))).code).toBe("SignatureDoesNotMatch");
  });
});

describe("header authentication refusals", () => {
  const date = "Tue, 27 Mar 2007 19:36:42 +0000";
  const signed = (headers: Record<string, string>, sts = `GET\n\n\n${date}\n/b/k`) =>
    req("GET", "/b/k", { date, ...headers, authorization: headers.authorization ?? `AWS ${AKID}:${signatureV2(SECRET, sts)}` });

  test("a malformed header is 400 InvalidArgument; an unknown key 403 InvalidAccessKeyId; a wrong signature 403", () => {
    for (const bad of ["AWS HAHAHA", "AWS :sig", `AWS ${AKID}:`, `AWS ${AKID}: sig`]) {
      const e = refusal(() => verifyRequestV2(signed({ authorization: bad }), secretOf, at(date)));
      expect(`${bad} ${e.status} ${e.code}`).toBe(`${bad} 400 InvalidArgument`);
    }
    const unknown = refusal(() => verifyRequestV2(signed({ authorization: "AWS AKIAIGR7ZNNBHC5BKSUB:FWeDfwojDSdS2Ztmpfeubhd9isU=" }), secretOf, at(date)));
    expect([unknown.status, unknown.code]).toEqual([403, "InvalidAccessKeyId"]);
    const wrong = refusal(() => verifyRequestV2(signed({}, `GET\n\n\n${date}\n/b/other`), secretOf, at(date)));
    expect([wrong.status, wrong.code]).toEqual([403, "SignatureDoesNotMatch"]);
  });

  test("the request time: a missing, invalid or pre-1970 date is 403 AccessDenied; 15 minutes off is RequestTimeTooSkewed", () => {
    const now = at(date);
    const noDate = req("GET", "/b/k", { authorization: `AWS ${AKID}:x` });
    expect(refusal(() => verifyRequestV2(noDate, secretOf, now)).code).toBe("AccessDenied");
    for (const bad of ["Bad Date", "", "Tue, 07 Jul 1950 21:53:04 GMT"]) {
      const e = refusal(() => verifyRequestV2(signed({ "x-amz-date": bad }), secretOf, now));
      expect(`${JSON.stringify(bad)} ${e.status} ${e.code}`).toBe(`${JSON.stringify(bad)} 403 AccessDenied`);
    }
    for (const off of [-16, 16]) {
      const e = refusal(() => verifyRequestV2(signed({}), secretOf, { now: new Date(Date.parse(date) + off * 60_000) }));
      expect([e.status, e.code]).toEqual([403, "RequestTimeTooSkewed"]);
    }
    // Within the bound, either way.
    for (const off of [-14, 14]) verifyRequestV2(signed({}), secretOf, { now: new Date(Date.parse(date) + off * 60_000) });
  });

  test("two mechanisms at once are refused (400 InvalidArgument)", () => {
    for (const q of ["Signature=x", "X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Credential=a"]) {
      const r = signed({});
      r.rawQuery = q;
      expect(refusal(() => verifyRequestV2(r, secretOf, at(date))).code).toBe("InvalidArgument");
    }
  });

  test("payload: unsigned; a stated SHA-256 is kept for the body check; aws-chunked streaming (V4 chunk signatures) refused", () => {
    const withSha = (value: string) => {
      const sts = `GET\n\n\n${date}\nx-amz-content-sha256:${value}\n/b/k`;
      return signed({ "x-amz-content-sha256": value }, sts);
    };
    const sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    expect(verifyRequestV2(withSha(sha), secretOf, at(date)).payload).toEqual({ kind: "sha256", hex: sha });
    expect(verifyRequestV2(withSha("UNSIGNED-PAYLOAD"), secretOf, at(date)).payload).toEqual({ kind: "unsigned" });
    for (const streaming of ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"]) {
      const e = refusal(() => verifyRequestV2(withSha(streaming), secretOf, at(date)));
      expect(`${streaming} ${e.status} ${e.code}`).toBe(`${streaming} 400 InvalidRequest`);
    }
    expect(refusal(() => verifyRequestV2(withSha("garbage"), secretOf, at(date))).code).toBe("InvalidArgument");
  });
});

describe("header values beyond ASCII", () => {
  const date = "Tue, 27 Mar 2007 19:36:42 +0000";
  // node:http hands each byte received over as one Latin-1 character.
  const wire = (text: string) => Buffer.from(text, "utf8").toString("latin1");

  test("the bytes as sent verify (botocore sends and signs UTF-8), trailing bytes A0 included", () => {
    for (const value of ["Hello Worldé", "voilà", "à à", "日本 語"]) {
      const sts = Buffer.concat([Buffer.from(`PUT\n\n\n${date}\nx-amz-meta-m:`), Buffer.from(value, "utf8"), Buffer.from("\n/b/k")]);
      const r = req("PUT", "/b/k", { date, "x-amz-meta-m": wire(value), authorization: `AWS ${AKID}:${signatureV2(SECRET, sts)}` });
      expect(verifyRequestV2(r, secretOf, at(date)).accessKeyId).toBe(AKID);
    }
  });

  test("Latin-1 bytes signed as the UTF-8 of their characters verify (Node clients send text so)", () => {
    const sts = `PUT\n\n\n${date}\nx-amz-meta-m:Hello Worldé\n/b/k`;
    const r = req("PUT", "/b/k", { date, "x-amz-meta-m": "Hello World\xe9", authorization: `AWS ${AKID}:${signatureV2(SECRET, sts)}` });
    expect(verifyRequestV2(r, secretOf, at(date)).accessKeyId).toBe(AKID);
  });

  test("a different value does not verify under either reading", () => {
    const sts = `PUT\n\n\n${date}\nx-amz-meta-m:Hello Worldè\n/b/k`;
    const r = req("PUT", "/b/k", { date, "x-amz-meta-m": wire("Hello Worldé"), authorization: `AWS ${AKID}:${signatureV2(SECRET, sts)}` });
    expect(refusal(() => verifyRequestV2(r, secretOf, at(date))).code).toBe("SignatureDoesNotMatch");
  });
});

test("carriesSigV2: the AWS header, or AWSAccessKeyId/Signature without V4's parameters", () => {
  expect(carriesSigV2(req("GET", "/", { authorization: "AWS a:b" }))).toBe(true);
  expect(carriesSigV2(req("GET", "/", { authorization: "AWS4-HMAC-SHA256 Credential=x" }))).toBe(false);
  expect(carriesSigV2(req("GET", "/?AWSAccessKeyId=a&Expires=1&Signature=s", {}))).toBe(true);
  expect(carriesSigV2(req("GET", "/?Signature=s", {}))).toBe(true);
  expect(carriesSigV2(req("GET", "/?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=s&Signature=t", {}))).toBe(false);
  expect(carriesSigV2(req("GET", "/?prefix=a", {}))).toBe(false);
});
