// Website access through the real admin API (UpdateBucket, as Garage v2) and through the
// CLI's `bucket website`, against a running server.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { startServer, type TestServer } from "../helpers/server";

setDefaultTimeout(60_000);

const BUCKET = "site";

interface WebsiteInfo {
  id: string;
  websiteAccess: boolean;
  websiteConfig: { indexDocument: string; errorDocument: string | null } | null;
}

let server: TestServer;
let bucketId: string;

/** Unlike server.admin(), keeps error answers: their status and code are what is tested. */
async function updateBucket(body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`http://127.0.0.1:${server.adminPort}/v2/UpdateBucket?id=${bucketId}`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

const bucketInfo = () => server.admin<WebsiteInfo>("GET", `/v2/GetBucketInfo?id=${bucketId}`);

beforeAll(async () => {
  server = await startServer();
  bucketId = (await server.admin<WebsiteInfo>("POST", "/v2/CreateBucket", { globalAlias: BUCKET })).id;
});

afterAll(async () => {
  await server?.stop();
});

test("a new bucket has no website", async () => {
  const info = await bucketInfo();
  expect(info.websiteAccess).toBe(false);
  expect(info.websiteConfig).toBeNull();
});

test("UpdateBucket enables website access with its documents", async () => {
  const r = await updateBucket({ websiteAccess: { enabled: true, indexDocument: "index.html", errorDocument: "404.html" } });
  expect(r.status).toBe(200);
  expect(r.json.websiteConfig).toEqual({ indexDocument: "index.html", errorDocument: "404.html" });
  const info = await bucketInfo();
  expect(info.websiteAccess).toBe(true);
  expect(info.websiteConfig).toEqual({ indexDocument: "index.html", errorDocument: "404.html" });
});

test("enabling without documents defaults the index and has no error document", async () => {
  const r = await updateBucket({ websiteAccess: { enabled: true } });
  expect(r.status).toBe(200);
  expect((await bucketInfo()).websiteConfig).toEqual({ indexDocument: "index.html", errorDocument: null });
});

test("an index document with a slash is refused with InvalidArgument, nothing changes", async () => {
  const before = await bucketInfo();
  const r = await updateBucket({ websiteAccess: { enabled: true, indexDocument: "a/b" } });
  expect(r.status).toBe(400);
  expect(r.json.code).toBe("InvalidArgument");
  expect(await bucketInfo()).toEqual(before);
});

test("documents given while disabling are refused", async () => {
  const r = await updateBucket({ websiteAccess: { enabled: false, indexDocument: "index.html" } });
  expect(r.status).toBe(400);
  expect(r.json.code).toBe("InvalidRequest");
  expect((await bucketInfo()).websiteAccess).toBe(true);
});

test("UpdateBucket disables website access", async () => {
  const r = await updateBucket({ websiteAccess: { enabled: false } });
  expect(r.status).toBe(200);
  const info = await bucketInfo();
  expect(info.websiteAccess).toBe(false);
  expect(info.websiteConfig).toBeNull();
});

test("an unknown bucket id is 404", async () => {
  const r = await fetch(`http://127.0.0.1:${server.adminPort}/v2/UpdateBucket?id=${"0".repeat(64)}`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ websiteAccess: { enabled: false } }),
  });
  expect(r.status).toBe(404);
  expect(((await r.json()) as { code: string }).code).toBe("NoSuchBucket");
});

test("CLI: bucket website --allow -i, then --deny", async () => {
  let r = await server.cli("bucket", "website", "--allow", BUCKET, "-i", "home.html");
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/index document:\s+home.html/);
  expect(r.stdout.trimEnd().split("\n").at(-1)).toContain(`host ${BUCKET}`);

  r = await server.cli("bucket", "info", BUCKET, "--json");
  expect(r.code).toBe(0);
  const info = JSON.parse(r.stdout) as WebsiteInfo;
  expect(info.websiteAccess).toBe(true);
  expect(info.websiteConfig).toEqual({ indexDocument: "home.html", errorDocument: null });

  r = await server.cli("bucket", "website", "--deny", BUCKET, "--json");
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).websiteConfig).toBeNull();
});

test("CLI: an invalid index document is one error line, exit 1", async () => {
  const r = await server.cli("bucket", "website", "--allow", BUCKET, "-i", "a/b");
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^error: .*slash.* \(InvalidArgument\)\n$/);
});
