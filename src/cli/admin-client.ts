// HTTP client for the admin API (v2 endpoint names, JSON, bearer token): the only way the
// CLI talks to a node. Owns the response types the CLI reads, the admin URL derived from
// the config, and the turning of every failure into an error with a one-line message.

import { parseHostPort, type Config } from "../config";
import type { WorkerInfo } from "../util/worker-stats";

/** A node that has not answered by then is treated as unreachable. */
export const ADMIN_REQUEST_TIMEOUT_MS = 30_000;
/** Longest server error message echoed to the terminal. */
const MAX_ERROR_MESSAGE_CHARS = 300;

export interface BucketPermissions {
  read: boolean;
  write: boolean;
  owner: boolean;
}

export interface FreeSpace {
  available: number;
  total: number;
}

export interface NodeStatus {
  id: string;
  /** The node's Bunker version ("0.1.0+<build>"); null when it did not say (peers). */
  garageVersion?: string | null;
  addr: string | null;
  hostname: string | null;
  isUp: boolean;
  lastSeenSecsAgo: number | null;
  role: { zone: string; capacity: number | null; tags: string[] } | null;
  dataPartition?: FreeSpace;
  metadataPartition?: FreeSpace;
}

export interface ClusterStatus {
  node: string;
  layoutVersion: number;
  nodes: NodeStatus[];
}

export interface ClusterHealth {
  status: "healthy" | "degraded" | "unavailable";
  knownNodes: number;
  connectedNodes: number;
  storageNodes: number;
  storageNodesOk: number;
  partitions: number;
  partitionsQuorum: number;
  partitionsAllOk: number;
}

export interface KeyListItem {
  id: string;
  name: string;
  created: string | null;
  expiration: string | null;
  expired: boolean;
}

export interface KeyInfo {
  accessKeyId: string;
  name: string;
  secretAccessKey: string | null;
  created: string | null;
  expiration: string | null;
  expired: boolean;
  permissions: { createBucket: boolean };
  buckets: { id: string; globalAliases: string[]; localAliases: string[]; permissions: BucketPermissions }[];
}

export interface BucketLocalAlias {
  accessKeyId: string;
  alias: string;
}

export interface BucketListItem {
  id: string;
  created: string | null;
  globalAliases: string[];
  localAliases: BucketLocalAlias[];
}

/** How a bucket is served as a website: the index suffix and the optional error page key. */
/** InspectObject's answer (Garage v2 field names). */
export interface InspectedObject {
  bucketId: string;
  key: string;
  versions: {
    uuid: string;
    timestamp: string;
    uploading: boolean;
    aborted: boolean;
    deleteMarker: boolean;
    inline: boolean;
    size: number | null;
    etag: string | null;
    headers: [string, string][];
    blocks: { partNumber: number; offset: number; hash: string; size: number }[];
  }[];
}

export interface BucketWebsiteConfig {
  indexDocument: string;
  errorDocument: string | null;
}

/** Limits on a bucket's contents; null is no limit. */
export interface BucketQuotas {
  maxSize: number | null;
  maxObjects: number | null;
}

export interface BucketInfo {
  id: string;
  created: string | null;
  globalAliases: string[];
  websiteAccess: boolean;
  /** Null when website access is off. */
  websiteConfig: BucketWebsiteConfig | null;
  /** Absent from nodes older than quotas: read as no limits. */
  quotas?: BucketQuotas;
  keys: { accessKeyId: string; name: string; permissions: BucketPermissions; bucketLocalAliases: string[] }[];
  objects: number;
  bytes: number;
  unfinishedUploads: number;
}

/** What `GetNodeInfo?node=self` says about the node the CLI talks to. */
export interface NodeInfo {
  nodeId: string;
  /** The node's Bunker version, "<package version>+<build>". */
  garageVersion?: string;
  /** The address other nodes reach it on (rpc_public_addr, else the RPC bind address). */
  rpcAddr: string;
  hostname: string;
  layoutVersion: number;
}

/** One entry of ConnectClusterNodes' answer, in the order of the request. */
export interface ConnectResult {
  success: boolean;
  error: string | null;
}

/** Copies of each partition in at least N zones, or in as many zones as possible. */
export type ZoneRedundancy = "maximum" | { atLeast: number };

export interface LayoutParameters {
  zoneRedundancy: ZoneRedundancy;
}

/** A role as the administrator assigns it; capacity null is a gateway. */
export interface AssignedRole {
  zone: string;
  capacity: number | null;
  tags: string[];
}

export interface LayoutNodeRole extends AssignedRole {
  id: string;
  /** Results of the assignment, when the node computed them. */
  storedPartitions?: number | null;
  usableCapacity?: number | null;
}

/** A staged change: a removal, or the node's new role. */
export interface StagedRoleChange {
  id: string;
  remove?: boolean;
  zone?: string;
  capacity?: number | null;
  tags?: string[];
}

export interface ClusterLayout {
  version: number;
  roles: LayoutNodeRole[];
  parameters: LayoutParameters;
  /** Bytes per partition in this layout; 0 when nothing is stored. */
  partitionSize: number;
  stagedRoleChanges: StagedRoleChange[];
  stagedParameters: LayoutParameters | null;
}

/** A role change sent with UpdateClusterLayout. */
export type RoleChange = { id: string; remove: true } | ({ id: string } & AssignedRole);

export interface LayoutUpdate {
  roles?: RoleChange[];
  parameters?: LayoutParameters;
}

/** The layout the staged changes would give, or why none can be computed. */
export interface LayoutPreview {
  error?: string;
  message?: string[];
  newLayout?: ClusterLayout;
}

export interface AppliedLayout {
  message: string[];
  layout: ClusterLayout;
}

export interface LayoutHistoryVersion {
  version: number;
  status: "Current" | "Draining" | "Historical";
  storageNodes: number;
  gatewayNodes: number;
}

export interface UpdateTracker {
  sync: number;
  ack?: number;
  syncAck?: number;
}

export interface ClusterLayoutHistory {
  currentVersion: number;
  minAck: number;
  versions: LayoutHistoryVersion[];
  /** node id -> how far it got; Garage sends null when a single version is live. */
  updateTrackers: Record<string, UpdateTracker> | null;
}

/** Website access as UpdateBucket takes it: the documents only count when enabling. */
export interface UpdateBucketWebsiteAccess {
  enabled: boolean;
  indexDocument?: string;
  errorDocument?: string;
}

export interface UpdateBucketRequest {
  websiteAccess?: UpdateBucketWebsiteAccess;
  /** Replaces the quotas as a whole: both fields are always sent. */
  quotas?: BucketQuotas;
}

/** Exactly one way of naming the key: its id, or text the server matches. */
export type KeySelector = { id: string } | { search: string };
export type BucketSelector = { id: string } | { globalAlias: string } | { search: string };

/** The node answered with an error status. */
export class AdminApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** No answer at all: refused, unresolvable or timed out. */
export class AdminConnectionError extends Error {}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > MAX_ERROR_MESSAGE_CHARS ? `${flat.slice(0, MAX_ERROR_MESSAGE_CHARS)}…` : flat;
}

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", ""]);

/** `admin.api_bind_addr` as a URL to connect to: a wildcard bind is reached on loopback. */
export function adminUrlFromConfig(config: Config): string {
  const { host, port } = parseHostPort(config.admin.api_bind_addr, "admin.api_bind_addr");
  const target = WILDCARD_HOSTS.has(host) ? "127.0.0.1" : host;
  return `http://${target.includes(":") ? `[${target}]` : target}:${port}`;
}

function describeFetchFailure(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === "TimeoutError") return `no answer within ${ADMIN_REQUEST_TIMEOUT_MS / 1000} s`;
  if (e?.code === "ECONNREFUSED" || e?.code === "ConnectionRefused") return "connection refused";
  if (e?.code === "ENOTFOUND") return "host not found";
  return oneLine(e?.message ?? String(err));
}

/** A block whose resync keeps failing (`GET /v2/ListBlockErrors`). */
/** ListWorkers returns the node's own worker records, as they are. */
export type { WorkerInfo } from "../util/worker-stats";

export interface BlockError {
  blockHash: string;
  errorCount: number;
  nextTryAt: number;
  lastError: string | null;
}

export class AdminClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  private async call<T>(
    method: "GET" | "POST",
    endpoint: string,
    query: Record<string, string> = {},
    body?: unknown,
  ): Promise<T> {
    const qs = new URLSearchParams(query).toString();
    const url = `${this.baseUrl}/v2/${endpoint}${qs ? `?${qs}` : ""}`;
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";

    let res: Response;
    let text: string;
    try {
      res = await fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(ADMIN_REQUEST_TIMEOUT_MS),
      });
      text = await res.text();
    } catch (err) {
      throw new AdminConnectionError(
        `cannot reach the admin API at ${this.baseUrl}: ${describeFetchFailure(err)} — is the server running?`,
      );
    }

    if (!res.ok) throw this.apiError(res.status, text);
    if (text.trim() === "") return {} as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new AdminApiError(res.status, "InvalidResponse", `${endpoint}: the node answered with invalid JSON`);
    }
  }

  private apiError(status: number, text: string): AdminApiError {
    let code = `HTTP${status}`;
    let message = oneLine(text) || `HTTP ${status}`;
    try {
      const parsed = JSON.parse(text) as { code?: unknown; message?: unknown };
      if (typeof parsed.code === "string") code = parsed.code;
      if (typeof parsed.message === "string") message = oneLine(parsed.message);
    } catch {
      // Not JSON (a proxy, or not a Bunker node): the raw text is the best we have.
    }
    if ((status === 401 || status === 403) && this.token === undefined) {
      message += " (no admin token: set admin.admin_token in the config or BUNKER_ADMIN_TOKEN)";
    }
    return new AdminApiError(status, code, message);
  }

  getClusterStatus(): Promise<ClusterStatus> {
    return this.call("GET", "GetClusterStatus");
  }

  getClusterHealth(): Promise<ClusterHealth> {
    return this.call("GET", "GetClusterHealth");
  }

  listWorkers(): Promise<WorkerInfo[]> {
    return this.call("GET", "ListWorkers", { node: "self" });
  }

  launchRepair(repairType: "tables" | "blocks" | "scrub" | "lifecycle"): Promise<{ queued?: number }> {
    return this.call("POST", "LaunchRepairOperation", { node: "self" }, { repairType });
  }

  listBlockErrors(): Promise<BlockError[]> {
    return this.call("GET", "ListBlockErrors", { node: "self" });
  }

  getNodeInfo(node = "self"): Promise<NodeInfo> {
    return this.call("GET", "GetNodeInfo", { node });
  }

  /** Peers as `<node id>@<host>:<port>`; one result per peer. */
  connectClusterNodes(peers: string[]): Promise<ConnectResult[]> {
    return this.call("POST", "ConnectClusterNodes", {}, peers);
  }

  getClusterLayout(): Promise<ClusterLayout> {
    return this.call("GET", "GetClusterLayout");
  }

  updateClusterLayout(update: LayoutUpdate): Promise<ClusterLayout> {
    return this.call("POST", "UpdateClusterLayout", {}, update);
  }

  previewClusterLayoutChanges(): Promise<LayoutPreview> {
    return this.call("POST", "PreviewClusterLayoutChanges");
  }

  applyClusterLayout(version: number): Promise<AppliedLayout> {
    return this.call("POST", "ApplyClusterLayout", {}, { version });
  }

  revertClusterLayout(): Promise<ClusterLayout> {
    return this.call("POST", "RevertClusterLayout");
  }

  getClusterLayoutHistory(): Promise<ClusterLayoutHistory> {
    return this.call("GET", "GetClusterLayoutHistory");
  }

  listKeys(): Promise<KeyListItem[]> {
    return this.call("GET", "ListKeys");
  }

  getKeyInfo(key: KeySelector, showSecretKey = false): Promise<KeyInfo> {
    const query: Record<string, string> = { ...key };
    if (showSecretKey) query.showSecretKey = "true";
    return this.call("GET", "GetKeyInfo", query);
  }

  createKey(name: string): Promise<KeyInfo> {
    return this.call("POST", "CreateKey", {}, { name });
  }

  importKey(accessKeyId: string, secretAccessKey: string, name?: string): Promise<KeyInfo> {
    return this.call("POST", "ImportKey", {}, { accessKeyId, secretAccessKey, name });
  }

  updateKey(
    id: string,
    update: { name?: string; allow?: { createBucket: true }; deny?: { createBucket: true } },
  ): Promise<KeyInfo> {
    return this.call("POST", "UpdateKey", { id }, update);
  }

  deleteKey(id: string): Promise<unknown> {
    return this.call("POST", "DeleteKey", { id });
  }

  listBuckets(): Promise<BucketListItem[]> {
    return this.call("GET", "ListBuckets");
  }

  getBucketInfo(bucket: BucketSelector): Promise<BucketInfo> {
    return this.call("GET", "GetBucketInfo", { ...bucket });
  }

  createBucket(globalAlias: string): Promise<BucketInfo> {
    return this.call("POST", "CreateBucket", {}, { globalAlias });
  }

  updateBucket(id: string, update: UpdateBucketRequest): Promise<BucketInfo> {
    return this.call("POST", "UpdateBucket", { id }, update);
  }

  deleteBucket(id: string): Promise<unknown> {
    return this.call("POST", "DeleteBucket", { id });
  }

  /** Gives the bucket one more global alias; 409 BucketAlreadyExists when another bucket has it. */
  addBucketAlias(bucketId: string, globalAlias: string): Promise<BucketInfo> {
    return this.call("POST", "AddBucketAlias", {}, { bucketId, globalAlias });
  }

  /** Takes a global alias off the bucket; 400 when it has no such alias, or no other. */
  removeBucketAlias(bucketId: string, globalAlias: string): Promise<BucketInfo> {
    return this.call("POST", "RemoveBucketAlias", {}, { bucketId, globalAlias });
  }

  /** Aborts the bucket's multipart uploads started more than `olderThanSecs` seconds ago. */
  cleanupIncompleteUploads(bucketId: string, olderThanSecs: number): Promise<{ uploadsDeleted: number }> {
    return this.call("POST", "CleanupIncompleteUploads", {}, { bucketId, olderThanSecs });
  }

  /** Every stored version of an object, with its blocks (debugging). */
  inspectObject(bucketId: string, key: string): Promise<InspectedObject> {
    return this.call("GET", "InspectObject", { bucketId, key });
  }

  allowBucketKey(bucketId: string, accessKeyId: string, permissions: BucketPermissions): Promise<BucketInfo> {
    return this.call("POST", "AllowBucketKey", {}, { bucketId, accessKeyId, permissions });
  }

  denyBucketKey(bucketId: string, accessKeyId: string, permissions: BucketPermissions): Promise<BucketInfo> {
    return this.call("POST", "DenyBucketKey", {}, { bucketId, accessKeyId, permissions });
  }
}
