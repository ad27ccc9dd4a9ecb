// AWS Signature Version 2 on a real server: requests signed in the Authorization header and
// presigned URLs (a SigV2 signer written from AWS's documentation, tests/helpers/signed.ts),
// path and virtual-hosted style, the refusals AWS gives (nothing stored), authentication
// before the body, and s3cmd --signature-v2 end to end.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { errorCode, presignV2, signatureV2, signedFetchV2, stringToSignV2 } from "../helpers/signed";
import { expectOk, md5Hex, run, sdkClient, sha256Hex, writeS3cmdConfig } from "../helpers/clients";
import { rawExchange } from "../helpers/raw-request";

setDefaultTimeout(60_000);

const BUCKET = "sigv2-bucket";
const ROOT_DOMAIN = "s3.bunker.test";
const S3CMD = "/usr/bin/s3cmd";
let server: TestServer;
let s3: S3Client;

beforeAll(async () => {
  server = await startServer();
  // root_domain (virtual-hosted style) goes in [s3_api]: set it and restart.
  const toml = await Bun.file(server.configPath).text();
  await Bun.write(server.configPath, toml.replace("[s3_api]", `[s3_api]\nroot_domain = "${ROOT_DOMAIN}"`));
  await server.kill();
  await server.restart();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  await server?.stop();
});

async function exists(key: string, bucket = BUCKET): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

async function status(r: Response): Promise<string> {
  return `${r.status} ${errorCode(await r.text())}`.trim();
}

describe("requests signed in the Authorization header", () => {
  test("PUT with metadata and Content-MD5, GET with a response-* override, HEAD, listing, DELETE", async () => {
    const body = "hello v2";
    const put = await signedFetchV2(server, "PUT", `/${BUCKET}/dir/a%20b+%C3%A9.txt`, {
      body,
      headers: { "content-type": "text/plain", "content-md5": Buffer.from(md5Hex(body), "hex").toString("base64"), "x-amz-meta-owner": "alice" },
    });
    expect(put.status).toBe(200);
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "dir/a b+é.txt" }));
    expect(await got.Body!.transformToString()).toBe(body);
    expect(got.Metadata).toEqual({ owner: "alice" });

    const get = await signedFetchV2(server, "GET", `/${BUCKET}/dir/a%20b+%C3%A9.txt?response-content-type=application%2Fx-v2&response-content-disposition=attachment%3B%20filename%3D%22x.txt%22`);
    expect(get.status).toBe(200);
    expect(get.headers.get("content-type")).toBe("application/x-v2");
    expect(get.headers.get("content-disposition")).toBe('attachment; filename="x.txt"');
    expect(await get.text()).toBe(body);
    const head = await signedFetchV2(server, "HEAD", `/${BUCKET}/dir/a%20b+%C3%A9.txt`);
    expect([head.status, head.headers.get("x-amz-meta-owner")]).toEqual([200, "alice"]);

    // The bucket's own path, with and without the slash; the listing's parameters are not signed.
    for (const path of [`/${BUCKET}`, `/${BUCKET}/`]) {
      const list = await signedFetchV2(server, "GET", `${path}?prefix=dir%2F&max-keys=10`);
      expect(list.status).toBe(200);
      expect(await list.text()).toContain("<Key>dir/a b+é.txt</Key>");
    }
    expect((await signedFetchV2(server, "DELETE", `/${BUCKET}/dir/a%20b+%C3%A9.txt`)).status).toBe(204);
    expect(await exists("dir/a b+é.txt")).toBe(false);
  });

  test("sub-resources are signed: multipart upload (?uploads, ?partNumber&uploadId) and DeleteObjects (?delete)", async () => {
    const part1 = randomBytes(5 * 1024 * 1024);
    const create = await signedFetchV2(server, "POST", `/${BUCKET}/mp.bin?uploads`);
    expect(create.status).toBe(200);
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(await create.text())![1]!;
    const id = encodeURIComponent(uploadId);
    const p1 = await signedFetchV2(server, "PUT", `/${BUCKET}/mp.bin?partNumber=1&uploadId=${id}`, { body: part1 });
    const p2 = await signedFetchV2(server, "PUT", `/${BUCKET}/mp.bin?partNumber=2&uploadId=${id}`, { body: "tail" });
    expect([p1.status, p2.status]).toEqual([200, 200]);
    const xml = `<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>${p1.headers.get("etag")}</ETag></Part><Part><PartNumber>2</PartNumber><ETag>${p2.headers.get("etag")}</ETag></Part></CompleteMultipartUpload>`;
    expect((await signedFetchV2(server, "POST", `/${BUCKET}/mp.bin?uploadId=${id}`, { body: xml })).status).toBe(200);
    const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "mp.bin" }));
    expect(sha256Hex(await got.Body!.transformToByteArray())).toBe(sha256Hex(Buffer.concat([part1, Buffer.from("tail")])));

    const del = `<Delete><Object><Key>mp.bin</Key></Object></Delete>`;
    const r = await signedFetchV2(server, "POST", `/${BUCKET}?delete`, { body: del, headers: { "content-md5": Buffer.from(md5Hex(del), "hex").toString("base64") } });
    expect(r.status).toBe(200);
    expect(await r.text()).toContain("<Deleted><Key>mp.bin</Key>");
    expect(await exists("mp.bin")).toBe(false);
  });

  test("virtual-hosted style: the bucket from the Host header leads the signed resource", async () => {
    const host = `${BUCKET}.${ROOT_DOMAIN}:${server.s3Port}`;
    const put = await signedFetchV2(server, "PUT", "/vhost.txt", { host, virtualHostBucket: BUCKET, body: "vh" });
    expect(put.status).toBe(200);
    const list = await signedFetchV2(server, "GET", "/?prefix=vhost", { host, virtualHostBucket: BUCKET });
    expect(list.status).toBe(200);
    expect(await list.text()).toContain("<Key>vhost.txt</Key>");
    // Signed without the bucket (as if path-style): refused.
    expect(await status(await signedFetchV2(server, "GET", "/vhost.txt", { host }))).toBe("403 SignatureDoesNotMatch");
  });

  test("the Date header (no x-amz-date) is signed in its position", async () => {
    const r = await signedFetchV2(server, "PUT", `/${BUCKET}/dated.txt`, { body: "d", headers: { date: new Date().toUTCString() } });
    expect(r.status).toBe(200);
    expect(await exists("dated.txt")).toBe(true);
  });
});

describe("presigned URLs (AWSAccessKeyId, Expires, Signature)", () => {
  test("GET and PUT work until Expires; an expired URL is 403 AccessDenied, a tampered one 403 SignatureDoesNotMatch", async () => {
    const soon = Math.floor(Date.now() / 1000) + 300;
    const put = await fetch(`${server.endpoint}${presignV2(server, "PUT", `/${BUCKET}/presigned.txt`, soon)}`, { method: "PUT", body: "via url" });
    expect(put.status).toBe(200);
    const get = await fetch(`${server.endpoint}${presignV2(server, "GET", `/${BUCKET}/presigned.txt`, soon)}`);
    expect([get.status, await get.text()]).toEqual([200, "via url"]);

    const expired = await fetch(`${server.endpoint}${presignV2(server, "GET", `/${BUCKET}/presigned.txt`, Math.floor(Date.now() / 1000) - 5)}`);
    expect(expired.status).toBe(403);
    const text = await expired.text();
    expect(errorCode(text)).toBe("AccessDenied");
    expect(text).toContain("Request has expired");

    const url = presignV2(server, "GET", `/${BUCKET}/presigned.txt`, soon).replace("presigned.txt", "other.txt");
    expect(await status(await fetch(`${server.endpoint}${url}`))).toBe("403 SignatureDoesNotMatch");
    const late = presignV2(server, "PUT", `/${BUCKET}/late.txt`, soon).replace(`Expires=${soon}`, `Expires=${soon + 3600}`);
    expect(await status(await fetch(`${server.endpoint}${late}`, { method: "PUT", body: "x" }))).toBe("403 SignatureDoesNotMatch");
    expect(await exists("late.txt")).toBe(false);
  });

  test("x-amz-* headers moved into the query (as botocore presigns them) are refused, 501, and nothing is stored", async () => {
    const soon = Math.floor(Date.now() / 1000) + 300;
    const url = `${presignV2(server, "PUT", `/${BUCKET}/acl.txt`, soon)}&x-amz-acl=private`;
    expect(await status(await fetch(`${server.endpoint}${url}`, { method: "PUT", body: "x" }))).toBe("501 NotImplemented");
    expect(await exists("acl.txt")).toBe(false);
  });
});

describe("refusals (nothing stored)", () => {
  const signedPut = (key: string, extra: Record<string, string>, authorization?: (sts: string) => string) => {
    const headers: Record<string, string> = { "x-amz-date": new Date().toUTCString(), ...extra };
    const sts = stringToSignV2("PUT", `/${BUCKET}/${key}`, { headers, date: "" });
    headers.authorization = authorization ? authorization(sts) : `AWS ${server.accessKeyId}:${signatureV2(server.secretAccessKey, sts)}`;
    return fetch(`${server.endpoint}/${BUCKET}/${key}`, { method: "PUT", headers, body: "refused" });
  };

  test("malformed header, unknown key, wrong secret, bad or skewed dates, two mechanisms", async () => {
    const cases: Array<[string, Promise<Response>, string]> = [
      ["r1", signedPut("r1", {}, () => "AWS HAHAHA"), "400 InvalidArgument"],
      ["r2", signedPut("r2", {}, () => "AWS AKIAIGR7ZNNBHC5BKSUB:FWeDfwojDSdS2Ztmpfeubhd9isU="), "403 InvalidAccessKeyId"],
      ["r3", signedPut("r3", {}, (sts) => `AWS ${server.accessKeyId}:${signatureV2("not-the-secret", sts)}`), "403 SignatureDoesNotMatch"],
      ["r4", signedPut("r4", { "x-amz-date": "Bad Date" }), "403 AccessDenied"],
      ["r5", signedPut("r5", { "x-amz-date": "Tue, 07 Jul 1950 21:53:04 GMT" }), "403 AccessDenied"],
      ["r6", signedPut("r6", { "x-amz-date": "Tue, 07 Jul 2010 21:53:04 GMT" }), "403 RequestTimeTooSkewed"],
      ["r7", signedPut("r7", { "x-amz-date": new Date(Date.now() + 20 * 60_000).toUTCString() }), "403 RequestTimeTooSkewed"],
    ];
    for (const [key, response, expected] of cases) {
      expect(`${key} ${await status(await response)}`).toBe(`${key} ${expected}`);
      expect(await exists(key)).toBe(false);
    }
    const both = await fetch(`${server.endpoint}${presignV2(server, "PUT", `/${BUCKET}/r8`, Math.floor(Date.now() / 1000) + 60)}`, {
      method: "PUT",
      headers: { authorization: `AWS ${server.accessKeyId}:x` },
      body: "x",
    });
    expect(await status(both)).toBe("400 InvalidArgument");
    expect(await exists("r8")).toBe(false);
  });

  test("the body: aws-chunked streaming modes need V4 (400); a stated SHA-256 and Content-MD5 are checked", async () => {
    const streaming = await signedPut("s1", { "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "content-encoding": "aws-chunked" });
    expect(await status(streaming)).toBe("400 InvalidRequest");
    const sha = await signedPut("s2", { "x-amz-content-sha256": sha256Hex("something else") });
    expect(await status(sha)).toBe("400 XAmzContentSHA256Mismatch");
    const md5 = await signedPut("s3", { "content-md5": Buffer.from(md5Hex("something else"), "hex").toString("base64") });
    expect(await status(md5)).toBe("400 BadDigest");
    for (const k of ["s1", "s2", "s3"]) expect(await exists(k)).toBe(false);
    // The same with the right digests is stored.
    const ok = await signedPut("s4", { "x-amz-content-sha256": sha256Hex("refused"), "content-md5": Buffer.from(md5Hex("refused"), "hex").toString("base64") });
    expect(ok.status).toBe(200);
  });

  test("authentication comes before the body: a bad signature on a 1 GiB PUT is answered with none of it sent", async () => {
    const date = new Date().toUTCString();
    const r = await rawExchange(
      server.s3Port,
      {
        method: "PUT",
        target: `/${BUCKET}/huge.bin`,
        headers: [
          ["Host", `127.0.0.1:${server.s3Port}`],
          ["Date", date],
          ["Content-Length", String(1024 * 1024 * 1024)],
          ["Authorization", `AWS ${server.accessKeyId}:${signatureV2("wrong", `PUT\n\n\n${date}\n/${BUCKET}/huge.bin`)}`],
        ],
        body: new Uint8Array(0),
      },
      { timeoutMs: 10_000 },
    );
    expect(r.status).toBe(403);
    expect(r.body.toString()).toContain("SignatureDoesNotMatch");
    expect(r.headers.find(([n]) => n === "connection")?.[1]).toBe("close");
    expect(await exists("huge.bin")).toBe(false);
  });
});

describe("s3cmd --signature-v2", () => {
  const present = existsSync(S3CMD);
  if (!present) console.warn(`SKIPPED: ${S3CMD} is absent (apt-get install -y s3cmd)`);

  test.skipIf(!present)("mb, put, ls, get, info, del, rb", async () => {
    const tmp = mkdtempSync(join(tmpdir(), "bunker-s3cmd-v2-"));
    try {
      const cfg = writeS3cmdConfig(server, tmp, ["signature_v2 = True"]);
      const env = { PATH: "/usr/bin:/bin", HOME: tmp, LANG: "C.UTF-8" };
      const sc = (...args: string[]) => run([S3CMD, "-c", cfg, "--signature-v2", "--no-progress", ...args], { env, timeoutMs: 60_000 });
      const ok = async (...args: string[]) => expectOk(await sc(...args), `s3cmd ${args.join(" ")}`);
      const local = join(tmp, "up.bin");
      const data = randomBytes(300 * 1024);
      writeFileSync(local, data);

      await ok("mb", "s3://s3cmd-v2");
      await ok("put", local, "s3://s3cmd-v2/dir/é x+y.bin");
      await ok("put", "--add-header=x-amz-meta-note: voilà", local, "s3://s3cmd-v2/meta.bin");
      // It signed with V2: its debug output shows the V2 string to sign and header.
      const listing = await ok("-d", "ls", "--recursive", "s3://s3cmd-v2");
      expect(listing.stderr).toContain("Authorization': 'AWS ");
      expect(listing.stdout).toContain("s3://s3cmd-v2/dir/é x+y.bin");
      expect(listing.stdout).toContain("s3://s3cmd-v2/meta.bin");
      await ok("get", "--force", "s3://s3cmd-v2/dir/é x+y.bin", join(tmp, "down.bin"));
      expect(sha256Hex(readFileSync(join(tmp, "down.bin")))).toBe(sha256Hex(data));
      // The metadata's bytes come back as sent (UTF-8).
      const head = await s3.send(new HeadObjectCommand({ Bucket: "s3cmd-v2", Key: "meta.bin" }));
      expect(Buffer.from(head.Metadata!.note!, "latin1").toString("utf8")).toBe("voilà");
      await ok("del", "s3://s3cmd-v2/dir/é x+y.bin");
      expect(await exists("dir/é x+y.bin", "s3cmd-v2")).toBe(false);
      await ok("del", "s3://s3cmd-v2/meta.bin");
      await ok("rb", "s3://s3cmd-v2");
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
