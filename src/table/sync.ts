// Anti-entropy for sharded tables: with every other replica of the partitions this node holds,
// it compares a digest per partition (one call per table and peer), then, for a partition that
// differs, a digest per sync bucket, then, for a bucket that differs, the hash of each row (the
// hashes the digests XOR): it pulls the rows only the peer holds and pushes the rows only it
// holds, so a pass moves the entries that differ, not whole buckets; CRDT merges do the rest.
// Entries move in batches of at most SYNC_BATCH_ENTRIES entries and about SYNC_BATCH_WIRE_BYTES
// of JSON (what crosses the wire), one batch in flight per pass; a pull names the peer's row ids
// (from its row-hashes answer), so the peer reads those rows and no others. Row ids can be reused
// by the peer between its answer and the pull, so what a pull brings is merged only if it belongs
// to one of the sync buckets being reconciled.
// Still proportional to the data: every object of one S3 bucket is in one partition (the object
// table's partition key is the bucket id), so at a million objects a sync bucket holds ~4 000
// rows, and a partition that differs at all has the kept hash of each of its rows read on both
// sides (db/table-rows.ts, column h: 16 bytes a row, not the ~1.4 KB entry), one bucket at a
// time. A further digest level would make that proportional to the differences.
// It runs periodically and whenever a peer comes back, so a node that missed writes while
// it was down converges without operator action.
// Partitions this node no longer holds are not compared here: table offload (offload.ts) hands
// their entries over, and runs after each pass (onPass).
import { PARTITION_COUNT, type Placement } from "../cluster/layout";
import { Type } from "@sinclair/typebox";
import { call, endpoint, handle } from "../rpc/endpoint";
import { MAX_HEAD_BYTES, PRIO_BACKGROUND, RPC_ERR, RpcError, type RpcNode } from "../rpc/rpc";
import { logger } from "../util/log";
import { MAX_SYNC_BUCKET_ENTRIES, SYNC_BUCKETS, syncBucketOf, type LocalStore } from "./local-store";
import { partitionOfEntry } from "./partition";
import type { WorkerStats } from "../util/worker-stats";
import { WorkerLoop } from "../util/worker-loop";
import { checkPeerEntries } from "./peer-entries";
import { releaseRow } from "../db/table-rows";
import { EntriesSchema, storeNamed, TableNameSchema } from "./rpc-replicas";

const log = logger("sync");

/** How often every partition is compared with its other replicas (Garage: 10 min). */
export const SHARDED_SYNC_INTERVAL_MS = 10 * 60 * 1000;
/** Wait after a peer comes back before syncing, so a burst of reconnections syncs once. */
export const PEER_UP_SYNC_DELAY_MS = 1_000;
const CALL_TIMEOUT_MS = 60_000;

/** A digest per partition or sync bucket: hex, "" for an empty one. */
const DigestSchema = Type.String({ maxLength: 64 });
/** A row's hash (db/table-rows.ts rowHash), hex. */
const RowHashSchema = Type.String({ minLength: 32, maxLength: 32 });
/** Most entries a pass pulls in one call or pushes in one call (and holds decoded at once). */
export const SYNC_BATCH_ENTRIES = 1_000;
/**
 * JSON bytes past which a pull answer or a push ends early (at least one entry each). Entries
 * cross the wire as JSON, which is up to many times their stored size (a dictionary word is one
 * stored byte and up to 27 in JSON, a small int one and up to 3): a bound on stored bytes let a
 * batch go past the 16 MiB head limit and fail on every pass. Half the limit leaves room for
 * the envelope and for the one entry that may go past it.
 */
export const SYNC_BATCH_WIRE_BYTES = MAX_HEAD_BYTES / 2;
/**
 * Largest JSON of one entry that is sent at all: alone in a message, it must leave room in the
 * head for the endpoint name and the envelope. A larger entry could not cross the wire in any
 * message (a table insert sends entries the same way, but merges can grow one): sync leaves
 * it out with a warning rather than fail the whole partition on every pass.
 */
export const SYNC_ENTRY_MAX_WIRE_BYTES = MAX_HEAD_BYTES - 64 * 1024;
/**
 * Row hashes past which an answer of table/bucket-row-hashes ends early (at least one bucket):
 * ~35 bytes each in a message head, and a whole bucket is held to compare at once.
 */
export const SYNC_HASHES_PER_CALL = 20_000;
/**
 * Entry bytes a row-hashes answer reads past which it ends early (at least one bucket): rows
 * written before migration 7 keep no hash and are read whole to be hashed (db/table-rows.ts).
 */
export const SYNC_READ_BYTES = 4 * 1024 * 1024;
const SyncEntriesSchema = Type.Array(Type.Unknown(), { maxItems: SYNC_BATCH_ENTRIES });

const EP_PARTITION_DIGESTS = endpoint(
  "table/partition-digests",
  Type.Object({ table: TableNameSchema }),
  Type.Object({ digests: Type.Array(DigestSchema, { minItems: PARTITION_COUNT, maxItems: PARTITION_COUNT }) }),
);
const EP_DIGESTS = endpoint(
  "table/bucket-digests",
  Type.Object({ table: TableNameSchema, partition: Type.Integer({ minimum: 0, maximum: PARTITION_COUNT - 1 }) }),
  Type.Object({ digests: Type.Array(DigestSchema, { minItems: SYNC_BUCKETS, maxItems: SYNC_BUCKETS }) }),
);
const RowIdSchema = Type.Integer({ minimum: 1 });
const BucketIdSchema = Type.Integer({ minimum: 0, maximum: PARTITION_COUNT * SYNC_BUCKETS - 1 });
/**
 * The row hashes of sync buckets (one list per bucket, in the order asked) with each row's id
 * on the answering node; `served` says how many of the buckets the answer covers, at least one,
 * fewer past SYNC_HASHES_PER_CALL hashes or SYNC_READ_BYTES read: the caller asks again for the
 * rest.
 */
const EP_ROW_HASHES = endpoint(
  "table/bucket-row-hashes",
  Type.Object({ table: TableNameSchema, buckets: Type.Array(BucketIdSchema, { minItems: 1, maxItems: SYNC_BUCKETS }) }),
  Type.Object({
    hashes: Type.Array(Type.Array(RowHashSchema, { maxItems: MAX_SYNC_BUCKET_ENTRIES }), { minItems: 1, maxItems: SYNC_BUCKETS }),
    ids: Type.Array(Type.Array(RowIdSchema, { maxItems: MAX_SYNC_BUCKET_ENTRIES }), { minItems: 1, maxItems: SYNC_BUCKETS }),
    served: Type.Integer({ minimum: 1, maximum: SYNC_BUCKETS }),
  }),
);
/**
 * The entries stored in the rows with these ids (from table/bucket-row-hashes), in the order
 * asked, as they are now; `served` says how many of the ids the answer covers (rows gone since
 * included): the caller asks again for the rest.
 */
const EP_PULL = endpoint(
  "table/bucket-pull",
  Type.Object({ table: TableNameSchema, ids: Type.Array(RowIdSchema, { minItems: 1, maxItems: SYNC_BATCH_ENTRIES }) }),
  Type.Object({ entries: SyncEntriesSchema, served: Type.Integer({ minimum: 1, maximum: SYNC_BATCH_ENTRIES }) }),
);
/**
 * Merges the entries sent into the receiver's copy of a sharded table (as a sync push does,
 * block references included): table offload (offload.ts) hands entries over through it.
 */
export const SYNC_PUSH = endpoint("table/bucket-push", Type.Object({ table: TableNameSchema, entries: EntriesSchema }), Type.Object({}));
const EP_PUSH = SYNC_PUSH;

export interface SyncReport {
  partitions: number;
  bucketsExchanged: number;
  /** Entries pulled from peers (they differed or were missing here). */
  entriesPulled: number;
  /** Entries pushed to peers (they differed or were missing there). */
  entriesPushed: number;
  errors: number;
  /** Replicas that were not connected, so their partitions could not be compared. */
  unreachable: number;
  /** When the pass started (ms): it reflects the placement of that moment. */
  startedAt: number;
  /** The node was stopping: peers after that point were not compared. */
  interrupted: boolean;
}

export class ShardedTableSync {
  /** A request during a pass gets one more whole pass after it (it may be past what changed). */
  private readonly loop = new WorkerLoop<SyncReport>({ name: "sharded table sync", intervalMs: SHARDED_SYNC_INTERVAL_MS, firstDelayMs: 0, again: true }, ({ signal }) =>
    this.pass(signal),
  );
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
    const storeOf = (endpointName: string, name: string) => storeNamed(allStores, endpointName, name, (s) => s.schema.replication === "sharded");
    handle(rpc, EP_PARTITION_DIGESTS, async ({ table }) => ({ digests: storeOf(EP_PARTITION_DIGESTS.name, table).partitionDigests() }));
    handle(rpc, EP_DIGESTS, async ({ table, partition }) => ({ digests: storeOf(EP_DIGESTS.name, table).bucketDigests(partition) }));
    handle(rpc, EP_PUSH, async ({ table, entries }) => {
      const store = storeOf(EP_PUSH.name, table);
      const checked = checkPeerEntries(store.schema, entries, `endpoint '${EP_PUSH.name}'`, RPC_ERR.badRequest);
      await store.apply(checked);
      this.onReceived(table, checked);
      return {};
    });
    handle(rpc, EP_ROW_HASHES, async ({ table, buckets }) => rowHashesAnswer(storeOf(EP_ROW_HASHES.name, table), buckets));
    handle(rpc, EP_PULL, async ({ table, ids }) => pullAnswer(storeOf(EP_PULL.name, table), ids));
  }

  get stats(): WorkerStats {
    return this.loop.stats;
  }

  start(): void {
    this.rpc.on("peer-up", () => setTimeout(() => this.loop.wake(), PEER_UP_SYNC_DELAY_MS));
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /**
   * Calls `fn` after every finished pass: table offload runs then, since a pass follows layout
   * changes and peers coming back, the moments when partitions may have left this node.
   */
  onPass(fn: (report: SyncReport) => void): void {
    this.passListeners.push(fn);
  }

  /** One full pass; a request during a pass gets one more whole pass, right after it. */
  syncAll(): Promise<SyncReport> {
    return this.loop.run();
  }

  private async pass(signal: AbortSignal): Promise<SyncReport> {
    const report: SyncReport = { partitions: 0, bucketsExchanged: 0, entriesPulled: 0, entriesPushed: 0, errors: 0, unreachable: 0, startedAt: Date.now(), interrupted: false };
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
      if (signal.aborted) {
        report.interrupted = true;
        return report;
      }
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
            await this.syncPartition(peer, store, p, report);
          } catch (err) {
            report.errors++;
            log.debug(`${store.schema.name} partition ${p} with ${peer.slice(0, 16)}: ${(err as Error).message}`);
          }
        }
      }
    }
    if (report.bucketsExchanged > 0)
      log.info(
        `anti-entropy: ${report.bucketsExchanged} sync buckets reconciled over ${report.partitions} partitions (${report.entriesPulled} entries pulled, ${report.entriesPushed} pushed)`,
      );
    for (const fn of this.passListeners) {
      try {
        fn(report);
      } catch (err) {
        log.warn(`after a sync pass: ${(err as Error).message}`);
      }
    }
    return report;
  }

  /** Of `partitions`, those whose digest differs between this node and `peer`. */
  private async differingPartitions(peer: string, store: LocalStore<unknown>, partitions: number[]): Promise<number[]> {
    const theirs = (await call(this.rpc, peer, EP_PARTITION_DIGESTS, { table: store.schema.name }, { priority: PRIO_BACKGROUND, timeoutMs: CALL_TIMEOUT_MS })).digests;
    const ours = store.partitionDigests();
    return partitions.filter((p) => theirs[p] !== ours[p]);
  }

  /**
   * Reconciles the differing buckets of one partition with `peer`, row by row: asks for their
   * row hashes (many buckets a call), pulls the rows only the peer holds (or holds in another
   * state) and pushes those only this node holds, in batches (SYNC_BATCH_ENTRIES,
   * SYNC_BATCH_WIRE_BYTES) that may gather several buckets' rows.
   */
  private async syncPartition(peer: string, store: LocalStore<unknown>, partition: number, report: SyncReport): Promise<void> {
    const table = store.schema.name;
    const opts = { priority: PRIO_BACKGROUND, timeoutMs: CALL_TIMEOUT_MS };
    const theirs = (await call(this.rpc, peer, EP_DIGESTS, { table, partition }, opts)).digests;
    const ours = store.bucketDigests(partition);
    const differing: number[] = [];
    for (let b = 0; b < SYNC_BUCKETS; b++) if (theirs[b] !== ours[b]) differing.push(partition * SYNC_BUCKETS + b);
    // A pull names row ids from the peer's row-hashes answer; the peer may have deleted one of
    // those rows since and reused its id (INTEGER PRIMARY KEY), so the pull can bring an
    // unrelated entry, maybe of a partition this node does not hold: only entries of the
    // buckets being reconciled are merged (any entry of them is one this node should hold).
    const reconciling = new Set(differing);
    const from = `${table} partition ${partition} from ${peer.slice(0, 16)}`;
    const push = new PushBatch(async (entries) => {
      await call(this.rpc, peer, EP_PUSH, { table, entries }, opts);
      report.entriesPushed += entries.length;
    });
    const pull = new PullBatch(async (ids) => {
      let wanted = ids;
      while (wanted.length > 0) {
        const { entries, served } = await call(this.rpc, peer, EP_PULL, { table, ids: wanted }, opts);
        if (served > wanted.length || entries.length > served)
          throw new RpcError(`endpoint '${EP_PULL.name}' ${from}: ${entries.length} entries, ${served} ids served, for ${wanted.length} asked`, RPC_ERR.badResponse);
        const checked = checkPeerEntries(store.schema, entries, from, RPC_ERR.badResponse);
        const received = checked.filter((e) => reconciling.has(entrySyncBucket(store, e)));
        if (received.length < checked.length) log.debug(`${from}: ${checked.length - received.length} pulled entries left out, not of the buckets reconciled (row ids reused)`);
        if (received.length > 0) {
          await store.apply(received);
          this.onReceived(table, received);
          report.entriesPulled += received.length;
        }
        wanted = wanted.slice(served);
      }
    });
    for (let i = 0; i < differing.length; ) {
      const asked = differing.slice(i, i + SYNC_BUCKETS);
      const answer = await call(this.rpc, peer, EP_ROW_HASHES, { table, buckets: asked }, opts);
      checkRowHashesAnswer(answer, asked.length, from);
      const { hashes, ids, served } = answer;
      for (let k = 0; k < served; k++) {
        const bucket = asked[k]!;
        const theirHashes = new Set(hashes[k]);
        const mine = store.bucketRows(bucket);
        const myHashes = new Set(mine.map((r) => r.hash));
        const bucketHashes = hashes[k]!;
        const theirIds = ids[k]!;
        for (let j = 0; j < bucketHashes.length; j++) if (!myHashes.has(bucketHashes[j]!)) await pull.add(theirIds[j]!);
        for (const r of mine) {
          if (theirHashes.has(r.hash)) continue;
          // Read now, not with the hashes: a row changed since is pushed as it is now (newer).
          const v = store.storedById(r.id);
          if (v === undefined) continue; // gone since: nothing of it to push
          const e = store.decodeStored(v);
          releaseRow(v);
          // A row id reused since (its row deleted, another key inserted) names another entry.
          if (entrySyncBucket(store as LocalStore<unknown>, e) !== bucket) continue;
          if (!(await push.add(e))) {
            report.errors++;
            log.warn(`${from}: an entry (${keyOf(store, e)}) is over ${SYNC_ENTRY_MAX_WIRE_BYTES} bytes of JSON, more than one message carries: not pushed`);
          }
        }
        report.bucketsExchanged++;
      }
      i += served;
    }
    await pull.flush();
    await push.flush();
  }
}

/** Row ids gathered for one pull call; sent at SYNC_BATCH_ENTRIES ids. */
export class PullBatch {
  private ids: number[] = [];

  constructor(private readonly send: (ids: number[]) => Promise<void>) {}

  async add(id: number): Promise<void> {
    if (this.ids.length >= SYNC_BATCH_ENTRIES) await this.flush();
    this.ids.push(id);
  }

  async flush(): Promise<void> {
    if (this.ids.length === 0) return;
    const ids = this.ids;
    this.ids = [];
    await this.send(ids);
  }
}

/**
 * The bytes an entry adds to a message's JSON head (rpc/payload.ts encodes it with
 * JSON.stringify, as UTF-8), its separating comma included.
 */
export function wireBytes(entry: unknown): number {
  return Buffer.byteLength(JSON.stringify(entry) ?? "null", "utf8") + 1;
}

/** The sync bucket an entry of `store` is stored in. */
function entrySyncBucket(store: LocalStore<unknown>, entry: unknown): number {
  const pk = store.schema.partitionKey(entry);
  return syncBucketOf(partitionOfEntry(store.schema, pk), pk, store.schema.sortKey(entry));
}

/** An entry's key, cut short, for a log line. */
function keyOf<E>(store: LocalStore<E>, entry: E): string {
  return `${store.schema.partitionKey(entry).slice(0, 64)} / ${store.schema.sortKey(entry).slice(0, 64)}`;
}

/**
 * Rejects a row-hashes answer that does not cover, one list of hashes and one of the same
 * length of row ids each, the first `served` of the `asked` buckets (the schema bounds only
 * each part): a peer that breaks it would make this node pull the wrong rows or none.
 */
export function checkRowHashesAnswer(answer: { hashes: string[][]; ids: number[][]; served: number }, asked: number, from: string): void {
  const { hashes, ids, served } = answer;
  let problem: string | undefined;
  if (served > asked) problem = `${served} buckets served of ${asked} asked`;
  else if (hashes.length !== served || ids.length !== served) problem = `${served} buckets served with ${hashes.length} hash lists and ${ids.length} row id lists`;
  else {
    const k = hashes.findIndex((h, k) => h.length !== ids[k]!.length);
    if (k >= 0) problem = `bucket ${k}: ${hashes[k]!.length} hashes for ${ids[k]!.length} row ids`;
  }
  if (problem !== undefined) throw new RpcError(`endpoint '${EP_ROW_HASHES.name}' ${from}: invalid response: ${problem}`, RPC_ERR.badResponse);
}

/**
 * Entries gathered for one push call; sent when SYNC_BATCH_ENTRIES entries or
 * SYNC_BATCH_WIRE_BYTES of JSON are reached (at least one entry a call).
 */
export class PushBatch<E> {
  private entries: E[] = [];
  private bytes = 0;

  constructor(private readonly send: (entries: E[]) => Promise<void>) {}

  /**
   * Adds an entry, sending the batch first when the entry would take it past its bounds. An
   * entry over SYNC_ENTRY_MAX_WIRE_BYTES, which no message could carry, is not added: false.
   */
  async add(entry: E): Promise<boolean> {
    const bytes = wireBytes(entry);
    if (bytes > SYNC_ENTRY_MAX_WIRE_BYTES) return false;
    if (this.entries.length > 0 && (this.entries.length >= SYNC_BATCH_ENTRIES || this.bytes + bytes > SYNC_BATCH_WIRE_BYTES)) await this.flush();
    this.entries.push(entry);
    this.bytes += bytes;
    return true;
  }

  async flush(): Promise<void> {
    if (this.entries.length === 0) return;
    const entries = this.entries;
    this.entries = [];
    this.bytes = 0;
    await this.send(entries);
  }
}

/**
 * A row-hashes answer: the row hashes of each of `buckets` in order, until SYNC_HASHES_PER_CALL
 * hashes (at least one bucket).
 */
export function rowHashesAnswer(store: LocalStore<unknown>, buckets: readonly number[]): { hashes: string[][]; ids: number[][]; served: number } {
  const hashes: string[][] = [];
  const ids: number[][] = [];
  let total = 0;
  let bytes = 0;
  for (const bucket of buckets) {
    // All the rows of one S3 bucket are in one partition: at a million objects, a sync bucket
    // holds ~4 000 rows; their kept hashes are read, not the entries (db/table-rows.ts, h),
    // except for rows not rewritten since migration 7, counted towards SYNC_READ_BYTES.
    if (hashes.length > 0 && bytes >= SYNC_READ_BYTES) break;
    const rows = store.bucketRows(bucket);
    if (hashes.length > 0 && total + rows.length > SYNC_HASHES_PER_CALL) break;
    total += rows.length;
    for (const r of rows) bytes += r.read;
    hashes.push(rows.map((r) => r.hash));
    ids.push(rows.map((r) => r.id));
  }
  return { hashes, ids, served: hashes.length };
}

/**
 * A pull's answer: the entries in the rows with these ids, in that order, up to
 * SYNC_BATCH_WIRE_BYTES of JSON (at least one id served); a row gone since is skipped, and so,
 * with a warning, is an entry over SYNC_ENTRY_MAX_WIRE_BYTES, which no answer could carry.
 */
export function pullAnswer<E>(store: LocalStore<E>, ids: readonly number[]): { entries: E[]; served: number } {
  const entries: E[] = [];
  let bytes = 0;
  let served = 0;
  for (const id of ids) {
    const v = store.storedById(id);
    if (v !== undefined) {
      const entry = store.decodeStored(v);
      releaseRow(v);
      const size = wireBytes(entry);
      if (size > SYNC_ENTRY_MAX_WIRE_BYTES) {
        log.warn(`${store.schema.name} entry (${keyOf(store, entry)}) is over ${SYNC_ENTRY_MAX_WIRE_BYTES} bytes of JSON, more than one message carries: left out of a pull answer`);
      } else {
        if (entries.length > 0 && bytes + size > SYNC_BATCH_WIRE_BYTES) break;
        bytes += size;
        entries.push(entry);
      }
    }
    served++;
  }
  return { entries, served };
}
