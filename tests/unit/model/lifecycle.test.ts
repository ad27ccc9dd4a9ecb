// Lifecycle: when a rule matches and expires, and a pass on a real Model (temp sqlite,
// one-node layout) with a chosen "now": expired objects get a delete marker just past the
// version that expired, stale uploads are aborted, everything else is left alone.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { Model } from "../../../src/model/model.ts";
import type { BucketEntry, LifecycleRule } from "../../../src/model/bucket.ts";
import { DAY_MS, expiryMarker, LifecycleWorker, nextMidnightUtc, objectExpired, ruleMatches, uploadExpired } from "../../../src/model/lifecycle.ts";
import { visibleVersion } from "../../../src/model/object.ts";

const rule = (r: Partial<LifecycleRule>): LifecycleRule => ({
  id: null,
  enabled: true,
  filter: { prefix: "", sizeGreaterThan: null, sizeLessThan: null },
  expiration: null,
  abortIncompleteUploadDays: null,
  ...r,
});
const T0 = Date.parse("2026-03-10T15:30:00Z");

describe("rules", () => {
  test("expiry in days is rounded up to the next UTC midnight, as S3", () => {
    expect(nextMidnightUtc(T0)).toBe(Date.parse("2026-03-11T00:00:00Z"));
    expect(nextMidnightUtc(Date.parse("2026-03-11T00:00:00Z"))).toBe(Date.parse("2026-03-11T00:00:00Z"));
    const r = rule({ expiration: { days: 2 } });
    expect(objectExpired(r, T0, Date.parse("2026-03-12T23:59:59Z"))).toBe(false);
    expect(objectExpired(r, T0, Date.parse("2026-03-13T00:00:00Z"))).toBe(true);
  });
  test("a date expires everything matching from that midnight on", () => {
    const r = rule({ expiration: { date: "2026-04-01T00:00:00.000Z" } });
    expect(objectExpired(r, T0, Date.parse("2026-03-31T23:00:00Z"))).toBe(false);
    expect(objectExpired(r, T0, Date.parse("2026-04-01T00:00:00Z"))).toBe(true);
  });
  test("prefix and exclusive size bounds; disabled rules match nothing; uploads ignore sizes", () => {
    const r = rule({ filter: { prefix: "logs/", sizeGreaterThan: 10, sizeLessThan: 100 } });
    expect(ruleMatches(r, "logs/a", { size: 50, tags: [] })).toBe(true);
    expect(ruleMatches(r, "logs/a", { size: 10, tags: [] })).toBe(false);
    expect(ruleMatches(r, "logs/a", { size: 100, tags: [] })).toBe(false);
    expect(ruleMatches(r, "data/a", { size: 50, tags: [] })).toBe(false);
    expect(ruleMatches(r, "logs/upload")).toBe(true);
    expect(ruleMatches({ ...r, enabled: false }, "logs/a", { size: 50, tags: [] })).toBe(false);
    expect(uploadExpired(rule({ abortIncompleteUploadDays: 1 }), T0, nextMidnightUtc(T0 + DAY_MS))).toBe(true);
    expect(uploadExpired(rule({ abortIncompleteUploadDays: 1 }), T0, nextMidnightUtc(T0 + DAY_MS) - 1)).toBe(false);
  });
  test("a rule requiring tags matches objects carrying every one of them with the same value, never an upload", () => {
    const r = rule({ filter: { prefix: "logs/", sizeGreaterThan: null, sizeLessThan: null, tags: [["class", "scratch"], ["team", "a"]] } });
    expect(ruleMatches(r, "logs/a", { size: 50, tags: [] })).toBe(false);
    expect(ruleMatches(r, "logs/a", { size: 50, tags: [["class", "scratch"]] })).toBe(false);
    expect(ruleMatches(r, "logs/a", { size: 50, tags: [["team", "a"], ["x", "y"], ["class", "scratch"]] })).toBe(true);
    expect(ruleMatches(r, "logs/a", { size: 50, tags: [["team", "b"], ["class", "scratch"]] })).toBe(false);
    expect(ruleMatches(r, "data/a", { size: 50, tags: [["team", "a"], ["class", "scratch"]] })).toBe(false);
    expect(ruleMatches(r, "logs/upload")).toBe(false);
    expect(ruleMatches({ ...r, filter: { ...r.filter, tags: [] } }, "logs/a", { size: 50, tags: [] })).toBe(true);
  });
});

describe("a pass", () => {
  let dir: string;
  let db: Database;
  let model: Model;
  let bucket: BucketEntry;
  const blocks = (size: number) => ({ kind: "blocks" as const, meta: { size, etag: "e", headers: [] } });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "bunker-lifecycle-"));
    db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
    model = new Model(db, new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent"));
    bucket = await model.createBucket("lc");
  });
  afterEach(async () => {
    await model.stop();
    db.close();
    await rm(dir, { recursive: true, force: true });
  });

  const putAt = (key: string, timestamp: number, size = 10) =>
    model.objects.insert({ bucketId: bucket.id, key, versions: [{ uuid: `v-${key}-${timestamp}`, timestamp, state: { kind: "complete", data: blocks(size) } }] });
  const visible = async (key: string) => visibleVersion(await model.objects.get(bucket.id, key));

  test("expires matching objects older than their rule, aborts stale uploads, and is idempotent", async () => {
    await putAt("logs/old", T0);
    await putAt("logs/big-old", T0, 5000);
    await putAt("logs/new", T0 + 5 * DAY_MS);
    await putAt("keep/old", T0);
    await model.uploads.insert({ bucketId: bucket.id, key: "logs/mpu", uploadId: "u".repeat(64), timestamp: T0, deleted: false, headers: [] });
    await model.objects.insert({ bucketId: bucket.id, key: "logs/mpu", versions: [{ uuid: "u".repeat(64), timestamp: T0, state: { kind: "uploading", multipart: true, headers: [], uploader: "node1" } }] });
    bucket = await model.setLifecycle(bucket, [
      rule({ id: "logs", filter: { prefix: "logs/", sizeGreaterThan: null, sizeLessThan: 1000 }, expiration: { days: 3 } }),
      rule({ id: "mpu", abortIncompleteUploadDays: 2 }),
    ]);
    const now = T0 + 4 * DAY_MS;
    const worker = new LifecycleWorker(model, () => now);
    expect(await worker.run()).toEqual({ expired: 1, aborted: 1 });
    expect(await visible("logs/old")).toBeUndefined();
    expect(await visible("logs/big-old")).toBeDefined(); // the size filter spares it
    expect(await visible("logs/new")).toBeDefined(); // too young
    expect(await visible("keep/old")).toBeDefined(); // no rule for it
    expect((await model.uploads.get(bucket.id, model.uploads.local.schema.sortKey({ bucketId: bucket.id, key: "logs/mpu", uploadId: "u".repeat(64), timestamp: T0, deleted: false, headers: [] })))?.deleted).toBe(true);
    // A second pass (another replica, or tomorrow's) writes the same marker again: no change.
    const before = JSON.stringify(await model.objects.get(bucket.id, "logs/old"));
    expect(await worker.run()).toEqual({ expired: 0, aborted: 0 });
    expect(JSON.stringify(await model.objects.get(bucket.id, "logs/old"))).toBe(before);
    expect(await model.bucketCounts(bucket.id)).toMatchObject({ objects: 3, uploads: 0 });
  });

  test("an upload this node still sees open is not aborted once its version completed (a stale replica)", async () => {
    const uploadId = "w".repeat(64);
    await model.uploads.insert({ bucketId: bucket.id, key: "done", uploadId, timestamp: T0, deleted: false, headers: [] });
    // Completed elsewhere: the version is complete; the upload's close has not reached us.
    await model.objects.insert({ bucketId: bucket.id, key: "done", versions: [{ uuid: uploadId, timestamp: T0, state: { kind: "complete", data: blocks(7) } }] });
    bucket = await model.setLifecycle(bucket, [rule({ abortIncompleteUploadDays: 1 })]);
    expect(await new LifecycleWorker(model, () => T0 + 5 * DAY_MS).run()).toEqual({ expired: 0, aborted: 0 });
    expect((await visible("done"))?.uuid).toBe(uploadId);
  });

  test("a version written after the one that expired survives the marker", async () => {
    await putAt("logs/x", T0);
    bucket = await model.setLifecycle(bucket, [rule({ expiration: { days: 1 } })]);
    const expiredUuid = (await visible("logs/x"))!.uuid;
    // The pass saw the old version; a PUT lands 1 ms later, before the marker is written.
    await putAt("logs/x", T0 + 2);
    await model.objects.insert(expiryMarker(bucket.id, "logs/x", expiredUuid, T0));
    expect((await visible("logs/x"))?.timestamp).toBe(T0 + 2);
  });

  test("runs once per UTC day unless asked", async () => {
    await putAt("a", T0);
    bucket = await model.setLifecycle(bucket, [rule({ expiration: { days: 1 } })]);
    let now = T0;
    const worker = new LifecycleWorker(model, () => now);
    await worker.runIfDue(); // today's pass: nothing old enough yet
    expect(await visible("a")).toBeDefined();
    now = T0 + 2 * DAY_MS;
    await worker.runIfDue(); // a new day: due again
    expect(await visible("a")).toBeUndefined();
    await putAt("b", T0);
    await worker.runIfDue(); // same day: not due
    expect(await visible("b")).toBeDefined();
    await worker.run(); // asked (bunker repair lifecycle)
    expect(await visible("b")).toBeUndefined();
  });
});
