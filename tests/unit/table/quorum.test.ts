import { describe, expect, test } from "bun:test";
import { quorum, QuorumError, replicaQuorum } from "../../../src/table/quorum.ts";

const never = <T>(): Promise<T> => new Promise<T>(() => {});
const after = <T>(ms: number, v: T): Promise<T> => new Promise((r) => setTimeout(() => r(v), ms));
const failAfter = (ms: number, msg: string): Promise<never> => new Promise((_, rej) => setTimeout(() => rej(new Error(msg)), ms));

describe("quorum", () => {
  test("need <= 0 resolves at once with no results, without calling anything", async () => {
    let called = 0;
    expect(await quorum([() => ((called++), never<number>())], 0)).toEqual([]);
    expect(called).toBe(0);
  });

  test("resolves as soon as `need` calls succeed, without waiting for the rest", async () => {
    const t0 = performance.now();
    const res = await quorum([() => after(5, "a"), () => never<string>(), () => after(1, "b")], 2, 5_000);
    expect(res.sort()).toEqual(["a", "b"]);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  test("results come in completion order", async () => {
    const res = await quorum([() => after(30, 3), () => after(1, 1), () => after(10, 2)], 2);
    expect(res).toEqual([1, 2]);
  });

  test("tolerates failures while the quorum is still reachable", async () => {
    const res = await quorum([() => failAfter(1, "down"), () => after(5, "x"), () => after(10, "y")], 2);
    expect(res).toEqual(["x", "y"]);
  });

  test("fails fast once too many calls failed to reach the quorum", async () => {
    const t0 = performance.now();
    const p = quorum([() => Promise.reject(new Error("n1 down")), () => never<number>(), () => failAfter(2, "n3 down")], 2, 10_000);
    const err = (await p.catch((e) => e)) as QuorumError;
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.need).toBe(2);
    expect(err.got).toBe(0);
    expect(err.errors).toEqual(["n1 down", "n3 down"]);
    expect(err.message).toContain("n1 down");
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  test("non-Error rejections are reported as strings", async () => {
    const err = (await quorum([() => Promise.reject("plain")], 1).catch((e) => e)) as QuorumError;
    expect(err.errors).toEqual(["plain"]);
  });

  test("times out with the successes so far and a timeout marker", async () => {
    const t0 = performance.now();
    const err = (await quorum([() => Promise.resolve(1), () => never<number>(), () => never<number>()], 2, 50).catch((e) => e)) as QuorumError;
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.got).toBe(1);
    expect(err.errors).toEqual(["timeout"]);
    expect(elapsed).toBeGreaterThanOrEqual(45);
    expect(elapsed).toBeLessThan(2_000);
  });

  test("fewer calls than needed fails immediately", async () => {
    const err = (await quorum([() => Promise.resolve(1)], 2).catch((e) => e)) as QuorumError;
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.errors[0]).toContain("only 1 replicas");
  });

  test("a quorum that resolved is not turned into a failure by later errors", async () => {
    const res = await quorum([() => Promise.resolve("ok"), () => failAfter(5, "late")], 1);
    expect(res).toEqual(["ok"]);
    await after(10, null); // the late rejection must not surface as unhandled
  });
});

describe("replicaQuorum", () => {
  /** Liveness of a fake cluster: `down` nodes are known down, `talking` ones always heard from. */
  const liveness = (down: string[], talking: string[]) => ({
    isDown: (n: string) => down.includes(n),
    heardProbe: (n: string) => () => talking.includes(n),
  });

  test("a node known down counts as failed at once, without a call", async () => {
    const called: string[] = [];
    const t0 = performance.now();
    const err = (await replicaQuorum(["a", "b", "c"], (n) => (called.push(n), never<string>()), 2, {
      liveness: liveness(["b", "c"], []),
      mode: "deadline",
      timeoutMs: 10_000,
    }).catch((e) => e)) as QuorumError;
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.errors.join()).toContain("is down");
    expect(called).toEqual(["a"]);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  test("deadline: the quorum fails after the bound even while peers talk", async () => {
    const t0 = performance.now();
    const err = (await replicaQuorum(["a", "b"], () => never<string>(), 1, { liveness: liveness([], ["a", "b"]), mode: "deadline", timeoutMs: 50 }).catch((e) => e)) as QuorumError;
    expect(err.errors).toEqual(["timeout"]);
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  test("progress: a silent replica gives up its place after the bound; one still heard from goes on", async () => {
    const t0 = performance.now();
    // "slow" answers after four bounds but keeps talking; "mute" never answers nor talks.
    const res = await replicaQuorum(["slow", "mute"], (n) => (n === "slow" ? after(200, n) : never<string>()), 1, {
      liveness: liveness([], ["slow"]),
      mode: "progress",
      timeoutMs: 50,
    });
    expect(res).toEqual(["slow"]);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    const err = (await replicaQuorum(["slow", "mute"], (n) => (n === "slow" ? after(200, n) : never<string>()), 2, {
      liveness: liveness([], ["slow"]),
      mode: "progress",
      timeoutMs: 50,
    }).catch((e) => e)) as QuorumError;
    expect(err).toBeInstanceOf(QuorumError);
    expect(err.errors).toEqual(["node mute sent nothing for 50 ms"]);
  });

  test("progress without liveness is a deadline", async () => {
    const err = (await replicaQuorum(["a"], () => never<string>(), 1, { mode: "progress", timeoutMs: 50 }).catch((e) => e)) as QuorumError;
    expect(err.errors).toEqual(["timeout"]);
  });
});
