// block_ram_buffer_max holds when it is the limit: with the smallest budget (8 blocks), many
// parallel PUTs, SSE-C PUTs, GETs, copies and a GET its client gives up on all finish (they wait
// for memory instead of taking it), the budget's peak never passes its size (read from /metrics),
// and everything leased comes back. On an RF 3 cluster of such nodes, PUTs through every node at
// once (each node's own PUTs waiting on the others' receives) all finish: a node's own requests
// leave part of its budget to its peers' blocks.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { createHash, randomBytes } from "node:crypto";
import { startServer, type TestServer } from "../helpers/server";
import { startCluster, waitFor, type TestCluster } from "../helpers/cluster";
import { sdkClient } from "../helpers/clients";
import { budgetGauges } from "../helpers/metrics";

setDefaultTimeout(90_000);
const MiB = 1024 * 1024;
/** The smallest budget config accepts with 1 MiB blocks. */
const BUDGET = 8 * MiB;
const SMALL_BUDGET = `block_ram_buffer_max = ${BUDGET}`;
/** Generous: a deadlock never ends, a slow machine does. */
const DEADLINE_MS = 60_000;

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");



/** Everything leased comes back (pools keep free buffers for a moment, under lease, then drop them). */
async function allReturned(s: TestServer): Promise<void> {
  await waitFor("every lease of block buffers given back", async () => (await budgetGauges(s)).used === 0, 15_000);
}

function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  return Promise.race([p, Bun.sleep(DEADLINE_MS).then(() => Promise.reject(new Error(`${what} did not finish within ${DEADLINE_MS} ms (deadlock?)`)))]);
}

describe("one node at its smallest budget", () => {
  let server: TestServer;
  let s3: S3Client;
  beforeAll(async () => {
    server = await startServer({ extraToml: SMALL_BUDGET });
    s3 = sdkClient(server);
    await s3.send(new CreateBucketCommand({ Bucket: "mem" }));
  });
  afterAll(async () => {
    await server?.stop();
  });

  test("parallel PUTs, SSE-C PUTs, GETs and a copy all finish, within the budget", async () => {
    expect((await budgetGauges(server)).max).toBe(BUDGET);
    const bodies = Array.from({ length: 12 }, () => randomBytes(6 * MiB + 123));
    const key = randomBytes(32);
    const sse = { SSECustomerAlgorithm: "AES256", SSECustomerKey: key.toString("base64"), SSECustomerKeyMD5: createHash("md5").update(key).digest("base64") };
    const sealed = randomBytes(3 * MiB + 5);
    await bounded(
      Promise.all([
        ...bodies.map((b, i) => s3.send(new PutObjectCommand({ Bucket: "mem", Key: `o${i}`, Body: b }))),
        ...[0, 1].map((i) => s3.send(new PutObjectCommand({ Bucket: "mem", Key: `sealed${i}`, Body: sealed, ...sse }))),
      ]),
      "12 PUTs and 2 SSE-C PUTs",
    );
    const read = async (k: string, extra = {}) => sha(await (await s3.send(new GetObjectCommand({ Bucket: "mem", Key: k, ...extra }))).Body!.transformToByteArray());
    const [got, gotSealed] = await bounded(
      Promise.all([
        Promise.all(bodies.map((_, i) => read(`o${i}`))),
        Promise.all([0, 1].map((i) => read(`sealed${i}`, sse))),
        s3.send(new CopyObjectCommand({ Bucket: "mem", Key: "copy", CopySource: "mem/o0" })),
      ]),
      "12 GETs, 2 SSE-C GETs and a copy",
    );
    expect(got).toEqual(bodies.map(sha));
    expect(gotSealed).toEqual([sha(sealed), sha(sealed)]);
    expect(await read("copy")).toBe(sha(bodies[0]!));
    const g = await budgetGauges(server);
    expect(g.peak).toBeGreaterThan(BUDGET / 2); // the budget was the limit
    expect(g.peak).toBeLessThanOrEqual(BUDGET);
    await allReturned(server);
  });

  test("copies at once all finish: a copy waits for its reader's memory in a share of their own, not behind writers like its own", async () => {
    const source = randomBytes(6 * MiB);
    await s3.send(new PutObjectCommand({ Bucket: "mem", Key: "source", Body: source }));
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "mem", Key: "assembled" }));
    const parts = await bounded(
      Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          s3.send(new UploadPartCopyCommand({ Bucket: "mem", Key: "assembled", UploadId, PartNumber: i + 1, CopySource: "mem/source", CopySourceRange: `bytes=0-${6 * MiB - 1}` })),
        ),
      ),
      "8 UploadPartCopy",
    );
    await s3.send(
      new CompleteMultipartUploadCommand({ Bucket: "mem", Key: "assembled", UploadId, MultipartUpload: { Parts: parts.map((p, i) => ({ PartNumber: i + 1, ETag: p.CopyPartResult!.ETag })) } }),
    );
    const got = await (await s3.send(new GetObjectCommand({ Bucket: "mem", Key: "assembled" }))).Body!.transformToByteArray();
    expect(sha(got)).toBe(sha(Buffer.concat(Array.from({ length: 8 }, () => source))));
    expect((await budgetGauges(server)).peak).toBeLessThanOrEqual(BUDGET);
    await allReturned(server);
  });

  test("a GET its client gives up on gives its memory back", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "mem", Key: "big", Body: randomBytes(24 * MiB) }));
    for (let i = 0; i < 3; i++) {
      const abort = new AbortController();
      const r = await fetch(`${server.endpoint.replace("localhost", "127.0.0.1")}/mem/big`, { signal: abort.signal, headers: await signedGet(server, "big") });
      expect(r.status).toBe(200);
      const reader = r.body!.getReader();
      await reader.read();
      abort.abort();
    }
    await allReturned(server);
    expect((await budgetGauges(server)).peak).toBeLessThanOrEqual(BUDGET);
  });
});

/** SigV4 headers for an unsigned-payload GET (the SDK cannot be stopped mid-body portably). */
async function signedGet(s: TestServer, key: string): Promise<Record<string, string>> {
  const { Signer } = await import("../../benchmarks/lib/sigv4");
  const signer = new Signer({ accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, region: s.region });
  return signer.sign("GET", `127.0.0.1:${s.s3Port}`, `/mem/${key}`, {}, "UNSIGNED-PAYLOAD");
}

describe("an RF 3 cluster of nodes at their smallest budget", () => {
  let cluster: TestCluster;
  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, replicationFactor: 3, extraToml: SMALL_BUDGET });
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
  });

  test("PUTs through every node at once all finish: a node's own PUTs leave room for its peers' blocks", async () => {
    const a = cluster.nodes[0]!;
    const created = await a.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "mem", allow: { createBucket: true } });
    const clients = cluster.nodes.map((n) => sdkClient(n, { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey }));
    await clients[0]!.send(new CreateBucketCommand({ Bucket: "mem" }));
    const bodies = Array.from({ length: 12 }, () => randomBytes(8 * MiB + 7));
    await bounded(Promise.all(bodies.map((b, i) => clients[i % 3]!.send(new PutObjectCommand({ Bucket: "mem", Key: `o${i}`, Body: b })))), "12 PUTs through 3 nodes");
    for (const [i, b] of bodies.entries()) {
      const r = await clients[(i + 1) % 3]!.send(new GetObjectCommand({ Bucket: "mem", Key: `o${i}` }));
      expect(sha(await r.Body!.transformToByteArray())).toBe(sha(b));
    }
    for (const n of cluster.nodes) {
      expect((await budgetGauges(n)).peak).toBeLessThanOrEqual(BUDGET);
      await allReturned(n);
    }
  });
});
