// Cluster messages (src/cluster/messages.ts) are checked before membership or the layout sees
// them: a malformed ping or layout push from a peer is answered with a bad-request error and
// changes nothing; valid ones still work. Two real nodes on loopback, a real ClusterSystem.
import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClusterSystem } from "../../../src/cluster/system.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { encodeJson, RPC_ERR, RpcError, type RpcNode } from "../../../src/rpc/rpc.ts";
import { captureStderr, startPair } from "../rpc/helpers.ts";

let dir: string;
const nodes: RpcNode[] = [];
const systems: ClusterSystem[] = [];
const dbs: Database[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-cluster-messages-"));
});
afterEach(async () => {
  for (const s of systems.splice(0)) s.stop();
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  for (const db of dbs.splice(0)) db.close();
  await rm(dir, { recursive: true, force: true });
});

async function cluster() {
  const [a, b] = await startPair(nodes);
  const db = openDatabase(join(dir, "b.sqlite"), { fsync: false });
  dbs.push(db);
  const disk = { available: 1, total: 2 };
  const system = new ClusterSystem({
    rpc: b, db, rpcPublicAddr: `127.0.0.1:${b.port}`, bootstrapPeers: [], replicationFactor: 1, consistencyMode: "consistent",
    hostname: "b", diskStats: () => ({ data: disk, metadata: disk }), now: Date.now,
  });
  systems.push(system);
  system.start();
  return { a, b, system };
}

async function refusal(p: Promise<unknown>): Promise<RpcError> {
  const { result } = await captureStderr(() => p.then(() => undefined, (e: unknown) => e));
  expect(result).toBeInstanceOf(RpcError);
  return result as RpcError;
}

const status = { hostname: "a", rpcAddr: "127.0.0.1:1", layoutVersion: 0, layoutDigest: "", data: { available: 1, total: 2 }, metadata: { available: 1, total: 2 } };

test("a ping naming a peer with a malformed id is refused; nobody is learned", async () => {
  const { a, b, system } = await cluster();
  const before = system.peers().map((p) => p.id);
  const err = await refusal(a.call(b.id, "cluster/ping", encodeJson({ status, peers: [{ id: "../evil", addr: "10.0.0.1:3901" }] })));
  expect(err.code).toBe(RPC_ERR.badRequest);
  expect(err.message).toMatch(/^endpoint 'cluster\/ping': invalid request: \/peers\/0\/id: Expected string to match/);
  expect(system.peers().map((p) => p.id)).toEqual(before);
  // A valid ping is answered with b's own status.
  const reply = JSON.parse(new TextDecoder().decode((await a.call(b.id, "cluster/ping", encodeJson({ status, peers: [] }))).payload));
  expect(reply.status.hostname).toBe("b");
});

test("a malformed layout push is refused and the layout stays as it was", async () => {
  const { a, b, system } = await cluster();
  const before = JSON.stringify(system.history());
  for (const [history, path] of [
    [{ ...system.history(), versions: "all" }, /\/versions: Expected array/],
    [{ versions: [], current: 9 }, /\/staging: Expected required property/],
    [{ ...system.history(), current: -1 }, /\/current: Expected integer to be greater or equal to 0/],
    [{ ...system.history(), syncMap: { node1: 3 } }, /\/syncMap\/node1: Unexpected property/],
  ] as const) {
    const err = await refusal(a.call(b.id, "cluster/layout-push", encodeJson(history)));
    expect(err.code).toBe(RPC_ERR.badRequest);
    expect(err.message).toMatch(/^endpoint 'cluster\/layout-push': invalid request: /);
    expect(err.message).toMatch(path);
  }
  expect(JSON.stringify(system.history())).toBe(before);
});
