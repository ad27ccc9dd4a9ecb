// Failure paths: cancellation (the handler's signal fires and the stream stops), timeouts,
// stalled streams, and peers that vanish mid-stream (killed process, closed node): every pending
// call and stream fails promptly, nothing hangs.
import { afterEach, describe, expect, test } from "bun:test";
import { RPC_ERR, RpcError, encodeJson, type RpcNode } from "../../../src/rpc/rpc.ts";
import { fastBody, spawnPeer, startNode, waitFor, type PeerProcess, startPair } from "./helpers.ts";

const EMPTY = new Uint8Array(0);
const nodes: RpcNode[] = [];
const procs: PeerProcess[] = [];
const pair = (extra: Parameters<typeof startNode>[0] = {}) => startPair(nodes, extra);
afterEach(async () => {
  for (const p of procs.splice(0)) {
    p.proc.kill("SIGKILL");
    await p.proc.exited;
  }
  for (const n of nodes.splice(0)) await n.close();
});

/** A handler whose reply body runs until stopped, recording what happens to it. */
function endlessSource(b: RpcNode, name: string) {
  const state = { produced: 0, signalFired: false, signalReason: undefined as unknown, producerClosed: false };
  b.handle(name, async (req) => {
    req.signal.addEventListener("abort", () => {
      state.signalFired = true;
      state.signalReason = req.signal.reason;
    });
    return {
      payload: EMPTY,
      body: (async function* () {
        try {
          for (let i = 0; i < 1_000_000; i++) {
            state.produced += 64 * 1024;
            yield new Uint8Array(64 * 1024);
          }
        } finally {
          state.producerClosed = true;
        }
      })(),
    };
  });
  return state;
}

/** A handler that waits for its signal, recording when it fired. */
function waitingHandler(b: RpcNode, name: string) {
  const state = { started: false, abortedAfterMs: -1, reason: undefined as unknown };
  b.handle(name, (req) => {
    state.started = true;
    const t0 = performance.now();
    return new Promise((_, reject) => {
      req.signal.addEventListener("abort", () => {
        state.abortedAfterMs = performance.now() - t0;
        state.reason = req.signal.reason;
        reject(new Error("aborted"));
      });
    });
  });
  return state;
}

describe("cancellation", () => {
  test("aborting mid-stream fails the caller's stream, fires the handler's signal and stops the producer", async () => {
    const [a, b] = await pair();
    const state = endlessSource(b, "endless");
    const ac = new AbortController();
    const reply = await a.call(b.id, "endless", EMPTY, { signal: ac.signal });
    let got = 0;
    const reading = (async () => {
      for await (const c of reply.body!) {
        got += c.length;
        if (got >= 4 << 20) ac.abort();
      }
    })();
    await expect(reading).rejects.toMatchObject({ code: RPC_ERR.cancelled });
    await waitFor(() => state.signalFired && state.producerClosed, 2000, "the handler to see the cancel");
    expect(state.signalReason).toBeInstanceOf(RpcError);
    const stoppedAt = state.produced;
    await Bun.sleep(100);
    expect(state.produced).toBe(stoppedAt); // the stream really stopped
    expect(stoppedAt).toBeLessThan((4 << 20) + (4 << 20)); // read + window + queue, not the whole body
    expect(a.connectionStats(b.id)!.pendingCalls).toBe(0);
    expect(b.connectionStats(a.id)!.servedRequests).toBe(0);
  });

  test("breaking out of the response body cancels the stream on the callee", async () => {
    const [a, b] = await pair();
    const state = endlessSource(b, "endless");
    const reply = await a.call(b.id, "endless", EMPTY);
    let got = 0;
    for await (const c of reply.body!) {
      got += c.length;
      if (got >= 1 << 20) break;
    }
    await waitFor(() => state.signalFired && state.producerClosed, 2000, "the callee to stop");
  });

  test("aborting before the reply rejects at once and fires the handler's signal", async () => {
    const [a, b] = await pair();
    const state = waitingHandler(b, "wait");
    const ac = new AbortController();
    const call = a.call(b.id, "wait", EMPTY, { signal: ac.signal });
    await waitFor(() => state.started, 2000, "the handler to start");
    const t0 = performance.now();
    ac.abort();
    await expect(call).rejects.toMatchObject({ code: RPC_ERR.cancelled, remote: false });
    expect(performance.now() - t0).toBeLessThan(50);
    await waitFor(() => state.abortedAfterMs >= 0, 2000, "the handler's signal");
    expect((state.reason as RpcError).code).toBe(RPC_ERR.cancelled);
  });

  test("an already-aborted signal never reaches the peer", async () => {
    const [a, b] = await pair();
    const state = waitingHandler(b, "wait");
    const ac = new AbortController();
    ac.abort();
    await expect(a.call(b.id, "wait", EMPTY, { signal: ac.signal })).rejects.toMatchObject({ code: RPC_ERR.cancelled });
    await Bun.sleep(50);
    expect(state.started).toBe(false);
  });

  test("aborting an upload stops the caller's producer and the handler's body", async () => {
    const [a, b] = await pair();
    let handlerError = "";
    b.handle("sink", async (req) => {
      try {
        for await (const _ of req.body!) {
          // consume
        }
      } catch (err) {
        handlerError = (err as Error).message;
      }
      return { payload: EMPTY };
    });
    let producerClosed = false;
    const ac = new AbortController();
    let sent = 0;
    const body = (async function* () {
      try {
        for (let i = 0; i < 1_000_000; i++) {
          sent += 65536;
          if (sent >= 4 << 20) ac.abort();
          yield new Uint8Array(65536);
        }
      } finally {
        producerClosed = true;
      }
    })();
    const call = a.call(b.id, "sink", EMPTY, { body, signal: ac.signal });
    await expect(call).rejects.toMatchObject({ code: RPC_ERR.cancelled });
    await waitFor(() => producerClosed && handlerError !== "", 2000, "both ends to stop");
    expect(handlerError).toMatch(/cancelled/);
  });
});

describe("timeouts", () => {
  test("a call times out on time, and the handler is told", async () => {
    const [a, b] = await pair();
    const state = waitingHandler(b, "wait");
    const t0 = performance.now();
    const err = await a.call(b.id, "wait", EMPTY, { timeoutMs: 150 }).catch((e: unknown) => e);
    const took = performance.now() - t0;
    expect(err).toMatchObject({ code: RPC_ERR.timeout, remote: false });
    expect((err as Error).message).toMatch(/timed out after 150 ms/);
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(1000);
    await waitFor(() => state.abortedAfterMs >= 0, 2000, "the handler's signal");
  });

  test("a body stream that stops flowing fails after the idle timeout, on both sides", async () => {
    const [a, b] = await pair({ streamIdleTimeoutMs: 200 });
    // Receiver side: the producer goes silent.
    b.handle("silent", async () => ({
      payload: EMPTY,
      body: (async function* () {
        yield new Uint8Array(10);
        await Bun.sleep(3000);
      })(),
    }));
    const reply = await a.call(b.id, "silent", EMPTY);
    const t0 = performance.now();
    const reading = (async () => {
      for await (const _ of reply.body!) {
        // drain
      }
    })();
    await expect(reading).rejects.toMatchObject({ code: RPC_ERR.stalled });
    expect(performance.now() - t0).toBeLessThan(1500);

    // Sender side: the caller never reads the reply body, so no credit comes back.
    const state = endlessSource(b, "endless");
    const unread = await a.call(b.id, "endless", EMPTY);
    expect(unread.body).toBeDefined();
    await waitFor(() => state.producerClosed, 3000, "the stalled producer to be closed");
  });
});

describe("vanishing peers", () => {
  test("a killed peer process fails the stream and every pending call within a bounded time", async () => {
    const a = await startNode();
    nodes.push(a);
    const peer = await spawnPeer();
    procs.push(peer);
    const downs: string[] = [];
    a.on("peer-down", (id) => downs.push(id));
    await a.connect(peer.id, "127.0.0.1", peer.port);
    const held = a.call(peer.id, "hold", EMPTY).catch((e: unknown) => e);
    const upload = a.call(peer.id, "count", EMPTY, { body: fastBody(64 * 2 ** 30, 1 << 20) }).catch((e: unknown) => e);
    const reply = await a.call(peer.id, "source", encodeJson({ bytes: 64 * 2 ** 30, chunk: 1 << 20 }));
    let got = 0;
    let killedAt = 0;
    const reading = (async () => {
      for await (const c of reply.body!) {
        got += c.length;
        if (got >= 8 << 20 && killedAt === 0) {
          killedAt = performance.now();
          peer.proc.kill("SIGKILL");
        }
      }
    })();
    const readErr = await reading.catch((e: unknown) => e);
    const [heldErr, uploadErr] = await Promise.all([held, upload]);
    const took = performance.now() - killedAt;
    console.log(`vanish: stream and pending calls failed ${took.toFixed(0)} ms after SIGKILL`);
    expect(took).toBeLessThan(2000);
    for (const err of [readErr, heldErr, uploadErr]) {
      expect(err).toBeInstanceOf(RpcError);
      expect((err as RpcError).code).toBe(RPC_ERR.connectionLost);
    }
    await waitFor(() => downs.length === 1, 2000, "peer-down");
    expect(a.isConnected(peer.id)).toBe(false);
    await expect(a.call(peer.id, "echo", EMPTY)).rejects.toMatchObject({ code: RPC_ERR.notConnected });
  }, 30_000);

  test("a peer node closing mid-upload fails the caller promptly", async () => {
    const [a, b] = await pair();
    let received = 0;
    b.handle("sink", async (req) => {
      for await (const c of req.body!) received += c.length;
      return { payload: EMPTY };
    });
    const call = a.call(b.id, "sink", EMPTY, { body: fastBody(64 * 2 ** 30, 1 << 20) });
    await waitFor(() => received >= 8 << 20, 10_000, "the upload to flow");
    const t0 = performance.now();
    await b.close();
    await expect(call).rejects.toBeInstanceOf(RpcError);
    expect(performance.now() - t0).toBeLessThan(2000);
  }, 30_000);

  test("closing our own node fails our pending calls", async () => {
    const [a, b] = await pair();
    waitingHandler(b, "wait");
    const call = a.call(b.id, "wait", EMPTY);
    await Bun.sleep(20);
    await a.close();
    await expect(call).rejects.toMatchObject({ code: RPC_ERR.closed });
  });
});
