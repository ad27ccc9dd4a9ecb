// `bunker layout ...`: the roles of nodes in the cluster (zone, capacity or gateway, tags)
// and the zone redundancy, Garage's way: changes are staged, previewed by `layout show`, and
// take effect with `layout apply --version N`. A NODE argument is a node id or a prefix of
// one, matched against the nodes the cluster knows and those in the layout.

import type {
  AdminClient,
  AssignedRole,
  ClusterLayout,
  ClusterLayoutHistory,
  LayoutNodeRole,
  LayoutPreview,
  RoleChange,
  ZoneRedundancy,
} from "../admin-client";
import { UsageError, type FlagSpec } from "../args";
import {
  YES_FLAG,
  listFlag,
  requireYes,
  shortId,
  stringFlag,
  type Command,
  type CommandGroup,
  type Invocation,
} from "../command";
import { formatBytes, formatTable, heading } from "../table";

/** Garage's capacity units (the bytesize crate): K, M, G, T, P are decimal, Ki..Pi binary. */
const CAPACITY_UNITS: Record<string, number> = {
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  p: 1e15,
  pb: 1e15,
  ki: 1024,
  kib: 1024,
  mi: 1024 ** 2,
  mib: 1024 ** 2,
  gi: 1024 ** 3,
  gib: 1024 ** 3,
  ti: 1024 ** 4,
  tib: 1024 ** 4,
  pi: 1024 ** 5,
  pib: 1024 ** 5,
};

const CAPACITY_EXAMPLES = "e.g. 100G, 1T, 500M, 10GB or 2TiB";

/** "100G" -> 100e9, "2TiB" -> 2 * 1024^4, "1.5T", "100 GB"; a bare integer is bytes. */
export function parseCapacity(text: string): number {
  const m = /^(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)$/i.exec(text.trim());
  const factor = m ? CAPACITY_UNITS[m[2]!.toLowerCase() || "b"] : undefined;
  if (!m || factor === undefined || (m[2] === "" && !/^\d+$/.test(m[1]!))) {
    throw new UsageError(`cannot read capacity '${text}' (${CAPACITY_EXAMPLES})`);
  }
  const bytes = Math.round(Number(m[1]) * factor);
  if (bytes <= 0) throw new UsageError("capacity must be more than 0 bytes (use -g for a node that stores nothing)");
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`capacity '${text}' is too large`);
  return bytes;
}

/** "maximum" (also Garage's "max" and "none") or a number of zones. */
export function parseZoneRedundancy(text: string): ZoneRedundancy {
  const t = text.trim().toLowerCase();
  if (t === "maximum" || t === "max" || t === "none") return "maximum";
  if (/^\d+$/.test(t) && Number(t) >= 1 && Number.isSafeInteger(Number(t))) return { atLeast: Number(t) };
  throw new UsageError(`zone redundancy must be 'maximum' or a number of zones (got '${text}')`);
}

export function zoneRedundancyText(z: ZoneRedundancy): string {
  return z === "maximum" ? "maximum" : String(z.atLeast);
}

/** The one candidate id starting with `ref` (case-insensitive; an `@addr` tail is ignored). */
export function matchNode(candidates: Iterable<string>, ref: string): string {
  const pattern = ref.split("@")[0]!.toLowerCase();
  if (pattern === "") throw new UsageError("empty node id");
  const matches = [...new Set(candidates)].filter((id) => id.startsWith(pattern));
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw new Error(`no node matches '${ref}' (see 'bunker status')`);
  throw new Error(`'${ref}' matches ${matches.length} nodes (${matches.map(shortId).join(", ")}): give more of the id`);
}

/** The role a node will have once the staged changes apply: staged first, then current. */
export function stagedOrCurrentRole(layout: ClusterLayout, id: string): AssignedRole | null {
  const staged = layout.stagedRoleChanges.find((c) => c.id === id);
  if (staged) {
    if (staged.remove === true || staged.zone === undefined) return null;
    return { zone: staged.zone, capacity: staged.capacity ?? null, tags: staged.tags ?? [] };
  }
  const current = layout.roles.find((r) => r.id === id);
  return current ? { zone: current.zone, capacity: current.capacity, tags: current.tags } : null;
}

/** Ids the cluster knows of: connected or remembered nodes, and every node in the layout. */
async function knownNodes(client: AdminClient): Promise<{ ids: string[]; layout: ClusterLayout }> {
  const [status, layout] = await Promise.all([client.getClusterStatus(), client.getClusterLayout()]);
  const ids = [
    ...status.nodes.map((n) => n.id),
    ...layout.roles.map((r) => r.id),
    ...layout.stagedRoleChanges.map((c) => c.id),
  ];
  return { ids, layout };
}

function hasStagedChanges(layout: ClusterLayout): boolean {
  return layout.stagedRoleChanges.length > 0 || layout.stagedParameters !== null;
}

function capacityText(capacity: number | null | undefined): string {
  return capacity === null || capacity === undefined ? "gateway" : formatBytes(capacity);
}

function usableCapacity(role: LayoutNodeRole, partitionSize: number): number | undefined {
  if (role.capacity === null) return undefined;
  if (typeof role.usableCapacity === "number") return role.usableCapacity;
  if (typeof role.storedPartitions === "number" && partitionSize > 0) return role.storedPartitions * partitionSize;
  return undefined;
}

/** Roles as Garage prints them; the partition and usable-capacity columns only when known. */
function roleTable(layout: ClusterLayout): string {
  const usable = layout.roles.map((r) => usableCapacity(r, layout.partitionSize));
  const withPartitions = layout.roles.some((r) => typeof r.storedPartitions === "number");
  const withUsable = usable.some((u) => u !== undefined);
  const header = ["ID", "Tags", "Zone", "Capacity"];
  if (withPartitions) header.push("Partitions");
  if (withUsable) header.push("Usable capacity");
  const rows = layout.roles.map((r, i) => {
    const row = [shortId(r.id), r.tags.join(","), r.zone, capacityText(r.capacity)];
    if (withPartitions) row.push(typeof r.storedPartitions === "number" ? String(r.storedPartitions) : "");
    if (withUsable) {
      const u = usable[i];
      row.push(u === undefined ? "" : `${formatBytes(u)} (${((100 * u) / r.capacity!).toFixed(1)}%)`);
    }
    return row;
  });
  return formatTable(header, rows);
}

function layoutBlock(layout: ClusterLayout, empty: string): string {
  if (layout.roles.length === 0) return empty;
  return `${roleTable(layout)}\n\nZone redundancy: ${zoneRedundancyText(layout.parameters.zoneRedundancy)}`;
}

function stagedBlock(layout: ClusterLayout): string {
  const parts: string[] = [];
  if (layout.stagedRoleChanges.length > 0) {
    parts.push(
      formatTable(
        ["ID", "Tags", "Zone", "Capacity"],
        layout.stagedRoleChanges.map((c) =>
          c.remove === true
            ? [shortId(c.id), "REMOVED"]
            : [shortId(c.id), (c.tags ?? []).join(","), c.zone ?? "", capacityText(c.capacity)],
        ),
      ),
    );
  }
  if (layout.stagedParameters !== null) {
    parts.push(`Zone redundancy: ${zoneRedundancyText(layout.stagedParameters.zoneRedundancy)}`);
  }
  return `${heading("STAGED ROLE CHANGES")}\n${parts.join("\n\n")}`;
}

const REVERT_HINT = "You can also revert all proposed changes with: bunker layout revert --yes";

function previewBlock(preview: LayoutPreview, nextVersion: number): string {
  if (preview.error !== undefined) {
    return [
      `Error while trying to compute the assignment: ${preview.error}`,
      "This new layout cannot yet be applied.",
      REVERT_HINT,
    ].join("\n");
  }
  const parts: string[] = [];
  if (preview.newLayout) {
    parts.push(
      `${heading("NEW CLUSTER LAYOUT AFTER APPLYING CHANGES")}\n${layoutBlock(preview.newLayout, "No nodes have a role in the new layout.")}`,
    );
  }
  if (preview.message && preview.message.length > 0) parts.push(preview.message.join("\n"));
  parts.push(
    `To enact the staged role changes, type:\n\n    bunker layout apply --version ${nextVersion}\n\n${REVERT_HINT}`,
  );
  return parts.join("\n\n");
}

function renderShow(layout: ClusterLayout, preview: LayoutPreview | null): string {
  const current = layoutBlock(
    layout,
    "No nodes currently have a role in the cluster.\nSee `bunker status` to view available nodes.",
  );
  const sections = [
    `${heading("CURRENT CLUSTER LAYOUT")}\n${current}\n\nCurrent cluster layout version: ${layout.version}`,
  ];
  if (hasStagedChanges(layout)) sections.push(stagedBlock(layout));
  if (preview !== null) sections.push(previewBlock(preview, layout.version + 1));
  return sections.join("\n\n");
}

function stagedMessage(what: string, layout: ClusterLayout): string {
  return [
    `${what} staged but not yet committed.`,
    "Use `bunker layout show` to view staged changes,",
    `and \`bunker layout apply --version ${layout.version + 1}\` to enact staged changes.`,
  ].join("\n");
}

const show: Command = {
  name: "show",
  args: [],
  flags: [],
  summary: "show the current roles, the staged changes and the layout they would give",
  run: async (ctx) => {
    const client = ctx.client();
    const layout = await client.getClusterLayout();
    const preview = hasStagedChanges(layout) ? await client.previewClusterLayoutChanges() : null;
    return { json: { layout, preview }, text: renderShow(layout, preview) };
  },
};

const ASSIGN_FLAGS: FlagSpec[] = [
  { name: "zone", short: "z", value: "ZONE", help: "zone (datacenter) of the node; required for a node without a role" },
  { name: "capacity", short: "c", value: "SIZE", help: "storage capacity: bytes, or 100G, 1T (decimal), 2TiB, 512Gi (binary)" },
  { name: "gateway", short: "g", help: "gateway: the node stores no data (instead of -c)" },
  { name: "tag", short: "t", value: "TAG", repeatable: true, help: "tag of the node; replaces its tags" },
  { name: "replace", value: "NODE", repeatable: true, help: "remove that node's role in the same change" },
];

/** The capacity -c/-g ask for: a number, null for a gateway, undefined to keep the current one. */
function requestedCapacity(inv: Invocation): number | null | undefined {
  const capacity = stringFlag(inv, "capacity");
  if (inv.flags.gateway === true) {
    if (capacity !== undefined) throw new UsageError("give either -c or -g, not both");
    return null;
  }
  return capacity === undefined ? undefined : parseCapacity(capacity);
}

const assign: Command = {
  name: "assign",
  args: ["NODE"],
  variadic: true,
  flags: ASSIGN_FLAGS,
  summary: "stage roles for nodes: zone, capacity or gateway, tags",
  run: async (ctx, inv) => {
    const capacity = requestedCapacity(inv);
    const zone = stringFlag(inv, "zone");
    if (zone !== undefined && zone.trim() === "") throw new UsageError("the zone must not be empty");
    const tags = listFlag(inv, "tag");

    const client = ctx.client();
    const { ids, layout } = await knownNodes(client);
    const removals: RoleChange[] = listFlag(inv, "replace").map((ref) => ({ id: matchNode(ids, ref), remove: true }));
    const updates: RoleChange[] = inv.positional.map((ref) => {
      const id = matchNode(ids, ref);
      const current = stagedOrCurrentRole(layout, id);
      const newZone = zone ?? current?.zone;
      if (newZone === undefined) throw new UsageError(`node ${shortId(id)} has no role yet: give its zone with -z`);
      const newCapacity = capacity !== undefined ? capacity : current?.capacity;
      if (newCapacity === undefined) {
        throw new UsageError(`node ${shortId(id)} has no role yet: give its capacity with -c, or -g for a gateway`);
      }
      return { id, zone: newZone, capacity: newCapacity, tags: tags.length > 0 ? tags : (current?.tags ?? []) };
    });

    const updated = await client.updateClusterLayout({ roles: [...removals, ...updates] });
    return { json: updated, text: stagedMessage("Role changes are", updated) };
  },
};

const remove: Command = {
  name: "remove",
  args: ["NODE"],
  flags: [],
  summary: "stage the removal of a node's role",
  run: async (ctx, inv) => {
    const client = ctx.client();
    const { ids } = await knownNodes(client);
    const id = matchNode(ids, inv.positional[0]!);
    const updated = await client.updateClusterLayout({ roles: [{ id, remove: true }] });
    return { json: updated, text: stagedMessage("Role removal is", updated) };
  },
};

const config: Command = {
  name: "config",
  args: [],
  flags: [
    {
      name: "redundancy",
      short: "r",
      value: "N|maximum",
      help: "zone redundancy: each partition in at least N zones, or in as many as possible",
    },
  ],
  summary: "stage layout parameters (zone redundancy)",
  run: async (ctx, inv) => {
    const text = stringFlag(inv, "redundancy");
    if (text === undefined) throw new UsageError("nothing to configure: give -r N or -r maximum");
    const zoneRedundancy = parseZoneRedundancy(text);
    const updated = await ctx.client().updateClusterLayout({ parameters: { zoneRedundancy } });
    return {
      json: updated,
      text: stagedMessage(`The zone redundancy parameter '${zoneRedundancyText(zoneRedundancy)}' is`, updated),
    };
  },
};

const apply: Command = {
  name: "apply",
  args: [],
  flags: [{ name: "version", value: "N", help: "the new layout version: the current one + 1, as `layout show` says" }],
  summary: "apply the staged changes as layout version N",
  run: async (ctx, inv) => {
    const text = stringFlag(inv, "version");
    if (text === undefined) {
      throw new UsageError("missing --version N: the new layout version, as printed by 'bunker layout show'");
    }
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
      throw new UsageError(`--version must be a layout version number (got '${text}')`);
    }
    const result = await ctx.client().applyClusterLayout(Number(text));
    const lines = [
      ...result.message,
      `New cluster layout with updated role assignment has been applied in cluster (version ${result.layout.version}).`,
      "Data will now be moved around between nodes accordingly.",
    ];
    return { json: result, text: lines.join("\n") };
  },
};

const revert: Command = {
  name: "revert",
  args: [],
  flags: [YES_FLAG],
  summary: "drop all staged changes",
  run: async (ctx, inv) => {
    requireYes(inv, "revert the staged layout changes");
    const layout = await ctx.client().revertClusterLayout();
    return { json: layout, text: "All proposed role changes in cluster layout have been canceled." };
  },
};

function renderHistory(h: ClusterLayoutHistory): string {
  const versions = formatTable(
    ["Version", "Status", "Storage nodes", "Gateway nodes"],
    h.versions.map((v) => [`#${v.version}`, v.status, String(v.storageNodes), String(v.gatewayNodes)]),
  );
  const sections = [`${heading("LAYOUT HISTORY")}\n${versions}`];

  const trackers = Object.entries(h.updateTrackers ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const withAck = trackers.some(([, t]) => t.ack !== undefined);
  const withSyncAck = trackers.some(([, t]) => t.syncAck !== undefined);
  const live = h.versions.filter((v) => v.status !== "Historical").length;
  if (trackers.length > 0) {
    const header = ["Node", ...(withAck ? ["Ack"] : []), "Sync", ...(withSyncAck ? ["Sync ack"] : [])];
    const rows = trackers.map(([node, t]) => [
      shortId(node),
      ...(withAck ? [t.ack === undefined ? "" : `#${t.ack}`] : []),
      `#${t.sync}`,
      ...(withSyncAck ? [t.syncAck === undefined ? "" : `#${t.syncAck}`] : []),
    ]);
    sections.push(`${heading("UPDATE TRACKERS")}\n${formatTable(header, rows)}`);
  }
  sections.push(
    live > 1
      ? [
          "Several layout versions are currently live in the cluster, and data is being migrated.",
          "Nodes whose trackers stay behind the current version may be offline or unable to complete a sync.",
        ].join("\n")
      : [
          "Your cluster is currently in a stable state with a single live layout version.",
          "No metadata migration is in progress. Note that the migration of data blocks is not tracked,",
          "so you might want to keep old nodes online until their data directories become empty.",
        ].join("\n"),
  );
  return sections.join("\n\n");
}

const history: Command = {
  name: "history",
  args: [],
  flags: [],
  summary: "show the layout versions and how far each node has synced",
  run: async (ctx) => {
    const h = await ctx.client().getClusterLayoutHistory();
    return { json: h, text: renderHistory(h) };
  },
};

export const layoutCommands: CommandGroup = {
  name: "layout",
  summary: "manage the cluster layout: node roles and zone redundancy",
  commands: [show, assign, remove, config, apply, revert, history],
};
