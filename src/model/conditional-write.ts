// Conditional writes (If-None-Match / If-Match on PutObject, CompleteMultipartUpload,
// CopyObject and DeleteObject) made linearizable: the new version is installed through the
// key's compare-and-set register (table/cas-register.ts), so of concurrent conditional writes
// to a key at most one sees the condition it wants, and each sees every write acknowledged
// before it started. Unconditional writes never come here. docs/conditional-writes.md has the
// design and the safety argument.
import { newUuid } from "../util/ids";
import { assert } from "../util/assert";
import { QuorumError } from "../table/quorum";
import { PreemptedError, type CasRegister } from "../table/cas-register";
import { partitionOfEntry } from "../table/partition";
import { newestCompleteTimestamp, objectSchema, visibleVersion, type ObjectEntry, type ObjectVersion, type VersionState, type VisibleVersion } from "./object";
import { resolvePending, type PendingServices } from "./pending";
import { proposedVersionValidator } from "./entry-schemas";

/**
 * How long a conditional write may spend getting its turn on the register (rounds lost to
 * concurrent conditional writes, acceptors out of reach) before it answers 503: a few rounds of
 * a 200 ms RTT site link with room to back off, far below an S3 client's own timeout.
 */
export const CONDITIONAL_WRITE_DEADLINE_MS = 8_000;
/** Rounds a conditional write may lose to others before it gives up (with the deadline). */
export const CONDITIONAL_ROUNDS_MAX = 24;
/** Upper bound of the random pause after a lost round: duelling proposers spread out. */
const BACKOFF_MAX_MS = 250;

/** Another write to the key got in between (AWS: 409 ConditionalRequestConflict); retrying may succeed. */
export class ConditionalConflictError extends Error {}

/**
 * The write's outcome is unknown (acceptors or replicas out of reach, or the register stayed
 * contended past the deadline): it may or may not take effect. Answered 503.
 */
export class ConditionalUnavailableError extends Error {}

/**
 * The version to install. `fixed`: its uuid and timestamp are already tied to stored data (an
 * announced upload, a multipart completion); it must still be newer than every complete version
 * the register's round sees, or the write conflicts. `fresh`: it takes a uuid and a timestamp
 * past everything seen (inline bodies, delete markers).
 */
export type NewVersion = { kind: "fixed"; version: ObjectVersion } | { kind: "fresh"; state: (timestamp: number) => VersionState };

export interface ConditionalTarget {
  bucketId: string;
  key: string;
}

function mergeEntries(entries: readonly ObjectEntry[]): ObjectEntry | undefined {
  return entries.length === 0 ? undefined : entries.reduce((a, b) => objectSchema.merge(a, b));
}


/** True when the entry already reflects `v`: it holds it complete or aborted, or something complete newer replaced it. */
function settledIn(entry: ObjectEntry | undefined, v: ObjectVersion): boolean {
  const held = entry?.versions.find((x) => x.uuid === v.uuid);
  if (held && (held.state.kind === "complete" || held.state.kind === "aborted")) return true;
  return newestCompleteTimestamp(entry, v.uuid) > v.timestamp;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Installs a new version of `target` if `check` accepts the key's current visible version
 * (it throws the S3 layer's error otherwise: PreconditionFailed, NoSuchKey...). Resolves with
 * the installed version, written to a write quorum of the object table.
 */
export async function installConditionally(
  services: PendingServices,
  target: ConditionalTarget,
  check: (current: VisibleVersion | undefined) => void,
  next: NewVersion,
): Promise<ObjectVersion> {
  const s = services.model;
  const partition = partitionOfEntry(objectSchema, target.bucketId);
  const { bucketId, key } = target;
  const deadline = Date.now() + CONDITIONAL_WRITE_DEADLINE_MS;
  const commit = (v: ObjectVersion) => s.objects.insert({ bucketId, key, versions: [v] });
  // Once proposed, a fixed version keeps its identity across rounds; a fresh one is rebuilt
  // (new uuid) only when something newer appeared, as a value accepted at a lower ballot is
  // dominated by any accepted at a higher one. Every value this write proposed is remembered:
  // a later round may find one of them adopted (then it is this write's result), and the ones
  // it gave up are aborted before it answers.
  let mine: ObjectVersion | undefined = next.kind === "fixed" ? next.version : undefined;
  const proposed = new Map<string, ObjectVersion>();
  const abandon = (except?: string) =>
    [...proposed.values()].filter((v) => v.uuid !== except).map((v) => ({ uuid: v.uuid, timestamp: v.timestamp, state: { kind: "aborted" as const } }));
  let lastError = "";
  /** The result of an earlier round, chosen: the values of other rounds are aborted in the background. */
  const finish = (result: ObjectVersion) => {
    const others = abandon(result.uuid);
    if (others.length > 0) void s.writeLater(`abandoned proposals of ${key}`, () => s.objects.insert({ bucketId, key, versions: others }), false);
    return result;
  };
  let skipPause = false;
  for (let round = 0; ; round++) {
    if (round >= CONDITIONAL_ROUNDS_MAX || Date.now() > deadline)
      throw new ConditionalUnavailableError(`the key's conditional-write register stayed out of reach or contended (${round} rounds${lastError ? `; ${lastError}` : ""})`);
    if (round > 0 && !skipPause) await sleep(Math.random() * Math.min(BACKOFF_MAX_MS, 10 * 2 ** round));
    skipPause = false;
    const ballot = s.cas.newBallot();
    try {
      const prepared = await s.cas.prepare(partition, bucketId, key, ballot);
      // A one-block PUT acknowledged a moment ago may still be pending: resolved as a read
      // would. Proposed versions are not: the register's adopted value below says which counts.
      // What peers sent is checked like any entry they send (entry-schemas.ts): a malformed one
      // fails the round (503) rather than the request (500).
      const validate = s.objects.schema.validateEntry;
      const malformed = validate && prepared.entries.map(validate).find((p) => p !== undefined);
      const valueProblem = prepared.adopted ? proposedVersionValidator.problem(prepared.adopted.value) : undefined;
      if (malformed || valueProblem) throw new QuorumError(2, 1, [`an acceptor of ${key} answered a malformed ${malformed ? `entry: ${malformed}` : `value: ${valueProblem}`}`]);
      let state = await resolvePending(services, mergeEntries(prepared.entries as ObjectEntry[]), { proposed: false });
      // A value some acceptor knows was written (learned) needs nothing more, even if the
      // entry no longer shows it (deleted since, its tombstone collected).
      const highest = prepared.adopted?.value as ObjectVersion | undefined;
      // Ours, from an earlier round, written and learned by a writer that adopted it (the entry
      // may show something newer by now): it is this write's result.
      if (prepared.adopted?.learned && highest && proposed.has(highest.uuid)) return finish(proposed.get(highest.uuid)!);
      const adopted = prepared.adopted?.learned ? undefined : highest;
      const committed = state?.versions.find((v) => proposed.has(v.uuid) && v.state.kind === "complete");
      if (committed) {
        // A value of an earlier round was chosen after all, and a writer that adopted it wrote
        // it complete: it is this write's result.
        return finish(proposed.get(committed.uuid)!);
      }
      if (adopted && proposed.has(adopted.uuid)) {
        // Ours, from an earlier round, and the highest acceptance a majority reports: made
        // chosen at this ballot (whatever became of it since), it is this write's result.
        await s.cas.accept(partition, bucketId, key, ballot, adopted);
        await commit(adopted);
        s.cas.learn(partition, bucketId, key, ballot);
        return finish(proposed.get(adopted.uuid)!);
      }
      if (adopted && !settledIn(state, adopted)) {
        // The highest acceptance a majority reports may or may not be chosen (its writer may
        // have stopped between its accept and its write, or lost its round). It is made chosen
        // at this round's ballot before it is written and anything is decided on it: writing a
        // value no majority accepted could race a higher ballot that never saw it.
        await s.cas.accept(partition, bucketId, key, ballot, adopted);
        await commit(adopted);
        s.cas.learn(partition, bucketId, key, ballot);
        // This ballot carried the adopted value; the next round proposes ours, at once.
        skipPause = true;
        continue;
      }
      try {
        check(visibleVersion(state));
      } catch (refusal) {
        // Values proposed in earlier rounds are aborted before the refusal is answered: were
        // one adopted later, it would stay invisible (aborted absorbs complete).
        const given = abandon();
        if (given.length > 0) await s.objects.insert({ bucketId, key, versions: given });
        throw refusal;
      }
      const newest = newestCompleteTimestamp(state, mine?.uuid);
      if (next.kind === "fresh" && (mine === undefined || newest >= mine.timestamp)) {
        const timestamp = s.clock.nowAfter(newest);
        mine = { uuid: newUuid(), timestamp, state: next.state(timestamp) };
      }
      assert(mine !== undefined, "a fixed version is given, a fresh one was just built");
      if (newest >= mine.timestamp) throw new ConditionalConflictError(`a newer version of the key was written while this one was stored`);
      proposed.set(mine.uuid, mine);
      await s.cas.accept(partition, bucketId, key, ballot, mine);
      // Chosen: every acceptor of the majority marked the entry with it (proposed), so every
      // read from now on finds it and asks the register (model/pending.ts). The complete form
      // is written after the answer; values of earlier rounds can no longer be chosen.
      const result = mine;
      const writes = [result, ...abandon(result.uuid)];
      await s.writeLater(
        `conditional write of ${key}`,
        async () => {
          await s.objects.insert({ bucketId, key, versions: writes });
          s.cas.learn(partition, bucketId, key, ballot);
        },
        true,
      );
      return result;
    } catch (err) {
      if (err instanceof PreemptedError) {
        lastError = err.message;
        continue;
      }
      if (err instanceof QuorumError) throw new ConditionalUnavailableError(err.message);
      throw err;
    }
  }
}
