// Start-up readiness: a node with peers in its layout reconnects to them before it serves S3,
// so that a restarted node does not answer a burst of 503s while its connections come back.
// It waits until every partition has a write quorum of nodes up (enough to serve any request,
// as the node is a gateway to every partition), not for every peer: a node down for
// maintenance must not hold the others' restarts for the whole wait. The wait is bounded: a
// node cut off from its peers still starts, and answers 503 at once.
import { PARTITION_COUNT } from "./layout";
import type { LayoutHistory } from "./layout-history";

/**
 * Longest a starting node waits to reach a quorum of its peers before it serves S3 anyway.
 * Reconnecting takes a TCP connect and a handshake (a few round trips: well under a second,
 * even across sites), or one peer-side reconnect attempt (RECONNECT_MIN_MS, then doubling) when
 * the peers dial first; 10 s covers those and a slow handshake (HANDSHAKE_TIMEOUT_MS) without
 * keeping an isolated node dark for long.
 */
export const STARTUP_PEER_WAIT_MS = 10_000;
/** How often the wait looks at the connections. */
const READINESS_POLL_MS = 100;

/** What readiness needs to know of the cluster (ClusterSystem). */
export interface ClusterView {
  history(): LayoutHistory;
  partitionHealth(): { quorum: number; allOk: number };
  peers(): { isUp: boolean }[];
}

export class Readiness {
  private startedAt = 0;
  private timeoutMs = STARTUP_PEER_WAIT_MS;
  private waiting = false;
  private serving = false;

  constructor(
    private readonly cluster: ClusterView,
    private readonly now: () => number = Date.now,
  ) {}

  /** A write quorum of every partition is up (a node with no layout yet, or alone in it, always is). */
  peersReachable(): boolean {
    if (this.cluster.history().current === 0) return true;
    return this.cluster.partitionHealth().quorum === PARTITION_COUNT;
  }

  /**
   * Waits until the peers are reachable or `timeoutMs` has passed; true when they are. The
   * node is not ready while this runs.
   */
  async waitForPeers(timeoutMs = STARTUP_PEER_WAIT_MS): Promise<boolean> {
    this.startedAt = this.now();
    this.timeoutMs = timeoutMs;
    this.waiting = true;
    try {
      for (;;) {
        if (this.peersReachable()) return true;
        if (this.now() - this.startedAt >= timeoutMs) return false;
        await Bun.sleep(READINESS_POLL_MS);
      }
    } finally {
      this.waiting = false;
    }
  }

  /** Every port is open: from now on /health reports the cluster's state. */
  markServing(): void {
    this.serving = true;
  }

  /** Why the node does not serve S3 yet, or null once it does. */
  notReadyReason(): string | null {
    if (this.serving) return null;
    if (!this.waiting) return "starting";
    const peers = this.cluster.peers();
    const up = peers.filter((p) => p.isUp).length;
    const { quorum } = this.cluster.partitionHealth();
    const left = Math.max(0, Math.ceil((this.timeoutMs - (this.now() - this.startedAt)) / 1000));
    return (
      `reconnecting to its peers (${up} of ${peers.length} connected, ${quorum} of ${PARTITION_COUNT} partitions ` +
      `have a write quorum); S3 opens when they do, or in ${left} s at most`
    );
  }
}
