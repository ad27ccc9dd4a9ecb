// Pending versions (model/pending.ts) on a real Model over a temp sqlite file, with a scripted
// presence check: what a read serves, what it writes, what the start-up repair settles, and
// the model's other readers of the object table (restamping, bucket emptiness).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayoutPlacement, singleNodeLayout } from "../../../src/cluster/layout.ts";
import { openDatabase } from "../../../src/db/sqlite.ts";
import type { BlockPresence } from "../../../src/block/manager.ts";
import { Model } from "../../../src/model/model.ts";
import { visibleVersion, type ObjectVersion, type VersionState } from "../../../src/model/object.ts";
import { PENDING_ABORT_GRACE_MS, readObject, resolvePending, type PendingServices } from "../../../src/model/pending.ts";
import { settlePendingVersions } from "../../../src/model/repair.ts";

let dir: string;
let db: Database;
let model: Model;
/** Where each block stands, as the scripted presence check answers (absent: unknown). */
let presence: Map<string, BlockPresence>;
let checked: string[];
let services: PendingServices;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "bunker-pending-"));
  db = openDatabase(join(dir, "db.sqlite"), { fsync: false });
  model = new Model(db, new LayoutPlacement("node1", singleNodeLayout("node1"), "consistent"));
  presence = new Map();
  checked = [];
  services = {
    model,
    blocks: {
      presence: async (hash) => {
        checked.push(hash);
        return presence.get(hash) ?? "unknown";
      },
    },
  };
});
afterEach(async () => {
  await model.stop();
  db.close();
  await rm(dir, { recursive: true, force: true });
});

const bucketId = "b".repeat(64);
const hash = (c: string) => c.repeat(64);
const meta = (etag: string) => ({ size: 9000, etag, headers: [] as [string, string][] });
const pending = (h: string, etag = "p"): VersionState => ({ kind: "pending", data: { kind: "blocks", meta: meta(etag), singleBlock: h } });
const complete: VersionState = { kind: "complete", data: { kind: "inline", meta: { size: 1, etag: "old", headers: [] }, base64: "AQ==" } };
const put = (key: string, ...versions: ObjectVersion[]) => model.objects.insert({ bucketId, key, versions });
const statesOf = async (key: string) => (await model.objects.get(bucketId, key))?.versions.map((v) => `${v.uuid}:${v.state.kind}`) ?? [];
/** The background writes a read starts land when the model stops; this waits for them instead. */
async function eventually(key: string, want: string[]): Promise<string[]> {
  for (let i = 0; i < 200 && JSON.stringify(await statesOf(key)) !== JSON.stringify(want); i++) await Bun.sleep(10);
  return statesOf(key);
}

describe("readObject", () => {
  test("a pending version whose block is on a write quorum is served, and its completion written", async () => {
    const now = model.clock.now();
    await put("k", { uuid: "old", timestamp: now - 10, state: complete }, { uuid: "new", timestamp: now, state: pending(hash("a")) });
    presence.set(hash("a"), "quorum");
    const v = visibleVersion(await readObject(services, bucketId, "k"))!;
    expect([v.uuid, v.state.data.meta.etag]).toEqual(["new", "p"]);
    expect(await eventually("k", ["new:complete"])).toEqual(["new:complete"]);
  });

  test("a pending version whose block is short of a quorum, or unknown, is never served: the previous version is", async () => {
    const now = model.clock.now();
    await put("k", { uuid: "old", timestamp: now - 10, state: complete }, { uuid: "new", timestamp: now, state: pending(hash("a")) });
    presence.set(hash("a"), "short");
    expect(visibleVersion(await readObject(services, bucketId, "k"))!.uuid).toBe("old");
    // Unknown (its nodes not all heard): it may be acknowledged, so the older version is not
    // served either: the read fails (503) rather than answer something possibly stale.
    presence.set(hash("a"), "unknown");
    expect(readObject(services, bucketId, "k")).rejects.toThrow(/cannot be judged/);
    // Young: it may still be in flight, so it is left pending.
    await Bun.sleep(50);
    expect(await statesOf("k")).toEqual(["old:complete", "new:pending"]);
    // A key holding only a pending version short of a quorum does not exist yet.
    presence.set(hash("a"), "short");
    await put("only", { uuid: "p1", timestamp: now, state: pending(hash("a")) });
    expect(visibleVersion(await readObject(services, bucketId, "only"))).toBeUndefined();
  });

  test("a pending version short of a quorum past the grace is aborted; unknown ones are left", async () => {
    const old = model.clock.now() - PENDING_ABORT_GRACE_MS - 1000;
    await put("k", { uuid: "lost", timestamp: old, state: pending(hash("a")) }, { uuid: "unsure", timestamp: old + 1, state: pending(hash("b")) });
    presence.set(hash("a"), "short");
    expect(readObject(services, bucketId, "k")).rejects.toThrow(/cannot be judged/);
    expect(await eventually("k", ["lost:aborted", "unsure:pending"])).toEqual(["lost:aborted", "unsure:pending"]);
  });

  test("of racing pending versions the newest on a quorum is served; a newer one in flight stays pending", async () => {
    const now = model.clock.now();
    await put(
      "k",
      { uuid: "v1", timestamp: now - 3, state: pending(hash("a"), "e1") },
      { uuid: "v2", timestamp: now - 2, state: pending(hash("b"), "e2") },
      { uuid: "v3", timestamp: now - 1, state: pending(hash("c"), "e3") },
    );
    presence.set(hash("a"), "quorum");
    presence.set(hash("b"), "quorum");
    // In flight: its nodes answered that they do not hold it yet.
    presence.set(hash("c"), "short");
    const entry = await readObject(services, bucketId, "k");
    expect(visibleVersion(entry)!.uuid).toBe("v2");
    // All blocks checked at once (one round trip), each once.
    expect(checked.sort()).toEqual([hash("a"), hash("b"), hash("c")]);
    expect(await eventually("k", ["v2:complete", "v3:pending"])).toEqual(["v2:complete", "v3:pending"]);
  });

  test("an entry with no pending version costs no presence check", async () => {
    await put("k", { uuid: "old", timestamp: model.clock.now(), state: complete });
    expect(visibleVersion(await readObject(services, bucketId, "k"))!.uuid).toBe("old");
    expect(await resolvePending(services, undefined)).toBeUndefined();
    expect(checked).toEqual([]);
  });
});

describe("settlePendingVersions (start-up repair)", () => {
  test("completes what is on a quorum, aborts what is short past the grace, counts the rest unsettled", async () => {
    const now = model.clock.now();
    const old = now - PENDING_ABORT_GRACE_MS - 1000;
    await put("done", { uuid: "d", timestamp: now, state: pending(hash("a")) });
    await put("lost", { uuid: "l", timestamp: old, state: pending(hash("b")) });
    await put("young", { uuid: "y", timestamp: now, state: pending(hash("c")) });
    await put("down", { uuid: "n", timestamp: old, state: pending(hash("d")) });
    presence.set(hash("a"), "quorum");
    presence.set(hash("b"), "short");
    presence.set(hash("c"), "short");
    expect(await settlePendingVersions(services)).toEqual({ completed: 1, aborted: 1, unsettled: 2 });
    expect(await statesOf("done")).toEqual(["d:complete"]);
    expect(await statesOf("lost")).toEqual(["l:aborted"]);
    expect(await statesOf("young")).toEqual(["y:pending"]);
    expect(await statesOf("down")).toEqual(["n:pending"]);
    // Once the nodes answer, a later pass settles it.
    presence.set(hash("d"), "quorum");
    expect(await settlePendingVersions(services)).toEqual({ completed: 1, aborted: 0, unsettled: 1 });
    expect(await statesOf("down")).toEqual(["n:complete"]);
  });
});

describe("the model's other readers of pending versions", () => {
  test("a write stamped behind a pending version (a lagging clock) is restamped past it", async () => {
    // The pending version may be acknowledged: a later write must not lose to it.
    const ahead = model.clock.now() + 60_000;
    await put("k", { uuid: "acked", timestamp: ahead, state: pending(hash("a")) });
    let stamped = 0;
    await model.insertNewestVersions([
      (uuid, timestamp) => {
        stamped = timestamp;
        return { entry: { bucketId, key: "k", versions: [{ uuid, timestamp, state: { kind: "complete", data: { kind: "deleteMarker" } } }] } };
      },
    ]);
    expect(stamped).toBeGreaterThan(ahead);
  });

  test("a bucket holding only a pending version is not empty", async () => {
    await put("k", { uuid: "p", timestamp: model.clock.now(), state: pending(hash("a")) });
    expect(await model.bucketHasContent(bucketId)).toBe(true);
  });
});
