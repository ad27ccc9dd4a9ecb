import { afterEach, describe, expect, test } from "bun:test";
import { envMilliseconds } from "../../../src/util/env";

const NAME = "BUNKER_TEST_ENV_MS";
afterEach(() => {
  delete process.env[NAME];
});

describe("envMilliseconds", () => {
  test("unset or empty: the fallback; a decimal: its value", () => {
    expect(envMilliseconds(NAME, 42)).toBe(42);
    process.env[NAME] = "";
    expect(envMilliseconds(NAME, 42)).toBe(42);
    process.env[NAME] = "1500";
    expect(envMilliseconds(NAME, 42)).toBe(1500);
  });
  test("anything else stops with one line naming the variable", () => {
    for (const bad of ["1e3", "0x10", "-1", "abc", "1.5"]) {
      process.env[NAME] = bad;
      expect(() => envMilliseconds(NAME, 42)).toThrow(NAME);
    }
    process.env[NAME] = "0";
    expect(() => envMilliseconds(NAME, 42, 1)).toThrow(NAME);
  });
});
