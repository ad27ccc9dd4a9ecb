// Anti-entropy for full-copy tables (keys, buckets, aliases): they are small, so every few
// seconds each node compares a digest of each table with every peer and, when they differ,
// pulls the peer's entries and pushes its own; CRDT merges make both sides converge. A node
// that was down, or that joined after a key was created, catches up without operator action.
import { createHash } from "node:crypto";
import type { Database } from "bun:sqlite";
import { decodeEntry } from "../db/entry-codec";
import { TableRows } from "../db/table-rows";
import { Type } from "@sinclair/typebox";
import { call, endpoint, handle } from "../rpc/endpoint";
import { PRIO_BACKGROUND, RPC_ERR, type RpcNode } from "../rpc/rpc";
import { logger } from "../util/log";
import type { LocalStore } from "./local-store";
import type { WorkerStats } from "../util/worker-stats";
import { WorkerLoop } from "../util/worker-loop";
import { checkPeerEntries } from "./peer-entries";
import { storeNamed, TableNameSchema } from "./rpc-replicas";

const log = logger("sync");

/** How often full-copy tables are compared with every peer (Garage: 10 s). */
export const FULL_SYNC_INTERVAL_MS = 10_000;
/** Largest full-copy table exchanged in one message. */
export const MAX_FULL_TABLE_ENTRIES = 100_000;
const CALL_TIMEOUT_MS = 30_000;
/** Wait after a peer connects before comparing, so the connection settles first. */
const PEER_UP_DELAY_MS = 500;

const FullEntriesSchema = Type.Array(Type.Unknown(), { maxItems: MAX_FULL_TABLE_ENTRIES });
const EP_DIGEST = endpoint("table/full-digest", Type.Object({ table: TableNameSchema }), Type.Object({ digest: Type.String({ maxLength: 64 }) }));
const EP_DUMP = endpoint("table/full-dump", Type.Object({ table: TableNameSchema }), Type.Object({ entries: FullEntriesSchema }));
const EP_PUSH = endpoint("table/full-push", Type.Object({ table: TableNameSchema, entries: FullEntriesSchema }), Type.Object({}));

function rows(db: Database, table: string): { sk: string; v: Uint8Array }[] {
  return TableRows.of(db, table).bySortKey(MAX_FULL_TABLE_ENTRIES + 1);
}

function digest(db: Database, table: string): string {
  const h = createHash("sha256");
  for (const r of rows(db, table)) h.update(r.sk).update("\u0000").update(r.v).update("\u0001");
  return h.digest("hex");
}

function dump(db: Database, table: string): unknown[] {
  const all = rows(db, table);
  if (all.length > MAX_FULL_TABLE_ENTRIES) throw new Error(`table ${table} has more than ${MAX_FULL_TABLE_ENTRIES} entries`);
  return all.map((r) => decodeEntry(r.v));
}

export class FullTableSync {
  private readonly loop = new WorkerLoop({ name: "full-copy table sync", intervalMs: FULL_SYNC_INTERVAL_MS, firstDelayMs: 0 }, ({ signal }) => this.pass(signal));

  constructor(
    private readonly rpc: RpcNode,
    private readonly db: Database,
    private readonly stores: ReadonlyMap<string, LocalStore<unknown>>,
    private readonly peers: () => string[],
  ) {
    // The table name goes into SQL (rows, digest): only a full-copy table this node has passes.
    const storeOf = (endpointName: string, name: string) => storeNamed(this.stores, endpointName, name, (s) => s.schema.replication === "full");
    handle(rpc, EP_DIGEST, async ({ table }) => {
      storeOf(EP_DIGEST.name, table);
      return { digest: digest(this.db, table) };
    });
    handle(rpc, EP_DUMP, async ({ table }) => {
      storeOf(EP_DUMP.name, table);
      return { entries: dump(this.db, table) };
    });
    handle(rpc, EP_PUSH, async ({ table, entries }) => {
      const store = storeOf(EP_PUSH.name, table);
      await store.apply(checkPeerEntries(store.schema, entries, `endpoint '${EP_PUSH.name}'`, RPC_ERR.badRequest));
      return {};
    });
  }

  get stats(): WorkerStats {
    return this.loop.stats;
  }

  start(): void {
    // A peer that (re)connects may have missed key or bucket changes: compare at once.
    this.rpc.on("peer-up", () => setTimeout(() => this.loop.wake(), PEER_UP_DELAY_MS));
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One pass over every full-copy table and every connected peer (or the one under way). */
  syncAll(): Promise<void> {
    return this.loop.run();
  }

  private async pass(signal: AbortSignal): Promise<void> {
    const tables = [...this.stores.values()].filter((s) => s.schema.replication === "full");
    for (const peer of this.peers()) {
      if (signal.aborted) return;
      if (!this.rpc.isConnected(peer)) continue;
      for (const store of tables) {
        try {
          await this.syncWith(peer, store);
        } catch (err) {
          log.debug(`${store.schema.name} with ${peer.slice(0, 16)}: ${(err as Error).message}`);
          this.stats.noteError(err);
        }
      }
    }
  }

  private async syncWith(peer: string, store: LocalStore<unknown>): Promise<void> {
    const table = store.schema.name;
    const opts = { priority: PRIO_BACKGROUND, timeoutMs: CALL_TIMEOUT_MS };
    const theirs = await call(this.rpc, peer, EP_DIGEST, { table }, opts);
    if (theirs.digest === digest(this.db, table)) return;
    const { entries } = await call(this.rpc, peer, EP_DUMP, { table }, opts);
    await store.apply(checkPeerEntries(store.schema, entries, `${table} dump from ${peer.slice(0, 16)}`, RPC_ERR.badResponse));
    await call(this.rpc, peer, EP_PUSH, { table, entries: dump(this.db, table) }, opts);
    log.info(`${table}: reconciled with ${peer.slice(0, 16)}`);
  }
}
