// Shared fixtures for the RPC tests: node keys, nodes on loopback, deterministic bodies, hashing.
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { RpcNode, type RpcOptions } from "../../../src/rpc/rpc.ts";

export interface TestKey {
  id: string;
  privateKey: import("node:crypto").KeyObject;
  publicKey: import("node:crypto").KeyObject;
}

export function makeKey(): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  const der = publicKey.export({ format: "der", type: "spki" });
  return { id: der.subarray(der.length - 32).toString("hex"), privateKey, publicKey };
}

export const NETWORK_KEY = new Uint8Array(randomBytes(32));

export async function startNode(extra: Partial<RpcOptions> = {}): Promise<RpcNode> {
  const node = new RpcNode({
    nodeKey: makeKey(),
    networkKey: NETWORK_KEY,
    bindHost: "127.0.0.1",
    bindPort: 0,
    ...extra,
  });
  await node.listen();
  return node;
}

/** Two listening nodes, a connected to b and admitted by b; both are added to `track` for cleanup. */
export async function startPair(track: RpcNode[], extra: Partial<RpcOptions> = {}): Promise<[RpcNode, RpcNode]> {
  const a = await startNode(extra);
  const b = await startNode(extra);
  track.push(a, b);
  await a.connect(b.id, "127.0.0.1", b.port);
  await waitFor(() => b.isConnected(a.id), 2000, "b to admit a");
  return [a, b];
}

/** Period of the pattern streams: prime, so chunk boundaries never line up with it. */
const PATTERN_PERIOD = 65_521;
const patternTables = new Map<number, Uint8Array>();

/** Two periods of the seed's pattern, so any window of one period is a contiguous slice. */
function patternTable(seed: number): Uint8Array {
  let t = patternTables.get(seed);
  if (!t) {
    t = new Uint8Array(2 * PATTERN_PERIOD);
    let x = (seed * 2_654_435_761 + 1) >>> 0;
    for (let i = 0; i < PATTERN_PERIOD; i++) {
      x = (x * 1_103_515_245 + 12_345) >>> 0;
      t[i] = t[i + PATTERN_PERIOD] = x >>> 24;
    }
    patternTables.set(seed, t);
  }
  return t;
}

/** Writes bytes [pos, pos + out.length) of the seed's pattern stream into out. */
function fillPattern(out: Uint8Array, seed: number, pos: number): void {
  const t = patternTable(seed);
  let filled = 0;
  while (filled < out.length) {
    const start = (pos + filled) % PATTERN_PERIOD;
    const n = Math.min(out.length - filled, PATTERN_PERIOD);
    out.set(t.subarray(start, start + n), filled);
    filled += n;
  }
}

/** A body of `total` bytes in chunks of `chunk` bytes (fresh buffers), content fixed by `seed`. */
export async function* patternBody(total: number, chunk: number, seed: number): AsyncGenerator<Uint8Array> {
  let pos = 0;
  while (pos < total) {
    const out = new Uint8Array(Math.min(chunk, total - pos));
    fillPattern(out, seed, pos);
    pos += out.length;
    yield out;
  }
}

/**
 * Big bodies for throughput: the same immutable block yielded again and again, so the producer
 * costs nothing (a yielded buffer is never modified, which is all the RPC layer asks).
 */
export async function* fastBody(total: number, chunk: number): AsyncGenerator<Uint8Array> {
  const block = new Uint8Array(chunk);
  for (let i = 0; i < chunk; i++) block[i] = (i * 131) & 0xff;
  let pos = 0;
  while (pos < total) {
    const n = Math.min(chunk, total - pos);
    pos += n;
    yield n === chunk ? block : block.subarray(0, n);
  }
}

export function patternHash(total: number, seed: number, prefix?: Uint8Array): string {
  const h = createHash("sha256");
  if (prefix) h.update(prefix);
  const buf = new Uint8Array(Math.min(total, 1 << 16));
  for (let pos = 0; pos < total; pos += buf.length) {
    const part = buf.subarray(0, Math.min(buf.length, total - pos));
    fillPattern(part, seed, pos);
    h.update(part);
  }
  return h.digest("hex");
}

export async function hashBody(body: AsyncIterable<Uint8Array>): Promise<{ hash: string; bytes: number }> {
  const h = createHash("sha256");
  let bytes = 0;
  for await (const chunk of body) {
    h.update(chunk);
    bytes += chunk.length;
  }
  return { hash: h.digest("hex"), bytes };
}

export async function collect(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of body) {
    parts.push(c);
    n += c.length;
  }
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Runs fn while capturing everything written to stderr (the logger's output). */
export async function captureStderr<T>(fn: () => Promise<T>): Promise<{ result: T; output: string }> {
  const original = process.stderr.write.bind(process.stderr);
  let output = "";
  process.stderr.write = ((chunk: string | Uint8Array) => {
    output += typeof chunk === "string" ? chunk : new TextDecoder().decode(chunk);
    return true;
  }) as typeof process.stderr.write;
  try {
    const result = await fn();
    return { result, output };
  } finally {
    process.stderr.write = original;
  }
}

/** Polls `cond` every few ms until it holds or `ms` passes. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

export const enc = (s: string) => new TextEncoder().encode(s);
export const dec = (b: Uint8Array) => new TextDecoder().decode(b);

export interface PeerProcess {
  id: string;
  port: number;
  /** Plain TCP sink acking each 256 MiB (see peer-process.ts). */
  rawPort: number;
  proc: import("bun").Subprocess;
}

const PEER_START_TIMEOUT_MS = 10_000;

/** Starts tests/unit/rpc/peer-process.ts with a fresh key on the shared network key. */
export async function spawnPeer(networkKey: Uint8Array = NETWORK_KEY, bunArgs: string[] = []): Promise<PeerProcess> {
  const key = makeKey();
  const proc = Bun.spawn([process.execPath, ...bunArgs, `${import.meta.dir}/peer-process.ts`], {
    env: {
      ...process.env,
      RPC_TEST_KEY: key.privateKey.export({ format: "der", type: "pkcs8" }).toString("hex"),
      RPC_TEST_NETWORK_KEY: Buffer.from(networkKey).toString("hex"),
    },
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const startTimeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`peer process did not start within ${PEER_START_TIMEOUT_MS} ms`));
    }, PEER_START_TIMEOUT_MS);
  });
  try {
    while (!text.includes("\n")) {
      const { value, done } = await Promise.race([reader.read(), startTimeout]);
      if (done) throw new Error("peer process exited before listening");
      text += new TextDecoder().decode(value);
    }
  } finally {
    clearTimeout(timer);
  }
  reader.releaseLock();
  const { id, port, rawPort } = JSON.parse(text.slice(0, text.indexOf("\n"))) as PeerProcess;
  if (id !== key.id) throw new Error("peer process reports another node id");
  return { id, port, rawPort, proc };
}
