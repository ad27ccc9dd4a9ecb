// Anti-entropy of sharded tables between two real nodes on loopback: a pass leaves both replicas
// holding the same rows (equal digests), and moves only the entries that differ (row hashes
// compared inside a differing sync bucket), in batches of at most SYNC_BATCH_ENTRIES entries.
import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Placement } from "../../../src/cluster/layout.ts";
import { GroupCommitter } from "../../../src/db/committer.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import type { RpcNode } from "../../../src/rpc/rpc.ts";
import { LocalStore, SYNC_BUCKETS, syncBucketOf } from "../../../src/table/local-store.ts";
import { partitionOfEntry } from "../../../src/table/partition.ts";
import type { TableSchema } from "../../../src/table/schema.ts";
import {
  checkRowHashesAnswer,
  PullBatch,
  pullAnswer,
  PushBatch,
  rowHashesAnswer,
  SYNC_READ_BYTES,
  ShardedTableSync,
  SYNC_BATCH_ENTRIES,
  SYNC_BATCH_WIRE_BYTES,
  SYNC_ENTRY_MAX_WIRE_BYTES,
  SYNC_HASHES_PER_CALL,
  wireBytes,
} from "../../../src/table/sync.ts";
import { encodeEntry } from "../../../src/db/entry-codec.ts";
import { encodeJson, MAX_HEAD_BYTES, RPC_ERR, RpcError } from "../../../src/rpc/rpc.ts";
import { startPair } from "../rpc/helpers.ts";

/** A max register per key. */
interface E {
  pk: string;
  sk: string;
  n: number;
}
const schema: TableSchema<E> = {
  name: "version_block",
  replication: "sharded",
  partitionKey: (e) => e.pk,
  sortKey: (e) => e.sk,
  merge: (a, b) => (b.n > a.n ? b : a),
};

let dir: string;
const dbs: Database[] = [];
const nodes: RpcNode[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-sync-"));
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  for (const db of dbs.splice(0)) db.close();
  await rm(dir, { recursive: true, force: true });
});

/** Both nodes hold every partition, or with `only`, that partition only (a third node holds the rest with the peer). */
function placement(self: string, peer: string, only?: number): Placement {
  const third = "c".repeat(64);
  const writeSets = (p: number) => (only === undefined || p === only ? [[self, peer]] : [[peer, third]]);
  return { selfId: self, writeSets, readNodes: () => [self, peer], allNodes: () => [self, peer, third], quorums: { read: 1, write: 1 } } as unknown as Placement;
}

async function pair(onlyPartitionOfA?: number) {
  const [a, b] = await startPair(nodes);
  const side = (node: RpcNode, peer: RpcNode) => {
    const db = openDatabase(join(dir, `${node.id.slice(0, 8)}.sqlite`), { fsync: false });
    dbs.push(db);
    const store = new LocalStore(schema, db, new GroupCommitter(db), () => 1);
    const received: E[][] = [];
    const only = node === a ? onlyPartitionOfA : undefined;
    const sync = new ShardedTableSync(node, new Map([[schema.name, store as LocalStore<unknown>]]), placement(node.id, peer.id, only), (_t, entries) =>
      received.push(entries as E[]),
    );
    return { store, sync, received, rows: () => db.query(`SELECT count(*) AS n FROM t_version_block`).get() as { n: number } };
  };
  return { a: side(a, b), b: side(b, a) };
}

const entry = (pk: string, i: number, n = 1): E => ({ pk, sk: `k${String(i).padStart(6, "0")}`, n });

test("a pass converges two replicas and moves only the entries that differ", async () => {
  const { a, b } = await pair();
  const common = Array.from({ length: 3000 }, (_, i) => entry(`p${i % 40}`, i));
  await a.store.apply(common);
  await b.store.apply(common);
  const onlyA = Array.from({ length: 30 }, (_, i) => entry(`p${i % 7}`, 10_000 + i));
  const onlyB = Array.from({ length: 20 }, (_, i) => entry(`p${i % 5}`, 20_000 + i));
  // The same keys on both, in different states: each side's state goes over, the merge keeps the larger.
  const newerOnA = Array.from({ length: 10 }, (_, i) => entry(`p${(i * 3) % 40}`, i * 3, 5));
  const newerOnB = Array.from({ length: 10 }, (_, i) => entry(`p${(1000 + i * 3) % 40}`, 1000 + i * 3, 7));
  await a.store.apply([...onlyA, ...newerOnA]);
  await b.store.apply([...onlyB, ...newerOnB]);
  expect(a.store.partitionDigests()).not.toEqual(b.store.partitionDigests());

  const report = await a.sync.syncAll();
  expect(report.errors).toBe(0);
  expect(a.store.partitionDigests()).toEqual(b.store.partitionDigests());
  expect(a.rows().n).toBe(3000 + 30 + 20);
  for (const e of [...newerOnA, ...newerOnB]) {
    expect(a.store.get(e.pk, e.sk)!.n).toBe(e.n);
    expect(b.store.get(e.pk, e.sk)!.n).toBe(e.n);
  }
  // A key held in two states goes both ways (the merge sorts it out): pulled, what only b held
  // and b's state of the 20 changed keys; pushed, what only a held and a's state of them.
  expect(report.entriesPulled).toBe(20 + 20);
  expect(report.entriesPushed).toBe(30 + 20);
  expect(a.received.flat().length).toBe(40);
  expect(b.received.flat().length).toBe(50);

  // In sync: the next pass compares partition digests only.
  const again = await a.sync.syncAll();
  expect(again.bucketsExchanged + again.entriesPulled + again.entriesPushed).toBe(0);
});

test("a partition with more differing entries than a batch moves in batches of at most SYNC_BATCH_ENTRIES", async () => {
  const { a, b } = await pair();
  const n = 2 * SYNC_BATCH_ENTRIES + 500;
  // One partition key: every entry is in the same partition, spread over its sync buckets.
  await a.store.apply(Array.from({ length: n }, (_, i) => entry("one", i)));
  await b.store.apply(Array.from({ length: n }, (_, i) => entry("one", n + i)));
  const report = await a.sync.syncAll();
  expect(report.errors).toBe(0);
  expect(report.entriesPulled).toBe(n);
  expect(report.entriesPushed).toBe(n);
  expect(a.store.partitionDigests()).toEqual(b.store.partitionDigests());
  expect(a.rows().n).toBe(2 * n);
  // Each merge call is one message: a's pulls and b's received pushes.
  for (const batch of [...a.received, ...b.received]) expect(batch.length).toBeLessThanOrEqual(SYNC_BATCH_ENTRIES);
  expect(b.received.length).toBeGreaterThanOrEqual(Math.ceil(n / SYNC_BATCH_ENTRIES));
  expect(report.bucketsExchanged).toBeLessThanOrEqual(SYNC_BUCKETS);
});

test("a pull answer serves ids in the order asked, skips rows gone since, and stops past SYNC_BATCH_WIRE_BYTES of JSON", async () => {
  const db = openDatabase(join(dir, "one.sqlite"), { fsync: false });
  dbs.push(db);
  const store = new LocalStore(schema, db, new GroupCommitter(db), () => 1);
  // Four entries of a quarter of the JSON bound each, in one sync bucket: the fourth goes past it.
  const part = partitionOfEntry(schema, "big");
  const bucket = syncBucketOf(part, "big", entry("big", 0).sk);
  const inBucket: E[] = [];
  for (let i = 0; inBucket.length < 4 && i < 100_000; i++) {
    const e = entry("big", i);
    if (syncBucketOf(part, e.pk, e.sk) === bucket) inBucket.push({ ...e, pad: "~".repeat(SYNC_BATCH_WIRE_BYTES / 4) } as E);
  }
  await store.apply(inBucket);
  const rows = store.bucketRows(bucket);
  expect(rows.length).toBe(4);
  const ids = [999_999, ...rows.map((r) => r.id).reverse()];
  const first = pullAnswer(store, ids);
  expect(first.entries.length).toBe(3);
  expect(first.served).toBe(4); // the id of no row, then three entries
  const stored = (id: number) => store.decodeStored(store.storedById(id)!) as E;
  expect(first.entries.map((e) => e.sk)).toEqual(rows.slice(-3).reverse().map((r) => stored(r.id).sk));
  const rest = pullAnswer(store, ids.slice(first.served));
  expect(rest).toEqual({ entries: [stored(rows[0]!.id)], served: 1 });
});

test("a push batch sends at SYNC_BATCH_ENTRIES entries or SYNC_BATCH_WIRE_BYTES of JSON, never an empty batch", async () => {
  const sent: number[] = [];
  const batch = new PushBatch<unknown>(async (entries) => void sent.push(entries.length));
  for (let i = 0; i < SYNC_BATCH_ENTRIES + 1; i++) expect(await batch.add(i)).toBe(true);
  // Alone over the batch bound (but under the head limit): it goes, alone.
  expect(await batch.add("~".repeat(SYNC_BATCH_WIRE_BYTES))).toBe(true);
  await batch.add(1);
  // No message could carry it: not added.
  expect(await batch.add("~".repeat(SYNC_ENTRY_MAX_WIRE_BYTES))).toBe(false);
  await batch.flush();
  await batch.flush();
  expect(sent).toEqual([SYNC_BATCH_ENTRIES, 1, 1, 1]);
});

/** An entry that is ~27 times larger in JSON than stored: dictionary words are one stored byte each. */
const wordy = (pk: string, i: number): E => ({ ...entry(pk, i), words: Array<string>(700).fill("application/octet-stream") }) as E;

test("entries many times larger in JSON than stored move in messages under the head limit", async () => {
  const { a, b } = await pair();
  const n = SYNC_BATCH_ENTRIES;
  const onA = Array.from({ length: n }, (_, i) => wordy("one", i));
  const onB = Array.from({ length: n }, (_, i) => wordy("one", n + i));
  // What a bound on stored bytes let through: one batch of every entry, far past the head limit.
  const stored = onA.reduce((sum, e) => sum + encodeEntry(e).byteLength, 0);
  expect(stored).toBeLessThan(SYNC_BATCH_WIRE_BYTES / 4);
  expect(encodeJson({ table: schema.name, entries: onA }).byteLength).toBeGreaterThan(MAX_HEAD_BYTES);
  await a.store.apply(onA);
  await b.store.apply(onB);

  const report = await a.sync.syncAll();
  expect(report.errors).toBe(0);
  expect(report.entriesPulled).toBe(n);
  expect(report.entriesPushed).toBe(n);
  expect(a.store.partitionDigests()).toEqual(b.store.partitionDigests());
  // a's pulls (each one answer) and b's received pushes (each one request).
  for (const batch of [...a.received, ...b.received]) expect(encodeJson({ entries: batch, served: batch.length }).byteLength).toBeLessThanOrEqual(SYNC_BATCH_WIRE_BYTES + 1024);
  expect(b.received.length).toBeGreaterThan(1);
  expect(a.received.length).toBeGreaterThan(1);
});

test("a pull answer leaves out, with a warning, an entry no message could carry", () => {
  const huge = { pk: "p", sk: "huge", n: 1, pad: "~".repeat(SYNC_ENTRY_MAX_WIRE_BYTES) };
  const small = entry("p", 1);
  const rows = new Map<number, unknown>([
    [1, huge],
    [2, small],
  ]);
  // Only what pullAnswer reads of a store: bytes by id, decoded (the id stands for the bytes).
  const store = { schema, storedById: (id: number) => (rows.has(id) ? new Uint8Array([id]) : undefined), decodeStored: (v: Uint8Array) => rows.get(v[0]!) };
  expect(wireBytes(huge)).toBeGreaterThan(SYNC_ENTRY_MAX_WIRE_BYTES);
  expect(pullAnswer(store as unknown as LocalStore<unknown>, [1, 2])).toEqual({ entries: [small], served: 2 });
});

test("a pull batch sends at SYNC_BATCH_ENTRIES ids, never an empty batch", async () => {
  const sent: number[] = [];
  const batch = new PullBatch(async (ids) => void sent.push(ids.length));
  for (let i = 1; i <= SYNC_BATCH_ENTRIES + 1; i++) await batch.add(i);
  await batch.flush();
  await batch.flush();
  expect(sent).toEqual([SYNC_BATCH_ENTRIES, 1]);
});

test("a row-hashes answer covers whole buckets, at least one, up to SYNC_HASHES_PER_CALL hashes", async () => {
  const db = openDatabase(join(dir, "hashes.sqlite"), { fsync: false });
  dbs.push(db);
  const store = new LocalStore(schema, db, new GroupCommitter(db), () => 1);
  // One partition key: SYNC_HASHES_PER_CALL + 2 000 rows over the partition's 256 buckets.
  await store.apply(Array.from({ length: SYNC_HASHES_PER_CALL + 2000 }, (_, i) => entry("p", i)));
  const part = partitionOfEntry(schema, "p");
  const buckets = Array.from({ length: SYNC_BUCKETS }, (_, b) => part * SYNC_BUCKETS + b);
  const first = rowHashesAnswer(store as LocalStore<unknown>, buckets);
  expect(first.served).toBeLessThan(SYNC_BUCKETS);
  expect(first.hashes.length).toBe(first.served);
  expect(first.hashes.flat().length).toBeLessThanOrEqual(SYNC_HASHES_PER_CALL);
  const rest = rowHashesAnswer(store as LocalStore<unknown>, buckets.slice(first.served));
  expect(first.served + rest.served).toBe(SYNC_BUCKETS);
  expect(first.hashes.flat().length + rest.hashes.flat().length).toBe(SYNC_HASHES_PER_CALL + 2000);
  expect(first.hashes[0]).toEqual(store.bucketRows(buckets[0]!).map((r) => r.hash));
  expect(first.ids[0]).toEqual(store.bucketRows(buckets[0]!).map((r) => r.id));
});

test("rows that keep no hash (written before migration 7) are read to be hashed, and an answer ends at SYNC_READ_BYTES of them", async () => {
  const db = openDatabase(join(dir, "old-rows.sqlite"), { fsync: false });
  dbs.push(db);
  const store = new LocalStore(schema, db, new GroupCommitter(db), () => 1);
  const pad = "x".repeat(8 * 1024);
  // ~8 KiB entries over the partition's buckets: ~2 000 of them are ~16 MiB, four answers' worth.
  await store.apply(Array.from({ length: 2000 }, (_, i) => ({ ...entry("p", i), pad }) as E));
  const part = partitionOfEntry(schema, "p");
  const buckets = Array.from({ length: SYNC_BUCKETS }, (_, b) => part * SYNC_BUCKETS + b);
  const kept = rowHashesAnswer(store as LocalStore<unknown>, buckets);
  expect(kept.served).toBe(SYNC_BUCKETS); // kept hashes: nothing of the entries is read
  db.exec(`UPDATE t_${schema.name} SET h = NULL`); // as migration 7 leaves older rows
  const old = rowHashesAnswer(store as LocalStore<unknown>, buckets);
  expect(old.served).toBeLessThan(SYNC_BUCKETS);
  const readPerBucket = buckets.map((b) => store.bucketRows(b).reduce((n, r) => n + r.read, 0));
  const readInFirst = readPerBucket.slice(0, old.served).reduce((a, b) => a + b, 0);
  expect(readInFirst - readPerBucket[old.served - 1]!).toBeLessThan(SYNC_READ_BYTES); // it stopped once past the bound
  expect(old.hashes).toEqual(kept.hashes.slice(0, old.served)); // the same hashes, computed from the entries
});

test("a row-hashes answer that does not match the buckets asked is a bad response", () => {
  const h = "0".repeat(32);
  const bad = (answer: { hashes: string[][]; ids: number[][]; served: number }, asked: number) => {
    try {
      checkRowHashesAnswer(answer, asked, "test");
    } catch (err) {
      expect(err).toBeInstanceOf(RpcError);
      return (err as RpcError).code;
    }
    return "accepted";
  };
  expect(bad({ hashes: [[h], []], ids: [[1], []], served: 2 }, 2)).toBe("accepted");
  expect(bad({ hashes: [[h]], ids: [[1]], served: 1 }, 2)).toBe("accepted");
  // More buckets served than asked.
  expect(bad({ hashes: [[h], [h]], ids: [[1], [2]], served: 2 }, 1)).toBe(RPC_ERR.badResponse);
  // Fewer lists than served, or more.
  expect(bad({ hashes: [[h]], ids: [[1], [2]], served: 2 }, 2)).toBe(RPC_ERR.badResponse);
  expect(bad({ hashes: [[h], [h]], ids: [[1]], served: 2 }, 2)).toBe(RPC_ERR.badResponse);
  expect(bad({ hashes: [[h], [h]], ids: [[1], [2]], served: 1 }, 2)).toBe(RPC_ERR.badResponse);
  // A bucket's hashes and row ids of different lengths.
  expect(bad({ hashes: [[h, h]], ids: [[1]], served: 1 }, 1)).toBe(RPC_ERR.badResponse);
  expect(bad({ hashes: [[h]], ids: [[1, 2]], served: 1 }, 1)).toBe(RPC_ERR.badResponse);
});

/**
 * Node a with an empty store, and b, a fake peer that differs from it in partition 3, bucket 0,
 * and answers row hashes and pulls as told; `asked` lists the endpoints b was called on.
 */
async function fakePeer(rowHashes: unknown, pull: unknown) {
  const [a, b] = await startPair(nodes);
  const db = openDatabase(join(dir, "a.sqlite"), { fsync: false });
  dbs.push(db);
  const store = new LocalStore(schema, db, new GroupCommitter(db), () => 1);
  const sync = new ShardedTableSync(a, new Map([[schema.name, store as LocalStore<unknown>]]), placement(a.id, b.id));
  const digest = "ab".repeat(32);
  const asked: string[] = [];
  const answer = (name: string, value: unknown) =>
    b.handle(name, async () => {
      asked.push(name);
      return { payload: encodeJson(value) };
    });
  answer("table/partition-digests", { digests: Array.from({ length: 256 }, (_, p) => (p === 3 ? digest : "")) });
  answer("table/bucket-digests", { digests: Array.from({ length: SYNC_BUCKETS }, (_, k) => (k === 0 ? digest : "")) });
  answer("table/bucket-row-hashes", rowHashes);
  answer("table/bucket-pull", pull);
  return { sync, store, asked };
}

test("a pass refuses a peer's row-hashes answer with more hashes than row ids, and pulls nothing", async () => {
  const { sync, asked } = await fakePeer({ hashes: [["1".repeat(32), "2".repeat(32)]], ids: [[7]], served: 1 }, { entries: [entry("p", 1)], served: 1 });
  const report = await sync.syncAll();
  expect(report.errors).toBe(1);
  expect(report.entriesPulled).toBe(0);
  expect(asked).toEqual(["table/partition-digests", "table/bucket-digests", "table/bucket-row-hashes"]);
});

test("a pass refuses a pull answer with more entries than ids served", async () => {
  const { sync, store } = await fakePeer({ hashes: [["1".repeat(32)]], ids: [[7]], served: 1 }, { entries: [entry("p", 1), entry("p", 2)], served: 1 });
  const report = await sync.syncAll();
  expect(report.errors).toBe(1);
  expect(report.entriesPulled).toBe(0);
  expect(store.get("p", entry("p", 1).sk)).toBeUndefined();
});

test("a pull merges only entries of the buckets reconciled: a row id the peer reused brings another entry", async () => {
  // Two keys of different partitions; a holds (with b) only the first one's.
  const held = entry("held", 1);
  let other = entry("other0", 1);
  for (let i = 1; partitionOfEntry(schema, other.pk) === partitionOfEntry(schema, held.pk); i++) other = entry(`other${i}`, 1);
  const { a, b } = await pair(partitionOfEntry(schema, held.pk));
  await b.store.apply([held, other]);
  const idOf = (e: E) => b.store.bucketRows(syncBucketOf(partitionOfEntry(schema, e.pk), e.pk, e.sk)).find((r) => (b.store.decodeStored(b.store.storedById(r.id)!) as E).pk === e.pk)!.id;
  const heldId = idOf(held);
  const otherId = idOf(other);
  // Between b's row-hashes answer and a's pull, b deleted `held` and its id went to `other`.
  const storedById = b.store.storedById.bind(b.store);
  b.store.storedById = (id: number) => storedById(id === heldId ? otherId : id);

  const report = await a.sync.syncAll();
  expect(report.errors).toBe(0);
  expect(report.entriesPulled).toBe(0);
  expect(a.store.get(other.pk, other.sk)).toBeUndefined();
  expect(a.rows().n).toBe(0);

  // Ids as answered again: the next pass pulls the entry.
  b.store.storedById = storedById;
  const again = await a.sync.syncAll();
  expect(again.entriesPulled).toBe(1);
  expect(a.store.get(held.pk, held.sk)).toEqual(held);
  expect(a.store.get(other.pk, other.sk)).toBeUndefined();
});
