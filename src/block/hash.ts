// Hashing off the request thread: BLAKE3 names each block, and a large body's MD5 (its S3 ETag)
// runs in a worker too, block after block, so that the request thread only receives and stores.
// Measured here (1 GiB PUT, 2 cores, ~180 MiB/s): with MD5 on the request thread that thread was
// saturated (MD5 43% of its samples); with MD5 and BLAKE3 in one worker, that worker was (90%).
// So there are two workers: a block's BLAKE3 goes to the less busy one while its body's MD5 runs
// in the one holding that stream, both reading the same SharedArrayBuffer (no copy). Plain
// ArrayBuffers travel to the worker and back by transfer (zero copy). The worker is a build
// entrypoint of the compiled binary (util/worker-path.ts).
// A SharedArrayBuffer sent in a message costs its whole size in the receiving heap's GC
// accounting (JSC counts each received one as a new allocation): with one per block and job,
// each worker collected every ~10 MiB hashed (measured: ~100 collections and 60-95 ms of GC
// per worker for 350 MiB put). So a shared buffer seen again (a pooled block buffer) is kept
// by the worker under a number and later jobs name it; replies never send it back. The worker
// forgets it once this thread has collected it (FinalizationRegistry), so it holds no memory
// the pool has let go of.
// Nothing here costs start-up time or idle memory: the workers (each a whole JS isolate) start
// with the first job and stop after HASH_WORKER_IDLE_MS without one, and blake3-wasm, which
// compiles its wasm as it loads, is loaded on the first blake3Sync().
import type { BlockHash } from "../util/ids";
import { assert } from "../util/assert.ts";
import { workerSpecifier } from "../util/worker-path.ts";
import { SHARED_BUFFERS_PER_WORKER, type HashRequest, type HashReply, type JobMemory } from "./hash-protocol.ts";

export { MD5_STREAMS_PER_WORKER, SHARED_BUFFERS_PER_WORKER, type HashRequest, type HashReply, type JobMemory } from "./hash-protocol.ts";

/** A block hash as bytes (BLAKE3, 32 bytes); hashHex gives its name, a util/ids BlockHash. */
export type RawBlockHash = Uint8Array;

export const BLAKE3_LEN = 32;
/** Workers per pool: BLAKE3 (~2.2 ms per MiB here) and MD5 (~1.4 ms) of one body run side by side. */
export const HASH_POOL_SIZE = 2;
/** Jobs queued per worker; `hash()` waits for a slot beyond this, bounding memory in flight. */
export const HASH_JOBS_PER_WORKER = 4;
/**
 * A view that does not span its whole ArrayBuffer is copied when smaller than this instead of
 * transferring (and so detaching) the larger buffer it lives in, e.g. a pooled Buffer slab.
 */
export const HASH_COPY_BELOW = 64 * 1024;
/**
 * A worker with no job and no open MD5 stream for this long is stopped (the next job starts a
 * new one, ~20 ms of CPU): the two workers held 23 MiB of RSS after one large PUT here, of which
 * stopping them gave back 7 MiB at once.
 */
export const HASH_WORKER_IDLE_MS = 10_000;


/** A zeroed buffer that hash workers can read while this thread keeps it (no transfer, no copy). */
export function sharedBytes(size: number): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(size));
}

let blake3: ((data: Uint8Array) => Buffer | string) | undefined;

/** BLAKE3 on the calling thread: for small data, tests and tools. */
export function blake3Sync(data: Uint8Array): RawBlockHash {
  blake3 ??= (require("blake3-wasm/dist/index.js") as typeof import("blake3-wasm/dist/index.js")).hash;
  return new Uint8Array(blake3(data) as Buffer); // Buffer: no encoding was asked for
}

/** A block's name: the hex of its hash (what the store, the tables and the RPC messages use). */
export function hashHex(h: Uint8Array): BlockHash {
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString("hex") as BlockHash;
}

/** A hashing failure inside the worker; the caller's buffer comes back with it. */
export class HashError extends Error {
  constructor(message: string, readonly buf?: Uint8Array) {
    super(message);
  }
}

interface Job {
  resolve(r: { hash?: RawBlockHash; digest?: Uint8Array; buf?: Uint8Array }): void;
  reject(err: Error): void;
  /** Builds the view handed back to the caller from the returned ArrayBuffer (none for shared memory). */
  restore(ab: ArrayBuffer | undefined): Uint8Array | undefined;
}

/** Numbers of shared buffers (see the header): one per SharedArrayBuffer, for its lifetime. */
const sharedNumbers = new WeakMap<SharedArrayBuffer, number>();
let nextSharedNumber = 1;
/** The pools whose workers keep a shared buffer, told to forget it once it is collected here. */
const keptBy = new Map<number, Set<HashPool>>();
const sharedCollected = new FinalizationRegistry<number>((n) => {
  const pools = keptBy.get(n);
  keptBy.delete(n);
  for (const pool of pools ?? []) pool.forgetShared(n);
});

function sharedNumberOf(sab: SharedArrayBuffer): number {
  let n = sharedNumbers.get(sab);
  if (n === undefined) {
    n = nextSharedNumber++;
    sharedNumbers.set(sab, n);
    sharedCollected.register(sab, n);
  }
  return n;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
  /**
   * The shared buffers this worker keeps, by number, oldest first: the worker applies the same
   * insertions and evictions in the same order (messages arrive in order), so this is its list.
   */
  kept: Set<number>;
  /** Shared buffers sent once without being kept: kept when sent again. */
  sentOnce: WeakSet<SharedArrayBuffer>;
  /** MD5 streams opened on this worker and not yet finished: their state lives in it. */
  streams: number;
  /** Stops the worker once idle (see HASH_WORKER_IDLE_MS). */
  idleTimer?: ReturnType<typeof setTimeout>;
}

/**
 * The MD5 of one body, computed in one worker: `update()` its blocks in body order, then
 * `digest()`. Blocks must live in a SharedArrayBuffer (sharedBytes) and stay unchanged until
 * their update() resolves.
 */
export class Md5Stream {
  private finished = false;
  constructor(
    private readonly pool: HashPool,
    readonly id: number,
    /** The worker that holds this stream's state; a respawned worker does not have it. */
    readonly slot: Slot,
  ) {}

  /** Appends buf to the stream; resolves once the worker has read it. */
  update(buf: Uint8Array): Promise<void> {
    assert(!this.finished, "update after digest or drop");
    return this.pool.md5Update(this, buf);
  }

  /** The MD5 of every block given to update(), which must all have resolved. */
  digest(): Promise<Uint8Array> {
    assert(!this.finished, "an MD5 stream is finished once");
    this.finished = true;
    this.slot.streams--;
    return this.pool.md5Digest(this);
  }

  /** Forgets the stream (the body failed); safe to call at any time. */
  drop(): void {
    if (this.finished) return;
    this.finished = true;
    this.slot.streams--;
    this.pool.md5Drop(this);
  }
}

/**
 * A few Workers hashing blocks. `hash(buf)` transfers buf's whole ArrayBuffer to a worker: every
 * view on that ArrayBuffer is detached until the promise settles, and the caller must use the
 * returned `buf` (same bytes, same offset and length) from then on; a buffer in a
 * SharedArrayBuffer is read in place. If a worker dies, its jobs reject, their buffers are lost
 * and its MD5 streams fail.
 */
export class HashPool {
  private readonly slots: (Slot | undefined)[];
  private readonly waiters: (() => void)[] = [];
  private nextId = 1;
  private inFlight = 0;
  private closed = false;

  constructor(
    private readonly size: number = HASH_POOL_SIZE,
    /** A shorter HASH_WORKER_IDLE_MS, for tests. */
    private readonly workerIdleMs: number = HASH_WORKER_IDLE_MS,
  ) {
    assert(Number.isInteger(size) && size >= 1, "hash pool size must be a positive integer");
    this.slots = new Array(size).fill(undefined);
  }

  /** Workers running now (they start with a job and stop when idle). */
  get workersRunning(): number {
    return this.slots.filter((s) => s !== undefined).length;
  }

  /** Shared buffers the workers keep by number now (see the header). */
  get sharedBuffersKept(): number {
    return this.slots.reduce((n, s) => n + (s?.kept.size ?? 0), 0);
  }

  /** BLAKE3 of buf. */
  async hash(buf: Uint8Array): Promise<{ hash: RawBlockHash; buf: Uint8Array }> {
    // A free slot goes to the longest waiter, never to a newcomer.
    if (this.inFlight >= this.size * HASH_JOBS_PER_WORKER || this.waiters.length > 0) {
      await new Promise<void>((wake) => this.waiters.push(wake));
    } else this.inFlight++;
    try {
      if (this.closed) throw new Error("HashPool is closed");
      const r = await this.dispatch(buf);
      return { hash: r.hash!, buf: r.buf! };
    } finally {
      const next = this.waiters.shift();
      if (next) next(); // the slot passes on: inFlight is unchanged
      else this.inFlight--;
    }
  }

  /** Opens an MD5 stream on the least busy worker. */
  openMd5(): Md5Stream {
    if (this.closed) throw new Error("HashPool is closed");
    const index = this.leastBusy();
    const slot = (this.slots[index] ??= this.spawn(index));
    slot.streams++;
    clearTimeout(slot.idleTimer);
    return new Md5Stream(this, this.nextId++, slot);
  }

  /** @internal Md5Stream.update() */
  md5Update(stream: Md5Stream, buf: Uint8Array): Promise<void> {
    assert(buf.buffer instanceof SharedArrayBuffer, "MD5 blocks must live in a SharedArrayBuffer (sharedBytes)");
    const slot = this.liveSlotOf(stream);
    const id = this.nextId++;
    const msg: HashRequest = { kind: "md5-update", id, md5: stream.id, ...this.sharedMemory(slot, buf as Uint8Array<SharedArrayBuffer>) };
    return new Promise((resolve, reject) => {
      this.send(slot, id, { resolve: () => resolve(), reject, restore: () => buf }, msg, []);
    });
  }

  /** @internal Md5Stream.digest() */
  md5Digest(stream: Md5Stream): Promise<Uint8Array> {
    const slot = this.liveSlotOf(stream);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.send(slot, id, { resolve: (r) => resolve(r.digest!), reject, restore: () => new Uint8Array(0) }, { kind: "md5-digest", id, md5: stream.id }, []);
    });
  }

  /** @internal Md5Stream.drop() */
  md5Drop(stream: Md5Stream): void {
    if (!this.slots.includes(stream.slot)) return;
    stream.slot.worker.postMessage({ kind: "md5-drop", md5: stream.id } satisfies HashRequest);
    this.retireWhenIdle(stream.slot);
  }

  /**
   * @internal A shared buffer was collected on this thread: the workers that keep it forget it
   * (it is not reused: numbers are never given twice).
   */
  forgetShared(n: number): void {
    for (const slot of this.slots) {
      if (!slot?.kept.delete(n)) continue;
      slot.worker.postMessage({ kind: "forget", shared: n } satisfies HashRequest);
    }
  }

  /**
   * How a job names the shared memory `buf` lives in (see the header): by number when the
   * worker keeps it; whole, and kept from now on, the second time it is sent to that worker;
   * whole only the first time (a buffer used once, e.g. a small body's, is never kept).
   */
  private sharedMemory(slot: Slot, buf: Uint8Array<SharedArrayBuffer>): JobMemory {
    const sab = buf.buffer;
    const where = { offset: buf.byteOffset, length: buf.byteLength };
    const n = sharedNumberOf(sab);
    if (slot.kept.has(n)) return { shared: n, ...where };
    if (!slot.sentOnce.has(sab)) {
      slot.sentOnce.add(sab);
      return { buf: sab, ...where };
    }
    slot.kept.add(n);
    if (slot.kept.size > SHARED_BUFFERS_PER_WORKER) slot.kept.delete(slot.kept.values().next().value!);
    let pools = keptBy.get(n);
    if (!pools) keptBy.set(n, (pools = new Set()));
    pools.add(this);
    return { buf: sab, shared: n, keep: true, ...where };
  }

  /** Stops the workers; pending and later calls reject. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (let i = 0; i < this.slots.length; i++) this.fail(i, new Error("HashPool is closed"));
    for (const wake of this.waiters.splice(0)) wake();
  }

  private liveSlotOf(stream: Md5Stream): Slot {
    if (this.closed) throw new Error("HashPool is closed");
    if (!this.slots.includes(stream.slot)) throw new HashError("the hash worker holding this MD5 stream died");
    return stream.slot;
  }

  private send(slot: Slot, id: number, job: Job, msg: HashRequest, transfer: ArrayBuffer[]): void {
    if (slot.jobs.size === 0) slot.worker.ref();
    clearTimeout(slot.idleTimer);
    slot.jobs.set(id, job);
    try {
      slot.worker.postMessage(msg, transfer);
    } catch (err) {
      slot.jobs.delete(id);
      if (slot.jobs.size === 0) slot.worker.unref();
      this.retireWhenIdle(slot);
      throw err;
    }
  }

  /** Stops `slot`'s worker after workerIdleMs if it has no job and holds no MD5 stream by then. */
  private retireWhenIdle(slot: Slot): void {
    if (slot.jobs.size > 0 || slot.streams > 0) return;
    clearTimeout(slot.idleTimer);
    slot.idleTimer = setTimeout(() => {
      const index = this.slots.indexOf(slot);
      if (index < 0 || slot.jobs.size > 0 || slot.streams > 0) return;
      // Unlisted first: its "close" event is then not a failure.
      this.slots[index] = undefined;
      slot.worker.terminate();
    }, this.workerIdleMs);
    slot.idleTimer.unref?.();
  }

  private dispatch(buf: Uint8Array): Promise<{ hash?: RawBlockHash; buf?: Uint8Array }> {
    const index = this.leastBusy();
    const slot = (this.slots[index] ??= this.spawn(index));
    const id = this.nextId++;
    const { byteOffset: offset, byteLength: length } = buf;
    const spansBuffer = offset === 0 && length === buf.buffer.byteLength;
    const request = (ab: ArrayBuffer, off: number): HashRequest => ({ kind: "hash", id, buf: ab, offset: off, length });
    return new Promise((resolve, reject) => {
      const sendCopy = () => {
        const copy = buf.slice();
        this.send(slot, id, { resolve, reject, restore: () => buf }, request(copy.buffer, 0), [copy.buffer]);
      };
      if (buf.buffer instanceof SharedArrayBuffer) {
        const msg: HashRequest = { kind: "hash", id, ...this.sharedMemory(slot, buf as Uint8Array<SharedArrayBuffer>) };
        this.send(slot, id, { resolve, reject, restore: () => buf }, msg, []);
      } else if (!spansBuffer && length < HASH_COPY_BELOW) {
        sendCopy();
      } else {
        try {
          const ab = buf.buffer as ArrayBuffer;
          this.send(slot, id, { resolve, reject, restore: (back) => back && new Uint8Array(back, offset, length) }, request(ab, offset), [ab]);
        } catch {
          // Not transferable (e.g. wasm memory): it was not detached, so copy instead.
          sendCopy();
        }
      }
    });
  }

  private leastBusy(): number {
    let best = 0;
    for (let i = 1; i < this.slots.length; i++) {
      if ((this.slots[i]?.jobs.size ?? 0) < (this.slots[best]?.jobs.size ?? 0)) best = i;
    }
    return best;
  }

  private spawn(index: number): Slot {
    const worker = new Worker(workerSpecifier("block", "hash-worker", new URL("./hash-worker.ts", import.meta.url)));
    const slot: Slot = { worker, jobs: new Map(), streams: 0, kept: new Set(), sentOnce: new WeakSet() };
    // An idle pool must not keep the process alive; a busy one must (see send()).
    worker.unref();
    worker.onmessage = (ev: MessageEvent<HashReply>) => {
      const reply = ev.data;
      const job = slot.jobs.get(reply.id);
      assert(job !== undefined, `hash worker replied to unknown job ${reply.id}`);
      slot.jobs.delete(reply.id);
      if (slot.jobs.size === 0) {
        worker.unref();
        this.retireWhenIdle(slot);
      }
      if ("error" in reply) job.reject(new HashError(`hash worker: ${reply.error}`, job.restore(reply.buf)));
      else if ("digest" in reply) job.resolve({ digest: reply.digest });
      else if ("done" in reply) job.resolve({});
      else {
        assert(reply.hash.length === BLAKE3_LEN, "BLAKE3 digest must be 32 bytes");
        const back = job.restore(reply.buf);
        assert(back !== undefined, "a transferred buffer comes back with its hash");
        job.resolve({ hash: reply.hash, buf: back });
      }
    };
    const onFailure = (what: string) => () => {
      if (this.slots[index] === slot) this.fail(index, new Error(`hash worker ${what}; its jobs are lost`));
    };
    worker.onerror = onFailure("crashed");
    worker.onmessageerror = onFailure("sent an unreadable message");
    worker.addEventListener("close", onFailure("exited"));
    return slot;
  }

  /** Rejects a worker's jobs and drops it; the next job spawns a fresh one. */
  private fail(index: number, err: Error): void {
    const slot = this.slots[index];
    if (!slot) return;
    this.slots[index] = undefined;
    clearTimeout(slot.idleTimer);
    for (const job of slot.jobs.values()) job.reject(err);
    slot.jobs.clear();
    slot.worker.terminate();
  }
}
