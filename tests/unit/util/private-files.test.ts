import { afterEach, beforeEach, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPrivateFile, describeChange, makePrivateDir, tightenModes } from "../../../src/util/private-files";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "bunker-private-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mode = (p: string) => statSync(p).mode & 0o777;

test("makePrivateDir creates missing directories 0700; createPrivateFile an empty 0600 file, once", () => {
  const d = join(dir, "a", "meta");
  makePrivateDir(d);
  expect(mode(d)).toBe(0o700);
  expect(mode(join(dir, "a"))).toBe(0o700);
  const f = join(d, "db.sqlite");
  createPrivateFile(f);
  expect(mode(f)).toBe(0o600);
  expect(statSync(f).size).toBe(0);
  writeFileSync(f, "kept");
  createPrivateFile(f);
  expect(statSync(f).size).toBe(4);
});

test("tightenModes takes group/other bits off a directory and what lies directly in it, and says what it changed", () => {
  const meta = join(dir, "meta");
  mkdirSync(join(meta, "sub", "deeper"), { recursive: true });
  chmodSync(meta, 0o755);
  writeFileSync(join(meta, "db.sqlite"), "");
  chmodSync(join(meta, "db.sqlite"), 0o644);
  writeFileSync(join(meta, "node_key"), "");
  chmodSync(join(meta, "node_key"), 0o600);
  writeFileSync(join(dir, "outside"), "");
  chmodSync(join(dir, "outside"), 0o644);
  symlinkSync(join(dir, "outside"), join(meta, "link"));
  chmodSync(join(meta, "sub", "deeper"), 0o755);

  const changes = tightenModes(meta, { entries: true });
  expect(changes.map(describeChange).sort()).toEqual(
    [`${meta} 0755->0700`, `${join(meta, "db.sqlite")} 0644->0600`, `${join(meta, "sub")} 0755->0700`].sort(),
  );
  expect(mode(join(meta, "node_key"))).toBe(0o600);
  // Not followed: a link's target is not the directory's to change; nor is a deeper level.
  expect(mode(join(dir, "outside"))).toBe(0o644);
  expect(mode(join(meta, "sub", "deeper"))).toBe(0o755);
  expect(tightenModes(meta, { entries: true })).toEqual([]);
  expect(tightenModes(join(dir, "missing"), { entries: true })).toEqual([]);
});

test("without entries only the directory itself changes", () => {
  const data = join(dir, "data");
  mkdirSync(join(data, "ab"), { recursive: true, mode: 0o755 });
  chmodSync(data, 0o750);
  expect(tightenModes(data, { entries: false }).map(describeChange)).toEqual([`${data} 0750->0700`]);
  expect(mode(join(data, "ab"))).toBe(0o755);
});
