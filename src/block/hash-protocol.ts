// What the request thread (hash.ts) and the hash workers (hash-worker.ts) say to each other.
// Its own module, importing nothing: workers start again with the first large body after an
// idle spell (hash.ts HASH_WORKER_IDLE_MS), and loading hash.ts and its imports in each cost
// ~3.5 ms of CPU for two constants.

/** MD5 streams one worker keeps open at once; more means a caller forgot to finish or drop one. */
export const MD5_STREAMS_PER_WORKER = 4096;
/**
 * Shared buffers one worker keeps by number (see hash.ts's header): more than a node's block buffer
 * pools hold; beyond it the oldest is forgotten (sent again whole when used again).
 */
export const SHARED_BUFFERS_PER_WORKER = 64;

/**
 * The memory a job reads: a buffer sent whole (`buf`), with `shared` (a SharedArrayBuffer's
 * number) and `keep` when the worker is to keep it under that number; or only `shared`, one
 * it keeps already.
 */
export interface JobMemory {
  buf?: ArrayBuffer | SharedArrayBuffer;
  shared?: number;
  keep?: boolean;
  offset: number;
  length: number;
}
/** Messages to the worker. */
export type HashRequest =
  | ({ kind: "hash"; id: number } & JobMemory)
  | ({ kind: "md5-update"; id: number; md5: number } & JobMemory)
  | { kind: "md5-digest"; id: number; md5: number }
  | { kind: "md5-drop"; md5: number }
  | { kind: "forget"; shared: number };
/** Messages from the worker: a transferred buffer always comes back (a shared one never), with the result or an error. */
export type HashReply =
  | { id: number; hash: Uint8Array; buf?: ArrayBuffer }
  | { id: number; digest: Uint8Array }
  | { id: number; done: true }
  | { id: number; error: string; buf?: ArrayBuffer };
