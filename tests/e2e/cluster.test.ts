// Three real nodes in three zones with replication factor 3: what one node writes, the others
// read; one node down leaves reads and writes working; two down makes writes fail fast.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { CreateBucketCommand, GetObjectCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { randomBytes, createHash } from "node:crypto";
import { startCluster, waitFor, type TestCluster } from "../helpers/cluster";
import { startServer, type TestServer } from "../helpers/server";

setDefaultTimeout(60_000);
let cluster: TestCluster;
let key: { accessKeyId: string; secretAccessKey: string };

function s3(node: TestServer): S3Client {
  return new S3Client({ endpoint: node.endpoint, region: node.region, forcePathStyle: true, credentials: key, maxAttempts: 1 });
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function read(node: TestServer, k: string): Promise<string> {
  const r = await s3(node).send(new GetObjectCommand({ Bucket: "geo", Key: k }));
  return sha(await r.Body!.transformToByteArray());
}

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, replicationFactor: 3 });
  const a = cluster.nodes[0]!;
  const created = await a.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "geo", allow: { createBucket: true } });
  key = { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey };
  await s3(a).send(new CreateBucketCommand({ Bucket: "geo" }));
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

test("an object written through one node reads back byte-identical through the others", async () => {
  const [a, b, c] = cluster.nodes as [TestServer, TestServer, TestServer];
  const small = randomBytes(1000);
  const big = randomBytes(5 * 1024 * 1024 + 77);
  await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: "small", Body: small }));
  await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: "dir/big", Body: big }));
  for (const n of [a, b, c]) {
    expect(await read(n, "small")).toBe(sha(small));
    expect(await read(n, "dir/big")).toBe(sha(big));
  }
  const listed = await s3(c).send(new ListObjectsV2Command({ Bucket: "geo" }));
  expect((listed.Contents ?? []).map((o) => o.Key)).toEqual(["dir/big", "small"]);
});

test("every copy of every block of a large object is intact on every node (no buffer reused under a background copy)", async () => {
  const [a, b, c] = cluster.nodes as [TestServer, TestServer, TestServer];
  const body = randomBytes(48 * 1024 * 1024 + 3);
  await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: "intact/big", Body: body }));
  for (const n of [a, b, c]) expect(await read(n, "intact/big")).toBe(sha(body));
  const { readdirSync, readFileSync } = await import("node:fs");
  const { blake3Sync, hashHex } = await import("../../src/block/hash.ts");
  // Copies that finish after the write quorum land a little later.
  await Bun.sleep(1000);
  for (const n of [a, b, c]) {
    const files = (readdirSync(`${n.dir}/data`, { recursive: true }) as string[]).filter((f) => /[0-9a-f]{64}(\.zst)?$/.test(f));
    expect(files.length).toBeGreaterThanOrEqual(48);
    for (const f of files) {
      const raw = readFileSync(`${n.dir}/data/${f}`);
      const plain = f.endsWith(".zst") ? Bun.zstdDecompressSync(raw) : raw;
      expect(hashHex(blake3Sync(plain)) as string).toBe(f.slice(-64 - (f.endsWith(".zst") ? 4 : 0)).slice(0, 64));
    }
  }
}, 120_000);

test("with one node down, reads and writes keep working", async () => {
  const [a, b, c] = cluster.nodes as [TestServer, TestServer, TestServer];
  await c.kill();
  const body = randomBytes(2 * 1024 * 1024);
  await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: "while-c-down", Body: body }));
  expect(await read(b, "while-c-down")).toBe(sha(body));
  expect(await read(a, "small")).toHaveLength(64);
  await c.restart();
});

test("with two nodes down, a write fails fast with 503 and loses nothing acknowledged", async () => {
  const [a, b, c] = cluster.nodes as [TestServer, TestServer, TestServer];
  await b.kill();
  await c.kill();
  const t0 = Date.now();
  const err = await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: "no-quorum", Body: "x".repeat(5000) })).catch((e) => e);
  expect(err.$metadata?.httpStatusCode).toBe(503);
  expect(Date.now() - t0).toBeLessThan(15_000);
  await b.restart();
  await c.restart();
});

test("a node with the wrong rpc_secret is refused and never joins", async () => {
  const a = cluster.nodes[0]!;
  const intruder = await startServer({ replicationFactor: 3, rpcSecret: "ab".repeat(32) });
  try {
    const info = await a.admin<{ nodeId: string; rpcAddr: string }>("GET", "/v2/GetNodeInfo?node=self");
    const r = await intruder.admin<{ success: boolean; error: string | null }[]>("POST", "/v2/ConnectClusterNodes", [`${info.nodeId}@${info.rpcAddr}`]);
    expect(r[0]!.success).toBe(false);
    const st = await a.admin<{ nodes: { id: string }[] }>("GET", "/v2/GetClusterStatus");
    const intruderId = (await intruder.admin<{ nodeId: string }>("GET", "/v2/GetNodeInfo?node=self")).nodeId;
    expect(st.nodes.map((n) => n.id)).not.toContain(intruderId);
    expect(a.logs()).toContain("wrong rpc_secret");
  } finally {
    await intruder.stop();
  }
});

test("a node that was down when a key was created learns it after restarting", async () => {
  const [a, , c] = cluster.nodes as [TestServer, TestServer, TestServer];
  await c.kill();
  const late = await a.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "late" });
  await c.restart();
  const client = new S3Client({
    endpoint: c.endpoint,
    region: c.region,
    forcePathStyle: true,
    credentials: { accessKeyId: late.accessKeyId, secretAccessKey: late.secretAccessKey },
    maxAttempts: 1,
  });
  const deadline = Date.now() + 40_000;
  let lastError: unknown;
  for (;;) {
    try {
      await client.send(new ListBucketsCommand({}));
      break;
    } catch (err) {
      lastError = err;
      if (Date.now() > deadline) throw lastError;
      await Bun.sleep(250);
    }
  }
}, 60_000);

test("a node that missed writes while down holds them again after restarting (anti-entropy)", async () => {
  const [a, , c] = cluster.nodes as [TestServer, TestServer, TestServer];
  await c.kill();
  const keys = Array.from({ length: 20 }, (_, i) => `missed/${i}`);
  for (const k of keys) await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: k, Body: `value of ${k}` }));
  await c.restart();
  const { Database } = await import("bun:sqlite");
  const deadline = Date.now() + 40_000;
  for (;;) {
    const db = new Database(`${c.dir}/meta/db.sqlite`, { readonly: true });
    const present = keys.filter((k) => db.query(`SELECT 1 FROM t_object WHERE sk = ?`).get(k)).length;
    db.close();
    if (present === keys.length) break;
    if (Date.now() > deadline) throw new Error(`only ${present} of ${keys.length} entries reached the restarted node`);
    await Bun.sleep(250);
  }
}, 60_000);

test("a node that missed writes fetches their blocks after restarting (resync)", async () => {
  const [a, , c] = cluster.nodes as [TestServer, TestServer, TestServer];
  await c.kill();
  for (let i = 0; i < 3; i++) await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: `blocks/${i}`, Body: randomBytes(2 * 1024 * 1024 + i) }));
  await c.restart();
  const { Database } = await import("bun:sqlite");
  const { existsSync } = await import("node:fs");
  const adb = new Database(`${a.dir}/meta/db.sqlite`, { readonly: true });
  const needed = (adb.query(`SELECT hash FROM block_rc WHERE refs > 0`).all() as { hash: string }[]).map((r) => r.hash);
  adb.close();
  expect(needed.length).toBeGreaterThanOrEqual(6);
  const onC = (h: string) => [".zst", ""].some((ext) => existsSync(`${c.dir}/data/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}${ext}`));
  const deadline = Date.now() + 40_000;
  for (;;) {
    const missing = needed.filter((h) => !onC(h));
    if (missing.length === 0) {
      const errors = await c.cli("block", "list-errors", "--json");
      expect(errors.code).toBe(0);
      expect(JSON.parse(errors.stdout)).toEqual([]);
      break;
    }
    if (Date.now() > deadline) throw new Error(`${missing.length} of ${needed.length} blocks still missing on the restarted node`);
    await Bun.sleep(250);
  }
}, 60_000);

test("bunker repair blocks brings back a block file lost from disk; worker list shows the resync", async () => {
  const [a, b] = cluster.nodes as [TestServer, TestServer, TestServer];
  const body = randomBytes(1024 * 1024 + 5);
  await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: "repair/lost", Body: body }));
  const { Database } = await import("bun:sqlite");
  const { existsSync, unlinkSync } = await import("node:fs");
  const bdb = new Database(`${b.dir}/meta/db.sqlite`, { readonly: true });
  const hashes = (bdb.query(`SELECT hash FROM block_rc WHERE refs > 0`).all() as { hash: string }[]).map((r) => r.hash);
  bdb.close();
  const fileOf = (h: string) => [".zst", ""].map((ext) => `${b.dir}/data/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}${ext}`).find((p) => existsSync(p));
  const victim = hashes.find((h) => fileOf(h) !== undefined)!;
  unlinkSync(fileOf(victim)!);
  expect(fileOf(victim)).toBeUndefined();

  const repair = await b.cli("repair", "blocks", "--json");
  expect(repair.code).toBe(0);
  expect(JSON.parse(repair.stdout).queued).toBeGreaterThanOrEqual(hashes.length);
  await waitFor("the lost block is fetched again", async () => fileOf(victim) !== undefined, 30_000);
  expect(await read(b, "repair/lost")).toBe(sha(body));

  const workers = await b.cli("worker", "list", "--json");
  expect(workers.code).toBe(0);
  const resync = (JSON.parse(workers.stdout) as { name: string; passes: number; queueLength?: number }[]).find((w) => w.name === "block resync")!;
  expect(resync.passes).toBeGreaterThan(0);
  expect(typeof resync.queueLength).toBe("number");
  const human = await b.cli("worker", "list");
  expect(human.stdout).toContain("sharded table sync");
  const tables = await b.cli("repair", "tables");
  expect(tables.code).toBe(0);
  expect(tables.stdout).toContain("Repair of tables started");
}, 60_000);

test("bunker repair scrub finds a block whose bytes rotted on disk, moves it aside and fetches a good copy", async () => {
  const [a, b] = cluster.nodes as [TestServer, TestServer, TestServer];
  const body = randomBytes(300_000);
  await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: "scrub/rot", Body: body }));
  const { existsSync, readFileSync, writeFileSync } = await import("node:fs");
  const { hash: blake3 } = await import("blake3-wasm/dist/index.js");
  const { blake3Sync, hashHex } = await import("../../src/block/hash");
  const name = hashHex(blake3Sync(new Uint8Array(body)));
  const path = `${b.dir}/data/${name.slice(0, 2)}/${name.slice(2, 4)}/${name}`;
  await waitFor("node b stores the block", async () => existsSync(path), 20_000);
  const rotten = readFileSync(path);
  rotten[1000] = rotten[1000]! ^ 0x55;
  writeFileSync(path, rotten);

  const scrub = await b.cli("repair", "scrub");
  expect(scrub.code).toBe(0);
  expect(scrub.stdout).toContain("Scrub started");
  await waitFor("the rotten copy is moved aside", async () => existsSync(`${path}.corrupted`), 30_000);
  await waitFor("a good copy is fetched again", async () => existsSync(path) && Buffer.from(blake3(readFileSync(path)) as Buffer).toString("hex") === name, 30_000);
  // The pass goes on through the node's other blocks, at its own pace.
  const scrubWorker = async () =>
    (JSON.parse((await b.cli("worker", "list", "--json")).stdout) as { name: string; passes: number; errors: number }[]).find((w) => w.name === "block scrub")!;
  await waitFor("the scrub pass completes", async () => (await scrubWorker()).passes > 0, 30_000);
  expect((await scrubWorker()).errors).toBeGreaterThan(0);
  expect(await read(b, "scrub/rot")).toBe(sha(body));
}, 60_000);

test("SSE-C objects replicate, read through every node with the key, and scrub repairs their sealed blocks", async () => {
  const [a, b, c] = cluster.nodes as [TestServer, TestServer, TestServer];
  const { existsSync, readdirSync, readFileSync, writeFileSync } = await import("node:fs");
  const key = randomBytes(32);
  const sse = { SSECustomerAlgorithm: "AES256", SSECustomerKey: key.toString("base64"), SSECustomerKeyMD5: createHash("md5").update(key).digest("base64") };
  const blockFiles = () => new Set((readdirSync(`${b.dir}/data`, { recursive: true }) as string[]).filter((f) => /[0-9a-f]{64}$/.test(f)));
  const before = blockFiles();
  const body = randomBytes(2 * 1024 * 1024 + 11);
  await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: "sealed/obj", Body: body, ...sse }));
  const readSealed = async (n: TestServer) => sha(await (await s3(n).send(new GetObjectCommand({ Bucket: "geo", Key: "sealed/obj", ...sse }))).Body!.transformToByteArray());
  for (const n of [a, b, c]) expect(await readSealed(n)).toBe(sha(body));
  await waitFor("node b stores the sealed blocks", async () => [...blockFiles()].filter((f) => !before.has(f)).length >= 3, 20_000);
  const sealed = [...blockFiles()].filter((f) => !before.has(f));
  const path = `${b.dir}/data/${sealed[0]}`;
  const rotten = readFileSync(path);
  // The middle byte: the object's tail block is under 100 bytes, and an index past the end of a
  // Buffer is silently not written.
  const at = rotten.length >> 1;
  rotten[at] = rotten[at]! ^ 0x55;
  writeFileSync(path, rotten);
  expect((await b.cli("repair", "scrub")).code).toBe(0);
  await waitFor("the rotten sealed copy is moved aside and fetched again", async () => existsSync(`${path}.corrupted`) && existsSync(path), 30_000);
  expect(await readSealed(b)).toBe(sha(body));
}, 60_000);

test("a 4th node in a new zone joins, data moves, and every object stays readable; then it is removed again", async () => {
  const [a, b, c] = cluster.nodes as [TestServer, TestServer, TestServer];
  const objects = new Map<string, string>();
  for (let i = 0; i < 8; i++) {
    const body = randomBytes(1024 * 1024 + i * 1000);
    await s3(a).send(new PutObjectCommand({ Bucket: "geo", Key: `move/${i}`, Body: body }));
    objects.set(`move/${i}`, sha(body));
  }
  const readAll = async (nodes: TestServer[]) => {
    for (const n of nodes) for (const [k, h] of objects) expect(await read(n, k)).toBe(h);
  };
  const d = await startServer({ replicationFactor: 3, rpcSecret: cluster.rpcSecret });
  try {
    const info = await a.admin<{ nodeId: string; rpcAddr: string }>("GET", "/v2/GetNodeInfo?node=self");
    await d.admin("POST", "/v2/ConnectClusterNodes", [`${info.nodeId}@${info.rpcAddr}`]);
    const dId = (await d.admin<{ nodeId: string }>("GET", "/v2/GetNodeInfo?node=self")).nodeId;
    await waitFor("d in the mesh", async () => {
      const st = await a.admin<{ nodes: { id: string; isUp: boolean }[] }>("GET", "/v2/GetClusterStatus");
      return st.nodes.some((n) => n.id === dId && n.isUp);
    });
    const layoutOf = () => a.admin<{ version: number }>("GET", "/v2/GetClusterLayout");
    const historyOf = (n: TestServer) => n.admin<{ currentVersion: number; minAck: number }>("GET", "/v2/GetClusterLayoutHistory");

    await a.admin("POST", "/v2/UpdateClusterLayout", { roles: [{ id: dId, zone: "zone4", capacity: 10 * 1024 ** 3, tags: [] }] });
    const v2 = (await layoutOf()).version + 1;
    await a.admin("POST", "/v2/ApplyClusterLayout", { version: v2 });
    // The new node learns the access key through full-copy anti-entropy, then serves reads.
    await waitFor("d knows the access key", async () => (await read(d, "small")).length === 64);
    await readAll([a, d]); // readable during the move
    await waitFor("every node synced the new layout", async () => {
      for (const n of [a, b, c, d]) if ((await historyOf(n)).minAck < v2) return false;
      return true;
    }, 60_000);
    await readAll([a, b, c, d]);

    await a.admin("POST", "/v2/UpdateClusterLayout", { roles: [{ id: dId, remove: true }] });
    await a.admin("POST", "/v2/ApplyClusterLayout", { version: v2 + 1 });
    await waitFor("the remaining nodes synced the layout without d", async () => {
      for (const n of [a, b, c]) if ((await historyOf(n)).minAck < v2 + 1) return false;
      return true;
    }, 60_000);
    // d gives its blocks away (each is checked on, or sent to, its new nodes), then deletes them,
    // on its own: its layout check starts an offload pass when partitions leave it.
    const { readdirSync } = await import("node:fs");
    const blockFiles = (dir: string): number =>
      (readdirSync(dir, { recursive: true }) as string[]).filter((f) => /[0-9a-f]{64}(\.zst)?$/.test(f)).length;
    expect(blockFiles(`${d.dir}/data`)).toBeGreaterThan(0);
    await waitFor("d offloaded every block without being asked", async () => blockFiles(`${d.dir}/data`) === 0, 60_000);
    await d.kill();
    await readAll([a, b, c]);
  } finally {
    await d.stop();
  }
}, 180_000);
