// Encrypted records: round trips under arbitrary splits; tampering, replay, reordering, a wrong
// key and garbage lengths are all refused.
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { BoxOpener, BoxSealer, MAX_RECORD_PLAINTEXT, RecordError } from "../../../src/rpc/box-stream.ts";

const key = () => new Uint8Array(randomBytes(32));

function records(sealer: BoxSealer, count: number): { plain: Uint8Array[]; wire: Buffer[] } {
  const plain: Uint8Array[] = [];
  const wire: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const p = new Uint8Array(randomBytes(1 + ((i * 7919) % 5000)));
    plain.push(p);
    // Several parts per record, as the writer seals header + payload pieces.
    const cut = Math.floor(p.length / 3);
    wire.push(sealer.seal([p.subarray(0, cut), p.subarray(cut)], p.length));
  }
  return { plain, wire };
}

describe("box stream records", () => {
  test("round trip with the stream re-split at every size from 1 byte", () => {
    const k = key();
    const { plain, wire } = records(new BoxSealer(k), 20);
    const all = Buffer.concat(wire);
    for (const step of [1, 3, 17, 1000, all.length]) {
      const opener = new BoxOpener(k);
      const got: Uint8Array[] = [];
      for (let off = 0; off < all.length; off += step) got.push(...opener.push(all.subarray(off, off + step)));
      expect(got.map((g) => Buffer.from(g).toString("hex"))).toEqual(plain.map((p) => Buffer.from(p).toString("hex")));
      expect(opener.pending).toBe(0);
    }
  });

  test("sealInto writes the same bytes as seal", () => {
    const k = key();
    const p = new Uint8Array(randomBytes(1000));
    const a = new BoxSealer(k).seal([p], p.length);
    const out = Buffer.alloc(a.length + 10);
    const n = new BoxSealer(k).sealInto(out, 10, [p.subarray(0, 10), p.subarray(10)], p.length);
    expect(n).toBe(a.length);
    expect(out.subarray(10).equals(a)).toBe(true);
  });

  test("a flipped bit anywhere is refused", () => {
    const k = key();
    const { wire } = records(new BoxSealer(k), 1);
    const rec = wire[0]!;
    for (const pos of [4, 5, rec.length - 17, rec.length - 1]) {
      const bad = Buffer.from(rec);
      bad[pos]! ^= 1;
      expect(() => new BoxOpener(k).push(bad)).toThrow(RecordError);
    }
    // The length prefix is authenticated too (a shorter length cuts the record elsewhere).
    const bad = Buffer.from(rec);
    bad.writeUInt32BE(bad.readUInt32BE(0) - 1, 0);
    expect(() => new BoxOpener(k).push(bad)).toThrow(RecordError);
  });

  test("replayed, reordered and dropped records are refused", () => {
    const k = key();
    const { wire } = records(new BoxSealer(k), 3);
    const replay = new BoxOpener(k);
    replay.push(wire[0]!);
    expect(() => replay.push(wire[0]!)).toThrow(/authentication failed/);
    expect(() => new BoxOpener(k).push(wire[1]!)).toThrow(RecordError);
    const dropped = new BoxOpener(k);
    dropped.push(wire[0]!);
    expect(() => dropped.push(wire[2]!)).toThrow(RecordError);
  });

  test("the wrong key is refused, and a failed opener stays failed", () => {
    const { wire } = records(new BoxSealer(key()), 1);
    const opener = new BoxOpener(key());
    expect(() => opener.push(wire[0]!)).toThrow(RecordError);
    expect(() => opener.push(new Uint8Array(1))).toThrow(RecordError);
  });

  test("a garbage length prefix is refused before buffering", () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_RECORD_PLAINTEXT + 1, 0);
    expect(() => new BoxOpener(key()).push(header)).toThrow(/record length/);
    expect(() => new BoxOpener(key()).push(Buffer.alloc(4))).toThrow(/record length 0/);
  });
});
