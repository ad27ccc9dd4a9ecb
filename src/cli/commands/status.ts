// `bunker status`: cluster health and the nodes, up ones first, as Garage prints them.
// --json prints `{ status: GetClusterStatus, health: GetClusterHealth }`.

import type { ClusterHealth, ClusterStatus, NodeStatus } from "../admin-client";
import { shortId, type Command } from "../command";
import { formatBytes, formatFields, formatTable, heading } from "../table";

function tags(node: NodeStatus): string {
  return node.role ? node.role.tags.join(",") : "";
}

function capacity(node: NodeStatus): string {
  if (!node.role) return "NO ROLE ASSIGNED";
  return node.role.capacity === null ? "gateway" : formatBytes(node.role.capacity);
}

function dataAvailable(node: NodeStatus): string {
  const p = node.dataPartition;
  if (!p || p.total <= 0) return "?";
  return `${formatBytes(p.available)} (${((100 * p.available) / p.total).toFixed(1)}%)`;
}

function lastSeen(node: NodeStatus): string {
  return node.lastSeenSecsAgo === null ? "never seen" : `${node.lastSeenSecsAgo}s ago`;
}

function nodeCells(node: NodeStatus, self: string): string[] {
  const id = shortId(node.id) + (node.id === self ? " (this node)" : "");
  return [id, node.hostname ?? "?", node.addr ?? "?", tags(node), node.role?.zone ?? "", capacity(node)];
}

function renderStatus(status: ClusterStatus, health: ClusterHealth): string {
  const summary = formatFields([
    ["Cluster health", health.status],
    ["Storage nodes up", `${health.storageNodesOk}/${health.storageNodes}`],
    ["Partitions with quorum", `${health.partitionsQuorum}/${health.partitions}`],
    ["Partitions fully replicated", `${health.partitionsAllOk}/${health.partitions}`],
    ["Layout version", String(status.layoutVersion)],
  ]);
  const columns = ["ID", "Hostname", "Address", "Tags", "Zone", "Capacity"];
  const up = status.nodes.filter((n) => n.isUp);
  const down = status.nodes.filter((n) => !n.isUp);
  const sections = [
    summary,
    `${heading("HEALTHY NODES")}\n${formatTable(
      [...columns, "DataAvail", "Version"],
      up.map((n) => [...nodeCells(n, status.node), dataAvailable(n), n.garageVersion ?? ""]),
    )}`,
  ];
  if (down.length > 0) {
    sections.push(
      `${heading("FAILED NODES")}\n${formatTable(
        [...columns, "Last seen"],
        down.map((n) => [...nodeCells(n, status.node), lastSeen(n)]),
      )}`,
    );
  }
  return sections.join("\n\n");
}

export const statusCommand: Command = {
  name: "status",
  args: [],
  flags: [],
  summary: "show the cluster's health and nodes",
  run: async (ctx) => {
    const client = ctx.client();
    const [status, health] = await Promise.all([client.getClusterStatus(), client.getClusterHealth()]);
    return { json: { status, health }, text: renderStatus(status, health) };
  },
};
