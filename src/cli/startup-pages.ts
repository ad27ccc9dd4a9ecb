// Gives back the executable's code pages that only start-up used (issue 13, idle RSS).
// Bunker's idle RSS is mostly the binary itself: clean, read-only pages of the 112 MB executable
// (JavaScriptCore, the HTTP server, SQLite, ...) that start-up touched and that stay mapped,
// ~42 MiB of the ~63 measured idle. Once the node serves, MADV_DONTNEED on the executable's
// read-only mappings unmaps them; the code the node keeps running faults back in from the page
// cache (a minor fault per 64 KiB, no disk read while the file is cached), and the rest stays in
// the page cache only, where the kernel can reclaim it. Serving requests runs much of that code
// again: a node that has served gets most of the pages back (measured: docs/targets.md#build-options).
// Only what is the file's content, so that dropping a page loses nothing: mappings that are
// read-only now, hold no anonymous (copied-on-write) page, resident or swapped out (smaps counts
// a swapped-out copy under Swap, not Anonymous), and lie in a load segment the ELF
// file itself declares read-only. JavaScriptCore writes its configuration pages (in the
// writable segment) at start and then makes them read-only: dropping them crashed the process
// in an experiment, and qemu-user, which runs the arm64 binary in tests, emulates smaps with
// zeros for every mapping's counts, so the segment check is the one that keeps them.
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { logger } from "../util/log";

const log = logger("server");

/**
 * Set to "0" to keep the pages: for measurements that compare the RSS of nodes that ran
 * different code (benchmarks/scale.ts compares a loaded node with an empty one, and only the
 * loaded one has run most of its code again).
 */
export const RELEASE_STARTUP_PAGES_ENV = "BUNKER_RELEASE_STARTUP_PAGES";
/** After the node serves: start-up's last one-off work is done, and the first answers are not delayed. */
export const RELEASE_STARTUP_PAGES_DELAY_MS = 2_000;
/** The page size assumed where smaps does not give one (x64's, and arm64's usual one). */
const DEFAULT_PAGE_BYTES = 4096;
/** Linux madvise(2) advice: drop the pages; a private file mapping reads them again from the file. */
const MADV_DONTNEED = 4;

export interface CodeRange {
  start: bigint;
  end: bigint;
}

/** File offsets [start, end) of an ELF file's load segments that are not writable. */
export interface FileSpan {
  start: number;
  end: number;
}

const PT_LOAD = 1;
const PF_W = 2;
/** Program headers read at most: an executable has about ten. */
const MAX_PROGRAM_HEADERS = 64;

/** The read-only load segments of a little-endian ELF64 file (x64, arm64), from its header; [] for anything else. */
export function readOnlySegments(header: Uint8Array): FileSpan[] {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const isElf64Le = header.length >= 64 && view.getUint32(0) === 0x7f454c46 && header[4] === 2 && header[5] === 1;
  if (!isElf64Le) return [];
  const phoff = Number(view.getBigUint64(32, true));
  const phentsize = view.getUint16(54, true);
  const phnum = Math.min(view.getUint16(56, true), MAX_PROGRAM_HEADERS);
  const spans: FileSpan[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (phentsize < 56 || at + 56 > header.length) break;
    if (view.getUint32(at, true) !== PT_LOAD || (view.getUint32(at + 4, true) & PF_W) !== 0) continue;
    const offset = Number(view.getBigUint64(at + 8, true));
    spans.push({ start: offset, end: offset + Number(view.getBigUint64(at + 32, true)) });
  }
  return spans;
}

/**
 * The mappings of `exe` in `smaps` (the text of /proc/self/smaps) that can be dropped and read
 * back from the file unchanged: not writable, without anonymous pages (resident or swapped out:
 * MADV_DONTNEED would discard a swapped-out copy too), and within the file's
 * read-only segments (`segments`; a mapping's ends may round them out to whole pages).
 */
export function droppableRanges(smaps: string, exe: string, segments: FileSpan[]): CodeRange[] {
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
    const swap = /^Swap:\s+(\d+) kB$/m.exec(entry);
    if (swap === null || swap[1] !== "0") continue;
    const [start, end] = header[0]!.split("-").map((h) => BigInt(`0x${h}`));
    const offset = Number.parseInt(header[2]!, 16);
    const length = Number(end! - start!);
    // Rounded to whole pages, a mapping may share its first or last page with the neighbouring
    // segment: that page is still the file's content in this mapping (writes go to the other).
    const pageKiB = /^KernelPageSize:\s+(\d+) kB$/m.exec(entry);
    const page = pageKiB ? Number(pageKiB[1]) * 1024 : DEFAULT_PAGE_BYTES;
    const inside = segments.some((s) => offset >= Math.floor(s.start / page) * page && offset + length <= Math.ceil(s.end / page) * page);
    if (!inside) continue;
    ranges.push({ start: start!, end: end! });
  }
  return ranges;
}

/**
 * Drops the executable's read-only pages from this process (see the header); returns the bytes
 * of the mappings dropped, or 0 where that is not possible (not Linux, no glibc, no bun:ffi).
 */
export async function releaseStartupPages(): Promise<number> {
  if (process.platform !== "linux" || process.env[RELEASE_STARTUP_PAGES_ENV] === "0") return 0;
  let ranges: CodeRange[];
  try {
    ranges = droppableRanges(readFileSync("/proc/self/smaps", "utf8"), process.execPath, readOnlySegments(elfHeaders(process.execPath)));
  } catch {
    return 0; // no /proc, or the executable cannot be read
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
  log.debug(`released the pages of ${(bytes / 1024 / 1024).toFixed(0)} MiB of read-only executable mappings; the code in use faults back in`);
  return bytes;
}

/** Bytes read from the start of the executable: its ELF header and program headers. */
const ELF_HEADERS_BYTES = 4096;

function elfHeaders(path: string): Uint8Array {
  const buf = new Uint8Array(ELF_HEADERS_BYTES);
  const fd = openSync(path, "r");
  try {
    return buf.subarray(0, readSync(fd, buf, 0, buf.length, 0));
  } finally {
    closeSync(fd);
  }
}
