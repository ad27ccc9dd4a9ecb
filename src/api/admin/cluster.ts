// Admin endpoints about the cluster: status, health, node info, connecting nodes, and the
// layout (show, stage, preview, apply, revert, history), with Garage v2 names and shapes.
import { Elysia, t } from "elysia";
import type { ClusterSystem } from "../../cluster/system";
import type { Readiness } from "../../cluster/readiness";
import { PARTITION_COUNT, type NodeRole } from "../../cluster/layout";
import { LayoutError, type ZoneRedundancy } from "../../cluster/assignment";
import {
  applyStaged,
  currentVersion,
  hasStagedChanges,
  LayoutChangeError,
  previewNext,
  readVersion,
  revertStaged,
  stageRole,
  stageZoneRedundancy,
  type AppliedVersion,
  type LayoutHistory,
} from "../../cluster/layout-history";
import { computeAssignment } from "../../cluster/assignment";
import { VERSION_WITH_BUILD } from "../../util/version";

export interface ClusterAdminServices {
  cluster: ClusterSystem;
  /** Start-up readiness: /health answers 503 with the reason until S3 is served. */
  readiness: Pick<Readiness, "notReadyReason">;
  replicationFactor: number;
  now: () => number;
}

/** Raised for requests the layout cannot take; the admin router turns it into a 400. */
export class LayoutRequestError extends Error {}

type ApiZoneRedundancy = "maximum" | { atLeast: number };

const toApiRedundancy = (z: ZoneRedundancy): ApiZoneRedundancy => (z === "maximum" ? "maximum" : { atLeast: z });
const fromApiRedundancy = (z: ApiZoneRedundancy): ZoneRedundancy => (z === "maximum" ? "maximum" : z.atLeast);

function rolesOf(v: AppliedVersion | undefined, withPartitions: boolean) {
  if (!v) return [];
  const perNode = new Map<string, number>();
  if (withPartitions) for (const nodes of v.ring) for (const n of nodes) perNode.set(n, (perNode.get(n) ?? 0) + 1);
  const partitionSize = v ? partitionSizeOf(v) : 0;
  return Object.entries(v.roles)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([id, role]) => ({
      id,
      zone: role.zone,
      capacity: role.capacity,
      tags: role.tags,
      ...(withPartitions ? { storedPartitions: perNode.get(id) ?? 0, usableCapacity: role.capacity === null ? null : (perNode.get(id) ?? 0) * partitionSize } : {}),
    }));
}

function partitionSizeOf(v: AppliedVersion): number {
  try {
    return computeAssignment({ replicationFactor: v.replicationFactor, zoneRedundancy: v.zoneRedundancy, roles: v.roles, previous: v.ring }).partitionSize;
  } catch {
    return 0;
  }
}

function layoutView(h: LayoutHistory) {
  const cur = currentVersion(h);
  return {
    version: h.current,
    roles: rolesOf(cur, true),
    parameters: { zoneRedundancy: toApiRedundancy(cur?.zoneRedundancy ?? "maximum") },
    partitionSize: cur ? partitionSizeOf(cur) : 0,
    stagedRoleChanges: Object.entries(h.staging.roles).map(([id, s]) =>
      s.role === null ? { id, remove: true } : { id, remove: false, zone: s.role.zone, capacity: s.role.capacity, tags: s.role.tags },
    ),
    stagedParameters: h.staging.zoneRedundancy ? { zoneRedundancy: toApiRedundancy(h.staging.zoneRedundancy.v) } : null,
  };
}

const RoleChange = t.Union([
  t.Object({ id: t.String({ pattern: "^[0-9a-f]{64}$" }), remove: t.Literal(true) }),
  t.Object({
    id: t.String({ pattern: "^[0-9a-f]{64}$" }),
    zone: t.String({ minLength: 1 }),
    capacity: t.Union([t.Integer({ minimum: 0 }), t.Null()]),
    tags: t.Optional(t.Array(t.String())),
  }),
]);
const RedundancyBody = t.Union([t.Literal("maximum"), t.Object({ atLeast: t.Integer({ minimum: 1 }) })]);

export function clusterAdminRoutes(s: ClusterAdminServices) {
  const { cluster } = s;
  const status = () => {
    const self = cluster.localStatus();
    const roles = currentVersion(cluster.history())?.roles ?? {};
    const nodes = [
      { id: cluster.selfId, garageVersion: VERSION_WITH_BUILD as string | null, addr: self.rpcAddr, hostname: self.hostname, isUp: true, lastSeenSecsAgo: null, role: roles[cluster.selfId] ?? null, dataPartition: self.data, metadataPartition: self.metadata },
      ...cluster.peers().map((p) => ({
        id: p.id,
        // Peers do not tell their version in their status (Garage's field is optional).
        garageVersion: null,
        addr: p.addr,
        hostname: p.status?.hostname ?? null,
        isUp: p.isUp,
        lastSeenSecsAgo: p.lastSeenSecsAgo,
        role: roles[p.id] ?? null,
        dataPartition: p.status?.data,
        metadataPartition: p.status?.metadata,
      })),
    ];
    // Nodes in the layout this node has never heard of are listed too, as down.
    for (const id of Object.keys(roles)) if (!nodes.some((n) => n.id === id)) nodes.push({ id, garageVersion: null, addr: null, hostname: null, isUp: false, lastSeenSecsAgo: null, role: roles[id]!, dataPartition: undefined, metadataPartition: undefined });
    return { node: cluster.selfId, layoutVersion: cluster.history().current, nodes };
  };
  const health = () => {
    const roles = currentVersion(cluster.history())?.roles ?? {};
    const storage = Object.entries(roles).filter(([, r]) => r.capacity !== null).map(([id]) => id);
    const { quorum, allOk } = cluster.partitionHealth();
    const known = cluster.peers().length + 1;
    const connected = cluster.peers().filter((p) => p.isUp).length + 1;
    const health = cluster.history().current === 0 ? "unavailable" : quorum < PARTITION_COUNT ? "unavailable" : allOk < PARTITION_COUNT ? "degraded" : "healthy";
    return {
      status: health,
      knownNodes: known,
      connectedNodes: connected,
      storageNodes: storage.length,
      storageNodesOk: storage.filter((id) => cluster.isUp(id)).length,
      partitions: PARTITION_COUNT,
      partitionsQuorum: quorum,
      partitionsAllOk: allOk,
    };
  };
  const guarded = (fn: () => unknown) => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof LayoutError || err instanceof LayoutChangeError) throw new LayoutRequestError(err.message);
      throw err;
    }
  };

  return {
    health,
    routes: (app: Elysia) =>
      app
        .get("/v2/GetClusterStatus", status)
        .get("/v2/GetClusterHealth", health)
        .get("/v2/GetNodeInfo", () => {
          const self = cluster.localStatus();
          return { nodeId: cluster.selfId, garageVersion: VERSION_WITH_BUILD, dbEngine: "sqlite", rpcAddr: self.rpcAddr, hostname: self.hostname, layoutVersion: cluster.history().current };
        })
        .post(
          "/v2/ConnectClusterNodes",
          async ({ body }) =>
            Promise.all(
              body.map(async (spec) => {
                try {
                  await cluster.connectTo(spec);
                  return { success: true, error: null };
                } catch (err) {
                  return { success: false, error: (err as Error).message };
                }
              }),
            ),
          { body: t.Array(t.String()) },
        )
        .get("/v2/GetClusterLayout", () => layoutView(cluster.history()))
        .post(
          "/v2/UpdateClusterLayout",
          ({ body }) => {
            const now = s.now();
            const h = cluster.updateHistory((h0) => {
              let h1 = h0;
              for (const change of body.roles ?? []) {
                const role: NodeRole | null = "remove" in change ? null : { zone: change.zone, capacity: change.capacity, tags: change.tags ?? [] };
                h1 = stageRole(h1, change.id, role, now);
              }
              if (body.parameters?.zoneRedundancy !== undefined) h1 = stageZoneRedundancy(h1, fromApiRedundancy(body.parameters.zoneRedundancy), now);
              return h1;
            });
            return layoutView(h);
          },
          { body: t.Object({ roles: t.Optional(t.Array(RoleChange)), parameters: t.Optional(t.Object({ zoneRedundancy: t.Optional(RedundancyBody) })) }) },
        )
        .post("/v2/PreviewClusterLayoutChanges", () => {
          const h = cluster.history();
          if (!hasStagedChanges(h)) return { error: "there are no staged changes" };
          try {
            const { version, assignment } = previewNext(h, s.replicationFactor);
            const next: LayoutHistory = { ...h, versions: [...h.versions, version], current: version.version, staging: { roles: {}, zoneRedundancy: null } };
            return { message: assignment.messages, newLayout: { ...layoutView(next), partitionSize: assignment.partitionSize } };
          } catch (err) {
            if (err instanceof LayoutError) return { error: err.message };
            throw err;
          }
        })
        .post(
          "/v2/ApplyClusterLayout",
          ({ body }) =>
            guarded(() => {
              let messages: string[] = [];
              const h = cluster.updateHistory((h0) => {
                const { history, assignment } = applyStaged(h0, body.version, s.replicationFactor, s.now());
                messages = assignment.messages;
                return history;
              });
              return { message: messages, layout: layoutView(h) };
            }),
          { body: t.Object({ version: t.Integer({ minimum: 1 }) }) },
        )
        .post("/v2/RevertClusterLayout", () => layoutView(cluster.updateHistory((h) => revertStaged(h, s.now()))))
        .get("/v2/GetClusterLayoutHistory", () => {
          const h = cluster.history();
          const read = readVersion(h)?.version ?? 0;
          return {
            currentVersion: h.current,
            minAck: read,
            versions: [...h.versions].reverse().map((v) => ({
              version: v.version,
              status: v.version === h.current ? "Current" : v.version >= read ? "Draining" : "Historical",
              storageNodes: Object.values(v.roles).filter((r) => r.capacity !== null).length,
              gatewayNodes: Object.values(v.roles).filter((r) => r.capacity === null).length,
            })),
            updateTrackers: Object.fromEntries(Object.entries(h.syncMap).map(([id, sync]) => [id, { sync }])),
          };
        }),
  };
}
