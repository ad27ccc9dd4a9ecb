// `bunker bucket ...`: buckets and the permissions keys hold on them. A BUCKET argument
// is a global alias (name), a full id, or an id prefix as printed by `bucket list`.

import { AdminApiError, type AdminClient, type BucketInfo, type BucketPermissions } from "../admin-client";
import { UsageError, type FlagSpec } from "../args";
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
import { formatBytes, formatFields, formatTable, heading } from "../table";

const FULL_BUCKET_ID = /^[0-9a-f]{64}$/;
const BUCKET_ID_PREFIX = /^[0-9a-f]+$/;
const HTTP_NOT_FOUND = 404;

/** Names first: a bucket may well be called "cafe"; only then an id prefix. A full id
 * (64 hex) is never a name, as S3 bucket names stop at 63 characters. */
export async function resolveBucket(client: AdminClient, ref: string): Promise<BucketInfo> {
  if (FULL_BUCKET_ID.test(ref)) return client.getBucketInfo({ id: ref });
  try {
    return await client.getBucketInfo({ globalAlias: ref });
  } catch (err) {
    const notFound = err instanceof AdminApiError && err.status === HTTP_NOT_FOUND;
    if (notFound && BUCKET_ID_PREFIX.test(ref)) return client.getBucketInfo({ search: ref });
    throw err;
  }
}

function bucketLabel(info: BucketInfo): string {
  return info.globalAliases[0] ?? shortId(info.id);
}

function renderBucketInfo(info: BucketInfo): string {
  const fields = formatFields([
    ["Bucket", info.id],
    ["Created", dateOrDash(info.created)],
    ["Global aliases", info.globalAliases.join(", ") || "(none)"],
    ["Website access", String(info.websiteAccess)],
    ["Size", `${formatBytes(info.bytes)} (${info.bytes} B)`],
    ["Objects", String(info.objects)],
    ["Unfinished uploads", String(info.unfinishedUploads)],
  ]);
  const keys =
    info.keys.length === 0
      ? "(none)"
      : formatTable(
          ["Permissions", "Access key", "Name", "Local aliases"],
          info.keys.map((k) => [
            permissionLetters(k.permissions),
            k.accessKeyId,
            k.name,
            k.bucketLocalAliases.join(", "),
          ]),
        );
  return `${heading("BUCKET INFORMATION")}\n${fields}\n\n${heading("KEYS FOR THIS BUCKET")}\n${keys}`;
}

function bucketOutput(info: BucketInfo): CommandOutput {
  return { json: info, text: renderBucketInfo(info) };
}

const create: Command = {
  name: "create",
  args: ["NAME"],
  flags: [],
  summary: "create a bucket",
  run: async (ctx, inv) => bucketOutput(await ctx.client().createBucket(inv.positional[0]!)),
};

const list: Command = {
  name: "list",
  args: [],
  flags: [],
  summary: "list buckets",
  run: async (ctx) => {
    const buckets = await ctx.client().listBuckets();
    const text = formatTable(
      ["ID", "Created", "Global aliases", "Local aliases"],
      buckets.map((b) => [
        shortId(b.id),
        dateOrDash(b.created),
        b.globalAliases.join(", "),
        b.localAliases.map((l) => `${l.accessKeyId}:${l.alias}`).join(", "),
      ]),
    );
    return { json: buckets, text };
  },
};

const info: Command = {
  name: "info",
  args: ["BUCKET"],
  flags: [],
  summary: "show a bucket, its size and the keys that can use it",
  run: async (ctx, inv) => bucketOutput(await resolveBucket(ctx.client(), inv.positional[0]!)),
};

const del: Command = {
  name: "delete",
  args: ["BUCKET"],
  flags: [YES_FLAG],
  summary: "delete an empty bucket",
  run: async (ctx, inv) => {
    const ref = inv.positional[0]!;
    requireYes(inv, `delete bucket ${ref}`);
    const client = ctx.client();
    const bucket = await resolveBucket(client, ref);
    const result = await client.deleteBucket(bucket.id);
    return { json: result, text: `Bucket ${bucketLabel(bucket)} (${bucket.id}) was deleted.` };
  },
};

const PERMISSION_FLAGS: FlagSpec[] = [
  { name: "read", help: "read objects" },
  { name: "write", help: "write and delete objects" },
  { name: "owner", help: "change the bucket's configuration" },
  { name: "key", value: "KEY", help: "the access key (id, id prefix or name); required" },
];

function requestedPermissions(inv: Invocation, verb: string): BucketPermissions {
  const permissions = {
    read: inv.flags.read === true,
    write: inv.flags.write === true,
    owner: inv.flags.owner === true,
  };
  if (!permissions.read && !permissions.write && !permissions.owner) {
    throw new UsageError(`nothing to ${verb}: give --read, --write and/or --owner`);
  }
  return permissions;
}

function permissionChange(verb: "allow" | "deny"): Command {
  return {
    name: verb,
    args: ["BUCKET"],
    flags: PERMISSION_FLAGS,
    summary: verb === "allow" ? "grant a key permissions on a bucket" : "revoke a key's permissions on a bucket",
    run: async (ctx, inv) => {
      const permissions = requestedPermissions(inv, verb);
      const keyRef = inv.flags.key;
      if (typeof keyRef !== "string") throw new UsageError("missing --key KEY");
      const client = ctx.client();
      const bucket = await resolveBucket(client, inv.positional[0]!);
      const key = await client.getKeyInfo({ search: keyRef });
      const updated =
        verb === "allow"
          ? await client.allowBucketKey(bucket.id, key.accessKeyId, permissions)
          : await client.denyBucketKey(bucket.id, key.accessKeyId, permissions);
      const held = updated.keys.find((k) => k.accessKeyId === key.accessKeyId)?.permissions;
      const letters = permissionLetters(held ?? { read: false, write: false, owner: false });
      return {
        json: updated,
        text: `Permissions of key ${key.accessKeyId} (${key.name}) on bucket ${bucketLabel(updated)}: ${letters}`,
      };
    },
  };
}

export const bucketCommands: CommandGroup = {
  name: "bucket",
  summary: "manage buckets and key permissions",
  commands: [create, list, info, del, permissionChange("allow"), permissionChange("deny")],
};
