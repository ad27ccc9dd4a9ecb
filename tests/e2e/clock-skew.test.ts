// A node whose clock is a minute late writes right after another node: its write must still
// win, with no read before the write (the replicas' replies reveal the newer version and the
// write is restamped). The late node is a gateway, so no replica write has taught its hybrid
// clock the other node's time beforehand.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { randomBytes } from "node:crypto";
import { startCluster, waitFor, type TestCluster } from "../helpers/cluster";
import { startServer, type TestServer } from "../helpers/server";

setDefaultTimeout(60_000);
const SKEW_MS = -60_000;
let cluster: TestCluster;
let late: TestServer;
let key: { accessKeyId: string; secretAccessKey: string };

const s3 = (node: TestServer) => new S3Client({ endpoint: node.endpoint, region: node.region, forcePathStyle: true, credentials: key, maxAttempts: 1 });

async function body(node: TestServer, k: string): Promise<string | null> {
  try {
    const r = await s3(node).send(new GetObjectCommand({ Bucket: "skew", Key: k }));
    return Buffer.from(await r.Body!.transformToByteArray()).toString();
  } catch (err) {
    if ((err as { name?: string }).name === "NoSuchKey") return null;
    throw err;
  }
}

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, replicationFactor: 3 });
  const a = cluster.nodes[0]!;
  late = await startServer({ replicationFactor: 3, rpcSecret: cluster.rpcSecret, env: { BUNKER_FAULT_CLOCK_SKEW_MS: String(SKEW_MS), BUNKER_LOG: "info" } });
  const info = await late.admin<{ nodeId: string }>("GET", "/v2/GetNodeInfo?node=self");
  const aInfo = await a.admin<{ nodeId: string; rpcAddr: string }>("GET", "/v2/GetNodeInfo?node=self");
  await late.admin("POST", "/v2/ConnectClusterNodes", [`${aInfo.nodeId}@${aInfo.rpcAddr}`]);
  await a.admin("POST", "/v2/UpdateClusterLayout", { roles: [{ id: info.nodeId, zone: "zone4", capacity: null, tags: [] }] });
  await a.admin("POST", "/v2/ApplyClusterLayout", { version: 2 });
  await waitFor("the gateway has layout 2", async () => (await late.admin<{ version: number }>("GET", "/v2/GetClusterLayout")).version >= 2);
  const created = await a.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "skew", allow: { createBucket: true } });
  key = { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey };
  await s3(a).send(new CreateBucketCommand({ Bucket: "skew" }));
  await waitFor("the gateway knows the key and bucket", async () => (await body(late, "none")) === null);
}, 120_000);

afterAll(async () => {
  await late?.stop();
  await cluster?.stop();
});

test("a PUT through a late node right after a PUT through another wins", async () => {
  const a = cluster.nodes[0]!;
  // Sizes in hex characters: inline, one block, several blocks (announced as uploading first).
  for (const [k, size] of [["inline", 100], ["one-block", 200_000], ["multi-block", 1_300_000]] as const) {
    const first = `first ${randomBytes(size).toString("hex")}`;
    const second = `second ${randomBytes(size).toString("hex")}`;
    await s3(a).send(new PutObjectCommand({ Bucket: "skew", Key: k, Body: first }));
    await s3(late).send(new PutObjectCommand({ Bucket: "skew", Key: k, Body: second }));
    for (const n of [...cluster.nodes, late]) expect(await body(n, k)).toBe(second);
  }
  expect(late.logs()).toContain("restamped");
});

test("a DELETE through a late node right after a PUT through another wins", async () => {
  const a = cluster.nodes[0]!;
  await s3(a).send(new PutObjectCommand({ Bucket: "skew", Key: "gone", Body: "x" }));
  await s3(late).send(new DeleteObjectCommand({ Bucket: "skew", Key: "gone" }));
  for (const n of [...cluster.nodes, late]) expect(await body(n, "gone")).toBeNull();
});
