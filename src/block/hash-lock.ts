// Serialises work on one block hash across the block files. Deleting a block because nothing
// needs it here (GC, orphan collection, offload) must not interleave with a write that found
// the file present: writers store a block before committing its reference, and storing
// postpones a pending deletion (manager.ts storeLocal) and refreshes the file's mtime, which
// the deleters check again under this lock.
import type { BlockHash } from "../util/ids";

export class HashLocks {
  private readonly tails = new Map<string, Promise<void>>();

  /** Runs `fn` once every earlier holder of `hash`'s lock is done (whether it failed or not). */
  async with<T>(hash: BlockHash, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(hash);
    const run = (prev ?? Promise.resolve()).then(fn, fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.tails.set(hash, tail);
    try {
      return await run;
    } finally {
      if (this.tails.get(hash) === tail) this.tails.delete(hash);
    }
  }
}
