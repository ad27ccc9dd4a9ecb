// The page cache as a benchmark condition. On the VMs these benchmarks run on, the guest hands
// free memory back to its host; a page the guest allocates afterwards (a page-cache page for new
// file data included) is faulted in from the host at ~3-4 ms per MiB of sys time, against ~0.2
// for a page the guest freed a moment ago (measured: 512 x 1 MiB new files, 3.1-3.9 vs 0.15-0.26
// ms/MiB). A run that writes 3 copies pays that 3 times, which real hardware does not.
// Dropping the clean page cache right before a run hands the guest plenty of just-freed pages.
import { accessSync, constants, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MiB } from "./stats.ts";

const DROP_CACHES = "/proc/sys/vm/drop_caches";

/** True when this process may drop the page cache (root on Linux). */
export function canDropPageCache(): boolean {
  try {
    accessSync(DROP_CACHES, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Writes dirty pages back, then frees the clean page cache; false when not permitted. */
export function dropCleanPageCache(): boolean {
  Bun.spawnSync(["sync"], { stdout: "ignore", stderr: "ignore" });
  try {
    writeFileSync(DROP_CACHES, "1");
    return true;
  } catch {
    return false;
  }
}

export interface FileWriteCeiling {
  mibs: number;
  /** Kernel CPU time per MiB written, in ms. */
  sysMsPerMiB: number;
}

/**
 * The physical ceiling of storing new data: `mib` new 1 MiB files written with one synchronous
 * call each (as a node stores blocks, without the rename), then removed. Bounded by `mib`.
 */
export function newFileWriteCeiling(dir: string, mib: number): FileWriteCeiling {
  const sub = join(dir, `ceiling-${process.pid}-${Date.now()}`);
  mkdirSync(sub, { recursive: true });
  const buf = new Uint8Array(MiB);
  crypto.getRandomValues(buf.subarray(0, 65_536));
  try {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < mib; i++) writeFileSync(join(sub, String(i)), buf);
    const seconds = (performance.now() - t0) / 1000;
    const sysUs = process.cpuUsage(c0).system;
    return { mibs: mib / seconds, sysMsPerMiB: sysUs / 1000 / mib };
  } finally {
    rmSync(sub, { recursive: true, force: true });
  }
}
