// Send queue: priority order, round-robin within a priority, the byte bound and its waiters.
import { describe, expect, test } from "bun:test";
import { FRAME_HEADER_BYTES, PRIO_BACKGROUND, PRIO_HIGH, PRIO_NORMAL, type Frame } from "../../../src/rpc/frame.ts";
import { Lane, SendQueue } from "../../../src/rpc/send-queue.ts";

const frame = (requestId: number, priority: number, size = 100): Frame => ({
  requestId,
  flags: 0,
  priority,
  payload: new Uint8Array(size),
});

async function put(q: SendQueue, lane: Lane, f: Frame): Promise<void> {
  await q.reserve(lane, FRAME_HEADER_BYTES + f.payload.length);
  q.push(lane, f);
}

describe("send queue", () => {
  test("more urgent frames leave first; control frames before all", async () => {
    const q = new SendQueue(1 << 20);
    const bg = new Lane(PRIO_BACKGROUND);
    const hi = new Lane(PRIO_HIGH);
    for (let i = 0; i < 3; i++) await put(q, bg, frame(1, PRIO_BACKGROUND));
    await put(q, hi, frame(2, PRIO_HIGH));
    q.pushControl({ requestId: 3, flags: 0x08, priority: 0, payload: new Uint8Array(0) });
    expect([1, 2, 3, 4, 5].map(() => q.pop()!.requestId)).toEqual([3, 2, 1, 1, 1]);
    expect(q.isEmpty).toBe(true);
    expect(q.queuedBytes).toBe(0);
  });

  test("lanes of one priority take turns frame by frame", async () => {
    const q = new SendQueue(1 << 20);
    const lanes = [new Lane(PRIO_NORMAL), new Lane(PRIO_NORMAL), new Lane(PRIO_NORMAL)];
    // Lanes 0 and 1 queue three frames each, lane 2 one.
    for (let i = 0; i < 3; i++) {
      for (const [n, lane] of lanes.entries()) if (n !== 2 || i === 0) await put(q, lane, frame(n, PRIO_NORMAL));
    }
    const order: number[] = [];
    for (let f = q.pop(); f; f = q.pop()) order.push(f.requestId);
    expect(order).toEqual([0, 1, 2, 0, 1, 0, 1]);
  });

  test("writers wait at the bound and the most urgent waiter is admitted first", async () => {
    const size = 1000;
    const q = new SendQueue(3 * (size + FRAME_HEADER_BYTES));
    const bg = new Lane(PRIO_BACKGROUND);
    const hi = new Lane(PRIO_HIGH);
    for (let i = 0; i < 3; i++) await put(q, bg, frame(1, PRIO_BACKGROUND, size));
    const admitted: string[] = [];
    const bgWait = put(q, bg, frame(1, PRIO_BACKGROUND, size)).then(() => admitted.push("bg"));
    const hiWait = put(q, hi, frame(2, PRIO_HIGH, size)).then(() => admitted.push("hi"));
    await Bun.sleep(5);
    expect(admitted).toEqual([]);
    q.pop(); // room for one frame
    await Bun.sleep(5);
    expect(admitted).toEqual(["hi"]);
    expect(q.peek()!.requestId).toBe(2); // and it leaves next, ahead of queued bulk
    q.pop();
    await Promise.all([bgWait, hiWait]);
    expect(admitted).toEqual(["hi", "bg"]);
    expect(q.highWater).toBeLessThanOrEqual(q.maxBytes);
  });

  test("dropping a lane frees its room and rejects its waiters; failing rejects everyone", async () => {
    const q = new SendQueue(2 * 110);
    const a = new Lane(PRIO_NORMAL);
    const b = new Lane(PRIO_NORMAL);
    await put(q, a, frame(1, PRIO_NORMAL));
    await put(q, a, frame(1, PRIO_NORMAL));
    const aWait = put(q, a, frame(1, PRIO_NORMAL));
    const bWait = put(q, b, frame(2, PRIO_NORMAL));
    expect(q.dropLane(a, new Error("dropped"))).toBe(0);
    await expect(aWait).rejects.toThrow("dropped");
    await bWait;
    expect(q.pop()!.requestId).toBe(2);
    const c = new Lane(PRIO_NORMAL);
    await put(q, c, frame(3, PRIO_NORMAL));
    await put(q, c, frame(3, PRIO_NORMAL));
    const cWait = put(q, c, frame(3, PRIO_NORMAL));
    q.fail(new Error("gone"));
    await expect(cWait).rejects.toThrow("gone");
    expect(q.isEmpty).toBe(true);
  });
});
