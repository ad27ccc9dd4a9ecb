// `bunker key ...`: access keys. A KEY argument is an id, an id prefix or a name; the
// node resolves it (GetKeyInfo?search) and refuses ambiguous matches.

import type { KeyInfo } from "../admin-client";
import { UsageError } from "../args";
import {
  YES_FLAG,
  dateOrDash,
  permissionLetters,
  requireYes,
  shortId,
  type Command,
  type CommandGroup,
  type CommandOutput,
  type Invocation,
} from "../command";
import { formatFields, formatTable, heading } from "../table";

const CREATE_BUCKET_FLAG = { name: "create-bucket", help: "the permission to create buckets" };

function renderKeyInfo(info: KeyInfo): string {
  const fields = formatFields([
    ["Key ID", info.accessKeyId],
    ["Key name", info.name],
    ["Secret key", info.secretAccessKey ?? "(redacted)"],
    ["Created", dateOrDash(info.created)],
    ["Expiration", info.expired ? `expired (${dateOrDash(info.expiration)})` : (info.expiration ?? "never")],
    ["Can create buckets", String(info.permissions.createBucket)],
  ]);
  const buckets =
    info.buckets.length === 0
      ? "(none)"
      : formatTable(
          ["Permissions", "ID", "Global aliases", "Local aliases"],
          info.buckets.map((b) => [
            permissionLetters(b.permissions),
            shortId(b.id),
            b.globalAliases.join(", "),
            b.localAliases.join(", "),
          ]),
        );
  return `${heading("ACCESS KEY INFORMATION")}\n${fields}\n\n${heading("BUCKETS FOR THIS KEY")}\n${buckets}`;
}

function keyOutput(info: KeyInfo): CommandOutput {
  return { json: info, text: renderKeyInfo(info) };
}

function requireCreateBucket(inv: Invocation, verb: string): void {
  if (inv.flags["create-bucket"] !== true) throw new UsageError(`nothing to ${verb}: give --create-bucket`);
}

const create: Command = {
  name: "create",
  args: ["NAME"],
  flags: [],
  summary: "create an access key (the secret is shown once)",
  run: async (ctx, inv) => keyOutput(await ctx.client().createKey(inv.positional[0]!)),
};

const list: Command = {
  name: "list",
  args: [],
  flags: [],
  summary: "list access keys",
  run: async (ctx) => {
    const keys = await ctx.client().listKeys();
    const text = formatTable(
      ["ID", "Created", "Name", "Expiration"],
      keys.map((k) => [k.id, dateOrDash(k.created), k.name, k.expired ? "expired" : (k.expiration ?? "never")]),
    );
    return { json: keys, text };
  },
};

const info: Command = {
  name: "info",
  args: ["KEY"],
  flags: [{ name: "show-secret", help: "include the secret access key" }],
  summary: "show an access key and its buckets",
  run: async (ctx, inv) =>
    keyOutput(await ctx.client().getKeyInfo({ search: inv.positional[0]! }, inv.flags["show-secret"] === true)),
};

const importKey: Command = {
  name: "import",
  args: ["ID", "SECRET"],
  flags: [{ name: "name", short: "n", value: "NAME", help: "name of the imported key" }],
  summary: "import an existing key id and secret (e.g. from Garage)",
  run: async (ctx, inv) => {
    const name = inv.flags.name;
    const [id, secret] = inv.positional as [string, string];
    return keyOutput(await ctx.client().importKey(id, secret, typeof name === "string" ? name : undefined));
  },
};

const del: Command = {
  name: "delete",
  args: ["KEY"],
  flags: [YES_FLAG],
  summary: "delete an access key",
  run: async (ctx, inv) => {
    const ref = inv.positional[0]!;
    requireYes(inv, `delete key ${ref}`);
    const client = ctx.client();
    const key = await client.getKeyInfo({ search: ref });
    const result = await client.deleteKey(key.accessKeyId);
    return { json: result, text: `Key ${key.accessKeyId} (${key.name}) was deleted.` };
  },
};

function permissionChange(verb: "allow" | "deny"): Command {
  return {
    name: verb,
    args: ["KEY"],
    flags: [CREATE_BUCKET_FLAG],
    summary: verb === "allow" ? "let a key create buckets" : "stop a key from creating buckets",
    run: async (ctx, inv) => {
      requireCreateBucket(inv, verb);
      const client = ctx.client();
      const key = await client.getKeyInfo({ search: inv.positional[0]! });
      return keyOutput(await client.updateKey(key.accessKeyId, { [verb]: { createBucket: true } }));
    },
  };
}

export const keyCommands: CommandGroup = {
  name: "key",
  summary: "manage access keys",
  commands: [create, list, info, importKey, del, permissionChange("allow"), permissionChange("deny")],
};
