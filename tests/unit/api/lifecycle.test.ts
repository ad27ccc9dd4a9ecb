// What PutBucketLifecycleConfiguration accepts and refuses, and that GetBucketLifecycle's
// document parses back to the same rules, written the way they were (Prefix, Filter, And).
import { describe, expect, test } from "bun:test";
import { lifecycleConfigurationXml, parseLifecycleConfiguration } from "../../../src/api/s3/lifecycle";
import type { S3Error } from "../../../src/api/s3/errors";

const doc = (rules: string) => `<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${rules}</LifecycleConfiguration>`;
const codeOf = (xml: string) => {
  try {
    parseLifecycleConfiguration(xml);
  } catch (e) {
    return (e as S3Error).code;
  }
  return "ok";
};

describe("parseLifecycleConfiguration", () => {
  test("filters (prefix, sizes with And, legacy Prefix, empty), expiration by days or date, upload cleanup", () => {
    const rules = parseLifecycleConfiguration(
      doc(
        `<Rule><ID>a</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule>` +
          `<Rule><ID>b</ID><Filter><And><Prefix>tmp/</Prefix><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan><ObjectSizeLessThan>2000</ObjectSizeLessThan></And></Filter><Status>Disabled</Status><Expiration><Date>2027-01-01T00:00:00Z</Date></Expiration></Rule>` +
          `<Rule><ID>c</ID><Prefix>old/</Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>` +
          `<Rule><Filter/><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>7</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>`,
      ),
    );
    expect(rules).toEqual([
      { id: "a", enabled: true, filter: { prefix: "logs/", sizeGreaterThan: null, sizeLessThan: null, tags: [], syntax: "filter", prefixElement: true }, expiration: { days: 30 }, abortIncompleteUploadDays: null },
      { id: "b", enabled: false, filter: { prefix: "tmp/", sizeGreaterThan: 10, sizeLessThan: 2000, tags: [], syntax: "and", prefixElement: true }, expiration: { date: "2027-01-01T00:00:00.000Z" }, abortIncompleteUploadDays: null },
      { id: "c", enabled: true, filter: { prefix: "old/", sizeGreaterThan: null, sizeLessThan: null, tags: [], syntax: "prefix" }, expiration: { days: 1 }, abortIncompleteUploadDays: null },
      { id: null, enabled: true, filter: { prefix: "", sizeGreaterThan: null, sizeLessThan: null, tags: [], syntax: "filter", prefixElement: false }, expiration: null, abortIncompleteUploadDays: 7 },
    ]);
    expect(parseLifecycleConfiguration(lifecycleConfigurationXml(rules))).toEqual(rules);
  });

  test("refusals", () => {
    const rule = (inner: string) => doc(`<Rule>${inner}</Rule>`);
    const exp = "<Expiration><Days>1</Days></Expiration>";
    expect(codeOf("")).toBe("MalformedXML");
    expect(codeOf(doc(""))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter/>${exp}`))).toBe("MalformedXML"); // no Status
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status>`))).toBe("InvalidRequest"); // no action
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Expiration><Days>0</Days></Expiration>`))).toBe("InvalidArgument");
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Expiration><Days>1</Days><Date>2027-01-01T00:00:00Z</Date></Expiration>`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Expiration><Date>2027-01-01T10:00:00Z</Date></Expiration>`))).toBe("InvalidArgument");
    expect(codeOf(rule(`<Filter><Prefix>a</Prefix><ObjectSizeLessThan>5</ObjectSizeLessThan></Filter><Status>Enabled</Status>${exp}`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter><And><ObjectSizeGreaterThan>5</ObjectSizeGreaterThan><ObjectSizeLessThan>5</ObjectSizeLessThan></And></Filter><Status>Enabled</Status>${exp}`))).toBe("InvalidArgument");
    expect(codeOf(rule(`<Prefix>a</Prefix><Filter/><Status>Enabled</Status>${exp}`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter><Tag><Key>k</Key><Value>v</Value></Tag><Prefix>a</Prefix></Filter><Status>Enabled</Status>${exp}`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter><And><Tag><Key>k</Key><Value>v</Value></Tag><Tag><Key>k</Key><Value>w</Value></Tag></And></Filter><Status>Enabled</Status>${exp}`))).toBe("InvalidTag");
    expect(codeOf(rule(`<Filter><Tag><Key>k</Key></Tag></Filter><Status>Enabled</Status>${exp}`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation></AbortIncompleteMultipartUpload>`))).toBe("InvalidRequest");
    // A condition not understood would widen the rule: refused, never ignored.
    expect(codeOf(rule(`<Filter><Prefx>logs/</Prefx></Filter><Status>Enabled</Status>${exp}`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter><And><Prefix>a</Prefix><Prefix>b</Prefix></And></Filter><Status>Enabled</Status>${exp}`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter><And/></Filter><Status>Enabled</Status>${exp}`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>`))).toBe("NotImplemented");
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>yes</ExpiredObjectDeleteMarker></Expiration>`))).toBe("MalformedXML");
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Expiration><Days>1</Days><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>`))).toBe("InvalidArgument");
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Expiration/>`))).toBe("MalformedXML");
    expect(codeOf(doc(`<Rule><ID>x</ID><Filter/><Status>Enabled</Status>${exp}</Rule>`.repeat(2)))).toBe("InvalidArgument"); // same ID twice
  });
});

describe("rules read back as written", () => {
  // Each rule as a client writes it, and as GetBucketLifecycleConfiguration answers it.
  const written = [
    `<Rule><ID>legacy</ID><Prefix>test1/</Prefix><Status>Enabled</Status><Expiration><Days>31</Days></Expiration></Rule>`,
    `<Rule><ID>legacy-all</ID><Prefix></Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>`,
    `<Rule><ID>filter-prefix</ID><Filter><Prefix>foo</Prefix></Filter><Status>Enabled</Status><Expiration><Days>2</Days></Expiration></Rule>`,
    `<Rule><ID>empty-filter</ID><Filter></Filter><Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>`,
    `<Rule><ID>empty-prefix</ID><Filter><Prefix></Prefix></Filter><Status>Disabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>3</DaysAfterInitiation></AbortIncompleteMultipartUpload></Rule>`,
    `<Rule><ID>one-tag</ID><Filter><Tag><Key>class</Key><Value>scratch</Value></Tag></Filter><Status>Enabled</Status><Expiration><Days>4</Days></Expiration></Rule>`,
    `<Rule><ID>bigger</ID><Filter><ObjectSizeGreaterThan>1000</ObjectSizeGreaterThan></Filter><Status>Enabled</Status><Expiration><Days>5</Days></Expiration></Rule>`,
    `<Rule><ID>and-tags</ID><Filter><And><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>b</Key><Value></Value></Tag></And></Filter><Status>Enabled</Status><Expiration><Days>6</Days></Expiration></Rule>`,
    `<Rule><ID>and-all</ID><Filter><And><Prefix>logs/</Prefix><Tag><Key>a</Key><Value>1</Value></Tag><ObjectSizeGreaterThan>1</ObjectSizeGreaterThan><ObjectSizeLessThan>9</ObjectSizeLessThan></And></Filter><Status>Enabled</Status><Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration></Rule>`,
    `<Rule><ID>neither</ID><Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>false</ExpiredObjectDeleteMarker></Expiration></Rule>`,
  ];

  test("Prefix, Filter, Filter/And and neither; tags; ExpiredObjectDeleteMarker", () => {
    for (const rule of written) expect(lifecycleConfigurationXml(parseLifecycleConfiguration(doc(rule)))).toBe(`<?xml version="1.0" encoding="UTF-8"?>${doc(rule)}`);
  });

  test("the parsed tag filter is exposed in the rule", () => {
    const [rule] = parseLifecycleConfiguration(doc(written[8]!));
    expect(rule!.filter).toEqual({ prefix: "logs/", sizeGreaterThan: 1, sizeLessThan: 9, tags: [["a", "1"]], syntax: "and", prefixElement: true });
  });

  test("rules stored before the syntax was kept read back as a Filter", () => {
    const old = { id: "x", enabled: true, filter: { prefix: "p/", sizeGreaterThan: 5, sizeLessThan: null }, expiration: { days: 1 }, abortIncompleteUploadDays: null };
    expect(lifecycleConfigurationXml([old])).toContain("<Filter><And><Prefix>p/</Prefix><ObjectSizeGreaterThan>5</ObjectSizeGreaterThan></And></Filter>");
  });
});
