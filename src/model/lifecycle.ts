// Lifecycle: once a day, objects that a bucket's rules say have expired are deleted, and
// multipart uploads left open too long are aborted (the subset of S3 that Garage has).
//
// Every node holding a bucket's partition runs the pass over its own copy; their writes are
// identical, so running it on several replicas costs work, never correctness: an expired
// version gets a delete marker whose uuid is derived from it and whose timestamp is just past
// it, so a version written after the pass looked (even by a millisecond) still wins.
import { createHash } from "node:crypto";
import type { LifecycleRule } from "./bucket";
import type { Model } from "./model";
import { objectSchema, versionTags, visibleVersion, type ObjectEntry, type TagList } from "./object";
import type { UploadEntry } from "./upload";
import { partitionOfEntry } from "../table/partition";
import type { WorkerStats } from "../util/worker-stats";
import { WorkerLoop } from "../util/worker-loop";
import { logger } from "../util/log";

const log = logger("lifecycle");

export const DAY_MS = 24 * 60 * 60 * 1000;
/** How often the worker looks whether today's pass is due. */
const LIFECYCLE_CHECK_MS = 10 * 60 * 1000;
/** Object or upload rows read per page of a pass. */
const LIFECYCLE_PAGE = 1000;
/** node_meta key: the start time (ms) of the last complete pass. */
const LAST_PASS_KEY = "lifecycle_last_pass";

/** The first UTC midnight at or after `ms`: S3 rounds expiry times up to it. */
export function nextMidnightUtc(ms: number): number {
  return Math.ceil(ms / DAY_MS) * DAY_MS;
}

/**
 * True when `rule` applies to an object of this key, size and tags (uploads: no object). A
 * filter's every tag must be on the object with the same value; an upload has no tags yet, so a
 * rule requiring tags matches none (AWS refuses abort rules with tag filters anyway).
 */
export function ruleMatches(rule: LifecycleRule, key: string, object?: { size: number; tags: TagList }): boolean {
  if (!rule.enabled || !key.startsWith(rule.filter.prefix)) return false;
  const wanted = rule.filter.tags ?? [];
  if (wanted.length > 0 && !(object && wanted.every(([k, v]) => object.tags.some(([ok, ov]) => ok === k && ov === v)))) return false;
  if (object === undefined) return true;
  const size = object.size;
  if (rule.filter.sizeGreaterThan !== null && !(size > rule.filter.sizeGreaterThan)) return false;
  if (rule.filter.sizeLessThan !== null && !(size < rule.filter.sizeLessThan)) return false;
  return true;
}

/** True when an object last written at `written` has expired under `rule` at `now`. */
export function objectExpired(rule: LifecycleRule, written: number, now: number): boolean {
  const e = rule.expiration;
  if (!e) return false;
  if ("days" in e) return now >= nextMidnightUtc(written + e.days * DAY_MS);
  return now >= Date.parse(e.date);
}

/** True when an upload begun at `started` should be aborted under `rule` at `now`. */
export function uploadExpired(rule: LifecycleRule, started: number, now: number): boolean {
  return rule.abortIncompleteUploadDays !== null && now >= nextMidnightUtc(started + rule.abortIncompleteUploadDays * DAY_MS);
}

/** The delete marker that expires `versionUuid`: the same on every replica that writes it. */
export function expiryMarker(bucketId: string, key: string, versionUuid: string, versionTimestamp: number): ObjectEntry {
  const uuid = createHash("sha256").update(`lifecycle-expiry:${versionUuid}`).digest("hex");
  return { bucketId, key, versions: [{ uuid, timestamp: versionTimestamp + 1, state: { kind: "complete", data: { kind: "deleteMarker" } } }] };
}

export interface LifecyclePassResult {
  expired: number;
  aborted: number;
}

export class LifecycleWorker {
  private readonly loop: WorkerLoop<LifecyclePassResult>;

  constructor(
    private readonly model: Model,
    /** Wall clock: expiry is a matter of calendar days. */
    private readonly now: () => number = Date.now,
  ) {
    this.loop = new WorkerLoop({ name: "lifecycle", poll: { everyMs: LIFECYCLE_CHECK_MS, due: () => this.isDue() } }, () => this.pass());
  }

  get stats(): WorkerStats {
    return this.loop.stats;
  }

  start(): void {
    this.loop.start();
    if (this.isDue()) this.loop.wake();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Runs a pass when none has finished yet on this UTC day. */
  async runIfDue(): Promise<void> {
    if (!this.isDue()) return;
    await this.run().catch((err) => log.warn(`lifecycle pass: ${(err as Error).message}; next check in ${LIFECYCLE_CHECK_MS / 60000} min`));
  }

  /** One pass over every bucket with rules whose partition this node holds (or the one running). */
  run(): Promise<LifecyclePassResult> {
    return this.loop.run();
  }

  private isDue(): boolean {
    const last = this.lastPass();
    return last === undefined || Math.floor(last / DAY_MS) !== Math.floor(this.now() / DAY_MS);
  }

  private lastPass(): number | undefined {
    const row = this.model.db.query(`SELECT v FROM node_meta WHERE k = ?`).get(LAST_PASS_KEY) as { v: string } | null;
    return row ? Number(row.v) : undefined;
  }

  private async pass(): Promise<LifecyclePassResult> {
    const started = this.now();
    const result: LifecyclePassResult = { expired: 0, aborted: 0 };
    const { placement } = this.model;
    // Before a layout this node holds nothing yet: not a pass, so today's is still due.
    if (placement.writeSets(0).length === 0) throw new Error("no cluster layout yet");
    for (const bucket of this.model.listBuckets()) {
      const rules = bucket.lifecycle?.v?.filter((r) => r.enabled);
      if (!rules || rules.length === 0) continue;
      const holders = placement.writeSets(partitionOfEntry(objectSchema, bucket.id)).flat();
      if (!holders.includes(placement.selfId)) continue;
      result.expired += await this.expireObjects(bucket.id, rules, started);
      result.aborted += await this.abortUploads(bucket.id, rules, started);
    }
    this.model.db.query(`INSERT OR REPLACE INTO node_meta (k, v) VALUES (?, ?)`).run(LAST_PASS_KEY, String(started));
    if (result.expired + result.aborted > 0) log.info(`lifecycle: ${result.expired} objects expired, ${result.aborted} uploads aborted`);
    return result;
  }

  private async expireObjects(bucketId: string, rules: LifecycleRule[], now: number): Promise<number> {
    let expired = 0;
    let start = "";
    for (;;) {
      const page = this.model.objects.local.range(bucketId, { start, limit: LIFECYCLE_PAGE });
      const markers: ObjectEntry[] = [];
      for (const o of page) {
        const v = visibleVersion(o);
        if (!v) continue;
        const object = { size: v.state.data.meta.size, tags: versionTags(v) };
        if (rules.some((r) => ruleMatches(r, o.key, object) && objectExpired(r, v.timestamp, now))) markers.push(expiryMarker(bucketId, o.key, v.uuid, v.timestamp));
      }
      if (markers.length > 0) {
        await this.model.objects.insert(markers);
        expired += markers.length;
      }
      if (page.length < LIFECYCLE_PAGE) return expired;
      start = page[page.length - 1]!.key + "\u0000";
    }
  }

  /**
   * This node's copy may be stale (it was down when the upload completed): an abort written
   * then would beat the completed version (aborted absorbs complete). So the upload and its
   * version are read again from a quorum, and only a still-open upload is aborted.
   */
  private async stillOpen(u: UploadEntry): Promise<boolean> {
    const [upload, object] = await Promise.all([
      this.model.uploads.get(u.bucketId, this.model.uploads.local.schema.sortKey(u)),
      this.model.objects.get(u.bucketId, u.key),
    ]);
    if (!upload || upload.deleted) return false;
    const version = object?.versions.find((v) => v.uuid === u.uploadId);
    return version !== undefined && version.state.kind === "uploading";
  }

  private async abortUploads(bucketId: string, rules: LifecycleRule[], now: number): Promise<number> {
    if (!rules.some((r) => r.abortIncompleteUploadDays !== null)) return 0;
    let aborted = 0;
    let start = "";
    for (;;) {
      const page = this.model.uploads.local.range(bucketId, { start, limit: LIFECYCLE_PAGE });
      for (const u of page) {
        if (u.deleted) continue;
        if (!rules.some((r) => ruleMatches(r, u.key) && uploadExpired(r, u.timestamp, now))) continue;
        if (!(await this.stillOpen(u))) continue;
        await this.model.abortUpload(u);
        aborted++;
      }
      if (page.length < LIFECYCLE_PAGE) return aborted;
      const last = page[page.length - 1]!;
      start = this.model.uploads.local.schema.sortKey(last) + "\u0000";
    }
  }
}
