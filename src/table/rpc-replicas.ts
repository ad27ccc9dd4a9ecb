// Table replicas on other nodes, reached over RPC: the client side (RemoteReplicas) and the
// handlers that serve this node's local stores to its peers. Every message carries an HLC
// timestamp so that a node's clock never lags behind what it has seen from others.
import { decodeJson, encodeJson, PRIO_BACKGROUND, PRIO_HIGH, type RpcNode } from "../rpc/rpc";
import type { HybridClock } from "../util/hlc";
import type { DeleteOutcome, LocalStore, RangeQuery, TombstoneRef } from "./local-store";
import type { RemoteReplicas } from "./table";
import type { GcReplicas } from "./gc";

/** Time a replica has to answer a table call before the quorum counts it as failed. */
export const TABLE_CALL_TIMEOUT_MS = 10_000;

const EP_INSERT = "table/insert";
const EP_GET = "table/get";
const EP_RANGE = "table/range";
/** Table GC: remove tombstones stored exactly as sent (table/gc.ts). */
const EP_DELETE_IF_EQUAL = "table/delete-if-equal";

interface Stamped {
  ts: number;
}

export class RpcReplicas implements RemoteReplicas, GcReplicas {
  constructor(
    private readonly rpc: RpcNode,
    private readonly clock: HybridClock,
  ) {}

  private async call<T>(node: string, endpoint: string, body: object, priority = PRIO_HIGH): Promise<T> {
    const reply = await this.rpc.call(node, endpoint, encodeJson({ ...body, ts: this.clock.now() }), {
      priority,
      timeoutMs: TABLE_CALL_TIMEOUT_MS,
    });
    const answer = decodeJson<T & Stamped>(reply.payload);
    this.clock.observe(answer.ts);
    return answer;
  }

  async insert(node: string, table: string, entries: unknown[], report = false): Promise<unknown[] | void> {
    const reply = await this.call<{ merged?: unknown[] }>(node, EP_INSERT, { table, entries, report });
    if (report) return reply.merged;
  }

  async get(node: string, table: string, pk: string, sk: string): Promise<unknown | undefined> {
    return (await this.call<{ entry: unknown | null }>(node, EP_GET, { table, pk, sk })).entry ?? undefined;
  }

  async range(node: string, table: string, pk: string, q: RangeQuery): Promise<unknown[]> {
    return (await this.call<{ entries: unknown[] }>(node, EP_RANGE, { table, pk, q })).entries;
  }

  async deleteIfEqual(node: string, table: string, items: TombstoneRef[]): Promise<DeleteOutcome[]> {
    return (await this.call<{ outcomes: DeleteOutcome[] }>(node, EP_DELETE_IF_EQUAL, { table, items }, PRIO_BACKGROUND)).outcomes;
  }
}

/** Serves this node's copy of every table to its peers. */
export function serveTables(rpc: RpcNode, clock: HybridClock, stores: ReadonlyMap<string, LocalStore<unknown>>): void {
  const storeOf = (name: string) => {
    const store = stores.get(name);
    if (!store) throw new Error(`unknown table ${name}`);
    return store;
  };
  const answer = (value: object) => ({ payload: encodeJson({ ...value, ts: clock.now() }) });
  rpc.handle(EP_INSERT, async ({ payload }) => {
    const req = decodeJson<{ table: string; entries: unknown[]; report?: boolean } & Stamped>(payload);
    clock.observe(req.ts);
    const merged = await storeOf(req.table).apply(req.entries);
    return answer(req.report ? { merged } : {});
  });
  rpc.handle(EP_GET, async ({ payload }) => {
    const req = decodeJson<{ table: string; pk: string; sk: string } & Stamped>(payload);
    clock.observe(req.ts);
    return answer({ entry: storeOf(req.table).get(req.pk, req.sk) ?? null });
  });
  rpc.handle(EP_RANGE, async ({ payload }) => {
    const req = decodeJson<{ table: string; pk: string; q: RangeQuery } & Stamped>(payload);
    clock.observe(req.ts);
    return answer({ entries: storeOf(req.table).range(req.pk, req.q) });
  });
  rpc.handle(EP_DELETE_IF_EQUAL, async ({ payload }) => {
    const req = decodeJson<{ table: string; items: TombstoneRef[] } & Stamped>(payload);
    clock.observe(req.ts);
    return answer({ outcomes: await storeOf(req.table).deleteIfEqual(req.items) });
  });
}
