import { describe, expect, test } from "bun:test";
import * as zlib from "node:zlib";
import {
  PORTABLE_MAX_INPUT,
  ZstdError,
  compressIfSmaller,
  defaultZstd,
  nativeZstd,
  normalizeLevel,
  portableZstd,
  zstdFrameBound,
  type ZstdCodec,
} from "../../../src/block/codec.ts";

const MiB = 1 << 20;

/** Compressible, text-like data (a ratio of a few, like source code). */
function text(len: number): Uint8Array {
  const words = ["block", "hash", "zstd", "bucket", "object", "version", "layout", "node", "quorum", "\n"];
  const parts: string[] = [];
  let n = 0;
  let x = 12345;
  while (n < len) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = words[x % words.length]! + " " + (x % 1000);
    parts.push(w);
    n += w.length;
  }
  return new TextEncoder().encode(parts.join("")).subarray(0, len);
}

function random(len: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let off = 0; off < len; off += 65536) crypto.getRandomValues(b.subarray(off, Math.min(len, off + 65536)));
  return b;
}

const portable = await portableZstd();
const codecs: [string, ZstdCodec][] = [["native", nativeZstd], ["portable", portable]];

describe("frame compatibility", () => {
  for (const [fromName, from] of codecs) {
    for (const [toName, to] of codecs) {
      test(`${fromName} → ${toName}`, async () => {
        for (const data of [text(MiB), text(1000), random(5000), new Uint8Array(0), new Uint8Array(MiB)]) {
          for (const level of [0, 1, 3, 9]) {
            const packed = await from.compress(data, level);
            expect(await to.decompress(packed, data.length)).toEqual(data);
          }
        }
      });
    }
  }

  test("negative and high levels work on both and stay readable by the other", async () => {
    const data = text(MiB);
    for (const level of [-5, -1, 19, 22, 40]) {
      const n = await nativeZstd.compress(data, level);
      expect(await portable.decompress(n, MiB)).toEqual(data);
      // The portable codec caps its level to fit its fixed heap; the frame stays standard.
      const p = await portable.compress(data, level);
      expect(await nativeZstd.decompress(p, MiB)).toEqual(data);
    }
  });

  test("frames without a declared content size (streaming encoders)", async () => {
    const data = text(MiB);
    const packed = zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 0 } });
    expect(zstdFrameBound(packed).exact).toBe(false);
    for (const [, codec] of codecs) expect(await codec.decompress(packed, MiB)).toEqual(data);
  });

  test("concatenated frames", async () => {
    const a = text(300_000);
    const b = random(1000);
    const pa = await nativeZstd.compress(a, 3);
    const pb = await portable.compress(b, 3);
    const both = new Uint8Array(pa.length + pb.length);
    both.set(pa);
    both.set(pb, pa.length);
    expect(zstdFrameBound(both)).toEqual({ bytes: a.length + b.length, exact: true, frames: 2 });
    const joined = new Uint8Array(a.length + b.length);
    joined.set(a);
    joined.set(b, a.length);
    for (const [, codec] of codecs) expect(await codec.decompress(both, joined.length)).toEqual(joined);
  });

  test("defaultZstd is the native codec on Bun", () => {
    expect(defaultZstd()).toBe(nativeZstd);
  });
});

describe("compressIfSmaller", () => {
  test("incompressible data stays plain, compressible data is compressed", async () => {
    for (const [, codec] of codecs) {
      const noise = random(MiB);
      const r1 = await compressIfSmaller(codec, noise, 3);
      expect(r1.compressed).toBe(false);
      expect(r1.data).toBe(noise);

      const t = text(MiB);
      const r2 = await compressIfSmaller(codec, t, 3);
      expect(r2.compressed).toBe(true);
      expect(r2.data.length).toBeLessThan(t.length / 2);
      expect(await codec.decompress(r2.data, MiB)).toEqual(t);

      const empty = await compressIfSmaller(codec, new Uint8Array(0), 3);
      expect(empty.compressed).toBe(false);
    }
  });
});

describe("bounded decompression", () => {
  test("refuses output larger than maxOutput, accepts exactly maxOutput", async () => {
    const data = text(MiB);
    for (const [, codec] of codecs) {
      const packed = await codec.compress(data, 3);
      await expect(codec.decompress(packed, MiB - 1)).rejects.toBeInstanceOf(ZstdError);
      expect((await codec.decompress(packed, MiB)).length).toBe(MiB);
    }
  });

  test("refuses unknown-size frames whose blocks could exceed maxOutput", async () => {
    const data = new Uint8Array(4 * MiB); // zeros: a tiny frame that inflates 4 MiB
    const packed = zlib.zstdCompressSync(data, { params: { [zlib.constants.ZSTD_c_contentSizeFlag]: 0 } });
    expect(packed.length).toBeLessThan(1000);
    for (const [, codec] of codecs) await expect(codec.decompress(packed, MiB)).rejects.toBeInstanceOf(ZstdError);
  });

  test("malformed input is a ZstdError, not a crash", async () => {
    const packed = await nativeZstd.compress(text(100_000), 3);
    const cases = [
      new Uint8Array(0),
      new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]),
      packed.subarray(0, packed.length - 10),
      packed.subarray(0, 5),
    ];
    for (const [, codec] of codecs) {
      for (const c of cases) await expect(codec.decompress(c, MiB)).rejects.toBeInstanceOf(ZstdError);
    }
    // A flipped payload byte may decode "successfully" to other bytes (our frames carry no zstd
    // checksum: the block's BLAKE3 name is the check). It must never crash or exceed the bound.
    for (let i = 0; i < 50; i++) {
      const flipped = packed.slice();
      flipped[6 + ((i * 7919) % (packed.length - 6))]! ^= 1 << (i % 8);
      for (const [, codec] of codecs) {
        try {
          expect((await codec.decompress(flipped, MiB)).length).toBeLessThanOrEqual(MiB);
        } catch (err) {
          expect(err).toBeInstanceOf(ZstdError);
        }
      }
    }
  });

  test("a frame declaring more than its blocks can hold is rejected before decoding", () => {
    // magic, FHD: single segment + 4-byte size, size 1 GiB, one last raw block of 3 bytes.
    const frame = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0, 0, 0, 0x40, 0x19, 0, 0, 1, 2, 3]);
    expect(() => zstdFrameBound(frame)).toThrow(ZstdError);
  });
});

describe("portable codec limits", () => {
  test("oversized input is a normal error and the module keeps working", async () => {
    await expect(portable.compress(new Uint8Array(PORTABLE_MAX_INPUT + 1), 3)).rejects.toBeInstanceOf(ZstdError);
    const data = text(MiB);
    expect(await portable.decompress(await portable.compress(data, 19), MiB)).toEqual(data);
  });
});

test("normalizeLevel follows garage's compression_level", () => {
  expect(normalizeLevel(0)).toBe(3);
  expect(normalizeLevel(1)).toBe(1);
  expect(normalizeLevel(-3)).toBe(-3);
  expect(normalizeLevel(99)).toBe(22);
});
