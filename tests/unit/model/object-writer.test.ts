// The one object writer on a real Model over a temp sqlite file (single-node layout): its plan,
// and that every path that fails after announcing a version releases it at once.
// Most paths exercised here store no block (inline bodies, copies by reference, metadata only),
// so no block store is wired in; the one-block plan runs against a scripted block manager
// (put and presence only), the other block paths through the real server in tests/e2e.
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { Model } from "../../../src/model/model.ts";
import type { StoreServices } from "../../../src/model/body-writer.ts";
import { completeUpload, copyObject, IncompleteBlockListError, planWrite, StaleCompletionError, startUpload, writeObject, writePart } from "../../../src/model/object-writer.ts";
import { visibleVersion, type ObjectMeta, type VisibleVersion } from "../../../src/model/object.ts";
import type { BlockPresence } from "../../../src/block/manager.ts";
import { INLINE_THRESHOLD } from "../../../src/util/limits.ts";
import { MemoryBudget } from "../../../src/util/memory-budget.ts";

const BLOCK = 1024 * 1024;
// A failed write queues its releases; stopping the model waits for them (about a second).
setDefaultTimeout(20_000);
let dir: string;
let db: Database;
let model: Model;
let services: StoreServices;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-writer-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
  model = new Model(db, new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent"));
  // No block is stored by these tests: a call into the block store or the hashers fails loudly.
  const unused = new Proxy({}, { get: (_, p) => { throw new Error(`unexpected block store use: ${String(p)}`); } });
  services = { model, blocks: unused as never, hasher: unused as never, blockSize: BLOCK };
});
afterEach(async () => {
  await model.stop();
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const target = { bucketId: "b".repeat(64), key: "k" };
async function* bytes(n: number) {
  if (n > 0) yield new Uint8Array(n).fill(7);
}
const metaOf = (size: number): ObjectMeta => ({ size, etag: "e".repeat(32), headers: [] });
const states = async () => (await model.objects.get(target.bucketId, target.key))?.versions.map((v) => v.state.kind) ?? [];

describe("planWrite", () => {
  test("chooses inline, single-block or announced from the declared length", () => {
    expect(planWrite(0, BLOCK)).toEqual({ kind: "inline" });
    expect(planWrite(INLINE_THRESHOLD - 1, BLOCK)).toEqual({ kind: "inline" });
    expect(planWrite(INLINE_THRESHOLD, BLOCK)).toEqual({ kind: "single-block" });
    expect(planWrite(BLOCK, BLOCK)).toEqual({ kind: "single-block" });
    expect(planWrite(BLOCK + 1, BLOCK)).toEqual({ kind: "announced" });
    expect(planWrite(undefined, BLOCK)).toEqual({ kind: "announced" });
  });
});

describe("writeObject", () => {
  test("an inline body is one complete version", async () => {
    const w = await writeObject(services, target, { headers: [], declaredLength: 10, chunks: bytes(10), checksumAlgorithms: [], tags: [], describe: (b) => metaOf(b.size) });
    expect(await states()).toEqual(["complete"]);
    const v = visibleVersion(await model.objects.get(target.bucketId, target.key))!;
    expect(v.uuid).toBe(w.uuid);
    expect(v.state.data.kind).toBe("inline");
  });

  test("a body of unknown length that describe refuses leaves its announced version aborted", async () => {
    const refusal = new Error("digest mismatch");
    const write = writeObject(services, target, { headers: [], declaredLength: undefined, chunks: bytes(10), checksumAlgorithms: [], tags: [], describe: () => { throw refusal; } });
    await expect(write).rejects.toBe(refusal);
    expect(await states()).toEqual(["aborted"]);
  });

  test("a body of unknown length that turns out small completes inline under its announced version", async () => {
    const w = await writeObject(services, target, { headers: [], declaredLength: undefined, chunks: bytes(5), checksumAlgorithms: [], tags: [], describe: (b) => metaOf(b.size) });
    const v = visibleVersion(await model.objects.get(target.bucketId, target.key))!;
    expect([v.uuid, v.state.data.kind]).toEqual([w.uuid, "inline"]);
  });
});

describe("copyObject", () => {
  test("a copy whose source block list is short is refused and its announced version aborted", async () => {
    const sourceUuid = "5".repeat(64);
    // A source that claims 100 bytes but whose block list (as read) holds 60.
    await model.versionBlocks.insert({ uuid: sourceUuid, part: 0, offset: 0, hash: "a".repeat(64), size: 60 });
    const source = { uuid: sourceUuid, timestamp: 1, state: { kind: "complete", data: { kind: "blocks", meta: metaOf(100) } } } as VisibleVersion;
    await expect(copyObject(services, target, source, metaOf(100), [])).rejects.toBeInstanceOf(IncompleteBlockListError);
    expect(await states()).toEqual(["aborted"]);
  });

  test("a whole copy completes, referencing the source's blocks", async () => {
    const sourceUuid = "6".repeat(64);
    await model.versionBlocks.insert({ uuid: sourceUuid, part: 0, offset: 0, hash: "a".repeat(64), size: 100 });
    const source = { uuid: sourceUuid, timestamp: 1, state: { kind: "complete", data: { kind: "blocks", meta: metaOf(100) } } } as VisibleVersion;
    const w = await copyObject(services, target, source, metaOf(100), []);
    expect(await states()).toEqual(["complete"]);
    expect((await model.versionBlocks.range(w.uuid, { limit: 10 })).map((b) => b.hash)).toEqual(["a".repeat(64)]);
  });
});

describe("multipart", () => {
  test("a part that describe refuses is released; the upload stays open", async () => {
    const upload = await startUpload(services, target, { headers: [], checksum: undefined, tags: [], encryption: undefined });
    const write = writePart(services, upload, 1, { chunks: bytes(0), sizeHint: 0, checksumAlgorithms: [], describe: () => { throw new Error("bad digest"); } });
    await expect(write).rejects.toThrow("bad digest");
    expect(await model.liveParts(upload.uploadId, "", Infinity)).toEqual([]);
    expect((await model.uploads.range(target.bucketId, { limit: 10 })).map((u) => u.deleted)).toEqual([false]);
  });

  test("a completion whose part block list is short changes nothing: the upload stays open, nothing is visible", async () => {
    const upload = await startUpload(services, target, { headers: [], checksum: undefined, tags: [], encryption: undefined });
    const part = { uploadId: upload.uploadId, part: 1, timestamp: model.clock.now(), version: "7".repeat(64), etag: "e".repeat(32), size: 100, deleted: false };
    await model.versionBlocks.insert({ uuid: part.version, part: 1, offset: 0, hash: "a".repeat(64), size: 40 });
    await expect(completeUpload(services, upload, [part], [part], metaOf(100), { kind: "completed", etag: "x-1" })).rejects.toBeInstanceOf(IncompleteBlockListError);
    expect(await states()).toEqual(["uploading"]);
    expect((await model.uploads.range(target.bucketId, { limit: 10 })).map((u) => u.deleted)).toEqual([false]);
  });
});

describe("a completion retried after one that failed part way", () => {
  const hash = (c: string) => c.repeat(64);
  async function part(upload: { uploadId: string }, n: number, version: string, size: number, rows: number[]) {
    let offset = 0;
    for (const [i, s] of rows.entries()) {
      await model.versionBlocks.insert({ uuid: version, part: n, offset, hash: hash("abcdef"[i]!), size: s });
      offset += s;
    }
    return { uploadId: upload.uploadId, part: n, timestamp: model.clock.now(), version, etag: "e".repeat(32), size, deleted: false };
  }

  test("with the same parts it completes; with other parts it is refused, nothing visible", async () => {
    const upload = await startUpload(services, target, { headers: [], checksum: undefined, tags: [], encryption: undefined });
    const p1 = await part(upload, 1, "1".repeat(64), 100, [100]);
    const short = await part(upload, 2, "2".repeat(64), 100, [40]); // its block list as read: short
    await expect(completeUpload(services, upload, [p1, short], [p1, short], metaOf(200), { kind: "completed", etag: "x-2" })).rejects.toBeInstanceOf(IncompleteBlockListError);
    const p3 = await part(upload, 3, "3".repeat(64), 10, [10]);
    await expect(completeUpload(services, upload, [p1, p3], [p1, short, p3], metaOf(110), { kind: "completed", etag: "x-2" })).rejects.toBeInstanceOf(StaleCompletionError);
    expect(await states()).toEqual(["uploading"]);

    const again = await startUpload(services, { ...target, key: "k2" }, { headers: [], checksum: undefined, tags: [], encryption: undefined });
    const q1 = await part(again, 1, "4".repeat(64), 100, [100]);
    const q2 = await part(again, 2, "5".repeat(64), 50, [50]);
    // A first attempt that failed after copying part 1 (a quorum lost mid-way, say).
    await model.copyBlocks(q1.version, again.uploadId, 1);
    await completeUpload(services, again, [q1, q2], [q1, q2], metaOf(150), { kind: "completed", etag: "y-2" });
    const v = visibleVersion(await model.objects.get(target.bucketId, "k2"))!;
    expect(v.uuid).toBe(again.uploadId);
  });
});

describe("writeObject, one block (one round trip)", () => {
  const SIZE = 64 * 1024;
  /** A block manager whose put waits for `release` and then resolves or fails, and whose presence answers `presence`. */
  function scripted(outcome: "stored" | Error, presence: BlockPresence) {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const puts: string[] = [];
    const blocks = {
      put: async (hash: string) => {
        puts.push(hash);
        await gate;
        if (outcome instanceof Error) throw outcome;
        return { settled: Promise.resolve(), background: false };
      },
      presence: async () => presence,
      local: new MemoryBudget("block buffers", 8 * 1024 * 1024),
    };
    services = { ...services, blocks: blocks as never };
    return { release, puts };
  }
  const write = () => writeObject(services, target, { headers: [], declaredLength: SIZE, chunks: bytes(SIZE), checksumAlgorithms: [], tags: [["t", "1"]], describe: (b) => metaOf(b.size) });
  const settledStates = async (want: string[]) => {
    // The completion is written after the answer: wait for it (bounded).
    for (let i = 0; i < 100 && JSON.stringify(await states()) !== JSON.stringify(want); i++) await Bun.sleep(10);
    return states();
  };

  test("the version is written while its block travels, pending, and completes once both are stored", async () => {
    const { release, puts } = scripted("stored", "quorum");
    let answered = false;
    const w = write().then((x) => ((answered = true), x));
    // The block is not stored yet, and the version is already on the replicas, invisible.
    for (let i = 0; i < 100 && (await states()).length === 0; i++) await Bun.sleep(5);
    expect(await states()).toEqual(["pending"]);
    expect(visibleVersion(await model.objects.get(target.bucketId, target.key))).toBeUndefined();
    expect(answered).toBe(false);
    expect(puts.length).toBe(1);
    // Its block rows went in the same round.
    const entry = await model.objects.get(target.bucketId, target.key);
    const uuid = entry!.versions[0]!.uuid;
    expect((await model.versionBlocks.range(uuid, { limit: 2 })).map((b) => b.hash)).toEqual(puts);
    release();
    const done = await w;
    expect(done.uuid).toBe(uuid);
    expect(await settledStates(["complete"])).toEqual(["complete"]);
    const v = visibleVersion(await model.objects.get(target.bucketId, target.key))!;
    expect(v.state.data).toEqual({ kind: "blocks", meta: metaOf(SIZE), singleBlock: puts[0]! });
    expect(v.state.tags).toEqual({ timestamp: v.timestamp, set: [["t", "1"]] });
  });

  test("a block that failed and is short of a quorum: the write fails and its version is aborted", async () => {
    const { release } = scripted(new Error("quorum not reached"), "short");
    release();
    await expect(write()).rejects.toThrow("quorum not reached");
    expect(await states()).toEqual(["aborted"]);
  });

  test("a block that failed but is on a quorum after all is never aborted: the write succeeds and completes", async () => {
    const { release } = scripted(new Error("late answer"), "quorum");
    release();
    await write();
    expect(await settledStates(["complete"])).toEqual(["complete"]);
  });

  test("a block that failed where the nodes cannot tell: the write fails, its version left pending (for readers and the repair)", async () => {
    const { release } = scripted(new Error("timeout"), "unknown");
    release();
    await expect(write()).rejects.toThrow("timeout");
    expect(await states()).toEqual(["pending"]);
  });

  test("a body describe refuses writes no version", async () => {
    const { release } = scripted("stored", "quorum");
    release();
    const refusal = new Error("bad digest");
    await expect(writeObject(services, target, { headers: [], declaredLength: SIZE, chunks: bytes(SIZE), checksumAlgorithms: [], tags: [], describe: () => { throw refusal; } })).rejects.toBe(refusal);
    expect(await states()).toEqual([]);
  });
});
