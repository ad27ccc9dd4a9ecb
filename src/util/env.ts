// Durations that tests shorten through the environment (a read grace, a GC delay, a timeout):
// one parser, so that every such variable accepts and refuses the same things.
import { parseDecimal } from "./decimal";

/** Longest duration such a variable may set (a week): anything longer is a typo. */
const MAX_ENV_MILLISECONDS = 7 * 24 * 3600 * 1000;

/**
 * The milliseconds in env variable `name` (plain decimal, at least `min`), or `fallback` when
 * it is unset or empty; any other value stops the process with one line naming the variable.
 */
export function envMilliseconds(name: string, fallback: number, min = 0): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const ms = parseDecimal(raw, min, MAX_ENV_MILLISECONDS);
  if (ms === undefined) throw new Error(`${name} must be a number of milliseconds (${min} to ${MAX_ENV_MILLISECONDS}), got "${raw}"`);
  return ms;
}
