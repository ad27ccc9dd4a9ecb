// `bunker node ...`: this node's identity, and joining nodes into a cluster. A node is
// named `<node id>@<host>:<port>`, the id being its 64-hex public key, as in Garage.

import { UsageError } from "../args";
import type { Command, CommandGroup } from "../command";

/** `<64 hex>@<host>:<port>`; the host may be a name, an IPv4 or a bracketed IPv6 address. */
const PEER = /^[0-9a-f]{64}@(?:\[[0-9a-f:.]+\]|[^\s@:[\]]+):\d{1,5}$/i;

const id: Command = {
  name: "id",
  args: [],
  flags: [{ name: "quiet", short: "q", help: "print only ID@ADDR, without the instructions on stderr" }],
  summary: "print this node's ID@ADDR, the address other nodes connect to",
  run: async (ctx, inv) => {
    const info = await ctx.client().getNodeInfo("self");
    const line = `${info.nodeId}@${info.rpcAddr}`;
    const hint = [
      "",
      "To make another node connect to this one, run on that node:",
      `    bunker [-c FILE] node connect ${line}`,
      "",
      "Then assign it a role with `bunker layout assign` and `bunker layout apply`.",
    ].join("\n");
    return { json: info, text: line, hint: inv.flags.quiet === true ? undefined : hint };
  },
};

const connect: Command = {
  name: "connect",
  args: ["ID@HOST:PORT"],
  flags: [],
  summary: "make this node connect to another one (its ID@ADDR from `bunker node id`)",
  run: async (ctx, inv) => {
    const peer = inv.positional[0]!;
    if (!PEER.test(peer)) {
      throw new UsageError(`expected <node id>@<host>:<port>, as printed by 'bunker node id' (got '${peer}')`);
    }
    const results = await ctx.client().connectClusterNodes([peer]);
    const result = results[0];
    if (result === undefined) throw new Error(`could not connect to ${peer}: the node gave no result`);
    if (!result.success) throw new Error(`could not connect to ${peer}: ${result.error ?? "unknown error"}`);
    return { json: results, text: `Connected to ${peer}.` };
  },
};

export const nodeCommands: CommandGroup = {
  name: "node",
  summary: "node identity and connections",
  commands: [id, connect],
};
