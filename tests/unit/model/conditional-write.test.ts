// The per-key register of conditional writes on three real Models (three sqlite files) wired
// to each other in process: acceptor rules, one winner among racing writers, a chosen value
// whose writer stopped before writing it, and acceptors out of reach.
import { afterEach, beforeEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Placement } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { Model } from "../../../src/model/model.ts";
import { visibleVersion, type ObjectEntry, type ObjectVersion, type VisibleVersion } from "../../../src/model/object.ts";
import { ConditionalConflictError, ConditionalUnavailableError, installConditionally } from "../../../src/model/conditional-write.ts";
import type { CasPeers } from "../../../src/table/cas-register.ts";
import type { RemoteReplicas } from "../../../src/table/table.ts";
import { partitionOfEntry } from "../../../src/table/partition.ts";
import { readObject } from "../../../src/model/pending.ts";
import { proposedVersionValidator } from "../../../src/model/entry-schemas.ts";
import { objectSchema } from "../../../src/model/object.ts";

setDefaultTimeout(30_000);
const NODES = ["n1", "n2", "n3"];
let dir: string;
let dbs: Database[];
let models: Map<string, Model>;
/** Nodes that do not answer (their calls fail at once, as a closed connection would). */
let down: Set<string>;
/** Nodes whose promises carry a malformed entry (a buggy peer). */
let tampered: Set<string>;

function reach(node: string): Model {
  if (down.has(node)) throw new Error(`node ${node} is not connected`);
  return models.get(node)!;
}

const remote: RemoteReplicas = {
  insert: async (node, table, entries, report) => {
    const merged = await reach(node).localStores().get(table)!.apply(entries);
    return report ? merged : undefined;
  },
  get: async (node, table, pk, sk) => reach(node).localStores().get(table)!.get(pk, sk),
  range: async (node, table, pk, q) => reach(node).localStores().get(table)!.range(pk, q),
};

const casPeers: CasPeers = {
  prepare: async (node, pk, sk, ballot) => {
    const reply = await reach(node).casAcceptor.prepare(pk, sk, ballot);
    return tampered.has(node) && reply.ok ? { ...reply, entry: { bucketId: pk, key: sk, versions: 5 } } : reply;
  },
  accept: async (node, pk, sk, ballot, value) => reach(node).casAcceptor.accept(pk, sk, ballot, value),
  acceptedId: async (node, pk, sk) => reach(node).casAcceptor.acceptedId(pk, sk),
  learn: async (node, pk, sk, ballot) => reach(node).casAcceptor.learn(pk, sk, ballot),
};

function placementOf(self: string): Placement {
  return {
    selfId: self,
    writeSets: () => [NODES],
    readNodes: () => [self, ...NODES.filter((n) => n !== self)],
    allNodes: () => NODES,
    quorums: { read: 2, write: 2 },
  };
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-cas-"));
  down = new Set();
  tampered = new Set();
  dbs = [];
  models = new Map();
  for (const n of NODES) {
    const db = openDatabase(join(dir, `${n}.sqlite`), { fsync: false });
    dbs.push(db);
    models.set(n, new Model(db, placementOf(n), remote, undefined, { casPeers }));
  }
});
afterEach(async () => {
  for (const m of models.values()) await m.stop();
  for (const db of dbs) db.close();
  await rm(dir, { recursive: true, force: true });
});

const target = { bucketId: "b".repeat(64), key: "lock" };
const inline = (text: string) => ({ kind: "inline" as const, meta: { size: text.length, etag: text.padEnd(32, "0").slice(0, 32), headers: [] }, base64: Buffer.from(text).toString("base64") });
const version = (uuid: string, text: string, timestamp = 1): ObjectVersion => ({ uuid, timestamp, state: { kind: "complete", data: inline(text) } });

/** No test here writes a one-block version: a presence check would be a bug. */
const services = (n: string) => ({ model: models.get(n)!, blocks: { presence: async (): Promise<never> => { throw new Error("unexpected presence check"); } } });

class Refused extends Error {}
const ifNoneMatchStar = (current: VisibleVersion | undefined) => {
  if (current) throw new Refused("exists");
};

/** The visible version as a GET sees it: read from a quorum, proposed versions judged by the register. */
const current = async (node = "n1", key = target.key) => visibleVersion(await readObject(services(node), target.bucketId, key));

describe("acceptor", () => {
  test("promises only above its promise, accepts only at or above it, and says which ballot it promised", async () => {
    const a = models.get("n1")!.casAcceptor;
    const first = await a.prepare("p", "s", { ts: 10, node: "n2" });
    expect(first).toEqual({ ok: true, accepted: null, entry: null });
    expect(await a.prepare("p", "s", { ts: 10, node: "n1" })).toEqual({ ok: false, promised: { ts: 10, node: "n2" } });
    expect(await a.accept("p", "s", { ts: 9, node: "n3" }, version("low", "low"))).toEqual({ ok: false, promised: { ts: 10, node: "n2" } });
    expect(await a.accept("p", "s", { ts: 10, node: "n2" }, version("v", "v"))).toEqual({ ok: true });
    const again = await a.prepare("p", "s", { ts: 11, node: "n1" });
    expect(again).toMatchObject({ ok: true, accepted: { ballot: { ts: 10, node: "n2" }, value: version("v", "v") } });
    // The acceptance marked this node's entry with the version, proposed (invisible).
    expect((again as { entry: ObjectEntry }).entry.versions).toEqual([{ uuid: "v", timestamp: 1, state: { kind: "proposed", data: inline("v"), ballot: { ts: 10, node: "n2" } } }]);
  });

  test("a peer's proposal must be a complete object version", () => {
    const uuid = "a".repeat(64);
    const ok = (v: unknown) => proposedVersionValidator.problem(v);
    expect(ok({ uuid, timestamp: 1, state: { kind: "complete", data: { kind: "deleteMarker" } } })).toBeUndefined();
    expect(ok({ uuid, timestamp: 1, state: { kind: "uploading", multipart: false, headers: [], uploader: "x" } })).toMatch(/\/state/);
    expect(ok({ uuid: "not-a-uuid", timestamp: 1, state: { kind: "complete", data: { kind: "deleteMarker" } } })).toMatch(/\/uuid/);
    expect(ok("x")).toBeDefined();
  });
});

describe("register", () => {
  test("tells whether an acceptance is chosen, superseded, not chosen, or cannot tell", async () => {
    const m1 = models.get("n1")!;
    const partition = partitionOfEntry(objectSchema, target.bucketId);
    const b1 = m1.cas.newBallot();
    await m1.cas.prepare(partition, "p", "k", b1);
    await models.get("n1")!.casAcceptor.accept("p", "k", b1, version("v", "v"));
    expect(await m1.cas.chosenAt(partition, "p", "k", "v", b1)).toBe("not-chosen");
    down.add("n3");
    expect(await m1.cas.chosenAt(partition, "p", "k", "v", b1)).toBe("unknown");
    down.clear();
    await models.get("n2")!.casAcceptor.accept("p", "k", b1, version("v", "v"));
    expect(await m1.cas.chosenAt(partition, "p", "k", "v", b1)).toBe("chosen");
    const b2 = m1.cas.newBallot();
    await models.get("n3")!.casAcceptor.accept("p", "k", b2, version("w", "w"));
    // A majority still holds b1: chosen, whatever came after.
    expect(await m1.cas.chosenAt(partition, "p", "k", "v", b1)).toBe("chosen");
    await models.get("n2")!.casAcceptor.accept("p", "k", b2, version("w", "w"));
    expect(await m1.cas.chosenAt(partition, "p", "k", "v", b1)).toBe("superseded");
  });
});

describe("installConditionally", () => {
  test("writers racing to create a key through three nodes: exactly one wins, each time", async () => {
    for (let round = 0; round < 10; round++) {
      const key = `race-${round}`;
      const results = await Promise.allSettled(
        NODES.map((n) => installConditionally(services(n), { ...target, key }, ifNoneMatchStar, { kind: "fresh", state: () => ({ kind: "complete", data: inline(`by ${n}`) }) })),
      );
      const won = results.filter((r) => r.status === "fulfilled");
      expect(won.length).toBe(1);
      for (const r of results) if (r.status === "rejected") expect(r.reason).toBeInstanceOf(Refused);
      const winner = (won[0] as PromiseFulfilledResult<ObjectVersion>).value;
      for (const n of NODES) expect((await current(n, key))?.uuid).toBe(winner.uuid);
    }
  });

  test("a value chosen by a writer that stopped before writing it is the key's state for the next conditional writer", async () => {
    const m1 = models.get("n1")!;
    const partition = partitionOfEntry(objectSchema, target.bucketId);
    const ballot = m1.cas.newBallot();
    await m1.cas.prepare(partition, target.bucketId, target.key, ballot);
    const chosen: ObjectVersion = { uuid: "c".repeat(64), timestamp: ballot.ts, state: { kind: "complete", data: inline("chosen") } };
    await m1.cas.accept(partition, target.bucketId, target.key, ballot, chosen);
    // n1 "stops" here: no replica holds the version complete, yet it is chosen: readers who
    // meet it (proposed, on the acceptors) ask the register and serve it.
    const marked = NODES.filter((n) => models.get(n)!.objects.local.get(target.bucketId, target.key)?.versions.some((v) => v.uuid === "c".repeat(64) && v.state.kind === "proposed"));
    expect(marked.length).toBeGreaterThanOrEqual(2);
    expect((await current("n2"))?.uuid).toBe("c".repeat(64));
    const second = installConditionally(services("n2"), target, ifNoneMatchStar, { kind: "fresh", state: () => ({ kind: "complete", data: inline("second") }) });
    expect(second).rejects.toBeInstanceOf(Refused);
    await second.catch(() => {});
    // ...and the next conditional writer wrote it complete before deciding.
    expect((await models.get("n3")!.objects.get(target.bucketId, target.key))?.versions.find((v) => v.uuid === "c".repeat(64))?.state.kind).toBe("complete");
  });

  test("a value accepted by one acceptor only is never served, and a later conditional write wins over it", async () => {
    const m1 = models.get("n1")!;
    const partition = partitionOfEntry(objectSchema, target.bucketId);
    const ballot = m1.cas.newBallot();
    await m1.cas.prepare(partition, target.bucketId, target.key, ballot);
    await m1.casAcceptor.accept(target.bucketId, target.key, ballot, { uuid: "d".repeat(64), timestamp: ballot.ts, state: { kind: "complete", data: inline("lost") } });
    for (const n of NODES) expect(await current(n)).toBeUndefined();
    // n3 does not answer: n1's lone acceptance, which n1's reads meet, could be chosen with n3's.
    down.add("n3");
    expect(readObject(services("n1"), target.bucketId, target.key)).rejects.toThrow(/cannot be judged/);
    down.clear();
    const won = await installConditionally(services("n2"), target, ifNoneMatchStar, { kind: "fresh", state: () => ({ kind: "complete", data: inline("won") }) });
    for (const n of NODES) expect((await current(n))?.uuid).toBe(won.uuid);
  });

  test("works with one acceptor out of reach, and answers unavailable at once with two", async () => {
    down.add("n3");
    await installConditionally(services("n1"), target, ifNoneMatchStar, { kind: "fresh", state: () => ({ kind: "complete", data: inline("one") }) });
    expect((await current())?.state.data.kind).toBe("inline");
    down.add("n2");
    const started = Date.now();
    const err = await installConditionally(services("n1"), { ...target, key: "other" }, ifNoneMatchStar, { kind: "fresh", state: () => ({ kind: "complete", data: inline("two") }) }).catch((e) => e);
    expect(err).toBeInstanceOf(ConditionalUnavailableError);
    // Refused connections fail the quorum at once, not at a timeout (bound, not timing: 5 s).
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  test("a malformed entry in a peer's promise fails the write as unavailable (503), not as a bug", async () => {
    tampered.add("n2");
    tampered.add("n3");
    const err = await installConditionally(services("n1"), target, ifNoneMatchStar, { kind: "fresh", state: () => ({ kind: "complete", data: inline("x") }) }).catch((e) => e);
    expect(err).toBeInstanceOf(ConditionalUnavailableError);
    expect(String(err.message)).toContain("malformed entry");
  });

  test("a fixed version older than what the register's round sees is a conflict, not a silent hidden write", async () => {
    const old: ObjectVersion = { uuid: "f".repeat(64), timestamp: 5, state: { kind: "complete", data: inline("old") } };
    await models.get("n1")!.objects.insert({ ...target, versions: [{ uuid: "e".repeat(64), timestamp: 1_000, state: { kind: "complete", data: { kind: "deleteMarker" } } }] });
    const err = await installConditionally(services("n2"), target, ifNoneMatchStar, { kind: "fixed", version: old }).catch((e) => e);
    expect(err).toBeInstanceOf(ConditionalConflictError);
    expect(await current()).toBeUndefined();
  });
});
