import { expect, test } from "bun:test";
import { droppableRanges, readOnlySegments, releaseStartupPages, RELEASE_STARTUP_PAGES_ENV } from "../../../src/cli/startup-pages";

const EXE = "/opt/bunker/bunker";
/** The load segments of a Bun 1.4.5 x64 binary (readelf -l): R, R E, then RW. */
const SEGMENTS = [
  { start: 0, end: 0x1838764 },
  { start: 0x1838d00, end: 0x6641c90 },
];

function mapping(range: string, perms: string, offset: string, path: string, anonKiB: number, swapKiB = 0): string {
  return [
    `${range} ${perms} ${offset} fe:00 42                         ${path}`,
    "Size:               1024 kB",
    "KernelPageSize:        4 kB",
    "Rss:                 512 kB",
    `Anonymous:          ${anonKiB} kB`,
    `Swap:               ${swapKiB} kB`,
    "SwapPss:               0 kB",
    "VmFlags: rd mr mw me",
  ].join("\n");
}

const SMAPS = [
  mapping("00200000-01a39000", "r--p", "00000000", EXE, 0),
  mapping("01a40000-0684a000", "r-xp", "01838000", EXE, 0),
  // JavaScriptCore's configuration, in the writable segment: written at start, then made read-only.
  mapping("0685f000-06867000", "r--p", "06656000", EXE, 12),
  mapping("06867000-071ac000", "rw-p", "0665e000", EXE, 120),
  mapping("7f663ec44000-7f663ed9a000", "r-xp", "00028000", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0),
  mapping("7f663ee00000-7f663ee08000", "rw-s", "00000000", "/data/meta/db.sqlite-shm", 0),
  mapping("55852a00000-55892a00000", "rw-p", "00000000", "", 10944),
].join("\n");

test("only the executable's read-only, never-written mappings are dropped", () => {
  expect(droppableRanges(SMAPS, EXE, SEGMENTS)).toEqual([
    { start: 0x200000n, end: 0x1a39000n },
    { start: 0x1a40000n, end: 0x684a000n },
  ]);
});

test("a read-only mapping of the writable segment is kept even where smaps shows no anonymous page (qemu-user)", () => {
  const faked = SMAPS.replace(/Anonymous:\s+\d+ kB/g, "Anonymous:             0 kB");
  expect(droppableRanges(faked, EXE, SEGMENTS).map((r) => r.start)).toEqual([0x200000n, 0x1a40000n]);
});

test("nothing is dropped without the file's segments, the anonymous count or the swap count", () => {
  expect(droppableRanges(SMAPS, EXE, [])).toEqual([]);
  expect(droppableRanges(`00200000-01a39000 r--p 00000000 fe:00 42 ${EXE}\nSize: 1024 kB\n`, EXE, SEGMENTS)).toEqual([]);
  expect(droppableRanges(`00200000-01a39000 r--p 00000000 fe:00 42 ${EXE}\nSize: 1024 kB\nAnonymous: 0 kB\n`, EXE, SEGMENTS)).toEqual([]);
});

test("a mapping whose copied-on-write pages are swapped out (Anonymous 0, Swap not) is kept", () => {
  const swapped = [
    mapping("00200000-01a39000", "r--p", "00000000", EXE, 0, 8),
    mapping("01a40000-0684a000", "r-xp", "01838000", EXE, 0),
  ].join("\n");
  expect(droppableRanges(swapped, EXE, SEGMENTS)).toEqual([{ start: 0x1a40000n, end: 0x684a000n }]);
});

test("the read-only load segments of this runtime's executable", async () => {
  const header = new Uint8Array(await Bun.file(process.execPath).slice(0, 4096).arrayBuffer());
  const segments = readOnlySegments(header);
  if (process.platform === "linux") expect(segments.length).toBeGreaterThan(0);
  for (const s of segments) expect(s.end).toBeGreaterThan(s.start);
  expect(readOnlySegments(new TextEncoder().encode("#!/bin/sh\n"))).toEqual([]);
});

test("this process keeps running after its executable's pages are dropped", async () => {
  const bytes = await releaseStartupPages();
  if (process.platform === "linux") expect(bytes).toBeGreaterThan(0);
  // The runtime's code comes back on use.
  expect(JSON.parse(JSON.stringify({ a: [1, 2, 3] }))).toEqual({ a: [1, 2, 3] });
  await Bun.sleep(10);
});

test("BUNKER_RELEASE_STARTUP_PAGES=0 keeps every page (measurements comparing nodes)", async () => {
  const before = process.env[RELEASE_STARTUP_PAGES_ENV];
  process.env[RELEASE_STARTUP_PAGES_ENV] = "0";
  try {
    expect(await releaseStartupPages()).toBe(0);
  } finally {
    if (before === undefined) delete process.env[RELEASE_STARTUP_PAGES_ENV];
    else process.env[RELEASE_STARTUP_PAGES_ENV] = before;
  }
});
