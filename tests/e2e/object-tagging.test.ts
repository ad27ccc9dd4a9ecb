// Object tags end to end: Put/Get/DeleteObjectTagging through the AWS SDK against a real
// server (AWS's limits and error codes, x-amz-tagging-count on GET and HEAD, tags belonging to
// the version they were set on), Debian's awscli copying a large object key to key (it reads
// the source's tags first), and tags written through one node of a cluster read through another.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import {
  CreateBucketCommand,
  DeleteObjectTaggingCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
  S3Client,
  type Tag,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { startCluster, type TestCluster } from "../helpers/cluster";
import { signedFetch } from "../helpers/signed";
import { MiB, awsCli, expectOk, s3Failure, sdkClient, sha256Hex } from "../helpers/clients";

setDefaultTimeout(60_000);

const BUCKET = "tags";
const AWS = "/usr/bin/aws";

let server: TestServer;
let s3: S3Client;

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});
afterAll(async () => {
  await server?.stop();
});

const tagSet = (pairs: [string, string][]): Tag[] => pairs.map(([Key, Value]) => ({ Key, Value }));
const putTags = (Key: string, pairs: [string, string][], VersionId?: string) =>
  s3.send(new PutObjectTaggingCommand({ Bucket: BUCKET, Key, VersionId, Tagging: { TagSet: tagSet(pairs) } }));
async function getTags(Key: string, client = s3): Promise<[string, string][]> {
  const r = await client.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key }));
  return (r.TagSet ?? []).map((t) => [t.Key!, t.Value!]);
}
const headCount = async (Key: string) => (await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key }))).TagCount;

describe("Put/Get/DeleteObjectTagging", () => {
  test("an object has no tags until some are put; they read back sorted by key, counted on GET and HEAD, until deleted", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "a", Body: "hello" }));
    expect(await getTags("a")).toEqual([]);
    expect(await headCount("a")).toBeUndefined();

    // Every character class AWS allows, at both length limits, and an empty value.
    const tags: [string, string][] = [
      ["team", "storage"],
      ["Ünïcode 日本", "+ - = . _ : / @"],
      ["k".repeat(128), "v".repeat(256)],
      ["empty", ""],
    ];
    await putTags("a", tags);
    // Answered sorted by key, as S3 does.
    expect(await getTags("a")).toEqual([...tags].sort(([x], [y]) => (x < y ? -1 : 1)));
    expect(await headCount("a")).toBe(4);
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "a" }));
    expect(got.TagCount).toBe(4);
    expect(await got.Body!.transformToString()).toBe("hello");

    // A second put replaces the whole set.
    await putTags("a", [["only", "one"]]);
    expect(await getTags("a")).toEqual([["only", "one"]]);

    const deleted = await s3.send(new DeleteObjectTaggingCommand({ Bucket: BUCKET, Key: "a" }));
    expect(deleted.$metadata.httpStatusCode).toBe(204);
    expect(await getTags("a")).toEqual([]);
    expect(await headCount("a")).toBeUndefined();
    // The data and its metadata are untouched by any of it.
    const after = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "a" }));
    expect(await after.Body!.transformToString()).toBe("hello");
  });

  test("the answer is the <Tagging> document S3 sends", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "doc", Body: "x" }));
    const empty = await signedFetch(server, "GET", `/${BUCKET}/doc?tagging`);
    expect(empty.status).toBe(200);
    expect(await empty.text()).toContain("<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet></TagSet></Tagging>");
    await putTags("doc", [["a-b", "c"]]);
    expect(await (await signedFetch(server, "GET", `/${BUCKET}/doc?tagging`)).text()).toContain("<TagSet><Tag><Key>a-b</Key><Value>c</Value></Tag></TagSet>");
  });

  test("tags belong to the version they were put on: a new write of the key has none", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "rewritten", Body: "one" }));
    await putTags("rewritten", [["gen", "1"]]);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "rewritten", Body: "two" }));
    expect(await getTags("rewritten")).toEqual([]);
  });

  test("AWS's limits: 10 tags; keys 1..128 and values 0..256 characters of AWS's set; unique keys; no aws: prefix", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "limits", Body: "x" }));
    await putTags("limits", [["keep", "me"]]);
    const ten = Array.from({ length: 10 }, (_, i): [string, string] => [`k${i}`, `v${i}`]);
    await putTags("limits", ten);
    expect(await headCount("limits")).toBe(10);
    const refusals: [string, [string, string][], string][] = [
      ["11 tags", [...ten, ["k10", "v10"]], "InvalidTag"],
      ["a 129-character key", [["k".repeat(129), "v"]], "InvalidTag"],
      ["a 257-character value", [["k", "v".repeat(257)]], "InvalidTag"],
      ["an empty key", [["", "v"]], "InvalidTag"],
      ["a key given twice", [["k", "1"], ["k", "2"]], "InvalidTag"],
      ["the aws: prefix", [["aws:cloudformation:stack", "v"]], "InvalidTag"],
      ["a character outside AWS's set", [["k#", "v"]], "InvalidTag"],
      ["a value character outside AWS's set", [["k", "a*b"]], "InvalidTag"],
    ];
    for (const [what, pairs, code] of refusals) {
      expect({ what, ...(await s3Failure(putTags("limits", pairs))) }).toMatchObject({ what, name: code, status: 400 });
    }
    // Nothing refused was stored.
    expect(await getTags("limits")).toEqual(ten);
  });

  test("a document that is not a Tagging with a TagSet of Key and Value is MalformedXML", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "xml", Body: "x" }));
    for (const body of [
      "",
      "not xml",
      "<Tagging></Tagging>",
      "<Other><TagSet/></Other>",
      "<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
      "<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
    ]) {
      const r = await signedFetch(server, "PUT", `/${BUCKET}/xml?tagging`, { body });
      expect({ body, status: r.status, text: await r.text() }).toMatchObject({ body, status: 400, text: expect.stringContaining("<Code>MalformedXML</Code>") });
    }
    expect(await getTags("xml")).toEqual([]);
  });

  test("a missing object is 404 NoSuchKey; versionId null is the object, another version 404 NoSuchVersion", async () => {
    expect(await s3Failure(s3.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: "missing" })))).toMatchObject({ name: "NoSuchKey", status: 404 });
    expect(await s3Failure(putTags("missing", [["a", "b"]]))).toMatchObject({ name: "NoSuchKey", status: 404 });
    expect(await s3Failure(s3.send(new DeleteObjectTaggingCommand({ Bucket: BUCKET, Key: "missing" })))).toMatchObject({ name: "NoSuchKey", status: 404 });

    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "v", Body: "x" }));
    const put = await putTags("v", [["a", "b"]], "null");
    expect(put.VersionId).toBe("null");
    expect(await getTags("v")).toEqual([["a", "b"]]);
    expect(await s3Failure(putTags("v", [["c", "d"]], "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY"))).toMatchObject({ name: "NoSuchVersion", status: 404 });
    expect(await s3Failure(s3.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: "v", VersionId: "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY" })))).toMatchObject({ name: "NoSuchVersion", status: 404 });
    expect(await getTags("v")).toEqual([["a", "b"]]);
  });

  test("a key with read permission only reads tags; putting or deleting them is AccessDenied", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "perm", Body: "x" }));
    await putTags("perm", [["a", "b"]]);
    const reader = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "reader" });
    const bucket = await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`);
    await server.admin("POST", "/v2/AllowBucketKey", { bucketId: bucket.id, accessKeyId: reader.accessKeyId, permissions: { read: true } });
    const readerS3 = sdkClient(server, { accessKeyId: reader.accessKeyId, secretAccessKey: reader.secretAccessKey });
    expect(await getTags("perm", readerS3)).toEqual([["a", "b"]]);
    expect(await s3Failure(readerS3.send(new PutObjectTaggingCommand({ Bucket: BUCKET, Key: "perm", Tagging: { TagSet: [] } })))).toMatchObject({ name: "AccessDenied", status: 403 });
    expect(await s3Failure(readerS3.send(new DeleteObjectTaggingCommand({ Bucket: BUCKET, Key: "perm" })))).toMatchObject({ name: "AccessDenied", status: 403 });
    expect(await getTags("perm")).toEqual([["a", "b"]]);
  });
});

describe("tags given as an object is written (x-amz-tagging)", () => {
  test("PutObject stores them; a later PutObjectTagging replaces them", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "w1", Body: "x", Tagging: "team=a&note=two%20words" }));
    expect(await getTags("w1")).toEqual([["note", "two words"], ["team", "a"]]);
    expect(await headCount("w1")).toBe(2);
    await putTags("w1", [["k", "v"]]);
    expect(await getTags("w1")).toEqual([["k", "v"]]);
    // A body large enough for the one-block and announced write plans carries them too.
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "w1big", Body: randomBytes(MiB + 1), Tagging: "size=big" }));
    expect(await getTags("w1big")).toEqual([["size", "big"]]);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "w1one", Body: randomBytes(64 * 1024), Tagging: "size=one" }));
    expect(await getTags("w1one")).toEqual([["size", "one"]]);
  });

  test("a bad x-amz-tagging refuses the write and stores nothing", async () => {
    const tooMany = Array.from({ length: 11 }, (_, i) => `k${i}=v`).join("&");
    expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "w2", Body: "x", Tagging: tooMany })))).toMatchObject({ name: "InvalidTag", status: 400 });
    expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "w2", Body: "x", Tagging: "aws:x=1" })))).toMatchObject({ name: "InvalidTag", status: 400 });
    expect(await s3Failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "w2" })))).toMatchObject({ status: 404 });
  });

  test("CopyObject carries the source's tags (COPY, the default) or takes x-amz-tagging (REPLACE)", async () => {
    for (const [key, body] of [["c-small", "x"], ["c-big", randomBytes(2 * MiB)]] as const) {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, Tagging: "from=source" }));
      await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: `${key}-copy`, CopySource: `${BUCKET}/${key}` }));
      expect(await getTags(`${key}-copy`)).toEqual([["from", "source"]]);
      await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: `${key}-replaced`, CopySource: `${BUCKET}/${key}`, TaggingDirective: "REPLACE", Tagging: "from=request" }));
      expect(await getTags(`${key}-replaced`)).toEqual([["from", "request"]]);
      await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: `${key}-untagged`, CopySource: `${BUCKET}/${key}`, TaggingDirective: "REPLACE" }));
      expect(await getTags(`${key}-untagged`)).toEqual([]);
    }
  });

  test("CreateMultipartUpload's tags are the completed object's", async () => {
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "mpu", Tagging: "kind=multipart" }));
    const part = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mpu", UploadId, PartNumber: 1, Body: "only part" }));
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "mpu", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }));
    expect(await getTags("mpu")).toEqual([["kind", "multipart"]]);
    expect(await headCount("mpu")).toBe(1);
  });
});

describe("awscli", () => {
  test.skipIf(!existsSync(AWS))("`aws s3 cp` of a large object key to key (a multipart copy, which reads the source's tags first) works", async () => {
    const home = mkdtempSync(join(tmpdir(), "bunker-tag-aws-"));
    try {
      const aws = awsCli(server, home);
      // Past awscli's 8 MiB multipart threshold.
      const body = randomBytes(9 * MiB + 5);
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "big", Body: body }));
      expectOk(await aws("s3", "cp", `s3://${BUCKET}/big`, `s3://${BUCKET}/big2`), "aws s3 cp key to key");
      const copied = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "big2" }));
      expect(sha256Hex(await copied.Body!.transformToByteArray())).toBe(sha256Hex(body));
      expect(copied.ETag).toMatch(/-2"$/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
  if (!existsSync(AWS)) test.skip(`awscli not installed (${AWS}): apt-get install -y awscli`, () => {});
});

describe("replication", () => {
  let cluster: TestCluster;
  afterAll(async () => {
    await cluster?.stop();
  });

  test("tags written through node 1 are read through node 3, with node 1 down", async () => {
    cluster = await startCluster({ nodes: 3, replicationFactor: 3 });
    const [a, , c] = cluster.nodes as [TestServer, TestServer, TestServer];
    const created = await a.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "tags", allow: { createBucket: true } });
    const key = { accessKeyId: created.accessKeyId, secretAccessKey: created.secretAccessKey };
    const client = (n: TestServer) => new S3Client({ endpoint: n.endpoint, region: n.region, forcePathStyle: true, credentials: key, maxAttempts: 1 });
    await client(a).send(new CreateBucketCommand({ Bucket: BUCKET }));
    await client(a).send(new PutObjectCommand({ Bucket: BUCKET, Key: "k", Body: "x" }));
    await client(a).send(new PutObjectTaggingCommand({ Bucket: BUCKET, Key: "k", Tagging: { TagSet: tagSet([["site", "one"]]) } }));
    await a.kill();
    const r = await client(c).send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: "k" }));
    expect(r.TagSet).toEqual(tagSet([["site", "one"]]));
    expect((await client(c).send(new HeadObjectCommand({ Bucket: BUCKET, Key: "k" }))).TagCount).toBe(1);
  }, 120_000);
});
