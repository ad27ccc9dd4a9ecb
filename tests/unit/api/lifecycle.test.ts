// What PutBucketLifecycleConfiguration accepts and refuses, and that GetBucketLifecycle's
// document parses back to the same rules.
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
      { id: "a", enabled: true, filter: { prefix: "logs/", sizeGreaterThan: null, sizeLessThan: null }, expiration: { days: 30 }, abortIncompleteUploadDays: null },
      { id: "b", enabled: false, filter: { prefix: "tmp/", sizeGreaterThan: 10, sizeLessThan: 2000 }, expiration: { date: "2027-01-01T00:00:00.000Z" }, abortIncompleteUploadDays: null },
      { id: "c", enabled: true, filter: { prefix: "old/", sizeGreaterThan: null, sizeLessThan: null }, expiration: { days: 1 }, abortIncompleteUploadDays: null },
      { id: null, enabled: true, filter: { prefix: "", sizeGreaterThan: null, sizeLessThan: null }, expiration: null, abortIncompleteUploadDays: 7 },
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
    expect(codeOf(rule(`<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>${exp}`))).toBe("NotImplemented");
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>`))).toBe("NotImplemented");
    expect(codeOf(rule(`<Filter/><Status>Enabled</Status><Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>`))).toBe("NotImplemented");
    expect(codeOf(doc(`<Rule><ID>x</ID><Filter/><Status>Enabled</Status>${exp}</Rule>`.repeat(2)))).toBe("InvalidArgument"); // same ID twice
  });
});
