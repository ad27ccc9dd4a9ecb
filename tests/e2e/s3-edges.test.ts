// Edges of the S3 wire format that Ceph's s3-tests probe, on a real server with raw signed
// requests (the bytes matter): listings under encoding-type=url with keys, prefixes and
// delimiters holding control characters; object bodies sent with Transfer-Encoding: chunked
// and no Content-Length; Content-Encoding kept as sent, less aws-chunked.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { CreateBucketCommand, CreateMultipartUploadCommand, HeadObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { startServer, type TestServer } from "../helpers/server";
import { MiB, sdkClient } from "../helpers/clients";
import { errorCode, signedFetch } from "../helpers/signed";
import { rawExchange, sha256Hex, signHeaders, unsignedChunkedBody, type HeaderList, type RawResponse } from "../helpers/raw-request";

setDefaultTimeout(60_000);

const BUCKET = "edges";
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

/** A signed request sent as raw bytes: `body` goes on the wire exactly as given. */
function raw(method: string, target: string, headers: HeaderList, body: Uint8Array | string, payloadHash: string, opts: { halfClose?: boolean } = {}): Promise<RawResponse> {
  const creds = { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, region: server.region };
  const signed = signHeaders(creds, method, target, [["Host", `127.0.0.1:${server.s3Port}`], ...headers], payloadHash);
  const bytes = typeof body === "string" ? Buffer.from(body, "latin1") : body;
  return rawExchange(server.s3Port, { method, target, headers: signed.headers, body: bytes, halfClose: opts.halfClose }, { timeoutMs: 20_000 });
}

/** HTTP/1.1 chunked framing of `data`, in pieces of `size` bytes, with the last chunk. */
function httpChunked(data: Uint8Array, size: number): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += size) {
    const piece = data.subarray(off, off + size);
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), Buffer.from(piece), Buffer.from("\r\n"));
  }
  parts.push(Buffer.from("0\r\n\r\n"));
  return Buffer.concat(parts);
}

async function getBody(key: string): Promise<{ status: number; body: Buffer }> {
  const r = await signedFetch(server, "GET", `/${BUCKET}/${encodeURIComponent(key)}`);
  return { status: r.status, body: Buffer.from(await r.arrayBuffer()) };
}

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const codeOf = (r: RawResponse) => errorCode(r.body.toString("utf8"));

describe("listings under encoding-type=url (s3-tests test_bucket_list*_encoding_basic, *_unreadable)", () => {
  const LIST = "edges-list";
  const keys = ["foo+1/bar", "foo/bar/xyzzy", "quux ab/thud", "asdf+b", "ctl\u0001key", "nl\nkey"];

  beforeAll(async () => {
    await s3.send(new CreateBucketCommand({ Bucket: LIST }));
    for (const Key of keys) await s3.send(new PutObjectCommand({ Bucket: LIST, Key, Body: "x" }));
  });

  const list = async (query: string) => {
    const r = await signedFetch(server, "GET", `/${LIST}?${query}`);
    expect(r.status).toBe(200);
    return r.text();
  };
  const all = (xml: string, tag: string) => [...xml.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, "g"))].map((m) => m[1]);

  test("keys and common prefixes are percent-encoded, in v1 and v2", async () => {
    for (const v2 of [false, true]) {
      const xml = await list(`${v2 ? "list-type=2&" : ""}delimiter=%2F&encoding-type=url`);
      expect(all(xml, "Key")).toEqual(["asdf%2Bb", "ctl%01key", "nl%0Akey"]);
      expect(xml).toContain("<CommonPrefixes><Prefix>foo%2B1/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>foo/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>quux%20ab/</Prefix></CommonPrefixes>");
      expect(xml).toContain("<Delimiter>/</Delimiter>");
      expect(xml).toContain("<EncodingType>url</EncodingType>");
    }
  });

  test("a delimiter, marker and start-after holding a line feed are encoded", async () => {
    const v1 = await list("delimiter=%0A&marker=%0A&encoding-type=url");
    expect(v1).toContain("<Delimiter>%0A</Delimiter>");
    expect(v1).toContain("<Marker>%0A</Marker>");
    expect(all(v1, "Prefix")).toContain("nl%0A");
    const v2 = await list("list-type=2&start-after=%0A&encoding-type=url");
    expect(v2).toContain("<StartAfter>%0A</StartAfter>");
    expect(all(v2, "Key").length).toBe(keys.length);
  });

  test("v2 encodes its own Prefix; v1 sends it as it is when that decodes alike, encoded otherwise", async () => {
    expect(await list("list-type=2&prefix=%0A&encoding-type=url")).toContain("<Prefix>%0A</Prefix>");
    // botocore, which sets encoding-type=url itself, does not decode v1's Prefix: s3-tests'
    // test_bucket_list_prefix_unreadable expects the line feed back (escaped by the XML writer).
    expect(await list("prefix=%0A&encoding-type=url")).toContain("<Prefix>&#xA;</Prefix>");
    expect(await list("prefix=quux%20ab%2F&encoding-type=url")).toContain("<Prefix>quux ab/</Prefix>");
    // "+" and "%" read otherwise once decoded (Java and PHP SDKs decode it): encoded.
    expect(await list("prefix=foo%2B1&encoding-type=url")).toContain("<Prefix>foo%2B1</Prefix>");
    expect(await list("prefix=%01&encoding-type=url")).toContain("<Prefix>%01</Prefix>");
  });

  test("without encoding-type, a character XML 1.0 cannot carry is a numeric reference, as AWS", async () => {
    const xml = await list("list-type=2");
    expect(all(xml, "Key")).toContain("ctl&#x1;key");
    expect(all(xml, "Key")).toContain("nl&#xA;key");
  });
});

describe("object bodies with Transfer-Encoding: chunked (s3-tests test_object_write_with_chunked_transfer_encoding)", () => {
  test("a chunked PutObject without Content-Length, its payload signed, is stored whole", async () => {
    const r = await raw("PUT", `/${BUCKET}/te-signed`, [["Transfer-Encoding", "chunked"]], "3\r\nbar\r\n0\r\n\r\n", sha256Hex("bar"));
    expect(r.status).toBe(200);
    expect(await getBody("te-signed")).toEqual({ status: 200, body: Buffer.from("bar") });
  });

  test("an unsigned chunked body over several blocks is stored byte for byte, its ETag its MD5", async () => {
    const data = randomBytes(2 * MiB + 12345);
    const r = await raw("PUT", `/${BUCKET}/te-big`, [["Transfer-Encoding", "chunked"]], httpChunked(data, 100_000), "UNSIGNED-PAYLOAD");
    expect(r.status).toBe(200);
    const etag = r.headers.find(([n]) => n === "etag")?.[1];
    expect(etag).toBe(`"${md5(data)}"`);
    const got = await getBody("te-big");
    expect(got.status).toBe(200);
    expect(md5(got.body)).toBe(md5(data));
  });

  test("an UploadPart sent chunked without Content-Length is taken", async () => {
    const up = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "te-part" }));
    const data = randomBytes(70_000);
    const r = await raw("PUT", `/${BUCKET}/te-part?partNumber=1&uploadId=${up.UploadId}`, [["Transfer-Encoding", "chunked"]], httpChunked(data, 8192), sha256Hex(data));
    expect(r.status).toBe(200);
    expect(r.headers.find(([n]) => n === "etag")?.[1]).toBe(`"${md5(data)}"`);
  });

  test("aws-chunked inside HTTP chunked framing, with x-amz-decoded-content-length, is taken (AWS's streaming rules)", async () => {
    const data = Buffer.from("streamed");
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(Bun.hash.crc32(data));
    const inner = unsignedChunkedBody(data, 3, [["x-amz-checksum-crc32", crc.toString("base64")]]);
    const headers: HeaderList = [
      ["Transfer-Encoding", "chunked"],
      ["Content-Encoding", "aws-chunked"],
      ["x-amz-decoded-content-length", String(data.length)],
      ["x-amz-trailer", "x-amz-checksum-crc32"],
    ];
    const r = await raw("PUT", `/${BUCKET}/te-aws-chunked`, headers, httpChunked(inner, 7), "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    expect(r.status).toBe(200);
    expect(await getBody("te-aws-chunked")).toEqual({ status: 200, body: data });
    const noLength = await raw("PUT", `/${BUCKET}/te-aws-chunked-2`, headers.filter(([n]) => n !== "x-amz-decoded-content-length"), httpChunked(inner, 7), "STREAMING-UNSIGNED-PAYLOAD-TRAILER");
    expect([noLength.status, codeOf(noLength)]).toEqual([411, "MissingContentLength"]);
    expect((await getBody("te-aws-chunked-2")).status).toBe(404);
  });

  test("a chunked body cut before its last chunk is never stored", async () => {
    for (const [key, cut] of [["te-cut-1", "3\r\nbar\r\n"], ["te-cut-2", "6\r\nbar"], ["te-cut-3", "3\r\nbar\r\n0\r\n"]] as const) {
      const r = await raw("PUT", `/${BUCKET}/${key}`, [["Transfer-Encoding", "chunked"]], cut, "UNSIGNED-PAYLOAD", { halfClose: true });
      expect(r.status === 200).toBe(false);
      expect((await getBody(key)).status).toBe(404);
    }
  });

  test("a chunked body whose bytes are not the signed payload is refused and not stored", async () => {
    const r = await raw("PUT", `/${BUCKET}/te-wrong`, [["Transfer-Encoding", "chunked"]], "3\r\nbar\r\n0\r\n\r\n", sha256Hex("baz"));
    expect([r.status, codeOf(r)]).toEqual([400, "XAmzContentSHA256Mismatch"]);
    expect((await getBody("te-wrong")).status).toBe(404);
  });

  test("a transfer coding other than chunked is 501 NotImplemented, not stored still coded", async () => {
    const r = await raw("PUT", `/${BUCKET}/te-gzip`, [["Transfer-Encoding", "gzip, chunked"]], "3\r\nbar\r\n0\r\n\r\n", "UNSIGNED-PAYLOAD");
    expect([r.status, codeOf(r)]).toEqual([501, "NotImplemented"]);
    expect((await getBody("te-gzip")).status).toBe(404);
  });

  test("a PutObject with neither Content-Length nor chunked framing is 411 MissingContentLength (s3-tests test_object_create_bad_contentlength_none)", async () => {
    const r = await raw("PUT", `/${BUCKET}/no-length`, [], "", sha256Hex(""));
    expect([r.status, codeOf(r)]).toEqual([411, "MissingContentLength"]);
    expect((await getBody("no-length")).status).toBe(404);
    // Documents keep taking an absent body as empty: CreateBucket without Content-Length.
    const created = await raw("PUT", "/edges-no-length", [], "", sha256Hex(""));
    expect(created.status).toBe(200);
  });

  test("a chunked body of unknown length is checked against the bucket's size quota once its size is known", async () => {
    const QUOTA = "edges-quota";
    await s3.send(new CreateBucketCommand({ Bucket: QUOTA }));
    const { id } = await server.admin<{ id: string }>("GET", `/v2/GetBucketInfo?globalAlias=${QUOTA}`);
    await server.admin("POST", `/v2/UpdateBucket?id=${id}`, { quotas: { maxSize: 100_000, maxObjects: null } });
    const over = randomBytes(150_000);
    const r = await raw("PUT", `/${QUOTA}/big`, [["Transfer-Encoding", "chunked"]], httpChunked(over, 65536), "UNSIGNED-PAYLOAD");
    expect([r.status, codeOf(r)]).toEqual([403, "AccessDenied"]);
    expect((await signedFetch(server, "GET", `/${QUOTA}/big`)).status).toBe(404);
    const under = randomBytes(50_000);
    expect((await raw("PUT", `/${QUOTA}/small`, [["Transfer-Encoding", "chunked"]], httpChunked(under, 65536), "UNSIGNED-PAYLOAD")).status).toBe(200);
    // Cut off as it passes the quota: none of a 3 MiB body's blocks is stored.
    const blockFiles = () => (readdirSync(join(server.dir, "data"), { recursive: true }) as string[]).filter((f) => /[0-9a-f]{64}/.test(f)).length;
    const before = blockFiles();
    const huge = await raw("PUT", `/${QUOTA}/huge`, [["Transfer-Encoding", "chunked"]], httpChunked(randomBytes(3 * 1024 * 1024), 65536), "UNSIGNED-PAYLOAD");
    expect([huge.status, codeOf(huge)]).toEqual([403, "AccessDenied"]);
    expect(blockFiles()).toBe(before);
    // A part too: parts count against the size quota as they are sent.
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: QUOTA, Key: "mp" }));
    const part = await raw("PUT", `/${QUOTA}/mp?partNumber=1&uploadId=${UploadId}`, [["Transfer-Encoding", "chunked"]], httpChunked(randomBytes(3 * 1024 * 1024), 65536), "UNSIGNED-PAYLOAD");
    expect([part.status, codeOf(part)]).toEqual([403, "AccessDenied"]);
    expect(blockFiles()).toBe(before);
  });
});

describe("Content-Encoding comes back as sent (s3-tests test_object_content_encoding_aws_chunked)", () => {
  test.each([
    ["gzip", "gzip"],
    ["deflate, gzip", "deflate, gzip"],
    ["gzip, aws-chunked", "gzip"],
    ["aws-chunked, gzip", "gzip"],
    ["aws-chunked", undefined],
    ["aws-chunked, aws-chunked", undefined],
  ])("%p -> %p", async (sent, back) => {
    const key = `ce-${sent}`;
    const put = await signedFetch(server, "PUT", `/${BUCKET}/${encodeURIComponent(key)}`, { headers: { "content-encoding": sent }, body: "x" });
    expect(put.status).toBe(200);
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(head.ContentEncoding).toBe(back);
  });
});
