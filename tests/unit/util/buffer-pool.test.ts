import { expect, test } from "bun:test";
import { BufferPool, chunkDone, freeNow, FREE_NOW_MIN_BYTES, lend, lendAll, relend } from "../../../src/util/buffer-pool.ts";
import { MemoryBudget } from "../../../src/util/memory-budget.ts";

const pool = (size: number, maxFree: number, budget = new MemoryBudget("test", 1 << 20)) =>
  new BufferPool(size, maxFree, budget, (n) => new Uint8Array(new SharedArrayBuffer(n)));

test("a given-back buffer is taken again; a view of it gives back the whole buffer", () => {
  const p = pool(1024, 4);
  const a = p.take();
  p.give(a.subarray(0, 10));
  const b = p.take();
  expect(b.buffer).toBe(a.buffer);
  expect(b.byteLength).toBe(1024);
  p.close();
});

test("memory the pool did not allocate is ignored, even of the right size", () => {
  const p = pool(1024, 4);
  const foreign = new Uint8Array(1024);
  p.give(foreign);
  expect(p.take().buffer).not.toBe(foreign.buffer);
  p.close();
});

test("at most maxFree buffers are kept", () => {
  const p = pool(64, 2);
  const taken = [p.take(), p.take(), p.take()];
  for (const t of taken) p.give(t);
  expect(p.freeCount).toBe(2);
  p.close();
});

test("giving a buffer back twice is refused", () => {
  const p = pool(64, 4);
  const a = p.take();
  p.give(a);
  expect(() => p.give(a)).toThrow("given back once");
  p.close();
});

test("free buffers hold leases of the budget, kept only when nobody waits, and dropped when a lease does not fit", async () => {
  const budget = new MemoryBudget("test", 4096);
  const p = pool(1024, 4, budget);
  const a = p.take();
  const b = p.take();
  p.give(a);
  p.give(b);
  expect(p.freeCount).toBe(2);
  expect(budget.used).toBe(2048);
  // Taking a free buffer ends the pool's lease on it: its new owner's lease covers it.
  const c = p.take();
  expect(budget.used).toBe(1024);
  p.give(c);
  // 3 KiB does not fit beside the two free buffers: they are dropped for it.
  const big = await budget.acquire(3072);
  expect(p.freeCount).toBe(0);
  expect(budget.used).toBe(3072);
  // While someone waits, a buffer given back is not kept.
  const waiting = budget.acquire(2048);
  p.give(p.take());
  expect(p.freeCount).toBe(0);
  big();
  (await waiting)();
  expect(budget.used).toBe(0);
  p.close();
});

test("lent memory is released once its chunks are done, by chunkDone on each or on a view inside it; other memory is ignored", () => {
  let released = 0;
  const buf = new Uint8Array(100);
  lend(buf.subarray(0, 50), () => released++);
  chunkDone(buf.subarray(10, 20));
  expect(released).toBe(1);
  chunkDone(buf.subarray(0, 50));
  chunkDone(new Uint8Array(10));
  expect(released).toBe(1);

  const rec = new Uint8Array(200);
  lendAll([rec.subarray(0, 100), rec.subarray(100, 200)], () => released++);
  chunkDone(rec.subarray(0, 100));
  chunkDone(rec.subarray(0, 100)); // twice: the same part, not the other one
  expect(released).toBe(1);
  chunkDone(rec.subarray(100, 200));
  expect(released).toBe(2);
});

test("freeNow empties the memory (it is reused at once); shared and small buffers are left alone", () => {
  const big = new Uint8Array(FREE_NOW_MIN_BYTES);
  const view = big.subarray(10, 20);
  freeNow(big);
  expect(big.byteLength).toBe(0);
  expect(view.byteLength).toBe(0);
  const small = new Uint8Array(FREE_NOW_MIN_BYTES - 1);
  freeNow(small);
  expect(small.byteLength).toBe(FREE_NOW_MIN_BYTES - 1);
  const shared = new Uint8Array(new SharedArrayBuffer(FREE_NOW_MIN_BYTES));
  freeNow(shared);
  expect(shared.byteLength).toBe(FREE_NOW_MIN_BYTES);
});

test("a lent buffer freed on release; a loan moved to memory made from it ends with that memory", () => {
  let released = 0;
  const sealed = new Uint8Array(FREE_NOW_MIN_BYTES);
  lend(sealed, () => released++, "free");
  const plain = relend(sealed, new Uint8Array(FREE_NOW_MIN_BYTES));
  expect(sealed.byteLength).toBe(0);
  expect(released).toBe(0);
  chunkDone(plain.subarray(0, 5));
  expect(released).toBe(1);
  expect(plain.byteLength).toBe(0);
});
