// Start-up figures of the compiled binary (issue 13): start to first S3 answer with an existing
// and with a new data directory, idle RSS after start-up, and the binary's size. It builds the
// binary itself (deploy/build.ts, host target) and runs it as a user would: no environment
// settings, single node, the embedded defaults' settings (S3, admin and web endpoints) apart
// from the data directories and loopback ports (a config file is given, so no first-start
// credentials are written: see the notes). Bounded: every start has a deadline, and so has the build.
// Run alone with `bun benchmarks/footprint/startup.ts`.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { buildBinary } from "../../deploy/build.ts";
import { DEFAULT_WEB_ROOT_DOMAIN } from "../../src/config.ts";
import { freePort } from "../../tests/helpers/server.ts";
import { foreignCpuSeconds, ownPids, statusKiB, stopProcess } from "../lib/proc.ts";
import { median, MiB } from "../lib/stats.ts";
import type { FootprintRow } from "./row.ts";

const SECTION = "startup";
/** Starts measured per case; the median is reported. */
const RUNS = 7;
/** Issue 13's bounds, on this machine. */
const FIRST_ANSWER_EXISTING_MS = 150;
const FIRST_ANSWER_NEW_MS = 250;
const IDLE_RSS_MIB = 50;
/** A start that has not answered by then is a failure, not a slow figure. */
const START_DEADLINE_MS = 10_000;
/** The build (one-off download of a runtime aside, ~3 s here). */
const BUILD_DEADLINE_MS = 120_000;
/** How often the S3 port is tried while the server starts; the figures' resolution. */
const POLL_MS = 2;
/** Idle RSS is read this long after the first answer: past start-up's one-off work. */
const IDLE_SETTLE_MS = 5_000;
/** Idle RSS is the highest of these samples, one per IDLE_SAMPLE_GAP_MS. */
const IDLE_SAMPLES = 5;
const IDLE_SAMPLE_GAP_MS = 200;

interface Node {
  dir: string;
  config: string;
  s3Port: number;
}

async function newNode(): Promise<Node> {
  const dir = mkdtempSync(join(tmpdir(), "bunker-startup-bench-"));
  const [s3Port, adminPort, rpcPort, webPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const config = join(dir, "bunker.toml");
  writeFileSync(
    config,
    [
      `metadata_dir = "${join(dir, "meta")}"`,
      `data_dir = "${join(dir, "data")}"`,
      `rpc_bind_addr = "127.0.0.1:${rpcPort}"`,
      `[s3_api]`,
      `api_bind_addr = "127.0.0.1:${s3Port}"`,
      `[s3_web]`,
      `bind_addr = "127.0.0.1:${webPort}"`,
      `root_domain = "${DEFAULT_WEB_ROOT_DOMAIN}"`,
      `[admin]`,
      `api_bind_addr = "127.0.0.1:${adminPort}"`,
      `admin_token = "startup-bench"`,
    ].join("\n") + "\n",
  );
  return { dir, config, s3Port };
}

/** CPU time (ms, user + system, live threads) the process has used: less disturbed by load than wall time. */
function cpuMs(pid: number): number {
  let ns = 0;
  try {
    for (const task of new Bun.Glob("*").scanSync({ cwd: `/proc/${pid}/task`, onlyFiles: false })) {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
    }
  } catch {
    // the process is gone: its figure is incomplete, and the caller fails on the exit anyway
  }
  return ns / 1e6;
}

/** Starts the binary on `node` and resolves at its first S3 answer (any HTTP status). */
async function start(binary: string, node: Node): Promise<{ proc: Subprocess; ms: number; cpuMs: number }> {
  let output = "";
  const t0 = performance.now();
  const proc = Bun.spawn([binary, "-c", node.config, "server"], { cwd: node.dir, stdout: "pipe", stderr: "pipe" });
  ownPids.add(proc.pid);
  for (const s of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      for await (const c of s) output = (output + new TextDecoder().decode(c)).slice(-20_000);
    })();
  }
  for (;;) {
    const answered = await fetch(`http://127.0.0.1:${node.s3Port}/`).then(
      () => true,
      () => false,
    );
    if (answered) return { proc, ms: performance.now() - t0, cpuMs: cpuMs(proc.pid) };
    if (proc.exitCode !== null || performance.now() - t0 > START_DEADLINE_MS) {
      await stopProcess(proc);
      throw new Error(`${binary} did not answer on S3 within ${START_DEADLINE_MS} ms:\n${output}`);
    }
    await Bun.sleep(POLL_MS);
  }
}

async function timedStarts(binary: string, fresh: boolean): Promise<{ ms: number[]; cpu: number[] }> {
  const ms: number[] = [];
  const cpu: number[] = [];
  let node = await newNode();
  try {
    // The existing directory is made by a first start, not counted.
    if (!fresh) await stopProcess((await start(binary, node)).proc);
    for (let i = 0; i < RUNS; i++) {
      if (fresh && i > 0) {
        rmSync(node.dir, { recursive: true, force: true });
        node = await newNode();
      }
      const r = await start(binary, node);
      ms.push(r.ms);
      cpu.push(r.cpuMs);
      await stopProcess(r.proc);
    }
  } finally {
    rmSync(node.dir, { recursive: true, force: true });
  }
  return { ms, cpu };
}

async function idleRssMiB(binary: string): Promise<number> {
  const node = await newNode();
  try {
    await stopProcess((await start(binary, node)).proc);
    const { proc } = await start(binary, node);
    try {
      await Bun.sleep(IDLE_SETTLE_MS);
      let kib = 0;
      for (let i = 0; i < IDLE_SAMPLES; i++) {
        kib = Math.max(kib, statusKiB(proc.pid, "VmRSS"));
        await Bun.sleep(IDLE_SAMPLE_GAP_MS);
      }
      if (proc.exitCode !== null) throw new Error("the server exited while idle");
      return kib / 1024;
    } finally {
      await stopProcess(proc);
    }
  } finally {
    rmSync(node.dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<FootprintRow[]> {
  const outdir = mkdtempSync(join(tmpdir(), "bunker-startup-build-"));
  try {
    const built = buildBinary(process.arch === "arm64" ? "linux-arm64" : "linux-x64", outdir, "startup-bench");
    const binary = await Promise.race([built, Bun.sleep(BUILD_DEADLINE_MS).then(() => Promise.reject(new Error(`the build took over ${BUILD_DEADLINE_MS} ms`)))]);
    const foreign0 = foreignCpuSeconds(ownPids);
    const t0 = performance.now();
    const existing = await timedStarts(binary, false);
    const fresh = await timedStarts(binary, true);
    const idle = await idleRssMiB(binary);
    let foreign = 0;
    for (const [pid, secs] of foreignCpuSeconds(ownPids)) foreign += secs - (foreign0.get(pid) ?? 0);
    const load = `other processes used ${(foreign / ((performance.now() - t0) / 1000)).toFixed(2)} cores meanwhile`;
    const runs = (xs: number[]) => `median of ${xs.length} (${[...xs].sort((a, b) => a - b).map((x) => x.toFixed(0)).join(", ")}); ${load}`;
    return [
      { section: SECTION, figure: "start to first S3 answer, existing data dir", value: median(existing.ms), unit: "ms", bound: FIRST_ANSWER_EXISTING_MS, note: runs(existing.ms) },
      { section: SECTION, figure: "start to first S3 answer, new data dir", value: median(fresh.ms), unit: "ms", bound: FIRST_ANSWER_NEW_MS, note: `${runs(fresh.ms)}; config file given, so no first-start credentials` },
      { section: SECTION, figure: "CPU used up to the first S3 answer, existing data dir", value: median(existing.cpu), unit: "ms", note: "user + system, all threads: the start-up work, less disturbed by load than wall time" },
      { section: SECTION, figure: "idle RSS after start-up, compiled binary", value: idle, unit: "MiB", bound: IDLE_RSS_MIB, note: `highest of ${IDLE_SAMPLES} samples ${IDLE_SETTLE_MS / 1000} s after the first answer, no requests` },
      { section: SECTION, figure: "binary size", value: statSync(binary).size / MiB, unit: "MiB", note: `${process.arch} build with --bytecode --minify (docs/targets.md#build-options)` },
    ];
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  for (const row of await run()) console.log(`${row.figure}: ${row.value.toFixed(1)} ${row.unit}${row.bound !== undefined ? ` (bound ${row.bound})` : ""}${row.note ? ` — ${row.note}` : ""}`);
}
