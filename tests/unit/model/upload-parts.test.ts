// Part rows of closed multipart uploads become tombstones that table GC collects. A real Model
// over a temp sqlite file (single-node layout); Complete, Abort and ListParts are the real S3
// handlers, driven with hand-made requests (part rows are written directly, as UploadPart would).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { decodeEntry } from "../../../src/db/entry-codec.ts";
import { TableRows } from "../../../src/db/table-rows.ts";
import { HybridClock } from "../../../src/util/hlc.ts";
import { TableGc } from "../../../src/table/gc.ts";
import { Model } from "../../../src/model/model.ts";
import type { BucketEntry } from "../../../src/model/bucket.ts";
import type { KeyEntry } from "../../../src/model/key.ts";
import type { ObjectEntry } from "../../../src/model/object.ts";
import { CLOSED_MARKER_PART, isLivePart, partSortKey, uploadPartSchema, uploadSchema, type UploadEntry, type UploadOutcome, type UploadPartEntry } from "../../../src/model/upload.ts";
import { abortMultipartUpload, completeMultipartUpload, createMultipartUpload, listParts, MIN_PART_SIZE } from "../../../src/api/s3/multipart.ts";
import type { ObjectRequest, S3Services } from "../../../src/api/s3/context.ts";
import type { AuthContext } from "../../../src/api/s3/sigv4.ts";

const BUCKET = "bkt";

let dir: string;
let db: Database;
let model: Model;
let gc: TableGc;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-mpu-parts-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
  const placement = new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent");
  const clock = new HybridClock();
  // GC delay 0: a tombstone is due as soon as it is stored.
  model = new Model(db, placement, undefined, clock, { tableGcDelayMs: 0 });
  gc = new TableGc(model.localStores(), placement, db, model.committer, undefined, { now: () => clock.now() });
});
afterEach(async () => {
  await gc.stop();
  await model.stop();
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const H = (c: string) => c.repeat(64);

function req(key: string, query: Record<string, string>, body = ""): ObjectRequest {
  return {
    request: new Request(`http://localhost/${BUCKET}/${key}`, { method: "POST", body: body === "" ? undefined : body }),
    method: "POST",
    query: new URLSearchParams(query),
    headers: new Headers({ "content-length": String(Buffer.byteLength(body)) }),
    requestId: "test",
    bucketName: BUCKET,
    key,
    bucket: { id: BUCKET } as BucketEntry,
    auth: { payload: { kind: "unsigned" } } as AuthContext,
    apiKey: { id: "GK1", name: { ts: 1, v: "k" } } as KeyEntry,
    services: { model, settings: { region: "garage", blockSize: 1 << 20 } } as S3Services,
  };
}

/** Starts an upload through the real handler; returns its id. */
async function create(key: string): Promise<string> {
  const res = await createMultipartUpload(req(key, { uploads: "" }));
  return /<UploadId>([0-9a-f]+)<\/UploadId>/.exec(await res.text())![1]!;
}

/** What UploadPart stores for a part: a version with one block, and the part row. */
async function putPart(uploadId: string, part: number, size: number, extra: Partial<UploadPartEntry> = {}): Promise<UploadPartEntry> {
  const version = `pv-${uploadId.slice(0, 6)}-${part}-${extra.timestamp ?? 0}`;
  const hash = H(String(part % 10));
  await model.versions.insert({ uuid: version, deleted: false, backlink: { kind: "upload", uploadId, part } });
  await model.versionBlocks.insert({ uuid: version, part, offset: 0, hash, size });
  await model.blockRefs.insert({ hash, version, deleted: false });
  const entry: UploadPartEntry = { uploadId, part, timestamp: model.clock.now(), version, etag: `e${part}`.padEnd(32, "0"), size, deleted: false, ...extra };
  await model.uploadParts.insert(entry);
  return entry;
}

function completeBody(parts: UploadPartEntry[]): string {
  const xml = parts.map((p) => `<Part><PartNumber>${p.part}</PartNumber><ETag>"${p.etag}"</ETag></Part>`).join("");
  return `<CompleteMultipartUpload>${xml}</CompleteMultipartUpload>`;
}

/** Every stored row of the upload's part partition, by part number (the marker is part 0). */
function rows(uploadId: string): Map<number, UploadPartEntry> {
  const all = TableRows.of(db, "mpu_part").entries(uploadId) as UploadPartEntry[];
  return new Map(all.map((p) => [p.part, p]));
}
/** The stored value as JSON text (its fields as stored, none added or dropped). */
const rawRow = (uploadId: string, part: number) => {
  const row = TableRows.of(db, "mpu_part").get(uploadId, partSortKey(part));
  return row && JSON.stringify(decodeEntry(row.v));
};
/** The stored rows of an upload, as bytes. */
const storedRows = (uploadId: string) => TableRows.of(db, "mpu_part").range(uploadId, "", null, -1);

async function listedParts(key: string, uploadId: string, query: Record<string, string> = {}): Promise<string> {
  return (await listParts(req(key, { uploadId, ...query }))).text();
}

describe("closing an upload tombstones its part rows", () => {
  test("Complete: every part row (chosen or not) becomes a tombstone, after the object was built from them", async () => {
    const u = await create("big");
    const p1 = await putPart(u, 1, MIN_PART_SIZE);
    const p2 = await putPart(u, 2, 7);
    await putPart(u, 3, 9); // uploaded, left out of the object
    const res = await completeMultipartUpload(req("big", { uploadId: u }, completeBody([p1, p2])));
    expect(res.status).toBe(200);

    // The object was built from the parts, which were still live when Complete read them.
    const obj = (await model.objects.get(BUCKET, "big")) as ObjectEntry;
    const state = obj.versions.find((v) => v.uuid === u)!.state;
    expect(state.kind === "complete" && state.data.kind === "blocks" && state.data.meta.parts).toEqual([MIN_PART_SIZE, 7]);
    expect(model.versionBlocks.local.range(u, { limit: 10 }).map((b) => b.size)).toEqual([MIN_PART_SIZE, 7]);

    await model.drainInsertQueue();
    const after = rows(u);
    expect([...after.keys()]).toEqual([CLOSED_MARKER_PART, 1, 2, 3]);
    for (const p of after.values()) expect(p.deleted).toBe(true);
    expect(after.get(1)).toEqual({ ...p1, deleted: true });
    // The final version keeps its own copies of the blocks.
    expect(model.versions.local.get(u, "")!.deleted).toBe(false);
    expect(model.versionBlocks.local.range(u, { limit: 10 })).toHaveLength(2);
  });

  test("Abort: its part rows become tombstones and their versions are released", async () => {
    const u = await create("gone");
    const p1 = await putPart(u, 1, 5);
    const p2 = await putPart(u, 2, 6);
    expect((await abortMultipartUpload(req("gone", { uploadId: u }))).status).toBe(204);
    await model.drainInsertQueue();
    const after = rows(u);
    expect(after.get(1)).toEqual({ ...p1, deleted: true });
    expect(after.get(2)).toEqual({ ...p2, deleted: true });
    expect(after.get(CLOSED_MARKER_PART)!.deleted).toBe(true);
    for (const p of [p1, p2]) expect(model.versions.local.get(p.version, "")!.deleted).toBe(true);
  });

  test("the closed header alone is enough (the closing node died before releasing anything)", async () => {
    const u = await create("k");
    const p1 = await putPart(u, 1, 5);
    const header = model.uploads.local.get(BUCKET, `k\u0000${u}`) as UploadEntry;
    // As a replica of the header would receive it: no finishUpload, no version tombstones.
    await model.uploads.insert({ ...header, deleted: true });
    await model.drainInsertQueue();
    expect(rows(u).get(1)).toEqual({ ...p1, deleted: true });
    expect(model.versions.local.get(p1.version, "")!.deleted).toBe(true);
  });

  test("the header's replicas need no part rows: the marker they queue reaches the parts' replicas", async () => {
    // Header (partition of the bucket id) and parts (partition of the upload id) are on
    // different nodes in a large enough cluster: here, this model and a second one.
    const partsDb = openDatabase(join(dir, "parts.sqlite"), { fsync: false });
    const partsNode = new Model(partsDb, new LayoutPlacement("node2", singleNodeLayout("node2"), "consistent"));
    try {
      const u = H("c");
      const header: UploadEntry = { bucketId: BUCKET, key: "k", uploadId: u, timestamp: 500, deleted: false, headers: [] };
      await model.uploads.insert(header);
      const p1: UploadPartEntry = { uploadId: u, part: 1, timestamp: 600, version: "pv-1", etag: "e", size: 1, deleted: false };
      await partsNode.uploadParts.insert(p1);

      await model.uploads.insert({ ...header, deleted: true });
      const queued = db.query(`SELECT tbl, v FROM insert_queue`).all() as { tbl: string; v: string }[];
      expect(queued.map((q) => q.tbl)).toEqual(["mpu_part"]);
      // What the queue's insert delivers to the parts' replica.
      await partsNode.uploadParts.insert(queued.map((q) => JSON.parse(q.v) as UploadPartEntry));
      await partsNode.drainInsertQueue();
      expect(partsNode.uploadParts.local.get(u, partSortKey(1))).toEqual({ ...p1, deleted: true });
      expect(partsNode.versions.local.get("pv-1", "")!.deleted).toBe(true);
    } finally {
      await partsNode.stop();
      partsDb.close();
    }
  });

  test("an open upload's parts are untouched", async () => {
    const open = await create("open");
    const o1 = await putPart(open, 1, 5);
    const o2 = await putPart(open, 2, 6);
    const closed = await create("open"); // same key, another upload
    await putPart(closed, 1, 5);
    const before = storedRows(open);
    await abortMultipartUpload(req("open", { uploadId: closed }));
    await model.drainInsertQueue();
    expect(rows(closed).get(1)!.deleted).toBe(true);
    expect(storedRows(open)).toEqual(before);
    expect([...rows(open).values()]).toEqual([o1, o2]);
    expect(await listedParts("open", open)).toContain("<PartNumber>2</PartNumber>");
  });

  test("a part stored after its upload closed (UploadPart racing the close) is tombstoned on arrival", async () => {
    const u = await create("late");
    await putPart(u, 1, 5);
    await abortMultipartUpload(req("late", { uploadId: u }));
    await model.drainInsertQueue();
    const late = await putPart(u, 2, 6);
    await model.drainInsertQueue();
    expect(rows(u).get(2)).toEqual({ ...late, deleted: true });
    expect(model.versions.local.get(late.version, "")!.deleted).toBe(true);
  });
});

describe("rows stored before the flag existed", () => {
  test("a part row without the field reads as live, is listed, and is tombstoned on close", async () => {
    const u = await create("old");
    const { deleted: _, ...old } = await putPart(u, 1, 5, { deleted: undefined });
    expect(rawRow(u, 1)).toBe(JSON.stringify(old)); // no "deleted" key stored
    expect(isLivePart(old)).toBe(true);
    expect(uploadPartSchema.isTombstone!(old)).toBe(false);
    expect(await listedParts("old", u)).toContain("<PartNumber>1</PartNumber>");
    // It can still be completed into an object.
    expect((await completeMultipartUpload(req("old", { uploadId: u }, completeBody([old])))).status).toBe(200);
    await model.drainInsertQueue();
    expect(rawRow(u, 1)).toBe(JSON.stringify({ ...old, deleted: true }));
  });
});

describe("readers skip tombstoned part rows", () => {
  test("ListParts pages over live rows only; Complete refuses a tombstoned part", async () => {
    const u = await create("mixed");
    const p1 = await putPart(u, 1, MIN_PART_SIZE);
    await putPart(u, 2, MIN_PART_SIZE);
    const p3 = await putPart(u, 3, 5);
    // Part 2's row is a tombstone (as a racing close leaves it; unreachable for an open upload otherwise).
    await model.uploadParts.insert({ ...rows(u).get(2)!, deleted: true });

    const all = await listedParts("mixed", u);
    expect([...all.matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => m[1])).toEqual(["1", "3"]);
    // A tombstone between two live parts neither ends a page early nor hides the next one.
    const first = await listedParts("mixed", u, { "max-parts": "1" });
    expect([...first.matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => m[1])).toEqual(["1"]);
    expect(first).toContain("<IsTruncated>true</IsTruncated>");
    expect(first).toContain("<NextPartNumberMarker>1</NextPartNumberMarker>");
    const page = await listedParts("mixed", u, { "max-parts": "1", "part-number-marker": "1" });
    expect([...page.matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => m[1])).toEqual(["3"]);
    expect(page).toContain("<IsTruncated>false</IsTruncated>");

    const p2 = rows(u).get(2)!;
    await expect(completeMultipartUpload(req("mixed", { uploadId: u }, completeBody([p1, p2, p3])))).rejects.toMatchObject({ code: "InvalidPart" });
  });

  test("ListParts of a closed upload answers NoSuchUpload", async () => {
    const u = await create("closed");
    await putPart(u, 1, 5);
    await abortMultipartUpload(req("closed", { uploadId: u }));
    await expect(listParts(req("closed", { uploadId: u }))).rejects.toMatchObject({ code: "NoSuchUpload" });
  });
});

describe("mpu_part merge with the deletion flag", () => {
  const base = { uploadId: "u1", part: 3, etag: "e", size: 1 };
  /** Uploads of one part number (fixed timestamp and version each), each live (old or new form) or deleted. */
  const uploads = [
    { ...base, timestamp: 100, version: "pv-a" },
    { ...base, timestamp: 100, version: "pv-b", checksum: "AAAA" },
    { ...base, timestamp: 200, version: "pv-c" },
  ];
  const variants: UploadPartEntry[] = uploads.flatMap((u) => [u, { ...u, deleted: false }, { ...u, deleted: true }]);
  const m = (a: UploadPartEntry, b: UploadPartEntry) => uploadPartSchema.merge(structuredClone(a), structuredClone(b));
  // Exact encodings: replicas must store byte-identical values (anti-entropy digests, GC's delete-if-equal).
  const enc = (p: UploadPartEntry) => JSON.stringify(p);

  test("is commutative, associative and idempotent, to the byte", () => {
    for (const a of variants) {
      expect(enc(m(a, a))).toBe(enc(a));
      for (const b of variants) {
        const ab = m(a, b);
        expect(enc(ab)).toBe(enc(m(b, a)));
        expect(enc(m(ab, a))).toBe(enc(ab));
        expect(enc(m(ab, ab))).toBe(enc(ab));
        for (const c of variants) expect(enc(m(m(a, b), c))).toBe(enc(m(a, m(b, c))));
      }
    }
  });

  test("the newest upload wins; once deleted, always deleted (whatever was uploaded since)", () => {
    const [a, , c] = uploads as [UploadPartEntry, UploadPartEntry, UploadPartEntry];
    expect(m(a, c)).toEqual(c);
    expect(m(c, { ...a, deleted: false })).toEqual({ ...c, deleted: false });
    // The close tombstoned the part it saw; a re-upload of that part number arrives later.
    expect(m({ ...a, deleted: true }, c)).toEqual({ ...c, deleted: true });
    expect(m(c, { ...a, deleted: true })).toEqual({ ...c, deleted: true });
    expect(m({ ...c, deleted: false }, { ...c, deleted: true }).deleted).toBe(true);
    expect(uploadPartSchema.isTombstone!({ ...a, deleted: true })).toBe(true);
    expect(uploadPartSchema.isTombstone!({ ...a, deleted: false })).toBe(false);
  });
});

describe("the outcome of a closed upload", () => {
  const open: UploadEntry = { bucketId: BUCKET, key: "k", uploadId: "u1", timestamp: 5, deleted: false, headers: [["content-type", "text/plain"]], checksumAlgorithm: "CRC32" };
  const outcomes: (UploadOutcome | undefined)[] = [
    undefined,
    { kind: "completed", etag: "aa-1" },
    { kind: "completed", etag: "aa-1", checksum: "Q1==-1" },
    { kind: "completed", etag: "bb-2" },
    { kind: "aborted" },
  ];
  // Open, closed before outcomes were recorded, and closed with each outcome (as closeUpload writes them).
  const variants: UploadEntry[] = [open, ...outcomes.map((outcome) => (outcome ? { ...open, deleted: true, outcome } : { ...open, deleted: true }))];
  const m = (a: UploadEntry, b: UploadEntry) => uploadSchema.merge(structuredClone(a), structuredClone(b));
  const enc = (u: UploadEntry) => JSON.stringify(u);

  test("merge is commutative, associative and idempotent, to the byte", () => {
    for (const a of variants) {
      expect(enc(m(a, a))).toBe(enc(a));
      for (const b of variants) {
        const ab = m(a, b);
        expect(enc(ab)).toBe(enc(m(b, a)));
        expect(enc(m(ab, a))).toBe(enc(ab));
        for (const c of variants) expect(enc(m(m(a, b), c))).toBe(enc(m(a, m(b, c))));
      }
    }
  });

  test("an abort absorbs a completion (as its object version does); a closed row keeps what it learns", () => {
    const completed = variants[2]!;
    const aborted = variants[5]!;
    expect(m(completed, aborted).outcome).toEqual({ kind: "aborted" });
    expect(m(open, completed)).toEqual(completed);
    expect(m({ ...open, deleted: true }, completed)).toEqual(completed);
    expect(m(variants[2]!, variants[4]!).outcome).toEqual({ kind: "completed", etag: "bb-2" });
  });

  test("Complete records its ETag, Abort records the abort; a retried Complete answers from it", async () => {
    const u = await create("rec");
    const p1 = await putPart(u, 1, 4);
    const first = await completeMultipartUpload(req("rec", { uploadId: u }, completeBody([p1])));
    const firstXml = await first.text();
    const row = (await model.uploads.get(BUCKET, `rec\u0000${u}`))!;
    const etag = /<ETag>&quot;([^&]+)&quot;<\/ETag>/.exec(firstXml)![1]!;
    expect(row.outcome).toEqual({ kind: "completed", etag });
    expect(row.deleted).toBe(true);

    const again = await completeMultipartUpload(req("rec", { uploadId: u }, completeBody([p1])));
    expect(again.status).toBe(200);
    expect(await again.text()).toBe(firstXml);
    const other = completeMultipartUpload(req("rec", { uploadId: u }, completeBody([{ ...p1, etag: "f".repeat(32) }])));
    expect(await other.catch((e: { code: string }) => e.code)).toBe("NoSuchUpload");

    const a = await create("abo");
    const q1 = await putPart(a, 1, 4);
    await abortMultipartUpload(req("abo", { uploadId: a }));
    expect((await model.uploads.get(BUCKET, `abo\u0000${a}`))!.outcome).toEqual({ kind: "aborted" });
    const afterAbort = completeMultipartUpload(req("abo", { uploadId: a }, completeBody([q1])));
    expect(await afterAbort.catch((e: { code: string }) => e.code)).toBe("NoSuchUpload");
  });
});

describe("table GC", () => {
  test("with delay 0, a pass removes the part rows of a completed upload and leaves an open one's", async () => {
    const done = await create("done");
    const d1 = await putPart(done, 1, MIN_PART_SIZE);
    const d2 = await putPart(done, 2, 3);
    const open = await create("open");
    const o1 = await putPart(open, 1, 4);
    await completeMultipartUpload(req("done", { uploadId: done }, completeBody([d1, d2])));
    await model.drainInsertQueue();
    expect(rows(done).size).toBe(3); // two tombstoned parts and the marker

    const report = await gc.runOnce();
    expect(report.collected).toBeGreaterThanOrEqual(4); // those three, and the closed header
    expect(rows(done).size).toBe(0);
    expect(model.uploads.local.get(BUCKET, `done\u0000${done}`)).toBeUndefined();
    expect([...rows(open).values()]).toEqual([o1]);
    expect(model.uploads.local.get(BUCKET, `open\u0000${open}`)!.deleted).toBe(false);
    // The object stays readable: its version and blocks are its own.
    expect(model.versionBlocks.local.range(done, { limit: 10 })).toHaveLength(2);
  });
});
