// `bunker bucket ...`: buckets and the permissions keys hold on them. A BUCKET argument
// is a global alias (name), a full id, or an id prefix as printed by `bucket list`.

import {
  AdminApiError,
  type AdminClient,
  type BucketInfo,
  type BucketPermissions,
  type InspectedObject,
  type BucketQuotas,
  type UpdateBucketWebsiteAccess,
} from "../admin-client";
import { UsageError, type FlagSpec } from "../args";
import {
  YES_FLAG,
  dateOrDash,
  permissionLetters,
  requireYes,
  shortId,
  stringFlag,
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

/** The website lines of `bucket info`; the documents only when serving is on, as Garage. */
function websiteFields(info: BucketInfo): [string, string][] {
  const fields: [string, string][] = [["Website access", String(info.websiteAccess)]];
  // A node older than websiteConfig sends no such field: then only the boolean is shown.
  const config = info.websiteConfig;
  if (info.websiteAccess && config) {
    fields.push(["  index document", config.indexDocument], ["  error document", config.errorDocument ?? "(not defined)"]);
  }
  return fields;
}

/** The quota lines of `bucket info`, only when a limit is set: most buckets have none. */
function quotaFields(info: BucketInfo): [string, string][] {
  const quotas = info.quotas;
  if (!quotas || (quotas.maxSize === null && quotas.maxObjects === null)) return [];
  return [
    ["Quotas", ""],
    ["  max size", quotas.maxSize === null ? "none" : `${formatBytes(quotas.maxSize)} (${quotas.maxSize} B)`],
    ["  max objects", quotas.maxObjects === null ? "none" : String(quotas.maxObjects)],
  ];
}

function renderBucketInfo(info: BucketInfo): string {
  const fields = formatFields([
    ["Bucket", info.id],
    ["Created", dateOrDash(info.created)],
    ["Global aliases", info.globalAliases.join(", ") || "(none)"],
    ...websiteFields(info),
    ["Size", `${formatBytes(info.bytes)} (${info.bytes} B)`],
    ["Objects", String(info.objects)],
    ["Unfinished uploads", String(info.unfinishedUploads)],
    ...quotaFields(info),
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

/** Garage's default for `bucket website --allow`. */
const DEFAULT_INDEX_DOCUMENT = "index.html";

const WEBSITE_FLAGS: FlagSpec[] = [
  { name: "allow", help: "serve the bucket as a website on the web endpoint" },
  { name: "deny", help: "stop serving the bucket as a website" },
  {
    name: "index-document",
    short: "i",
    value: "NAME",
    help: `appended to request paths ending in '/' (default: ${DEFAULT_INDEX_DOCUMENT}); with --allow`,
  },
  { name: "error-document", short: "e", value: "KEY", help: "object served for a missing page; with --allow" },
];

/** The UpdateBucket change the flags ask for; `current` keeps an error document already set,
 * as Garage does, so re-allowing to change the index does not silently drop it. */
function requestedWebsiteAccess(inv: Invocation, current: BucketInfo): UpdateBucketWebsiteAccess {
  if (inv.flags.deny === true) return { enabled: false };
  const access: UpdateBucketWebsiteAccess = {
    enabled: true,
    indexDocument: stringFlag(inv, "index-document") ?? DEFAULT_INDEX_DOCUMENT,
  };
  const errorDocument = stringFlag(inv, "error-document") ?? current.websiteConfig?.errorDocument;
  if (errorDocument != null) access.errorDocument = errorDocument;
  return access;
}

/** Checked before any request, so a wrong invocation changes nothing. */
function checkWebsiteFlags(inv: Invocation): void {
  if ((inv.flags.allow === true) === (inv.flags.deny === true)) throw new UsageError("give exactly one of --allow or --deny");
  if (inv.flags.deny === true && (inv.flags["index-document"] !== undefined || inv.flags["error-document"] !== undefined)) {
    throw new UsageError("--index-document and --error-document only go with --allow");
  }
}

/** Where the web endpoint finds the bucket: it maps the request's host name to a global alias. */
function websiteLocation(info: BucketInfo): string {
  const name = info.globalAliases[0];
  if (name === undefined) return "This bucket has no global alias, so the web endpoint (s3_web) cannot serve it yet.";
  return `Website served by the web endpoint (s3_web) for host ${name} (or ${name}.<root_domain> with s3_web.root_domain).`;
}

const website: Command = {
  name: "website",
  args: ["BUCKET"],
  flags: WEBSITE_FLAGS,
  summary: "allow or deny serving a bucket as a website",
  run: async (ctx, inv) => {
    checkWebsiteFlags(inv);
    const client = ctx.client();
    const bucket = await resolveBucket(client, inv.positional[0]!);
    const updated = await client.updateBucket(bucket.id, { websiteAccess: requestedWebsiteAccess(inv, bucket) });
    const text = renderBucketInfo(updated);
    return { json: updated, text: inv.flags.allow === true ? `${text}\n\n${websiteLocation(updated)}` : text };
  },
};

/** The value that lifts a limit, as in Garage. */
const NO_LIMIT = "none";

const QUOTA_FLAGS: FlagSpec[] = [
  {
    name: "max-size",
    value: "SIZE",
    help: `total size of the objects: bytes, or 10G, 500M, 1.5T (decimal), 2GiB, 100Ki (binary); ${NO_LIMIT} for no limit`,
  },
  { name: "max-objects", value: "N", help: `number of objects; ${NO_LIMIT} for no limit` },
];

/** Garage reads --max-size with the bytesize crate, as `layout assign -c`: K, M, G, T, P are
 * decimal, Ki..Pi binary, with an optional B. Not config.ts's parseSize, where a bare "G" is
 * binary: a quota set from a Garage script must come out the same size here. */
const SIZE_PATTERN = /^(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgtp])(i?)b?|b)?$/i;
const SIZE_PREFIXES = "kmgtp";
const SIZE_EXAMPLES = "e.g. 10G, 500M, 1.5T, 100KiB or a number of bytes";

/** "10G" -> 10e9, "100KiB" -> 102400; a count without a unit is whole bytes. */
export function parseQuotaSize(text: string): number {
  const m = SIZE_PATTERN.exec(text.trim());
  const unit = m?.[2];
  if (!m || (unit === undefined && !/^\d+$/.test(m[1]!))) {
    throw new UsageError(`--max-size: cannot read size '${text}' (${SIZE_EXAMPLES}, or ${NO_LIMIT})`);
  }
  const power = unit === undefined ? 0 : SIZE_PREFIXES.indexOf(unit.toLowerCase()) + 1;
  const bytes = Math.round(Number(m[1]) * (m[3] ? 1024 : 1000) ** power);
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`--max-size: '${text}' is too large`);
  return bytes;
}

/** A whole number of objects, as Garage's u64. */
export function parseQuotaObjects(text: string): number {
  const count = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(count)) {
    throw new UsageError(`--max-objects: cannot read '${text}' (a whole number of objects, or ${NO_LIMIT})`);
  }
  return count;
}

/** A quota flag as a limit, null to lift it, or undefined when not given (the current one stays). */
function quotaFlag(inv: Invocation, name: string, parse: (text: string) => number): number | null | undefined {
  const text = stringFlag(inv, name);
  if (text === undefined) return undefined;
  // Said apart from a mistyped value: "-5" reaches us as a value, not as a flag.
  if (text.trim().startsWith("-")) throw new UsageError(`--${name} cannot be negative`);
  return text.trim() === NO_LIMIT ? null : parse(text);
}

/** Both flags read before any request, so a wrong invocation changes nothing. */
function requestedQuotas(inv: Invocation): { maxSize: number | null | undefined; maxObjects: number | null | undefined } {
  const maxSize = quotaFlag(inv, "max-size", parseQuotaSize);
  const maxObjects = quotaFlag(inv, "max-objects", parseQuotaObjects);
  if (maxSize === undefined && maxObjects === undefined) {
    throw new UsageError("nothing to set: give --max-size and/or --max-objects");
  }
  return { maxSize, maxObjects };
}

const setQuotas: Command = {
  name: "set-quotas",
  args: ["BUCKET"],
  flags: QUOTA_FLAGS,
  summary: "limit the total size and number of objects of a bucket",
  run: async (ctx, inv) => {
    const requested = requestedQuotas(inv);
    const client = ctx.client();
    const bucket = await resolveBucket(client, inv.positional[0]!);
    // UpdateBucket replaces the quotas as a whole: a flag not given sends the current value.
    const current = bucket.quotas;
    const quotas: BucketQuotas = {
      maxSize: requested.maxSize !== undefined ? requested.maxSize : (current?.maxSize ?? null),
      maxObjects: requested.maxObjects !== undefined ? requested.maxObjects : (current?.maxObjects ?? null),
    };
    return bucketOutput(await client.updateBucket(bucket.id, { quotas }));
  },
};

const alias: Command = {
  name: "alias",
  args: ["BUCKET", "NEW_NAME"],
  flags: [],
  summary: "give a bucket another global alias (name)",
  run: async (ctx, inv) => {
    const client = ctx.client();
    const bucket = await resolveBucket(client, inv.positional[0]!);
    return bucketOutput(await client.addBucketAlias(bucket.id, inv.positional[1]!));
  },
};

const unalias: Command = {
  name: "unalias",
  args: ["NAME"],
  flags: [],
  summary: "remove a global alias from its bucket (not its only one)",
  run: async (ctx, inv) => {
    const name = inv.positional[0]!;
    const client = ctx.client();
    // NAME is an alias, never an id: the bucket is looked up by that name only.
    const bucket = await client.getBucketInfo({ globalAlias: name });
    return bucketOutput(await client.removeBucketAlias(bucket.id, name));
  },
};

/** Garage's default for `bucket cleanup-incomplete-uploads --older-than`. */
const DEFAULT_OLDER_THAN = "1d";
const DURATION_PATTERN = /^(\d+)([smhdw]?)$/;
const DURATION_UNIT_SECS: Record<string, number> = { "": 1, s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
const DURATION_EXAMPLES = "e.g. 30m, 12h, 1d, 2w or a number of seconds";

/** "30m" -> 1800, "2w" -> 1209600; a count without a unit is seconds. */
export function parseDurationSecs(text: string): number {
  const trimmed = text.trim();
  if (trimmed.startsWith("-")) throw new UsageError("--older-than cannot be negative");
  const m = DURATION_PATTERN.exec(trimmed);
  if (!m) throw new UsageError(`--older-than: cannot read duration '${text}' (${DURATION_EXAMPLES})`);
  const secs = Number(m[1]) * DURATION_UNIT_SECS[m[2]!]!;
  if (!Number.isSafeInteger(secs)) throw new UsageError(`--older-than: '${text}' is too large`);
  return secs;
}

const cleanupIncompleteUploads: Command = {
  name: "cleanup-incomplete-uploads",
  args: ["BUCKET"],
  variadic: true,
  flags: [
    {
      name: "older-than",
      value: "DURATION",
      help: `abort multipart uploads started longer ago than this: ${DURATION_EXAMPLES} (default: ${DEFAULT_OLDER_THAN})`,
    },
  ],
  summary: "abort a bucket's multipart uploads that were never completed",
  run: async (ctx, inv) => {
    const olderThanSecs = parseDurationSecs(stringFlag(inv, "older-than") ?? DEFAULT_OLDER_THAN);
    const client = ctx.client();
    // Every bucket resolved first, so a mistyped one aborts nothing; one named twice is cleaned once.
    const buckets = new Map<string, BucketInfo>();
    for (const ref of inv.positional) {
      const bucket = await resolveBucket(client, ref);
      if (!buckets.has(bucket.id)) buckets.set(bucket.id, bucket);
    }
    const results: { bucket: string; name: string | null; uploadsDeleted: number }[] = [];
    const lines: string[] = [];
    for (const bucket of buckets.values()) {
      const { uploadsDeleted } = await client.cleanupIncompleteUploads(bucket.id, olderThanSecs);
      results.push({ bucket: bucket.id, name: bucket.globalAliases[0] ?? null, uploadsDeleted });
      lines.push(`${bucketLabel(bucket)}: ${uploadsDeleted} incomplete uploads aborted`);
    }
    return { json: results, text: lines.join("\n") };
  },
};

/** One line per version, newest last, then its blocks: what `inspect-object` prints. */
export function renderInspectedObject(o: InspectedObject): string {
  const state = (v: InspectedObject["versions"][number]) =>
    v.uploading ? "uploading" : v.aborted ? "aborted" : v.deleteMarker ? "delete marker" : v.inline ? "complete (inline)" : "complete";
  const out = [heading(`OBJECT ${o.key} IN BUCKET ${shortId(o.bucketId)}`)];
  out.push(
    formatTable(
      ["Version", "Timestamp", "State", "Size", "ETag", "Blocks"],
      o.versions.map((v) => [shortId(v.uuid), v.timestamp, state(v), v.size === null ? "-" : String(v.size), v.etag ?? "-", String(v.blocks.length)]),
    ),
  );
  for (const v of o.versions) {
    if (v.blocks.length === 0) continue;
    out.push("", heading(`BLOCKS OF VERSION ${shortId(v.uuid)}`));
    out.push(formatTable(["Part", "Offset", "Size", "Hash"], v.blocks.map((b) => [String(b.partNumber), String(b.offset), String(b.size), b.hash])));
  }
  return out.join("\n");
}

const inspectObject: Command = {
  name: "inspect-object",
  args: ["BUCKET", "KEY"],
  flags: [],
  summary: "show every stored version of an object and its blocks (debugging)",
  run: async (ctx, inv) => {
    const client = ctx.client();
    const bucket = await resolveBucket(client, inv.positional[0]!);
    const inspected = await client.inspectObject(bucket.id, inv.positional[1]!);
    return { json: inspected, text: renderInspectedObject(inspected) };
  },
};

export const bucketCommands: CommandGroup = {
  name: "bucket",
  summary: "manage buckets and key permissions",
  commands: [
    create,
    list,
    info,
    del,
    permissionChange("allow"),
    permissionChange("deny"),
    website,
    setQuotas,
    alias,
    unalias,
    cleanupIncompleteUploads,
    inspectObject,
  ],
};
