// End to end with the minio JS client against a real server process.
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import { createReadStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as Minio from "minio";
import { startServer, type TestServer } from "../helpers/server";
import { KiB, MiB, hashFile, hashStream, md5Hex, writeRandomFile } from "../helpers/clients";

// Real servers and real clients: bun's 5 s default is too short, and a timed-out test
// makes bun kill every child process, the server included.
setDefaultTimeout(60_000);

let server: TestServer;
let mc: Minio.Client;
let tmp: string;
const BUCKET = "minio-e2e";

function collect<T>(stream: NodeJS.ReadableStream): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const items: T[] = [];
    stream.on("data", (x: T) => items.push(x));
    stream.on("error", reject);
    stream.on("end", () => resolve(items));
  });
}

async function errorOf(p: Promise<unknown>): Promise<{ code?: string; statusCode?: number }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: string; statusCode?: number };
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  server = await startServer();
  const url = new URL(server.endpoint);
  mc = new Minio.Client({
    endPoint: url.hostname,
    port: Number(url.port),
    useSSL: false,
    accessKey: server.accessKeyId,
    secretKey: server.secretAccessKey,
    region: server.region,
    pathStyle: true,
    partSize: 5 * MiB,
  });
  tmp = mkdtempSync(join(tmpdir(), "bunker-minio-"));
});

afterAll(async () => {
  await server?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("makeBucket, bucketExists, listBuckets", async () => {
  await mc.makeBucket(BUCKET, server.region);
  expect(await mc.bucketExists(BUCKET)).toBe(true);
  expect(await mc.bucketExists("minio-does-not-exist")).toBe(false);
  const buckets = await mc.listBuckets();
  expect(buckets.map((b) => b.name)).toContain(BUCKET);
});

test("putObject small (string and Buffer) with metadata, getObject, statObject", async () => {
  const r = await mc.putObject(BUCKET, "small/hello.txt", "hello minio", undefined, {
    "Content-Type": "text/plain",
    "X-Amz-Meta-Owner": "tester",
  });
  expect(r.etag).toBe(md5Hex("hello minio"));
  const stat = await mc.statObject(BUCKET, "small/hello.txt");
  expect(stat.size).toBe(11);
  expect(stat.etag).toBe(md5Hex("hello minio"));
  expect(stat.metaData["content-type"]).toBe("text/plain");
  expect(stat.metaData["owner"]).toBe("tester");
  expect(stat.lastModified).toBeInstanceOf(Date);
  const body = await mc.getObject(BUCKET, "small/hello.txt");
  expect(Buffer.concat(await collect<Buffer>(body)).toString()).toBe("hello minio");

  const buf = Buffer.alloc(2 * KiB, 7);
  await mc.putObject(BUCKET, "small/é ü&+%.bin", buf);
  const got = Buffer.concat(await collect<Buffer>(await mc.getObject(BUCKET, "small/é ü&+%.bin")));
  expect(got.equals(buf)).toBe(true);

  await mc.putObject(BUCKET, "small/empty", Buffer.alloc(0));
  expect((await mc.statObject(BUCKET, "small/empty")).size).toBe(0);
});

test("getPartialObject", async () => {
  await mc.putObject(BUCKET, "small/range", "0123456789abcdef");
  const part = Buffer.concat(await collect<Buffer>(await mc.getPartialObject(BUCKET, "small/range", 4, 6)));
  expect(part.toString()).toBe("456789");
});

test("putObject of a ~12 MiB stream goes multipart; getObject and fGetObject read it back", async () => {
  const file = writeRandomFile(join(tmp, "big.bin"), 12 * MiB + 4321);
  try {
    const r = await mc.putObject(BUCKET, "big/stream.bin", createReadStream(file.path), file.size, {
      "Content-Type": "application/x-big",
    });
    expect(r.etag).toMatch(/-3$/);
    const stat = await mc.statObject(BUCKET, "big/stream.bin");
    expect(stat.size).toBe(file.size);
    expect(stat.etag).toMatch(/-3$/);
    expect(stat.metaData["content-type"]).toBe("application/x-big");
    const got = await hashStream((await mc.getObject(BUCKET, "big/stream.bin")) as unknown as AsyncIterable<Uint8Array>);
    expect(got).toEqual({ size: file.size, sha256: file.sha256 });
    const out = join(tmp, "big.out");
    await mc.fGetObject(BUCKET, "big/stream.bin", out);
    expect(await hashFile(out)).toEqual({ size: file.size, sha256: file.sha256 });
    rmSync(out, { force: true });
  } finally {
    rmSync(file.path, { force: true });
  }
});

test("fPutObject of a 5 MiB file", async () => {
  const file = writeRandomFile(join(tmp, "five.bin"), 5 * MiB);
  try {
    const r = await mc.fPutObject(BUCKET, "big/five.bin", file.path);
    expect(r.etag).toBe(file.md5);
    const got = await hashStream((await mc.getObject(BUCKET, "big/five.bin")) as unknown as AsyncIterable<Uint8Array>);
    expect(got.sha256).toBe(file.sha256);
  } finally {
    rmSync(file.path, { force: true });
  }
});

test("listObjectsV2 stream: recursive, by prefix, with delimiter, startAfter", async () => {
  const keys = ["list/a/1", "list/a/2", "list/b/3", "list/c", "list/d é"];
  for (const k of keys) await mc.putObject(BUCKET, k, k);
  const all = await collect<Minio.BucketItem>(mc.listObjectsV2(BUCKET, "list/", true));
  expect(all.map((o) => o.name)).toEqual(keys);
  expect(all.map((o) => o.size)).toEqual(keys.map((k) => Buffer.byteLength(k)));
  const top = await collect<Minio.BucketItem>(mc.listObjectsV2(BUCKET, "list/", false));
  expect(top.filter((o) => o.prefix).map((o) => o.prefix)).toEqual(["list/a/", "list/b/"]);
  expect(top.filter((o) => o.name).map((o) => o.name)).toEqual(["list/c", "list/d é"]);
  const after = await collect<Minio.BucketItem>(mc.listObjectsV2(BUCKET, "list/", true, "list/b/3"));
  expect(after.map((o) => o.name)).toEqual(["list/c", "list/d é"]);
  const v1 = await collect<Minio.BucketItem>(mc.listObjects(BUCKET, "list/a/", true));
  expect(v1.map((o) => o.name)).toEqual(["list/a/1", "list/a/2"]);
});

test("listObjectsV2 over more than one page", async () => {
  const n = 1100; // more than the 1000 keys of one page
  const names = Array.from({ length: n }, (_, i) => `many/${String(i).padStart(5, "0")}`);
  for (let i = 0; i < n; i += 50) await Promise.all(names.slice(i, i + 50).map((k) => mc.putObject(BUCKET, k, "x")));
  const listed = await collect<Minio.BucketItem>(mc.listObjectsV2(BUCKET, "many/", true));
  expect(listed.map((o) => o.name)).toEqual(names);
  const res = await mc.removeObjects(BUCKET, names);
  expect(res.filter((r) => r?.Error)).toEqual([]);
  expect(await collect<Minio.BucketItem>(mc.listObjectsV2(BUCKET, "many/", true))).toEqual([]);
});

test("copyObject", async () => {
  const conds = new Minio.CopyConditions();
  await mc.copyObject(BUCKET, "copy/dst", `/${BUCKET}/small/hello.txt`, conds);
  const body = Buffer.concat(await collect<Buffer>(await mc.getObject(BUCKET, "copy/dst")));
  expect(body.toString()).toBe("hello minio");
});

test("presignedGetObject works with fetch", async () => {
  const url = await mc.presignedGetObject(BUCKET, "small/é ü&+%.bin", 120);
  const r = await fetch(url);
  expect(r.status).toBe(200);
  const body = Buffer.from(await r.arrayBuffer());
  expect(body.equals(Buffer.alloc(2 * KiB, 7))).toBe(true);
  const put = await mc.presignedPutObject(BUCKET, "small/presigned-put", 120);
  const pr = await fetch(put, { method: "PUT", body: "via presigned put" });
  expect(pr.status).toBe(200);
  const back = Buffer.concat(await collect<Buffer>(await mc.getObject(BUCKET, "small/presigned-put")));
  expect(back.toString()).toBe("via presigned put");
});

test("removeObject, removeObjects; errors for missing objects and non-empty buckets", async () => {
  await mc.removeObject(BUCKET, "small/hello.txt");
  const e = await errorOf(mc.statObject(BUCKET, "small/hello.txt"));
  expect(e.code).toBe("NotFound");
  const g = await errorOf(mc.getObject(BUCKET, "small/hello.txt"));
  expect(g.code).toBe("NoSuchKey");

  const nonEmpty = await errorOf(mc.removeBucket(BUCKET));
  expect(nonEmpty.code).toBe("BucketNotEmpty");

  const rest = (await collect<Minio.BucketItem>(mc.listObjectsV2(BUCKET, "", true))).map((o) => o.name!);
  expect(rest.length).toBeGreaterThan(0);
  const res = await mc.removeObjects(BUCKET, rest);
  expect(res.filter((r) => r?.Error)).toEqual([]);
  expect(await collect<Minio.BucketItem>(mc.listObjectsV2(BUCKET, "", true))).toEqual([]);
  await mc.removeBucket(BUCKET);
  expect(await mc.bucketExists(BUCKET)).toBe(false);
});

test("listIncompleteUploads and abort through removeIncompleteUpload", async () => {
  await mc.makeBucket("minio-incomplete", server.region);
  const s3c = await import("@aws-sdk/client-s3");
  const { sdkClient } = await import("../helpers/clients");
  const sdk = sdkClient(server);
  try {
    const up = await sdk.send(new s3c.CreateMultipartUploadCommand({ Bucket: "minio-incomplete", Key: "pending" }));
    const pending = await collect<{ key: string; uploadId: string }>(mc.listIncompleteUploads("minio-incomplete", "", true));
    expect(pending.map((u) => [u.key, u.uploadId])).toEqual([["pending", up.UploadId!]]);
    await mc.removeIncompleteUpload("minio-incomplete", "pending");
    expect(await collect(mc.listIncompleteUploads("minio-incomplete", "", true))).toEqual([]);
    await mc.removeBucket("minio-incomplete");
  } finally {
    sdk.destroy();
  }
});
