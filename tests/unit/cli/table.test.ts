import { describe, expect, test } from "bun:test";
import { formatBytes, formatColumns, formatFields, formatTable, heading } from "../../../src/cli/table";

describe("formatTable", () => {
  test("aligns columns, leaves the last unpadded, trims trailing space", () => {
    const out = formatTable(
      ["ID", "Name", "Note"],
      [
        ["GK1", "alice", ""],
        ["GK1234", "b", "x"],
      ],
    );
    expect(out.split("\n")).toEqual(["ID      Name   Note", "GK1     alice", "GK1234  b      x"]);
  });

  test("header only when there are no rows", () => {
    expect(formatTable(["ID", "Name"], [])).toBe("ID  Name");
  });

  test("wide characters count by display width", () => {
    const out = formatTable(["Name", "Size"], [["日本", "1"], ["abcd", "2"]]).split("\n");
    expect(out[1]).toBe("日本  1");
    expect(out[2]).toBe("abcd  2");
  });

  test("formatColumns indents and tolerates short rows", () => {
    expect(formatColumns([["a", "b", "c"], ["long"]], "  ").split("\n")).toEqual(["  a     b  c", "  long"]);
  });
});

describe("formatFields and heading", () => {
  test("values aligned after the labels", () => {
    expect(formatFields([["Key ID", "GK1"], ["Can create buckets", "false"], ["Empty", ""]]).split("\n")).toEqual([
      "Key ID:              GK1",
      "Can create buckets:  false",
      "Empty:",
    ]);
    expect(heading("X")).toBe("==== X ====");
  });
});

describe("formatBytes", () => {
  test("binary units", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1024)).toBe("1.0 KiB");
    expect(formatBytes(1536 * 1024)).toBe("1.5 MiB");
    expect(formatBytes(5 * 1024 ** 4)).toBe("5.0 TiB");
  });
});
