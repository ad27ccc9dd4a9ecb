// Child processes for the servers under test, and /proc sampling of their memory and CPU.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import type { Subprocess } from "bun";

export const SAMPLE_INTERVAL_MS = 50;
const READY_TIMEOUT_MS = 20_000;
const CLK_TCK = 100; // Linux USER_HZ

/** Spawns a process that prints "ready" on stdout when it serves; keeps its output for errors. */
export async function spawnReady(cmd: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ proc: Subprocess; logs: () => string }> {
  let out = "";
  const proc = Bun.spawn(cmd, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdout: "pipe", stderr: "pipe" });
  ownPids.add(proc.pid);
  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  for (const s of [proc.stdout, proc.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      const dec = new TextDecoder();
      for await (const c of s) {
        out += dec.decode(c);
        if (out.length > 100_000) out = out.slice(-50_000);
        if (out.includes("ready\n")) readyResolve();
      }
    })();
  }
  const timeout = Bun.sleep(READY_TIMEOUT_MS).then(() => "timeout" as const);
  const r = await Promise.race([ready.then(() => "ok" as const), proc.exited.then(() => "exited" as const), timeout]);
  if (r !== "ok") {
    proc.kill();
    throw new Error(`${cmd.join(" ")} did not start (${r}):\n${out}`);
  }
  return { proc, logs: () => out };
}

export function statusKiB(pid: number, field: "VmRSS" | "VmHWM" | "RssAnon" | "RssFile"): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds in user and in system mode (all threads) the process has used so far. */
export function cpuTimes(pid: number): { user: number; sys: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { user: Number(fields[11]) / CLK_TCK, sys: Number(fields[12]) / CLK_TCK };
  } catch {
    return { user: 0, sys: 0 };
  }
}

/** CPU seconds (user + system, all threads) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const t = cpuTimes(pid);
  return t.user + t.sys;
}

/**
 * CPU seconds used so far by every user-space process outside `exclude` (and outside this
 * process and its children): other work on the machine that would distort the figures.
 */
export function foreignCpuSeconds(exclude: Set<number>): Map<number, number> {
  const out = new Map<number, number>();
  let pids: string[] = [];
  try {
    pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const d of pids) {
    const pid = Number(d);
    if (exclude.has(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ppid = Number(f[1]);
      if (pid === 2 || ppid === 2 || exclude.has(ppid)) continue; // kernel threads; our children
      out.set(pid, (Number(f[11]) + Number(f[12])) / CLK_TCK);
    } catch {}
  }
  return out;
}

/** Total stall time (µs) of PSI "some" for io or memory since boot; 0 without PSI. */
export function psiSomeMicros(kind: "io" | "memory"): number {
  try {
    const m = /^some .*total=(\d+)/m.exec(readFileSync(`/proc/pressure/${kind}`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Processes of the benchmark itself: this process, its children, the servers and their children. */
export const ownPids = new Set<number>([process.pid]);

export interface Sample {
  /** Wall time of the window, seconds. */
  seconds: number;
  /** Highest VmRSS seen by 50 ms sampling, MiB. */
  peakRssMiB: number;
  /** VmHWM after the window (reset to the current RSS at its start through clear_refs), MiB. */
  hwmMiB: number;
  /** Server CPU use over the window, in cores (1.0 = one core busy). */
  serverCores: number;
  /** This (client) process's CPU use over the window, in cores. */
  clientCores: number;
  /** CPU used by other user-space processes on the machine during the window, in cores. */
  foreignCores: number;
  /** Share of the window in which some task waited for I/O (PSI io "some"), percent. */
  ioStallPct: number;
  /** Share of the window in which some task waited for memory (PSI memory "some"), percent. */
  memStallPct: number;
}

/** Samples a server process while `fn` runs. */
export async function sampled<T>(pid: number | undefined, fn: () => Promise<T>): Promise<{ value: T; sample: Sample }> {
  let peak = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  if (pid) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, "5"); // resets VmHWM to the current RSS
    } catch {}
    peak = statusKiB(pid, "VmRSS");
    timer = setInterval(() => {
      peak = Math.max(peak, statusKiB(pid, "VmRSS"));
    }, SAMPLE_INTERVAL_MS);
  }
  const foreign0 = foreignCpuSeconds(ownPids);
  const io0 = psiSomeMicros("io");
  const mem0 = psiSomeMicros("memory");
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  try {
    const value = await fn();
    const wall = (performance.now() - t0) / 1000;
    const client = process.cpuUsage(client0);
    let foreign = 0;
    for (const [p, secs] of foreignCpuSeconds(ownPids)) foreign += secs - (foreign0.get(p) ?? 0);
    const sample: Sample = {
      seconds: wall,
      peakRssMiB: peak / 1024,
      hwmMiB: pid ? statusKiB(pid, "VmHWM") / 1024 : 0,
      serverCores: pid ? (cpuSeconds(pid) - cpu0) / wall : 0,
      clientCores: (client.user + client.system) / 1e6 / wall,
      foreignCores: foreign / wall,
      ioStallPct: (psiSomeMicros("io") - io0) / 1e4 / wall,
      memStallPct: (psiSomeMicros("memory") - mem0) / 1e4 / wall,
    };
    if (pid) sample.peakRssMiB = Math.max(sample.peakRssMiB, statusKiB(pid, "VmRSS") / 1024);
    return { value, sample };
  } finally {
    if (timer) clearInterval(timer);
  }
}

export async function stopProcess(proc: Subprocess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const done = await Promise.race([proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
  if (!done) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}
