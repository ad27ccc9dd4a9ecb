import { describe, expect, test } from "bun:test";
import { checkConditions, parseRange } from "../../../src/api/s3/get.ts";
import { S3Error } from "../../../src/api/s3/errors.ts";

function thrown(fn: () => unknown): S3Error | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof S3Error) return e;
    throw e;
  }
  return undefined;
}

describe("parseRange", () => {
  const size = 100;
  test.each([
    ["bytes=0-9", { start: 0, end: 9 }],
    ["bytes=10-", { start: 10, end: 99 }],
    ["bytes=-10", { start: 90, end: 99 }],
    ["bytes=0-0", { start: 0, end: 0 }],
    ["bytes=99-99", { start: 99, end: 99 }],
    ["bytes=50-1000", { start: 50, end: 99 }], // end clamped to the size
    ["bytes=-1000", { start: 0, end: 99 }], // suffix longer than the object
    [" bytes=5-6 ", { start: 5, end: 6 }],
  ])("%p", (header, want) => {
    expect(parseRange(header, size)).toEqual(want);
  });

  test("absent, multi-range, malformed or reversed ranges mean the whole object", () => {
    for (const h of [null, "bytes=0-1,5-6", "bytes=-", "items=0-1", "bytes=a-b", "bytes=9-5", "0-9"]) {
      expect(parseRange(h, size)).toBeUndefined();
    }
  });

  test("bytes=-0 is unsatisfiable", () => {
    const err = thrown(() => parseRange("bytes=-0", size))!;
    expect(err.code).toBe("InvalidRange");
    expect(err.status).toBe(416);
    expect(err.headers["content-range"]).toBe("bytes */100");
  });

  test("a start at or beyond the size is unsatisfiable, with Content-Range: bytes */size", () => {
    for (const h of ["bytes=100-", "bytes=100-200", "bytes=5000-"]) {
      const err = thrown(() => parseRange(h, size))!;
      expect(err.code).toBe("InvalidRange");
      expect(err.headers).toEqual({ "content-range": "bytes */100" });
    }
  });

  test("any range of an empty object is unsatisfiable", () => {
    for (const h of ["bytes=0-", "bytes=0-0", "bytes=-5"]) {
      expect(thrown(() => parseRange(h, 0))?.headers["content-range"]).toBe("bytes */0");
    }
  });
});

describe("checkConditions (RFC 7232 §6 order)", () => {
  const etag = "d41d8cd98f00b204e9800998ecf8427e";
  const lastModified = Date.UTC(2024, 0, 15, 12, 0, 0, 500); // sub-second part is ignored
  const at = (deltaSeconds: number) => new Date(Date.UTC(2024, 0, 15, 12, 0, 0) + deltaSeconds * 1000).toUTCString();
  const check = (h: Record<string, string>, prefix = "", status: "304" | "412" = "304") =>
    thrown(() => checkConditions(new Headers(h), etag, lastModified, prefix, status))?.code;

  test("no condition passes", () => {
    expect(check({})).toBeUndefined();
  });

  test("If-Match: quoted, unquoted, weak, lists and * match; anything else is 412", () => {
    for (const v of [`"${etag}"`, etag, `W/"${etag}"`, `"other", "${etag}"`, "*"]) expect(check({ "if-match": v })).toBeUndefined();
    expect(check({ "if-match": `"other"` })).toBe("PreconditionFailed");
  });

  test("If-None-Match: a match is 304 Not Modified with ETag and Last-Modified; no match passes", () => {
    const err = thrown(() => checkConditions(new Headers({ "if-none-match": `"${etag}"` }), etag, lastModified))!;
    expect(err.code).toBe("NotModified");
    expect(err.status).toBe(304);
    expect(err.headers.etag).toBe(`"${etag}"`);
    expect(err.headers["last-modified"]).toBe(new Date(lastModified).toUTCString());
    expect(check({ "if-none-match": "*" })).toBe("NotModified");
    expect(check({ "if-none-match": `"other"` })).toBeUndefined();
  });

  test("If-Modified-Since: not modified since (same second or later) is 304; modified passes", () => {
    expect(check({ "if-modified-since": at(0) })).toBe("NotModified");
    expect(check({ "if-modified-since": at(60) })).toBe("NotModified");
    expect(check({ "if-modified-since": at(-1) })).toBeUndefined();
  });

  test("If-Unmodified-Since: modified after the date is 412; same second passes", () => {
    expect(check({ "if-unmodified-since": at(-1) })).toBe("PreconditionFailed");
    expect(check({ "if-unmodified-since": at(0) })).toBeUndefined();
    expect(check({ "if-unmodified-since": at(3600) })).toBeUndefined();
  });

  test("unparseable dates are ignored", () => {
    expect(check({ "if-modified-since": "yesterday" })).toBeUndefined();
    expect(check({ "if-unmodified-since": "not a date" })).toBeUndefined();
  });

  test("If-Match, when present, overrides If-Unmodified-Since", () => {
    expect(check({ "if-match": `"${etag}"`, "if-unmodified-since": at(-3600) })).toBeUndefined();
    expect(check({ "if-match": `"nope"`, "if-unmodified-since": at(3600) })).toBe("PreconditionFailed");
  });

  test("If-None-Match, when present, overrides If-Modified-Since", () => {
    expect(check({ "if-none-match": `"other"`, "if-modified-since": at(3600) })).toBeUndefined();
    expect(check({ "if-none-match": `"${etag}"`, "if-modified-since": at(-3600) })).toBe("NotModified");
  });

  test("412 conditions are evaluated before 304 conditions", () => {
    expect(check({ "if-match": `"nope"`, "if-none-match": `"${etag}"` })).toBe("PreconditionFailed");
    expect(check({ "if-unmodified-since": at(-1), "if-modified-since": at(60) })).toBe("PreconditionFailed");
    expect(check({ "if-match": `"${etag}"`, "if-none-match": `"${etag}"` })).toBe("NotModified");
  });

  test("prefixed headers (copy source) and 412 instead of 304", () => {
    const p = "x-amz-copy-source-";
    expect(check({ [`${p}if-match`]: `"nope"` }, p, "412")).toBe("PreconditionFailed");
    expect(check({ [`${p}if-none-match`]: `"${etag}"` }, p, "412")).toBe("PreconditionFailed");
    expect(check({ [`${p}if-modified-since`]: at(60) }, p, "412")).toBe("PreconditionFailed");
    // Unprefixed headers are not looked at.
    expect(check({ "if-match": `"nope"` }, p, "412")).toBeUndefined();
  });
});
