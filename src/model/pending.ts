// Versions waiting for a confirmation (model/object.ts), and when they are served. `pending`: a
// PUT of one block writes its block and its whole version in the same round trip and answers
// once both reached their quorum; such a version is served only once its block is seen on a
// write quorum of its nodes. `proposed`: a conditional write's version as an acceptor of the
// key's register accepted it (model/conditional-write.ts); served only once the acceptors show
// it chosen (docs/conditional-writes.md). Every read that meets one (readObject,
// resolvePending) checks, then serves it and writes it `complete` (its writer does so too,
// after answering); a pending version whose block can no longer reach a quorum is aborted.
//
// Why the pending state is safe: a served version has its block on a write quorum, because it is complete
// (written only after the block's quorum: by its writer, or by a reader that saw the quorum) or
// a pending one whose block a reader just saw on a quorum. An acknowledged version is never
// lost: its entry is on a write quorum of replicas (a later read quorum meets one of them, and
// the merge keeps it: nothing but a newer complete version drops it), and its block on a write
// quorum of block nodes, so every presence check finds it, and none finds it short: a version is
// aborted only when, in each node set of its block, more nodes than a quorum leaves answered
// that they lack it.
import type { BlockPresence } from "../block/manager";
import type { Model } from "./model";
import { newestCompleteTimestamp, objectSchema, pruneVersions, type ObjectEntry, type ObjectVersion, type PendingVersion, type ProposedVersion } from "./object";
import { verdictOf } from "../table/cas-register";
import { partitionOfEntry } from "../table/partition";
import { QuorumError } from "../table/quorum";

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

/** The complete form of a version waiting for confirmation (pending or proposed): same uuid, timestamp, data and tags. */
export function completedVersion(v: PendingVersion | ProposedVersion): ObjectVersion {
  const { data, tags } = v.state;
  return { uuid: v.uuid, timestamp: v.timestamp, state: tags === undefined ? { kind: "complete", data } : { kind: "complete", data, tags } };
}


/** A version that is not visible until confirmed: pending (its block) or proposed (the register). */
export const isUnconfirmed = (v: ObjectVersion): boolean => v.state.kind === "pending" || v.state.kind === "proposed";
const isProposed = (v: ObjectVersion): v is ProposedVersion => v.state.kind === "proposed";

/** What resolving an entry's pending and proposed versions found: the one to serve, and what to write. */
export interface Settlement {
  served?: PendingVersion | ProposedVersion;
  /** The served version completed, and versions aborted: one object entry's versions. */
  writes: ObjectVersion[];
  /**
   * A proposed version newer than the one served was accepted and then superseded in the
   * register: the writer that superseded it wrote it to the table first if it was chosen, so
   * the entry must be read again before it can be judged.
   */
  reread?: boolean;
  /**
   * A pending version newer than the one served whose block's nodes could not all be heard: it
   * may be an acknowledged PUT, so serving the older version could be stale (readers answer 503).
   */
  unjudged?: string;
}


/**
 * Where the entry's proposed versions (newer than its newest complete one) stand in the key's
 * register: the newest chosen one, if any. One round to the key's acceptors, only when the
 * entry holds such a version. Throws QuorumError when one newer than what is served cannot be
 * judged (an acceptor out of reach might hold it): serving the older version could be stale.
 */
async function settleProposed(services: PendingServices, entry: ObjectEntry, supersededIsFinal: boolean): Promise<{ served?: ProposedVersion; reread: boolean }> {
  const floor = newestCompleteTimestamp(entry);
  const proposed = entry.versions
    .filter((v): v is ProposedVersion => isProposed(v) && v.timestamp > floor)
    .sort((a, b) => b.timestamp - a.timestamp)
    .slice(0, PENDING_CHECKED_MAX);
  if (proposed.length === 0) return { reread: false };
  const { model } = services;
  const acceptances = await model.cas.acceptances(partitionOfEntry(objectSchema, entry.bucketId), entry.bucketId, entry.key);
  for (const v of proposed) {
    const verdict = verdictOf(acceptances, v.uuid, v.state.ballot);
    if (verdict === "chosen") return { served: v, reread: false };
    if (verdict === "superseded" && !supersededIsFinal) return { reread: true };
    if (verdict === "unknown") throw new QuorumError(2, 0, [`the conditional write of ${entry.key} at ballot ${v.state.ballot.ts} cannot be judged: acceptors out of reach`]);
  }
  return { reread: false };
}

/**
 * Checks where the entry's pending versions stand: for a pending one, whether its block is on
 * a write quorum (one presence check for all of them); for a proposed one, whether the key's
 * register chose it (one round to its acceptors). The newest confirmed one is served (and
 * completed); younger pending ones whose block is short of a quorum past the grace are aborted.
 */
export async function settlePending(services: PendingServices, entry: ObjectEntry, opts: { proposed?: boolean; supersededIsFinal?: boolean } = {}): Promise<Settlement> {
  const pending = entry.versions
    .filter(isPending)
    .sort((a, b) => b.timestamp - a.timestamp)
    .slice(0, PENDING_CHECKED_MAX);
  const [presence, register] = await Promise.all([
    Promise.all([...new Set(pending.map((v) => v.state.data.singleBlock))].map(async (h) => [h, await services.blocks.presence(h)] as const)).then((pairs) => new Map(pairs)),
    opts.proposed === false ? ({ reread: false } as { served?: ProposedVersion; reread: boolean }) : settleProposed(services, entry, opts.supersededIsFinal === true),
  ]);
  const servedPending = pending.find((v) => presence.get(v.state.data.singleBlock) === "quorum");
  // A pending version newer than what would be served, whose block's nodes could not all be
  // heard, may be an acknowledged PUT: serving the older version could be stale, so the read
  // fails (503) until the nodes answer.
  const unjudged = pending.find((v) => presence.get(v.state.data.singleBlock) === "unknown");
  const blocked = unjudged !== undefined && (servedPending === undefined || unjudged.timestamp > servedPending.timestamp);
  const served = servedPending && register.served ? (servedPending.timestamp > register.served.timestamp ? servedPending : register.served) : (servedPending ?? register.served);
  const now = services.model.clock.read();
  const writes: ObjectVersion[] = served ? [completedVersion(served)] : [];
  for (const v of pending) {
    if (served !== undefined && v.timestamp <= served.timestamp) break;
    if (presence.get(v.state.data.singleBlock) === "short" && now - v.timestamp > PENDING_ABORT_GRACE_MS) writes.push({ uuid: v.uuid, timestamp: v.timestamp, state: { kind: "aborted" } });
  }
  return { served, writes, reread: register.reread, ...(blocked ? { unjudged: unjudged!.uuid } : {}) };
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
  if (served && isPending(served)) await versionRows(model, entry.bucketId, entry.key, served.uuid, { hash: served.state.data.singleBlock, size: served.state.data.meta.size });
  if (writes.length > 0) await model.objects.insert({ bucketId: entry.bucketId, key: entry.key, versions: writes });
}

/**
 * What `entry` shows once its pending versions are resolved: the newest pending version whose
 * block is on a write quorum, made complete (its completion is written in the background, the
 * versions it replaces dropped as the merge would); otherwise the entry as it is, whose
 * pending versions stay invisible. Costs one presence check (one round trip) when the entry
 * holds a pending version, nothing otherwise.
 */
export async function resolvePending(services: PendingServices, entry: ObjectEntry | undefined, opts: { proposed?: boolean } = {}): Promise<ObjectEntry | undefined> {
  if (entry === undefined || !entry.versions.some(isUnconfirmed)) return entry;
  let settlement = await settlePending(services, entry, opts);
  if (settlement.reread) {
    // Once: a proposed version superseded in the register is, if it was chosen, complete in
    // the table by now; read again, one still proposed then was not chosen.
    const again = await services.model.objects.get(entry.bucketId, entry.key);
    if (again === undefined) return again;
    entry = again;
    settlement = await settlePending(services, entry, { ...opts, supersededIsFinal: true });
  }
  const { served, writes } = settlement;
  const settled = entry;
  if (writes.length > 0) void services.model.writeLater(`pending versions of ${entry.key}`, () => writeSettlement(services.model, settled, { served, writes }), false);
  if (settlement.unjudged !== undefined) throw new QuorumError(2, 1, [`the one-block write of ${entry.key} cannot be judged: its block's nodes are out of reach`]);
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
