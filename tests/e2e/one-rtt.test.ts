// One-block PUTs in one round trip (model/pending.ts), on three real nodes with RF 3: what a
// PUT acknowledges reads back at once through every node and ends complete on every replica;
// a version left pending by a writer that stopped before completing it is served once its
// block is on a quorum (and completed by readers and the start-up repair); one whose block is
// on no quorum is never served.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { Database } from "bun:sqlite";
import { createHash, randomBytes } from "node:crypto";
import { startCluster, waitFor, type TestCluster } from "../helpers/cluster";
import type { TestServer } from "../helpers/server";
import { objectSchema, type ObjectEntry } from "../../src/model/object";
import { decodeEntry, encodeEntry } from "../../src/db/entry-codec";
import { keyText, TableRows } from "../../src/db/table-rows";

setDefaultTimeout(60_000);
let cluster: TestCluster;
let key: { accessKeyId: string; secretAccessKey: string };
const BUCKET = "onertt";

function s3(node: TestServer): S3Client {
  return new S3Client({ endpoint: node.endpoint, region: node.region, forcePathStyle: true, credentials: key, maxAttempts: 1 });
}
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** The states of a key's versions in one node's own copy of the object table. */
function localStates(node: TestServer, k: string): string[] {
  const db = new Database(`${node.dir}/meta/db.sqlite`, { readonly: true });
  try {
    const row = db.query(`SELECT pk FROM t_object WHERE sk = ?`).get(k) as { pk: Uint8Array } | null;
    const entry = row && (TableRows.of(db, "object").entry(keyText(row.pk), k) as ObjectEntry);
    return entry ? entry.versions.map((v) => v.state.kind) : [];
  } finally {
    db.close();
  }
}

/**
 * Rewrites, in a stopped node's copy, a key's complete one-block version as pending (what a
 * writer that stopped between its answer and its completion leaves), optionally naming a block
 * that no node holds.
 */
function makePending(node: TestServer, k: string, blockHash?: string): void {
  const db = new Database(`${node.dir}/meta/db.sqlite`);
  try {
    const pk = keyText((db.query(`SELECT pk FROM t_object WHERE sk = ?`).get(k) as { pk: Uint8Array }).pk);
    const rows = TableRows.of(db, "object");
    const stored = rows.get(pk, k)!;
    const entry = decodeEntry(stored.v) as ObjectEntry;
    for (const v of entry.versions) {
      if (v.state.kind !== "complete" || v.state.data.kind !== "blocks" || v.state.data.singleBlock === undefined) throw new Error(`${k} is not a complete one-block version`);
      v.state = { kind: "pending", data: { ...v.state.data, singleBlock: blockHash ?? v.state.data.singleBlock } };
    }
    db.transaction(() => rows.put(pk, k, stored.part, encodeEntry(entry), objectSchema.unsettled!(entry), stored))();
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, replicationFactor: 3 });
  const a = cluster.nodes[0]!;
  const created = await a.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "onertt", allow: { createBucket: true } });
  key = { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey };
  await s3(a).send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

test("a one-block PUT (64 KiB, 1 MiB) reads back at once through every node (GET, HEAD, list) and ends complete on every replica", async () => {
  const nodes = cluster.nodes;
  for (const [k, size] of [["one/64k", 64 * 1024], ["one/1m", 1024 * 1024]] as const) {
    const body = randomBytes(size);
    await s3(nodes[0]!).send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: body }));
    // No wait: the completion may still be on its way.
    for (const n of nodes) {
      const got = await s3(n).send(new GetObjectCommand({ Bucket: BUCKET, Key: k }));
      expect(sha(await got.Body!.transformToByteArray())).toBe(sha(body));
      expect((await s3(n).send(new HeadObjectCommand({ Bucket: BUCKET, Key: k }))).ContentLength).toBe(size);
      const listed = await s3(n).send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: k }));
      expect((listed.Contents ?? []).map((o) => [o.Key, o.Size])).toEqual([[k, size]]);
    }
    await waitFor(`${k} complete on every replica`, async () => nodes.every((n) => JSON.stringify(localStates(n, k)) === '["complete"]'), 10_000);
  }
});

test("a version left pending by a stopped writer is served once its block is on a quorum and completed; one on no quorum never is", async () => {
  const nodes = cluster.nodes;
  const body = randomBytes(200 * 1024);
  await s3(nodes[0]!).send(new PutObjectCommand({ Bucket: BUCKET, Key: "crash/acked", Body: body }));
  await s3(nodes[0]!).send(new PutObjectCommand({ Bucket: BUCKET, Key: "crash/ghost", Body: randomBytes(100 * 1024) }));
  await waitFor("both complete on every replica", async () => nodes.every((n) => localStates(n, "crash/acked")[0] === "complete" && localStates(n, "crash/ghost")[0] === "complete"));
  // Every node stops at once (SIGKILL); each copy is left as a writer that stopped between its
  // answer and its completion would leave it: "acked" pending with its block stored on every
  // node, "ghost" pending with a block that no node holds.
  for (const n of nodes) await n.kill();
  for (const n of nodes) {
    makePending(n, "crash/acked");
    makePending(n, "crash/ghost", "0".repeat(64));
  }
  for (const n of nodes) await n.restart();
  await waitFor("every node sees the others", async () => {
    for (const n of nodes) {
      const st = await n.admin<{ nodes: { isUp: boolean }[] }>("GET", "/v2/GetClusterStatus");
      if (st.nodes.filter((x) => x.isUp).length < nodes.length) return false;
    }
    return true;
  }, 30_000);
  for (const n of nodes) {
    const got = await s3(n).send(new GetObjectCommand({ Bucket: BUCKET, Key: "crash/acked" }));
    expect(sha(await got.Body!.transformToByteArray())).toBe(sha(body));
    await expect(s3(n).send(new GetObjectCommand({ Bucket: BUCKET, Key: "crash/ghost" }))).rejects.toMatchObject({ name: "NoSuchKey" });
    await expect(s3(n).send(new HeadObjectCommand({ Bucket: BUCKET, Key: "crash/ghost" }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 404 } });
    const listed = await s3(n).send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "crash/" }));
    expect((listed.Contents ?? []).map((o) => o.Key)).toEqual(["crash/acked"]);
  }
  await waitFor("acked complete on every replica", async () => nodes.every((n) => JSON.stringify(localStates(n, "crash/acked")) === '["complete"]'), 20_000);
  // Too young to be aborted: it may still be a write in flight. It stays invisible.
  for (const n of nodes) expect(localStates(n, "crash/ghost")).toEqual(["pending"]);
}, 120_000);
