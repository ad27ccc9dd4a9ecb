// SigV4 verification: AWS's published S3 examples, the aws-sig-v4-test-suite
// vectors for the canonical-request functions, refusals, and requests signed
// by the real AWS SDK (header auth and presigned URLs) sent through Bun.serve.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { S3Error } from "../../../src/api/s3/errors.ts";
import {
  buildCanonicalRequest,
  buildStringToSign,
  canonicalHeaders,
  canonicalQuery,
  canonicalUri,
  deriveSigningKey,
  EMPTY_SHA256,
  requestHasAuth,
  sha256Hex,
  signatureHex,
  verifyRequest,
  type AuthContext,
  type SignedRequest,
} from "../../../src/api/s3/sigv4.ts";

const AKID = "AKIAIOSFODNN7EXAMPLE";
const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const REGION = "us-east-1";
const DOC_TIME = new Date("2013-05-24T00:00:00Z");
const lookup = (id: string) => (id === AKID ? SECRET : undefined);

function req(method: string, target: string, headers: Record<string, string>): SignedRequest {
  const q = target.indexOf("?");
  return {
    method,
    rawPath: q < 0 ? target : target.slice(0, q),
    rawQuery: q < 0 ? "" : target.slice(q + 1),
    headers: new Headers(headers),
  };
}

function verify(r: SignedRequest, now: Date = DOC_TIME, region = REGION): AuthContext {
  return verifyRequest(r, lookup, { region, now });
}

function s3ErrorOf(fn: () => unknown): S3Error {
  try {
    fn();
  } catch (e) {
    if (e instanceof S3Error) return e;
    throw e;
  }
  throw new Error("expected an S3Error");
}

// --- "Signature Calculations for the Authorization Header: Transferring Payload in a Single Chunk"

const docGetObject = () =>
  req("GET", "/test.txt", {
    host: "examplebucket.s3.amazonaws.com",
    range: "bytes=0-9",
    "x-amz-content-sha256": EMPTY_SHA256,
    "x-amz-date": "20130524T000000Z",
    authorization:
      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
  });

const PUT_BODY_SHA = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
const docPutObject = (path: string) =>
  req("PUT", path, {
    host: "examplebucket.s3.amazonaws.com",
    date: "Fri, 24 May 2013 00:00:00 GMT",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "x-amz-content-sha256": PUT_BODY_SHA,
    authorization:
      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
  });

const docGetWithQuery = (target: string, signature: string) =>
  req("GET", target, {
    host: "examplebucket.s3.amazonaws.com",
    "x-amz-content-sha256": EMPTY_SHA256,
    "x-amz-date": "20130524T000000Z",
    authorization: `AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=${signature}`,
  });
const LIFECYCLE_SIG = "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543";
const LIST_SIG = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";

const PRESIGN_QUERY =
  "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
const docPresigned = (query = PRESIGN_QUERY) => req("GET", `/test.txt?${query}`, { host: "examplebucket.s3.amazonaws.com" });

describe("AWS S3 documentation examples", () => {
  test("GET Object with Range: canonical request, string to sign, signature", () => {
    const r = docGetObject();
    const signed = ["host", "range", "x-amz-content-sha256", "x-amz-date"];
    const cr = buildCanonicalRequest({
      method: "GET",
      canonicalUri: canonicalUri(r.rawPath),
      canonicalQuery: canonicalQuery(r.rawQuery),
      canonicalHeaders: canonicalHeaders(r.headers, signed),
      signedHeaders: signed.join(";"),
      payloadHash: EMPTY_SHA256,
    });
    expect(cr).toBe(
      [
        "GET",
        "/test.txt",
        "",
        "host:examplebucket.s3.amazonaws.com",
        "range:bytes=0-9",
        `x-amz-content-sha256:${EMPTY_SHA256}`,
        "x-amz-date:20130524T000000Z",
        "",
        "host;range;x-amz-content-sha256;x-amz-date",
        EMPTY_SHA256,
      ].join("\n"),
    );
    const sts = buildStringToSign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", cr);
    expect(sts).toBe(
      "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
    );
    const key = deriveSigningKey(SECRET, "20130524", REGION, "s3");
    expect(signatureHex(key, sts)).toBe("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");

    const ctx = verify(r);
    expect(ctx.accessKeyId).toBe(AKID);
    expect(ctx.payload).toEqual({ kind: "sha256", hex: EMPTY_SHA256 });
    expect(ctx.scope).toBe("20130524/us-east-1/s3/aws4_request");
    expect(ctx.amzDate).toBe("20130524T000000Z");
    expect(ctx.seedSignature).toBe("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    expect(Buffer.from(ctx.signingKey).equals(Buffer.from(key))).toBe(true);
  });

  test("PUT Object \"Welcome to Amazon S3.\" (key test$file.text, raw or percent-encoded)", () => {
    expect(sha256Hex("Welcome to Amazon S3.")).toBe(PUT_BODY_SHA);
    expect(canonicalUri("/test$file.text")).toBe("/test%24file.text");
    for (const path of ["/test$file.text", "/test%24file.text", "/test%24file%2Etext"]) {
      expect(verify(docPutObject(path)).payload).toEqual({ kind: "sha256", hex: PUT_BODY_SHA });
    }
  });

  test("GET Bucket Lifecycle (?lifecycle, a parameter without a value)", () => {
    expect(canonicalQuery("lifecycle")).toBe("lifecycle=");
    verify(docGetWithQuery("/?lifecycle", LIFECYCLE_SIG));
    verify(docGetWithQuery("/?lifecycle=", LIFECYCLE_SIG));
  });

  test("GET Bucket (List Objects) with max-keys and prefix, in either order and any escaping", () => {
    expect(canonicalQuery("prefix=J&max-keys=2")).toBe("max-keys=2&prefix=J");
    verify(docGetWithQuery("/?max-keys=2&prefix=J", LIST_SIG));
    verify(docGetWithQuery("/?prefix=J&max-keys=2", LIST_SIG));
    verify(docGetWithQuery("/?prefix=%4a&max-keys=%32", LIST_SIG));
    expect(s3ErrorOf(() => verify(docGetWithQuery("/?max-keys=2&prefix=K", LIST_SIG))).code).toBe(
      "SignatureDoesNotMatch",
    );
  });

  test("presigned URL for GET test.txt, 86400 s", () => {
    const r = docPresigned();
    const cq = canonicalQuery(r.rawQuery, { excludeSignature: true });
    const cr = buildCanonicalRequest({
      method: "GET",
      canonicalUri: "/test.txt",
      canonicalQuery: cq,
      canonicalHeaders: canonicalHeaders(r.headers, ["host"]),
      signedHeaders: "host",
      payloadHash: "UNSIGNED-PAYLOAD",
    });
    expect(sha256Hex(cr)).toBe("3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04");
    const ctx = verify(r);
    expect(ctx.payload).toEqual({ kind: "unsigned" });
    expect(ctx.seedSignature).toBe("aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    // Still valid one second before expiry.
    verify(r, new Date(DOC_TIME.getTime() + 86400_000));
  });
});

// --- aws-sig-v4-test-suite (service "service", 20150830T123600Z)

describe("aws-sig-v4-test-suite vectors (canonical functions)", () => {
  const SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  const AMZ_DATE = "20150830T123600Z";
  const SCOPE = "20150830/us-east-1/service/aws4_request";
  const key = deriveSigningKey(SUITE_SECRET, "20150830", "us-east-1", "service");

  function sign(method: string, target: string, extra: Array<[string, string]>, body = ""): string {
    const q = target.indexOf("?");
    const headers: Array<[string, string]> = [["Host", "example.amazonaws.com"], ...extra, ["X-Amz-Date", AMZ_DATE]];
    const signed = [...new Set(headers.map(([n]) => n.toLowerCase()))].sort();
    const cr = buildCanonicalRequest({
      method,
      canonicalUri: canonicalUri(q < 0 ? target : target.slice(0, q)),
      canonicalQuery: canonicalQuery(q < 0 ? "" : target.slice(q + 1)),
      canonicalHeaders: canonicalHeaders(headers, signed),
      signedHeaders: signed.join(";"),
      payloadHash: sha256Hex(body),
    });
    return signatureHex(key, buildStringToSign(AMZ_DATE, SCOPE, cr));
  }

  test.each([
    ["get-vanilla", "GET", "/", [], "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"],
    [
      "get-unreserved",
      "GET",
      "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
      [],
      "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    ],
    [
      "get-vanilla-query-order-key-case",
      "GET",
      "/?Param2=value2&Param1=value1",
      [],
      "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ],
    [
      "get-vanilla-query-order-value",
      "GET",
      "/?Param1=value2&Param1=value1",
      [],
      "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
    ],
    ["get-vanilla-utf8-query", "GET", "/?\u1234=bar", [], "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"],
    [
      "get-header-value-order",
      "GET",
      "/",
      [
        ["My-Header1", "value4"],
        ["My-Header1", "value1"],
        ["My-Header1", "value3"],
        ["My-Header1", "value2"],
      ],
      "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    ],
    [
      "get-header-key-duplicate",
      "GET",
      "/",
      [
        ["My-Header1", "value2"],
        ["My-Header1", "value2"],
        ["My-Header1", "value1"],
      ],
      "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    ],
    [
      "get-header-value-trim",
      "GET",
      "/",
      [
        ["My-Header1", " value1"],
        ["My-Header2", '"a   b   c"'],
      ],
      "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ],
  ] as Array<[string, string, string, Array<[string, string]>, string]>)("%s", (_name, method, target, extra, expected) => {
    expect(sign(method, target, extra)).toBe(expected);
  });

  test("post-x-www-form-urlencoded", () => {
    expect(sign("POST", "/", [["Content-Type", "application/x-www-form-urlencoded"]], "Param1=value1")).toBe(
      "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    );
  });

  test("canonical URIs of get-space, get-utf8 and friends (S3 rules: no normalisation)", () => {
    expect(canonicalUri("/example space/")).toBe("/example%20space/");
    expect(canonicalUri("/\u1234")).toBe("/%E1%88%B4");
    expect(canonicalUri("/%e1%88%b4")).toBe("/%E1%88%B4");
    expect(canonicalUri("")).toBe("/");
    expect(canonicalUri("//example//")).toBe("//example//");
    expect(canonicalUri("/a/./b/../c")).toBe("/a/./b/../c");
    expect(canonicalUri("/%7Euser/~x/%7e")).toBe("/~user/~x/~");
    expect(canonicalUri("/a%2Fb/c")).toBe("/a%2Fb/c");
    expect(canonicalUri("/100%/bad%ZZ/%4")).toBe("/100%25/bad%25ZZ/%254");
    expect(canonicalUri("/a+b/!'()*")).toBe("/a%2Bb/%21%27%28%29%2A");
    expect(canonicalUri("/%ff%c3")).toBe("/%FF%C3"); // invalid UTF-8 survives byte for byte
  });

  test("canonical query edge cases", () => {
    expect(canonicalQuery("")).toBe("");
    expect(canonicalQuery("b&a=1")).toBe("a=1&b=");
    expect(canonicalQuery("a=1=2")).toBe("a=1%3D2");
    expect(canonicalQuery("q=a+b")).toBe("q=a%2Bb");
    expect(canonicalQuery("q=a+b", { plusAsSpace: true })).toBe("q=a%20b");
    expect(canonicalQuery("x=a.b&x=a%2Fb")).toBe("x=a%2Fb&x=a.b");
    expect(canonicalQuery("uploads&&prefix=a/b&list-type=2")).toBe("list-type=2&prefix=a%2Fb&uploads=");
    expect(canonicalQuery("X-Amz-Signature=abc&a=1", { excludeSignature: true })).toBe("a=1");
  });
});

// --- refusals

describe("refusals", () => {
  test("a tampered signed header", () => {
    const r = docGetObject();
    r.headers.set("range", "bytes=0-10");
    expect(s3ErrorOf(() => verify(r)).code).toBe("SignatureDoesNotMatch");
  });

  test("a tampered path, method or signature", () => {
    const r = docGetObject();
    r.rawPath = "/test.txy";
    expect(s3ErrorOf(() => verify(r)).code).toBe("SignatureDoesNotMatch");
    const m = docGetObject();
    m.method = "DELETE";
    expect(s3ErrorOf(() => verify(m)).code).toBe("SignatureDoesNotMatch");
    const s = docGetObject();
    s.headers.set("authorization", s.headers.get("authorization")!.replace(/.$/, "2"));
    expect(s3ErrorOf(() => verify(s)).status).toBe(403);
  });

  test("an unknown access key, and a wrong secret", () => {
    const r = docGetObject();
    r.headers.set("authorization", r.headers.get("authorization")!.replace(AKID, "AKIAUNKNOWN"));
    expect(s3ErrorOf(() => verify(r)).code).toBe("InvalidAccessKeyId");
    const e = s3ErrorOf(() => verifyRequest(docGetObject(), () => "not-the-secret", { region: REGION, now: DOC_TIME }));
    expect(e.code).toBe("SignatureDoesNotMatch");
  });

  test("clock skew beyond 15 minutes", () => {
    const ms = DOC_TIME.getTime();
    verify(docGetObject(), new Date(ms + 14 * 60_000));
    verify(docGetObject(), new Date(ms - 14 * 60_000));
    expect(s3ErrorOf(() => verify(docGetObject(), new Date(ms + 16 * 60_000))).code).toBe("RequestTimeTooSkewed");
    expect(s3ErrorOf(() => verify(docGetObject(), new Date(ms - 16 * 60_000))).code).toBe("RequestTimeTooSkewed");
  });

  test("the Date header stands in for a missing x-amz-date; neither is refused", () => {
    const r = docPutObject("/test$file.text");
    r.headers.delete("x-amz-date");
    // The signature covered x-amz-date, now absent: it no longer matches, but the time parsed.
    expect(s3ErrorOf(() => verify(r)).code).toBe("SignatureDoesNotMatch");
    r.headers.delete("date");
    expect(s3ErrorOf(() => verify(r)).code).toBe("AccessDenied");
  });

  test("a scope for another region names the expected one", () => {
    const e = s3ErrorOf(() => verify(docGetObject(), DOC_TIME, "eu-west-1"));
    expect(e.code).toBe("AuthorizationHeaderMalformed");
    expect(e.message).toContain("'eu-west-1'");
  });

  test("malformed credentials and a credential date other than x-amz-date", () => {
    const bad = (from: string, to: string) => {
      const r = docGetObject();
      r.headers.set("authorization", r.headers.get("authorization")!.replace(from, to));
      return s3ErrorOf(() => verify(r));
    };
    expect(bad("/20130524/us-east-1/s3/aws4_request", "/20130524/us-east-1/s3").code).toBe("AuthorizationHeaderMalformed");
    expect(bad("/s3/", "/sts/").code).toBe("AuthorizationHeaderMalformed");
    expect(bad("aws4_request", "aws5_request").code).toBe("AuthorizationHeaderMalformed");
    expect(bad("/20130524/", "/20130525/").code).toBe("AuthorizationHeaderMalformed");
    expect(bad(",Signature=", ",Sig=").code).toBe("AuthorizationHeaderMalformed");
    expect(bad("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256").code).toBe("InvalidRequest");
  });

  test("host must be signed, and so must every x-amz-* header", () => {
    const r = docGetObject();
    r.headers.set("x-amz-meta-colour", "blue");
    const e = s3ErrorOf(() => verify(r));
    expect(e.code).toBe("AccessDenied");
    expect(e.message).toContain("x-amz-meta-colour");
    const p = docPresigned();
    p.headers.set("x-amz-acl", "public-read");
    expect(s3ErrorOf(() => verify(p)).code).toBe("AccessDenied");
    // Unsigned headers outside x-amz-* are fine.
    const u = docGetObject();
    u.headers.set("user-agent", "test");
    verify(u);
    const h = req("GET", "/", {
      host: "examplebucket.s3.amazonaws.com",
      "x-amz-content-sha256": EMPTY_SHA256,
      "x-amz-date": "20130524T000000Z",
      authorization: `AWS4-HMAC-SHA256 Credential=${AKID}/20130524/us-east-1/s3/aws4_request, SignedHeaders=x-amz-content-sha256;x-amz-date, Signature=${"0".repeat(64)}`,
    });
    expect(s3ErrorOf(() => verify(h)).message).toContain("host");
  });

  test("no credentials at all, SigV2, or two mechanisms at once", () => {
    const anon = req("GET", "/bucket/key?versionId=1", { host: "x" });
    expect(requestHasAuth(anon)).toBe(false);
    expect(s3ErrorOf(() => verify(anon)).code).toBe("AccessDenied");
    expect(requestHasAuth(docGetObject())).toBe(true);
    expect(requestHasAuth(docPresigned())).toBe(true);
    const v2 = req("GET", "/k", { host: "x", authorization: "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=" });
    expect(s3ErrorOf(() => verify(v2)).code).toBe("InvalidRequest");
    const v2q = req("GET", "/k?AWSAccessKeyId=AK&Expires=1&Signature=abc", { host: "x" });
    expect(s3ErrorOf(() => verify(v2q)).code).toBe("InvalidRequest");
    const both = docPresigned();
    both.headers.set("authorization", docGetObject().headers.get("authorization")!);
    expect(s3ErrorOf(() => verify(both)).code).toBe("InvalidArgument");
  });

  test("x-amz-content-sha256 is required for header auth and must be a known value", () => {
    const r = docGetObject();
    r.headers.delete("x-amz-content-sha256");
    expect(s3ErrorOf(() => verify(r)).code).toBe("InvalidRequest");
    r.headers.set("x-amz-content-sha256", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD");
    expect(s3ErrorOf(() => verify(r)).code).toBe("InvalidArgument");
  });

  test("presigned: expired, not yet valid, expiry too long, missing or tampered parameters", () => {
    const ms = DOC_TIME.getTime();
    const expired = s3ErrorOf(() => verify(docPresigned(), new Date(ms + 86401_000)));
    expect(expired.code).toBe("AccessDenied");
    expect(expired.message).toBe("Request has expired");
    expect(s3ErrorOf(() => verify(docPresigned(), new Date(ms - 16 * 60_000))).code).toBe("AccessDenied");
    // Out of [0, one week]: 403, as Ceph's s3-tests expect of AWS (test_object_raw_get_x_amz_expires_out_*).
    const long = PRESIGN_QUERY.replace("X-Amz-Expires=86400", "X-Amz-Expires=604801");
    expect(s3ErrorOf(() => verify(docPresigned(long))).code).toBe("AccessDenied");
    const missing = PRESIGN_QUERY.replace("&X-Amz-SignedHeaders=host", "");
    expect(s3ErrorOf(() => verify(docPresigned(missing))).code).toBe("AuthorizationQueryParametersError");
    const wrongRegion = s3ErrorOf(() => verify(docPresigned(), DOC_TIME, "garage"));
    expect(wrongRegion.code).toBe("AuthorizationQueryParametersError");
    expect(wrongRegion.message).toContain("'garage'");
    expect(s3ErrorOf(() => verify(docPresigned(`${PRESIGN_QUERY}&versionId=2`))).code).toBe("SignatureDoesNotMatch");
    expect(s3ErrorOf(() => verify(docPresigned(PRESIGN_QUERY.replace("86400", "86401")))).code).toBe(
      "SignatureDoesNotMatch",
    );
  });

  test("payload modes follow x-amz-content-sha256", () => {
    // Signed here with our own functions: the parse and the mode are under test, not the vectors.
    const modes: Array<[string, string]> = [
      ["UNSIGNED-PAYLOAD", "unsigned"],
      ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "streaming-signed"],
      ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", "streaming-signed-trailer"],
      ["STREAMING-UNSIGNED-PAYLOAD-TRAILER", "streaming-unsigned-trailer"],
      [PUT_BODY_SHA.toUpperCase(), "sha256"],
    ];
    for (const [value, kind] of modes) {
      const headers = {
        host: "h",
        "x-amz-content-sha256": value,
        "x-amz-date": "20130524T000000Z",
      };
      const signed = ["host", "x-amz-content-sha256", "x-amz-date"];
      const cr = buildCanonicalRequest({
        method: "PUT",
        canonicalUri: "/b/k",
        canonicalQuery: "",
        canonicalHeaders: canonicalHeaders(new Headers(headers), signed),
        signedHeaders: signed.join(";"),
        payloadHash: value,
      });
      const sig = signatureHex(
        deriveSigningKey(SECRET, "20130524", REGION, "s3"),
        buildStringToSign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", cr),
      );
      const r = req("PUT", "/b/k", {
        ...headers,
        authorization: `AWS4-HMAC-SHA256   Credential=${AKID}/20130524/us-east-1/s3/aws4_request ,SignedHeaders=${signed.join(";")},  Signature=${sig}`,
      });
      const ctx = verify(r);
      expect(ctx.payload.kind).toBe(kind as AuthContext["payload"]["kind"]);
      if (ctx.payload.kind === "sha256") expect(ctx.payload.hex).toBe(PUT_BODY_SHA);
    }
  });
});

describe("signing variants other clients use", () => {
  const key = deriveSigningKey(SECRET, "20130524", REGION, "s3");
  const scope = "20130524/us-east-1/s3/aws4_request";

  function signed(method: string, target: string, headers: Record<string, string>, amzDate: string, plusAsSpace = false) {
    const r = req(method, target, headers);
    const names = Object.keys(headers).map((n) => n.toLowerCase()).sort();
    const cr = buildCanonicalRequest({
      method,
      canonicalUri: canonicalUri(r.rawPath),
      canonicalQuery: canonicalQuery(r.rawQuery, { plusAsSpace }),
      canonicalHeaders: canonicalHeaders(r.headers, names),
      signedHeaders: names.join(";"),
      payloadHash: headers["x-amz-content-sha256"]!,
    });
    const sig = signatureHex(key, buildStringToSign(amzDate, scope, cr));
    r.headers.set("authorization", `AWS4-HMAC-SHA256 Credential=${AKID}/${scope}, SignedHeaders=${names.join(";")}, Signature=${sig}`);
    return r;
  }

  test("only a Date header (no x-amz-date)", () => {
    const headers = { host: "h", date: "Fri, 24 May 2013 00:00:00 GMT", "x-amz-content-sha256": EMPTY_SHA256 };
    expect(verify(signed("GET", "/b/k", headers, "20130524T000000Z")).amzDate).toBe("20130524T000000Z");
  });

  test("\"+\" in the query, signed as a plus or as a space", () => {
    const headers = { host: "h", "x-amz-date": "20130524T000000Z", "x-amz-content-sha256": EMPTY_SHA256 };
    verify(signed("GET", "/b?prefix=a+b", headers, "20130524T000000Z", false));
    verify(signed("GET", "/b?prefix=a+b", headers, "20130524T000000Z", true));
    const r = signed("GET", "/b?prefix=a+b", headers, "20130524T000000Z", true);
    r.rawQuery = "prefix=a+c";
    expect(s3ErrorOf(() => verify(r)).code).toBe("SignatureDoesNotMatch");
  });

  test("repeated signed headers arrive joined by \", \" and do not verify (Fetch Headers semantics)", () => {
    const r = req("GET", "/", {});
    r.headers.append("my-header", "a");
    r.headers.append("my-header", "b");
    expect(canonicalHeaders(r.headers, ["my-header"])).toBe("my-header:a, b\n");
    expect(canonicalHeaders([["My-Header", "a"], ["my-header", " b "]], ["my-header"])).toBe("my-header:a,b\n");
  });
});

// --- the real AWS SDK, through Bun.serve

describe("requests signed by the AWS SDK for JavaScript v3", () => {
  const SDK_KEY = "GK0123456789abcdef";
  const SDK_SECRET = "s3cr3t/with+odd=chars";
  const SDK_REGION = "garage";
  const outcomes: Array<{ url: string; result: string }> = [];
  let server: ReturnType<typeof Bun.serve>;
  let client: S3Client;

  /** Raw path and query from request.url, as the router must build them. */
  function rawTarget(url: string): { rawPath: string; rawQuery: string } {
    const start = url.indexOf("/", url.indexOf("//") + 2);
    const q = url.indexOf("?", start);
    return q < 0 ? { rawPath: url.slice(start), rawQuery: "" } : { rawPath: url.slice(start, q), rawQuery: url.slice(q + 1) };
  }

  beforeAll(() => {
    server = Bun.serve({
      port: 0,
      async fetch(request) {
        await request.arrayBuffer();
        let result = "ok";
        try {
          verifyRequest(
            { method: request.method, ...rawTarget(request.url), headers: request.headers },
            (id) => (id === SDK_KEY ? SDK_SECRET : undefined),
            { region: SDK_REGION },
          );
        } catch (e) {
          result = e instanceof S3Error ? e.code : String(e);
        }
        outcomes.push({ url: request.url, result });
        if (result !== "ok") {
          return new Response(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${result}</Code><Message>m</Message></Error>`, {
            status: 403,
            headers: { "content-type": "application/xml" },
          });
        }
        if (new URL(request.url).searchParams.get("list-type") === "2") {
          return new Response(
            `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`,
            { headers: { "content-type": "application/xml" } },
          );
        }
        return new Response(request.method === "HEAD" ? null : "body", { headers: { etag: '"e"' } });
      },
    });
    client = new S3Client({
      endpoint: `http://localhost:${server.port}`,
      region: SDK_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: SDK_KEY, secretAccessKey: SDK_SECRET },
      maxAttempts: 1,
    });
  });

  afterAll(() => {
    client.destroy();
    server.stop(true);
  });

  // Keys with "." or ".." segments or "\" are out: Bun rewrites those paths (docs/stack-facts.md#raw-url).
  const KEYS = [
    "plain.txt",
    "a b+c/~x",
    "ü/日本語/😀.bin",
    "100%/x?y#z;,:@$!*'()[]=&.webp",
    "dir//double//slash/",
    "tilde~%7E/-_.~",
    'quote"<>`{}^|',
  ];

  test.each(KEYS)("PutObject, GetObject, HeadObject: %s", async (key) => {
    outcomes.length = 0;
    await client.send(new PutObjectCommand({ Bucket: "bucket", Key: key, Body: "hello", Metadata: { colour: "blue" } }));
    await client.send(new GetObjectCommand({ Bucket: "bucket", Key: key, Range: "bytes=0-1", VersionId: "v 1+2" }));
    await client.send(new HeadObjectCommand({ Bucket: "bucket", Key: key }));
    expect(outcomes.map((o) => o.result)).toEqual(["ok", "ok", "ok"]);
  });

  test("ListObjectsV2 with awkward query values", async () => {
    outcomes.length = 0;
    await client.send(
      new ListObjectsV2Command({ Bucket: "bucket", Prefix: "a b+c/ü=&?#", Delimiter: "/", StartAfter: "x~y*'()!", MaxKeys: 7 }),
    );
    expect(outcomes.map((o) => o.result)).toEqual(["ok"]);
  });

  test.each(KEYS)("presigned GET and PUT: %s", async (key) => {
    outcomes.length = 0;
    const get = await getSignedUrl(client, new GetObjectCommand({ Bucket: "bucket", Key: key }), { expiresIn: 600 });
    expect((await fetch(get)).status).toBe(200);
    const put = await getSignedUrl(client, new PutObjectCommand({ Bucket: "bucket", Key: key }), { expiresIn: 600 });
    expect((await fetch(put, { method: "PUT", body: "data" })).status).toBe(200);
    // Changing any signed part of the URL breaks it.
    expect((await fetch(get.replace("X-Amz-Expires=600", "X-Amz-Expires=601"))).status).toBe(403);
    expect(outcomes.map((o) => o.result)).toEqual(["ok", "ok", "SignatureDoesNotMatch"]);
  });

  test("a client with the wrong secret is refused", async () => {
    const bad = new S3Client({
      endpoint: `http://localhost:${server.port}`,
      region: SDK_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: SDK_KEY, secretAccessKey: "wrong" },
      maxAttempts: 1,
    });
    outcomes.length = 0;
    await expect(bad.send(new HeadObjectCommand({ Bucket: "bucket", Key: "k" }))).rejects.toThrow();
    expect(outcomes.map((o) => o.result)).toEqual(["SignatureDoesNotMatch"]);
    bad.destroy();
  });
});

describe("what is remembered between requests", () => {
  const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

  test("the signing key cache follows each secret's date, region and service", () => {
    const first = hex(deriveSigningKey(SECRET, "20130524", REGION, "s3"));
    // AWS's documented signature for its GetObject example is made with this key.
    expect(signatureHex(deriveSigningKey(SECRET, "20130524", REGION, "s3"), "x")).toBe(signatureHex(new Uint8Array(Buffer.from(first, "hex")), "x"));
    const otherDay = hex(deriveSigningKey(SECRET, "20130525", REGION, "s3"));
    const otherRegion = hex(deriveSigningKey(SECRET, "20130524", "eu-west-1", "s3"));
    const otherService = hex(deriveSigningKey(SECRET, "20130524", REGION, "iam"));
    const otherSecret = hex(deriveSigningKey(SECRET + "x", "20130524", REGION, "s3"));
    expect(new Set([first, otherDay, otherRegion, otherService, otherSecret]).size).toBe(5);
    expect(hex(deriveSigningKey(SECRET, "20130524", REGION, "s3"))).toBe(first);
    expect(hex(deriveSigningKey(SECRET, "20130525", REGION, "s3"))).toBe(otherDay);
  });

  test("a request of another second, or a malformed date after a valid one, is read for itself", () => {
    const signed = docGetObject();
    expect(verify(signed).amzDate).toBe("20130524T000000Z");
    const later = docGetObject();
    later.headers.set("x-amz-date", "20130524T000001Z");
    // Same signature, one second later in the string to sign: it no longer matches.
    expect(s3ErrorOf(() => verify(later)).code).toBe("SignatureDoesNotMatch");
    const rolled = docGetObject();
    rolled.headers.set("x-amz-date", "20131324T000000Z");
    expect(s3ErrorOf(() => verify(rolled)).code).toBe("AccessDenied");
    expect(verify(docGetObject()).amzDate).toBe("20130524T000000Z");
  });

  test("SignedHeaders lists are checked every time, remembered only when valid", () => {
    const bad = docGetObject();
    bad.headers.set("authorization", bad.headers.get("authorization")!.replace("SignedHeaders=host;", "SignedHeaders=Host;"));
    expect(s3ErrorOf(() => verify(bad)).code).toBe("AuthorizationHeaderMalformed");
    expect(verify(docGetObject()).accessKeyId).toBe(AKID);
    expect(s3ErrorOf(() => verify(bad)).code).toBe("AuthorizationHeaderMalformed");
  });

  test("an Authorization header laid out unusually verifies as the usual one", () => {
    const usual = docGetObject().headers.get("authorization")!;
    const m = /Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=(\S+)/.exec(usual)!;
    const [, credential, signedHeaders, signature] = m;
    for (const layout of [
      `AWS4-HMAC-SHA256 Credential=${credential}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
      `AWS4-HMAC-SHA256 Credential=${credential},SignedHeaders=${signedHeaders},Signature=${signature}`,
      `AWS4-HMAC-SHA256  Credential=${credential} , SignedHeaders=${signedHeaders} ,Signature=${signature} `,
      `AWS4-HMAC-SHA256 Signature=${signature}, Credential=${credential}, SignedHeaders=${signedHeaders}`,
    ]) {
      const r = docGetObject();
      r.headers.set("authorization", layout);
      expect(verify(r).seedSignature).toBe(signature!);
    }
  });
});
