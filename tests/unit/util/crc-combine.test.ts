// CRC combination: checked against CRCs streamed over real data (random
// splits, many parts, a 64 MiB zero run) and, for lengths too large to
// stream (5 GiB, 5 TiB), against a separate BigInt reference that does the
// polynomial arithmetic in the normal (unreflected) bit order.
import { describe, expect, test } from "bun:test";
import { createChecksum, FULL_OBJECT_ALGORITHMS, type FullObjectAlgorithm } from "../../../src/util/checksum.ts";
import { combineFullObject, crcCombine, type CrcPart } from "../../../src/util/crc-combine.ts";
import { mulberry32 } from "../../helpers/random.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function crcOf(algo: FullObjectAlgorithm, ...pieces: Uint8Array[]): Uint8Array {
  const c = createChecksum(algo);
  for (const p of pieces) c.update(p);
  return c.digest();
}

function randomBytes(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

const MIB = 1 << 20;
const GIB = 1024 * MIB;
const TIB = 1024 * GIB;

/** Streamed CRC of n zero bytes, fed 1 MiB at a time (no n-byte buffer). */
function crcOfZeros(algo: FullObjectAlgorithm, n: number): Uint8Array {
  const zeros = new Uint8Array(MIB);
  const c = createChecksum(algo);
  for (let left = n; left > 0; left -= MIB) c.update(left >= MIB ? zeros : zeros.subarray(0, left));
  return c.digest();
}

// --- BigInt reference ------------------------------------------------------
// Normal-form generator polynomials as published (x^W term implicit), written
// independently of the reflected constants in src/util/checksum.ts.
const REFERENCE: Record<FullObjectAlgorithm, { width: bigint; poly: bigint }> = {
  CRC32: { width: 32n, poly: 0x04c11db7n },
  CRC32C: { width: 32n, poly: 0x1edc6f41n },
  CRC64NVME: { width: 64n, poly: 0xad93d23594c93659n },
};

function reverseBits(v: bigint, width: bigint): bigint {
  let r = 0n;
  for (let i = 0n; i < width; i++) if ((v >> i) & 1n) r |= 1n << (width - 1n - i);
  return r;
}

/** a * b mod P over GF(2), normal order (bit i = coefficient of x^i). */
function refMulMod(algo: FullObjectAlgorithm, a: bigint, b: bigint): bigint {
  const { width, poly } = REFERENCE[algo];
  let product = 0n;
  for (let i = 0n; a >> i; i++) if ((a >> i) & 1n) product ^= b << i;
  const full = poly | (1n << width);
  for (let i = BigInt(product.toString(2).length) - 1n; i >= width; i--) if ((product >> i) & 1n) product ^= full << (i - width);
  return product;
}

function refX8n(algo: FullObjectAlgorithm, n: number): bigint {
  let result = 1n;
  let base = 2n; // x
  for (let e = 8n * BigInt(n); e > 0n; e >>= 1n) {
    if (e & 1n) result = refMulMod(algo, result, base);
    base = refMulMod(algo, base, base);
  }
  return result;
}

const toBig = (b: Uint8Array) => BigInt("0x" + (hex(b) || "0"));
const fromBig = (algo: FullObjectAlgorithm, v: bigint) =>
  Uint8Array.from(Buffer.from(v.toString(16).padStart(Number(REFERENCE[algo].width) / 4, "0"), "hex"));

/** crc(A) * x^(8n) + crc(B) mod P, computed in normal bit order. */
function refCombine(algo: FullObjectAlgorithm, crcA: Uint8Array, crcB: Uint8Array, n: number): Uint8Array {
  const w = REFERENCE[algo].width;
  const a = refMulMod(algo, reverseBits(toBig(crcA), w), refX8n(algo, n));
  return fromBig(algo, reverseBits(a ^ reverseBits(toBig(crcB), w), w));
}

/** CRC of n zero bytes: the all-ones initial register moved past n bytes, then inverted. */
function refZeros(algo: FullObjectAlgorithm, n: number): Uint8Array {
  const w = REFERENCE[algo].width;
  const ones = (1n << w) - 1n;
  return fromBig(algo, reverseBits(refMulMod(algo, ones, refX8n(algo, n)), w) ^ ones);
}

// ---------------------------------------------------------------------------

describe("crcCombine matches the CRC of the concatenation", () => {
  for (const algo of FULL_OBJECT_ALGORITHMS) {
    test(`${algo}: random buffers cut at random points (seeded)`, () => {
      const rand = mulberry32(0xc0ffee);
      for (let round = 0; round < 200; round++) {
        const data = randomBytes(rand, Math.floor(rand() * 3000));
        const cut = Math.floor(rand() * (data.length + 1));
        const a = data.subarray(0, cut);
        const b = data.subarray(cut);
        expect(hex(crcCombine(algo, crcOf(algo, a), crcOf(algo, b), b.length))).toBe(hex(crcOf(algo, data)));
      }
    });

    test(`${algo}: empty A or empty B`, () => {
      const data = randomBytes(mulberry32(7), 1000);
      const empty = new Uint8Array(0);
      const whole = hex(crcOf(algo, data));
      expect(hex(crcCombine(algo, crcOf(algo, empty), crcOf(algo, data), data.length))).toBe(whole);
      expect(hex(crcCombine(algo, crcOf(algo, data), crcOf(algo, empty), 0))).toBe(whole);
      expect(hex(crcCombine(algo, crcOf(algo, empty), crcOf(algo, empty), 0))).toBe(hex(crcOf(algo, empty)));
    });

    test(`${algo}: a 64 MiB zero run streamed`, () => {
      const head = randomBytes(mulberry32(11), 4321);
      const zerosCrc = crcOfZeros(algo, 64 * MIB);
      const c = createChecksum(algo);
      c.update(head);
      const zeros = new Uint8Array(MIB);
      for (let i = 0; i < 64; i++) c.update(zeros);
      expect(hex(crcCombine(algo, crcOf(algo, head), zerosCrc, 64 * MIB))).toBe(hex(c.digest()));
      // The reference agrees with streaming, so it can stand in where streaming cannot.
      expect(hex(refZeros(algo, 64 * MIB))).toBe(hex(zerosCrc));
    });

    test(`${algo}: a claimed 5 GiB zero run and random lengths up to 5 TiB agree with the BigInt reference`, () => {
      // 100 streamed zero bytes, then a claimed 5 GiB of zeros: the CRC of 5 GiB + 100 zero
      // bytes, which the reference finds without any combination formula.
      const zeroHead = crcOf(algo, new Uint8Array(100));
      expect(hex(crcCombine(algo, zeroHead, refZeros(algo, 5 * GIB), 5 * GIB))).toBe(hex(refZeros(algo, 5 * GIB + 100)));
      const head = crcOf(algo, randomBytes(mulberry32(13), 100));
      expect(hex(crcCombine(algo, head, refZeros(algo, 5 * GIB), 5 * GIB))).toBe(hex(refCombine(algo, head, refZeros(algo, 5 * GIB), 5 * GIB)));
      const rand = mulberry32(17);
      for (let i = 0; i < 20; i++) {
        const n = Math.floor(rand() * 5 * TIB);
        const a = randomBytes(rand, algo === "CRC64NVME" ? 8 : 4);
        const b = randomBytes(rand, a.length);
        expect(hex(crcCombine(algo, a, b, n))).toBe(hex(refCombine(algo, a, b, n)));
      }
    });
  }
});

describe("combineFullObject", () => {
  for (const algo of FULL_OBJECT_ALGORITHMS) {
    test(`${algo}: no parts give the CRC of nothing`, () => {
      expect(hex(combineFullObject(algo, []))).toBe(hex(crcOf(algo)));
    });

    test(`${algo}: 10000 parts of random sizes, some empty, equal the CRC of the whole`, () => {
      const rand = mulberry32(0xbeef);
      const parts: CrcPart[] = [];
      const whole = createChecksum(algo);
      for (let i = 0; i < 10_000; i++) {
        const bytes = randomBytes(rand, rand() < 0.1 ? 0 : Math.floor(rand() * 40));
        whole.update(bytes);
        parts.push({ checksum: crcOf(algo, bytes), size: bytes.length });
      }
      expect(hex(combineFullObject(algo, parts))).toBe(hex(whole.digest()));
    });

    test(`${algo}: 5 TiB of zeros as 81920 parts of 64 MiB`, () => {
      const part = { checksum: crcOfZeros(algo, 64 * MIB), size: 64 * MIB };
      const parts = Array.from({ length: (5 * TIB) / (64 * MIB) }, () => part);
      expect(hex(combineFullObject(algo, parts))).toBe(hex(refZeros(algo, 5 * TIB)));
    });

    test(`${algo}: parts of different large claimed sizes agree with the BigInt reference`, () => {
      const rand = mulberry32(23);
      const parts: CrcPart[] = [];
      let expected = crcOf(algo);
      for (let i = 0; i < 50; i++) {
        const part = { checksum: randomBytes(rand, algo === "CRC64NVME" ? 8 : 4), size: Math.floor(rand() * 5 * GIB) };
        parts.push(part);
        expected = refCombine(algo, expected, part.checksum, part.size);
      }
      expect(hex(combineFullObject(algo, parts))).toBe(hex(expected));
    });
  }
});

test("a wrong-sized CRC or an impossible length is a programming error, not a wrong answer", () => {
  const four = new Uint8Array(4);
  const eight = new Uint8Array(8);
  expect(() => crcCombine("CRC32", eight, four, 1)).toThrow(RangeError);
  expect(() => crcCombine("CRC64NVME", four, four, 1)).toThrow(RangeError);
  for (const n of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
    expect(() => crcCombine("CRC32C", four, four, n)).toThrow(RangeError);
    expect(() => combineFullObject("CRC32C", [{ checksum: four, size: n }])).toThrow(RangeError);
  }
});
