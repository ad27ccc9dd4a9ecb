// Bucket counts on a real Model over a temp sqlite file: the update hooks keep this node's
// counts equal to a recount from the stored entries through random merges and removals;
// counts are filled once for data stored before they existed; readers trust only the nodes
// that serve reads of the partition.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { decodeEntry } from "../../../src/db/entry-codec.ts";
import { keyText, TableRows } from "../../../src/db/table-rows.ts";
import { Model } from "../../../src/model/model.ts";
import { bucketCounterSchema, countsOf, localCounts, type BucketCounterEntry } from "../../../src/model/counter.ts";
import { visibleVersion, type ObjectEntry, type VersionState } from "../../../src/model/object.ts";
import type { UploadEntry } from "../../../src/model/upload.ts";
import { mulberry32 } from "../../helpers/random.ts";
import { mergeRecords } from "../../../src/model/crdt.ts";

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  bool(p = 0.5): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }
}

let dir: string;
let db: Database;
let model: Model;

const open = () => new Model(db, new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent"));

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-counter-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
  model = open();
});

afterEach(async () => {
  await model.stop();
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const BUCKETS = ["b1".padEnd(64, "0"), "b2".padEnd(64, "0")];
const KEYS = ["a", "b", "c", "d"];

/** What a recount of the stored entries finds, per bucket. */
function recount(): Record<string, { objects: number; bytes: number; uploads: number }> {
  const out: Record<string, { objects: number; bytes: number; uploads: number }> = {};
  const at = (b: string) => (out[b] ??= { objects: 0, bytes: 0, uploads: 0 });
  for (const r of TableRows.of(db, "object").iterate()) {
    const o = decodeEntry(r) as ObjectEntry;
    const v = visibleVersion(o);
    if (v) {
      at(o.bucketId).objects++;
      at(o.bucketId).bytes += v.state.data.meta.size;
    }
  }
  for (const r of TableRows.of(db, "mpu").iterate()) {
    const u = decodeEntry(r) as UploadEntry;
    if (!u.deleted) at(u.bucketId).uploads++;
  }
  return out;
}

function stored(): Record<string, { objects: number; bytes: number; uploads: number }> {
  const out: Record<string, { objects: number; bytes: number; uploads: number }> = {};
  for (const [b, c] of localCounts(db)) if (c.objects !== 0 || c.bytes !== 0 || c.uploads !== 0) out[b] = c;
  return out;
}

describe("local counts", () => {
  test("follow random merges and removals of objects and uploads exactly (seeded)", async () => {
    const rng = new Rng(20261125);
    let ts = 1;
    for (let step = 0; step < 400; step++) {
      const bucketId = rng.pick(BUCKETS);
      const key = rng.pick(KEYS);
      const roll = rng.int(0, 9);
      if (roll < 6) {
        // a version of some kind, possibly older than what is stored
        const state: VersionState = rng.pick<VersionState>([
          { kind: "complete", data: { kind: "blocks", meta: { size: rng.int(0, 5000), etag: "e", headers: [] } } },
          { kind: "complete", data: { kind: "deleteMarker" } },
          { kind: "uploading", multipart: false, headers: [], uploader: "node1" },
          { kind: "aborted" },
        ]);
        const timestamp = rng.bool(0.8) ? ts++ : rng.int(1, ts);
        await model.objects.insert({ bucketId, key, versions: [{ uuid: `u${rng.int(0, 30)}`, timestamp, state }] });
      } else if (roll < 8) {
        const uploadId = `up${rng.int(0, 10)}`;
        await model.uploads.insert({ bucketId, key, uploadId, timestamp: ts++, deleted: rng.bool(0.4), headers: [] });
      } else {
        // an entry removed outright (offload of a partition, GC of a tombstone)
        const table = rng.bool() ? model.objects : model.uploads;
        const rows = db.query(`SELECT pk, sk FROM t_${table === model.objects ? "object" : "mpu"} LIMIT 1 OFFSET ?`).all(rng.int(0, 5)) as { pk: Uint8Array; sk: string }[];
        for (const r of rows) model.committer.writeNow(() => table.local.deleteInTransaction(keyText(r.pk), r.sk));
      }
      expect(stored()).toEqual(recount());
    }
    // and the public reading agrees on a one-node layout
    for (const b of BUCKETS) expect(await model.bucketCounts(b)).toEqual(recount()[b] ?? { objects: 0, bytes: 0, uploads: 0 });
  });

  test("are filled once from what was stored before counts existed", async () => {
    await model.objects.insert([
      { bucketId: BUCKETS[0]!, key: "x", versions: [{ uuid: "v1", timestamp: 5, state: { kind: "complete", data: { kind: "blocks", meta: { size: 123, etag: "e", headers: [] } } } }] },
      { bucketId: BUCKETS[0]!, key: "y", versions: [{ uuid: "v2", timestamp: 6, state: { kind: "complete", data: { kind: "deleteMarker" } } }] },
    ]);
    await model.uploads.insert({ bucketId: BUCKETS[1]!, key: "k", uploadId: "u1", timestamp: 7, deleted: false, headers: [] });
    const expected = recount();
    // As a node upgraded from a release without counts finds its database:
    await model.stop();
    db.run(`DELETE FROM bucket_counts`);
    db.run(`DELETE FROM node_meta WHERE k = 'bucket_counts_ready'`);
    model = open();
    expect(stored()).toEqual(expected);
    expect(await model.bucketCounts(BUCKETS[0]!)).toEqual({ objects: 1, bytes: 123, uploads: 0 });
    // ... and only once: a second start does not recount (the marker is kept).
    db.run(`UPDATE bucket_counts SET objects = 42 WHERE bucket_id = ?`, [BUCKETS[0]!]);
    await model.stop();
    model = open();
    expect(localCounts(db).get(BUCKETS[0]!)!.objects).toBe(42);
  });

  test("publishing writes this node's counts to the counter table, then only what changed", async () => {
    await model.objects.insert({ bucketId: BUCKETS[0]!, key: "x", versions: [{ uuid: "v1", timestamp: 5, state: { kind: "complete", data: { kind: "blocks", meta: { size: 10, etag: "e", headers: [] } } } }] });
    await model.publishCounts();
    const first = await model.counters.get(BUCKETS[0]!, "");
    expect(first?.nodes.node1).toMatchObject({ objects: 1, bytes: 10, uploads: 0 });
    await model.publishCounts();
    expect((await model.counters.get(BUCKETS[0]!, ""))!.nodes.node1!.ts).toBe(first!.nodes.node1!.ts);
  });
});

describe("counter entries", () => {
  const entry = (nodes: BucketCounterEntry["nodes"]): BucketCounterEntry => ({ bucketId: BUCKETS[0]!, nodes });
  test("merge keeps each node's newest publication", () => {
    const a = entry({ n1: { ts: 1, objects: 1, bytes: 1, uploads: 0 }, n2: { ts: 5, objects: 5, bytes: 5, uploads: 0 } });
    const b = entry({ n1: { ts: 2, objects: 2, bytes: 2, uploads: 1 }, n3: { ts: 1, objects: 9, bytes: 9, uploads: 0 } });
    const m = bucketCounterSchema.merge(a, b);
    expect(m.nodes).toEqual({ n1: b.nodes.n1!, n2: a.nodes.n2!, n3: b.nodes.n3! });
    expect(bucketCounterSchema.merge(b, a)).toEqual(m);
    // byte-identical whatever the order, since replicas compare encodings
    expect(JSON.stringify(bucketCounterSchema.merge(b, a))).toBe(JSON.stringify(m));
    expect(JSON.stringify(bucketCounterSchema.merge(bucketCounterSchema.merge(a, entry({})), b))).toBe(JSON.stringify(m));
  });
  test("readers keep the largest value among trusted nodes only", () => {
    const e = entry({ n1: { ts: 1, objects: 3, bytes: 30, uploads: 1 }, n2: { ts: 1, objects: 4, bytes: 20, uploads: 0 }, gone: { ts: 1, objects: 99, bytes: 99, uploads: 9 } });
    expect(countsOf(e, ["n1", "n2"])).toEqual({ objects: 4, bytes: 30, uploads: 1 });
    expect(countsOf(e, ["n3"])).toEqual({ objects: 0, bytes: 0, uploads: 0 });
    expect(countsOf(undefined, ["n1"])).toEqual({ objects: 0, bytes: 0, uploads: 0 });
  });
});

describe("mergeRecords", () => {
  test("stores keys in one order whatever the merge order (replicas compare encodings)", () => {
    const max = (x: number, y: number) => Math.max(x, y);
    const a = { k2: 1, k1: 5 };
    const b = { k3: 2, k1: 3 };
    expect(JSON.stringify(mergeRecords(a, b, max))).toBe(JSON.stringify(mergeRecords(b, a, max)));
    expect(mergeRecords(a, b, max)).toEqual({ k1: 5, k2: 1, k3: 2 });
  });
});
