// The benchmark latency proxy (benchmarks/lib/latency-proxy.ts), on loopback against servers
// in this process: the delay of each direction, byte order over a few MiB both ways, bounded
// buffering against a reader that stops, FIN propagation both ways, stop(), and the zone helper.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { createHash } from "node:crypto";
import { LatencyProxy, ZoneProxies, uniformMatrix } from "../../../benchmarks/lib/latency-proxy.ts";

setDefaultTimeout(15_000);

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Pausable = { pause(): boolean; resume(): boolean };

interface ServerSide {
  listener: TCPSocketListener<unknown>;
  sockets: Socket<unknown>[];
  onData: (s: Socket<unknown>, chunk: Uint8Array) => void;
  ended: number;
  closed: number;
}

/** A TCP server on 127.0.0.1; by default it echoes and answers FIN with FIN after the echo. */
function server(opts: { onData?: ServerSide["onData"]; onEnd?: (s: Socket<unknown>) => void; pauseOnOpen?: boolean } = {}): ServerSide {
  const pending = new Map<Socket<unknown>, Uint8Array[]>();
  const finPending = new Set<Socket<unknown>>();
  const flush = (s: Socket<unknown>) => {
    const q = pending.get(s) ?? [];
    while (q.length > 0) {
      const b = q[0]!;
      const n = s.write(b, 0, b.length);
      if (n < 0) return void (q.length = 0);
      if (n < b.length) return void (q[0] = b.subarray(n));
      q.shift();
    }
    // Bun: shutdown() sends FIN and keeps the socket; end() would close both halves.
    if (finPending.delete(s)) s.shutdown();
  };
  const side: ServerSide = {
    sockets: [],
    ended: 0,
    closed: 0,
    onData:
      opts.onData ??
      ((s, chunk) => {
        const q = pending.get(s) ?? [];
        pending.set(s, q);
        q.push(new Uint8Array(chunk));
        if (q.length === 1) flush(s);
      }),
    listener: Bun.listen<unknown>({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: {
        binaryType: "uint8array",
        open(s) {
          side.sockets.push(s);
          if (opts.pauseOnOpen) (s as unknown as Pausable).pause();
        },
        data(s, chunk) {
          side.onData(s, chunk);
        },
        drain(s) {
          flush(s);
        },
        end(s) {
          side.ended++;
          if (opts.onEnd) return opts.onEnd(s);
          finPending.add(s); // answer FIN with FIN once what was queued is written
          flush(s);
        },
        close() {
          side.closed++;
        },
      },
    }),
  };
  cleanups.push(() => side.listener.stop(true));
  return side;
}

function proxyTo(port: number, upMs: number, downMs: number, maxQueuedBytes?: number): LatencyProxy {
  const p = new LatencyProxy({ target: { host: "127.0.0.1", port }, upMs, downMs, maxQueuedBytes });
  cleanups.push(() => p.stop());
  return p;
}

interface Client {
  socket: Socket<unknown>;
  received: Uint8Array[];
  receivedBytes: number;
  ended: Promise<void>;
  closed: Promise<void>;
  /** Writes everything, waiting for drain; resolves when the kernel took the last byte. */
  send(bytes: Uint8Array): Promise<void>;
}

async function connect(port: number): Promise<Client> {
  let endedResolve!: () => void;
  let closedResolve!: () => void;
  let drainWaiter: (() => void) | null = null;
  const c: Partial<Client> = {
    received: [],
    receivedBytes: 0,
    ended: new Promise<void>((r) => (endedResolve = r)),
    closed: new Promise<void>((r) => (closedResolve = r)),
  };
  c.socket = await Bun.connect<unknown>({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: {
      binaryType: "uint8array",
      data(_s, chunk) {
        c.received!.push(new Uint8Array(chunk));
        c.receivedBytes! += chunk.length;
      },
      drain() {
        const w = drainWaiter;
        drainWaiter = null;
        w?.();
      },
      end() {
        endedResolve();
      },
      close() {
        endedResolve();
        closedResolve();
      },
    },
  });
  c.send = async (bytes: Uint8Array) => {
    let off = 0;
    while (off < bytes.length) {
      const n = c.socket!.write(bytes, off, bytes.length - off);
      if (n < 0) throw new Error("socket closed while sending");
      off += n;
      if (off < bytes.length) await new Promise<void>((r) => (drainWaiter = r));
    }
  };
  cleanups.push(() => c.socket!.terminate());
  return c as Client;
}

const sha = (parts: Uint8Array[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest("hex");
};

async function until(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(2);
  }
}

test("each direction is delayed by its own configured time", async () => {
  const UP = 80;
  const DOWN = 30;
  let arrivedAt = 0;
  const srv = server({
    onData(s, chunk) {
      arrivedAt = performance.now();
      s.write(chunk, 0, chunk.length); // tiny: taken at once
    },
  });
  const proxy = proxyTo(srv.listener.port, UP, DOWN);
  const client = await connect(proxy.port);
  // A first exchange opens the target connection; then measure a few round trips.
  for (let i = 0; i < 4; i++) {
    const before = client.receivedBytes;
    const t0 = performance.now();
    await client.send(new Uint8Array([i]));
    await until("echo", () => client.receivedBytes > before);
    const t1 = performance.now();
    const up = arrivedAt - t0;
    const down = t1 - arrivedAt;
    expect(up).toBeGreaterThanOrEqual(UP);
    expect(down).toBeGreaterThanOrEqual(DOWN);
    expect(t1 - t0).toBeGreaterThanOrEqual(UP + DOWN);
    expect(t1 - t0).toBeLessThan(UP + DOWN + 200);
  }
  expect(proxy.stats.accepted).toBe(1);
});

test("a few MiB stream both ways at once keep their order and content; FIN travels both ways", async () => {
  const srv = server(); // echo
  const proxy = proxyTo(srv.listener.port, 5, 5);
  const client = await connect(proxy.port);
  const total = 6 * 1024 * 1024;
  const parts: Uint8Array[] = [];
  for (let off = 0; off < total; ) {
    const n = Math.min(total - off, 1 + Math.floor(Math.random() * 200_000));
    parts.push(crypto.getRandomValues(new Uint8Array(n)));
    off += n;
  }
  for (const p of parts) await client.send(p); // the echo streams back while we still send
  client.socket.shutdown(); // FIN: the server sees it after the data, answers with its own FIN
  await Promise.race([client.ended, Bun.sleep(10_000)]);
  expect(client.receivedBytes).toBe(total);
  expect(sha(client.received)).toBe(sha(parts));
  expect(srv.ended).toBe(1);
  await Promise.race([client.closed, Bun.sleep(5_000)]);
  await until("the proxy forgets the connection", () => proxy.stats.open === 0);
  expect(proxy.stats.upBytes).toBe(total);
  expect(proxy.stats.downBytes).toBe(total);
});

test("half-close: after the client's FIN, the server can still answer", async () => {
  const srv = server({
    onData() {},
    onEnd(s) {
      s.write("bye");
      s.shutdown();
    },
  });
  const proxy = proxyTo(srv.listener.port, 10, 10);
  const client = await connect(proxy.port);
  await client.send(new TextEncoder().encode("hello"));
  client.socket.shutdown();
  await Promise.race([client.closed, Bun.sleep(5_000)]);
  expect(new TextDecoder().decode(Buffer.concat(client.received))).toBe("bye");
  expect(srv.ended).toBe(1);
});

test("a target that stops reading pauses the client: the proxy's queue stays bounded", async () => {
  const CAP = 1024 * 1024;
  const srv = server({ pauseOnOpen: true, onData: () => {} });
  let serverGot = 0;
  const hash = createHash("sha256");
  srv.onData = (_s, chunk) => {
    serverGot += chunk.length;
    hash.update(chunk);
  };
  const proxy = proxyTo(srv.listener.port, 1, 1, CAP);
  const client = await connect(proxy.port);
  const total = 64 * 1024 * 1024;
  const block = crypto.getRandomValues(new Uint8Array(1024 * 1024));
  const sent = createHash("sha256");
  let sentBytes = 0;
  const sending = (async () => {
    for (let i = 0; i < total / block.length; i++) {
      block[0] = i & 0xff;
      block[1] = i >> 8;
      sent.update(block);
      await client.send(block);
      sentBytes += block.length;
    }
  })();
  await Bun.sleep(500);
  // The kernel buffers of three sockets hold some MiB; the proxy holds about CAP per direction.
  expect(sentBytes).toBeLessThan(total);
  expect(proxy.stats.pauses).toBeGreaterThan(0);
  expect(proxy.stats.queuedHighWater).toBeLessThan(CAP + 1024 * 1024);
  (srv.sockets[0] as unknown as Pausable).resume();
  await sending;
  await until("everything reaches the target", () => serverGot === total, 10_000);
  expect(hash.digest("hex")).toBe(sent.digest("hex"));
});

test("a target that closes is seen by the client; stop() closes the listener and open connections", async () => {
  const srv = server();
  const proxy = proxyTo(srv.listener.port, 5, 5);
  const a = await connect(proxy.port);
  await a.send(new Uint8Array([1]));
  await until("target side open", () => srv.sockets.length === 1);
  srv.sockets[0]!.end(); // Bun: closes both halves
  const seen = await Promise.race([a.ended.then(() => true), Bun.sleep(3_000).then(() => false)]);
  expect(seen).toBe(true);

  const b = await connect(proxy.port);
  await b.send(new Uint8Array([2]));
  await until("second target connection", () => srv.sockets.length === 2);
  const t0 = Date.now();
  await proxy.stop();
  expect(Date.now() - t0).toBeLessThan(1_500);
  // The client sees FIN or a reset (it keeps its own half open: allowHalfOpen).
  const bSeen = await Promise.race([b.ended.then(() => true), Bun.sleep(3_000).then(() => false)]);
  expect(bSeen).toBe(true);
  await until("the target side is closed too", () => srv.closed === 2);
  expect(proxy.stats.open).toBe(0);
  await expect(connect(proxy.port)).rejects.toThrow();
});

test("zone helper: per-pair delays, one advertised address only when the callers agree", async () => {
  const srvs = [server(), server(), server()];
  const nodes = ["a", "b", "c"].map((name, i) => ({ name, zone: `z${i}`, target: { host: "127.0.0.1", port: srvs[i]!.listener.port } }));
  const zp = ZoneProxies.start(nodes, uniformMatrix(["z0", "z1", "z2"], 20));
  cleanups.push(() => zp.stop());
  const addr = zp.advertisedAddr("a");
  expect(addr).toBe(zp.addr("z1", "a"));
  const client = await connect(Number(addr.split(":")[1]));
  const t0 = performance.now();
  await client.send(new Uint8Array([7]));
  await until("echo", () => client.receivedBytes === 1);
  const rtt = performance.now() - t0;
  expect(rtt).toBeGreaterThanOrEqual(40);
  expect(rtt).toBeLessThan(240);

  const m = uniformMatrix(["z0", "z1", "z2"], 20);
  m.z2!.z0 = 50; // callers of a from z2 would need another delay than callers from z1
  zp.setDelays(m);
  expect(() => zp.advertisedAddr("a")).toThrow(/one RPC address/);
  expect(zp.advertisedAddr("b")).toBe(zp.addr("z0", "b"));
});
