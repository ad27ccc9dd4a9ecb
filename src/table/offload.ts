// Table offload (Garage: the "offload" branch of table sync): the entries of sharded tables in
// partitions this node holds in no live layout version. After a layout change moved a partition
// away and the version that gave it to this node retired, nothing reads or writes those rows
// here any more, yet they would stay forever. This module owns the worker that hands them over:
// for each such partition, a bounded page at a time,
//   1. push the page to every node of the partition in every live layout version (the sync push
//      endpoint merges it with the CRDT join, so a holder that already has newer data loses
//      nothing);
//   2. once every one of them acknowledged it, delete those rows here, each only if it is still
//      stored exactly as read (a value merged in meanwhile may not be on the holders yet).
// A holder that cannot be reached leaves the rows in place for a later pass. A partition this
// node holds in any live version is never touched; nor is anything before a layout exists.
// Pages cross the wire as JSON, bounded as sync.ts bounds its batches (SYNC_BATCH_WIRE_BYTES);
// an entry no message can carry (SYNC_ENTRY_MAX_WIRE_BYTES) is left out with a warning and,
// never handed over, stays here: offload deletes only what every holder acknowledged.
// Blocks have their own offload (block/manager.ts offloadPass).
import { releasedPartitions, type Placement, type ReleasedPartition } from "../cluster/layout";
import type { GroupCommitter } from "../db/committer";
import { call } from "../rpc/endpoint";
import { PRIO_BACKGROUND, type RpcNode } from "../rpc/rpc";
import { logger } from "../util/log";
import type { WorkerStats } from "../util/worker-stats";
import { WorkerLoop } from "../util/worker-loop";
import type { LocalStore, RowCursor, StoredRow } from "./local-store";
import { SYNC_BATCH_WIRE_BYTES, SYNC_ENTRY_MAX_WIRE_BYTES, SYNC_PUSH, wireBytes } from "./sync";

const log = logger("offload");

/** How often a node looks for rows of partitions it no longer holds (Garage syncs every 10 min). */
export const TABLE_OFFLOAD_INTERVAL_MS = 10 * 60 * 1000;
/**
 * How often the placement is checked for partitions newly released (an old layout version
 * retired): a retirement arrives by gossip, with no sync pass after it, and waiting for the
 * next periodic pass would keep the rows up to TABLE_OFFLOAD_INTERVAL_MS longer. The check
 * reads only the layout in memory.
 */
export const TABLE_OFFLOAD_LAYOUT_CHECK_MS = 5_000;
/** Most rows pushed in one message (and deleted in one transaction). */
export const TABLE_OFFLOAD_PAGE_ROWS = 500;
/**
 * JSON bytes past which a page ends (at least one entry a page): a page goes through the sync
 * push endpoint as JSON, up to many times its stored size (a bound on stored bytes let a page
 * of 4 MiB stored pass the 16 MiB head limit, and the partition failed on every pass). The
 * same bound as a sync push batch, for the same reason.
 */
export const TABLE_OFFLOAD_PAGE_WIRE_BYTES = SYNC_BATCH_WIRE_BYTES;
/**
 * Pages handed over in one pass; a pass that stops there is followed by another soon. A page
 * covers one table and one partition, so a node that left the layout has up to 6 x 256 of
 * them, most small: this drains a small node in a few passes.
 */
export const TABLE_OFFLOAD_PAGES_PER_PASS = 256;
/** Wait before the next pass when the last one stopped at the page bound, so requests get the writer too. */
export const TABLE_OFFLOAD_BUSY_PAUSE_MS = 100;
/** Wait before retrying rows a pass had to keep (a holder unreachable, a row changed meanwhile). */
export const TABLE_OFFLOAD_RETRY_MS = 60_000;
/** Time a holder has to merge one page. */
export const TABLE_OFFLOAD_CALL_TIMEOUT_MS = 30_000;

/** How pages reach the holders (RpcOffloadRemote over RPC; fakes in tests). */
export interface OffloadRemote {
  /** Resolves once `node` has merged `entries` into its copy of `table`. */
  push(node: string, table: string, entries: unknown[]): Promise<void>;
}

/** Pushes through the sharded sync's push endpoint, which also starts a block resync on the holder for block references. */
export class RpcOffloadRemote implements OffloadRemote {
  constructor(
    private readonly rpc: RpcNode,
    private readonly timeoutMs = TABLE_OFFLOAD_CALL_TIMEOUT_MS,
  ) {}

  async push(node: string, table: string, entries: unknown[]): Promise<void> {
    await call(this.rpc, node, SYNC_PUSH, { table, entries }, { priority: PRIO_BACKGROUND, timeoutMs: this.timeoutMs });
  }
}

export interface OffloadReport {
  /** Partitions this node holds in no live layout version (whether it has rows there or not). */
  released: number;
  /** Pages read and pushed. */
  pages: number;
  /** Rows every holder acknowledged. */
  pushed: number;
  /** Rows deleted here after that. */
  offloaded: number;
  /** Rows kept because they changed between read and delete (a later pass pushes the new value). */
  changed: number;
  /** Rows of pushed pages kept because a holder failed or the layout moved meanwhile. */
  kept: number;
  /**
   * Rows kept because their entry is over SYNC_ENTRY_MAX_WIRE_BYTES of JSON, more than one
   * message carries: never pushed, so never deleted (each logged, on every pass).
   */
  tooLarge: number;
  /** (table, partition) pairs with rows left for a later pass because a holder failed earlier in this one. */
  deferred: number;
  /** True when the pass stopped at the page bound with rows left. */
  more: boolean;
}

export interface TableOffloadOptions {
  pageRows?: number;
  pageWireBytes?: number;
  pagesPerPass?: number;
  intervalMs?: number;
  layoutCheckMs?: number;
  retryMs?: number;
  busyPauseMs?: number;
}

type Released = ReleasedPartition;

export class TableOffload {
  private readonly stores: LocalStore<unknown>[];
  private readonly pageRows: number;
  private readonly pageWireBytes: number;
  private readonly pagesPerPass: number;
  private readonly intervalMs: number;
  private readonly layoutCheckMs: number;
  private readonly retryMs: number;
  private readonly busyPauseMs: number;
  private readonly loop: WorkerLoop<OffloadReport>;
  /** The released partitions (and their holders) the last pass started from. */
  private lastReleased: string | undefined;

  constructor(
    allStores: ReadonlyMap<string, LocalStore<unknown>>,
    private readonly placement: Placement,
    private readonly committer: GroupCommitter,
    private readonly remote: OffloadRemote,
    options: TableOffloadOptions = {},
  ) {
    this.stores = [...allStores.values()].filter((s) => s.schema.replication === "sharded");
    this.pageRows = options.pageRows ?? TABLE_OFFLOAD_PAGE_ROWS;
    this.pageWireBytes = options.pageWireBytes ?? TABLE_OFFLOAD_PAGE_WIRE_BYTES;
    this.pagesPerPass = options.pagesPerPass ?? TABLE_OFFLOAD_PAGES_PER_PASS;
    this.intervalMs = options.intervalMs ?? TABLE_OFFLOAD_INTERVAL_MS;
    this.layoutCheckMs = options.layoutCheckMs ?? TABLE_OFFLOAD_LAYOUT_CHECK_MS;
    this.retryMs = options.retryMs ?? TABLE_OFFLOAD_RETRY_MS;
    this.busyPauseMs = options.busyPauseMs ?? TABLE_OFFLOAD_BUSY_PAUSE_MS;
    this.loop = new WorkerLoop(
      {
        name: "table offload",
        intervalMs: this.intervalMs,
        // A pass that hit its page bound comes back soon; one that left rows behind, later.
        nextDelayMs: (o) => (!o.ok ? this.retryMs : o.result.more ? this.busyPauseMs : o.result.kept + o.result.changed + o.result.deferred > 0 ? this.retryMs : this.intervalMs),
        poll: { everyMs: this.layoutCheckMs, due: () => this.layoutChanged() },
        again: true,
        queueLength: () => this.waiting(),
      },
      ({ signal }) => this.pass(signal),
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

  /**
   * Starts a pass without waiting for it (sync passes, `repair tables`) once started, and not
   * after stop; errors are logged.
   */
  trigger(): void {
    this.loop.wake();
  }

  /** One bounded pass; a request during a pass gets one more, right after it. */
  runOnce(): Promise<OffloadReport> {
    return this.loop.run();
  }

  private released(): Released[] {
    return releasedPartitions(this.placement);
  }

  /** A pass under way may be past a partition released since it began: looked at between passes. */
  private layoutChanged(): boolean {
    const released = this.released();
    return released.length > 0 && signature(released) !== this.lastReleased;
  }

  /**
   * (table, partition) pairs with rows this node should hand over: the worker's queue. A
   * partition whose only rows are entries too large to send stays in it.
   */
  private waiting(): number {
    let n = 0;
    for (const { partition } of this.released()) for (const store of this.stores) if (store.hasRowsInPartition(partition)) n++;
    return n;
  }

  private async pass(signal: AbortSignal): Promise<OffloadReport> {
    const report: OffloadReport = { released: 0, pages: 0, pushed: 0, offloaded: 0, changed: 0, kept: 0, tooLarge: 0, deferred: 0, more: false };
    const released = this.released();
    this.lastReleased = signature(released);
    report.released = released.length;
    // Holders that failed during this pass: their other partitions wait for the next one
    // rather than each waiting out a timeout.
    const failed = new Set<string>();
    let pagesLeft = this.pagesPerPass;
    walk: for (const { partition, holders } of released) {
      for (const store of this.stores) {
        let after: RowCursor | undefined;
        for (;;) {
          const page = this.readPage(store, partition, after);
          if (page.last === undefined) break;
          if (holders.some((n) => failed.has(n))) {
            report.deferred++;
            break;
          }
          if (pagesLeft === 0 || signal.aborted) {
            report.more = true;
            break walk;
          }
          pagesLeft--;
          report.pages++;
          after = page.last;
          for (const { row, bytes } of page.tooLarge) {
            report.tooLarge++;
            log.warn(
              `${store.schema.name} entry (${row.pk.slice(0, 64)} / ${row.sk.slice(0, 64)}) of partition ${partition} is ${bytes} bytes of JSON, over the ${SYNC_ENTRY_MAX_WIRE_BYTES} one message carries: not offloaded, kept here`,
            );
          }
          // A page of nothing but such entries: the cursor moved past them, go on.
          if (page.rows.length === 0) continue;
          if (!(await this.handOver(store, partition, holders, page.rows, page.entries, failed, report))) break;
        }
      }
    }
    if (report.offloaded > 0) log.info(`offloaded ${report.offloaded} table entries of partitions this node no longer holds`);
    return report;
  }

  /**
   * The next page of a partition after `after`: of at most pageRows rows read, the rows to hand
   * over with their entries, up to pageWireBytes of JSON (at least one entry); those over
   * SYNC_ENTRY_MAX_WIRE_BYTES apart (not handed over, so never deleted); and the cursor past
   * every row looked at (undefined: none left).
   */
  private readPage(
    store: LocalStore<unknown>,
    partition: number,
    after: RowCursor | undefined,
  ): { rows: StoredRow[]; entries: unknown[]; tooLarge: { row: StoredRow; bytes: number }[]; last: RowCursor | undefined } {
    const read = store.partitionPage(partition, after, this.pageRows);
    const rows: StoredRow[] = [];
    const entries: unknown[] = [];
    const tooLarge: { row: StoredRow; bytes: number }[] = [];
    let last: RowCursor | undefined;
    let bytes = 0;
    for (const row of read) {
      const entry = store.decode(row);
      const size = wireBytes(entry);
      if (size > SYNC_ENTRY_MAX_WIRE_BYTES) {
        tooLarge.push({ row, bytes: size });
      } else {
        if (rows.length > 0 && bytes + size > this.pageWireBytes) break;
        bytes += size;
        rows.push(row);
        entries.push(entry);
      }
      last = row;
    }
    return { rows, entries, tooLarge, last };
  }

  /**
   * Pushes one page (`entries`, decoded from `page`) to every holder, then deletes those rows
   * here, and only those; false when the partition must wait.
   */
  private async handOver(
    store: LocalStore<unknown>,
    partition: number,
    holders: string[],
    page: StoredRow[],
    entries: unknown[],
    failed: Set<string>,
    report: OffloadReport,
  ): Promise<boolean> {
    const table = store.schema.name;
    const results = await Promise.allSettled(holders.map((node) => this.remote.push(node, table, entries)));
    const errors = results.flatMap((r, i) => (r.status === "rejected" ? [{ node: holders[i]!, err: r.reason as Error }] : []));
    if (errors.length > 0) {
      for (const { node, err } of errors) {
        failed.add(node);
        this.stats.noteError(err);
        log.debug(`offload of ${table} partition ${partition} to ${node.slice(0, 16)}: ${err?.message ?? err}`);
      }
      report.kept += page.length;
      return false;
    }
    report.pushed += page.length;
    // The committer may replay this callback: it only counts into its own result.
    const done = await this.committer.write(() => {
      // Checked again at the moment of deleting: the layout may have changed during the push.
      // The partition may have come back to this node, or gone to a node that was not sent
      // this page.
      const now = new Set(this.placement.writeSets(partition).flat());
      if (now.size === 0 || now.has(this.placement.selfId) || [...now].some((n) => !holders.includes(n))) return undefined;
      const r = { offloaded: 0, changed: 0 };
      for (const row of page) {
        const outcome = store.deleteIfUnchangedInTransaction(row.pk, row.sk, row.v);
        if (outcome === "deleted") r.offloaded++;
        else if (outcome === "changed") r.changed++;
      }
      return r;
    });
    if (!done) {
      report.kept += page.length;
      return false;
    }
    report.offloaded += done.offloaded;
    report.changed += done.changed;
    return true;
  }
}

function signature(released: Released[]): string {
  return released.map((r) => `${r.partition}:${r.holders.join(",")}`).join(";");
}
