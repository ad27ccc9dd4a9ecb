// Table messages between nodes are checked like client input: a request to the table endpoints
// (insert, sync push, full push, digests) that does not match its schema, names a table the node
// does not have, or carries an entry that does not match its table's entry schema
// (model/entry-schemas.ts) is answered with a bad-request error and leaves the store untouched;
// an answer with a malformed entry is refused by the caller and never merged. Real nodes on
// loopback, real Models (so the production wiring of the entry checks is what is tested).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, PARTITION_COUNT, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { Model } from "../../../src/model/model.ts";
import { encodeJson, RPC_ERR, RpcError, type RpcNode } from "../../../src/rpc/rpc.ts";
import { FullTableSync } from "../../../src/table/full-sync.ts";
import { RpcReplicas, serveTables } from "../../../src/table/rpc-replicas.ts";
import { ShardedTableSync } from "../../../src/table/sync.ts";
import { HybridClock } from "../../../src/util/hlc.ts";
import { captureStderr, startPair } from "../rpc/helpers.ts";

let dir: string;
const dbs: Database[] = [];
const nodes: RpcNode[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-peer-entries-"));
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  for (const db of dbs.splice(0)) db.close();
  await rm(dir, { recursive: true, force: true });
});

const HASH = "ab".repeat(32);
const UUID = "cd".repeat(32);
const clock = new HybridClock();

function modelOn(node: RpcNode, name: string, holder: string = node.id, remote?: RpcReplicas): Model {
  const db = openDatabase(join(dir, `${name}.sqlite`), { fsync: false });
  dbs.push(db);
  return new Model(db, new LayoutPlacement(node.id, singleNodeLayout(holder), "consistent"), remote, clock);
}

/** Node b serves its Model's tables (all the table endpoints); a calls them. */
async function served() {
  const [a, b] = await startPair(nodes);
  const model = modelOn(b, "b");
  const stores = model.localStores();
  const received: [string, unknown[]][] = [];
  serveTables(b, clock, stores);
  new ShardedTableSync(b, stores, model.placement, (table, entries) => received.push([table, entries]));
  new FullTableSync(b, model.db, stores, () => []);
  const rows = (table: string) => (model.db.query(`SELECT count(*) AS n FROM t_${table}`).get() as { n: number }).n;
  return { a, b, model, received, rows };
}

async function failure(p: Promise<unknown>): Promise<Error> {
  const { result } = await captureStderr(() =>
    p.then(
      () => undefined,
      (e: unknown) => e,
    ),
  );
  expect(result).toBeInstanceOf(Error);
  return result as Error;
}

async function refusal(p: Promise<unknown>): Promise<RpcError> {
  const err = await failure(p);
  expect(err).toBeInstanceOf(RpcError);
  return err as RpcError;
}

const goodRef = { hash: HASH, version: UUID, deleted: false };

describe("a peer's table requests are checked before anything is applied", () => {
  const badInserts: [string, string, unknown[], RegExp][] = [
    ["a block reference with a malformed hash", "block_ref", [goodRef, { hash: "../../x", version: UUID, deleted: false }], /block_ref entry 1 is malformed: \/hash: Expected string to match/],
    ["a block reference with a version that is not a uuid", "block_ref", [{ hash: HASH, version: "v1", deleted: false }], /block_ref entry 0 is malformed: \/version: /],
    ["a version entry missing its deleted flag", "version", [{ uuid: UUID, backlink: null }], /version entry 0 is malformed: \/deleted: Expected required property/],
    [
      "an object version in an unknown state",
      "object",
      [{ bucketId: "b", key: "k", versions: [{ uuid: UUID, timestamp: 1, state: { kind: "exploded" } }] }],
      /object entry 0 is malformed: \/versions\/0\/state: /,
    ],
    [
      "a complete object whose size is text",
      "object",
      [{ bucketId: "b", key: "k", versions: [{ uuid: UUID, timestamp: 1, state: { kind: "complete", data: { kind: "inline", meta: { size: "5", etag: "e", headers: [] }, base64: "" } } }] }],
      /object entry 0 is malformed: \/versions\/0\/state/,
    ],
    ["a key entry that is not an object", "key", ["GK123"], /key entry 0 is malformed: \/: Expected object/],
  ];
  for (const [what, table, entries, message] of badInserts) {
    test(`table/insert with ${what} is refused; the store is untouched`, async () => {
      const { a, b, rows } = await served();
      const err = await refusal(a.call(b.id, "table/insert", encodeJson({ table, entries, ts: clock.now() })));
      expect(err.code).toBe(RPC_ERR.badRequest);
      expect(err.message).toMatch(/^endpoint 'table\/insert': /);
      expect(err.message).toMatch(message);
      expect(rows(table)).toBe(0);
    });
  }

  test("a valid insert is applied, and its merged entries reported", async () => {
    const { a, b, model } = await served();
    const merged = await new RpcReplicas(a, clock).insert(b.id, "block_ref", [goodRef], true);
    expect(merged).toEqual([goodRef]);
    expect(model.blockRefs.local.get(HASH, UUID)).toEqual(goodRef);
  });

  test("an envelope missing a field, or naming an unknown table, is refused", async () => {
    const { a, b, rows } = await served();
    const noTs = await refusal(a.call(b.id, "table/insert", encodeJson({ table: "block_ref", entries: [goodRef] })));
    expect(noTs.code).toBe(RPC_ERR.badRequest);
    expect(noTs.message).toMatch(/endpoint 'table\/insert': invalid request: \/ts: Expected required property/);
    const unknown = await refusal(a.call(b.id, "table/insert", encodeJson({ table: "nope", entries: [goodRef], ts: 1 })));
    expect(unknown.code).toBe(RPC_ERR.badRequest);
    expect(unknown.message).toBe("endpoint 'table/insert': no such table 'nope' here");
    const range = await refusal(a.call(b.id, "table/range", encodeJson({ table: "object", pk: "b", q: { limit: -1 }, ts: 1 })));
    expect(range.message).toMatch(/endpoint 'table\/range': invalid request: \/q\/limit: Expected integer to be greater or equal to 0/);
    expect(rows("block_ref")).toBe(0);
  });

  test("a sync push with a malformed entry is refused: nothing merged, no block resync started", async () => {
    const { a, b, rows, received } = await served();
    const err = await refusal(a.call(b.id, "table/bucket-push", encodeJson({ table: "block_ref", entries: [goodRef, { hash: HASH, deleted: false }] })));
    expect(err.code).toBe(RPC_ERR.badRequest);
    expect(err.message).toMatch(/endpoint 'table\/bucket-push': block_ref entry 1 is malformed: \/version: Expected required property/);
    expect(rows("block_ref")).toBe(0);
    expect(received).toEqual([]);
    // A full-copy table is not a sync table; a valid push works.
    const full = await refusal(a.call(b.id, "table/bucket-push", encodeJson({ table: "key", entries: [] })));
    expect(full.message).toBe("endpoint 'table/bucket-push': no such table 'key' here");
    await a.call(b.id, "table/bucket-push", encodeJson({ table: "block_ref", entries: [goodRef] }));
    expect(rows("block_ref")).toBe(1);
    expect(received).toEqual([["block_ref", [goodRef]]]);
  });

  test("digest requests out of range and full pushes of malformed entries are refused", async () => {
    const { a, b, rows } = await served();
    const part = await refusal(a.call(b.id, "table/bucket-digests", encodeJson({ table: "object", partition: PARTITION_COUNT })));
    expect(part.message).toMatch(/endpoint 'table\/bucket-digests': invalid request: \/partition: Expected integer to be less or equal to 255/);
    const key = { id: "GK1", secret: "s", created: 1, deleted: false, name: { ts: 1, v: "k" }, allowCreateBucket: { ts: 1, v: "yes" } };
    const push = await refusal(a.call(b.id, "table/full-push", encodeJson({ table: "key", entries: [key] })));
    expect(push.message).toMatch(/endpoint 'table\/full-push': key entry 0 is malformed: \/allowCreateBucket\/v: Expected boolean/);
    expect(rows("key")).toBe(0);
    // SQL is built from the table name: only full-copy tables this node has pass.
    const sql = await refusal(a.call(b.id, "table/full-digest", encodeJson({ table: "key; DROP TABLE t_key" })));
    expect(sql.message).toBe("endpoint 'table/full-digest': no such table 'key; DROP TABLE t_key' here");
  });
});

describe("a peer's answers are checked before they are merged or returned", () => {
  test("a read answered with a malformed entry fails, and nothing is merged or repaired", async () => {
    const [a, b] = await startPair(nodes);
    // a holds nothing; its reads go to b, a peer that answers with entries of another shape.
    const model = modelOn(a, "a", b.id, new RpcReplicas(a, clock));
    const inserts: unknown[] = [];
    b.handle("table/get", async () => ({ payload: encodeJson({ entry: { hash: HASH, version: UUID, deleted: "no" }, ts: 1 }) }));
    b.handle("table/range", async () => ({ payload: encodeJson({ entries: [goodRef, { hash: 7, version: UUID, deleted: false }], ts: 1 }) }));
    b.handle("table/insert", async ({ payload }) => (inserts.push(payload), { payload: encodeJson({ ts: 1 }) }));
    // The replica counts as failed: with a read quorum of one, the read fails.
    const get = await failure(model.blockRefs.get(HASH, UUID));
    expect(get.message).toMatch(/block_ref get on [0-9a-f]{16}: block_ref entry 0 is malformed: \/deleted: Expected boolean/);
    const range = await failure(model.blockRefs.range(HASH, { limit: 10 }));
    expect(range.message).toMatch(/block_ref range on [0-9a-f]{16}: block_ref entry 1 is malformed: \/hash: Expected string/);
    expect(model.blockRefs.local.get(HASH, UUID)).toBeUndefined();
    expect(inserts).toEqual([]);
  });

  test("a malformed envelope in an answer is refused with bad-response", async () => {
    const [a, b] = await startPair(nodes);
    b.handle("table/range", async () => ({ payload: encodeJson({ entries: "none", ts: 1 }) }));
    const err = await refusal(new RpcReplicas(a, clock).range(b.id, "block_ref", HASH, { limit: 1 }));
    expect(err.code).toBe(RPC_ERR.badResponse);
    expect(err.message).toMatch(/endpoint 'table\/range': invalid response: \/entries: Expected array/);
  });

  test("full-copy sync does not merge a peer's malformed dump, nor push back to it", async () => {
    const [a, b] = await startPair(nodes);
    const model = modelOn(a, "a");
    const pushes: unknown[] = [];
    b.handle("table/full-digest", async () => ({ payload: encodeJson({ digest: "different" }) }));
    b.handle("table/full-dump", async () => ({ payload: encodeJson({ entries: [{ id: "GK1", secret: 5 }] }) }));
    b.handle("table/full-push", async ({ payload }) => (pushes.push(payload), { payload: encodeJson({}) }));
    const sync = new FullTableSync(a, model.db, model.localStores(), () => [b.id]);
    await sync.syncAll();
    expect((model.db.query(`SELECT count(*) AS n FROM t_key`).get() as { n: number }).n).toBe(0);
    expect(pushes).toEqual([]);
    expect(sync.stats.info().errors).toBeGreaterThan(0);
  });
});

test("table messages carry the clock's time: a hundred reads within one millisecond leave both clocks where they were", async () => {
  const [a, b] = await startPair(nodes);
  const frozen = () => 1_000_000; // a wall clock that does not move: every call is in one millisecond
  const clockA = new HybridClock(frozen);
  const clockB = new HybridClock(frozen);
  const model = modelOn(b, "frozen-b");
  serveTables(b, clockB, model.localStores());
  const replicas = new RpcReplicas(a, clockA);
  for (let i = 0; i < 100; i++) await replicas.get(b.id, "bucket", `b${i}`, "");
  // A timestamp taken now on each side is one past what it saw (the wall), not a hundred or more
  // (a stamp per message and per reply made it 1 000 200 and 1 000 101).
  expect(clockA.now()).toBe(1_000_001);
  expect(clockB.now()).toBe(1_000_001);
});
