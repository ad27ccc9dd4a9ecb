// Admin bucket operations on a real server: global aliases (a second name reaches the same
// objects through S3 and the web endpoint; the last name cannot be removed), the cleanup of
// incomplete multipart uploads by age, and InspectObject.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  PutBucketWebsiteCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { startServer, WEB_ROOT_DOMAIN, type TestServer } from "../helpers/server";
import { sdkClient } from "../helpers/clients";

setDefaultTimeout(60_000);

let server: TestServer;
let s3: S3Client;
let bucketId: string;

interface Info {
  id: string;
  globalAliases: string[];
  unfinishedUploads: number;
}

type Answer = { code?: string; message?: string; uploadsDeleted?: number } & Partial<Info>;

async function adminCall(path: string, body: unknown): Promise<{ status: number; json: Answer }> {
  const r = await fetch(`http://127.0.0.1:${server.adminPort}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: (await r.json()) as Answer };
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: "site-old" }));
  await s3.send(new CreateBucketCommand({ Bucket: "other" }));
  await s3.send(new PutObjectCommand({ Bucket: "site-old", Key: "index.html", Body: "hello", ContentType: "text/html" }));
  bucketId = (await server.admin<Info>("GET", "/v2/GetBucketInfo?globalAlias=site-old")).id;
});

afterAll(async () => {
  await server?.stop();
});

test("a second global name reaches the same bucket through S3 and the web endpoint", async () => {
  const added = await adminCall("/v2/AddBucketAlias", { bucketId, globalAlias: "www.example.org" });
  expect(added.status).toBe(200);
  expect(added.json.globalAliases?.sort()).toEqual(["site-old", "www.example.org"]);
  const got = await s3.send(new GetObjectCommand({ Bucket: "www.example.org", Key: "index.html" }));
  expect(await got.Body!.transformToString()).toBe("hello");
  await s3.send(new PutBucketWebsiteCommand({ Bucket: "www.example.org", WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" } } }));
  for (const host of ["www.example.org", `site-old.${WEB_ROOT_DOMAIN}`]) {
    const page = await fetch(`http://127.0.0.1:${server.webPort}/`, { headers: { host } });
    expect(await page.text()).toBe("hello");
  }
});

test("names are checked: taken, invalid, not the bucket's, the last one", async () => {
  expect((await adminCall("/v2/AddBucketAlias", { bucketId, globalAlias: "other" })).status).toBe(409);
  expect((await adminCall("/v2/AddBucketAlias", { bucketId, globalAlias: "Not_Valid" })).json.code).toBe("InvalidBucketName");
  expect((await adminCall("/v2/RemoveBucketAlias", { bucketId, globalAlias: "other" })).status).toBe(400);
  // A rename: remove the old name once the new one exists.
  const removed = await adminCall("/v2/RemoveBucketAlias", { bucketId, globalAlias: "site-old" });
  expect(removed.status).toBe(200);
  expect(removed.json.globalAliases).toEqual(["www.example.org"]);
  await expect(s3.send(new GetObjectCommand({ Bucket: "site-old", Key: "index.html" }))).rejects.toThrow();
  const last = await adminCall("/v2/RemoveBucketAlias", { bucketId, globalAlias: "www.example.org" });
  expect(last.status).toBe(400);
  expect(last.json.message).toContain("only name");
  // The freed name can be taken by another bucket.
  await s3.send(new CreateBucketCommand({ Bucket: "site-old" }));
});

test("CleanupIncompleteUploads aborts the uploads older than asked, and only those", async () => {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "other", Key: "stale" }));
  await s3.send(new UploadPartCommand({ Bucket: "other", Key: "stale", UploadId, PartNumber: 1, Body: new Uint8Array(1000) }));
  const otherId = (await server.admin<Info>("GET", "/v2/GetBucketInfo?globalAlias=other")).id;
  await Bun.sleep(1100);
  await s3.send(new CreateMultipartUploadCommand({ Bucket: "other", Key: "fresh" }));
  // Older than 1 s: only "stale".
  expect((await adminCall("/v2/CleanupIncompleteUploads", { bucketId: otherId, olderThanSecs: 1 })).json.uploadsDeleted).toBe(1);
  const left = await s3.send(new ListMultipartUploadsCommand({ Bucket: "other" }));
  expect((left.Uploads ?? []).map((u) => u.Key)).toEqual(["fresh"]);
  expect((await adminCall("/v2/CleanupIncompleteUploads", { bucketId: otherId, olderThanSecs: 0 })).json.uploadsDeleted).toBe(1);
  expect((await server.admin<Info>("GET", `/v2/GetBucketInfo?id=${otherId}`)).unfinishedUploads).toBe(0);
  expect((await adminCall("/v2/CleanupIncompleteUploads", { bucketId: otherId, olderThanSecs: -1 })).status).toBe(400);
});

test("the CLI: bucket alias, unalias and cleanup-incomplete-uploads", async () => {
  expect((await server.cli("bucket", "alias", "other", "other-name")).code).toBe(0);
  const info = JSON.parse((await server.cli("bucket", "info", "other-name", "--json")).stdout) as Info;
  expect(info.globalAliases.sort()).toEqual(["other", "other-name"]);
  expect((await server.cli("bucket", "unalias", "other-name")).code).toBe(0);
  const refused = await server.cli("bucket", "unalias", "other");
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain("only name");
  await s3.send(new CreateMultipartUploadCommand({ Bucket: "other", Key: "again" }));
  const cleaned = await server.cli("bucket", "cleanup-incomplete-uploads", "--older-than", "0s", "other", "--json");
  expect(cleaned.code).toBe(0);
  expect(JSON.parse(cleaned.stdout)).toMatchObject([{ name: "other", uploadsDeleted: 1 }]);
});

test("InspectObject shows every stored version and its blocks; the CLI prints and --json them", async () => {
  const body = new Uint8Array(2 * 1024 * 1024 + 5).fill(3);
  await s3.send(new PutObjectCommand({ Bucket: "other", Key: "big", Body: body }));
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "other", Key: "big" }));
  const otherId = (await server.admin<Info>("GET", "/v2/GetBucketInfo?globalAlias=other")).id;
  type Inspected = { key: string; versions: { uuid: string; uploading: boolean; size: number | null; blocks: { offset: number; size: number; hash: string }[] }[] };
  const got = await server.admin<Inspected>("GET", `/v2/InspectObject?bucketId=${otherId}&key=big`);
  expect(got.key).toBe("big");
  const complete = got.versions.find((v) => !v.uploading)!;
  expect(complete.size).toBe(body.length);
  expect(complete.blocks.map((b) => [b.offset, b.size])).toEqual([
    [0, 1024 * 1024],
    [1024 * 1024, 1024 * 1024],
    [2 * 1024 * 1024, 5],
  ]);
  expect(got.versions.find((v) => v.uploading)?.uuid).toBe(UploadId);
  const cli = await server.cli("bucket", "inspect-object", "other", "big");
  expect(cli.code).toBe(0);
  expect(cli.stdout).toContain(complete.blocks[0]!.hash);
  expect(cli.stdout).toContain("uploading");
  const missing = await server.cli("bucket", "inspect-object", "other", "no-such-key");
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain("no entry");
});
