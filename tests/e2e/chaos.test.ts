// A bounded chaos test (issue 3): five real nodes in three zones (z1: 2, z2: 2, z3: 1),
// replication factor 3, consistency_mode "consistent". Concurrent workers PUT / GET / DELETE a
// fixed set of keys through random live nodes while nodes are SIGKILLed and restarted at random,
// never more than one down at a time (every partition keeps 2 of its 3 replicas: a quorum).
//
// Checked while the workload runs: read-after-write. Each key belongs to one worker, so its
// operations are sequential; a GET must return the last acknowledged value of its key, or the
// value of a write that failed after it (a failed write may or may not have been applied).
// Checked at the end, with every node running again and given time to catch up (anti-entropy,
// resync): every key through EVERY node reads as its last acknowledged value (or an allowed
// uncertain one), all nodes agree, listings agree, deleted keys are NoSuchKey, every object reads
// back in full, byte-identical, and each block of each live object is on disk on as many nodes
// as the replication factor asks.
//
// Everything random comes from a seeded PRNG (mulberry32): the seed is printed, and
// CHAOS_SEED=<n> replays the same choices (timing still varies with the machine).
import { afterAll, beforeAll, expect, setDefaultTimeout, test } from "bun:test";
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Database } from "bun:sqlite";
import { TableRows } from "../../src/db/table-rows";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { startCluster, waitFor } from "../helpers/cluster";
import { KiB, MiB, md5Hex, sha256Hex } from "../helpers/clients";
import { mulberry32 } from "../helpers/random";
import { INLINE_THRESHOLD } from "../../src/util/limits";
import type { TestServer } from "../helpers/server";

setDefaultTimeout(170_000);

// ---- bounds ----
const ZONES = ["z1", "z1", "z2", "z2", "z3"] as const;
const REPLICATION = 3;
const KEY_COUNT = 20;
const WORKERS = 4;
/** The whole chaos phase (workload + kills) lasts at most this long. */
const CHAOS_MS = 35_000;
const MAX_KILL_CYCLES = 6;
/** A node stays down between these bounds, and up between kills between those. */
const DOWN_MS: [number, number] = [1_000, 3_000];
const UP_MS: [number, number] = [1_000, 3_500];
/** A client operation (including reading the whole body) never takes longer than this. */
const OP_TIMEOUT_MS = 20_000;
/** Pause of a worker between two operations. */
const THINK_MS = 40;
/** After the chaos: time allowed for every node to come back and for the cluster to converge. */
const SETTLE_MS = 60_000;
const BUCKET = "chaos";

const SEED = process.env.CHAOS_SEED !== undefined && process.env.CHAOS_SEED !== "" ? Number(process.env.CHAOS_SEED) >>> 0 : randomBytes(4).readUInt32LE(0);
console.log(`chaos seed: ${SEED} (replay with CHAOS_SEED=${SEED})`);

/** An independent PRNG stream per actor, so the choices of one do not depend on the timing of others. */
function rngFor(stream: number): () => number {
  return mulberry32((SEED ^ Math.imul(stream + 1, 0x9e3779b1)) >>> 0);
}
const between = (rng: () => number, [lo, hi]: [number, number]) => lo + Math.floor(rng() * (hi - lo + 1));

// ---- cluster ----
const nodes: TestServer[] = [];
let nodeIds: string[] = [];
let creds: { accessKeyId: string; secretAccessKey: string };
/** Nodes killed (or being restarted) by the chaos loop: no new request goes to them. */
const down = new Set<number>();
let clients: (S3Client | undefined)[] = [];
const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;

function makeClient(n: TestServer): S3Client {
  return new S3Client({ endpoint: n.endpoint, region: n.region, forcePathStyle: true, credentials: creds, maxAttempts: 1 });
}

// The processes are SIGKILLed if the test runner exits without reaching afterAll.
process.on("exit", () => {
  for (const n of nodes) if (n.proc.exitCode === null) n.proc.kill("SIGKILL");
});

beforeAll(async () => {
  const cluster = await startCluster({ nodes: ZONES.length, replicationFactor: REPLICATION, zones: [...ZONES], extraToml: `consistency_mode = "consistent"` });
  nodes.push(...cluster.nodes);
  nodeIds = cluster.ids;
  const key = await nodes[0]!.admin<{ accessKeyId: string; secretAccessKey: string }>("POST", "/v2/CreateKey", { name: "chaos", allow: { createBucket: true } });
  creds = { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey };
  clients = nodes.map(makeClient);
  await waitFor("every node knows the key", async () => {
    for (const c of clients) await c!.send(new HeadBucketCommand({ Bucket: "does-not-exist" })).catch((e) => {
      if (e?.$metadata?.httpStatusCode !== 404) throw e;
    });
    return true;
  });
  await clients[0]!.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await waitFor("every node knows the bucket", async () => {
    for (const c of clients) await c!.send(new HeadBucketCommand({ Bucket: BUCKET }));
    return true;
  });
}, 120_000);

afterAll(async () => {
  for (const c of clients) c?.destroy();
  await Promise.all(
    nodes.map(async (n) => {
      if (n.proc.exitCode === null) await n.kill();
      await n.stop();
    }),
  );
});

// ---- values and history ----
const ABSENT = "absent";
interface BodyInfo {
  size: number;
  md5: string;
  desc: string;
}
/** sha256 -> what was written; values are named by the sha256 of their bytes (or ABSENT). */
const bodies = new Map<string, BodyInfo>();

interface KeyState {
  /** The value of the last acknowledged PUT or DELETE (ABSENT before any). */
  acked: string;
  /** Values of writes that failed since the last acknowledged one: each may have been applied. */
  uncertain: Set<string>;
  /**
   * Values of writes abandoned on a client timeout: the server may still be working on one and
   * stamp it after a later write, so they stay possible for good (expected to be rare).
   */
  late: Set<string>;
  history: string[];
}
const keys = Array.from({ length: KEY_COUNT }, (_, i) => `obj/${String(i).padStart(2, "0")}`);
const state = new Map<string, KeyState>(keys.map((k) => [k, { acked: ABSENT, uncertain: new Set(), late: new Set(), history: [] }]));

function allowed(k: string): Set<string> {
  const s = state.get(k)!;
  return new Set([s.acked, ...s.uncertain, ...s.late]);
}

const show = (v: string) => (v === ABSENT ? ABSENT : `${v.slice(0, 12)}(${bodies.get(v)?.desc ?? "unknown bytes"})`);

const stats = {
  put: { ok: 0, failed: 0 },
  del: { ok: 0, failed: 0 },
  get: { ok: 0, notFound: 0, failed: 0 },
  timeouts: 0,
  kills: 0,
  errors: new Map<string, number>(),
};
const violations: string[] = [];
const crashes: string[] = [];

function countError(op: string, err: unknown): string {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e?.$metadata?.httpStatusCode;
  const label = `${op} ${status ?? "-"} ${e?.name ?? "Error"}: ${(e?.message ?? String(err)).replace(/\s+/g, " ").slice(0, 100)}`;
  stats.errors.set(label, (stats.errors.get(label) ?? 0) + 1);
  return label;
}

class OpTimeout extends Error {
  constructor(what: string) {
    super(`${what}: no answer within ${OP_TIMEOUT_MS} ms`);
    this.name = "OpTimeout";
  }
}

/** Runs one client operation under OP_TIMEOUT_MS; on expiry its request is aborted. */
async function bounded<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new OpTimeout(what));
      ac.abort();
    }, OP_TIMEOUT_MS);
  });
  const work = fn(ac.signal);
  work.catch(() => {}); // a late rejection after the timeout won is expected
  try {
    return await Promise.race([work, expiry]);
  } finally {
    clearTimeout(timer);
  }
}

/** A body of `size` bytes unique to operation `opId`: random bytes, or text that zstd shrinks. */
function makeBody(size: number, seed: number, compressible: boolean, opId: number): Uint8Array {
  if (compressible) {
    const line = Buffer.from(`op ${opId} seed ${seed}: the quick brown fox jumps over the lazy dog\n`);
    const out = new Uint8Array(size);
    for (let off = 0; off < size; off += line.length) out.set(line.subarray(0, Math.min(line.length, size - off)), off);
    return out;
  }
  const words = new Uint32Array(Math.ceil(size / 4));
  const r = mulberry32(seed);
  for (let i = 0; i < words.length; i++) words[i] = r() * 4294967296;
  words[0] = opId; // unique even if two seeds collided
  return new Uint8Array(words.buffer, 0, size);
}

/** Body sizes: inline (below INLINE_THRESHOLD), one block (64-512 KiB), several blocks (1-2.25 MiB). */
function pickSize(rng: () => number): { size: number; desc: string } {
  const r = rng();
  if (r < 0.35) return { size: between(rng, [8, INLINE_THRESHOLD - 1]), desc: "inline" };
  if (r < 0.82) return { size: between(rng, [64 * KiB, 512 * KiB]), desc: "1 block" };
  return { size: between(rng, [MiB + 1, 2 * MiB + MiB / 4]), desc: "multi-block" };
}

type ReadResult = { kind: "value"; value: string; size: number; etag: string | undefined } | { kind: "absent" } | { kind: "error"; error: string };

async function readKey(client: S3Client, k: string): Promise<ReadResult> {
  try {
    return await bounded(`GET ${k}`, async (signal) => {
      const r = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: k }), { abortSignal: signal });
      const bytes = await r.Body!.transformToByteArray();
      return { kind: "value", value: sha256Hex(bytes), size: bytes.length, etag: r.ETag?.replace(/"/g, "") };
    });
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e?.name === "NoSuchKey" || e?.$metadata?.httpStatusCode === 404) return { kind: "absent" };
    return { kind: "error", error: countError("GET", err) };
  }
}

function liveNodes(): number[] {
  return nodes.map((_, i) => i).filter((i) => !down.has(i) && clients[i] !== undefined);
}

function checkUnexpectedExits(): void {
  nodes.forEach((n, i) => {
    if (!down.has(i) && n.proc.exitCode !== null) {
      const msg = `node ${i} exited by itself (code ${n.proc.exitCode}) at ${elapsed()}; log tail:\n${n.logs().slice(-3000)}`;
      if (!crashes.some((c) => c.startsWith(`node ${i} exited`))) crashes.push(msg);
      down.add(i); // no more requests to it; the final phase restarts it
    }
  });
}

let stopping = false;
let opCounter = 0;

async function worker(w: number): Promise<void> {
  const rng = rngFor(100 + w);
  const mine = keys.filter((_, i) => i % WORKERS === w);
  while (!stopping) {
    checkUnexpectedExits();
    const live = liveNodes();
    if (live.length === 0) {
      await Bun.sleep(50);
      continue;
    }
    const k = mine[Math.floor(rng() * mine.length)]!;
    const n = live[Math.floor(rng() * live.length)]!;
    const client = clients[n]!;
    const s = state.get(k)!;
    const r = rng();
    const opId = ++opCounter;
    const at = elapsed();
    if (r < 0.5) {
      const { size, desc } = pickSize(rng);
      const compressible = rng() < 0.25;
      const body = makeBody(size, Math.floor(rng() * 2 ** 32), compressible, opId);
      const sha = sha256Hex(body);
      bodies.set(sha, { size, md5: md5Hex(body), desc: `#${opId} ${desc} ${size}B${compressible ? " text" : ""}` });
      try {
        await bounded(`PUT ${k}`, (signal) => client.send(new PutObjectCommand({ Bucket: BUCKET, Key: k, Body: body }), { abortSignal: signal }));
        s.acked = sha;
        s.uncertain.clear();
        stats.put.ok++;
        s.history.push(`${at} #${opId} PUT ${show(sha)} via n${n}: ok`);
      } catch (err) {
        s.uncertain.add(sha);
        if (err instanceof OpTimeout) {
          s.late.add(sha);
          stats.timeouts++;
        }
        stats.put.failed++;
        s.history.push(`${at} #${opId} PUT ${show(sha)} via n${n}: FAILED (${countError("PUT", err)})`);
      }
    } else if (r < 0.85) {
      const got = await readKey(client, k);
      if (got.kind === "error") {
        stats.get.failed++;
        s.history.push(`${at} #${opId} GET via n${n}: error (${got.error})`);
      } else {
        const value = got.kind === "absent" ? ABSENT : got.value;
        if (got.kind === "absent") stats.get.notFound++;
        else stats.get.ok++;
        const ok = allowed(k).has(value);
        s.history.push(`${at} #${opId} GET via n${n}: ${show(value)}${ok ? "" : " <- NOT ALLOWED"}`);
        if (!ok) {
          violations.push(
            `read-after-write: GET ${k} via node ${n} at ${at} returned ${show(value)}; allowed: ${[...allowed(k)].map(show).join(", ")}\n` +
              `  history of ${k}:\n    ${s.history.slice(-10).join("\n    ")}`,
          );
        }
      }
    } else {
      try {
        await bounded(`DELETE ${k}`, (signal) => client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: k }), { abortSignal: signal }));
        s.acked = ABSENT;
        s.uncertain.clear();
        stats.del.ok++;
        s.history.push(`${at} #${opId} DELETE via n${n}: ok`);
      } catch (err) {
        s.uncertain.add(ABSENT);
        if (err instanceof OpTimeout) {
          s.late.add(ABSENT);
          stats.timeouts++;
        }
        stats.del.failed++;
        s.history.push(`${at} #${opId} DELETE via n${n}: FAILED (${countError("DELETE", err)})`);
      }
    }
    await Bun.sleep(Math.floor(rng() * THINK_MS));
  }
}

async function restartNode(i: number): Promise<void> {
  await nodes[i]!.restart();
  clients[i]?.destroy();
  clients[i] = makeClient(nodes[i]!);
  down.delete(i);
}

async function chaos(): Promise<void> {
  const rng = rngFor(7);
  const start = Date.now();
  await Bun.sleep(between(rng, [1_500, 3_000]));
  while (stats.kills < MAX_KILL_CYCLES && Date.now() - start < CHAOS_MS - DOWN_MS[1] - 2_000) {
    checkUnexpectedExits();
    if (down.size > 0) break; // a node died by itself: no second one down
    const victim = Math.floor(rng() * nodes.length);
    const downFor = between(rng, DOWN_MS);
    down.add(victim);
    const client = clients[victim];
    clients[victim] = undefined;
    await nodes[victim]!.kill();
    client?.destroy();
    stats.kills++;
    console.log(`[${elapsed()}] chaos: killed node ${victim} (${ZONES[victim]}) for ${downFor} ms`);
    await Bun.sleep(downFor);
    await restartNode(victim);
    console.log(`[${elapsed()}] chaos: node ${victim} is back`);
    await Bun.sleep(Math.max(0, Math.min(between(rng, UP_MS), CHAOS_MS - (Date.now() - start))));
  }
  const left = CHAOS_MS - (Date.now() - start);
  if (left > 0) await Bun.sleep(left);
}

// ---- final checks ----

/** The newest complete version of an object entry as stored (merged across the given rows). */
function visibleVersionOf(entries: unknown[]): { uuid: string; timestamp: number; etag: string; size: number; kind: string } | undefined {
  type StoredVersion = { uuid: string; timestamp: number; state: { kind: string; data?: { kind: string; meta?: { etag: string; size: number } } } };
  const byUuid = new Map<string, StoredVersion>();
  const rank: Record<string, number> = { uploading: 0, complete: 1, aborted: 2 };
  for (const entry of entries) {
    for (const v of (entry as { versions: StoredVersion[] }).versions) {
      const prev = byUuid.get(v.uuid);
      if (!prev || rank[v.state.kind]! > rank[prev.state.kind]!) byUuid.set(v.uuid, v);
    }
  }
  const sorted = [...byUuid.values()].sort((a, b) => a.timestamp - b.timestamp || (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
  for (let i = sorted.length - 1; i >= 0; i--) {
    const v = sorted[i]!;
    if (v.state.kind !== "complete") continue;
    if (v.state.data!.kind === "deleteMarker") return undefined;
    return { uuid: v.uuid, timestamp: v.timestamp, etag: v.state.data!.meta!.etag, size: v.state.data!.meta!.size, kind: v.state.data!.kind };
  }
  return undefined;
}

function withDb<T>(n: TestServer, fn: (db: Database) => T): T {
  const db = new Database(join(n.dir, "meta", "db.sqlite"), { readonly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

const blockOnDisk = (n: TestServer, h: string) => [".zst", ""].some((ext) => existsSync(join(n.dir, "data", h.slice(0, 2), h.slice(2, 4), h + ext)));

/**
 * The nodes (indexes) that should hold each of the 256 partitions, from the layout node 0 stored
 * (node_meta.layout_history, newest version's ring of node ids). A block lives on the partition
 * named by the first byte of its hash (docs/architecture.md#placement).
 */
function ringOfLayout(): number[][] | undefined {
  try {
    const history = withDb(nodes[0]!, (db) => db.query(`SELECT v FROM node_meta WHERE k = 'layout_history'`).get() as { v: string } | null);
    const versions = (JSON.parse(history!.v) as { versions: { ring: string[][] }[] }).versions;
    return versions[versions.length - 1]!.ring.map((ids) => ids.map((id) => nodeIds.indexOf(id)));
  } catch {
    return undefined; // the stored format changed: fall back to counting copies
  }
}

/**
 * For every object that should hold blocks: the visible version in the nodes' metadata matches
 * the expected bytes (size, MD5), its block list covers the whole body, and every block is on
 * disk on each of the REPLICATION nodes of its partition. Returns the problems found.
 */
function checkBlocks(expected: Map<string, string>): { problems: string[]; blocks: number } {
  const problems: string[] = [];
  let blockCount = 0;
  const ring = ringOfLayout();
  const bucketId = withDb(nodes[0]!, (db) => {
    return (TableRows.of(db, "bucket_alias").entry("", BUCKET) as { bucketId: string } | undefined)?.bucketId;
  });
  if (!bucketId) return { problems: ["bucket alias not found in node 0's metadata"], blocks: 0 };
  for (const [k, value] of expected) {
    if (value === ABSENT) continue;
    const info = bodies.get(value)!;
    const objectRows = nodes.flatMap((n) =>
      withDb(n, (db) => TableRows.of(db, "object").entries(bucketId, k, `${k}\u0000`)),
    );
    const v = visibleVersionOf(objectRows);
    if (!v) {
      problems.push(`${k}: no visible version in the metadata of any node (expected ${show(value)})`);
      continue;
    }
    if (v.size !== info.size || v.etag !== info.md5) {
      problems.push(`${k}: stored version ${v.uuid} has size ${v.size} etag ${v.etag}, expected ${info.size} ${info.md5}`);
      continue;
    }
    if (v.kind === "inline") {
      if (info.size >= INLINE_THRESHOLD) problems.push(`${k}: a ${info.size}-byte body is stored inline`);
      continue;
    }
    const blockRows = new Map<string, { offset: number; hash: string; size: number }>();
    for (const n of nodes) {
      withDb(n, (db) => {
        for (const b of TableRows.of(db, "version_block").entries(v.uuid) as { part: number; offset: number; hash: string; size: number }[]) blockRows.set(`${b.part}:${b.offset}`, b);
      });
    }
    const list = [...blockRows.values()].sort((a, b) => a.offset - b.offset);
    let offset = 0;
    for (const b of list) {
      if (b.offset !== offset) problems.push(`${k}: version ${v.uuid} has a gap or overlap at offset ${offset} (next block at ${b.offset})`);
      offset = b.offset + b.size;
    }
    if (offset !== info.size) problems.push(`${k}: the blocks of version ${v.uuid} cover ${offset} bytes of ${info.size}`);
    for (const b of list) {
      blockCount++;
      const holders = nodes.map((n, i) => (blockOnDisk(n, b.hash) ? i : -1)).filter((i) => i >= 0);
      const should = ring?.[parseInt(b.hash.slice(0, 2), 16)];
      const lacking = should ? should.filter((i) => !holders.includes(i)) : [];
      if (holders.length < REPLICATION || lacking.length > 0) {
        problems.push(
          `${k}: block ${b.hash.slice(0, 16)} (offset ${b.offset}) is on disk on node(s) [${holders.join(",")}]` +
            (should ? `; its partition's nodes are [${should.join(",")}]: missing on [${lacking.join(",")}]` : `, expected ${REPLICATION} copies`),
        );
      }
    }
  }
  return { problems, blocks: blockCount };
}

function summary(): string {
  const errs = [...stats.errors].sort((a, b) => b[1] - a[1]).map(([e, n]) => `    ${n} x ${e}`);
  return [
    `seed ${SEED}: ${stats.kills} kill/restart cycles, ${opCounter} operations`,
    `  PUT ok ${stats.put.ok} failed ${stats.put.failed}; DELETE ok ${stats.del.ok} failed ${stats.del.failed}; ` +
      `GET value ${stats.get.ok} NoSuchKey ${stats.get.notFound} failed ${stats.get.failed}; client timeouts ${stats.timeouts}`,
    ...(errs.length ? ["  errors seen (expected while nodes die):", ...errs.slice(0, 25)] : []),
  ].join("\n");
}

function logTails(): string {
  return nodes.map((n, i) => `--- node ${i} (${ZONES[i]}) log tail ---\n${n.logs().slice(-2500)}`).join("\n");
}

test("acknowledged writes survive random node kills: read-after-write during the chaos, every node agrees afterwards, no block missing", async () => {
  const startedAt = Date.now();
  try {
    // ---- chaos phase ----
    const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
    try {
      await chaos();
    } finally {
      stopping = true; // also when a restart failed: no worker outlives the test
      await Promise.all(workers);
    }
    const chaosSecs = ((Date.now() - startedAt) / 1000).toFixed(1);
    console.log(`[${elapsed()}] chaos phase over after ${chaosSecs}s\n${summary()}`);

    expect(violations).toEqual([]);
    expect(crashes).toEqual([]);
    // Not vacuous: nodes were really killed and the workload really ran.
    expect(stats.kills).toBeGreaterThanOrEqual(2);
    expect(stats.put.ok).toBeGreaterThanOrEqual(20);
    expect(stats.get.ok + stats.get.notFound).toBeGreaterThanOrEqual(20);

    // ---- settle: every node up, connected, every partition healthy ----
    const settleDeadline = Date.now() + SETTLE_MS;
    for (const i of [...down]) await restartNode(i);
    await waitFor(
      "every node up and every partition healthy",
      async () => {
        for (const n of nodes) {
          const h = await n.admin<{ status: string; connectedNodes: number }>("GET", "/v2/GetClusterHealth");
          if (h.status !== "healthy" || h.connectedNodes !== nodes.length) return false;
        }
        return true;
      },
      30_000,
    );
    console.log(`[${elapsed()}] every node is up and healthy`);

    // ---- converge: every key through every node, until all nodes agree ----
    const finalValue = new Map<string, string>();
    let disagreements: string[] = [];
    for (let round = 1; ; round++) {
      disagreements = [];
      finalValue.clear();
      for (const k of keys) {
        if (Date.now() > settleDeadline) throw new Error(`the nodes did not converge within ${SETTLE_MS} ms (round ${round} unfinished):\n  ${disagreements.join("\n  ")}`);
        const reads = await Promise.all(nodes.map((_, i) => readKey(clients[i]!, k)));
        const seen = new Set<string>();
        reads.forEach((got, i) => {
          if (got.kind === "error") {
            disagreements.push(`${k} via node ${i}: ${got.error}`);
            return;
          }
          const value = got.kind === "absent" ? ABSENT : got.value;
          seen.add(value);
          if (!allowed(k).has(value)) {
            violations.push(
              `final read: ${k} via node ${i} returned ${show(value)}; allowed: ${[...allowed(k)].map(show).join(", ")}\n` +
                `  history of ${k}:\n    ${state.get(k)!.history.slice(-10).join("\n    ")}`,
            );
          } else if (got.kind === "value") {
            const info = bodies.get(value)!;
            if (got.size !== info.size) violations.push(`final read: ${k} via node ${i}: ${got.size} bytes, expected ${info.size}`);
            if (got.etag !== info.md5) violations.push(`final read: ${k} via node ${i}: ETag ${got.etag}, expected ${info.md5}`);
          }
        });
        if (seen.size > 1) disagreements.push(`${k}: nodes disagree: ${[...seen].map(show).join(" / ")}`);
        if (seen.size === 1) finalValue.set(k, [...seen][0]!);
      }
      expect(violations).toEqual([]);
      if (disagreements.length === 0) {
        // Listings through every node name exactly the keys that exist.
        const present = keys.filter((k) => finalValue.get(k) !== ABSENT);
        for (const [i, c] of clients.entries()) {
          try {
            const listed = await bounded("LIST", (signal) => c!.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "obj/" }), { abortSignal: signal }));
            const names = (listed.Contents ?? []).map((o) => o.Key);
            if (JSON.stringify(names) !== JSON.stringify(present)) disagreements.push(`listing via node ${i}: ${JSON.stringify(names)}, expected ${JSON.stringify(present)}`);
          } catch (err) {
            disagreements.push(`listing via node ${i}: ${countError("LIST", err)}`);
          }
        }
      }
      if (disagreements.length === 0) {
        console.log(`[${elapsed()}] all ${nodes.length} nodes agree on all ${keys.length} keys (round ${round})`);
        break;
      }
      if (Date.now() > settleDeadline) throw new Error(`the nodes did not converge within ${SETTLE_MS} ms:\n  ${disagreements.join("\n  ")}`);
      await Bun.sleep(1_000);
    }
    const uncertainOutcomes = keys.filter((k) => finalValue.get(k) !== state.get(k)!.acked);
    if (uncertainOutcomes.length) console.log(`  keys whose final value is a failed (unacknowledged) write that was applied: ${uncertainOutcomes.join(", ")}`);

    // ---- no block missing: every block of every live object on REPLICATION nodes ----
    let blockCheck = checkBlocks(finalValue);
    while (blockCheck.problems.length > 0 && Date.now() < settleDeadline) {
      await Bun.sleep(1_000);
      blockCheck = checkBlocks(finalValue);
    }
    expect(blockCheck.problems).toEqual([]);
    const live = [...finalValue.values()].filter((v) => v !== ABSENT).length;

    // ---- bucket counts: every node reports the bucket's objects and bytes, even the nodes
    // that do not hold its partition (published counts, read from the partition's nodes) ----
    const liveBytes = [...finalValue.values()].filter((v) => v !== ABSENT).reduce((sum, v) => sum + bodies.get(v)!.size, 0);
    const countsSeen = () =>
      Promise.all(nodes.map((n) => n.admin<{ objects: number; bytes: number; unfinishedUploads: number }>("GET", `/v2/GetBucketInfo?globalAlias=${BUCKET}`)));
    try {
      await waitFor("bucket counts on every node", async () => (await countsSeen()).every((c) => c.objects === live && c.bytes === liveBytes && c.unfinishedUploads === 0), Math.max(5_000, settleDeadline - Date.now()));
    } catch (err) {
      const seen = (await countsSeen()).map((c, i) => `node ${i}: ${c.objects} objects, ${c.bytes} B, ${c.unfinishedUploads} uploads`);
      throw new Error(`${(err as Error).message}: expected ${live} objects, ${liveBytes} B; ${seen.join("; ")}`);
    }
    console.log(`[${elapsed()}] ${live} live objects (${keys.length - live} deleted), ${blockCheck.blocks} blocks, each on ${REPLICATION} nodes; test body took ${((Date.now() - startedAt) / 1000).toFixed(1)}s`);
  } catch (err) {
    console.log(`FAILED with seed ${SEED} (replay with CHAOS_SEED=${SEED})\n${summary()}\n${logTails()}`);
    throw err;
  }
}, 170_000);
