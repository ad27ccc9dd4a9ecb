// Gives back the executable's code pages that only start-up used (issue 13, idle RSS).
// Bunker's idle RSS is mostly the binary itself: clean, read-only pages of the 112 MB executable
// (JavaScriptCore, the HTTP server, SQLite, ...) that start-up touched and that stay mapped,
// ~42 MiB of the ~63 measured idle. Once the node serves, MADV_DONTNEED on the executable's
// read-only mappings unmaps them; the code the node keeps running faults back in from the page
// cache (a minor fault per 64 KiB, no disk read while the file is cached), and the rest stays in
// the page cache only, where the kernel can reclaim it. Measured on the compiled binary:
// docs/targets.md#build-options.
// Only mappings that are read-only and hold no anonymous (copied-on-write) page are touched:
// for those, dropping a page loses nothing, because it is the file's content. JavaScriptCore
// writes its configuration pages at start and then makes them read-only (they hold anonymous
// pages, so they are skipped: dropping them crashed the process in an experiment).
import { readFileSync } from "node:fs";
import { logger } from "../util/log";

const log = logger("server");

/** After the node serves: start-up's last one-off work is done, and the first answers are not delayed. */
export const RELEASE_STARTUP_PAGES_DELAY_MS = 2_000;
/** Linux madvise(2) advice: drop the pages; a private file mapping reads them again from the file. */
const MADV_DONTNEED = 4;

export interface CodeRange {
  start: bigint;
  end: bigint;
}

/**
 * The mappings of `exe` in `smaps` (the text of /proc/self/smaps) that can be dropped and read
 * back from the file unchanged: not writable, and without anonymous pages.
 */
export function droppableRanges(smaps: string, exe: string): CodeRange[] {
  const ranges: CodeRange[] = [];
  // Each mapping starts with its header line ("start-end perms offset dev inode path").
  for (const entry of smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const nl = entry.indexOf("\n");
    const header = (nl < 0 ? entry : entry.slice(0, nl)).trim().split(/\s+/);
    if (header.length < 6 || header.slice(5).join(" ") !== exe) continue;
    const perms = header[1]!;
    if (perms[0] !== "r" || perms[1] !== "-" || perms[3] !== "p") continue;
    const anon = /^Anonymous:\s+(\d+) kB$/m.exec(entry);
    if (anon === null || anon[1] !== "0") continue;
    const [start, end] = header[0]!.split("-").map((h) => BigInt(`0x${h}`));
    ranges.push({ start: start!, end: end! });
  }
  return ranges;
}

/**
 * Drops the executable's read-only pages from this process (see the header); returns the bytes
 * of the mappings dropped, or 0 where that is not possible (not Linux, no glibc, no bun:ffi).
 */
export async function releaseStartupPages(): Promise<number> {
  if (process.platform !== "linux") return 0;
  let ranges: CodeRange[];
  try {
    ranges = droppableRanges(readFileSync("/proc/self/smaps", "utf8"), process.execPath);
  } catch {
    return 0; // no /proc
  }
  if (ranges.length === 0) return 0;
  let libc;
  try {
    const { dlopen, FFIType } = await import("bun:ffi");
    libc = dlopen("libc.so.6", { madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 } });
  } catch (err) {
    log.debug(`start-up pages kept: ${(err as Error).message}`);
    return 0;
  }
  let bytes = 0;
  try {
    for (const r of ranges) if (libc.symbols.madvise(r.start, r.end - r.start, MADV_DONTNEED) === 0) bytes += Number(r.end - r.start);
  } finally {
    libc.close();
  }
  log.debug(`dropped ${(bytes / 1024 / 1024).toFixed(0)} MiB of executable mappings from memory; the code in use faults back in`);
  return bytes;
}
