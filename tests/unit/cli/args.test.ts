import { describe, expect, test } from "bun:test";
import { UnknownFlagError, UsageError, flagSynopsis, parseArgs, type FlagSpec } from "../../../src/cli/args";

const SPECS: FlagSpec[] = [
  { name: "yes", help: "confirm" },
  { name: "show-secret", help: "show it" },
  { name: "name", short: "n", value: "NAME", help: "a name" },
  { name: "config", short: "c", value: "FILE", help: "config" },
  { name: "tag", short: "t", value: "TAG", repeatable: true, help: "a tag" },
];

describe("parseArgs", () => {
  test("positionals and boolean flags in any order", () => {
    const p = parseArgs(["a", "--yes", "b", "--show-secret"], SPECS);
    expect(p.positional).toEqual(["a", "b"]);
    expect({ ...p.flags }).toEqual({ yes: true, "show-secret": true });
    expect(p.rest).toEqual([]);
  });

  test("valued flags: separate, inline, short", () => {
    expect({ ...parseArgs(["--name", "x"], SPECS).flags }).toEqual({ name: "x" });
    expect({ ...parseArgs(["--name=a=b"], SPECS).flags }).toEqual({ name: "a=b" });
    expect({ ...parseArgs(["--name="], SPECS).flags }).toEqual({ name: "" });
    expect({ ...parseArgs(["-n", "x", "-c", "f.toml"], SPECS).flags }).toEqual({ name: "x", config: "f.toml" });
    expect({ ...parseArgs(["-n", "-dash"], SPECS).flags }).toEqual({ name: "-dash" });
  });

  test("-- ends flags; a lone - is positional", () => {
    const p = parseArgs(["--", "--yes", "-n"], SPECS);
    expect(p.positional).toEqual(["--yes", "-n"]);
    expect({ ...p.flags }).toEqual({});
    expect(parseArgs(["-"], SPECS).positional).toEqual(["-"]);
  });

  test("stopAtPositional leaves the rest unparsed", () => {
    const p = parseArgs(["-c", "f", "key", "list", "--bogus"], SPECS, { stopAtPositional: true });
    expect({ ...p.flags }).toEqual({ config: "f" });
    expect(p.positional).toEqual(["key"]);
    expect(p.rest).toEqual(["list", "--bogus"]);
  });

  test("usage errors", () => {
    expect(() => parseArgs(["--bogus"], SPECS)).toThrow(UnknownFlagError);
    expect(() => parseArgs(["-x"], SPECS)).toThrow(UnknownFlagError);
    expect(() => parseArgs(["-nc"], SPECS)).toThrow(UnknownFlagError);
    expect(() => parseArgs(["--name"], SPECS)).toThrow(new UsageError("flag --name needs a value (NAME)"));
    expect(() => parseArgs(["--yes=1"], SPECS)).toThrow(new UsageError("flag --yes takes no value"));
    expect(() => parseArgs(["-n", "a", "--name", "b"], SPECS)).toThrow(UsageError);
    let caught: unknown;
    try {
      parseArgs(["-c"], []);
    } catch (e) {
      caught = e;
    }
    expect((caught as UnknownFlagError).flag).toBe("-c");
  });

  test("repeated boolean flags are harmless", () => {
    expect({ ...parseArgs(["--yes", "--yes"], SPECS).flags }).toEqual({ yes: true });
  });

  test("repeatable flags collect their values in order", () => {
    expect({ ...parseArgs(["-t", "a", "x", "--tag=b", "-t", "a"], SPECS).flags }).toEqual({ tag: ["a", "b", "a"] });
    expect({ ...parseArgs(["x"], SPECS).flags }).toEqual({});
    expect(() => parseArgs(["-t"], SPECS)).toThrow(new UsageError("flag --tag needs a value (TAG)"));
  });

  test("flagSynopsis", () => {
    expect(flagSynopsis(SPECS[2]!)).toBe("-n, --name NAME");
    expect(flagSynopsis(SPECS[0]!)).toBe("--yes");
    expect(flagSynopsis(SPECS[4]!)).toBe("-t, --tag TAG...");
  });
});
