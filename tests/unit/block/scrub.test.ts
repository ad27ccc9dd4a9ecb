import { afterEach, beforeEach, expect, test } from "bun:test";
import type { BlockHash } from "../../../src/util/ids.ts";
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { compressIfSmaller, defaultZstd } from "../../../src/block/codec.ts";
import { blake3Sync, hashHex } from "../../../src/block/hash.ts";
import { BlockScrub, SCRUB_FIRST_DELAY_MS, SCRUB_INTERVAL_MS } from "../../../src/block/scrub.ts";
import { CORRUPTED_SUFFIX, LocalBlockStore } from "../../../src/block/store.ts";

let dir: string;
let db: Database;
let store: LocalBlockStore;
let resynced: BlockHash[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-scrub-"));
  db = openDatabase(join(dir, "meta", "db.sqlite"), { fsync: false });
  store = new LocalBlockStore({ dataDir: join(dir, "data"), fsync: false });
  await store.init();
  resynced = [];
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const BLOCK_SIZE = 1024 * 1024;
const codec = defaultZstd();

function scrubber(tranquility = 0): BlockScrub {
  return new BlockScrub(
    { store, codec, hash: async (d) => blake3Sync(d), resync: (h) => resynced.push(...h), db, blockSize: BLOCK_SIZE },
    tranquility,
  );
}

async function storeBlock(data: Uint8Array, compress = false): Promise<BlockHash> {
  const hash = hashHex(blake3Sync(data));
  if (compress) {
    const packed = await compressIfSmaller(codec, data, 1);
    expect(packed.compressed).toBe(true);
    await store.write(hash, packed.data, true);
  } else await store.write(hash, data, false);
  return hash;
}

test("intact blocks, plain and compressed, pass; nothing is moved or queued", async () => {
  const a = await storeBlock(new Uint8Array(randomBytes(5000)));
  const b = await storeBlock(new TextEncoder().encode("compressible text ".repeat(2000)), true);
  const report = await scrubber().run();
  expect(report).toEqual({ checked: 2, corrupted: 0, interrupted: false });
  expect(await store.has(a)).toBe(true);
  expect(await store.has(b)).toBe(true);
  expect(resynced).toEqual([]);
});

test("a block whose bytes changed on disk is moved aside and queued for resync", async () => {
  const good = await storeBlock(new Uint8Array(randomBytes(5000)));
  const bad = await storeBlock(new Uint8Array(randomBytes(5000)));
  // Bit rot: same name, other bytes.
  const path = store.path(bad, false);
  const bytes = await Bun.file(path).bytes();
  bytes[100] = bytes[100]! ^ 0xff;
  writeFileSync(path, bytes);
  const scrub = scrubber();
  const report = await scrub.run();
  expect(report.corrupted).toBe(1);
  expect(await store.has(bad)).toBe(false);
  expect(existsSync(path + CORRUPTED_SUFFIX)).toBe(true);
  expect(await store.has(good)).toBe(true);
  expect(resynced).toEqual([bad]);
  expect(scrub.stats.info().errors).toBe(1);
});

test("a compressed block whose frame no longer decodes counts as corrupted", async () => {
  const hash = await storeBlock(new TextEncoder().encode("compressible text ".repeat(2000)), true);
  writeFileSync(store.path(hash, true), new Uint8Array(randomBytes(300)));
  const report = await scrubber().run();
  expect(report.corrupted).toBe(1);
  expect(resynced).toEqual([hash]);
});

test("a complete pass is remembered; the first pass of a new node is scheduled a day out", async () => {
  const scrub = scrubber();
  scrub.start();
  const first = scrub.lastCompleted()!;
  // Due SCRUB_FIRST_DELAY_MS from now.
  expect(first + SCRUB_INTERVAL_MS - Date.now()).toBeGreaterThan(SCRUB_FIRST_DELAY_MS - 60_000);
  expect(first + SCRUB_INTERVAL_MS - Date.now()).toBeLessThanOrEqual(SCRUB_FIRST_DELAY_MS);
  await scrub.stop();
  await storeBlock(new Uint8Array(randomBytes(100)));
  const before = Date.now();
  await scrubber().run();
  expect(scrubber().lastCompleted()!).toBeGreaterThanOrEqual(before);
});

test("tranquility paces the pass: each block is followed by a pause", async () => {
  for (let i = 0; i < 3; i++) await storeBlock(new Uint8Array(randomBytes(200_000)));
  const slowHash = async (d: Uint8Array) => {
    await Bun.sleep(20);
    return blake3Sync(d);
  };
  const paced = new BlockScrub({ store, codec, hash: slowHash, resync: () => {}, db, blockSize: BLOCK_SIZE }, 2);
  const t0 = performance.now();
  await paced.run();
  // 3 blocks x (>= 20 ms of work + >= 40 ms of pause).
  expect(performance.now() - t0).toBeGreaterThanOrEqual(3 * 60 - 5);
});

test("stop() interrupts a pass, which then does not count as complete", async () => {
  for (let i = 0; i < 5; i++) await storeBlock(new Uint8Array(randomBytes(1000)));
  const slow = new BlockScrub({ store, codec, hash: async (d) => (await Bun.sleep(30), blake3Sync(d)), resync: () => {}, db, blockSize: BLOCK_SIZE }, 0);
  const running = slow.run();
  await Bun.sleep(40);
  await slow.stop();
  const report = await running;
  expect(report.interrupted).toBe(true);
  expect(report.checked).toBeLessThan(5);
  expect(slow.lastCompleted()).toBeUndefined();
});

test("a run asked for during a pass gets a whole pass of its own after it (a rot the pass under way is past is found)", async () => {
  const blocks: BlockHash[] = [];
  for (let i = 0; i < 6; i++) blocks.push(await storeBlock(new Uint8Array(randomBytes(20_000))));
  // Slow enough that the first pass is still running when the rot happens and the run is asked.
  const scrub = scrubber(20);
  const first = scrub.run();
  await Bun.sleep(5);
  for (const h of blocks) {
    const path = store.path(h, false);
    const bytes = await Bun.file(path).bytes();
    bytes[10] = bytes[10]! ^ 0xff;
    writeFileSync(path, bytes);
  }
  const asked = scrub.run();
  const [a, b] = await Promise.all([first, asked]);
  // Whatever the first pass saw, the asked one checked every block still there after it started.
  expect(a.corrupted + b.corrupted).toBe(6);
  expect(b).not.toBe(a);
  for (const h of blocks) expect(await store.has(h)).toBe(false);
});
