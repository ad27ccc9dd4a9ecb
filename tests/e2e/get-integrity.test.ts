// A GET never answers 200 with less than the object. A GET that resolved a version before an
// overwrite or a delete still sends that version whole (its block list outlives it by the read
// grace); a GET whose data cannot be reached before the first byte is an S3 error, not a 200;
// a failure after the first byte cuts the connection short of the Content-Length that was
// sent. Checked on the raw bytes a client receives, on one node and on a 3-node cluster, for
// GET, ranged GET, the web endpoint and UploadPartCopy.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutBucketWebsiteCommand,
  PutObjectCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { startServer, WEB_ROOT_DOMAIN, type TestServer } from "../helpers/server";
import { startCluster, type TestCluster } from "../helpers/cluster";
import { KiB, MiB, sdkClient, sha256Hex, s3Failure } from "../helpers/clients";
import { rawGet } from "../helpers/raw-http";

setDefaultTimeout(90_000);

/** Small blocks: an object spans many block-list rows and blocks. */
const BLOCK = 64 * KiB;
/**
 * Larger than the loopback socket buffers by far, so a paused client holds the server mid-object
 * (past its first page of block rows, before the last).
 */
const BIG = 40 * MiB;
/** Time for the cascading-insert queue (200 ms period) to apply what an overwrite released. */
const CASCADE_SETTLE_MS = 1500;

async function presignedPath(s3: S3Client, bucket: string, key: string, extra: { Range?: string } = {}): Promise<string> {
  const url = new URL(await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key, ...extra }), { expiresIn: 600 }));
  return url.pathname + url.search;
}

/** Starts a raw GET, reads its head and a little of the body, then stops reading. */
async function startPausedGet(port: number, path: string, headers: Record<string, string> = {}) {
  const ex = rawGet(port, path, `localhost:${port}`, headers);
  const head = await ex.head;
  ex.pause();
  return { ex, head };
}

function dataFiles(server: TestServer): string[] {
  const root = join(server.dir, "data");
  return (readdirSync(root, { recursive: true }) as string[]).filter((f) => /[0-9a-f]{64}(\.zst)?$/.test(f)).map((f) => join(root, f));
}

describe("one node, default read grace", () => {
  let server: TestServer;
  let s3: S3Client;
  beforeAll(async () => {
    server = await startServer({ blockSize: BLOCK, compression: "none" });
    s3 = sdkClient(server);
    await s3.send(new CreateBucketCommand({ Bucket: "grace" }));
  });
  afterAll(async () => {
    await server?.stop();
  });

  for (const change of ["overwrite", "delete"] as const) {
    test(`a GET that started before an ${change} sends the old object whole`, async () => {
      const key = `atomic-${change}`;
      const old = randomBytes(BIG);
      await s3.send(new PutObjectCommand({ Bucket: "grace", Key: key, Body: old }));
      const { ex, head } = await startPausedGet(server.s3Port, await presignedPath(s3, "grace", key));
      expect(head.status).toBe(200);
      expect(head.headers.get("content-length")).toBe(String(BIG));
      if (change === "overwrite") await s3.send(new PutObjectCommand({ Bucket: "grace", Key: key, Body: randomBytes(BIG) }));
      else await s3.send(new DeleteObjectCommand({ Bucket: "grace", Key: key }));
      await Bun.sleep(CASCADE_SETTLE_MS);
      ex.resume();
      const got = await ex.done;
      expect(got.body.length).toBe(BIG);
      expect(sha256Hex(got.body)).toBe(sha256Hex(old));
    });
  }

  test("a ranged GET over the same race gets its whole range", async () => {
    const old = randomBytes(BIG);
    await s3.send(new PutObjectCommand({ Bucket: "grace", Key: "atomic-range", Body: old }));
    const start = 3 * BLOCK + 17;
    const end = BIG - 5 * BLOCK;
    const { ex, head } = await startPausedGet(server.s3Port, await presignedPath(s3, "grace", "atomic-range", { Range: `bytes=${start}-${end}` }), { Range: `bytes=${start}-${end}` });
    expect(head.status).toBe(206);
    await s3.send(new PutObjectCommand({ Bucket: "grace", Key: "atomic-range", Body: Buffer.from("short") }));
    await Bun.sleep(CASCADE_SETTLE_MS);
    ex.resume();
    const got = await ex.done;
    expect(sha256Hex(got.body)).toBe(sha256Hex(old.subarray(start, end + 1)));
  });

  test("blocks out of reach before the first byte: GET, ranged GET, web GET and UploadPartCopy answer an S3 error, never a 200", async () => {
    const body = randomBytes(3 * BLOCK + 100); // several blocks: the streamed path
    await s3.send(new PutObjectCommand({ Bucket: "grace", Key: "lost", Body: body }));
    await s3.send(new PutBucketWebsiteCommand({ Bucket: "grace", WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" } } }));
    for (const f of dataFiles(server)) rmSync(f);

    for (const range of [undefined, `bytes=${BLOCK + 1}-${2 * BLOCK}`]) {
      const got = await rawGet(server.s3Port, await presignedPath(s3, "grace", "lost", range ? { Range: range } : {}), `localhost:${server.s3Port}`, range ? { Range: range } : {}).done;
      expect(got.status).toBe(503);
      expect(got.body.toString()).toContain("<Code>ServiceUnavailable</Code>");
    }
    const web = await rawGet(server.webPort, "/lost", `grace.${WEB_ROOT_DOMAIN}`).done;
    expect(web.status).toBe(503);

    const upload = await s3.send(new CreateMultipartUploadCommand({ Bucket: "grace", Key: "copy-of-lost" }));
    const failure = await s3Failure(
      s3.send(new UploadPartCopyCommand({ Bucket: "grace", Key: "copy-of-lost", UploadId: upload.UploadId, PartNumber: 1, CopySource: "grace/lost" })),
    );
    expect(failure.status).toBe(503);
    expect(server.logs()).not.toContain("InternalError");
  });
});

describe("one node, no read grace: a failure after the first byte is a visible truncation", () => {
  let server: TestServer;
  let s3: S3Client;
  beforeAll(async () => {
    server = await startServer({ blockSize: BLOCK, compression: "none", env: { BUNKER_READ_GRACE_MS: "0" } });
    s3 = sdkClient(server);
    await s3.send(new CreateBucketCommand({ Bucket: "grace" }));
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("the Content-Length was sent, fewer bytes arrive, and the server closes the connection", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "grace", Key: "cut", Body: randomBytes(BIG) }));
    const { ex, head } = await startPausedGet(server.s3Port, await presignedPath(s3, "grace", "cut"));
    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String(BIG));
    await s3.send(new PutObjectCommand({ Bucket: "grace", Key: "cut", Body: Buffer.from("new") }));
    await Bun.sleep(CASCADE_SETTLE_MS);
    ex.resume();
    const got = await ex.done;
    expect(got.closed).toBe(true);
    expect(got.body.length).toBeLessThan(BIG);
  });
});

describe("three nodes, RF 3", () => {
  let cluster: TestCluster;
  let a: S3Client;
  let b: S3Client;
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, replicationFactor: 3, blockSize: BLOCK });
    const [na, nb] = cluster.nodes as [TestServer, TestServer];
    const created = await na.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "g", allow: { createBucket: true } });
    const key = { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey };
    a = sdkClient(na, key);
    b = sdkClient(nb, key);
    await a.send(new CreateBucketCommand({ Bucket: "grace" }));
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  test("a GET through one node that started before an overwrite through another sends the old object whole", async () => {
    const old = randomBytes(BIG);
    await a.send(new PutObjectCommand({ Bucket: "grace", Key: "race", Body: old }));
    const node = cluster.nodes[0]!;
    const { ex, head } = await startPausedGet(node.s3Port, await presignedPath(a, "grace", "race"));
    expect(head.status).toBe(200);
    await b.send(new PutObjectCommand({ Bucket: "grace", Key: "race", Body: randomBytes(2 * BLOCK) }));
    await Bun.sleep(CASCADE_SETTLE_MS);
    ex.resume();
    const got = await ex.done;
    expect(got.body.length).toBe(BIG);
    expect(sha256Hex(got.body)).toBe(sha256Hex(old));
  });
});
