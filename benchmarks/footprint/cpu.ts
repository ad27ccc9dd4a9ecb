// CPU per request (issue 13): the server CPU (user + system, all threads, from /proc) that one
// operation costs Bunker, against the bare node:http ceiling (benchmarks/ceiling-server.ts node)
// measured in the same run on the same workloads:
//   - 4 KiB PUT, GET, HEAD, DELETE, many operations per phase on concurrent clients, so that
//     /proc's 10 ms tick does not matter; the same phases on the S3 floor
//     (benchmarks/floor-server.ts: node:http + SigV4 + one sqlite row, nothing else) say how
//     much of a ratio S3 itself costs on this stack and how much Bunker's own layers;
//   - a large PUT (against the ceiling's MD5 + write, plus BLAKE3 alone, which Bunker pays and
//     the ceiling does not) and its GET;
//   - RF 3 on this machine: each node's CPU per MiB of a large PUT sent to the first node,
//     against the single node's CPU per MiB stored.
// The machine is shared: every figure is the median of CPU_ROUNDS rounds; within a round each
// phase runs on the ceiling and on Bunker back to back (which goes first alternates), so a
// change of load hits both sides of a ratio alike; the CPU other processes used during the
// measured windows is reported. Standalone: `bun benchmarks/footprint/cpu.ts` prints the rows.
// Large PUTs start on a dropped page cache (when root, lib/page-cache.ts): on this VM a new
// page-cache page the guest must fetch back from its host costs the writing thread ~2 ms of sys
// per MiB, against ~0.2 for one freed a moment ago, and which of the two a PUT gets depended on
// what the machine did before (the ceiling measured 2.3 to 4.7 ms/MiB from round to round, all
// of the difference in sys time; Bunker's block writes 1.0 to 2.5). Either server pays that for
// every MiB it stores, so it is a cost of the VM, not of the server; without root it stays in.
// Environment: CPU_ROUNDS (5), CPU_SMALL_OPS (5000), CPU_LARGE_MIB (256), CPU_SKIP_RF3=1.
import { closeSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import { tmpdir, loadavg } from "node:os";
import { join } from "node:path";
import { hash as blake3 } from "blake3-wasm/dist/index.js";
import type { FootprintRow } from "./row.ts";
import { cpuSeconds, foreignCpuSeconds, ownPids } from "../lib/proc.ts";
import { startBunker, startCeiling, startFloor, BIG_TIMEOUT_MS, type Target } from "../lib/targets.ts";
import { S3Client } from "../lib/client.ts";
import { makeRandomFile, stampSource } from "../lib/source.ts";
import { pool } from "../lib/pool.ts";
import { median, MiB } from "../lib/stats.ts";
import { dropCleanPageCache } from "../lib/page-cache.ts";
import { startCluster } from "../../tests/helpers/cluster.ts";

const SECTION = "cpu";

/** Rounds of every measurement; figures are their medians. */
const ROUNDS = envInt("CPU_ROUNDS", 5, 1, 20);
/** Operations per 4 KiB phase: at ~100 µs of CPU each, 5000 take 50 ticks of /proc's 10 ms. */
const SMALL_OPS = envInt("CPU_SMALL_OPS", 5000, 100, 100_000);
/** Concurrent clients of the 4 KiB phases. */
const SMALL_CONCURRENCY = 24;
/** A 4 KiB phase stops after this long even if it has not done SMALL_OPS (a slow machine). */
const SMALL_PHASE_LIMIT_MS = 30_000;
const SMALL_SIZE = 4096;
/**
 * Operations of each kind before the measured rounds: a server that has run for a while has its
 * hot paths compiled (with 500, Bunker's CPU per op still fell by a quarter from round to round).
 */
const WARMUP_OPS = 2000;
/** Size of the large PUT / GET and of the RF 3 PUT. */
const LARGE_SIZE = envInt("CPU_LARGE_MIB", 256, 16, 4096) * MiB;
/** Bunker's default block size: BLAKE3 is measured on blocks of this size, as Bunker hashes. */
const BLOCK_SIZE = MiB;
/**
 * After an operation's last answer the servers may still work for it (a third copy after the
 * write quorum, a WAL checkpoint): the window stays open until every server used less than
 * SETTLE_QUIET_CPU_S over SETTLE_QUIET_MS, at most SETTLE_LIMIT_MS.
 */
const SETTLE_QUIET_MS = 500;
const SETTLE_QUIET_CPU_S = 0.02;
const SETTLE_LIMIT_MS = 10_000;
/** Seconds of idle measured on Bunker, to show what the settle windows add. */
const IDLE_MS = 3_000;

const SMALL_BOUNDS = { put: 2, get: 1.5, head: 1.5, delete: 1.5 } as const;
const LARGE_PUT_BOUND = 1.3;
const LARGE_GET_BOUND = 1.2;
const RF3_REPLICA_BOUND = 1;

type SmallOp = keyof typeof SMALL_BOUNDS;
const SMALL_OPS_ORDER: SmallOp[] = ["put", "get", "head", "delete"];

function envInt(name: string, dflt: number, min: number, max: number): number {
  const v = process.env[name];
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in [${min}, ${max}]`);
  return n;
}

const log = (msg: string) => process.stderr.write(`[cpu ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------- measured windows

interface Window {
  /** CPU seconds of each measured process over the window. */
  cpu: number[];
  seconds: number;
  /** Cores used by other processes on the machine during the window. */
  foreignCores: number;
}

const foreignLoad: number[] = [];

async function settle(pids: number[]): Promise<void> {
  const deadline = performance.now() + SETTLE_LIMIT_MS;
  let last = pids.map(cpuSeconds);
  while (performance.now() < deadline) {
    await Bun.sleep(SETTLE_QUIET_MS);
    const now = pids.map(cpuSeconds);
    if (now.every((c, i) => c - last[i]! < SETTLE_QUIET_CPU_S)) return;
    last = now;
  }
}

/** Runs fn and returns the CPU each of `pids` used from its start until they are quiet again. */
async function measure(pids: number[], fn: () => Promise<void>): Promise<Window> {
  const foreign0 = foreignCpuSeconds(ownPids);
  const cpu0 = pids.map(cpuSeconds);
  const t0 = performance.now();
  await fn();
  await settle(pids);
  const cpu = pids.map((p, i) => cpuSeconds(p) - cpu0[i]!);
  const seconds = (performance.now() - t0) / 1000;
  let foreign = 0;
  for (const [p, s] of foreignCpuSeconds(ownPids)) foreign += s - (foreign0.get(p) ?? 0);
  const foreignCores = foreign / seconds;
  foreignLoad.push(foreignCores);
  return { cpu, seconds, foreignCores };
}

// ---------------------------------------------------------------- workloads

function smallBody(round: number, i: number): Uint8Array {
  const b = new Uint8Array(SMALL_SIZE);
  crypto.getRandomValues(b.subarray(0, 64));
  const v = new DataView(b.buffer);
  v.setUint32(0, round);
  v.setUint32(4, i);
  return b;
}

/**
 * One 4 KiB phase: `op` on keys 0..n-1 of `tag`. Returns the operations done (a phase cut by
 * its time limit does fewer) and the server's CPU µs per operation.
 */
async function smallPhase(t: Target, op: SmallOp, tag: string, n: number): Promise<{ done: number; us: number }> {
  const key = (i: number) => `${tag}/obj-${String(i).padStart(6, "0")}`;
  let done = 0;
  const w = await measure([t.pid()!], async () => {
    const r = await pool(n, SMALL_CONCURRENCY, SMALL_PHASE_LIMIT_MS, async (i) => {
      switch (op) {
        case "put":
          return t.put("bench", key(i), smallBody(n, i));
        case "get": {
          const bytes = await t.get("bench", key(i));
          if (bytes !== SMALL_SIZE) throw new Error(`GET ${key(i)}: ${bytes} bytes`);
          return;
        }
        case "head":
          return t.head("bench", key(i));
        case "delete":
          return t.del("bench", key(i));
      }
    });
    if (r.errors) throw new Error(`${t.name} ${op}: ${r.errors} errors, first: ${r.firstError}`);
    done = r.done;
  });
  return { done, us: (w.cpu[0]! / done) * 1e6 };
}

/** Whether the page cache could be dropped before the large PUTs (see the header). */
let pageCacheDropped = true;

/**
 * Before a large PUT: the source gets fresh bytes, earlier dirty pages are written back (not
 * during the measured window), the clean page cache is dropped (see the header), and the source
 * is read back into it, so that the client sends it from memory as before.
 */
function prepareLargePut(srcFd: number): void {
  stampSource(srcFd, LARGE_SIZE);
  Bun.spawnSync(["sync"]);
  if (!dropCleanPageCache()) {
    pageCacheDropped = false;
    return;
  }
  const buf = new Uint8Array(MiB);
  for (let off = 0; off < LARGE_SIZE; off += MiB) readSync(srcFd, buf, 0, MiB, off);
}

/** CPU ms per MiB of a large PUT of the source file. */
async function largePut(t: Target, key: string, src: string, srcFd: number): Promise<number> {
  prepareLargePut(srcFd);
  const w = await measure([t.pid()!], () => t.put("bench", key, Bun.file(src), BIG_TIMEOUT_MS));
  return (w.cpu[0]! / (LARGE_SIZE / MiB)) * 1000;
}

/** CPU ms per MiB of a large GET. */
async function largeGet(t: Target, key: string): Promise<number> {
  const w = await measure([t.pid()!], async () => {
    const n = await t.get("bench", key, BIG_TIMEOUT_MS);
    if (n !== LARGE_SIZE) throw new Error(`${t.name} GET ${key}: ${n} bytes`);
  });
  return (w.cpu[0]! / (LARGE_SIZE / MiB)) * 1000;
}

/** CPU ms per MiB of BLAKE3 alone, with blake3-wasm's one-shot hash on blocks, as Bunker hashes. */
function blake3MsPerMiB(): number {
  const block = new Uint8Array(BLOCK_SIZE);
  crypto.getRandomValues(block.subarray(0, 65536));
  const blocks = LARGE_SIZE / BLOCK_SIZE;
  const c0 = process.cpuUsage();
  for (let i = 0; i < blocks; i++) {
    block[0] = i;
    blake3(block);
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / (LARGE_SIZE / MiB);
}

async function warmUp(t: Target, src: string, large: boolean): Promise<void> {
  let n = WARMUP_OPS;
  for (const op of SMALL_OPS_ORDER) n = Math.min(n, (await smallPhase(t, op, "warmup", n)).done);
  if (!large) return;
  await t.put("bench", "warmup-large", Bun.file(src).slice(0, 16 * MiB), BIG_TIMEOUT_MS);
  await t.get("bench", "warmup-large", BIG_TIMEOUT_MS);
}

// ---------------------------------------------------------------- RF 3

/** CPU ms per MiB of each node of a 3-node RF 3 cluster, for large PUTs sent to the first node. */
async function rf3(src: string, srcFd: number): Promise<number[][]> {
  const cluster = await startCluster({ nodes: 3, replicationFactor: 3, compression: "none" });
  try {
    const pids = cluster.nodes.map((n) => n.proc.pid);
    for (const p of pids) ownPids.add(p);
    const n0 = cluster.nodes[0]!;
    const client = new S3Client({ url: `http://127.0.0.1:${n0.s3Port}`, accessKeyId: n0.accessKeyId, secretAccessKey: n0.secretAccessKey, region: n0.region });
    await client.ok("PUT", "bench", undefined);
    await client.ok("PUT", "bench", "warmup", { body: Bun.file(src).slice(0, 16 * MiB), timeoutMs: BIG_TIMEOUT_MS });
    const perNode: number[][] = pids.map(() => []);
    for (let r = 0; r < ROUNDS; r++) {
      prepareLargePut(srcFd);
      const w = await measure(pids, async () => {
        await client.ok("PUT", "bench", `rf3-${r}`, { body: Bun.file(src), timeoutMs: BIG_TIMEOUT_MS });
      });
      w.cpu.forEach((c, i) => perNode[i]!.push((c / (LARGE_SIZE / MiB)) * 1000));
      log(`RF 3 round ${r + 1}: ms/MiB per node ${w.cpu.map((c) => ((c / (LARGE_SIZE / MiB)) * 1000).toFixed(2)).join(" / ")}, others ${w.foreignCores.toFixed(2)} cores`);
    }
    return perNode;
  } finally {
    await cluster.stop();
  }
}

// ---------------------------------------------------------------- the run

export async function run(): Promise<FootprintRow[]> {
  const workDir = mkdtempSync(join(tmpdir(), "bench-cpu-"));
  const src = join(workDir, "source.bin");
  makeRandomFile(src, LARGE_SIZE);
  const srcFd = openSync(src, "r+");
  const load0 = loadavg()[0]!;
  const targets: Target[] = [];
  try {
    const ceiling = await startCeiling("node:http ceiling", "node", workDir);
    targets.push(ceiling);
    const bunker = await startBunker("Bunker", "none");
    targets.push(bunker);
    // Small objects only: it is the floor of the 4 KiB phases.
    const floor = await startFloor("S3 floor", workDir);
    targets.push(floor);
    const largeTargets = [ceiling, bunker];
    for (const t of targets) {
      await t.createBucket("bench");
      await warmUp(t, src, largeTargets.includes(t));
    }
    const idle = await measure([bunker.pid()!], () => Bun.sleep(IDLE_MS));
    // Each phase runs on both servers back to back (in alternating order), so that a change
    // of load on the shared machine hits both sides of a ratio alike.
    const small = new Map<Target, Record<SmallOp, number>[]>(targets.map((t) => [t, []]));
    const large = new Map<Target, { put: number; get: number }[]>(largeTargets.map((t) => [t, []]));
    const blake: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? [...targets].reverse() : targets;
      const counts = new Map(order.map((t) => [t, SMALL_OPS]));
      const results = new Map(order.map((t) => [t, {} as Record<SmallOp, number>]));
      for (const op of SMALL_OPS_ORDER) {
        for (const t of order) {
          const { done, us } = await smallPhase(t, op, `round-${r}`, counts.get(t)!);
          if (op === "put") counts.set(t, done); // a PUT phase cut by its time limit bounds the others
          results.get(t)![op] = us;
        }
      }
      // Each server's GET right after its PUT: the next PUT drops the page cache (see the
      // header), and a GET after it would read from disk what the other reads from memory.
      const largeRuns = new Map<Target, { put: number; get: number }>();
      for (const t of order.filter((x) => largeTargets.includes(x))) {
        const put = await largePut(t, `large-${r}`, src, srcFd);
        largeRuns.set(t, { put, get: await largeGet(t, `large-${r}`) });
      }
      for (const t of order) {
        small.get(t)!.push(results.get(t)!);
        const s = results.get(t)!;
        let largeFigures = "";
        const run = largeRuns.get(t);
        if (run !== undefined) {
          large.get(t)!.push(run);
          largeFigures = `; ms/MiB PUT ${run.put.toFixed(2)}, GET ${run.get.toFixed(2)}`;
        }
        log(`round ${r + 1} ${t.name}: µs/op ${SMALL_OPS_ORDER.map((op) => `${op} ${s[op].toFixed(0)}`).join(", ")}${largeFigures}`);
      }
      blake.push(blake3MsPerMiB());
    }
    for (const t of targets) await t.stop();
    targets.length = 0;
    const rf3PerNode = process.env.CPU_SKIP_RF3 === "1" ? undefined : await rf3(src, srcFd);

    // ------------------------------------------------------------ rows
    const rows: FootprintRow[] = [];
    const note = `median of ${ROUNDS} rounds`;
    const perRound = <T>(m: Map<Target, T[]>, t: Target) => m.get(t)!;
    const ratios = (a: number[], b: number[]) => a.map((x, i) => x / b[i]!);
    for (const op of SMALL_OPS_ORDER) {
      const c = perRound(small, ceiling).map((s) => s[op]);
      const b = perRound(small, bunker).map((s) => s[op]);
      const f = perRound(small, floor).map((s) => s[op]);
      const name = op.toUpperCase();
      rows.push({ section: SECTION, figure: `4 KiB ${name}, server CPU per op, node:http ceiling`, value: round(median(c)), unit: "µs/op", note });
      rows.push({ section: SECTION, figure: `4 KiB ${name}, server CPU per op, S3 floor`, value: round(median(f)), unit: "µs/op", note: `${note}; node:http + SigV4 + one sqlite row (benchmarks/floor-server.ts)` });
      rows.push({ section: SECTION, figure: `4 KiB ${name}, server CPU per op, Bunker`, value: round(median(b)), unit: "µs/op", note });
      rows.push({ section: SECTION, figure: `4 KiB ${name}, S3 floor / ceiling CPU per op`, value: round2(median(ratios(f, c))), unit: "×", note: "what S3 itself costs over bare HTTP on this stack; a bound below it cannot be met" });
      rows.push({ section: SECTION, figure: `4 KiB ${name}, Bunker / S3 floor CPU per op`, value: round2(median(ratios(b, f))), unit: "×", note: "what Bunker's own layers cost" });
      rows.push({ section: SECTION, figure: `4 KiB ${name}, Bunker / ceiling CPU per op`, value: round2(median(ratios(b, c))), unit: "×", bound: SMALL_BOUNDS[op], note: `${SMALL_OPS} ops per phase, ${SMALL_CONCURRENCY} clients; median of per-round ratios` });
    }
    const blakeMs = median(blake);
    const cPut = perRound(large, ceiling).map((l) => l.put);
    const bPut = perRound(large, bunker).map((l) => l.put);
    const cGet = perRound(large, ceiling).map((l) => l.get);
    const bGet = perRound(large, bunker).map((l) => l.get);
    const mib = `${LARGE_SIZE / MiB} MiB`;
    rows.push({ section: SECTION, figure: `large PUT (${mib}), server CPU per MiB, node:http ceiling (MD5 + write)`, value: round2(median(cPut)), unit: "ms/MiB", note });
    rows.push({ section: SECTION, figure: "BLAKE3 alone (blake3-wasm, 1 MiB blocks), CPU per MiB", value: round2(blakeMs), unit: "ms/MiB", note });
    const cacheNote = pageCacheDropped ? "page cache dropped before each PUT" : "page cache NOT dropped (not root): includes the VM's cost of new page-cache pages";
    rows.push({ section: SECTION, figure: `large PUT (${mib}), server CPU per MiB, Bunker`, value: round2(median(bPut)), unit: "ms/MiB", note: `compression none; ${cacheNote}` });
    rows.push({
      section: SECTION,
      figure: "large PUT, (Bunker − BLAKE3) / ceiling CPU per MiB",
      value: round2(median(bPut.map((b, i) => (b - blake[i]!) / cPut[i]!))),
      unit: "×",
      bound: LARGE_PUT_BOUND,
      note: `bound: Bunker ≤ 1.3 × ceiling + BLAKE3; median of per-round ratios; ${cacheNote}`,
    });
    rows.push({ section: SECTION, figure: `large GET (${mib}), server CPU per MiB, node:http ceiling`, value: round2(median(cGet)), unit: "ms/MiB", note });
    rows.push({ section: SECTION, figure: `large GET (${mib}), server CPU per MiB, Bunker`, value: round2(median(bGet)), unit: "ms/MiB", note });
    rows.push({ section: SECTION, figure: "large GET, Bunker / ceiling CPU per MiB", value: round2(median(ratios(bGet, cGet))), unit: "×", bound: LARGE_GET_BOUND, note: "median of per-round ratios" });
    if (rf3PerNode) {
      const single = median(bPut);
      const names = ["node 1 (receives the PUT, stores a copy)", "node 2 (replica)", "node 3 (replica)"];
      rf3PerNode.forEach((xs, i) => rows.push({ section: SECTION, figure: `RF 3 PUT (${mib}), CPU per MiB, ${names[i]}`, value: round2(median(xs)), unit: "ms/MiB", note: "3 nodes on this machine, compression none" }));
      const worstReplica = Math.max(median(rf3PerNode[1]!), median(rf3PerNode[2]!));
      rows.push({ section: SECTION, figure: "RF 3 replica CPU per MiB received and stored / single node's per MiB stored", value: round2(worstReplica / single), unit: "×", bound: RF3_REPLICA_BOUND, note: "the busier replica; single node = Bunker's large PUT above" });
      rows.push({ section: SECTION, figure: "RF 3 first node CPU per MiB / single node's", value: round2(median(rf3PerNode[0]!) / single), unit: "×", note: "it also sends two copies" });
    }
    rows.push({ section: SECTION, figure: "Bunker idle CPU", value: round2((idle.cpu[0]! / idle.seconds) * 1000), unit: "ms/s", note: `over ${IDLE_MS / 1000} s` });
    rows.push({
      section: SECTION,
      figure: "other processes' CPU during the measured windows (median)",
      value: round2(median(foreignLoad)),
      unit: "cores",
      note: `max ${Math.max(...foreignLoad).toFixed(2)} of 2; load average ${load0.toFixed(2)} at start, ${loadavg()[0]!.toFixed(2)} at end`,
    });
    return rows;
  } finally {
    for (const t of targets) await t.stop().catch(() => {});
    closeSync(srcFd);
    rmSync(workDir, { recursive: true, force: true });
  }
}

function round(x: number): number {
  return Math.round(x);
}
function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

if (import.meta.main) {
  const { verdict } = await import("./row.ts");
  const rows = await run();
  for (const r of rows) console.log(`${r.figure.padEnd(92)} ${String(r.value).padStart(9)} ${r.unit.padEnd(7)} ${r.bound === undefined ? "" : `≤ ${r.bound}  ${verdict(r)}`}${r.note ? `  (${r.note})` : ""}`);
}
