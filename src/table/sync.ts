// Anti-entropy for sharded tables: with every other replica of the partitions this node holds,
// it compares a digest per partition (one call per table and peer), then, for a partition that
// differs, a digest per sync bucket, then pulls and pushes the entries of the buckets that
// differ; CRDT merges do the rest.
// It runs periodically and whenever a peer comes back, so a node that missed writes while
// it was down converges without operator action.
// Partitions this node no longer holds are not compared here: table offload (offload.ts) hands
// their entries over, and runs after each pass (onPass).
import { PARTITION_COUNT, type Placement } from "../cluster/layout";
import { decodeJson, encodeJson, PRIO_BACKGROUND, type RpcNode } from "../rpc/rpc";
import { logger } from "../util/log";
import { SYNC_BUCKETS, type LocalStore } from "./local-store";
import { WorkerStats } from "../util/worker-stats";

const log = logger("sync");

/** How often every partition is compared with its other replicas (Garage: 10 min). */
export const SHARDED_SYNC_INTERVAL_MS = 10 * 60 * 1000;
/** Wait after a peer comes back before syncing, so a burst of reconnections syncs once. */
export const PEER_UP_SYNC_DELAY_MS = 1_000;
const CALL_TIMEOUT_MS = 60_000;

const EP_PARTITION_DIGESTS = "table/partition-digests";
const EP_DIGESTS = "table/bucket-digests";
const EP_ENTRIES = "table/bucket-entries";
const EP_PUSH = "table/bucket-push";
/**
 * Merges the entries sent into the receiver's copy of a sharded table (as a sync push does,
 * block references included): table offload (offload.ts) hands entries over through it.
 */
export const SYNC_PUSH_ENDPOINT = EP_PUSH;

export interface SyncReport {
  partitions: number;
  bucketsExchanged: number;
  errors: number;
  /** Replicas that were not connected, so their partitions could not be compared. */
  unreachable: number;
  /** When the pass started (ms): it reflects the placement of that moment. */
  startedAt: number;
}

export class ShardedTableSync {
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<SyncReport> | undefined;
  readonly stats = new WorkerStats("sharded table sync");
  private again = false;
  private readonly stores: LocalStore<unknown>[];
  private readonly passListeners: ((report: SyncReport) => void)[] = [];

  constructor(
    private readonly rpc: RpcNode,
    allStores: ReadonlyMap<string, LocalStore<unknown>>,
    private readonly placement: Placement,
    /** Called with the entries a peer had and this node merged (block refs start a resync). */
    private readonly onReceived: (table: string, entries: unknown[]) => void = () => {},
  ) {
    this.stores = [...allStores.values()].filter((s) => s.schema.replication === "sharded");
    const storeOf = (name: string) => {
      const s = this.stores.find((x) => x.schema.name === name);
      if (!s) throw new Error(`not a sharded table: ${name}`);
      return s;
    };
    rpc.handle(EP_PARTITION_DIGESTS, async ({ payload }) => {
      const { table } = decodeJson<{ table: string }>(payload);
      return { payload: encodeJson({ digests: storeOf(table).partitionDigests() }) };
    });
    rpc.handle(EP_DIGESTS, async ({ payload }) => {
      const { table, partition } = decodeJson<{ table: string; partition: number }>(payload);
      return { payload: encodeJson({ digests: storeOf(table).bucketDigests(partition) }) };
    });
    rpc.handle(EP_PUSH, async ({ payload }) => {
      const { table, entries } = decodeJson<{ table: string; entries: unknown[] }>(payload);
      await storeOf(table).apply(entries);
      this.onReceived(table, entries);
      return { payload: encodeJson({}) };
    });
    rpc.handle(EP_ENTRIES, async ({ payload }) => {
      const { table, bucket } = decodeJson<{ table: string; bucket: number }>(payload);
      return { payload: encodeJson({ entries: storeOf(table).bucketEntries(bucket) }) };
    });
  }

  start(): void {
    this.timer = setInterval(() => void this.syncAll(), SHARDED_SYNC_INTERVAL_MS);
    this.rpc.on("peer-up", () => setTimeout(() => void this.syncAll(), PEER_UP_SYNC_DELAY_MS));
    void this.syncAll();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /**
   * Calls `fn` after every finished pass: table offload runs then, since a pass follows layout
   * changes and peers coming back, the moments when partitions may have left this node.
   */
  onPass(fn: (report: SyncReport) => void): void {
    this.passListeners.push(fn);
  }

  /** One full pass; a request during a pass schedules one more pass right after it. */
  syncAll(): Promise<SyncReport> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.stats.run(() => this.pass()).then((report) => {
      for (const fn of this.passListeners) {
        try {
          fn(report);
        } catch (err) {
          log.warn(`after a sync pass: ${(err as Error).message}`);
        }
      }
      return report;
    }).finally(() => {
      this.running = undefined;
      if (this.again) {
        this.again = false;
        void this.syncAll();
      }
    });
    return this.running;
  }

  private async pass(): Promise<SyncReport> {
    const report: SyncReport = { partitions: 0, bucketsExchanged: 0, errors: 0, unreachable: 0, startedAt: Date.now() };
    const self = this.placement.selfId;
    // The partitions this node shares with each other replica.
    const shared = new Map<string, number[]>();
    for (let p = 0; p < PARTITION_COUNT; p++) {
      const replicas = new Set(this.placement.writeSets(p).flat());
      if (!replicas.has(self)) continue;
      report.partitions++;
      for (const peer of replicas) if (peer !== self) shared.set(peer, [...(shared.get(peer) ?? []), p]);
    }
    for (const [peer, partitions] of shared) {
      if (!this.rpc.isConnected(peer)) {
        report.unreachable += partitions.length;
        continue;
      }
      for (const store of this.stores) {
        let differing: number[];
        try {
          differing = await this.differingPartitions(peer, store, partitions);
        } catch (err) {
          report.errors++;
          log.debug(`${store.schema.name} partition digests with ${peer.slice(0, 16)}: ${(err as Error).message}`);
          continue;
        }
        for (const p of differing) {
          try {
            report.bucketsExchanged += await this.syncPartition(peer, store, p);
          } catch (err) {
            report.errors++;
            log.debug(`${store.schema.name} partition ${p} with ${peer.slice(0, 16)}: ${(err as Error).message}`);
          }
        }
      }
    }
    if (report.bucketsExchanged > 0) log.info(`anti-entropy: ${report.bucketsExchanged} sync buckets reconciled over ${report.partitions} partitions`);
    return report;
  }

  /** Of `partitions`, those whose digest differs between this node and `peer`. */
  private async differingPartitions(peer: string, store: LocalStore<unknown>, partitions: number[]): Promise<number[]> {
    const reply = await this.rpc.call(peer, EP_PARTITION_DIGESTS, encodeJson({ table: store.schema.name }), { priority: PRIO_BACKGROUND, timeoutMs: CALL_TIMEOUT_MS });
    const theirs = decodeJson<{ digests: string[] }>(reply.payload).digests;
    const ours = store.partitionDigests();
    return partitions.filter((p) => theirs[p] !== ours[p]);
  }

  private async syncPartition(peer: string, store: LocalStore<unknown>, partition: number): Promise<number> {
    const table = store.schema.name;
    const opts = { priority: PRIO_BACKGROUND, timeoutMs: CALL_TIMEOUT_MS };
    const reply = await this.rpc.call(peer, EP_DIGESTS, encodeJson({ table, partition }), opts);
    const theirs = decodeJson<{ digests: string[] }>(reply.payload).digests;
    const ours = store.bucketDigests(partition);
    let exchanged = 0;
    for (let b = 0; b < SYNC_BUCKETS; b++) {
      if (theirs[b] === ours[b]) continue;
      const bucket = partition * SYNC_BUCKETS + b;
      const r = await this.rpc.call(peer, EP_ENTRIES, encodeJson({ table, bucket }), opts);
      const received = decodeJson<{ entries: unknown[] }>(r.payload).entries;
      await store.apply(received);
      this.onReceived(table, received);
      const mine = store.bucketEntries(bucket);
      if (mine.length > 0) await this.rpc.call(peer, EP_PUSH, encodeJson({ table, entries: mine }), opts);
      exchanged++;
    }
    return exchanged;
  }
}
