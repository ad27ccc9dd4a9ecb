// Conditional writes: If-None-Match: * refuses to overwrite, If-Match needs the current ETag.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
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
