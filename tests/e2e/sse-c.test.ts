// SSE-C through the AWS SDK against the real server: every operation that takes a customer key
// (PutObject, PostObject, GET/HEAD with Range and partNumber, CopyObject both ways, multipart
// with UploadPartCopy), AWS's errors for a missing or wrong key, nothing in plaintext on disk,
// no dedup of sealed blocks, and the website endpoint refusing encrypted objects.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectAttributesCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListPartsCommand,
  PutBucketWebsiteCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { createPresignedPost } from "@aws-sdk/s3-presigned-post";
import { startServer, WEB_ROOT_DOMAIN, type TestServer } from "../helpers/server";
import { MiB, s3Failure, sdkClient, sha256Hex } from "../helpers/clients";
import { errorCode, signedFetch } from "../helpers/signed";

setDefaultTimeout(60_000);

const BUCKET = "sealed";
let server: TestServer;
let s3: S3Client;

const keyA = randomBytes(32);
const keyB = randomBytes(32);
const md5b64 = (b: Uint8Array) => createHash("md5").update(b).digest("base64");
/** The SDK's SSE-C parameters for a key (it computes the MD5 itself when given a raw key). */
const sse = (key: Buffer) => ({ SSECustomerAlgorithm: "AES256", SSECustomerKey: key.toString("base64"), SSECustomerKeyMD5: md5b64(key) });
const copySse = (key: Buffer) => ({ CopySourceSSECustomerAlgorithm: "AES256", CopySourceSSECustomerKey: key.toString("base64"), CopySourceSSECustomerKeyMD5: md5b64(key) });

/** A recognisable plaintext: a marker string repeated, to look for on disk. */
function marked(size: number, marker: string): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i += marker.length) out.write(marker, i);
  return out;
}

async function getBytes(Key: string, extra: Record<string, unknown> = {}): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key, ...extra }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

beforeAll(async () => {
  // Compression off: a sealed block must not shrink, and a plaintext one would be found as is.
  server = await startServer({ compression: "none" });
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});
afterAll(async () => {
  await server?.stop();
});

describe("PutObject and GetObject", () => {
  // A sealed block holds 29 bytes less plaintext than a block: 1 MiB - 28 and 1 MiB take two.
  for (const [label, size] of [["inline", 100], ["one block", 64 * 1024], ["one sealed block, full", MiB - 29], ["just past one sealed block", MiB - 28], ["exactly a block", MiB], ["several blocks", 2 * MiB + 12345]] as const) {
    test(`${label}: read back with the key (whole, Range across blocks, HEAD); the key is echoed`, async () => {
      const body = randomBytes(size);
      const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: label, Body: body, ...sse(keyA) }));
      expect(put.SSECustomerAlgorithm).toBe("AES256");
      expect(put.SSECustomerKeyMD5).toBe(md5b64(keyA));
      // The ETag of an encrypted object is not the MD5 of its plaintext.
      expect(put.ETag).not.toBe(`"${createHash("md5").update(body).digest("hex")}"`);
      const got = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: label, ...sse(keyA) }));
      expect(sha256Hex(await got.Body!.transformToByteArray())).toBe(sha256Hex(body));
      expect(got.SSECustomerKeyMD5).toBe(md5b64(keyA));
      const from = Math.floor(size / 3);
      const to = Math.min(size - 1, from + MiB);
      expect(sha256Hex(await getBytes(label, { Range: `bytes=${from}-${to}`, ...sse(keyA) }))).toBe(sha256Hex(body.subarray(from, to + 1)));
      const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: label, ...sse(keyA) }));
      expect(head.ContentLength).toBe(size);
      expect(head.SSECustomerAlgorithm).toBe("AES256");
    });
  }

  test("no key: 400 InvalidRequest; a wrong key: 403 AccessDenied; a key for a plaintext object: 400", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "locked", Body: "secret", ...sse(keyA) }));
    expect(await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "locked" })))).toMatchObject({ name: "InvalidRequest", status: 400 });
    expect(await s3Failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "locked" })))).toMatchObject({ status: 400 });
    expect(await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "locked", ...sse(keyB) })))).toMatchObject({ name: "AccessDenied", status: 403 });
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "open", Body: "plain" }));
    expect(await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "open", ...sse(keyA) })))).toMatchObject({ name: "InvalidRequest", status: 400 });
  });

  test("a key whose MD5 does not match, or of the wrong length, is refused and nothing is stored", async () => {
    // Raw, as the SDK recomputes the MD5 from the key it is given.
    const r = await signedFetch(server, "PUT", `/${BUCKET}/badkey`, {
      body: "x",
      headers: { "x-amz-server-side-encryption-customer-algorithm": "AES256", "x-amz-server-side-encryption-customer-key": keyA.toString("base64"), "x-amz-server-side-encryption-customer-key-md5": md5b64(keyB) },
    });
    expect([r.status, errorCode(await r.text())]).toEqual([400, "InvalidArgument"]);
    const short = randomBytes(16);
    expect(await s3Failure(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "badkey", Body: "x", ...sse(short) })))).toMatchObject({ name: "InvalidArgument", status: 400 });
    expect(await s3Failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "badkey" })))).toMatchObject({ status: 404 });
  });

  test("nothing of the plaintext is on disk, and equal plaintexts are not deduplicated", async () => {
    const marker = "BUNKER-SSE-C-PLAINTEXT-MARKER!";
    const body = marked(3 * MiB, marker);
    const dataDir = join(server.dir, "data");
    const before = filesUnder(dataDir).length;
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "m1", Body: body, ...sse(keyA) }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "m2", Body: body, ...sse(keyA) }));
    const files = filesUnder(dataDir);
    // 3 MiB is 4 sealed blocks (each holds a little less than 1 MiB); two objects, 8 files.
    expect(files.length - before).toBe(8);
    for (const f of files) expect(readFileSync(f).includes(marker)).toBe(false);
    expect((await getBytes("m2", sse(keyA))).equals(body)).toBe(true);
  });
});

describe("CopyObject", () => {
  test("to the same key (by reference), another key, plaintext, and from plaintext to a key", async () => {
    const body = randomBytes(MiB + 5000);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "csrc", Body: body, ...sse(keyA) }));
    const cases: [string, Record<string, unknown>, Record<string, unknown>][] = [
      ["csame", { ...copySse(keyA), ...sse(keyA) }, sse(keyA)],
      ["cother", { ...copySse(keyA), ...sse(keyB) }, sse(keyB)],
      ["cplain", copySse(keyA), {}],
    ];
    for (const [Key, copyParams, readParams] of cases) {
      await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key, CopySource: `${BUCKET}/csrc`, ...copyParams }));
      expect(`${Key}: ${sha256Hex(await getBytes(Key, readParams))}`).toBe(`${Key}: ${sha256Hex(body)}`);
    }
    // The re-encrypted copy does not open with the source's key.
    expect(await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "cother", ...sse(keyA) })))).toMatchObject({ status: 403 });
    await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "csealed", CopySource: `${BUCKET}/cplain`, ...sse(keyB) }));
    expect(sha256Hex(await getBytes("csealed", sse(keyB)))).toBe(sha256Hex(body));
    // A plaintext source of exactly one block, sealed by the copy (two sealed blocks).
    const block = randomBytes(MiB);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "cblock", Body: block }));
    await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "cblock-sealed", CopySource: `${BUCKET}/cblock`, ...sse(keyA) }));
    expect(sha256Hex(await getBytes("cblock-sealed", sse(keyA)))).toBe(sha256Hex(block));
    // A copy of an encrypted source without its key is refused.
    expect(await s3Failure(s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "cnokey", CopySource: `${BUCKET}/csrc` })))).toMatchObject({ status: 400 });
    expect(await s3Failure(s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "cnokey", CopySource: `${BUCKET}/csrc`, ...copySse(keyB) })))).toMatchObject({ status: 403 });
  });
});

describe("multipart", () => {
  test("parts sealed with the upload's key; UploadPartCopy from an encrypted source; GET by part and range", async () => {
    const src = randomBytes(5 * MiB + 100);
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "mpsrc", Body: src, ...sse(keyB) }));
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "mp", ...sse(keyA) }));
    const part1 = randomBytes(5 * MiB);
    // A part without the upload's key, or with another, is refused.
    expect(await s3Failure(s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mp", UploadId, PartNumber: 1, Body: part1 })))).toMatchObject({ status: 400 });
    expect(await s3Failure(s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mp", UploadId, PartNumber: 1, Body: part1, ...sse(keyB) })))).toMatchObject({ status: 400 });
    const p1 = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mp", UploadId, PartNumber: 1, Body: part1, ...sse(keyA) }));
    const p2 = await s3.send(new UploadPartCopyCommand({ Bucket: BUCKET, Key: "mp", UploadId, PartNumber: 2, CopySource: `${BUCKET}/mpsrc`, CopySourceRange: "bytes=100-2000099", ...copySse(keyB), ...sse(keyA) }));
    // The same bytes sent again under the same key keep their ETag (clients keep the first one).
    expect((await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mp", UploadId, PartNumber: 1, Body: part1, ...sse(keyA) }))).ETag).toBe(p1.ETag);
    const parts = { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 2, ETag: p2.CopyPartResult!.ETag }] };
    // Completing an encrypted upload takes its key.
    expect(await s3Failure(s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "mp", UploadId, MultipartUpload: parts })))).toMatchObject({ status: 400 });
    expect(await s3Failure(s3.send(new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: "mp", UploadId, MultipartUpload: parts, ...sse(keyB) })))).toMatchObject({ status: 400 });
    const done = await signedFetch(server, "POST", `/${BUCKET}/mp?uploadId=${UploadId}`, {
      headers: { "x-amz-server-side-encryption-customer-algorithm": "AES256", "x-amz-server-side-encryption-customer-key": keyA.toString("base64"), "x-amz-server-side-encryption-customer-key-md5": md5b64(keyA) },
      body: `<CompleteMultipartUpload>${parts.Parts.map((p) => `<Part><PartNumber>${p.PartNumber}</PartNumber><ETag>${p.ETag}</ETag></Part>`).join("")}</CompleteMultipartUpload>`,
    });
    expect([done.status, done.headers.get("x-amz-server-side-encryption-customer-key-md5")]).toEqual([200, md5b64(keyA)]);
    const whole = Buffer.concat([part1, src.subarray(100, 2_000_100)]);
    expect(sha256Hex(await getBytes("mp", sse(keyA)))).toBe(sha256Hex(whole));
    expect(sha256Hex(await getBytes("mp", { PartNumber: 2, ...sse(keyA) }))).toBe(sha256Hex(src.subarray(100, 2_000_100)));
    expect(sha256Hex(await getBytes("mp", { Range: `bytes=${5 * MiB - 10}-${5 * MiB + 10}`, ...sse(keyA) }))).toBe(sha256Hex(whole.subarray(5 * MiB - 10, 5 * MiB + 11)));
    expect(await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "mp" })))).toMatchObject({ status: 400 });
    // A part number out of range is told before the missing key (as AWS orders them).
    expect(await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "mp", PartNumber: 3 })))).toMatchObject({ name: "InvalidPart", status: 400 });
    // Its attributes need the key as well.
    const attrs = await s3.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: "mp", ObjectAttributes: ["ObjectSize", "ObjectParts"], ...sse(keyA) }));
    expect(attrs.ObjectSize).toBe(whole.length);
    expect(attrs.ObjectParts?.TotalPartsCount).toBe(2);
    expect(await s3Failure(s3.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: "mp", ObjectAttributes: ["ObjectSize"] })))).toMatchObject({ status: 400 });
    expect(await s3Failure(s3.send(new GetObjectAttributesCommand({ Bucket: BUCKET, Key: "mp", ObjectAttributes: ["ObjectSize"], ...sse(keyB) })))).toMatchObject({ status: 403 });
  });
});

test("the part checksums of an encrypted upload are listed only with its key", async () => {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: "mpsum", ChecksumAlgorithm: "SHA256", ...sse(keyA) }));
  await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: "mpsum", UploadId, PartNumber: 1, Body: "part", ChecksumAlgorithm: "SHA256", ...sse(keyA) }));
  expect(await s3Failure(s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: "mpsum", UploadId })))).toMatchObject({ status: 400 });
  const listed = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: "mpsum", UploadId, ...sse(keyA) }));
  expect(listed.Parts?.[0]?.ChecksumSHA256).toBe(createHash("sha256").update("part").digest("base64"));
});

describe("PostObject", () => {
  test("a form with SSE-C fields stores the file sealed", async () => {
    const fields = { "x-amz-server-side-encryption-customer-algorithm": "AES256", "x-amz-server-side-encryption-customer-key": keyA.toString("base64"), "x-amz-server-side-encryption-customer-key-md5": md5b64(keyA) };
    const post = await createPresignedPost(s3, { Bucket: BUCKET, Key: "posted", Fields: fields, Conditions: Object.entries(fields).map(([k, v]) => ({ [k]: v })), Expires: 60 });
    const form = new FormData();
    for (const [k, v] of Object.entries(post.fields)) form.append(k, v);
    form.append("file", new Blob([Buffer.from("posted secret")]), "f.txt");
    const r = await fetch(post.url, { method: "POST", body: form });
    expect(r.status).toBe(204);
    expect(r.headers.get("x-amz-server-side-encryption-customer-key-md5")).toBe(md5b64(keyA));
    expect((await getBytes("posted", sse(keyA))).toString()).toBe("posted secret");
    expect(await s3Failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "posted" })))).toMatchObject({ status: 400 });
  });
});

describe("website endpoint", () => {
  test("never serves an encrypted object, nor an encrypted error document", async () => {
    await s3.send(new PutBucketWebsiteCommand({ Bucket: BUCKET, WebsiteConfiguration: { IndexDocument: { Suffix: "index.html" }, ErrorDocument: { Key: "error.html" } } }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "page.html", Body: "<p>secret</p>", ...sse(keyA) }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "error.html", Body: "<p>secret error page</p>", ...sse(keyA) }));
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "public.html", Body: "<p>public</p>" }));
    const web = (path: string) => fetch(`http://127.0.0.1:${server.webPort}${path}`, { headers: { host: `${BUCKET}.${WEB_ROOT_DOMAIN}` } });
    expect((await web("/public.html")).status).toBe(200);
    const sealed = await web("/page.html");
    expect(sealed.status).toBe(403);
    expect(await sealed.text()).not.toContain("secret");
    const missing = await web("/nothing.html");
    expect(missing.status).toBe(404);
    expect(await missing.text()).not.toContain("secret error page");
  });
});
