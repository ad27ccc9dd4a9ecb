import { expect, test } from "bun:test";
import { BudgetAbortedError, MemoryBudget } from "../../../src/util/memory-budget";

test("leases within the budget are granted at once and tracked", async () => {
  const b = new MemoryBudget("test", 100);
  const r1 = await b.acquire(60);
  const r2 = b.tryAcquire(40);
  expect(r2).toBeDefined();
  expect(b.used).toBe(100);
  expect(b.tryAcquire(1)).toBeUndefined();
  r1();
  r2!();
  expect(b.used).toBe(0);
  expect(b.peak).toBe(100);
});

test("a full budget makes new leases wait, in order, until memory comes back", async () => {
  const b = new MemoryBudget("test", 100);
  const first = await b.acquire(80);
  const order: string[] = [];
  const big = b.acquire(50).then((r) => (order.push("big"), r));
  const small = b.acquire(10).then((r) => (order.push("small"), r));
  // 10 bytes would fit now, but the 50-byte lease asked first: it is not overtaken.
  await Bun.sleep(5);
  expect(order).toEqual([]);
  expect(b.waiting).toBe(2);
  expect(b.tryAcquire(1)).toBeUndefined();
  first();
  const [rBig, rSmall] = await Promise.all([big, small]);
  expect(order).toEqual(["big", "small"]);
  expect(b.used).toBe(60);
  rBig();
  rSmall();
  expect(b.used).toBe(0);
});

test("an aborted wait leases nothing and lets the next waiter through", async () => {
  const b = new MemoryBudget("test", 100);
  const held = await b.acquire(90);
  const ac = new AbortController();
  const blocked = b.acquire(50, ac.signal);
  const next = b.acquire(5);
  ac.abort();
  await expect(blocked).rejects.toBeInstanceOf(BudgetAbortedError);
  const r = await next;
  expect(b.used).toBe(95);
  r();
  held();
  expect(b.used).toBe(0);
  await expect(b.acquire(1, AbortSignal.abort())).resolves.toBeFunction();
});

test("a lease is released once and never exceeds the budget", () => {
  const b = new MemoryBudget("test", 10);
  const r = b.tryAcquire(10)!;
  r();
  expect(() => r()).toThrow(/released once/);
  expect(() => b.tryAcquire(11)).toThrow(/fits in test/);
  expect(() => new MemoryBudget("x", 0)).toThrow();
});
