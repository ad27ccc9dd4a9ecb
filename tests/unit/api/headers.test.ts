// Digests a request declares: one checksum at most, as a header or as a trailer.
import { expect, test } from "bun:test";
import { declaredDigests } from "../../../src/api/s3/headers";
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
