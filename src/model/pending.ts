// Pending versions (model/object.ts): a PUT of one block writes its block and its whole version
// in the same round trip, the version `pending`, and answers once both reached their quorum.
// This module owns when such a version is served: only once its block is seen on a write
// quorum of its nodes. Every read that meets one (readObject, resolvePending) checks that, and
// then serves it and writes it `complete` (its writer does so too, after answering); a pending
// version whose block can no longer reach a quorum is aborted.
//
// Why it is safe: a served version has its block on a write quorum, because it is complete
// (written only after the block's quorum: by its writer, or by a reader that saw the quorum) or
// a pending one whose block a reader just saw on a quorum. An acknowledged version is never
// lost: its entry is on a write quorum of replicas (a later read quorum meets one of them, and
// the merge keeps it: nothing but a newer complete version drops it), and its block on a write
// quorum of block nodes, so every presence check finds it, and none finds it short: a version is
// aborted only when, in each node set of its block, more nodes than a quorum leaves answered
// that they lack it.
import type { BlockPresence } from "../block/manager";
import type { Model } from "./model";
import { pruneVersions, type ObjectEntry, type ObjectVersion, type PendingVersion } from "./object";

/** What resolving pending versions needs: the tables, and where a block stands. */
export interface PendingServices {
  model: Model;
  blocks: { presence(hashHex: string): Promise<BlockPresence> };
}

/**
 * Pending versions of one key checked per read, newest first. More exist only while writes of
 * the key race (each leaves one until a newer one completes); the older ones are not looked at.
 */
const PENDING_CHECKED_MAX = 16;
/**
 * Age past which a pending version whose block is short of a quorum is aborted. Its writer gave
 * up on its block long before: a block put fails after QUORUM_TIMEOUT_MS (30 s), and each of
 * its copies settles within BLOCK_CALL_TIMEOUT_MS (60 s); a younger one may still be in flight.
 */
export const PENDING_ABORT_GRACE_MS = 5 * 60_000;

export const isPending = (v: ObjectVersion): v is PendingVersion => v.state.kind === "pending";

/** The complete form of a pending version: same uuid, timestamp, data and tags. */
export function completedVersion(v: PendingVersion): ObjectVersion {
  const { data, tags } = v.state;
  return { uuid: v.uuid, timestamp: v.timestamp, state: tags === undefined ? { kind: "complete", data } : { kind: "complete", data, tags } };
}

/** What resolving an entry's pending versions found: the one to serve, and what to write. */
export interface Settlement {
  served?: PendingVersion;
  /** The served version completed, and versions aborted: one object entry's versions. */
  writes: ObjectVersion[];
}

/**
 * Checks where the blocks of the entry's pending versions stand: the newest one on a write
 * quorum is served (and completed); younger ones whose block is short of a quorum past the
 * grace are aborted. One presence check (one round trip, all blocks at once).
 */
export async function settlePending(services: PendingServices, entry: ObjectEntry): Promise<Settlement> {
  const pending = entry.versions
    .filter(isPending)
    .sort((a, b) => b.timestamp - a.timestamp)
    .slice(0, PENDING_CHECKED_MAX);
  if (pending.length === 0) return { writes: [] };
  const hashes = [...new Set(pending.map((v) => v.state.data.singleBlock))];
  const presence = new Map(await Promise.all(hashes.map(async (h) => [h, await services.blocks.presence(h)] as const)));
  const served = pending.find((v) => presence.get(v.state.data.singleBlock) === "quorum");
  const now = services.model.clock.now();
  const writes: ObjectVersion[] = served ? [completedVersion(served)] : [];
  for (const v of pending) {
    if (served !== undefined && v.timestamp <= served.timestamp) break;
    if (presence.get(v.state.data.singleBlock) === "short" && now - v.timestamp > PENDING_ABORT_GRACE_MS) writes.push({ uuid: v.uuid, timestamp: v.timestamp, state: { kind: "aborted" } });
  }
  return { served, writes };
}

/**
 * The rows that tie a one-block version to its block (version, block list, block reference):
 * written with the version, and again by whoever completes it (idempotent), so that a served
 * version never lacks them even if its writer's own write reached fewer replicas.
 */
export function versionRows(model: Model, bucketId: string, key: string, uuid: string, block: { hash: string; size: number }): Promise<unknown> {
  return Promise.all([
    model.versions.insert({ uuid, deleted: false, backlink: { kind: "object", bucketId, key } }),
    model.versionBlocks.insert({ uuid, part: 0, offset: 0, hash: block.hash, size: block.size }),
    model.blockRefs.insert({ hash: block.hash, version: uuid, deleted: false }),
  ]);
}

/** Writes what settlePending decided: the served version's rows, then its completion and the aborts. */
export async function writeSettlement(model: Model, entry: ObjectEntry, { served, writes }: Settlement): Promise<void> {
  if (served) await versionRows(model, entry.bucketId, entry.key, served.uuid, { hash: served.state.data.singleBlock, size: served.state.data.meta.size });
  if (writes.length > 0) await model.objects.insert({ bucketId: entry.bucketId, key: entry.key, versions: writes });
}

/**
 * What `entry` shows once its pending versions are resolved: the newest pending version whose
 * block is on a write quorum, made complete (its completion is written in the background, the
 * versions it replaces dropped as the merge would); otherwise the entry as it is, whose
 * pending versions stay invisible. Costs one presence check (one round trip) when the entry
 * holds a pending version, nothing otherwise.
 */
export async function resolvePending(services: PendingServices, entry: ObjectEntry | undefined): Promise<ObjectEntry | undefined> {
  if (entry === undefined || !entry.versions.some(isPending)) return entry;
  const { served, writes } = await settlePending(services, entry);
  if (writes.length > 0) void services.model.writeLater(`pending versions of ${entry.key}`, () => writeSettlement(services.model, entry, { served, writes }), false);
  if (served === undefined) return entry;
  const complete = writes[0]!;
  return { bucketId: entry.bucketId, key: entry.key, versions: pruneVersions(entry.versions.map((v) => (v.uuid === served.uuid ? complete : v))) };
}

/**
 * The object entry of a key as GET, HEAD and every read of the current version must see it:
 * read from a quorum, with its pending versions resolved.
 */
export async function readObject(services: PendingServices, bucketId: string, key: string): Promise<ObjectEntry | undefined> {
  return resolvePending(services, await services.model.objects.get(bucketId, key));
}
