// `bunker worker list` and `bunker repair tables|blocks|scrub`: what this node's background workers
// (anti-entropy, resync, GC, ...) are doing, and starting a repair pass by hand.

import type { Command, CommandGroup } from "../command";
import { formatTable } from "../table";

function ago(at: number | null, now: number): string {
  if (at === null) return "never";
  const s = Math.max(0, Math.round((now - at) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

const list: Command = {
  name: "list",
  args: [],
  flags: [],
  summary: "list this node's background workers: state, passes, errors, queue",
  run: async (ctx) => {
    const workers = await ctx.client().listWorkers();
    const now = Date.now();
    const text = formatTable(
      ["Worker", "State", "Passes", "Errors", "Queue", "Last run", "Last error"],
      workers.map((w) => [w.name, w.state, String(w.passes), String(w.errors), w.queueLength === undefined ? "-" : String(w.queueLength), ago(w.lastStartedAt, now), w.lastError ?? ""]),
    );
    return { json: workers, text };
  },
};

export const workerCommands: CommandGroup = {
  name: "worker",
  summary: "background workers",
  commands: [list],
};

const REPAIRS = {
  tables: "a full anti-entropy pass over every table, with every replica",
  blocks: "a check of every block this node should hold; missing ones are fetched",
  scrub: "a scrub: every stored block is read and checked against its hash; corrupted ones are fetched again",
  lifecycle: "a lifecycle pass: expired objects are deleted and stale multipart uploads aborted, as the buckets' rules say",
} as const;

const repairCommand = (kind: keyof typeof REPAIRS): Command => ({
  name: kind,
  args: [],
  flags: [],
  summary: `start ${REPAIRS[kind]}`,
  run: async (ctx) => {
    const result = await ctx.client().launchRepair(kind);
    const text =
      result.queued !== undefined
        ? `Repair of blocks started: ${result.queued} blocks queued for a check (see \`bunker worker list\`).`
        : kind === "scrub"
          ? `Scrub started: every stored block is read and checked (see \`bunker worker list\`).`
          : kind === "lifecycle"
            ? `Lifecycle pass started: the buckets' rules are applied now (see \`bunker worker list\`).`
            : `Repair of tables started (see \`bunker worker list\`).`;
    return { json: result, text };
  },
});

export const repairCommands: CommandGroup = {
  name: "repair",
  summary: "start a repair pass on this node",
  commands: [repairCommand("tables"), repairCommand("blocks"), repairCommand("scrub"), repairCommand("lifecycle")],
};
