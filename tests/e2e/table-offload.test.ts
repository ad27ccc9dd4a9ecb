// Table offload on real nodes: four nodes, replication factor 3; once a node is removed from the
// layout and the version that gave it partitions retires, it hands its table entries to their
// new holders and keeps none, and every object stays readable without it.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { Database } from "bun:sqlite";
import { CompleteMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand, GetObjectCommand, PutObjectCommand, S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { createHash, randomBytes } from "node:crypto";
import { startCluster, waitFor, type TestCluster } from "../helpers/cluster";
import type { TestServer } from "../helpers/server";

setDefaultTimeout(60_000);
const SHARDED = ["object", "version", "version_block", "block_ref", "mpu", "mpu_part"];
let cluster: TestCluster;
let key: { accessKeyId: string; secretAccessKey: string };

const s3 = (node: TestServer) => new S3Client({ endpoint: node.endpoint, region: node.region, forcePathStyle: true, credentials: key, maxAttempts: 1 });
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** Sharded table rows in a node's metadata database, read beside the running server. */
function shardedRows(node: TestServer): number {
  const db = new Database(`${node.dir}/meta/db.sqlite`, { readonly: true });
  try {
    return SHARDED.reduce((n, t) => n + (db.query(`SELECT count(*) AS n FROM t_${t}`).get() as { n: number }).n, 0);
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  cluster = await startCluster({ nodes: 4, replicationFactor: 3 });
  const created = await cluster.nodes[0]!.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "offload", allow: { createBucket: true } });
  key = { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey };
  await s3(cluster.nodes[0]!).send(new CreateBucketCommand({ Bucket: "off" }));
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

test("a node removed from the layout keeps no table entries, and nothing is lost", async () => {
  const [a, b, c, d] = cluster.nodes as [TestServer, TestServer, TestServer, TestServer];
  const dId = cluster.ids[3]!;
  const objects = new Map<string, string>();
  for (let i = 0; i < 40; i++) {
    // Small (inline) objects spread over many partitions; a few of one block and more.
    const body = randomBytes(i % 10 === 0 ? 300 * 1024 + i : 100 + i);
    await s3(a).send(new PutObjectCommand({ Bucket: "off", Key: `o/${i}`, Body: body }));
    objects.set(`o/${i}`, sha(body));
  }
  // A completed multipart upload (upload and part entries) and an open one.
  const part = randomBytes(5 * 1024 * 1024);
  const mpu = await s3(a).send(new CreateMultipartUploadCommand({ Bucket: "off", Key: "mpu/done" }));
  const up = await s3(a).send(new UploadPartCommand({ Bucket: "off", Key: "mpu/done", UploadId: mpu.UploadId, PartNumber: 1, Body: part }));
  await s3(a).send(new CompleteMultipartUploadCommand({ Bucket: "off", Key: "mpu/done", UploadId: mpu.UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: up.ETag }] } }));
  objects.set("mpu/done", sha(part));
  const open = await s3(a).send(new CreateMultipartUploadCommand({ Bucket: "off", Key: "mpu/open" }));
  await s3(a).send(new UploadPartCommand({ Bucket: "off", Key: "mpu/open", UploadId: open.UploadId, PartNumber: 1, Body: randomBytes(1000) }));

  // Copies beyond the write quorum land a moment later.
  await waitFor("d holds table entries", async () => shardedRows(d) > 0);
  const held = shardedRows(d);

  await a.admin("POST", "/v2/UpdateClusterLayout", { roles: [{ id: dId, remove: true }] });
  await a.admin("POST", "/v2/ApplyClusterLayout", { version: 2 });
  await waitFor("a, b, c synced the layout without d", async () => {
    for (const n of [a, b, c]) if ((await n.admin<{ minAck: number }>("GET", "/v2/GetClusterLayoutHistory")).minAck < 2) return false;
    return true;
  }, 40_000);
  // No operator action: d notices that version 1 retired and offloads by itself.
  await waitFor("d offloaded every table entry", async () => shardedRows(d) === 0, 30_000);

  const workers = await d.cli("worker", "list", "--json");
  expect(workers.code).toBe(0);
  const offload = (JSON.parse(workers.stdout) as { name: string; passes: number; queueLength?: number }[]).find((w) => w.name === "table offload")!;
  expect(offload.passes).toBeGreaterThan(0);
  expect(offload.queueLength).toBe(0);
  const tables = await d.cli("repair", "tables");
  expect(tables.code).toBe(0);

  await d.kill();
  for (const n of [a, b, c]) {
    for (const [k, h] of objects) {
      const r = await s3(n).send(new GetObjectCommand({ Bucket: "off", Key: k }));
      expect(sha(await r.Body!.transformToByteArray())).toBe(h);
    }
  }
  console.log(`d handed over ${held} table rows`);
}, 120_000);
