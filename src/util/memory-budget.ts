// A node's budget of buffer memory (Garage's `block_ram_buffer_max`): every block buffer a node
// holds (PUT windows, copies still being written after the write quorum, GET read-ahead, blocks
// received from peers, resync transfers) is leased from one MemoryBudget before it is
// allocated, and given back when its owner is done. When the budget is full a new lease waits
// (backpressure), first come first served, so work slows down instead of growing the process.
import { assert } from "./assert";

/** What a lease gives back; calling it twice is a bug (asserted). */
export type Release = () => void;

export class BudgetAbortedError extends Error {
  constructor(readonly budget: string) {
    super(`gave up waiting for ${budget} memory`);
  }
}

interface Waiter {
  bytes: number;
  grant: (release: Release) => void;
  fail: (err: Error) => void;
}

export class MemoryBudget {
  private usedBytes = 0;
  private peakBytes = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    /** Named in errors and metrics ("block buffers"). */
    readonly name: string,
    readonly maxBytes: number,
  ) {
    assert(Number.isSafeInteger(maxBytes) && maxBytes > 0, "a memory budget has a positive size");
  }

  /** Bytes leased now. */
  get used(): number {
    return this.usedBytes;
  }

  /** Most bytes ever leased at once. */
  get peak(): number {
    return this.peakBytes;
  }

  /** Leases waiting for memory. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Leases `bytes`, waiting while the budget is full. A lease larger than the whole budget is a
   * bug of the caller (sizes are bounded by the block size, which config checks against the
   * budget). `signal` gives up the wait (the client went away): the promise then rejects with
   * BudgetAbortedError and nothing is leased.
   */
  acquire(bytes: number, signal?: AbortSignal): Promise<Release> {
    const now = this.tryAcquire(bytes);
    if (now) return Promise.resolve(now);
    if (signal?.aborted) return Promise.reject(new BudgetAbortedError(this.name));
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        bytes,
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
        fail: reject,
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i < 0) return; // already granted
        this.waiters.splice(i, 1);
        reject(new BudgetAbortedError(this.name));
        // The head may have been the one holding others back.
        this.grantWaiting();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Leases `bytes` if they fit now and nobody waits before this caller; undefined otherwise. */
  tryAcquire(bytes: number): Release | undefined {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, "a lease is a whole number of bytes");
    assert(bytes <= this.maxBytes, `a lease of ${bytes} bytes fits in ${this.name} (${this.maxBytes} bytes)`);
    if (this.waiters.length > 0 || this.usedBytes + bytes > this.maxBytes) return undefined;
    return this.lease(bytes);
  }

  private lease(bytes: number): Release {
    this.usedBytes += bytes;
    if (this.usedBytes > this.peakBytes) this.peakBytes = this.usedBytes;
    let released = false;
    return () => {
      assert(!released, `a lease of ${this.name} is released once`);
      released = true;
      this.usedBytes -= bytes;
      assert(this.usedBytes >= 0, `${this.name} never goes below zero`);
      this.grantWaiting();
    };
  }

  /** Grants waiting leases in order while the first one fits (a big lease is not starved). */
  private grantWaiting(): void {
    while (this.waiters.length > 0 && this.usedBytes + this.waiters[0]!.bytes <= this.maxBytes) {
      const w = this.waiters.shift()!;
      w.grant(this.lease(w.bytes));
    }
  }
}
