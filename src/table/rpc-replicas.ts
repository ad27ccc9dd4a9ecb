// Table replicas on other nodes, reached over RPC: the client side (RemoteReplicas) and the
// handlers that serve this node's local stores to its peers. Every message carries an HLC
// timestamp so that a node's clock never lags behind what it has seen from others. Messages
// are checked against their endpoint's schema (rpc/endpoint.ts), and entries a peer sends
// against their table's entry schema before they are applied (peer-entries.ts).
import { Type, type TSchema } from "@sinclair/typebox";
import { call, endpoint, handle } from "../rpc/endpoint";
import { PRIO_BACKGROUND, PRIO_HIGH, RPC_ERR, RpcError, type RpcNode } from "../rpc/rpc";
import type { HybridClock } from "../util/hlc";
import type { DeleteOutcome, LocalStore, RangeQuery, TombstoneRef } from "./local-store";
import type { RemoteReplicas } from "./table";
import type { GcReplicas } from "./gc";
import { checkPeerEntries } from "./peer-entries";

/** Time a replica has to answer a table call before the quorum counts it as failed. */
export const TABLE_CALL_TIMEOUT_MS = 10_000;

/** A table's name in a message (the receiver refuses one it does not have). */
export const TableNameSchema = Type.String({ minLength: 1, maxLength: 64 });
/** Entries travel as JSON values; each is checked against its table's schema where it is used. */
export const EntriesSchema = Type.Array(Type.Unknown());
/** Every table message and answer carries the sender's HLC timestamp. */
const stamped = <T extends Record<string, TSchema>>(fields: T) => Type.Object({ ...fields, ts: Type.Integer({ minimum: 0 }) });

const RangeQuerySchema = Type.Object({
  start: Type.Optional(Type.String()),
  end: Type.Optional(Type.String()),
  limit: Type.Integer({ minimum: 0 }),
});
const TombstoneRefSchema = Type.Object({ pk: Type.String(), sk: Type.String(), v: Type.String() });
const DeleteOutcomeSchema = Type.Union([
  Type.Literal("deleted"),
  Type.Literal("absent"),
  Type.Literal("held"),
  Type.Object({ current: Type.Unknown() }),
]);

export const TABLE_INSERT = endpoint(
  "table/insert",
  stamped({ table: TableNameSchema, entries: EntriesSchema, report: Type.Optional(Type.Boolean()) }),
  stamped({ merged: Type.Optional(EntriesSchema) }),
);
export const TABLE_GET = endpoint(
  "table/get",
  stamped({ table: TableNameSchema, pk: Type.String(), sk: Type.String() }),
  stamped({ entry: Type.Unknown() }),
);
export const TABLE_RANGE = endpoint(
  "table/range",
  stamped({ table: TableNameSchema, pk: Type.String(), q: RangeQuerySchema }),
  stamped({ entries: EntriesSchema }),
);
/** Table GC: remove tombstones stored exactly as sent (table/gc.ts). */
export const TABLE_DELETE_IF_EQUAL = endpoint(
  "table/delete-if-equal",
  stamped({ table: TableNameSchema, items: Type.Array(TombstoneRefSchema) }),
  stamped({ outcomes: Type.Array(DeleteOutcomeSchema) }),
);

/** The store a peer's message names, or a bad-request error naming the endpoint. */
export function storeNamed(
  stores: ReadonlyMap<string, LocalStore<unknown>>,
  endpointName: string,
  table: string,
  accept: (store: LocalStore<unknown>) => boolean = () => true,
): LocalStore<unknown> {
  const store = stores.get(table);
  if (!store || !accept(store)) throw new RpcError(`endpoint '${endpointName}': no such table '${table}' here`, RPC_ERR.badRequest);
  return store;
}

export class RpcReplicas implements RemoteReplicas, GcReplicas {
  constructor(
    private readonly rpc: RpcNode,
    private readonly clock: HybridClock,
  ) {}

  private opts(priority = PRIO_HIGH) {
    return { priority, timeoutMs: TABLE_CALL_TIMEOUT_MS };
  }

  private observed<T extends { ts: number }>(answer: T): T {
    this.clock.observe(answer.ts);
    return answer;
  }

  async insert(node: string, table: string, entries: unknown[], report = false): Promise<unknown[] | void> {
    const reply = this.observed(await call(this.rpc, node, TABLE_INSERT, { table, entries, report, ts: this.clock.read() }, this.opts()));
    if (report) return reply.merged;
  }

  async get(node: string, table: string, pk: string, sk: string): Promise<unknown | undefined> {
    return this.observed(await call(this.rpc, node, TABLE_GET, { table, pk, sk, ts: this.clock.read() }, this.opts())).entry ?? undefined;
  }

  async range(node: string, table: string, pk: string, q: RangeQuery): Promise<unknown[]> {
    return this.observed(await call(this.rpc, node, TABLE_RANGE, { table, pk, q, ts: this.clock.read() }, this.opts())).entries;
  }

  async deleteIfEqual(node: string, table: string, items: TombstoneRef[]): Promise<DeleteOutcome[]> {
    const reply = await call(this.rpc, node, TABLE_DELETE_IF_EQUAL, { table, items, ts: this.clock.read() }, this.opts(PRIO_BACKGROUND));
    return this.observed(reply).outcomes as DeleteOutcome[];
  }
}

/** Serves this node's copy of every table to its peers. */
export function serveTables(rpc: RpcNode, clock: HybridClock, stores: ReadonlyMap<string, LocalStore<unknown>>): void {
  // Messages carry the clock's time (read), not a fresh timestamp: a stamp per message moved a busy
  // node's clock 1 ms per message past the wall (HybridClock.read).
  const stamp = <T extends object>(value: T) => ({ ...value, ts: clock.read() });
  handle(rpc, TABLE_INSERT, async (req) => {
    clock.observe(req.ts);
    const store = storeNamed(stores, TABLE_INSERT.name, req.table);
    const merged = await store.apply(checkPeerEntries(store.schema, req.entries, `endpoint '${TABLE_INSERT.name}'`, RPC_ERR.badRequest));
    return stamp(req.report ? { merged } : {});
  });
  handle(rpc, TABLE_GET, async (req) => {
    clock.observe(req.ts);
    return stamp({ entry: storeNamed(stores, TABLE_GET.name, req.table).get(req.pk, req.sk) ?? null });
  });
  handle(rpc, TABLE_RANGE, async (req) => {
    clock.observe(req.ts);
    return stamp({ entries: storeNamed(stores, TABLE_RANGE.name, req.table).range(req.pk, req.q) });
  });
  handle(rpc, TABLE_DELETE_IF_EQUAL, async (req) => {
    clock.observe(req.ts);
    return stamp({ outcomes: await storeNamed(stores, TABLE_DELETE_IF_EQUAL.name, req.table).deleteIfEqual(req.items) });
  });
}
