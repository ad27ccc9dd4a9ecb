// Tiny argv parser for the CLI: long flags (`--name`, `--name=value`, `--name value`),
// one-letter short flags (`-n value`), repeatable valued flags (`-t a -t b`), positionals,
// and `--` to end the flags.
// Every mistake is a UsageError, which the CLI turns into exit code 2.

export class UsageError extends Error {}

/** An unknown flag; kept apart so the CLI can say when a global option was misplaced. */
export class UnknownFlagError extends UsageError {
  constructor(readonly flag: string) {
    super(`unknown flag ${flag}`);
  }
}

export interface FlagSpec {
  /** Long name without the dashes, e.g. "show-secret". */
  name: string;
  /** One letter, e.g. "n" for `-n`. */
  short?: string;
  /** Placeholder for valued flags, e.g. "FILE"; boolean flags have none. */
  value?: string;
  /** A valued flag that may be given several times; its values come as a list, in order. */
  repeatable?: boolean;
  help: string;
}

/** Boolean flags are true, valued flags a string, repeatable flags a list. */
export type FlagValue = string | true | string[];

export interface ParsedArgs {
  /** Boolean flags map to true, valued flags to their value; absent flags are missing. */
  flags: Record<string, FlagValue>;
  positional: string[];
  /** With `stopAtPositional`, the arguments after the first positional, left unparsed. */
  rest: string[];
}

export interface ParseOptions {
  /** Stop at the first positional: used for global options that precede the command. */
  stopAtPositional?: boolean;
}

export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], options: ParseOptions = {}): ParsedArgs {
  const byLong = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short !== undefined).map((s) => [s.short!, s]));
  const flags: Record<string, FlagValue> = Object.create(null);
  const positional: string[] = [];
  let flagsEnded = false;

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (flagsEnded || arg === "-" || !arg.startsWith("-")) {
      positional.push(arg);
      if (options.stopAtPositional) return { flags, positional, rest: argv.slice(i + 1) };
      continue;
    }
    if (arg === "--") {
      flagsEnded = true;
      continue;
    }

    let spec: FlagSpec | undefined;
    let inline: string | undefined;
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      if (eq !== -1) inline = arg.slice(eq + 1);
      spec = byLong.get(name);
      if (!spec) throw new UnknownFlagError(`--${name}`);
    } else {
      spec = arg.length === 2 ? byShort.get(arg[1]!) : undefined;
      if (!spec) throw new UnknownFlagError(arg);
    }

    if (spec.value === undefined) {
      if (inline !== undefined) throw new UsageError(`flag --${spec.name} takes no value`);
      flags[spec.name] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`flag --${spec.name} needs a value (${spec.value})`);
    if (spec.repeatable) {
      flags[spec.name] = [...((flags[spec.name] as string[] | undefined) ?? []), value];
      continue;
    }
    if (spec.name in flags) throw new UsageError(`flag --${spec.name} given more than once`);
    flags[spec.name] = value;
  }
  return { flags, positional, rest: [] };
}

/** How a flag is written in help text: `-n, --name NAME`, `-t, --tag TAG...` when repeatable. */
export function flagSynopsis(spec: FlagSpec): string {
  const long = `--${spec.name}${spec.value ? ` ${spec.value}${spec.repeatable ? "..." : ""}` : ""}`;
  return spec.short ? `-${spec.short}, ${long}` : long;
}
