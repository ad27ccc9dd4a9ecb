// ListBuckets with AWS's paging and filters (max-buckets, continuation-token, prefix,
// bucket-region) on a real server, through the AWS SDK (ListBucketsCommand and
// paginateListBuckets) and signed raw requests; and CreateBucket on a taken name.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { CreateBucketCommand, GetBucketTaggingCommand, ListBucketsCommand, paginateListBuckets, S3Client } from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { s3Failure, sdkClient } from "../helpers/clients";
import { errorCode, signedFetch } from "../helpers/signed";

setDefaultTimeout(60_000);

const NAMES = ["lb-a1", "lb-a2", "lb-b1", "lb-b2", "lb-c1"];
let server: TestServer;
let s3: S3Client;

async function newKeyClient(name: string): Promise<S3Client> {
  const key = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name, allow: { createBucket: true } });
  return sdkClient(server, { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey });
}

async function answer(target: string): Promise<{ status: number; code: string; text: string }> {
  const res = await signedFetch(server, "GET", target);
  const text = await res.text();
  return { status: res.status, code: errorCode(text), text };
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  for (const Bucket of [...NAMES].reverse()) await s3.send(new CreateBucketCommand({ Bucket }));
  // Another key's bucket is never listed.
  await (await newKeyClient("other")).send(new CreateBucketCommand({ Bucket: "lb-a0-other" }));
});

afterAll(async () => {
  await server?.stop();
});

describe("ListBuckets", () => {
  test("without paging parameters: every bucket the key may use, by name, with no token", async () => {
    const r = await s3.send(new ListBucketsCommand({}));
    expect(r.Buckets!.map((b) => b.Name)).toEqual(NAMES);
    expect(r.Buckets![0]!.BucketRegion).toBe(server.region);
    expect(r.ContinuationToken).toBeUndefined();
    expect(r.Prefix).toBeUndefined();
  });

  test("MaxBuckets pages with a ContinuationToken until the last page, which has none", async () => {
    const first = await s3.send(new ListBucketsCommand({ MaxBuckets: 2 }));
    expect(first.Buckets!.map((b) => b.Name)).toEqual(["lb-a1", "lb-a2"]);
    expect(first.ContinuationToken).toBeString();
    const second = await s3.send(new ListBucketsCommand({ MaxBuckets: 2, ContinuationToken: first.ContinuationToken }));
    expect(second.Buckets!.map((b) => b.Name)).toEqual(["lb-b1", "lb-b2"]);
    const third = await s3.send(new ListBucketsCommand({ MaxBuckets: 2, ContinuationToken: second.ContinuationToken }));
    expect(third.Buckets!.map((b) => b.Name)).toEqual(["lb-c1"]);
    expect(third.ContinuationToken).toBeUndefined();
    // A page that ends exactly at the last bucket hands out no token.
    expect((await s3.send(new ListBucketsCommand({ MaxBuckets: 5 }))).ContinuationToken).toBeUndefined();
  });

  test("paginateListBuckets walks every bucket one page at a time", async () => {
    const names: string[] = [];
    let pages = 0;
    for await (const page of paginateListBuckets({ client: s3, pageSize: 2 }, {})) {
      pages++;
      names.push(...(page.Buckets ?? []).map((b) => b.Name!));
    }
    expect(names).toEqual(NAMES);
    expect(pages).toBe(3);
  });

  test("Prefix filters and is echoed; paging within a prefix", async () => {
    const r = await s3.send(new ListBucketsCommand({ Prefix: "lb-b" }));
    expect(r.Buckets!.map((b) => b.Name)).toEqual(["lb-b1", "lb-b2"]);
    expect(r.Prefix).toBe("lb-b");
    const page = await s3.send(new ListBucketsCommand({ Prefix: "lb-b", MaxBuckets: 1 }));
    expect(page.Buckets!.map((b) => b.Name)).toEqual(["lb-b1"]);
    const next = await s3.send(new ListBucketsCommand({ Prefix: "lb-b", MaxBuckets: 1, ContinuationToken: page.ContinuationToken }));
    expect(next.Buckets!.map((b) => b.Name)).toEqual(["lb-b2"]);
    expect(next.ContinuationToken).toBeUndefined();
    expect((await s3.send(new ListBucketsCommand({ Prefix: "zz" }))).Buckets ?? []).toEqual([]);
  });

  test("BucketRegion: this server's region lists the buckets, any other none", async () => {
    expect((await s3.send(new ListBucketsCommand({ BucketRegion: server.region }))).Buckets!.map((b) => b.Name)).toEqual(NAMES);
    const elsewhere = await s3.send(new ListBucketsCommand({ BucketRegion: "us-west-2" }));
    expect(elsewhere.Buckets ?? []).toEqual([]);
    expect(elsewhere.ContinuationToken).toBeUndefined();
  });

  test("bad max-buckets and continuation tokens are 400 InvalidArgument", async () => {
    for (const bad of ["max-buckets=0", "max-buckets=10001", "max-buckets=abc", "max-buckets=-1", "max-buckets=1e3", "continuation-token=%21%21", `continuation-token=${Buffer.from("UPPER").toString("base64url")}`, `continuation-token=${"A".repeat(1025)}`])
      expect({ bad, ...(await answer(`/?${bad}`)) }).toMatchObject({ bad, status: 400, code: "InvalidArgument" });
    expect((await answer("/?max-buckets=10000")).status).toBe(200);
  });

  test("the paging of a key with few buckets, as s3-tests test_list_buckets_paginated", async () => {
    const c = await newKeyClient("pager");
    const page = (token?: string) => c.send(new ListBucketsCommand({ MaxBuckets: 1, ContinuationToken: token }));
    let r = await page();
    expect(r.Buckets ?? []).toEqual([]);
    expect(r.ContinuationToken).toBeUndefined();
    await c.send(new CreateBucketCommand({ Bucket: "pager-1" }));
    r = await page();
    expect(r.Buckets!.map((b) => b.Name)).toEqual(["pager-1"]);
    expect(r.ContinuationToken).toBeUndefined();
    await c.send(new CreateBucketCommand({ Bucket: "pager-2" }));
    r = await page();
    expect(r.Buckets!.map((b) => b.Name)).toEqual(["pager-1"]);
    r = await page(r.ContinuationToken);
    expect(r.Buckets!.map((b) => b.Name)).toEqual(["pager-2"]);
    expect(r.ContinuationToken).toBeUndefined();
  });
});

describe("CreateBucket", () => {
  test("a bucket one has is BucketAlreadyOwnedByYou; another key's is BucketAlreadyExists; nothing changes", async () => {
    expect(await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "lb-a1" })))).toMatchObject({ name: "BucketAlreadyOwnedByYou", status: 409 });
    expect(await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "lb-a0-other" })))).toMatchObject({ name: "BucketAlreadyExists", status: 409 });
    expect((await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name)).toEqual(NAMES);
  });

  test("a LocationConstraint of another region is IllegalLocationConstraintException; this region's is accepted", async () => {
    expect(await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "lb-elsewhere", CreateBucketConfiguration: { LocationConstraint: "eu-west-1" } })))).toMatchObject({
      name: "IllegalLocationConstraintException",
      status: 400,
    });
    await s3.send(new CreateBucketCommand({ Bucket: "lb-here", CreateBucketConfiguration: { LocationConstraint: server.region as "eu-west-1" } }));
    const names = (await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name);
    expect(names).toContain("lb-here");
    expect(names).not.toContain("lb-elsewhere");
  });

  test("Tags in CreateBucketConfiguration are the bucket's tags; invalid ones create nothing; directory-bucket elements are 501", async () => {
    await s3.send(new CreateBucketCommand({ Bucket: "lb-tagged", CreateBucketConfiguration: { Tags: [{ Key: "team", Value: "storage" }, { Key: "env", Value: "" }] } }));
    // Answered sorted by key, as S3 answers tag sets.
    expect((await s3.send(new GetBucketTaggingCommand({ Bucket: "lb-tagged" }))).TagSet).toEqual([
      { Key: "env", Value: "" },
      { Key: "team", Value: "storage" },
    ]);
    expect(await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "lb-badtags", CreateBucketConfiguration: { Tags: [{ Key: "aws:x", Value: "v" }] } })))).toMatchObject({ name: "InvalidTag", status: 400 });
    expect(await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "lb-dir", CreateBucketConfiguration: { Location: { Type: "AvailabilityZone", Name: "use1-az1" } } })))).toMatchObject({ name: "NotImplemented", status: 501 });
    const names = (await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name);
    expect(names).not.toContain("lb-badtags");
    expect(names).not.toContain("lb-dir");
    // Re-creating one's own bucket with tags changes nothing.
    expect(await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "lb-tagged", CreateBucketConfiguration: { Tags: [{ Key: "x", Value: "y" }] } })))).toMatchObject({ name: "BucketAlreadyOwnedByYou" });
    expect((await s3.send(new GetBucketTaggingCommand({ Bucket: "lb-tagged" }))).TagSet).toHaveLength(2);
  });
});

test("a server in us-east-1 answers 200 to CreateBucket of one's own bucket, as AWS does there", async () => {
  const east = await startServer({ region: "us-east-1" });
  try {
    const c = sdkClient(east);
    await c.send(new CreateBucketCommand({ Bucket: "legacy" }));
    expect((await c.send(new CreateBucketCommand({ Bucket: "legacy" }))).$metadata.httpStatusCode).toBe(200);
    const otherKey = await east.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "o", allow: { createBucket: true } });
    const other = sdkClient(east, { accessKeyId: otherKey.accessKeyId, secretAccessKey: otherKey.secretAccessKey });
    expect(await s3Failure(other.send(new CreateBucketCommand({ Bucket: "legacy" })))).toMatchObject({ name: "BucketAlreadyExists", status: 409 });
  } finally {
    await east.stop();
  }
});
