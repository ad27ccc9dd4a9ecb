// Streaming and multiplexing: 200 concurrent full-duplex 1 MiB streams, priorities under load,
// and backpressure (a slow consumer holds the producer back; a frozen peer fills the send queue
// only up to its bound).
import { afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import {
  MAX_FRAME_PAYLOAD,
  MAX_SEND_QUEUE_BYTES,
  PRIO_BACKGROUND,
  PRIO_HIGH,
  PRIO_NORMAL,
  STREAM_WINDOW_BYTES,
  decodeJson,
  encodeJson,
  type RpcNode,
} from "../../../src/rpc/rpc.ts";
import { enc, fastBody, patternBody, patternHash, spawnPeer, startNode, waitFor, type PeerProcess, startPair } from "./helpers.ts";

const EMPTY = new Uint8Array(0);
const nodes: RpcNode[] = [];
const procs: PeerProcess[] = [];
const pair = () => startPair(nodes);
afterEach(async () => {
  for (const p of procs.splice(0)) {
    p.proc.kill("SIGCONT");
    p.proc.kill("SIGKILL");
    await p.proc.exited;
  }
  for (const n of nodes.splice(0)) await n.close();
});

describe("multiplexing", () => {
  test("200 concurrent calls, each streaming 1 MiB up and 1 MiB back at once, all correct", async () => {
    const [a, b] = await pair();
    // Full duplex: the reply body (a per-call prefix, then the request body echoed) is produced
    // while the request body is still arriving.
    b.handle("echo", async (req) => {
      const body = req.body!;
      const prefix = enc(`call ${decodeJson<{ seed: number }>(req.payload).seed}:`);
      return {
        payload: req.payload,
        body: (async function* () {
          yield prefix;
          yield* body;
        })(),
      };
    });
    const CALLS = 200;
    const SIZE = 1 << 20;
    const chunkOf = (seed: number) => 1000 + ((seed * 7919) % 150_000);
    const priorities = [PRIO_HIGH, PRIO_NORMAL, PRIO_BACKGROUND];
    const results = await Promise.all(
      Array.from({ length: CALLS }, async (_, seed) => {
        const reply = await a.call(b.id, "echo", encodeJson({ seed }), {
          body: patternBody(SIZE, chunkOf(seed), seed),
          priority: priorities[seed % 3],
          timeoutMs: 60_000,
        });
        const h = createHash("sha256");
        let bytes = 0;
        for await (const c of reply.body!) {
          h.update(c);
          bytes += c.length;
        }
        return { seed: decodeJson<{ seed: number }>(reply.payload).seed, bytes, hash: h.digest("hex") };
      }),
    );
    for (const [seed, r] of results.entries()) {
      expect(r.seed).toBe(seed);
      const prefix = enc(`call ${seed}:`);
      expect(r.bytes).toBe(prefix.length + SIZE);
      expect(r.hash).toBe(patternHash(SIZE, seed, prefix));
    }
    const stats = a.connectionStats(b.id)!;
    expect(stats.pendingCalls).toBe(0);
    expect(stats.queueHighWater).toBeLessThanOrEqual(stats.maxQueueBytes + MAX_FRAME_PAYLOAD + 10);
  }, 60_000);
});

describe("priorities", () => {
  test("a high-priority call completes while bulk background streams are in flight", async () => {
    const [a, b] = await pair();
    const BULK = 64 << 20;
    const STREAMS = 4; // each way: enough windows to keep both send queues at their bound
    b.handle("bulk-down", async () => ({ payload: EMPTY, body: fastBody(BULK, 1 << 20) }));
    b.handle("bulk-up", async (req) => {
      let n = 0;
      for await (const c of req.body!) n += c.length;
      return { payload: encodeJson({ n }) };
    });
    b.handle("ping", async (req) => ({ payload: req.payload }));

    let received = 0;
    const t0 = performance.now();
    const downloads = Array.from({ length: STREAMS }, async () => {
      const r = await a.call(b.id, "bulk-down", EMPTY, { priority: PRIO_BACKGROUND });
      for await (const c of r.body!) received += c.length;
      return performance.now();
    });
    const uploads = Array.from({ length: STREAMS }, async () => {
      await a.call(b.id, "bulk-up", EMPTY, { priority: PRIO_BACKGROUND, body: fastBody(BULK, 1 << 20) });
      return performance.now();
    });
    await waitFor(() => received >= 16 << 20, 20_000, "bulk streams to get going");

    const pings: number[] = [];
    let lastPingDone = 0;
    for (let i = 0; i < 5; i++) {
      const p0 = performance.now();
      const reply = await a.call(b.id, "ping", enc(`ping ${i}`), { priority: PRIO_HIGH });
      lastPingDone = performance.now();
      pings.push(lastPingDone - p0);
      expect(new TextDecoder().decode(reply.payload)).toBe(`ping ${i}`);
    }
    const receivedAtPings = received;
    const ends = await Promise.all([...downloads, ...uploads]);
    const bulkEnd = Math.max(...ends);
    const bulkDuration = bulkEnd - t0;
    const worstPing = Math.max(...pings);
    console.log(
      `priority: ${STREAMS}+${STREAMS} background streams of ${BULK >> 20} MiB took ${bulkDuration.toFixed(0)} ms; ` +
        `high-priority pings took ${pings.map((p) => p.toFixed(1)).join(", ")} ms`,
    );
    expect(lastPingDone).toBeLessThan(bulkEnd);
    expect(receivedAtPings).toBeLessThan(STREAMS * BULK);
    // "Measurably before the end": every ping took a small fraction of the bulk transfer.
    expect(worstPing).toBeLessThan(bulkDuration / 5);
  }, 60_000);
});

describe("backpressure", () => {
  test("a slow consumer holds the producer within one window of what it consumed", async () => {
    const [a, b] = await pair();
    const CHUNK = 64 * 1024;
    const TOTAL = 12 << 20;
    let yielded = 0;
    let consumed = 0;
    let maxAhead = 0;
    b.handle("slow-sink", async (req) => {
      for await (const c of req.body!) {
        consumed += c.length;
        await Bun.sleep(1);
      }
      return { payload: encodeJson({ consumed }) };
    });
    const producer = (async function* () {
      while (yielded < TOTAL) {
        yielded += CHUNK;
        maxAhead = Math.max(maxAhead, yielded - consumed);
        yield new Uint8Array(CHUNK);
      }
    })();
    const reply = await a.call(b.id, "slow-sink", EMPTY, { body: producer });
    expect(decodeJson<{ consumed: number }>(reply.payload).consumed).toBe(TOTAL);
    console.log(`backpressure: producer ran at most ${(maxAhead / 1024).toFixed(0)} KiB ahead of a slow consumer`);
    expect(maxAhead).toBeLessThanOrEqual(STREAM_WINDOW_BYTES + 2 * CHUNK);
    expect(a.connectionStats(b.id)!.queueHighWater).toBeLessThanOrEqual(MAX_SEND_QUEUE_BYTES + MAX_FRAME_PAYLOAD + 10);
  }, 30_000);

  test("a frozen peer (SIGSTOP) fills the send queue only to its bound; producers wait, then finish", async () => {
    const a = await startNode();
    nodes.push(a);
    const peer = await spawnPeer();
    procs.push(peer);
    await a.connect(peer.id, "127.0.0.1", peer.port);
    const STREAMS = 32; // 32 windows of 1 MiB: more than the kernel's socket buffers hold
    const SIZE = 8 << 20;
    let yielded = 0;
    const counting = async function* () {
      for await (const c of fastBody(SIZE, 256 * 1024)) {
        yielded += c.length;
        yield c;
      }
    };
    const calls = Array.from({ length: STREAMS }, () =>
      a.call(peer.id, "count", EMPTY, { body: counting(), timeoutMs: 30_000 }),
    );
    await waitFor(() => yielded >= 4 << 20, 10_000, "uploads to start");
    peer.proc.kill("SIGSTOP");
    await Bun.sleep(400);
    const frozenAt = yielded;
    const stats = a.connectionStats(peer.id)!;
    await Bun.sleep(400);
    // Nothing more was pulled from the producers while the peer was frozen.
    expect(yielded).toBe(frozenAt);
    expect(frozenAt).toBeLessThan(STREAMS * SIZE);
    console.log(
      `backpressure: peer frozen after ${(frozenAt / 2 ** 20).toFixed(1)} MiB produced; send queue at ` +
        `${(stats.queuedBytes / 1024).toFixed(0)} KiB (high water ${(stats.queueHighWater / 1024).toFixed(0)} KiB, ` +
        `bound ${stats.maxQueueBytes / 1024} KiB)`,
    );
    // The queue did fill (the bound was exercised), and never past it by more than one frame.
    expect(stats.queuedBytes).toBeGreaterThan(stats.maxQueueBytes / 2);
    expect(stats.queueHighWater).toBeLessThanOrEqual(stats.maxQueueBytes + MAX_FRAME_PAYLOAD + 10);
    // Produced but not delivered: bounded by the stream windows, not by the body sizes.
    expect(frozenAt).toBeLessThanOrEqual(STREAMS * (STREAM_WINDOW_BYTES + 256 * 1024) + (4 << 20));
    peer.proc.kill("SIGCONT");
    const replies = await Promise.all(calls);
    for (const r of replies) expect(decodeJson<{ bytes: number }>(r.payload).bytes).toBe(SIZE);
    expect(yielded).toBe(STREAMS * SIZE);
  }, 60_000);
});
