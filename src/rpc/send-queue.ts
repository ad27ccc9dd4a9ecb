// The per-connection send queue: frames waiting for the socket. It owns three rules:
//  - priority: the most urgent priority (lowest value) with queued frames is always served
//    first; control frames (CANCEL, CREDIT) go before everything, since they are tiny and
//    unblock or stop other streams;
//  - fairness: within one priority, the streams ("lanes") take turns frame by frame;
//  - the bound: data frames reserve their size before being queued and writers wait while the
//    queue holds MAX_SEND_QUEUE_BYTES. Waiters are admitted most urgent first, so a high-priority
//    call waits at most for one frame's worth of room, never behind a queue of bulk data.
import { assert } from "../util/assert.ts";
import { encodedFrameSize, type Frame } from "./frame.ts";

/** Bytes of data frames a connection may hold waiting for the socket. */
export const MAX_SEND_QUEUE_BYTES = 2 * 1024 * 1024;
/** Control frames are bounded by the number of live streams; this catches a runaway. */
const MAX_CONTROL_FRAMES = 1 << 16;

/** One outgoing stream of frames (one direction of one request). Frames keep their order. */
export class Lane {
  readonly frames: Frame[] = [];
  /** Frames of this lane already handed to the socket. */
  sent = 0;
  closed = false;
  constructor(readonly priority: number) {
    assert(Number.isInteger(priority) && priority >= 0 && priority <= 0xff, "lane priority is a u8");
  }
}

interface Waiter {
  lane: Lane;
  bytes: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class SendQueue {
  private readonly control: Frame[] = [];
  /** Per priority, the lanes that have frames, in round-robin order. */
  private readonly rings = new Map<number, Lane[]>();
  /** Priorities whose ring is non-empty, most urgent first. */
  private levels: number[] = [];
  /** Writers waiting for room, per priority, FIFO. */
  private readonly waiters = new Map<number, Waiter[]>();
  private waitLevels: number[] = [];
  private failure: Error | null = null;
  /** Bytes queued or reserved by data frames. */
  private bytes = 0;
  /** Largest value `bytes` has reached (tests check the bound with it). */
  highWater = 0;

  constructor(readonly maxBytes: number = MAX_SEND_QUEUE_BYTES) {
    assert(maxBytes > 0, "send queue bound is positive");
  }

  get queuedBytes(): number {
    return this.bytes;
  }

  get isEmpty(): boolean {
    return this.control.length === 0 && this.levels.length === 0;
  }

  /**
   * Waits for room for `bytes` on `lane`. Granted at once when nothing more urgent (or equally
   * urgent, first come first served) is waiting and the bound allows it; an empty queue always
   * admits one frame. Rejects when the lane is dropped or the queue fails.
   */
  reserve(lane: Lane, bytes: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    assert(!lane.closed, "reserving on an open lane");
    if (!this.waitingAtOrAbove(lane.priority) && this.fits(bytes)) {
      this.grant(bytes);
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      let list = this.waiters.get(lane.priority);
      if (!list) {
        list = [];
        this.waiters.set(lane.priority, list);
        this.waitLevels = insertSorted(this.waitLevels, lane.priority);
      }
      list.push({ lane, bytes, resolve, reject });
    });
  }

  /** Queues a data frame whose size was reserved. A dropped lane just releases the room. */
  push(lane: Lane, frame: Frame): void {
    const size = encodedFrameSize(frame);
    if (lane.closed || this.failure) {
      this.release(size);
      return;
    }
    lane.frames.push(frame);
    if (lane.frames.length === 1) {
      let ring = this.rings.get(lane.priority);
      if (!ring) {
        ring = [];
        this.rings.set(lane.priority, ring);
      }
      if (ring.length === 0) this.levels = insertSorted(this.levels, lane.priority);
      ring.push(lane);
    }
  }

  /** Queues a control frame (CANCEL, CREDIT): outside the byte bound, sent before data. */
  pushControl(frame: Frame): void {
    if (this.failure) return;
    assert(this.control.length < MAX_CONTROL_FRAMES, "control frames stay bounded");
    this.control.push(frame);
  }

  /** The frame `pop()` would return. */
  peek(): Frame | undefined {
    if (this.control.length > 0) return this.control[0];
    const level = this.levels[0];
    if (level === undefined) return undefined;
    return this.rings.get(level)![0]!.frames[0];
  }

  pop(): Frame | undefined {
    if (this.control.length > 0) return this.control.shift();
    const level = this.levels[0];
    if (level === undefined) return undefined;
    const ring = this.rings.get(level)!;
    const lane = ring.shift()!;
    const frame = lane.frames.shift()!;
    lane.sent++;
    if (lane.frames.length > 0) ring.push(lane);
    else if (ring.length === 0) this.levels.shift();
    this.release(encodedFrameSize(frame));
    return frame;
  }

  /** Discards a lane's queued frames and pending reservations. Returns how many were sent. */
  dropLane(lane: Lane, reason: Error): number {
    if (lane.closed) return lane.sent;
    lane.closed = true;
    let freed = 0;
    for (const f of lane.frames.splice(0)) freed += encodedFrameSize(f);
    const ring = this.rings.get(lane.priority);
    if (ring) {
      const i = ring.indexOf(lane);
      if (i >= 0) {
        ring.splice(i, 1);
        if (ring.length === 0) this.levels = this.levels.filter((l) => l !== lane.priority);
      }
    }
    const list = this.waiters.get(lane.priority);
    if (list) {
      const kept = list.filter((w) => w.lane !== lane);
      for (const w of list) if (w.lane === lane) w.reject(reason);
      this.setWaiters(lane.priority, kept);
    }
    this.release(freed);
    return lane.sent;
  }

  /** The connection is gone: every waiter fails and nothing more is queued. */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.control.length = 0;
    for (const ring of this.rings.values()) for (const lane of ring) lane.frames.length = 0;
    this.rings.clear();
    this.levels = [];
    for (const list of this.waiters.values()) for (const w of list) w.reject(err);
    this.waiters.clear();
    this.waitLevels = [];
    this.bytes = 0;
  }

  private fits(bytes: number): boolean {
    return this.bytes === 0 || this.bytes + bytes <= this.maxBytes;
  }

  private grant(bytes: number): void {
    this.bytes += bytes;
    if (this.bytes > this.highWater) this.highWater = this.bytes;
  }

  private release(bytes: number): void {
    this.bytes -= bytes;
    assert(this.bytes >= 0, "send queue byte count never negative");
    this.admitWaiters();
  }

  private waitingAtOrAbove(priority: number): boolean {
    const first = this.waitLevels[0];
    return first !== undefined && first <= priority;
  }

  private admitWaiters(): void {
    while (this.waitLevels.length > 0) {
      const level = this.waitLevels[0]!;
      const list = this.waiters.get(level)!;
      const w = list[0]!;
      if (!this.fits(w.bytes)) return;
      list.shift();
      this.setWaiters(level, list);
      this.grant(w.bytes);
      w.resolve();
    }
  }

  private setWaiters(level: number, list: Waiter[]): void {
    if (list.length > 0) {
      this.waiters.set(level, list);
      return;
    }
    this.waiters.delete(level);
    this.waitLevels = this.waitLevels.filter((l) => l !== level);
  }
}

function insertSorted(levels: number[], level: number): number[] {
  if (levels.includes(level)) return levels;
  return [...levels, level].sort((a, b) => a - b);
}
