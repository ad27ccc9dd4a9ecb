// Crash safety: SIGKILL the server during a large upload and during CompleteMultipartUpload,
// restart it, and check that every acknowledged object reads back byte-identical and that
// nothing half-written is visible.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Readable } from "node:stream";
import { createHash, randomBytes } from "node:crypto";
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { sdkClient } from "../helpers/clients";

let server: TestServer;
let s3: S3Client;
const BUCKET = "crash";

async function sha256Of(key: string): Promise<string> {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const h = createHash("sha256");
  for await (const chunk of r.Body as AsyncIterable<Uint8Array>) h.update(chunk);
  return h.digest("hex");
}

async function listKeys(): Promise<{ key: string; size: number }[]> {
  const r = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
  return (r.Contents ?? []).map((c) => ({ key: c.Key!, size: c.Size! }));
}

async function restart(): Promise<void> {
  await server.restart();
  s3 = sdkClient(server);
}

beforeAll(async () => {
  // Small blocks: more blocks and more metadata writes per upload, so kills land mid-way.
  server = await startServer({ blockSize: 64 * 1024, extraToml: "data_fsync = true\nmetadata_fsync = true" });
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  await server?.stop();
});

test("SIGKILL during a large PUT leaves the previous version intact", async () => {
  const v1 = randomBytes(3 * 1024 * 1024 + 123);
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "obj", Body: v1 }));
  const v1Hash = createHash("sha256").update(v1).digest("hex");

  const total = 256 * 1024 * 1024;
  let sent = 0;
  const slow = new Readable({
    read() {
      if (sent >= total) return this.push(null);
      const chunk = randomBytes(256 * 1024);
      sent += chunk.length;
      setTimeout(() => this.push(chunk), 2);
    },
  });
  const upload = s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "obj", Body: slow, ContentLength: total })).catch((e) => e);
  while (sent < 24 * 1024 * 1024) await Bun.sleep(20);
  await server.kill();
  const outcome = await upload;
  expect(outcome).toBeInstanceOf(Error);

  await restart();
  expect(await sha256Of("obj")).toBe(v1Hash);
  expect(await listKeys()).toEqual([{ key: "obj", size: v1.length }]);
}, 120_000);

test("SIGKILL during CompleteMultipartUpload never exposes a partial object", async () => {
  const PART = 5 * 1024 * 1024;
  const PARTS = 6;
  for (let round = 0; round < 3; round++) {
    const key = `mpu-${round}`;
    const parts = Array.from({ length: PARTS }, () => randomBytes(PART));
    const whole = createHash("sha256");
    for (const p of parts) whole.update(p);
    const expected = whole.digest("hex");
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const etags: string[] = [];
    for (let i = 0; i < PARTS; i++) {
      const r = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body: parts[i] }));
      etags.push(r.ETag!);
    }
    const complete = s3
      .send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      )
      .then(
        () => "acknowledged" as const,
        () => "failed" as const,
      );
    await Bun.sleep(5 + round * 15);
    await server.kill();
    const outcome = await complete;
    await restart();

    const listed = (await listKeys()).find((k) => k.key === key);
    if (outcome === "acknowledged") expect(listed).toBeDefined();
    if (listed) {
      // Visible means whole: size and content match exactly.
      expect(listed.size).toBe(PART * PARTS);
      expect(await sha256Of(key)).toBe(expected);
    }
  }
  // The object from the first test is still intact after all these kills.
  expect((await listKeys()).find((k) => k.key === "obj")).toBeDefined();
}, 180_000);
