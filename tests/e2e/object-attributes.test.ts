// GetObjectAttributes (`GET /bucket/key?attributes`) with @aws-sdk/client-s3 against a real
// server: a single-part object, multipart objects with and without part checksums (the part
// list comes only with checksums, as AWS), paging with x-amz-max-parts and
// x-amz-part-number-marker, the attributes chosen, versionId, the read permission, and the
// errors of a missing key or a bad x-amz-object-attributes.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectAttributesCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type ChecksumAlgorithm,
  type ChecksumType,
  type CompletedPart,
  type ObjectAttributes,
  type S3Client,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { crc32c, crcBase64, md5Hex, MiB, s3Failure, sdkClient } from "../helpers/clients";
import { errorCode, signedFetch } from "../helpers/signed";

// A real server and real clients: bun's 5 s default is too short.
setDefaultTimeout(60_000);

const BUCKET = "attrs";
const ALL: ObjectAttributes[] = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"];
/** Three parts: two of S3's smallest non-last size, and a short last one. */
const PARTS = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(777)];
let server: TestServer;
let s3: S3Client;

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});
afterAll(async () => {
  await server?.stop();
});

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("base64");
const attributes = (key: string, extra: Partial<ConstructorParameters<typeof GetObjectAttributesCommand>[0]> = {}, client = s3) =>
  client.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: key, ObjectAttributes: ALL, ...extra }));

/** A multipart upload of PARTS, with the SDK's part checksums of `algo` when given. */
async function multipart(key: string, algo?: ChecksumAlgorithm, type?: ChecksumType) {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: algo, ChecksumType: type }));
  const parts: CompletedPart[] = [];
  for (const [i, body] of PARTS.entries()) {
    const r = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body: body, ChecksumAlgorithm: algo }));
    parts.push({ PartNumber: i + 1, ETag: r.ETag, ...(algo ? { [`Checksum${algo}`]: r[`Checksum${algo}`] } : {}) });
  }
  return s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
}

describe("GetObjectAttributes", () => {
  test("a single-part object: ETag without quotes, its FULL_OBJECT checksum, no parts, STANDARD, its size, Last-Modified", async () => {
    const body = randomBytes(1000);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "single", Body: body, ChecksumAlgorithm: "SHA256" }));
    const got = await attributes("single");
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "single" }));
    expect({ etag: got.ETag, checksum: got.Checksum, parts: got.ObjectParts, storageClass: got.StorageClass, size: got.ObjectSize }).toEqual({
      etag: md5Hex(body),
      checksum: { ChecksumSHA256: sha256(body), ChecksumType: "FULL_OBJECT" },
      parts: undefined,
      storageClass: "STANDARD",
      size: 1000,
    });
    expect(got.LastModified?.getTime()).toBe(head.LastModified?.getTime());
  });

  test("only the attributes asked for", async () => {
    const got = await attributes("single", { ObjectAttributes: ["ObjectSize", "StorageClass"] });
    expect({ etag: got.ETag, checksum: got.Checksum, storageClass: got.StorageClass, size: got.ObjectSize }).toEqual({ etag: undefined, checksum: undefined, storageClass: "STANDARD", size: 1000 });
  });

  test("a multipart object with part checksums: the object's composite checksum with its part count, every part with its size and checksum", async () => {
    const done = await multipart("mp-sha", "SHA256");
    expect(done.ChecksumSHA256).toMatch(/-3$/);
    const got = await attributes("mp-sha");
    expect(got.ETag).toBe(done.ETag!.replaceAll('"', ""));
    expect(got.Checksum).toEqual({ ChecksumSHA256: done.ChecksumSHA256!, ChecksumType: "COMPOSITE" });
    expect(got.ObjectSize).toBe(10 * MiB + 777);
    expect(got.ObjectParts).toEqual({
      TotalPartsCount: 3,
      PartNumberMarker: "0",
      NextPartNumberMarker: "3",
      MaxParts: 1000,
      IsTruncated: false,
      Parts: PARTS.map((p, i) => ({ PartNumber: i + 1, Size: p.length, ChecksumSHA256: sha256(p) })),
    });
  });

  test("paging the parts with x-amz-max-parts and x-amz-part-number-marker", async () => {
    const done = await multipart("mp-crc", "CRC32C", "FULL_OBJECT");
    const crcs = PARTS.map((p) => crcBase64(crc32c(p)));
    const first = await attributes("mp-crc", { MaxParts: 1, PartNumberMarker: "1" });
    expect(first.Checksum).toEqual({ ChecksumCRC32C: done.ChecksumCRC32C, ChecksumType: "FULL_OBJECT" });
    expect(first.Checksum?.ChecksumCRC32C).toBe(crcBase64(crc32c(Buffer.concat(PARTS))));
    expect(first.ObjectParts).toEqual({
      TotalPartsCount: 3,
      PartNumberMarker: "1",
      NextPartNumberMarker: "2",
      MaxParts: 1,
      IsTruncated: true,
      Parts: [{ PartNumber: 2, Size: 5 * MiB, ChecksumCRC32C: crcs[1] }],
    });
    const rest = await attributes("mp-crc", { MaxParts: 10, PartNumberMarker: first.ObjectParts!.NextPartNumberMarker });
    expect(rest.ObjectParts).toMatchObject({ PartNumberMarker: "2", MaxParts: 10, IsTruncated: false, Parts: [{ PartNumber: 3, Size: 777, ChecksumCRC32C: crcs[2] }] });
    const past = await attributes("mp-crc", { PartNumberMarker: "3" });
    expect(past.ObjectParts).toMatchObject({ TotalPartsCount: 3, IsTruncated: false });
    expect(past.ObjectParts?.Parts ?? []).toEqual([]);
  });

  test("a multipart object without a checksum algorithm: its parts with their sizes (as s3-tests expect)", async () => {
    const done = await multipart("mp-plain");
    const got = await attributes("mp-plain");
    expect({ etag: got.ETag, checksum: got.Checksum }).toEqual({ etag: done.ETag!.replaceAll('"', ""), checksum: undefined });
    expect(got.ObjectParts).toEqual({
      TotalPartsCount: 3,
      PartNumberMarker: "0",
      NextPartNumberMarker: "3",
      MaxParts: 1000,
      IsTruncated: false,
      Parts: PARTS.map((p, i) => ({ PartNumber: i + 1, Size: p.length })),
    });
  });

  test("versionId: null is the object; another is 404 NoSuchVersion", async () => {
    expect((await attributes("single", { VersionId: "null" })).ObjectSize).toBe(1000);
    expect(await s3Failure(attributes("single", { VersionId: "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY" }))).toMatchObject({ name: "NoSuchVersion", status: 404 });
  });

  test("a missing key is 404 NoSuchKey", async () => {
    expect(await s3Failure(attributes("missing"))).toMatchObject({ name: "NoSuchKey", status: 404 });
  });

  test("x-amz-object-attributes missing or empty: 400 InvalidRequest; an unknown name: 400 InvalidArgument, before the key is looked up", async () => {
    const variants: Record<string, string>[] = [{}, { "x-amz-object-attributes": "" }, { "x-amz-object-attributes": " , " }];
    for (const headers of variants) {
      const r = await signedFetch(server, "GET", `/${BUCKET}/single?attributes`, { headers });
      expect({ headers, status: r.status, code: errorCode(await r.text()) }).toEqual({ headers, status: 400, code: "InvalidRequest" });
    }
    expect(await s3Failure(attributes("missing", { ObjectAttributes: ["ETag", "Owner" as ObjectAttributes] }))).toMatchObject({ name: "InvalidArgument", status: 400 });
    const bad = await signedFetch(server, "GET", `/${BUCKET}/single?attributes`, { headers: { "x-amz-object-attributes": "ETag", "x-amz-max-parts": "-1" } });
    expect({ status: bad.status, code: errorCode(await bad.text()) }).toEqual({ status: 400, code: "InvalidArgument" });
  });

  test("needs read permission: a write-only key is AccessDenied, a read-only key reads", async () => {
    const bucket = await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`);
    const client = async (name: string, permissions: Record<string, boolean>) => {
      const key = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name });
      await server.admin("POST", "/v2/AllowBucketKey", { bucketId: bucket.id, accessKeyId: key.accessKeyId, permissions });
      return sdkClient(server, { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey });
    };
    expect(await s3Failure(attributes("single", {}, await client("writer", { write: true })))).toMatchObject({ name: "AccessDenied", status: 403 });
    expect((await attributes("single", {}, await client("reader", { read: true }))).ObjectSize).toBe(1000);
  });
});
