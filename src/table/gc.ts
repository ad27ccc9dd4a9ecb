// Table GC (Garage's table/gc.rs): a tombstone of a sharded table is removed once every replica
// holds it and TABLE_GC_DELAY_MS has passed. This module owns the todo table `table_gc_todo`
// (LocalStore arms a row whenever it stores a tombstone), the delay, and the worker that
// collects due rows, a bounded batch at a time:
//   1. push the tombstone to every node of its partition in every live layout version, and
//      learn what each then holds (one may hold something newer);
//   2. ask each of them to delete it if it still holds exactly that encoding;
//   3. once all agreed, delete the local copy, again only if unchanged.
// No replica deletes before all of them hold the tombstone, so none can hand an older value
// back to one that already deleted. An unreachable or refusing node leaves the row for a
// later retry, with backoff.
import { createHash } from "node:crypto";
import type { Database, Statement } from "bun:sqlite";
import type { Placement } from "../cluster/layout";
import type { GroupCommitter } from "../db/committer";
import { logger } from "../util/log";
import type { WorkerStats } from "../util/worker-stats";
import { WorkerLoop } from "../util/worker-loop";
import type { DeleteOutcome, LocalStore, TombstoneRef } from "./local-store";
import { partitionOfEntry } from "./partition";
import { checkPeerEntries } from "./peer-entries";
import { RPC_ERR } from "../rpc/rpc";
import { envMilliseconds } from "../util/env";

const log = logger("gc");

/**
 * Time a tombstone is kept before GC may collect it (Garage: 24 h): a node that was away, or a
 * partition still moving after a layout change, gets it by anti-entropy first.
 */
export const TABLE_GC_DELAY_MS = 24 * 60 * 60 * 1000;
/** Overrides TABLE_GC_DELAY_MS, in milliseconds (tests cannot wait a day). */
export const TABLE_GC_DELAY_ENV = "BUNKER_TABLE_GC_DELAY_MS";
/** Most todo rows handled in one pass (Garage: 1024). */
export const TABLE_GC_BATCH = 256;
/** Wait between passes when the last one found less than a full batch. */
export const TABLE_GC_INTERVAL_MS = 10_000;
/** Wait between passes while full batches keep coming, so that requests get the writer too. */
export const TABLE_GC_BUSY_PAUSE_MS = 100;
/** Replica groups (one table, one node set) collected at the same time within a pass. */
export const TABLE_GC_GROUPS_IN_FLIGHT = 8;
/** Retry delay after the first failure of a row; it doubles with each failure, up to the max. */
export const TABLE_GC_RETRY_MIN_MS = 60_000;
export const TABLE_GC_RETRY_MAX_MS = 60 * 60 * 1000;

/** The configured delay: TABLE_GC_DELAY_ENV if set, else TABLE_GC_DELAY_MS. */
export function tableGcDelayMs(): number {
  return envMilliseconds(TABLE_GC_DELAY_ENV, TABLE_GC_DELAY_MS);
}

/** Wait before the next attempt on a row that has failed `failures` times before this one. */
export function retryDelayMs(failures: number): number {
  return Math.min(TABLE_GC_RETRY_MIN_MS * 2 ** Math.min(failures, 30), TABLE_GC_RETRY_MAX_MS);
}

/** Names the value a todo row is about; a row whose entry no longer hashes so is stale. */
export function valueHash(encoded: string): string {
  return createHash("sha256").update(encoded).digest("hex").slice(0, 32);
}

export interface GcTodoRow {
  tbl: string;
  pk: string;
  sk: string;
  vhash: string;
  due: number;
  /** Failed attempts so far. */
  tries: number;
}

/** The persisted queue of tombstones to collect. */
export class GcTodo {
  private readonly armStmt: Statement;
  private readonly removeStmt: Statement;
  private readonly removeIfStmt: Statement;
  private readonly postponeStmt: Statement;
  private readonly dueStmt: Statement;
  private readonly countStmt: Statement;

  constructor(db: Database) {
    this.armStmt = db.query(`INSERT OR REPLACE INTO table_gc_todo (tbl, pk, sk, vhash, due, tries) VALUES (?, ?, ?, ?, ?, 0)`);
    this.removeStmt = db.query(`DELETE FROM table_gc_todo WHERE tbl = ? AND pk = ? AND sk = ?`);
    this.removeIfStmt = db.query(`DELETE FROM table_gc_todo WHERE tbl = ? AND pk = ? AND sk = ? AND vhash = ?`);
    this.postponeStmt = db.query(`UPDATE table_gc_todo SET due = ?, tries = ? WHERE tbl = ? AND pk = ? AND sk = ? AND vhash = ?`);
    this.dueStmt = db.query(`SELECT tbl, pk, sk, vhash, due, tries FROM table_gc_todo WHERE due <= ? ORDER BY due LIMIT ?`);
    this.countStmt = db.query(`SELECT count(*) AS n FROM table_gc_todo`);
  }

  /** (Re)queues an entry now stored as the tombstone `encoded`, collectable from `due` on. */
  arm(tbl: string, pk: string, sk: string, encoded: string, due: number): void {
    this.armStmt.run(tbl, pk, sk, valueHash(encoded), due);
  }

  remove(tbl: string, pk: string, sk: string): void {
    this.removeStmt.run(tbl, pk, sk);
  }

  /** Removes the row only if it is still about the same value (not re-armed meanwhile). */
  removeIf(row: GcTodoRow): void {
    this.removeIfStmt.run(row.tbl, row.pk, row.sk, row.vhash);
  }

  /** Backs the row off after a failed attempt (unless it was re-armed meanwhile). */
  postpone(row: GcTodoRow, now: number): void {
    this.postponeStmt.run(now + retryDelayMs(row.tries), row.tries + 1, row.tbl, row.pk, row.sk, row.vhash);
  }

  due(now: number, limit: number): GcTodoRow[] {
    return this.dueStmt.all(now, limit) as GcTodoRow[];
  }

  count(): number {
    return (this.countStmt.get() as { n: number }).n;
  }
}

/** How the worker reaches the other replicas (RpcReplicas provides it). */
export interface GcReplicas {
  /** Merges entries on `node`; resolves to what it then holds for each, in order. */
  insert(node: string, table: string, entries: unknown[], report: true): Promise<unknown[] | void>;
  deleteIfEqual(node: string, table: string, items: TombstoneRef[]): Promise<DeleteOutcome[]>;
}

export interface GcReport {
  /** Due rows taken (at most one batch). */
  examined: number;
  /** Tombstones removed here (and on every other replica). */
  collected: number;
  /** Rows about a value that is no longer stored: dropped. */
  stale: number;
  /** Tombstones a replica held newer: merged here, their row dropped or re-armed. */
  changed: number;
  /** Rows kept for a later retry (a replica unreachable or refusing). */
  postponed: number;
}

export interface TableGcOptions {
  /** Clock the due times are compared with (LocalStore arms rows with its own clock). */
  now?: () => number;
  batchSize?: number;
  intervalMs?: number;
}

interface Item {
  row: GcTodoRow;
  store: LocalStore<unknown>;
  ref: TombstoneRef;
  value: unknown;
}

interface Group {
  store: LocalStore<unknown>;
  /** Every replica but this node, over all live layout versions. */
  nodes: string[];
  items: Item[];
}

export class TableGc {
  private readonly loop: WorkerLoop<GcReport>;
  private readonly todo: GcTodo;
  private readonly now: () => number;
  private readonly batchSize: number;
  private readonly intervalMs: number;

  constructor(
    private readonly stores: ReadonlyMap<string, LocalStore<unknown>>,
    private readonly placement: Placement,
    db: Database,
    private readonly committer: GroupCommitter,
    /** Undefined on a single-node build: every replica is then the local store. */
    private readonly remote?: GcReplicas,
    options: TableGcOptions = {},
  ) {
    this.todo = new GcTodo(db);
    this.now = options.now ?? Date.now;
    this.batchSize = options.batchSize ?? TABLE_GC_BATCH;
    this.intervalMs = options.intervalMs ?? TABLE_GC_INTERVAL_MS;
    this.loop = new WorkerLoop(
      {
        name: "table gc",
        intervalMs: this.intervalMs,
        // A full batch means more are due: come back after a short pause.
        nextDelayMs: (o) => (o.ok && o.result.examined >= this.batchSize ? TABLE_GC_BUSY_PAUSE_MS : this.intervalMs),
        queueLength: () => this.todo.count(),
      },
      () => this.pass(),
    );
  }

  get stats(): WorkerStats {
    return this.loop.stats;
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** One pass over at most one batch of due rows; a call during a pass joins it. */
  runOnce(): Promise<GcReport> {
    return this.loop.run();
  }

  private async pass(): Promise<GcReport> {
    const report: GcReport = { examined: 0, collected: 0, stale: 0, changed: 0, postponed: 0 };
    const now = this.now();
    const rows = this.todo.due(now, this.batchSize);
    report.examined = rows.length;
    const stale: GcTodoRow[] = [];
    const waiting: Item[] = [];
    const groups = new Map<string, Group>();
    for (const row of rows) {
      const store = this.stores.get(row.tbl);
      const encoded = store?.getEncoded(row.pk, row.sk);
      if (!store || encoded === undefined || valueHash(encoded) !== row.vhash) {
        stale.push(row);
        continue;
      }
      const value: unknown = JSON.parse(encoded);
      const item: Item = { row, store, ref: { pk: row.pk, sk: row.sk, v: encoded }, value };
      if (store.schema.replication !== "sharded" || !store.schema.isTombstone?.(value)) {
        stale.push(row);
        continue;
      }
      if (store.holdsTombstone(value)) {
        waiting.push(item);
        continue;
      }
      const sets = this.placement.writeSets(partitionOfEntry(store.schema, row.pk));
      if (sets.length === 0) {
        waiting.push(item); // no layout yet: nobody can say who the replicas are
        continue;
      }
      const nodes = [...new Set(sets.flat())].filter((n) => n !== this.placement.selfId).sort();
      const key = `${row.tbl}\u0000${nodes.join(",")}`;
      const group = groups.get(key);
      if (group) group.items.push(item);
      else groups.set(key, { store, nodes, items: [item] });
    }
    if (stale.length > 0 || waiting.length > 0) {
      await this.committer.write(() => {
        for (const row of stale) this.todo.removeIf(row);
        for (const item of waiting) this.todo.postpone(item.row, now);
      });
    }
    report.stale = stale.length;
    report.postponed = waiting.length;

    const queue = [...groups.values()];
    const lanes = Array.from({ length: Math.min(TABLE_GC_GROUPS_IN_FLIGHT, queue.length) }, async () => {
      for (let g = queue.shift(); g; g = queue.shift()) await this.collectGroup(g, now, report);
    });
    await Promise.all(lanes);
    if (report.collected > 0) log.debug(`table gc: collected ${report.collected} tombstones`);
    return report;
  }

  private async collectGroup(group: Group, now: number, report: GcReport): Promise<void> {
    let agreed = group.items;
    const learned = new Map<Item, unknown[]>();
    const postponed: Item[] = [];
    const learn = (item: Item, value: unknown) => learned.set(item, [...(learned.get(item) ?? []), value]);
    if (group.nodes.length > 0) {
      try {
        const remote = this.remote;
        if (!remote) throw new Error("no RPC route to the other replicas (single-node build)");
        const table = group.store.schema.name;
        // 1. Every replica merges the tombstone and tells what it holds then.
        const replies = await Promise.all(group.nodes.map((node) => remote.insert(node, table, agreed.map((i) => i.value), true)));
        const held = replies.map((list) => {
          if (!Array.isArray(list) || list.length !== agreed.length) throw new Error(`${table}: a replica answered the gc push with a malformed list`);
          return checkPeerEntries(group.store.schema, list, `${table} gc push`, RPC_ERR.badResponse);
        });
        agreed = agreed.filter((item, i) => {
          for (const list of held) if (JSON.stringify(list[i]) !== item.ref.v) learn(item, list[i]);
          return !learned.has(item);
        });
        // 2. Every replica deletes it if unchanged since.
        if (agreed.length > 0) {
          const outcomes = await Promise.all(group.nodes.map((node) => remote.deleteIfEqual(node, table, agreed.map((i) => i.ref))));
          for (const list of outcomes) {
            if (!Array.isArray(list) || list.length !== agreed.length) throw new Error(`${table}: a replica answered delete-if-equal with a malformed list`);
          }
          agreed = agreed.filter((item, i) => {
            let all = true;
            for (const list of outcomes) {
              const o = list[i]!;
              if (o === "deleted" || o === "absent") continue;
              all = false;
              if (typeof o === "object" && o !== null) learn(item, checkPeerEntries(group.store.schema, [o.current], `${table} gc delete-if-equal`, RPC_ERR.badResponse)[0]);
            }
            if (!all && !learned.has(item)) postponed.push(item);
            return all;
          });
        }
      } catch (err) {
        // A replica is unreachable or failed: whatever is not settled waits for a retry.
        log.debug(`table gc of ${group.store.schema.name}: ${(err as Error).message}`);
        this.stats.noteError(err);
        postponed.push(...agreed);
        agreed = [];
      }
    }
    // 3. Here, in one transaction: delete what every replica agreed to, merge what they held
    // newer. The committer may replay this callback, so it only counts into its own result.
    const done = await this.committer.write(() => {
      const r = { collected: 0, changed: 0, postponed: 0 };
      const retry = (item: Item) => {
        this.todo.postpone(item.row, now);
        r.postponed++;
      };
      for (const item of postponed) retry(item);
      for (const item of agreed) {
        const outcome = item.store.deleteIfEqualInTransaction(item.ref);
        if (outcome === "deleted" || outcome === "absent") r.collected++;
        else if (outcome === "held") retry(item);
        else {
          // Changed here meanwhile: that write re-armed the row, or left it stale.
          this.todo.removeIf(item.row);
          r.changed++;
        }
      }
      for (const [item, values] of learned) {
        item.store.applyInTransaction(values);
        if (item.store.getEncoded(item.ref.pk, item.ref.sk) === item.ref.v) {
          retry(item); // what the replica held was older: push again later
        } else {
          this.todo.removeIf(item.row);
          r.changed++;
        }
      }
      return r;
    });
    report.collected += done.collected;
    report.changed += done.changed;
    report.postponed += done.postponed;
  }
}
