// Small XML request bodies (CORS, website, lifecycle, DeleteObjects, CreateBucket) are checked
// against the Content-MD5 and x-amz-checksum-* their client declared, as object bodies are: a
// document that arrived damaged is refused with BadDigest and changes nothing.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { CreateBucketCommand, GetBucketCorsCommand, PutObjectCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { crc32c, crcBase64, s3Failure, sdkClient } from "../helpers/clients";
import { errorCode, signedFetch } from "../helpers/signed";

const BUCKET = "digests";
let server: TestServer;
let s3: S3Client;

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "keep", Body: "x" }));
});
afterAll(async () => {
  await server?.stop();
});

const CORS = `<CORSConfiguration><CORSRule><AllowedOrigin>https://app.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>`;
const DELETE = `<Delete><Object><Key>keep</Key></Object></Delete>`;
const md5 = (s: string) => createHash("md5").update(s).digest("base64");

test("a wrong Content-MD5 or x-amz-checksum-* on an XML body is BadDigest and changes nothing", async () => {
  const wrong: Record<string, string>[] = [
    { "content-md5": md5("something else") },
    { "x-amz-checksum-crc32c": crcBase64(crc32c(new TextEncoder().encode("something else"))) },
    { "x-amz-checksum-sha256": createHash("sha256").update("something else").digest("base64") },
  ];
  for (const headers of wrong) {
    const cors = await signedFetch(server, "PUT", `/${BUCKET}?cors`, { body: CORS, headers });
    expect(`${cors.status} ${errorCode(await cors.text())}`).toBe("400 BadDigest");
    const del = await signedFetch(server, "POST", `/${BUCKET}?delete`, { body: DELETE, headers });
    expect(`${del.status} ${errorCode(await del.text())}`).toBe("400 BadDigest");
  }
  expect((await s3Failure(s3.send(new GetBucketCorsCommand({ Bucket: BUCKET })))).name).toBe("NoSuchCORSConfiguration");
  await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "keep" }));
});

test("the right digests are accepted", async () => {
  const cors = await signedFetch(server, "PUT", `/${BUCKET}?cors`, {
    body: CORS,
    headers: { "content-md5": md5(CORS), "x-amz-checksum-crc32c": crcBase64(crc32c(new TextEncoder().encode(CORS))) },
  });
  expect(cors.status).toBe(200);
  expect((await s3.send(new GetBucketCorsCommand({ Bucket: BUCKET }))).CORSRules?.length).toBe(1);
});
