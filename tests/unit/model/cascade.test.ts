// Update hooks and cascades on a real Model over a temp sqlite file (single-node layout).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { BLOCK_GC_DELAY_MS } from "../../../src/block/rc.ts";
import { Model } from "../../../src/model/model.ts";
import { HybridClock } from "../../../src/util/hlc.ts";
import { READ_GRACE_MS } from "../../../src/table/read-grace.ts";
import type { ObjectEntry, ObjectVersion, VersionState } from "../../../src/model/object.ts";
import type { VersionBlockEntry, VersionEntry } from "../../../src/model/version.ts";

let dir: string;
let db: Database;
let model: Model;
/** Added to the wall clock of the model's HLC: moves time past the read grace. */
let clockAhead = 0;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-model-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
  clockAhead = 0;
  model = new Model(db, new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent"), undefined, new HybridClock(() => Date.now() + clockAhead));
});
afterEach(async () => {
  await model.stop();
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const H = (c: string) => c.repeat(64);
type Rc = { refs: number; deletable_at: number | null } | null;
const rc = (hash: string): Rc => db.query(`SELECT refs, deletable_at FROM block_rc WHERE hash = ?`).get(hash) as Rc;
const queueLength = () => (db.query(`SELECT count(*) AS n FROM insert_queue`).get() as { n: number }).n;
const ref = (hash: string, version: string, deleted = false) => ({ hash, version, deleted });

describe("block_ref hook: local reference counts", () => {
  test("removing a live reference outright (offload) releases it; removing a tombstone changes nothing", async () => {
    const h = H("d");
    await model.blockRefs.insert([ref(h, "v1"), ref(h, "v2")]);
    expect(rc(h)).toEqual({ refs: 2, deletable_at: null });
    model.committer.writeNow(() => model.blockRefs.local.deleteInTransaction(h, "v1"));
    expect(rc(h)).toEqual({ refs: 1, deletable_at: null });
    await model.blockRefs.insert(ref(h, "v2", true));
    expect(rc(h)!.refs).toBe(0);
    const deletableAt = rc(h)!.deletable_at;
    model.committer.writeNow(() => model.blockRefs.local.deleteInTransaction(h, "v2"));
    expect(rc(h)).toEqual({ refs: 0, deletable_at: deletableAt });
  });

  test("counts live references up and down; reaching 0 sets deletable_at = now + GC delay", async () => {
    const h = H("a");
    await model.blockRefs.insert(ref(h, "v1"));
    expect(rc(h)).toEqual({ refs: 1, deletable_at: null });
    await model.blockRefs.insert(ref(h, "v2"));
    expect(rc(h)).toEqual({ refs: 2, deletable_at: null });
    await model.blockRefs.insert(ref(h, "v1")); // same live ref again: no change
    expect(rc(h)).toEqual({ refs: 2, deletable_at: null });

    await model.blockRefs.insert(ref(h, "v1", true));
    expect(rc(h)).toEqual({ refs: 1, deletable_at: null });
    const before = Date.now();
    await model.blockRefs.insert(ref(h, "v2", true));
    const after = Date.now();
    const row = rc(h)!;
    expect(row.refs).toBe(0);
    expect(row.deletable_at).toBeGreaterThanOrEqual(before + BLOCK_GC_DELAY_MS);
    // The HLC may run a little ahead of the wall clock, never far.
    expect(row.deletable_at).toBeLessThanOrEqual(after + BLOCK_GC_DELAY_MS + 1000);

    // Tombstones absorb: neither a repeated tombstone nor a late live copy changes the count.
    await model.blockRefs.insert(ref(h, "v2", true));
    await model.blockRefs.insert(ref(h, "v1", false));
    expect(rc(h)).toEqual(row);
  });

  test("a new reference to a block waiting for GC revives it", async () => {
    const h = H("b");
    await model.blockRefs.insert(ref(h, "v1"));
    await model.blockRefs.insert(ref(h, "v1", true));
    expect(rc(h)!.deletable_at).not.toBeNull();
    await model.blockRefs.insert(ref(h, "v9"));
    expect(rc(h)).toEqual({ refs: 1, deletable_at: null });
  });

  test("a tombstone for a reference never seen live creates no count", async () => {
    await model.blockRefs.insert(ref(H("c"), "v1", true));
    expect(rc(H("c"))).toBeNull();
  });

  test("several refs of one block in one insert are all counted", async () => {
    const h = H("d");
    await model.blockRefs.insert([ref(h, "v1"), ref(h, "v2"), ref(h, "v3"), ref(H("e"), "v1")]);
    expect(rc(h)).toEqual({ refs: 3, deletable_at: null });
    expect(rc(H("e"))).toEqual({ refs: 1, deletable_at: null });
  });
});

/** Writes a complete blocks-version the way PutObject does: version, its blocks, their refs, then the object. */
async function putVersion(key: string, uuid: string, timestamp: number, hashes: string[], state?: VersionState): Promise<void> {
  await model.versions.insert({ uuid, deleted: false, backlink: { kind: "object", bucketId: "bk", key } });
  const vbs: VersionBlockEntry[] = hashes.map((hash, i) => ({ uuid, part: 0, offset: i * 1024, hash, size: 1024 }));
  await model.versionBlocks.insert(vbs);
  await model.blockRefs.insert(hashes.map((hash) => ref(hash, uuid)));
  const version: ObjectVersion = {
    uuid,
    timestamp,
    state: state ?? { kind: "complete", data: { kind: "blocks", meta: { size: hashes.length * 1024, etag: uuid, headers: [] } } },
  };
  await model.objects.insert({ bucketId: "bk", key, versions: [version] });
}

const versionHeader = (uuid: string) => model.versions.getLocal(uuid, "") as VersionEntry | undefined;
const blockRows = (uuid: string) => (db.query(`SELECT count(*) AS n FROM t_version_block WHERE pk = ?`).get(uuid) as { n: number }).n;
const blockRef = (hash: string, uuid: string) => model.blockRefs.getLocal(hash, uuid);

describe("cascade: a newer complete version releases the older one", () => {
  test("older version tombstoned, its version_block rows removed, its block refs tombstoned, block_rc at 0", async () => {
    const [h1, h2, h3] = [H("1"), H("2"), H("3")];
    await putVersion("photo.jpg", "v-old", 1000, [h1, h2]);
    expect(rc(h1)).toEqual({ refs: 1, deletable_at: null });
    expect(blockRows("v-old")).toBe(2);
    expect(queueLength()).toBe(0);

    // The new version shares nothing with the old one except h2.
    await putVersion("photo.jpg", "v-new", 2000, [h2, h3]);
    expect(rc(h2)).toEqual({ refs: 2, deletable_at: null });
    const obj = (await model.objects.get("bk", "photo.jpg")) as ObjectEntry;
    expect(obj.versions.map((v) => v.uuid)).toEqual(["v-new"]);
    expect(queueLength()).toBe(1); // version tombstone for v-old, applied after the read grace

    // A GET that resolved v-old before the overwrite still finds its whole block list.
    await model.drainInsertQueue();
    expect(queueLength()).toBe(1);
    expect(versionHeader("v-old")!.deleted).toBe(false);
    expect(blockRows("v-old")).toBe(2);
    expect(rc(h1)).toEqual({ refs: 1, deletable_at: null });

    clockAhead = READ_GRACE_MS + 1000;
    await model.drainInsertQueue();
    expect(queueLength()).toBe(0);
    expect(versionHeader("v-old")!.deleted).toBe(true);
    expect(blockRows("v-old")).toBe(0);
    expect(blockRef(h1, "v-old")!.deleted).toBe(true);
    expect(blockRef(h2, "v-old")!.deleted).toBe(true);
    expect(rc(h1)!.refs).toBe(0);
    expect(rc(h1)!.deletable_at).toBeGreaterThan(Date.now());
    expect(rc(h2)).toEqual({ refs: 1, deletable_at: null }); // still used by v-new

    // The new version is untouched.
    expect(versionHeader("v-new")!.deleted).toBe(false);
    expect(blockRows("v-new")).toBe(2);
    expect(blockRef(h3, "v-new")!.deleted).toBe(false);
    expect(rc(h3)).toEqual({ refs: 1, deletable_at: null });
  });

  test("an older version arriving after a newer one is released after the read grace (another replica may have served it)", async () => {
    await putVersion("k", "v-new", 2000, [H("4")]);
    await putVersion("k", "v-late", 1000, [H("5")]);
    await model.drainInsertQueue();
    expect(versionHeader("v-late")!.deleted).toBe(false);
    clockAhead = READ_GRACE_MS + 1000;
    await model.drainInsertQueue();
    expect(((await model.objects.get("bk", "k")) as ObjectEntry).versions.map((v) => v.uuid)).toEqual(["v-new"]);
    expect(versionHeader("v-late")!.deleted).toBe(true);
    expect(rc(H("5"))!.refs).toBe(0);
    expect(rc(H("4"))!.refs).toBe(1);
  });

  test("aborting an upload releases its blocks", async () => {
    const uploading: VersionState = { kind: "uploading", multipart: false, headers: [], uploader: "node1" };
    await putVersion("k", "v-up", 1000, [H("6")], uploading);
    expect(queueLength()).toBe(0);
    expect(rc(H("6"))!.refs).toBe(1);
    await model.objects.insert({ bucketId: "bk", key: "k", versions: [{ uuid: "v-up", timestamp: 1000, state: { kind: "aborted" } }] });
    await model.drainInsertQueue();
    expect(versionHeader("v-up")!.deleted).toBe(true);
    expect(blockRows("v-up")).toBe(0);
    expect(rc(H("6"))!.refs).toBe(0);
  });

  test("a version_block arriving after its version was deleted is tombstoned too", async () => {
    await model.versions.insert({ uuid: "v-gone", deleted: true, backlink: null });
    await model.versionBlocks.insert({ uuid: "v-gone", part: 0, offset: 0, hash: H("7"), size: 1 });
    await model.blockRefs.insert(ref(H("7"), "v-gone"));
    expect(rc(H("7"))!.refs).toBe(1);
    await model.drainInsertQueue();
    expect(blockRows("v-gone")).toBe(0);
    expect(rc(H("7"))!.refs).toBe(0);
  });

  test("a re-uploaded multipart part releases the part it replaced", async () => {
    await model.versions.insert({ uuid: "p-old", deleted: false, backlink: { kind: "upload", uploadId: "u1", part: 1 } });
    await model.versionBlocks.insert({ uuid: "p-old", part: 1, offset: 0, hash: H("8"), size: 1 });
    await model.blockRefs.insert(ref(H("8"), "p-old"));
    await model.uploadParts.insert({ uploadId: "u1", part: 1, timestamp: 100, version: "p-old", etag: "a", size: 1 });
    await model.uploadParts.insert({ uploadId: "u1", part: 1, timestamp: 200, version: "p-new", etag: "b", size: 1 });
    await model.drainInsertQueue();
    expect(versionHeader("p-old")!.deleted).toBe(true);
    expect(rc(H("8"))!.refs).toBe(0);
    expect(model.uploadParts.getLocal("u1", "00001")!.version).toBe("p-new");
  });

  test("re-inserting the same complete version enqueues nothing", async () => {
    await putVersion("k", "v1", 1000, [H("9")]);
    await model.objects.insert(((await model.objects.get("bk", "k")) as ObjectEntry));
    expect(queueLength()).toBe(0);
  });
});

describe("the cascading-insert queue wakes for its rows", () => {
  test("a started model applies a queued row when it comes due, without being asked and long before its poll", async () => {
    const graceMs = 100;
    const started = new Model(db, new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent"), undefined, new HybridClock(), { readGraceMs: graceMs });
    started.start();
    try {
      await started.versions.insert({ uuid: "w-old", deleted: false, backlink: { kind: "object", bucketId: "bk", key: "w" } });
      const complete = (uuid: string, timestamp: number): ObjectVersion => ({ uuid, timestamp, state: { kind: "complete", data: { kind: "blocks", meta: { size: 0, etag: uuid, headers: [] } } } });
      await started.objects.insert({ bucketId: "bk", key: "w", versions: [complete("w-old", 1000)] });
      await started.objects.insert({ bucketId: "bk", key: "w", versions: [complete("w-new", 2000)] });
      expect(queueLength()).toBe(1); // w-old's tombstone, due after the read grace
      const deadline = Date.now() + 2_000; // the poll is 5 s away: only a wake can drain it sooner
      while (queueLength() > 0 && Date.now() < deadline) await Bun.sleep(20);
      expect(queueLength()).toBe(0);
      expect((started.versions.getLocal("w-old", "") as VersionEntry).deleted).toBe(true);
    } finally {
      await started.stop();
    }
  });
});

test("rows queued while a wake is armed for an earlier one are each applied once due", async () => {
  const graceMs = 150;
  let ahead = 0;
  const started = new Model(db, new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent"), undefined, new HybridClock(() => Date.now() + ahead), { readGraceMs: graceMs });
  started.start();
  try {
    const complete = (uuid: string, timestamp: number): ObjectVersion => ({ uuid, timestamp, state: { kind: "complete", data: { kind: "blocks", meta: { size: 0, etag: uuid, headers: [] } } } });
    for (const [key, gapMs] of [["x", 0], ["y", 300]] as const) {
      await Bun.sleep(gapMs); // queued while x's wake (due + 200 ms) is armed, due after it fires
      await started.versions.insert({ uuid: `${key}-old`, deleted: false, backlink: { kind: "object", bucketId: "bk", key } });
      await started.objects.insert({ bucketId: "bk", key, versions: [complete(`${key}-old`, 1000)] });
      await started.objects.insert({ bucketId: "bk", key, versions: [complete(`${key}-new`, 2000)] });
    }
    const deadline = Date.now() + 3_000; // the poll is 5 s away
    while (queueLength() > 0 && Date.now() < deadline) await Bun.sleep(20);
    expect(queueLength()).toBe(0);
    for (const key of ["x", "y"]) expect((started.versions.getLocal(`${key}-old`, "") as VersionEntry).deleted).toBe(true);
  } finally {
    await started.stop();
  }
});
