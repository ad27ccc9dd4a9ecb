// Fail fast, and do not serve before ready (issue 12 item 2), on a real 3-node cluster with
// replication factor 3 (write and read quorum 2):
// - a node whose two peers are frozen (SIGSTOP: silent peers, no RST) answers S3 requests 503
//   ServiceUnavailable within a bound instead of waiting for them, and at once once it knows
//   they are down; when they come back everything works again;
// - a restarted node keeps its S3 port closed, and /health says why, until it has reconnected;
//   once /health is ready its first S3 requests succeed;
// - a node whose peers are all gone starts anyway after the bounded wait, and answers 503 fast.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { startCluster, waitFor, type TestCluster } from "../helpers/cluster";
import type { TestServer } from "../helpers/server";
import { REQUEST_QUORUM_TIMEOUT_MS } from "../../src/table/quorum";
import { STARTUP_PEER_WAIT_MS } from "../../src/cluster/readiness";

setDefaultTimeout(60_000);

const BUCKET = "fail-fast";
let cluster: TestCluster;
let nodes: TestServer[] = [];
const clients: S3Client[] = [];

// Frozen or running processes are not left behind if the runner exits without afterAll.
process.on("exit", () => {
  for (const n of nodes) {
    n.proc.kill("SIGCONT");
    if (n.proc.exitCode === null) n.proc.kill("SIGKILL");
  }
});

function client(n: TestServer): S3Client {
  const c = new S3Client({
    endpoint: n.endpoint,
    region: n.region,
    forcePathStyle: true,
    credentials: { accessKeyId: nodes[0]!.accessKeyId, secretAccessKey: nodes[0]!.secretAccessKey },
    maxAttempts: 1,
  });
  clients.push(c);
  return c;
}

/** Runs an S3 call that must fail: its HTTP status, S3 error code and duration. */
async function failing(send: () => Promise<unknown>): Promise<{ status: number | undefined; code: string; ms: number }> {
  const t0 = Date.now();
  try {
    await send();
  } catch (e) {
    const err = e as { name: string; $metadata?: { httpStatusCode?: number } };
    return { status: err.$metadata?.httpStatusCode, code: err.name, ms: Date.now() - t0 };
  }
  throw new Error("the request succeeded");
}

const health = (n: TestServer) => fetch(`http://127.0.0.1:${n.adminPort}/health`).then(async (r) => ({ status: r.status, text: await r.text() }));
/** Whether the node's S3 port accepts connections (any HTTP answer counts). */
const s3Open = (n: TestServer) => fetch(`http://127.0.0.1:${n.s3Port}/`).then(
  () => true,
  () => false,
);
const readOld = (c: S3Client) => c.send(new GetObjectCommand({ Bucket: BUCKET, Key: "old" })).then((r) => r.Body!.transformToString());

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, replicationFactor: 3 });
  nodes = cluster.nodes;
  const c = client(nodes[0]!);
  await c.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await c.send(new PutObjectCommand({ Bucket: BUCKET, Key: "old", Body: "before the faults" }));
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.destroy();
  for (const n of nodes) n.proc.kill("SIGCONT");
  await cluster?.stop();
});

test("a node whose two peers are frozen answers 503 within the bound, at once when it knows they are down, and works again after", async () => {
  const [a, b, c] = nodes as [TestServer, TestServer, TestServer];
  const s3 = client(a);
  b.proc.kill("SIGSTOP");
  c.proc.kill("SIGSTOP");
  try {
    // The peers are silent, not yet known down: each request waits at most the bound.
    const put = await failing(() => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "k1", Body: "x" })));
    const get = await failing(() => readOld(s3));
    // A conditional write needs a majority of the key's register: refused as fast.
    const create = await failing(() => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "k1-lock", Body: "x", IfNoneMatch: "*" })));
    for (const r of [put, get, create]) {
      expect(r).toMatchObject({ status: 503, code: "ServiceUnavailable" });
      expect(r.ms).toBeLessThan(3 * REQUEST_QUORUM_TIMEOUT_MS);
    }
    // Once their pings are missed, the node knows: no wait at all.
    await waitFor(
      "both peers known down",
      async () => (await a.admin<{ nodes: { isUp: boolean }[] }>("GET", "/v2/GetClusterStatus")).nodes.filter((n) => n.isUp).length === 1,
      30_000,
    );
    const put2 = await failing(() => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "k2", Body: "x" })));
    // One block: its copies to the peers known down are not even started.
    const putBlock = await failing(() => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "k2-block", Body: new Uint8Array(100 * 1024) })));
    const get2 = await failing(() => readOld(s3));
    const create2 = await failing(() => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "k2-lock", Body: "x", IfNoneMatch: "*" })));
    for (const r of [put2, putBlock, get2, create2]) {
      expect(r).toMatchObject({ status: 503, code: "ServiceUnavailable" });
      expect(r.ms).toBeLessThan(REQUEST_QUORUM_TIMEOUT_MS);
    }
  } finally {
    b.proc.kill("SIGCONT");
    c.proc.kill("SIGCONT");
  }
  await waitFor("writes work again", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "k3", Body: "after" }));
    return true;
  });
  expect(await readOld(s3)).toBe("before the faults");
});

test("a restarted node opens S3 only once reconnected (/health says why before), and its first requests succeed", async () => {
  const [a, b, c] = nodes as [TestServer, TestServer, TestServer];
  await b.kill();
  // Its peers frozen while it starts: its handshakes with them wait until they thaw.
  a.proc.kill("SIGSTOP");
  c.proc.kill("SIGSTOP");
  try {
    await b.restart({ untilServing: false }); // returns once the admin port answers
    expect(await s3Open(b)).toBe(false);
    const h = await health(b);
    expect(h.status).toBe(503);
    expect(h.text).toContain("not ready");
  } finally {
    a.proc.kill("SIGCONT");
    c.proc.kill("SIGCONT");
  }
  await waitFor("b ready", async () => (await health(b)).status === 200, 3 * STARTUP_PEER_WAIT_MS);
  // No 503 burst: the first requests after /health turned ready succeed.
  const s3 = client(b);
  for (let i = 0; i < 5; i++) expect(await readOld(s3)).toBe("before the faults");
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "from-b", Body: "restarted" }));
});

test("a node whose peers are all gone starts after the bounded wait and answers 503 at once", async () => {
  const [a, b, c] = nodes as [TestServer, TestServer, TestServer];
  await Promise.all([a.kill(), b.kill(), c.kill()]);
  const t0 = Date.now();
  await a.restart({ untilServing: false });
  expect(await s3Open(a)).toBe(false);
  const h = await health(a);
  expect(h.status).toBe(503);
  expect(h.text).toContain("reconnecting to its peers");
  await waitFor("S3 open", () => s3Open(a), 3 * STARTUP_PEER_WAIT_MS);
  expect(Date.now() - t0).toBeLessThan(3 * STARTUP_PEER_WAIT_MS);
  expect(a.logs()).toContain("no write quorum of peers reachable");
  const r = await failing(() => readOld(client(a)));
  expect(r).toMatchObject({ status: 503, code: "ServiceUnavailable" });
  expect(r.ms).toBeLessThan(REQUEST_QUORUM_TIMEOUT_MS);
  // The wait is over: /health reports the cluster as it is.
  expect((await health(a)).text).toContain("not available");
});
