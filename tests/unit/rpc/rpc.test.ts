// RpcNode API: calls, JSON payloads, multi-frame heads, error propagation, unknown endpoints,
// not-connected, self calls, peer events, and duplicate connections from a simultaneous dial.
import { afterEach, describe, expect, test } from "bun:test";
import {
  DUPLICATE_GRACE_MS,
  MAX_HEAD_BYTES,
  MAX_INFLIGHT_CALLS,
  PRIO_HIGH,
  RPC_ERR,
  RpcError,
  decodeJson,
  encodeJson,
  type RpcNode,
} from "../../../src/rpc/rpc.ts";
import { collect, dec, enc, hashBody, patternBody, patternHash, startNode, waitFor, startPair } from "./helpers.ts";

const nodes: RpcNode[] = [];
const pair = () => startPair(nodes);
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
});

describe("RpcNode calls", () => {
  test("JSON payload round trip, both directions on one connection", async () => {
    const [a, b] = await pair();
    b.handle("add", async (req) => {
      const { x, y } = decodeJson<{ x: number; y: number }>(req.payload);
      return { payload: encodeJson({ sum: x + y, from: req.from }) };
    });
    a.handle("add", async (req) => ({ payload: encodeJson({ sum: -1, from: req.from }) }));
    expect(decodeJson((await a.call(b.id, "add", encodeJson({ x: 2, y: 3 }))).payload)).toEqual({ sum: 5, from: a.id });
    expect(decodeJson((await b.call(a.id, "add", encodeJson({ x: 0, y: 0 }))).payload)).toEqual({ sum: -1, from: b.id });
  });

  test("a head larger than one frame (1 MiB payload) arrives whole", async () => {
    const [a, b] = await pair();
    b.handle("len", async (req) => ({ payload: encodeJson({ n: req.payload.length, last: req.payload.at(-1) }) }));
    const big = new Uint8Array(1 << 20).fill(7);
    big[big.length - 1] = 42;
    expect(decodeJson((await a.call(b.id, "len", big)).payload)).toEqual({ n: 1 << 20, last: 42 });
    await expect(a.call(b.id, "len", new Uint8Array(MAX_HEAD_BYTES))).rejects.toThrow(/head limit/);
  });

  test("a handler's error reaches the caller with its message and code, remote: true", async () => {
    const [a, b] = await pair();
    b.handle("boom", async () => {
      throw new Error("disk on fire");
    });
    b.handle("coded", async () => {
      throw Object.assign(new Error("no such block"), { code: "not-found" });
    });
    const err = await a.call(b.id, "boom", new Uint8Array(0)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect(err).toMatchObject({ message: "disk on fire", code: RPC_ERR.remote, remote: true });
    await expect(a.call(b.id, "coded", new Uint8Array(0))).rejects.toMatchObject({ code: "not-found", remote: true });
    // The connection is still fine afterwards.
    b.handle("ok", async () => ({ payload: enc("ok") }));
    expect(dec((await a.call(b.id, "ok", new Uint8Array(0))).payload)).toBe("ok");
  });

  test("calls beyond MAX_INFLIGHT_CALLS queue at the caller; open reply bodies hold no slot", async () => {
    const [a, b] = await pair();
    let running = 0;
    let maxRunning = 0;
    b.handle("slow-echo", async (req) => {
      maxRunning = Math.max(maxRunning, ++running);
      await Bun.sleep(5);
      running--;
      return { payload: req.payload };
    });
    const N = 4 * MAX_INFLIGHT_CALLS;
    const calls = Array.from({ length: N }, (_, i) => a.call(b.id, "slow-echo", encodeJson(i)));
    expect(a.connectionStats(b.id)!.queuedCalls).toBeGreaterThan(0);
    const replies = await Promise.all(calls);
    expect(replies.map((r) => decodeJson<number>(r.payload))).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(maxRunning).toBeLessThanOrEqual(MAX_INFLIGHT_CALLS);

    // Reply bodies nobody reads yet do not block later calls.
    b.handle("open-body", async () => ({ payload: enc("h"), body: patternBody(10_000, 1000, 5) }));
    const open = await Promise.all(
      Array.from({ length: MAX_INFLIGHT_CALLS + 10 }, () => a.call(b.id, "open-body", new Uint8Array(0))),
    );
    expect(dec((await a.call(b.id, "slow-echo", enc("still fine"), { priority: PRIO_HIGH })).payload)).toBe("still fine");
    for (const r of open) expect((await collect(r.body!)).length).toBe(10_000);
    expect(a.connectionStats(b.id)!.pendingCalls).toBe(0);
  });

  test("an unknown endpoint fails clearly", async () => {
    const [a, b] = await pair();
    await expect(a.call(b.id, "no.such.endpoint", new Uint8Array(0))).rejects.toMatchObject({
      code: RPC_ERR.unknownEndpoint,
      remote: true,
      message: expect.stringContaining("unknown endpoint 'no.such.endpoint'"),
    });
  });

  test("a call to a peer that is not connected fails fast", async () => {
    const a = await startNode();
    nodes.push(a);
    const t0 = performance.now();
    const err = await a.call("ab".repeat(32), "x", new Uint8Array(0)).catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(50);
    expect(err).toBeInstanceOf(RpcError);
    expect(err).toMatchObject({ code: RPC_ERR.notConnected, remote: false });
    expect((err as Error).message).toMatch(/not connected/);
    await expect(a.connect("ab".repeat(32), "127.0.0.1", 1)).rejects.toMatchObject({ code: RPC_ERR.notConnected });
  });

  test("a failing response body stream rejects the caller's iteration with the remote message", async () => {
    const [a, b] = await pair();
    b.handle("half", async () => ({
      payload: enc("head"),
      body: (async function* () {
        yield* patternBody(300_000, 50_000, 1);
        throw new Error("read error on block");
      })(),
    }));
    const reply = await a.call(b.id, "half", new Uint8Array(0));
    await expect(collect(reply.body!)).rejects.toMatchObject({ message: "read error on block", remote: true });
  });

  test("a failing request body rejects the call, and the handler sees the failure", async () => {
    const [a, b] = await pair();
    let handlerSaw = "";
    let started!: () => void;
    const handlerStarted = new Promise<void>((resolve) => (started = resolve));
    b.handle("sink", async (req) => {
      started();
      try {
        await hashBody(req.body!);
      } catch (err) {
        handlerSaw = (err as Error).message;
        throw err;
      }
      return { payload: enc("unreachable") };
    });
    const body = (async function* () {
      yield* patternBody(200_000, 64_000, 2);
      await handlerStarted; // fail mid-stream, once the callee is reading
      throw new Error("client hung up");
    })();
    await expect(a.call(b.id, "sink", new Uint8Array(0), { body })).rejects.toThrow("client hung up");
    await waitFor(() => handlerSaw !== "", 2000, "the handler to see the body failure");
    expect(handlerSaw).toBe("caller's request body failed: client hung up");
  });

  test("calls to this node run the local handler with the same contract", async () => {
    const a = await startNode();
    nodes.push(a);
    a.handle("echo-body", async (req) => ({ payload: req.payload, body: req.body }));
    a.handle("fail", async () => {
      throw new Error("local failure");
    });
    expect(a.isConnected(a.id)).toBe(true);
    const reply = await a.call(a.id, "echo-body", enc("me"), { body: patternBody(100_000, 7_000, 3) });
    expect(dec(reply.payload)).toBe("me");
    expect((await hashBody(reply.body!)).hash).toBe(patternHash(100_000, 3));
    await expect(a.call(a.id, "fail", new Uint8Array(0))).rejects.toMatchObject({ message: "local failure", remote: true });
    await expect(a.call(a.id, "nope", new Uint8Array(0))).rejects.toMatchObject({ code: RPC_ERR.unknownEndpoint });
    a.handle(
      "hang",
      (req) => new Promise((_, reject) => req.signal.addEventListener("abort", () => reject(req.signal.reason))),
    );
    const hang = a.call(a.id, "hang", new Uint8Array(0), { timeoutMs: 50 });
    await expect(hang).rejects.toMatchObject({ code: RPC_ERR.timeout });
  });

  test("peer-down fires when the peer closes, and pending calls fail", async () => {
    const [a, b] = await pair();
    const down: string[] = [];
    a.on("peer-down", (id) => down.push(id));
    b.handle("hang", () => new Promise(() => {}));
    const pending = a.call(b.id, "hang", new Uint8Array(0));
    await Bun.sleep(20);
    await b.close();
    await expect(pending).rejects.toBeInstanceOf(RpcError);
    await waitFor(() => down.length === 1, 2000, "peer-down");
    expect(down).toEqual([b.id]);
    expect(a.isConnected(b.id)).toBe(false);
    expect(a.peers()).toEqual([]);
  });

  test("a simultaneous dial leaves one connection, the same one on both sides", async () => {
    const a = await startNode();
    const b = await startNode();
    nodes.push(a, b);
    const ups: string[] = [];
    const downs: string[] = [];
    for (const n of [a, b]) {
      n.on("peer-up", (id) => ups.push(id));
      n.on("peer-down", (id) => downs.push(id));
    }
    await Promise.all([a.connect(b.id, "127.0.0.1", b.port), b.connect(a.id, "127.0.0.1", a.port)]);
    await waitFor(() => a.isConnected(b.id) && b.isConnected(a.id), 2000, "both connected");
    a.handle("ping", async () => ({ payload: enc("a") }));
    b.handle("ping", async () => ({ payload: enc("b") }));
    // Calls work at once, while the losing duplicate is still draining...
    expect(dec((await a.call(b.id, "ping", new Uint8Array(0))).payload)).toBe("b");
    expect(dec((await b.call(a.id, "ping", new Uint8Array(0))).payload)).toBe("a");
    // ...and after it closed, both sides kept the connection dialed by the smaller node id.
    await Bun.sleep(DUPLICATE_GRACE_MS + 300);
    const winner = a.id < b.id ? a.id : b.id;
    expect(a.connectionStats(b.id)!.dialerId).toBe(winner);
    expect(b.connectionStats(a.id)!.dialerId).toBe(winner);
    expect(dec((await a.call(b.id, "ping", new Uint8Array(0))).payload)).toBe("b");
    expect(dec((await b.call(a.id, "ping", new Uint8Array(0))).payload)).toBe("a");
    expect(ups.sort()).toEqual([a.id, b.id].sort());
    expect(downs).toEqual([]);
  });
});
