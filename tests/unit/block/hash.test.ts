import { afterAll, describe, expect, test } from "bun:test";
import { BLAKE3_LEN, HashPool, HASH_JOBS_PER_WORKER, SHARED_BUFFERS_PER_WORKER, blake3Sync, hashHex, sharedBytes } from "../../../src/block/hash.ts";

/** Official BLAKE3 vectors (BLAKE3-team/BLAKE3 test_vectors.json): input byte i is i % 251. */
const VECTORS: [number, string][] = [
  [0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"],
  [1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"],
  [1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"],
  [1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"],
  [1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"],
  [2048, "e776b6028c7cd22a4d0ba182a8bf62205d2ef576467e838ed6f2529b85fba24a"],
  [3073, "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3"],
  [8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b"],
  [31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47"],
  [102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"],
];

function vectorInput(len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = i % 251;
  return b;
}

function random(len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let off = 0; off < len; off += 65536) crypto.getRandomValues(b.subarray(off, Math.min(len, off + 65536)));
  return b;
}

const pool = new HashPool(2);
afterAll(() => pool.close());

describe("blake3Sync", () => {
  test("official test vectors", () => {
    for (const [len, hex] of VECTORS) expect(hashHex(blake3Sync(vectorInput(len))) as string).toBe(hex);
  });

  test("returns 32 bytes", () => {
    expect(blake3Sync(new TextEncoder().encode("abc")).length).toBe(BLAKE3_LEN);
  });
});

describe("HashPool", () => {
  test("official test vectors through the worker", async () => {
    for (const [len, hex] of VECTORS) {
      const { hash, buf } = await pool.hash(vectorInput(len));
      expect(hashHex(hash) as string).toBe(hex);
      expect(buf).toEqual(vectorInput(len));
    }
  });

  test("matches blake3Sync on random buffers of many sizes", async () => {
    for (const len of [0, 1, 63, 64, 65, 1000, 4096, 65535, 65536, 65537, 200_000, 1 << 20, (1 << 20) + 7]) {
      const data = random(len);
      const expected = hashHex(blake3Sync(data));
      const copy = data.slice();
      const { hash, buf } = await pool.hash(data);
      expect(hashHex(hash)).toBe(expected);
      expect(buf.length).toBe(len);
      expect(buf).toEqual(copy);
    }
  });

  test("whole-buffer transfer detaches the input and returns a view on the same memory", async () => {
    const data = random(1 << 20);
    const expected = hashHex(blake3Sync(data));
    const p = pool.hash(data);
    expect(data.byteLength).toBe(0); // transferred: the caller must use the returned buf
    const { hash, buf } = await p;
    expect(hashHex(hash)).toBe(expected);
    expect(hashHex(blake3Sync(buf))).toBe(expected);
  });

  test("large offset subarray is transferred with its offset and length", async () => {
    const slab = random(3 << 20);
    const view = slab.subarray(12345, 12345 + (1 << 20));
    const expected = hashHex(blake3Sync(view));
    const { hash, buf } = await pool.hash(view);
    expect(hashHex(hash)).toBe(expected);
    expect(buf.byteOffset).toBe(12345);
    expect(buf.length).toBe(1 << 20);
    expect(buf.buffer.byteLength).toBe(3 << 20);
    expect(hashHex(blake3Sync(buf))).toBe(expected);
  });

  test("small offset subarray is copied: its parent buffer stays usable", async () => {
    const slab = random(1 << 20);
    const view = slab.subarray(100, 1100);
    const expected = hashHex(blake3Sync(view));
    const { hash, buf } = await pool.hash(view);
    expect(hashHex(hash)).toBe(expected);
    expect(slab.byteLength).toBe(1 << 20);
    expect(buf).toBe(view);
  });

  test("Buffer subarrays and SharedArrayBuffer views", async () => {
    const b = Buffer.from(random(300_000));
    const sub = b.subarray(7, 250_007);
    const expectedSub = hashHex(blake3Sync(sub));
    expect(hashHex((await pool.hash(sub)).hash)).toBe(expectedSub);

    const shared = new Uint8Array(new SharedArrayBuffer(100_000));
    shared.set(random(100_000));
    const expectedShared = hashHex(blake3Sync(shared));
    const r = await pool.hash(shared.subarray(0, 100_000));
    expect(hashHex(r.hash)).toBe(expectedShared);
    expect(shared.byteLength).toBe(100_000);
  });

  test("many concurrent jobs beyond the queue bound all complete correctly", async () => {
    const n = 2 * HASH_JOBS_PER_WORKER * 4;
    const inputs = Array.from({ length: n }, (_, i) => random(1000 + i * 4099));
    const expected = inputs.map((d) => hashHex(blake3Sync(d)));
    const results = await Promise.all(inputs.map((d) => pool.hash(d)));
    expect(results.map((r) => hashHex(r.hash))).toEqual(expected);
    for (let i = 0; i < n; i++) expect(hashHex(blake3Sync(results[i]!.buf))).toBe(expected[i]!);
  });

  test("at most size × HASH_JOBS_PER_WORKER jobs are handed to workers at once", async () => {
    const p = new HashPool(2);
    try {
      const inputs = Array.from({ length: 3 * 2 * HASH_JOBS_PER_WORKER }, () => random(256 * 1024));
      const expected = inputs.map((d) => hashHex(blake3Sync(d)));
      const pending = inputs.map((d) => p.hash(d));
      // Dispatch is synchronous up to the bound: exactly the admitted buffers are detached.
      expect(inputs.filter((d) => d.byteLength === 0).length).toBe(2 * HASH_JOBS_PER_WORKER);
      expect((await Promise.all(pending)).map((r) => hashHex(r.hash))).toEqual(expected);
    } finally {
      p.close();
    }
  });

  test("an idle worker stops; the next job starts a new one", async () => {
    const idleMs = 100;
    const p = new HashPool(1, idleMs);
    try {
      expect(p.workersRunning).toBe(0);
      expect(hashHex((await p.hash(vectorInput(1024))).hash) as string).toBe(VECTORS[3]![1]);
      expect(p.workersRunning).toBe(1);
      const deadline = Date.now() + 50 * idleMs;
      while (p.workersRunning > 0 && Date.now() < deadline) await Bun.sleep(20);
      expect(p.workersRunning).toBe(0);
      expect(hashHex((await p.hash(vectorInput(1025))).hash) as string).toBe(VECTORS[4]![1]);
      expect(p.workersRunning).toBe(1);
    } finally {
      p.close();
    }
  });

  test("a closed pool rejects", async () => {
    const p = new HashPool(1);
    expect(hashHex((await p.hash(vectorInput(0))).hash) as string).toBe(VECTORS[0]![1]);
    p.close();
    await expect(p.hash(new Uint8Array(10))).rejects.toThrow(/closed/);
  });
});

describe("MD5 streams", () => {
  const md5 = (parts: Uint8Array[]) => {
    const h = new Bun.CryptoHasher("md5");
    for (const p of parts) h.update(p);
    return Buffer.from(h.digest()).toString("hex");
  };
  const shared = (data: Uint8Array) => {
    const b = sharedBytes(data.length);
    b.set(data);
    return b;
  };

  test("blocks fed in order give the MD5 of the whole body, alongside BLAKE3 jobs", async () => {
    const parts = [random(300_000), random(1), random(0), random(1 << 20), random(77_777)];
    const s1 = pool.openMd5();
    const s2 = pool.openMd5();
    const reads: Promise<unknown>[] = [];
    for (const p of parts) {
      const b = shared(p);
      reads.push(s1.update(b), pool.hash(b), s2.update(b.subarray(0, Math.min(10, b.length))));
    }
    await Promise.all(reads);
    expect(Buffer.from(await s1.digest()).toString("hex")).toBe(md5(parts));
    expect(Buffer.from(await s2.digest()).toString("hex")).toBe(md5(parts.map((p) => p.subarray(0, 10))));
  });

  test("a stream with no block is the MD5 of nothing; many streams interleave", async () => {
    expect(Buffer.from(await pool.openMd5().digest()).toString("hex")).toBe("d41d8cd98f00b204e9800998ecf8427e");
    const bodies = Array.from({ length: 20 }, (_, i) => [random(1000 + i), random(5000 - i)]);
    const streams = bodies.map(() => pool.openMd5());
    await Promise.all(bodies.flatMap((parts, i) => parts.map((p) => streams[i]!.update(shared(p)))));
    const digests = await Promise.all(streams.map((s) => s.digest()));
    digests.forEach((d, i) => expect(Buffer.from(d).toString("hex")).toBe(md5(bodies[i]!)));
  });

  test("blocks must be shared memory; a stream is finished once", async () => {
    const s = pool.openMd5();
    expect(() => s.update(random(10))).toThrow(/SharedArrayBuffer/);
    await s.digest();
    expect(() => s.digest()).toThrow();
    expect(() => s.update(sharedBytes(1))).toThrow();
    s.drop(); // no-op once finished
  });

  test("a dropped stream is forgotten by the worker", async () => {
    const s = pool.openMd5();
    await s.update(shared(random(100)));
    s.drop();
    // Same id again would start from an empty state; a fresh stream is unaffected.
    const t = pool.openMd5();
    const p = random(64);
    await t.update(shared(p));
    expect(Buffer.from(await t.digest()).toString("hex")).toBe(md5([p]));
  });

  test("an open stream keeps its worker past the idle time; finished, the worker stops", async () => {
    const idleMs = 100;
    const p = new HashPool(1, idleMs);
    try {
      const parts = [random(1000), random(2000)];
      const s = p.openMd5();
      await s.update(shared(parts[0]!));
      await Bun.sleep(5 * idleMs);
      expect(p.workersRunning).toBe(1);
      await s.update(shared(parts[1]!));
      expect(Buffer.from(await s.digest()).toString("hex")).toBe(md5(parts));
      const deadline = Date.now() + 50 * idleMs;
      while (p.workersRunning > 0 && Date.now() < deadline) await Bun.sleep(20);
      expect(p.workersRunning).toBe(0);
    } finally {
      p.close();
    }
  });

  test("a stream on a closed pool fails", async () => {
    const own = new HashPool(1);
    const s = own.openMd5();
    own.close();
    expect(() => s.update(sharedBytes(1))).toThrow(/closed/);
  });
});

describe("shared buffers kept by the workers", () => {
  const md5hex = (parts: Uint8Array[]) => {
    const h = new Bun.CryptoHasher("md5");
    for (const p of parts) h.update(p);
    return Buffer.from(h.digest()).toString("hex");
  };

  test("a reused buffer is hashed from its current bytes, whole or in part, by BLAKE3 and MD5", async () => {
    const p = new HashPool(2);
    try {
      const block = sharedBytes(256 * 1024);
      const s = p.openMd5();
      const fed: Uint8Array[] = [];
      for (let i = 0; i < 6; i++) {
        block.set(random(block.length));
        const part = i % 2 ? block.subarray(1000, 200_000) : block;
        const [{ hash, buf }] = await Promise.all([p.hash(part), s.update(part)]);
        expect(hashHex(hash)).toBe(hashHex(blake3Sync(part)));
        expect(buf).toBe(part);
        fed.push(part.slice());
      }
      expect(Buffer.from(await s.digest()).toString("hex")).toBe(md5hex(fed));
      expect(p.sharedBuffersKept).toBeGreaterThan(0);
    } finally {
      p.close();
    }
  });

  test("more buffers than a worker keeps: the oldest are sent whole again, every hash is right", async () => {
    const p = new HashPool(1);
    try {
      const blocks = Array.from({ length: SHARED_BUFFERS_PER_WORKER + 10 }, () => sharedBytes(1024));
      for (let round = 0; round < 3; round++) {
        for (const b of blocks) {
          b.set(random(b.length));
          expect(hashHex((await p.hash(b)).hash)).toBe(hashHex(blake3Sync(b)));
        }
      }
      expect(p.sharedBuffersKept).toBe(SHARED_BUFFERS_PER_WORKER);
    } finally {
      p.close();
    }
  });

  test("a buffer used once is not kept; one collected here is forgotten by the worker", async () => {
    const p = new HashPool(1);
    try {
      await p.hash(sharedBytes(4096));
      expect(p.sharedBuffersKept).toBe(0);
      await (async () => {
        const b = sharedBytes(4096);
        await p.hash(b);
        await p.hash(b);
      })();
      expect(p.sharedBuffersKept).toBe(1);
      // Bounded: the collector runs finalizers soon after a full collection.
      for (let i = 0; i < 100 && p.sharedBuffersKept > 0; i++) {
        Bun.gc(true);
        await Bun.sleep(10);
      }
      expect(p.sharedBuffersKept).toBe(0);
      // The worker still serves, and keeps new buffers.
      const c = sharedBytes(100);
      await p.hash(c);
      expect(hashHex((await p.hash(c)).hash)).toBe(hashHex(blake3Sync(c)));
      expect(p.sharedBuffersKept).toBe(1);
    } finally {
      p.close();
    }
  });
});
