// Quick probe for iterating on one workload without the full benchmark (not part of `bun run bench`):
//   bun benchmarks/probe.ts big|ceiling [sizeMiB]
//   bun benchmarks/probe.ts small [put,get,head,del]
import { randomFillSync } from "node:crypto";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cpuTimes } from "./lib/proc.ts";
import { startBunker, startCeiling, BIG_TIMEOUT_MS, type Target } from "./lib/targets.ts";
const MiB = 1 << 20;
const what = process.argv[2] ?? "big";
const sizeMiB = what === "small" ? 0 : Number(process.argv[3] ?? 512);
const dir = mkdtempSync(join(tmpdir(), "probe-"));
const RUNS = 3;
// A fresh random file per run: the same bytes again would be deduplicated and never written.
const srcs = Array.from({ length: RUNS }, (_, r) => {
  const path = join(dir, `src${r}.bin`);
  const parts = [];
  for (let i = 0; i < sizeMiB / 64; i++) parts.push(randomFillSync(new Uint8Array(64 * MiB)));
  writeFileSync(path, Buffer.concat(parts));
  return path;
});
async function big(t: Target) {
  await t.createBucket("bench");
  for (let r = 0; r < RUNS; r++) {
    let t0 = performance.now();
    await t.put("bench", "big", Bun.file(srcs[r]!), BIG_TIMEOUT_MS);
    const put = sizeMiB / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    await t.get("bench", "big", BIG_TIMEOUT_MS);
    const get = sizeMiB / ((performance.now() - t0) / 1000);
    console.log(`${t.name} PUT ${put.toFixed(0)} MiB/s  GET ${get.toFixed(0)} MiB/s`);
  }
}
async function small(t: Target) {
  await t.createBucket("bench");
  const body = new Uint8Array(Number(process.env.PROBE_SIZE ?? 4096));
  randomFillSync(body);
  const N = Number(process.env.PROBE_N ?? 3000), C = 32;
  const ops = (process.argv[3] ?? "put,get,head,del").split(",") as ("put" | "get" | "head" | "del")[];
  for (const op of ops) {
    let next = 0;
    const pid = t.pid()!;
    const cpu0 = cpuTimes(pid);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: C }, async () => {
      while (next < N) {
        const i = next++;
        const k = `k${i}`;
        // Unique bodies: repeated ones would be deduplicated and never written.
        if (op === "put") { const b = body.slice(); new DataView(b.buffer).setUint32(0, i); await t.put("bench", k, b); }
        else if (op === "get") await t.get("bench", k);
        else if (op === "head") await t.head("bench", k);
        else await t.del("bench", k);
      }
    }));
    const cpu1 = cpuTimes(pid);
    const us = (s: number) => ((s / N) * 1e6).toFixed(0);
    console.log(`${t.name} ${op} ${(N / ((performance.now() - t0) / 1000)).toFixed(0)}/s, server CPU per op: user ${us(cpu1.user - cpu0.user)} µs, system ${us(cpu1.sys - cpu0.sys)} µs`);
  }
}
const t = what === "ceiling" ? await startCeiling("ceiling-bun", "bun", dir) : await startBunker("bunker", "none");
try {
  if (what === "small") await small(t);
  else await big(t);
} finally {
  if (process.env.PROBE_LOGS && "server" in t) console.error((t as any).server.logs());
  await t.stop();
  rmSync(dir, { recursive: true, force: true }); // the random source files are GiBs
}
