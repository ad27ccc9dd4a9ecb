// The cluster's RPC endpoints and the schemas of their messages: pings (a node's status and
// the peers it knows) and the layout history pulled and pushed between nodes. A peer's message
// is checked against these before membership or the layout sees it (rpc/endpoint.ts).
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { endpoint } from "../rpc/endpoint";
import { NODE_ID_PATTERN } from "../util/ids";
import { PARTITION_COUNT } from "./layout";

/**
 * Most peers one ping may name: far above any real cluster, and a bound on how many unknown
 * nodes one message can make this node remember.
 */
export const MAX_PING_PEERS = 1024;

/**
 * A node id, checked as util/ids NodeIdText is but typed as the plain string the cluster
 * layer keeps ids in (layout rings, peer lists).
 */
const NodeIdText = Type.String({ pattern: NODE_ID_PATTERN });

const DiskSchema = Type.Object({ available: Type.Number(), total: Type.Number() });

export const NodeStatusSchema = Type.Object({
  hostname: Type.String(),
  rpcAddr: Type.String(),
  layoutVersion: Type.Integer({ minimum: 0 }),
  layoutDigest: Type.String(),
  data: DiskSchema,
  metadata: DiskSchema,
});

export const PingMessageSchema = Type.Object({
  status: NodeStatusSchema,
  peers: Type.Array(Type.Object({ id: NodeIdText, addr: Type.String() }), { maxItems: MAX_PING_PEERS }),
});
export type PingMessage = Static<typeof PingMessageSchema>;

// The layout history, as cluster/layout-history.ts and layout.ts define it.
const NodeRoleSchema = Type.Object({
  zone: Type.String(),
  capacity: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
  tags: Type.Array(Type.String()),
});
const ZoneRedundancySchema = Type.Union([Type.Integer({ minimum: 1 }), Type.Literal("maximum")]);
/** An object keyed by node id (any other key is refused). */
const byNode = <T extends TSchema>(value: T) => Type.Record(Type.String({ pattern: NODE_ID_PATTERN }), value, { additionalProperties: false });
const AppliedVersionSchema = Type.Object({
  version: Type.Integer({ minimum: 0 }),
  replicationFactor: Type.Integer({ minimum: 1 }),
  roles: byNode(NodeRoleSchema),
  ring: Type.Array(Type.Array(NodeIdText), { maxItems: PARTITION_COUNT }),
  zoneRedundancy: ZoneRedundancySchema,
});
export const LayoutHistorySchema = Type.Object({
  versions: Type.Array(AppliedVersionSchema),
  current: Type.Integer({ minimum: 0 }),
  staging: Type.Object({
    roles: byNode(Type.Object({ ts: Type.Number(), role: Type.Union([NodeRoleSchema, Type.Null()]) })),
    zoneRedundancy: Type.Union([Type.Object({ ts: Type.Number(), v: ZoneRedundancySchema }), Type.Null()]),
  }),
  stagingClearedAt: Type.Number(),
  syncMap: byNode(Type.Integer({ minimum: 0 })),
});

/** Each side sends its status and known peers; the answer is the callee's. */
export const CLUSTER_PING = endpoint("cluster/ping", PingMessageSchema, PingMessageSchema);
export const LAYOUT_PULL = endpoint("cluster/layout-pull", Type.Object({}), LayoutHistorySchema);
export const LAYOUT_PUSH = endpoint("cluster/layout-push", LayoutHistorySchema, Type.Object({}));
