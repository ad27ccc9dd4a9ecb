// The x-amz-tagging header of a write (URL query form) is read and checked like a
// PutObjectTagging document: the same limits and error codes, plus AWS's own refusal of a
// header that is not URL-encoded or names a key twice.
import { describe, expect, test } from "bun:test";
import { parseTaggingHeader } from "../../../src/api/s3/object-tagging.ts";
import { S3Error } from "../../../src/api/s3/errors.ts";

function refusal(value: string): string {
  try {
    parseTaggingHeader(value);
  } catch (err) {
    if (err instanceof S3Error) return `${err.status} ${err.code}`;
    throw err;
  }
  return "accepted";
}

describe("parseTaggingHeader", () => {
  test("no header is no tag set; an empty header is an empty one", () => {
    expect(parseTaggingHeader(null)).toBeUndefined();
    expect(parseTaggingHeader("")).toEqual([]);
  });

  test("decodes URL query form, in order: %XX, + as a space, a key without = has an empty value", () => {
    expect(parseTaggingHeader("team=storage&owner=J%C3%BCrgen%20M&note=a+b&flag")).toEqual([
      ["team", "storage"],
      ["owner", "Jürgen M"],
      ["note", "a b"],
      ["flag", ""],
    ]);
    // What botocore sends for `aws s3 cp` (percent_encode_sequence): '+' and '/' encoded.
    expect(parseTaggingHeader("path=a%2Fb&sum=1%2B1%3D2")).toEqual([
      ["path", "a/b"],
      ["sum", "1+1=2"],
    ]);
  });

  test("AWS's limits and codes", () => {
    const ten = Array.from({ length: 10 }, (_, i) => `k${i}=v`).join("&");
    expect(refusal(ten)).toBe("accepted");
    expect(refusal(`${ten}&k10=v`)).toBe("400 InvalidTag");
    expect(refusal(`${"k".repeat(128)}=${"v".repeat(256)}`)).toBe("accepted");
    expect(refusal(`${"k".repeat(129)}=v`)).toBe("400 InvalidTag");
    expect(refusal(`k=${"v".repeat(257)}`)).toBe("400 InvalidTag");
    expect(refusal("=v")).toBe("400 InvalidTag");
    expect(refusal("aws:x=v")).toBe("400 InvalidTag");
    expect(refusal("k=%23")).toBe("400 InvalidTag");
  });

  test("a key given twice or a broken %-escape is InvalidArgument, as AWS answers for the header", () => {
    expect(refusal("a=1&a=2")).toBe("400 InvalidArgument");
    expect(refusal("a=%ZZ")).toBe("400 InvalidArgument");
    expect(refusal("a=%C3")).toBe("400 InvalidArgument");
  });
});
