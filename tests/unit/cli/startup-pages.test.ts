import { expect, test } from "bun:test";
import { droppableRanges, releaseStartupPages } from "../../../src/cli/startup-pages";

const EXE = "/opt/bunker/bunker";

function mapping(range: string, perms: string, path: string, anonKiB: number): string {
  return [`${range} ${perms} 00000000 fe:00 42                         ${path}`, "Size:               1024 kB", "Rss:                 512 kB", `Anonymous:          ${anonKiB} kB`, "VmFlags: rd mr mw me"].join("\n");
}

test("only the executable's read-only, never-written mappings are dropped", () => {
  const smaps = [
    mapping("00200000-01a39000", "r--p", EXE, 0),
    mapping("01a40000-0684a000", "r-xp", EXE, 0),
    // JavaScriptCore's configuration: written at start, then made read-only.
    mapping("0685f000-06867000", "r--p", EXE, 12),
    mapping("06867000-071ac000", "rw-p", EXE, 120),
    mapping("7f663ec44000-7f663ed9a000", "r-xp", "/usr/lib/x86_64-linux-gnu/libc.so.6", 0),
    mapping("7f663ee00000-7f663ee08000", "rw-s", "/data/meta/db.sqlite-shm", 0),
    mapping("55852a00000-55892a00000", "rw-p", "", 10944),
  ].join("\n");
  expect(droppableRanges(smaps, EXE)).toEqual([
    { start: 0x200000n, end: 0x1a39000n },
    { start: 0x1a40000n, end: 0x684a000n },
  ]);
});

test("a mapping whose anonymous count is missing is kept", () => {
  const smaps = `00200000-01a39000 r--p 00000000 fe:00 42 ${EXE}\nSize: 1024 kB\n`;
  expect(droppableRanges(smaps, EXE)).toEqual([]);
});

test("this process keeps running after its executable's pages are dropped", async () => {
  const bytes = await releaseStartupPages();
  if (process.platform === "linux") expect(bytes).toBeGreaterThan(0);
  // The runtime's code comes back on use.
  expect(JSON.parse(JSON.stringify({ a: [1, 2, 3] }))).toEqual({ a: [1, 2, 3] });
  await Bun.sleep(10);
});
