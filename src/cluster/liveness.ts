// What the request path knows of a peer's reachability, so that a quorum does not wait for a
// replica it cannot get: a peer known down (not connected, or missing its pings) fails at once,
// and a peer that has sent nothing for a while is told apart from one still transferring.

export interface PeerLiveness {
  /** Known unreachable now: not connected, or it missed too many pings in a row. Never this node. */
  isDown(node: string): boolean;
  /**
   * A probe answering, each time it is asked, whether `node` sent this node anything (a reply,
   * flow-control credit, a ping) since the probe was made or last asked. This node always has.
   */
  heardProbe(node: string): () => boolean;
}
