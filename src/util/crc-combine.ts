// CRC combination: the CRC of A||B from crc(A), crc(B) and the length of B,
// without the data. A FULL_OBJECT multipart checksum is built this way from
// the part CRCs (S3 computes it over the whole object; we do not re-read it).
//
// Math (zlib's crc32_combine since 1.2.12): for a CRC whose init equals its
// xorout (true of CRC32, CRC32C and CRC64NVME: all ones),
//   crc(A||B) = crc(A) * x^(8*len(B)) + crc(B)   (mod P, over GF(2)).
// x^(8n) mod P is found by square-and-multiply from a table of x^(2^k) mod P,
// so a combination costs O(log n) polynomial products whatever n is.
//
// Values are reflected, as the CRCs are: the top bit of a W-bit value is the
// coefficient of x^0. 64-bit values travel as two 32-bit halves (hi, lo):
// BigInt would be ~50x slower and JS bit operators are 32-bit. A 32-bit CRC
// uses only `lo` (hi stays 0, its polynomial has no high half).
import {
  CHECKSUM_DIGEST_LENGTH,
  CRC32_POLY_REFLECTED,
  CRC32C_POLY_REFLECTED,
  CRC64_POLY_HI,
  CRC64_POLY_LO,
  type FullObjectAlgorithm,
} from "./checksum";

/** A reflected CRC value or polynomial: `hi` is 0 for 32-bit CRCs. */
interface Poly {
  hi: number;
  lo: number;
}

/**
 * x^(2^k) mod P for k < this. Lengths are safe integers (< 2^53 bytes), i.e.
 * bit lengths < 2^56, so exponents need k up to 55.
 */
const X2N_TABLE_SIZE = 56;

interface CrcSpec {
  width: 32 | 64;
  poly: Poly;
  /** x2n[k] = x^(2^k) mod P */
  x2n: Poly[];
}

function makeSpec(width: 32 | 64, poly: Poly): CrcSpec {
  const spec: CrcSpec = { width, poly, x2n: [] };
  // x^1: the bit just below the top (x^0) bit.
  let p: Poly = width === 64 ? { hi: 0x40000000, lo: 0 } : { hi: 0, lo: 0x40000000 };
  for (let k = 0; k < X2N_TABLE_SIZE; k++) {
    spec.x2n.push(p);
    p = mulModP(spec, p, p);
  }
  return spec;
}

const SPECS: Readonly<Record<FullObjectAlgorithm, CrcSpec>> = {
  CRC32: makeSpec(32, { hi: 0, lo: CRC32_POLY_REFLECTED }),
  CRC32C: makeSpec(32, { hi: 0, lo: CRC32C_POLY_REFLECTED }),
  CRC64NVME: makeSpec(64, { hi: CRC64_POLY_HI, lo: CRC64_POLY_LO }),
};

/** a * b mod P, on reflected values. */
function mulModP(spec: CrcSpec, a: Poly, b: Poly): Poly {
  let pHi = 0;
  let pLo = 0;
  let bHi = b.hi;
  let bLo = b.lo;
  const { hi: polyHi, lo: polyLo } = spec.poly;
  // a's coefficients from x^0 upwards: for a 64-bit value hi first, then lo.
  const words = spec.width === 64 ? [a.hi, a.lo] : [a.lo];
  for (let w = 0; w < words.length; w++) {
    const aw = words[w]!;
    for (let m = 0x80000000; m !== 0; m >>>= 1) {
      if (aw & m) {
        pHi ^= bHi;
        pLo ^= bLo;
      }
      // b *= x: shift toward higher powers (lower bits), reducing the x^W term.
      const carry = bLo & 1;
      bLo = (bLo >>> 1) | (bHi << 31);
      bHi >>>= 1;
      if (carry) {
        bHi ^= polyHi;
        bLo ^= polyLo;
      }
    }
  }
  return { hi: pHi >>> 0, lo: pLo >>> 0 };
}

/** x^(8n) mod P: the factor that moves a CRC past n more bytes. */
function x8nModP(spec: CrcSpec, n: number): Poly {
  let p: Poly = spec.width === 64 ? { hi: 0x80000000, lo: 0 } : { hi: 0, lo: 0x80000000 };
  let k = 3; // 8n = n * 2^3
  // n can exceed 2^32: halve arithmetically, not with >>>.
  while (n > 0) {
    if (n % 2 === 1) p = mulModP(spec, spec.x2n[k]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

function checkLength(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`CRC combine: length ${n} is not a non-negative safe integer`);
}

function readCrc(algo: FullObjectAlgorithm, bytes: Uint8Array): Poly {
  if (bytes.length !== CHECKSUM_DIGEST_LENGTH[algo]) {
    throw new RangeError(`CRC combine: a ${algo} value has ${CHECKSUM_DIGEST_LENGTH[algo]} bytes, not ${bytes.length}`);
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return bytes.length === 8 ? { hi: v.getUint32(0, false), lo: v.getUint32(4, false) } : { hi: 0, lo: v.getUint32(0, false) };
}

function writeCrc(algo: FullObjectAlgorithm, p: Poly): Uint8Array {
  const out = new Uint8Array(CHECKSUM_DIGEST_LENGTH[algo]);
  const v = new DataView(out.buffer);
  if (out.length === 8) {
    v.setUint32(0, p.hi, false);
    v.setUint32(4, p.lo, false);
  } else {
    v.setUint32(0, p.lo, false);
  }
  return out;
}

/**
 * The CRC of A||B, given crc(A), crc(B) and B's length in bytes (any safe
 * integer). CRCs are big-endian digest bytes, as createChecksum() gives them.
 */
export function crcCombine(algo: FullObjectAlgorithm, crcA: Uint8Array, crcB: Uint8Array, lengthB: number): Uint8Array {
  checkLength(lengthB);
  const spec = SPECS[algo];
  const a = mulModP(spec, x8nModP(spec, lengthB), readCrc(algo, crcA));
  const b = readCrc(algo, crcB);
  return writeCrc(algo, { hi: (a.hi ^ b.hi) >>> 0, lo: (a.lo ^ b.lo) >>> 0 });
}

export interface CrcPart {
  /** The part's CRC, big-endian digest bytes. */
  checksum: Uint8Array;
  /** The part's length in bytes. */
  size: number;
}

/**
 * The FULL_OBJECT checksum of the parts' concatenation, in order. No parts
 * give the CRC of nothing (all zero bytes). Parts of equal size (the usual
 * multipart upload) share one x^(8n) computation.
 */
export function combineFullObject(algo: FullObjectAlgorithm, parts: readonly CrcPart[]): Uint8Array {
  const spec = SPECS[algo];
  // Per call, so bounded by the number of parts.
  const shifts = new Map<number, Poly>();
  // crc("") = 0 for these CRCs (init = xorout), and combine(0, c, n) = c.
  let acc: Poly = { hi: 0, lo: 0 };
  for (const part of parts) {
    checkLength(part.size);
    let shift = shifts.get(part.size);
    if (shift === undefined) {
      shift = x8nModP(spec, part.size);
      shifts.set(part.size, shift);
    }
    const moved = mulModP(spec, shift, acc);
    const c = readCrc(algo, part.checksum);
    acc = { hi: (moved.hi ^ c.hi) >>> 0, lo: (moved.lo ^ c.lo) >>> 0 };
  }
  return writeCrc(algo, acc);
}
