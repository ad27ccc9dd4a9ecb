// Static websites: a site published with awscli (`s3 sync` + `s3 website`) is served by the
// real server's web endpoint, without signatures, with index and error documents, directory
// redirects, object redirects, Range and conditional requests; PutBucketWebsite rules and
// the owner permission are checked through the AWS SDK.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import {
  CreateBucketCommand,
  DeleteBucketWebsiteCommand,
  GetBucketWebsiteCommand,
  PutBucketWebsiteCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { startServer, WEB_ROOT_DOMAIN, type TestServer } from "../helpers/server";
import { awsCli, MiB, s3Failure, sdkClient, sha256Hex } from "../helpers/clients";

setDefaultTimeout(60_000);

const SITE = "my-site";
let server: TestServer;
let s3: S3Client;
let tmp: string;
const big = randomBytes(3 * MiB + 12345);

/** A GET (or other method) on the web endpoint for `host`, redirects not followed. */
function web(path: string, opts: { host?: string; method?: string; headers?: Record<string, string> } = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${server.webPort}${path}`, {
    method: opts.method ?? "GET",
    headers: { host: opts.host ?? `${SITE}.${WEB_ROOT_DOMAIN}`, ...opts.headers },
    redirect: "manual",
  });
}

/** The admin endpoint a TLS proxy asks before it gets a certificate for a domain. */
async function check(domain?: string): Promise<number> {
  const q = domain === undefined ? "" : `?domain=${encodeURIComponent(domain)}`;
  return (await fetch(`http://127.0.0.1:${server.adminPort}/check${q}`)).status;
}

async function aws(...args: string[]) {
  const r = await awsCli(server, tmp)(...args);
  if (r.code !== 0) throw new Error(`aws ${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
  return r;
}

/** The name and status of the S3 error a request fails with. */
const s3Error = async (p: Promise<unknown>) => {
  const { name, status } = await s3Failure(p);
  return { name, status };
};

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  tmp = mkdtempSync(join(tmpdir(), "bunker-website-"));
  const site = join(tmp, "site");
  mkdirSync(join(site, "docs"), { recursive: true });
  mkdirSync(join(site, "assets"), { recursive: true });
  writeFileSync(join(site, "index.html"), "<h1>home</h1>");
  writeFileSync(join(site, "docs", "index.html"), "<h1>docs</h1>");
  writeFileSync(join(site, "docs", "page one.html"), "<h1>page one</h1>");
  writeFileSync(join(site, "404.html"), "<h1>lost</h1>");
  writeFileSync(join(site, "assets", "video.bin"), big);
  await aws("s3", "mb", `s3://${SITE}`);
  await aws("s3", "sync", "--only-show-errors", site, `s3://${SITE}/`);
});

afterAll(async () => {
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("a bucket without website access is not served", async () => {
  const r = await web("/index.html");
  expect(r.status).toBe(404);
  expect(r.headers.get("x-amz-error-code")).toBe("NoSuchBucket");
  expect(await r.text()).toContain("404");
  // nor is a host that names no bucket
  expect((await web("/", { host: `nothing-here.${WEB_ROOT_DOMAIN}` })).status).toBe(404);
  expect(await check(`${SITE}.${WEB_ROOT_DOMAIN}`)).toBe(404);
  expect(await check()).toBe(400);
});

test("awscli s3 website publishes the bucket; GetBucketWebsite shows the documents", async () => {
  await aws("s3", "website", `s3://${SITE}`, "--index-document", "index.html", "--error-document", "404.html");
  const got = await s3.send(new GetBucketWebsiteCommand({ Bucket: SITE }));
  expect(got.IndexDocument?.Suffix).toBe("index.html");
  expect(got.ErrorDocument?.Key).toBe("404.html");
  expect(await check(`${SITE}.${WEB_ROOT_DOMAIN}`)).toBe(200);
  expect(await check(SITE)).toBe(200);
  expect(await check(`other.${WEB_ROOT_DOMAIN}`)).toBe(404);
});

test("pages: root and directory index documents, content type from the upload, HEAD", async () => {
  const home = await web("/");
  expect(home.status).toBe(200);
  expect(home.headers.get("content-type")).toBe("text/html");
  expect(await home.text()).toBe("<h1>home</h1>");
  expect(await (await web("/docs/")).text()).toBe("<h1>docs</h1>");
  expect(await (await web("/docs/page%20one.html")).text()).toBe("<h1>page one</h1>");
  const head = await web("/docs/index.html", { method: "HEAD" });
  expect(head.status).toBe(200);
  expect(head.headers.get("content-length")).toBe(String("<h1>docs</h1>".length));
  expect(await head.text()).toBe("");
  // The host may carry a port; the bucket may also be named by the whole host.
  expect((await web("/", { host: `${SITE}.${WEB_ROOT_DOMAIN}:8080` })).status).toBe(200);
});

test("a directory without its slash is redirected to it; a missing page shows the error document with 404", async () => {
  const dir = await web("/docs");
  expect(dir.status).toBe(302);
  expect(dir.headers.get("location")).toBe("/docs/");
  const missing = await web("/no/such/page.html");
  expect(missing.status).toBe(404);
  expect(await missing.text()).toBe("<h1>lost</h1>");
  const missingHead = await web("/no/such/page.html", { method: "HEAD" });
  expect(missingHead.status).toBe(404);
  expect(await missingHead.text()).toBe("");
});

test("a large object is streamed whole and by Range; conditional GET answers 304", async () => {
  const whole = await web("/assets/video.bin");
  expect(whole.status).toBe(200);
  const body = new Uint8Array(await whole.arrayBuffer());
  expect(body.length).toBe(big.length);
  expect(sha256Hex(body)).toBe(sha256Hex(big));
  const part = await web("/assets/video.bin", { headers: { range: `bytes=${MiB - 10}-${MiB + 9}` } });
  expect(part.status).toBe(206);
  expect(part.headers.get("content-range")).toBe(`bytes ${MiB - 10}-${MiB + 9}/${big.length}`);
  expect(Buffer.from(await part.arrayBuffer()).equals(big.subarray(MiB - 10, MiB + 10))).toBe(true);
  const etag = whole.headers.get("etag")!;
  const again = await web("/assets/video.bin", { headers: { "if-none-match": etag } });
  expect(again.status).toBe(304);
  // S3 query parameters mean nothing to a website: the page is served as is.
  const withQuery = await web("/index.html?response-content-type=text/plain&partNumber=9");
  expect(withQuery.headers.get("content-type")).toBe("text/html");
});

test("an object with a website redirect location answers 301", async () => {
  await s3.send(new PutObjectCommand({ Bucket: SITE, Key: "old.html", Body: "", WebsiteRedirectLocation: "/docs/" }));
  const r = await web("/old.html");
  expect(r.status).toBe(301);
  expect(r.headers.get("location")).toBe("/docs/");
});

test("only GET, HEAD and OPTIONS; no signature is needed but nothing can be written", async () => {
  for (const method of ["PUT", "POST", "DELETE"]) {
    const r = await web("/index.html", { method });
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toBe("GET, HEAD, OPTIONS");
  }
  expect(await (await web("/index.html")).text()).toBe("<h1>home</h1>");
});

test("routing rules: prefix redirects, redirects on a missing object, read back by GetBucketWebsite", async () => {
  await s3.send(
    new PutBucketWebsiteCommand({
      Bucket: SITE,
      WebsiteConfiguration: {
        IndexDocument: { Suffix: "index.html" },
        ErrorDocument: { Key: "404.html" },
        RoutingRules: [
          { Condition: { KeyPrefixEquals: "old-docs/" }, Redirect: { ReplaceKeyPrefixWith: "docs/" } },
          { Condition: { KeyPrefixEquals: "assets/", HttpErrorCodeReturnedEquals: "404" }, Redirect: { HostName: "cdn.example", Protocol: "https", HttpRedirectCode: "302" } },
        ],
      },
    }),
  );
  const moved = await web("/old-docs/page%20one.html");
  expect(moved.status).toBe(301);
  expect(moved.headers.get("location")).toBe("/docs/page%20one.html");
  expect((await web(moved.headers.get("location")!)).status).toBe(200);
  const missing = await web("/assets/gone.png");
  expect(missing.status).toBe(302);
  expect(missing.headers.get("location")).toBe("https://cdn.example/assets/gone.png");
  expect((await web("/assets/video.bin", { method: "HEAD" })).status).toBe(200); // present: served
  expect((await web("/elsewhere.html")).status).toBe(404); // no rule: the error document
  const got = await s3.send(new GetBucketWebsiteCommand({ Bucket: SITE }));
  expect(got.RoutingRules).toHaveLength(2);
  expect(got.RoutingRules![1]).toMatchObject({ Condition: { KeyPrefixEquals: "assets/", HttpErrorCodeReturnedEquals: "404" }, Redirect: { HostName: "cdn.example", Protocol: "https", HttpRedirectCode: "302" } });
});

test("PutBucketWebsite: invalid documents and unsupported rules are refused; only an owner may change it", async () => {
  const bad = (IndexDocument: { Suffix: string }) => s3.send(new PutBucketWebsiteCommand({ Bucket: SITE, WebsiteConfiguration: { IndexDocument } }));
  expect(await s3Error(bad({ Suffix: "a/b.html" }))).toEqual({ name: "InvalidArgument", status: 400 });
  expect(await s3Error(bad({ Suffix: "" }))).toMatchObject({ status: 400 });
  const redirectAll = s3.send(
    new PutBucketWebsiteCommand({ Bucket: SITE, WebsiteConfiguration: { RedirectAllRequestsTo: { HostName: "example.com" }, IndexDocument: { Suffix: "index.html" } } }),
  );
  expect(await s3Error(redirectAll)).toEqual({ name: "InvalidArgument", status: 400 });
  // The refused configs changed nothing.
  expect((await s3.send(new GetBucketWebsiteCommand({ Bucket: SITE }))).IndexDocument?.Suffix).toBe("index.html");

  // A key with read and write but not owner on the bucket.
  const other = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "writer" });
  const bucket = await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${SITE}`);
  await server.admin("POST", "/v2/AllowBucketKey", { bucketId: bucket.id, accessKeyId: other.accessKeyId, permissions: { read: true, write: true } });
  const writer = sdkClient(server, { accessKeyId: other.accessKeyId, secretAccessKey: other.secretAccessKey });
  expect(await s3Error(writer.send(new DeleteBucketWebsiteCommand({ Bucket: SITE })))).toEqual({ name: "AccessDenied", status: 403 });
  expect(await s3Error(writer.send(new GetBucketWebsiteCommand({ Bucket: SITE })))).toEqual({ name: "AccessDenied", status: 403 });
  expect((await web("/")).status).toBe(200);
});

test("a second site on a bucket named like a domain; DeleteBucketWebsite takes a site down", async () => {
  await s3.send(new CreateBucketCommand({ Bucket: "www.example.org" }));
  await s3.send(new PutObjectCommand({ Bucket: "www.example.org", Key: "index.html", Body: "example", ContentType: "text/html" }));
  await s3.send(new PutBucketWebsiteCommand({ Bucket: "www.example.org", WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" } } }));
  expect(await (await web("/", { host: "www.example.org" })).text()).toBe("example");
  expect(await (await web("/", { host: `www.example.org.${WEB_ROOT_DOMAIN}` })).text()).toBe("example");
  // Without an error document a missing page gets the plain error page.
  const missing = await web("/nope", { host: "www.example.org" });
  expect(missing.status).toBe(404);
  expect(missing.headers.get("x-amz-error-code")).toBe("NoSuchKey");

  await s3.send(new DeleteBucketWebsiteCommand({ Bucket: SITE }));
  expect(await s3Error(s3.send(new GetBucketWebsiteCommand({ Bucket: SITE })))).toEqual({ name: "NoSuchWebsiteConfiguration", status: 404 });
  expect((await web("/")).status).toBe(404);
  expect(await check(`${SITE}.${WEB_ROOT_DOMAIN}`)).toBe(404);
  expect((await web("/", { host: "www.example.org" })).status).toBe(200);
  expect(await check("www.example.org")).toBe(200);

  // RedirectAllRequestsTo: the whole bucket answers with a redirect to another host.
  await s3.send(new PutBucketWebsiteCommand({ Bucket: "www.example.org", WebsiteConfiguration: { RedirectAllRequestsTo: { HostName: "example.org", Protocol: "https" } } }));
  const moved = await web("/blog/post.html?ref=1", { host: "www.example.org" });
  expect(moved.status).toBe(301);
  expect(moved.headers.get("location")).toBe("https://example.org/blog/post.html?ref=1");
  const got = await s3.send(new GetBucketWebsiteCommand({ Bucket: "www.example.org" }));
  expect(got.RedirectAllRequestsTo).toEqual({ HostName: "example.org", Protocol: "https" });
  expect(got.IndexDocument).toBeUndefined();
});
