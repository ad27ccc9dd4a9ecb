import { expect, test } from "bun:test";
import { BufferPool, chunkDone, lend } from "../../../src/util/buffer-pool.ts";

test("a given-back buffer is taken again; a view of it gives back the whole buffer", () => {
  const pool = new BufferPool(1024, 4);
  const a = pool.take();
  pool.give(a.subarray(0, 10));
  const b = pool.take();
  expect(b.buffer).toBe(a.buffer);
  expect(b.byteLength).toBe(1024);
});

test("memory the pool did not allocate is ignored, even of the right size", () => {
  const pool = new BufferPool(1024, 4);
  const foreign = new Uint8Array(1024);
  pool.give(foreign);
  expect(pool.take().buffer).not.toBe(foreign.buffer);
});

test("at most maxFree buffers are kept", () => {
  const pool = new BufferPool(64, 2);
  const taken = [pool.take(), pool.take(), pool.take()];
  for (const t of taken) pool.give(t);
  const again = [pool.take(), pool.take(), pool.take()];
  const reused = again.filter((x) => taken.some((t) => t.buffer === x.buffer));
  expect(reused.length).toBe(2);
});

test("giving a buffer back twice is refused", () => {
  const pool = new BufferPool(64, 4);
  const a = pool.take();
  pool.give(a);
  expect(() => pool.give(a)).toThrow("given back once");
});

test("lent memory is released once, by chunkDone on any chunk of it; other memory is ignored", () => {
  let released = 0;
  const buf = new Uint8Array(100);
  lend(buf.subarray(0, 50), () => released++);
  chunkDone(buf.subarray(10, 20));
  chunkDone(buf.subarray(0, 50));
  chunkDone(new Uint8Array(10));
  expect(released).toBe(1);
});
