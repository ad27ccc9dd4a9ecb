// Throughput of a 256 MiB streamed body over loopback with encryption, in one process (both
// ends share a core) and to a peer process (one core each), next to the plain-TCP ceiling
// measured in the same run (1 MiB writes, no RPC, no encryption). Prints MiB/s and asserts
// nothing about speed (a benchmark, not a test): run with `bun run bench:rpc`.
import { afterAll, describe, expect, test } from "bun:test";
import { decodeJson, encodeJson, type RpcNode } from "../src/rpc/rpc.ts";
import { fastBody, spawnPeer, startNode, waitFor, type PeerProcess } from "../tests/unit/rpc/helpers.ts";

const SIZE = 256 * 2 ** 20;
const CHUNK = 2 ** 20;
const RUNS = 3;
const EMPTY = new Uint8Array(0);

const nodes: RpcNode[] = [];
const procs: PeerProcess[] = [];
afterAll(async () => {
  for (const p of procs) {
    p.proc.kill("SIGKILL");
    await p.proc.exited;
  }
  for (const n of nodes) await n.close();
});

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const mibps = (ms: number) => SIZE / 2 ** 20 / (ms / 1000);

async function measure(a: RpcNode, peerId: string): Promise<{ up: number[]; down: number[] }> {
  const up: number[] = [];
  const down: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    let t0 = performance.now();
    const r = await a.call(peerId, "count", EMPTY, { body: fastBody(SIZE, CHUNK) });
    up.push(mibps(performance.now() - t0));
    expect(decodeJson<{ bytes: number }>(r.payload).bytes).toBe(SIZE);
    t0 = performance.now();
    const reply = await a.call(peerId, "source", encodeJson({ bytes: SIZE, chunk: CHUNK }));
    let n = 0;
    for await (const c of reply.body!) n += c.length;
    down.push(mibps(performance.now() - t0));
    expect(n).toBe(SIZE);
  }
  return { up, down };
}

/** Plain TCP upload of SIZE bytes in 1 MiB writes to the peer's raw sink, which acks the end. */
async function rawTcp(port: number): Promise<number[]> {
  const block = new Uint8Array(CHUNK).fill(1);
  let acked: () => void = () => {};
  let sent = 0;
  let off = 0;
  const pump = (s: { write(b: Uint8Array, o: number, n: number): number }) => {
    while (sent < SIZE) {
      const n = s.write(block, off, block.length - off);
      if (n <= 0) return;
      off += n;
      if (off < block.length) return;
      off = 0;
      sent += block.length;
    }
  };
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: { data: () => acked(), drain: (s) => pump(s) },
  });
  socket.setNoDelay(true);
  const runs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    sent = 0;
    const done = new Promise<void>((resolve) => (acked = resolve));
    const t0 = performance.now();
    pump(socket);
    await done;
    runs.push(mibps(performance.now() - t0));
  }
  socket.end();
  return runs;
}

const fmt = (xs: number[]) => `${median(xs).toFixed(0)} MiB/s (${xs.map((x) => x.toFixed(0)).join(", ")})`;

function report(label: string, r: { up: number[]; down: number[] }): void {
  console.log(`throughput ${label}, 256 MiB encrypted: upload ${fmt(r.up)}; download ${fmt(r.down)}`);
}

describe("throughput", () => {
  test("in one process", async () => {
    const a = await startNode();
    const b = await startNode();
    nodes.push(a, b);
    b.handle("count", async (req) => {
      let bytes = 0;
      for await (const c of req.body!) bytes += c.length;
      return { payload: encodeJson({ bytes }) };
    });
    b.handle("source", async (req) => {
      const { bytes, chunk } = decodeJson<{ bytes: number; chunk: number }>(req.payload);
      return { payload: EMPTY, body: fastBody(bytes, chunk) };
    });
    await a.connect(b.id, "127.0.0.1", b.port);
    await waitFor(() => b.isConnected(a.id), 2000, "b to admit a");
    report("in-process", await measure(a, b.id));
  }, 120_000);

  test("to a peer process", async () => {
    const a = await startNode();
    nodes.push(a);
    const peer = await spawnPeer();
    procs.push(peer);
    await a.connect(peer.id, "127.0.0.1", peer.port);
    const raw = await rawTcp(peer.rawPort);
    const rpc = await measure(a, peer.id);
    report("cross-process", rpc);
    console.log(
      `throughput ceiling: plain TCP to the same process ${fmt(raw)}; ` +
        `RPC upload at ${((100 * median(rpc.up)) / median(raw)).toFixed(0)}% of it`,
    );
  }, 120_000);
});
