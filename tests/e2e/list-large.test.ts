// Listing a bucket of 100 000 keys through the real server: every key exactly once and in
// order with ListObjectsV2 paging, common prefixes with a delimiter, and v1 markers.
// The keys are seeded straight into the node's sqlite file while it is stopped (loading
// 100 000 objects over HTTP would dominate the suite's run time).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { CreateBucketCommand, ListObjectsCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { openDatabase } from "../../src/db/sqlite";
import { encodeEntry } from "../../src/db/entry-codec";
import { TableRows } from "../../src/db/table-rows";
import { syncBucketOf } from "../../src/table/local-store";
import { partitionOfKey } from "../../src/table/partition";
import { startServer, type TestServer } from "../helpers/server";
import { sdkClient } from "../helpers/clients";
import type { ObjectEntry } from "../../src/model/object";

const DIRS = 100;
const PER_DIR = 1000;
let server: TestServer;
let s3: S3Client;

function keyFor(d: number, i: number): string {
  return `dir${String(d).padStart(3, "0")}/obj-${String(i).padStart(6, "0")}.dat`;
}

beforeAll(async () => {
  server = await startServer();
  s3 = sdkClient(server);
  await s3.send(new CreateBucketCommand({ Bucket: "big" }));
  await s3.send(new PutObjectCommand({ Bucket: "big", Key: "zzz-real-object", Body: "hello" }));
  const info = await server.admin<{ id: string }>("GET", "/v2/GetBucketInfo?globalAlias=big");
  await server.kill();

  const db = openDatabase(join(server.dir, "meta", "db.sqlite"), { fsync: false });
  const rows = TableRows.of(db, "object");
  const now = Date.now();
  db.transaction(() => {
    for (let d = 0; d < DIRS; d++) {
      for (let i = 0; i < PER_DIR; i++) {
        const key = keyFor(d, i);
        const entry: ObjectEntry = {
          bucketId: info.id,
          key,
          versions: [
            {
              uuid: (d * PER_DIR + i).toString(16).padStart(64, "0"),
              timestamp: now,
              state: { kind: "complete", data: { kind: "inline", meta: { size: 1, etag: "0cc175b9c0f1b6a831c399e269772661", headers: [] }, base64: "YQ==" } },
            },
          ],
        };
        rows.put(info.id, key, syncBucketOf(partitionOfKey(info.id), info.id, key), encodeEntry(entry), false, undefined);
      }
    }
  })();
  db.close();
  await server.restart();
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

test("ListObjectsV2 pages through 100 000 keys in order, each exactly once", async () => {
  const seen: string[] = [];
  const pageMs: number[] = [];
  let token: string | undefined;
  do {
    const t0 = performance.now();
    const r = await s3.send(new ListObjectsV2Command({ Bucket: "big", ContinuationToken: token }));
    pageMs.push(performance.now() - t0);
    for (const c of r.Contents ?? []) seen.push(c.Key!);
    expect(r.KeyCount).toBe((r.Contents ?? []).length);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  expect(seen.length).toBe(DIRS * PER_DIR + 1);
  expect(seen[0]).toBe(keyFor(0, 0));
  expect(seen[seen.length - 1]).toBe("zzz-real-object");
  for (let i = 1; i < seen.length; i++) expect(seen[i - 1]! < seen[i]!).toBe(true);
  const first = pageMs.slice(1, 11).reduce((a, b) => a + b, 0) / 10;
  const last = pageMs.slice(-10).reduce((a, b) => a + b, 0) / 10;
  console.log(`list pages: ${pageMs.length}, first pages ${first.toFixed(1)} ms, last pages ${last.toFixed(1)} ms`);
}, 120_000);

test("delimiter folds 100 000 keys into 100 common prefixes, paged", async () => {
  const prefixes: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const r = await s3.send(new ListObjectsV2Command({ Bucket: "big", Delimiter: "/", MaxKeys: 30, ContinuationToken: token }));
    pages++;
    prefixes.push(...(r.CommonPrefixes ?? []).map((p) => p.Prefix!));
    if (!r.IsTruncated) expect((r.Contents ?? []).map((c) => c.Key)).toEqual(["zzz-real-object"]);
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  expect(prefixes.length).toBe(DIRS);
  expect(new Set(prefixes).size).toBe(DIRS);
  expect(prefixes[0]).toBe("dir000/");
  expect(pages).toBe(4);
});

test("prefix + start-after and v1 markers land in the middle of the keyspace", async () => {
  const r = await s3.send(new ListObjectsV2Command({ Bucket: "big", Prefix: "dir050/", StartAfter: keyFor(50, 994), MaxKeys: 10 }));
  expect((r.Contents ?? []).map((c) => c.Key)).toEqual([995, 996, 997, 998, 999].map((i) => keyFor(50, i)));
  expect(r.IsTruncated).toBe(false);

  const v1 = await s3.send(new ListObjectsCommand({ Bucket: "big", Marker: keyFor(99, 998) }));
  expect((v1.Contents ?? []).map((c) => c.Key)).toEqual([keyFor(99, 999), "zzz-real-object"]);
  expect(v1.IsTruncated).toBe(false);

  const folded = await s3.send(new ListObjectsCommand({ Bucket: "big", Delimiter: "/", Marker: "dir097/" }));
  expect((folded.CommonPrefixes ?? []).map((p) => p.Prefix)).toEqual(["dir098/", "dir099/"]);
});
