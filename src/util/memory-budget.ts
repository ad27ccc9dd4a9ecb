// A node's budget of buffer memory (Garage's `block_ram_buffer_max`): every block buffer a node
// holds (PUT windows, copies still being written after the write quorum, GET read-ahead, blocks
// received from peers, resync transfers) is leased from one MemoryBudget before it is
// allocated, and given back when its owner is done. When the budget is full a new lease waits
// (backpressure), first come first served, so work slows down instead of growing the process.
//
// A share (share()) is a part of a budget that some work may use at most; its leases are leases
// of the budget too. The node keeps work that waits on other nodes (its own PUTs and GETs) in a
// share, so that what other nodes' work needs here (their blocks, received and stored) always
// finds room: two nodes whose budgets are full of PUTs waiting on each other's receives would
// otherwise wait forever. See docs/memory.md.
import { assert } from "./assert";

/**
 * Default of block_ram_buffer_max. Garage's is 256 MiB; Bunker runs on 1 GB boards beside other
 * services, where a quarter of the RAM is too much: 64 MiB still lets 8 streams keep 6 blocks
 * of 1 MiB in flight each (docs/memory.md).
 */
export const DEFAULT_BLOCK_RAM_BUFFER_MAX = 64 * 1024 * 1024;
/**
 * Smallest block_ram_buffer_max, in blocks: room left to other nodes' blocks and to copy sources
 * (block/manager.ts, two blocks each), and the window of an SSE-C PUT (two slots of two blocks).
 */
export const MIN_BUDGET_BLOCKS = 8;

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
  /** Owners of free memory counted here (buffer pools), asked to drop it when a lease does not fit. */
  private readonly reclaimers = new Set<() => void>();

  constructor(
    /** Named in errors and metrics ("block buffers"). */
    readonly name: string,
    readonly maxBytes: number,
    /** The budget this one is a share of. */
    private readonly parent?: MemoryBudget,
  ) {
    assert(Number.isSafeInteger(maxBytes) && maxBytes > 0, "a memory budget has a positive size");
    assert(parent === undefined || maxBytes <= parent.maxBytes, "a share is not larger than its budget");
  }

  /** A part of this budget, of at most `maxBytes`, whose leases are leases of this budget too. */
  share(name: string, maxBytes: number): MemoryBudget {
    return new MemoryBudget(name, maxBytes, this);
  }

  /** The budget at the top (this one, unless it is a share). */
  get root(): MemoryBudget {
    return this.parent ? this.parent.root : this;
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
   * `reclaim` runs when a lease of this budget (or of a share of it) does not fit: it gives back
   * leases of memory that is free but kept for reuse. Returns the unregistration.
   */
  onPressure(reclaim: () => void): () => void {
    const root = this.root;
    root.reclaimers.add(reclaim);
    return () => void root.reclaimers.delete(reclaim);
  }

  /**
   * Leases `bytes`, waiting while the budget is full. A lease larger than the whole budget is a
   * bug of the caller (sizes are bounded by the block size, which config checks against the
   * budget). `signal` gives up the wait (the client went away): the promise then rejects with
   * BudgetAbortedError and nothing is leased.
   */
  async acquire(bytes: number, signal?: AbortSignal): Promise<Release> {
    const own = await this.acquireOwn(bytes, signal);
    if (!this.parent) return own;
    try {
      return both(await this.parent.acquire(bytes, signal), own);
    } catch (err) {
      own();
      throw err;
    }
  }

  /**
   * Like acquire, for a size set by data rather than by config (a block stored under an earlier,
   * larger block_size): more than the whole budget leases the whole budget.
   */
  acquireUpTo(bytes: number, signal?: AbortSignal): Promise<Release> {
    return this.acquire(Math.min(bytes, this.maxBytes), signal);
  }

  /** Leases `bytes` if they fit now and nobody waits before this caller; undefined otherwise. */
  tryAcquire(bytes: number): Release | undefined {
    const own = this.tryOwn(bytes);
    if (!own || !this.parent) return own;
    const up = this.parent.tryAcquire(bytes);
    if (up) return both(up, own);
    own();
    return undefined;
  }

  private acquireOwn(bytes: number, signal?: AbortSignal): Promise<Release> {
    const now = this.tryOwn(bytes) ?? (this.root.reclaim(), this.tryOwn(bytes));
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

  private tryOwn(bytes: number): Release | undefined {
    assert(Number.isSafeInteger(bytes) && bytes >= 0, "a lease is a whole number of bytes");
    assert(bytes <= this.maxBytes, `a lease of ${bytes} bytes fits in ${this.name} (${this.maxBytes} bytes)`);
    if (this.waiters.length > 0 || this.usedBytes + bytes > this.maxBytes) return undefined;
    return this.lease(bytes);
  }

  private reclaim(): void {
    for (const r of [...this.reclaimers]) r();
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

/** One release for a share's lease and its budget's. */
function both(up: Release, own: Release): Release {
  let released = false;
  return () => {
    assert(!released, "a lease is released once");
    released = true;
    up();
    own();
  };
}

/**
 * One stream's part of a budget (a PUT's blocks in flight, a GET's read-ahead), in slots of
 * `slotBytes`: `base` slots leased at once, waiting when the budget is full, then up to `max`
 * slots when they are free at the moment they are asked for, never waited for. A stream thus
 * waits for memory only before it holds any (opening its window), never while it holds some: two
 * streams can never each hold what the other waits for.
 */
export class BudgetWindow {
  private inUse = 0;
  private readonly extras: Release[] = [];
  private closing = false;
  private slotWaiters: (() => void)[] = [];

  private constructor(
    private readonly budget: MemoryBudget,
    readonly slotBytes: number,
    private readonly base: number,
    private readonly max: number,
    private readonly baseLease: Release,
  ) {}

  /** Waits for `base` slots of `slotBytes` (in one lease); `max` slots at most later. */
  static async open(budget: MemoryBudget, slotBytes: number, base: number, max: number, signal?: AbortSignal): Promise<BudgetWindow> {
    assert(Number.isSafeInteger(base) && base >= 1 && max >= base, "a window has at least one slot");
    return new BudgetWindow(budget, slotBytes, base, max, await budget.acquire(base * slotBytes, signal));
  }

  /** Slots taken now. */
  get taken(): number {
    return this.inUse;
  }

  /** Slots held now (the base and the extras). */
  get held(): number {
    return this.base + this.extras.length;
  }

  /** Takes a slot: one held and free, or a new one if the budget has it now; false when neither. */
  tryTake(): boolean {
    assert(!this.closing, "a closed window gives no slot");
    if (this.inUse < this.held) {
      this.inUse++;
      return true;
    }
    if (this.held >= this.max) return false;
    const extra = this.budget.tryAcquire(this.slotBytes);
    if (!extra) return false;
    this.extras.push(extra);
    this.inUse++;
    return true;
  }

  /**
   * Takes a slot, waiting when none is free until one of this window's is given back: for an
   * owner whose slots are all in use by consumers that give them back on their own (a client
   * reading a GET's blocks), never by this owner's progress.
   */
  async take(signal?: AbortSignal): Promise<void> {
    while (!this.tryTake()) {
      if (signal?.aborted) throw new BudgetAbortedError(this.budget.name);
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal?.removeEventListener("abort", wake);
          resolve();
        };
        this.slotWaiters.push(wake);
        signal?.addEventListener("abort", wake, { once: true });
      });
    }
  }

  /** Gives a slot back; an extra slot goes back to the budget at once. */
  give(): void {
    assert(this.inUse > 0, "a window's slots are given back once");
    this.inUse--;
    if (this.extras.length > 0) this.extras.pop()!();
    if (this.closing && this.inUse === 0) this.release();
    for (const w of this.slotWaiters.splice(0)) w();
  }

  /** The stream is done: the window goes back to the budget once its last slot is given back. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.inUse === 0) this.release();
  }

  private release(): void {
    for (const r of this.extras.splice(0)) r();
    this.baseLease();
  }
}
