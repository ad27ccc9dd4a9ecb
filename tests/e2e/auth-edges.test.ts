// Authentication edges Ceph's s3-tests probe, on a real server: user metadata beyond ASCII
// signed the way botocore and the JavaScript SDK sign it (both verify; the bytes come back as
// sent), an Expect header other than 100-continue (ignored, as AWS does), and presigned V4
// URLs that are expired or whose X-Amz-Expires is out of range (403 AccessDenied).
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import { startServer, type TestServer } from "../helpers/server";
import { errorCode, Sha256, signedFetch } from "../helpers/signed";
import { sdkClient } from "../helpers/clients";
import { presignTarget, rawExchange, signHeaders, type HeaderList } from "../helpers/raw-request";

setDefaultTimeout(60_000);

const BUCKET = "auth-edges";
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

const creds = () => ({ accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, region: server.region });
const host = () => `127.0.0.1:${server.s3Port}`;
const send = (method: string, target: string, headers: HeaderList, body = "") =>
  rawExchange(server.s3Port, { method, target, headers, body: Buffer.from(body) }, { timeoutMs: 10_000 });
/** A byte string (one character per byte, as on the wire) holding `text` in UTF-8. */
const utf8Bytes = (text: string) => Buffer.from(text, "utf8").toString("latin1");

describe("user metadata beyond ASCII (s3-tests test_object_set_get_unicode_metadata)", () => {
  // botocore signs the UTF-8 of its text and sends those same bytes: the signature covers the
  // bytes as sent. "voilà" ends in byte A0, which a JS \s trim would have eaten.
  for (const value of ["Hello World\u00e9", "voilà", "à à", "日本 語"]) {
    test(`signed over the bytes sent (botocore): ${JSON.stringify(value)}, stored and returned byte for byte`, async () => {
      const key = `meta-${Buffer.from(value).toString("hex")}`;
      const signer = new SignatureV4({ service: "s3", region: server.region, credentials: creds(), sha256: Sha256, uriEscapePath: false });
      const signed = await signer.sign({
        method: "PUT",
        protocol: "http:",
        hostname: host(),
        path: `/${BUCKET}/${key}`,
        query: {},
        headers: { host: host(), "x-amz-meta-meta1": value, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "content-length": "3" },
        body: "bar",
      });
      const headers = Object.entries(signed.headers as Record<string, string>).map(([n, v]): [string, string] => [n, n === "x-amz-meta-meta1" ? utf8Bytes(v) : v]);
      const put = await send("PUT", `/${BUCKET}/${key}`, headers, "bar");
      expect(`${put.status} ${errorCode(put.body.toString())}`.trim()).toBe("200");
      // (Read with fetch: the raw helper trims header values as JavaScript does, byte A0 too.)
      const head = await signedFetch(server, "HEAD", `/${BUCKET}/${key}`);
      expect(head.status).toBe(200);
      expect(head.headers.get("x-amz-meta-meta1")).toBe(utf8Bytes(value));
    });
  }

  test("the JavaScript SDK (under Bun it sends the UTF-8 it signs): verifies; the bytes come back as sent", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "sdk-meta", Body: "bar", Metadata: { meta1: "café" } }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "sdk-meta" }));
    expect(Buffer.from(head.Metadata!.meta1!, "latin1").toString("utf8")).toBe("café");
  });

  test("Latin-1 bytes signed as the UTF-8 of their characters (Node clients send text so) verify too", async () => {
    const auth = signHeaders(creds(), "PUT", `/${BUCKET}/latin1-meta`, [["Host", host()], ["x-amz-meta-meta1", "caf\xe9"], ["Content-Length", "3"]], "UNSIGNED-PAYLOAD");
    const r = await send("PUT", `/${BUCKET}/latin1-meta`, auth.headers, "bar");
    expect(r.status).toBe(200);
    expect((await signedFetch(server, "HEAD", `/${BUCKET}/latin1-meta`)).headers.get("x-amz-meta-meta1")).toBe("caf\xe9");
  });

  test("a value other than the one signed is refused", async () => {
    const auth = signHeaders(creds(), "PUT", `/${BUCKET}/tampered`, [["Host", host()], ["x-amz-meta-meta1", utf8Bytes("é")], ["Content-Length", "3"]], "UNSIGNED-PAYLOAD");
    const headers = auth.headers.map(([n, v]): [string, string] => [n, n === "x-amz-meta-meta1" ? utf8Bytes("è") : v]);
    const r = await send("PUT", `/${BUCKET}/tampered`, headers, "bar");
    expect(`${r.status} ${errorCode(r.body.toString())}`).toBe("403 SignatureDoesNotMatch");
  });
});

describe("Expect (s3-tests test_object_create_bad_expect_*, test_bucket_create_bad_expect_*)", () => {
  for (const expectValue of ["200", "", "garbage"]) {
    test(`Expect: ${JSON.stringify(expectValue)} is ignored: the PUT is served`, async () => {
      const key = `expect-${expectValue || "empty"}`;
      const auth = signHeaders(creds(), "PUT", `/${BUCKET}/${key}`, [["Host", host()], ["Content-Length", "3"]], "UNSIGNED-PAYLOAD");
      const r = await send("PUT", `/${BUCKET}/${key}`, [...auth.headers, ["Expect", expectValue]], "bar");
      expect(r.status).toBe(200);
      const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      expect(head.ContentLength).toBe(3);
    });
  }
});

describe("presigned V4 URLs out of their validity (s3-tests test_object_raw_get_x_amz_expires_out_*, test_object_raw_put_authenticated_expired)", () => {
  beforeAll(async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "target", Body: "t" }));
  });
  const get = (expires: number, now?: number) => send("GET", presignTarget(creds(), "GET", `/${BUCKET}/target`, [["Host", host()]], expires, now), [["Host", host()]]);

  test("within its validity a URL serves (604800 s, the most)", async () => {
    expect((await get(604800)).status).toBe(200);
  });

  test("X-Amz-Expires above a week or negative: 403 AccessDenied with AWS's message", async () => {
    for (const [expires, message] of [
      [609901, "X-Amz-Expires must be less than a week"],
      [604801, "X-Amz-Expires must be less than a week"],
      [-7, "X-Amz-Expires must be non-negative"],
    ] as const) {
      const r = await get(expires);
      expect(`${expires} ${r.status} ${errorCode(r.body.toString())}`).toBe(`${expires} 403 AccessDenied`);
      expect(r.body.toString()).toContain(message);
    }
  });

  test("expired (X-Amz-Expires=0, or signed an hour ago for a minute): 403 AccessDenied, Request has expired; a PUT stores nothing", async () => {
    for (const r of [await get(0, Date.now() - 2000), await get(60, Date.now() - 3600_000)]) {
      expect(`${r.status} ${errorCode(r.body.toString())}`).toBe("403 AccessDenied");
      expect(r.body.toString()).toContain("Request has expired");
    }
    const target = presignTarget(creds(), "PUT", `/${BUCKET}/expired-put`, [["Host", host()]], 60, Date.now() - 3600_000);
    const put = await send("PUT", target, [["Host", host()], ["Content-Length", "3"]], "foo");
    expect(put.status).toBe(403);
    await expect(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "expired-put" }))).rejects.toThrow();
  });

  test("X-Amz-Expires that is no number stays 400 AuthorizationQueryParametersError", async () => {
    const target = presignTarget(creds(), "GET", `/${BUCKET}/target`, [["Host", host()]], 60).replace("X-Amz-Expires=60", "X-Amz-Expires=soon");
    const r = await send("GET", target, [["Host", host()]]);
    expect(`${r.status} ${errorCode(r.body.toString())}`).toBe("400 AuthorizationQueryParametersError");
  });
});
