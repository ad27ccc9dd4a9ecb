// Anti-entropy for full-copy tables (keys, buckets, aliases): they are small, so every few
// seconds each node compares a digest of each table with every peer and, when they differ,
// pulls the peer's entries and pushes its own; CRDT merges make both sides converge. A node
// that was down, or that joined after a key was created, catches up without operator action.
// Entries cross the wire as JSON in message heads (16 MiB at most): a dump is read in pages,
// in sort-key order, each answer ending at FULL_SYNC_PAGE_ENTRIES entries or, as sync.ts bounds
// its batches, SYNC_BATCH_WIRE_BYTES of JSON, with the sort key to ask again after; pushes go
// in pages the same way. An entry no message can carry is left out with a warning.
// The paged dump stays understood by a node of the release before it (same PROTOCOL_VERSION):
// it asks without a cursor and takes the first page for the whole dump (a subset merges
// harmlessly, and this node's own pass pushes it everything), and, asked with a cursor it does
// not know (extra fields pass its checks), answers the whole table without one: done.
import { createHash } from "node:crypto";
import type { Database } from "bun:sqlite";
import { TableRows } from "../db/table-rows";
import { Type } from "@sinclair/typebox";
import { call, endpoint, handle } from "../rpc/endpoint";
import { PRIO_BACKGROUND, RPC_ERR, RpcError, type RpcNode } from "../rpc/rpc";
import { logger } from "../util/log";
import { RateLimitedLog, suppressedNote } from "../util/rate-limited-log";
import type { LocalStore } from "./local-store";
import type { WorkerStats } from "../util/worker-stats";
import { WorkerLoop } from "../util/worker-loop";
import { checkPeerEntries } from "./peer-entries";
import { storeNamed, TableNameSchema } from "./rpc-replicas";
import { SYNC_BATCH_WIRE_BYTES, SYNC_ENTRY_MAX_WIRE_BYTES, wireBytes } from "./sync";

const log = logger("sync");

/** How often full-copy tables are compared with every peer (Garage: 10 s). */
export const FULL_SYNC_INTERVAL_MS = 10_000;
/**
 * Largest full-copy table exchanged: a digest reads this many rows at most, and one exchange
 * with a peer goes through at most this many entries (and pages: each covers at least one) of
 * each side before it gives up.
 */
export const MAX_FULL_TABLE_ENTRIES = 100_000;
/**
 * Most entries in one dump answer or one push (and decoded at once): ~170 bytes of JSON each
 * for a key, so a 100 000-key table takes 20 pages of ~850 KB.
 */
export const FULL_SYNC_PAGE_ENTRIES = 5_000;
const CALL_TIMEOUT_MS = 30_000;
/** Wait after a peer connects before comparing, so the connection settles first. */
const PEER_UP_DELAY_MS = 500;
/** An entry too large to send is warned about once per this interval (it would be every pass). */
const TOO_LARGE_LOG_INTERVAL_MS = 10 * 60 * 1000;
const tooLargeLog = new RateLimitedLog(TOO_LARGE_LOG_INTERVAL_MS);

/** A release before paged dumps answered, and pushed, a whole table in one message: up to MAX_FULL_TABLE_ENTRIES. */
const FullEntriesSchema = Type.Array(Type.Unknown(), { maxItems: MAX_FULL_TABLE_ENTRIES });
/** A sort key a dump page ends at: the next page starts after it. */
const CursorSchema = Type.String();
const EP_DIGEST = endpoint("table/full-digest", Type.Object({ table: TableNameSchema }), Type.Object({ digest: Type.String({ maxLength: 64 }) }));
/**
 * One page of a table's entries in sort-key order, after the sort key `after` (from the start
 * without it); `next`, absent on the last page, is where the next one starts.
 */
const EP_DUMP = endpoint(
  "table/full-dump",
  Type.Object({ table: TableNameSchema, after: Type.Optional(CursorSchema) }),
  Type.Object({ entries: FullEntriesSchema, next: Type.Optional(CursorSchema) }),
);
const EP_PUSH = endpoint("table/full-push", Type.Object({ table: TableNameSchema, entries: FullEntriesSchema }), Type.Object({}));

function rows(db: Database, table: string): { sk: string; v: Uint8Array }[] {
  return TableRows.of(db, table).bySortKey(MAX_FULL_TABLE_ENTRIES + 1);
}

function digest(db: Database, table: string): string {
  const h = createHash("sha256");
  for (const r of rows(db, table)) h.update(r.sk).update("\u0000").update(r.v).update("\u0001");
  return h.digest("hex");
}

/**
 * The page of a full-copy table after sort key `after` (from the start if undefined): entries in
 * sort-key order, at most `maxEntries` rows looked at and SYNC_BATCH_WIRE_BYTES of JSON (at
 * least one row looked at), the cursor counted in; `next` is the sort key of the last row looked at,
 * absent when no row is left. An entry that, with its cursor, is over SYNC_ENTRY_MAX_WIRE_BYTES
 * of JSON, which no message could carry, is left out with a warning.
 */
export function fullPage<E>(store: LocalStore<E>, after: string | undefined, maxEntries = FULL_SYNC_PAGE_ENTRIES): { entries: E[]; next?: string } {
  const { schema } = store;
  // Full-copy tables have "" as partition key and are read by sort key; the first row read
  // is `after` itself if it is still there (the bound is inclusive).
  const limit = maxEntries + 1;
  const read = store.range("", { start: after ?? "", limit });
  const candidates = after !== undefined && read.length > 0 && schema.sortKey(read[0]!) === after ? read.slice(1) : read;
  const entries: E[] = [];
  let bytes = 0;
  let looked = 0;
  let last: string | undefined;
  for (const entry of candidates) {
    if (looked === maxEntries) break;
    const sk = schema.sortKey(entry);
    const size = wireBytes(entry);
    // Its sort key ends the page if it is the last row looked at.
    const cursor = wireBytes(sk);
    const sendable = size + cursor <= SYNC_ENTRY_MAX_WIRE_BYTES;
    if (looked > 0 && bytes + (sendable ? size : 0) + cursor > SYNC_BATCH_WIRE_BYTES) break;
    if (sendable) {
      bytes += size;
      entries.push(entry);
    } else {
      tooLargeLog.note(`${schema.name}\u0000${sk}`, (suppressed) =>
        log.warn(
          `${schema.name} entry ${JSON.stringify(sk.slice(0, 64))} is ${size} bytes of JSON, over the ${SYNC_ENTRY_MAX_WIRE_BYTES} one message carries: not sent to peers${suppressedNote(suppressed, "times")}`,
        ),
      );
    }
    looked++;
    last = sk;
  }
  // Rows left: not all looked at, or the read stopped at its limit (more may follow).
  const more = looked < candidates.length || read.length === limit;
  return last !== undefined && more ? { entries, next: last } : { entries };
}

/** True when sort key `b` comes after `a` in the order rows are read in (sqlite's BINARY: UTF-8 bytes). */
function comesAfter(a: string, b: string): boolean {
  return Buffer.compare(Buffer.from(b, "utf8"), Buffer.from(a, "utf8")) > 0;
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
    handle(rpc, EP_DUMP, async ({ table, after }) => fullPage(storeOf(EP_DUMP.name, table), after));
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

  /**
   * Pulls the peer's table page by page, merging each, then pushes this node's (merged) table
   * page by page. Each loop goes through at most MAX_FULL_TABLE_ENTRIES entries or pages.
   */
  private async syncWith(peer: string, store: LocalStore<unknown>): Promise<void> {
    const table = store.schema.name;
    const opts = { priority: PRIO_BACKGROUND, timeoutMs: CALL_TIMEOUT_MS };
    const theirs = await call(this.rpc, peer, EP_DIGEST, { table }, opts);
    if (theirs.digest === digest(this.db, table)) return;
    const from = `${table} dump from ${peer.slice(0, 16)}`;
    let cursor: string | undefined;
    for (let seen = 0; ; ) {
      const { entries, next } = await call(this.rpc, peer, EP_DUMP, cursor === undefined ? { table } : { table, after: cursor }, opts);
      await store.apply(checkPeerEntries(store.schema, entries, from, RPC_ERR.badResponse));
      if (next === undefined) break;
      // A cursor that does not move on would have this loop ask for the same page again.
      if (cursor !== undefined && !comesAfter(cursor, next)) throw new RpcError(`endpoint '${EP_DUMP.name}' ${from}: invalid response: a page after ${JSON.stringify(cursor)} ends at ${JSON.stringify(next)}`, RPC_ERR.badResponse);
      seen += Math.max(1, entries.length);
      if (seen > MAX_FULL_TABLE_ENTRIES) throw new Error(`${from}: more than ${MAX_FULL_TABLE_ENTRIES} entries`);
      cursor = next;
    }
    cursor = undefined;
    for (let seen = 0; ; ) {
      const { entries, next }: { entries: unknown[]; next?: string } = fullPage(store, cursor);
      if (entries.length > 0) await call(this.rpc, peer, EP_PUSH, { table, entries }, opts);
      if (next === undefined) break;
      seen += Math.max(1, entries.length);
      if (seen > MAX_FULL_TABLE_ENTRIES) throw new Error(`${table}: more than ${MAX_FULL_TABLE_ENTRIES} entries, not all pushed to ${peer.slice(0, 16)}`);
      cursor = next;
    }
    log.info(`${table}: reconciled with ${peer.slice(0, 16)}`);
  }
}
