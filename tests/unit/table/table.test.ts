import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { GroupCommitter } from "../../../src/db/committer.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { encodeEntry } from "../../../src/db/entry-codec.ts";
import { TableRows } from "../../../src/db/table-rows.ts";
import { LocalStore } from "../../../src/table/local-store.ts";
import type { HookContext, TableSchema } from "../../../src/table/schema.ts";
import { Table } from "../../../src/table/table.ts";
import { QuorumError } from "../../../src/table/quorum.ts";
import { partitionOfKey } from "../../../src/table/partition.ts";

/** A test CRDT: a grow-only max counter plus a set of tags. */
interface E {
  pk: string;
  sk: string;
  n: number;
  tags: string[];
}

interface HookCall {
  old: E | undefined;
  incoming: E;
  merged: E;
}

function schema(name: "object" | "bucket", replication: "sharded" | "full", calls: HookCall[]): TableSchema<E> {
  return {
    name,
    replication,
    partitionKey: (e) => e.pk,
    sortKey: (e) => e.sk,
    merge: (a, b) => ({ pk: a.pk, sk: a.sk, n: Math.max(a.n, b.n), tags: [...new Set([...a.tags, ...b.tags])].sort() }),
    onMerge(old, incoming, merged, ctx: HookContext) {
      calls.push({ old, incoming, merged });
      if (incoming.tags.includes("cascade")) ctx.enqueue("version", { uuid: `${merged.pk}/${merged.sk}`, deleted: true, backlink: null });
    },
  };
}

const e = (pk: string, sk: string, n = 0, tags: string[] = []): E => ({ pk, sk, n, tags });

let dir: string;
let db: Database;
let committer: GroupCommitter;
const placement = new LayoutPlacement("self", singleNodeLayout("self"), "consistent");

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-table-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
  committer = new GroupCommitter(db);
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

function make(replication: "sharded" | "full" = "sharded") {
  const calls: HookCall[] = [];
  let clock = 1000;
  const local = new LocalStore(schema(replication === "full" ? "bucket" : "object", replication, calls), db, committer, () => ++clock);
  return { table: new Table(local, placement), local, calls };
}

describe("Table on a single-node layout", () => {
  test("a local read that fails is the quorum's failure (503 to a client), not an internal error", async () => {
    const { table, local } = make();
    await table.insert(e("b1", "k1", 5));
    local.get = () => {
      throw new Error("database is locked");
    };
    const err = await table.get("b1", "k1").catch((x: unknown) => x);
    expect(err).toBeInstanceOf(QuorumError);
    expect((err as Error).message).toContain("database is locked");
  });

  test("insert then get; a missing entry is undefined", async () => {
    const { table } = make();
    await table.insert(e("b1", "k1", 5));
    expect(await table.get("b1", "k1")).toEqual(e("b1", "k1", 5));
    expect(await table.get("b1", "nope")).toBeUndefined();
    expect(await table.get("b2", "k1")).toBeUndefined();
    // Persisted: in the table's row, in the stored format.
    expect(TableRows.of(db, "object").get("b1", "k1")!.v).toEqual(encodeEntry(e("b1", "k1", 5)));
  });

  test("re-insert merges with the stored entry (CRDT join)", async () => {
    const { table } = make();
    await table.insert(e("b", "k", 5, ["x"]));
    await table.insert(e("b", "k", 3, ["y"]));
    expect(await table.get("b", "k")).toEqual(e("b", "k", 5, ["x", "y"]));
    await table.insert(e("b", "k", 9, []));
    expect(await table.get("b", "k")).toEqual(e("b", "k", 9, ["x", "y"]));
  });

  test("several entries in one insert, over several partitions", async () => {
    const { table } = make();
    const pks = ["alpha", "beta", "gamma", "delta"];
    expect(new Set(pks.map(partitionOfKey)).size).toBeGreaterThan(1);
    await table.insert(pks.flatMap((pk) => [e(pk, "a", 1), e(pk, "b", 2)]));
    for (const pk of pks) expect((await table.range(pk, { limit: 10 })).map((x) => x.sk)).toEqual(["a", "b"]);
  });

  test("the same key twice in one insert is merged", async () => {
    const { table } = make();
    await table.insert([e("p", "k", 1, ["a"]), e("p", "k", 2, ["b"])]);
    expect(await table.get("p", "k")).toEqual(e("p", "k", 2, ["a", "b"]));
  });

  test("range: sort-key order, inclusive start, exclusive end, limit, one partition key only", async () => {
    const { table } = make();
    const keys = ["a", "a/1", "a/2", "b", "b\u0000", "ba", "c", "z", "é"]; // sqlite BINARY = UTF-8 byte order
    await table.insert([...keys].reverse().map((k) => e("p", k)));
    await table.insert([e("other", "a"), e("other", "b"), e("p2", "b")]);
    const sks = async (q: Parameters<typeof table.range>[1]) => (await table.range("p", q)).map((x) => x.sk);
    expect(await sks({ limit: 100 })).toEqual(keys);
    expect(await sks({ start: "a/", limit: 100 })).toEqual(["a/1", "a/2", "b", "b\u0000", "ba", "c", "z", "é"]);
    expect(await sks({ start: "a/", end: "a0", limit: 100 })).toEqual(["a/1", "a/2"]);
    expect(await sks({ start: "b", end: "c", limit: 100 })).toEqual(["b", "b\u0000", "ba"]);
    expect(await sks({ start: "b", end: "c", limit: 2 })).toEqual(["b", "b\u0000"]);
    expect(await sks({ end: "b", limit: 100 })).toEqual(["a", "a/1", "a/2"]);
    expect(await sks({ start: "c", limit: 100 })).toEqual(["c", "z", "é"]);
    expect(await sks({ start: "zz", limit: 100 })).toEqual(["é"]);
    expect(await sks({ limit: 0 })).toEqual([]);
    expect(await sks({ start: "x", end: "b", limit: 100 })).toEqual([]);
    expect(await table.range("missing", { limit: 10 })).toEqual([]);
  });

  test("onMerge runs on every apply, with old / incoming / merged, even when nothing changed", async () => {
    const { table, calls } = make();
    await table.insert(e("p", "k", 1));
    await table.insert(e("p", "k", 3));
    await table.insert(e("p", "k", 2)); // changes nothing
    expect(calls).toEqual([
      { old: undefined, incoming: e("p", "k", 1), merged: e("p", "k", 1) },
      { old: e("p", "k", 1), incoming: e("p", "k", 3), merged: e("p", "k", 3) },
      { old: e("p", "k", 3), incoming: e("p", "k", 2), merged: e("p", "k", 3) },
    ]);
  });

  test("hook writes (enqueue) commit in the same transaction as the entry", async () => {
    const { table } = make();
    await table.insert(e("p", "k", 1, ["cascade"]));
    const rows = db.query(`SELECT tbl, v FROM insert_queue`).all() as { tbl: string; v: string }[];
    expect(rows.map((r) => [r.tbl, JSON.parse(r.v)])).toEqual([["version", { uuid: "p/k", deleted: true, backlink: null }]]);
  });

  test("a hook that throws fails the insert and leaves nothing behind", async () => {
    const calls: HookCall[] = [];
    const s: TableSchema<E> = {
      ...schema("object", "sharded", calls),
      onMerge(_o, incoming, _m, ctx) {
        ctx.enqueue("version", { uuid: "x", deleted: true, backlink: null });
        if (incoming.n < 0) throw new Error("hook refused");
      },
    };
    const table = new Table(new LocalStore(s, db, committer, () => 1), placement);
    const good = table.insert(e("p", "ok", 1));
    const bad = table.insert([e("p", "first", 1), e("p", "neg", -1)]);
    await good;
    await expect(bad).rejects.toThrow("hook refused");
    expect(await table.get("p", "ok")).toEqual(e("p", "ok", 1));
    expect(await table.get("p", "first")).toBeUndefined();
    expect((db.query(`SELECT count(*) AS n FROM insert_queue`).get() as { n: number }).n).toBe(1);
  });

  test("full-copy table: getLocal and range read the local copy, the cache follows writes", async () => {
    const { table, local } = make("full");
    expect(table.getLocal("", "k")).toBeUndefined(); // caches the miss
    await table.insert(e("", "k", 1, ["a"]));
    expect(table.getLocal("", "k")).toEqual(e("", "k", 1, ["a"]));
    await table.insert(e("", "k", 4, ["b"]));
    expect(table.getLocal("", "k")).toEqual(e("", "k", 4, ["a", "b"]));
    expect(await table.get("", "k")).toEqual(e("", "k", 4, ["a", "b"]));
    expect(local.range("", { limit: 10 })).toEqual([e("", "k", 4, ["a", "b"])]);
    expect(db.query(`SELECT count(*) AS n FROM t_bucket`).get()).toEqual({ n: 1 });
  });

  test("full-copy table: a rolled-back write does not leave its value in the cache", () => {
    const { local } = make("full");
    local.applyInTransaction([e("", "k", 1)]);
    expect(local.get("", "k")).toEqual(e("", "k", 1));
    expect(() =>
      db.transaction(() => {
        local.applyInTransaction([e("", "k", 7)]);
        throw new Error("rollback");
      })(),
    ).toThrow("rollback");
    expect(local.get("", "k")).toEqual(e("", "k", 1));
  });

  test("a node that is not self, with no RPC route, is an error", async () => {
    const other = new LayoutPlacement("self", { ...singleNodeLayout("elsewhere") }, "consistent");
    const local = new LocalStore(schema("object", "sharded", []), db, committer, () => 1);
    const table = new Table(local, other);
    await expect(table.insert(e("p", "k"))).rejects.toThrow(/no RPC route/);
    await expect(table.get("p", "k")).rejects.toThrow(/no RPC route/);
  });
});

describe("read repair (three replicas, consistent mode: R = 2)", () => {
  const nodes = ["self", "n2", "n3"];
  const layout = {
    version: 1,
    replicationFactor: 3,
    roles: Object.fromEntries(nodes.map((n, i) => [n, { zone: `z${i}`, capacity: 1, tags: [] }])),
    ring: Array.from({ length: 256 }, () => [...nodes]),
  };

  function cluster() {
    const stores = new Map<string, LocalStore<E>>();
    const dbs: Database[] = [];
    for (const n of nodes) {
      const d = n === "self" ? db : openDatabase(join(dir, `${n}.sqlite`), { fsync: false });
      if (n !== "self") dbs.push(d);
      stores.set(n, new LocalStore(schema("object", "sharded", []), d, n === "self" ? committer : new GroupCommitter(d), () => 1));
    }
    const down = new Set<string>();
    const remote = {
      async insert(node: string, _t: string, entries: unknown[]) {
        if (down.has(node)) throw new Error(`${node} is down`);
        await stores.get(node)!.apply(entries as E[]);
      },
      async get(node: string, _t: string, pk: string, sk: string) {
        if (down.has(node)) throw new Error(`${node} is down`);
        return stores.get(node)!.get(pk, sk);
      },
      async range(node: string, _t: string, pk: string, q: { start?: string; end?: string; limit: number }) {
        if (down.has(node)) throw new Error(`${node} is down`);
        return stores.get(node)!.range(pk, q);
      },
    };
    const table = new Table(stores.get("self")!, new LayoutPlacement("self", layout, "consistent"), remote);
    const settle = async () => {
      for (let i = 0; i < 20; i++) await Bun.sleep(1);
    };
    return { table, stores, down, settle, close: () => dbs.forEach((d) => d.close()) };
  }

  test("a replica that answered a get with an older or missing entry receives the merged one", async () => {
    const c = cluster();
    try {
      await c.stores.get("self")!.apply([e("p", "k", 2, ["a"])]);
      await c.stores.get("n3")!.apply([e("p", "k", 1, ["b"])]);
      c.down.add("n2"); // so that self and n3 make the quorum
      expect(await c.table.get("p", "k")).toEqual(e("p", "k", 2, ["a", "b"]));
      await c.settle();
      expect(c.stores.get("n3")!.get("p", "k")).toEqual(e("p", "k", 2, ["a", "b"]));
      expect(c.stores.get("self")!.get("p", "k")).toEqual(e("p", "k", 2, ["a", "b"]));
      // A missing entry is repaired too.
      await c.stores.get("self")!.apply([e("p", "only-self", 5)]);
      expect(await c.table.get("p", "only-self")).toEqual(e("p", "only-self", 5));
      await c.settle();
      expect(c.stores.get("n3")!.get("p", "only-self")).toEqual(e("p", "only-self", 5));
    } finally {
      c.close();
    }
  });

  test("replicas that agree are not written to", async () => {
    const c = cluster();
    try {
      await c.table.insert(e("p", "k", 3, ["x"]));
      await c.settle();
      const before = c.table.repairs.sent;
      expect(await c.table.get("p", "k")).toEqual(e("p", "k", 3, ["x"]));
      expect((await c.table.range("p", { limit: 10 })).length).toBe(1);
      expect(c.table.repairs.sent).toBe(before);
    } finally {
      c.close();
    }
  });

  test("a range repairs entries a replica lacks or holds older, within what it could return", async () => {
    const c = cluster();
    try {
      await c.stores.get("self")!.apply([e("p", "a", 2), e("p", "b", 1), e("p", "c", 1)]);
      await c.stores.get("n3")!.apply([e("p", "a", 1)]);
      c.down.add("n2");
      expect((await c.table.range("p", { limit: 10 })).map((x) => [x.sk, x.n])).toEqual([["a", 2], ["b", 1], ["c", 1]]);
      await c.settle();
      expect(c.stores.get("n3")!.range("p", { limit: 10 }).map((x) => [x.sk, x.n])).toEqual([["a", 2], ["b", 1], ["c", 1]]);
    } finally {
      c.close();
    }
  });
});

test("block references are placed in their block's partition, other sharded tables by a hash of the key", async () => {
  const { blockRefSchema } = await import("../../../src/model/block-ref.ts");
  const { objectSchema } = await import("../../../src/model/object.ts");
  const { partitionOfEntry } = await import("../../../src/table/partition.ts");
  const { partitionOfHashHex } = await import("../../../src/cluster/layout.ts");
  for (let i = 0; i < 50; i++) {
    const hash = [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, "0")).join("");
    expect(partitionOfEntry(blockRefSchema, hash)).toBe(partitionOfHashHex(hash));
    expect(partitionOfEntry(objectSchema, hash)).toBe(partitionOfKey(hash));
  }
});
