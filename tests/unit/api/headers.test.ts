// Digests a request declares: one checksum at most, as a header or as a trailer.
import { expect, test } from "bun:test";
import { declaredDigests, storedContentEncoding, storedHeaders } from "../../../src/api/s3/headers";
import { S3Error } from "../../../src/api/s3/errors";

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof S3Error ? e.code : String(e);
  }
  return undefined;
}

test("a checksum header and a checksum trailer together are refused (the header would go unchecked)", () => {
  const both = new Headers({ "x-amz-checksum-crc64nvme": "AAAAAAAAAAA=", "x-amz-trailer": "x-amz-checksum-crc32" });
  expect(codeOf(() => declaredDigests(both))).toBe("InvalidRequest");
  expect(declaredDigests(new Headers({ "x-amz-trailer": "x-amz-checksum-crc32" }))).toMatchObject({ checksumAlgorithm: "CRC32", checksumInTrailer: true });
  expect(declaredDigests(new Headers({ "x-amz-checksum-crc32": "AAAAAA==" }))).toMatchObject({ checksumAlgorithm: "CRC32", checksumValue: "AAAAAA==" });
});

// Ceph s3-tests test_object_content_encoding_aws_chunked: what a client sends comes back as
// sent, less the aws-chunked framing coding.
test.each([
  ["gzip", "gzip"],
  ["deflate, gzip", "deflate, gzip"],
  ["deflate,gzip", "deflate,gzip"],
  ["gzip, aws-chunked", "gzip"],
  ["aws-chunked, gzip", "gzip"],
  ["aws-chunked,gzip", "gzip"],
  ["deflate, aws-chunked, gzip", "deflate, gzip"],
  ["AWS-Chunked, br", "br"],
  ["aws-chunked", undefined],
  ["aws-chunked, aws-chunked", undefined],
  ["", undefined],
  ["  ", undefined],
])("Content-Encoding %p is stored as %p", (sent, stored) => {
  expect(storedContentEncoding(sent)).toBe(stored);
  const headers = storedHeaders(new Headers({ "content-encoding": sent }));
  expect(headers.find(([n]) => n === "content-encoding")?.[1]).toBe(stored);
});
