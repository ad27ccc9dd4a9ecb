// Streaming checksums for S3 "flexible checksums" (x-amz-checksum-*):
// CRC32, CRC32C, CRC64NVME, SHA1 and SHA256, fed chunk by chunk, digested to
// the raw bytes S3 base64-encodes (CRCs big-endian); and which multipart
// checksum types (FULL_OBJECT, COMPOSITE) each algorithm allows.
//
// Bun has CRC-32/IEEE natively (Bun.hash.crc32, chainable through its seed)
// and SHA via BoringSSL, but no CRC32C or CRC64: those two are table-driven
// slicing-by-8 in plain JS (~2 GiB/s for CRC32C here; see docs/stack-facts.md#hashing).

export type ChecksumAlgorithm = "CRC32" | "CRC32C" | "CRC64NVME" | "SHA1" | "SHA256";

export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = Object.freeze([
  "CRC32",
  "CRC32C",
  "CRC64NVME",
  "SHA1",
  "SHA256",
]);

export interface StreamingChecksum {
  update(chunk: Uint8Array): void;
  /** Raw digest bytes; CRCs are big-endian, as S3 encodes them. Ends the checksum. */
  digest(): Uint8Array;
}

/** Digest sizes in bytes, for callers validating a client-supplied value. */
export const CHECKSUM_DIGEST_LENGTH: Readonly<Record<ChecksumAlgorithm, number>> = Object.freeze({
  CRC32: 4,
  CRC32C: 4,
  CRC64NVME: 8,
  SHA1: 20,
  SHA256: 32,
});

const BY_LOWER_NAME: ReadonlyMap<string, ChecksumAlgorithm> = new Map(
  CHECKSUM_ALGORITHMS.map((a) => [a.toLowerCase(), a]),
);

export function parseChecksumAlgorithm(name: string): ChecksumAlgorithm | undefined {
  return BY_LOWER_NAME.get(name.trim().toLowerCase());
}

export function checksumHeaderName(algo: ChecksumAlgorithm): string {
  return `x-amz-checksum-${algo.toLowerCase()}`;
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

// ---------------------------------------------------------------------------
// Multipart checksum types ("Checking object integrity", S3 User Guide): a
// FULL_OBJECT checksum is the checksum of the whole object's bytes (for a CRC,
// combined from the part CRCs, see crc-combine.ts); a COMPOSITE one is the
// checksum of the concatenated part checksums, suffixed "-N". Only CRCs can be
// combined, so SHA1/SHA256 are COMPOSITE only; CRC64NVME is FULL_OBJECT only.

export type ChecksumType = "FULL_OBJECT" | "COMPOSITE";

export type FullObjectAlgorithm = "CRC32" | "CRC32C" | "CRC64NVME";

export const FULL_OBJECT_ALGORITHMS: readonly FullObjectAlgorithm[] = Object.freeze(["CRC32", "CRC32C", "CRC64NVME"]);

export function isFullObjectAlgorithm(algo: ChecksumAlgorithm): algo is FullObjectAlgorithm {
  return (FULL_OBJECT_ALGORITHMS as readonly ChecksumAlgorithm[]).includes(algo);
}

/** The type S3 uses for a multipart upload created with `algo` and no x-amz-checksum-type. */
export function defaultChecksumType(algo: ChecksumAlgorithm): ChecksumType {
  return algo === "CRC64NVME" ? "FULL_OBJECT" : "COMPOSITE";
}

/**
 * Why S3 refuses this algorithm/type pair (the S3 layer answers InvalidRequest
 * with this text, worded as S3 words it), or undefined when it is allowed.
 */
export function checkChecksumType(algo: ChecksumAlgorithm, type: ChecksumType): string | undefined {
  const allowed = type === "FULL_OBJECT" ? isFullObjectAlgorithm(algo) : algo !== "CRC64NVME";
  return allowed ? undefined : `The ${type} checksum type cannot be used with the ${algo.toLowerCase()} checksum algorithm.`;
}

export function createChecksum(algo: ChecksumAlgorithm): StreamingChecksum {
  switch (algo) {
    case "CRC32":
      return new Crc32();
    case "CRC32C":
      return new Crc32c();
    case "CRC64NVME":
      return new Crc64Nvme();
    case "SHA1":
      return new ShaChecksum("sha1");
    case "SHA256":
      return new ShaChecksum("sha256");
  }
}

// ---------------------------------------------------------------------------

/** Slicing-by-8 processes 8 input bytes per step with 8 tables of 256 entries. */
const SLICES = 8;
const TABLE_SIZE = 256;

function uint32BigEndian(v: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, v >>> 0, false);
  return out;
}

class Crc32 implements StreamingChecksum {
  private crc = 0;

  update(chunk: Uint8Array): void {
    // Bun.hash.crc32 takes the previous (finalised) CRC as its seed, so
    // crc32(b, crc32(a)) === crc32(a ++ b): no state beyond the last value.
    this.crc = Bun.hash.crc32(chunk, this.crc);
  }

  digest(): Uint8Array {
    return uint32BigEndian(this.crc);
  }
}

/**
 * CRC-32/IEEE reflected polynomial. The streaming CRC32 is Bun's; this is for
 * crc-combine.ts, whose tests check it against Bun.hash.crc32.
 */
export const CRC32_POLY_REFLECTED = 0xedb88320;

/** CRC-32C (Castagnoli), reflected polynomial 0x82F63B78. */
export const CRC32C_POLY_REFLECTED = 0x82f63b78;

// One flat table: slice k occupies [k*256, (k+1)*256).
const CRC32C_TABLE: Int32Array = (() => {
  const t = new Int32Array(SLICES * TABLE_SIZE);
  for (let i = 0; i < TABLE_SIZE; i++) {
    let c = i;
    for (let b = 0; b < 8; b++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLY_REFLECTED : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < TABLE_SIZE; i++) {
    let c = t[i]!;
    for (let k = 1; k < SLICES; k++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[k * TABLE_SIZE + i] = c;
    }
  }
  return t;
})();

class Crc32c implements StreamingChecksum {
  /** Working register (pre-inverted), kept between update() calls. */
  private reg = ~0;

  update(buf: Uint8Array): void {
    const t = CRC32C_TABLE;
    let c = this.reg;
    let i = 0;
    const n = buf.length;
    const end8 = n - (n % SLICES);
    while (i < end8) {
      const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
      c =
        t[7 * 256 + (a & 0xff)]! ^
        t[6 * 256 + ((a >>> 8) & 0xff)]! ^
        t[5 * 256 + ((a >>> 16) & 0xff)]! ^
        t[4 * 256 + (a >>> 24)]! ^
        t[3 * 256 + buf[i + 4]!]! ^
        t[2 * 256 + buf[i + 5]!]! ^
        t[256 + buf[i + 6]!]! ^
        t[buf[i + 7]!]!;
      i += 8;
    }
    while (i < n) c = t[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
    this.reg = c;
  }

  digest(): Uint8Array {
    return uint32BigEndian(~this.reg);
  }
}

/**
 * CRC-64/NVME, reflected polynomial 0x9A6C9329AC4BC9B5, init and xorout all
 * ones. JS has no fast 64-bit integers (BigInt is ~100x slower), so the
 * register and every table entry are split into 32-bit halves.
 */
export const CRC64_POLY_HI = 0x9a6c9329;
export const CRC64_POLY_LO = 0xac4bc9b5;

const CRC64_TABLES: { hi: Int32Array; lo: Int32Array } = (() => {
  const hi = new Int32Array(SLICES * TABLE_SIZE);
  const lo = new Int32Array(SLICES * TABLE_SIZE);
  for (let i = 0; i < TABLE_SIZE; i++) {
    let h = 0;
    let l = i;
    for (let b = 0; b < 8; b++) {
      const lsb = l & 1;
      l = (l >>> 1) | (h << 31);
      h = h >>> 1;
      if (lsb) {
        h ^= CRC64_POLY_HI;
        l ^= CRC64_POLY_LO;
      }
    }
    hi[i] = h;
    lo[i] = l;
  }
  for (let i = 0; i < TABLE_SIZE; i++) {
    let h = hi[i]!;
    let l = lo[i]!;
    for (let k = 1; k < SLICES; k++) {
      // entry_k = T0[entry_{k-1} & 0xff] ^ (entry_{k-1} >>> 8), on 64 bits
      const idx = l & 0xff;
      const nl = lo[idx]! ^ ((l >>> 8) | (h << 24));
      const nh = hi[idx]! ^ (h >>> 8);
      h = nh;
      l = nl;
      hi[k * TABLE_SIZE + i] = h;
      lo[k * TABLE_SIZE + i] = l;
    }
  }
  return { hi, lo };
})();

class Crc64Nvme implements StreamingChecksum {
  private hi = ~0;
  private lo = ~0;

  update(buf: Uint8Array): void {
    const TH = CRC64_TABLES.hi;
    const TL = CRC64_TABLES.lo;
    let h = this.hi;
    let l = this.lo;
    let i = 0;
    const n = buf.length;
    const end8 = n - (n % SLICES);
    while (i < end8) {
      // XOR 8 little-endian input bytes into the register; the whole register
      // is consumed, so the result is only table lookups (no shifted remainder).
      const a = l ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
      const b = h ^ (buf[i + 4]! | (buf[i + 5]! << 8) | (buf[i + 6]! << 16) | (buf[i + 7]! << 24));
      const i7 = 7 * 256 + (a & 0xff);
      const i6 = 6 * 256 + ((a >>> 8) & 0xff);
      const i5 = 5 * 256 + ((a >>> 16) & 0xff);
      const i4 = 4 * 256 + (a >>> 24);
      const i3 = 3 * 256 + (b & 0xff);
      const i2 = 2 * 256 + ((b >>> 8) & 0xff);
      const i1 = 256 + ((b >>> 16) & 0xff);
      const i0 = b >>> 24;
      l = TL[i7]! ^ TL[i6]! ^ TL[i5]! ^ TL[i4]! ^ TL[i3]! ^ TL[i2]! ^ TL[i1]! ^ TL[i0]!;
      h = TH[i7]! ^ TH[i6]! ^ TH[i5]! ^ TH[i4]! ^ TH[i3]! ^ TH[i2]! ^ TH[i1]! ^ TH[i0]!;
      i += 8;
    }
    while (i < n) {
      const idx = (l ^ buf[i++]!) & 0xff;
      const nl = TL[idx]! ^ ((l >>> 8) | (h << 24));
      h = TH[idx]! ^ (h >>> 8);
      l = nl;
    }
    this.hi = h;
    this.lo = l;
  }

  digest(): Uint8Array {
    const out = new Uint8Array(8);
    const v = new DataView(out.buffer);
    v.setUint32(0, ~this.hi >>> 0, false);
    v.setUint32(4, ~this.lo >>> 0, false);
    return out;
  }
}

class ShaChecksum implements StreamingChecksum {
  private readonly hasher: Bun.CryptoHasher;

  constructor(algo: "sha1" | "sha256") {
    this.hasher = new Bun.CryptoHasher(algo);
  }

  update(chunk: Uint8Array): void {
    this.hasher.update(chunk);
  }

  digest(): Uint8Array {
    const d = this.hasher.digest();
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  }
}
