// The shape every CLI command has: its synopsis (for parsing and help) and a run function
// that returns both the raw API result (for --json) and the human rendering.

import type { AdminClient } from "./admin-client";
import { UsageError, type FlagSpec, type FlagValue } from "./args";

export interface CliContext {
  /** Built on first use, so help and usage errors never need a config or a running node. */
  client(): AdminClient;
}

export interface Invocation {
  positional: string[];
  flags: Record<string, FlagValue>;
}

export interface CommandOutput {
  /** Printed with --json. */
  json: unknown;
  /** Printed otherwise. */
  text: string;
  /** Guidance for a person, printed to stderr after the text (not with --json), so that
   * stdout stays one scriptable value (`bunker node id | cut -d@ -f1`). */
  hint?: string;
}

export interface Command {
  /** Words after the group, e.g. "create" in `bunker key create`. */
  name: string;
  /** Names of the required positional arguments, e.g. ["KEY"]. */
  args: string[];
  /** The last argument takes one or more values (`NODE...`). */
  variadic?: boolean;
  flags: FlagSpec[];
  summary: string;
  run(ctx: CliContext, inv: Invocation): Promise<CommandOutput>;
}

export interface CommandGroup {
  name: string;
  summary: string;
  commands: Command[];
}

export const YES_FLAG: FlagSpec = { name: "yes", help: "confirm this destructive operation" };

/** Destructive commands refuse before sending anything unless --yes was given. */
export function requireYes(inv: Invocation, action: string): void {
  if (inv.flags.yes !== true) throw new UsageError(`refusing to ${action} without --yes`);
}

/** A valued flag's value; undefined when it was not given. */
export function stringFlag(inv: Invocation, name: string): string | undefined {
  const value = inv.flags[name];
  return typeof value === "string" ? value : undefined;
}

/** A repeatable flag's values, in order; empty when it was not given. */
export function listFlag(inv: Invocation, name: string): string[] {
  const value = inv.flags[name];
  return Array.isArray(value) ? value : [];
}

/** Human rendering of permissions, Garage style: `RWO`, `R--`. */
export function permissionLetters(p: { read: boolean; write: boolean; owner: boolean }): string {
  return `${p.read ? "R" : "-"}${p.write ? "W" : "-"}${p.owner ? "O" : "-"}`;
}

/** Bucket and node ids are 64 hex digits; tables show a prefix (bucket commands accept it back). */
export const SHORT_ID_CHARS = 16;

export function shortId(id: string): string {
  return id.slice(0, SHORT_ID_CHARS);
}

/** Timestamps as the API gives them, or a dash when unknown. */
export function dateOrDash(value: string | null | undefined): string {
  return value ?? "-";
}
