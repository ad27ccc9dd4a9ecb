import { expect, test } from "bun:test";
import { MemoryBudget } from "../../../src/util/memory-budget";
import { WorkerLoop, type PassContext } from "../../../src/util/worker-loop";

/** A pass that waits until released; counts its starts. */
function gated() {
  let starts = 0;
  let open: () => void = () => {};
  return {
    get starts() {
      return starts;
    },
    release: () => open(),
    pass: async () => {
      const n = ++starts;
      await new Promise<void>((r) => (open = r));
      return n;
    },
  };
}

/** Waits until `cond` holds, failing after a generous deadline (no timing is asserted). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await Bun.sleep(5);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

test("single flight: a run during a pass gets that pass", async () => {
  const g = gated();
  const loop = new WorkerLoop({ name: "t" }, g.pass);
  const a = loop.run();
  const b = loop.run();
  expect(b).toBe(a);
  expect(loop.stats.info().state).toBe("busy");
  g.release();
  expect(await a).toBe(1);
  expect(g.starts).toBe(1);
  expect(loop.stats.info()).toMatchObject({ name: "t", state: "idle", passes: 1, errors: 0 });
});

test("again: runs asked during a pass share one whole pass that starts after it", async () => {
  const g = gated();
  const loop = new WorkerLoop({ name: "t", again: true }, g.pass);
  const first = loop.run();
  const asked = loop.run();
  const alsoAsked = loop.run();
  expect(asked).not.toBe(first);
  expect(alsoAsked).toBe(asked);
  g.release();
  expect(await first).toBe(1);
  await until(() => g.starts === 2, "the second pass");
  g.release();
  expect(await asked).toBe(2);
  expect(g.starts).toBe(2);
});

test("stop interrupts the running pass through its signal and waits for it; the pass asked after it never starts", async () => {
  const seen: boolean[] = [];
  let checks = 0;
  const loop = new WorkerLoop({ name: "t", again: true }, async ({ signal }: PassContext) => {
    for (let i = 0; i < 10_000 && !signal.aborted; i++) {
      checks++;
      await Bun.sleep(1);
    }
    seen.push(signal.aborted);
    return signal.aborted ? "interrupted" : "complete";
  });
  const first = loop.run();
  const second = loop.run();
  await until(() => checks > 0, "the pass to begin");
  let stopped = false;
  const stopping = loop.stop().then(() => (stopped = true));
  expect(stopped).toBe(false);
  await stopping;
  // stop() returned only once the running pass had ended, told to stop; the one asked after it
  // is refused rather than started on a closing node.
  expect(seen).toEqual([true]);
  expect(await first).toBe("interrupted");
  await expect(second).rejects.toThrow(/is stopped/);
});

test("a failing pass: the error goes to the caller and into the stats; the next pass runs", async () => {
  let fail = true;
  const loop = new WorkerLoop({ name: "failing", queueLength: () => 7 }, async () => {
    if (fail) throw new Error("disk on fire");
    return "ok";
  });
  await expect(loop.run()).rejects.toThrow("disk on fire");
  expect(loop.stats.info()).toMatchObject({ name: "failing", passes: 1, errors: 1, lastError: "disk on fire", queueLength: 7 });
  fail = false;
  expect(await loop.run()).toBe("ok");
  expect(loop.stats.info()).toMatchObject({ passes: 2, errors: 1 });
});

test("timed passes: at the interval once started, one at once with firstDelayMs 0, none after stop; a failing timed pass does not stop the loop", async () => {
  let passes = 0;
  const loop = new WorkerLoop({ name: "t", intervalMs: 5, firstDelayMs: 0 }, async () => {
    passes++;
    if (passes === 2) throw new Error("one bad pass");
  });
  expect(passes).toBe(0);
  loop.start();
  expect(passes).toBe(1); // the first pass began in start()
  await until(() => passes >= 4, "timed passes");
  await loop.stop();
  const after = passes;
  await Bun.sleep(30);
  expect(passes).toBe(after);
  expect(loop.stats.info().errors).toBe(1);
});

test("nextDelayMs chooses the wait from the pass's outcome", async () => {
  const results = [true, true, false];
  let passes = 0;
  const delays: number[] = [];
  // The interval is far away: only the short delays chosen after a "busy" pass bring the next one.
  const loop = new WorkerLoop(
    {
      name: "t",
      intervalMs: 3_600_000,
      firstDelayMs: 0,
      nextDelayMs: (o) => {
        const ms = o.ok && o.result ? 1 : 3_600_000;
        delays.push(ms);
        return ms;
      },
    },
    async () => results[passes++] ?? false,
  );
  loop.start();
  await until(() => delays.length === 3, "three passes");
  await Bun.sleep(20);
  expect(passes).toBe(3);
  expect(delays).toEqual([1, 1, 3_600_000]);
  await loop.stop();
});

test("poll: a pass starts when due() says so, never while one runs", async () => {
  let due = false;
  let dueCalls = 0;
  const g = gated();
  const loop = new WorkerLoop(
    {
      name: "t",
      poll: {
        everyMs: 2,
        due: () => {
          dueCalls++;
          return due;
        },
      },
    },
    g.pass,
  );
  loop.start();
  await until(() => dueCalls >= 3, "polls");
  expect(g.starts).toBe(0);
  due = true;
  await until(() => g.starts === 1, "a polled pass");
  const callsDuringPass = dueCalls;
  await Bun.sleep(20);
  expect(dueCalls).toBe(callsDuringPass); // not looked at while the pass runs
  due = false;
  g.release();
  await loop.stop();
  expect(g.starts).toBe(1);
});

test("wake starts a pass only between start and stop", async () => {
  let passes = 0;
  const loop = new WorkerLoop({ name: "t" }, async () => void passes++);
  loop.wake();
  await Bun.sleep(5);
  expect(passes).toBe(0);
  loop.start();
  loop.wake();
  await until(() => passes === 1, "a woken pass");
  await loop.stop();
  loop.wake();
  await Bun.sleep(5);
  expect(passes).toBe(1);
});

test("the pass receives the loop's memory budget", async () => {
  const budget = new MemoryBudget("block buffers", 1024);
  const loop = new WorkerLoop({ name: "t", budget }, async ({ budget: b }: PassContext) => {
    const release = await b!.acquire(512);
    const used = b!.used;
    release();
    return { same: b === budget, used };
  });
  expect(await loop.run()).toEqual({ same: true, used: 512 });
  expect(await new WorkerLoop({ name: "none" }, async ({ budget: b }: PassContext) => b).run()).toBeUndefined();
});

test("invariants: periods are positive, delays need an interval, start is not repeated", () => {
  expect(() => new WorkerLoop({ name: "t", intervalMs: 0 }, async () => {})).toThrow(/positive/);
  expect(() => new WorkerLoop({ name: "t", poll: { everyMs: -1, due: () => false } }, async () => {})).toThrow(/positive/);
  expect(() => new WorkerLoop({ name: "t", firstDelayMs: 0 }, async () => {})).toThrow(/need an interval/);
  const loop = new WorkerLoop({ name: "t" }, async () => {});
  loop.start();
  expect(() => loop.start()).toThrow(/not started twice/);
  void loop.stop();
});

test("run() after stop() starts nothing, and a throwing nextDelayMs keeps the loop timed", async () => {
  let passes = 0;
  const stopped = new WorkerLoop({ name: "stopped" }, async () => ++passes);
  stopped.start();
  await stopped.stop();
  await expect(stopped.run()).rejects.toThrow(/stopped is stopped/);
  expect(passes).toBe(0);

  let timed = 0;
  const loop = new WorkerLoop(
    {
      name: "bad delay",
      intervalMs: 5,
      firstDelayMs: 0,
      nextDelayMs: () => {
        throw new Error("no delay");
      },
    },
    async () => ++timed,
  );
  loop.start();
  const deadline = Date.now() + 10_000;
  while (timed < 3 && Date.now() < deadline) await Bun.sleep(5);
  await loop.stop();
  expect(timed).toBeGreaterThanOrEqual(3);
});
