// Conditional writes: If-None-Match: * refuses to overwrite, If-Match needs the current ETag.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { CopyObjectCommand, CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { sdkClient } from "../helpers/clients";

let server: TestServer;
let s3: S3Client;

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: "cond" }));
});

afterAll(async () => {
  await server?.stop();
});

test("If-None-Match: * creates once and then refuses with 412", async () => {
  await s3.send(new PutObjectCommand({ Bucket: "cond", Key: "k", Body: "first", IfNoneMatch: "*" }));
  const err = await s3.send(new PutObjectCommand({ Bucket: "cond", Key: "k", Body: "second", IfNoneMatch: "*" })).catch((e) => e);
  expect(err.$metadata.httpStatusCode).toBe(412);
  const r = await s3.send(new GetObjectCommand({ Bucket: "cond", Key: "k" }));
  expect(await r.Body!.transformToString()).toBe("first");
});

test("If-Match overwrites only the expected version", async () => {
  const put = await s3.send(new PutObjectCommand({ Bucket: "cond", Key: "m", Body: "v1" }));
  const stale = await s3.send(new PutObjectCommand({ Bucket: "cond", Key: "m", Body: "x", IfMatch: '"00000000000000000000000000000000"' })).catch((e) => e);
  expect(stale.$metadata.httpStatusCode).toBe(412);
  await s3.send(new PutObjectCommand({ Bucket: "cond", Key: "m", Body: "v2", IfMatch: put.ETag }));
  const r = await s3.send(new GetObjectCommand({ Bucket: "cond", Key: "m" }));
  expect(await r.Body!.transformToString()).toBe("v2");
  const missing = await s3.send(new PutObjectCommand({ Bucket: "cond", Key: "absent", Body: "x", IfMatch: put.ETag })).catch((e) => e);
  expect(missing.$metadata.httpStatusCode).toBe(404);
});

test("a conditional write of a body past the inline size, a conditional copy and a conditional delete", async () => {
  const big = "b".repeat(200 * 1024);
  await s3.send(new PutObjectCommand({ Bucket: "cond", Key: "big", Body: big, IfNoneMatch: "*" }));
  const again = await s3.send(new PutObjectCommand({ Bucket: "cond", Key: "big", Body: "x", IfNoneMatch: "*" })).catch((e) => e);
  expect(again.$metadata.httpStatusCode).toBe(412);
  expect(await (await s3.send(new GetObjectCommand({ Bucket: "cond", Key: "big" }))).Body!.transformToString()).toBe(big);
  // CopyObject's destination conditions (AWS: If-None-Match / If-Match on the destination).
  const copied = await s3.send(new CopyObjectCommand({ Bucket: "cond", Key: "copy", CopySource: "cond/big", IfNoneMatch: "*" }));
  expect(copied.CopyObjectResult?.ETag).toBeDefined();
  const refused = await s3.send(new CopyObjectCommand({ Bucket: "cond", Key: "copy", CopySource: "cond/big", IfNoneMatch: "*" })).catch((e) => e);
  expect(refused.$metadata.httpStatusCode).toBe(412);
  const wrongEtag = await s3.send(new DeleteObjectCommand({ Bucket: "cond", Key: "copy", IfMatch: '"00000000000000000000000000000000"' })).catch((e) => e);
  expect(wrongEtag.$metadata.httpStatusCode).toBe(412);
  await s3.send(new DeleteObjectCommand({ Bucket: "cond", Key: "copy", IfMatch: copied.CopyObjectResult!.ETag }));
  const gone = await s3.send(new GetObjectCommand({ Bucket: "cond", Key: "copy" })).catch((e) => e);
  expect(gone.$metadata.httpStatusCode).toBe(404);
});
