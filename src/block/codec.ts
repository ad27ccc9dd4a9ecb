// zstd behind one small interface: Bun's built-in zstd on the hot path, zstd-codec (wasm) as the
// portable fallback. Both produce and accept standard zstd frames, so blocks written by one are
// read by the other. Decompression is bounded: the output size is checked from the frame headers
// *before* any output is allocated, so a hostile or corrupt block cannot balloon memory.
import * as zlib from "node:zlib";
import { assert } from "../util/assert.ts";

export interface ZstdCodec {
  readonly name: string;
  /** `level` follows garage's `compression_level`: 0 = zstd default (3), negative = faster. */
  compress(data: Uint8Array, level: number): Promise<Uint8Array>;
  /** Throws ZstdError when the frame is malformed or would produce more than `maxOutput` bytes. */
  decompress(data: Uint8Array, maxOutput: number): Promise<Uint8Array>;
}

export class ZstdError extends Error {}

/** zstd's own default, used for `compression_level = 0`. */
export const ZSTD_DEFAULT_LEVEL = 3;
/** Highest level zstd accepts; higher requests are clamped to it. */
export const ZSTD_MAX_LEVEL = 22;
/** Lowest (fastest) level zstd accepts (ZSTD_minCLevel = -(1 << 17)). */
export const ZSTD_MIN_LEVEL = -(1 << 17);
/**
 * zstd-codec has a fixed 16 MiB wasm heap and aborts beyond it. Measured here: a 1–2 MiB input
 * compresses at levels ≤ 9 and aborts at 10+; 4 MiB aborts above 5; 6 MiB aborts at any level;
 * decompression aborts near 12 MiB of output. Hence these caps for the fallback codec.
 */
export const PORTABLE_MAX_LEVEL = 9;
export const PORTABLE_MAX_INPUT = 2 * 1024 * 1024;
export const PORTABLE_MAX_OUTPUT = 8 * 1024 * 1024;

/** zstd's largest block payload (Block_Maximum_Size): bounds a compressed block's output. */
const ZSTD_BLOCK_MAX = 128 * 1024;
const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50..0x184D2A5F, carry no output. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;

/** Maps a garage compression_level onto a level zstd accepts. */
export function normalizeLevel(level: number): number {
  assert(Number.isInteger(level), `zstd level must be an integer, got ${level}`);
  if (level === 0) return ZSTD_DEFAULT_LEVEL;
  return Math.min(ZSTD_MAX_LEVEL, Math.max(ZSTD_MIN_LEVEL, level));
}

export interface FrameBound {
  /** Upper bound on the decompressed size (exact when `exact`). */
  bytes: number;
  /** Every frame declared its content size, so `bytes` is what decompression must produce. */
  exact: boolean;
  /** Number of zstd (non-skippable) frames. */
  frames: number;
}

/**
 * Walks the frame and block headers (no decompression) to bound the output size. Declared content
 * sizes are exact (the decoder fails if the data disagrees); frames without one are bounded by their
 * blocks: raw and RLE blocks state their size, a compressed block regenerates at most 128 KiB.
 */
export function zstdFrameBound(src: Uint8Array): FrameBound {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const fail = (why: string): never => {
    throw new ZstdError(`malformed zstd data: ${why}`);
  };
  let pos = 0;
  let bytes = 0;
  let exact = true;
  let frames = 0;
  if (src.length === 0) fail("empty input");
  while (pos < src.length) {
    if (pos + 4 > src.length) fail("truncated magic");
    const magic = view.getUint32(pos, true);
    pos += 4;
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      if (pos + 4 > src.length) fail("truncated skippable frame");
      pos += 4 + view.getUint32(pos, true);
      if (pos > src.length) fail("truncated skippable frame");
      continue;
    }
    if (magic !== ZSTD_MAGIC) fail("bad magic");
    frames++;
    if (pos + 1 > src.length) fail("truncated frame header");
    const fhd = src[pos++]!;
    const fcsFlag = fhd >> 6;
    const singleSegment = (fhd >> 5) & 1;
    const hasChecksum = (fhd >> 2) & 1;
    const dictIdFlag = fhd & 3;
    if ((fhd >> 3) & 1) fail("reserved bit set");
    const fcsSize = fcsFlag === 0 ? singleSegment : 1 << fcsFlag;
    const headerRest = (singleSegment ? 0 : 1) + [0, 1, 2, 4][dictIdFlag]! + fcsSize;
    if (pos + headerRest > src.length) fail("truncated frame header");
    pos += headerRest - fcsSize;
    let declared = -1;
    switch (fcsSize) {
      case 1: declared = src[pos]!; break;
      case 2: declared = view.getUint16(pos, true) + 256; break;
      case 4: declared = view.getUint32(pos, true); break;
      case 8: declared = view.getUint32(pos, true) + view.getUint32(pos + 4, true) * 2 ** 32; break;
    }
    pos += fcsSize;
    let blockBound = 0;
    for (;;) {
      if (pos + 3 > src.length) fail("truncated block header");
      const bh = src[pos]! | (src[pos + 1]! << 8) | (src[pos + 2]! << 16);
      pos += 3;
      const last = bh & 1;
      const type = (bh >> 1) & 3;
      const size = bh >>> 3;
      if (type === 0) { blockBound += size; pos += size; }        // raw
      else if (type === 1) { blockBound += size; pos += 1; }       // RLE: one byte repeated `size` times
      else if (type === 2) { blockBound += ZSTD_BLOCK_MAX; pos += size; }
      else fail("reserved block type");
      if (pos > src.length) fail("truncated block");
      if (last) break;
    }
    if (hasChecksum) pos += 4;
    if (pos > src.length) fail("truncated checksum");
    if (declared > blockBound) fail("declared content size exceeds what its blocks can hold");
    if (declared >= 0) bytes += declared;
    else { exact = false; bytes += blockBound; }
  }
  if (frames === 0) fail("no zstd frame");
  return { bytes, exact, frames };
}

function checkBound(data: Uint8Array, maxOutput: number): FrameBound {
  assert(Number.isSafeInteger(maxOutput) && maxOutput >= 0, "maxOutput must be a non-negative integer");
  const bound = zstdFrameBound(data);
  if (bound.bytes > maxOutput) {
    throw new ZstdError(`zstd output of up to ${bound.bytes} bytes exceeds the limit of ${maxOutput}`);
  }
  return bound;
}

function checkOutput(out: Uint8Array, bound: FrameBound, maxOutput: number): Uint8Array {
  if (out.length > maxOutput || (bound.exact && out.length !== bound.bytes)) {
    throw new ZstdError(`zstd output is ${out.length} bytes, expected ${bound.exact ? "" : "at most "}${bound.bytes}`);
  }
  return out;
}

// Bun.zstdCompress rejects levels outside 1..22; node:zlib's async zstd accepts negative levels.
// It is ~40% slower than Bun's, so it only serves the negative levels Bun cannot do.
function zlibZstdCompress(data: Uint8Array, level: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    zlib.zstdCompress(
      data,
      { params: { [zlib.constants.ZSTD_c_compressionLevel]: level, [zlib.constants.ZSTD_c_contentSizeFlag]: 1 } },
      (err, out) => (err ? reject(err) : resolve(out)),
    );
  });
}

// Unknown-size frames are rare (ours always declare it); node:zlib enforces maxOutputLength
// natively while streaming, where Bun.zstdDecompress offers no limit.
function zlibZstdDecompress(data: Uint8Array, maxOutput: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    zlib.zstdDecompress(data, { maxOutputLength: Math.max(1, maxOutput) }, (err, out) =>
      err ? reject(new ZstdError(`zstd decompression failed: ${err.message}`)) : resolve(out),
    );
  });
}

/** Bun's built-in zstd; the async calls run on Bun's threadpool, so several in flight use both cores. */
export const nativeZstd: ZstdCodec = {
  name: "bun-native",
  async compress(data, level) {
    const lvl = normalizeLevel(level);
    if (lvl < 1) return zlibZstdCompress(data, lvl);
    return Bun.zstdCompress(data, { level: lvl });
  },
  async decompress(data, maxOutput) {
    const bound = checkBound(data, maxOutput);
    if (!bound.exact) return checkOutput(await zlibZstdDecompress(data, maxOutput), bound, maxOutput);
    if (bound.bytes === 0) return new Uint8Array(0);
    let out: Uint8Array;
    try {
      out = await Bun.zstdDecompress(data);
    } catch (err) {
      throw new ZstdError(`zstd decompression failed: ${(err as Error).message}`);
    }
    return checkOutput(out, bound, maxOutput);
  },
};

// --- portable fallback: zstd-codec ---------------------------------------------------------------

interface ZstdCodecApi {
  Simple: new () => {
    compress(data: Uint8Array, level: number): Uint8Array | null;
    decompress(data: Uint8Array): Uint8Array | null;
  };
  Streaming: new () => { decompress(data: Uint8Array, sizeHint?: number): Uint8Array | null };
}

let portable: Promise<ZstdCodec> | undefined;

/** Runs a zstd-codec call; its wasm aborts (heap exhausted) surface as a thrown exception. */
function guarded<T>(what: string, fn: () => T | null): T {
  let out: T | null;
  try {
    out = fn();
  } catch (err) {
    // An uncaught abort would kill the process; caught, the module keeps working.
    throw new ZstdError(`zstd-codec ${what} aborted: ${String(err).slice(0, 200)}`);
  }
  if (out === null) throw new ZstdError(`zstd-codec ${what} failed`);
  return out;
}

/** zstd-codec (Emscripten wasm, inlined, so it also works in a compiled binary). Initialised once, lazily. */
export function portableZstd(): Promise<ZstdCodec> {
  portable ??= new Promise<ZstdCodecApi>((resolve) => {
    // Lazy require: the module is 742 KB of JS and costs ~27 ms and ~21 MiB RSS to start.
    const { ZstdCodec } = require("zstd-codec") as { ZstdCodec: { run(cb: (z: ZstdCodecApi) => void): void } };
    ZstdCodec.run(resolve);
  }).then((z): ZstdCodec => {
    const simple = new z.Simple();
    const streaming = new z.Streaming();
    return {
      name: "zstd-codec",
      async compress(data, level) {
        if (data.length > PORTABLE_MAX_INPUT) {
          throw new ZstdError(`zstd-codec cannot compress ${data.length} bytes (limit ${PORTABLE_MAX_INPUT})`);
        }
        // Levels above PORTABLE_MAX_LEVEL exhaust the fixed heap on 1 MiB blocks; the frame stays standard.
        const lvl = Math.min(normalizeLevel(level), PORTABLE_MAX_LEVEL);
        return guarded("compress", () => simple.compress(data, lvl));
      },
      async decompress(data, maxOutput) {
        const bound = checkBound(data, Math.min(maxOutput, PORTABLE_MAX_OUTPUT));
        if (bound.bytes === 0) return new Uint8Array(0); // Simple.decompress reports size 0 as failure
        // Simple reads one frame with a declared size (fastest); Streaming handles the rest.
        const out = bound.exact && bound.frames === 1
          ? guarded("decompress", () => simple.decompress(data))
          : guarded("decompress", () => streaming.decompress(data, bound.bytes));
        return checkOutput(out, bound, maxOutput);
      },
    };
  });
  return portable;
}

/** The codec to use on the hot path: Bun's built-in zstd when this runtime has it. */
export function defaultZstd(): ZstdCodec {
  return typeof Bun !== "undefined" && typeof Bun.zstdCompress === "function" ? nativeZstd : fallbackOnDemand;
}

// A synchronous `defaultZstd()` cannot await the portable codec's start, so defer it to first use.
const fallbackOnDemand: ZstdCodec = {
  name: "zstd-codec",
  compress: async (data, level) => (await portableZstd()).compress(data, level),
  decompress: async (data, maxOutput) => (await portableZstd()).decompress(data, maxOutput),
};

/**
 * Compresses `data`, keeping the result only when it is strictly smaller: incompressible blocks
 * (media, archives, encrypted data) are stored plain, so reads never pay to decompress them.
 */
export async function compressIfSmaller(
  codec: ZstdCodec,
  data: Uint8Array,
  level: number,
): Promise<{ data: Uint8Array; compressed: boolean }> {
  const packed = await codec.compress(data, level);
  return packed.length < data.length ? { data: packed, compressed: true } : { data, compressed: false };
}
