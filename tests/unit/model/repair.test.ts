// Start-up repair (model/repair.ts) on a real Model over a temp sqlite file: it finds the
// uploads interrupted by the last stop and the unsettled versions through the index of unsettled
// entries, reading those and none of the settled objects beside them.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import { Model } from "../../../src/model/model.ts";
import type { ObjectEntry, VersionState } from "../../../src/model/object.ts";
import { abortInterruptedUploads, settlePendingVersions } from "../../../src/model/repair.ts";

const SELF = "node1";
const SETTLED_OBJECTS = 2000;

let dir: string;
let db: Database;
let model: Model;
/** Entries start-up repair read from the local object table. */
let read: number;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-repair-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
  model = new Model(db, new LayoutPlacement(SELF, singleNodeLayout(SELF), "consistent"));
  read = 0;
  const local = model.objects.local;
  const unsettledEntries = local.unsettledEntries.bind(local);
  local.unsettledEntries = (afterId, limit) => {
    const page = unsettledEntries(afterId, limit);
    read += page.length;
    return page;
  };
});
afterEach(async () => {
  await model.stop();
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const bucketId = "b".repeat(64);
const complete: VersionState = { kind: "complete", data: { kind: "inline", meta: { size: 1, etag: "e", headers: [] }, base64: "AQ==" } };
const uploading = (uploader: string, multipart = false): VersionState => ({ kind: "uploading", multipart, headers: [], uploader });
const entry = (key: string, uuid: string, state: VersionState, timestamp = 1000): ObjectEntry => ({ bucketId, key, versions: [{ uuid, timestamp, state }] });
const stateOf = async (key: string) => (await model.objects.get(bucketId, key))!.versions.map((v) => v.state.kind);

describe("start-up repair", () => {
  test("aborts this node's interrupted PUTs, reading only the entries marked unsettled", async () => {
    await model.objects.insert(Array.from({ length: SETTLED_OBJECTS }, (_, i) => entry(`done/${i}`, `d${i}`, complete)));
    await model.objects.insert([
      entry("mine", "u1", uploading(SELF)),
      entry("peer", "u2", uploading("node2")),
      entry("mpu", "u3", uploading(SELF, true)),
      entry("after-boot", "u4", uploading(SELF), 5000),
    ]);
    expect(await abortInterruptedUploads(model, 2000)).toBe(1);
    expect(await stateOf("mine")).toEqual(["aborted"]);
    expect(await stateOf("peer")).toEqual(["uploading"]);
    expect(await stateOf("mpu")).toEqual(["uploading"]);
    expect(await stateOf("after-boot")).toEqual(["uploading"]);
    // The PUTs in progress (the multipart upload is not marked), none of the 2000 others.
    expect(read).toBe(3);
    // What was settled left the index: a second start reads the two still in progress.
    read = 0;
    expect(await abortInterruptedUploads(model, 2000)).toBe(0);
    expect(read).toBe(2);
  });

  test("settles pending versions found through the index, among settled objects it does not read", async () => {
    await model.objects.insert(Array.from({ length: SETTLED_OBJECTS }, (_, i) => entry(`done/${i}`, `d${i}`, complete)));
    const now = model.clock.now();
    const pending: VersionState = { kind: "pending", data: { kind: "blocks", meta: { size: 9000, etag: "p", headers: [] }, singleBlock: "a".repeat(64) } };
    await model.objects.insert(entry("k", "p1", pending, now));
    const result = await settlePendingVersions({ model, blocks: { presence: async () => "quorum" } });
    expect(result).toEqual({ completed: 1, aborted: 0, unsettled: 0 });
    expect(await stateOf("k")).toEqual(["complete"]);
    expect(read).toBe(1);
    expect(model.objects.local.unsettledEntries(0, 10)).toEqual([]);
  });
});
