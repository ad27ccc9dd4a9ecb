// Conditional writes racing through different nodes of a 3-node cluster: of concurrent
// conditional writes to a key that conflict, exactly one succeeds (the key's register,
// model/conditional-write.ts), and each sees every write acknowledged before it started.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { startCluster, type TestCluster } from "../helpers/cluster";
import type { TestServer } from "../helpers/server";

setDefaultTimeout(120_000);
let cluster: TestCluster;
let clients: S3Client[];
const BUCKET = "race";
/** Rounds of each race: enough to see double winners on the old non-atomic check (most rounds had some). */
const ROUNDS = 12;

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, replicationFactor: 3 });
  const a = cluster.nodes[0]!;
  const key = await a.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "race", allow: { createBucket: true } });
  const credentials = { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey };
  clients = cluster.nodes.map((n: TestServer) => new S3Client({ endpoint: n.endpoint, region: n.region, forcePathStyle: true, credentials, maxAttempts: 1 }));
  await clients[0]!.send(new CreateBucketCommand({ Bucket: BUCKET }));
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

type Outcome = { status: number; body: string };

async function outcome(p: Promise<unknown>, body: string): Promise<Outcome> {
  try {
    await p;
    return { status: 200, body };
  } catch (err) {
    return { status: (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0, body };
  }
}

async function read(client: S3Client, key: string): Promise<string | number> {
  try {
    return await (await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }))).Body!.transformToString();
  } catch (err) {
    return (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0;
  }
}

/** Exactly one winner, every loser refused by its precondition, and every node reads the winner. */
async function expectOneWinner(key: string, outcomes: Outcome[], expectedLoss = 412): Promise<string> {
  const winners = outcomes.filter((o) => o.status === 200);
  expect({ key, winners: winners.length }).toEqual({ key, winners: 1 });
  for (const o of outcomes) if (o.status !== 200) expect({ key, status: o.status }).toEqual({ key, status: expectedLoss });
  for (const c of clients) expect(await read(c, key)).toBe(winners[0]!.body);
  return winners[0]!.body;
}

test("If-None-Match: * through three nodes at once: one creates, the others get 412", async () => {
  for (let round = 0; round < ROUNDS; round++) {
    const key = `create-${round}`;
    const outcomes = await Promise.all(
      clients.map((c, i) => {
        // Inline and block-sized bodies both go through the register.
        const body = `${key} by node ${i} `.repeat(i === 2 ? 4000 : 1);
        return outcome(c.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, IfNoneMatch: "*" })), body);
      }),
    );
    await expectOneWinner(key, outcomes);
  }
});

test("If-Match with the same ETag through three nodes at once: one replaces, the others get 412", async () => {
  for (let round = 0; round < ROUNDS / 2; round++) {
    const key = `swap-${round}`;
    const put = await clients[0]!.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "v0" }));
    const outcomes = await Promise.all(
      clients.map((c, i) => outcome(c.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: `v1 from ${i}`, IfMatch: put.ETag })), `v1 from ${i}`)),
    );
    await expectOneWinner(key, outcomes);
  }
});

test("a conditional delete and a conditional replace of one ETag: exactly one happens", async () => {
  for (let round = 0; round < ROUNDS / 2; round++) {
    const key = `del-${round}`;
    const put = await clients[0]!.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "v0" }));
    const [del, replace] = await Promise.all([
      outcome(clients[1]!.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key, IfMatch: put.ETag })), "(deleted)"),
      outcome(clients[2]!.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "replaced", IfMatch: put.ETag })), "replaced"),
    ]);
    expect([del!.status, replace!.status].filter((s) => s === 200 || s === 204).length).toBe(1);
    const seen = await read(clients[0]!, key);
    if (replace!.status === 200) expect(seen).toBe("replaced");
    else expect(seen).toBe(404);
  }
});

test("a multipart completion, a copy and a PUT racing to create one key: one wins", async () => {
  await clients[0]!.send(new PutObjectCommand({ Bucket: BUCKET, Key: "copy-source", Body: "from the copy" }));
  for (let round = 0; round < ROUNDS / 3; round++) {
    const key = `mixed-${round}`;
    const created = await clients[0]!.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const part = await clients[0]!.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, PartNumber: 1, Body: "from the upload" }));
    const outcomes = await Promise.all([
      outcome(
        clients[0]!.send(
          new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: created.UploadId, IfNoneMatch: "*", MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }),
        ),
        "from the upload",
      ),
      outcome(clients[1]!.send(new CopyObjectCommand({ Bucket: BUCKET, Key: key, CopySource: `${BUCKET}/copy-source`, IfNoneMatch: "*" })), "from the copy"),
      outcome(clients[2]!.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "from the put", IfNoneMatch: "*" })), "from the put"),
    ]);
    // A completion whose upload started before the winner was written may be told of the
    // conflict (409) instead of the precondition (412): both refuse, neither is a winner.
    const winners = outcomes.filter((o) => o.status === 200);
    expect({ key, winners: winners.length }).toEqual({ key, winners: 1 });
    for (const o of outcomes) if (o.status !== 200) expect([409, 412]).toContain(o.status);
    for (const c of clients) expect(await read(c, key)).toBe(winners[0]!.body);
  }
});

test("a conditional write sees a write acknowledged through another node just before", async () => {
  for (let round = 0; round < ROUNDS; round++) {
    const key = `seen-${round}`;
    await clients[round % 3]!.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "first" }));
    const again = await outcome(clients[(round + 1) % 3]!.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "second", IfNoneMatch: "*" })), "second");
    expect(again.status).toBe(412);
  }
});
