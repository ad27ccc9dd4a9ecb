// BLAKE3 block hashing. blake3-wasm runs at ~570 MiB/s on one core and MD5 at ~830 MiB/s; on the
// same thread they give ~330 MiB/s, so PUT hashes blocks in Workers while its own thread does MD5.
// Buffers travel to the worker and back by transfer (zero copy).
//
// Compiled binary (`bun build --compile`): Bun does not discover Worker targets itself, so the
// build MUST list the worker as an extra entrypoint, and the blake3-wasm embed plugin
// (research/stack-limits.md §6) must be active for that build (the worker imports blake3-wasm):
//   bun build --compile ./src/main.ts ./src/block/hash-worker.ts --outfile bunker
//   Bun.build({ entrypoints: ["./src/main.ts", "./src/block/hash-worker.ts"], compile: {…}, plugins: [embedBlake3Wasm] })
// Verified on Bun 1.4.5: inside the binary every bundled module's import.meta.url is the binary's
// root file, so `new URL("./hash-worker.ts", import.meta.url)` points at a file that does not exist;
// the worker is embedded as <root>/block/hash-worker.js (path relative to the entrypoints' common
// directory). workerSpecifier() therefore looks it up explicitly when running compiled.
import { existsSync } from "node:fs";
import { hash as blake3 } from "blake3-wasm/dist/index.js";
import { assert } from "../util/assert.ts";

export type BlockHash = Uint8Array; // 32 bytes

export const BLAKE3_LEN = 32;
/** Workers per pool: one keeps MD5 (main thread) and BLAKE3 each on a core of this 2-core machine. */
export const HASH_POOL_SIZE = 1;
/** Jobs queued per worker; `hash()` waits for a slot beyond this, bounding memory in flight. */
export const HASH_JOBS_PER_WORKER = 4;
/**
 * A view that does not span its whole ArrayBuffer is copied when smaller than this instead of
 * transferring (and so detaching) the larger buffer it lives in, e.g. a pooled Buffer slab.
 */
export const HASH_COPY_BELOW = 64 * 1024;

/**
 * Where a compiled binary may embed the worker, relative to its root (the entrypoints' common
 * directory): src/ when built from src/main.ts, the repository root when built from elsewhere.
 */
const COMPILED_WORKER_PATHS = ["block/hash-worker.js", "src/block/hash-worker.js", "hash-worker.js"];

function workerSpecifier(): string | URL {
  if (!Bun.isStandaloneExecutable) return new URL("./hash-worker.ts", import.meta.url);
  for (const rel of COMPILED_WORKER_PATHS) {
    const path = `${import.meta.dir}/${rel}`;
    if (existsSync(path)) return path;
  }
  throw new Error("BLAKE3 worker is not embedded in this binary: build with src/block/hash-worker.ts as an entrypoint");
}

/** Message to the worker: hash `length` bytes of `buf` starting at `offset`. */
export interface HashRequest {
  id: number;
  buf: ArrayBuffer | SharedArrayBuffer;
  offset: number;
  length: number;
}
/** Message from the worker: the buffer always comes back, with the hash or an error. */
export type HashReply =
  | { id: number; hash: Uint8Array; buf: ArrayBuffer | SharedArrayBuffer }
  | { id: number; error: string; buf: ArrayBuffer | SharedArrayBuffer };

/** BLAKE3 on the calling thread: for small data, tests and tools. */
export function blake3Sync(data: Uint8Array): BlockHash {
  return new Uint8Array(blake3(data) as Buffer); // Buffer: no encoding was asked for
}

export function hashHex(h: Uint8Array): string {
  return Buffer.from(h.buffer, h.byteOffset, h.byteLength).toString("hex");
}

/** A hashing failure inside the worker; the caller's buffer comes back with it. */
export class HashError extends Error {
  constructor(message: string, readonly buf?: Uint8Array) {
    super(message);
  }
}

interface Job {
  resolve(r: { hash: BlockHash; buf: Uint8Array }): void;
  reject(err: Error): void;
  /** Builds the view handed back to the caller from the returned ArrayBuffer. */
  restore(ab: ArrayBuffer | SharedArrayBuffer): Uint8Array;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
}

/**
 * A few Workers hashing blocks. `hash(buf)` transfers buf's whole ArrayBuffer to a worker: every
 * view on that ArrayBuffer is detached until the promise settles, and the caller must use the
 * returned `buf` (same bytes, same offset and length) from then on. If a worker dies, its jobs
 * reject and their buffers are lost.
 */
export class Blake3Pool {
  private readonly slots: (Slot | undefined)[];
  private readonly waiters: (() => void)[] = [];
  private nextId = 1;
  private inFlight = 0;
  private closed = false;

  constructor(private readonly size: number = HASH_POOL_SIZE) {
    assert(Number.isInteger(size) && size >= 1, "hash pool size must be a positive integer");
    this.slots = new Array(size).fill(undefined);
  }

  async hash(buf: Uint8Array): Promise<{ hash: BlockHash; buf: Uint8Array }> {
    while (!this.closed && this.inFlight >= this.size * HASH_JOBS_PER_WORKER) {
      await new Promise<void>((wake) => this.waiters.push(wake));
    }
    if (this.closed) throw new Error("Blake3Pool is closed");
    this.inFlight++;
    try {
      return await this.dispatch(buf);
    } finally {
      this.inFlight--;
      this.waiters.shift()?.();
    }
  }

  /** Stops the workers; pending and later calls reject. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (let i = 0; i < this.slots.length; i++) this.fail(i, new Error("Blake3Pool is closed"));
    for (const wake of this.waiters.splice(0)) wake();
  }

  private dispatch(buf: Uint8Array): Promise<{ hash: BlockHash; buf: Uint8Array }> {
    const index = this.leastBusy();
    const slot = (this.slots[index] ??= this.spawn(index));
    const id = this.nextId++;
    const { byteOffset: offset, byteLength: length } = buf;
    const spansBuffer = offset === 0 && length === buf.buffer.byteLength;
    return new Promise((resolve, reject) => {
      const send = (job: Job, msg: HashRequest, transfer: ArrayBuffer[]) => {
        if (slot.jobs.size === 0) slot.worker.ref();
        slot.jobs.set(id, job);
        try {
          slot.worker.postMessage(msg, transfer);
        } catch (err) {
          slot.jobs.delete(id);
          if (slot.jobs.size === 0) slot.worker.unref();
          throw err;
        }
      };
      const sendCopy = () => {
        const copy = buf.slice();
        send({ resolve, reject, restore: () => buf }, { id, buf: copy.buffer, offset: 0, length }, [copy.buffer]);
      };
      if (buf.buffer instanceof SharedArrayBuffer) {
        send({ resolve, reject, restore: () => buf }, { id, buf: buf.buffer, offset, length }, []);
      } else if (!spansBuffer && length < HASH_COPY_BELOW) {
        sendCopy();
      } else {
        try {
          send(
            { resolve, reject, restore: (ab) => new Uint8Array(ab, offset, length) },
            { id, buf: buf.buffer, offset, length },
            [buf.buffer],
          );
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
    const worker = new Worker(workerSpecifier());
    const slot: Slot = { worker, jobs: new Map() };
    // An idle pool must not keep the process alive; a busy one must (see send()).
    worker.unref();
    worker.onmessage = (ev: MessageEvent<HashReply>) => {
      const reply = ev.data;
      const job = slot.jobs.get(reply.id);
      assert(job !== undefined, `hash worker replied to unknown job ${reply.id}`);
      slot.jobs.delete(reply.id);
      if (slot.jobs.size === 0) worker.unref();
      if ("error" in reply) job.reject(new HashError(`BLAKE3 worker: ${reply.error}`, job.restore(reply.buf)));
      else {
        assert(reply.hash.length === BLAKE3_LEN, "BLAKE3 digest must be 32 bytes");
        job.resolve({ hash: reply.hash, buf: job.restore(reply.buf) });
      }
    };
    const onFailure = (what: string) => () => {
      if (this.slots[index] === slot) this.fail(index, new Error(`BLAKE3 worker ${what}; its jobs are lost`));
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
    for (const job of slot.jobs.values()) job.reject(err);
    slot.jobs.clear();
    slot.worker.terminate();
  }
}
