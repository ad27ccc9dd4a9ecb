import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { parseBlockHash, type BlockHash } from "../../../src/util/ids.ts";
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { defaultZstd } from "../../../src/block/codec.ts";
import { blake3Sync, hashHex } from "../../../src/block/hash.ts";
import { BlockManager, BlockNotFoundError, type BlockManagerOptions } from "../../../src/block/manager.ts";
import { ORPHAN_GRACE_MS } from "../../../src/block/orphans.ts";
import { BLOCK_GC_DELAY_MS } from "../../../src/block/rc.ts";
import { LocalBlockStore } from "../../../src/block/store.ts";
import { QuorumError, REQUEST_QUORUM_TIMEOUT_MS } from "../../../src/table/quorum.ts";

let dir: string;
let db: Database;
let store: LocalBlockStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-blockmgr-"));
  db = openDatabase(join(dir, "meta", "db.sqlite"), { fsync: false });
  store = new LocalBlockStore({ dataDir: join(dir, "data"), fsync: false });
  await store.init();
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const BLOCK_SIZE = 1024 * 1024;
const placement = new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent");
function manager(compressionLevel: number | null = 1, more: Partial<BlockManagerOptions> = {}): BlockManager {
  return new BlockManager(store, placement, defaultZstd(), db, { blockSize: BLOCK_SIZE, compressionLevel, ...more });
}

function block(data: Uint8Array): { hash: BlockHash; data: Uint8Array } {
  return { hash: hashHex(blake3Sync(data)), data };
}
const text = (n: number, seed = "") => new TextEncoder().encode((seed + "the quick brown fox jumps over the lazy dog\n").repeat(n));
const random = (n: number) => new Uint8Array(randomBytes(n));
const exists = (hash: BlockHash, compressed: boolean) => Bun.file(store.path(hash, compressed)).exists();

describe("BlockManager put / get", () => {
  test("compressible data is stored as .zst and reads back identical", async () => {
    const m = manager(3);
    const b = block(text(5000));
    await m.put(b.hash, b.data);
    expect(await exists(b.hash, true)).toBe(true);
    expect(await exists(b.hash, false)).toBe(false);
    expect(Bun.file(store.path(b.hash, true)).size).toBeLessThan(b.data.length / 10);
    expect(Buffer.from(await m.get(b.hash)).equals(Buffer.from(b.data))).toBe(true);
  });

  test("incompressible data stays plain", async () => {
    const m = manager(3);
    const b = block(random(256 * 1024));
    await m.put(b.hash, b.data);
    expect(await exists(b.hash, false)).toBe(true);
    expect(await exists(b.hash, true)).toBe(false);
    expect(Buffer.from(await m.get(b.hash)).equals(Buffer.from(b.data))).toBe(true);
  });

  test("compression off stores even text plain", async () => {
    const m = manager(null);
    const b = block(text(5000, "x"));
    await m.put(b.hash, b.data);
    expect(await exists(b.hash, false)).toBe(true);
    expect(await exists(b.hash, true)).toBe(false);
    expect(Buffer.from(await m.get(b.hash)).equals(Buffer.from(b.data))).toBe(true);
  });

  test("a full-size block and an empty block roundtrip", async () => {
    const m = manager(1);
    for (const data of [text(Math.floor(BLOCK_SIZE / 44)), new Uint8Array(0)]) {
      const b = block(data);
      await m.put(b.hash, b.data);
      expect(Buffer.from(await m.get(b.hash)).equals(Buffer.from(b.data))).toBe(true);
    }
  });

  test("storing the same block twice (concurrently) keeps one file", async () => {
    const m = manager(1);
    const b = block(text(1000, "dup"));
    await Promise.all([m.put(b.hash, b.data), m.put(b.hash, b.data), m.put(b.hash, b.data)]);
    const listed: BlockHash[] = [];
    for await (const h of store.list()) listed.push(h);
    expect(listed).toEqual([b.hash]);
    expect(Buffer.from(await m.get(b.hash)).equals(Buffer.from(b.data))).toBe(true);
  });

  test("a block stored compressed can be read with compression now off", async () => {
    const b = block(text(2000, "switch"));
    await manager(3).put(b.hash, b.data);
    expect(Buffer.from(await manager(null).get(b.hash)).equals(Buffer.from(b.data))).toBe(true);
  });

  test("get of a missing block throws BlockNotFoundError", async () => {
    const hash = parseBlockHash("0".repeat(64));
    const err = await manager().get(hash).catch((e) => e);
    expect(err).toBeInstanceOf(BlockNotFoundError);
    expect((err as BlockNotFoundError).hashHex).toBe(hash);
  });
});

describe("BlockManager GC", () => {
  const setRc = (hash: BlockHash, refs: number, deletableAt: number | null) =>
    db.query(`INSERT OR REPLACE INTO block_rc (hash, refs, deletable_at) VALUES (?, ?, ?)`).run(hash, refs, deletableAt);
  const rcRow = (hash: BlockHash) => db.query(`SELECT refs, deletable_at FROM block_rc WHERE hash = ?`).get(hash);

  test("a GC pass deletes only blocks with refs <= 0 and deletable_at <= now", async () => {
    const now = 10_000_000;
    const m = manager(1, { now: () => now });
    const cases = [
      { name: "due", refs: 0, at: now - 1, gone: true },
      { name: "due-exactly", refs: 0, at: now, gone: true },
      { name: "negative", refs: -1, at: now - 5, gone: true },
      { name: "not-yet", refs: 0, at: now + 1, gone: false },
      { name: "referenced", refs: 1, at: now - 1, gone: false }, // inconsistent row: refs win
      { name: "live", refs: 2, at: null, gone: false },
      { name: "zero-no-date", refs: 0, at: null, gone: false },
    ].map((c, i) => ({ ...c, ...block(text(100 + i, c.name)) }));
    for (const c of cases) {
      await m.put(c.hash, c.data);
      setRc(c.hash, c.refs, c.at);
    }
    await m.gc.run();
    for (const c of cases) {
      expect({ name: c.name, stored: await store.has(c.hash) }).toEqual({ name: c.name, stored: !c.gone });
      if (c.gone) expect(rcRow(c.hash)).toBeNull();
      else expect(rcRow(c.hash)).toEqual({ refs: c.refs, deletable_at: c.at });
    }
  });

  test("a block waiting for GC and stored again is kept: the postponement uses GC's clock", async () => {
    // A clock far from the wall clock: a postponement computed from Date.now() would be long past.
    let clock = Date.now() + 365 * 24 * 3600_000;
    const m = manager(null, { now: () => clock });
    const b = block(text(10, "stored again while due"));
    await m.put(b.hash, b.data);
    setRc(b.hash, 0, clock);
    await m.storeLocal(b.hash, b.data, false);
    expect((rcRow(b.hash) as { deletable_at: number }).deletable_at).toBeGreaterThan(clock);
    clock += 60_000;
    await m.gc.run();
    expect(await store.has(b.hash)).toBe(true);
    clock += BLOCK_GC_DELAY_MS;
    await m.gc.run();
    expect(await store.has(b.hash)).toBe(false);
  });

  test("a GC pass handles more due blocks than one batch, and a row whose file is already gone", async () => {
    const now = 5_000;
    const m = manager(null, { now: () => now });
    const hashes: BlockHash[] = [];
    for (let i = 0; i < 150; i++) {
      const b = block(text(1, `blk${i}-`));
      await m.put(b.hash, b.data);
      setRc(b.hash, 0, now - 1);
      hashes.push(b.hash);
    }
    setRc(parseBlockHash("f".repeat(64)), 0, now - 1); // no file
    await m.gc.run();
    for (const h of hashes) expect(await store.has(h)).toBe(false);
    expect(db.query(`SELECT count(*) AS n FROM block_rc`).get()).toEqual({ n: 0 });
  });

  test("orphan collection deletes unreferenced files older than the grace delay, keeps the rest", async () => {
    const now = Date.now();
    const grace = 60_000;
    let clock = now;
    const m = manager(3, { now: () => clock, orphanGraceMs: grace });
    const oldOrphan = block(text(300, "old orphan")); // compressed
    const oldOrphanPlain = block(random(4096)); // plain
    const freshOrphan = block(text(300, "fresh orphan"));
    const oldReferenced = block(text(300, "old referenced"));
    const oldZeroRefs = block(text(300, "old, waiting for gc"));
    for (const b of [oldOrphan, oldOrphanPlain, freshOrphan, oldReferenced, oldZeroRefs]) await m.put(b.hash, b.data);
    setRc(oldReferenced.hash, 1, null);
    setRc(oldZeroRefs.hash, 0, now + 10 * 60_000); // GC's business, not orphan collection
    const old = new Date(now - grace - 5_000);
    for (const b of [oldOrphan, oldReferenced, oldZeroRefs]) await utimes(store.path(b.hash, true), old, old);
    await utimes(store.path(oldOrphanPlain.hash, false), old, old);

    expect(await m.orphans.run()).toBe(2);
    expect(await store.has(oldOrphan.hash)).toBe(false);
    expect(await store.has(oldOrphanPlain.hash)).toBe(false);
    expect(await store.has(freshOrphan.hash)).toBe(true);
    expect(await store.has(oldReferenced.hash)).toBe(true);
    expect(await store.has(oldZeroRefs.hash)).toBe(true);

    // Once past the grace delay the fresh orphan goes too; a second pass finds nothing more.
    clock = now + grace + 60_000;
    expect(await m.orphans.run()).toBe(1);
    expect(await m.orphans.run()).toBe(0);
    expect(ORPHAN_GRACE_MS).toBeGreaterThanOrEqual(grace);
  });

  test("an old unreferenced block stored again (a writer about to reference it) is not collected", async () => {
    const now = Date.now();
    const grace = 60_000;
    const m = manager(3, { now: () => now, orphanGraceMs: grace });
    const b = block(random(4096));
    await m.put(b.hash, b.data);
    const old = new Date(now - grace - 5_000);
    await utimes(store.path(b.hash, false), old, old);
    // A writer stores before it commits the reference: the store refreshes the file's mtime.
    await m.put(b.hash, b.data);
    expect(await m.orphans.run()).toBe(0);
    expect(await store.has(b.hash)).toBe(true);
  });
});

describe("copies written after the write quorum", () => {
  const layout = {
    version: 1,
    replicationFactor: 3,
    roles: { node1: { zone: "a", capacity: 1, tags: [] }, fast: { zone: "b", capacity: 1, tags: [] }, slow: { zone: "c", capacity: 1, tags: [] } },
    ring: Array.from({ length: 256 }, () => ["node1", "fast", "slow"]),
  };

  test("put resolves at the quorum; `settled` covers the slow copy, which still reads the caller's buffer", async () => {
    const received = new Map<string, Uint8Array>();
    let releaseSlow!: () => void;
    const slowGate = new Promise<void>((r) => (releaseSlow = r));
    const remote = {
      has: async () => false,
      get: async () => null,
      put: async (node: string, _hash: string, data: Uint8Array) => {
        // The slow replica reads the bytes only later, as a streamed RPC body does.
        if (node === "slow") await slowGate;
        received.set(node, data.slice());
      },
    };
    const m = new BlockManager(store, new LayoutPlacement("node1", layout, "consistent"), defaultZstd(), db, { blockSize: BLOCK_SIZE, compressionLevel: null }, remote);
    const buf = new Uint8Array(randomBytes(4096));
    const original = buf.slice();
    const { settled } = await m.put(hashHex(blake3Sync(buf)), buf);
    let done = false;
    void settled.then(() => (done = true));
    await Bun.sleep(20);
    expect(done).toBe(false); // the slow copy has not read the buffer yet
    releaseSlow();
    await settled;
    buf.fill(0); // only now may the caller reuse it
    expect(received.get("slow")).toEqual(original);
    expect(received.get("fast")).toEqual(original);
  });

  /** The three-node placement, with peers `down` known down and `silent` ones never heard from. */
  const withLiveness = (down: string[], silent: string[]) =>
    Object.assign(new LayoutPlacement("node1", layout, "consistent"), {
      liveness: { isDown: (n: string) => down.includes(n), heardProbe: (n: string) => () => !silent.includes(n) },
    });

  test("a put whose peers are known down fails at once, without calling them", async () => {
    const called: string[] = [];
    const remote = { has: async () => false, get: async () => null, put: async (node: string) => void called.push(node) };
    const m = new BlockManager(store, withLiveness(["fast", "slow"], []), defaultZstd(), db, { blockSize: BLOCK_SIZE, compressionLevel: null }, remote);
    const buf = new Uint8Array(randomBytes(4096));
    const t0 = Date.now();
    await expect(m.put(hashHex(blake3Sync(buf)), buf)).rejects.toBeInstanceOf(QuorumError);
    expect(Date.now() - t0).toBeLessThan(REQUEST_QUORUM_TIMEOUT_MS);
    expect(called).toEqual([]);
  });

  test("a put whose peers are silent fails within the bound and stops their transfers before it returns", async () => {
    let inFlight = 0;
    const remote = {
      has: async () => false,
      get: async () => null,
      // A silent peer: the call ends only when aborted.
      put: (_node: string, _hash: string, _data: Uint8Array, _compressed: boolean, signal?: AbortSignal) => {
        inFlight++;
        return new Promise<void>((_, reject) =>
          signal?.addEventListener("abort", () => {
            inFlight--;
            reject(new Error("aborted"));
          }),
        );
      },
    };
    const m = new BlockManager(store, withLiveness([], ["fast", "slow"]), defaultZstd(), db, { blockSize: BLOCK_SIZE, compressionLevel: null }, remote);
    const buf = new Uint8Array(randomBytes(4096));
    const t0 = Date.now();
    await expect(m.put(hashHex(blake3Sync(buf)), buf)).rejects.toBeInstanceOf(QuorumError);
    expect(Date.now() - t0).toBeLessThan(3 * REQUEST_QUORUM_TIMEOUT_MS);
    expect(inFlight).toBe(0);
  }, 4 * REQUEST_QUORUM_TIMEOUT_MS);

  test("a read leaves a silent peer for the next copy", async () => {
    const data = new Uint8Array(randomBytes(4096));
    const remote = {
      has: async () => false,
      put: async () => {},
      get: (node: string) => (node === "fast" ? new Promise<never>(() => {}) : Promise.resolve({ data, compressed: false, release: () => {} })),
    };
    const m = new BlockManager(store, withLiveness([], ["fast"]), defaultZstd(), db, { blockSize: BLOCK_SIZE, compressionLevel: null }, remote);
    const t0 = Date.now();
    expect(await m.get(hashHex(blake3Sync(data)))).toEqual(data);
    expect(Date.now() - t0).toBeLessThan(3 * REQUEST_QUORUM_TIMEOUT_MS);
  }, 4 * REQUEST_QUORUM_TIMEOUT_MS);

  test("a failed put leaves no copy in flight", async () => {
    let inFlight = 0;
    const remote = {
      has: async () => false,
      get: async () => null,
      put: async (node: string) => {
        inFlight++;
        await Bun.sleep(node === "slow" ? 50 : 1);
        inFlight--;
        throw new Error(`${node} refuses`);
      },
    };
    const m = new BlockManager(store, new LayoutPlacement("node1", layout, "consistent"), defaultZstd(), db, { blockSize: BLOCK_SIZE, compressionLevel: null }, remote);
    const buf = new Uint8Array(randomBytes(4096));
    await expect(m.put(hashHex(blake3Sync(buf)), buf)).rejects.toThrow(/refuses/);
    expect(inFlight).toBe(0);
  });
});

describe("BlockManager presence", () => {
  const layout = {
    version: 1,
    replicationFactor: 3,
    roles: { node1: { zone: "a", capacity: 1, tags: [] }, n2: { zone: "b", capacity: 1, tags: [] }, n3: { zone: "c", capacity: 1, tags: [] } },
    ring: Array.from({ length: 256 }, () => ["node1", "n2", "n3"]),
  };
  /** A manager whose peers answer `has` as told: true/false, an error, or never. */
  function withPeers(answers: Record<string, boolean | "error" | "silent">) {
    const remote = {
      get: async () => null,
      put: async () => {},
      has: (node: string) => {
        const a = answers[node]!;
        if (a === "silent") return new Promise<boolean>(() => {});
        return a === "error" ? Promise.reject(new Error(`${node} is down`)) : Promise.resolve(a);
      },
    };
    return new BlockManager(store, new LayoutPlacement("node1", layout, "consistent"), defaultZstd(), db, { blockSize: BLOCK_SIZE, compressionLevel: null }, remote);
  }
  const stored = async () => {
    const b = block(random(1000));
    await store.write(b.hash, b.data, false);
    return b.hash;
  };
  const missing = () => block(random(1000)).hash;

  test("a write quorum (this node and one peer) holding the block: quorum, without waiting for a silent node", async () => {
    expect(await withPeers({ n2: true, n3: "silent" }).presence(await stored())).toBe("quorum");
  });

  test("two peers holding it while this node lacks it: quorum", async () => {
    expect(await withPeers({ n2: true, n3: true }).presence(missing())).toBe("quorum");
  });

  test("more nodes lacking it than a quorum leaves (2 of 3): short, even with a node down", async () => {
    expect(await withPeers({ n2: false, n3: "error" }).presence(missing())).toBe("short");
    expect(await withPeers({ n2: false, n3: false }).presence(await stored())).toBe("short");
  });

  test("one holder and nodes that do not answer: unknown, never short", async () => {
    expect(await withPeers({ n2: "error", n3: "error" }).presence(await stored())).toBe("unknown");
    expect(await withPeers({ n2: true, n3: "error" }).presence(missing())).toBe("unknown");
  });
});

describe("BlockManager workers", () => {
  test("start scans for orphans once; the workers keep their names for `worker list`", async () => {
    const now = Date.now();
    const m = manager(null, { now: () => now, orphanGraceMs: 60_000 });
    const orphan = block(random(4096));
    await m.put(orphan.hash, orphan.data);
    const old = new Date(now - 120_000);
    await utimes(store.path(orphan.hash, false), old, old);
    expect(m.workers().map((w) => w.info().name)).toEqual(["block resync", "block offload", "block gc", "orphan block collector"]);
    m.start();
    expect(m.orphans.stats.info().state).toBe("busy");
    expect(await m.orphans.run()).toBe(1); // joins the scan start() began
    await m.stop();
    expect(await store.has(orphan.hash)).toBe(false);
    expect(m.workers().map((w) => [w.info().name, w.info().passes])).toEqual([
      ["block resync", 0],
      ["block offload", 0], // single node: never offloads
      ["block gc", 0],
      ["orphan block collector", 1],
    ]);
  });
});
