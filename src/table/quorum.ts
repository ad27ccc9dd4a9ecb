// Waiting for a quorum of replicas: resolve as soon as `need` calls succeed, fail as soon
// as too many have failed to reach it, and never wait longer than the bound. A quorum of named
// replicas (replicaQuorum) also fails at once for peers known down, and tells a peer that has
// gone silent from one still transferring.
import type { PeerLiveness } from "../cluster/liveness";

export class QuorumError extends Error {
  constructor(
    readonly need: number,
    readonly got: number,
    readonly errors: string[],
  ) {
    super(`quorum not reached: ${got} of ${need} replicas answered${errors.length ? ` (${errors.join("; ")})` : ""}`);
  }
}

/** Default time a quorum call may take before it fails. */
export const QUORUM_TIMEOUT_MS = 30_000;

/**
 * The client-path bound: a quorum a request waits on fails with a QuorumError (503 to the
 * client) after this long instead of waiting for a partition to heal. A live replica answers a
 * table call in one round trip plus a commit: well under a second even on a 200 ms site link
 * under load, so 5 s is ten times the worst honest answer, and the same bound a peer has to
 * answer a ping (PING_TIMEOUT_MS) before it counts as missed. For block transfers it bounds
 * silence, not the transfer (see replicaQuorum's "progress").
 */
export const REQUEST_QUORUM_TIMEOUT_MS = 5_000;

export function quorum<T>(calls: readonly (() => Promise<T>)[], need: number, timeoutMs = QUORUM_TIMEOUT_MS): Promise<T[]> {
  return waitForQuorum(
    calls.map((run) => ({ run })),
    need,
    timeoutMs,
  );
}

/** How a quorum of named replicas waits. */
export interface ReplicaWait {
  liveness?: PeerLiveness;
  /**
   * "deadline" (metadata calls: one small round trip each): the quorum fails after timeoutMs.
   * "progress" (block transfers, which may rightly take long on a slow link): a replica fails
   * once its peer has sent nothing (no reply, credit or ping) for timeoutMs; the others go on
   * under their own call timeouts. Without liveness, "progress" is "deadline".
   */
  mode: "deadline" | "progress";
  /** Default REQUEST_QUORUM_TIMEOUT_MS. */
  timeoutMs?: number;
}

/** A quorum of `call(node)` over `nodes`; peers known down count as failed without a call. */
export function replicaQuorum<T>(nodes: readonly string[], call: (node: string) => Promise<T>, need: number, wait: ReplicaWait): Promise<T[]> {
  const liveness = wait.liveness;
  const timeoutMs = wait.timeoutMs ?? REQUEST_QUORUM_TIMEOUT_MS;
  return waitForQuorum(
    nodes.map((node) => ({
      run: () => (liveness?.isDown(node) ? Promise.reject(new PeerDownError(node)) : call(node)),
      heard: liveness && wait.mode === "progress" ? liveness.heardProbe(node) : undefined,
      node,
    })),
    need,
    timeoutMs,
    liveness !== undefined && wait.mode === "progress",
  );
}

/** A replica skipped because its peer is known down. */
export class PeerDownError extends Error {
  constructor(readonly node: string) {
    super(`node ${node.slice(0, 16)} is down (not connected, or missing its pings)`);
  }
}

interface QuorumCall<T> {
  run: () => Promise<T>;
  /** Progress mode: whether the replica's peer was heard from since last asked. */
  heard?: () => boolean;
  node?: string;
}

function waitForQuorum<T>(calls: readonly QuorumCall<T>[], need: number, timeoutMs: number, progress = false): Promise<T[]> {
  return new Promise<T[]>((resolve, reject) => {
    if (need <= 0) return resolve([]);
    const results: T[] = [];
    const errors: string[] = [];
    const pending = new Set<number>();
    let settled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(results.slice());
    };
    const fail = (i: number, message: string) => {
      if (!pending.delete(i)) return;
      errors.push(message);
      if (calls.length - errors.length < need) finish(new QuorumError(need, results.length, errors));
    };
    const onTimer = () => {
      if (!progress) return finish(new QuorumError(need, results.length, [...errors, "timeout"]));
      for (const i of [...pending]) {
        const call = calls[i]!;
        if (!call.heard!()) fail(i, `node ${call.node!.slice(0, 16)} sent nothing for ${timeoutMs} ms`);
      }
      if (!settled) timer = setTimeout(onTimer, timeoutMs);
    };
    if (calls.length < need) return finish(new QuorumError(need, 0, [`only ${calls.length} replicas`]));
    timer = setTimeout(onTimer, timeoutMs);
    calls.forEach((call, i) => {
      pending.add(i);
      call.run().then(
        (value) => {
          if (settled || !pending.delete(i)) return;
          results.push(value);
          if (results.length >= need) finish();
        },
        (err: unknown) => fail(i, err instanceof Error ? err.message : String(err)),
      );
    });
  });
}
