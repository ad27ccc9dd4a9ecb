// The shared tag-set parser and AWS's rules on tags (counts, lengths, characters, reserved
// and repeated keys), for buckets (50 tags) and objects (10).
import { describe, expect, test } from "bun:test";
import { BUCKET_TAGS_MAX, OBJECT_TAGS_MAX, parseTaggingXml, taggingXml, validateTags, type TagSet } from "../../../src/api/s3/tag-set";
import { S3Error } from "../../../src/api/s3/errors";

const tagging = (tags: string) => `<Tagging xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><TagSet>${tags}</TagSet></Tagging>`;
const tag = (k: string, v: string) => `<Tag><Key>${k}</Key><Value>${v}</Value></Tag>`;
const many = (n: number): TagSet => Array.from({ length: n }, (_, i) => [`k${i}`, `v${i}`]);

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof S3Error) return e.code;
    throw e;
  }
  return "ok";
}

describe("parseTaggingXml", () => {
  test("tags in order, empty values, spaces kept; an empty TagSet is no tags", () => {
    expect(parseTaggingXml(tagging(tag("Project", "Bunker") + tag("cost centre", "") + tag("a+b=c.d_e:f/g@h", " x ")), BUCKET_TAGS_MAX)).toEqual([
      ["Project", "Bunker"],
      ["cost centre", ""],
      ["a+b=c.d_e:f/g@h", " x "],
    ]);
    expect(parseTaggingXml(tagging(""), BUCKET_TAGS_MAX)).toEqual([]);
    expect(parseTaggingXml(`<Tagging><TagSet/></Tagging>`, OBJECT_TAGS_MAX)).toEqual([]);
  });

  test("documents that do not fit the schema are MalformedXML", () => {
    for (const bad of ["", "<Tagging/>", "<TagSet></TagSet>", tagging("<Tag><Key>k</Key></Tag>"), tagging("<Tag><Value>v</Value></Tag>"), tagging("<Tag><Key>a</Key><Key>b</Key><Value>v</Value></Tag>"), "<Tagging><TagSet></TagSet><TagSet></TagSet></Tagging>", "<Tagging><TagSet>"])
      expect({ bad, code: codeOf(() => parseTaggingXml(bad, BUCKET_TAGS_MAX)) }).toEqual({ bad, code: "MalformedXML" });
  });

  test("the round trip through taggingXml is exact, escaped whitespace included", () => {
    const tags: TagSet = [["a\tb", "line\r\nbreak"], ["k", ""]];
    expect(parseTaggingXml(taggingXml(tags), OBJECT_TAGS_MAX)).toEqual(tags);
    expect(taggingXml([])).toContain("<TagSet></TagSet>");
  });
});

describe("validateTags", () => {
  test("counts: 50 per bucket, 10 per object", () => {
    expect(codeOf(() => validateTags(many(BUCKET_TAGS_MAX), BUCKET_TAGS_MAX))).toBe("ok");
    expect(codeOf(() => validateTags(many(BUCKET_TAGS_MAX + 1), BUCKET_TAGS_MAX))).toBe("InvalidTag");
    expect(codeOf(() => validateTags(many(OBJECT_TAGS_MAX), OBJECT_TAGS_MAX))).toBe("ok");
    expect(codeOf(() => validateTags(many(OBJECT_TAGS_MAX + 1), OBJECT_TAGS_MAX))).toBe("InvalidTag");
  });

  test("lengths in characters: key 1..128, value 0..256", () => {
    expect(codeOf(() => validateTags([["k".repeat(128), "v".repeat(256)]], 1))).toBe("ok");
    expect(codeOf(() => validateTags([["é".repeat(128), "ü".repeat(256)]], 1))).toBe("ok");
    expect(codeOf(() => validateTags([["k".repeat(129), "v"]], 1))).toBe("InvalidTag");
    expect(codeOf(() => validateTags([["k", "v".repeat(257)]], 1))).toBe("InvalidTag");
    expect(codeOf(() => validateTags([["", "v"]], 1))).toBe("InvalidTag");
  });

  test("characters: letters, digits, whitespace and + - = . _ : / @ only", () => {
    expect(codeOf(() => validateTags([["Ünïcödé 名前", "値 9"]], 1))).toBe("ok");
    for (const bad of ["a*b", "a,b", "a#b", "a\u0000b", "a&b", "a<b"]) {
      expect({ bad, code: codeOf(() => validateTags([[bad, "v"]], 1)) }).toEqual({ bad, code: "InvalidTag" });
      expect({ bad, code: codeOf(() => validateTags([["k", bad]], 1)) }).toEqual({ bad, code: "InvalidTag" });
    }
  });

  test("aws: keys are reserved; a key may appear once", () => {
    expect(codeOf(() => validateTags([["aws:cloudformation:stack-name", "x"]], 1))).toBe("InvalidTag");
    expect(codeOf(() => validateTags([["AWS:x", "x"]], 1))).toBe("InvalidTag");
    expect(codeOf(() => validateTags([["awsome", "x"]], 1))).toBe("ok");
    expect(codeOf(() => validateTags([["k", "1"], ["k", "2"]], 2))).toBe("InvalidTag");
    expect(codeOf(() => validateTags([["k", "1"], ["K", "2"]], 2))).toBe("ok");
  });
});
