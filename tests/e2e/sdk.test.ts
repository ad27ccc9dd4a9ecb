// End to end with @aws-sdk/client-s3 (default checksum settings), lib-storage and the
// presigner against a real server process: buckets, objects of every size class, odd keys,
// metadata, ranges, conditionals, checksums, copy, batch delete, listing, multipart,
// presigned URLs and authentication errors.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import http from "node:http";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type ChecksumAlgorithm,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { startServer, type TestServer } from "../helpers/server";
import {
  KiB,
  MiB,
  crc32c,
  crcBase64,
  hashFile,
  hashStream,
  md5Hex,
  sdkClient,
  sha256Hex,
  writeRandomFile,
  type RandomFile,
} from "../helpers/clients";

// Real servers and real clients: bun's 5 s default is too short, and a timed-out test
// makes bun kill every child process, the server included.
setDefaultTimeout(60_000);

let server: TestServer;
let s3: S3Client;
let tmp: string;
const BUCKET = "sdk-main";

interface CaughtError {
  name: string;
  code: string | undefined;
  status: number | undefined;
}

/** Awaits a call that must fail and returns what the SDK reported. */
async function failure(p: Promise<unknown>): Promise<CaughtError> {
  try {
    await p;
  } catch (err) {
    const e = err as { name: string; Code?: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, code: e.Code ?? e.name, status: e.$metadata?.httpStatusCode };
  }
  throw new Error("expected the request to fail, but it succeeded");
}

async function putString(key: string, body: string | Uint8Array, extra: Record<string, unknown> = {}) {
  return s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, ...extra }));
}

async function getText(key: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, ...extra }));
  return r.Body!.transformToString();
}

async function getBytes(bucket: string, key: string, extra: Record<string, unknown> = {}): Promise<Buffer> {
  const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...extra }));
  return Buffer.from(await r.Body!.transformToByteArray());
}

async function listAllV2(bucket: string, prefix?: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const c of r.Contents ?? []) keys.push(c.Key!);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return keys;
}

async function emptyBucket(bucket: string): Promise<void> {
  const keys = await listAllV2(bucket);
  for (let i = 0; i < keys.length; i += 1000) {
    await s3.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
      }),
    );
  }
  const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const u of uploads.Uploads ?? []) {
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! }));
  }
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  tmp = mkdtempSync(join(tmpdir(), "bunker-sdk-"));
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  s3?.destroy();
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe("buckets", () => {
  test("create, head, list, location, delete; BucketNotEmpty; NoSuchBucket", async () => {
    const name = "sdk-bucket-ops";
    await s3.send(new CreateBucketCommand({ Bucket: name }));
    const head = await s3.send(new HeadBucketCommand({ Bucket: name }));
    expect(head.$metadata.httpStatusCode).toBe(200);

    const list = await s3.send(new ListBucketsCommand({}));
    const names = (list.Buckets ?? []).map((b) => b.Name);
    expect(names).toContain(name);
    expect(names).toContain(BUCKET);
    const entry = list.Buckets!.find((b) => b.Name === name)!;
    expect(entry.CreationDate).toBeInstanceOf(Date);
    expect(Math.abs(entry.CreationDate!.getTime() - Date.now())).toBeLessThan(5 * 60_000);
    expect(list.Owner?.ID).toBeTruthy();

    const loc = await s3.send(new GetBucketLocationCommand({ Bucket: name }));
    expect(loc.LocationConstraint as string).toBe("garage");

    await s3.send(new PutObjectCommand({ Bucket: name, Key: "x", Body: "x" }));
    const notEmpty = await failure(s3.send(new DeleteBucketCommand({ Bucket: name })));
    expect(notEmpty).toMatchObject({ code: "BucketNotEmpty", status: 409 });

    await s3.send(new DeleteObjectCommand({ Bucket: name, Key: "x" }));
    const del = await s3.send(new DeleteBucketCommand({ Bucket: name }));
    expect(del.$metadata.httpStatusCode).toBe(204);

    const headGone = await failure(s3.send(new HeadBucketCommand({ Bucket: name })));
    expect(headGone.status).toBe(404);
    const delGone = await failure(s3.send(new DeleteBucketCommand({ Bucket: name })));
    expect(delGone).toMatchObject({ code: "NoSuchBucket", status: 404 });
    const getGone = await failure(s3.send(new GetObjectCommand({ Bucket: name, Key: "x" })));
    expect(getGone).toMatchObject({ code: "NoSuchBucket", status: 404 });
    const listGone = await failure(s3.send(new ListObjectsV2Command({ Bucket: name })));
    expect(listGone).toMatchObject({ code: "NoSuchBucket", status: 404 });
    const after = await s3.send(new ListBucketsCommand({}));
    expect((after.Buckets ?? []).map((b) => b.Name)).not.toContain(name);
  });

  test("creating an existing bucket of one's own answers BucketAlreadyOwnedByYou or succeeds", async () => {
    const r = await s3.send(new CreateBucketCommand({ Bucket: BUCKET })).then(
      () => ({ ok: true as const }),
      (e: { name: string; $metadata?: { httpStatusCode?: number } }) => ({ ok: false as const, name: e.name, status: e.$metadata?.httpStatusCode }),
    );
    if (!r.ok) expect(r).toMatchObject({ name: "BucketAlreadyOwnedByYou", status: 409 });
  });

  test("invalid bucket names are refused", async () => {
    for (const bad of ["UPPER", "ab", "-leading", "under_score"]) {
      const e = await failure(s3.send(new CreateBucketCommand({ Bucket: bad })));
      expect(e.status).toBe(400);
      expect(e.code).toBe("InvalidBucketName");
    }
  });
});

describe("objects by size", () => {
  const sizes: [string, number][] = [
    ["0 B", 0],
    ["2 KiB", 2 * KiB],
    ["5 MiB", 5 * MiB],
    ["100 MiB", 100 * MiB],
  ];
  for (const [label, size] of sizes) {
    test(`put/head/get/delete ${label} streamed from a file`, async () => {
      const file: RandomFile = writeRandomFile(join(tmp, `size-${size}.bin`), size);
      const key = `sizes/${size}.bin`;
      try {
        const put = await s3.send(
          new PutObjectCommand({
            Bucket: BUCKET,
            Key: key,
            Body: createReadStream(file.path),
            ContentLength: size,
            ContentType: "application/octet-stream",
          }),
        );
        expect(put.ETag).toBe(`"${file.md5}"`);

        const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
        expect(head.ContentLength).toBe(size);
        expect(head.ETag).toBe(`"${file.md5}"`);
        expect(head.ContentType).toBe("application/octet-stream");
        expect(head.LastModified).toBeInstanceOf(Date);
        expect(head.AcceptRanges).toBe("bytes");

        const get = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
        expect(get.ContentLength).toBe(size);
        expect(get.ETag).toBe(`"${file.md5}"`);
        const got = await hashStream(get.Body as AsyncIterable<Uint8Array>);
        expect(got).toEqual({ size, sha256: file.sha256 });

        const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: key }));
        expect(listed.Contents?.map((c) => [c.Key, c.Size, c.ETag])).toEqual([[key, size, `"${file.md5}"`]]);

        if (size === 5 * MiB) {
          // A range across the first block boundary (block_size is 1 MiB in the harness).
          const start = MiB - 7;
          const end = MiB + 12;
          const part = await getBytes(BUCKET, key, { Range: `bytes=${start}-${end}` });
          const local = await hashStream(createReadStream(file.path, { start, end }));
          expect(part.length).toBe(end - start + 1);
          expect(sha256Hex(part)).toBe(local.sha256);
        }

        const del = await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
        expect(del.$metadata.httpStatusCode).toBe(204);
        const gone = await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })));
        expect(gone.status).toBe(404);
        const getGone = await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key })));
        expect(getGone).toMatchObject({ code: "NoSuchKey", status: 404 });
      } finally {
        rmSync(file.path, { force: true });
      }
    });
  }

  test("overwriting a key replaces its content; deleting a missing key is a 204", async () => {
    await putString("overwrite", "first version");
    await putString("overwrite", "second");
    expect(await getText("overwrite")).toBe("second");
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "overwrite" }));
    const again = await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "overwrite" }));
    expect(again.$metadata.httpStatusCode).toBe(204);
  });
});

describe("keys with special characters", () => {
  const keys = [
    "with space/a file name.txt",
    "é/ü 日本",
    "amp&plus+percent%.txt",
    "mix/ é&+% 日本/~!$'()*,;=@[]",
    "trailing/slash/",
  ];
  for (const key of keys) {
    test(`round trip of ${JSON.stringify(key)}`, async () => {
      const body = `content of ${key}`;
      await putString(key, body);
      const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      expect(head.ContentLength).toBe(Buffer.byteLength(body));
      expect(await getText(key)).toBe(body);
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: key }));
      expect(listed.Contents?.map((c) => c.Key)).toEqual([key]);
      const listedEnc = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: key, EncodingType: "url" }));
      const encKey = listedEnc.Contents?.[0]?.Key ?? "";
      expect(decodeURIComponent(encKey.replace(/\+/g, " "))).toBe(key);
      await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
      expect((await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })))).status).toBe(404);
    });
  }
});

describe("unusual keys and limits", () => {
  // S3 keeps keys verbatim, path-like or not; these exercise the raw-URL handling.
  const pathLike = ["a//b", "/leading-slash", "x/./y", "x/../y", "dot/.", "back\\slash", "q?x=1#frag"];
  test("path-like keys (//, leading /, . and .. segments, \\, ?#) are kept verbatim", async () => {
    for (const key of pathLike) await putString(`odd/${key}`, `body ${key}`);
    const listed = await listAllV2(BUCKET, "odd/");
    expect(listed.sort()).toEqual(pathLike.map((k) => `odd/${k}`).sort());
    for (const key of pathLike) expect(await getText(`odd/${key}`)).toBe(`body ${key}`);
    await s3.send(new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: listed.map((Key) => ({ Key })) } }));
    expect(await listAllV2(BUCKET, "odd/")).toEqual([]);
  });

  test("a 1024-byte key is accepted, 1025 → KeyTooLongError", async () => {
    const ok = "k".repeat(1024);
    await putString(ok, "long");
    expect(await getText(ok)).toBe("long");
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: ok }));
    const e = await failure(putString("k".repeat(1025), "too long"));
    expect(e).toMatchObject({ code: "KeyTooLongError", status: 400 });
  });

  test("more than 2 KiB of user metadata → MetadataTooLarge", async () => {
    const e = await failure(putString("meta/too-large", "x", { Metadata: { big: "x".repeat(3000) } }));
    expect(e).toMatchObject({ code: "MetadataTooLarge", status: 400 });
  });
});

describe("metadata", () => {
  test("standard headers and x-amz-meta-* are stored and returned", async () => {
    const expires = new Date("2031-05-06T07:08:09Z");
    await putString("meta/obj.txt", "hello metadata", {
      ContentType: "text/plain; charset=utf-8",
      ContentDisposition: 'attachment; filename="report.txt"',
      CacheControl: "max-age=3600, public",
      ContentEncoding: "identity",
      ContentLanguage: "fr-CA",
      Expires: expires,
      Metadata: { color: "blue", "Mixed-Case": "Some Value", empty: "" },
    });
    for (const r of [
      await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "meta/obj.txt" })),
      await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "meta/obj.txt" })),
    ]) {
      expect(r.ContentType).toBe("text/plain; charset=utf-8");
      expect(r.ContentDisposition).toBe('attachment; filename="report.txt"');
      expect(r.CacheControl).toBe("max-age=3600, public");
      expect(r.ContentEncoding).toBe("identity");
      expect(r.ContentLanguage).toBe("fr-CA");
      expect(r.Expires?.getTime()).toBe(expires.getTime());
      expect(r.Metadata).toEqual({ color: "blue", "mixed-case": "Some Value", empty: "" });
      expect(r.ContentLength).toBe(14);
    }
  });

  test("gzip Content-Encoding is stored verbatim (HEAD)", async () => {
    await putString("meta/gz", "not really gzip", { ContentEncoding: "gzip", ContentType: "text/plain" });
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "meta/gz" }));
    expect(head.ContentEncoding).toBe("gzip");
    expect(head.ContentType).toBe("text/plain");
  });

  test("response-* query parameters override headers on GET", async () => {
    await putString("meta/override", "override me", { ContentType: "text/plain" });
    const r = await s3.send(
      new GetObjectCommand({
        Bucket: BUCKET,
        Key: "meta/override",
        ResponseContentType: "application/x-override",
        ResponseContentDisposition: 'inline; filename="o.bin"',
        ResponseCacheControl: "no-store",
        ResponseContentLanguage: "de",
        ResponseExpires: new Date("2030-01-01T00:00:00Z"),
      }),
    );
    expect(r.ContentType).toBe("application/x-override");
    expect(r.ContentDisposition).toBe('inline; filename="o.bin"');
    expect(r.CacheControl).toBe("no-store");
    expect(r.ContentLanguage).toBe("de");
    expect(r.Expires?.getTime()).toBe(new Date("2030-01-01T00:00:00Z").getTime());
    expect(await r.Body!.transformToString()).toBe("override me");
    // The stored content type is unchanged.
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "meta/override" }));
    expect(head.ContentType).toBe("text/plain");
  });

  test("an object without Content-Type gets a default one", async () => {
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "meta/no-type", Body: Buffer.from("abc") }));
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "meta/no-type" }));
    expect(head.ContentType).toBeTruthy();
  });
});

describe("ranges", () => {
  const body = Array.from({ length: 100 }, (_, i) => String.fromCharCode(33 + (i % 90))).join("");
  beforeAll(async () => {
    await putString("range/obj", body);
  });

  test("bytes=0-9", async () => {
    const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "range/obj", Range: "bytes=0-9" }));
    expect(r.$metadata.httpStatusCode).toBe(206);
    expect(r.ContentRange).toBe("bytes 0-9/100");
    expect(r.ContentLength).toBe(10);
    expect(await r.Body!.transformToString()).toBe(body.slice(0, 10));
  });

  test("bytes=10-", async () => {
    const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "range/obj", Range: "bytes=10-" }));
    expect(r.$metadata.httpStatusCode).toBe(206);
    expect(r.ContentRange).toBe("bytes 10-99/100");
    expect(r.ContentLength).toBe(90);
    expect(await r.Body!.transformToString()).toBe(body.slice(10));
  });

  test("bytes=-10", async () => {
    const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "range/obj", Range: "bytes=-10" }));
    expect(r.$metadata.httpStatusCode).toBe(206);
    expect(r.ContentRange).toBe("bytes 90-99/100");
    expect(await r.Body!.transformToString()).toBe(body.slice(90));
  });

  test("an end past the size is clamped", async () => {
    const r = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "range/obj", Range: "bytes=95-1000" }));
    expect(r.ContentRange).toBe("bytes 95-99/100");
    expect(await r.Body!.transformToString()).toBe(body.slice(95));
  });

  test("unsatisfiable range → 416 InvalidRange", async () => {
    const e = await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "range/obj", Range: "bytes=200-300" })));
    expect(e).toMatchObject({ code: "InvalidRange", status: 416 });
  });

  test("a range on HEAD gives the partial length", async () => {
    const r = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "range/obj", Range: "bytes=0-9" }));
    expect(r.ContentLength).toBe(10);
  });
});

describe("conditional requests", () => {
  let etag: string;
  let lastModified: Date;
  beforeAll(async () => {
    const put = await putString("cond/obj", "conditional body");
    etag = put.ETag!;
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "cond/obj" }));
    lastModified = head.LastModified!;
  });

  test("If-Match", async () => {
    expect(await getText("cond/obj", { IfMatch: etag })).toBe("conditional body");
    const e = await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "cond/obj", IfMatch: '"0123456789abcdef0123456789abcdef"' })));
    expect(e).toMatchObject({ code: "PreconditionFailed", status: 412 });
    const h = await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "cond/obj", IfMatch: '"0123456789abcdef0123456789abcdef"' })));
    expect(h.status).toBe(412);
  });

  test("If-None-Match", async () => {
    const e = await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "cond/obj", IfNoneMatch: etag })));
    expect(e.status).toBe(304);
    const h = await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "cond/obj", IfNoneMatch: etag })));
    expect(h.status).toBe(304);
    expect(await getText("cond/obj", { IfNoneMatch: '"0123456789abcdef0123456789abcdef"' })).toBe("conditional body");
  });

  test("If-Modified-Since / If-Unmodified-Since", async () => {
    const future = new Date(Date.now() + 3600_000);
    const past = new Date(lastModified.getTime() - 3600_000);
    const e = await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "cond/obj", IfModifiedSince: future })));
    expect(e.status).toBe(304);
    // Last-Modified has second precision: the same instant is "not modified since".
    const same = await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "cond/obj", IfModifiedSince: lastModified })));
    expect(same.status).toBe(304);
    expect(await getText("cond/obj", { IfModifiedSince: past })).toBe("conditional body");
    const u = await failure(s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "cond/obj", IfUnmodifiedSince: past })));
    expect(u).toMatchObject({ code: "PreconditionFailed", status: 412 });
    expect(await getText("cond/obj", { IfUnmodifiedSince: future })).toBe("conditional body");
  });

  test("If-Match wins over If-Unmodified-Since; If-None-Match over If-Modified-Since", async () => {
    const past = new Date(lastModified.getTime() - 3600_000);
    const future = new Date(Date.now() + 3600_000);
    expect(await getText("cond/obj", { IfMatch: etag, IfUnmodifiedSince: past })).toBe("conditional body");
    expect(await getText("cond/obj", { IfNoneMatch: '"ffffffffffffffffffffffffffffffff"', IfModifiedSince: future })).toBe("conditional body");
  });
});

describe("checksums", () => {
  const data = Buffer.from("The quick brown fox jumps over the lazy dog, with checksums.");
  const expected: Record<string, string> = {
    CRC32: crcBase64(Bun.hash.crc32(data)),
    CRC32C: crcBase64(crc32c(data)),
    SHA1: createHash("sha1").update(data).digest("base64"),
    SHA256: createHash("sha256").update(data).digest("base64"),
  };
  const algorithms: ChecksumAlgorithm[] = ["CRC32", "CRC32C", "SHA1", "SHA256"];
  for (const algo of algorithms) {
    test(`PutObject with ${algo}; GetObject/HeadObject with ChecksumMode ENABLED return it`, async () => {
      const key = `checksum/${algo}`;
      const field = `Checksum${algo}` as const;
      const put = await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: data, ChecksumAlgorithm: algo }));
      expect(put[field]).toBe(expected[algo]);
      const get = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, ChecksumMode: "ENABLED" }));
      expect(get[field]).toBe(expected[algo]);
      expect(Buffer.from(await get.Body!.transformToByteArray()).equals(data)).toBe(true);
      const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key, ChecksumMode: "ENABLED" }));
      expect(head[field]).toBe(expected[algo]);
    });
  }

  test("checksums of a streamed multi-block body (aws-chunked with trailer)", async () => {
    const file = writeRandomFile(join(tmp, "cks.bin"), 3 * MiB + 123);
    try {
      const put = await s3.send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: "checksum/stream",
          Body: createReadStream(file.path),
          ContentLength: file.size,
          ChecksumAlgorithm: "SHA256",
        }),
      );
      const sha = createHash("sha256");
      for await (const c of createReadStream(file.path)) sha.update(c as Buffer);
      const expectedSha = sha.digest("base64");
      expect(put.ChecksumSHA256).toBe(expectedSha);
      const get = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "checksum/stream", ChecksumMode: "ENABLED" }));
      expect(get.ChecksumSHA256).toBe(expectedSha);
      expect((await hashStream(get.Body as AsyncIterable<Uint8Array>)).sha256).toBe(file.sha256);
    } finally {
      rmSync(file.path, { force: true });
    }
  });

  test("a wrong x-amz-checksum value → BadDigest and nothing stored", async () => {
    const e = await failure(
      s3.send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: "checksum/wrong",
          Body: data,
          ChecksumSHA256: createHash("sha256").update("something else").digest("base64"),
        }),
      ),
    );
    expect(e.status).toBe(400);
    expect(e.code).toBe("BadDigest");
    expect((await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "checksum/wrong" })))).status).toBe(404);
  });

  test("Content-MD5 right is accepted; wrong → BadDigest", async () => {
    const good = createHash("md5").update(data).digest("base64");
    const ok = await putString("checksum/md5-ok", data, { ContentMD5: good });
    expect(ok.ETag).toBe(`"${md5Hex(data)}"`);
    const bad = createHash("md5").update("other").digest("base64");
    const e = await failure(putString("checksum/md5-bad", data, { ContentMD5: bad }));
    expect(e).toMatchObject({ code: "BadDigest", status: 400 });
    expect((await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "checksum/md5-bad" })))).status).toBe(404);
  });
});

describe("copy", () => {
  const SRC = "copy/src é&+.txt";
  let srcEtag: string;
  const copySource = (key: string) => `${BUCKET}/${key.split("/").map(encodeURIComponent).join("/")}`;

  beforeAll(async () => {
    const put = await putString(SRC, "copy me please", {
      ContentType: "text/x-src",
      CacheControl: "no-cache",
      Metadata: { origin: "source" },
    });
    srcEtag = put.ETag!;
  });

  test("COPY directive keeps the metadata", async () => {
    const r = await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "copy/dst-copy", CopySource: copySource(SRC) }));
    expect(r.CopyObjectResult?.ETag).toBe(srcEtag);
    expect(r.CopyObjectResult?.LastModified).toBeInstanceOf(Date);
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "copy/dst-copy" }));
    expect(head.ContentType).toBe("text/x-src");
    expect(head.CacheControl).toBe("no-cache");
    expect(head.Metadata).toEqual({ origin: "source" });
    expect(await getText("copy/dst-copy")).toBe("copy me please");
  });

  test("REPLACE directive sets new metadata", async () => {
    await s3.send(
      new CopyObjectCommand({
        Bucket: BUCKET,
        Key: "copy/dst-replace",
        CopySource: copySource(SRC),
        MetadataDirective: "REPLACE",
        ContentType: "application/x-new",
        Metadata: { origin: "replaced" },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "copy/dst-replace" }));
    expect(head.ContentType).toBe("application/x-new");
    expect(head.Metadata).toEqual({ origin: "replaced" });
    expect(head.CacheControl).toBeUndefined();
    expect(await getText("copy/dst-replace")).toBe("copy me please");
  });

  test("copy onto itself with REPLACE updates metadata", async () => {
    await putString("copy/self", "self body", { Metadata: { v: "1" } });
    await s3.send(
      new CopyObjectCommand({
        Bucket: BUCKET,
        Key: "copy/self",
        CopySource: copySource("copy/self"),
        MetadataDirective: "REPLACE",
        Metadata: { v: "2" },
      }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "copy/self" }));
    expect(head.Metadata).toEqual({ v: "2" });
    expect(await getText("copy/self")).toBe("self body");
  });

  test("copy-source-if-match failing → 412; matching succeeds", async () => {
    const e = await failure(
      s3.send(
        new CopyObjectCommand({
          Bucket: BUCKET,
          Key: "copy/dst-cond",
          CopySource: copySource(SRC),
          CopySourceIfMatch: '"00000000000000000000000000000000"',
        }),
      ),
    );
    expect(e).toMatchObject({ code: "PreconditionFailed", status: 412 });
    expect((await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "copy/dst-cond" })))).status).toBe(404);
    await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "copy/dst-cond", CopySource: copySource(SRC), CopySourceIfMatch: srcEtag }));
    expect(await getText("copy/dst-cond")).toBe("copy me please");
  });

  test("copy onto itself without changes → InvalidRequest", async () => {
    const e = await failure(s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: SRC, CopySource: copySource(SRC) })));
    expect(e).toMatchObject({ code: "InvalidRequest", status: 400 });
  });

  test("copy of a missing source → NoSuchKey", async () => {
    const e = await failure(s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: "copy/x", CopySource: copySource("copy/missing") })));
    expect(e).toMatchObject({ code: "NoSuchKey", status: 404 });
  });

  test("copy of a multi-block object to another bucket", async () => {
    const other = "sdk-copy-target";
    await s3.send(new CreateBucketCommand({ Bucket: other }));
    const file = writeRandomFile(join(tmp, "copy-big.bin"), 3 * MiB + 5);
    try {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "copy/big", Body: createReadStream(file.path), ContentLength: file.size }));
      const r = await s3.send(new CopyObjectCommand({ Bucket: other, Key: "big-copy", CopySource: copySource("copy/big") }));
      expect(r.CopyObjectResult?.ETag).toBe(`"${file.md5}"`);
      const get = await s3.send(new GetObjectCommand({ Bucket: other, Key: "big-copy" }));
      expect(await hashStream(get.Body as AsyncIterable<Uint8Array>)).toEqual({ size: file.size, sha256: file.sha256 });
      // The copy survives deleting the source.
      await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "copy/big" }));
      const again = await s3.send(new GetObjectCommand({ Bucket: other, Key: "big-copy" }));
      expect((await hashStream(again.Body as AsyncIterable<Uint8Array>)).sha256).toBe(file.sha256);
    } finally {
      rmSync(file.path, { force: true });
      await emptyBucket(other);
      await s3.send(new DeleteBucketCommand({ Bucket: other }));
    }
  });
});

describe("DeleteObjects", () => {
  test("Quiet false lists every deleted key, including missing ones", async () => {
    const keys = ["batch/a", "batch/b c", "batch/é&+"];
    for (const k of keys) await putString(k, k);
    const r = await s3.send(
      new DeleteObjectsCommand({
        Bucket: BUCKET,
        Delete: { Objects: [...keys, "batch/never-existed"].map((Key) => ({ Key })), Quiet: false },
      }),
    );
    expect((r.Deleted ?? []).map((d) => d.Key).sort()).toEqual([...keys, "batch/never-existed"].sort());
    expect(r.Errors ?? []).toEqual([]);
    expect(await listAllV2(BUCKET, "batch/")).toEqual([]);
  });

  test("Quiet true answers only errors", async () => {
    const keys = ["batchq/1", "batchq/2"];
    for (const k of keys) await putString(k, k);
    const r = await s3.send(
      new DeleteObjectsCommand({ Bucket: BUCKET, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
    );
    expect(r.Deleted ?? []).toEqual([]);
    expect(r.Errors ?? []).toEqual([]);
    expect(await listAllV2(BUCKET, "batchq/")).toEqual([]);
  });
});

describe("listing", () => {
  const LB = "sdk-list";
  const keys = [
    "a/1",
    "a/2",
    "a/b/3",
    "a/b/4",
    "b/5",
    "c",
    "d--x--1",
    "d--x--2",
    "d--y",
    "e f/ü",
    "e f/&+%",
  ];
  const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));

  beforeAll(async () => {
    await s3.send(new CreateBucketCommand({ Bucket: LB }));
    await Promise.all(keys.map((k) => s3.send(new PutObjectCommand({ Bucket: LB, Key: k, Body: k }))));
  });
  afterAll(async () => {
    await emptyBucket(LB);
    await s3.send(new DeleteBucketCommand({ Bucket: LB }));
  });

  test("all keys in UTF-8 byte order with sizes", async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: LB }));
    expect(r.Contents?.map((c) => c.Key)).toEqual(sorted);
    expect(r.KeyCount).toBe(keys.length);
    expect(r.IsTruncated).toBe(false);
    for (const c of r.Contents!) {
      expect(c.Size).toBe(Buffer.byteLength(c.Key!));
      expect(c.ETag).toBe(`"${md5Hex(c.Key!)}"`);
      expect(c.LastModified).toBeInstanceOf(Date);
      expect(c.StorageClass).toBeTruthy();
    }
  });

  test("prefix", async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: LB, Prefix: "a/" }));
    expect(r.Contents?.map((c) => c.Key)).toEqual(["a/1", "a/2", "a/b/3", "a/b/4"]);
    expect(r.Prefix).toBe("a/");
  });

  test("delimiter /", async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: LB, Delimiter: "/" }));
    expect(r.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["a/", "b/", "e f/"]);
    expect(r.Contents?.map((c) => c.Key)).toEqual(["c", "d--x--1", "d--x--2", "d--y"]);
    expect(r.KeyCount).toBe(7);
    const sub = await s3.send(new ListObjectsV2Command({ Bucket: LB, Delimiter: "/", Prefix: "a/" }));
    expect(sub.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["a/b/"]);
    expect(sub.Contents?.map((c) => c.Key)).toEqual(["a/1", "a/2"]);
  });

  test("multi-character delimiter", async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: LB, Delimiter: "--" }));
    expect(r.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["d--"]);
    const sub = await s3.send(new ListObjectsV2Command({ Bucket: LB, Delimiter: "--", Prefix: "d--" }));
    expect(sub.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["d--x--"]);
    expect(sub.Contents?.map((c) => c.Key)).toEqual(["d--y"]);
  });

  test("max-keys paging with continuation tokens", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: LB, MaxKeys: 2, ContinuationToken: token }));
      pages++;
      expect(r.MaxKeys).toBe(2);
      expect((r.Contents ?? []).length).toBeLessThanOrEqual(2);
      if (token) expect(r.ContinuationToken).toBe(token);
      seen.push(...(r.Contents ?? []).map((c) => c.Key!));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
      if (r.IsTruncated) expect(token).toBeTruthy();
      expect(pages).toBeLessThan(20);
    } while (token);
    expect(seen).toEqual(sorted);
    expect(pages).toBe(Math.ceil(keys.length / 2));
  });

  test("max-keys paging with a delimiter counts common prefixes", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: LB, MaxKeys: 2, Delimiter: "/", ContinuationToken: token }));
      expect((r.Contents ?? []).length + (r.CommonPrefixes ?? []).length).toBeLessThanOrEqual(2);
      seen.push(...(r.Contents ?? []).map((c) => c.Key!), ...(r.CommonPrefixes ?? []).map((p) => p.Prefix!));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    expect(seen.sort()).toEqual(["a/", "b/", "c", "d--x--1", "d--x--2", "d--y", "e f/"].sort());
  });

  test("start-after", async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: LB, StartAfter: "b/5" }));
    expect(r.Contents?.map((c) => c.Key)).toEqual(sorted.slice(sorted.indexOf("b/5") + 1));
    expect(r.StartAfter).toBe("b/5");
    const between = await s3.send(new ListObjectsV2Command({ Bucket: LB, StartAfter: "a/b" }));
    expect(between.Contents?.[0]?.Key).toBe("a/b/3");
  });

  test("encoding-type url", async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: LB, Prefix: "e f/", EncodingType: "url", Delimiter: "/" }));
    expect(r.EncodingType).toBe("url");
    const decode = (s: string) => decodeURIComponent(s.replace(/\+/g, " "));
    const got = (r.Contents ?? []).map((c) => c.Key!);
    expect(got.map(decode)).toEqual(["e f/&+%", "e f/ü"]);
    for (const k of got) expect(k).not.toMatch(/[ &ü]/);
    expect(decode(r.Prefix!)).toBe("e f/");
    const top = await s3.send(new ListObjectsV2Command({ Bucket: LB, EncodingType: "url", Delimiter: "/" }));
    expect(top.CommonPrefixes?.map((p) => decode(p.Prefix!))).toEqual(["a/", "b/", "e f/"]);
  });

  test("ListObjects v1 with marker and max-keys", async () => {
    const r = await s3.send(new ListObjectsCommand({ Bucket: LB, Marker: "a/b/4" }));
    expect(r.Contents?.map((c) => c.Key)).toEqual(sorted.slice(sorted.indexOf("a/b/4") + 1));
    expect(r.Marker).toBe("a/b/4");
    // Paging by hand: the marker is the last key (or NextMarker when given).
    const seen: string[] = [];
    let marker: string | undefined;
    for (let i = 0; i < 20; i++) {
      const page = await s3.send(new ListObjectsCommand({ Bucket: LB, MaxKeys: 3, Marker: marker }));
      const ks = (page.Contents ?? []).map((c) => c.Key!);
      seen.push(...ks);
      if (!page.IsTruncated) break;
      marker = page.NextMarker ?? ks[ks.length - 1];
    }
    expect(seen).toEqual(sorted);
    const withDelim = await s3.send(new ListObjectsCommand({ Bucket: LB, Delimiter: "/", MaxKeys: 2 }));
    expect(withDelim.IsTruncated).toBe(true);
    expect(withDelim.NextMarker).toBeTruthy();
  });

  test("an empty prefix match and an empty bucket list nothing", async () => {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: LB, Prefix: "zzz" }));
    expect(r.Contents ?? []).toEqual([]);
    expect(r.KeyCount).toBe(0);
    expect(r.IsTruncated).toBe(false);
  });
});

describe("multipart", () => {
  const part = (n: number, size: number) => randomBytes(size);

  test("create, upload (with re-upload), list parts/uploads, complete", async () => {
    const key = "mp/raw é.bin";
    const create = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ContentType: "application/x-mp", Metadata: { m: "p" } }));
    const uploadId = create.UploadId!;
    expect(uploadId).toBeTruthy();
    expect(create.Key).toBe(key);

    const p1 = part(1, 5 * MiB);
    const p2old = part(2, 5 * MiB);
    const p2 = part(2, 5 * MiB + 17);
    const p3 = part(3, 1234);
    const up = async (n: number, body: Buffer) =>
      (await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, PartNumber: n, Body: body }))).ETag!;
    const e1 = await up(1, p1);
    const e2old = await up(2, p2old);
    const e3 = await up(3, p3);
    const e2 = await up(2, p2); // replaces the first part 2
    expect(e1).toBe(`"${md5Hex(p1)}"`);
    expect(e2old).toBe(`"${md5Hex(p2old)}"`);
    expect(e2).toBe(`"${md5Hex(p2)}"`);

    const parts = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId }));
    expect(parts.Parts?.map((p) => [p.PartNumber, p.ETag, p.Size])).toEqual([
      [1, e1, p1.length],
      [2, e2, p2.length],
      [3, e3, p3.length],
    ]);
    const paged = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, MaxParts: 2 }));
    expect(paged.Parts?.map((p) => p.PartNumber)).toEqual([1, 2]);
    expect(paged.IsTruncated).toBe(true);
    const rest = await s3.send(
      new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId: uploadId, PartNumberMarker: String(paged.NextPartNumberMarker) }),
    );
    expect(rest.Parts?.map((p) => p.PartNumber)).toEqual([3]);

    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    expect(uploads.Uploads?.some((u) => u.Key === key && u.UploadId === uploadId)).toBe(true);
    // Not visible as an object before completion.
    expect((await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })))).status).toBe(404);

    // Wrong ETag → InvalidPart; out of order → InvalidPartOrder.
    const wrong = await failure(
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1 }, { PartNumber: 2, ETag: e2old }, { PartNumber: 3, ETag: e3 }] },
        }),
      ),
    );
    expect(wrong).toMatchObject({ code: "InvalidPart", status: 400 });
    const order = await failure(
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: [{ PartNumber: 2, ETag: e2 }, { PartNumber: 1, ETag: e1 }, { PartNumber: 3, ETag: e3 }] },
        }),
      ),
    );
    expect(order).toMatchObject({ code: "InvalidPartOrder", status: 400 });

    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: BUCKET,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: e1 }, { PartNumber: 2, ETag: e2 }, { PartNumber: 3, ETag: e3 }] },
      }),
    );
    const md5s = Buffer.concat([p1, p2, p3].map((p) => createHash("md5").update(p).digest()));
    const expectedEtag = `"${md5Hex(md5s)}-3"`;
    expect(done.ETag).toBe(expectedEtag);
    expect(done.ETag).toMatch(/-3"$/);
    expect(done.Key).toBe(key);
    expect(done.Bucket).toBe(BUCKET);

    const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(head.ContentLength).toBe(p1.length + p2.length + p3.length);
    expect(head.ETag).toBe(expectedEtag);
    expect(head.ContentType).toBe("application/x-mp");
    expect(head.Metadata).toEqual({ m: "p" });
    const get = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    const whole = createHash("sha256").update(p1).update(p2).update(p3).digest("hex");
    expect(await hashStream(get.Body as AsyncIterable<Uint8Array>)).toEqual({ size: p1.length + p2.length + p3.length, sha256: whole });
    // A range that straddles parts 1 and 2.
    const straddle = await getBytes(BUCKET, key, { Range: `bytes=${5 * MiB - 3}-${5 * MiB + 2}` });
    expect(straddle.equals(Buffer.concat([p1.subarray(5 * MiB - 3), p2.subarray(0, 3)]))).toBe(true);
    // partNumber=2 on GET.
    const gotPart = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, PartNumber: 2 }));
    expect(gotPart.ContentLength).toBe(p2.length);
    expect(gotPart.PartsCount).toBe(3);
    expect((await hashStream(gotPart.Body as AsyncIterable<Uint8Array>)).sha256).toBe(sha256Hex(p2));

    const after = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    expect(after.Uploads?.some((u) => u.UploadId === uploadId) ?? false).toBe(false);
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  });

  test("a non-last part below 5 MiB → EntityTooSmall", async () => {
    const key = "mp/small";
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const a = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: Buffer.from("tiny") }));
    const b = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 2, Body: Buffer.from("tiny too") }));
    const e = await failure(
      s3.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: [{ PartNumber: 1, ETag: a.ETag }, { PartNumber: 2, ETag: b.ETag }] },
        }),
      ),
    );
    expect(e).toMatchObject({ code: "EntityTooSmall", status: 400 });
    await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId }));
  });

  test("abort → NoSuchUpload afterwards", async () => {
    const key = "mp/aborted";
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    const p = await s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 1, Body: Buffer.from("data") }));
    const ab = await s3.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId }));
    expect(ab.$metadata.httpStatusCode).toBe(204);
    const lp = await failure(s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId })));
    expect(lp).toMatchObject({ code: "NoSuchUpload", status: 404 });
    const upl = await failure(s3.send(new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: 2, Body: Buffer.from("x") })));
    expect(upl).toMatchObject({ code: "NoSuchUpload", status: 404 });
    const comp = await failure(
      s3.send(
        new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p.ETag }] } }),
      ),
    );
    expect(comp).toMatchObject({ code: "NoSuchUpload", status: 404 });
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: BUCKET }));
    expect(uploads.Uploads?.some((u) => u.UploadId === UploadId) ?? false).toBe(false);
    expect((await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })))).status).toBe(404);
  });

  test("an unknown upload id → NoSuchUpload", async () => {
    const e = await failure(s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: "mp/none", UploadId: "does-not-exist" })));
    expect(e).toMatchObject({ code: "NoSuchUpload", status: 404 });
  });

  test("multipart with SHA256 checksums gives a composite checksum", async () => {
    const key = "mp/checksummed";
    const create = await s3.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, ChecksumAlgorithm: "SHA256" }));
    expect(create.ChecksumAlgorithm).toBe("SHA256");
    const parts = [randomBytes(5 * MiB), randomBytes(999)];
    const uploaded = [];
    for (const [i, body] of parts.entries()) {
      const r = await s3.send(
        new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId: create.UploadId, PartNumber: i + 1, Body: body, ChecksumAlgorithm: "SHA256" }),
      );
      expect(r.ChecksumSHA256).toBe(createHash("sha256").update(body).digest("base64"));
      uploaded.push({ PartNumber: i + 1, ETag: r.ETag, ChecksumSHA256: r.ChecksumSHA256 });
    }
    const listed = await s3.send(new ListPartsCommand({ Bucket: BUCKET, Key: key, UploadId: create.UploadId }));
    expect(listed.Parts?.map((p) => p.ChecksumSHA256)).toEqual(uploaded.map((u) => u.ChecksumSHA256));
    const done = await s3.send(
      new CompleteMultipartUploadCommand({ Bucket: BUCKET, Key: key, UploadId: create.UploadId, MultipartUpload: { Parts: uploaded } }),
    );
    const composite = createHash("sha256")
      .update(Buffer.concat(uploaded.map((u) => Buffer.from(u.ChecksumSHA256!, "base64"))))
      .digest("base64");
    expect(done.ChecksumSHA256).toBe(`${composite}-2`);
    const get = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, ChecksumMode: "ENABLED" }));
    expect(get.ChecksumSHA256).toBe(`${composite}-2`);
    expect((await hashStream(get.Body as AsyncIterable<Uint8Array>)).size).toBe(5 * MiB + 999);
  });

  test("lib-storage Upload of ~20 MiB in 5 MiB parts", async () => {
    const file = writeRandomFile(join(tmp, "lib-storage.bin"), 20 * MiB + 333);
    try {
      const upload = new Upload({
        client: s3,
        params: { Bucket: BUCKET, Key: "mp/lib-storage.bin", Body: createReadStream(file.path), ContentType: "application/x-lib" },
        partSize: 5 * MiB,
        queueSize: 4,
        leavePartsOnError: false,
      });
      const r = await upload.done();
      expect(r.ETag).toMatch(/-5"$/);
      const head = await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "mp/lib-storage.bin" }));
      expect(head.ContentLength).toBe(file.size);
      expect(head.ContentType).toBe("application/x-lib");
      const get = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "mp/lib-storage.bin" }));
      expect(await hashStream(get.Body as AsyncIterable<Uint8Array>)).toEqual({ size: file.size, sha256: file.sha256 });
      expect(await hashFile(file.path)).toEqual({ size: file.size, sha256: file.sha256 });
      await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: "mp/lib-storage.bin" }));
    } finally {
      rmSync(file.path, { force: true });
    }
  });

  test("lib-storage Upload of a small body uses a single PUT", async () => {
    const r = await new Upload({ client: s3, params: { Bucket: BUCKET, Key: "mp/lib-small", Body: Buffer.from("small") } }).done();
    expect(r.ETag).toBe(`"${md5Hex("small")}"`);
    expect(await getText("mp/lib-small")).toBe("small");
  });
});

describe("presigned URLs", () => {
  test("presigned GET works with fetch; tampering fails", async () => {
    await putString("presign/get é.txt", "presigned content");
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: "presign/get é.txt" }), { expiresIn: 300 });
    const r = await fetch(url);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe("presigned content");
    const tampered = url.replace("presign/get", "presign/GET");
    const bad = await fetch(tampered);
    expect(bad.status).toBe(403);
    expect(await bad.text()).toContain("SignatureDoesNotMatch");
  });

  test("presigned GET with response-content-type override", async () => {
    await putString("presign/override", "x");
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: "presign/override", ResponseContentType: "image/png" }), {
      expiresIn: 60,
    });
    const r = await fetch(url);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("image/png");
  });

  test("presigned PUT works with fetch", async () => {
    const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket: BUCKET, Key: "presign/put.bin" }), { expiresIn: 300 });
    const body = randomBytes(70 * KiB);
    const r = await fetch(url, { method: "PUT", body });
    if (r.status !== 200) throw new Error(`presigned PUT: ${r.status} ${await r.text()}\nurl: ${url}`);
    expect(r.headers.get("etag")).toBe(`"${md5Hex(body)}"`);
    expect((await getBytes(BUCKET, "presign/put.bin")).equals(body)).toBe(true);
  });

  test("an expired presigned URL is refused", async () => {
    await putString("presign/expired", "x");
    const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: "presign/expired" }), {
      expiresIn: 1,
      signingDate: new Date(Date.now() - 60_000),
    });
    const r = await fetch(url);
    expect(r.status).toBe(403);
    expect(await r.text()).toContain("AccessDenied");
  });
});

describe("robustness", () => {
  test("concurrent overwrites of one key leave exactly one whole version", async () => {
    const bodies = Array.from({ length: 6 }, () => randomBytes(3 * MiB + 11));
    await Promise.all(bodies.map((Body) => s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "race/same", Body }))));
    const get = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: "race/same" }));
    const got = await hashStream(get.Body as AsyncIterable<Uint8Array>);
    const winner = bodies.findIndex((b) => sha256Hex(b) === got.sha256);
    expect(winner).toBeGreaterThanOrEqual(0);
    expect(get.ETag).toBe(`"${md5Hex(bodies[winner]!)}"`);
  });

  test("a client that disconnects mid-PUT leaves nothing visible and no internal error", async () => {
    const logStart = server.logs().length;
    const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket: BUCKET, Key: "aborted/put" }), { expiresIn: 60 });
    const u = new URL(url);
    await new Promise<void>((resolve) => {
      const req = http.request({
        host: u.hostname,
        port: u.port,
        path: u.pathname + u.search,
        method: "PUT",
        headers: { "content-length": String(10 * MiB) },
      });
      req.on("error", () => resolve());
      req.write(randomBytes(3 * MiB));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
    await Bun.sleep(300);
    expect((await failure(s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "aborted/put" })))).status).toBe(404);
    await putString("aborted/after", "still serving");
    expect(await getText("aborted/after")).toBe("still serving");
    const logged = server.logs().slice(logStart);
    // A client going away is not a server fault: no ERROR line, no InternalError.
    expect(logged).not.toContain("internal error");
    expect(logged).not.toContain("InternalError");
  });

  test("a client that abandons large GETs does not disturb later reads", async () => {
    const file = writeRandomFile(join(tmp, "abandon.bin"), 12 * MiB);
    try {
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "aborted/get", Body: createReadStream(file.path), ContentLength: file.size }));
      const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: BUCKET, Key: "aborted/get" }), { expiresIn: 60 });
      for (let i = 0; i < 5; i++) {
        const ctrl = new AbortController();
        const r = await fetch(url, { signal: ctrl.signal });
        await r.body!.getReader().read();
        ctrl.abort();
      }
      const r = await fetch(url);
      expect(r.headers.get("content-length")).toBe(String(file.size));
      expect(await hashStream(r.body!)).toEqual({ size: file.size, sha256: file.sha256 });
    } finally {
      rmSync(file.path, { force: true });
    }
  });
});

describe("authentication", () => {
  test("wrong secret → SignatureDoesNotMatch (403)", async () => {
    const bad = sdkClient(server, { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey + "x" });
    try {
      const e = await failure(bad.send(new ListObjectsV2Command({ Bucket: BUCKET })));
      expect(e).toMatchObject({ code: "SignatureDoesNotMatch", status: 403 });
      const put = await failure(bad.send(new PutObjectCommand({ Bucket: BUCKET, Key: "auth/x", Body: "x" })));
      expect(put).toMatchObject({ code: "SignatureDoesNotMatch", status: 403 });
      const head = await failure(bad.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "auth/x" })));
      expect(head.status).toBe(403);
    } finally {
      bad.destroy();
    }
  });

  test("unknown access key → InvalidAccessKeyId (403)", async () => {
    const bad = sdkClient(server, { accessKeyId: "GK0000000000000000000000", secretAccessKey: "0".repeat(64) });
    try {
      const e = await failure(bad.send(new ListBucketsCommand({})));
      expect(e).toMatchObject({ code: "InvalidAccessKeyId", status: 403 });
    } finally {
      bad.destroy();
    }
  });

  test("anonymous requests are refused", async () => {
    const r = await fetch(`${server.endpoint}/${BUCKET}?list-type=2`);
    expect(r.status).toBe(403);
    expect(await r.text()).toContain("AccessDenied");
  });

  test("a key without permission on the bucket → AccessDenied", async () => {
    const k = await server.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "no-perms" });
    const other = sdkClient(server, { accessKeyId: k.accessKeyId, secretAccessKey: k.secretAccessKey });
    try {
      const e = await failure(other.send(new GetObjectCommand({ Bucket: BUCKET, Key: "meta/obj.txt" })));
      expect(e).toMatchObject({ code: "AccessDenied", status: 403 });
      const c = await failure(other.send(new CreateBucketCommand({ Bucket: "no-perms-bucket" })));
      expect(c).toMatchObject({ code: "AccessDenied", status: 403 });
    } finally {
      other.destroy();
    }
  });
});

// Last: everything above ran against one server; its log must show no leak warnings
// (e.g. listeners piling up on a response while a large GET waits for "drain").
test("the server logged no listener leaks and no internal errors", () => {
  const logs = server.logs();
  expect(logs).not.toContain("MaxListenersExceededWarning");
  const internal = logs.split("\n").filter((l) => l.includes("internal error") && !l.includes("Error: aborted"));
  expect(internal).toEqual([]);
});
