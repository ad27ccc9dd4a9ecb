// Anti-entropy digests kept by every write (db/table-rows.ts sync_digest) and the unsettled
// marks: after any mix of writes, merges and removals they equal what a scan of the rows gives,
// and they do not depend on the order the rows were written in.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PARTITION_COUNT } from "../../../src/cluster/layout.ts";
import { GroupCommitter } from "../../../src/db/committer.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { keyText, rowHash, TableRows } from "../../../src/db/table-rows.ts";
import { LocalStore, SYNC_BUCKETS } from "../../../src/table/local-store.ts";
import type { TableSchema } from "../../../src/table/schema.ts";
import { mulberry32 } from "../../helpers/random.ts";

/** A max register per key; `busy` marks the entry unsettled. */
interface E {
  pk: string;
  sk: string;
  n: number;
  busy: boolean;
}
const schema: TableSchema<E> = {
  name: "version_block",
  replication: "sharded",
  partitionKey: (e) => e.pk,
  sortKey: (e) => e.sk,
  merge: (a, b) => (b.n > a.n ? b : a),
  unsettled: (e) => e.busy,
};

let dir: string;
const dbs: Database[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-digests-"));
});
afterEach(async () => {
  for (const db of dbs.splice(0)) db.close();
  await rm(dir, { recursive: true, force: true });
});

function store(name: string): { db: Database; local: LocalStore<E> } {
  const db = openDatabase(join(dir, `${name}.sqlite`), { fsync: false });
  dbs.push(db);
  return { db, local: new LocalStore(schema, db, new GroupCommitter(db), () => 1) };
}

/** Partition and sync-bucket digests as a scan of every row computes them, independently of the kept ones. */
function scanned(db: Database): { partitions: string[]; buckets: string[][] } {
  const xs = new Map<number, Uint8Array>();
  const fold = (slot: number, h: Uint8Array) => {
    const x = xs.get(slot) ?? new Uint8Array(16);
    for (let i = 0; i < 16; i++) x[i]! ^= h[i]!;
    xs.set(slot, x);
  };
  for (const r of db.query(`SELECT pk, sk, part, v FROM t_version_block`).all() as { pk: string | Uint8Array; sk: string; part: number; v: Uint8Array }[]) {
    const h = rowHash(keyText(r.pk), r.sk, r.v);
    fold(-1 - Math.floor(r.part / SYNC_BUCKETS), h);
    fold(r.part, h);
  }
  const text = (slot: number) => (xs.has(slot) ? Buffer.from(xs.get(slot)!).toString("hex") : "");
  return {
    partitions: Array.from({ length: PARTITION_COUNT }, (_, p) => text(-1 - p)),
    buckets: Array.from({ length: PARTITION_COUNT }, (_, p) => Array.from({ length: SYNC_BUCKETS }, (_, b) => text(p * SYNC_BUCKETS + b))),
  };
}

/** Every kept digest, both levels. */
const kept = (local: LocalStore<E>) => ({
  partitions: local.partitionDigests(),
  buckets: Array.from({ length: PARTITION_COUNT }, (_, p) => local.bucketDigests(p)),
});

describe("kept digests", () => {
  test("equal a scan of the rows after random writes, merges and removals (seeded)", async () => {
    const { db, local } = store("a");
    const rand = mulberry32(7);
    // Partition keys of both stored forms: ids (64 hex, stored as bytes) and other text.
    const keys = Array.from({ length: 60 }, (_, i) => ({ pk: i % 2 ? `pk${i % 7}` : String(i % 7).repeat(64), sk: `sk${i}` }));
    for (let step = 0; step < 400; step++) {
      const k = keys[Math.floor(rand() * keys.length)]!;
      const roll = rand();
      if (roll < 0.6) await local.apply([{ ...k, n: Math.floor(rand() * 10), busy: rand() < 0.2 }]);
      else if (roll < 0.8) await local.apply([{ ...k, n: 0, busy: false }]); // usually no change
      else if (roll < 0.9) db.transaction(() => local.deleteInTransaction(k.pk, k.sk))();
      else db.transaction(() => TableRows.of(db, "version_block").takeAll(k.pk))();
      if (step % 50 === 0) expect(kept(local)).toEqual(scanned(db));
    }
    expect(kept(local)).toEqual(scanned(db));
    const digests = local.partitionDigests();
    // The sync buckets of a partition combine (XOR) into the partition's digest.
    for (let p = 0; p < PARTITION_COUNT; p++) {
      const x = new Uint8Array(16);
      for (const d of local.bucketDigests(p)) if (d) Buffer.from(d, "hex").forEach((b, i) => (x[i]! ^= b));
      expect(digests[p] === "" ? "0".repeat(32) : digests[p]).toBe(Buffer.from(x).toString("hex"));
    }
    // Unsettled marks follow the stored value.
    const marked = local.unsettledEntries(0, 1000).map((r) => `${r.entry.pk}/${r.entry.sk}`).sort();
    const busy = keys.map((k) => local.get(k.pk, k.sk)).filter((e) => e?.busy).map((e) => `${e!.pk}/${e!.sk}`).sort();
    expect(marked).toEqual(busy);
  });

  test("rows without a kept hash (written before migration 7) count the same: writes, removals and bucket rows hash them from v", async () => {
    const { db, local } = store("a");
    const rows = TableRows.of(db, "version_block");
    const rand = mulberry32(11);
    const keys = Array.from({ length: 40 }, (_, i) => ({ pk: i % 2 ? `pk${i % 5}` : String(i % 5).repeat(64), sk: `sk${i}` }));
    const kept = (): { pk: string | Uint8Array; sk: string; part: number; v: Uint8Array; h: Uint8Array | null }[] =>
      db.query(`SELECT pk, sk, part, v, h FROM t_version_block`).all() as { pk: string | Uint8Array; sk: string; part: number; v: Uint8Array; h: Uint8Array | null }[];
    for (let step = 0; step < 300; step++) {
      const k = keys[Math.floor(rand() * keys.length)]!;
      const roll = rand();
      if (roll < 0.6) await local.apply([{ ...k, n: Math.floor(rand() * 10), busy: false }]);
      else if (roll < 0.75) db.transaction(() => local.deleteInTransaction(k.pk, k.sk))();
      else if (roll < 0.8) db.transaction(() => rows.takeAll(k.pk))();
      else db.exec(`UPDATE t_version_block SET h = NULL WHERE id % 3 = ${step % 3}`); // as migration 7 left them
      if (step % 30 === 0) expect(local.partitionDigests()).toEqual(scanned(db).partitions);
    }
    expect(local.partitionDigests()).toEqual(scanned(db).partitions);
    const all = kept();
    expect(all.some((r) => r.h === null) && all.some((r) => r.h !== null)).toBe(true);
    for (const r of all) {
      const h = rowHash(keyText(r.pk), r.sk, r.v);
      if (r.h !== null) expect(Buffer.from(r.h).equals(Buffer.from(h))).toBe(true);
      const listed = local.bucketRows(r.part).map((x) => x.hash);
      expect(listed).toContain(Buffer.from(h).toString("hex"));
    }
  });

  test("do not depend on write order; one differing entry changes one partition and one bucket", async () => {
    const a = store("a");
    const b = store("b");
    const entries: E[] = Array.from({ length: 300 }, (_, i) => ({ pk: `p${i % 13}`, sk: `s${i}`, n: i, busy: false }));
    await a.local.apply(entries);
    for (const e of [...entries].reverse()) await b.local.apply([{ ...e, n: 0 }, e]);
    expect(b.local.partitionDigests()).toEqual(a.local.partitionDigests());

    await b.local.apply([{ ...entries[42]!, n: 1000 }]);
    const [da, db_] = [a.local.partitionDigests(), b.local.partitionDigests()];
    const differing = da.flatMap((d, p) => (d !== db_[p] ? [p] : []));
    expect(differing).toHaveLength(1);
    const ba = a.local.bucketDigests(differing[0]!);
    const bb = b.local.bucketDigests(differing[0]!);
    expect(ba.filter((d, i) => d !== bb[i])).toHaveLength(1);
  });

  test("the unsettled index finds marked entries page by page, and a settled entry leaves it", async () => {
    const { local } = store("a");
    await local.apply(Array.from({ length: 50 }, (_, i) => ({ pk: "p", sk: `s${String(i).padStart(2, "0")}`, n: 1, busy: i % 10 === 3 })));
    const first = local.unsettledEntries(0, 3);
    expect(first.map((r) => r.entry.sk)).toEqual(["s03", "s13", "s23"]);
    expect(local.unsettledEntries(first[2]!.id, 3).map((r) => r.entry.sk)).toEqual(["s33", "s43"]);
    await local.apply([{ pk: "p", sk: "s13", n: 2, busy: false }]);
    expect(local.unsettledEntries(0, 10).map((r) => r.entry.sk)).toEqual(["s03", "s23", "s33", "s43"]);
  });
});
