// GET streams blocks out of reused buffers (util/buffer-pool): a buffer goes back to the pool
// only once the socket has taken its bytes. Many concurrent GETs, a slow reader holding its
// buffers under backpressure, ranges that cut blocks, and compressed blocks must all read back
// exactly what was written.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { KiB, MiB, sdkClient, sha256Hex } from "../helpers/clients";

setDefaultTimeout(60_000);
const BUCKET = "stream";
/** Small blocks: many buffers per object, so the pool is reused many times within one GET. */
const BLOCK = 64 * KiB;
let server: TestServer;
let s3: S3Client;
const objects = new Map<string, Uint8Array>();

beforeAll(async () => {
  server = await startServer({ blockSize: BLOCK, compression: 1 });
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const text = new TextEncoder().encode("compressible line of text, again and again\n".repeat(Math.ceil((3 * MiB) / 44))).subarray(0, 3 * MiB);
  const bodies: [string, Uint8Array][] = [
    ["random-a", new Uint8Array(randomBytes(4 * MiB + 123))],
    ["random-b", new Uint8Array(randomBytes(3 * MiB))],
    ["text", text],
  ];
  for (const [key, body] of bodies) {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    objects.set(key, body);
  }
});

afterAll(async () => {
  await server?.stop();
});

async function getBody(key: string, range?: string, slow = false): Promise<Uint8Array> {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, Range: range }));
  const parts: Uint8Array[] = [];
  for await (const chunk of r.Body as AsyncIterable<Uint8Array>) {
    parts.push(new Uint8Array(chunk));
    // A slow reader: the server's socket backs up while other GETs reuse buffers.
    if (slow) await Bun.sleep(5);
  }
  return new Uint8Array(Buffer.concat(parts));
}

test("concurrent GETs, one of them slow, read back every byte", async () => {
  const keys = [...objects.keys()];
  const reads = Array.from({ length: 12 }, (_, i) => {
    const key = keys[i % keys.length]!;
    return getBody(key, undefined, i === 0).then((got) => ({ key, got }));
  });
  for (const { key, got } of await Promise.all(reads)) {
    expect(got.length).toBe(objects.get(key)!.length);
    expect(sha256Hex(got)).toBe(sha256Hex(objects.get(key)!));
  }
});

test("ranges that start and end inside blocks, concurrently", async () => {
  const want = objects.get("random-a")!;
  const ranges: [number, number][] = [
    [1, BLOCK - 2],
    [BLOCK - 10, 3 * BLOCK + 10],
    [5 * BLOCK + 7, 40 * BLOCK + 3],
    [want.length - 200, want.length - 1],
  ];
  const got = await Promise.all(ranges.map(([a, b]) => getBody("random-a", `bytes=${a}-${b}`)));
  ranges.forEach(([a, b], i) => expect(sha256Hex(got[i]!)).toBe(sha256Hex(want.subarray(a, b + 1))));
});
