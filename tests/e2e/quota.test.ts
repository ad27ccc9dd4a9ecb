// Bucket quotas on a real server: set through the admin API, enforced on PutObject, CopyObject and CompleteMultipartUpload; a refused write leaves the
// bucket as it was; replacing an object counts only the difference.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { KiB, MiB, s3Failure, sdkClient } from "../helpers/clients";

setDefaultTimeout(60_000);

const BUCKET = "quota-bucket";
let server: TestServer;
let s3: S3Client;
let bucketId: string;

interface Info {
  objects: number;
  bytes: number;
  quotas: { maxSize: number | null; maxObjects: number | null };
}

const info = () => server.admin<Info>("GET", `/v2/GetBucketInfo?id=${bucketId}`);
const setQuotas = (quotas: { maxSize: number | null; maxObjects: number | null }) => server.admin<Info>("POST", `/v2/UpdateBucket?id=${bucketId}`, { quotas });

const refusal = s3Failure;

const put = (Key: string, size: number) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: new Uint8Array(size).fill(7) }));

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  bucketId = (await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`)).id;
});

afterAll(async () => {
  await server?.stop();
});

test("quotas are set, shown and validated through the admin API", async () => {
  expect((await info()).quotas).toEqual({ maxSize: null, maxObjects: null });
  expect((await setQuotas({ maxSize: null, maxObjects: 3 })).quotas).toEqual({ maxSize: null, maxObjects: 3 });
  const bad = await fetch(`http://127.0.0.1:${server.adminPort}/v2/UpdateBucket?id=${bucketId}`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ quotas: { maxSize: -1, maxObjects: null } }),
  });
  expect(bad.status).toBe(400);
  expect((await info()).quotas).toEqual({ maxSize: null, maxObjects: 3 });
  // The CLI reads "1M" as Garage does (10^6 bytes) and keeps the limit it is not given.
  const cli = await server.cli("bucket", "set-quotas", BUCKET, "--max-size", "1M");
  expect(cli.code).toBe(0);
  expect((await info()).quotas).toEqual({ maxSize: 1_000_000, maxObjects: 3 });
  expect((await server.cli("bucket", "set-quotas", BUCKET, "--max-size", "none")).code).toBe(0);
  expect((await info()).quotas).toEqual({ maxSize: null, maxObjects: 3 });
});

test("max objects: the write past it is refused; overwrites and writes after a delete pass", async () => {
  for (const k of ["a", "b", "c"]) await put(k, 10);
  const refused = await refusal(put("d", 10));
  expect(refused).toMatchObject({ name: "AccessDenied", status: 403 });
  expect(refused.message).toContain("at most 3 objects");
  await put("a", 20); // replaces: still 3 objects
  await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "c" }));
  await put("d", 10);
  expect(await info()).toMatchObject({ objects: 3, bytes: 40 });
  await expect(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "c" }))).rejects.toThrow();
});

test("max size: bodies, copies and multipart completions past it are refused", async () => {
  await setQuotas({ maxSize: 2 * MiB, maxObjects: null });
  // 40 bytes stored: 2 MiB - 40 left.
  expect((await refusal(put("big", 2 * MiB))).message).toContain("at most 2097152 bytes");
  await put("one", MiB);
  expect((await refusal(s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "copy", CopySource: `${BUCKET}/one` })))).status).toBe(403);
  // Replacing "one" by a smaller body always passes.
  await put("one", 512 * KiB);

  // The parts go in while no size quota is set (a part past the quota is refused: below).
  await setQuotas({ maxSize: null, maxObjects: null });
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "mpu" }));
  const parts = [];
  for (let n = 1; n <= 2; n++) {
    const r = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mpu", UploadId, PartNumber: n, Body: new Uint8Array(n === 1 ? 5 * MiB : KiB) }));
    parts.push({ PartNumber: n, ETag: r.ETag });
  }
  await setQuotas({ maxSize: 2 * MiB, maxObjects: null });
  const completed = s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "mpu", UploadId, MultipartUpload: { Parts: parts } }));
  expect((await refusal(completed)).status).toBe(403);
  // A part bigger than what is left of the size quota is refused too.
  const tooBig = s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mpu", UploadId, PartNumber: 3, Body: new Uint8Array(2 * MiB) }));
  expect((await refusal(tooBig)).status).toBe(403);
  expect(await info()).toMatchObject({ objects: 4, bytes: 40 + 512 * KiB });

  // Lifting the quota lets the same completion through.
  await setQuotas({ maxSize: null, maxObjects: null });
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "mpu", UploadId, MultipartUpload: { Parts: parts } }));
  expect((await info()).objects).toBe(5);
});
