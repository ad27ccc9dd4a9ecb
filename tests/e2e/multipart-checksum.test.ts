// The request shape of minio-go (hence restic and mc) over HTTPS: CreateMultipartUpload with
// a CRC32C algorithm, parts with their CRC32C, and CompleteMultipartUpload with the composite
// CRC32C of the parts. It completes when the composite matches and is BadDigest otherwise.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { crc32c, crcBase64, MiB, s3Failure, sdkClient, sha256Hex } from "../helpers/clients";

const BUCKET = "composite";
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

async function uploadTwoParts(key: string) {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: "CRC32C" }));
  const bodies = [randomBytes(5 * MiB), randomBytes(1234)];
  const parts = [];
  for (let i = 0; i < bodies.length; i++) {
    const checksum = crcBase64(crc32c(bodies[i]!));
    const r = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body: bodies[i], ChecksumCRC32C: checksum }));
    parts.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumCRC32C: checksum });
  }
  const composite = crcBase64(crc32c(Buffer.concat(parts.map((p) => Buffer.from(p.ChecksumCRC32C, "base64")))));
  return { UploadId, parts, composite, body: Buffer.concat(bodies) };
}

test("Complete with the parts' composite CRC32C (minio-go's shape) completes the object", async () => {
  const { UploadId, parts, composite, body } = await uploadTwoParts("ok");
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "ok", UploadId, ChecksumCRC32C: composite, MultipartUpload: { Parts: parts } }));
  const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "ok" }));
  expect(sha256Hex(await got.Body!.transformToByteArray())).toBe(sha256Hex(body));
});

test("Complete with a composite that does not match is BadDigest and completes nothing", async () => {
  const { UploadId, parts } = await uploadTwoParts("bad");
  const wrong = crcBase64(crc32c(Buffer.from("not the parts")));
  const failure = await s3Failure(s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "bad", UploadId, ChecksumCRC32C: wrong, MultipartUpload: { Parts: parts } })));
  expect(`${failure.status} ${failure.name}`).toBe("400 BadDigest");
  expect((await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "bad" })))).name).toBe("NoSuchKey");
});
