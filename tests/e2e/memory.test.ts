// Memory bound: PUT then GET a 2 GiB object through the real server; the server's peak
// RSS (VmHWM) must stay under 200 MiB, which proves bodies stream and are never buffered.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { createHash, randomBytes } from "node:crypto";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { sdkClient } from "../helpers/clients";

const SIZE = 2 * 1024 ** 3;
const RSS_BOUND = 200 * 1024 ** 2;
const CHUNK = 1024 * 1024;
let server: TestServer;
let s3: S3Client;

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m![1]) * 1024;
}

/** 2 GiB of data that differs in every block (no dedup), produced on the fly. */
function body(hash: ReturnType<typeof createHash>): Readable {
  const base = randomBytes(CHUNK);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= SIZE) return this.push(null);
      const chunk = Buffer.from(base);
      chunk.writeUInt32BE(sent / CHUNK, 0);
      sent += CHUNK;
      hash.update(chunk);
      this.push(chunk);
    },
  });
}

beforeAll(async () => {
  server = await startServer({ compression: "none" });
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: "mem" }));
});

afterAll(async () => {
  await server?.stop();
});

test("a 2 GiB PUT and GET keep the server under 200 MiB RSS", async () => {
  const sent = createHash("sha256");
  await s3.send(new PutObjectCommand({ Bucket: "mem", Key: "big", Body: body(sent), ContentLength: SIZE }));
  const afterPut = peakRss(server.proc.pid);
  const r = await s3.send(new GetObjectCommand({ Bucket: "mem", Key: "big" }));
  expect(r.ContentLength).toBe(SIZE);
  const got = createHash("sha256");
  for await (const chunk of r.Body as AsyncIterable<Uint8Array>) got.update(chunk);
  expect(got.digest("hex")).toBe(sent.digest("hex"));
  const afterGet = peakRss(server.proc.pid);
  console.log(`peak RSS after PUT ${(afterPut / 2 ** 20).toFixed(0)} MiB, after GET ${(afterGet / 2 ** 20).toFixed(0)} MiB`);
  expect(afterGet).toBeLessThan(RSS_BOUND);
}, 300_000);
