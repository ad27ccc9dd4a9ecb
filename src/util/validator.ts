// Compiled TypeBox checks for data that arrives from outside this process (RPC messages from
// peers, table entries they send): one compile per schema, on its first check, a fast `check`
// on the hot path, and, only for a value that fails, the first failing path in words.
// Compiling is deferred because validators are declared at module load: compiling all ~50 of them
// there cost the compiled binary ~30 ms of start-up (and every CLI command as much), for schemas
// a single node without peers may never check.
import type { Static, TSchema } from "@sinclair/typebox";
import { TypeCompiler, type TypeCheck } from "@sinclair/typebox/compiler";

/** Longest rendering of a failing value in a problem message. */
const MAX_SHOWN_VALUE_CHARS = 80;

export interface Validator<T> {
  check(value: unknown): value is T;
  /** undefined when `value` conforms, else "<path>: <what was expected> (got <value>)". */
  problem(value: unknown): string | undefined;
}

function shown(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > MAX_SHOWN_VALUE_CHARS ? `${text.slice(0, MAX_SHOWN_VALUE_CHARS)}…` : text;
}

export function compileValidator<S extends TSchema>(schema: S): Validator<Static<S>> {
  let compiled: TypeCheck<S> | undefined;
  const checker = () => (compiled ??= TypeCompiler.Compile(schema));
  return {
    check: (value): value is Static<S> => checker().Check(value),
    problem(value) {
      const compiled = checker();
      if (compiled.Check(value)) return undefined;
      const first = compiled.Errors(value).First();
      if (!first) return "/: does not match its schema";
      return `${first.path || "/"}: ${first.message} (got ${shown(first.value)})`;
    },
  };
}
