// `bunker block ...`: the state of this node's block store, starting with the blocks whose
// resync (fetching a copy from another node) keeps failing.

import type { Command, CommandGroup } from "../command";
import { formatTable } from "../table";

const listErrors: Command = {
  name: "list-errors",
  args: [],
  flags: [],
  summary: "list blocks this node should hold but could not fetch, with their retry state",
  run: async (ctx) => {
    const errors = await ctx.client().listBlockErrors();
    const text =
      errors.length === 0
        ? "No block errors."
        : formatTable(
            ["Hash", "Errors", "Next try", "Last error"],
            errors.map((e) => [e.blockHash, String(e.errorCount), new Date(e.nextTryAt).toISOString(), e.lastError ?? ""]),
          );
    return { json: errors, text };
  },
};

export const blockCommands: CommandGroup = {
  name: "block",
  summary: "block store state",
  commands: [listErrors],
};
