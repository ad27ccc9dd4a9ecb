// Start-up repair: uploads this node was receiving when it stopped can never finish, so
// their versions are aborted and their blocks released; pending versions (model/pending.ts)
// whose writer stopped before completing them are settled.
// Both read only the object entries marked unsettled as they were stored (objectSchema.unsettled,
// an index): the work is proportional to what was in progress, not to the table.
import { logger } from "../util/log";
import type { Model } from "./model";
import type { ObjectEntry } from "./object";
import { isUnconfirmed, settlePending, writeSettlement, type PendingServices } from "./pending";

const log = logger("repair");

/** Unsettled entries read at a time (each page is one indexed query). */
const UNSETTLED_PAGE = 256;

/** This node's unsettled object entries, page by page, in the order they were first stored. */
async function* unsettledObjects(model: Model): AsyncGenerator<ObjectEntry> {
  let after = 0;
  for (;;) {
    const page = model.objects.local.unsettledEntries(after, UNSETTLED_PAGE);
    for (const { entry } of page) yield entry;
    if (page.length < UNSETTLED_PAGE) return;
    after = page[page.length - 1]!.id;
  }
}

/** Aborts the non-multipart uploads this node started before `bootTime`. Returns how many. */
export async function abortInterruptedUploads(model: Model, bootTime: number): Promise<number> {
  let aborted = 0;
  for await (const o of unsettledObjects(model)) {
    const stale = o.versions.filter(
      (v) => v.state.kind === "uploading" && !v.state.multipart && v.state.uploader === model.placement.selfId && v.timestamp < bootTime,
    );
    if (stale.length === 0) continue;
    // Only what is still uploading on a quorum: a conditional write's version may have been
    // chosen meanwhile (its acceptors marked it proposed, or a writer completed it) and must
    // not be aborted from this node's stale copy.
    const current = await model.objects.get(o.bucketId, o.key);
    const still = stale.filter((v) => current?.versions.find((c) => c.uuid === v.uuid)?.state.kind === "uploading");
    if (still.length === 0) continue;
    await model.objects.insert({ ...o, versions: still.map((v) => ({ ...v, state: { kind: "aborted" as const } })) });
    aborted += still.length;
  }
  if (aborted > 0) log.info(`aborted ${aborted} uploads interrupted by the last stop`);
  return aborted;
}

export interface PendingRepairResult {
  completed: number;
  aborted: number;
  /** Keys left with a pending version: their block's nodes did not answer, or it is too young to abort. */
  unsettled: number;
}

/**
 * Settles the pending versions in this node's copy of the object table: each key is read from
 * a quorum and settled as a read would (its block on a quorum: completed; short of one past the
 * grace: aborted), the writes awaited. Readers settle the keys they read; this covers the rest.
 */
export async function settlePendingVersions(services: PendingServices): Promise<PendingRepairResult> {
  const { model } = services;
  const result: PendingRepairResult = { completed: 0, aborted: 0, unsettled: 0 };
  for await (const local of unsettledObjects(model)) {
    if (!local.versions.some(isUnconfirmed)) continue;
    const entry = await model.objects.get(local.bucketId, local.key);
    if (entry === undefined || !entry.versions.some(isUnconfirmed)) continue;
    const { served, writes } = await settlePending(services, entry);
    await writeSettlement(model, entry, { served, writes });
    if (served) result.completed++;
    result.aborted += writes.length - (served ? 1 : 0);
    const written = new Set(writes.map((w) => w.uuid));
    if (entry.versions.some((v) => isUnconfirmed(v) && !written.has(v.uuid) && (served === undefined || v.timestamp > served.timestamp))) result.unsettled++;
  }
  if (result.completed + result.aborted > 0) log.info(`settled pending versions: ${result.completed} completed, ${result.aborted} aborted`);
  return result;
}

/** Passes of the start-up pending repair while keys stay unsettled (peers may not be up yet). */
const PENDING_REPAIR_PASSES = 10;
/** Wait before the second pass; it doubles from one pass to the next (about 17 minutes in all). */
const PENDING_REPAIR_FIRST_RETRY_MS = 2_000;

/**
 * Runs settlePendingVersions at start-up, in the background, and again while keys stay
 * unsettled, up to PENDING_REPAIR_PASSES times. `stop` ends it and waits for a pass under way.
 */
export function startPendingRepair(services: PendingServices): { stop(): Promise<void> } {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> | undefined;
  const pass = (n: number) => {
    running = settlePendingVersions(services)
      .then((r) => r.unsettled > 0)
      .catch((err) => {
        log.warn(`pending versions: ${(err as Error).message}; will retry`);
        return true;
      })
      .then((again) => {
        if (again && n + 1 < PENDING_REPAIR_PASSES && !stopped) timer = setTimeout(() => pass(n + 1), PENDING_REPAIR_FIRST_RETRY_MS * 2 ** n);
      });
  };
  pass(0);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
