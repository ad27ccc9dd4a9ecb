import { expect, test } from "bun:test";
import { editDistance, nearestWord } from "../../../src/util/edit-distance";

test("editDistance counts insertions, deletions and substitutions", () => {
  expect(editDistance("kitten", "sitting")).toBe(3);
  expect(editDistance("", "abc")).toBe(3);
  expect(editDistance("api_bind_adr", "api_bind_addr")).toBe(1);
  expect(editDistance("same", "same")).toBe(0);
});

test("nearestWord: the closest candidate when it is close enough to be a typo", () => {
  const keys = ["api_bind_addr", "admin_token", "admin_token_file", "metrics_token"];
  expect(nearestWord("api_bind_adr", keys)).toBe("api_bind_addr");
  expect(nearestWord("admin_tokn", keys)).toBe("admin_token");
  expect(nearestWord("ADMIN_TOKEN", keys)).toBe("admin_token");
  expect(nearestWord("admn", ["s3_api", "s3_web", "admin"])).toBe("admin");
  expect(nearestWord("no_such_option", keys)).toBeUndefined();
  expect(nearestWord("x", [])).toBeUndefined();
});
