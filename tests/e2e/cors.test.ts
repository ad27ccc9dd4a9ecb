// CORS on a real server: rules set with the AWS SDK and with awscli, the browser's preflight
// OPTIONS on the S3 and web endpoints, and the headers of actual responses (errors included),
// sent the way a browser sends them (fetch with Origin).
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateBucketCommand,
  DeleteBucketCorsCommand,
  GetBucketCorsCommand,
  GetObjectCommand,
  PutBucketCorsCommand,
  PutBucketWebsiteCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { startServer, WEB_ROOT_DOMAIN, type TestServer } from "../helpers/server";
import { awsCli, s3Failure, sdkClient } from "../helpers/clients";

setDefaultTimeout(60_000);

const BUCKET = "cors-bucket";
const APP = "https://app.example";
let server: TestServer;
let s3: S3Client;
let tmp: string;

function preflight(path: string, origin: string | undefined, method: string | undefined, requestHeaders?: string, port = server.s3Port, host?: string) {
  const headers: Record<string, string> = {};
  if (origin) headers.origin = origin;
  if (method) headers["access-control-request-method"] = method;
  if (requestHeaders) headers["access-control-request-headers"] = requestHeaders;
  if (host) headers.host = host;
  return fetch(`http://127.0.0.1:${port}${path}`, { method: "OPTIONS", headers });
}

/** The name of the S3 error a request fails with. */
const s3Error = async (p: Promise<unknown>) => (await s3Failure(p)).name;

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  tmp = mkdtempSync(join(tmpdir(), "bunker-cors-"));
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "hello.txt", Body: "hello", ContentType: "text/plain" }));
});

afterAll(async () => {
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("without rules: GetBucketCors is NoSuchCORSConfiguration and a preflight is refused", async () => {
  expect(await s3Error(s3.send(new GetBucketCorsCommand({ Bucket: BUCKET })))).toBe("NoSuchCORSConfiguration");
  const r = await preflight(`/${BUCKET}/hello.txt`, APP, "GET");
  expect(r.status).toBe(403);
  expect(r.headers.has("access-control-allow-origin")).toBe(false);
  expect((await preflight(`/no-such-bucket/x`, APP, "GET")).status).toBe(404);
});

test("PutBucketCors (SDK) round-trips; bad rules are refused and change nothing", async () => {
  await s3.send(
    new PutBucketCorsCommand({
      Bucket: BUCKET,
      CORSConfiguration: {
        CORSRules: [
          { ID: "app", AllowedOrigins: [APP], AllowedMethods: ["GET", "PUT", "HEAD"], AllowedHeaders: ["*"], ExposeHeaders: ["ETag"], MaxAgeSeconds: 600 },
          { ID: "public-read", AllowedOrigins: ["*"], AllowedMethods: ["GET"] },
        ],
      },
    }),
  );
  const got = await s3.send(new GetBucketCorsCommand({ Bucket: BUCKET }));
  expect(got.CORSRules).toHaveLength(2);
  expect(got.CORSRules![0]).toMatchObject({ ID: "app", AllowedOrigins: [APP], AllowedMethods: ["GET", "PUT", "HEAD"], AllowedHeaders: ["*"], ExposeHeaders: ["ETag"], MaxAgeSeconds: 600 });
  expect(got.CORSRules![1]).toMatchObject({ ID: "public-read", AllowedOrigins: ["*"], AllowedMethods: ["GET"] });

  const bad = s3.send(new PutBucketCorsCommand({ Bucket: BUCKET, CORSConfiguration: { CORSRules: [{ AllowedOrigins: ["*"], AllowedMethods: ["PATCH"] }] } }));
  expect(await s3Error(bad)).toBe("InvalidRequest");
  expect((await s3.send(new GetBucketCorsCommand({ Bucket: BUCKET }))).CORSRules).toHaveLength(2);
});

test("preflight: the matching rule's grant, or 403; no signature needed", async () => {
  const ok = await preflight(`/${BUCKET}/upload.bin`, APP, "PUT", "content-type, x-amz-date, authorization, x-amz-content-sha256");
  expect(ok.status).toBe(200);
  expect(ok.headers.get("access-control-allow-origin")).toBe(APP);
  expect(ok.headers.get("access-control-allow-methods")).toBe("GET, PUT, HEAD");
  expect(ok.headers.get("access-control-allow-headers")).toBe("content-type, x-amz-date, authorization, x-amz-content-sha256");
  expect(ok.headers.get("access-control-max-age")).toBe("600");

  const anyone = await preflight(`/${BUCKET}/hello.txt`, "https://elsewhere.example", "GET");
  expect(anyone.status).toBe(200);
  expect(anyone.headers.get("access-control-allow-origin")).toBe("*");

  expect((await preflight(`/${BUCKET}/x`, "https://elsewhere.example", "PUT")).status).toBe(403);
  expect((await preflight(`/${BUCKET}/x`, undefined, "GET")).status).toBe(400);
  expect((await preflight(`/${BUCKET}/x`, APP, undefined)).status).toBe(400);
});

test("actual requests: a presigned GET and PUT from the app origin carry the grant; errors too", async () => {
  const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: "hello.txt" }), { expiresIn: 60 });
  const got = await fetch(getUrl, { headers: { origin: APP } });
  expect(got.status).toBe(200);
  expect(await got.text()).toBe("hello");
  expect(got.headers.get("access-control-allow-origin")).toBe(APP);
  expect(got.headers.get("access-control-expose-headers")).toBe("ETag");
  expect(got.headers.get("vary")).toContain("Origin");

  const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: BUCKET, Key: "from-browser.txt" }), { expiresIn: 60 });
  const put = await fetch(putUrl, { method: "PUT", body: "uploaded by a page", headers: { origin: APP } });
  expect(put.status).toBe(200);
  expect(put.headers.get("access-control-allow-origin")).toBe(APP);

  // An unsigned request fails, and the page can still read why.
  const denied = await fetch(`http://127.0.0.1:${server.s3Port}/${BUCKET}/hello.txt`, { headers: { origin: APP } });
  expect(denied.status).toBe(403);
  expect(denied.headers.get("access-control-allow-origin")).toBe(APP);
  // An origin no rule allows gets no grant.
  const other = await fetch(getUrl, { headers: { origin: "https://elsewhere.example" }, method: "GET" });
  expect(other.headers.get("access-control-allow-origin")).toBe("*");
  const otherPut = await fetch(putUrl, { method: "PUT", body: "x", headers: { origin: "https://elsewhere.example" } });
  expect(otherPut.headers.has("access-control-allow-origin")).toBe(false);
});

test("the web endpoint applies the same rules (preflight and pages)", async () => {
  await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "index.html", Body: "<p>site</p>", ContentType: "text/html" }));
  await s3.send(new PutBucketWebsiteCommand({ Bucket: BUCKET, WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" } } }));
  const host = `${BUCKET}.${WEB_ROOT_DOMAIN}`;
  const page = await fetch(`http://127.0.0.1:${server.webPort}/`, { headers: { host, origin: APP } });
  expect(page.status).toBe(200);
  expect(page.headers.get("access-control-allow-origin")).toBe(APP);
  const pf = await preflight("/index.html", APP, "GET", undefined, server.webPort, host);
  expect(pf.status).toBe(200);
  expect(pf.headers.get("access-control-allow-origin")).toBe(APP);
  expect((await preflight("/index.html", "https://elsewhere.example", "PUT", undefined, server.webPort, host)).status).toBe(403);
});

test("awscli put-bucket-cors and delete-bucket-cors; only an owner may change the rules", async () => {
  const other = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "writer" });
  const bucket = await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`);
  await server.admin("POST", "/v2/AllowBucketKey", { bucketId: bucket.id, accessKeyId: other.accessKeyId, permissions: { read: true, write: true } });
  const writer = sdkClient(server, { accessKeyId: other.accessKeyId, secretAccessKey: other.secretAccessKey });
  expect(await s3Error(writer.send(new DeleteBucketCorsCommand({ Bucket: BUCKET })))).toBe("AccessDenied");

  writeFileSync(join(tmp, "cors.json"), JSON.stringify({ CORSRules: [{ AllowedOrigins: ["https://*.example.net"], AllowedMethods: ["GET"] }] }));
  const aws = awsCli(server, tmp);
  const put = await aws("s3api", "put-bucket-cors", "--bucket", BUCKET, "--cors-configuration", `file://${join(tmp, "cors.json")}`);
  expect(put.stderr).toBe("");
  expect(put.code).toBe(0);
  const got = await aws("s3api", "get-bucket-cors", "--bucket", BUCKET);
  expect(JSON.parse(got.stdout).CORSRules).toEqual([{ AllowedOrigins: ["https://*.example.net"], AllowedMethods: ["GET"] }]);
  expect((await preflight(`/${BUCKET}/hello.txt`, "https://docs.example.net", "GET")).status).toBe(200);
  expect((await preflight(`/${BUCKET}/hello.txt`, APP, "GET")).status).toBe(403);

  expect((await aws("s3api", "delete-bucket-cors", "--bucket", BUCKET)).code).toBe(0);
  expect(await s3Error(s3.send(new GetBucketCorsCommand({ Bucket: BUCKET })))).toBe("NoSuchCORSConfiguration");
  expect((await preflight(`/${BUCKET}/hello.txt`, "https://docs.example.net", "GET")).status).toBe(403);
});
