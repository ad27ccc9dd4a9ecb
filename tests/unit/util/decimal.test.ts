import { describe, expect, test } from "bun:test";
import { parseDecimal } from "../../../src/util/decimal";

describe("parseDecimal", () => {
  test("takes plain decimal digits within bounds", () => {
    expect(parseDecimal("1", 1, 10000)).toBe(1);
    expect(parseDecimal("10000", 1, 10000)).toBe(10000);
    expect(parseDecimal("007", 0, 10)).toBe(7);
    expect(parseDecimal("0", 0, 1000)).toBe(0);
  });
  test("refuses what Number() would take", () => {
    for (const s of ["0x10", "1e3", " 7", "7 ", "", "+5", "-1", "1.0", "1_000", "Infinity", "NaN", "٣"]) expect(parseDecimal(s, -10, 1e9)).toBeUndefined();
    expect(parseDecimal(null, 0, 1)).toBeUndefined();
    expect(parseDecimal(undefined, 0, 1)).toBeUndefined();
  });
  test("refuses out-of-range and overlong values", () => {
    expect(parseDecimal("0", 1, 10)).toBeUndefined();
    expect(parseDecimal("11", 1, 10)).toBeUndefined();
    expect(parseDecimal("99999999999999999", 0, Number.MAX_SAFE_INTEGER)).toBeUndefined();
  });
});
