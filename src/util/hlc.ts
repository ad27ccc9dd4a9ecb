// Hybrid logical clock: millisecond timestamps that never go backwards on a node and are
// bumped past every timestamp this node has seen. A write stamped by `now()` is therefore
// newer than anything the writer has observed, without a read round trip first.

export class HybridClock {
  private last = 0;

  constructor(private readonly wallClock: () => number = Date.now) {}

  /** A fresh timestamp, strictly greater than every earlier one from this clock. */
  now(): number {
    const wall = this.wallClock();
    this.last = wall > this.last ? wall : this.last + 1;
    return this.last;
  }

  /**
   * The clock's time without taking a timestamp: for deciding what is due, never for stamping.
   * now() moves the clock 1 ms past its last value when called twice in a millisecond, so a node
   * that asked it the time for its timers would run its clock ahead of the wall, and of the
   * other nodes', and its writes would win races they did not win.
   */
  read(): number {
    const wall = this.wallClock();
    return wall > this.last ? wall : this.last;
  }

  /** Records a timestamp seen in a message or a stored entry. */
  observe(timestamp: number): void {
    if (timestamp > this.last) this.last = timestamp;
  }

  /** A timestamp strictly newer than both the clock and `after` (Garage's tsfix). */
  nowAfter(after: number): number {
    this.observe(after);
    return this.now();
  }
}
