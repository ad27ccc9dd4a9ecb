// `bun run bench:scale`: what a million small objects cost one node (issue 13, "At a million
// objects"). It loads SCALE_OBJECTS objects of 1 KiB (default 1 000 000) through the S3 API into
// one real server process (RF 1), then prints each figure with its bound where the issue sets one:
//   - load rate; metadata bytes per object (db.sqlite + its WAL, / N);
//   - restart time to the first S3 answer, empty and loaded (median of SCALE_RESTARTS);
//   - RSS idle, after restart, during a full ListObjectsV2 sweep, and VmHWM, loaded vs empty;
//   - list pages/s over the first and the last LIST_EDGE_PAGES pages of the sweep;
//   - idle CPU; GET and HEAD rates on random loaded keys.
// Anti-entropy is measured on a second set-up (skip it with SCALE_AE=0): a 2-node cluster with
// RF 2 and consistency_mode "dangerous" (a write needs one node). SCALE_AE_OBJECTS objects are
// loaded through node 1 (both nodes store them); node 1 is restarted (what the load left in
// its allocator is not the passes'); its RSS is sampled during an explicit pass
// (LaunchRepairOperation "tables") that finds both nodes in sync, then, after node 2 was
// stopped, AE_MISSED objects written to node 1 alone, node 1 restarted again (for the same
// reason) and node 2 started again, during the pass that reconciles them (partition digests,
// the differing partitions' bucket digests, the differing buckets' row hashes, then the
// entries that differ).
// Every phase is bounded in time; a load that runs out of time reports how many it wrote. A PUT
// that fails is retried once; the load gives up past MAX_PUT_ERROR_SHARE of double failures.
// SCALE_SINGLE=0 skips the single node, SCALE_AE=0 the anti-entropy cluster. The nodes keep their
// start-up pages (see ROOT below).
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { join } from "node:path";
import { loadavg } from "node:os";
import type { Subprocess } from "bun";
import { Database } from "bun:sqlite";
import { startServer, type TestServer } from "../tests/helpers/server.ts";
import { startCluster, waitFor } from "../tests/helpers/cluster.ts";
import { S3Client } from "./lib/client.ts";
import { cpuSeconds, ownPids, sampled, statusKiB, stopProcess } from "./lib/proc.ts";
import { median } from "./lib/stats.ts";
import { verdict, type FootprintRow } from "./footprint/row.ts";
import { RELEASE_STARTUP_PAGES_ENV } from "../src/cli/startup-pages.ts";

const ROOT = join(import.meta.dir, "..");
// Every node keeps the executable's start-up pages (src/cli/startup-pages.ts): the bounds
// compare a loaded node with an empty one, and only the loaded one has run most of its code
// again, which brings those pages back (~16 MiB of clean, file-backed RSS, not data). What the
// release saves is the startup section's figure (bench:footprint).
process.env[RELEASE_STARTUP_PAGES_ENV] = "0";
const KiB = 1024;
const MiB = 1024 * KiB;

/** Objects loaded into the single node. */
const OBJECTS = Number(process.env.SCALE_OBJECTS ?? 1_000_000);
/** Objects loaded into the anti-entropy cluster (both nodes store each). */
const AE_OBJECTS = Number(process.env.SCALE_AE_OBJECTS ?? OBJECTS);
const AE_ENABLED = process.env.SCALE_AE !== "0";
/** Objects written to node 1 alone while node 2 is down: what the sync pass reconciles. */
const AE_MISSED = 2_000;
/** Size of each object: the figure is for 1 KiB objects, stored inline in the entry. */
const OBJECT_SIZE = 1 * KiB;
/** PUTs in flight during a load. */
const LOAD_CONCURRENCY = 32;
/** A load stops after this long whatever it reached (a 1M load takes minutes here). */
const LOAD_LIMIT_MS = Number(process.env.SCALE_LOAD_LIMIT_S ?? 3_600) * 1000;
/** Restarts timed per state (empty, loaded); the median is reported. */
const RESTARTS = Number(process.env.SCALE_RESTARTS ?? 3);
/** Longest wait for a restarted server's S3 port to answer. */
const RESTART_LIMIT_MS = 120_000;
/** Wait before an idle or after-restart RSS reading, so start-up work and timers have run. */
const SETTLE_MS = 5_000;
/** Window over which idle CPU is measured. */
const IDLE_CPU_WINDOW_MS = 10_000;
/** ListObjectsV2 page size, and pages timed at each end of the sweep. */
const LIST_PAGE = 1000;
const LIST_EDGE_PAGES = 20;
/** A full listing stops after this long. */
const LIST_LIMIT_MS = 600_000;
/** GET and HEAD: requests in flight, and each phase's bound in count and time. */
const READ_CONCURRENCY = 16;
const READ_OPS = 5_000;
const READ_LIMIT_MS = 20_000;
/** Longest wait for an anti-entropy pass to finish. */
const AE_PASS_LIMIT_MS = 600_000;
/** Bounds from issue 13. */
const BOUND_META_BYTES = 1536;
const BOUND_RESTART_MS = 500;
const BOUND_RSS_OVER_EMPTY_MIB = 32;

const BUCKET = "scale";
const keyOf = (i: number) => `obj/${String(i).padStart(8, "0")}`;

const log = (msg: string) => process.stderr.write(`[scale ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const rssMiB = (pid: number) => statusKiB(pid, "VmRSS") / 1024;

function clientFor(server: TestServer): S3Client {
  return new S3Client({ url: `http://127.0.0.1:${server.s3Port}`, accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey, region: server.region });
}

/** Runs fn(i) for i in [from, to) on `concurrency` workers; stops early after limitMs. Returns how many ran. */
async function pool(from: number, to: number, concurrency: number, limitMs: number, fn: (i: number) => Promise<void>): Promise<number> {
  let next = from;
  let done = 0;
  const deadline = Date.now() + limitMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < to && Date.now() < deadline) {
        await fn(next++);
        done++;
      }
    }),
  );
  return done;
}

/** A PUT that failed is tried once more after this wait; a second failure counts as an error. */
const PUT_RETRY_WAIT_MS = 1_000;
/** The load gives up when more than this share of its PUTs failed twice. */
const MAX_PUT_ERROR_SHARE = 0.01;

async function load(client: S3Client, from: number, to: number, label: string): Promise<{ loaded: number; seconds: number; errors: number }> {
  const t0 = performance.now();
  let last = t0;
  let count = 0;
  let errors = 0;
  const put = (i: number) => client.ok("PUT", BUCKET, keyOf(i), { body: randomBytes(OBJECT_SIZE) });
  const loaded = await pool(from, to, LOAD_CONCURRENCY, LOAD_LIMIT_MS, async (i) => {
    try {
      await put(i);
    } catch (err) {
      log(`${label}: PUT ${keyOf(i)} failed (${(err as Error).message.slice(0, 120)}); retrying`);
      await Bun.sleep(PUT_RETRY_WAIT_MS);
      try {
        await put(i);
      } catch {
        if (++errors > MAX_PUT_ERROR_SHARE * (to - from)) throw new Error(`${label}: ${errors} PUTs failed twice`);
        return;
      }
    }
    count++;
    const now = performance.now();
    if (now - last > 30_000) {
      last = now;
      log(`${label}: ${count} objects, ${(count / ((now - t0) / 1000)).toFixed(0)}/s`);
    }
  });
  return { loaded: loaded - errors, seconds: (performance.now() - t0) / 1000, errors };
}

function metaBytes(server: TestServer): number {
  const base = join(server.dir, "meta", "db.sqlite");
  let total = 0;
  for (const f of [base, `${base}-wal`]) {
    try {
      total += statSync(f).size;
    } catch {}
  }
  return total;
}

/** A node's server process, restartable with timing (the test helper's restart polls coarsely and gives up after 20 s). */
class Node {
  proc: Subprocess;
  constructor(readonly server: TestServer) {
    this.proc = server.proc;
    ownPids.add(this.proc.pid);
  }
  get pid(): number {
    return this.proc.pid;
  }
  /** Stops the process (the data stays). */
  halt(): Promise<void> {
    return stopProcess(this.proc);
  }
  /** Starts the process and returns the ms from spawn to the first S3 answer. */
  async start(): Promise<number> {
    const t0 = performance.now();
    this.proc = Bun.spawn([process.execPath, join(ROOT, "src/main.ts"), "-c", this.server.configPath, "server"], {
      cwd: this.server.dir,
      stdout: "ignore",
      stderr: "inherit",
      env: { ...process.env, BUNKER_LOG: "warn" },
    });
    ownPids.add(this.proc.pid);
    const deadline = Date.now() + RESTART_LIMIT_MS;
    for (;;) {
      try {
        await fetch(`http://127.0.0.1:${this.server.s3Port}/`, { signal: AbortSignal.timeout(1000) });
        return performance.now() - t0;
      } catch {}
      if (this.proc.exitCode !== null || Date.now() > deadline) throw new Error("server did not come back");
      await Bun.sleep(5);
    }
  }
  async restart(): Promise<number> {
    await this.halt();
    return this.start();
  }
  async stop(): Promise<void> {
    await this.halt();
    await this.server.stop();
  }
}

/** Median restart time over RESTARTS restarts, and the RSS SETTLE_MS after the last one. */
async function restarts(node: Node): Promise<{ ms: number; all: number[]; rss: number }> {
  const all: number[] = [];
  for (let i = 0; i < RESTARTS; i++) all.push(await node.restart());
  await Bun.sleep(SETTLE_MS);
  return { ms: median(all), all, rss: rssMiB(node.pid) };
}

async function idleCpuPct(pid: number): Promise<number> {
  const c0 = cpuSeconds(pid);
  await Bun.sleep(IDLE_CPU_WINDOW_MS);
  return ((cpuSeconds(pid) - c0) / (IDLE_CPU_WINDOW_MS / 1000)) * 100;
}

interface ListSweep {
  pages: number;
  keys: number;
  firstPagesPerS: number;
  lastPagesPerS: number;
  peakRssMiB: number;
}

async function listSweep(client: S3Client, pid: number): Promise<ListSweep> {
  const { value, sample } = await sampled(pid, async () => {
    const times: number[] = [];
    let token: string | undefined;
    let keys = 0;
    const deadline = Date.now() + LIST_LIMIT_MS;
    do {
      const query: Record<string, string> = { "list-type": "2", "max-keys": String(LIST_PAGE) };
      if (token !== undefined) query["continuation-token"] = token;
      const t0 = performance.now();
      const xml = await client.text("GET", BUCKET, undefined, { query, timeoutMs: 60_000 });
      times.push(performance.now() - t0);
      keys += xml.match(/<Key>/g)?.length ?? 0;
      const m = /<NextContinuationToken>([^<]*)<\/NextContinuationToken>/.exec(xml);
      token = /<IsTruncated>true<\/IsTruncated>/.test(xml) && m ? m[1]!.replace(/&amp;/g, "&") : undefined;
    } while (token !== undefined && Date.now() < deadline);
    return { times, keys };
  });
  const rate = (ts: number[]) => ts.length / (ts.reduce((a, b) => a + b, 0) / 1000);
  const n = Math.min(LIST_EDGE_PAGES, value.times.length);
  return {
    pages: value.times.length,
    keys: value.keys,
    firstPagesPerS: rate(value.times.slice(0, n)),
    lastPagesPerS: rate(value.times.slice(-n)),
    peakRssMiB: sample.peakRssMiB,
  };
}

async function readRate(client: S3Client, method: "GET" | "HEAD", loaded: number): Promise<number> {
  const t0 = performance.now();
  const done = await pool(0, READ_OPS, READ_CONCURRENCY, READ_LIMIT_MS, async () => {
    const { bytes } = await client.ok(method, BUCKET, keyOf(Math.floor(Math.random() * loaded)));
    if (method === "GET" && bytes !== OBJECT_SIZE) throw new Error(`GET returned ${bytes} bytes`);
  });
  return done / ((performance.now() - t0) / 1000);
}

async function singleNode(rows: FootprintRow[]): Promise<void> {
  const row = (figure: string, value: number, unit: string, bound?: number, note?: string) => rows.push({ section: "scale", figure, value, unit, bound, note });
  const server = await startServer();
  const node = new Node(server);
  try {
    const client = clientFor(server);
    await client.ok("PUT", BUCKET, undefined);
    // The empty node: the reference the loaded node's RSS and restart time are held to.
    await Bun.sleep(SETTLE_MS);
    const emptyIdle = rssMiB(node.pid);
    const emptyRestart = await restarts(node);
    const emptyList = await listSweep(client, node.pid);
    log(`empty: idle ${emptyIdle.toFixed(1)} MiB, restart ${emptyRestart.ms.toFixed(0)} ms, after restart ${emptyRestart.rss.toFixed(1)} MiB`);

    log(`loading ${OBJECTS} objects of ${OBJECT_SIZE} B (${LOAD_CONCURRENCY} in flight)`);
    const { loaded, seconds, errors } = await load(client, 0, OBJECTS, "load");
    log(`loaded ${loaded} in ${seconds.toFixed(0)} s`);
    row("objects loaded", loaded, "objects", undefined, loaded + errors < OBJECTS ? `load stopped after ${LOAD_LIMIT_MS / 1000} s` : undefined);
    row("PUTs failed twice during the load", errors, "PUTs");
    row("load rate", loaded / seconds, "PUT/s", undefined, `${LOAD_CONCURRENCY} in flight`);
    row("VmHWM after the load", statusKiB(node.pid, "VmHWM") / 1024, "MiB");
    await Bun.sleep(SETTLE_MS);
    const idle = rssMiB(node.pid);
    const cpu = await idleCpuPct(node.pid);
    row("metadata per object (db + WAL) / N", metaBytes(server) / loaded, "B", BOUND_META_BYTES);

    const restarted = await restarts(node);
    log(`restart: ${restarted.all.map((t) => t.toFixed(0)).join(", ")} ms`);
    row("restart to first S3 answer, empty", emptyRestart.ms, "ms", BOUND_RESTART_MS, `median of ${RESTARTS}`);
    row("restart to first S3 answer, loaded", restarted.ms, "ms", BOUND_RESTART_MS, `median of ${RESTARTS}: ${restarted.all.map((t) => t.toFixed(0)).join(", ")}`);
    row("RSS idle, empty", emptyIdle, "MiB");
    row("RSS idle, loaded (before restart)", idle, "MiB", emptyIdle + BOUND_RSS_OVER_EMPTY_MIB);
    row("RSS after restart, empty", emptyRestart.rss, "MiB");
    row("RSS after restart, loaded", restarted.rss, "MiB", emptyRestart.rss + BOUND_RSS_OVER_EMPTY_MIB, `${SETTLE_MS / 1000} s after the S3 port opened`);
    row("idle CPU, loaded", cpu, "% of a core", undefined, `over ${IDLE_CPU_WINDOW_MS / 1000} s`);

    const list = await listSweep(client, node.pid);
    log(`list: ${list.pages} pages, ${list.keys} keys`);
    if (list.keys !== loaded) throw new Error(`the listing returned ${list.keys} keys of ${loaded}`);
    row("RSS during a full listing, empty", emptyList.peakRssMiB, "MiB");
    row("RSS during a full listing, loaded", list.peakRssMiB, "MiB", emptyList.peakRssMiB + BOUND_RSS_OVER_EMPTY_MIB, `peak of 50 ms samples; ${list.pages} pages of ${LIST_PAGE}`);
    row(`list pages/s, first ${LIST_EDGE_PAGES}`, list.firstPagesPerS, "pages/s");
    row(`list pages/s, last ${LIST_EDGE_PAGES}`, list.lastPagesPerS, "pages/s");

    const get = await readRate(client, "GET", loaded);
    const head = await readRate(client, "HEAD", loaded);
    row("GET 1 KiB, random keys", get, "op/s", undefined, `${READ_CONCURRENCY} in flight`);
    row("HEAD, random keys", head, "op/s", undefined, `${READ_CONCURRENCY} in flight`);
    row("VmHWM since the last restart, loaded", statusKiB(node.pid, "VmHWM") / 1024, "MiB", undefined, "restarts, reads, listing");
    await node.halt();
    if (process.env.SCALE_DBSTAT !== "0") tableSizes(server, loaded, row);
  } finally {
    await node.stop();
  }
}

/** Bytes per object of each table and index (sqlite's dbstat), read after the server stopped. */
function tableSizes(server: TestServer, objects: number, row: (figure: string, value: number, unit: string) => void): void {
  const db = new Database(join(server.dir, "meta", "db.sqlite"), { readonly: true });
  try {
    const sizes = db.query(`SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC LIMIT 8`).all() as { name: string; bytes: number }[];
    for (const s of sizes) row(`  of which ${s.name}`, s.bytes / objects, "B/object");
  } finally {
    db.close();
  }
}

interface WorkerInfo {
  name: string;
  state: string;
  passes: number;
}

async function syncPasses(server: TestServer): Promise<WorkerInfo> {
  const workers = await server.admin<WorkerInfo[]>("GET", "/v2/ListWorkers");
  return workers.find((w) => w.name === "sharded table sync")!;
}

/** Node 1's peak RSS while `start` leads to one more finished sync pass on it. */
async function duringPass(node: Node, start: () => Promise<unknown>): Promise<{ peak: number; seconds: number; atStart: number }> {
  const before = (await syncPasses(node.server)).passes;
  const atStart = rssMiB(node.pid);
  const { sample } = await sampled(node.pid, async () => {
    await start();
    await waitFor("a sync pass", async () => {
      const w = await syncPasses(node.server);
      return w.passes > before && w.state === "idle";
    }, AE_PASS_LIMIT_MS);
  });
  return { peak: sample.peakRssMiB, seconds: sample.seconds, atStart };
}

async function antiEntropy(rows: FootprintRow[]): Promise<void> {
  const row = (figure: string, value: number, unit: string, bound?: number, note?: string) => rows.push({ section: "scale", figure, value, unit, bound, note });
  const cluster = await startCluster({ nodes: 2, replicationFactor: 2, extraToml: `consistency_mode = "dangerous"` });
  const [n1, n2] = cluster.nodes.map((n) => new Node(n)) as [Node, Node];
  try {
    const client = clientFor(n1.server);
    await client.ok("PUT", BUCKET, undefined);
    await Bun.sleep(SETTLE_MS);
    const launch = async () => void (await n1.server.admin("POST", "/v2/LaunchRepairOperation", { repairType: "tables" }));
    const empty = await duringPass(n1, launch);
    log(`anti-entropy, empty: peak ${empty.peak.toFixed(1)} MiB`);

    log(`anti-entropy cluster: loading ${AE_OBJECTS} objects`);
    const { loaded, errors } = await load(client, 0, AE_OBJECTS, "ae load");
    row("PUTs failed twice during the anti-entropy cluster's load", errors, "PUTs");
    // Restarted, so that what the load left in node 1's allocator does not count as the pass's.
    await n1.restart();
    await Bun.sleep(SETTLE_MS);
    const idle = rssMiB(n1.pid);
    // Both nodes hold the same entries: the pass compares digests only.
    const steady = await duringPass(n1, launch);
    // Node 1 syncs when node 2 comes back (peer-up), and reconciles what node 2 missed.
    await n2.halt();
    await load(client, AE_OBJECTS, AE_OBJECTS + AE_MISSED, "missed");
    // Restarted again, for the same reason: the writes its peer missed left node 1's PUT path
    // and its failed replica calls in its allocator (105 MiB against 70 idle at 200 000 objects).
    await n1.restart();
    await Bun.sleep(SETTLE_MS);
    const catchUp = await duringPass(n1, () => n2.start());
    log(`anti-entropy, ${loaded}: idle ${idle.toFixed(1)}, catch-up ${catchUp.peak.toFixed(1)} (from ${catchUp.atStart.toFixed(1)}, ${catchUp.seconds.toFixed(1)} s), digests only ${steady.peak.toFixed(1)} MiB`);
    row("anti-entropy cluster: objects on each node", loaded, "objects", undefined, "2 nodes, RF 2");
    row("RSS idle, anti-entropy node 1 restarted after the load", idle, "MiB");
    row("RSS during an anti-entropy pass, empty", empty.peak, "MiB");
    row("RSS during anti-entropy catching up a peer", catchUp.peak, "MiB", empty.peak + BOUND_RSS_OVER_EMPTY_MIB, `node 1; peer missed ${AE_MISSED} objects; pass ${catchUp.seconds.toFixed(1)} s; ${catchUp.atStart.toFixed(0)} MiB when the peer was started`);
    row("RSS during an anti-entropy pass, in sync", steady.peak, "MiB", empty.peak + BOUND_RSS_OVER_EMPTY_MIB, `node 1; digests only; pass ${steady.seconds.toFixed(1)} s`);
    row("VmHWM, anti-entropy node 1", statusKiB(n1.pid, "VmHWM") / 1024, "MiB", undefined, "since its restart after the load");
  } finally {
    await Promise.all([n1.halt(), n2.halt()]);
    await cluster.stop();
  }
}

function print(rows: FootprintRow[]): void {
  const fmt = (v: number) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1));
  const lines = rows.map((r) => [r.figure, `${fmt(r.value)} ${r.unit}`, r.bound === undefined ? "" : `<= ${fmt(r.bound)}`, verdict(r), r.note ?? ""]);
  const widths = [0, 1, 2, 3].map((c) => Math.max(...lines.map((l) => l[c]!.length)));
  for (const l of lines) console.log(l.map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c)).join("  "));
}

const rows: FootprintRow[] = [];
const load0 = loadavg()[0]!;
try {
  if (process.env.SCALE_SINGLE !== "0") await singleNode(rows);
  if (AE_ENABLED) await antiEntropy(rows);
} finally {
  rows.push({ section: "scale", figure: "machine load average (1 min), start / end", value: load0, unit: `/ ${loadavg()[0]!.toFixed(2)}` });
  print(rows);
}
