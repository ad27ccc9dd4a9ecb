// Frame codec: round trips under arbitrary splits, truncation, garbage and oversized frames.
import { describe, expect, test } from "bun:test";
import {
  CREDIT_PAYLOAD_BYTES,
  FLAG_BODY,
  FLAG_CANCEL,
  FLAG_CREDIT,
  FLAG_END,
  FLAG_ERROR,
  FLAG_MORE,
  FLAG_RESPONSE,
  FRAME_HEADER_BYTES,
  FrameDecoder,
  FrameError,
  MAX_FRAME_PAYLOAD,
  encodeFrame,
  frameProblem,
  type Frame,
} from "../../../src/rpc/frame.ts";

/** A small deterministic PRNG so a failing seed can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

const VALID_FLAG_SETS = [
  0,
  FLAG_END,
  FLAG_MORE,
  FLAG_BODY,
  FLAG_BODY | FLAG_END,
  FLAG_ERROR,
  FLAG_CANCEL,
  FLAG_CREDIT,
];

function randomFrame(rand: () => number): Frame {
  const base = VALID_FLAG_SETS[Math.floor(rand() * VALID_FLAG_SETS.length)]!;
  const flags = base | (rand() < 0.5 ? FLAG_RESPONSE : 0);
  let length: number;
  if (flags & FLAG_CANCEL) length = 0;
  else if (flags & FLAG_CREDIT) length = CREDIT_PAYLOAD_BYTES;
  else {
    const r = rand();
    length = r < 0.1 ? 0 : r < 0.2 ? MAX_FRAME_PAYLOAD : Math.floor(rand() * (r < 0.8 ? 300 : MAX_FRAME_PAYLOAD));
  }
  const payload = new Uint8Array(length);
  for (let i = 0; i < length; i++) payload[i] = Math.floor(rand() * 256);
  return {
    requestId: Math.floor(rand() * 0x1_0000_0000),
    flags,
    priority: Math.floor(rand() * 256),
    payload,
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Splits `bytes` at random points; tiny pieces (1 byte) are frequent. */
function randomSplit(bytes: Uint8Array, rand: () => number): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let off = 0;
  while (off < bytes.length) {
    const r = rand();
    const n = r < 0.3 ? 1 : r < 0.6 ? 1 + Math.floor(rand() * 16) : 1 + Math.floor(rand() * 100_000);
    pieces.push(bytes.subarray(off, Math.min(bytes.length, off + n)));
    off += n;
  }
  return pieces;
}

function expectSameFrames(got: Frame[], want: Frame[]): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    expect(got[i]!.requestId).toBe(want[i]!.requestId);
    expect(got[i]!.flags).toBe(want[i]!.flags);
    expect(got[i]!.priority).toBe(want[i]!.priority);
    expect(Buffer.from(got[i]!.payload).equals(Buffer.from(want[i]!.payload))).toBe(true);
  }
}

describe("frame codec", () => {
  test("random frames survive random re-splitting, 1-byte pieces included", () => {
    for (let seed = 1; seed <= 40; seed++) {
      const rand = rng(seed);
      const frames = Array.from({ length: 1 + Math.floor(rand() * 30) }, () => randomFrame(rand));
      const stream = concat(frames.map(encodeFrame));
      const decoder = new FrameDecoder();
      const got: Frame[] = [];
      for (const piece of randomSplit(stream, rand)) got.push(...decoder.push(piece));
      decoder.finish();
      expectSameFrames(got, frames);
    }
  });

  test("a stream fed one byte at a time decodes", () => {
    const rand = rng(7);
    // Payloads cut to 500 bytes keep the byte-by-byte loop short (control frames are smaller).
    const frames = Array.from({ length: 12 }, () => randomFrame(rand)).map((f) => ({
      ...f,
      payload: f.payload.subarray(0, Math.min(f.payload.length, 500)),
    }));
    const stream = concat(frames.map(encodeFrame));
    const decoder = new FrameDecoder();
    const got: Frame[] = [];
    for (let i = 0; i < stream.length; i++) got.push(...decoder.push(stream.subarray(i, i + 1)));
    decoder.finish();
    expectSameFrames(got, frames);
  });

  test("truncated input is an error at finish(), never a frame", () => {
    for (let seed = 100; seed < 130; seed++) {
      const rand = rng(seed);
      const frames = Array.from({ length: 3 }, () => randomFrame(rand));
      const stream = concat(frames.map(encodeFrame));
      const cut = 1 + Math.floor(rand() * (stream.length - 1));
      const decoder = new FrameDecoder();
      const got = decoder.push(stream.subarray(0, cut));
      const boundaries = new Set<number>();
      let pos = 0;
      for (const f of frames) boundaries.add((pos += FRAME_HEADER_BYTES + f.payload.length));
      if (boundaries.has(cut)) {
        decoder.finish(); // cut exactly between frames: complete frames only
      } else {
        expect(() => decoder.finish()).toThrow(FrameError);
      }
      expectSameFrames(got, frames.slice(0, got.length));
    }
  });

  test("random garbage is rejected with a FrameError, never a crash", () => {
    let rejected = 0;
    for (let seed = 1000; seed < 1300; seed++) {
      const rand = rng(seed);
      const garbage = new Uint8Array(1 + Math.floor(rand() * 4096));
      for (let i = 0; i < garbage.length; i++) garbage[i] = Math.floor(rand() * 256);
      const decoder = new FrameDecoder();
      try {
        for (const piece of randomSplit(garbage, rand)) decoder.push(piece);
        decoder.finish();
      } catch (err) {
        expect(err).toBeInstanceOf(FrameError);
        rejected++;
        // A failed decoder stays failed: the stream position is lost.
        expect(() => decoder.push(new Uint8Array([0]))).toThrow(FrameError);
      }
    }
    expect(rejected).toBe(300);
  });

  test("an oversized frame is refused from its header alone", () => {
    const header = new Uint8Array(FRAME_HEADER_BYTES);
    new DataView(header.buffer).setUint32(0, MAX_FRAME_PAYLOAD + 1);
    const decoder = new FrameDecoder();
    expect(() => decoder.push(header)).toThrow(/exceeds the 65536-byte maximum/);
  });

  test("invalid flag combinations are refused", () => {
    expect(frameProblem(0x80, 0)).toMatch(/unknown flag/);
    expect(frameProblem(FLAG_MORE | FLAG_END, 1)).toMatch(/MORE/);
    expect(frameProblem(FLAG_MORE | FLAG_BODY, 1)).toMatch(/MORE/);
    expect(frameProblem(FLAG_CANCEL | FLAG_ERROR, 0)).toMatch(/exclusive/);
    expect(frameProblem(FLAG_CANCEL, 3)).toMatch(/CANCEL/);
    expect(frameProblem(FLAG_CREDIT, 3)).toMatch(/CREDIT/);
    expect(frameProblem(FLAG_ERROR | FLAG_END, 3)).toMatch(/control or error/);
    expect(frameProblem(FLAG_BODY | FLAG_END | FLAG_RESPONSE, 10)).toBeNull();
    expect(() => encodeFrame({ requestId: 1, flags: FLAG_CANCEL, priority: 0, payload: new Uint8Array(1) })).toThrow();
  });
});
