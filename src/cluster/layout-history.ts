// The cluster layout over time: applied versions, changes staged for the next one, and how
// far each node has synced. It is a join-semilattice (merge is commutative, associative and
// idempotent) so nodes can gossip it freely. While data moves between versions, writes go
// to the nodes of every live version and reads to the newest version all nodes have synced.
import { computeAssignment, type AssignmentResult, type ZoneRedundancy } from "./assignment";
import type { LayoutVersion, NodeRole } from "./layout";

/** A staged role change: a new role, or null to remove the node at the next apply. */
export interface StagedRole {
  ts: number;
  role: NodeRole | null;
}

export interface AppliedVersion extends LayoutVersion {
  zoneRedundancy: ZoneRedundancy;
}

export interface LayoutHistory {
  /** Live versions, oldest first; empty until the first layout is applied. */
  versions: AppliedVersion[];
  /** Highest version number ever applied (versions older than the live ones are retired). */
  current: number;
  staging: {
    roles: Record<string, StagedRole>;
    zoneRedundancy: { ts: number; v: ZoneRedundancy } | null;
  };
  /** Staged changes at or before this timestamp were applied or reverted. */
  stagingClearedAt: number;
  /** node -> highest layout version whose data it has finished syncing. */
  syncMap: Record<string, number>;
}

export class LayoutChangeError extends Error {}

export function emptyHistory(): LayoutHistory {
  return { versions: [], current: 0, staging: { roles: {}, zoneRedundancy: null }, stagingClearedAt: 0, syncMap: {} };
}

export function currentVersion(h: LayoutHistory): AppliedVersion | undefined {
  return h.versions[h.versions.length - 1];
}

/** Roles as they would be after applying the staged changes. */
export function stagedRoles(h: LayoutHistory): Record<string, NodeRole> {
  const roles: Record<string, NodeRole> = { ...(currentVersion(h)?.roles ?? {}) };
  for (const [node, staged] of Object.entries(h.staging.roles)) {
    if (staged.role === null) delete roles[node];
    else roles[node] = staged.role;
  }
  return roles;
}

export function hasStagedChanges(h: LayoutHistory): boolean {
  return Object.keys(h.staging.roles).length > 0 || h.staging.zoneRedundancy !== null;
}

export function stageRole(h: LayoutHistory, node: string, role: NodeRole | null, ts: number): LayoutHistory {
  return { ...h, staging: { ...h.staging, roles: { ...h.staging.roles, [node]: { ts, role } } } };
}

export function stageZoneRedundancy(h: LayoutHistory, v: ZoneRedundancy, ts: number): LayoutHistory {
  return { ...h, staging: { ...h.staging, zoneRedundancy: { ts, v } } };
}

/** What applying the staged changes would give (throws LayoutError when impossible). */
export function previewNext(h: LayoutHistory, replicationFactor: number): { version: AppliedVersion; assignment: AssignmentResult } {
  const cur = currentVersion(h);
  const roles = stagedRoles(h);
  const zoneRedundancy = h.staging.zoneRedundancy?.v ?? cur?.zoneRedundancy ?? "maximum";
  const assignment = computeAssignment({ replicationFactor, zoneRedundancy, roles, previous: cur?.ring });
  return {
    version: { version: h.current + 1, replicationFactor, roles, ring: assignment.ring, zoneRedundancy },
    assignment,
  };
}

/** Applies the staged changes as version `version`, which must be current + 1. */
export function applyStaged(h: LayoutHistory, version: number, replicationFactor: number, ts: number): { history: LayoutHistory; assignment: AssignmentResult } {
  if (version !== h.current + 1) throw new LayoutChangeError(`the next layout version is ${h.current + 1}, not ${version}`);
  if (!hasStagedChanges(h) && h.versions.length > 0) throw new LayoutChangeError("there are no staged changes to apply");
  const { version: next, assignment } = previewNext(h, replicationFactor);
  const history: LayoutHistory = {
    ...h,
    versions: [...h.versions, next],
    current: next.version,
    staging: { roles: {}, zoneRedundancy: null },
    stagingClearedAt: Math.max(h.stagingClearedAt, ts),
  };
  return { history: retireSyncedVersions(history), assignment };
}

export function revertStaged(h: LayoutHistory, ts: number): LayoutHistory {
  return { ...h, staging: { roles: {}, zoneRedundancy: null }, stagingClearedAt: Math.max(h.stagingClearedAt, ts) };
}

/** Records that `node` has all the data of `version` (called after a full sync pass). */
export function markSynced(h: LayoutHistory, node: string, version: number): LayoutHistory {
  if ((h.syncMap[node] ?? 0) >= version) return h;
  return retireSyncedVersions({ ...h, syncMap: { ...h.syncMap, [node]: version } });
}

function storageNodes(v: LayoutVersion): string[] {
  return Object.entries(v.roles)
    .filter(([, r]) => r.capacity !== null)
    .map(([n]) => n);
}

/**
 * The newest live version whose storage nodes have all synced it: reads go there, so a read
 * never reaches a node still waiting for its data. Nodes that left the layout do not count.
 */
export function readVersion(h: LayoutHistory): AppliedVersion | undefined {
  let chosen = h.versions[0];
  for (const v of h.versions) {
    if (storageNodes(v).every((n) => (h.syncMap[n] ?? 0) >= v.version)) chosen = v;
  }
  return chosen;
}

/** Drops live versions older than the read version: nobody reads or needs to write them. */
function retireSyncedVersions(h: LayoutHistory): LayoutHistory {
  const read = readVersion(h);
  if (!read) return h;
  const versions = h.versions.filter((v) => v.version >= read.version);
  return versions.length === h.versions.length ? h : { ...h, versions };
}

function mergeStaged(a: StagedRole | undefined, b: StagedRole | undefined): StagedRole | undefined {
  if (!a) return b;
  if (!b) return a;
  if (a.ts !== b.ts) return a.ts > b.ts ? a : b;
  return JSON.stringify(a.role) >= JSON.stringify(b.role) ? a : b;
}

/** CRDT join of two histories. */
export function mergeHistories(a: LayoutHistory, b: LayoutHistory): LayoutHistory {
  const byVersion = new Map<number, AppliedVersion>();
  for (const v of [...a.versions, ...b.versions]) {
    const prev = byVersion.get(v.version);
    // Two nodes applying the same version number concurrently is an operator error that
    // Garage also warns about; a deterministic pick keeps every node on the same choice.
    if (!prev || JSON.stringify(v) > JSON.stringify(prev)) byVersion.set(v.version, v);
  }
  const current = Math.max(a.current, b.current);
  const stagingClearedAt = Math.max(a.stagingClearedAt, b.stagingClearedAt);
  const roles: Record<string, StagedRole> = {};
  for (const node of new Set([...Object.keys(a.staging.roles), ...Object.keys(b.staging.roles)])) {
    const s = mergeStaged(a.staging.roles[node], b.staging.roles[node])!;
    if (s.ts > stagingClearedAt) roles[node] = s;
  }
  const za = a.staging.zoneRedundancy;
  const zb = b.staging.zoneRedundancy;
  let zoneRedundancy = za && zb ? (za.ts >= zb.ts ? za : zb) : (za ?? zb);
  if (zoneRedundancy && zoneRedundancy.ts <= stagingClearedAt) zoneRedundancy = null;
  const syncMap: Record<string, number> = { ...a.syncMap };
  for (const [n, v] of Object.entries(b.syncMap)) syncMap[n] = Math.max(syncMap[n] ?? 0, v);
  const merged: LayoutHistory = {
    versions: [...byVersion.values()].sort((x, y) => x.version - y.version),
    current,
    staging: { roles, zoneRedundancy },
    stagingClearedAt,
    syncMap,
  };
  // Retirement depends only on versions and syncMap, which only grow: what one side retired
  // is retired again here.
  return retireSyncedVersions(merged);
}
