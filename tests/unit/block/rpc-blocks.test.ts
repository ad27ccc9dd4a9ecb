// Block endpoints (src/block/rpc-blocks.ts) check the JSON head of every message: a peer's
// malformed block hash or size is refused at the boundary with a bad-request error, before the
// write path or the store sees it (the store's own hash assert stays an internal invariant); a
// valid put/get still works; a caller refuses an answer whose head is malformed.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Sync, hashHex } from "../../../src/block/hash.ts";
import { MAX_REMOTE_BLOCK, RpcBlocks, serveBlocks } from "../../../src/block/rpc-blocks.ts";
import { LocalBlockStore } from "../../../src/block/store.ts";
import { encodeJson, RPC_ERR, RpcError, type RpcNode } from "../../../src/rpc/rpc.ts";
import type { BlockHash } from "../../../src/util/ids.ts";
import { MemoryBudget } from "../../../src/util/memory-budget.ts";
import { BufferPool, uninitialized } from "../../../src/util/buffer-pool.ts";
import { captureStderr, enc, startPair } from "../rpc/helpers.ts";

const budget = new MemoryBudget("block buffers", 64 * 1024 * 1024);
const pool = new BufferPool(1024 * 1024, 4, budget, uninitialized);
const noLease = { lease: async () => () => {}, pool };

let dir: string;
const nodes: RpcNode[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-rpc-blocks-"));
});
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close()));
  await rm(dir, { recursive: true, force: true });
});

async function served() {
  const [a, b] = await startPair(nodes);
  const store = new LocalBlockStore({ dataDir: dir, fsync: false });
  await store.init();
  const writes: string[] = [];
  serveBlocks(b, store, async (hash, data, compressed) => {
    writes.push(hash);
    await store.write(hash, data, compressed);
  }, budget, pool);
  return { a, b, store, writes };
}

async function refusal(p: Promise<unknown>): Promise<RpcError> {
  const { result } = await captureStderr(() =>
    p.then(
      () => undefined,
      (e: unknown) => e,
    ),
  );
  expect(result).toBeInstanceOf(RpcError);
  return result as RpcError;
}

async function* bytes(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

const filesUnder = async (d: string) => (await readdir(d, { recursive: true })).length;

describe("block endpoints check what peers send", () => {
  test("a valid put, has and get work", async () => {
    const { a, b, store } = await served();
    const data = enc("block body ".repeat(100));
    const hash = hashHex(blake3Sync(data));
    const remote = new RpcBlocks(a);
    await remote.put(b.id, hash, data, false);
    expect(await store.has(hash)).toBe(true);
    expect(await remote.has(b.id, hash)).toBe(true);
    expect(Buffer.from((await remote.get(b.id, hash, noLease))!.data).equals(Buffer.from(data))).toBe(true);
  });

  const badPuts: [string, unknown, RegExp][] = [
    ["a path instead of a hash", { hash: "../../../../tmp/x", compressed: false, size: 4 }, /\/hash: Expected string to match/],
    ["an upper-case hash", { hash: "AB".repeat(32), compressed: false, size: 4 }, /\/hash: Expected string to match/],
    ["a hash that is a number", { hash: 42, compressed: false, size: 4 }, /\/hash: Expected string/],
    ["a negative size", { hash: "ab".repeat(32), compressed: false, size: -1 }, /\/size: Expected integer to be greater or equal to 0/],
    ["a size above the bound", { hash: "ab".repeat(32), compressed: false, size: MAX_REMOTE_BLOCK + 1 }, /\/size: Expected integer to be less or equal to/],
    ["no compressed flag", { hash: "ab".repeat(32), size: 4 }, /\/compressed: Expected required property/],
  ];
  for (const [what, head, message] of badPuts) {
    test(`block/put with ${what} is refused before the write path or the store`, async () => {
      const { a, b, writes } = await served();
      const err = await refusal(a.call(b.id, "block/put", encodeJson(head), { body: bytes(enc("data")) }));
      expect(err.code).toBe(RPC_ERR.badRequest);
      expect(err.message).toMatch(/^endpoint 'block\/put': invalid request: /);
      expect(err.message).toMatch(message);
      expect(writes).toEqual([]);
      expect(await filesUnder(dir)).toBe(0);
    });
  }

  test("block/has and block/get with a malformed hash are refused (no assert reached in the store)", async () => {
    const { a, b } = await served();
    for (const endpoint of ["block/has", "block/get"]) {
      const err = await refusal(a.call(b.id, endpoint, encodeJson({ hash: "00" })));
      expect(err.code).toBe(RPC_ERR.badRequest);
      expect(err.message).toMatch(new RegExp(`^endpoint '${endpoint}': invalid request: /hash: Expected string to match`));
    }
  });

  test("an answer with a malformed head is refused by the caller", async () => {
    const [a, b] = await startPair(nodes);
    // A peer claiming a block far larger than any block: the caller must not allocate it.
    b.handle("block/get", async () => ({ payload: encodeJson({ found: true, compressed: false, size: 2 ** 40 }), body: bytes(enc("x")) }));
    b.handle("block/has", async () => ({ payload: encodeJson({ found: "yes" }) }));
    const remote = new RpcBlocks(a);
    const hash = "ab".repeat(32) as BlockHash;
    const get = await refusal(remote.get(b.id, hash, noLease));
    expect(get.code).toBe(RPC_ERR.badResponse);
    expect(get.message).toMatch(/endpoint 'block\/get': invalid response: \/size: Expected integer to be less or equal to/);
    const has = await refusal(remote.has(b.id, hash));
    expect(has.code).toBe(RPC_ERR.badResponse);
    expect(has.message).toMatch(/endpoint 'block\/has': invalid response: \/found: Expected boolean/);
  });
});
