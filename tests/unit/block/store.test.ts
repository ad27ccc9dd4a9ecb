import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { BlockHash } from "../../../src/util/ids.ts";
import { mkdtemp, readdir, rm, utimes, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Sync, hashHex } from "../../../src/block/hash.ts";
import { LocalBlockStore, TEMP_GRACE_MS, TEMP_SUFFIX } from "../../../src/block/store.ts";

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-store-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function block(seed: number, len = 4096): { hex: BlockHash; data: Uint8Array } {
  const data = new Uint8Array(len);
  for (let i = 0; i < len; i++) data[i] = (i * 31 + seed * 7) & 0xff;
  data[0] = seed & 0xff;
  data[1] = seed >> 8;
  return { hex: hashHex(blake3Sync(data)), data };
}

/** Every file under the data dir, relative to it. */
async function allFiles(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), join(rel, e.name));
      else out.push(join(rel, e.name));
    }
  };
  await walk(dir, "");
  return out.sort();
}

for (const fsync of [false, true]) {
  describe(`LocalBlockStore (fsync=${fsync})`, () => {
    test("write, has, read, list, delete", async () => {
      const store = new LocalBlockStore({ dataDir: dir, fsync });
      await store.init();
      const a = block(1);
      const b = block(2);
      expect(await store.has(a.hex)).toBe(false);
      expect(await store.read(a.hex)).toBeNull();

      await store.write(a.hex, a.data, false);
      expect(await store.has(a.hex)).toBe(true);
      expect(await store.read(a.hex)).toEqual({ data: a.data, compressed: false });
      expect(store.path(a.hex, false)).toBe(join(dir, a.hex.slice(0, 2), a.hex.slice(2, 4), a.hex));

      await store.write(b.hex, b.data, true);
      expect(await store.read(b.hex)).toEqual({ data: b.data, compressed: true });
      expect(await Bun.file(store.path(b.hex, true)).exists()).toBe(true);
      expect(store.path(b.hex, true).endsWith(".zst")).toBe(true);

      const listed: string[] = [];
      for await (const h of store.list()) listed.push(h);
      expect(listed.sort()).toEqual([a.hex, b.hex].sort());

      expect(await store.delete(a.hex)).toBe(true);
      expect(await store.delete(a.hex)).toBe(false);
      expect(await store.has(a.hex)).toBe(false);
      expect(await store.read(a.hex)).toBeNull();
      expect(await store.delete(b.hex)).toBe(true);
      expect(await store.has(b.hex)).toBe(false);
    });

    test("re-writing a stored block is a no-op, in either form", async () => {
      const store = new LocalBlockStore({ dataDir: dir, fsync });
      await store.init();
      const a = block(3);
      await store.write(a.hex, a.data, false);
      await store.write(a.hex, a.data, false);
      await store.write(a.hex, new Uint8Array([9, 9, 9]), true); // same name: the stored block stays
      expect(await store.read(a.hex)).toEqual({ data: a.data, compressed: false });
      expect(await allFiles()).toEqual([join(a.hex.slice(0, 2), a.hex.slice(2, 4), a.hex)]);
    });

    test("many concurrent writes, including duplicates and shared directories, leave no temp files", async () => {
      const store = new LocalBlockStore({ dataDir: dir, fsync });
      await store.init();
      const blocks = Array.from({ length: 200 }, (_, i) => block(i, 1000 + i));
      await Promise.all([...blocks, ...blocks.slice(0, 50)].map((b, i) => store.write(b.hex, b.data, i % 3 === 0)));
      for (const b of blocks) expect((await store.read(b.hex))?.data).toEqual(b.data);
      const files = await allFiles();
      expect(files.filter((f) => f.endsWith(TEMP_SUFFIX))).toEqual([]);
      const listed = new Set<string>();
      for await (const h of store.list()) listed.add(h);
      expect(listed).toEqual(new Set(blocks.map((b) => b.hex)));
    });
  });
}

describe("LocalBlockStore maintenance", () => {
  test("empty and zero-length blocks", async () => {
    const store = new LocalBlockStore({ dataDir: dir, fsync: false });
    await store.init();
    const e = { hex: hashHex(blake3Sync(new Uint8Array(0))), data: new Uint8Array(0) };
    await store.write(e.hex, e.data, false);
    expect(await store.read(e.hex)).toEqual({ data: new Uint8Array(0), compressed: false });
  });

  test("init removes stale temp files and keeps fresh ones; list ignores them", async () => {
    const a = block(7);
    const leaf = join(dir, a.hex.slice(0, 2), a.hex.slice(2, 4));
    await mkdir(leaf, { recursive: true });
    const stale = join(leaf, `${a.hex}.1-1${TEMP_SUFFIX}`);
    const fresh = join(leaf, `${a.hex}.1-2${TEMP_SUFFIX}`);
    await writeFile(stale, "partial");
    await writeFile(fresh, "partial");
    const old = new Date(Date.now() - TEMP_GRACE_MS - 60_000);
    await utimes(stale, old, old);

    const store = new LocalBlockStore({ dataDir: dir, fsync: false });
    await store.init();
    expect(await Bun.file(stale).exists()).toBe(false);
    expect(await Bun.file(fresh).exists()).toBe(true);
    expect(await store.has(a.hex)).toBe(false);
    const listed: string[] = [];
    for await (const h of store.list()) listed.push(h);
    expect(listed).toEqual([]);
  });

  test("list reports a block stored in both forms once, and skips foreign files", async () => {
    const store = new LocalBlockStore({ dataDir: dir, fsync: false });
    await store.init();
    const a = block(8);
    await store.write(a.hex, a.data, false);
    await writeFile(store.path(a.hex, true), "x");
    await writeFile(join(dir, a.hex.slice(0, 2), a.hex.slice(2, 4), "README"), "x");
    await mkdir(join(dir, "lost+found"));
    const listed: string[] = [];
    for await (const h of store.list()) listed.push(h);
    expect(listed).toEqual([a.hex]);
    expect(await store.delete(a.hex)).toBe(true);
    expect(await store.has(a.hex)).toBe(false);
  });

  test("rejects names that are not a block hash", async () => {
    const store = new LocalBlockStore({ dataDir: dir, fsync: false });
    await store.init();
    // The type refuses them already; the store's assert stays as an invariant behind it.
    expect(() => store.path("../../etc/passwd" as BlockHash, false)).toThrow();
    expect(() => store.path("AB".repeat(32) as BlockHash, false)).toThrow();
    await expect(store.write("00" as BlockHash, new Uint8Array(1), false)).rejects.toThrow();
  });

  test("stats reports the filesystem", async () => {
    const store = new LocalBlockStore({ dataDir: dir, fsync: false });
    await store.init();
    const s = await store.stats();
    expect(s.total).toBeGreaterThan(0);
    expect(s.available).toBeGreaterThan(0);
    expect(s.available).toBeLessThanOrEqual(s.total);
  });

  test("init creates a missing data dir", async () => {
    const nested = join(dir, "a", "b");
    const store = new LocalBlockStore({ dataDir: nested, fsync: true });
    await store.init();
    const a = block(9);
    await store.write(a.hex, a.data, false);
    expect((await store.read(a.hex))?.data).toEqual(a.data);
  });
});
