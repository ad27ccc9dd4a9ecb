import { describe, expect, test } from "bun:test";
import { HybridClock } from "../../../src/util/hlc.ts";

function fakeWall(start: number) {
  const w = { t: start, read: () => w.t };
  return w;
}

describe("HybridClock", () => {
  test("follows the wall clock when it moves forward", () => {
    const w = fakeWall(1000);
    const c = new HybridClock(w.read);
    expect(c.now()).toBe(1000);
    w.t = 1500;
    expect(c.now()).toBe(1500);
  });

  test("strictly monotonic when the wall clock stalls or goes backwards", () => {
    const w = fakeWall(1000);
    const c = new HybridClock(w.read);
    expect([c.now(), c.now(), c.now()]).toEqual([1000, 1001, 1002]);
    w.t = 500; // NTP step back
    expect(c.now()).toBe(1003);
    w.t = 2000;
    expect(c.now()).toBe(2000);
  });

  test("observe() bumps the clock past a timestamp from the future, and ignores older ones", () => {
    const w = fakeWall(1000);
    const c = new HybridClock(w.read);
    c.observe(5000);
    expect(c.now()).toBe(5001);
    c.observe(10); // older: no effect
    expect(c.now()).toBe(5002);
    w.t = 6000;
    expect(c.now()).toBe(6000);
  });

  test("nowAfter(t) is strictly greater than t and than every earlier timestamp", () => {
    const w = fakeWall(1000);
    const c = new HybridClock(w.read);
    const a = c.now();
    expect(c.nowAfter(0)).toBeGreaterThan(a);
    expect(c.nowAfter(9000)).toBe(9001);
    expect(c.nowAfter(9000)).toBe(9002);
    expect(c.nowAfter(100)).toBe(9003);
  });

  test("defaults to Date.now and never repeats in a tight loop", () => {
    const c = new HybridClock();
    const before = Date.now();
    let prev = 0;
    let increasing = true;
    for (let i = 0; i < 10_000; i++) {
      const t = c.now();
      if (!(t > prev)) increasing = false;
      prev = t;
    }
    expect(increasing).toBe(true);
    expect(prev).toBeGreaterThanOrEqual(before);
    expect(prev).toBeLessThan(Date.now() + 10_001);
  });
});

test("read() tells the clock's time without moving it: a thousand reads in one millisecond leave now() where it was", () => {
  let wall = 1_000;
  const clock = new HybridClock(() => wall);
  expect(clock.now()).toBe(1_000);
  for (let i = 0; i < 1_000; i++) expect(clock.read()).toBe(1_000);
  expect(clock.now()).toBe(1_001); // one past the last stamp, not a thousand
  clock.observe(5_000);
  expect(clock.read()).toBe(5_000); // what it has seen counts
  wall = 6_000;
  expect(clock.read()).toBe(6_000);
});
