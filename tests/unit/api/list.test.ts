import { describe, expect, test } from "bun:test";
import { decodeContinuationToken, encodeContinuationToken, prefixEnd, urlEncodeKey, v1PrefixElement } from "../../../src/api/s3/list.ts";
import { S3Error } from "../../../src/api/s3/errors.ts";
import { mulberry32 } from "../../helpers/random.ts";

/** Order of keys in the object table: sqlite BINARY collation = UTF-8 bytes = code points. */
const cmp = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

const rng = mulberry32;
const ALPHABET = ["a", "b", "z", "/", "\u0000", "\u007f", "é", "\uD7FF", "\uE000", "\uFFFF", "😀", "\u{10FFFF}"];
function randomKey(next: () => number, max = 5): string {
  return Array.from({ length: Math.floor(next() * (max + 1)) }, () => ALPHABET[Math.floor(next() * ALPHABET.length)]!).join("");
}

describe("prefixEnd", () => {
  test.each([
    ["abc", "abd"],
    ["a/", "a0"],
    ["photos/2024/", "photos/20240"],
    ["é", "ê"],
    ["a\uD7FF", "a\uE000"], // skips the surrogate range
    ["z\u{10FFFF}", "{"],
    ["ab\u{10FFFF}\u{10FFFF}", "ac"],
    ["😀", "😁"],
  ])("%p -> %p", (prefix, end) => {
    expect(prefixEnd(prefix)).toBe(end);
  });

  test("no upper bound for the empty prefix or a prefix of only U+10FFFF", () => {
    expect(prefixEnd("")).toBeUndefined();
    expect(prefixEnd("\u{10FFFF}\u{10FFFF}")).toBeUndefined();
  });

  test("property: every key with the prefix sorts below the end, every greater key without it at or above", () => {
    const next = rng(42);
    for (let i = 0; i < 2000; i++) {
      const prefix = randomKey(next, 3);
      const end = prefixEnd(prefix);
      const withPrefix = prefix + randomKey(next);
      const other = randomKey(next, 4);
      if (end === undefined) {
        expect([...prefix].every((c) => c === "\u{10FFFF}")).toBe(true);
        continue;
      }
      expect(end.startsWith(prefix)).toBe(false);
      expect(cmp(withPrefix, end)).toBeLessThan(0);
      if (!other.startsWith(prefix) && cmp(other, prefix) > 0) expect(cmp(other, end)).toBeGreaterThanOrEqual(0);
    }
  });
});

describe("continuation tokens", () => {
  test("roundtrip, including the empty key, unicode and separators", () => {
    for (const key of ["", "a", "photos/2024/01/img 001.jpg", "é/😀/\u{10FFFF}", "a\u0000b", "x".repeat(1024), "+/=?&"]) {
      const token = encodeContinuationToken(key);
      expect(token).toMatch(/^[A-Za-z0-9_-]*$/); // safe in a query string as is
      expect(decodeContinuationToken(token)).toBe(key);
    }
  });

  test("random keys roundtrip", () => {
    const next = rng(7);
    for (let i = 0; i < 500; i++) {
      const key = randomKey(next, 12);
      expect(decodeContinuationToken(encodeContinuationToken(key))).toBe(key);
    }
  });

  test("a malformed or altered token is InvalidArgument", () => {
    const good = encodeContinuationToken("photos/cat.jpg");
    for (const bad of [
      "!!!!",
      good + "=", // padding we never emit
      good.replaceAll("_", "/") + "+", // standard base64 alphabet
      good + " ",
      good.slice(0, -1) + "*",
      "_w", // decodes to 0xFF: not UTF-8
      "wA", // decodes to 0xC0: overlong/invalid UTF-8
    ]) {
      let err: unknown;
      try {
        decodeContinuationToken(bad);
      } catch (e) {
        err = e;
      }
      expect({ bad, code: (err as S3Error | undefined)?.code }).toEqual({ bad, code: "InvalidArgument" });
      expect((err as S3Error).status).toBe(400);
    }
  });
});

describe("urlEncodeKey (encoding-type=url)", () => {
  test.each([
    ["plain", "plain"],
    ["a/b/c", "a/b/c"],
    ["with space", "with%20space"],
    ["plus+sign", "plus%2Bsign"],
    ["q?a=1&b=2", "q%3Fa%3D1%26b%3D2"],
    ["percent%", "percent%25"],
    ["é", "%C3%A9"],
    ["😀", "%F0%9F%98%80"],
    ["tab\tnl\n", "tab%09nl%0A"],
    ["-_.~", "-_.~"],
  ])("%p -> %p", (key, encoded) => {
    expect(urlEncodeKey(key)).toBe(encoded);
    expect(decodeURIComponent(encoded)).toBe(key);
  });
});

describe("urlEncodeKey: a lone surrogate", () => {
  test("is encoded as U+FFFD (the XML writer's choice), never a URIError", () => {
    expect(urlEncodeKey("a\uD800b")).toBe("a%EF%BF%BDb");
  });
});

describe("v1PrefixElement (ListObjects' own Prefix under encoding-type=url)", () => {
  test.each([
    ["\n", "\n"],
    ["foo/", "foo/"],
    ["run books/", "run books/"],
    ["é😀", "é😀"],
    ["a+b", "a%2Bb"],
    ["100%", "100%25"],
    ["\u0001", "%01"],
    ["x\uFFFE", "x%EF%BF%BE"],
  ])("%p -> %p", (prefix, element) => {
    expect(v1PrefixElement(prefix)).toBe(element);
  });
  test("property: the element decodes to the prefix with a URL decoder and as it is, when sent raw", () => {
    const alphabet = ["a", "/", " ", "+", "%", "\n", "\t", "\u0001", "é", "😀", "~", "*"];
    const next = rng(11);
    for (let i = 0; i < 500; i++) {
      let p = "";
      for (let j = 0; j < 6; j++) p += alphabet[Math.floor(next() * alphabet.length)];
      const el = v1PrefixElement(p);
      // What SDKs that decode read (Java v1 URLDecoder and PHP urldecode also take "+" as space).
      expect(decodeURIComponent(el.replaceAll("+", "%20"))).toBe(p);
      // What SDKs that do not decode read: the prefix itself whenever it was sent raw.
      if (el === p) expect(/[%+]/.test(p)).toBe(false);
    }
  });
});
