// The metadata model of one node: every table, the queue of cascading writes, and the
// operations on buckets and keys shared by the S3 and admin APIs.
import type { Database } from "bun:sqlite";
import { GroupCommitter } from "../db/committer";
import { decodeEntry } from "../db/entry-codec";
import { TableRows } from "../db/table-rows";
import type { CrdtTableName } from "../db/migrations";
import type { Placement } from "../cluster/layout";
import { HybridClock } from "../util/hlc";
import { newAccessKeyId, newSecretKey, newUuid } from "../util/ids";
import { logger } from "../util/log";
import { LocalStore } from "../table/local-store";
import { Table, type RemoteReplicas } from "../table/table";
import { CasAcceptor, CasRegister, type CasPeers } from "../table/cas-register";
import type { TableSchema } from "../table/schema";
import { bucketSchema, isValidBucketName, NO_QUOTAS, quotasProblem, websiteConfigProblem, type BucketEntry, type BucketQuotas, type CorsRule, type LifecycleRule, type TagSet, type WebsiteConfig } from "./bucket";
import { bucketAliasSchema, type BucketAliasEntry } from "./bucket-alias";
import { keySchema, type KeyEntry } from "./key";
import { objectSchema, proposedVersion, visibleDelta, type ObjectEntry, type ObjectVersion, type VersionState } from "./object";
import { blockSortKey, versionBlockSchema, versionSchema, type VersionBlockEntry, type VersionEntry } from "./version";
import { blockRefSchema, type BlockRefEntry } from "./block-ref";
import { isLivePart, openCount, partSortKey, uploadPartSchema, uploadSchema, type UploadEntry, type UploadOutcome, type UploadPartEntry } from "./upload";
import { ENTRY_VALIDATORS } from "./entry-schemas";
import { adjustLocalCounts, bucketCounterSchema, countsOf, localCounts, ZERO_COUNTS, type BucketCounterEntry, type BucketCounts } from "./counter";
import { partitionOfEntry } from "../table/partition";
import type { Permissions } from "./crdt";
import type { WorkerStats } from "../util/worker-stats";
import { WorkerLoop } from "../util/worker-loop";

const log = logger("model");

/** Rows of the cascading-insert queue applied per batch. */
const INSERT_QUEUE_BATCH = 256;
/** Block rows read or copied per metadata query. */
const BLOCK_PAGE = 512;
/**
 * The cascading-insert queue is drained when a row is queued (INSERT_QUEUE_WAKE_DELAY_MS after,
 * or when it comes due), and every INSERT_QUEUE_POLL_MS besides, for rows a wake missed (queued
 * by a process that stopped before draining them). Polling every 200 ms was half of an idle
 * node's CPU (docs/targets.md, "Idle CPU").
 */
const INSERT_QUEUE_POLL_MS = 5_000;
/**
 * How long after a row is queued the drain runs: the row is queued inside the transaction of the
 * write that caused it, which commits after this call returns; the rows of a burst of writes
 * share one pass.
 */
const INSERT_QUEUE_WAKE_DELAY_MS = 10;
/**
 * A row due later (after the read grace) is drained up to this long after it comes due, so that
 * rows queued over a burst of writes share passes, as they did when the queue was polled.
 */
const INSERT_QUEUE_DUE_SLACK_MS = 200;
/** How often a node publishes the bucket counts that changed (what other nodes read). */
const COUNTS_PUBLISH_INTERVAL_MS = 2_000;
/** Upload rows read per page when cleaning up a bucket's uploads. */
/**
 * Unfinished uploads DeleteBucket aborts in its own request (each costs a few metadata writes);
 * a bucket with more is refused, so that one request's work stays bounded.
 */
const DELETE_BUCKET_UPLOADS_MAX = 1000;
const CLEANUP_PAGE = 1000;
/** Part rows read per page when listing an upload's parts. */
const PARTS_PAGE = 1000;
/** Most buckets published in one insert. */
const COUNTS_PUBLISH_BATCH = 256;
/** node_meta key set once bucket_counts has been filled from the stored tables. */
const COUNTS_READY_KEY = "bucket_counts_ready";

/** Times a write is restamped past newer versions before it is left to the race it is in. */
const MAX_RESTAMPS = 3;
/**
 * Object entries written after the answer (the completion of an acknowledged pending version,
 * model/pending.ts) that may be in flight at once; past it, a writer waits for its own and a
 * reader leaves it to the next reader.
 */
const BACKGROUND_OBJECT_WRITES_MAX = 256;

/**
 * The newest timestamp, in any replica's entry, of a version other than `uuid` that may have
 * been acknowledged: a complete one, or a pending one (acknowledged once its block is stored).
 */
function newestOtherComplete(entries: readonly ObjectEntry[], uuid: string): number {
  let newest = -1;
  for (const e of entries) {
    for (const v of e.versions) if (v.uuid !== uuid && (v.state.kind === "complete" || v.state.kind === "pending" || v.state.kind === "proposed") && v.timestamp > newest) newest = v.timestamp;
  }
  return newest;
}

export class ModelError extends Error {
  constructor(
    readonly code: "NoSuchBucket" | "NoSuchKey" | "BucketAlreadyExists" | "BucketNotEmpty" | "InvalidBucketName" | "KeyExists" | "InvalidRequest" | "InvalidArgument",
    message: string,
  ) {
    super(message);
  }
}

export interface ModelOptions {
  /** Tombstone GC delay of the sharded tables (default: table/gc.ts tableGcDelayMs()). */
  tableGcDelayMs?: number;
  /** How long a superseded version's block list stays readable (default: table/read-grace.ts). */
  readGraceMs?: number;
  /** How the conditional-write register reaches other nodes' acceptors (none on a single-node build). */
  casPeers?: CasPeers;
}

export class Model {
  readonly committer: GroupCommitter;
  readonly buckets: Table<BucketEntry>;
  readonly aliases: Table<BucketAliasEntry>;
  readonly keys: Table<KeyEntry>;
  readonly objects: Table<ObjectEntry>;
  readonly versions: Table<VersionEntry>;
  readonly versionBlocks: Table<VersionBlockEntry>;
  readonly blockRefs: Table<BlockRefEntry>;
  readonly uploads: Table<UploadEntry>;
  readonly uploadParts: Table<UploadPartEntry>;
  readonly counters: Table<BucketCounterEntry>;
  /** This node's acceptor of the per-key conditional-write register, and the proposer using it. */
  readonly casAcceptor: CasAcceptor;
  readonly cas: CasRegister;
  /** The next drain a queued row asked for, and when (clock ms): one timer for a burst of rows. */
  private queueWake: { timer: ReturnType<typeof setTimeout>; at: number } | undefined;
  /** Wakes are armed only between start() and stop(): a model not started drains when asked (tests). */
  private lifecycle: "new" | "started" | "stopped" = "new";
  /** What this node last published of each bucket's counts (JSON), to publish only changes. */
  private readonly publishedCounts = new Map<string, string>();
  private readonly countsLoop = new WorkerLoop({ name: "bucket counts publisher", intervalMs: COUNTS_PUBLISH_INTERVAL_MS }, () => this.publishPass());
  private readonly byName = new Map<CrdtTableName, Table<unknown>>();
  /** Object writes made after the request that caused them was answered (writeLater). */
  private readonly backgroundWrites = new Set<Promise<void>>();
  /** Its queue length counts the rows that are due (not those waiting for their read grace). */
  private readonly queueLoop = new WorkerLoop(
    {
      name: "cascading insert queue",
      intervalMs: INSERT_QUEUE_POLL_MS,
      firstDelayMs: 0,
      // A row queued while a pass runs may be behind its query: a wake then gets a pass after it.
      again: true,
      queueLength: () => (this.db.query(`SELECT count(*) AS n FROM insert_queue WHERE due <= ?`).get(this.clock.read()) as { n: number }).n,
    },
    () => this.drainPass(),
  );

  constructor(
    readonly db: Database,
    readonly placement: Placement,
    remote?: RemoteReplicas,
    readonly clock: HybridClock = new HybridClock(),
    options: ModelOptions = {},
  ) {
    this.committer = new GroupCommitter(db);
    const storeOptions = { gcDelayMs: options.tableGcDelayMs, readGraceMs: options.readGraceMs, onEnqueue: (due: number) => this.wakeQueueAt(due) };
    const make = <E>(schema: TableSchema<E>): Table<E> => {
      const checked: TableSchema<E> = { ...schema, validateEntry: ENTRY_VALIDATORS[schema.name] }; // entries from peers are checked
      // Due times of tombstone GC, read grace and block release: read, never stamped (HybridClock.read).
      const t = new Table(new LocalStore(checked, db, this.committer, () => this.clock.read(), storeOptions), placement, remote);
      this.byName.set(schema.name, t as Table<unknown>);
      return t;
    };
    this.buckets = make(bucketSchema);
    this.aliases = make(bucketAliasSchema);
    this.keys = make(keySchema);
    this.objects = make(objectSchema);
    this.versions = make(versionSchema);
    this.versionBlocks = make(versionBlockSchema);
    this.blockRefs = make(blockRefSchema);
    this.uploads = make(uploadSchema);
    this.uploadParts = make(uploadPartSchema);
    this.counters = make(bucketCounterSchema);
    // An acceptance marks the key's entry on this node with the version, proposed: readers
    // who meet it ask the register whether it was chosen (model/pending.ts).
    this.casAcceptor = new CasAcceptor(
      db,
      this.committer,
      (pk, sk) => this.objects.local.get(pk, sk),
      (pk, sk, ballot, value) => void this.objects.local.applyInTransaction([{ bucketId: pk, key: sk, versions: [proposedVersion(value as ObjectVersion, ballot)] }]),
      (value) => (value as ObjectVersion).uuid,
    );
    this.cas = new CasRegister(placement, this.casAcceptor, options.casPeers, this.clock);
    this.ensureLocalCounts();
  }

  /**
   * Fills bucket_counts from the stored objects and uploads once, for data written before
   * counts existed; from then on the update hooks keep it exact.
   */
  private ensureLocalCounts(): void {
    if (this.db.query(`SELECT 1 FROM node_meta WHERE k = ?`).get(COUNTS_READY_KEY)) return;
    this.db.transaction(() => {
      this.db.run(`DELETE FROM bucket_counts`);
      for (const row of TableRows.of(this.db, "object").iterate()) {
        const o = decodeEntry(row) as ObjectEntry;
        adjustLocalCounts(this.db, o.bucketId, visibleDelta(undefined, o));
      }
      for (const row of TableRows.of(this.db, "mpu").iterate()) {
        const u = decodeEntry(row) as UploadEntry;
        adjustLocalCounts(this.db, u.bucketId, { ...ZERO_COUNTS, uploads: openCount(u) });
      }
      this.db.query(`INSERT INTO node_meta (k, v) VALUES (?, '1')`).run(COUNTS_READY_KEY);
    })();
  }

  /**
   * A bucket's objects, bytes and open uploads: the largest count among the nodes that serve
   * reads of its partition (this node's own count read live, the others as last published).
   */
  async bucketCounts(bucketId: string): Promise<BucketCounts> {
    const trusted = this.placement.readNodes(partitionOfEntry(bucketCounterSchema, bucketId));
    const others = trusted.filter((n) => n !== this.placement.selfId);
    const published = others.length > 0 ? await this.counters.get(bucketId, "") : undefined;
    const counts = countsOf(published, others);
    if (trusted.includes(this.placement.selfId)) {
      const own = this.localBucketCounts(bucketId);
      counts.objects = Math.max(counts.objects, own.objects);
      counts.bytes = Math.max(counts.bytes, own.bytes);
      counts.uploads = Math.max(counts.uploads, own.uploads);
    }
    return counts;
  }

  /** This node's own counts of a bucket (exact for what it stores; no network). */
  localBucketCounts(bucketId: string): BucketCounts {
    return localCounts(this.db, bucketId).get(bucketId) ?? { ...ZERO_COUNTS };
  }

  /** Publishes this node's counts of the buckets whose partition it holds, when they changed. */
  publishCounts(): Promise<void> {
    return this.countsLoop.run();
  }

  private async publishPass(): Promise<void> {
    try {
      const ts = this.clock.now();
      const entries: BucketCounterEntry[] = [];
      const sent: [string, string][] = [];
      for (const [bucketId, counts] of localCounts(this.db)) {
        const json = JSON.stringify(counts);
        if (this.publishedCounts.get(bucketId) === json) continue;
        const holders = this.placement.writeSets(partitionOfEntry(bucketCounterSchema, bucketId)).flat();
        if (!holders.includes(this.placement.selfId)) continue;
        entries.push({ bucketId, nodes: { [this.placement.selfId]: { ts, ...counts } } });
        sent.push([bucketId, json]);
        if (entries.length >= COUNTS_PUBLISH_BATCH) break;
      }
      if (entries.length === 0) return;
      await this.counters.insert(entries);
      for (const [bucketId, json] of sent) this.publishedCounts.set(bucketId, json);
    } catch (err) {
      log.warn(`publishing bucket counts: ${(err as Error).message}; will retry`);
      this.countsStats.noteError(err);
    }
  }

  table(name: CrdtTableName): Table<unknown> {
    return this.byName.get(name)!;
  }

  /** This node's copy of every table, by name (served to peers over RPC). */
  localStores(): Map<string, LocalStore<unknown>> {
    return new Map([...this.byName].map(([name, t]) => [name, t.local]));
  }

  get queueStats(): WorkerStats {
    return this.queueLoop.stats;
  }

  get countsStats(): WorkerStats {
    return this.countsLoop.stats;
  }

  start(): void {
    this.lifecycle = "started";
    this.queueLoop.start();
    this.countsLoop.start();
  }

  /** Arms the drain for a row queued to be due at `due` (0: now), unless one is armed no later. */
  private wakeQueueAt(due: number): void {
    if (this.lifecycle !== "started") return;
    const now = this.clock.read();
    const at = due > now ? due + INSERT_QUEUE_DUE_SLACK_MS : now + INSERT_QUEUE_WAKE_DELAY_MS;
    if (this.queueWake !== undefined && this.queueWake.at <= at) return;
    if (this.queueWake !== undefined) clearTimeout(this.queueWake.timer);
    const timer = setTimeout(() => {
      this.queueWake = undefined;
      this.queueLoop.run().catch((err) => log.warn(`cascading insert queue: ${(err as Error).message}`));
    }, at - now);
    timer.unref?.();
    this.queueWake = { timer, at };
  }

  async stop(): Promise<void> {
    this.lifecycle = "stopped";
    if (this.queueWake !== undefined) clearTimeout(this.queueWake.timer);
    this.queueWake = undefined;
    // The passes look at no stop signal: a drain under way finishes its queue, as before.
    const loops = Promise.all([this.queueLoop.stop(), this.countsLoop.stop()]);
    await Promise.allSettled(this.backgroundWrites);
    await loops;
  }

  /**
   * Runs a metadata write in the background, at most BACKGROUND_OBJECT_WRITES_MAX at once (stop
   * waits for them). Returns whether it was started: with `waitIfFull`, it always is, and the
   * call waits for the write itself when the limit is reached (then a failure throws).
   */
  async writeLater(what: string, write: () => Promise<unknown>, waitIfFull: boolean): Promise<boolean> {
    if (this.backgroundWrites.size >= BACKGROUND_OBJECT_WRITES_MAX) {
      if (waitIfFull) await write();
      return waitIfFull;
    }
    const running: Promise<void> = write()
      .then(() => {})
      .catch((err) => log.warn(`background write (${what}): ${(err as Error).message}; left to readers and repair`))
      .finally(() => this.backgroundWrites.delete(running));
    this.backgroundWrites.add(running);
    return true;
  }

  /** Applies the queued cascading writes that are due (version and block-ref tombstones) through the tables. */
  drainInsertQueue(): Promise<void> {
    return this.queueLoop.run();
  }

  private async drainPass(): Promise<void> {
    try {
      for (;;) {
        // Rows waiting for their read grace stay behind rows queued after them.
        const rows = this.db
          .query(`SELECT id, tbl, v FROM insert_queue WHERE due <= ? ORDER BY due, id LIMIT ?`)
          .all(this.clock.read(), INSERT_QUEUE_BATCH) as { id: number; tbl: CrdtTableName; v: string }[];
        if (rows.length === 0) break;
        const byTable = new Map<CrdtTableName, unknown[]>();
        for (const r of rows) byTable.set(r.tbl, [...(byTable.get(r.tbl) ?? []), JSON.parse(r.v)]);
        await Promise.all([...byTable].map(([tbl, entries]) => this.table(tbl).insert(entries)));
        const done = this.db.query(`DELETE FROM insert_queue WHERE id = ?`);
        await this.committer.write(() => {
          for (const r of rows) done.run(r.id);
        });
      }
      // Rows queued while an earlier wake was armed (not yet due then) get theirs now.
      const next = this.db.query(`SELECT min(due) AS due FROM insert_queue`).get() as { due: number | null };
      if (next.due !== null) this.wakeQueueAt(next.due);
    } catch (err) {
      log.warn(`insert queue: ${(err as Error).message}; will retry`);
      this.queueStats.noteError(err);
    }
  }

  // ---- new object versions ----

  /**
   * Writes new object versions (one per write) stamped by the hybrid clock, with no read first.
   * A node whose clock lags, and that has not yet heard from the node that wrote the current
   * version, would stamp an older timestamp and lose to a write that was acknowledged before
   * it. The replicas' replies tell: every acknowledged earlier write is on at least one of the
   * replicas that acknowledge this one (write quorums intersect), and that replica's merged
   * entry then holds a complete version newer than ours. Such a write is redone once more under
   * a new uuid and a timestamp past everything seen (the lost version is released by the
   * usual cascade). The common case costs nothing extra.
   *
   * `build` makes the entry for a (uuid, timestamp) and may write rows tied to that uuid
   * alongside (version, block references), in the same round trip.
   */
  async insertNewestVersions(writes: readonly ((uuid: string, timestamp: number) => { entry: ObjectEntry; alongside?: Promise<unknown> })[]): Promise<void> {
    let pending = writes.map((build) => ({ build, uuid: newUuid(), timestamp: this.clock.now() }));
    for (let round = 0; pending.length > 0; round++) {
      const built = pending.map((p) => p.build(p.uuid, p.timestamp));
      const [replies] = await Promise.all([this.objects.insertReporting(built.map((b) => b.entry)), ...built.map((b) => b.alongside)]);
      const superseded: typeof pending = [];
      pending.forEach((p, i) => {
        const newer = newestOtherComplete(replies[i]!, p.uuid);
        if (newer >= p.timestamp) superseded.push({ ...p, uuid: newUuid(), timestamp: this.clock.nowAfter(newer) });
      });
      if (superseded.length > 0 && round >= MAX_RESTAMPS) {
        // Only truly concurrent writers can still be ahead: one of them wins, as with any race.
        log.info(`${superseded.length} object writes still raced a newer version after ${MAX_RESTAMPS} restamps`);
        return;
      }
      if (superseded.length > 0) log.info(`${superseded.length} object writes restamped past a newer version (clock skew?)`);
      pending = superseded;
    }
  }

  /**
   * Announces a new version of (bucketId, key) as uploading (invisible) before anything is tied
   * to it, and returns its uuid and timestamp: the blocks and references written next use them,
   * and so does the completion. As with insertNewestVersions, the replicas' replies reveal a
   * complete version newer than our timestamp (a lagging clock): the attempt is then aborted
   * (nothing refers to it yet) and made again past that version, before any data is written.
   */
  async startVersion(bucketId: string, key: string, state: Extract<VersionState, { kind: "uploading" }>): Promise<{ uuid: string; timestamp: number }> {
    let uuid = newUuid();
    let timestamp = this.clock.now();
    for (let round = 0; ; round++) {
      const [replies] = await Promise.all([
        this.objects.insertReporting([{ bucketId, key, versions: [{ uuid, timestamp, state }] }]),
        this.versions.insert({ uuid, deleted: false, backlink: { kind: "object", bucketId, key } }),
      ]);
      const newer = newestOtherComplete(replies[0]!, uuid);
      if (newer < timestamp) return { uuid, timestamp };
      if (round >= MAX_RESTAMPS) {
        log.info(`an upload still raced a newer version after ${MAX_RESTAMPS} restamps`);
        return { uuid, timestamp };
      }
      log.info(`an upload restamped past a newer version (clock skew?)`);
      await this.objects.insert({ bucketId, key, versions: [{ uuid, timestamp, state: { kind: "aborted" } }] });
      uuid = newUuid();
      timestamp = this.clock.nowAfter(newer);
    }
  }

  // ---- versions ----

  /** The block rows of a version in object order, a page at a time. */
  async *blockPages(uuid: string, pageSize = BLOCK_PAGE): AsyncGenerator<VersionBlockEntry[]> {
    let start = "";
    for (;;) {
      const rows = await this.versionBlocks.range(uuid, { start, limit: pageSize });
      const complete = rows.length < pageSize;
      if (!complete) start = blockSortKey(rows[rows.length - 1]!.part, rows[rows.length - 1]!.offset) + "\u0000";
      // The caller owns the page (it may consume it): nothing here reads it after the yield.
      if (rows.length > 0) yield rows;
      if (complete) return;
    }
  }

  /**
   * Makes version `to` reference every block of `from` (no data copied), optionally as part
   * `part`. Returns the plaintext bytes referenced, for the caller to check against the size.
   */
  async copyBlocks(from: string, to: string, part?: number): Promise<number> {
    let bytes = 0;
    for await (const rows of this.blockPages(from)) {
      for (const b of rows) bytes += b.size;
      const copies = rows.map((b) => ({ ...b, uuid: to, part: part ?? b.part }));
      await Promise.all([
        this.versionBlocks.insert(copies),
        this.blockRefs.insert(copies.map((b) => ({ hash: b.hash, version: to, deleted: false }))),
      ]);
    }
    return bytes;
  }

  // ---- keys ----

  getKey(id: string): KeyEntry | undefined {
    const k = this.keys.getLocal("", id);
    return k && !k.deleted ? k : undefined;
  }

  listKeys(): KeyEntry[] {
    return this.keys.local.range("", { limit: 1_000_000 }).filter((k) => !k.deleted);
  }

  async createKey(name: string, allowCreateBucket = false, imported?: { id: string; secret: string }): Promise<KeyEntry> {
    const id = imported?.id ?? newAccessKeyId();
    if (imported && this.keys.getLocal("", id)) throw new ModelError("KeyExists", `key ${id} already exists (or was deleted)`);
    const ts = this.clock.now();
    const key: KeyEntry = {
      id,
      secret: imported?.secret ?? newSecretKey(),
      created: ts,
      deleted: false,
      name: { ts, v: name },
      allowCreateBucket: { ts, v: allowCreateBucket },
    };
    await this.keys.insert(key);
    return key;
  }

  async updateKey(key: KeyEntry, change: { name?: string; allowCreateBucket?: boolean }): Promise<KeyEntry> {
    const ts = this.clock.now();
    const updated: KeyEntry = {
      ...key,
      name: change.name !== undefined ? { ts, v: change.name } : key.name,
      allowCreateBucket: change.allowCreateBucket !== undefined ? { ts, v: change.allowCreateBucket } : key.allowCreateBucket,
    };
    await this.keys.insert(updated);
    return this.getKey(key.id)!;
  }

  async deleteKey(key: KeyEntry): Promise<void> {
    const ts = this.clock.now();
    // Revoke its permissions on every bucket first, then the key itself.
    for (const b of this.listBuckets()) {
      if (b.keys[key.id]) await this.buckets.insert({ ...b, keys: { [key.id]: { ts, read: false, write: false, owner: false } } });
    }
    await this.keys.insert({ ...key, deleted: true, secret: "" });
  }

  // ---- buckets ----

  getBucket(id: string): BucketEntry | undefined {
    const b = this.buckets.getLocal("", id);
    return b && !b.deleted ? b : undefined;
  }

  /** Resolves a global bucket name (or a 64-hex bucket id) locally: no round trip. */
  resolveBucket(name: string): BucketEntry | undefined {
    const alias = this.aliases.getLocal("", name);
    if (alias?.bucketId) return this.getBucket(alias.bucketId);
    if (/^[0-9a-f]{64}$/.test(name)) return this.getBucket(name);
    return undefined;
  }

  listBuckets(): BucketEntry[] {
    return this.buckets.local.range("", { limit: 1_000_000 }).filter((b) => !b.deleted);
  }

  aliasesOf(bucketId: string): string[] {
    return this.aliases.local
      .range("", { limit: 1_000_000 })
      .filter((a) => a.bucketId === bucketId)
      .map((a) => a.name);
  }

  /** Creates a bucket named `name`, `owner` granted everything on it, with its first `tags`. */
  async createBucket(name: string, owner?: KeyEntry, tags: TagSet | null = null): Promise<BucketEntry> {
    const ts = this.clock.now();
    const bucket: BucketEntry = {
      id: newUuid(),
      created: ts,
      deleted: false,
      keys: owner ? { [owner.id]: { ts, read: true, write: true, owner: true } } : {},
      website: { ts: 0, v: null },
      cors: { ts: 0, v: null },
      quotas: { ts: 0, v: NO_QUOTAS },
      lifecycle: { ts: 0, v: null },
      tags: { ts: tags ? ts : 0, v: tags },
    };
    await this.buckets.insert(bucket);
    await this.aliases.insert({ name, bucketId: bucket.id, ts });
    return bucket;
  }

  /** Gives the bucket one more global name (a rename without copying, another website domain). */
  async addAlias(bucket: BucketEntry, name: string): Promise<void> {
    if (!isValidBucketName(name)) throw new ModelError("InvalidBucketName", `invalid bucket name "${name}"`);
    const holder = this.resolveBucket(name);
    if (holder && holder.id !== bucket.id) throw new ModelError("BucketAlreadyExists", `the name ${name} belongs to another bucket`);
    if (holder) return;
    await this.aliases.insert({ name, bucketId: bucket.id, ts: this.clock.now() });
  }

  /** Takes a global name off the bucket; its last name stays (a bucket without one is unreachable). */
  async removeAlias(bucket: BucketEntry, name: string): Promise<void> {
    const names = this.aliasesOf(bucket.id);
    if (!names.includes(name)) throw new ModelError("InvalidRequest", `the bucket has no name ${name}`);
    if (names.length === 1) throw new ModelError("InvalidRequest", `${name} is the bucket's only name: give it another one first, or delete the bucket`);
    await this.aliases.insert({ name, bucketId: null, ts: this.clock.now() });
  }

  /** Aborts the bucket's multipart uploads begun before `olderThan` (ms); returns how many. */
  async cleanupUploads(bucket: BucketEntry, olderThan: number): Promise<number> {
    let aborted = 0;
    let start = "";
    for (;;) {
      const page = await this.uploads.range(bucket.id, { start, limit: CLEANUP_PAGE });
      for (const u of page) {
        if (u.deleted || u.timestamp >= olderThan) continue;
        await this.abortUpload(u);
        aborted++;
      }
      if (page.length < CLEANUP_PAGE) return aborted;
      start = this.uploads.local.schema.sortKey(page[page.length - 1]!) + "\u0000";
    }
  }

  /**
   * Deletes an empty bucket. Unfinished multipart uploads do not make it non-empty (as in S3,
   * which deletes a bucket holding only those): they are aborted first.
   */
  async deleteBucket(bucket: BucketEntry): Promise<void> {
    if (await this.bucketHasContent(bucket.id)) throw new ModelError("BucketNotEmpty", "The bucket you tried to delete is not empty");
    const open: UploadEntry[] = [];
    for (let start = ""; open.length <= DELETE_BUCKET_UPLOADS_MAX; ) {
      const page = await this.uploads.range(bucket.id, { start, limit: CLEANUP_PAGE });
      open.push(...page.filter((u) => !u.deleted));
      if (page.length < CLEANUP_PAGE) break;
      start = this.uploads.local.schema.sortKey(page[page.length - 1]!) + "\u0000";
    }
    if (open.length > DELETE_BUCKET_UPLOADS_MAX)
      throw new ModelError("BucketNotEmpty", `The bucket holds more than ${DELETE_BUCKET_UPLOADS_MAX} unfinished multipart uploads: abort them first (AbortMultipartUpload, or the admin API's CleanupIncompleteUploads)`);
    for (const u of open) await this.abortUpload(u);
    const ts = this.clock.now();
    for (const name of this.aliasesOf(bucket.id)) await this.aliases.insert({ name, bucketId: null, ts });
    await this.buckets.insert({ ...bucket, deleted: true, keys: {}, website: { ts, v: null }, cors: { ts, v: null }, quotas: { ts, v: NO_QUOTAS }, lifecycle: { ts, v: null } });
  }

  async setPermissions(bucket: BucketEntry, keyId: string, perms: Omit<Permissions, "ts">): Promise<BucketEntry> {
    await this.buckets.insert({ ...bucket, keys: { [keyId]: { ts: this.clock.now(), ...perms } } });
    return this.getBucket(bucket.id)!;
  }

  /** Turns website serving on (with its documents) or off (null); newest setting wins. */
  async setWebsite(bucket: BucketEntry, website: WebsiteConfig | null): Promise<BucketEntry> {
    const problem = website ? websiteConfigProblem(website) : undefined;
    if (problem) throw new ModelError("InvalidArgument", problem);
    await this.buckets.insert({ ...bucket, website: { ts: this.clock.now(), v: website } });
    return this.getBucket(bucket.id)!;
  }

  /** Sets the bucket's quotas (a whole new setting; newest wins). */
  async setQuotas(bucket: BucketEntry, quotas: BucketQuotas): Promise<BucketEntry> {
    const problem = quotasProblem(quotas);
    if (problem) throw new ModelError("InvalidArgument", problem);
    await this.buckets.insert({ ...bucket, quotas: { ts: this.clock.now(), v: quotas } });
    return this.getBucket(bucket.id)!;
  }

  /** Sets the bucket's lifecycle rules (null: none); newest setting wins. */
  async setLifecycle(bucket: BucketEntry, rules: LifecycleRule[] | null): Promise<BucketEntry> {
    await this.buckets.insert({ ...bucket, lifecycle: { ts: this.clock.now(), v: rules } });
    return this.getBucket(bucket.id)!;
  }

  /**
   * The upload's live part rows from sort key `start` on, at most `limit`. Tombstones (the
   * parts of a closed upload, and its closed marker) are skipped.
   */
  async liveParts(uploadId: string, start: string, limit: number): Promise<UploadPartEntry[]> {
    const out: UploadPartEntry[] = [];
    for (;;) {
      const page = await this.uploadParts.range(uploadId, { start, limit: PARTS_PAGE });
      for (const p of page) {
        if (!isLivePart(p)) continue;
        out.push(p);
        if (out.length === limit) return out;
      }
      if (page.length < PARTS_PAGE) return out;
      start = partSortKey(page[page.length - 1]!.part) + "\u0000";
    }
  }

  /**
   * Closes an upload: it will accept no more parts, the data of its parts is released, and how
   * it ended is kept with it.
   */
  async closeUpload(upload: UploadEntry, parts: readonly UploadPartEntry[], outcome: UploadOutcome): Promise<void> {
    await this.uploads.insert({ ...upload, deleted: true, outcome });
    if (parts.length > 0) await this.versions.insert(parts.map((p) => ({ uuid: p.version, deleted: true, backlink: null })));
  }

  /** Aborts an open upload: its version will never complete, and its parts are released. */
  async abortUpload(upload: UploadEntry): Promise<void> {
    await this.objects.insert({ bucketId: upload.bucketId, key: upload.key, versions: [{ uuid: upload.uploadId, timestamp: upload.timestamp, state: { kind: "aborted" } }] });
    await this.closeUpload(upload, await this.liveParts(upload.uploadId, "", Infinity), { kind: "aborted" });
  }

  /** Sets the bucket's tags (null: none); newest setting wins. */
  async setBucketTags(bucket: BucketEntry, tags: TagSet | null): Promise<BucketEntry> {
    await this.buckets.insert({ ...bucket, tags: { ts: this.clock.now(), v: tags } });
    return this.getBucket(bucket.id)!;
  }

  /** Sets the bucket's CORS rules (null: none); newest setting wins. */
  async setCors(bucket: BucketEntry, rules: CorsRule[] | null): Promise<BucketEntry> {
    await this.buckets.insert({ ...bucket, cors: { ts: this.clock.now(), v: rules } });
    return this.getBucket(bucket.id)!;
  }

  /** True when the bucket still holds a visible object. */
  async bucketHasContent(bucketId: string): Promise<boolean> {
    let start = "";
    for (;;) {
      const page = await this.objects.range(bucketId, { start, limit: 1000 });
      // A pending version may already be acknowledged (model/pending.ts): it is content too.
      if (page.some((o) => o.versions.some((v) => (v.state.kind === "complete" && v.state.data.kind !== "deleteMarker") || v.state.kind === "pending" || v.state.kind === "proposed"))) return true;
      if (page.length < 1000) return false;
      start = page[page.length - 1]!.key + "\u0000";
    }
  }

}
