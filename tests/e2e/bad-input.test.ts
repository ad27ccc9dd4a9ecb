// Bad input is a 4xx, never a 500, and nothing bad is stored: CORS documents holding values
// that could not go back out in a response header, response-* overrides and metadata that are
// no valid header value, integers that are not plain decimal; and a retried
// CompleteMultipartUpload answers as the first one did. Requests whose bytes the SDK would
// refuse to send go over a raw socket, signed with SigV4.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { connect } from "node:net";
import { SignatureV4 } from "@smithy/signature-v4";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetBucketCorsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutBucketCorsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { createPresignedPost } from "@aws-sdk/s3-presigned-post";
import { startServer, type TestServer } from "../helpers/server";
import { Sha256 } from "../helpers/signed";
import { s3Failure, sdkClient } from "../helpers/clients";

setDefaultTimeout(60_000);

const BUCKET = "bad-input";
const APP = "https://app.example";
/** A raw exchange that takes longer than this is a hung server. */
const RAW_DEADLINE_MS = 10_000;

let server: TestServer;
let s3: S3Client;

const rfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

interface RawResponse {
  status: number;
  /** Header block, bytes as latin1 characters. */
  head: string;
  body: string;
}

/**
 * A SigV4-signed request written byte for byte (header values as latin1), answered on a
 * connection the server closes. `path` is already URI-encoded.
 */
async function raw(method: string, path: string, opts: { query?: Record<string, string>; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  const host = `127.0.0.1:${server.s3Port}`;
  const body = opts.body ?? "";
  const signer = new SignatureV4({
    service: "s3",
    region: server.region,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    sha256: Sha256,
    uriEscapePath: false,
  });
  const signed = await signer.sign({
    method,
    protocol: "http:",
    hostname: "127.0.0.1",
    path,
    query: opts.query ?? {},
    headers: { host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", ...opts.headers },
    body,
  });
  const qs = Object.entries(opts.query ?? {})
    .map(([k, v]) => `${rfc3986(k)}=${rfc3986(v)}`)
    .join("&");
  const bodyBytes = Buffer.from(body, "utf8");
  let head = `${method} ${path}${qs ? `?${qs}` : ""} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(signed.headers)) head += `${k}: ${v}\r\n`;
  head += `content-length: ${bodyBytes.length}\r\nconnection: close\r\n\r\n`;
  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const socket = connect(server.s3Port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer to ${method} ${path} within ${RAW_DEADLINE_MS} ms`));
    }, RAW_DEADLINE_MS);
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.write(Buffer.concat([Buffer.from(head, "latin1"), bodyBytes]));
  });
  const text = bytes.toString("latin1");
  const split = text.indexOf("\r\n\r\n");
  return { status: Number(text.slice(9, 12)), head: text.slice(0, split), body: text.slice(split + 4) };
}

/** The S3 error code in a raw answer's body. */
const codeOf = (r: RawResponse) => /<Code>([^<]*)<\/Code>/.exec(r.body)?.[1];

/** The value of a header of a raw answer, as the bytes sent (latin1 characters). */
function rawHeader(r: RawResponse, name: string): string | undefined {
  for (const line of r.head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    if (line.slice(0, colon).toLowerCase() === name) return line.slice(colon + 1).trim();
  }
  return undefined;
}

async function putString(key: string, body: string): Promise<string> {
  return (await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }))).ETag!;
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  await server?.stop();
});

describe("CORS documents", () => {
  const doc = (rule: string) => `<CORSConfiguration><CORSRule>${rule}</CORSRule></CORSConfiguration>`;
  const base = "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>";

  test("a value that could not go out in a response header is refused; the rules in force keep answering", async () => {
    await putString("cors.txt", "cors");
    await s3.send(
      new PutBucketCorsCommand({
        Bucket: BUCKET,
        CORSConfiguration: { CORSRules: [{ AllowedOrigins: [APP], AllowedMethods: ["GET"], AllowedHeaders: ["*"], ExposeHeaders: ["ETag"], MaxAgeSeconds: 60 }] },
      }),
    );
    const refused: [rule: string, code: string][] = [
      [base + "<ExposeHeader>x-a&#10;x-b</ExposeHeader>", "InvalidRequest"],
      [base + "<ExposeHeader>x-a&#13;b</ExposeHeader>", "InvalidRequest"],
      [base + "<ExposeHeader>x-中</ExposeHeader>", "InvalidRequest"],
      [base + "<ExposeHeader>x a</ExposeHeader>", "InvalidRequest"],
      [base + "<ExposeHeader>x-amz-*</ExposeHeader>", "InvalidRequest"],
      [base + "<AllowedHeader>x-a&#1;</AllowedHeader>", "InvalidRequest"],
      [base + "<AllowedHeader>x-中</AllowedHeader>", "InvalidRequest"],
      ["<AllowedOrigin>https://a&#10;.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod>", "InvalidRequest"],
      ["<AllowedOrigin>https://ü.example</AllowedOrigin><AllowedMethod>GET</AllowedMethod>", "InvalidRequest"],
      ["<AllowedOrigin>*</AllowedOrigin><AllowedMethod>get</AllowedMethod>", "InvalidRequest"],
      [base + "<MaxAgeSeconds>0x10</MaxAgeSeconds>", "MalformedXML"],
      [base + "<MaxAgeSeconds>1e3</MaxAgeSeconds>", "MalformedXML"],
      [base + "<MaxAgeSeconds>-1</MaxAgeSeconds>", "MalformedXML"],
      [base + "<MaxAgeSeconds>2147483648</MaxAgeSeconds>", "MalformedXML"],
    ];
    for (const [rule, code] of refused) {
      const r = await raw("PUT", `/${BUCKET}`, { query: { cors: "" }, body: doc(rule) });
      expect({ rule, status: r.status, code: codeOf(r) }).toEqual({ rule, status: 400, code });
    }
    const kept = await s3.send(new GetBucketCorsCommand({ Bucket: BUCKET }));
    expect(kept.CORSRules).toHaveLength(1);
    expect(kept.CORSRules![0]).toMatchObject({ AllowedOrigins: [APP], ExposeHeaders: ["ETag"], MaxAgeSeconds: 60 });

    const preflight = await fetch(`http://127.0.0.1:${server.s3Port}/${BUCKET}/cors.txt`, {
      method: "OPTIONS",
      headers: { origin: APP, "access-control-request-method": "GET" },
    });
    expect(preflight.status).toBe(200);
    expect(preflight.headers.get("access-control-expose-headers")).toBe("ETag");
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: "cors.txt" }), { expiresIn: 60 });
    const get = await fetch(url, { headers: { origin: APP } });
    expect(get.status).toBe(200);
    expect(get.headers.get("access-control-allow-origin")).toBe(APP);
    expect(await get.text()).toBe("cors");
  });
});

describe("website documents", () => {
  test("a routing rule's HostName, which goes out in Location as it is, must be a host name", async () => {
    const doc = (host: string) =>
      `<WebsiteConfiguration><IndexDocument><Suffix>index.html</Suffix></IndexDocument><RoutingRules><RoutingRule>` +
      `<Redirect><HostName>${host}</HostName></Redirect></RoutingRule></RoutingRules></WebsiteConfiguration>`;
    for (const host of ["a&#10;Set-Cookie: x=1", "cdn&#1;.example", "报告.example", "a b.example", "cdn.example/path"]) {
      const r = await raw("PUT", `/${BUCKET}`, { query: { website: "" }, body: doc(host) });
      expect({ host, status: r.status, code: codeOf(r) }).toEqual({ host, status: 400, code: "InvalidArgument" });
    }
    const ok = await raw("PUT", `/${BUCKET}`, { query: { website: "" }, body: doc("cdn.example:8443") });
    expect(ok.status).toBe(200);
    const del = await raw("DELETE", `/${BUCKET}`, { query: { website: "" } });
    expect(del.status).toBe(204);
  });
});

describe("header values", () => {
  const OVERRIDES = {
    ResponseContentType: "response-content-type",
    ResponseContentLanguage: "response-content-language",
    ResponseExpires: "response-expires",
    ResponseCacheControl: "response-cache-control",
    ResponseContentDisposition: "response-content-disposition",
    ResponseContentEncoding: "response-content-encoding",
  } as const;

  test("a response-* override with a line break or a control character is InvalidArgument, nothing injected", async () => {
    await putString("override.txt", "override");
    for (const param of Object.values(OVERRIDES)) {
      for (const value of ["text/html\r\nX-Injected: 1", "a\u0001b", "a\u007fb", "a\u0000b"]) {
        const r = await raw("GET", `/${BUCKET}/override.txt`, { query: { [param]: value } });
        expect({ param, value, status: r.status, code: codeOf(r) }).toEqual({ param, value, status: 400, code: "InvalidArgument" });
        expect(r.head.toLowerCase()).not.toContain("x-injected");
      }
    }
  });

  test("a response-* override beyond Latin-1 goes out as its UTF-8 bytes (presigned, as a browser download link)", async () => {
    const disposition = 'attachment; filename="报告.txt"';
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: "override.txt", ResponseContentDisposition: disposition }), { expiresIn: 60 });
    const r = await fetch(url);
    expect(r.status).toBe(200);
    expect(Buffer.from(r.headers.get("content-disposition")!, "latin1").toString("utf8")).toBe(disposition);
    expect(await r.text()).toBe("override");
    const ok = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "override.txt", ResponseContentType: "text/x-fine; charset=utf-8" }));
    expect(ok.ContentType).toBe("text/x-fine; charset=utf-8");
    await ok.Body!.transformToString();
  });

  test("metadata from a form field that is no valid header value is refused at write time, never stored", async () => {
    for (const [i, bad] of ["a\u0001b", "a\u007fb", "a\u001bb"].entries()) {
      const key = `form-${i}.txt`;
      for (const field of ["x-amz-meta-note", "Content-Type"]) {
        const post = await createPresignedPost(s3, { Bucket: BUCKET, Key: key, Expires: 60, Fields: { [field]: bad }, Conditions: [{ [field]: bad }] });
        const form = new FormData();
        for (const [k, v] of Object.entries(post.fields)) form.append(k, v);
        form.append("file", new File(["form body"], key));
        const r = await fetch(`${server.endpoint}/${BUCKET}`, { method: "POST", body: form });
        const body = await r.text();
        expect({ bad, field, status: r.status, code: /<Code>([^<]*)<\/Code>/.exec(body)?.[1] }).toEqual({ bad, field, status: 400, code: "InvalidArgument" });
        expect((await s3Failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })))).status).toBe(404);
      }
    }
  });

  test("request headers with control characters never reach storage (the HTTP layer refuses them)", async () => {
    const bad = "a\u007fb";
    const put = await raw("PUT", `/${BUCKET}/meta-put`, { headers: { "x-amz-meta-note": bad }, body: "x" });
    expect(put.status).toBe(400);
    const type = await raw("PUT", `/${BUCKET}/meta-type`, { headers: { "content-type": `text/plain${bad}` }, body: "x" });
    expect(type.status).toBe(400);
    for (const key of ["meta-put", "meta-type"]) expect((await s3Failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })))).status).toBe(404);

    await putString("meta-src", "source");
    const copy = await raw("PUT", `/${BUCKET}/meta-copy`, {
      headers: { "x-amz-copy-source": `/${BUCKET}/meta-src`, "x-amz-metadata-directive": "REPLACE", "x-amz-meta-note": bad },
    });
    expect(copy.status).toBe(400);
    expect((await s3Failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "meta-copy" })))).status).toBe(404);

    const create = await raw("POST", `/${BUCKET}/meta-mpu`, { query: { uploads: "" }, headers: { "x-amz-meta-note": bad } });
    expect(create.status).toBe(400);
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET, Prefix: "meta-mpu" }));
    expect(uploads.Uploads ?? []).toHaveLength(0);

    // Latin-1 bytes (obs-text) are valid header bytes: stored and sent back as they came.
    const latin = await raw("PUT", `/${BUCKET}/meta-latin`, { headers: { "x-amz-meta-note": "caf\u00e9" }, body: "x" });
    expect(latin.status).toBe(200);
    const head = await raw("HEAD", `/${BUCKET}/meta-latin`);
    expect(rawHeader(head, "x-amz-meta-note")).toBe("caf\u00e9");
  });
});

describe("integers are plain decimal", () => {
  let uploadId: string;
  let partEtag: string;

  beforeAll(async () => {
    await putString("whole.txt", "whole object");
    uploadId = (await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "mpu-int" }))).UploadId!;
    partEtag = (await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mpu-int", UploadId: uploadId, PartNumber: 1, Body: "part one" }))).ETag!;
  });

  test("partNumber of GET, HEAD, UploadPart and UploadPartCopy", async () => {
    for (const n of ["0x1", "1e0", " 1", "+1", "1.0", "", "0", "10001"]) {
      for (const method of ["GET", "HEAD"]) {
        const r = await raw(method, `/${BUCKET}/whole.txt`, { query: { partNumber: n } });
        expect({ n, method, status: r.status }).toEqual({ n, method, status: 400 });
        if (method === "GET") expect(codeOf(r)).toBe("InvalidArgument");
      }
      const part = await raw("PUT", `/${BUCKET}/mpu-int`, { query: { partNumber: n, uploadId }, body: "bad part" });
      expect({ n, status: part.status, code: codeOf(part) }).toEqual({ n, status: 400, code: "InvalidArgument" });
      const copy = await raw("PUT", `/${BUCKET}/mpu-int`, { query: { partNumber: n, uploadId }, headers: { "x-amz-copy-source": `/${BUCKET}/whole.txt` } });
      expect({ n, status: copy.status, code: codeOf(copy) }).toEqual({ n, status: 400, code: "InvalidArgument" });
    }
    const one = await raw("GET", `/${BUCKET}/whole.txt`, { query: { partNumber: "1" } });
    expect(one.status).toBe(200);
    expect(one.body).toBe("whole object");
  });

  test("x-amz-copy-source-range", async () => {
    for (const range of ["bytes=0x0-0x1", "bytes=0-1e1", "bytes= 0-1", "bytes=0-99999999999999999999"]) {
      const r = await raw("PUT", `/${BUCKET}/mpu-int`, {
        query: { partNumber: "2", uploadId },
        headers: { "x-amz-copy-source": `/${BUCKET}/whole.txt`, "x-amz-copy-source-range": range },
      });
      expect({ range, status: r.status, code: codeOf(r) }).toEqual({ range, status: 400, code: "InvalidArgument" });
    }
    const ok = await raw("PUT", `/${BUCKET}/mpu-int`, {
      query: { partNumber: "2", uploadId },
      headers: { "x-amz-copy-source": `/${BUCKET}/whole.txt`, "x-amz-copy-source-range": "bytes=0-4" },
    });
    expect(ok.status).toBe(200);
  });

  test("max-keys of ListObjects (v1 and v2): decimal in [0, 2^31-1], above 1000 clamped", async () => {
    for (const listType of [{ "list-type": "2" }, {}] as Record<string, string>[]) {
      for (const n of ["0x10", "1e1", "abc", "-1", " 5", "", "2147483648"]) {
        const r = await raw("GET", `/${BUCKET}`, { query: { ...listType, "max-keys": n } });
        expect({ n, listType, status: r.status, code: codeOf(r) }).toEqual({ n, listType, status: 400, code: "InvalidArgument" });
      }
      const clamped = await raw("GET", `/${BUCKET}`, { query: { ...listType, "max-keys": "5000" } });
      expect(clamped.status).toBe(200);
      expect(clamped.body).toContain("<MaxKeys>1000</MaxKeys>");
      const one = await raw("GET", `/${BUCKET}`, { query: { ...listType, "max-keys": "1" } });
      expect(one.body).toContain("<MaxKeys>1</MaxKeys>");
      expect(one.body).toContain("<IsTruncated>true</IsTruncated>");
    }
  });

  test("max-parts and part-number-marker of ListParts, max-uploads of ListMultipartUploads", async () => {
    for (const n of ["0x10", "1e1", "abc", "-1", " 5", "2147483648"]) {
      for (const param of ["max-parts", "part-number-marker"]) {
        const r = await raw("GET", `/${BUCKET}/mpu-int`, { query: { uploadId, [param]: n } });
        expect({ n, param, status: r.status, code: codeOf(r) }).toEqual({ n, param, status: 400, code: "InvalidArgument" });
      }
      const u = await raw("GET", `/${BUCKET}`, { query: { uploads: "", "max-uploads": n } });
      expect({ n, status: u.status, code: codeOf(u) }).toEqual({ n, status: 400, code: "InvalidArgument" });
    }
    const parts = await raw("GET", `/${BUCKET}/mpu-int`, { query: { uploadId, "max-parts": "5000", "part-number-marker": "1" } });
    expect(parts.status).toBe(200);
    expect(parts.body).toContain("<MaxParts>1000</MaxParts>");
    expect(parts.body).toContain("<PartNumberMarker>1</PartNumberMarker>");
    expect(parts.body).not.toContain("<PartNumber>1</PartNumber>");
    const uploads = await raw("GET", `/${BUCKET}`, { query: { uploads: "", "max-uploads": "5000" } });
    expect(uploads.status).toBe(200);
    expect(uploads.body).toContain("<MaxUploads>1000</MaxUploads>");
  });

  test("<PartNumber> of CompleteMultipartUpload", async () => {
    for (const n of ["0x1", "1e0", "+1", "-1", "one", ""]) {
      const body = `<CompleteMultipartUpload><Part><PartNumber>${n}</PartNumber><ETag>${partEtag}</ETag></Part></CompleteMultipartUpload>`;
      const r = await raw("POST", `/${BUCKET}/mpu-int`, { query: { uploadId }, body });
      expect({ n, status: r.status, code: codeOf(r) }).toEqual({ n, status: 400, code: "MalformedXML" });
    }
    // The upload is untouched: a well-formed list (spaces around the number are XML's) completes it.
    const body = `<CompleteMultipartUpload><Part><PartNumber> 1 </PartNumber><ETag>${partEtag}</ETag></Part></CompleteMultipartUpload>`;
    const ok = await raw("POST", `/${BUCKET}/mpu-int`, { query: { uploadId }, body });
    expect(ok.status).toBe(200);
    expect(ok.body).toContain("CompleteMultipartUploadResult");
  });
});

describe("a retried CompleteMultipartUpload", () => {
  async function upload(key: string, body: string) {
    const { UploadId, ChecksumAlgorithm } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: "CRC32" }));
    const part = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: body, ChecksumAlgorithm }));
    return { uploadId: UploadId!, parts: [{ PartNumber: 1, ETag: part.ETag!, ChecksumCRC32: part.ChecksumCRC32 }] };
  }

  test("with the same parts answers 200 with the same result and changes nothing", async () => {
    const { uploadId, parts } = await upload("retry.bin", "retried content");
    const complete = () => s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "retry.bin", UploadId: uploadId, MultipartUpload: { Parts: parts } }));
    const first = await complete();
    const before = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "retry.bin" }));
    const again = await complete();
    expect({ ETag: again.ETag, ChecksumCRC32: again.ChecksumCRC32, Key: again.Key, Bucket: again.Bucket, Location: again.Location }).toEqual({
      ETag: first.ETag,
      ChecksumCRC32: first.ChecksumCRC32,
      Key: first.Key,
      Bucket: first.Bucket,
      Location: first.Location,
    });
    expect(first.ChecksumCRC32).toMatch(/-1$/);
    const after = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "retry.bin" }));
    expect({ etag: after.ETag, modified: after.LastModified }).toEqual({ etag: before.ETag, modified: before.LastModified });

    // Overwritten since: the retry still reports the completion and leaves the new object alone.
    const newer = await putString("retry.bin", "newer");
    expect((await complete()).ETag).toBe(first.ETag);
    const now = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "retry.bin" }));
    expect(now.ETag).toBe(newer);
    expect(await now.Body!.transformToString()).toBe("newer");
  });

  test("with other parts, or of an aborted upload, is NoSuchUpload", async () => {
    const { uploadId, parts } = await upload("retry-other.bin", "some content");
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "retry-other.bin", UploadId: uploadId, MultipartUpload: { Parts: parts } }));
    const otherEtag = `"${"0".repeat(32)}"`;
    const other = s3.send(
      new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "retry-other.bin", UploadId: uploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: otherEtag }] } }),
    );
    expect(await s3Failure(other)).toMatchObject({ name: "NoSuchUpload", status: 404 });

    const aborted = await upload("retry-aborted.bin", "aborted content");
    await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: "retry-aborted.bin", UploadId: aborted.uploadId }));
    const afterAbort = s3.send(
      new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "retry-aborted.bin", UploadId: aborted.uploadId, MultipartUpload: { Parts: aborted.parts } }),
    );
    expect(await s3Failure(afterAbort)).toMatchObject({ name: "NoSuchUpload", status: 404 });
    expect((await s3Failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "retry-aborted.bin" })))).status).toBe(404);
  });
});
