// The memory figures of issue 13 (`bun run bench:footprint`, section "memory"): a single node on
// the default config (idle RSS; peak RSS over a 2 GiB single-stream PUT then its GET; over 8
// parallel 256 MiB PUTs then GETs; RSS 30 s after each load; the block buffer budget's peak
// lease) and a 3-node RF 3 cluster on this machine (each node's peak RSS over 1 GiB PUTs, and
// the medians of 3 of MiB/s and of each node's CPU and page faults per MiB, CPU against the
// single node's). RSS is sampled from /proc every
// 50 ms (benchmarks/lib/proc.ts); every transfer has a timeout, so a run is bounded in time.
//
// BENCH_MEMORY_BASELINE=<path of another Bunker tree> also measures the RF 3 PUT on that tree,
// with its allocator setting and with mimalloc's default (MIMALLOC_PURGE_DELAY=100): the
// before/after of the allocator change, in the same run.
// Run alone: `bun benchmarks/footprint/memory.ts`.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { S3Client, drain } from "../lib/client";
import { cpuSeconds, ownPids, sampled, statusKiB, SAMPLE_INTERVAL_MS } from "../lib/proc";
import { stampSource } from "../lib/source";
import type { FootprintRow } from "./row";
import type { TestServer } from "../../tests/helpers/server";
import type { TestCluster } from "../../tests/helpers/cluster";
import { HASH_WORKER_IDLE_MS } from "../../src/block/hash";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SECTION = "memory";
/** Issue 13's bounds. */
const SINGLE_STREAM_BYTES = 2 * GiB;
const SINGLE_STREAM_PEAK_MiB = 160;
const PARALLEL_STREAMS = 8;
const PARALLEL_STREAM_BYTES = 256 * MiB;
const PARALLEL_PEAK_MiB = 256;
const SETTLE_MS = 30_000;
const SETTLE_ABOVE_IDLE_MiB = 30;
const RF3_PUT_BYTES = 1 * GiB;
const RF3_PEAK_MiB = 256;
/** RF 3 PUTs per configuration: the figures are their medians (this machine is shared and noisy). */
const RF3_RUNS = 3;
/** Time given to copies still being written after an RF 3 PUT returned. */
const COPIES_SETTLE_MS = 1_000;
/** Longest any one transfer may take (about 20 MiB/s for 2 GiB): the run stays bounded. */
const TRANSFER_TIMEOUT_MS = 120_000;
/** Quiet time before idle RSS is read (start-up work, the first layout and table syncs). */
const IDLE_WAIT_MS = 3_000;
/** What the node serves before the idle the settle bounds count from: a few blocks, as the CI test. */
const WARM_UP_BYTES = 4 * MiB;

const ROOT = resolve(import.meta.dir, "..", "..");

function rssMiB(pid: number): number {
  return statusKiB(pid, "VmRSS") / 1024;
}

/** Anonymous (heap, buffers) and file-backed (code) parts of a process's RSS, for notes. */
function rssParts(pid: number): string {
  return `anon ${(statusKiB(pid, "RssAnon") / 1024).toFixed(1)} MiB, file ${(statusKiB(pid, "RssFile") / 1024).toFixed(1)} MiB`;
}

/** Minor page faults of a process so far: memory it touched for the first time, or again after handing it back. */
function minorFaults(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[7]);
  } catch {
    return 0;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function client(s: TestServer): S3Client {
  return new S3Client({ url: `http://127.0.0.1:${s.s3Port}`, accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, region: s.region });
}

/** A random source file of `size` bytes, stamped before each use so no block is stored twice. */
function sourceFile(dir: string, size: number): { path: string; fd: number } {
  const path = join(dir, "source.bin");
  const fd = openSync(path, "w+");
  const chunk = randomBytes(8 * MiB);
  for (let off = 0; off < size; off += chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, size - off), off);
  // Each MiB of the 8 MiB pattern differs from the others by its stamp (stampSource).
  return { path, fd };
}

async function put(c: S3Client, key: string, body: Blob): Promise<void> {
  await c.ok("PUT", "mem", key, { body, timeoutMs: TRANSFER_TIMEOUT_MS });
}

async function get(c: S3Client, key: string, size: number): Promise<void> {
  const { bytes } = await c.ok("GET", "mem", key, { timeoutMs: TRANSFER_TIMEOUT_MS });
  if (bytes !== size) throw new Error(`GET ${key}: ${bytes} of ${size} bytes`);
}

/** Waits SETTLE_MS after a load, sampling RSS; returns the RSS at the end and when it first fell within the bound. */
async function settle(pid: number, bound: number): Promise<{ endMiB: number; withinAfterS: number | undefined }> {
  const t0 = performance.now();
  let within: number | undefined;
  while (performance.now() - t0 < SETTLE_MS) {
    if (within === undefined && rssMiB(pid) <= bound) within = (performance.now() - t0) / 1000;
    await Bun.sleep(SAMPLE_INTERVAL_MS * 4);
  }
  return { endMiB: rssMiB(pid), withinAfterS: within };
}

/** The block buffer budget's gauges from /metrics, when the server has them. */
async function budgetGauges(s: TestServer): Promise<{ max: number; peak: number } | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${s.adminPort}/metrics`, { headers: { authorization: `Bearer ${s.adminToken}` } })).text();
  const value = (name: string) => {
    const m = new RegExp(`^${name} (\\d+)`, "m").exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const max = value("block_buffer_budget_bytes");
  const peak = value("block_buffer_peak_bytes");
  return max === undefined || peak === undefined ? undefined : { max, peak };
}

async function singleNode(dir: string, rows: FootprintRow[]): Promise<{ cpuPerMiB: number }> {
  const { startServer } = (await import(join(ROOT, "tests/helpers/server.ts"))) as typeof import("../../tests/helpers/server");
  const server = await startServer();
  ownPids.add(server.proc.pid);
  const src = sourceFile(dir, SINGLE_STREAM_BYTES);
  try {
    const pid = server.proc.pid;
    const c = client(server);
    await c.ok("PUT", "mem", undefined);
    await Bun.sleep(IDLE_WAIT_MS);
    const pristine = rssMiB(pid);
    rows.push({ section: SECTION, figure: "idle RSS, single node, before any transfer", value: pristine, unit: "MiB", note: "source tree; the binary's figure and its 50 MiB bound are the startup section's" });
    // The settle bounds are counted from the idle of a node that has served, as the CI test
    // (tests/e2e/memory.test.ts) does: 2 s after serving, a node gives back the executable's
    // pages start-up touched (src/cli/startup-pages.ts) and serving brings back the code it
    // runs (clean file pages, RssFile). The anonymous memory at each end is printed too.
    stampSource(src.fd, WARM_UP_BYTES);
    await put(c, "warm-up", Bun.file(src.path).slice(0, WARM_UP_BYTES));
    await get(c, "warm-up", WARM_UP_BYTES);
    await Bun.sleep(HASH_WORKER_IDLE_MS + 2_000);
    const idle = rssMiB(pid);
    rows.push({ section: SECTION, figure: "idle RSS, single node, after a transfer", value: idle, unit: "MiB", note: `${rssParts(pid)}; what the settle bounds below count from` });
    const settleBound = idle + SETTLE_ABOVE_IDLE_MiB;

    stampSource(src.fd, SINGLE_STREAM_BYTES);
    const cpu0 = cpuSeconds(pid);
    const putRun = await sampled(pid, () => put(c, "big", Bun.file(src.path)));
    const cpuPerMiB = ((cpuSeconds(pid) - cpu0) * 1000) / (SINGLE_STREAM_BYTES / MiB);
    const getRun = await sampled(pid, () => get(c, "big", SINGLE_STREAM_BYTES));
    rows.push({
      section: SECTION,
      figure: "peak RSS, 2 GiB PUT then GET, 1 stream",
      value: Math.max(putRun.sample.peakRssMiB, getRun.sample.peakRssMiB),
      unit: "MiB",
      bound: SINGLE_STREAM_PEAK_MiB,
      note: `PUT ${(SINGLE_STREAM_BYTES / MiB / putRun.sample.seconds).toFixed(0)} MiB/s peak ${putRun.sample.peakRssMiB.toFixed(0)}, GET ${(SINGLE_STREAM_BYTES / MiB / getRun.sample.seconds).toFixed(0)} MiB/s peak ${getRun.sample.peakRssMiB.toFixed(0)}`,
    });
    rows.push({ section: SECTION, figure: "server CPU per MiB stored, single node", value: cpuPerMiB, unit: "ms/MiB", note: "2 GiB PUT" });
    const s1 = await settle(pid, settleBound);
    rows.push({
      section: SECTION,
      figure: "RSS 30 s after the 1-stream load",
      value: s1.endMiB,
      unit: "MiB",
      bound: settleBound,
      note: `idle + ${SETTLE_ABOVE_IDLE_MiB}; within it after ${s1.withinAfterS === undefined ? "never" : `${s1.withinAfterS.toFixed(1)} s`}; ${rssParts(pid)}`,
    });

    stampSource(src.fd, SINGLE_STREAM_BYTES);
    const file = Bun.file(src.path);
    const keys = Array.from({ length: PARALLEL_STREAMS }, (_, i) => `par-${i}`);
    const parPut = await sampled(pid, () => Promise.all(keys.map((k, i) => put(c, k, file.slice(i * PARALLEL_STREAM_BYTES, (i + 1) * PARALLEL_STREAM_BYTES)))));
    const parGet = await sampled(pid, () => Promise.all(keys.map((k) => get(c, k, PARALLEL_STREAM_BYTES))));
    const total = (PARALLEL_STREAMS * PARALLEL_STREAM_BYTES) / MiB;
    rows.push({
      section: SECTION,
      figure: `peak RSS, ${PARALLEL_STREAMS} parallel ${PARALLEL_STREAM_BYTES / MiB} MiB PUTs then GETs`,
      value: Math.max(parPut.sample.peakRssMiB, parGet.sample.peakRssMiB),
      unit: "MiB",
      bound: PARALLEL_PEAK_MiB,
      note: `PUT ${(total / parPut.sample.seconds).toFixed(0)} MiB/s peak ${parPut.sample.peakRssMiB.toFixed(0)}, GET ${(total / parGet.sample.seconds).toFixed(0)} MiB/s peak ${parGet.sample.peakRssMiB.toFixed(0)}`,
    });
    const s2 = await settle(pid, settleBound);
    rows.push({
      section: SECTION,
      figure: "RSS 30 s after the parallel load",
      value: s2.endMiB,
      unit: "MiB",
      bound: settleBound,
      note: `idle + ${SETTLE_ABOVE_IDLE_MiB}; within it after ${s2.withinAfterS === undefined ? "never" : `${s2.withinAfterS.toFixed(1)} s`}; ${rssParts(pid)}`,
    });
    const budget = await budgetGauges(server);
    if (budget) {
      rows.push({
        section: SECTION,
        figure: "block buffers leased at once (peak), single node",
        value: budget.peak / MiB,
        unit: "MiB",
        bound: budget.max / MiB,
        note: "block_ram_buffer_max",
      });
    }
    return { cpuPerMiB };
  } finally {
    closeSync(src.fd);
    await server.stop();
  }
}

interface Rf3Figures {
  mibPerS: number;
  peaks: number[];
  cpuPerMiB: number[];
  faultsPerMiB: number[];
}

/** A 1 GiB PUT to the first node of a 3-node RF 3 cluster of `tree`, in `env`. */
async function rf3Put(tree: string, dir: string, env: Record<string, string>): Promise<Rf3Figures> {
  const { startCluster } = (await import(join(tree, "tests/helpers/cluster.ts"))) as typeof import("../../tests/helpers/cluster");
  // The cluster helper hands the environment of this process to its servers.
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  let cluster: TestCluster;
  try {
    cluster = await startCluster({ nodes: 3, replicationFactor: 3 });
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  const path = join(dir, "rf3.bin");
  const fd = openSync(path, "w+");
  try {
    const chunk = randomBytes(8 * MiB);
    for (let off = 0; off < RF3_PUT_BYTES; off += chunk.length) writeSync(fd, chunk, 0, chunk.length, off);
    const pids = cluster.nodes.map((n) => n.proc.pid);
    for (const p of pids) ownPids.add(p);
    const c = client(cluster.nodes[0]!);
    await c.ok("PUT", "mem", undefined);
    await Bun.sleep(1_000);
    const peaks = pids.map((p) => rssMiB(p));
    const runs: { mibPerS: number; cpuPerMiB: number[]; faultsPerMiB: number[] }[] = [];
    const mib = RF3_PUT_BYTES / MiB;
    for (let run = 0; run < RF3_RUNS; run++) {
      stampSource(fd, RF3_PUT_BYTES);
      const timer = setInterval(() => pids.forEach((p, i) => (peaks[i] = Math.max(peaks[i]!, rssMiB(p)))), SAMPLE_INTERVAL_MS);
      const cpu0 = pids.map(cpuSeconds);
      const faults0 = pids.map(minorFaults);
      const t0 = performance.now();
      let seconds: number;
      try {
        await put(c, `rf3-${run}`, Bun.file(path));
        seconds = (performance.now() - t0) / 1000;
        // Copies that finish after the write quorum still count (a node's idle CPU in this second is noise).
        await Bun.sleep(COPIES_SETTLE_MS);
      } finally {
        clearInterval(timer);
      }
      runs.push({
        mibPerS: mib / seconds,
        cpuPerMiB: pids.map((p, i) => ((cpuSeconds(p) - cpu0[i]!) * 1000) / mib),
        faultsPerMiB: pids.map((p, i) => (minorFaults(p) - faults0[i]!) / mib),
      });
    }
    return {
      mibPerS: median(runs.map((r) => r.mibPerS)),
      peaks,
      cpuPerMiB: pids.map((_, i) => median(runs.map((r) => r.cpuPerMiB[i]!))),
      faultsPerMiB: pids.map((_, i) => median(runs.map((r) => r.faultsPerMiB[i]!))),
    };
  } finally {
    closeSync(fd);
    await cluster.stop();
  }
}

function rf3Rows(label: string, f: Rf3Figures, singleCpuPerMiB: number | undefined, bounded: boolean): FootprintRow[] {
  const rows: FootprintRow[] = [
    { section: SECTION, figure: `RF 3 1 GiB PUT${label}`, value: f.mibPerS, unit: "MiB/s", note: `3 nodes on this machine, to node 1; median of ${RF3_RUNS}` },
  ];
  f.peaks.forEach((p, i) =>
    rows.push({ section: SECTION, figure: `RF 3 1 GiB PUT${label}: node ${i + 1} peak RSS`, value: p, unit: "MiB", bound: bounded ? RF3_PEAK_MiB : undefined }),
  );
  f.cpuPerMiB.forEach((cpu, i) =>
    rows.push({
      section: SECTION,
      figure: `RF 3 1 GiB PUT${label}: node ${i + 1} CPU per MiB`,
      value: cpu,
      unit: "ms/MiB",
      // A replica receives and stores; the bound is the single node's CPU per MiB stored.
      bound: bounded && i > 0 ? singleCpuPerMiB : undefined,
      note: `${i === 0 ? "coordinator" : "replica"}, ${f.faultsPerMiB[i]!.toFixed(0)} page faults per MiB`,
    }),
  );
  return rows;
}

export async function run(): Promise<FootprintRow[]> {
  const dir = mkdtempSync(join(tmpdir(), "bunker-bench-memory-"));
  const rows: FootprintRow[] = [];
  try {
    const { cpuPerMiB } = await singleNode(dir, rows);
    const baseline = process.env.BENCH_MEMORY_BASELINE;
    if (baseline) {
      rows.push(...rf3Rows(" (baseline tree, its allocator setting)", await rf3Put(resolve(baseline), dir, {}), undefined, false));
      rows.push(...rf3Rows(" (baseline tree, MIMALLOC_PURGE_DELAY=100)", await rf3Put(resolve(baseline), dir, { MIMALLOC_PURGE_DELAY: "100" }), undefined, false));
    }
    rows.push(...rf3Rows("", await rf3Put(ROOT, dir, {}), cpuPerMiB, true));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

if (import.meta.main) {
  const { verdict } = await import("./row");
  for (const r of await run()) {
    console.log(`${r.figure.padEnd(62)} ${r.value.toFixed(1).padStart(8)} ${r.unit.padEnd(7)} ${r.bound === undefined ? "" : `<= ${r.bound.toFixed(1)} ${verdict(r)}`}${r.note ? `  (${r.note})` : ""}`);
  }
}
