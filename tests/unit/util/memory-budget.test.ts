import { describe, expect, test } from "bun:test";
import { BudgetAbortedError, BudgetWindow, MemoryBudget } from "../../../src/util/memory-budget";

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

test("a share's leases are leases of its budget too, within the share's own bound", async () => {
  const b = new MemoryBudget("node", 100);
  const local = b.share("local", 75);
  const r1 = await local.acquire(50);
  expect([local.used, b.used]).toEqual([50, 50]);
  // The share is full at 75: 30 more waits even though the budget has room...
  let got = false;
  const waiting = local.acquire(30).then((r) => ((got = true), r));
  await Bun.sleep(5);
  expect(got).toBe(false);
  // ...which the rest of the budget keeps for work outside the share.
  const outside = b.tryAcquire(50);
  expect(outside).toBeDefined();
  expect(b.used).toBe(100);
  r1();
  // 30 fit the share now; taken by other work first, the budget makes them wait.
  const outside2 = b.tryAcquire(30);
  expect(outside2).toBeDefined();
  await Bun.sleep(5);
  expect(got).toBe(false);
  outside!();
  const r2 = await waiting;
  expect([local.used, b.used]).toEqual([30, 60]);
  r2();
  outside2!();
  expect([local.used, b.used]).toEqual([0, 0]);
  expect(() => b.share("too big", 101)).toThrow(/not larger/);
});

test("a lease that does not fit asks the owners of free memory to give theirs back first", async () => {
  const b = new MemoryBudget("node", 100);
  let cached: (() => void) | undefined = b.tryAcquire(60);
  const stop = b.onPressure(() => {
    cached?.();
    cached = undefined;
  });
  const r = b.share("local", 80).tryAcquire(50);
  expect(r).toBeUndefined(); // tryAcquire never reclaims
  const r2 = await b.share("local", 80).acquire(50);
  expect(cached).toBeUndefined();
  expect(b.used).toBe(50);
  r2();
  stop();
});

test("acquireUpTo leases at most the whole budget (a block larger than it, from an earlier block_size)", async () => {
  const b = new MemoryBudget("node", 100);
  const r = await b.acquireUpTo(500);
  expect(b.used).toBe(100);
  r();
});

describe("BudgetWindow", () => {
  test("waits for its base slots in one lease, then takes more only when they are free at once", async () => {
    const b = new MemoryBudget("node", 10);
    const w = await BudgetWindow.open(b, 2, 2, 4);
    expect(b.used).toBe(4);
    expect(w.tryTake() && w.tryTake()).toBe(true);
    expect(b.used).toBe(4); // the base
    expect(w.tryTake()).toBe(true); // an extra slot
    expect(b.used).toBe(6);
    const other = await b.acquire(4);
    expect(w.tryTake()).toBe(false); // the budget is full: no wait, just no
    expect(w.held).toBe(3);
    w.give(); // the extra goes back at once
    expect(b.used).toBe(8);
    other();
    w.give();
    w.give();
    w.close();
    expect(b.used).toBe(0);
  });

  test("a closed window keeps its lease until its last slot is given back", async () => {
    const b = new MemoryBudget("node", 10);
    const w = await BudgetWindow.open(b, 5, 1, 1);
    w.tryTake();
    w.close();
    expect(b.used).toBe(5);
    w.give();
    expect(b.used).toBe(0);
  });

  test("take() waits for one of the window's own slots, never for the budget", async () => {
    const b = new MemoryBudget("node", 4);
    const w = await BudgetWindow.open(b, 2, 1, 2);
    await w.take();
    const hog = await b.acquire(2); // the budget is full
    let took = false;
    const next = w.take().then(() => (took = true));
    await Bun.sleep(5);
    expect(took).toBe(false);
    w.give(); // the reader of the first slot is done
    await next;
    expect(took).toBe(true);
    hog();
    w.give();
    w.close();
    expect(b.used).toBe(0);
  });

  test("streams that each hold a window all finish when the budget is full: none waits while holding memory", async () => {
    // Twenty streams of ten blocks each on a budget of six slots: each opens its window (one
    // slot, waited for), then moves blocks through it, taking extra slots only when free.
    const b = new MemoryBudget("node", 6);
    let done = 0;
    const stream = async () => {
      const w = await BudgetWindow.open(b, 1, 1, 3);
      const inFlight: Promise<void>[] = [];
      for (let i = 0; i < 10; i++) {
        while (!w.tryTake()) await Promise.race(inFlight);
        const p = Bun.sleep(1).then(() => {
          w.give();
          inFlight.splice(inFlight.indexOf(p), 1);
        });
        inFlight.push(p);
      }
      await Promise.all(inFlight);
      w.close();
      done++;
    };
    await Promise.all(Array.from({ length: 20 }, stream));
    expect(done).toBe(20);
    expect(b.used).toBe(0);
    expect(b.peak).toBeLessThanOrEqual(6);
  });
});
