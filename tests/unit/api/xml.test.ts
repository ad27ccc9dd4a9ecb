import { describe, expect, test } from "bun:test";
import { XmlNode as AwsSdkXmlNode, parseXML as awsSdkParseXml } from "@aws-sdk/xml-builder";
import { S3Error } from "../../../src/api/s3/errors";
import {
  MAX_XML_BODY,
  MAX_XML_DEPTH,
  S3_XMLNS,
  XML_DECLARATION,
  child,
  childText,
  children,
  parseXml,
  xmlAttrs,
  xmlDocument,
  xmlEscape,
} from "../../../src/api/s3/xml";

function s3ErrorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof S3Error) return e.code;
    throw e;
  }
  throw new Error("expected an S3Error");
}

describe("xmlEscape", () => {
  test("escapes the five markup characters", () => {
    expect(xmlEscape(`a&b<c>d"e'f`)).toBe("a&amp;b&lt;c&gt;d&quot;e&apos;f");
  });

  test("leaves plain and non-ASCII text alone", () => {
    const s = "photos/2024/été/日本/🎉.jpg";
    expect(xmlEscape(s)).toBe(s);
  });

  test("emits control characters as numeric references", () => {
    expect(xmlEscape("a\u0001b\u001Fc")).toBe("a&#x1;b&#x1F;c");
    expect(xmlEscape("\t\n\r")).toBe("&#x9;&#xA;&#xD;");
    expect(xmlEscape("\uFFFE\uFFFF")).toBe("&#xFFFE;&#xFFFF;");
  });

  test("replaces lone surrogates but keeps pairs", () => {
    expect(xmlEscape("a\uD800b")).toBe("a\uFFFDb");
    expect(xmlEscape("x\uDC00")).toBe("x\uFFFD");
    expect(xmlEscape("\uD83C\uDF89")).toBe("\uD83C\uDF89");
  });
});

describe("xmlDocument", () => {
  test("declaration, namespace, insertion order, repeated elements, omitted nulls", () => {
    const xml = xmlDocument("ListBucketResult", {
      Name: "bucket",
      Prefix: "",
      Marker: undefined,
      KeyCount: 2,
      IsTruncated: false,
      Contents: [{ Key: "a" }, { Key: "b&c" }],
      NextMarker: null,
    });
    expect(xml).toBe(
      `${XML_DECLARATION}<ListBucketResult xmlns="${S3_XMLNS}">` +
        "<Name>bucket</Name><Prefix></Prefix><KeyCount>2</KeyCount><IsTruncated>false</IsTruncated>" +
        "<Contents><Key>a</Key></Contents><Contents><Key>b&amp;c</Key></Contents>" +
        "</ListBucketResult>",
    );
  });

  test("scalar root, dates, attributes, namespace override", () => {
    expect(xmlDocument("LocationConstraint", "garage")).toBe(
      `${XML_DECLARATION}<LocationConstraint xmlns="${S3_XMLNS}">garage</LocationConstraint>`,
    );
    expect(xmlDocument("T", { When: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) }, { xmlns: undefined })).toBe(
      `${XML_DECLARATION}<T><When>2024-01-02T03:04:05.000Z</When></T>`,
    );
    const grantee = xmlAttrs(
      { "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance", "xsi:type": "CanonicalUser" },
      { ID: "id<1>" },
    );
    expect(xmlDocument("Grant", { Grantee: grantee })).toContain(
      '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>id&lt;1&gt;</ID></Grantee>',
    );
  });

  test("arrays in content position concatenate", () => {
    expect(xmlDocument("R", [{ A: 1 }, { B: [true, false] }], { xmlns: undefined })).toBe(
      `${XML_DECLARATION}<R><A>1</A><B>true</B><B>false</B></R>`,
    );
  });

  test("refuses non-finite numbers", () => {
    expect(() => xmlDocument("R", { N: Number.NaN })).toThrow(TypeError);
  });

  test("output is read back by the AWS SDK's own XML parser", () => {
    const keys = ["plain", "a & b", "<tag>", `q"u'o`, "tab\there", "new\nline", "cr\rhere", "ctl\u0007", "日本🎉"];
    const xml = xmlDocument("ListBucketResult", { Contents: keys.map((Key) => ({ Key })) });
    const parsed = awsSdkParseXml(xml) as { ListBucketResult: { Contents: { Key: string }[] } };
    expect(parsed.ListBucketResult.Contents.map((c) => c.Key)).toEqual(keys);
  });
});

describe("parseXml", () => {
  test("round trip through the writer, including awkward keys", () => {
    const keys = ["a", " lead and trail ", "x&y<z>", `"'`, "line\nbreak", "cr\rhere", "ctl\u0001", "日本🎉"];
    const xml = xmlDocument("Delete", { Quiet: true, Object: keys.map((Key) => ({ Key })) });
    const root = parseXml(xml);
    expect(root.name).toBe("Delete");
    expect(childText(root, "Quiet")).toBe("true");
    expect(children(root, "Object").map((o) => childText(o, "Key"))).toEqual(keys);
  });

  test("a Delete body serialized by the AWS SDK", () => {
    const keys = ["a&b", "line\nbreak", "cr\rhere", "  padded  ", `"quoted"`];
    const body = new AwsSdkXmlNode("Delete")
      .addAttribute("xmlns", S3_XMLNS)
      .addChildNode(AwsSdkXmlNode.of("Quiet", "true"));
    for (const key of keys) body.addChildNode(new AwsSdkXmlNode("Object").addChildNode(AwsSdkXmlNode.of("Key", key)));
    const root = parseXml(body.toString());
    expect(childText(root, "Quiet")).toBe("true");
    expect(children(root, "Object").map((o) => childText(o, "Key"))).toEqual(keys);
  });

  test("a hand-written CompleteMultipartUpload with declaration, comments and whitespace", () => {
    const root = parseXml(`<?xml version="1.0" encoding="UTF-8"?>
      <!-- sent by some client -->
      <CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
        <Part>
          <PartNumber>1</PartNumber>
          <ETag>"a54357aff0632cce46d942af68356b38"</ETag>
        </Part>
        <!-- between parts -->
        <Part><PartNumber>2</PartNumber><ETag>&quot;0c78aef83f66abc1fa1e8477f296d394&quot;</ETag></Part>
      </CompleteMultipartUpload>
      `);
    expect(root.name).toBe("CompleteMultipartUpload");
    expect(root.text).toBe("");
    expect(root.attrs).toEqual({});
    const parts = children(root, "Part");
    expect(parts.map((p) => childText(p, "PartNumber"))).toEqual(["1", "2"]);
    expect(childText(parts[0]!, "ETag")).toBe('"a54357aff0632cce46d942af68356b38"');
    expect(childText(parts[1]!, "ETag")).toBe('"0c78aef83f66abc1fa1e8477f296d394"');
    expect(child(root, "Missing")).toBeUndefined();
    expect(childText(root, "Missing")).toBeUndefined();
  });

  test("entities and numeric references", () => {
    const root = parseXml("<K>&amp;&lt;&gt;&quot;&apos;&#65;&#x42;&#x1F389;&#xD;&#x1;</K>");
    expect(root.text).toBe(`&<>"'AB🎉\r\u0001`);
  });

  test("CDATA is literal and joins surrounding text", () => {
    const root = parseXml("<K>a<![CDATA[<b>&amp;]]>c<![CDATA[]]></K>");
    expect(root.text).toBe("a<b>&amp;c");
  });

  test("namespace prefixes are stripped from elements and attributes", () => {
    const root = parseXml(
      `<s3:Delete xmlns:s3="${S3_XMLNS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">` +
        `<s3:Object xsi:type='Thing' id="7"><s3:Key>k</s3:Key></s3:Object></s3:Delete>`,
    );
    expect(root.name).toBe("Delete");
    expect(root.attrs).toEqual({});
    const obj = child(root, "Object")!;
    expect({ ...obj.attrs }).toEqual({ type: "Thing", id: "7" });
    expect(childText(obj, "Key")).toBe("k");
  });

  test("self-closing elements, empty text, BOM, CRLF line ends", () => {
    const root = parseXml("\uFEFF<R>\r\n<Empty/><Also></Also><V>a\r\nb</V>\r\n</R>");
    expect(root.children.map((c) => c.name)).toEqual(["Empty", "Also", "V"]);
    expect(childText(root, "Empty")).toBe("");
    expect(childText(root, "V")).toBe("a\nb");
  });

  test("a 1000-key Delete body", () => {
    const keys = Array.from({ length: 1000 }, (_, i) => `dir/${i}/obj-${"x".repeat(i % 50)}&${i}`);
    const body = xmlDocument("Delete", { Object: keys.map((Key) => ({ Key })) });
    const root = parseXml(body);
    const objects = children(root, "Object");
    expect(objects.length).toBe(1000);
    expect(objects.map((o) => childText(o, "Key"))).toEqual(keys);
  });

  test("depth up to the limit is accepted, beyond it refused", () => {
    const nest = (n: number) => "<a>".repeat(n) + "</a>".repeat(n);
    expect(parseXml(nest(MAX_XML_DEPTH)).name).toBe("a");
    expect(s3ErrorCode(() => parseXml(nest(MAX_XML_DEPTH + 1)))).toBe("MalformedXML");
    expect(s3ErrorCode(() => parseXml("<a>".repeat(100_000)))).toBe("MalformedXML");
  });

  test("bodies over MAX_XML_BODY are refused", () => {
    const big = `<K>${"x".repeat(MAX_XML_BODY)}</K>`;
    expect(s3ErrorCode(() => parseXml(big))).toBe("MaxMessageLengthExceeded");
  });

  const malformed: Record<string, string> = {
    empty: "",
    "only whitespace": "  \n ",
    "only a declaration": `<?xml version="1.0"?>`,
    "plain text": "hello",
    "unclosed root": "<Delete><Object>",
    "unclosed child": "<Delete><Object></Delete>",
    "mismatched tags": "<a><b></a></b>",
    "stray end tag": "</a>",
    "two roots": "<a/><b/>",
    "text after root": "<a/>junk",
    "text before root": "junk<a/>",
    "unknown entity": "<a>&nbsp;</a>",
    "bare ampersand": "<a>fish & chips</a>",
    "unterminated entity": "<a>&amp</a>",
    "NUL reference": "<a>&#0;</a>",
    "surrogate reference": "<a>&#xD800;</a>",
    "out-of-range reference": "<a>&#x110000;</a>",
    DOCTYPE: '<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
    "DOCTYPE inside": "<a><!DOCTYPE a></a>",
    "unterminated comment": "<a><!-- oops</a>",
    "unterminated CDATA": "<a><![CDATA[ oops</a>",
    "misplaced declaration": `<a><?xml version="1.0"?></a>`,
    "unquoted attribute": "<a x=1/>",
    "duplicate attribute": `<a x="1" x="2"/>`,
    "attribute without space": `<a x="1"y="2"/>`,
    "less-than in attribute": `<a x="<"/>`,
    "bad name": "<1a/>",
    "empty prefix": "<:a/>",
    "bad close": "<a></a x>",
  };
  for (const [label, text] of Object.entries(malformed)) {
    test(`malformed: ${label}`, () => {
      expect(s3ErrorCode(() => parseXml(text))).toBe("MalformedXML");
    });
  }

  test("processing instructions and comments around the root are allowed", () => {
    const root = parseXml(`<?xml version="1.0"?><?pi stuff?><!-- c --><a><?inner?>t</a><!-- after -->\n`);
    expect(root.text).toBe("t");
  });
});
