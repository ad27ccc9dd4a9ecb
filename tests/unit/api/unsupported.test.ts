// The refusal table: which headers, query parameters and PostObject form fields each operation
// refuses, with which error, and what passes untouched (what Bunker does, or harmless).
import { describe, expect, test } from "bun:test";
import { refuseUnsupported, refuseUnsupportedFormFields, type RoutedOperation } from "../../../src/api/s3/unsupported";
import { S3Error } from "../../../src/api/s3/errors";

function outcome(f: () => void): string {
  try {
    f();
  } catch (e) {
    if (e instanceof S3Error) return `${e.status} ${e.code}`;
    throw e;
  }
  return "ok";
}

const request = (op: RoutedOperation, headers: Record<string, string>, query = "") => outcome(() => refuseUnsupported(op, new Headers(headers), new URLSearchParams(query)));
const form = (fields: Record<string, string>) => outcome(() => refuseUnsupportedFormFields(new Map(Object.entries(fields))));

describe("headers", () => {
  test("what clients send by default passes on every operation", () => {
    const everyday = {
      "content-type": "text/plain",
      "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
      "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
      "x-amz-sdk-checksum-algorithm": "CRC32",
      "x-amz-checksum-crc32": "AAAAAA==",
      "x-amz-meta-owner": "alice",
      "x-amz-request-payer": "requester",
      "x-amz-acl": "private",
      "x-amz-storage-class": "STANDARD",
      "x-amz-mfa": "123 456",
      "x-amz-bypass-governance-retention": "true",
    };
    for (const op of ["PutObject", "UploadPart", "GetObject", "DeleteObject", "DeleteObjects", "CreateBucket"] as const) expect({ op, r: request(op, everyday) }).toEqual({ op, r: "ok" });
  });

  test("SSE-C is not the table's: its headers pass to the handlers, which check the key", () => {
    const ssec = { "X-Amz-Server-Side-Encryption-Customer-Algorithm": "AES256" };
    for (const op of ["PutObject", "CopyObject", "CreateMultipartUpload", "GetObject", "HeadObject", "UploadPart"] as const) expect(request(op, ssec)).toBe("ok");
  });

  test("accepted values are the ones that describe what Bunker does", () => {
    expect(request("PutObject", { "x-amz-acl": "bucket-owner-full-control" })).toBe("ok");
    expect(request("CreateBucket", { "x-amz-bucket-object-lock-enabled": "False" })).toBe("ok");
    expect(request("CreateBucket", { "x-amz-bucket-object-lock-enabled": "true" })).toBe("501 NotImplemented");
    expect(request("CreateBucket", { "x-amz-object-ownership": "BucketOwnerEnforced" })).toBe("ok");
    expect(request("CreateBucket", { "x-amz-object-ownership": "ObjectWriter" })).toBe("501 NotImplemented");
    expect(request("PutObject", { "x-amz-tagging": "" })).toBe("ok");
    expect(request("PutObject", { "x-amz-tagging": "a=b" })).toBe("ok");
    expect(request("CopyObject", { "x-amz-tagging-directive": "COPY" })).toBe("ok");
    expect(request("CopyObject", { "x-amz-tagging-directive": "MERGE" })).toBe("400 InvalidArgument");
    expect(request("PutObject", { "x-amz-storage-class": "DEEP_ARCHIVE" })).toBe("501 NotImplemented");
    expect(request("CreateMultipartUpload", { "x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-type": "COMPOSITE" })).toBe("ok");
    // Checksum types, and the algorithm/type pairs S3 refuses, are checked by the handler.
    expect(request("CreateMultipartUpload", { "x-amz-checksum-algorithm": "CRC64NVME", "x-amz-checksum-type": "FULL_OBJECT" })).toBe("ok");
    expect(request("CompleteMultipartUpload", { "x-amz-checksum-type": "FULL_OBJECT" })).toBe("ok");
    expect(request("CreateMultipartUpload", { "x-amz-checksum-algorithm": "XXHASH64" })).toBe("501 NotImplemented");
    // The object checksum a client sends with Complete is checked by the handler.
    expect(request("CompleteMultipartUpload", { "x-amz-checksum-crc32": "AAAAAA==" })).toBe("ok");
    expect(request("CompleteMultipartUpload", { "x-amz-checksum-xxhash64": "AAAAAAAAAAA=" })).toBe("501 NotImplemented");
    expect(request("PutObject", { "x-amz-checksum-xxhash64": "AAAAAAAAAAA=" })).toBe("501 NotImplemented");
    expect(request("CopyObject", { "if-match": '"etag"' })).toBe("ok");
    expect(request("PutObject", { "if-match": '"etag"' })).toBe("ok");
  });

  test("ACLs are refused as S3 refuses them on a BucketOwnerEnforced bucket", () => {
    for (const op of ["PutObject", "CopyObject", "CreateMultipartUpload", "PutBucketAcl", "PutObjectAcl"] as const) {
      expect({ op, r: request(op, { "x-amz-acl": "Private" }) }).toEqual({ op, r: "ok" });
      expect({ op, r: request(op, { "x-amz-acl": "bucket-owner-full-control" }) }).toEqual({ op, r: "ok" });
      expect({ op, r: request(op, { "x-amz-acl": "public-read" }) }).toEqual({ op, r: "400 AccessControlListNotSupported" });
      expect({ op, r: request(op, { "x-amz-grant-full-control": 'id="someone"' }) }).toEqual({ op, r: "400 AccessControlListNotSupported" });
      expect({ op, r: request(op, { "x-amz-acl": "world-writable" }) }).toEqual({ op, r: "400 InvalidArgument" });
    }
    expect(request("CreateBucket", { "x-amz-acl": "private" })).toBe("ok");
    expect(request("CreateBucket", { "x-amz-acl": "public-read-write" })).toBe("400 InvalidBucketAclWithObjectOwnership");
    expect(request("CreateBucket", { "x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"' })).toBe("400 InvalidBucketAclWithObjectOwnership");
    expect(request("GetBucketAcl", { "x-amz-acl": "public-read" })).toBe("ok");
  });

  test("a header is refused only on the operations that take it", () => {
    expect(request("GetObject", { "x-amz-tagging": "a=b" })).toBe("ok");
    expect(request("ListObjectsV2", { "x-amz-expected-bucket-owner": "111122223333" })).toBe("501 NotImplemented");
    expect(request("UploadPartCopy", { "x-amz-source-expected-bucket-owner": "111122223333" })).toBe("501 NotImplemented");
  });
});

test("operations whose rules all name exact headers refuse them as the others do, in header order, whatever the case sent", () => {
  for (const op of ["GetObject", "HeadObject", "DeleteObject", "PutObject"] as const) {
    expect(request(op, { "X-Amz-Expected-Bucket-Owner": "111122223333" })).toBe("501 NotImplemented");
    expect(request(op, { "x-amz-source-expected-bucket-owner": "1" })).toBe("501 NotImplemented");
  }
  expect(request("DeleteObject", { "x-amz-if-match-size": "2" })).toBe("501 NotImplemented");
  expect(request("DeleteObject", { "x-amz-if-match-last-modified-time": "Wed, 21 Oct 2015 07:28:00 GMT" })).toBe("501 NotImplemented");
  expect(request("GetObject", { "x-amz-if-match-size": "2" })).toBe("ok");
  // Two refusals: the first header name in sorted order answers, on either path.
  const both = { "x-amz-storage-class": "GLACIER", "x-amz-expected-bucket-owner": "1" };
  const message = (op: RoutedOperation) => {
    try {
      refuseUnsupported(op, new Headers(both), new URLSearchParams());
    } catch (e) {
      return (e as S3Error).message;
    }
  };
  expect(message("GetObject")).toStartWith("x-amz-expected-bucket-owner:");
  expect(message("PutObject")).toStartWith("x-amz-expected-bucket-owner:");
});

describe("query parameters", () => {
  test("versionId: null passes; others are NoSuchVersion or InvalidArgument", () => {
    expect(request("GetObject", {}, "versionId=null")).toBe("ok");
    expect(request("HeadObject", {}, "versionId=3HL4kqtJlcpXroDTDmJ")).toBe("404 NoSuchVersion");
    expect(request("DeleteObject", {}, "versionId=a%2Fb")).toBe("400 InvalidArgument");
    expect(request("ListObjects", {}, "versionId=x")).toBe("ok");
    expect(request("GetObjectAcl", {}, "versionId=null")).toBe("ok");
    expect(request("PutObjectAcl", {}, "versionId=3HL4kqtJlcpXroDTDmJ")).toBe("404 NoSuchVersion");
  });

  test("ListBuckets paging and filters are the handler's (bucket.ts), not refused", () => {
    expect(request("ListBuckets", {}, "x-id=ListBuckets&prefix=a&max-buckets=1&continuation-token=t&bucket-region=r")).toBe("ok");
  });
});

describe("PostObject form fields", () => {
  test("the fields of a plain signed form pass", () => {
    expect(
      form({
        key: "user/${filename}",
        policy: "e30=",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": "GK/20260101/garage/s3/aws4_request",
        "x-amz-date": "20260101T000000Z",
        "x-amz-signature": "00",
        "content-type": "image/jpeg",
        "x-amz-meta-owner": "alice",
        success_action_status: "201",
        acl: "private",
        "x-amz-storage-class": "STANDARD",
      }),
    ).toBe("ok");
  });

  test("fields asking for encryption, tags, lock, ACLs, storage classes or checksums are refused as their headers are", () => {
    expect(form({ "x-amz-server-side-encryption-customer-algorithm": "AES256" })).toBe("ok");
    expect(form({ "x-amz-server-side-encryption": "AES256" })).toBe("501 NotImplemented");
    expect(form({ tagging: "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>" })).toBe("ok");
    expect(form({ "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z" })).toBe("501 NotImplemented");
    expect(form({ acl: "public-read" })).toBe("400 AccessControlListNotSupported");
    expect(form({ "x-amz-storage-class": "GLACIER" })).toBe("501 NotImplemented");
    expect(form({ "x-amz-checksum-crc32": "AAAAAA==" })).toBe("ok");
    expect(form({ "x-amz-checksum-xxhash64": "AAAAAAAAAAA=" })).toBe("501 NotImplemented");
    // The header name of a field that has its own name does not count as that field.
    expect(form({ "x-amz-tagging": "a=b" })).toBe("ok");
  });
});
