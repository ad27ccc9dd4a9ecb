// The binary row format (db/entry-codec.ts): exact to JSON, deterministic, compact, and strict
// about what it reads.
import { describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { base64Bytes, decodeEntry, encodeEntry, entryJson, RowFormatError } from "../../../src/db/entry-codec.ts";
import { releaseRow } from "../../../src/db/table-rows.ts";
import { mulberry32 } from "../../helpers/random.ts";

/** Strings that sit on the edges of the special string forms (hex, base64, dictionary, UTF-16). */
const EDGE_STRINGS = [
  "", "a", "ab", "AB", "abc", "0", "00", "0a", "0A", "ff", "fg", "a".repeat(64), "f".repeat(63),
  "AAAAAAAAAAAA", "AAAAAAAAAAA=", "AAAAAAAAAA==", "AAAAAAAAAAB=", "AAAAAAAAAB==", "AAAA AAAAAAA",
  "AAAAAAAA-_AA", "AAAAAAAAAAAA=", "YWJjZGVmZ2hpams=", "complete", "content-type", "kind", "__proto__",
  "\ud800", "a\udc00b", "\ud83d\ude00", "é", "日本語", "\u0000", "x".repeat(200), "é".repeat(50),
  randomBytes(1024).toString("base64"), randomBytes(32).toString("hex"), randomBytes(16).toString("hex").toUpperCase(),
];
const EDGE_NUMBERS = [0, -0, 1, -1, 63, 64, 127, 128, -64, 2 ** 31, 2 ** 32 + 1, -(2 ** 40), Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 2 ** 53, 1.5, -0.1, 1e21, 1e-7, 5e-324, Date.now()];

function randomValue(rand: () => number, depth: number): unknown {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
  const roll = rand();
  if (depth > 3 || roll < 0.35) {
    const leaf = rand();
    if (leaf < 0.1) return null;
    if (leaf < 0.2) return rand() < 0.5;
    if (leaf < 0.5) return pick(EDGE_NUMBERS);
    if (leaf < 0.6) return Math.floor(rand() * 1e6) * (rand() < 0.5 ? 1 : -1);
    if (leaf < 0.9) return pick(EDGE_STRINGS);
    return String.fromCharCode(...Array.from({ length: Math.floor(rand() * 8) }, () => Math.floor(rand() * 0x10000)));
  }
  if (roll < 0.6) return Array.from({ length: Math.floor(rand() * 5) }, () => randomValue(rand, depth + 1));
  const out: Record<string, unknown> = {};
  for (let i = Math.floor(rand() * 6); i > 0; i--) {
    const k = rand() < 0.3 ? String(Math.floor(rand() * 20)) : pick(EDGE_STRINGS).slice(0, 20);
    if (k === "__proto__") Object.defineProperty(out, k, { value: randomValue(rand, depth + 1), enumerable: true, writable: true, configurable: true });
    else out[k] = randomValue(rand, depth + 1);
  }
  return out;
}

describe("entry codec", () => {
  test("decode(encode(x)) is JSON.parse(JSON.stringify(x)), key order and lone surrogates included (seeded)", () => {
    const rand = mulberry32(13);
    for (let i = 0; i < 3000; i++) {
      const x = randomValue(rand, 0);
      const json = JSON.stringify(x);
      const bytes = encodeEntry(x);
      expect(JSON.stringify(decodeEntry(bytes))).toBe(json);
      expect(entryJson(bytes)).toBe(json);
      // One value, one encoding: what comes back encodes to the same bytes.
      expect(encodeEntry(JSON.parse(json))).toEqual(bytes);
    }
  });

  test("values JSON leaves out or rewrites are stored as JSON would store them", () => {
    const x = { a: undefined, b: () => 1, c: [undefined, NaN, Infinity, -0], d: new Date(0), e: { toJSON: () => "t" } };
    expect(entryJson(encodeEntry(x))).toBe(JSON.stringify(x));
    expect(() => encodeEntry({ n: 1n })).toThrow(TypeError);
  });

  test("a key named __proto__ comes back as an own property, never as the prototype", () => {
    const decoded = decodeEntry(encodeEntry(JSON.parse('{"__proto__":{"polluted":true},"k":1}'))) as Record<string, unknown>;
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(Object.keys(decoded)).toEqual(["__proto__", "k"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test("an object entry with a 1 KiB inline body takes its body's bytes plus little, where its JSON took 1.7 KB", () => {
    const entry = {
      bucketId: randomBytes(32).toString("hex"),
      key: "photos/2024/img-000001.jpg",
      versions: [
        {
          uuid: randomBytes(32).toString("hex"),
          timestamp: Date.now(),
          state: { kind: "complete", data: { kind: "inline", meta: { size: 1024, etag: randomBytes(16).toString("hex"), headers: [["content-type", "application/octet-stream"]] }, base64: randomBytes(1024).toString("base64") } },
        },
      ],
    };
    expect(JSON.stringify(entry).length).toBeGreaterThan(1700);
    // 1024 body + 32 + 32 + 16 (ids and etag as bytes) + the key + at most 64 of structure
    expect(encodeEntry(entry).length).toBeLessThanOrEqual(1024 + 32 + 32 + 16 + 26 + 64);
  });

  test("an inline body decoded without being read is an ordinary string property once read, written or copied", () => {
    const body = randomBytes(4096).toString("base64");
    const entry = { kind: "inline", meta: { size: 4096 }, base64: body, after: [1, "x"] };
    const row = encodeEntry(entry);
    const read = decodeEntry(row) as typeof entry;
    expect(Object.keys(read)).toEqual(["kind", "meta", "base64", "after"]);
    expect(JSON.stringify(read)).toBe(JSON.stringify(entry));
    expect(read.base64).toBe(body);
    expect(Object.getOwnPropertyDescriptor(read, "base64")).toEqual({ value: body, writable: true, enumerable: true, configurable: true });
    const copied = { ...(decodeEntry(row) as typeof entry) };
    expect(Object.getOwnPropertyDescriptor(copied, "base64")?.value).toBe(body);
    const written = decodeEntry(row) as typeof entry;
    written.base64 = "QUJD";
    expect(written.base64).toBe("QUJD");
    expect(Object.keys(written)).toEqual(["kind", "meta", "base64", "after"]);
    expect(encodeEntry(decodeEntry(row))).toEqual(row);
    expect(decodeEntry(row)).toEqual(entry);
    // Its bytes, read before and after its text was made, and of a plain object.
    const bytes = Buffer.from(body, "base64");
    const fresh = decodeEntry(row) as typeof entry;
    expect(Buffer.from(base64Bytes(fresh, "base64")).equals(bytes)).toBe(true);
    void fresh.base64;
    expect(Buffer.from(base64Bytes(fresh, "base64")).equals(bytes)).toBe(true);
    expect(Buffer.from(base64Bytes(entry, "base64")).equals(bytes)).toBe(true);
  });

  test("an inline body not yet read survives its row's buffer being handed back (releaseRow)", () => {
    const body = randomBytes(4096).toString("base64");
    const entry = { kind: "inline", base64: body };
    const twoReads = [0, 1].map(() => {
      const row = new Uint8Array(encodeEntry(entry)); // a row of its own, as bun:sqlite returns
      const read = decodeEntry(row) as typeof entry;
      releaseRow(row);
      expect(row.buffer.detached).toBe(true);
      return read;
    });
    expect(Buffer.from(base64Bytes(twoReads[0]!, "base64")).equals(Buffer.from(body, "base64"))).toBe(true);
    expect(twoReads[1]!.base64).toBe(body);
  });

  test("a kept row's inline body is read from the row itself; handed back all the same, it is refused, never empty", () => {
    const body = randomBytes(4096).toString("base64");
    const entry = { kind: "inline", base64: body };
    const row = new Uint8Array(encodeEntry(entry));
    const kept = decodeEntry(row, { rowKept: true }) as typeof entry;
    const bytes = base64Bytes(kept, "base64");
    expect(bytes.buffer).toBe(row.buffer); // a view of the row: no copy
    expect(Buffer.from(bytes).equals(Buffer.from(body, "base64"))).toBe(true);
    expect(kept.base64).toBe(body);
    // A caller that hands the row back after all (a bug) gets an error, not a silent empty body.
    const row2 = new Uint8Array(encodeEntry(entry));
    const released = decodeEntry(row2, { rowKept: true }) as typeof entry;
    releaseRow(row2);
    expect(() => base64Bytes(released, "base64")).toThrow(/after its row was handed back/);
    expect(() => released.base64).toThrow(/after its row was handed back/);
  });

  test("malformed rows are refused with RowFormatError", () => {
    const good = encodeEntry({ a: [1, "x", randomBytes(8).toString("hex")] });
    expect(() => decodeEntry(new Uint8Array())).toThrow(RowFormatError);
    expect(() => decodeEntry(Uint8Array.of(2, 0))).toThrow(/row format 2/);
    for (let n = 1; n < good.length; n++) expect(() => decodeEntry(good.subarray(0, n))).toThrow(RowFormatError);
    expect(() => decodeEntry(Uint8Array.of(...good, 0))).toThrow(/bytes after/);
    expect(() => decodeEntry(Uint8Array.of(1, 0x30))).toThrow(/unknown tag/);
    expect(() => decodeEntry(Uint8Array.of(1, 0xff))).toThrow(/dictionary/);
    expect(() => decodeEntry(Uint8Array.of(1, 0x09, 0xff, 0xff, 0xff, 0x7f))).toThrow(RowFormatError);
  });
});
