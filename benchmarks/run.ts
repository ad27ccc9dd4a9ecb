// Bunker benchmark: `bun run bench` (= bun benchmarks/run.ts).
// One run measures, on this machine and in this session:
//   1. ceilings: disk write (+fsync) / read, bare Bun.serve and bare node:http servers (PUT = MD5 +
//      write to disk, GET = stream a file), a bun:sqlite page scan for listings;
//   2. Bunker (real server process) and 3. s3rver (Node child process) on the same workloads:
//      1 GiB single-stream PUT/GET, 8 x 64 MiB parallel PUT/GET, 4 KiB PUT/GET/HEAD/DELETE with
//      32 clients, key loading and ListObjectsV2 paging on a 100 000-key bucket;
//   4. peak RSS of each server during the 1 GiB PUT and GET;
//   5. every Bunker figure as a ratio to its ceiling and to s3rver.
// Throughput runs are interleaved across servers (run r of every server before run r+1) so the
// VM's slow drifts hit all of them alike; figures are medians of the runs.
// Prints a table on stdout (progress on stderr) and writes benchmarks/results/<timestamp>.json.
// Environment: BENCH_SCALE=quick (small sizes, for checking the harness), BENCH_RUNS=<n>,
// BENCH_PIN=1 (taskset: this client on CPU 0, every server on CPU 1).
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { randomFillSync } from "node:crypto";
import { tmpdir, cpus, totalmem, release } from "node:os";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { median, percentile, MiB, GiB } from "./lib/stats.ts";
import { sampled, type Sample } from "./lib/proc.ts";
import { startBunker, startCeiling, startS3rver, BIG_TIMEOUT_MS, type Target } from "./lib/targets.ts";
import { makeRandomFile, stampSource } from "./lib/source.ts";
import { pool } from "./lib/pool.ts";

// ---------------------------------------------------------------- configuration (all bounds named)

const QUICK = process.env.BENCH_SCALE === "quick";
const CFG = {
  scale: QUICK ? "quick" : "full",
  /** Throughput runs per server and workload (the median is reported). */
  runs: Number(process.env.BENCH_RUNS ?? 3),
  bigSize: QUICK ? 128 * MiB : 1 * GiB,
  parStreams: 8,
  parSize: QUICK ? 8 * MiB : 64 * MiB,
  warmupSize: QUICK ? 8 * MiB : 64 * MiB,
  smallSize: 4096,
  smallConcurrency: 32,
  /** Small-object rounds (each: PUT n, GET n, HEAD n, DELETE n). */
  smallRounds: QUICK ? 1 : 3,
  smallOps: QUICK ? 500 : 5000,
  /** Each small-object phase stops after this long even if it has not done smallOps. */
  smallPhaseLimitMs: QUICK ? 10_000 : 20_000,
  listKeys: QUICK ? 5_000 : 100_000,
  /** s3rver keeps each object as files and walks the whole bucket directory per list call. */
  s3rverListKeys: QUICK ? 2_000 : 10_000,
  listLoadConcurrency: 64,
  listLoadLimitMs: QUICK ? 30_000 : 120_000,
  s3rverListLoadLimitMs: QUICK ? 20_000 : 60_000,
  listPageSize: 1000,
  listSweeps: 3,
  /** Pages at each end of a sweep timed separately (pooled over sweeps) to show that paging cost is flat. */
  listEdgePages: 20,
  listSweepLimitMs: QUICK ? 20_000 : 60_000,
  diskRuns: 3,
  pin: process.env.BENCH_PIN === "1",
};

const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------- helpers

interface Measured {
  runs: number[];
  median: number;
  samples: Sample[];
  error?: string;
}

function measured(runs: number[], samples: Sample[], error?: string): Measured {
  return { runs, median: median(runs), samples, error };
}

function pin(pid: number | undefined, cpu: number): void {
  if (!CFG.pin || !pid) return;
  Bun.spawnSync(["taskset", "-a", "-p", "-c", String(cpu), String(pid)], { stdout: "ignore", stderr: "ignore" });
}

/**
 * Writes back every dirty page of the machine (outside the timed window). Without it the
 * gigabytes earlier runs left in the page cache are flushed during later runs, and the kernel
 * throttles the writer once they pass dirty_ratio: later runs were up to 1.7x slower than the
 * first of the same server.
 */
function flushDirtyPages(): void {
  Bun.spawnSync(["sync"], { stdout: "ignore", stderr: "ignore" });
}

/** Run r visits the servers in this order, so no server always goes first (or after the same one). */
function rotate<T>(xs: readonly T[], r: number): T[] {
  const k = r % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

/** A throughput run during which other processes used more CPU than this is run again. */
const FOREIGN_CORES_LIMIT = 0.25;
/** Extra attempts for a disturbed run (the last attempt is kept whatever happened). */
const MAX_RETRIES = 2;
/** Extra attempts in the whole benchmark, so a busy machine cannot stretch it without bound. */
const MAX_TOTAL_RETRIES = 15;
const disturbance = { retried: 0, keptDisturbed: 0, maxForeignCores: 0 };

function noteForeign(s: Sample, what: string): boolean {
  disturbance.maxForeignCores = Math.max(disturbance.maxForeignCores, s.foreignCores);
  if (s.foreignCores <= FOREIGN_CORES_LIMIT) return false;
  log(`  ${what}: other processes used ${s.foreignCores.toFixed(2)} cores`);
  return true;
}

/**
 * One throughput run of `bytes`, repeated (bounded) when other processes disturbed it.
 * `before` runs before every attempt (outside the timed window).
 */
async function throughputRun<T>(
  label: string,
  t: Target,
  bytes: number,
  fn: () => Promise<T>,
  check: (v: T) => void,
  before?: () => void,
): Promise<{ mibs: number; sample: Sample }> {
  for (let attempt = 0; ; attempt++) {
    before?.();
    flushDirtyPages();
    const { value, sample } = await sampled(t.pid(), fn);
    check(value);
    const mibs = bytes / MiB / sample.seconds;
    const disturbed = noteForeign(sample, `${label} ${t.name}`);
    if (disturbed && attempt < MAX_RETRIES && disturbance.retried < MAX_TOTAL_RETRIES) {
      disturbance.retried++;
      continue;
    }
    if (disturbed) disturbance.keptDisturbed++;
    log(`${label} ${t.name}: ${mibs.toFixed(0)} MiB/s, RSS peak ${sample.peakRssMiB.toFixed(0)} MiB, server ${sample.serverCores.toFixed(2)} cores, client ${sample.clientCores.toFixed(2)}, others ${sample.foreignCores.toFixed(2)}, io stall ${sample.ioStallPct.toFixed(0)}%`);
    return { mibs, sample };
  }
}

// ---------------------------------------------------------------- ceilings without HTTP

async function diskCeilings(dir: string) {
  const path = join(dir, "disk-ceiling.bin");
  const buf = Buffer.alloc(MiB);
  randomFillSync(buf);
  const write: number[] = [];
  const readHot: number[] = [];
  const readCold: number[] = [];
  for (let r = 0; r < CFG.diskRuns; r++) {
    rmSync(path, { force: true });
    flushDirtyPages();
    const t0 = performance.now();
    const sink = Bun.file(path).writer({ highWaterMark: MiB });
    for (let off = 0; off < CFG.bigSize; off += MiB) sink.write(buf);
    await sink.end();
    const fd = openSync(path, "r+");
    fsyncSync(fd);
    closeSync(fd);
    write.push(CFG.bigSize / MiB / ((performance.now() - t0) / 1000));

    const readOnce = async () => {
      const t = performance.now();
      let n = 0;
      for await (const c of Bun.file(path).stream()) n += c.length;
      if (n !== CFG.bigSize) throw new Error(`disk read ${n}`);
      return CFG.bigSize / MiB / ((performance.now() - t) / 1000);
    };
    // Drop this file from the page cache (posix_fadvise DONTNEED through dd), then read twice.
    Bun.spawnSync(["dd", `if=${path}`, "iflag=nocache", "count=0", "status=none"]);
    readCold.push(await readOnce());
    readHot.push(await readOnce());
  }
  rmSync(path, { force: true });
  return { write: measured(write, []), readCold: measured(readCold, []), readHot: measured(readHot, []) };
}

/** bun:sqlite WITHOUT ROWID keyset scan of 1000-row pages: the metadata floor of one list page. */
function sqliteListCeiling(dir: string, keys: number) {
  const db = new Database(join(dir, "list-ceiling.sqlite"), { create: true, strict: true });
  db.run("PRAGMA journal_mode = WAL");
  db.run("CREATE TABLE o (bucket TEXT NOT NULL, key TEXT NOT NULL, size INTEGER, etag TEXT, PRIMARY KEY (bucket, key)) WITHOUT ROWID");
  const ins = db.query("INSERT INTO o VALUES (?, ?, ?, ?)");
  db.transaction(() => {
    for (let i = 0; i < keys; i++) ins.run("b", listKey(i), 16, "0123456789abcdef0123456789abcdef");
  })();
  const page = db.query("SELECT key, size, etag FROM o WHERE bucket = ? AND key > ? ORDER BY key LIMIT ?");
  const rates: number[] = [];
  for (let s = 0; s < CFG.listSweeps; s++) {
    const t0 = performance.now();
    let cursor = "";
    let pages = 0;
    for (;;) {
      const rows = page.values("b", cursor, CFG.listPageSize) as [string, number, string][];
      if (rows.length === 0) break;
      pages++;
      cursor = rows[rows.length - 1]![0];
      if (rows.length < CFG.listPageSize) break;
    }
    rates.push(pages / ((performance.now() - t0) / 1000));
  }
  db.close();
  return measured(rates, []);
}

// ---------------------------------------------------------------- workloads

function listKey(i: number): string {
  return `dir${String(i % 100).padStart(2, "0")}/obj-${String(i).padStart(7, "0")}`;
}

function smallBody(base: Uint8Array, round: number, i: number): Uint8Array {
  const b = new Uint8Array(base);
  const v = new DataView(b.buffer);
  v.setUint32(0, round);
  v.setUint32(4, i);
  v.setFloat64(8, performance.now());
  return b;
}

interface SmallResult {
  opsPerSec: number;
  serverCores: number;
  foreignCores: number;
  p50: number;
  p99: number;
  done: number;
  errors: number;
  firstError?: string;
  timedOut: boolean;
}

async function smallOps(t: Target, round: number, base: Uint8Array): Promise<Record<"put" | "get" | "head" | "delete", SmallResult>> {
  const key = (i: number) => `small-${round}/obj-${String(i).padStart(6, "0")}`;
  const phase = async (n: number, fn: (i: number) => Promise<void>): Promise<SmallResult> => {
    const { value: r, sample } = await sampled(t.pid(), () => pool(n, CFG.smallConcurrency, CFG.smallPhaseLimitMs, fn));
    noteForeign(sample, `small ${t.name}`);
    return {
      opsPerSec: r.done / r.seconds,
      serverCores: sample.serverCores,
      foreignCores: sample.foreignCores,
      p50: percentile(r.latencies, 50),
      p99: percentile(r.latencies, 99),
      done: r.done,
      errors: r.errors,
      firstError: r.firstError,
      timedOut: r.timedOut,
    };
  };
  const put = await phase(CFG.smallOps, (i) => t.put("bench", key(i), smallBody(base, round, i)));
  const n = put.done; // a time-limited PUT phase bounds the others
  const get = await phase(n, async (i) => {
    const bytes = await t.get("bench", key(i));
    if (bytes !== CFG.smallSize) throw new Error(`GET ${key(i)}: ${bytes} bytes`);
  });
  const head = await phase(n, (i) => t.head("bench", key(i)));
  const del = await phase(n, (i) => t.del("bench", key(i)));
  return { put, get, head, delete: del };
}

interface SweepResult {
  pages: number;
  keys: number;
  seconds: number;
  pageMs: number[];
  complete: boolean;
}

async function sweep(t: Target, bucket: string, limitMs: number): Promise<SweepResult> {
  const deadline = performance.now() + limitMs;
  const t0 = performance.now();
  const pageMs: number[] = [];
  let keys = 0;
  let token: string | undefined;
  for (;;) {
    const s = performance.now();
    const page = await t.listPage(bucket, CFG.listPageSize, token);
    pageMs.push(performance.now() - s);
    keys += page.keys;
    if (page.next === undefined) return { pages: pageMs.length, keys, seconds: (performance.now() - t0) / 1000, pageMs, complete: true };
    if (page.keys !== CFG.listPageSize) throw new Error(`list page ${pageMs.length} of ${t.name}: ${page.keys} keys`);
    token = page.next;
    if (performance.now() > deadline) return { pages: pageMs.length, keys, seconds: (performance.now() - t0) / 1000, pageMs, complete: false };
  }
}

async function listing(t: Target, keysWanted: number, loadLimitMs: number) {
  const body = new Uint8Array(16).fill(0x61);
  log(`${t.name}: loading ${keysWanted} keys (${CFG.listLoadConcurrency} concurrent PUTs, limit ${loadLimitMs / 1000} s)`);
  const { value: load, sample: loadSample } = await sampled(t.pid(), () => pool(keysWanted, CFG.listLoadConcurrency, loadLimitMs, (i) => t.put("listing", listKey(i), body)));
  noteForeign(loadSample, `key load ${t.name}`);
  log(`${t.name}: loaded ${load.done} keys in ${load.seconds.toFixed(1)} s (${(load.done / load.seconds).toFixed(0)}/s)`);
  const sweeps: SweepResult[] = [];
  for (let s = 0; s < CFG.listSweeps; s++) {
    const { value: r, sample } = await sampled(t.pid(), () => sweep(t, "listing", CFG.listSweepLimitMs));
    noteForeign(sample, `list sweep ${t.name}`);
    sweeps.push(r);
    log(`${t.name}: sweep ${s + 1}: ${r.pages} pages, ${r.keys} keys, ${(r.pages / r.seconds).toFixed(1)} pages/s${r.complete ? "" : " (time limit)"}`);
    if (!r.complete) break;
  }
  const complete = sweeps.filter((s) => s.complete);
  const use = complete.length ? complete : sweeps;
  // Pages at each end, pooled over the sweeps; rate = pages / time spent on them.
  const e = Math.max(1, Math.min(CFG.listEdgePages, Math.floor((use[0]?.pageMs.length ?? 0) / 2)));
  const rate = (ms: number[]) => (ms.length ? (1000 * ms.length) / ms.reduce((a, b) => a + b, 0) : NaN);
  const firstMs = use.flatMap((s) => s.pageMs.slice(0, e));
  const lastMs = complete.flatMap((s) => s.pageMs.slice(-e));
  return {
    keysRequested: keysWanted,
    keysLoaded: load.done,
    loadErrors: load.errors,
    loadFirstError: load.firstError,
    loadPerSec: load.done / load.seconds,
    loadServerCores: loadSample.serverCores,
    loadP50Ms: percentile(load.latencies, 50),
    loadP99Ms: percentile(load.latencies, 99),
    keysListed: use[0]?.keys ?? 0,
    sweepsComplete: complete.length,
    pagesPerSec: median(use.map((s) => s.pages / s.seconds)),
    firstPagesPerSec: rate(firstMs),
    lastPagesPerSec: rate(lastMs),
    firstPageMsP99: percentile(firstMs, 99),
    lastPageMsP99: percentile(lastMs, 99),
    edgePages: e,
    sweeps: sweeps.map((s) => ({ pages: s.pages, keys: s.keys, seconds: s.seconds, complete: s.complete, pageMsMedian: median(s.pageMs), pageMsMax: Math.max(...s.pageMs) })),
  };
}

// ---------------------------------------------------------------- main

function machine() {
  const cpu = cpus();
  let nodeVersion = "";
  try {
    nodeVersion = Bun.spawnSync(["node", "--version"]).stdout.toString().trim();
  } catch {}
  return {
    cpu: cpu[0]?.model ?? "?",
    cores: cpu.length,
    memGiB: Math.round(totalmem() / GiB),
    kernel: release(),
    bun: Bun.version,
    node: nodeVersion,
    s3rver: JSON.parse(readFileSync(join(import.meta.dir, "../node_modules/s3rver/package.json"), "utf8")).version,
    pinned: CFG.pin,
  };
}

async function main() {
  const started = new Date();
  const t0 = performance.now();
  const work = mkdtempSync(join(tmpdir(), "bunker-bench-"));
  const targets: Target[] = [];
  const errors: string[] = [];
  try {
    pin(process.pid, 0);
    log(`scale ${CFG.scale}, ${CFG.runs} runs, work dir ${work}`);
    const src = join(work, "source.bin");
    makeRandomFile(src, CFG.bigSize);
    const srcFd = openSync(src, "r+");
    const srcFile = Bun.file(src);

    log("disk ceilings");
    const disk = await diskCeilings(work);
    log(`disk write+fsync ${disk.write.median.toFixed(0)} MiB/s, read cold ${disk.readCold.median.toFixed(0)}, hot ${disk.readHot.median.toFixed(0)}`);
    log("sqlite list ceiling");
    const sqliteList = sqliteListCeiling(work, CFG.listKeys);

    log("starting servers");
    const ceilBun = await startCeiling("ceiling Bun.serve", "bun", work);
    targets.push(ceilBun);
    const ceilNode = await startCeiling("ceiling node:http", "node", work);
    targets.push(ceilNode);
    const bunker = await startBunker("Bunker", "none");
    targets.push(bunker);
    const bunkerZstd = await startBunker("Bunker zstd-1", 1);
    targets.push(bunkerZstd);
    const s3rver = await startS3rver("s3rver", work, ["bench", "listing"]);
    targets.push(s3rver);
    for (const t of [bunker, bunkerZstd]) {
      await t.createBucket("bench");
      await t.createBucket("listing");
    }
    for (const t of targets) pin(t.pid(), 1);
    const main4 = [ceilBun, ceilNode, bunker, s3rver];

    // -- warm-up: one PUT + GET per server (JIT, connections, first-touch memory)
    log("warm-up");
    for (const t of targets) {
      await t.put("bench", "warmup", srcFile.slice(0, CFG.warmupSize), BIG_TIMEOUT_MS);
      await t.get("bench", "warmup", BIG_TIMEOUT_MS);
    }

    // -- large single stream
    const bigPut: Record<string, { runs: number[]; samples: Sample[]; error?: string }> = {};
    const bigGet: typeof bigPut = {};
    const record = (m: typeof bigPut, name: string, v?: number, s?: Sample, err?: string) => {
      const e = (m[name] ??= { runs: [], samples: [] });
      if (v !== undefined) e.runs.push(v);
      if (s) e.samples.push(s);
      if (err) {
        e.error ??= err;
        errors.push(`${name}: ${err}`);
      }
    };
    const noCheck = () => {};
    for (let r = 0; r < CFG.runs; r++) {
      for (const t of rotate([...main4, bunkerZstd], r)) {
        try {
          const { mibs, sample } = await throughputRun(`PUT ${CFG.bigSize / MiB} MiB run ${r + 1}`, t, CFG.bigSize, () => t.put("bench", `big-${r}`, srcFile, BIG_TIMEOUT_MS), noCheck, () => stampSource(srcFd, CFG.bigSize));
          record(bigPut, t.name, mibs, sample);
        } catch (err) {
          record(bigPut, t.name, undefined, undefined, (err as Error).message);
          log(`PUT ${t.name} failed: ${(err as Error).message}`);
        }
      }
    }
    for (let r = 0; r < CFG.runs; r++) {
      for (const t of rotate(main4, r)) {
        try {
          const { mibs, sample } = await throughputRun(`GET ${CFG.bigSize / MiB} MiB run ${r + 1}`, t, CFG.bigSize, () => t.get("bench", `big-${r}`, BIG_TIMEOUT_MS), (n) => {
            if (n !== CFG.bigSize) throw new Error(`GET returned ${n} bytes`);
          });
          record(bigGet, t.name, mibs, sample);
        } catch (err) {
          record(bigGet, t.name, undefined, undefined, (err as Error).message);
          log(`GET ${t.name} failed: ${(err as Error).message}`);
        }
      }
    }
    await bunkerZstd.stop();
    targets.splice(targets.indexOf(bunkerZstd), 1);

    // -- parallel streams
    const parPut: typeof bigPut = {};
    const parGet: typeof bigPut = {};
    const parTotal = CFG.parStreams * CFG.parSize;
    for (let r = 0; r < CFG.runs; r++) {
      for (const t of rotate(main4, r)) {
        try {
          const { mibs, sample } = await throughputRun(
            `PUT ${CFG.parStreams}x${CFG.parSize / MiB} MiB run ${r + 1}`,
            t,
            parTotal,
            () => Promise.all(Array.from({ length: CFG.parStreams }, (_, i) => t.put("bench", `par-${r}-${i}`, srcFile.slice(i * CFG.parSize, (i + 1) * CFG.parSize), BIG_TIMEOUT_MS))),
            noCheck,
            () => stampSource(srcFd, parTotal),
          );
          record(parPut, t.name, mibs, sample);
        } catch (err) {
          record(parPut, t.name, undefined, undefined, (err as Error).message);
          log(`parallel PUT ${t.name} failed: ${(err as Error).message}`);
        }
      }
    }
    for (let r = 0; r < CFG.runs; r++) {
      for (const t of rotate(main4, r)) {
        try {
          const { mibs, sample } = await throughputRun(
            `GET ${CFG.parStreams}x${CFG.parSize / MiB} MiB run ${r + 1}`,
            t,
            parTotal,
            () => Promise.all(Array.from({ length: CFG.parStreams }, (_, i) => t.get("bench", `par-${r}-${i}`, BIG_TIMEOUT_MS))),
            (sizes) => {
              if (sizes.some((n) => n !== CFG.parSize)) throw new Error(`GET sizes ${sizes.join(",")}`);
            },
          );
          record(parGet, t.name, mibs, sample);
        } catch (err) {
          record(parGet, t.name, undefined, undefined, (err as Error).message);
          log(`parallel GET ${t.name} failed: ${(err as Error).message}`);
        }
      }
    }

    // -- small objects
    const base = new Uint8Array(CFG.smallSize);
    randomFillSync(base);
    const small: Record<string, Awaited<ReturnType<typeof smallOps>>[]> = {};
    for (let r = 0; r < CFG.smallRounds; r++) {
      for (const t of rotate(main4, r)) {
        flushDirtyPages();
        try {
          const res = await smallOps(t, r, base);
          (small[t.name] ??= []).push(res);
          log(`small round ${r + 1} ${t.name}: ` + (["put", "get", "head", "delete"] as const).map((op) => `${op} ${res[op].opsPerSec.toFixed(0)}/s (${res[op].serverCores.toFixed(2)} cores, p99 ${res[op].p99.toFixed(1)} ms${res[op].errors ? `, ${res[op].errors} errors: ${res[op].firstError}` : ""})`).join(", "));
          for (const op of ["put", "get", "head", "delete"] as const) if (res[op].errors) errors.push(`${t.name} small ${op}: ${res[op].errors} errors, first: ${res[op].firstError}`);
        } catch (err) {
          errors.push(`${t.name} small: ${(err as Error).message}`);
          log(`small ${t.name} failed: ${(err as Error).message}`);
        }
      }
    }
    const smallSummary = (name: string) => {
      const rounds = small[name] ?? [];
      const out = {} as Record<"put" | "get" | "head" | "delete", { opsPerSec: number; p50: number; p99: number; serverCores: number; opsPerRound: number[] }>;
      for (const op of ["put", "get", "head", "delete"] as const) {
        out[op] = {
          opsPerSec: median(rounds.map((x) => x[op].opsPerSec)),
          p50: median(rounds.map((x) => x[op].p50)),
          p99: median(rounds.map((x) => x[op].p99)),
          serverCores: median(rounds.map((x) => x[op].serverCores)),
          opsPerRound: rounds.map((x) => x[op].done),
        };
      }
      return out;
    };

    // -- listing
    flushDirtyPages();
    let bunkerList: Awaited<ReturnType<typeof listing>> | undefined;
    let s3rverList: typeof bunkerList;
    try {
      bunkerList = await listing(bunker, CFG.listKeys, CFG.listLoadLimitMs);
    } catch (err) {
      errors.push(`Bunker listing: ${(err as Error).message}`);
      log(`Bunker listing failed: ${(err as Error).message}`);
    }
    flushDirtyPages();
    try {
      s3rverList = await listing(s3rver, CFG.s3rverListKeys, CFG.s3rverListLoadLimitMs);
    } catch (err) {
      errors.push(`s3rver listing: ${(err as Error).message}`);
      log(`s3rver listing failed: ${(err as Error).message}`);
    }

    // ------------------------------------------------------------ report
    const fin = (m: Record<string, { runs: number[]; samples: Sample[]; error?: string }>, name: string): Measured =>
      measured(m[name]?.runs ?? [], m[name]?.samples ?? [], m[name]?.error);
    const results = {
      date: started.toISOString(),
      durationSec: (performance.now() - t0) / 1000,
      machine: machine(),
      config: CFG,
      ceilings: {
        diskWriteFsyncMiBs: disk.write,
        diskReadColdMiBs: disk.readCold,
        diskReadHotMiBs: disk.readHot,
        sqliteListPagesPerSec: sqliteList,
      },
      bigPut: Object.fromEntries(Object.keys(bigPut).map((n) => [n, fin(bigPut, n)])),
      bigGet: Object.fromEntries(Object.keys(bigGet).map((n) => [n, fin(bigGet, n)])),
      parPut: Object.fromEntries(Object.keys(parPut).map((n) => [n, fin(parPut, n)])),
      parGet: Object.fromEntries(Object.keys(parGet).map((n) => [n, fin(parGet, n)])),
      small: Object.fromEntries(Object.keys(small).map((n) => [n, { summary: smallSummary(n), rounds: small[n] }])),
      listing: { Bunker: bunkerList, s3rver: s3rverList },
      rows: [] as Row[],
      targets: [] as { target: string; value: string; met: boolean | null }[],
      errors,
      disturbance,
    };

    const B = "Bunker", CB = "ceiling Bun.serve", CN = "ceiling node:http", S = "s3rver";
    const med = (m: Record<string, Measured>, n: string) => m[n]?.median ?? NaN;
    const peak = (m: Record<string, Measured>, n: string) => Math.max(...(m[n]?.samples.map((s) => Math.max(s.peakRssMiB, s.hwmMiB)) ?? [NaN]));
    const cores = (m: Record<string, Measured>, n: string) => median(m[n]?.samples.map((s) => s.serverCores) ?? []);
    const medOf = (m: Record<string, Measured>, n: string, k: "ioStallPct" | "memStallPct") => median(m[n]?.samples.map((s) => s[k]) ?? []);
    const clientCores = (m: Record<string, Measured>, n: string) => median(m[n]?.samples.map((s) => s.clientCores) ?? []);
    const ss = (n: string) => results.small[n]?.summary;
    const rows: Row[] = [
      { section: "Ceilings without HTTP (same run)" },
      { label: `disk seq write ${CFG.bigSize / MiB} MiB + fsync (Bun file writer)`, unit: "MiB/s", only: disk.write.median },
      { label: `disk seq read, page cache dropped (Bun.file stream)`, unit: "MiB/s", only: disk.readCold.median },
      { label: `disk seq read, hot page cache`, unit: "MiB/s", only: disk.readHot.median },
      { label: `bun:sqlite 1000-row page scan (WITHOUT ROWID; list ceiling)`, unit: "pages/s", only: sqliteList.median },
      { section: `Large objects (median of ${CFG.runs}; compression none unless noted)` },
      { label: `PUT ${CFG.bigSize / MiB} MiB, 1 stream`, unit: "MiB/s", bunker: med(results.bigPut, B), ceilBun: med(results.bigPut, CB), ceilNode: med(results.bigPut, CN), s3rver: med(results.bigPut, S) },
      { label: `PUT ${CFG.bigSize / MiB} MiB, 1 stream, zstd level 1, random data`, unit: "MiB/s", bunker: med(results.bigPut, "Bunker zstd-1"), ceilBun: med(results.bigPut, CB), ceilNode: med(results.bigPut, CN), s3rver: med(results.bigPut, S) },
      { label: `GET ${CFG.bigSize / MiB} MiB, 1 stream`, unit: "MiB/s", bunker: med(results.bigGet, B), ceilBun: med(results.bigGet, CB), ceilNode: med(results.bigGet, CN), s3rver: med(results.bigGet, S) },
      { label: `PUT ${CFG.parStreams} x ${CFG.parSize / MiB} MiB parallel`, unit: "MiB/s", bunker: med(results.parPut, B), ceilBun: med(results.parPut, CB), ceilNode: med(results.parPut, CN), s3rver: med(results.parPut, S) },
      { label: `GET ${CFG.parStreams} x ${CFG.parSize / MiB} MiB parallel`, unit: "MiB/s", bunker: med(results.parGet, B), ceilBun: med(results.parGet, CB), ceilNode: med(results.parGet, CN), s3rver: med(results.parGet, S) },
      { label: `server peak RSS during ${CFG.bigSize / MiB} MiB PUT`, unit: "MiB", lowerBetter: true, bunker: peak(results.bigPut, B), ceilBun: peak(results.bigPut, CB), ceilNode: peak(results.bigPut, CN), s3rver: peak(results.bigPut, S) },
      { label: `server peak RSS during ${CFG.bigSize / MiB} MiB PUT, zstd-1`, unit: "MiB", lowerBetter: true, bunker: peak(results.bigPut, "Bunker zstd-1") },
      { label: `server peak RSS during ${CFG.bigSize / MiB} MiB GET`, unit: "MiB", lowerBetter: true, bunker: peak(results.bigGet, B), ceilBun: peak(results.bigGet, CB), ceilNode: peak(results.bigGet, CN), s3rver: peak(results.bigGet, S) },
      { label: `server CPU during ${CFG.bigSize / MiB} MiB PUT`, unit: "cores", info: true, bunker: cores(results.bigPut, B), ceilBun: cores(results.bigPut, CB), ceilNode: cores(results.bigPut, CN), s3rver: cores(results.bigPut, S) },
      { label: `server CPU during ${CFG.bigSize / MiB} MiB GET`, unit: "cores", info: true, bunker: cores(results.bigGet, B), ceilBun: cores(results.bigGet, CB), ceilNode: cores(results.bigGet, CN), s3rver: cores(results.bigGet, S) },
      { label: `I/O stall (PSI io some) during ${CFG.bigSize / MiB} MiB PUT / GET`, unit: "%", info: true, bunker: medOf(results.bigPut, B, "ioStallPct"), ceilBun: medOf(results.bigPut, CB, "ioStallPct"), ceilNode: medOf(results.bigPut, CN, "ioStallPct"), s3rver: medOf(results.bigPut, S, "ioStallPct"), second: { bunker: medOf(results.bigGet, B, "ioStallPct"), ceilBun: medOf(results.bigGet, CB, "ioStallPct"), ceilNode: medOf(results.bigGet, CN, "ioStallPct"), s3rver: medOf(results.bigGet, S, "ioStallPct") } },
      { label: `client CPU during ${CFG.bigSize / MiB} MiB PUT / GET`, unit: "cores", info: true, bunker: clientCores(results.bigPut, B), ceilBun: clientCores(results.bigPut, CB), ceilNode: clientCores(results.bigPut, CN), s3rver: clientCores(results.bigPut, S), second: { bunker: clientCores(results.bigGet, B), ceilBun: clientCores(results.bigGet, CB), ceilNode: clientCores(results.bigGet, CN), s3rver: clientCores(results.bigGet, S) } },
      { section: `Small objects: ${CFG.smallSize} B, ${CFG.smallConcurrency} clients, up to ${CFG.smallOps} ops per phase (median of ${CFG.smallRounds} rounds)` },
    ];
    for (const op of ["put", "get", "head", "delete"] as const) {
      const second = { bunker: ss(B)?.[op].p99, ceilBun: ss(CB)?.[op].p99, ceilNode: ss(CN)?.[op].p99, s3rver: ss(S)?.[op].p99 };
      rows.push({ label: `${op.toUpperCase()} ops/s`, unit: "ops/s", bunker: ss(B)?.[op].opsPerSec, ceilBun: ss(CB)?.[op].opsPerSec, ceilNode: ss(CN)?.[op].opsPerSec, s3rver: ss(S)?.[op].opsPerSec });
      rows.push({ label: `${op.toUpperCase()} latency p50 / p99`, unit: "ms", lowerBetter: true, bunker: ss(B)?.[op].p50, ceilBun: ss(CB)?.[op].p50, ceilNode: ss(CN)?.[op].p50, s3rver: ss(S)?.[op].p50, second });
    }
    const cpuRow = (a: "put" | "get" | "head" | "delete", b: "put" | "get" | "head" | "delete"): Row => ({
      label: `server CPU during ${a.toUpperCase()} / ${b.toUpperCase()}`,
      unit: "cores",
      info: true,
      bunker: ss(B)?.[a].serverCores,
      ceilBun: ss(CB)?.[a].serverCores,
      ceilNode: ss(CN)?.[a].serverCores,
      s3rver: ss(S)?.[a].serverCores,
      second: { bunker: ss(B)?.[b].serverCores, ceilBun: ss(CB)?.[b].serverCores, ceilNode: ss(CN)?.[b].serverCores, s3rver: ss(S)?.[b].serverCores },
    });
    rows.push(cpuRow("put", "get"), cpuRow("head", "delete"));
    const sl = s3rverList;
    const scaled = sl && sl.keysListed !== CFG.listKeys ? ` (s3rver: ${sl.keysListed} keys)` : "";
    rows.push(
      { section: `ListObjectsV2, ${CFG.listPageSize} keys/page, ${CFG.listKeys} keys${scaled}` },
      { label: `key load, ${CFG.listLoadConcurrency} concurrent 16 B PUTs`, unit: "PUT/s", bunker: bunkerList?.loadPerSec, ceilBun: ss(CB)?.put.opsPerSec, ceilNode: ss(CN)?.put.opsPerSec, s3rver: sl?.loadPerSec },
      { label: `list pages/s, full sweep (ceiling: sqlite scan)`, unit: "pages/s", bunker: bunkerList?.pagesPerSec, ceilBun: sqliteList.median, s3rver: sl?.pagesPerSec },
      { label: `list pages/s, first ${bunkerList?.edgePages ?? CFG.listEdgePages} pages of each sweep`, unit: "pages/s", bunker: bunkerList?.firstPagesPerSec, ceilBun: sqliteList.median, s3rver: sl?.firstPagesPerSec },
      { label: `list pages/s, last ${bunkerList?.edgePages ?? CFG.listEdgePages} pages of each sweep`, unit: "pages/s", bunker: bunkerList?.lastPagesPerSec, ceilBun: sqliteList.median, s3rver: sl?.lastPagesPerSec },
    );
    results.rows = rows;

    const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
    const tgt = (target: string, value: number, ok: (v: number) => boolean, fmt: (v: number) => string) =>
      results.targets.push({ target, value: Number.isFinite(value) ? fmt(value) : "n/a", met: Number.isFinite(value) ? ok(value) : null });
    const x = (v: number) => `${v.toFixed(2)}x`;
    const big = CFG.bigSize >= GiB ? `${CFG.bigSize / GiB} GiB` : `${CFG.bigSize / MiB} MiB`;
    tgt(`${big} PUT >= 0.7 x Bun.serve ceiling`, ratio(med(results.bigPut, B), med(results.bigPut, CB)), (v) => v >= 0.7, x);
    tgt(`${big} PUT >= 0.7 x node:http ceiling`, ratio(med(results.bigPut, B), med(results.bigPut, CN)), (v) => v >= 0.7, x);
    tgt(`${big} GET >= 0.7 x Bun.serve ceiling`, ratio(med(results.bigGet, B), med(results.bigGet, CB)), (v) => v >= 0.7, x);
    tgt(`${big} GET >= 0.7 x node:http ceiling`, ratio(med(results.bigGet, B), med(results.bigGet, CN)), (v) => v >= 0.7, x);
    for (const op of ["put", "get", "head", "delete"] as const)
      tgt(`4 KiB ${op.toUpperCase()} ops/s >= 3 x s3rver`, ratio(ss(B)?.[op].opsPerSec, ss(S)?.[op].opsPerSec), (v) => v >= 3, x);
    tgt(`peak RSS during ${big} PUT < 200 MiB`, peak(results.bigPut, B), (v) => v < 200, (v) => `${v.toFixed(0)} MiB`);
    tgt(`peak RSS during ${big} GET < 200 MiB`, peak(results.bigGet, B), (v) => v < 200, (v) => `${v.toFixed(0)} MiB`);

    results.durationSec = (performance.now() - t0) / 1000;
    const outDir = join(import.meta.dir, "results");
    mkdirSync(outDir, { recursive: true });
    const outFile = join(outDir, `${started.toISOString().replace(/[:.]/g, "-")}.json`);
    writeFileSync(outFile, JSON.stringify(results, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2));
    closeSync(srcFd);

    process.stdout.write(renderTable(results, rows) + "\n");
    process.stdout.write(`results: ${outFile}\n`);
  } finally {
    for (const t of targets) await t.stop().catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- table

interface Row {
  section?: string;
  label?: string;
  unit?: string;
  lowerBetter?: boolean;
  /** Shown, but no ratio makes sense (CPU use). */
  info?: boolean;
  /** A ceiling-only figure. */
  only?: number;
  bunker?: number;
  ceilBun?: number;
  ceilNode?: number;
  s3rver?: number;
  /** A second figure shown after a slash (p99 after p50). */
  second?: { bunker?: number; ceilBun?: number; ceilNode?: number; s3rver?: number };
}

function fmt(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return "-";
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function renderTable(results: { date: string; durationSec: number; machine: ReturnType<typeof machine>; targets: { target: string; value: string; met: boolean | null }[]; errors: string[]; disturbance: typeof disturbance }, rows: Row[]): string {
  const header = ["", "unit", "Bunker", "Bun.serve ceil", "x", "node:http ceil", "x", "s3rver", "x s3rver"];
  const lines: string[][] = [];
  const r = (a?: number, b?: number) => (a !== undefined && b !== undefined && Number.isFinite(a) && Number.isFinite(b) && b > 0 ? (a / b).toFixed(2) : "-");
  const cell = (row: Row, k: "bunker" | "ceilBun" | "ceilNode" | "s3rver") => (row.second ? `${fmt(row[k])} / ${fmt(row.second[k])}` : fmt(row[k]));
  const out: string[] = [];
  const m = results.machine;
  out.push(`Bunker benchmark ${results.date} (${results.durationSec.toFixed(0)} s) on ${m.cores} x ${m.cpu}, ${m.memGiB} GiB, Linux ${m.kernel}, Bun ${m.bun}, Node ${m.node}, s3rver ${m.s3rver}${m.pinned ? ", pinned" : ", unpinned"}`);
  const d = results.disturbance;
  out.push(
    d.maxForeignCores > FOREIGN_CORES_LIMIT
      ? `WARNING: other processes used up to ${d.maxForeignCores.toFixed(2)} cores during measurements (${d.retried} throughput runs redone, ${d.keptDisturbed} kept disturbed); figures are less reliable.`
      : `Machine quiet: other processes used at most ${d.maxForeignCores.toFixed(2)} cores during any measurement.`,
  );
  out.push("Ratios are Bunker / other (for ms and MiB of RSS, below 1 is better). Ceilings: bare servers, same client, same run.");
  for (const row of rows) {
    if (row.section) {
      lines.push([`-- ${row.section}`]);
      continue;
    }
    if (row.only !== undefined) {
      lines.push([`${row.label!.padEnd(60)} ${fmt(row.only).padStart(8)} ${row.unit}`]);
      continue;
    }
    const ratioOk = !row.info;
    lines.push([
      row.label!,
      row.unit!,
      cell(row, "bunker"),
      cell(row, "ceilBun"),
      ratioOk && row.bunker !== undefined ? r(row.bunker, row.ceilBun) : "",
      cell(row, "ceilNode"),
      ratioOk && row.bunker !== undefined ? r(row.bunker, row.ceilNode) : "",
      cell(row, "s3rver"),
      ratioOk && row.bunker !== undefined ? r(row.bunker, row.s3rver) + (row.second ? ` / ${r(row.second.bunker, row.second.s3rver)}` : "") : "",
    ]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.filter((l) => l.length > 1).map((l) => (l[i] ?? "").length)));
  const fmtLine = (l: string[]) => l.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  out.push(fmtLine(header));
  for (const l of lines) out.push(l.length === 1 ? l[0]! : fmtLine(l));
  out.push("");
  out.push("Targets:");
  for (const t of results.targets) out.push(`  ${t.met === null ? "n/a    " : t.met ? "MET    " : "NOT MET"}  ${t.target}: ${t.value}`);
  if (results.errors.length) {
    out.push("");
    out.push(`Errors (${results.errors.length}):`);
    for (const e of results.errors.slice(0, 20)) out.push(`  ${e}`);
  }
  return out.join("\n");
}

await main();
