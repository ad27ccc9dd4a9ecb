// Put/Get/DeleteBucketTagging on a real server through the AWS SDK and signed raw requests:
// the tag set reads back as written, each Put replaces it whole, AWS's limits and errors
// (InvalidTag, MalformedXML, NoSuchTagSet), permissions, and a re-created bucket has no tags.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { createHash } from "node:crypto";
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteBucketTaggingCommand,
  GetBucketTaggingCommand,
  PutBucketTaggingCommand,
  S3Client,
  type Tag,
} from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { s3Failure, sdkClient } from "../helpers/clients";
import { errorCode, signedFetch } from "../helpers/signed";

setDefaultTimeout(60_000);

const BUCKET = "tagged-bucket";
let server: TestServer;
let s3: S3Client;

const put = (TagSet: Tag[], Bucket = BUCKET) => s3.send(new PutBucketTaggingCommand({ Bucket, Tagging: { TagSet } }));
const get = async (Bucket = BUCKET) => (await s3.send(new GetBucketTaggingCommand({ Bucket }))).TagSet;
const tags = (n: number, key = (i: number) => `k${i}`): Tag[] => Array.from({ length: n }, (_, i) => ({ Key: key(i), Value: `v${i}` }));

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  await server?.stop();
});

test("no tags: NoSuchTagSet; Put, Get as written, Delete (204), NoSuchTagSet again", async () => {
  expect(await s3Failure(get())).toMatchObject({ name: "NoSuchTagSet", status: 404 });
  const set = [{ Key: "Project", Value: "Bunker" }, { Key: "cost centre", Value: "" }, { Key: "path", Value: "a/b:c@d=e+f-g_h.i" }];
  expect((await put(set)).$metadata.httpStatusCode).toBe(204);
  expect(await get()).toEqual(set);
  expect((await s3.send(new DeleteBucketTaggingCommand({ Bucket: BUCKET }))).$metadata.httpStatusCode).toBe(204);
  expect(await s3Failure(get())).toMatchObject({ name: "NoSuchTagSet", status: 404 });
  // Deleting tags that are not there is still 204.
  expect((await s3.send(new DeleteBucketTaggingCommand({ Bucket: BUCKET }))).$metadata.httpStatusCode).toBe(204);
});

test("a Put replaces the whole set; an empty set leaves none", async () => {
  await put([{ Key: "a", Value: "1" }, { Key: "b", Value: "2" }]);
  await put([{ Key: "c", Value: "3" }]);
  expect(await get()).toEqual([{ Key: "c", Value: "3" }]);
  await put([]);
  expect(await s3Failure(get())).toMatchObject({ name: "NoSuchTagSet" });
});

test("AWS's limits: 50 tags, keys 1..128 and values 0..256 characters, allowed characters, no aws: keys, no key twice", async () => {
  await put(tags(50));
  expect(await get()).toHaveLength(50);
  await put([{ Key: "k".repeat(128), Value: "v".repeat(256) }]);
  const refused: Tag[][] = [
    tags(51),
    [{ Key: "k".repeat(129), Value: "v" }],
    [{ Key: "k", Value: "v".repeat(257) }],
    [{ Key: "a*b", Value: "v" }],
    [{ Key: "k", Value: "semi;colon" }],
    [{ Key: "aws:createdBy", Value: "me" }],
    [{ Key: "dup", Value: "1" }, { Key: "dup", Value: "2" }],
    [{ Key: "", Value: "v" }],
  ];
  for (const set of refused) expect({ first: set[0]!.Key!.slice(0, 12), ...(await s3Failure(put(set))) }).toMatchObject({ first: set[0]!.Key!.slice(0, 12), name: "InvalidTag", status: 400 });
  // Nothing refused was stored.
  expect(await get()).toEqual([{ Key: "k".repeat(128), Value: "v".repeat(256) }]);
});

test("malformed documents are MalformedXML; a damaged one (Content-MD5) is BadDigest; nothing is stored", async () => {
  await put([{ Key: "keep", Value: "me" }]);
  const send = async (body: string, headers: Record<string, string> = {}) => {
    const res = await signedFetch(server, "PUT", `/${BUCKET}?tagging`, { body, headers });
    return { status: res.status, code: errorCode(await res.text()) };
  };
  for (const body of ["", "<Tagging/>", "<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>", "<Tagging><TagSet>", "<Other/>"])
    expect({ body, ...(await send(body)) }).toEqual({ body, status: 400, code: "MalformedXML" });
  const doc = "<Tagging><TagSet><Tag><Key>x</Key><Value>y</Value></Tag></TagSet></Tagging>";
  const wrongMd5 = createHash("md5").update(doc + " ").digest("base64");
  expect(await send(doc, { "content-md5": wrongMd5 })).toEqual({ status: 400, code: "BadDigest" });
  expect(await get()).toEqual([{ Key: "keep", Value: "me" }]);
  expect(await send(doc, { "content-md5": createHash("md5").update(doc).digest("base64") })).toEqual({ status: 204, code: "" });
  expect(await get()).toEqual([{ Key: "x", Value: "y" }]);
});

test("reading tags takes read permission, changing them write permission", async () => {
  await put([{ Key: "owner", Value: "test" }]);
  const key = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "reader" });
  const bucket = await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`);
  await server.admin("POST", "/v2/AllowBucketKey", { bucketId: bucket.id, accessKeyId: key.accessKeyId, permissions: { read: true } });
  const reader = sdkClient(server, { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey });
  expect((await reader.send(new GetBucketTaggingCommand({ Bucket: BUCKET }))).TagSet).toEqual([{ Key: "owner", Value: "test" }]);
  expect(await s3Failure(reader.send(new PutBucketTaggingCommand({ Bucket: BUCKET, Tagging: { TagSet: [] } })))).toMatchObject({ name: "AccessDenied", status: 403 });
  expect(await s3Failure(reader.send(new DeleteBucketTaggingCommand({ Bucket: BUCKET })))).toMatchObject({ name: "AccessDenied", status: 403 });
  expect(await get()).toEqual([{ Key: "owner", Value: "test" }]);
});

test("a deleted bucket's tags do not come back with a new bucket of the same name", async () => {
  await s3.send(new CreateBucketCommand({ Bucket: "short-lived" }));
  await put([{ Key: "gen", Value: "1" }], "short-lived");
  await s3.send(new DeleteBucketCommand({ Bucket: "short-lived" }));
  expect(await s3Failure(get("short-lived"))).toMatchObject({ name: "NoSuchBucket" });
  await s3.send(new CreateBucketCommand({ Bucket: "short-lived" }));
  expect(await s3Failure(get("short-lived"))).toMatchObject({ name: "NoSuchTagSet" });
});
